
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_framing.h"
#include "ngx_http_streaming_format.h"
#include "ngx_http_streaming_ws.h"


/* FORMAT_WS: the message goes to enc->frame first, then framed to out */
#define ngx_http_streaming_format_ws(out, enc)                               \
    ((enc)->format == NGX_HTTP_STREAMING_FORMAT_WS && (out) != (enc)->frame)


static void ngx_http_streaming_format_open(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, const char *type, ngx_str_t *id);
static void ngx_http_streaming_format_close(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t now);
static void ngx_http_streaming_format_envelope_end(
    ngx_http_streaming_out_t *out, uint64_t now);
static void ngx_http_streaming_format_sse_id(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence);
static void ngx_http_streaming_format_data(ngx_http_streaming_out_t *out,
    ngx_str_t *data, uint32_t *crc);
static void ngx_http_streaming_format_sse_lines(ngx_http_streaming_out_t *out,
    u_char *data, size_t len);
static void ngx_http_streaming_format_rpc(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc);


ngx_str_t  ngx_http_streaming_format_names[] = {
    ngx_string("passthrough"),
    ngx_string("omni"),
    ngx_string("ndjson"),
    ngx_string("jsonrpc"),
    ngx_null_string
};


static ngx_str_t  ngx_http_streaming_sse_type =
    ngx_string("text/event-stream");
static ngx_str_t  ngx_http_streaming_ndjson_type =
    ngx_string("application/x-ndjson");


/* the Content-Type of a response in this format */
ngx_str_t *
ngx_http_streaming_format_type(ngx_http_streaming_encoder_t *enc)
{
    if (enc->format == NGX_HTTP_STREAMING_FORMAT_NDJSON
        || enc->format == NGX_HTTP_STREAMING_FORMAT_JSONRPC)
    {
        return &ngx_http_streaming_ndjson_type;
    }

    return &ngx_http_streaming_sse_type;
}


/*
 * One chunk.  For a stream of SSE events, "data" is a stored event: sent
 * as it is (with the stream's own id) in passthrough, its data field's value
 * in the JSON formats.
 */
void
ngx_http_streaming_format_chunk(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence, u_char *data,
    size_t len, uint64_t now)
{
    u_char                          *p;
    uint32_t                         crc;
    ngx_str_t                        value, id;
    ngx_http_streaming_sse_event_t   ev;
    u_char                           buf[NGX_INT64_LEN + 1];

    if (ngx_http_streaming_format_ws(out, enc)) {
        ngx_http_streaming_format_chunk(enc->frame, enc, sequence, data, len,
                                        now);
        ngx_http_streaming_format_frame(out, enc);
        return;
    }

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH) {
        ngx_http_streaming_format_sse_id(out, enc, sequence);

        if (enc->sse) {
            ngx_http_streaming_out_raw(out, data, len);

        } else {
            ngx_http_streaming_format_sse_lines(out, data, len);
        }

        return;
    }

    value.data = data;
    value.len = len;
    ev.has_event = 0;

    if (enc->sse) {
        (void) ngx_http_streaming_sse_parse(data, len, &ev);

        value.len = ev.data_len;
        value.data = ngx_http_streaming_out_tmp(out, ev.data_len + 1);
        if (value.data == NULL) {
            return;
        }

        (void) ngx_http_streaming_sse_data(data, len, value.data);
    }

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_JSONRPC) {
        ngx_http_streaming_format_rpc(out, enc);

        ngx_http_streaming_out_printf(out, ",\"result\":{\"_streaming\":true,"
                                      "\"_sequence\":%uL,\"_isLast\":false,"
                                      "\"_data\":", sequence);
        ngx_http_streaming_format_data(out, &value, NULL);
        ngx_http_streaming_out_literal(out, "}}\n");
        return;
    }

    id.data = buf;
    id.len = ngx_sprintf(buf, "%uL", sequence) - buf;

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_OMNI) {
        ngx_http_streaming_out_literal(out, "event: stream-chunk\n");
        ngx_http_streaming_format_sse_id(out, enc, sequence);
    }

    ngx_http_streaming_format_open(out, enc, "stream-chunk", &id);

    ngx_http_streaming_out_printf(out, ",\"sequence\":%uL,\"data\":",
                                  sequence);
    ngx_http_streaming_format_data(out, &value, &crc);

    if (ev.has_event) {
        ngx_http_streaming_out_literal(out, ",\"event\":");
        ngx_http_streaming_out_json_str(out, &ev.event);
    }

    p = ngx_http_streaming_out_alloc(out, sizeof(",\"isFinal\":false,"
                                                 "\"checksum\":\"00000000\"")
                                          - 1);
    if (p) {
        ngx_sprintf(p, ",\"isFinal\":false,\"checksum\":\"%08xD\"", crc);
    }

    ngx_http_streaming_format_close(out, enc, now);
}


