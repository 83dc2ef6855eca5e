
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_SUBSCRIBER_H_INCLUDED_
#define _NGX_HTTP_STREAMING_SUBSCRIBER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_format.h"
#include "ngx_http_streaming_share.h"


/*
 * Subscribers: a client that reads a stream from a sequence number, replay
 * then live, on any worker; and the wake-up of whatever waits for a
 * stream's news in this worker (subscribers, held producers), rung by the
 * worker that has the news.
 */


#define NGX_HTTP_STREAMING_START_FIRST   ((uint64_t) -1)   /* oldest kept */
#define NGX_HTTP_STREAMING_START_LIVE    ((uint64_t) -2)   /* new chunks */

#define NGX_HTTP_STREAMING_GONE          410


typedef struct ngx_http_streaming_waiter_s  ngx_http_streaming_waiter_t;

struct ngx_http_streaming_waiter_s {
    ngx_queue_t                     queue;      /* zone->waiters[] */
    void                          (*wake)(ngx_http_streaming_waiter_t *w);
    void                           *data;
    void                           *key;        /* the stream it waits on */
};


/* where a stream's waiters are: its address in the zone, hashed */
#define ngx_http_streaming_wait_bucket(st)                                   \
    ((ngx_uint_t) (((uintptr_t) (st) / 64) % NGX_HTTP_STREAMING_WAIT_BUCKETS))


typedef struct {
    ngx_str_t                       id;
    uint64_t                        start;      /* a sequence, or START_* */
    ngx_uint_t                      format;     /* NGX_CONF_UNSET_UINT: by
                                                   the stream's framing */
    ngx_str_t                       token;      /* from Last-Event-ID */
    unsigned                        last_event_id:1;
    unsigned                        acks:1;     /* ?ack=1: paced by acks */
    unsigned                        producer:1; /* a producer location's
                                                   transparent resume */
    unsigned                        ws:1;       /* a WebSocket's */
} ngx_http_streaming_subscription_t;


/*
 * Where subscribers' output goes: a connection's buffers and what limits
 * them.  An SSE/NDJSON subscriber has one to itself; a WebSocket's
 * subscriptions share the socket's.
 */
typedef struct ngx_http_streaming_sink_s  ngx_http_streaming_sink_t;

struct ngx_http_streaming_sink_s {
    ngx_queue_t                     local;      /* this worker's sinks */
    ngx_http_request_t             *request;
    ngx_http_streaming_out_t        out;
    ngx_chain_t                    *busy;
    ngx_http_streaming_refs_t       refs;       /* shared chunks unsent */
    size_t                          limit;      /* streaming_send_buffer */

    /* sends what "out" holds; last: the response ends */
    void                          (*send)(ngx_http_streaming_sink_t *sink,
                                          ngx_uint_t last);
    /* the worker exits: the clients are told to reconnect */
    void                          (*shutdown)(ngx_http_streaming_sink_t *sink);

    unsigned                        done:1;     /* nothing more goes out */
};


/* one stream read by one client */
typedef struct {
    ngx_http_streaming_request_t      req;      /* the first member */
    ngx_http_streaming_waiter_t       waiter;
    ngx_queue_t                       queue;    /* a WebSocket's */

    ngx_http_streaming_sink_t        *sink;
    ngx_http_streaming_zone_t        *zone;
    ngx_http_streaming_loc_conf_t    *conf;
    u_char                            nonce[16];

    ngx_http_streaming_stream_t      *st;       /* a hint; checked locked */
    ngx_http_streaming_sub_t         *sub;
    ngx_http_streaming_chunk_t       *chunk;    /* the last handed */
    uint64_t                          cursor;
    ngx_uint_t                        seen;     /* status last reported */
    uint64_t                          checkpoint; /* its time, reported */
    uint32_t                          sub_id;

    ngx_http_streaming_encoder_t      enc;

    ngx_event_t                       heartbeat;

    unsigned                          done:1;   /* its end is out */
    unsigned                          acks:1;   /* paced by its acks */
} ngx_http_streaming_subscriber_t;


/* why a subscription is refused: an HTTP status, a SPEC code and text */
typedef struct {
    ngx_uint_t                        status;
    const char                       *code;
    const char                       *message;
    uint64_t                          first;    /* 410: earliest retained */
} ngx_http_streaming_refusal_t;





ngx_int_t ngx_http_streaming_subscriber_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_streaming_subscriber_start(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn);
ngx_int_t ngx_http_streaming_subscriber_attach(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn,
    ngx_http_streaming_subscriber_t *ctx, ngx_http_streaming_init_msg_t *init,
    ngx_http_streaming_refusal_t *no);
ngx_int_t ngx_http_streaming_subscriber_refuse(ngx_http_request_t *r,
    ngx_http_streaming_refusal_t *no);
void ngx_http_streaming_subscriber_detach(ngx_http_streaming_subscriber_t *ctx);
void ngx_http_streaming_subscriber_deliver(
    ngx_http_streaming_subscriber_t *ctx);
void ngx_http_streaming_subscriber_end(ngx_http_streaming_subscriber_t *ctx,
    ngx_uint_t status, ngx_str_t *code, ngx_str_t *message);
void ngx_http_streaming_subscriber_shutdown(
    ngx_http_streaming_subscriber_t *ctx);
void ngx_http_streaming_sink_init(ngx_http_streaming_sink_t *sink,
    ngx_http_request_t *r, size_t limit);
void ngx_http_streaming_sink_sent(ngx_http_streaming_sink_t *sink);
ngx_int_t ngx_http_streaming_sink_write(ngx_http_streaming_sink_t *sink,
    ngx_chain_t *out);
void ngx_http_streaming_sink_watch(ngx_http_streaming_sink_t *sink);
void ngx_http_streaming_sink_unwatch(ngx_http_streaming_sink_t *sink);
void ngx_http_streaming_sink_free(ngx_http_streaming_sink_t *sink);

void ngx_http_streaming_init_msg(ngx_pool_t *pool,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_init_msg_t *init);
void ngx_http_streaming_status_msg(ngx_http_streaming_stream_t *st,
    ngx_http_streaming_status_msg_t *msg);

void ngx_http_streaming_waiter_add(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_waiter_t *w);
void ngx_http_streaming_waiter_remove(ngx_http_streaming_waiter_t *w);
void ngx_http_streaming_ring(ngx_http_streaming_zone_t *zone, void *st,
    ngx_pid_t *pids, ngx_uint_t n);

ngx_int_t ngx_http_streaming_subscriber_init_process(ngx_cycle_t *cycle,
    ngx_http_streaming_zone_t *zone);
void ngx_http_streaming_subscriber_exit_process(
    ngx_http_streaming_zone_t *zone);


#endif /* _NGX_HTTP_STREAMING_SUBSCRIBER_H_INCLUDED_ */
