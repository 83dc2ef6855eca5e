
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_HTTP_H_INCLUDED_
#define _NGX_HTTP_STREAMING_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_store.h"


/* request helpers shared by the module's handlers */


#define NGX_HTTP_STREAMING_ID_ARG       0x01    /* ?id= */
#define NGX_HTTP_STREAMING_ID_GENERATE  0x02    /* a random one */

#define NGX_HTTP_STREAMING_NONCE_LEN    16      /* a stream's nonce */



ngx_table_elt_t *ngx_http_streaming_header_in(ngx_http_request_t *r,
    const char *name, size_t len);
ngx_int_t ngx_http_streaming_set_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value);
ngx_int_t ngx_http_streaming_set_no_cache(ngx_http_request_t *r);
ngx_int_t ngx_http_streaming_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_chain_t *body, off_t size);
ngx_int_t ngx_http_streaming_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_int_t ngx_http_streaming_read_body_start(ngx_http_request_t *r,
    size_t max, const char *what, ngx_http_client_body_handler_pt handler);
ngx_int_t ngx_http_streaming_send_too_large(ngx_http_request_t *r,
    const char *what);
ngx_int_t ngx_http_streaming_read_body(ngx_http_request_t *r,
    ngx_str_t *body, size_t max);
ngx_int_t ngx_http_streaming_request_id(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_uint_t how, ngx_str_t *id);
ngx_int_t ngx_http_streaming_send_bad_id(ngx_http_request_t *r);
ngx_int_t ngx_http_streaming_arg_unescaped(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_http_streaming_token(ngx_pool_t *pool, ngx_str_t *secret,
    ngx_str_t *id, u_char *nonce, ngx_str_t *token);
ngx_int_t ngx_http_streaming_token_presented(ngx_http_request_t *r,
    ngx_str_t *given, ngx_str_t *expected);
ngx_int_t ngx_http_streaming_token_check(ngx_http_request_t *r,
    ngx_str_t *secret, ngx_str_t *id, u_char *nonce, ngx_str_t *given,
    ngx_str_t *token);
ngx_int_t ngx_http_streaming_send_forbidden(ngx_http_request_t *r);
ngx_int_t ngx_http_streaming_find_locked(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *secret, ngx_str_t *id,
    ngx_http_streaming_stream_t **st, ngx_str_t *token);
ngx_int_t ngx_http_streaming_send_refusal(ngx_http_request_t *r,
    ngx_int_t status);
ngx_int_t ngx_http_streaming_set_token(ngx_http_request_t *r,
    ngx_str_t *token);


#endif /* _NGX_HTTP_STREAMING_HTTP_H_INCLUDED_ */
