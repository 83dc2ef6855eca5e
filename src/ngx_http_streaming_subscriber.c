
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
#include "ngx_http_streaming_ids.h"
#include "ngx_http_streaming_notify.h"
#include "ngx_http_streaming_subscriber.h"
#include "ngx_http_streaming_share.h"
#include "ngx_http_streaming_websocket.h"


/* when streaming_heartbeat is off */
#define NGX_HTTP_STREAMING_NO_HEARTBEAT  (24 * 60 * 60 * 1000)

/* how soon subscribers learn that their worker is exiting */
#define NGX_HTTP_STREAMING_EXIT_WATCH    200


/* an SSE / NDJSON subscriber: one stream, a connection of its own */
typedef struct {
    ngx_http_streaming_subscriber_t   s;        /* the first member */
    ngx_http_streaming_sink_t         sink;
} ngx_http_streaming_sse_t;


static void ngx_http_streaming_subscriber_cleanup(void *data);
static ngx_int_t ngx_http_streaming_subscriber_deliver_some(
    ngx_http_streaming_subscriber_t *ctx);
static void ngx_http_streaming_subscriber_flush(
    ngx_http_streaming_subscriber_t *ctx, ngx_uint_t end);
static void ngx_http_streaming_sse_send(ngx_http_streaming_sink_t *sink,
    ngx_uint_t last);
static void ngx_http_streaming_sse_shutdown(ngx_http_streaming_sink_t *sink);
static void ngx_http_streaming_subscriber_write_handler(
    ngx_http_request_t *r);
static void ngx_http_streaming_subscriber_wake(
    ngx_http_streaming_waiter_t *w);
static void ngx_http_streaming_subscriber_heartbeat(ngx_event_t *ev);
static ngx_http_streaming_stream_t *ngx_http_streaming_subscriber_stream(
    ngx_http_streaming_subscriber_t *ctx);
static ngx_int_t ngx_http_streaming_subscriber_expired(ngx_http_request_t *r,
    uint64_t first);
static void ngx_http_streaming_doorbell(ngx_event_t *ev);
static void ngx_http_streaming_wake(ngx_http_streaming_zone_t *zone,
    void *st);
static void ngx_http_streaming_exit_watch_handler(ngx_event_t *ev);


/*
 * This worker's sinks, and a timer that runs while there are some:
 * a worker that exits gracefully fires no cancelable timer, it just goes
 * once only those remain, so this one is not cancelable and ends them with
 * SHUTDOWN first.
 */
static ngx_queue_t  ngx_http_streaming_local;
static ngx_event_t  ngx_http_streaming_exit_watch;


static ngx_str_t  ngx_http_streaming_stream_id = ngx_string("Stream-Id");
static ngx_str_t  ngx_http_streaming_stream_subscriber =
    ngx_string("Stream-Subscriber");


/* streaming_subscribe: GET a stream by id, from a sequence number */
ngx_int_t
ngx_http_streaming_subscriber_handler(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    ngx_str_t                           value, lid;
    ngx_uint_t                          i, websocket;
    ngx_table_elt_t                    *h;
    ngx_http_streaming_loc_conf_t      *slcf;
    ngx_http_streaming_subscription_t   sn;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    ngx_memzero(&sn, sizeof(ngx_http_streaming_subscription_t));
    sn.start = NGX_HTTP_STREAMING_START_FIRST;
    sn.format = NGX_CONF_UNSET_UINT;

    if (slcf->id) {
        if (ngx_http_complex_value(r, slcf->id, &sn.id) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else if (ngx_http_arg(r, (u_char *) "id", 2, &value) == NGX_OK) {
        sn.id = value;
    }

    h = ngx_http_streaming_header_in(r, "Last-Event-ID", 13);

    if (h) {
        if (ngx_http_streaming_last_event_id(&h->value, &lid, &sn.start)
            != NGX_OK)
        {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "INVALID_MESSAGE",
                                       "Last-Event-ID is not of the form "
                                       "<streamId>:<sequence>");
        }

        if (sn.id.len
            && (sn.id.len != lid.len
                || ngx_strncmp(sn.id.data, lid.data, lid.len) != 0))
        {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "INVALID_MESSAGE",
                                       "Last-Event-ID names another stream");
        }

        sn.id = lid;
        sn.last_event_id = 1;
        ngx_http_streaming_last_event_token(&h->value, &sn.token);

    } else if (ngx_http_arg(r, (u_char *) "from", 4, &value) == NGX_OK
               || ngx_http_arg(r, (u_char *) "starting_after", 14, &value)
                  == NGX_OK)
    {
        if (value.len == 4 && ngx_strncmp(value.data, "live", 4) == 0) {
            sn.start = NGX_HTTP_STREAMING_START_LIVE;

        } else if (ngx_http_streaming_sequence(&value, &sn.start) != NGX_OK) {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "INVALID_MESSAGE",
                                       "from must be a sequence number "
                                       "or \"live\"");
        }
    }

    if (ngx_http_arg(r, (u_char *) "ack", 3, &value) == NGX_OK) {
        if (value.len != 1 || (value.data[0] != '0' && value.data[0] != '1')) {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "INVALID_MESSAGE",
                                                 "ack must be 0 or 1");
        }

        sn.acks = (value.data[0] == '1');
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {

        for (i = 0; ngx_http_streaming_format_names[i].len; i++) {
            if (ngx_http_streaming_format_names[i].len == value.len
                && ngx_strncmp(ngx_http_streaming_format_names[i].data,
                               value.data, value.len) == 0)
            {
                sn.format = i;
                break;
            }
        }

        if (sn.format == NGX_CONF_UNSET_UINT) {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "INVALID_MESSAGE",
                                       "format must be passthrough, omni, "
                                       "ndjson or jsonrpc");
        }

    } else {
        h = ngx_http_streaming_header_in(r, "Accept", 6);

        if (h
            && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                                (u_char *) "application/x-ndjson", 20 - 1)
               != NULL)
        {
            sn.format = NGX_HTTP_STREAMING_FORMAT_NDJSON;
        }
    }

    websocket = ngx_http_streaming_websocket_wanted(r);

    /* a socket may open with no stream and subscribe later */

    if ((sn.id.len || !websocket)
        && !ngx_http_streaming_id_valid(sn.id.data, sn.id.len))
    {
        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "INVALID_ID",
                                             "stream id must be 1-128 "
                                             "characters of [A-Za-z0-9._~-]");
    }

    if (websocket) {
        return ngx_http_streaming_websocket_start(r, slcf->subscribe->data,
                                                  &sn);
    }

    return ngx_http_streaming_subscriber_start(r, slcf->subscribe->data, &sn);
}


