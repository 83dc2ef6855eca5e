
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_PUBLISH_H_INCLUDED_
#define _NGX_HTTP_STREAMING_PUBLISH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * streaming_publish: producers that push (PUT creates a stream, POST
 * appends chunks, DELETE ends it) instead of being proxied.
 */

ngx_int_t ngx_http_streaming_publish_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_STREAMING_PUBLISH_H_INCLUDED_ */
