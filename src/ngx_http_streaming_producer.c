
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_framing.h"
#include "ngx_http_streaming_format.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_message.h"
#include "ngx_http_streaming_subscriber.h"
#include "ngx_http_streaming_producer.h"


/* r->buffered is 4 bits wide; 0x08 is free of nginx's own flags */
#define NGX_HTTP_STREAMING_BUFFERED  0x08


/* the producer is not read: a subscriber's backlog, or the pause command */
#define ngx_http_streaming_producer_held(st)                                 \
    ((st)->overflow || (st)->status == NGX_HTTP_STREAMING_PAUSED)


typedef struct {
    ngx_http_streaming_request_t      req;       /* the first member */
    ngx_http_streaming_waiter_t       waiter;

    ngx_http_streaming_zone_t        *zone;
    ngx_http_streaming_loc_conf_t    *conf;
    u_char                            nonce[16];
    ngx_http_streaming_stream_t      *st;        /* checked by nonce */
    ngx_http_streaming_sub_t         *sub;       /* its own client's */

    ngx_http_streaming_framer_t       framer;
    ngx_http_streaming_encoder_t      enc;
    ngx_http_streaming_out_t          out;

    u_char                           *pending;   /* an unfinished chunk */
    size_t                            pending_len;
    size_t                            pending_size;

    ngx_chain_t                      *in;        /* held input */
    ngx_chain_t                      *busy;      /* output not yet sent */

    ngx_event_t                       heartbeat;
    ngx_event_t                       idle;
    ngx_event_t                       detach;
    ngx_event_t                       notice;    /* a command's news */

    ngx_http_event_handler_pt         write_handler;

    void                            (*finalize)(ngx_http_request_t *r,
                                          ngx_int_t rc);

    unsigned                          created:1; /* the stream exists */
    unsigned                          header:1;  /* header filter ran */
    unsigned                          producing:1;
    unsigned                          raw:1;     /* body passed unchanged */
    unsigned                          init:1;    /* stream-init sent */
    unsigned                          done:1;
    unsigned                          last:1;    /* last_buf sent */
    unsigned                          detached:1;
    unsigned                          overflow:1; /* held: a subscriber's
                                                     backlog, or paused */
    unsigned                          paused:1;   /* reported to its client */
} ngx_http_streaming_producer_ctx_t;


