
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_control.h"
#include "ngx_http_streaming_format.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_ids.h"
#include "ngx_http_streaming_message.h"
#include "ngx_http_streaming_status.h"
#include "ngx_http_streaming_subscriber.h"
#include "ngx_http_streaming_websocket.h"
#include "ngx_http_streaming_ws.h"


#define NGX_HTTP_STREAMING_UPGRADE_REQUIRED  426

/* ended streams a socket remembers: acks in flight for them are no error */
#define NGX_HTTP_STREAMING_WS_ENDED      8

/* a client message's strings (ids, token, reason) */
#define NGX_HTTP_STREAMING_WS_MESSAGE_POOL  1024

/* the socket's read buffer */
#define NGX_HTTP_STREAMING_WS_READ_SIZE  4096

/* subscriptions one socket may hold */
#define NGX_HTTP_STREAMING_WS_SUBS_MAX   1024

/* reads per read event before the others get their turn */
#define NGX_HTTP_STREAMING_WS_READS      8

/* heartbeats without a frame from the client before it is closed */
#define NGX_HTTP_STREAMING_WS_IDLE       3


typedef struct {
    ngx_http_streaming_request_t      req;      /* the first member */
    ngx_http_streaming_sink_t         sink;

    ngx_http_request_t               *request;
    ngx_http_streaming_zone_t        *zone;
    ngx_http_streaming_loc_conf_t    *conf;

    ngx_queue_t                       subs;     /* subscriptions */
    ngx_uint_t                        nsubs;

    ngx_http_streaming_encoder_t      enc;      /* responses */
    ngx_http_streaming_out_t         *frame;    /* a message being framed */
    ngx_http_streaming_out_t          state;    /* a stream's state */

    ngx_http_streaming_ws_parser_t    parser;
    u_char                           *message;  /* the parser's buffer */

    ngx_event_t                       ping;
    ngx_msec_t                        heard;    /* the client's last frame */

    /* streams that ended lately here (CRC-32 of their ids), for late acks */
    uint32_t                          ended[NGX_HTTP_STREAMING_WS_ENDED];
    ngx_uint_t                        nended;

    unsigned                          closing:1;  /* a close is queued */
    unsigned                          blocked:1;  /* reading waits for room */
} ngx_http_streaming_websocket_t;


static void ngx_http_streaming_websocket_cleanup(void *data);
static ngx_int_t ngx_http_streaming_websocket_handshake(ngx_http_request_t *r,
    u_char *accept, ngx_int_t *refused);
static ngx_int_t ngx_http_streaming_websocket_subscribe(
    ngx_http_streaming_websocket_t *ws, ngx_http_streaming_subscription_t *sn,
    ngx_http_streaming_refusal_t *no, ngx_http_streaming_subscriber_t **sub,
    ngx_http_streaming_init_msg_t *init);
static void ngx_http_streaming_websocket_drop(
    ngx_http_streaming_websocket_t *ws, ngx_http_streaming_subscriber_t *ctx);
static void ngx_http_streaming_websocket_read_handler(ngx_http_request_t *r);
static void ngx_http_streaming_websocket_write_handler(ngx_http_request_t *r);
static void ngx_http_streaming_websocket_read(
    ngx_http_streaming_websocket_t *ws);
static ngx_int_t ngx_http_streaming_websocket_event(
    ngx_http_streaming_websocket_t *ws);
static void ngx_http_streaming_websocket_message(
    ngx_http_streaming_websocket_t *ws, ngx_str_t *text);
static void ngx_http_streaming_websocket_control(
    ngx_http_streaming_websocket_t *ws, ngx_http_streaming_message_t *msg);
static void ngx_http_streaming_websocket_request(
    ngx_http_streaming_websocket_t *ws, ngx_http_streaming_message_t *msg);
static void ngx_http_streaming_websocket_status(
    ngx_http_streaming_websocket_t *ws, ngx_http_streaming_message_t *msg,
    ngx_http_streaming_subscriber_t *ctx);
static ngx_http_streaming_subscriber_t *ngx_http_streaming_websocket_find(
    ngx_http_streaming_websocket_t *ws, ngx_str_t *id);
static ngx_uint_t ngx_http_streaming_websocket_ended(
    ngx_http_streaming_websocket_t *ws, ngx_str_t *id);
static void ngx_http_streaming_websocket_respond(
    ngx_http_streaming_websocket_t *ws, ngx_str_t *correlation,
    ngx_chain_t *data, const char *code, const char *message);
static void ngx_http_streaming_websocket_frame(
    ngx_http_streaming_websocket_t *ws, ngx_uint_t opcode, u_char *data,
    size_t len);
static void ngx_http_streaming_websocket_close(
    ngx_http_streaming_websocket_t *ws, ngx_uint_t code, const char *reason);
static void ngx_http_streaming_websocket_end(
    ngx_http_streaming_websocket_t *ws);
static void ngx_http_streaming_websocket_run(
    ngx_http_streaming_websocket_t *ws);
static void ngx_http_streaming_websocket_send(ngx_http_streaming_sink_t *sink,
    ngx_uint_t last);
static ngx_int_t ngx_http_streaming_websocket_flush(
    ngx_http_streaming_websocket_t *ws);