/*
 * Serves the request as a subscriber of the stream: the answers that
 * refuse it, then the header, the replay of what the zone holds, and live
 * delivery.
 */
ngx_int_t
ngx_http_streaming_subscriber_start(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn)
{
    ngx_int_t                        rc;
    ngx_str_t                       *type, subscriber;
    ngx_pool_cleanup_t              *cln;
    ngx_http_streaming_sse_t        *sse;
    ngx_http_streaming_sink_t       *sink;
    ngx_http_streaming_refusal_t     no;
    ngx_http_streaming_init_msg_t    init;
    ngx_http_streaming_loc_conf_t   *slcf;
    ngx_http_streaming_subscriber_t *ctx;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    sse = ngx_pcalloc(r->pool, sizeof(ngx_http_streaming_sse_t));
    if (sse == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = &sse->s;
    sink = &sse->sink;

    ngx_http_streaming_sink_init(sink, r, slcf->send_buffer);
    sink->send = ngx_http_streaming_sse_send;
    sink->shutdown = ngx_http_streaming_sse_shutdown;
    ctx->sink = sink;

    cln->handler = ngx_http_streaming_subscriber_cleanup;
    cln->data = sse;

    rc = ngx_http_streaming_subscriber_attach(r, zone, sn, ctx, &init, &no);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        sink->done = 1;
        return ngx_http_streaming_subscriber_refuse(r, &no);
    }

    ngx_http_set_ctx(r, ctx, ngx_http_streaming_module);

    /* the header */

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;

    type = ngx_http_streaming_format_type(&ctx->enc);
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    subscriber = init.subscriber_id;

    if (ngx_http_streaming_set_header(r, &ngx_http_streaming_stream_id,
                                      &ctx->req.id)
        != NGX_OK
        || ngx_http_streaming_set_no_cache(r) != NGX_OK
        || ngx_http_streaming_set_token(r, &ctx->req.token) != NGX_OK
        || (subscriber.len
            && ngx_http_streaming_set_header(r,
                                        &ngx_http_streaming_stream_subscriber,
                                        &subscriber)
               != NGX_OK))
    {
        sink->done = 1;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        sink->done = 1;
        return rc;
    }

    /*
     * the head goes now, not with the first chunk (postpone_output would
     * hold it): a client of a live stream learns at once that it is in
     */

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        sink->done = 1;
        return NGX_ERROR;
    }

    ngx_http_streaming_format_init(&sink->out, &ctx->enc, &init,
                                   ngx_http_streaming_store_now());

    ngx_http_streaming_sink_watch(sink);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_streaming_subscriber_write_handler;

    ctx->heartbeat.handler = ngx_http_streaming_subscriber_heartbeat;
    ctx->heartbeat.data = ctx;
    ctx->heartbeat.log = r->connection->log;
    ctx->heartbeat.cancelable = 1;

    ngx_add_timer(&ctx->heartbeat, slcf->heartbeat ? slcf->heartbeat
                                   : NGX_HTTP_STREAMING_NO_HEARTBEAT);

    r->main->count++;

    ngx_http_streaming_subscriber_deliver(ctx);

    return NGX_DONE;
}


/* the HTTP answer to a refused subscription */
ngx_int_t
ngx_http_streaming_subscriber_refuse(ngx_http_request_t *r,
    ngx_http_streaming_refusal_t *no)
{
    switch (no->status) {

    case NGX_HTTP_NO_CONTENT:
        return NGX_HTTP_NO_CONTENT;

    case NGX_HTTP_STREAMING_GONE:
        return ngx_http_streaming_subscriber_expired(r, no->first);

    default:
        return ngx_http_streaming_send_error(r, no->status, no->code,
                                             no->message);
    }
}


