
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_sha1.h>

#include "ngx_http_streaming_ws.h"


/* the parser's states */
#define NGX_HTTP_STREAMING_WS_HEADER    0
#define NGX_HTTP_STREAMING_WS_LENGTH    1
#define NGX_HTTP_STREAMING_WS_EXTENDED  2
#define NGX_HTTP_STREAMING_WS_MASK      3
#define NGX_HTTP_STREAMING_WS_PAYLOAD   4

#define NGX_HTTP_STREAMING_WS_KEY_LEN   24

#define ngx_http_streaming_ws_is_control(op)  ((op) & 0x8)


static ngx_int_t ngx_http_streaming_ws_header(
    ngx_http_streaming_ws_parser_t *ws, u_char c);
static ngx_int_t ngx_http_streaming_ws_mask_len(
    ngx_http_streaming_ws_parser_t *ws, u_char c);
static ngx_int_t ngx_http_streaming_ws_length(
    ngx_http_streaming_ws_parser_t *ws);
static ngx_int_t ngx_http_streaming_ws_payload(
    ngx_http_streaming_ws_parser_t *ws, u_char **pos, u_char *last);
static ngx_int_t ngx_http_streaming_ws_frame_end(
    ngx_http_streaming_ws_parser_t *ws);
static ngx_int_t ngx_http_streaming_ws_close(
    ngx_http_streaming_ws_parser_t *ws);
static ngx_int_t ngx_http_streaming_ws_fail(
    ngx_http_streaming_ws_parser_t *ws, ngx_uint_t code, const char *error);
static ngx_inline ngx_int_t ngx_http_streaming_ws_utf8(
    ngx_http_streaming_ws_utf8_t *u, u_char c);


static u_char  ngx_http_streaming_ws_guid[] =
    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";


ngx_int_t
ngx_http_streaming_ws_accept_key(ngx_str_t *key, u_char *out)
{
    u_char      hash[20];
    u_char      decoded[ngx_base64_decoded_length(
                              NGX_HTTP_STREAMING_WS_KEY_LEN)];
    ngx_str_t   src, dst;
    ngx_sha1_t  sha1;

    /* the base64 of 16 bytes: 22 characters and "==" */

    if (key->len != NGX_HTTP_STREAMING_WS_KEY_LEN
        || key->data[22] != '='
        || key->data[23] != '=')
    {
        return NGX_DECLINED;
    }

    dst.data = decoded;

    if (ngx_decode_base64(&dst, key) != NGX_OK || dst.len != 16) {
        return NGX_DECLINED;
    }

    /* the key as sent, not the bytes it encodes (RFC 6455, 4.2.2) */

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, ngx_http_streaming_ws_guid,
                    sizeof(ngx_http_streaming_ws_guid) - 1);
    ngx_sha1_final(hash, &sha1);

    src.data = hash;
    src.len = sizeof(hash);
    dst.data = out;

    ngx_encode_base64(&dst, &src);

    return NGX_OK;
}


void
ngx_http_streaming_ws_parser_init(ngx_http_streaming_ws_parser_t *ws,
    u_char *buf, size_t max)
{
    ngx_memzero(ws, sizeof(ngx_http_streaming_ws_parser_t));

    ws->buf = buf;
    ws->max = max;
    ws->state = NGX_HTTP_STREAMING_WS_HEADER;
}


