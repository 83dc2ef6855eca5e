
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_share.h"


/*
 * Direct-mapped: the subscribers of a stream read the same few newest
 * chunks, so a few slots per stream are enough; a slot taken by another
 * chunk is simply replaced (its piece lives on while buffers point at it).
 */
#define NGX_HTTP_STREAMING_SHARE_SLOTS  256


struct ngx_http_streaming_piece_s {
    uint64_t                        sequence;
    ngx_uint_t                      format;
    ngx_uint_t                      refs;       /* buffers, +1 if cached */
    size_t                          len;
    u_char                          nonce[16];
    ngx_str_t                       token;      /* in ids: into data */
    u_char                          data[1];
};


static ngx_http_streaming_piece_t *ngx_http_streaming_share_encode(
    ngx_http_streaming_encoder_t *enc, u_char *nonce, uint64_t sequence,
    u_char *data, size_t len, uint64_t now);
static void ngx_http_streaming_piece_unref(ngx_http_streaming_piece_t *p);
static ngx_http_streaming_out_t *ngx_http_streaming_share_scratch_init(
    ngx_http_streaming_out_t *out);
static void ngx_http_streaming_share_scratch_free(
    ngx_http_streaming_out_t *out);


static ngx_http_streaming_piece_t
    *ngx_http_streaming_pieces[NGX_HTTP_STREAMING_SHARE_SLOTS];

/* where pieces are encoded before they are copied to their own memory */
static ngx_http_streaming_out_t   ngx_http_streaming_share_out;

/* where a WebSocket message is written before it is framed */
static ngx_http_streaming_out_t   ngx_http_streaming_share_frame;


void
ngx_http_streaming_refs_init(ngx_http_streaming_refs_t *refs,
    ngx_pool_t *pool)
{
    refs->pool = pool;
    refs->head = NULL;
    refs->tail = &refs->head;
    refs->free = NULL;
}


/*
 * Links the chunk, encoded once for this worker, to "out".  NGX_DECLINED:
 * it cannot be shared (a JSON-RPC id of the client's own, or no memory);
 * the caller encodes it into "out" itself.
 */
ngx_int_t
ngx_http_streaming_share_chunk(ngx_http_streaming_out_t *out,
    ngx_http_streaming_refs_t *refs, ngx_http_streaming_encoder_t *enc,
    u_char *nonce, uint64_t sequence, u_char *data, size_t len,
    uint64_t now)
{
    uint64_t                     key;
    ngx_uint_t                   slot;
    ngx_http_streaming_ref_t    *ref;
    ngx_http_streaming_piece_t  *p;

    if (enc->rpc_id.len || out->failed) {
        return NGX_DECLINED;
    }

    ngx_memcpy(&key, nonce, sizeof(uint64_t));
    key ^= sequence * 0x9e3779b97f4a7c15ULL + enc->format;
    slot = (ngx_uint_t) ((key ^ (key >> 32)) % NGX_HTTP_STREAMING_SHARE_SLOTS);

    p = ngx_http_streaming_pieces[slot];

    if (p == NULL
        || p->sequence != sequence
        || p->format != enc->format
        || ngx_memcmp(p->nonce, nonce, 16) != 0
        || p->token.len != enc->token.len
        || (enc->token.len
            && ngx_memcmp(p->token.data, enc->token.data, enc->token.len)
               != 0))
    {
        if (p) {
            ngx_http_streaming_pieces[slot] = NULL;
            ngx_http_streaming_piece_unref(p);
        }

        p = ngx_http_streaming_share_encode(enc, nonce, sequence, data, len,
                                            now);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        ngx_http_streaming_pieces[slot] = p;
    }

    ref = refs->free;

    if (ref) {
        refs->free = ref->next;

    } else {
        ref = ngx_palloc(refs->pool, sizeof(ngx_http_streaming_ref_t));
        if (ref == NULL) {
            return NGX_DECLINED;
        }
    }

    ngx_memzero(&ref->buf, sizeof(ngx_buf_t));

    ref->buf.memory = 1;
    ref->buf.start = p->data;
    ref->buf.pos = p->data;
    ref->buf.last = p->data + p->len;
    ref->buf.end = ref->buf.last;
    ref->buf.tag = (ngx_buf_tag_t) &ngx_http_streaming_share_chunk;

    ref->piece = p;
    ref->next = NULL;
    p->refs++;

    *refs->tail = ref;
    refs->tail = &ref->next;

    ngx_http_streaming_out_link(out, &ref->buf);

    return NGX_OK;
}


/*
 * Lets go of the pieces the client has taken, in the order they went, and
 * returns the bytes still unsent of the others (ngx_chain_update_chains()
 * drops buffers of another tag from "busy" whether sent or not).
 */
