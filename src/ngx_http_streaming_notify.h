
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_NOTIFY_H_INCLUDED_
#define _NGX_HTTP_STREAMING_NOTIFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/*
 * The cross-worker doorbell: one abstract AF_UNIX datagram socket per
 * worker and zone, named after the zone's nonce and the worker's pid, so
 * that workers of different configuration generations (reload) and
 * respawned workers find each other.  A datagram says only "look": the
 * state is in shared memory, so a full queue means "already rung".  A leaf:
 * it knows no store and no request.
 */


ngx_connection_t *ngx_http_streaming_notify_open(ngx_cycle_t *cycle,
    u_char *nonce, size_t len, ngx_event_handler_pt handler, void *data);
void ngx_http_streaming_notify_close(ngx_connection_t *c);
ngx_int_t ngx_http_streaming_notify_ring(ngx_connection_t *c, u_char *nonce,
    size_t len, ngx_pid_t pid);
void ngx_http_streaming_notify_drain(ngx_connection_t *c);


#endif /* _NGX_HTTP_STREAMING_NOTIFY_H_INCLUDED_ */