/* the end-of-stream marker: no data, the next sequence number */
void
ngx_http_streaming_format_final(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence, uint64_t now)
{
    ngx_str_t  id;
    u_char     buf[NGX_INT64_LEN + 1];

    if (ngx_http_streaming_format_ws(out, enc)) {
        ngx_http_streaming_format_final(enc->frame, enc, sequence, now);
        ngx_http_streaming_format_frame(out, enc);
        return;
    }

    switch (enc->format) {

    case NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH:
        return;

    case NGX_HTTP_STREAMING_FORMAT_JSONRPC:
        ngx_http_streaming_format_rpc(out, enc);

        ngx_http_streaming_out_printf(out, ",\"result\":{\"_streaming\":true,"
                                      "\"_sequence\":%uL,\"_isLast\":true,"
                                      "\"_data\":\"\"}}\n", sequence);
        return;

    case NGX_HTTP_STREAMING_FORMAT_OMNI:
        ngx_http_streaming_out_literal(out, "event: stream-chunk\n");
        ngx_http_streaming_format_sse_id(out, enc, sequence);
        break;
    }

    id.data = buf;
    id.len = ngx_sprintf(buf, "%uL", sequence) - buf;

    ngx_http_streaming_format_open(out, enc, "stream-chunk", &id);
    ngx_http_streaming_out_printf(out, ",\"sequence\":%uL,\"data\":\"\","
                                  "\"isFinal\":true,"
                                  "\"checksum\":\"00000000\"", sequence);
    ngx_http_streaming_format_close(out, enc, now);
}


void
ngx_http_streaming_format_init(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_init_msg_t *msg,
    uint64_t now)
{
    ngx_str_t  id = ngx_string("init");

    if (ngx_http_streaming_format_ws(out, enc)) {
        ngx_http_streaming_format_init(enc->frame, enc, msg, now);
        ngx_http_streaming_format_frame(out, enc);
        return;
    }

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH
        || enc->format == NGX_HTTP_STREAMING_FORMAT_JSONRPC)
    {
        return;
    }

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_OMNI) {
        ngx_http_streaming_out_literal(out, "event: stream-init\n");
    }

    ngx_http_streaming_format_open(out, enc, "stream-init", &id);

    ngx_http_streaming_out_literal(out, ",\"contentType\":");
    ngx_http_streaming_out_json_str(out, &msg->content_type);

    if (msg->total_size >= 0) {
        ngx_http_streaming_out_printf(out, ",\"totalSize\":%L",
                                      msg->total_size);
    }

    ngx_http_streaming_out_printf(out, ",\"metadata\":{\"resumable\":true,"
                                  "\"resumePosition\":%uL",
                                  msg->resume_position);

    if (msg->subscriber_id.len) {
        ngx_http_streaming_out_literal(out, ",\"subscriberId\":");
        ngx_http_streaming_out_json_str(out, &msg->subscriber_id);
    }

    if (enc->token.len) {
        ngx_http_streaming_out_literal(out, ",\"token\":");
        ngx_http_streaming_out_json_str(out, &enc->token);
    }

    ngx_http_streaming_out_literal(out, "}");
    ngx_http_streaming_format_close(out, enc, now);
}