static void ngx_http_streaming_websocket_shutdown(
    ngx_http_streaming_sink_t *sink);
static void ngx_http_streaming_websocket_ping(ngx_event_t *ev);


#define ngx_http_streaming_websocket_of(s)                                   \
    ((ngx_http_streaming_websocket_t *) ((u_char *) (s)                      \
                         - offsetof(ngx_http_streaming_websocket_t, sink)))


static ngx_str_t  ngx_http_streaming_ws_upgrade = ngx_string("Upgrade");
static ngx_str_t  ngx_http_streaming_ws_websocket = ngx_string("websocket");
static ngx_str_t  ngx_http_streaming_ws_accept =
    ngx_string("Sec-WebSocket-Accept");
static ngx_str_t  ngx_http_streaming_ws_version =
    ngx_string("Sec-WebSocket-Version");
static ngx_str_t  ngx_http_streaming_ws_13 = ngx_string("13");
static ngx_str_t  ngx_http_streaming_ws_stream_id = ngx_string("Stream-Id");


ngx_uint_t
ngx_http_streaming_websocket_wanted(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    if (r->method != NGX_HTTP_GET || r->http_version != NGX_HTTP_VERSION_11) {
        return 0;
    }

    h = r->headers_in.upgrade;

    return (h != NULL
            && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                                (u_char *) "websocket", 9 - 1)
               != NULL);
}


/*
 * The handshake; then the socket is the module's: it reads the client's
 * frames and writes the subscriptions' messages until one side closes.
 */
