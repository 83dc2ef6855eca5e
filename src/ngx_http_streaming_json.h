
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_JSON_H_INCLUDED_
#define _NGX_HTTP_STREAMING_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * An output writer: text appended to a chain of buffers that grows as
 * needed, for answers whose size is not known up front (status, JSON,
 * encoded chunks).  A long-lived writer (a stream's) gives its buffers back
 * through "free" once they are sent (ngx_chain_update_chains() with
 * out->tag), so that a long stream reuses a bounded set of buffers, and
 * keeps one reusable scratch area ("tmp").
 */

#define NGX_HTTP_STREAMING_OUT_BLOCK  4096


typedef struct {
    ngx_pool_t       *pool;
    ngx_chain_t      *first;
    ngx_chain_t     **last;
    ngx_buf_t        *buf;
    off_t             size;

    ngx_chain_t      *free;
    ngx_buf_tag_t     tag;

    u_char           *tmp;
    size_t            tmp_size;

    ngx_uint_t        failed;    /* unsigned  failed:1; */
} ngx_http_streaming_out_t;


void ngx_http_streaming_out_init(ngx_http_streaming_out_t *out,
    ngx_pool_t *pool);
void ngx_http_streaming_out_reset(ngx_http_streaming_out_t *out);
void ngx_http_streaming_out_free(ngx_http_streaming_out_t *out);
void ngx_http_streaming_out_recycle(ngx_http_streaming_out_t *out);
void ngx_http_streaming_out_update(ngx_http_streaming_out_t *out,
    ngx_chain_t **busy, ngx_chain_t **sent);
u_char *ngx_http_streaming_out_alloc(ngx_http_streaming_out_t *out,
    size_t len);
u_char *ngx_http_streaming_out_tmp(ngx_http_streaming_out_t *out,
    size_t len);
void ngx_http_streaming_out_link(ngx_http_streaming_out_t *out,
    ngx_buf_t *b);
void ngx_http_streaming_out_raw(ngx_http_streaming_out_t *out, u_char *data,
    size_t len);
void ngx_http_streaming_out_printf(ngx_http_streaming_out_t *out,
    const char *fmt, ...);
void ngx_http_streaming_out_json_str(ngx_http_streaming_out_t *out,
    ngx_str_t *s);

#define ngx_http_streaming_out_literal(out, s)                               \
    ngx_http_streaming_out_raw(out, (u_char *) s, sizeof(s) - 1)


#endif /* _NGX_HTTP_STREAMING_JSON_H_INCLUDED_ */
