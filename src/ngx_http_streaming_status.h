
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_STATUS_H_INCLUDED_
#define _NGX_HTTP_STREAMING_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_json.h"
#include "ngx_http_streaming_store.h"


ngx_int_t ngx_http_streaming_status_handler(ngx_http_request_t *r);
void ngx_http_streaming_status_stream(ngx_http_streaming_out_t *out,
    ngx_http_streaming_stream_t *st);


#endif /* _NGX_HTTP_STREAMING_STATUS_H_INCLUDED_ */
