
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_framing.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_ids.h"
#include "ngx_http_streaming_message.h"
#include "ngx_http_streaming_publish.h"
#include "ngx_http_streaming_status.h"
#include "ngx_http_streaming_subscriber.h"


/* seconds a publisher is told to wait while the stream is held */
#define NGX_HTTP_STREAMING_RETRY_AFTER  "1"


static void ngx_http_streaming_publish_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_streaming_publish_create(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_str_t *body);
static ngx_int_t ngx_http_streaming_publish_append(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_str_t *body);
static ngx_int_t ngx_http_streaming_publish_store_locked(
    ngx_http_request_t *r, ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_str_t *body);
static ngx_int_t ngx_http_streaming_publish_chunk_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_http_streaming_framer_t *f, u_char *piece, ngx_uint_t evict,
    ngx_uint_t cut);
static ngx_int_t ngx_http_streaming_publish_end(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id);
static ngx_int_t ngx_http_streaming_publish_new_locked(
    ngx_http_request_t *r, ngx_http_streaming_zone_t *zone, ngx_str_t *id,
    ngx_str_t *type, int64_t total, ngx_http_streaming_stream_t **st);
static ngx_int_t ngx_http_streaming_publish_refused(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_int_t rc);
static ngx_int_t ngx_http_streaming_publish_token(ngx_http_request_t *r,
    ngx_str_t *secret, ngx_str_t *id, ngx_http_streaming_stream_t *st,
    ngx_str_t *token);
static ngx_int_t ngx_http_streaming_publish_answer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_streaming_out_t *out, ngx_str_t *id,
    ngx_str_t *token);


static ngx_str_t  ngx_http_streaming_publish_json =
    ngx_string("application/json");
static ngx_str_t  ngx_http_streaming_publish_stream_id =
    ngx_string("Stream-Id");


/* streaming_publish: PUT creates, POST appends, DELETE ends */
ngx_int_t
ngx_http_streaming_publish_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id;
    ngx_http_streaming_loc_conf_t  *slcf;

    if (!(r->method & (NGX_HTTP_PUT|NGX_HTTP_POST|NGX_HTTP_DELETE))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    if (r->method == NGX_HTTP_DELETE) {
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_streaming_request_id(r, slcf->id,
                                           NGX_HTTP_STREAMING_ID_ARG, &id);
        if (rc != NGX_OK) {
            return (rc == NGX_DECLINED) ? ngx_http_streaming_send_bad_id(r)
                                        : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_streaming_publish_end(r, slcf->publish->data, &id);
    }

    /* the whole body first (HTTP/2 too), then the stream is touched */

    return ngx_http_streaming_read_body_start(r, slcf->max_chunk,
                                              "publish body",
                                              ngx_http_streaming_publish_body);
}


static void
ngx_http_streaming_publish_body(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id, body;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    rc = ngx_http_streaming_request_id(r, slcf->id,
                                       NGX_HTTP_STREAMING_ID_ARG
                                       |NGX_HTTP_STREAMING_ID_GENERATE, &id);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, (rc == NGX_DECLINED)
                                     ? ngx_http_streaming_send_bad_id(r)
                                     : NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_streaming_read_body(r, &body, slcf->max_chunk);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r,
                          ngx_http_streaming_send_too_large(r, "publish body"));
        return;
    }

    if (r->method == NGX_HTTP_PUT) {
        rc = ngx_http_streaming_publish_create(r, slcf->publish->data, &id,
                                               &body);

    } else {
        rc = ngx_http_streaming_publish_append(r, slcf->publish->data, &id,
                                               &body);
    }

    ngx_http_finalize_request(r, rc);
}