/*
 * Attaches a subscriber to the stream sn names, in the zone: its place
 * among the stream's subscribers, its encoder and the stream-init message
 * it starts with.  ctx->sink is set by the caller; nothing is sent.
 * NGX_DECLINED: refused, as *no says; NGX_ERROR: out of memory.
 */
ngx_int_t
ngx_http_streaming_subscriber_attach(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn,
    ngx_http_streaming_subscriber_t *ctx, ngx_http_streaming_init_msg_t *init,
    ngx_http_streaming_refusal_t *no)
{
    uint64_t                          start;
    ngx_int_t                         rc;
    ngx_str_t                         id, subscriber, token;
    ngx_uint_t                        finished, framing;
    ngx_http_streaming_sub_t         *sub;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_loc_conf_t    *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    ngx_memzero(no, sizeof(ngx_http_streaming_refusal_t));
    ngx_memzero(init, sizeof(ngx_http_streaming_init_msg_t));

    id.data = ngx_pnalloc(r->pool, sn->id.len);
    if (id.data == NULL) {
        return NGX_ERROR;
    }

    id.len = sn->id.len;
    ngx_memcpy(id.data, sn->id.data, id.len);

    ngx_str_null(&subscriber);
    ngx_str_null(&token);

    ngx_http_streaming_store_lock(zone);

    st = ngx_http_streaming_store_find_locked(zone, id.data, id.len);

    if (st == NULL) {
        ngx_http_streaming_store_unlock(zone);

        if (sn->producer) {
            /* EventSource stops reconnecting on 204 */
            no->status = NGX_HTTP_NO_CONTENT;
            return NGX_DECLINED;
        }

        no->status = NGX_HTTP_NOT_FOUND;
        no->code = "INVALID_STREAM";
        no->message = "no such stream";
        return NGX_DECLINED;
    }

    rc = ngx_http_streaming_token_check(r, &slcf->secret, &id, st->nonce,
                                        &sn->token, &token);
    if (rc != NGX_OK) {
        ngx_http_streaming_store_unlock(zone);

        if (rc != NGX_DECLINED) {
            return NGX_ERROR;
        }

        no->status = NGX_HTTP_FORBIDDEN;
        no->code = "FORBIDDEN";
        no->message = "the stream's token is missing or wrong";
        return NGX_DECLINED;
    }

    finished = (st->status != NGX_HTTP_STREAMING_ACTIVE
                && st->status != NGX_HTTP_STREAMING_PAUSED);

    start = sn->start;

    if (start == NGX_HTTP_STREAMING_START_LIVE) {
        start = st->sequence;

    } else if (start == NGX_HTTP_STREAMING_START_FIRST) {
        start = st->first - 1;

    } else if (start >= st->sequence
               && (finished || sn->last_event_id || sn->ws))
    {
        if (finished && !sn->ws) {
            /* nothing after it, ever: an EventSource must stop */
            ngx_http_streaming_store_unlock(zone);
            no->status = NGX_HTTP_NO_CONTENT;
            return NGX_DECLINED;
        }

        /* a socket gets the end (a finished stream) or what comes */
        start = st->sequence;

    } else if (start > st->sequence) {
        ngx_http_streaming_store_unlock(zone);

        no->status = NGX_HTTP_BAD_REQUEST;
        no->code = "INVALID_MESSAGE";
        no->message = "sequence beyond the stream";
        return NGX_DECLINED;

    } else if (start + 1 < st->first) {
        no->first = st->first;
        ngx_http_streaming_store_unlock(zone);

        no->status = NGX_HTTP_STREAMING_GONE;
        no->code = "CHUNKS_EXPIRED";
        no->message = "resume point no longer retained";
        return NGX_DECLINED;
    }

    rc = ngx_http_streaming_store_sub_add_locked(zone, st, start, &sub);

    if (rc != NGX_OK) {
        ngx_http_streaming_store_unlock(zone);

        no->status = NGX_HTTP_SERVICE_UNAVAILABLE;

        if (rc == NGX_BUSY) {
            no->code = "TOO_MANY_SUBSCRIBERS";
            no->message = "max_subscribers reached";

        } else {
            no->code = "ZONE_FULL";
            no->message = "shared memory zone is full";
        }

        return NGX_DECLINED;
    }

    if (start > 0) {
        zone->sh->totals.resumes++;
    }

    ngx_memcpy(ctx->nonce, st->nonce, sizeof(ctx->nonce));
    framing = st->framing;
    ctx->zone = zone;
    ctx->st = st;
    ctx->sub = sub;
    ctx->sub_id = sub->id;
    ctx->cursor = start;
    ctx->seen = st->status;
    ctx->checkpoint = st->checkpoint_time;

    if (sn->acks || sn->ws) {
        sub->acks = 1;
        ctx->acks = 1;
    }

    ngx_http_streaming_init_msg(r->pool, st, init);

    ngx_http_streaming_store_unlock(zone);

    if (ctx->acks) {
        subscriber.data = ngx_pnalloc(r->pool, NGX_INT32_LEN);
        if (subscriber.data == NULL) {
            return NGX_ERROR;
        }

        subscriber.len = ngx_sprintf(subscriber.data, "%uD", ctx->sub_id)
                         - subscriber.data;
    }

    init->subscriber_id = subscriber;
    init->resume_position = start;

    ctx->req.id = id;
    ctx->req.token = token;
    ctx->req.resumed_from = (start > 0) ? (int64_t) start : -1;
    ctx->req.first_chunk_ms = -1;
    ctx->req.sequence = start;
    ctx->req.status = ctx->seen;

    ctx->conf = slcf;

    ctx->enc.stream_id = id;
    ctx->enc.token = token;
    ctx->enc.sse = (framing == NGX_HTTP_STREAMING_FRAMING_SSE);

    if (sn->format != NGX_CONF_UNSET_UINT) {
        ctx->enc.format = sn->format;

    } else if (sn->producer) {
        ctx->enc.format = slcf->format;

    } else {
        ctx->enc.format = ctx->enc.sse ? NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH
                                       : NGX_HTTP_STREAMING_FORMAT_OMNI;
    }

    ctx->waiter.wake = ngx_http_streaming_subscriber_wake;
    ctx->waiter.data = ctx;
    ctx->waiter.key = ctx->st;

    ngx_http_streaming_waiter_add(zone, &ctx->waiter);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming subscriber: stream \"%V\" after %uL",
                   &id, start);

    return NGX_OK;
}