ngx_int_t
ngx_http_streaming_ws_parse(ngx_http_streaming_ws_parser_t *ws, u_char *p,
    u_char *last, size_t *consumed)
{
    u_char     *start;
    ngx_int_t   rc;

    if (ws->failed) {
        *consumed = 0;
        return NGX_ERROR;
    }

    start = p;

    for ( ;; ) {

        switch (ws->state) {

        case NGX_HTTP_STREAMING_WS_HEADER:
            if (p == last) {
                goto again;
            }

            if (ngx_http_streaming_ws_header(ws, *p++) != NGX_OK) {
                goto failed;
            }

            ws->state = NGX_HTTP_STREAMING_WS_LENGTH;
            break;

        case NGX_HTTP_STREAMING_WS_LENGTH:
            if (p == last) {
                goto again;
            }

            if (ngx_http_streaming_ws_mask_len(ws, *p++) != NGX_OK) {
                goto failed;
            }

            break;

        case NGX_HTTP_STREAMING_WS_EXTENDED:
            if (p == last) {
                goto again;
            }

            ws->frame_len = (ws->frame_len << 8) | *p++;

            if (--ws->len_bytes) {
                break;
            }

            if (ngx_http_streaming_ws_length(ws) != NGX_OK) {
                goto failed;
            }

            ws->state = NGX_HTTP_STREAMING_WS_MASK;
            break;

        case NGX_HTTP_STREAMING_WS_MASK:
            if (p == last) {
                goto again;
            }

            ws->mask[ws->mask_bytes++] = *p++;

            if (ws->mask_bytes < 4) {
                break;
            }

            ws->mask_bytes = 0;
            ws->frame_off = 0;
            ws->state = NGX_HTTP_STREAMING_WS_PAYLOAD;
            break;

        default: /* NGX_HTTP_STREAMING_WS_PAYLOAD */

            if (ws->buf == NULL && ws->frame_len
                && !ngx_http_streaming_ws_is_control(ws->frame_op))
            {
                /* the caller gives the message buffer now */
                *consumed = p - start;
                return NGX_DECLINED;
            }

            /* an empty payload ends the frame even with no byte left */

            if (ngx_http_streaming_ws_payload(ws, &p, last) != NGX_OK) {
                goto failed;
            }

            if (ws->frame_off < ws->frame_len) {
                goto again;
            }

            ws->state = NGX_HTTP_STREAMING_WS_HEADER;

            rc = ngx_http_streaming_ws_frame_end(ws);

            if (rc == NGX_OK) {
                *consumed = p - start;
                return NGX_OK;
            }

            if (rc == NGX_ERROR) {
                goto failed;
            }

            /* NGX_AGAIN: a fragment that does not end its message */
            break;
        }
    }

again:

    *consumed = last - start;
    return NGX_AGAIN;

failed:

    *consumed = p - start;
    return NGX_ERROR;
}


static ngx_int_t
ngx_http_streaming_ws_header(ngx_http_streaming_ws_parser_t *ws, u_char c)
{
    ngx_uint_t  op;

    if (c & 0x70) {
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "reserved bits set");
    }

    op = c & 0x0f;

    ws->fin = (c & 0x80) ? 1 : 0;
    ws->frame_op = (u_char) op;

    switch (op) {

    case NGX_HTTP_STREAMING_WS_OP_CONTINUATION:
        if (ws->msg_op == 0) {
            return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "continuation without a message");
        }

        return NGX_OK;

    case NGX_HTTP_STREAMING_WS_OP_TEXT:
    case NGX_HTTP_STREAMING_WS_OP_BINARY:
        if (ws->msg_op != 0) {
            return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "new message inside a fragmented one");
        }

        ws->msg_op = (u_char) op;
        ws->msg_len = 0;
        ngx_memzero(&ws->utf8, sizeof(ngx_http_streaming_ws_utf8_t));

        return NGX_OK;

    case NGX_HTTP_STREAMING_WS_OP_CLOSE:
    case NGX_HTTP_STREAMING_WS_OP_PING:
    case NGX_HTTP_STREAMING_WS_OP_PONG:
        if (!ws->fin) {
            return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "fragmented control frame");
        }

        return NGX_OK;

    default:
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "reserved opcode");
    }
}


/* the second byte: the mask bit and the 7-bit length */

static ngx_int_t
ngx_http_streaming_ws_mask_len(ngx_http_streaming_ws_parser_t *ws, u_char c)
{
    if (!(c & 0x80)) {
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "unmasked frame");
    }

    c &= 0x7f;
    ws->frame_len = 0;

    if (ngx_http_streaming_ws_is_control(ws->frame_op)
        && c > NGX_HTTP_STREAMING_WS_CONTROL_MAX)
    {
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "control frame over 125 bytes");
    }

    if (c == 126 || c == 127) {
        ws->len_bytes = (c == 126) ? 2 : 8;
        ws->state = NGX_HTTP_STREAMING_WS_EXTENDED;
        return NGX_OK;
    }

    ws->frame_len = c;
    ws->state = NGX_HTTP_STREAMING_WS_MASK;

    return ngx_http_streaming_ws_length(ws);
}


/* checks a frame's payload length as soon as it is known */