/* PUT: a new stream, with optional metadata; 201 {"streamId"} */
static ngx_int_t
ngx_http_streaming_publish_create(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_str_t *body)
{
    int64_t                         total;
    ngx_int_t                       rc;
    ngx_str_t                       type, token;
    const char                     *err;
    ngx_http_streaming_out_t        out;
    ngx_http_streaming_stream_t    *st;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);
    ngx_str_null(&token);
    err = NULL;

    rc = ngx_http_streaming_publish_meta_parse(r->pool, body->data,
                                               body->len, &type, &total,
                                               &err);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: invalid stream metadata for \"%V\": %s",
                      id, err);

        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "INVALID_MESSAGE", err);
    }

    ngx_http_streaming_store_lock(zone);

    rc = ngx_http_streaming_publish_new_locked(r, zone, id, &type, total,
                                               &st);

    if (rc == NGX_OK) {
        rc = ngx_http_streaming_publish_token(r, &slcf->secret, id, st,
                                              &token);
    }

    ngx_http_streaming_store_unlock(zone);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_http_streaming_publish_refused(r, zone, id, rc);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming publish: stream \"%V\" created", id);

    ngx_http_streaming_out_init(&out, r->pool);
    ngx_http_streaming_out_literal(&out, "{\"streamId\":");
    ngx_http_streaming_out_json_str(&out, id);

    if (token.len) {
        ngx_http_streaming_out_literal(&out, ",\"token\":");
        ngx_http_streaming_out_json_str(&out, &token);
    }

    ngx_http_streaming_out_literal(&out, "}\n");

    return ngx_http_streaming_publish_answer(r, NGX_HTTP_CREATED, &out, id,
                                             &token);
}


/* POST: the body becomes chunks; 202 {"sequence"}, or 429 while held */
static ngx_int_t
ngx_http_streaming_publish_append(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_str_t *body)
{
    uint64_t                      sequence;
    ngx_int_t                     rc;
    ngx_str_t                     value, type, token;
    ngx_pid_t                     pids[NGX_HTTP_STREAMING_PIDS * 2];
    ngx_uint_t                    final, n, status;
    ngx_table_elt_t              *h;
    ngx_http_streaming_out_t      out;
    ngx_http_streaming_stream_t  *st;
    ngx_http_streaming_loc_conf_t  *slcf;

    static ngx_str_t  retry = ngx_string("Retry-After");
    static ngx_str_t  retry_value = ngx_string(NGX_HTTP_STREAMING_RETRY_AFTER);

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    final = 0;

    if (ngx_http_arg(r, (u_char *) "final", 5, &value) == NGX_OK) {
        final = (value.len == 1 && value.data[0] == '1');
    }

    h = ngx_http_streaming_header_in(r, "Stream-Final", 12);

    if (h && h->value.len == 1 && h->value.data[0] == '1') {
        final = 1;
    }

    type.len = 0;
    type.data = NULL;

    if (r->headers_in.content_type) {
        type = r->headers_in.content_type->value;
    }

    n = 0;

    ngx_http_streaming_store_lock(zone);

    st = ngx_http_streaming_store_find_locked(zone, id->data, id->len);

    if (st == NULL) {
        rc = ngx_http_streaming_publish_new_locked(r, zone, id, &type, -1,
                                                   &st);
        if (rc != NGX_OK) {
            ngx_http_streaming_store_unlock(zone);
            return ngx_http_streaming_publish_refused(r, zone, id, rc);
        }

        /* its creator gets the token */
        rc = ngx_http_streaming_publish_token(r, &slcf->secret, id, st,
                                              &token);

    } else {
        rc = ngx_http_streaming_token_check(r, &slcf->secret, id, st->nonce,
                                            NULL, &token);
    }

    if (rc != NGX_OK) {
        ngx_http_streaming_store_unlock(zone);

        return (rc == NGX_DECLINED) ? ngx_http_streaming_send_forbidden(r)
                                    : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = st->status;

    if (status != NGX_HTTP_STREAMING_ACTIVE
        && status != NGX_HTTP_STREAMING_PAUSED)
    {
        ngx_http_streaming_store_unlock(zone);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: publish to \"%V\" refused: it is %V", id,
                      &ngx_http_streaming_status_names[status]);

        return ngx_http_streaming_send_error(r, NGX_HTTP_CONFLICT,
                                             "INVALID_STATE",
                                             "the stream has ended");
    }

    if (status == NGX_HTTP_STREAMING_PAUSED || st->overflow) {
        ngx_http_streaming_store_unlock(zone);

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: publish to \"%V\" refused: %s", id,
                      st->overflow ? "a subscriber's backlog is full"
                                   : "the stream is paused");

        if (ngx_http_streaming_set_header(r, &retry, &retry_value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_streaming_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                             "STREAM_PAUSED",
                                             status == NGX_HTTP_STREAMING_PAUSED
                                             ? "the stream is paused"
                                             : "the stream's buffer is full");
    }

    rc = ngx_http_streaming_publish_store_locked(r, zone, st, body);

    if (rc == NGX_DECLINED) {
        ngx_http_streaming_store_finish_locked(zone, st,
                                               NGX_HTTP_STREAMING_ERROR,
                                               NULL, NULL);
    }

    if (rc == NGX_OK && slcf->checkpoint
        && st->updated - st->checkpoint_time >= slcf->checkpoint)
    {
        ngx_http_streaming_store_checkpoint_locked(st, st->updated);
    }

    if (rc == NGX_OK && final) {
        ngx_http_streaming_store_finish_locked(zone, st,
                                               NGX_HTTP_STREAMING_COMPLETED,
                                               NULL, NULL);
    }

    sequence = st->sequence;

    n = st->subscribers ? ngx_http_streaming_store_pids_locked(st, pids) : 0;

    ngx_http_streaming_store_unlock(zone);

    ngx_http_streaming_ring(zone, st, pids, n);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: zone \"%V\" is full, stream \"%V\" ends",
                      &zone->name, id);

        return ngx_http_streaming_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "ZONE_FULL",
                                             "shared memory zone is full");
    }

    ngx_http_streaming_out_init(&out, r->pool);
    ngx_http_streaming_out_printf(&out, "{\"sequence\":%uL}\n", sequence);

    return ngx_http_streaming_publish_answer(r, NGX_HTTP_ACCEPTED, &out, id,
                                             &token);
}