static ngx_int_t ngx_http_streaming_producer_handler(ngx_http_request_t *r);
static void ngx_http_streaming_producer_body_read(ngx_http_request_t *r);
static void ngx_http_streaming_producer_cleanup(void *data);
static ngx_int_t ngx_http_streaming_producer_header_filter(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_streaming_producer_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static ngx_int_t ngx_http_streaming_producer_frame(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, u_char *p, u_char *last);
static ngx_int_t ngx_http_streaming_producer_keep(
    ngx_http_streaming_producer_ctx_t *ctx, u_char *p, u_char *last);
static ngx_int_t ngx_http_streaming_producer_piece(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t kind, u_char *data);
static ngx_int_t ngx_http_streaming_producer_chunk(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, u_char *data, size_t len);
static void ngx_http_streaming_producer_finish(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t status,
    char *code, char *message);
static ngx_int_t ngx_http_streaming_producer_send(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx);
static void ngx_http_streaming_producer_finalize(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_streaming_producer_heartbeat(ngx_event_t *ev);
static void ngx_http_streaming_producer_idle(ngx_event_t *ev);
static void ngx_http_streaming_producer_stop(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t status, char *code,
    char *message);
static void ngx_http_streaming_producer_read_handler(ngx_http_request_t *r);
static void ngx_http_streaming_producer_write_handler(ngx_http_request_t *r);
static void ngx_http_streaming_producer_leave(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx);
static void ngx_http_streaming_producer_detach_timeout(ngx_event_t *ev);
static ngx_uint_t ngx_http_streaming_producer_detach_check(
    ngx_http_request_t *r, ngx_http_streaming_producer_ctx_t *ctx);
static void ngx_http_streaming_producer_abort(ngx_http_request_t *r);
static ngx_http_streaming_stream_t *ngx_http_streaming_producer_stream_locked(
    ngx_http_streaming_producer_ctx_t *ctx);
static void ngx_http_streaming_producer_wake(ngx_http_streaming_waiter_t *w);
static void ngx_http_streaming_producer_notice(ngx_event_t *ev);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* installs the phase handler and the filters; only when "streaming" is used */
ngx_int_t
ngx_http_streaming_producer_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_streaming_producer_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_streaming_producer_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_streaming_producer_body_filter;

    return NGX_OK;
}


/*
 * Before the content handler (and so before the upstream is asked): the
 * stream's id, its creation in the zone, and the answers that replace the
 * upstream call (bad id, id in use, limits).
 */
static ngx_int_t
ngx_http_streaming_producer_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_str_t                           id;
    ngx_table_elt_t                    *h;
    ngx_pool_cleanup_t                 *cln;
    ngx_http_streaming_zone_t          *zone;
    ngx_http_streaming_subscription_t   sn;
    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_loc_conf_t      *slcf;
    ngx_http_streaming_producer_ctx_t  *ctx;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    if (slcf->zone == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx && (!ctx->req.producer || ctx->created || ctx->done)) {
        return NGX_DECLINED;
    }

    zone = slcf->zone->data;

    if (ctx == NULL) {
        h = ngx_http_streaming_header_in(r, "Last-Event-ID", 13);

        ngx_memzero(&sn, sizeof(ngx_http_streaming_subscription_t));

        if (h
            && ngx_http_streaming_last_event_id(&h->value, &sn.id, &sn.start)
               == NGX_OK)
        {
            /*
             * an EventSource reconnecting: served from the zone, the
             * upstream is not asked again
             */

            sn.format = NGX_CONF_UNSET_UINT;
            sn.last_event_id = 1;
            sn.producer = 1;
            ngx_http_streaming_last_event_token(&h->value, &sn.token);

            rc = ngx_http_discard_request_body(r);

            if (rc == NGX_OK) {
                rc = ngx_http_streaming_subscriber_start(r, zone, &sn);
            }

            ngx_http_finalize_request(r, rc);
            return NGX_DONE;
        }

        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_streaming_producer_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_streaming_producer_cleanup;
        cln->data = r;

        ctx->zone = zone;
        ctx->conf = slcf;
        ctx->req.producer = 1;
        ctx->req.first_chunk_ms = -1;
        ctx->req.resumed_from = -1;
        ctx->req.status = NGX_HTTP_STREAMING_ACTIVE;

        ngx_http_set_ctx(r, ctx, ngx_http_streaming_module);

        if (slcf->format == NGX_HTTP_STREAMING_FORMAT_JSONRPC
            && (r->headers_in.content_length_n > 0 || r->headers_in.chunked))
        {
            /* the JSON-RPC id is in the body: read it first, then go on */

            rc = ngx_http_read_client_request_body(r,
                                        ngx_http_streaming_producer_body_read);

            if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
                return rc;
            }

            ngx_http_finalize_request(r, NGX_DONE);
            return NGX_DONE;
        }
    }

    rc = ngx_http_streaming_request_id(r, slcf->id,
                                     NGX_HTTP_STREAMING_ID_GENERATE, &id);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ctx->done = 1;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: invalid stream id \"%V\"", &id);
        rc = ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                           "INVALID_ID",
                                           "stream id must be 1-128 "
                                           "characters of [A-Za-z0-9._~-]");
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ngx_http_streaming_store_lock(zone);

    rc = ngx_http_streaming_store_create_locked(zone, id.data, id.len, &st);

    if (rc == NGX_OK) {
        ngx_memcpy(ctx->nonce, st->nonce, sizeof(ctx->nonce));
    }

    ngx_http_streaming_store_unlock(zone);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        ctx->done = 1;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: stream \"%V\" exists", &id);
        rc = ngx_http_streaming_send_error(r, NGX_HTTP_CONFLICT,
                                           "STREAM_EXISTS",
                                           "stream id already in use");
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;

    case NGX_BUSY:
        ctx->done = 1;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: max_streams reached in zone \"%V\"",
                      &zone->name);
        rc = ngx_http_streaming_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "TOO_MANY_STREAMS",
                                           "max_streams reached");
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;

    default:
        ctx->done = 1;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: zone \"%V\" is full", &zone->name);
        rc = ngx_http_streaming_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "ZONE_FULL",
                                           "shared memory zone is full");
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    ctx->created = 1;
    ctx->req.id = id;

    if (slcf->secret.len
        && ngx_http_streaming_token(r->pool, &slcf->secret, &id, ctx->nonce,
                                    &ctx->req.token)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->enc.token = ctx->req.token;

    ctx->enc.stream_id = id;
    ctx->enc.format = slcf->format;

    ngx_http_streaming_out_init(&ctx->out, r->pool);
    ctx->out.tag = (ngx_buf_tag_t) &ngx_http_streaming_module;

    ctx->heartbeat.handler = ngx_http_streaming_producer_heartbeat;
    ctx->heartbeat.data = r;
    ctx->heartbeat.log = r->connection->log;

    ctx->idle.handler = ngx_http_streaming_producer_idle;
    ctx->idle.data = r;
    ctx->idle.log = r->connection->log;

    ctx->detach.handler = ngx_http_streaming_producer_detach_timeout;
    ctx->detach.data = r;
    ctx->detach.log = r->connection->log;

    ctx->notice.handler = ngx_http_streaming_producer_notice;
    ctx->notice.data = r;
    ctx->notice.log = r->connection->log;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming producer: stream \"%V\" created", &id);

    return NGX_DECLINED;
}


/* the request body is read: its JSON-RPC id, then the phases go on */
static void
ngx_http_streaming_producer_body_read(ngx_http_request_t *r)
{
    ngx_str_t                           body;
    ngx_http_streaming_producer_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ngx_http_streaming_read_body(r, &body, ctx->conf->max_chunk)
        == NGX_OK)
    {
        (void) ngx_http_streaming_rpc_id(r->pool, body.data, body.len,
                                         &ctx->enc.rpc_id);
    }

    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}




/* the request is gone: a stream it still produced ends here */
static void
ngx_http_streaming_producer_cleanup(void *data)
{
    ngx_http_request_t *r = data;

    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_producer_ctx_t  *ctx;

    static ngx_str_t  cancelled = ngx_string("CANCELLED");
    static ngx_str_t  failed = ngx_string("UPSTREAM_ERROR");
    static ngx_str_t  gone = ngx_string("the client went away");
    static ngx_str_t  ended = ngx_string("the response ended before "
                                         "its last byte");

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx == NULL) {
        return;
    }

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    if (ctx->idle.timer_set) {
        ngx_del_timer(&ctx->idle);
    }

    if (ctx->detach.timer_set) {
        ngx_del_timer(&ctx->detach);
    }

    if (ctx->notice.posted) {
        ngx_delete_posted_event(&ctx->notice);
    }

    ngx_http_streaming_out_free(&ctx->out);

    if (ctx->pending) {
        ngx_free(ctx->pending);
        ctx->pending = NULL;
    }

    ngx_http_streaming_waiter_remove(&ctx->waiter);

    if (!ctx->created) {
        return;
    }

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    if (st && ctx->sub) {
        (void) ngx_http_streaming_store_sub_remove_locked(ctx->zone, st,
                                                          ctx->sub);
    }

    ctx->sub = NULL;

    if (st && !ctx->done) {
        if (!ctx->header) {
            /* no response was produced at all */
            ngx_http_streaming_store_release_locked(ctx->zone, st);

        } else if (r->connection->error && !ctx->detached) {
            ngx_http_streaming_store_finish_locked(ctx->zone, st,
                                                NGX_HTTP_STREAMING_CANCELLED,
                                                &cancelled, &gone);
        } else {
            ngx_http_streaming_store_finish_locked(ctx->zone, st,
                                                   NGX_HTTP_STREAMING_ERROR,
                                                   &failed, &ended);
        }
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    ctx->done = 1;
}


