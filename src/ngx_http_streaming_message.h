
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_
#define _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * JSON messages from clients (a JSON-RPC request body, Omni control
 * messages), parsed with jansson.  A leaf: plain functions over byte
 * ranges, no request, no store.
 */


/*
 * The "id" member of a JSON-RPC request object, as compact JSON text (a
 * string, a number or null); NGX_DECLINED when the body is not a JSON
 * object with a usable id, NGX_ERROR when out of memory.
 */
ngx_int_t ngx_http_streaming_rpc_id(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *id);


#endif /* _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_ */
