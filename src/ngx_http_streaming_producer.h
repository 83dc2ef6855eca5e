
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_PRODUCER_H_INCLUDED_
#define _NGX_HTTP_STREAMING_PRODUCER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * The producer: a "streaming zone;" location's response (any content
 * handler) cut into chunks, stored, and written to its client.
 */


ngx_int_t ngx_http_streaming_producer_init(ngx_conf_t *cf);


#endif /* _NGX_HTTP_STREAMING_PRODUCER_H_INCLUDED_ */
