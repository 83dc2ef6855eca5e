
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_
#define _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * streaming_control: a stream's state, and the commands (pause, resume,
 * cancel, ack) that any worker takes and the stream's workers act on.
 */

ngx_int_t ngx_http_streaming_control_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_ */