static ngx_int_t
ngx_http_streaming_producer_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                           *type;
    ngx_uint_t                           framing;
    ngx_http_streaming_stream_t         *st;
    ngx_http_streaming_producer_ctx_t   *ctx;

    static ngx_str_t  stream_id = ngx_string("Stream-Id");

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx == NULL || !ctx->req.producer || r != r->main || ctx->header
        || ctx->done || !ctx->created)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx->header = 1;

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || r->headers_out.status == NGX_HTTP_NO_CONTENT
        || r->header_only
        || r->method == NGX_HTTP_HEAD)
    {
        /* not a stream: the answer passes unchanged, the id is released */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "streaming producer: status %ui, no stream",
                       r->headers_out.status);

        ngx_http_streaming_store_lock(ctx->zone);

        st = ngx_http_streaming_producer_stream_locked(ctx);
        if (st) {
            ngx_http_streaming_store_release_locked(ctx->zone, st);
        }

        ngx_http_streaming_store_unlock(ctx->zone);

        ctx->done = 1;

        return ngx_http_next_header_filter(r);
    }

    framing = ctx->conf->framing;

    if (framing == NGX_HTTP_STREAMING_FRAMING_AUTO) {
        framing = ngx_http_streaming_framing_from_type(
                                             r->headers_out.content_type.data,
                                             r->headers_out.content_type.len);
    }

    ngx_http_streaming_framer_init(&ctx->framer, framing,
                                   ctx->conf->bytes_size,
                                   ctx->conf->max_chunk);

    ctx->enc.sse = (framing == NGX_HTTP_STREAMING_FRAMING_SSE);
    ctx->raw = (ctx->conf->format == NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH
                && !ctx->enc.sse);

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);
    if (st) {
        /* its own client is a subscriber too: the first one */
        if (ngx_http_streaming_store_sub_add_locked(ctx->zone, st, 0,
                                                    &ctx->sub)
            == NGX_OK)
        {
            ctx->sub->producer = 1;
        }

        st->framing = (u_char) framing;
        st->total_size = r->headers_out.content_length_n;
        st->type_len = (u_char) ngx_min(r->headers_out.content_type.len,
                                        NGX_HTTP_STREAMING_TYPE_MAX);

        if (st->type_len) {
            ngx_memcpy(st->type, r->headers_out.content_type.data,
                       st->type_len);
        }
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    if (!ctx->raw) {
        /* the body changes: ids are rewritten, or another format */

        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
        ngx_http_weak_etag(r);

        if (ctx->conf->format != NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH) {
            type = ngx_http_streaming_format_type(&ctx->enc);

            r->headers_out.content_type = *type;
            r->headers_out.content_type_len = type->len;
            r->headers_out.content_type_lowcase = NULL;
            r->headers_out.charset.len = 0;
        }
    }

    if (ngx_http_streaming_set_header(r, &stream_id, &ctx->req.id) != NGX_OK
        || ngx_http_streaming_set_token(r, &ctx->req.token) != NGX_OK
        || ngx_http_streaming_set_no_cache(r) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (r->upstream) {
        /*
         * Every chunk goes to the client as soon as it arrives: the
         * upstream module decides on buffering after sending the header.
         */
        r->upstream->buffering = 0;

        ctx->finalize = r->upstream->finalize_request;
        r->upstream->finalize_request = ngx_http_streaming_producer_finalize;

        if (ctx->conf->detach && !r->reading_body) {
            /* a client that leaves detaches instead of ending the request */
            r->read_event_handler = ngx_http_streaming_producer_read_handler;
        }
    }

    r->filter_need_in_memory = 1;

    ctx->producing = 1;

    ctx->waiter.wake = ngx_http_streaming_producer_wake;
    ctx->waiter.data = r;
    ctx->waiter.key = ctx->st;
    ngx_http_streaming_waiter_add(ctx->zone, &ctx->waiter);

    if (ctx->conf->heartbeat) {
        ngx_add_timer(&ctx->heartbeat, ctx->conf->heartbeat);
    }

    if (ctx->zone->idle_timeout) {
        ngx_add_timer(&ctx->idle, ctx->zone->idle_timeout);
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_streaming_producer_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_int_t                           rc;
    ngx_buf_t                          *b;
    ngx_chain_t                        *cl, *none;
    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_init_msg_t       init;
    ngx_http_streaming_producer_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx == NULL || !ctx->req.producer || !ctx->producing) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->raw) {
        /* passthrough of a body that is not SSE: stored, sent unchanged */

        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (!ctx->done && ngx_buf_in_memory(b)) {
                if (ngx_http_streaming_producer_frame(r, ctx, b->pos, b->last)
                    == NGX_ERROR)
                {
                    return NGX_ERROR;
                }
            }

            if (b->last_buf && !ctx->done) {
                ngx_http_streaming_producer_finish(r, ctx,
                                               NGX_HTTP_STREAMING_COMPLETED,
                                               NULL, NULL);
            }
        }

        ngx_http_streaming_out_reset(&ctx->out);

        return ngx_http_next_body_filter(r, in);
    }

    if (in && ngx_chain_add_copy(r->pool, &ctx->in, in) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->conf->detach && r->upstream && ctx->write_handler == NULL) {
        /* the upstream module set it after sending the header */
        ctx->write_handler = r->write_event_handler;
        r->write_event_handler = ngx_http_streaming_producer_write_handler;
    }

    if (!ctx->init) {
        ctx->init = 1;

        ngx_memzero(&init, sizeof(ngx_http_streaming_init_msg_t));
        init.total_size = -1;

        ngx_http_streaming_store_lock(ctx->zone);

        st = ngx_http_streaming_producer_stream_locked(ctx);
        if (st) {
            ngx_http_streaming_init_msg(r->pool, st, &init);
        }

        ngx_http_streaming_store_unlock(ctx->zone);

        ngx_http_streaming_format_init(&ctx->out, &ctx->enc, &init,
                                       ngx_http_streaming_store_now());
    }

    /* what the client took since the last call makes room again */
    if (ctx->out.first == NULL) {
        none = NULL;
        ngx_http_streaming_out_update(&ctx->out, &ctx->busy, &none);
    }

    for ( ;; ) {

        while (ctx->in) {

            if ((ctx->out.size >= (off_t) ctx->conf->send_buffer
                 && !ctx->detached)
                || ctx->overflow)
            {
                /*
                 * the client is slow, or a subscriber's backlog reached the
                 * buffer: the upstream waits (TCP backpressure)
                 */
                break;
            }

            cl = ctx->in;
            b = cl->buf;

            if (!ctx->done && ngx_buf_in_memory(b)) {
                rc = ngx_http_streaming_producer_frame(r, ctx, b->pos,
                                                       b->last);
                if (rc == NGX_ERROR) {
                    return NGX_ERROR;
                }
            }

            b->pos = b->last;

            if (b->last_buf && !ctx->done) {
                ngx_http_streaming_producer_finish(r, ctx,
                                               NGX_HTTP_STREAMING_COMPLETED,
                                               NULL, NULL);
            }

            ctx->in = cl->next;
            ngx_free_chain(r->pool, cl);
        }

        if (ctx->in) {
            r->buffered |= NGX_HTTP_STREAMING_BUFFERED;

        } else {
            r->buffered &= ~NGX_HTTP_STREAMING_BUFFERED;
        }

        rc = ngx_http_streaming_producer_send(r, ctx);

        /* a fast client may have taken it all: go on with held input */

        if (rc == NGX_ERROR || ctx->in == NULL || r->connection->error
            || ctx->overflow
            || ctx->out.size >= (off_t) ctx->conf->send_buffer)
        {
            break;
        }
    }

    if ((rc == NGX_ERROR || r->connection->error)
        && ctx->conf->detach && r->upstream && !ctx->detached && !ctx->done)
    {
        ngx_http_streaming_producer_leave(r, ctx);

        /* what was held for the client is stored now */
        return ngx_http_streaming_producer_body_filter(r, NULL);
    }

    if (ctx->detached) {
        return NGX_OK;
    }

    if (ctx->done && !ctx->last
        && ctx->req.status != NGX_HTTP_STREAMING_COMPLETED)
    {
        /* ended by a command, a timeout or an error: stop the upstream */
        return NGX_ERROR;
    }

    return rc;
}