void
ngx_http_streaming_format_status(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_status_msg_t *msg,
    uint64_t now)
{
    ngx_str_t  id = ngx_string("status");

    if (ngx_http_streaming_format_ws(out, enc)) {
        ngx_http_streaming_format_status(enc->frame, enc, msg, now);
        ngx_http_streaming_format_frame(out, enc);
        return;
    }

    switch (enc->format) {

    case NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH:
        return;

    case NGX_HTTP_STREAMING_FORMAT_JSONRPC:

        /* JSON-RPC carries data and the final or error line only */

        if (msg->code.len == 0) {
            return;
        }

        ngx_http_streaming_format_rpc(out, enc);

        ngx_http_streaming_out_literal(out, ",\"error\":{\"code\":-32000,"
                                       "\"message\":");
        ngx_http_streaming_out_json_str(out, &msg->message);
        ngx_http_streaming_out_literal(out, ",\"data\":{\"code\":");
        ngx_http_streaming_out_json_str(out, &msg->code);
        ngx_http_streaming_out_literal(out, "}}}\n");
        return;

    case NGX_HTTP_STREAMING_FORMAT_OMNI:
        ngx_http_streaming_out_literal(out, "event: stream-status\n");
        break;
    }

    ngx_http_streaming_format_open(out, enc, "stream-status", &id);

    ngx_http_streaming_out_literal(out, ",\"status\":");
    ngx_http_streaming_out_json_str(out, &msg->status);

    ngx_http_streaming_out_printf(out,
                                  ",\"progress\":{\"bytesTransferred\":%uL",
                                  msg->bytes);

    if (msg->total_size >= 0) {
        ngx_http_streaming_out_printf(out, ",\"totalBytes\":%L",
                                      msg->total_size);

        if (msg->total_size > 0) {
            ngx_http_streaming_out_printf(out, ",\"percentage\":%uL",
                            (uint64_t) ngx_min(msg->bytes * 100
                                               / (uint64_t) msg->total_size,
                                               100));
        }
    }

    if (msg->remaining_ms >= 0) {
        ngx_http_streaming_out_printf(out, ",\"estimatedRemainingMs\":%L",
                                      msg->remaining_ms);
    }

    ngx_http_streaming_out_literal(out, "}");

    if (msg->checkpoint) {
        ngx_http_streaming_out_printf(out, ",\"checkpoint\":{\"sequence\":%uL,"
                                      "\"bytesTransferred\":%uL,"
                                      "\"timestamp\":%uL}",
                                      msg->checkpoint_sequence,
                                      msg->checkpoint_bytes,
                                      msg->checkpoint_time);
    }

    if (msg->code.len) {
        ngx_http_streaming_out_literal(out, ",\"error\":{\"code\":");
        ngx_http_streaming_out_json_str(out, &msg->code);
        ngx_http_streaming_out_literal(out, ",\"message\":");
        ngx_http_streaming_out_json_str(out, &msg->message);
        ngx_http_streaming_out_literal(out, "}");
    }

    ngx_http_streaming_format_close(out, enc, now);
}


/* idle keep-alive: a comment for SSE, a stream-status line for NDJSON */
void
ngx_http_streaming_format_heartbeat(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_status_msg_t *msg,
    uint64_t now)
{
    switch (enc->format) {

    case NGX_HTTP_STREAMING_FORMAT_NDJSON:
        ngx_http_streaming_format_status(out, enc, msg, now);
        return;

    case NGX_HTTP_STREAMING_FORMAT_JSONRPC:
    case NGX_HTTP_STREAMING_FORMAT_WS:      /* pings, by the socket */
        return;

    default:
        ngx_http_streaming_out_literal(out, ": heartbeat\n\n");
    }
}