ngx_int_t
ngx_http_streaming_websocket_start(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn)
{
    size_t                            max;
    ngx_int_t                         rc;
    ngx_str_t                         value;
    ngx_pool_cleanup_t               *cln;
    ngx_http_streaming_refusal_t      no;
    ngx_http_streaming_init_msg_t     init;
    ngx_http_core_loc_conf_t         *clcf;
    ngx_http_streaming_loc_conf_t    *slcf;
    ngx_http_streaming_subscriber_t  *ctx;
    ngx_http_streaming_websocket_t   *ws;
    u_char                            accept[NGX_HTTP_STREAMING_WS_ACCEPT_LEN];

    if (ngx_http_streaming_websocket_handshake(r, accept, &rc) != NGX_OK) {
        return rc;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    ws = ngx_pcalloc(r->pool, sizeof(ngx_http_streaming_websocket_t));
    if (ws == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ws->request = r;
    ws->zone = zone;
    ws->conf = slcf;
    ngx_queue_init(&ws->subs);

    ngx_http_streaming_sink_init(&ws->sink, r, slcf->send_buffer);
    ws->sink.send = ngx_http_streaming_websocket_send;
    ws->sink.shutdown = ngx_http_streaming_websocket_shutdown;

    ngx_http_streaming_out_init(&ws->state, r->pool);

    /* one for every socket of the worker: a message is framed at once */

    ws->frame = ngx_http_streaming_share_scratch();
    if (ws->frame == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ws->enc.format = NGX_HTTP_STREAMING_FORMAT_WS;
    ws->enc.frame = ws->frame;

    cln->handler = ngx_http_streaming_websocket_cleanup;
    cln->data = ws;

    /*
     * messages from the client: at most this, reassembled in a buffer
     * that the first one allocates (a client that only pongs needs none)
     */

    max = ngx_min(slcf->max_chunk, NGX_HTTP_STREAMING_MESSAGE_MAX);

    ngx_http_streaming_ws_parser_init(&ws->parser, NULL, max);

    ctx = NULL;

    if (sn->id.len) {
        rc = ngx_http_streaming_websocket_subscribe(ws, sn, &no, &ctx, &init);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_DECLINED) {
            ws->sink.done = 1;
            return ngx_http_streaming_subscriber_refuse(r, &no);
        }

        ws->req.id = ctx->req.id;
        ws->req.token = ctx->req.token;
        ws->req.resumed_from = ctx->req.resumed_from;
    }

    ws->req.first_chunk_ms = -1;
    ngx_http_set_ctx(r, ws, ngx_http_streaming_module);

    /* 101 */

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    value.data = accept;
    value.len = NGX_HTTP_STREAMING_WS_ACCEPT_LEN;

    if (ngx_http_streaming_set_header(r, &ngx_http_streaming_ws_upgrade,
                                      &ngx_http_streaming_ws_websocket)
        != NGX_OK
        || ngx_http_streaming_set_header(r, &ngx_http_streaming_ws_accept,
                                         &value)
           != NGX_OK
        || (ws->req.id.len
            && ngx_http_streaming_set_header(r,
                                             &ngx_http_streaming_ws_stream_id,
                                             &ws->req.id)
               != NGX_OK)
        || ngx_http_streaming_set_token(r, &ws->req.token) != NGX_OK)
    {
        ws->sink.done = 1;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        ws->sink.done = 1;
        return NGX_ERROR;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        ws->sink.done = 1;
        return NGX_ERROR;
    }

    /*
     * as nginx does for a proxied WebSocket: a client that writes (acks)
     * gets delayed ACKs, and Nagle would hold the next frame for them
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(r->connection) != NGX_OK) {
        ws->sink.done = 1;
        return NGX_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming websocket: open, stream \"%V\"", &ws->req.id);

    if (ctx) {
        ngx_http_streaming_format_init(&ws->sink.out, &ctx->enc, &init,
                                       ngx_http_streaming_store_now());
    }

    ngx_http_streaming_sink_watch(&ws->sink);

    r->read_event_handler = ngx_http_streaming_websocket_read_handler;
    r->write_event_handler = ngx_http_streaming_websocket_write_handler;

    ws->heard = ngx_current_msec;

    if (slcf->heartbeat) {
        ws->ping.handler = ngx_http_streaming_websocket_ping;
        ws->ping.data = ws;
        ws->ping.log = r->connection->log;
        ws->ping.cancelable = 1;

        ngx_add_timer(&ws->ping, slcf->heartbeat);
    }

    r->main->count++;

    /* frames that came with the handshake are in r->header_in */

    ngx_http_streaming_websocket_read(ws);

    return NGX_DONE;
}


/*
 * The client's request is a valid opening handshake: NGX_OK and its accept
 * key; else NGX_DECLINED, the answer sent, and what the handler returns in
 * *refused.
 */
static ngx_int_t
ngx_http_streaming_websocket_handshake(ngx_http_request_t *r, u_char *accept,
    ngx_int_t *refused)
{
    ngx_table_elt_t  *h;

    h = ngx_http_streaming_header_in(r, "Sec-WebSocket-Version", 21);

    if (h == NULL || h->value.len != 2
        || ngx_strncmp(h->value.data, "13", 2) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: WebSocket version %s",
                      h ? "is not 13" : "missing");

        if (ngx_http_streaming_set_header(r, &ngx_http_streaming_ws_version,
                                          &ngx_http_streaming_ws_13)
            != NGX_OK)
        {
            *refused = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return NGX_DECLINED;
        }

        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

        *refused = ngx_http_streaming_send_error(r,
                                        NGX_HTTP_STREAMING_UPGRADE_REQUIRED,
                                        "INVALID_MESSAGE",
                                        "Sec-WebSocket-Version must be 13");
        return NGX_DECLINED;
    }

    h = ngx_http_streaming_header_in(r, "Sec-WebSocket-Key", 17);

    if (h == NULL
        || ngx_http_streaming_ws_accept_key(&h->value, accept) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: WebSocket key %s",
                      h ? "is invalid" : "missing");

        *refused = ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "INVALID_MESSAGE",
                                                 "Sec-WebSocket-Key must be "
                                                 "the base64 of 16 bytes");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A subscription of the socket: attached to its stream, its stream-init
 * left to the caller.
 */
static ngx_int_t
ngx_http_streaming_websocket_subscribe(ngx_http_streaming_websocket_t *ws,
    ngx_http_streaming_subscription_t *sn, ngx_http_streaming_refusal_t *no,
    ngx_http_streaming_subscriber_t **sub, ngx_http_streaming_init_msg_t *init)
{
    ngx_int_t                         rc;
    ngx_http_streaming_subscriber_t  *ctx;

    ctx = ngx_calloc(sizeof(ngx_http_streaming_subscriber_t),
                     ws->request->connection->log);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ctx->sink = &ws->sink;

    sn->ws = 1;
    sn->format = NGX_HTTP_STREAMING_FORMAT_WS;

    rc = ngx_http_streaming_subscriber_attach(ws->request, ws->zone, sn, ctx,
                                              init, no);
    if (rc != NGX_OK) {
        /* out of memory may come after its place was taken */
        ngx_http_streaming_subscriber_detach(ctx);
        ngx_free(ctx);
        return rc;
    }

    ctx->enc.frame = ws->frame;

    ngx_queue_insert_tail(&ws->subs, &ctx->queue);
    ws->nsubs++;

    *sub = ctx;

    return NGX_OK;
}


/* a subscription ends: its place in the stream, its memory */
static void
ngx_http_streaming_websocket_drop(ngx_http_streaming_websocket_t *ws,
    ngx_http_streaming_subscriber_t *ctx)
{
    ngx_queue_remove(&ctx->queue);
    ws->nsubs--;

    ws->req.chunks += ctx->req.chunks;
    ws->req.bytes += ctx->req.bytes;
    ws->req.sequence = ctx->req.sequence;
    ws->req.status = ctx->req.status;

    if (ws->req.first_chunk_ms < 0) {
        ws->req.first_chunk_ms = ctx->req.first_chunk_ms;
    }

    ngx_http_streaming_subscriber_detach(ctx);
    ngx_free(ctx);
}


static void
ngx_http_streaming_websocket_cleanup(void *data)
{
    ngx_http_streaming_websocket_t  *ws = data;

    ngx_http_streaming_websocket_end(ws);

    ngx_http_streaming_sink_free(&ws->sink);
    ngx_http_streaming_out_free(&ws->state);

    if (ws->message) {
        ngx_free(ws->message);
        ws->message = NULL;
    }
}


static void
ngx_http_streaming_websocket_read_handler(ngx_http_request_t *r)
{
    ngx_http_streaming_websocket_t  *ws;

    ws = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    ngx_http_streaming_websocket_read(ws);
}


static void
ngx_http_streaming_websocket_write_handler(ngx_http_request_t *r)
{
    ngx_connection_t                *c;
    ngx_http_streaming_websocket_t  *ws;

    c = r->connection;
    ws = ngx_http_get_module_ctx(r, ngx_http_streaming_module);

    if (c->write->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "streaming: WebSocket client timed out");

        c->timedout = 1;
        ws->sink.done = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    ngx_http_streaming_websocket_run(ws);
}


/*
 * Reads what the client sent and acts on each frame, as long as the
 * socket's output has room for the answers.
 */
static void
ngx_http_streaming_websocket_read(ngx_http_streaming_websocket_t *ws)
{
    u_char              *p;
    size_t               n;
    ssize_t              size;
    ngx_buf_t           *b, in;
    ngx_int_t            rc;
    ngx_uint_t           reads;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    u_char               buf[NGX_HTTP_STREAMING_WS_READ_SIZE];

    r = ws->request;
    c = r->connection;

    /*
     * first the frames that came with the handshake; then the socket
     * reads into a buffer of this call's own: the parser keeps what it
     * needs, and the request's header buffer still holds the headers and
     * arguments that the log and token lookups point into
     */

    b = r->header_in;

    ngx_memzero(&in, sizeof(ngx_buf_t));
    in.start = buf;
    in.end = buf + sizeof(buf);
    in.pos = buf;
    in.last = buf;

    for (reads = 0; /* void */; reads++) {

        if (ws->sink.done || ws->closing) {
            return;
        }

        if (ws->sink.out.size >= (off_t) ws->sink.limit) {
            /* the client does not read: it is not read either */
            ws->blocked = 1;
            break;
        }

        if (b->pos == b->last) {

            if (reads == NGX_HTTP_STREAMING_WS_READS) {
                ngx_post_event(c->read, &ngx_posted_events);
                break;
            }

            b = &in;
            b->pos = b->start;
            b->last = b->start;

            size = c->recv(c, b->last, b->end - b->last);

            if (size == NGX_AGAIN) {
                if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                    ws->sink.done = 1;
                    ngx_http_finalize_request(r, NGX_ERROR);
                    return;
                }

                break;
            }

            if (size == 0 || size == NGX_ERROR) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "streaming: WebSocket client closed the "
                              "connection without a close frame");

                c->error = 1;
                ws->sink.done = 1;
                ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
                return;
            }

            b->last += size;
        }

        ws->heard = ngx_current_msec;

        for (p = b->pos; p < b->last; p += n) {
            rc = ngx_http_streaming_ws_parse(&ws->parser, p, b->last, &n);

            if (rc == NGX_AGAIN) {
                break;
            }

            if (rc == NGX_DECLINED) {
                /* a message starts: its buffer */

                ws->message = ngx_alloc(ws->parser.max, c->log);
                if (ws->message == NULL) {
                    b->pos = b->last;
                    ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_INTERNAL_ERROR,
                                       "out of memory");
                    goto done;
                }

                ws->parser.buf = ws->message;
                continue;
            }

            if (rc == NGX_ERROR) {
                b->pos = b->last;

                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "streaming: WebSocket client broke the "
                              "protocol: %s", ws->parser.error);

                ngx_http_streaming_websocket_close(ws, ws->parser.code,
                                                   ws->parser.error);
                goto done;
            }

            if (ngx_http_streaming_websocket_event(ws) != NGX_OK) {
                b->pos = b->last;
                goto done;
            }
        }

        b->pos = b->last;
    }

