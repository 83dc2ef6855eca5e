
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * libFuzzer target: the WebSocket frame parser over arbitrary client bytes,
 * fed whole, cut at pseudo-random places and a byte at a time; the accept
 * key, the frame header encoder and the close payload helper over the same
 * bytes.  Invariants: a call consumes at most what it is given, all of it
 * when it asks for more, and at least a byte for an event; a message fits
 * max and lies in the caller's buffer, a text message and a close reason
 * are UTF-8 (as the framing leaf's validator says), a close code is one
 * that may be sent; an error has a close code of 1002, 1007 or 1009 and
 * sticks; the events and where they end do not depend on the cuts.
 *
 * The first 3 input bytes choose max (0-65535) and the seed of the cuts.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_framing.h"
#include "ngx_http_streaming_ws.h"


typedef struct {
    ngx_uint_t      opcode;       /* 0: an error */
    ngx_uint_t      code;
    size_t          len;
    size_t          off;          /* input offset of its end */
    uint32_t        hash;
} fuzz_event_t;


static size_t fuzz_run(u_char *in, size_t len, size_t max, uint32_t seed,
    size_t step, fuzz_event_t *ev, size_t nev);
static void fuzz_check(ngx_http_streaming_ws_parser_t *ws, ngx_int_t rc,
    u_char *buf, size_t max);
static void fuzz_accept(u_char *in, size_t len);
static void fuzz_encoder(u_char *in, size_t len);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char        *in;
    size_t         len, max, n[3], nev;
    uint32_t       seed;
    fuzz_event_t  *ev[3];

    if (size < 3) {
        return 0;
    }

    max = (data[0] << 8) | data[1];
    seed = data[2];
    len = size - 3;

    /* a buffer of the input's own size, so that ASan sees a read past it */

    in = malloc(len ? len : 1);
    nev = len / 2 + 1;

    ev[0] = malloc(nev * sizeof(fuzz_event_t));
    ev[1] = malloc(nev * sizeof(fuzz_event_t));
    ev[2] = malloc(nev * sizeof(fuzz_event_t));

    if (in == NULL || ev[0] == NULL || ev[1] == NULL || ev[2] == NULL) {
        abort();
    }

    memcpy(in, data + 3, len);

    n[0] = fuzz_run(in, len, max, 0, 0, ev[0], nev);
    n[1] = fuzz_run(in, len, max, seed, 0, ev[1], nev);
    n[2] = (len <= 2048) ? fuzz_run(in, len, max, 0, 1, ev[2], nev) : n[0];

    if (n[1] != n[0]
        || memcmp(ev[1], ev[0], n[0] * sizeof(fuzz_event_t)) != 0)
    {
        abort();
    }

    if (len <= 2048
        && (n[2] != n[0]
            || memcmp(ev[2], ev[0], n[0] * sizeof(fuzz_event_t)) != 0))
    {
        abort();
    }

    fuzz_accept(in, len);
    fuzz_encoder(in, len);

    free(ev[0]);
    free(ev[1]);
    free(ev[2]);
    free(in);

    return 0;
}


/*
 * Feeds [in, in + len) in pieces: whole (seed and step 0), of step bytes,
 * or of pseudo-random sizes from seed; each piece in a buffer of its own.
 * Returns the number of events recorded in ev.
 */

static size_t
fuzz_run(u_char *in, size_t len, size_t max, uint32_t seed, size_t step,
    fuzz_event_t *ev, size_t nev)
{
    u_char                          *buf, *piece, *p, *last;
    size_t                           a, b, n, nevents, i;
    uint32_t                         h;
    ngx_int_t                        rc;
    fuzz_event_t                    *e;
    ngx_http_streaming_ws_parser_t   ws;

    buf = malloc(max ? max : 1);
    if (buf == NULL) {
        abort();
    }

    ngx_http_streaming_ws_parser_init(&ws, buf, max);
    nevents = 0;
    rc = NGX_AGAIN;

    for (a = 0; a < len && rc != NGX_ERROR; a = b) {

        if (step) {
            b = a + step;

        } else if (seed) {
            seed = seed * 1103515245 + 12345;
            b = a + 1 + (seed >> 16) % 131;

        } else {
            b = len;
        }

        b = ngx_min(b, len);

        piece = malloc(b - a);
        if (piece == NULL) {
            abort();
        }

        memcpy(piece, in + a, b - a);
        p = piece;
        last = piece + (b - a);

        for ( ;; ) {
            n = (size_t) -1;
            rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);

            if (n > (size_t) (last - p)) {
                abort();
            }

            if (rc == NGX_AGAIN) {
                if (n != (size_t) (last - p)) {
                    abort();
                }

                break;
            }

            if ((rc != NGX_OK && rc != NGX_ERROR)
                || (rc == NGX_OK && n == 0)
                || nevents == nev)
            {
                abort();
            }

            p += n;
            fuzz_check(&ws, rc, buf, max);

            /* FNV-1a of the payload */

            h = 2166136261u;
            for (i = 0; i < ws.payload.len; i++) {
                h = (h ^ ws.payload.data[i]) * 16777619u;
            }

            e = &ev[nevents++];
            memset(e, 0, sizeof(fuzz_event_t));

            e->opcode = (rc == NGX_OK) ? ws.opcode : 0;
            e->code = ws.code;
            e->len = ws.payload.len;
            e->off = a + (p - piece);
            e->hash = h;

            if (rc == NGX_ERROR) {
                break;
            }
        }

        free(piece);
    }

    free(buf);

    return nevents;
}