/* {"id":"<stream>:<id>","type":"<type>","payload":{"streamId":"<stream>" */
static void
ngx_http_streaming_format_open(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, const char *type, ngx_str_t *id)
{
    if (enc->format == NGX_HTTP_STREAMING_FORMAT_OMNI) {
        ngx_http_streaming_out_literal(out, "data: ");
    }

    enc->messages++;

    ngx_http_streaming_out_literal(out, "{\"id\":\"");
    ngx_http_streaming_out_raw(out, enc->stream_id.data, enc->stream_id.len);
    ngx_http_streaming_out_printf(out, ":%V\",\"type\":\"%s\","
                                  "\"payload\":{\"streamId\":\"", id, type);
    ngx_http_streaming_out_raw(out, enc->stream_id.data, enc->stream_id.len);
    ngx_http_streaming_out_literal(out, "\"");
}


/* closes the payload, adds the envelope's timestamp and source */
static void
ngx_http_streaming_format_close(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t now)
{
    ngx_http_streaming_format_envelope_end(out, now);

    if (enc->format == NGX_HTTP_STREAMING_FORMAT_OMNI) {
        ngx_http_streaming_out_literal(out, "\n\n");

    } else if (enc->format != NGX_HTTP_STREAMING_FORMAT_WS) {
        ngx_http_streaming_out_literal(out, "\n");
    }
}


/*
 * A "response" to a client's message (WebSocket): its correlationId, and
 * "data" (JSON text, may be NULL) or the error.  The correlationId is in the
 * envelope, as clients of the Omni protocol look for it, and in the payload.
 */
void
ngx_http_streaming_format_response(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_str_t *correlation,
    ngx_chain_t *data, ngx_str_t *code, ngx_str_t *message, uint64_t now)
{
    ngx_chain_t  *cl;

    if (ngx_http_streaming_format_ws(out, enc)) {
        ngx_http_streaming_format_response(enc->frame, enc, correlation, data,
                                           code, message, now);
        ngx_http_streaming_format_frame(out, enc);
        return;
    }

    ngx_http_streaming_out_printf(out, "{\"id\":\"response:%ui\","
                                  "\"type\":\"response\",\"correlationId\":",
                                  ++enc->messages);
    ngx_http_streaming_out_json_str(out, correlation);

    ngx_http_streaming_out_printf(out, ",\"payload\":{\"success\":%s,"
                                  "\"correlationId\":",
                                  code->len ? "false" : "true");
    ngx_http_streaming_out_json_str(out, correlation);

    if (code->len) {
        ngx_http_streaming_out_literal(out, ",\"error\":{\"code\":");
        ngx_http_streaming_out_json_str(out, code);
        ngx_http_streaming_out_literal(out, ",\"message\":");
        ngx_http_streaming_out_json_str(out, message);
        ngx_http_streaming_out_literal(out, "}");

    } else if (data) {
        ngx_http_streaming_out_literal(out, ",\"data\":");

        for (cl = data; cl; cl = cl->next) {
            ngx_http_streaming_out_raw(out, cl->buf->pos,
                                       cl->buf->last - cl->buf->pos);
        }
    }

    ngx_http_streaming_format_envelope_end(out, now);

    if (enc->format != NGX_HTTP_STREAMING_FORMAT_WS) {
        ngx_http_streaming_out_literal(out, "\n");
    }
}


/*
 * What enc->frame holds, one message, goes to out as a text frame; the
 * scratch buffers are kept for the next message.
 */