/* the subscriber leaves the stream: its place, its wake-ups */
void
ngx_http_streaming_subscriber_detach(ngx_http_streaming_subscriber_t *ctx)
{
    ngx_pid_t                     producer;
    ngx_uint_t                    wake;
    ngx_http_streaming_stream_t  *st;

    if (ctx->heartbeat.timer_set) {
        ngx_del_timer(&ctx->heartbeat);
    }

    ngx_http_streaming_waiter_remove(&ctx->waiter);

    if (ctx->zone == NULL || ctx->sub == NULL) {
        return;
    }

    wake = 0;
    producer = 0;

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_subscriber_stream(ctx);

    if (st) {
        wake = ngx_http_streaming_store_sub_remove_locked(ctx->zone, st,
                                                          ctx->sub);
        producer = st->producer;

        /* the last reader left: a detached producer starts counting */
        if (st->subscribers <= 1) {
            wake = 1;
        }
    }

    ngx_http_streaming_store_unlock(ctx->zone);

    ctx->sub = NULL;

    if (wake) {
        ngx_http_streaming_ring(ctx->zone, st, &producer, 1);
    }
}


void
ngx_http_streaming_sink_init(ngx_http_streaming_sink_t *sink,
    ngx_http_request_t *r, size_t limit)
{
    sink->request = r;
    sink->limit = limit;

    ngx_http_streaming_out_init(&sink->out, r->pool);
    ngx_http_streaming_refs_init(&sink->refs, r->pool);
    sink->out.tag = (ngx_buf_tag_t) &ngx_http_streaming_module;
}


/* this worker's exit ends the sink's streams with SHUTDOWN */
void
ngx_http_streaming_sink_watch(ngx_http_streaming_sink_t *sink)
{
    ngx_queue_insert_tail(&ngx_http_streaming_local, &sink->local);

    if (!ngx_http_streaming_exit_watch.timer_set) {
        ngx_add_timer(&ngx_http_streaming_exit_watch,
                      NGX_HTTP_STREAMING_EXIT_WATCH);
    }
}


void
ngx_http_streaming_sink_unwatch(ngx_http_streaming_sink_t *sink)
{
    if (sink->local.next) {
        ngx_queue_remove(&sink->local);
        sink->local.next = NULL;
    }
}


/* the request is gone: what its output held */
void
ngx_http_streaming_sink_free(ngx_http_streaming_sink_t *sink)
{
    ngx_http_streaming_sink_unwatch(sink);
    ngx_http_streaming_out_free(&sink->out);
    ngx_http_streaming_refs_release(&sink->refs);
    sink->done = 1;
}


void
ngx_http_streaming_waiter_add(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_waiter_t *w)
{
    ngx_uint_t  b;

    b = ngx_http_streaming_wait_bucket(w->key);

    ngx_queue_insert_tail(&zone->waiters[b], &w->queue);
}


void
ngx_http_streaming_waiter_remove(ngx_http_streaming_waiter_t *w)
{
    if (w->queue.next) {
        ngx_queue_remove(&w->queue);
        w->queue.next = NULL;
    }
}


/*
 * News of a stream (NULL: of anything): its workers are told which
 * stream and rung, and what waits for it in this worker looks.
 */