off_t
ngx_http_streaming_refs_sent(ngx_http_streaming_refs_t *refs)
{
    off_t                      size;
    ngx_http_streaming_ref_t  *ref;

    while (refs->head && refs->head->buf.pos == refs->head->buf.last) {
        ref = refs->head;
        refs->head = ref->next;

        ngx_http_streaming_piece_unref(ref->piece);
        ref->piece = NULL;

        ref->next = refs->free;
        refs->free = ref;
    }

    if (refs->head == NULL) {
        refs->tail = &refs->head;
        return 0;
    }

    size = 0;

    for (ref = refs->head; ref; ref = ref->next) {
        size += ref->buf.last - ref->buf.pos;
    }

    return size;
}


/* the request is gone: nothing points at its pieces any more */
void
ngx_http_streaming_refs_release(ngx_http_streaming_refs_t *refs)
{
    ngx_http_streaming_ref_t  *ref;

    for (ref = refs->head; ref; ref = ref->next) {
        ngx_http_streaming_piece_unref(ref->piece);
        ref->piece = NULL;
    }

    refs->head = NULL;
    refs->tail = &refs->head;
}


/*
 * The worker exits: what the cache holds is freed (the module may be
 * unloaded, and its pointers with it).  Pieces still linked to a request's
 * output are freed by that request.
 */
void
ngx_http_streaming_share_exit(void)
{
    ngx_uint_t                   i;
    ngx_http_streaming_piece_t  *p;

    for (i = 0; i < NGX_HTTP_STREAMING_SHARE_SLOTS; i++) {
        p = ngx_http_streaming_pieces[i];

        if (p) {
            ngx_http_streaming_pieces[i] = NULL;
            ngx_http_streaming_piece_unref(p);
        }
    }

    ngx_http_streaming_share_scratch_free(&ngx_http_streaming_share_out);
    ngx_http_streaming_share_scratch_free(&ngx_http_streaming_share_frame);
}


/*
 * The worker's scratch writer for WebSocket messages (FORMAT_WS's
 * enc->frame): a message is encoded there and framed at once, so one
 * serves every socket.
 */
ngx_http_streaming_out_t *
ngx_http_streaming_share_scratch(void)
{
    return ngx_http_streaming_share_scratch_init(
                                           &ngx_http_streaming_share_frame);
}


static ngx_http_streaming_out_t *
ngx_http_streaming_share_scratch_init(ngx_http_streaming_out_t *out)
{
    ngx_pool_t  *pool;

    if (out->pool == NULL) {
        /* this worker's, for as long as it runs */
        pool = ngx_create_pool(NGX_HTTP_STREAMING_OUT_BLOCK, ngx_cycle->log);
        if (pool == NULL) {
            return NULL;
        }

        ngx_http_streaming_out_init(out, pool);
    }

    return out;
}


static void
ngx_http_streaming_share_scratch_free(ngx_http_streaming_out_t *out)
{
    if (out->pool) {
        ngx_http_streaming_out_free(out);
        ngx_destroy_pool(out->pool);
        ngx_memzero(out, sizeof(ngx_http_streaming_out_t));
    }
}


static ngx_http_streaming_piece_t *
ngx_http_streaming_share_encode(ngx_http_streaming_encoder_t *enc,
    u_char *nonce, uint64_t sequence, u_char *data, size_t len, uint64_t now)
{
    u_char                      *d;
    size_t                       size;
    ngx_chain_t                 *cl;
    ngx_http_streaming_out_t    *out;
    ngx_http_streaming_piece_t  *p;

    out = ngx_http_streaming_share_scratch_init(&ngx_http_streaming_share_out);
    if (out == NULL) {
        return NULL;
    }

    out->failed = 0;

    ngx_http_streaming_format_chunk(out, enc, sequence, data, len, now);

    size = 0;

    for (cl = out->first; cl; cl = cl->next) {
        size += cl->buf->last - cl->buf->pos;
    }

    p = NULL;

    if (!out->failed && size) {
        p = ngx_alloc(offsetof(ngx_http_streaming_piece_t, data) + size
                      + enc->token.len, ngx_cycle->log);
    }

    if (p) {
        p->sequence = sequence;
        p->format = enc->format;
        p->refs = 1;
        p->len = size;
        ngx_memcpy(p->nonce, nonce, 16);

        d = p->data;

        for (cl = out->first; cl; cl = cl->next) {
            d = ngx_cpymem(d, cl->buf->pos, cl->buf->last - cl->buf->pos);
        }

        /* a location with streaming_secret puts the token in ids */
        p->token.data = d;
        p->token.len = enc->token.len;

        if (enc->token.len) {
            ngx_memcpy(d, enc->token.data, enc->token.len);
        }
    }

    /* the scratch buffers serve the next piece */

    ngx_http_streaming_out_recycle(out);

    return p;
}


static void
ngx_http_streaming_piece_unref(ngx_http_streaming_piece_t *p)
{
    if (--p->refs == 0) {
        ngx_free(p);
    }
}