done:

    ngx_http_streaming_websocket_run(ws);
}


/* one frame or message from the client: NGX_DONE when it reads no more */
static ngx_int_t
ngx_http_streaming_websocket_event(ngx_http_streaming_websocket_t *ws)
{
    ngx_uint_t                       code;
    ngx_http_streaming_ws_parser_t  *wp;

    wp = &ws->parser;

    switch (wp->opcode) {

    case NGX_HTTP_STREAMING_WS_OP_TEXT:
        ngx_http_streaming_websocket_message(ws, &wp->payload);
        return ws->closing ? NGX_DONE : NGX_OK;

    case NGX_HTTP_STREAMING_WS_OP_BINARY:
        ngx_log_error(NGX_LOG_INFO, ws->request->connection->log, 0,
                      "streaming: WebSocket client sent a binary message");

        ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_UNSUPPORTED,
                                       "binary messages are not supported");
        return NGX_DONE;

    case NGX_HTTP_STREAMING_WS_OP_PING:
        ngx_http_streaming_websocket_frame(ws, NGX_HTTP_STREAMING_WS_OP_PONG,
                                           wp->payload.data, wp->payload.len);
        return NGX_OK;

    case NGX_HTTP_STREAMING_WS_OP_PONG:
        return NGX_OK;

    default: /* NGX_HTTP_STREAMING_WS_OP_CLOSE */
        code = wp->code;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ws->request->connection->log, 0,
                       "streaming websocket: close %ui", code);

        if (code == NGX_HTTP_STREAMING_WS_NO_STATUS) {
            code = NGX_HTTP_STREAMING_WS_NORMAL;
        }

        ngx_http_streaming_websocket_close(ws, code, NULL);
        return NGX_DONE;
    }
}