void
ngx_http_streaming_ring(ngx_http_streaming_zone_t *zone, void *st,
    ngx_pid_t *pids, ngx_uint_t n)
{
    ngx_uint_t  i, remote;

    remote = 0;

    for (i = 0; i < n; i++) {
        if (pids[i] != ngx_pid) {
            remote++;
        }
    }

    if (remote && zone->doorbell) {
        ngx_http_streaming_store_lock(zone);

        for (i = 0; i < n; i++) {
            if (pids[i] != ngx_pid) {
                ngx_http_streaming_store_news_locked(zone, pids[i], st);
            }
        }

        ngx_http_streaming_store_unlock(zone);

        for (i = 0; i < n; i++) {
            if (pids[i] != ngx_pid) {
                (void) ngx_http_streaming_notify_ring(zone->doorbell,
                                                      zone->sh->nonce,
                                                      sizeof(zone->sh->nonce),
                                                      pids[i]);
            }
        }
    }

    ngx_http_streaming_wake(zone, st);
}


/* what waits in this worker for news of the stream (NULL: all) looks */
static void
ngx_http_streaming_wake(ngx_http_streaming_zone_t *zone, void *st)
{
    ngx_uint_t                    b, first, last;
    ngx_queue_t                  *q, *next, *h;
    ngx_http_streaming_waiter_t  *w;

    if (st) {
        first = ngx_http_streaming_wait_bucket(st);
        last = first;

    } else {
        first = 0;
        last = NGX_HTTP_STREAMING_WAIT_BUCKETS - 1;
    }

    for (b = first; b <= last; b++) {
        h = &zone->waiters[b];

        for (q = ngx_queue_head(h); q != ngx_queue_sentinel(h); q = next) {
            next = ngx_queue_next(q);
            w = ngx_queue_data(q, ngx_http_streaming_waiter_t, queue);

            /* a bucket holds other streams' too */

            if (st == NULL || w->key == st) {
                w->wake(w);
            }
        }
    }
}


ngx_int_t
ngx_http_streaming_subscriber_init_process(ngx_cycle_t *cycle,
    ngx_http_streaming_zone_t *zone)
{
    if (ngx_http_streaming_exit_watch.handler == NULL) {
        ngx_queue_init(&ngx_http_streaming_local);

        ngx_http_streaming_exit_watch.handler =
                                       ngx_http_streaming_exit_watch_handler;
        ngx_http_streaming_exit_watch.log = cycle->log;
        ngx_http_streaming_exit_watch.data = cycle;
    }

    zone->doorbell = ngx_http_streaming_notify_open(cycle, zone->sh->nonce,
                                                    sizeof(zone->sh->nonce),
                                                    ngx_http_streaming_doorbell,
                                                    zone);

    return zone->doorbell ? NGX_OK : NGX_ERROR;
}


void
ngx_http_streaming_subscriber_exit_process(ngx_http_streaming_zone_t *zone)
{
    if (zone->doorbell) {
        ngx_http_streaming_notify_close(zone->doorbell);
        zone->doorbell = NULL;
    }
}


static void
ngx_http_streaming_exit_watch_handler(ngx_event_t *ev)
{
    ngx_queue_t                *q;
    ngx_connection_t           *c;
    ngx_http_streaming_sink_t  *sink;

    if (!ngx_exiting && !ngx_terminate) {
        if (!ngx_queue_empty(&ngx_http_streaming_local)) {
            ngx_add_timer(ev, NGX_HTTP_STREAMING_EXIT_WATCH);
        }

        return;
    }

    /* the clients reconnect to another worker and resume */

    while (!ngx_queue_empty(&ngx_http_streaming_local)) {
        q = ngx_queue_head(&ngx_http_streaming_local);
        ngx_queue_remove(q);

        sink = ngx_queue_data(q, ngx_http_streaming_sink_t, local);
        sink->local.next = NULL;

        if (sink->done) {
            continue;
        }

        c = sink->request->connection;

        sink->shutdown(sink);
        ngx_http_run_posted_requests(c);
    }
}


static void
ngx_http_streaming_doorbell(ngx_event_t *ev)
{
    ngx_connection_t           *c;
    ngx_http_streaming_zone_t  *zone;

    c = ev->data;
    zone = c->data;

    ngx_uint_t   i, n, all;
    void        *streams[NGX_HTTP_STREAMING_NEWS];

    ngx_http_streaming_notify_drain(c);

    /* what this worker was rung about */

    ngx_http_streaming_store_lock(zone);
    n = ngx_http_streaming_store_news_take_locked(zone, streams, &all);
    ngx_http_streaming_store_unlock(zone);

    if (all) {
        ngx_http_streaming_wake(zone, NULL);
        return;
    }

    for (i = 0; i < n; i++) {
        ngx_http_streaming_wake(zone, streams[i]);
    }
}


static void
ngx_http_streaming_subscriber_cleanup(void *data)
{
    ngx_http_streaming_sse_t  *sse = data;

    ngx_http_streaming_sink_free(&sse->sink);
    ngx_http_streaming_subscriber_detach(&sse->s);
}


/*
 * Hands the client what follows its cursor, as much as its send buffer
 * takes, then the end when the stream is over.
 */
void
ngx_http_streaming_subscriber_deliver(ngx_http_streaming_subscriber_t *ctx)
{
    /* as long as the socket takes it all and more is there */

    while (ngx_http_streaming_subscriber_deliver_some(ctx) == NGX_AGAIN) {
        /* void */
    }
}