/*
 * Cuts the body per the stream's framing and stores the chunks: all of
 * them, or NGX_DECLINED when the zone is full (the stream then ends with
 * ZONE_FULL; what was stored stays).
 */
static ngx_int_t
ngx_http_streaming_publish_store_locked(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_str_t *body)
{
    u_char                         *p, *last, *end, *piece;
    size_t                          bytes;
    ngx_uint_t                      kind, framing, evict;
    ngx_http_streaming_framer_t     f;
    ngx_http_streaming_loc_conf_t  *slcf;

    static ngx_str_t  full = ngx_string("ZONE_FULL");
    static ngx_str_t  full_message = ngx_string("shared memory zone is full");

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    evict = (slcf->overflow == NGX_HTTP_STREAMING_OVERFLOW_EVICT);
    framing = st->framing;

    /*
     * a body that is not SSE or lines is one chunk, unless streaming_framing
     * bytes=size says where to cut it
     */
    bytes = (slcf->framing == NGX_HTTP_STREAMING_FRAMING_BYTES)
            ? slcf->bytes_size : slcf->max_chunk;

    ngx_http_streaming_framer_init(&f, framing, bytes, slcf->max_chunk);

    p = body->data;
    last = p + body->len;
    piece = p;
    kind = NGX_HTTP_STREAMING_FRAMER_NONE;

    while (p < last) {
        end = ngx_http_streaming_framer_scan(&f, p, last, &kind);

        if (kind == NGX_HTTP_STREAMING_FRAMER_CHUNK
            && ngx_http_streaming_publish_chunk_locked(zone, st, &f, piece,
                                                       evict, 0)
               != NGX_OK)
        {
            goto full;
        }

        if (kind != NGX_HTTP_STREAMING_FRAMER_CONTINUE) {
            piece = end;
        }

        p = end;
    }

    /* what is left is the last chunk: a line without LF, an event cut off */

    if (ngx_http_streaming_framer_finish(&f) == NGX_HTTP_STREAMING_FRAMER_CHUNK
        && ngx_http_streaming_publish_chunk_locked(zone, st, &f, piece, evict,
                                                   1)
           != NGX_OK)
    {
        goto full;
    }

    return NGX_OK;

full:

    ngx_http_streaming_store_finish_locked(zone, st, NGX_HTTP_STREAMING_ERROR,
                                           &full, &full_message);
    return NGX_DECLINED;
}