/* cuts [p, last) into chunks */
static ngx_int_t
ngx_http_streaming_producer_frame(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, u_char *p, u_char *last)
{
    u_char      *end, *data;
    ngx_uint_t   kind;

    while (p < last && !ctx->done) {

        end = ngx_http_streaming_framer_scan(&ctx->framer, p, last, &kind);

        switch (kind) {

        case NGX_HTTP_STREAMING_FRAMER_CONTINUE:
            if (ngx_http_streaming_producer_keep(ctx, p, end) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        case NGX_HTTP_STREAMING_FRAMER_CHUNK:
        case NGX_HTTP_STREAMING_FRAMER_SKIP:

            if (ctx->pending_len) {
                if (ngx_http_streaming_producer_keep(ctx, p, end) != NGX_OK) {
                    return NGX_ERROR;
                }

                data = ctx->pending;

            } else {
                data = p;
            }

            ctx->pending_len = 0;

            if (ngx_http_streaming_producer_piece(r, ctx, kind, data)
                == NGX_ERROR)
            {
                return NGX_ERROR;
            }

            break;

        default: /* NGX_HTTP_STREAMING_FRAMER_ERROR */

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "streaming: stream \"%V\": a chunk exceeds "
                          "streaming_max_chunk %uz", &ctx->req.id,
                          ctx->conf->max_chunk);

            ngx_http_streaming_producer_finish(r, ctx,
                                               NGX_HTTP_STREAMING_ERROR,
                                               "PAYLOAD_TOO_LARGE",
                                               "a chunk exceeds "
                                               "streaming_max_chunk");
            return NGX_OK;
        }

        p = end;
    }

    return NGX_OK;
}


/* keeps the bytes of a chunk that spans input buffers */
static ngx_int_t
ngx_http_streaming_producer_keep(ngx_http_streaming_producer_ctx_t *ctx,
    u_char *p, u_char *last)
{
    size_t   len, size;
    u_char  *n;

    len = last - p;

    if (ctx->pending_len + len > ctx->pending_size) {
        size = ngx_max(2 * ctx->pending_size, ctx->pending_len + len);
        size = ngx_max(size, 1024);

        n = ngx_alloc(size, ngx_cycle->log);
        if (n == NULL) {
            return NGX_ERROR;
        }

        if (ctx->pending) {
            ngx_memcpy(n, ctx->pending, ctx->pending_len);
            ngx_free(ctx->pending);
        }

        ctx->pending = n;
        ctx->pending_size = size;
    }

    ngx_memcpy(ctx->pending + ctx->pending_len, p, len);
    ctx->pending_len += len;

    return NGX_OK;
}


/*
 * A piece the framer completed: a chunk, or (SKIP) bytes that are not one,
 * which passthrough forwards without their "id" lines, since an upstream id
 * would replace the stream's own in the browser.  A UTF-8 BOM that starts
 * the stream is dropped: mid-stream it would spoil a field name.
 */
