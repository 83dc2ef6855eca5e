
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_SHARE_H_INCLUDED_
#define _NGX_HTTP_STREAMING_SHARE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_json.h"
#include "ngx_http_streaming_format.h"


/*
 * Encoded chunks shared by the subscribers of one worker: a chunk that
 * several subscribers read in the same format is encoded once, and each
 * subscriber's output links a buffer that points at that one copy instead
 * of copying it.  A piece lives while a small per-worker cache keeps it or
 * a subscriber's unsent output still points at it.
 */


typedef struct ngx_http_streaming_piece_s  ngx_http_streaming_piece_t;
typedef struct ngx_http_streaming_ref_s    ngx_http_streaming_ref_t;

struct ngx_http_streaming_ref_s {
    ngx_buf_t                       buf;
    ngx_http_streaming_piece_t     *piece;
    ngx_http_streaming_ref_t       *next;
};


/* one subscriber's pieces in the order it sends them */
typedef struct {
    ngx_pool_t                     *pool;
    ngx_http_streaming_ref_t       *head;
    ngx_http_streaming_ref_t      **tail;
    ngx_http_streaming_ref_t       *free;
} ngx_http_streaming_refs_t;


void ngx_http_streaming_refs_init(ngx_http_streaming_refs_t *refs,
    ngx_pool_t *pool);
ngx_int_t ngx_http_streaming_share_chunk(ngx_http_streaming_out_t *out,
    ngx_http_streaming_refs_t *refs, ngx_http_streaming_encoder_t *enc,
    u_char *nonce, uint64_t sequence, u_char *data, size_t len,
    uint64_t now);
off_t ngx_http_streaming_refs_sent(ngx_http_streaming_refs_t *refs);
void ngx_http_streaming_refs_release(ngx_http_streaming_refs_t *refs);
ngx_http_streaming_out_t *ngx_http_streaming_share_scratch(void);
void ngx_http_streaming_share_exit(void);


#endif /* _NGX_HTTP_STREAMING_SHARE_H_INCLUDED_ */
