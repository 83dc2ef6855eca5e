
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_WS_H_INCLUDED_
#define _NGX_HTTP_STREAMING_WS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * WebSocket (RFC 6455): the handshake's accept key, a parser of the frames
 * a client sends and an encoder of the frames a server sends.  A leaf:
 * plain functions over byte ranges that know no request, no store and no
 * session, and allocate nothing.  Of nginx it calls only ngx_sha1_*() and
 * the base64 functions (the accept key), so that a unit test or a fuzzer
 * can compile this file with stand-ins for those (t/unit/sha1.c).
 *
 * The parser.  ngx_http_streaming_ws_parser_init() takes a buffer of max
 * bytes that the caller owns and keeps for the parser's lifetime: data
 * messages are reassembled (unmasked) there, so a message is at most max
 * bytes (a larger one is error 1009 as soon as a frame header says so,
 * before its payload is read).  Control frames go to a buffer inside the
 * parser.  The caller then feeds each input buffer to
 * ngx_http_streaming_ws_parse() until it is used up:
 *
 *     for (p = b->pos; p < b->last; p += n) {
 *         rc = ngx_http_streaming_ws_parse(ws, p, b->last, &n);
 *
 *         if (rc == NGX_AGAIN) {      all of [p, last) used, n = last - p
 *             break;
 *         }
 *
 *         if (rc == NGX_ERROR) {      send a close with ws->code, end
 *             ...
 *         }
 *
 *         NGX_OK: one event in ws->opcode, ws->payload, ws->code and
 *         ws->reason; n bytes, the last of them ending the event's frame
 *     }
 *
 * Events (rc NGX_OK):
 *
 *     TEXT, BINARY  a whole message: its fragments reassembled and
 *                   unmasked in the caller's buffer, ws->payload.  TEXT is
 *                   valid UTF-8 (checked as the bytes arrive);
 *     PING, PONG    ws->payload, at most 125 bytes;
 *     CLOSE         ws->payload is the whole payload, ws->code the status
 *                   code (NGX_HTTP_STREAMING_WS_NO_STATUS, 1005, when the
 *                   payload is empty) and ws->reason the UTF-8 text after
 *                   it.  The caller answers with a close and reads no
 *                   further.
 *
 * The buffer may be given late: ws->buf NULL at init makes the parser
 * return NGX_DECLINED, *consumed counting the bytes it read, when the
 * first payload byte of a data message is due; the caller sets ws->buf
 * (max bytes) and goes on with the rest.  A client that only sends control
 * frames then costs no message buffer.
 *
 * The payload is valid until the next call.  Control frames may come
 * between the fragments of a message: the message's bytes stay in the
 * buffer meanwhile.
 *
 * NGX_ERROR: the client broke the protocol.  ws->code is the status code
 * of the close to send (1002 protocol error, 1007 invalid UTF-8, 1009 too
 * big) and ws->error says why, in lowercase, for the log.  *consumed counts
 * the bytes read until the error was found; every later call returns
 * NGX_ERROR again and consumes nothing.
 *
 * Protocol errors (1002): an unmasked frame; RSV1-3 set (no extension is
 * negotiated); a reserved opcode; a fragmented control frame or one of
 * more than 125 bytes; a continuation without a message started; a text
 * or binary frame while a fragmented message is not finished; a 64-bit
 * length with its most significant bit set; a close with a 1-byte payload
 * or a status code not allowed on the wire.  Lengths not in their shortest
 * encoding are accepted.
 */


#define NGX_HTTP_STREAMING_WS_OP_CONTINUATION  0x0
#define NGX_HTTP_STREAMING_WS_OP_TEXT          0x1
#define NGX_HTTP_STREAMING_WS_OP_BINARY        0x2
#define NGX_HTTP_STREAMING_WS_OP_CLOSE         0x8
#define NGX_HTTP_STREAMING_WS_OP_PING          0x9
#define NGX_HTTP_STREAMING_WS_OP_PONG          0xa

#define NGX_HTTP_STREAMING_WS_NORMAL           1000
#define NGX_HTTP_STREAMING_WS_GOING_AWAY       1001
#define NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR   1002
#define NGX_HTTP_STREAMING_WS_UNSUPPORTED      1003
#define NGX_HTTP_STREAMING_WS_NO_STATUS        1005  /* never sent */
#define NGX_HTTP_STREAMING_WS_ABNORMAL         1006  /* never sent */
#define NGX_HTTP_STREAMING_WS_INVALID_DATA     1007
#define NGX_HTTP_STREAMING_WS_POLICY           1008
#define NGX_HTTP_STREAMING_WS_TOO_BIG          1009
#define NGX_HTTP_STREAMING_WS_EXTENSION        1010
#define NGX_HTTP_STREAMING_WS_INTERNAL_ERROR   1011
#define NGX_HTTP_STREAMING_WS_TRY_AGAIN        1013