/* a text message: an Omni request or stream-control */
static void
ngx_http_streaming_websocket_message(ngx_http_streaming_websocket_t *ws,
    ngx_str_t *text)
{
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    const char                    *err;
    ngx_connection_t              *c;
    ngx_http_streaming_message_t   msg;

    c = ws->request->connection;

    /*
     * a pool per message, so a long connection does not grow; it holds
     * only the message's strings (jansson allocates its own), so it is
     * small: every ack passes here
     */

    pool = ngx_create_pool(NGX_HTTP_STREAMING_WS_MESSAGE_POOL, c->log);
    if (pool == NULL) {
        ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_INTERNAL_ERROR,
                                       "out of memory");
        return;
    }

    err = NULL;

    rc = ngx_http_streaming_message_parse(pool, text->data, text->len, &msg,
                                          &err);

    if (rc == NGX_ERROR) {
        ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_INTERNAL_ERROR,
                                       "out of memory");

    } else if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "streaming: invalid WebSocket message: %s",
                      err ? err : "not understood");

        ngx_http_streaming_websocket_respond(ws, &msg.message_id, NULL,
                              msg.unknown_type ? "UNKNOWN_MESSAGE_TYPE"
                              : msg.unknown_action ? "UNKNOWN_ACTION"
                                                   : "INVALID_MESSAGE",
                              err ? err : "the message is not understood");

    } else if (msg.type == NGX_HTTP_STREAMING_MSG_CONTROL) {
        ngx_http_streaming_websocket_control(ws, &msg);

    } else {
        ngx_http_streaming_websocket_request(ws, &msg);
    }

    ngx_destroy_pool(pool);
}


/* stream-control: ack, pause, resume, cancel of one of its streams */
static void
ngx_http_streaming_websocket_control(ngx_http_streaming_websocket_t *ws,
    ngx_http_streaming_message_t *msg)
{
    u_char                           *p;
    ngx_str_t                         own;
    ngx_pid_t                         pids[NGX_HTTP_STREAMING_PIDS * 2 + 1];
    ngx_uint_t                        n, from;
    const char                       *conflict;
    ngx_connection_t                 *c;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_subscriber_t  *ctx;
    u_char                            id[NGX_INT32_LEN];

    c = ws->request->connection;

    ctx = ngx_http_streaming_websocket_find(ws, &msg->stream_id);

    if (ctx == NULL || ctx->done) {

        if (msg->command == NGX_HTTP_STREAMING_CMD_ACK
            && ngx_http_streaming_websocket_ended(ws, &msg->stream_id))
        {
            /* the client acks what it got before it saw the end */
            return;
        }

        ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                           "INVALID_STREAM",
                                           "the stream is not subscribed "
                                           "on this socket");
        return;
    }

    if (msg->command == NGX_HTTP_STREAMING_CMD_ACK && msg->subscriber_id.len) {
        p = ngx_sprintf(id, "%uD", ctx->sub_id);
        own.data = id;
        own.len = p - id;

        if (own.len != msg->subscriber_id.len
            || ngx_strncmp(own.data, msg->subscriber_id.data, own.len) != 0)
        {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                           "INVALID_MESSAGE",
                                           "subscriberId is not this "
                                           "subscription's");
            return;
        }
    }

    n = 0;
    conflict = NULL;

    ngx_http_streaming_store_lock(ws->zone);

    st = ngx_http_streaming_store_get_locked(ws->zone, &ctx->req.id,
                                             ctx->nonce, &ctx->st);

    if (st == NULL || ctx->sub == NULL) {
        ngx_http_streaming_store_unlock(ws->zone);

        ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                             "INVALID_STREAM",
                                             "the stream is gone");
        return;
    }

    from = st->status;

    if (msg->command == NGX_HTTP_STREAMING_CMD_ACK) {

        if (msg->sequence > ctx->sub->cursor) {
            conflict = "ack beyond what the subscriber was sent";

        } else if (msg->sequence > ctx->sub->acked) {
            ctx->sub->acked = msg->sequence;
        }

        ngx_http_streaming_store_unlock(ws->zone);

        if (conflict) {
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "streaming: ack for \"%V\" refused: %s",
                          &ctx->req.id, conflict);

            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                                 "INVALID_STATE", conflict);
        }

        /* the window is open again: delivery follows in this turn */
        return;
    }

    conflict = ngx_http_streaming_control_locked(ws->zone, st, msg->command,
                                                 pids, &n);

    ngx_http_streaming_out_reset(&ws->state);
    ngx_http_streaming_status_stream(&ws->state, st);

    ngx_http_streaming_store_unlock(ws->zone);

    if (conflict) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "streaming: command refused for \"%V\" (%V): %s",
                      &ctx->req.id, &ngx_http_streaming_status_names[from],
                      conflict);

        ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                             "INVALID_STATE", conflict);

    } else {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "streaming: stream \"%V\": %s", &ctx->req.id,
                      ngx_http_streaming_command_names[msg->command]);

        ngx_http_streaming_websocket_respond(ws, &msg->message_id,
                                             ws->state.first, NULL, NULL);

        ngx_http_streaming_ring(ws->zone, st, pids, n);
    }

    ngx_http_streaming_out_recycle(&ws->state);
}


