
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_FORMAT_H_INCLUDED_
#define _NGX_HTTP_STREAMING_FORMAT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_json.h"


/*
 * Wire formats (streaming_format): how chunks, stream-init and stream-status
 * messages are written for a client.  A leaf: it knows no request and no
 * store; everything it writes goes to an output writer.
 */


typedef enum {
    NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH = 0,
    NGX_HTTP_STREAMING_FORMAT_OMNI,
    NGX_HTTP_STREAMING_FORMAT_NDJSON,
    NGX_HTTP_STREAMING_FORMAT_JSONRPC,
    NGX_HTTP_STREAMING_FORMAT_WS       /* not a name: WebSocket text frames */
} ngx_http_streaming_format_e;


typedef struct {
    ngx_str_t                       stream_id;
    ngx_str_t                       token;      /* empty: none */
    ngx_str_t                       rpc_id;     /* JSON text; empty: null */
    ngx_uint_t                      format;
    ngx_uint_t                      messages;   /* for message ids */
    ngx_http_streaming_out_t       *frame;      /* FORMAT_WS: where a
                                                   message is written before
                                                   it is framed */
    unsigned                        sse:1;      /* chunks are SSE events */
} ngx_http_streaming_encoder_t;


typedef struct {
    ngx_str_t                       content_type;
    int64_t                         total_size;     /* -1: unknown */
    uint64_t                        resume_position;
    ngx_str_t                       subscriber_id;  /* empty: none */
} ngx_http_streaming_init_msg_t;


typedef struct {
    ngx_str_t                       status;
    uint64_t                        bytes;
    int64_t                         total_size;     /* -1: unknown */
    int64_t                         remaining_ms;   /* -1: unknown */
    uint64_t                        checkpoint_sequence;
    uint64_t                        checkpoint_bytes;
    uint64_t                        checkpoint_time;
    ngx_str_t                       code;           /* empty: no error */
    ngx_str_t                       message;
    unsigned                        checkpoint:1;
} ngx_http_streaming_status_msg_t;


/*
 * FORMAT_WS writes the messages of NDJSON, each as one unmasked WebSocket
 * text frame: a message is written to enc->frame, then its frame header and
 * the message go to "out".
 */

extern ngx_str_t  ngx_http_streaming_format_names[];


ngx_str_t *ngx_http_streaming_format_type(ngx_http_streaming_encoder_t *enc);
void ngx_http_streaming_format_chunk(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence, u_char *data,
    size_t len, uint64_t now);
void ngx_http_streaming_format_final(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, uint64_t sequence, uint64_t now);
void ngx_http_streaming_format_init(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_init_msg_t *msg,
    uint64_t now);
void ngx_http_streaming_format_status(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_status_msg_t *msg,
    uint64_t now);
void ngx_http_streaming_format_heartbeat(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_http_streaming_status_msg_t *msg,
    uint64_t now);


void ngx_http_streaming_format_response(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc, ngx_str_t *correlation,
    ngx_chain_t *data, ngx_str_t *code, ngx_str_t *message, uint64_t now);
void ngx_http_streaming_format_frame(ngx_http_streaming_out_t *out,
    ngx_http_streaming_encoder_t *enc);


#endif /* _NGX_HTTP_STREAMING_FORMAT_H_INCLUDED_ */