static ngx_int_t
ngx_http_streaming_producer_piece(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t kind, u_char *data)
{
    u_char  *p;
    size_t   len;

    len = ctx->framer.size - ctx->framer.trim;

    if (ctx->framer.bom) {
        data += ctx->framer.bom;
        len -= ctx->framer.bom;
    }

    if (kind == NGX_HTTP_STREAMING_FRAMER_CHUNK) {
        return ngx_http_streaming_producer_chunk(r, ctx, data, len);
    }

    if (!ctx->enc.sse
        || ctx->conf->format != NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH)
    {
        return NGX_OK;
    }

    if (!ctx->framer.ids) {
        ngx_http_streaming_out_raw(&ctx->out, data, len);
        return NGX_OK;
    }

    p = ngx_http_streaming_out_alloc(&ctx->out, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->out.buf->last = ngx_http_streaming_sse_strip_id(data, len, p);
    ctx->out.size -= len - (ctx->out.buf->last - p);

    return NGX_OK;
}


/*
 * Stores one chunk and writes it for the client.  SSE events are stored
 * without their own "id" lines: the stream numbers them.
 */
static ngx_int_t
ngx_http_streaming_producer_chunk(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, u_char *data, size_t len)
{
    u_char                           *p;
    size_t                            size;
    uint64_t                          now, sequence;
    ngx_pid_t                         pids[NGX_HTTP_STREAMING_PIDS * 2];
    ngx_uint_t                        passthrough, checkpoint, ring, npids,
                                      ids, evict;
    ngx_http_streaming_chunk_t       *chunk;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_sse_event_t    ev;
    ngx_http_streaming_status_msg_t   msg;

    passthrough = (ctx->conf->format == NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH);
    size = len;

    /* events with an "id" line lose it; most have none (OpenAI's) */

    ids = (ctx->enc.sse && ctx->framer.ids);

    if (ids) {
        (void) ngx_http_streaming_sse_parse(data, len, &ev);
        size = ev.stripped_len;
    }

    now = ngx_http_streaming_store_now();
    checkpoint = 0;
    ring = 0;
    npids = 0;
    p = NULL;

    if (passthrough && ids) {
        p = ngx_http_streaming_out_tmp(&ctx->out, size);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    if (st == NULL
        || (st->status != NGX_HTTP_STREAMING_ACTIVE
            && st->status != NGX_HTTP_STREAMING_PAUSED))
    {
        /* ended elsewhere: a command, the idle timeout */
        ngx_http_streaming_store_unlock(ctx->zone);
        ngx_http_streaming_producer_finish(r, ctx, NGX_HTTP_STREAMING_ERROR,
                                           "INTERNAL_ERROR",
                                           "the stream ended");
        return NGX_OK;
    }

    chunk = ngx_http_streaming_store_chunk_alloc_locked(ctx->zone, st, size);
    if (chunk == NULL) {
        ngx_http_streaming_store_unlock(ctx->zone);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: zone \"%V\" is full, stream \"%V\" ends",
                      &ctx->zone->name, &ctx->req.id);

        ngx_http_streaming_producer_finish(r, ctx, NGX_HTTP_STREAMING_ERROR,
                                           "ZONE_FULL",
                                           "shared memory zone is full");
        return NGX_OK;
    }

    if (ids) {
        (void) ngx_http_streaming_sse_strip_id(data, len, chunk->data);

        if (p) {
            ngx_memcpy(p, chunk->data, size);
        }

    } else {
        ngx_memcpy(chunk->data, data, size);
    }

    sequence = chunk->sequence;

    evict = (ctx->conf->overflow == NGX_HTTP_STREAMING_OVERFLOW_EVICT);

    ngx_http_streaming_store_chunk_commit_locked(ctx->zone, st, chunk, evict);

    if (ctx->sub && !ctx->detached) {
        /* its own client gets every chunk at once */
        (void) ngx_http_streaming_store_sub_advance_locked(ctx->zone, st,
                                                           ctx->sub, chunk);
    }

    ctx->overflow = ngx_http_streaming_producer_held(st);

    npids = 0;

    if (st->subscribers > (ngx_uint_t) (ctx->sub != NULL)) {
        npids = ngx_http_streaming_store_pids_locked(st, pids);
        ring = 1;
    }

    if (ctx->conf->checkpoint
        && now - st->checkpoint_time >= ctx->conf->checkpoint)
    {
        ngx_http_streaming_store_checkpoint_locked(st, now);
        ngx_http_streaming_status_msg(st, &msg);
        checkpoint = 1;
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    if (ring) {
        ngx_http_streaming_ring(ctx->zone, st, pids, npids);
    }

    if (passthrough && ctx->enc.sse) {
        ngx_http_streaming_format_chunk(&ctx->out, &ctx->enc, sequence,
                                        p ? p : data, size, now);

    } else if (!ctx->raw) {
        ngx_http_streaming_format_chunk(&ctx->out, &ctx->enc, sequence, data,
                                        len, now);
    }

    if (checkpoint) {
        ngx_http_streaming_format_status(&ctx->out, &ctx->enc, &msg, now);
    }

    if (ctx->req.first_chunk_ms < 0) {
        ctx->req.first_chunk_ms = (ngx_msec_int_t)
                              (now - ((uint64_t) r->start_sec * 1000
                                      + r->start_msec));
    }

    ctx->req.sequence = sequence;
    ctx->req.chunks++;
    ctx->req.bytes += size;

    if (ctx->zone->idle_timeout) {
        ngx_add_timer(&ctx->idle, ctx->zone->idle_timeout);
    }

    return NGX_OK;
}


/*
 * The end of the stream, whatever ended it: a final partial chunk, the
 * store's state, and for the JSON formats the final marker and status.
 */
static void
ngx_http_streaming_producer_finish(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t status, char *code,
    char *message)
{
    uint64_t                          now;
    ngx_str_t                         c, m;
    ngx_pid_t                         pids[NGX_HTTP_STREAMING_PIDS * 2];
    ngx_uint_t                        kind, ring, npids;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_status_msg_t   msg;

    if (ctx->done) {
        return;
    }

    if (status == NGX_HTTP_STREAMING_COMPLETED) {
        kind = ngx_http_streaming_framer_finish(&ctx->framer);

        switch (kind) {

        case NGX_HTTP_STREAMING_FRAMER_CHUNK:
        case NGX_HTTP_STREAMING_FRAMER_SKIP:
            if (ngx_http_streaming_producer_piece(r, ctx, kind, ctx->pending)
                != NGX_OK)
            {
                status = NGX_HTTP_STREAMING_ERROR;
                code = "INTERNAL_ERROR";
                message = "cannot store the last chunk";
            }

            if (ctx->done) {
                return;
            }

            break;

        case NGX_HTTP_STREAMING_FRAMER_ERROR:
            status = NGX_HTTP_STREAMING_ERROR;
            code = "PAYLOAD_TOO_LARGE";
            message = "a chunk exceeds streaming_max_chunk";
            break;
        }

        ctx->pending_len = 0;
    }

    ctx->done = 1;

    now = ngx_http_streaming_store_now();
    ring = 0;
    npids = 0;

    c.data = (u_char *) code;
    c.len = code ? ngx_strlen(code) : 0;
    m.data = (u_char *) message;
    m.len = message ? ngx_strlen(message) : 0;

    ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));
    msg.status = ngx_http_streaming_status_names[status];
    msg.total_size = -1;
    msg.remaining_ms = -1;
    msg.code = c;
    msg.message = m;

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    if (st) {
        ngx_http_streaming_store_finish_locked(ctx->zone, st, status,
                                               code ? &c : NULL,
                                               message ? &m : NULL);

        /* the stream may have ended before, another way: report that */
        status = st->status;
        ngx_http_streaming_status_msg(st, &msg);

        if (st->subscribers > (ngx_uint_t) (ctx->sub != NULL)) {
            npids = ngx_http_streaming_store_pids_locked(st, pids);
            ring = 1;
        }
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    if (ring) {
        ngx_http_streaming_ring(ctx->zone, st, pids, npids);
    }

    if (msg.code.len) {
        msg.code.data = ngx_pstrdup(r->pool, &msg.code);
        msg.message.data = ngx_pstrdup(r->pool, &msg.message);

        if (msg.code.data == NULL || msg.message.data == NULL) {
            msg.code.len = 0;
            msg.message.len = 0;
        }
    }

    ctx->req.status = status;

    if (!ctx->raw) {
        ngx_http_streaming_format_final(&ctx->out, &ctx->enc,
                                        ctx->req.sequence + 1, now);
        ngx_http_streaming_format_status(&ctx->out, &ctx->enc, &msg, now);
    }

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    if (ctx->idle.timer_set) {
        ngx_del_timer(&ctx->idle);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming producer: stream \"%V\" ends: %V",
                   &ctx->req.id, &msg.status);
}


/* passes what was written to the client, keeps the rest for later */
static ngx_int_t
ngx_http_streaming_producer_send(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t  *cl, *out;

    if (ctx->out.failed) {
        return NGX_ERROR;
    }

    if (ctx->detached) {
        ngx_http_streaming_out_reset(&ctx->out);
        return NGX_OK;
    }

    out = ctx->out.first;

    if (ctx->done && !ctx->last && ctx->in == NULL
        && ctx->req.status == NGX_HTTP_STREAMING_COMPLETED)
    {
        if (out == NULL) {
            b = ngx_calloc_buf(r->pool);
            if (b == NULL) {
                return NGX_ERROR;
            }

            cl = ngx_alloc_chain_link(r->pool);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            cl->buf = b;
            cl->next = NULL;
            out = cl;
        }

        for (cl = out; cl->next; cl = cl->next) { /* void */ }

        cl->buf->last_buf = (r == r->main) ? 1 : 0;
        cl->buf->last_in_chain = 1;
        ctx->last = 1;
    }

    if (out) {
        for (cl = out; cl->next; cl = cl->next) { /* void */ }
        cl->buf->flush = 1;

        if (ctx->conf->heartbeat && !ctx->done) {
            ngx_add_timer(&ctx->heartbeat, ctx->conf->heartbeat);
        }
    }

    if (out == NULL && ctx->busy == NULL && !r->connection->buffered) {
        return NGX_OK;
    }

    rc = ngx_http_next_body_filter(r, out);

    ngx_http_streaming_out_update(&ctx->out, &ctx->busy, &out);

    return rc;
}


/*
 * The upstream module ends the request: after a failure of the upstream
 * (rc is an error), the client still gets the stream's final status before
 * nginx closes the connection.
 */
static void
ngx_http_streaming_producer_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_streaming_producer_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->finalize) {
        ctx->finalize(r, rc);
    }

    if (ctx->done || !ctx->producing) {
        return;
    }

    if (rc == NGX_OK) {

        /*
         * A FastCGI response ends with FCGI_END_REQUEST, which sets the
         * length to 0; without it the connection closed early.  nginx
         * itself takes that for a normal end when unbuffered.
         */

        if (r->upstream->length != 0
            && r->upstream->schema.len == sizeof("fastcgi://") - 1
            && ngx_strncmp(r->upstream->schema.data, "fastcgi://",
                           sizeof("fastcgi://") - 1) == 0)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "streaming: upstream prematurely closed FastCGI "
                          "stdout of stream \"%V\"", &ctx->req.id);

            ngx_http_streaming_producer_finish(r, ctx,
                                               NGX_HTTP_STREAMING_ERROR,
                                               "UPSTREAM_ERROR",
                                               "the upstream closed "
                                               "mid-stream");
            (void) ngx_http_streaming_producer_send(r, ctx);
        }

        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming producer: upstream finalized with %i", rc);

    if ((rc == NGX_HTTP_CLIENT_CLOSED_REQUEST || r->connection->error)
        && !ctx->detached)
    {
        ngx_http_streaming_producer_finish(r, ctx,
                                           NGX_HTTP_STREAMING_CANCELLED,
                                           "CANCELLED",
                                           "the client went away");
        return;
    }

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT) {
        ngx_http_streaming_producer_finish(r, ctx, NGX_HTTP_STREAMING_ERROR,
                                           "UPSTREAM_TIMEOUT",
                                           "the upstream timed out");
    } else {
        ngx_http_streaming_producer_finish(r, ctx, NGX_HTTP_STREAMING_ERROR,
                                           "UPSTREAM_ERROR",
                                           "the upstream failed mid-stream");
    }

    /* held input is of no use now; the rest goes out at once */
    ctx->in = NULL;
    r->buffered &= ~NGX_HTTP_STREAMING_BUFFERED;

    (void) ngx_http_streaming_producer_send(r, ctx);
}


