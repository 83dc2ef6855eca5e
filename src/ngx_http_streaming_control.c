
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_control.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_ids.h"
#include "ngx_http_streaming_message.h"
#include "ngx_http_streaming_status.h"
#include "ngx_http_streaming_subscriber.h"


static void ngx_http_streaming_control_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_streaming_control_post(ngx_http_request_t *r);
static ngx_uint_t ngx_http_streaming_control_pids_locked(
    ngx_http_streaming_stream_t *st, ngx_pid_t *pids);
static ngx_int_t ngx_http_streaming_control_apply(ngx_http_request_t *r,
    ngx_str_t *id, ngx_http_streaming_message_t *msg);


static ngx_str_t  ngx_http_streaming_control_type =
    ngx_string("application/json");

const char  *ngx_http_streaming_command_names[] = {
    "state", "pause", "resume", "cancel", "ack"
};


/* streaming_control: GET the state, POST a command, DELETE = cancel */
ngx_int_t
ngx_http_streaming_control_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id;
    ngx_http_streaming_message_t    msg;
    ngx_http_streaming_loc_conf_t  *slcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST
                       |NGX_HTTP_DELETE)))
    {
        return NGX_HTTP_NOT_ALLOWED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    if (r->method == NGX_HTTP_POST) {
        return ngx_http_streaming_read_body_start(r, slcf->max_chunk,
                                              "control message",
                                              ngx_http_streaming_control_body);
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_request_id(r, slcf->id, NGX_HTTP_STREAMING_ID_ARG,
                                      &id);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? ngx_http_streaming_send_bad_id(r)
                                    : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&msg, sizeof(ngx_http_streaming_message_t));

    if (r->method == NGX_HTTP_DELETE) {
        msg.type = NGX_HTTP_STREAMING_MSG_CONTROL;
        msg.command = NGX_HTTP_STREAMING_CMD_CANCEL;
    }

    return ngx_http_streaming_control_apply(r, &id, &msg);
}


static void
ngx_http_streaming_control_body(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_http_streaming_control_post(r));
}


static ngx_int_t
ngx_http_streaming_control_post(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id, body;
    const char                     *err;
    ngx_http_streaming_message_t    msg;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    rc = ngx_http_streaming_request_id(r, slcf->id, NGX_HTTP_STREAMING_ID_ARG,
                                      &id);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? ngx_http_streaming_send_bad_id(r)
                                    : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_streaming_read_body(r, &body, slcf->max_chunk);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_streaming_send_too_large(r, "control message");
    }

    err = NULL;

    rc = ngx_http_streaming_control_parse(r->pool, body.data, body.len, &msg,
                                          &err);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: invalid control message for \"%V\": %s",
                      &id, err ? err : "not understood");

        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   msg.unknown_type ? "UNKNOWN_MESSAGE_TYPE"
                                                    : "INVALID_MESSAGE",
                                   err ? err : "the message is not a "
                                               "stream-control message");
    }

    if (msg.stream_id.len
        && (msg.stream_id.len != id.len
            || ngx_strncmp(msg.stream_id.data, id.data, id.len) != 0))
    {
        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "INVALID_MESSAGE",
                                   "streamId names another stream");
    }

    return ngx_http_streaming_control_apply(r, &id, &msg);
}


/*
 * Carries out pause, resume or cancel on a stream (the zone locked):
 * NULL, or why the stream's state refuses it.  pids gets the workers to
 * ring (NGX_HTTP_STREAMING_PIDS * 2 + 1 of them at most).
 */