static void
fuzz_check(ngx_http_streaming_ws_parser_t *ws, ngx_int_t rc, u_char *buf,
    size_t max)
{
    size_t  n;

    if (rc == NGX_ERROR) {
        if ((ws->code != NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR
             && ws->code != NGX_HTTP_STREAMING_WS_INVALID_DATA
             && ws->code != NGX_HTTP_STREAMING_WS_TOO_BIG)
            || ws->error == NULL
            || ws->payload.len != 0)
        {
            abort();
        }

        /* it sticks */

        if (ngx_http_streaming_ws_parse(ws, buf, buf, &n) != NGX_ERROR
            || n != 0)
        {
            abort();
        }

        return;
    }

    switch (ws->opcode) {

    case NGX_HTTP_STREAMING_WS_OP_TEXT:
        if (ws->payload.len
            && ngx_http_streaming_utf8_valid(ws->payload.data,
                                             ws->payload.len)
               != NGX_OK)
        {
            abort();
        }

        /* fall through */

    case NGX_HTTP_STREAMING_WS_OP_BINARY:
        if (ws->payload.data != buf || ws->payload.len > max) {
            abort();
        }

        break;

    case NGX_HTTP_STREAMING_WS_OP_CLOSE:
        if (ws->payload.len == 0) {
            if (ws->code != NGX_HTTP_STREAMING_WS_NO_STATUS
                || ws->reason.len != 0)
            {
                abort();
            }

            break;
        }

        if (!ngx_http_streaming_ws_close_code_valid(ws->code)
            || ws->reason.len + 2 != ws->payload.len
            || ws->reason.data != ws->payload.data + 2
            || ngx_http_streaming_utf8_valid(ws->reason.data, ws->reason.len)
               != NGX_OK)
        {
            abort();
        }

        /* fall through */

    case NGX_HTTP_STREAMING_WS_OP_PING:
    case NGX_HTTP_STREAMING_WS_OP_PONG:
        if (ws->payload.len > NGX_HTTP_STREAMING_WS_CONTROL_MAX) {
            abort();
        }

        break;

    default:
        abort();
    }
}


static void
fuzz_accept(u_char *in, size_t len)
{
    u_char      out[NGX_HTTP_STREAMING_WS_ACCEPT_LEN];
    ngx_str_t   key;
    ngx_uint_t  i;

    key.data = in;
    key.len = ngx_min(len, 24);

    if (ngx_http_streaming_ws_accept_key(&key, out) != NGX_OK) {
        return;
    }

    if (key.len != 24 || in[22] != '=' || in[23] != '=' || out[27] != '=') {
        abort();
    }

    for (i = 0; i < 27; i++) {
        if (!isalnum(out[i]) && out[i] != '+' && out[i] != '/') {
            abort();
        }
    }
}


/*
 * A header the encoder writes for a length from the input, masked as a
 * client would, parses back to that length; a close payload from the
 * input's bytes as the reason fits a control frame and keeps a UTF-8
 * reason UTF-8.
 */

static void
fuzz_encoder(u_char *in, size_t len)
{
    u_char                          hdr[NGX_HTTP_STREAMING_WS_HEADER_MAX + 4];
    u_char                          payload[NGX_HTTP_STREAMING_WS_CONTROL_MAX];
    size_t                          n, consumed, i;
    uint64_t                        flen;
    ngx_str_t                       reason;
    ngx_uint_t                      code;
    ngx_http_streaming_ws_parser_t  ws;

    flen = 0;

    for (i = 0; i < ngx_min(len, 8); i++) {
        flen = (flen << 8) | in[i];
    }

    flen &= 0x7fffffffffffffffULL;

    n = ngx_http_streaming_ws_frame_header(hdr,
                                           NGX_HTTP_STREAMING_WS_OP_BINARY,
                                           flen, 1);

    if (n != (flen < 126 ? 2u : (flen <= 0xffff ? 4u : 10u))) {
        abort();
    }

    hdr[1] |= 0x80;
    memset(hdr + n, 0, 4);

    /* max 0: a payload is too big, an empty one a message */

    ngx_http_streaming_ws_parser_init(&ws, payload, 0);

    if (flen == 0) {
        if (ngx_http_streaming_ws_parse(&ws, hdr, hdr + n + 4, &consumed)
            != NGX_OK
            || consumed != n + 4 || ws.payload.len != 0)
        {
            abort();
        }

    } else if (ngx_http_streaming_ws_parse(&ws, hdr, hdr + n + 4, &consumed)
               != NGX_ERROR
               || ws.code != NGX_HTTP_STREAMING_WS_TOO_BIG
               || consumed != n)
    {
        abort();
    }

    code = len ? in[0] * 20 : 1000;
    reason.data = in;
    reason.len = len;

    n = ngx_http_streaming_ws_close_payload(payload, code, &reason);

    if (n > NGX_HTTP_STREAMING_WS_CONTROL_MAX
        || (n == 0) != !ngx_http_streaming_ws_close_code_valid(code))
    {
        abort();
    }

    if (n > 2 && ngx_http_streaming_utf8_valid(in, len) == NGX_OK
        && ngx_http_streaming_utf8_valid(payload + 2, n - 2) != NGX_OK)
    {
        abort();
    }
}