/* request: subscribe, unsubscribe, status */
static void
ngx_http_streaming_websocket_request(ngx_http_streaming_websocket_t *ws,
    ngx_http_streaming_message_t *msg)
{
    u_char                             *p;
    ngx_int_t                           rc;
    ngx_buf_t                           b;
    ngx_chain_t                         cl;
    ngx_http_streaming_refusal_t        no;
    ngx_http_streaming_init_msg_t       init;
    ngx_http_streaming_subscriber_t    *ctx;
    ngx_http_streaming_subscription_t   sn;
    u_char                              data[NGX_HTTP_STREAMING_MESSAGE_ID_MAX
                                             + NGX_INT64_LEN * 2 + 128];
    u_char                              text[128];

    if (!ngx_http_streaming_id_valid(msg->stream_id.data, msg->stream_id.len))
    {
        ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                             "INVALID_ID",
                                             "stream id must be 1-128 "
                                             "characters of [A-Za-z0-9._~-]");
        return;
    }

    ctx = ngx_http_streaming_websocket_find(ws, &msg->stream_id);

    ngx_memzero(&b, sizeof(ngx_buf_t));
    b.memory = 1;
    b.start = data;
    b.pos = data;
    cl.buf = &b;
    cl.next = NULL;

    switch (msg->action) {

    case NGX_HTTP_STREAMING_ACTION_SUBSCRIBE:

        if (ctx) {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                           "INVALID_STATE",
                                           "the stream is already subscribed "
                                           "on this socket");
            return;
        }

        if (ws->nsubs >= NGX_HTTP_STREAMING_WS_SUBS_MAX) {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                           "TOO_MANY_SUBSCRIBERS",
                                           "too many subscriptions on this "
                                           "socket");
            return;
        }

        ngx_memzero(&sn, sizeof(ngx_http_streaming_subscription_t));
        sn.id = msg->stream_id;
        sn.start = msg->has_from ? msg->from : NGX_HTTP_STREAMING_START_FIRST;
        sn.token = msg->token;

        rc = ngx_http_streaming_websocket_subscribe(ws, &sn, &no, &ctx, &init);

        if (rc == NGX_ERROR) {
            ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_INTERNAL_ERROR,
                                       "out of memory");
            return;
        }

        if (rc == NGX_DECLINED) {

            if (no.status == NGX_HTTP_STREAMING_GONE) {
                ngx_sprintf(text, "resume point no longer retained, the "
                            "earliest retained sequence is %uL%Z", no.first);
                no.message = (const char *) text;
            }

            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                                 no.code, no.message);
            return;
        }

        p = ngx_sprintf(data, "{\"streamId\":\"%V\",\"subscriberId\":\"%uD\","
                        "\"resumePosition\":%uL}", &ctx->req.id,
                        ctx->sub_id, init.resume_position);
        b.last = p;
        b.end = p;

        ngx_http_streaming_websocket_respond(ws, &msg->message_id, &cl, NULL,
                                             NULL);

        ngx_http_streaming_format_init(&ws->sink.out, &ctx->enc, &init,
                                       ngx_http_streaming_store_now());
        return;

    case NGX_HTTP_STREAMING_ACTION_UNSUBSCRIBE:

        if (ctx == NULL) {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                           "INVALID_STREAM",
                                           "the stream is not subscribed "
                                           "on this socket");
            return;
        }

        ngx_http_streaming_websocket_drop(ws, ctx);

        p = ngx_sprintf(data, "{\"streamId\":\"%V\"}", &msg->stream_id);
        b.last = p;
        b.end = p;

        ngx_http_streaming_websocket_respond(ws, &msg->message_id, &cl, NULL,
                                             NULL);
        return;

    default: /* NGX_HTTP_STREAMING_ACTION_STATUS */
        ngx_http_streaming_websocket_status(ws, msg, ctx);
        return;
    }
}


/* a stream's state: of a subscription, or any the token opens */
static void
ngx_http_streaming_websocket_status(ngx_http_streaming_websocket_t *ws,
    ngx_http_streaming_message_t *msg, ngx_http_streaming_subscriber_t *ctx)
{
    ngx_int_t                     rc;
    ngx_str_t                     token;
    ngx_http_streaming_stream_t  *st;

    ngx_http_streaming_store_lock(ws->zone);

    if (ctx) {
        st = ngx_http_streaming_store_get_locked(ws->zone, &ctx->req.id,
                                                 ctx->nonce, &ctx->st);
        rc = NGX_OK;

    } else {
        st = ngx_http_streaming_store_find_locked(ws->zone,
                                                  msg->stream_id.data,
                                                  msg->stream_id.len);
        rc = NGX_OK;

        if (st) {
            rc = ngx_http_streaming_token_check(ws->request,
                                                &ws->conf->secret,
                                                &msg->stream_id, st->nonce,
                                                &msg->token, &token);
        }
    }

    if (st == NULL || rc != NGX_OK) {
        ngx_http_streaming_store_unlock(ws->zone);

        if (st == NULL) {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                                 "INVALID_STREAM",
                                                 "no such stream");

        } else if (rc == NGX_DECLINED) {
            ngx_http_streaming_websocket_respond(ws, &msg->message_id, NULL,
                                       "FORBIDDEN",
                                       "the stream's token is missing or "
                                       "wrong");
        } else {
            ngx_http_streaming_websocket_close(ws,
                                       NGX_HTTP_STREAMING_WS_INTERNAL_ERROR,
                                       "out of memory");
        }

        return;
    }

    ngx_http_streaming_out_reset(&ws->state);
    ngx_http_streaming_status_stream(&ws->state, st);

    ngx_http_streaming_store_unlock(ws->zone);

    ngx_http_streaming_websocket_respond(ws, &msg->message_id,
                                         ws->state.first, NULL, NULL);

    ngx_http_streaming_out_recycle(&ws->state);
}


