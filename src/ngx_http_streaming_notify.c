
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <sys/un.h>

#include "ngx_http_streaming_notify.h"


static socklen_t ngx_http_streaming_notify_name(struct sockaddr_un *sun,
    u_char *nonce, size_t len, ngx_pid_t pid);


/* binds this worker's doorbell and watches it */
ngx_connection_t *
ngx_http_streaming_notify_open(ngx_cycle_t *cycle, u_char *nonce, size_t len,
    ngx_event_handler_pt handler, void *data)
{
    socklen_t            socklen;
    ngx_socket_t         s;
    ngx_event_t         *rev;
    ngx_connection_t    *c;
    struct sockaddr_un   sun;

    s = ngx_socket(AF_UNIX, SOCK_DGRAM, 0);

    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "streaming: socket(AF_UNIX) failed");
        return NULL;
    }

    if (ngx_nonblocking(s) == -1
        || fcntl(s, F_SETFD, FD_CLOEXEC) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "streaming: doorbell socket setup failed");
        (void) ngx_close_socket(s);
        return NULL;
    }

    socklen = ngx_http_streaming_notify_name(&sun, nonce, len, ngx_pid);

    if (bind(s, (struct sockaddr *) &sun, socklen) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "streaming: bind() of the doorbell failed");
        (void) ngx_close_socket(s);
        return NULL;
    }

    c = ngx_get_connection(s, cycle->log);
    if (c == NULL) {
        (void) ngx_close_socket(s);
        return NULL;
    }

    c->data = data;
    c->pool = cycle->pool;

    rev = c->read;
    rev->log = cycle->log;
    rev->handler = handler;
    rev->channel = 1;
    c->write->log = cycle->log;
    c->write->channel = 1;

    if (ngx_add_event(rev, NGX_READ_EVENT, 0) == NGX_ERROR) {
        ngx_free_connection(c);
        (void) ngx_close_socket(s);
        return NULL;
    }

    return c;
}


void
ngx_http_streaming_notify_close(ngx_connection_t *c)
{
    ngx_close_connection(c);
}


/*
 * NGX_OK: rung, or already rung (its queue is full); NGX_DECLINED: no such
 * worker (gone); NGX_ERROR: something else.
 */
ngx_int_t
ngx_http_streaming_notify_ring(ngx_connection_t *c, u_char *nonce, size_t len,
    ngx_pid_t pid)
{
    u_char              byte;
    ssize_t             n;
    ngx_err_t           err;
    socklen_t           socklen;
    struct sockaddr_un  sun;

    socklen = ngx_http_streaming_notify_name(&sun, nonce, len, pid);
    byte = 0;

    n = sendto(c->fd, &byte, 1, 0, (struct sockaddr *) &sun, socklen);

    if (n == 1) {
        return NGX_OK;
    }

    err = ngx_socket_errno;

    if (err == NGX_EAGAIN || err == ENOBUFS) {
        return NGX_OK;
    }

    if (err == NGX_ECONNREFUSED || err == NGX_ENOENT) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_ERR, c->log, err,
                  "streaming: sendto() to the doorbell of worker %P failed",
                  pid);

    return NGX_ERROR;
}


void
ngx_http_streaming_notify_drain(ngx_connection_t *c)
{
    u_char  buf[64];

    while (recv(c->fd, buf, sizeof(buf), 0) > 0) {
        /* void */
    }
}


static socklen_t
ngx_http_streaming_notify_name(struct sockaddr_un *sun, u_char *nonce,
    size_t len, ngx_pid_t pid)
{
    u_char  *p;

    ngx_memzero(sun, sizeof(struct sockaddr_un));
    sun->sun_family = AF_UNIX;

    /* an abstract name: a leading NUL, nothing in the file system */

    p = (u_char *) sun->sun_path + 1;
    p = ngx_cpymem(p, "ngx-streaming-", sizeof("ngx-streaming-") - 1);
    p = ngx_hex_dump(p, nonce, len);
    p = ngx_sprintf(p, "-%P", pid);

    return (socklen_t) (p - (u_char *) sun);
}