/* NGX_AGAIN: more chunks wait and the client may take them at once */
static ngx_int_t
ngx_http_streaming_subscriber_deliver_some(
    ngx_http_streaming_subscriber_t *ctx)
{
    uint64_t                          now, first, limit;
    ngx_pid_t                         producer;
    ngx_uint_t                        wake, end, report, more, share;
    ngx_http_request_t               *r;
    ngx_http_streaming_sink_t        *sink;
    u_char                            code[NGX_HTTP_STREAMING_CODE_MAX];
    u_char                            text[NGX_HTTP_STREAMING_ERROR_TEXT_MAX];
    ngx_http_streaming_chunk_t       *next;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_status_msg_t   msg;

    static ngx_str_t  gone = ngx_string("INVALID_STREAM");
    static ngx_str_t  gone_message = ngx_string("the stream is gone");
    static ngx_str_t  expired = ngx_string("CHUNKS_EXPIRED");
    static ngx_str_t  expired_message = ngx_string("fell behind the retained "
                                                   "history");

    sink = ctx->sink;
    r = sink->request;

    if (ctx->done || sink->done) {
        return NGX_OK;
    }

    ngx_http_streaming_sink_sent(sink);

    if (sink->out.size >= (off_t) sink->limit) {

        /* what waits goes first, as far as the socket takes it */

        sink->send(sink, 0);

        if (sink->done || sink->out.size >= (off_t) sink->limit) {
            /* the client is slow: its cursor waits, the write event wakes it */
            return NGX_OK;
        }
    }

    now = ngx_http_streaming_store_now();
    wake = 0;
    end = 0;
    report = 0;
    producer = 0;

    ngx_http_streaming_store_lock(ctx->zone);

    st = ngx_http_streaming_subscriber_stream(ctx);

    if (st == NULL) {
        ngx_http_streaming_store_unlock(ctx->zone);
        ctx->sub = NULL;
        ngx_http_streaming_subscriber_end(ctx, NGX_HTTP_STREAMING_ERROR,
                                          &gone, &gone_message);
        return NGX_OK;
    }

    if (ctx->cursor >= st->sequence) {
        next = NULL;

    } else if (ctx->chunk && st->first <= ctx->cursor) {
        next = ctx->chunk->next;

    } else if (ctx->cursor + 1 >= st->first) {
        next = ngx_http_streaming_store_chunk_after_locked(st, ctx->cursor);

    } else {
        /* evicted under "streaming_overflow evict" */
        first = st->first;
        ngx_http_streaming_store_unlock(ctx->zone);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: subscriber of \"%V\" fell behind: %uL "
                      "is no longer retained, the earliest is %uL",
                      &ctx->req.id, ctx->cursor + 1, first);

        ngx_http_streaming_subscriber_end(ctx, NGX_HTTP_STREAMING_ERROR,
                                          &expired, &expired_message);
        return NGX_OK;
    }

    /* with other readers here, a chunk is encoded once for them all */
    share = (ngx_http_streaming_store_local_subs_locked(st) > 1);

    /* an acking subscriber gets at most streaming_window unacknowledged */
    limit = ctx->acks ? ctx->sub->acked + ctx->conf->window
                      : NGX_HTTP_STREAMING_MAX_SEQUENCE;

    while (next && sink->out.size < (off_t) sink->limit
           && next->sequence <= limit)
    {

        if (!share
            || ngx_http_streaming_share_chunk(&sink->out, &sink->refs,
                                              &ctx->enc, ctx->nonce,
                                              next->sequence, next->data,
                                              next->len, now)
               != NGX_OK)
        {
            ngx_http_streaming_format_chunk(&sink->out, &ctx->enc,
                                            next->sequence, next->data,
                                            next->len, now);
        }

        wake |= ngx_http_streaming_store_sub_advance_locked(ctx->zone, st,
                                                            ctx->sub, next);

        ctx->chunk = next;
        ctx->cursor = next->sequence;
        ctx->req.chunks++;
        ctx->req.bytes += next->len;

        next = next->next;
    }

    more = (next != NULL && next->sequence <= limit);

    ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));

    if (st->status != NGX_HTTP_STREAMING_ACTIVE
        && st->status != NGX_HTTP_STREAMING_PAUSED)
    {
        end = (ctx->cursor >= st->sequence);

    } else if (st->status != ctx->seen
               || (st->checkpoint_time != ctx->checkpoint
                   && ctx->cursor >= st->checkpoint_sequence))
    {
        /* a new state, or a checkpoint it has caught up with */
        report = 1;
    }

    if (end || report) {
        ngx_http_streaming_status_msg(st, &msg);
        ctx->seen = st->status;
        ctx->checkpoint = st->checkpoint_time;

        /* out of the zone before it is unlocked */

        msg.code.data = ngx_cpymem(code, msg.code.data, msg.code.len)
                        - msg.code.len;
        msg.message.data = ngx_cpymem(text, msg.message.data, msg.message.len)
                           - msg.message.len;
    }

    producer = st->producer;

    ngx_http_streaming_store_unlock(ctx->zone);

    if (ctx->req.chunks && ctx->req.first_chunk_ms < 0) {
        ctx->req.first_chunk_ms = (ngx_msec_int_t)
                                  (now - ((uint64_t) r->start_sec * 1000
                                          + r->start_msec));
    }

    ctx->req.sequence = ctx->cursor;
    ctx->req.status = ctx->seen;

    if (wake) {
        ngx_http_streaming_ring(ctx->zone, st, &producer, 1);
    }

    if (report) {
        ngx_http_streaming_format_status(&sink->out, &ctx->enc, &msg, now);
    }

    if (end) {
        ngx_http_streaming_format_final(&sink->out, &ctx->enc, ctx->cursor + 1,
                                        now);
        ngx_http_streaming_format_status(&sink->out, &ctx->enc, &msg, now);
    }

    ngx_http_streaming_subscriber_flush(ctx, end);

    if (more && !ctx->done && !sink->done
        && sink->out.size < (off_t) sink->limit)
    {
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/* an end the stream did not have: gone, evicted, worker exiting */
void
ngx_http_streaming_subscriber_end(ngx_http_streaming_subscriber_t *ctx,
    ngx_uint_t status, ngx_str_t *code, ngx_str_t *message)
{
    uint64_t                          now;
    ngx_http_streaming_status_msg_t   msg;

    now = ngx_http_streaming_store_now();

    ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));
    msg.status = ngx_http_streaming_status_names[status];
    msg.total_size = -1;
    msg.remaining_ms = -1;
    msg.code = *code;
    msg.message = *message;

    ngx_http_streaming_format_status(&ctx->sink->out, &ctx->enc, &msg, now);
    ngx_http_streaming_subscriber_flush(ctx, 1);
}