static ngx_int_t
ngx_http_streaming_ws_length(ngx_http_streaming_ws_parser_t *ws)
{
    if (ws->frame_len & ((uint64_t) 1 << 63)) {
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "64-bit length with its high bit set");
    }

    if (ngx_http_streaming_ws_is_control(ws->frame_op)) {

        /* its 7-bit length is at most 125: see mask_len() */

        if (ws->frame_op == NGX_HTTP_STREAMING_WS_OP_CLOSE
            && ws->frame_len == 1)
        {
            return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "close frame of 1 byte");
        }

        return NGX_OK;
    }

    if (ws->frame_len > (uint64_t) (ws->max - ws->msg_len)) {
        return ngx_http_streaming_ws_fail(ws, NGX_HTTP_STREAMING_WS_TOO_BIG,
                                          "message too big");
    }

    return NGX_OK;
}


/*
 * Unmasks what [*pos, last) holds of the frame's payload to its place: the
 * control buffer, or the message's end in ws->buf, and moves *pos past the
 * bytes used.  NGX_ERROR if a text message's byte is not UTF-8: *pos is
 * then past that byte.
 */

static ngx_int_t
ngx_http_streaming_ws_payload(ngx_http_streaming_ws_parser_t *ws,
    u_char **pos, u_char *last)
{
    u_char      *p, *dst, c;
    size_t       n, i;
    uint64_t     off;
    ngx_uint_t   text;

    p = *pos;
    n = (size_t) ngx_min((uint64_t) (last - p), ws->frame_len - ws->frame_off);
    off = ws->frame_off;

    if (ngx_http_streaming_ws_is_control(ws->frame_op)) {
        dst = ws->control + off;
        text = 0;

    } else {
        dst = ws->buf + ws->msg_len;
        text = (ws->msg_op == NGX_HTTP_STREAMING_WS_OP_TEXT);
    }

    for (i = 0; i < n; i++) {
        c = p[i] ^ ws->mask[(off + i) & 3];
        dst[i] = c;

        if (text && ngx_http_streaming_ws_utf8(&ws->utf8, c) != NGX_OK) {
            (void) ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_INVALID_DATA,
                                       "invalid utf-8 in a text message");
            *pos = p + i + 1;
            return NGX_ERROR;
        }
    }

    ws->frame_off += n;

    if (!ngx_http_streaming_ws_is_control(ws->frame_op)) {
        ws->msg_len += n;
    }

    *pos = p + n;

    return NGX_OK;
}


/* NGX_OK: an event; NGX_AGAIN: a fragment read; NGX_ERROR */

