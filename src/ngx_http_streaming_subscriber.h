
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


/*
 * Subscribers: a client that reads a stream from a sequence number, replay
 * then live, on any worker; and the wake-up of whatever waits for a
 * stream's news in this worker (subscribers, held producers), rung by the
 * worker that has the news.
 */


#define NGX_HTTP_STREAMING_START_FIRST   ((uint64_t) -1)   /* oldest kept */
#define NGX_HTTP_STREAMING_START_LIVE    ((uint64_t) -2)   /* new chunks */


typedef struct ngx_http_streaming_waiter_s  ngx_http_streaming_waiter_t;

struct ngx_http_streaming_waiter_s {
    ngx_queue_t                     queue;      /* zone->waiters */
    void                          (*wake)(ngx_http_streaming_waiter_t *w);
    void                           *data;
};


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
} ngx_http_streaming_subscription_t;


ngx_int_t ngx_http_streaming_subscriber_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_streaming_subscriber_start(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn);
void ngx_http_streaming_init_msg(ngx_pool_t *pool,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_init_msg_t *init);
void ngx_http_streaming_status_msg(ngx_http_streaming_stream_t *st,
    ngx_http_streaming_status_msg_t *msg);

void ngx_http_streaming_waiter_add(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_waiter_t *w);
void ngx_http_streaming_waiter_remove(ngx_http_streaming_waiter_t *w);
void ngx_http_streaming_ring(ngx_http_streaming_zone_t *zone,
    ngx_pid_t *pids, ngx_uint_t n);

ngx_int_t ngx_http_streaming_subscriber_init_process(ngx_cycle_t *cycle,
    ngx_http_streaming_zone_t *zone);
void ngx_http_streaming_subscriber_exit_process(
    ngx_http_streaming_zone_t *zone);


#endif /* _NGX_HTTP_STREAMING_SUBSCRIBER_H_INCLUDED_ */