/*
 * One chunk; "cut": the body ended inside it.  An SSE event cut off so gets
 * the line ends it lacks, or the next event would run into it.
 */
static ngx_int_t
ngx_http_streaming_publish_chunk_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_framer_t *f,
    u_char *piece, ngx_uint_t evict, ngx_uint_t cut)
{
    u_char                          *data;
    size_t                           len, size, add;
    ngx_http_streaming_chunk_t      *chunk;
    ngx_http_streaming_sse_event_t   ev;

    data = piece + f->bom;
    len = f->size - f->bom - f->trim;
    size = len;

    if (f->framing == NGX_HTTP_STREAMING_FRAMING_SSE && f->ids) {
        /* the stream's own "id: <stream>:<sequence>" replaces the event's */
        (void) ngx_http_streaming_sse_parse(data, len, &ev);
        size = ev.stripped_len;
    }

    add = 0;

    if (cut && f->framing == NGX_HTTP_STREAMING_FRAMING_SSE) {
        add = (len && data[len - 1] == '\n') ? 1 : 2;
    }

    chunk = ngx_http_streaming_store_chunk_alloc_locked(zone, st, size + add);
    if (chunk == NULL) {
        return NGX_ERROR;
    }

    if (size != len) {
        (void) ngx_http_streaming_sse_strip_id(data, len, chunk->data);

    } else {
        ngx_memcpy(chunk->data, data, len);
    }

    ngx_memcpy(chunk->data + size, "\n\n", add);

    ngx_http_streaming_store_chunk_commit_locked(zone, st, chunk, evict);

    return NGX_OK;
}


/* DELETE: ?status=completed (default), cancelled, error (&code, &message) */
static ngx_int_t
ngx_http_streaming_publish_end(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id)
{
    ngx_int_t                       rc;
    ngx_str_t                       value, code, message, token, *pc, *pm;
    ngx_pid_t                       pids[NGX_HTTP_STREAMING_PIDS * 2];
    ngx_uint_t                      status, n, i;
    ngx_http_streaming_out_t        out;
    ngx_http_streaming_stream_t    *st;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    static ngx_str_t  default_code = ngx_string("PUBLISHER_ERROR");

    status = NGX_HTTP_STREAMING_COMPLETED;
    pc = NULL;
    pm = NULL;

    if (ngx_http_arg(r, (u_char *) "status", 6, &value) == NGX_OK) {

        for (i = NGX_HTTP_STREAMING_COMPLETED;
             i < NGX_HTTP_STREAMING_NSTATUS;
             i++)
        {
            if (value.len == ngx_http_streaming_status_names[i].len
                && ngx_strncmp(value.data,
                               ngx_http_streaming_status_names[i].data,
                               value.len) == 0)
            {
                status = i;
                break;
            }
        }

        if (i == NGX_HTTP_STREAMING_NSTATUS) {
            return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "INVALID_MESSAGE",
                                                 "status must be completed, "
                                                 "cancelled or error");
        }
    }

    if (status == NGX_HTTP_STREAMING_ERROR) {
        pc = &default_code;

        if (ngx_http_streaming_arg_unescaped(r, "code", &code) == NGX_OK) {
            if (!ngx_http_streaming_code_valid(code.data, code.len)) {
                return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                   "INVALID_MESSAGE",
                                   "code must be 1-32 characters of "
                                   "[A-Z0-9_]");
            }

            pc = &code;
        }

        if (ngx_http_streaming_arg_unescaped(r, "message", &message)
            == NGX_OK)
        {
            pm = &message;
        }
    }

    n = 0;

    ngx_http_streaming_out_init(&out, r->pool);

    ngx_http_streaming_store_lock(zone);

    rc = ngx_http_streaming_find_locked(r, zone, &slcf->secret, id, &st,
                                        &token);
    if (rc != NGX_OK) {
        ngx_http_streaming_store_unlock(zone);
        return ngx_http_streaming_send_refusal(r, rc);
    }

    if (st->status != NGX_HTTP_STREAMING_ACTIVE
        && st->status != NGX_HTTP_STREAMING_PAUSED)
    {
        ngx_http_streaming_store_unlock(zone);

        return ngx_http_streaming_send_error(r, NGX_HTTP_CONFLICT,
                                             "INVALID_STATE",
                                             "the stream has already ended");
    }

    ngx_http_streaming_store_finish_locked(zone, st, status, pc, pm);
    n = st->subscribers ? ngx_http_streaming_store_pids_locked(st, pids) : 0;

    ngx_http_streaming_status_stream(&out, st);
    ngx_http_streaming_out_literal(&out, "\n");

    ngx_http_streaming_store_unlock(zone);

    ngx_http_streaming_ring(zone, st, pids, n);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "streaming: publisher ended \"%V\": %V", id,
                  &ngx_http_streaming_status_names[status]);

    return ngx_http_streaming_publish_answer(r, NGX_HTTP_OK, &out, id,
                                             &token);
}