static ngx_int_t
ngx_http_streaming_ws_frame_end(ngx_http_streaming_ws_parser_t *ws)
{
    ws->code = 0;
    ws->reason.len = 0;
    ws->reason.data = NULL;
    ws->error = NULL;

    if (ngx_http_streaming_ws_is_control(ws->frame_op)) {
        ws->opcode = ws->frame_op;
        ws->payload.data = ws->control;
        ws->payload.len = (size_t) ws->frame_len;

        if (ws->frame_op == NGX_HTTP_STREAMING_WS_OP_CLOSE) {
            return ngx_http_streaming_ws_close(ws);
        }

        return NGX_OK;
    }

    if (!ws->fin) {
        return NGX_AGAIN;
    }

    if (ws->msg_op == NGX_HTTP_STREAMING_WS_OP_TEXT && ws->utf8.need) {
        return ngx_http_streaming_ws_fail(ws,
                                          NGX_HTTP_STREAMING_WS_INVALID_DATA,
                                          "text message ends within a "
                                          "utf-8 character");
    }

    ws->opcode = ws->msg_op;
    ws->payload.data = ws->buf;
    ws->payload.len = ws->msg_len;
    ws->msg_op = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_streaming_ws_close(ngx_http_streaming_ws_parser_t *ws)
{
    u_char                        *p, *last;
    ngx_http_streaming_ws_utf8_t   u;

    if (ws->payload.len == 0) {
        ws->code = NGX_HTTP_STREAMING_WS_NO_STATUS;
        ws->reason.data = ws->payload.data;
        return NGX_OK;
    }

    /* a 1-byte payload was refused with the frame's length */

    p = ws->payload.data;
    last = p + ws->payload.len;

    ws->code = ((ngx_uint_t) p[0] << 8) | p[1];

    if (!ngx_http_streaming_ws_close_code_valid(ws->code)) {
        return ngx_http_streaming_ws_fail(ws,
                                       NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR,
                                       "invalid close code");
    }

    /* the reason is checked apart: a message may be half-way through */

    ngx_memzero(&u, sizeof(ngx_http_streaming_ws_utf8_t));

    for (p += 2; p < last; p++) {
        if (ngx_http_streaming_ws_utf8(&u, *p) != NGX_OK) {
            break;
        }
    }

    if (p < last || u.need) {
        return ngx_http_streaming_ws_fail(ws,
                                          NGX_HTTP_STREAMING_WS_INVALID_DATA,
                                          "invalid utf-8 in a close reason");
    }

    ws->reason.data = ws->payload.data + 2;
    ws->reason.len = ws->payload.len - 2;

    return NGX_OK;
}


static ngx_int_t
ngx_http_streaming_ws_fail(ngx_http_streaming_ws_parser_t *ws,
    ngx_uint_t code, const char *error)
{
    ws->failed = 1;
    ws->code = code;
    ws->error = error;
    ws->opcode = 0;
    ws->payload.len = 0;
    ws->payload.data = NULL;
    ws->reason.len = 0;
    ws->reason.data = NULL;

    return NGX_ERROR;
}


/*
 * One byte of strict UTF-8 (no overlong forms, no surrogates, nothing
 * above U+10FFFF), given what came before it in u: NGX_OK or NGX_ERROR.
 */

static ngx_inline ngx_int_t
ngx_http_streaming_ws_utf8(ngx_http_streaming_ws_utf8_t *u, u_char c)
{
    if (u->need) {
        if (c < u->lo || c > u->hi) {
            return NGX_ERROR;
        }

        u->need--;
        u->lo = 0x80;
        u->hi = 0xbf;

        return NGX_OK;
    }

    if (c < 0x80) {
        return NGX_OK;
    }

    /* the second byte's range excludes overlong forms and surrogates */

    u->lo = 0x80;
    u->hi = 0xbf;

    if (c < 0xc2) {
        /* a continuation byte, or an overlong two-byte form */
        return NGX_ERROR;
    }

    if (c < 0xe0) {
        u->need = 1;

    } else if (c < 0xf0) {
        u->need = 2;

        if (c == 0xe0) {
            u->lo = 0xa0;

        } else if (c == 0xed) {
            u->hi = 0x9f;
        }

    } else if (c < 0xf5) {
        u->need = 3;

        if (c == 0xf0) {
            u->lo = 0x90;

        } else if (c == 0xf4) {
            u->hi = 0x8f;
        }

    } else {
        return NGX_ERROR;
    }

    return NGX_OK;
}


size_t
ngx_http_streaming_ws_frame_header(u_char *buf, ngx_uint_t opcode,
    uint64_t len, ngx_uint_t fin)
{
    ngx_uint_t  i;

    buf[0] = (u_char) ((fin ? 0x80 : 0) | (opcode & 0x0f));

    if (len < 126) {
        buf[1] = (u_char) len;
        return 2;
    }

    if (len <= 0xffff) {
        buf[1] = 126;
        buf[2] = (u_char) (len >> 8);
        buf[3] = (u_char) len;
        return 4;
    }

    buf[1] = 127;

    for (i = 0; i < 8; i++) {
        buf[2 + i] = (u_char) (len >> (56 - 8 * i));
    }

    return 10;
}


size_t
ngx_http_streaming_ws_close_payload(u_char *buf, ngx_uint_t code,
    ngx_str_t *reason)
{
    size_t  n;

    if (!ngx_http_streaming_ws_close_code_valid(code)) {
        return 0;
    }

    buf[0] = (u_char) (code >> 8);
    buf[1] = (u_char) code;

    if (reason == NULL) {
        return 2;
    }

    n = reason->len;

    if (n > NGX_HTTP_STREAMING_WS_REASON_MAX) {
        n = NGX_HTTP_STREAMING_WS_REASON_MAX;

        /* back to the start of the character that the cut would split */

        while (n && (reason->data[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    ngx_memcpy(buf + 2, reason->data, n);

    return 2 + n;
}


ngx_uint_t
ngx_http_streaming_ws_close_code_valid(ngx_uint_t code)
{
    /* 1004-1006 and 1015 are reserved, 1016-2999 not assigned */

    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}