static ngx_http_streaming_subscriber_t *
ngx_http_streaming_websocket_find(ngx_http_streaming_websocket_t *ws,
    ngx_str_t *id)
{
    ngx_queue_t                      *q;
    ngx_http_streaming_subscriber_t  *ctx;

    for (q = ngx_queue_head(&ws->subs);
         q != ngx_queue_sentinel(&ws->subs);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_streaming_subscriber_t, queue);

        if (ctx->req.id.len == id->len
            && ngx_strncmp(ctx->req.id.data, id->data, id->len) == 0)
        {
            return ctx;
        }
    }

    return NULL;
}


/* the stream ended on this socket lately */
static ngx_uint_t
ngx_http_streaming_websocket_ended(ngx_http_streaming_websocket_t *ws,
    ngx_str_t *id)
{
    uint32_t    crc;
    ngx_uint_t  i, n;

    crc = ngx_crc32_short(id->data, id->len);
    n = ngx_min(ws->nended, NGX_HTTP_STREAMING_WS_ENDED);

    for (i = 0; i < n; i++) {
        if (ws->ended[i] == crc) {
            return 1;
        }
    }

    return 0;
}


/* a response to the client's message: data (JSON) or an error */
static void
ngx_http_streaming_websocket_respond(ngx_http_streaming_websocket_t *ws,
    ngx_str_t *correlation, ngx_chain_t *data, const char *code,
    const char *message)
{
    ngx_str_t  c, m;

    if (ws->closing) {
        return;
    }

    c.len = 0;
    m.len = 0;

    if (code) {
        c.data = (u_char *) code;
        c.len = ngx_strlen(code);
        m.data = (u_char *) message;
        m.len = ngx_strlen(message);
    }

    ngx_http_streaming_format_response(&ws->sink.out, &ws->enc, correlation,
                                       data, &c, &m,
                                       ngx_http_streaming_store_now());
}


/* a control frame of the server's */
static void
ngx_http_streaming_websocket_frame(ngx_http_streaming_websocket_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    size_t  n;
    u_char  header[NGX_HTTP_STREAMING_WS_HEADER_MAX];

    if (ws->closing) {
        return;
    }

    n = ngx_http_streaming_ws_frame_header(header, opcode, len, 1);

    ngx_http_streaming_out_raw(&ws->sink.out, header, n);

    if (len) {
        ngx_http_streaming_out_raw(&ws->sink.out, data, len);
    }
}


/*
 * Queues the close frame; nothing follows it, the subscriptions end and
 * the connection closes once it is sent.
 */
static void
ngx_http_streaming_websocket_close(ngx_http_streaming_websocket_t *ws,
    ngx_uint_t code, const char *reason)
{
    size_t     len;
    ngx_str_t  text;
    u_char     buf[NGX_HTTP_STREAMING_WS_CONTROL_MAX];

    if (ws->closing) {
        return;
    }

    text.data = (u_char *) reason;
    text.len = reason ? ngx_strlen(reason) : 0;

    len = ngx_http_streaming_ws_close_payload(buf, code,
                                              reason ? &text : NULL);

    ngx_http_streaming_websocket_frame(ws, NGX_HTTP_STREAMING_WS_OP_CLOSE,
                                       buf, len);

    ws->closing = 1;

    ngx_http_streaming_websocket_end(ws);
}


/* no more heartbeats, no more subscriptions */
static void
ngx_http_streaming_websocket_end(ngx_http_streaming_websocket_t *ws)
{
    ngx_queue_t                      *q;
    ngx_http_streaming_subscriber_t  *ctx;

    if (ws->ping.timer_set) {
        ngx_del_timer(&ws->ping);
    }

    while (!ngx_queue_empty(&ws->subs)) {
        q = ngx_queue_head(&ws->subs);
        ctx = ngx_queue_data(q, ngx_http_streaming_subscriber_t, queue);
        ngx_http_streaming_websocket_drop(ws, ctx);
    }
}


/*
 * The socket's turn: the subscriptions deliver what they can, in turns,
 * what is queued goes out, and a closed socket ends.
 */