static void
ngx_http_streaming_producer_heartbeat(ngx_event_t *ev)
{
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_streaming_status_msg_t     msg;
    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_producer_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->done || c->error) {
        return;
    }

    ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));
    msg.total_size = -1;
    msg.remaining_ms = -1;
    msg.status = ngx_http_streaming_status_names[NGX_HTTP_STREAMING_ACTIVE];

    if (ctx->enc.format == NGX_HTTP_STREAMING_FORMAT_NDJSON) {
        ngx_http_streaming_store_lock(ctx->zone);

        st = ngx_http_streaming_producer_stream_locked(ctx);
        if (st) {
            ngx_http_streaming_status_msg(st, &msg);
            msg.checkpoint = 0;
            msg.code.len = 0;
        }

        ngx_http_streaming_store_unlock(ctx->zone);
    }

    if (!ctx->raw) {
        ngx_http_streaming_format_heartbeat(&ctx->out, &ctx->enc, &msg,
                                            ngx_http_streaming_store_now());
    }

    if (ngx_http_streaming_producer_send(r, ctx) == NGX_ERROR) {
        c->error = 1;
    }

    if (ctx->out.first == NULL && !ctx->done && !ctx->heartbeat.timer_set) {
        ngx_add_timer(&ctx->heartbeat, ctx->conf->heartbeat);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Nothing came from the producer for idle_timeout: the stream ends with
 * IDLE_TIMEOUT and the upstream is closed.
 */
static void
ngx_http_streaming_producer_idle(ngx_event_t *ev)
{
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_streaming_producer_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->done) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "streaming: stream \"%V\" idle for %M, closing its "
                  "producer", &ctx->req.id, ctx->zone->idle_timeout);

    ngx_http_streaming_producer_stop(r, ctx, NGX_HTTP_STREAMING_ERROR,
                                     "IDLE_TIMEOUT",
                                     "nothing received for the idle "
                                     "timeout");
}


