
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_json.h"


static u_char *ngx_http_streaming_out_reserve(ngx_http_streaming_out_t *out,
    size_t len);


void
ngx_http_streaming_out_init(ngx_http_streaming_out_t *out, ngx_pool_t *pool)
{
    ngx_memzero(out, sizeof(ngx_http_streaming_out_t));

    out->pool = pool;
    out->last = &out->first;
}


/* starts the next output; sent buffers come back through out->free */
void
ngx_http_streaming_out_reset(ngx_http_streaming_out_t *out)
{
    out->first = NULL;
    out->last = &out->first;
    out->buf = NULL;
    out->size = 0;
}


/*
 * After "sent" went to the next filter: sent buffers go back to the free
 * list, and out->size becomes what is still unsent, for the caller's limit.
 */
void
ngx_http_streaming_out_update(ngx_http_streaming_out_t *out,
    ngx_chain_t **busy, ngx_chain_t **sent)
{
    off_t         size;
    ngx_chain_t  *cl;

    ngx_chain_update_chains(out->pool, &out->free, busy, sent, out->tag);

    ngx_http_streaming_out_reset(out);

    size = 0;

    for (cl = *busy; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    out->size = size;
}


void
ngx_http_streaming_out_free(ngx_http_streaming_out_t *out)
{
    if (out->tmp) {
        ngx_free(out->tmp);
        out->tmp = NULL;
        out->tmp_size = 0;
    }
}


/*
 * A scratch writer's output was copied elsewhere: its buffers go straight
 * back to its free list for the next use.
 */
void
ngx_http_streaming_out_recycle(ngx_http_streaming_out_t *out)
{
    ngx_chain_t  *cl, *last;

    last = NULL;

    for (cl = out->first; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start;
        last = cl;
    }

    if (last) {
        last->next = out->free;
        out->free = out->first;
    }

    ngx_http_streaming_out_reset(out);
    out->failed = 0;
}


/* a scratch area, valid until the next call */
u_char *
ngx_http_streaming_out_tmp(ngx_http_streaming_out_t *out, size_t len)
{
    size_t   size;
    u_char  *p;

    if (len <= out->tmp_size) {
        return out->tmp;
    }

    size = ngx_max(len, 2 * out->tmp_size);
    size = ngx_max(size, NGX_HTTP_STREAMING_OUT_BLOCK);

    p = ngx_alloc(size, ngx_cycle->log);
    if (p == NULL) {
        out->failed = 1;
        return NULL;
    }

    if (out->tmp) {
        ngx_free(out->tmp);
    }

    out->tmp = p;
    out->tmp_size = size;

    return p;
}


/* room for exactly len bytes, which the caller writes */
u_char *
ngx_http_streaming_out_alloc(ngx_http_streaming_out_t *out, size_t len)
{
    u_char  *p;

    p = ngx_http_streaming_out_reserve(out, len);
    if (p == NULL) {
        return NULL;
    }

    out->buf->last = p + len;

    return p;
}


/* links a buffer the writer does not own; what follows goes after it */
void
ngx_http_streaming_out_link(ngx_http_streaming_out_t *out, ngx_buf_t *b)
{
    ngx_chain_t  *cl;

    if (out->failed) {
        return;
    }

    cl = ngx_alloc_chain_link(out->pool);
    if (cl == NULL) {
        out->failed = 1;
        return;
    }

    cl->buf = b;
    cl->next = NULL;

    *out->last = cl;
    out->last = &cl->next;
    out->buf = NULL;
    out->size += ngx_buf_size(b);
}


void
ngx_http_streaming_out_raw(ngx_http_streaming_out_t *out, u_char *data,
    size_t len)
{
    u_char  *p;

    p = ngx_http_streaming_out_reserve(out, len);
    if (p == NULL) {
        return;
    }

    out->buf->last = ngx_cpymem(p, data, len);
}


void
ngx_http_streaming_out_printf(ngx_http_streaming_out_t *out,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    tmp[NGX_HTTP_STREAMING_OUT_BLOCK];

    va_start(args, fmt);
    p = ngx_vslprintf(tmp, tmp + sizeof(tmp), fmt, args);
    va_end(args);

    ngx_http_streaming_out_raw(out, tmp, p - tmp);
}


void
ngx_http_streaming_out_json_str(ngx_http_streaming_out_t *out, ngx_str_t *s)
{
    u_char  *p;
    size_t   len;

    len = s->len + ngx_escape_json(NULL, s->data, s->len);

    p = ngx_http_streaming_out_reserve(out, len + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';

    if (len == 0) {
        /* an empty string's data may be NULL */

    } else if (len == s->len) {
        p = ngx_cpymem(p, s->data, len);

    } else {
        p = (u_char *) ngx_escape_json(p, s->data, s->len);
    }

    *p++ = '"';

    out->buf->last = p;
}


static u_char *
ngx_http_streaming_out_reserve(ngx_http_streaming_out_t *out, size_t len)
{
    size_t         size;
    ngx_buf_t     *b;
    ngx_chain_t   *cl, **ll;

    if (out->failed) {
        return NULL;
    }

    out->size += len;

    b = out->buf;

    if (b != NULL && (size_t) (b->end - b->last) >= len) {
        return b->last;
    }

    /* a sent buffer that is large enough, else a new one */

    for (ll = &out->free; *ll; ll = &(*ll)->next) {
        if ((size_t) ((*ll)->buf->end - (*ll)->buf->start) >= len) {
            cl = *ll;
            *ll = cl->next;
            cl->next = NULL;

            b = cl->buf;
            b->pos = b->start;
            b->last = b->start;
            b->flush = 0;
            b->last_buf = 0;
            b->last_in_chain = 0;

            goto found;
        }
    }

    size = ngx_max(len, NGX_HTTP_STREAMING_OUT_BLOCK);

    b = ngx_create_temp_buf(out->pool, size);
    if (b == NULL) {
        out->failed = 1;
        return NULL;
    }

    b->tag = out->tag;

    cl = ngx_alloc_chain_link(out->pool);
    if (cl == NULL) {
        out->failed = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

found:

    *out->last = cl;
    out->last = &cl->next;
    out->buf = b;

    return b->last;
}