void
ngx_http_streaming_format_frame(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc)
{
    size_t                     n;
    ngx_chain_t               *cl;
    ngx_http_streaming_out_t  *frame;
    u_char                     header[NGX_HTTP_STREAMING_WS_HEADER_MAX];

    frame = enc->frame;

    if (frame->failed) {
        out->failed = 1;

    } else {
        n = ngx_http_streaming_ws_frame_header(header,
                                               NGX_HTTP_STREAMING_WS_OP_TEXT,
                                               frame->size, 1);
        ngx_http_streaming_out_raw(out, header, n);

        for (cl = frame->first; cl; cl = cl->next) {
            ngx_http_streaming_out_raw(out, cl->buf->pos,
                                       cl->buf->last - cl->buf->pos);
        }
    }

    ngx_http_streaming_out_recycle(frame);
}


/* closes the payload: },"timestamp":"<ISO 8601>","source":"nginx"} */
static void
ngx_http_streaming_format_envelope_end(ngx_http_streaming_out_t *out,
    uint64_t now)
{
    ngx_tm_t  tm;

    ngx_gmtime((time_t) (now / 1000), &tm);

    ngx_http_streaming_out_printf(out,
                  "},\"timestamp\":\"%4d-%02d-%02dT%02d:%02d:%02d.%03dZ\","
                  "\"source\":\"nginx\"}",
                         tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                         tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                         (int) (now % 1000));
}


/* id: <stream>:<sequence>[:<token>] */
static void
ngx_http_streaming_format_sse_id(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence)
{
    ngx_http_streaming_out_literal(out, "id: ");
    ngx_http_streaming_out_raw(out, enc->stream_id.data, enc->stream_id.len);
    ngx_http_streaming_out_printf(out, ":%uL", sequence);

    if (enc->token.len) {
        ngx_http_streaming_out_literal(out, ":");
        ngx_http_streaming_out_raw(out, enc->token.data, enc->token.len);
    }

    ngx_http_streaming_out_literal(out, "\n");
}


/*
 * A JSON string of the data, or its base64 followed by "encoding":"base64"
 * when the bytes are not UTF-8; the CRC-32 of the bytes themselves.
 */
static void
ngx_http_streaming_format_data(ngx_http_streaming_out_t *out,
    ngx_str_t *data, uint32_t *crc)
{
    u_char     *p;
    ngx_str_t   b64;

    if (crc) {
        *crc = ngx_crc32_long(data->data, data->len);
    }

    if (ngx_http_streaming_utf8_valid(data->data, data->len) == NGX_OK) {
        ngx_http_streaming_out_json_str(out, data);
        return;
    }

    p = ngx_http_streaming_out_alloc(out,
                                     ngx_base64_encoded_length(data->len) + 2);
    if (p == NULL) {
        return;
    }

    *p++ = '"';
    b64.data = p;
    ngx_encode_base64(&b64, data);
    p[b64.len] = '"';

    ngx_http_streaming_out_literal(out, ",\"encoding\":\"base64\"");
}


/* a chunk of a stream that is not SSE, as one SSE event: a data line each */
static void
ngx_http_streaming_format_sse_lines(ngx_http_streaming_out_t *out,
    u_char *data, size_t len)
{
    u_char  *p, *last, *eol;

    p = data;
    last = data + len;

    do {
        for (eol = p; eol < last && *eol != '\n' && *eol != '\r'; eol++) {
            /* void */
        }

        ngx_http_streaming_out_literal(out, "data: ");
        ngx_http_streaming_out_raw(out, p, eol - p);
        ngx_http_streaming_out_literal(out, "\n");

        if (eol < last && *eol == '\r' && eol + 1 < last && eol[1] == '\n') {
            eol++;
        }

        p = eol + 1;

    } while (p <= last && eol < last);

    ngx_http_streaming_out_literal(out, "\n");
}


/* {"jsonrpc":"2.0","id":<the request's id> */
static void
ngx_http_streaming_format_rpc(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc)
{
    ngx_http_streaming_out_literal(out, "{\"jsonrpc\":\"2.0\",\"id\":");

    if (enc->rpc_id.len) {
        ngx_http_streaming_out_raw(out, enc->rpc_id.data, enc->rpc_id.len);

    } else {
        ngx_http_streaming_out_literal(out, "null");
    }
}