/*
 * Ends the stream from outside the upstream's loop (a timer, a command):
 * what is held is dropped, the client gets the end, the upstream is closed.
 */
static void
ngx_http_streaming_producer_stop(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx, ngx_uint_t status, char *code,
    char *message)
{
    ngx_connection_t  *c;

    c = r->connection;

    ngx_http_streaming_producer_finish(r, ctx, status, code, message);

    ctx->in = NULL;
    r->buffered &= ~NGX_HTTP_STREAMING_BUFFERED;

    (void) ngx_http_streaming_producer_send(r, ctx);

    ngx_http_streaming_producer_abort(r);
    ngx_http_run_posted_requests(c);
}


/*
 * Replaces the upstream module's check for a client gone away while the
 * response streams: under streaming_detach the producer keeps going.
 */
static void
ngx_http_streaming_producer_read_handler(ngx_http_request_t *r)
{
    int                                 n;
    char                                buf[1];
    ngx_err_t                           err;
    ngx_connection_t                   *c;
    ngx_http_streaming_producer_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->detached || ctx->done) {
        return;
    }

    if (c->error) {
        goto gone;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {
        if (!c->read->pending_eof) {
            return;
        }

        goto gone;
    }
#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
        return;
    }

gone:

    ngx_http_streaming_producer_leave(r, ctx);

    /* run the upstream module's loop: it feeds what it holds to the store */
    ngx_post_event(c->write, &ngx_posted_events);
}


/* a client stalled past send_timeout detaches too, instead of a 408 */
static void
ngx_http_streaming_producer_write_handler(ngx_http_request_t *r)
{
    ngx_connection_t                   *c;
    ngx_http_streaming_producer_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (c->write->timedout && !ctx->detached && !ctx->done) {
        c->write->timedout = 0;
        ngx_http_streaming_producer_leave(r, ctx);
    }

    ctx->write_handler(r);
}


/*
 * The client is gone but the producer goes on: what was queued for the
 * client is dropped, the connection is marked failed so nginx writes no
 * more, and the detach timer bounds how long the upstream is read.
 */
static void
ngx_http_streaming_producer_leave(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx)
{
    ngx_chain_t       *cl, *none;
    ngx_event_t       *wev;
    ngx_connection_t  *c;

    c = r->connection;
    none = NULL;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "streaming: client of stream \"%V\" left, the producer "
                  "goes on for up to %M", &ctx->req.id, ctx->conf->detach);

    ctx->detached = 1;

    /* its place stays while the detach time runs: see commit */
    ngx_http_streaming_store_lock(ctx->zone);

    if (ctx->sub && ngx_http_streaming_producer_stream_locked(ctx)) {
        ctx->sub->left = ngx_http_streaming_store_now();
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    for (cl = r->out; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    r->out = NULL;

    for (cl = ctx->busy; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
    }

    ngx_http_streaming_out_update(&ctx->out, &ctx->busy, &none);

    c->buffered = 0;
    r->buffered = 0;
    c->error = 1;

    wev = c->write;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    wev->ready = 1;
    wev->delayed = 0;

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    ngx_add_timer(&ctx->detach, ctx->conf->detach);
}


/*
 * The detach time counts from when the last subscriber left: the producer's
 * own client, or anyone who came back since.  While somebody reads, the
 * producer goes on; when the last one leaves, its worker rings this one
 * (ngx_http_streaming_producer_wake) to start the count again.
 */
static void
ngx_http_streaming_producer_detach_timeout(ngx_event_t *ev)
{
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_streaming_producer_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->done || ngx_http_streaming_producer_detach_check(r, ctx)) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "streaming: stream \"%V\" detached for %M, cancelling "
                  "its producer", &ctx->req.id, ctx->conf->detach);

    ngx_http_streaming_producer_finish(r, ctx, NGX_HTTP_STREAMING_CANCELLED,
                                       "CANCELLED",
                                       "no subscriber came back within "
                                       "streaming_detach");

    ngx_http_streaming_producer_abort(r);
    ngx_http_run_posted_requests(c);
}