/*
 * What the subscriber's turn wrote goes out; end: its stream is over for
 * it, which ends an SSE response; a WebSocket drops the subscription.
 */
static void
ngx_http_streaming_subscriber_flush(ngx_http_streaming_subscriber_t *ctx,
    ngx_uint_t end)
{
    if (end) {
        ctx->done = 1;
        ngx_http_streaming_waiter_remove(&ctx->waiter);

        if (ctx->heartbeat.timer_set) {
            ngx_del_timer(&ctx->heartbeat);
        }
    }

    ctx->sink->send(ctx->sink, end);
}


/* the worker exits: the client reconnects to another and resumes */
void
ngx_http_streaming_subscriber_shutdown(ngx_http_streaming_subscriber_t *ctx)
{
    static ngx_str_t  shutdown = ngx_string("SHUTDOWN");
    static ngx_str_t  shutdown_message = ngx_string("worker exiting, "
                                                    "reconnect to resume");

    ngx_http_streaming_subscriber_end(ctx, NGX_HTTP_STREAMING_ERROR,
                                      &shutdown, &shutdown_message);
}


static void
ngx_http_streaming_sse_shutdown(ngx_http_streaming_sink_t *sink)
{
    ngx_http_streaming_sse_t  *sse;

    sse = (ngx_http_streaming_sse_t *) ((u_char *) sink
                                   - offsetof(ngx_http_streaming_sse_t, sink));

    ngx_http_streaming_subscriber_shutdown(&sse->s);
}


/* an SSE / NDJSON response: what "out" holds; last: the response ends */
static void
ngx_http_streaming_sse_send(ngx_http_streaming_sink_t *sink, ngx_uint_t last)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl, *out;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = sink->request;
    c = r->connection;

    if (sink->done) {
        return;
    }

    if (sink->out.failed) {
        sink->done = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    out = sink->out.first;

    if (last) {
        sink->done = 1;

        b = ngx_calloc_buf(r->pool);
        cl = ngx_alloc_chain_link(r->pool);

        if (b == NULL || cl == NULL) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }

        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
        cl->buf = b;
        cl->next = NULL;

        *sink->out.last = cl;
        out = sink->out.first;
    }

    if (out == NULL && sink->busy == NULL && !c->buffered) {
        return;
    }

    rc = ngx_http_streaming_sink_write(sink, out);

    if (last) {
        ngx_http_finalize_request(r, rc);

    } else if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/*
 * Sends "out" (may be NULL: what waits goes on) as far as the socket
 * takes it, flushed, and keeps the send timer while some waits.  NGX_OK
 * when all went, NGX_AGAIN when some waits, NGX_ERROR (the sink is done,
 * the caller finalizes the request).
 */
ngx_int_t
ngx_http_streaming_sink_write(ngx_http_streaming_sink_t *sink,
    ngx_chain_t *out)
{
    ngx_int_t                  rc;
    ngx_chain_t               *cl;
    ngx_event_t               *wev;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_http_core_loc_conf_t  *clcf;

    r = sink->request;
    c = r->connection;

    if (out) {
        for (cl = out; cl->next; cl = cl->next) { /* void */ }
        cl->buf->flush = 1;
    }

    rc = ngx_http_output_filter(r, out);

    ngx_http_streaming_out_update(&sink->out, &sink->busy, &out);
    sink->out.size += ngx_http_streaming_refs_sent(&sink->refs);

    wev = c->write;
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (rc == NGX_ERROR
        || ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK)
    {
        sink->done = 1;
        return NGX_ERROR;
    }

    if (c->buffered) {
        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        return NGX_AGAIN;
    }

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    return NGX_OK;
}