static ngx_int_t
ngx_http_streaming_publish_new_locked(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_str_t *type,
    int64_t total, ngx_http_streaming_stream_t **stp)
{
    ngx_int_t                       rc;
    ngx_uint_t                      framing;
    ngx_http_streaming_stream_t    *st;
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_streaming_module);

    rc = ngx_http_streaming_store_create_locked(zone, id->data, id->len, &st);

    if (rc != NGX_OK) {
        return rc;
    }

    framing = slcf->framing;

    if (framing == NGX_HTTP_STREAMING_FRAMING_AUTO) {
        framing = ngx_http_streaming_framing_from_type(type->data, type->len);
    }

    /* no producer process: a publisher's stream outlives any worker */
    st->producer = 0;
    st->framing = (u_char) framing;
    st->total_size = total;
    st->type_len = (u_char) ngx_min(type->len, NGX_HTTP_STREAMING_TYPE_MAX);

    if (st->type_len) {
        ngx_memcpy(st->type, type->data, st->type_len);
    }

    *stp = st;

    return NGX_OK;
}


static ngx_int_t
ngx_http_streaming_publish_refused(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, ngx_int_t rc)
{
    switch (rc) {

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: stream \"%V\" exists", id);

        return ngx_http_streaming_send_error(r, NGX_HTTP_CONFLICT,
                                             "STREAM_EXISTS",
                                             "stream id already in use");

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: max_streams reached in zone \"%V\"",
                      &zone->name);

        return ngx_http_streaming_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "TOO_MANY_STREAMS",
                                             "max_streams reached");

    default:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "streaming: zone \"%V\" is full", &zone->name);

        return ngx_http_streaming_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "ZONE_FULL",
                                             "shared memory zone is full");
    }
}


/* a new stream's token, when a secret is set */
static ngx_int_t
ngx_http_streaming_publish_token(ngx_http_request_t *r, ngx_str_t *secret,
    ngx_str_t *id, ngx_http_streaming_stream_t *st, ngx_str_t *token)
{
    ngx_str_null(token);

    if (secret->len == 0) {
        return NGX_OK;
    }

    return ngx_http_streaming_token(r->pool, secret, id, st->nonce, token);
}


static ngx_int_t
ngx_http_streaming_publish_answer(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_streaming_out_t *out, ngx_str_t *id, ngx_str_t *token)
{
    if (out->failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_streaming_set_header(r,
                                      &ngx_http_streaming_publish_stream_id,
                                      id)
        != NGX_OK
        || ngx_http_streaming_set_token(r, token) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_streaming_send(r, status,
                                   &ngx_http_streaming_publish_json,
                                   out->first, out->size);
}
