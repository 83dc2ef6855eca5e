
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_IDS_H_INCLUDED_
#define _NGX_HTTP_STREAMING_IDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Stream ids, Last-Event-ID values and sequence numbers from clients.  A
 * leaf: plain functions over byte ranges that need no nginx function at
 * link time, so that a fuzzer drives them directly.
 */


#define NGX_HTTP_STREAMING_ID_MAX        128
#define NGX_HTTP_STREAMING_MAX_SEQUENCE  0x7fffffffffffffffULL
#define NGX_HTTP_STREAMING_CODE_LEN      32


/* 1 if 1-128 characters of [A-Za-z0-9._~-], else 0 */
ngx_int_t ngx_http_streaming_id_valid(u_char *id, size_t len);

/* 1 if 1-32 characters of [A-Z0-9_] (an error code), else 0 */
ngx_int_t ngx_http_streaming_code_valid(u_char *code, size_t len);

/* "<streamId>:<sequence>[:<token>]": NGX_OK or NGX_DECLINED */
ngx_int_t ngx_http_streaming_last_event_id(ngx_str_t *value, ngx_str_t *id,
    uint64_t *sequence);

/* the <token> of "<streamId>:<sequence>:<token>"; empty when none */
void ngx_http_streaming_last_event_token(ngx_str_t *value, ngx_str_t *token);

/* decimal digits, no sign, at most NGX_HTTP_STREAMING_MAX_SEQUENCE */
ngx_int_t ngx_http_streaming_sequence(ngx_str_t *s, uint64_t *n);


#endif /* _NGX_HTTP_STREAMING_IDS_H_INCLUDED_ */