/* what the client took since the last call makes room again */
void
ngx_http_streaming_sink_sent(ngx_http_streaming_sink_t *sink)
{
    ngx_chain_t  *none;

    if (sink->out.first == NULL) {
        none = NULL;
        ngx_http_streaming_out_update(&sink->out, &sink->busy, &none);
        sink->out.size += ngx_http_streaming_refs_sent(&sink->refs);
    }
}


static void
ngx_http_streaming_subscriber_write_handler(ngx_http_request_t *r)
{
    ngx_event_t                      *wev;
    ngx_http_streaming_subscriber_t  *ctx;

    wev = r->connection->write;
    ctx = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (wev->timedout) {
        /* it may resume later, from where it stands */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "streaming: subscriber of \"%V\" timed out",
                      &ctx->req.id);

        r->connection->timedout = 1;
        ctx->sink->done = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    ngx_http_streaming_subscriber_deliver(ctx);
}


/* news in the zone: look if it concerns this subscriber */
static void
ngx_http_streaming_subscriber_wake(ngx_http_streaming_waiter_t *w)
{
    ngx_http_streaming_subscriber_t  *ctx;

    ctx = w->data;

    if (ctx->done || ctx->sink->done) {
        return;
    }

    /*
     * an unlocked look at the stream is only a hint: delivery checks it
     * under the lock
     */

    if (ctx->st == NULL
        || ctx->st->sequence != ctx->cursor || ctx->st->status != ctx->seen)
    {
        ngx_post_event(ctx->sink->request->connection->write,
                       &ngx_posted_events);
    }
}


static void
ngx_http_streaming_subscriber_heartbeat(ngx_event_t *ev)
{
    ngx_msec_t                        interval;
    ngx_connection_t                 *c;
    ngx_http_streaming_status_msg_t   msg;
    ngx_http_streaming_subscriber_t  *ctx;

    ctx = ev->data;
    c = ctx->sink->request->connection;

    if (ctx->done || ctx->sink->done) {
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        ctx->sink->shutdown(ctx->sink);
        ngx_http_run_posted_requests(c);
        return;
    }

    interval = ctx->conf->heartbeat;

    if (interval) {
        ngx_memzero(&msg, sizeof(ngx_http_streaming_status_msg_t));
        msg.status = ngx_http_streaming_status_names[ctx->seen];
        msg.total_size = -1;
        msg.remaining_ms = -1;

        ngx_http_streaming_format_heartbeat(&ctx->sink->out, &ctx->enc, &msg,
                                            ngx_http_streaming_store_now());
    } else {
        interval = NGX_HTTP_STREAMING_NO_HEARTBEAT;
    }

    ngx_add_timer(&ctx->heartbeat, interval);

    /* a lost ring is made good here too */
    ngx_http_streaming_subscriber_deliver(ctx);

    ngx_http_run_posted_requests(c);
}


/* the stream, if it is still the one this subscriber attached to */
static ngx_http_streaming_stream_t *
ngx_http_streaming_subscriber_stream(ngx_http_streaming_subscriber_t *ctx)
{
    return ngx_http_streaming_store_get_locked(ctx->zone, &ctx->req.id,
                                               ctx->nonce, &ctx->st);
}


/* a stream's stream-init message, copied out of the zone */
void
ngx_http_streaming_init_msg(ngx_pool_t *pool, ngx_http_streaming_stream_t *st,
    ngx_http_streaming_init_msg_t *init)
{
    ngx_memzero(init, sizeof(ngx_http_streaming_init_msg_t));

    init->total_size = st->total_size;
    init->content_type.data = ngx_pnalloc(pool, st->type_len + 1);

    if (init->content_type.data) {
        init->content_type.len = st->type_len;
        ngx_memcpy(init->content_type.data, st->type, st->type_len);
    }
}


/* a stream's state as a stream-status message (pointing into the zone) */
void
ngx_http_streaming_status_msg(ngx_http_streaming_stream_t *st,
    ngx_http_streaming_status_msg_t *msg)
{
    msg->status = ngx_http_streaming_status_names[st->status];
    msg->bytes = st->bytes;
    msg->total_size = st->total_size;
    msg->remaining_ms = ngx_http_streaming_store_remaining_ms(st);
    msg->checkpoint = 1;
    msg->checkpoint_sequence = st->checkpoint_sequence;
    msg->checkpoint_bytes = st->checkpoint_bytes;
    msg->checkpoint_time = st->checkpoint_time;

    msg->code.len = st->code_len;
    msg->code.data = st->code;
    msg->message.len = st->message_len;
    msg->message.data = st->message;
}


/* 410, naming the earliest sequence still retained */
static ngx_int_t
ngx_http_streaming_subscriber_expired(ngx_http_request_t *r, uint64_t first)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, sizeof("resume point no longer retained, "
                                    "the earliest retained sequence is ")
                             + NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(p, "resume point no longer retained, the earliest retained "
                "sequence is %uL%Z", first);

    return ngx_http_streaming_send_error(r, NGX_HTTP_STREAMING_GONE,
                                         "CHUNKS_EXPIRED", (char *) p);
}