const char *
ngx_http_streaming_control_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t command, ngx_pid_t *pids,
    ngx_uint_t *n)
{
    ngx_uint_t  from;

    static ngx_str_t  cancelled = ngx_string("cancelled by a command");

    from = st->status;
    *n = 0;

    switch (command) {

    case NGX_HTTP_STREAMING_CMD_PAUSE:
        if (from != NGX_HTTP_STREAMING_ACTIVE) {
            return "only an active stream can be paused";
        }

        ngx_http_streaming_store_command_locked(zone, st,
                                                NGX_HTTP_STREAMING_PAUSED);
        break;

    case NGX_HTTP_STREAMING_CMD_RESUME:
        if (from != NGX_HTTP_STREAMING_PAUSED) {
            return "only a paused stream can be resumed";
        }

        ngx_http_streaming_store_command_locked(zone, st,
                                                NGX_HTTP_STREAMING_ACTIVE);
        break;

    case NGX_HTTP_STREAMING_CMD_CANCEL:
        if (from != NGX_HTTP_STREAMING_ACTIVE
            && from != NGX_HTTP_STREAMING_PAUSED)
        {
            return "the stream has already ended";
        }

        ngx_http_streaming_store_finish_locked(zone, st,
                                               NGX_HTTP_STREAMING_CANCELLED,
                                               NULL, &cancelled);
        break;

    default:
        return "not a command";
    }

    *n = ngx_http_streaming_control_pids_locked(st, pids);

    return NULL;
}


/* the workers of the stream's subscribers and its producer */
static ngx_uint_t
ngx_http_streaming_control_pids_locked(ngx_http_streaming_stream_t *st,
    ngx_pid_t *pids)
{
    ngx_uint_t  n, i;

    n = ngx_http_streaming_store_pids_locked(st, pids);

    if (st->producer && st->producer != ngx_pid) {
        for (i = 0; i < n && pids[i] != st->producer; i++) {
            /* void */
        }

        if (i == n) {
            pids[n++] = st->producer;
        }
    }

    return n;
}


/*
 * Carries out a command (none: GET) on the stream and answers with its
 * state.  The producer's worker and the subscribers' workers are rung:
 * they act on the stream's new state themselves.
 */
static ngx_int_t
ngx_http_streaming_control_apply(ngx_http_request_t *r, ngx_str_t *id,
    ngx_http_streaming_message_t *msg)
{
    ngx_int_t                       rc;
    ngx_str_t                       token;
    ngx_pid_t                       pids[NGX_HTTP_STREAMING_PIDS * 2 + 1];
    ngx_uint_t                      n, from;
    const char                     *conflict;
    ngx_http_streaming_out_t        out;
    ngx_http_streaming_zone_t      *zone;
    ngx_http_streaming_stream_t    *st;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);
    zone = slcf->control->data;

    ngx_http_streaming_out_init(&out, r->pool);

    conflict = NULL;
    n = 0;

    ngx_http_streaming_store_lock(zone);

    rc = ngx_http_streaming_find_locked(r, zone, &slcf->secret, id, &st,
                                        &token);
    if (rc != NGX_OK) {
        ngx_http_streaming_store_unlock(zone);
        return ngx_http_streaming_send_refusal(r, rc);
    }

    from = st->status;

    if (msg->command == NGX_HTTP_STREAMING_CMD_ACK) {
        rc = ngx_http_streaming_store_ack_locked(zone, st,
                                                 &msg->subscriber_id,
                                                 msg->sequence, &conflict);
        if (rc == NGX_DECLINED) {
            ngx_http_streaming_store_unlock(zone);

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "streaming: ack for \"%V\" refused: %s", id,
                          conflict);

            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "INVALID_MESSAGE", conflict);
        }

        if (rc == NGX_OK) {
            conflict = NULL;
            n = ngx_http_streaming_control_pids_locked(st, pids);
        }

    } else if (msg->command) {
        conflict = ngx_http_streaming_control_locked(zone, st, msg->command,
                                                     pids, &n);
    }

    ngx_http_streaming_status_stream(&out, st);
    ngx_http_streaming_out_literal(&out, "\n");

    ngx_http_streaming_store_unlock(zone);

    if (conflict) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: command refused for \"%V\" (%V): %s",
                      id, &ngx_http_streaming_status_names[from], conflict);

        return ngx_http_streaming_send_error(r, NGX_HTTP_CONFLICT,
                                             "INVALID_STATE", conflict);
    }

    if (msg->command) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: stream \"%V\": %s", id,
                      ngx_http_streaming_command_names[msg->command]);

        ngx_http_streaming_ring(zone, st, pids, n);
    }

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_streaming_send(r, NGX_HTTP_OK,
                                   &ngx_http_streaming_control_type,
                                   out.first, out.size);
}