/* control frames' payloads, and a close's reason after its 2-byte code */
#define NGX_HTTP_STREAMING_WS_CONTROL_MAX      125
#define NGX_HTTP_STREAMING_WS_REASON_MAX       123

/* a frame header the encoder writes: 2, 4 or 10 bytes */
#define NGX_HTTP_STREAMING_WS_HEADER_MAX       10

/* the Sec-WebSocket-Accept value */
#define NGX_HTTP_STREAMING_WS_ACCEPT_LEN       28


/* where an incremental UTF-8 check is: within a character or not */
typedef struct {
    u_char          need;         /* continuation bytes due */
    u_char          lo;           /* the range of the next one */
    u_char          hi;
} ngx_http_streaming_ws_utf8_t;


typedef struct {
    /* configuration, set by ngx_http_streaming_ws_parser_init() */
    u_char         *buf;          /* max bytes, the caller's */
    size_t          max;

    /* the last event (NGX_OK) or error (NGX_ERROR) */
    ngx_uint_t      opcode;
    ngx_str_t       payload;
    ngx_uint_t      code;         /* CLOSE: received; error: to send */
    ngx_str_t       reason;       /* CLOSE */
    const char     *error;

    /* private */
    uint64_t        frame_len;    /* the frame's payload length */
    uint64_t        frame_off;    /* its bytes read */
    size_t          msg_len;      /* the message's bytes in buf */
    ngx_uint_t      state;
    ngx_uint_t      len_bytes;    /* extended length bytes still due */
    ngx_uint_t      mask_bytes;   /* masking key bytes read */
    u_char          mask[4];
    u_char          control[NGX_HTTP_STREAMING_WS_CONTROL_MAX];

    ngx_http_streaming_ws_utf8_t  utf8;  /* the text message's */

    u_char          frame_op;     /* the frame's opcode */
    u_char          msg_op;       /* the message's: TEXT, BINARY or 0 */

    unsigned        fin:1;
    unsigned        failed:1;
} ngx_http_streaming_ws_parser_t;


/*
 * Writes the Sec-WebSocket-Accept value for a Sec-WebSocket-Key to out,
 * NGX_HTTP_STREAMING_WS_ACCEPT_LEN bytes.  NGX_DECLINED if the key is not
 * the base64 of 16 bytes: 24 characters, the last two "=".
 */
ngx_int_t ngx_http_streaming_ws_accept_key(ngx_str_t *key, u_char *out);

void ngx_http_streaming_ws_parser_init(ngx_http_streaming_ws_parser_t *ws,
    u_char *buf, size_t max);
ngx_int_t ngx_http_streaming_ws_parse(ngx_http_streaming_ws_parser_t *ws,
    u_char *p, u_char *last, size_t *consumed);

/*
 * Writes the header of an unmasked frame (a server's) with that opcode,
 * payload length and FIN bit, in the shortest length encoding, to buf
 * (NGX_HTTP_STREAMING_WS_HEADER_MAX bytes); returns its length.
 */
size_t ngx_http_streaming_ws_frame_header(u_char *buf, ngx_uint_t opcode,
    uint64_t len, ngx_uint_t fin);

/*
 * Writes a close frame's payload to buf (NGX_HTTP_STREAMING_WS_CONTROL_MAX
 * bytes): the code, then the reason (may be NULL) cut to
 * NGX_HTTP_STREAMING_WS_REASON_MAX bytes at a UTF-8 character boundary.
 * A code that may not be sent (see ngx_http_streaming_ws_close_code_valid())
 * gives the empty payload.  Returns its length.
 */
size_t ngx_http_streaming_ws_close_payload(u_char *buf, ngx_uint_t code,
    ngx_str_t *reason);

/*
 * Whether a close frame may carry the status code: 1000-1003, 1007-1014,
 * 3000-4999.
 */
ngx_uint_t ngx_http_streaming_ws_close_code_valid(ngx_uint_t code);


#endif /* _NGX_HTTP_STREAMING_WS_H_INCLUDED_ */