static void
ngx_http_streaming_websocket_run(ngx_http_streaming_websocket_t *ws)
{
    ngx_queue_t                      *q, *next, *last;
    ngx_http_streaming_subscriber_t  *ctx;

    if (ws->sink.done) {
        return;
    }

    ngx_http_streaming_sink_sent(&ws->sink);

    if (!ngx_queue_empty(&ws->subs)) {

        /* the first goes last next time: each gets the room in turn */

        last = ngx_queue_last(&ws->subs);

        for (q = ngx_queue_head(&ws->subs); /* void */; q = next) {
            next = ngx_queue_next(q);
            ctx = ngx_queue_data(q, ngx_http_streaming_subscriber_t, queue);

            ngx_http_streaming_subscriber_deliver(ctx);

            if (ws->sink.done) {
                return;
            }

            if (ctx->done) {
                ws->ended[ws->nended++ % NGX_HTTP_STREAMING_WS_ENDED] =
                    ngx_crc32_short(ctx->req.id.data, ctx->req.id.len);

                ngx_http_streaming_websocket_drop(ws, ctx);
            }

            if (q == last) {
                break;
            }
        }

        if (!ngx_queue_empty(&ws->subs)) {
            q = ngx_queue_head(&ws->subs);
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&ws->subs, q);
        }
    }

    if (ngx_http_streaming_websocket_flush(ws) == NGX_DONE) {
        return;
    }

    if (ws->blocked && !ws->sink.done
        && ws->sink.out.size < (off_t) ws->sink.limit)
    {
        ws->blocked = 0;
        ngx_post_event(ws->request->connection->read, &ngx_posted_events);
    }
}


/* a subscription's turn is over (last: its stream ended, it is dropped) */
static void
ngx_http_streaming_websocket_send(ngx_http_streaming_sink_t *sink,
    ngx_uint_t last)
{
    (void) ngx_http_streaming_websocket_flush(
                                      ngx_http_streaming_websocket_of(sink));
}


/*
 * What the socket's output holds goes out.  NGX_DONE: the close frame
 * went and the request is gone, ws with it.
 */
static ngx_int_t
ngx_http_streaming_websocket_flush(ngx_http_streaming_websocket_t *ws)
{
    ngx_http_request_t         *r;
    ngx_http_streaming_sink_t  *sink;

    sink = &ws->sink;
    r = sink->request;

    if (sink->done) {
        return NGX_OK;
    }

    /* an error finalizes the request later, from the posted requests */

    if (sink->out.failed) {
        sink->done = 1;
        ngx_http_finalize_request(r, NGX_ERROR);
        return NGX_OK;
    }

    if (sink->out.first || sink->busy || r->connection->buffered) {

        switch (ngx_http_streaming_sink_write(sink, sink->out.first)) {

        case NGX_ERROR:
            ngx_http_finalize_request(r, NGX_ERROR);
            return NGX_OK;

        case NGX_AGAIN:
            return NGX_OK;

        default:
            break;
        }
    }

    if (ws->closing && sink->out.size == 0) {
        /* the close frame is out: lingering close reads what still comes */
        sink->done = 1;
        r->lingering_close = 1;
        ngx_http_finalize_request(r, NGX_DONE);
        return NGX_DONE;
    }

    return NGX_OK;
}


/* the worker exits: each stream says so, then the socket closes */
static void
ngx_http_streaming_websocket_shutdown(ngx_http_streaming_sink_t *sink)
{
    ngx_queue_t                      *q;
    ngx_http_streaming_websocket_t   *ws;
    ngx_http_streaming_subscriber_t  *ctx;

    ws = ngx_http_streaming_websocket_of(sink);

    for (q = ngx_queue_head(&ws->subs);
         q != ngx_queue_sentinel(&ws->subs);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_streaming_subscriber_t, queue);

        if (!ctx->done) {
            ngx_http_streaming_subscriber_shutdown(ctx);
        }

        if (sink->done) {
            return;
        }
    }

    ngx_http_streaming_websocket_close(ws, NGX_HTTP_STREAMING_WS_GOING_AWAY,
                                       "worker exiting, reconnect to "
                                       "resume");

    (void) ngx_http_streaming_websocket_flush(ws);
}


/* a heartbeat: a ping, or the end of a client that stays silent */
static void
ngx_http_streaming_websocket_ping(ngx_event_t *ev)
{
    ngx_msec_t                       interval;
    ngx_connection_t                *c;
    ngx_http_streaming_websocket_t  *ws;

    ws = ev->data;
    c = ws->request->connection;
    interval = ws->conf->heartbeat;

    if (ws->sink.done || ws->closing) {
        return;
    }

    if (ngx_exiting || ngx_terminate) {
        ws->sink.shutdown(&ws->sink);
        ngx_http_run_posted_requests(c);
        return;
    }

    if (ngx_current_msec - ws->heard
        >= NGX_HTTP_STREAMING_WS_IDLE * interval)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "streaming: WebSocket client silent for %ui "
                      "heartbeats, closing", NGX_HTTP_STREAMING_WS_IDLE);

        ngx_http_streaming_websocket_close(ws,
                                           NGX_HTTP_STREAMING_WS_GOING_AWAY,
                                           "idle");
    } else {
        ngx_http_streaming_websocket_frame(ws, NGX_HTTP_STREAMING_WS_OP_PING,
                                           NULL, 0);
        ngx_add_timer(ev, interval);
    }

    /* a lost ring is made good here too */
    ngx_http_streaming_websocket_run(ws);

    ngx_http_run_posted_requests(c);
}