/*
 * 1 if the detached producer goes on (the timer is set again as needed),
 * 0 if its detach time ran out.
 */
static ngx_uint_t
ngx_http_streaming_producer_detach_check(ngx_http_request_t *r,
    ngx_http_streaming_producer_ctx_t *ctx)
{
    uint64_t                      now, since;
    ngx_uint_t                    others, wake;
    ngx_http_streaming_stream_t  *st;

    now = ngx_http_streaming_store_now();
    others = 0;
    wake = 0;
    since = now;

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    if (st) {
        others = (st->subscribers > (ngx_uint_t) (ctx->sub != NULL));

        if (ctx->sub) {
            since = ngx_max(ctx->sub->left, st->last_left);

            if (others) {
                /* somebody came back: the detached client's place goes */
                wake = ngx_http_streaming_store_sub_remove_locked(ctx->zone,
                                                                  st,
                                                                  ctx->sub);
                ctx->sub = NULL;
                ctx->overflow = st->overflow;
            }

        } else {
            since = st->last_left;
        }
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    if (wake) {
        ngx_post_event(r->connection->write, &ngx_posted_events);
    }

    if (others) {
        /* a safety net; the last one to leave rings this worker */
        ngx_add_timer(&ctx->detach, ctx->conf->detach);
        return 1;
    }

    if (st && now < since + ctx->conf->detach) {
        ngx_add_timer(&ctx->detach, since + ctx->conf->detach - now);
        return 1;
    }

    return 0;
}


/*
 * Closes the producer from a timer: the upstream module's own cleanup
 * closes the upstream connection and ends the request (which may free it:
 * the caller touches only the connection afterwards).  Terminating the
 * request instead would run that cleanup and then read the freed request.
 */
static void
ngx_http_streaming_producer_abort(ngx_http_request_t *r)
{
    ngx_http_cleanup_pt  *cleanup;

    r->keepalive = 0;

    if (r->upstream && r->upstream->cleanup && *r->upstream->cleanup) {
        cleanup = r->upstream->cleanup;
        (*cleanup)(r);
        return;
    }

    ngx_http_finalize_request(r, NGX_ERROR);
}


/*
 * News of the stream: a held producer goes on once its subscribers caught
 * up or it was resumed; a command (pause, resume, cancel) is acted on from
 * a posted event, as this may run inside the producer's own filters.
 */
static void
ngx_http_streaming_producer_wake(ngx_http_streaming_waiter_t *w)
{
    ngx_uint_t                          held, status;
    ngx_http_request_t                 *r;
    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_producer_ctx_t  *ctx;

    r = w->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->done) {
        return;
    }

    if (ctx->detached) {
        /* the last subscriber may have left: the count starts again */
        (void) ngx_http_streaming_producer_detach_check(r, ctx);
    }

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    held = st ? ngx_http_streaming_producer_held(st) : 0;
    status = st ? st->status : NGX_HTTP_STREAMING_ERROR;

    ngx_http_streaming_store_unlock(ctx->zone);

    if (status != NGX_HTTP_STREAMING_ACTIVE
        && status != NGX_HTTP_STREAMING_PAUSED)
    {
        /* ended by a command (cancel) or gone */
        ngx_post_event(&ctx->notice, &ngx_posted_events);
        return;
    }

    if ((status == NGX_HTTP_STREAMING_PAUSED) != ctx->paused) {
        ngx_post_event(&ctx->notice, &ngx_posted_events);
    }

    if (ctx->overflow && !held) {
        ctx->overflow = 0;

        /* the upstream module's loop feeds the held input again */
        ngx_post_event(r->connection->write, &ngx_posted_events);
        return;
    }

    ctx->overflow = held;
}


/* acts on a command: tells its client, or stops the upstream */
static void
ngx_http_streaming_producer_notice(ngx_event_t *ev)
{
    uint64_t                            now;
    ngx_uint_t                          status;
    ngx_connection_t                   *c;
    ngx_http_request_t                 *r;
    ngx_http_streaming_stream_t        *st;
    ngx_http_streaming_status_msg_t     msg;
    ngx_http_streaming_producer_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (ctx->done) {
        return;
    }

    ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_producer_stream_locked(ctx);

    status = st ? st->status : NGX_HTTP_STREAMING_ERROR;

    if (st) {
        ngx_http_streaming_status_msg(st, &msg);
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    if (status != NGX_HTTP_STREAMING_ACTIVE
        && status != NGX_HTTP_STREAMING_PAUSED)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "streaming: stream \"%V\" was ended by a command, "
                      "closing its producer", &ctx->req.id);

        ngx_http_streaming_producer_stop(r, ctx, NGX_HTTP_STREAMING_CANCELLED,
                                         NULL, NULL);
        return;
    }

    ctx->paused = (status == NGX_HTTP_STREAMING_PAUSED);

    if (ctx->raw || ctx->detached) {
        return;
    }

    now = ngx_http_streaming_store_now();
    msg.code.len = 0;

    ngx_http_streaming_format_status(&ctx->out, &ctx->enc, &msg, now);

    if (ngx_http_streaming_producer_send(r, ctx) == NGX_ERROR) {
        c->error = 1;
    }

    ngx_http_run_posted_requests(c);
}


/* the stream, if it is still the one this request created */
static ngx_http_streaming_stream_t *
ngx_http_streaming_producer_stream_locked(
    ngx_http_streaming_producer_ctx_t *ctx)
{
    return ngx_http_streaming_store_get_locked(ctx->zone, &ctx->req.id,
                                               ctx->nonce, &ctx->st);
}
