
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * Unit tests of the WebSocket leaf (src/ngx_http_streaming_ws.c), TAP on
 * stdout.  A simulated caller feeds client frames to the parser in pieces,
 * each piece in a buffer of its own size and the reassembly buffer of
 * exactly max bytes (so that AddressSanitizer sees any access past them),
 * and records each event with the input offset where it ended.  Every
 * case runs whole, a byte at a time and cut at every point (every pair of
 * points for short inputs): the events must not depend on the cuts.  The
 * accept key and SHA-1 stand-in are checked against OpenSSL.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_sha1.h>

#include <openssl/evp.h>

#include "ngx_http_streaming_ws.h"
#include "tap.h"


#define NGX_HTTP_STREAMING_TEST_FRAMES  8
#define NGX_HTTP_STREAMING_TEST_EXPECT  8
#define NGX_HTTP_STREAMING_TEST_EVENTS  64
#define NGX_HTTP_STREAMING_TEST_INPUT   (1 << 18)
#define NGX_HTTP_STREAMING_TEST_XS      70000

/* frame flags */
#define UNMASKED  1
#define LEN16     2
#define LEN64     4

#define FIN       0x80
#define TEXT      NGX_HTTP_STREAMING_WS_OP_TEXT
#define BINARY    NGX_HTTP_STREAMING_WS_OP_BINARY
#define CLOSE     NGX_HTTP_STREAMING_WS_OP_CLOSE
#define PING      NGX_HTTP_STREAMING_WS_OP_PING
#define PONG      NGX_HTTP_STREAMING_WS_OP_PONG

#define XS        ((char *) ngx_http_streaming_test_xs)


typedef struct {
    int             b0;            /* FIN, RSV and opcode */
    char           *payload;       /* NULL ends the list */
    size_t          len;           /* 0: strlen(payload) */
    ngx_uint_t      flags;
} ngx_http_streaming_test_frame_t;


typedef struct {
    char           *name;
    size_t          max;           /* 0: 1024 */
    ngx_http_streaming_test_frame_t  frames[NGX_HTTP_STREAMING_TEST_FRAMES];
    char           *raw;           /* instead of frames */
    size_t          raw_len;
    char           *expect[NGX_HTTP_STREAMING_TEST_EXPECT];
                                   /* "T" text, "B" binary, "P" ping,
                                      "O" pong + payload; "C<code>:" +
                                      reason; "E<code>@<offset>" */
} ngx_http_streaming_test_case_t;


typedef struct {
    u_char         *data;          /* the event as the "expect" strings */
    size_t          len;
    size_t          off;           /* input offset of its end */
} ngx_http_streaming_test_event_t;


typedef struct {
    ngx_http_streaming_test_event_t  ev[NGX_HTTP_STREAMING_TEST_EVENTS];
    ngx_uint_t                       n;
    char                             why[256];
} ngx_http_streaming_test_result_t;


static size_t ngx_http_streaming_test_build(u_char *out,
    ngx_http_streaming_test_frame_t *f, ngx_uint_t i);
static void ngx_http_streaming_test_feed(u_char *in, size_t len, size_t max,
    size_t *cuts, ngx_uint_t ncuts, ngx_http_streaming_test_result_t *r);
static void ngx_http_streaming_test_add(ngx_http_streaming_test_result_t *r,
    ngx_http_streaming_ws_parser_t *ws, ngx_int_t rc, size_t off);
static void ngx_http_streaming_test_free(ngx_http_streaming_test_result_t *r);
static ngx_uint_t ngx_http_streaming_test_same(
    ngx_http_streaming_test_result_t *a, ngx_http_streaming_test_result_t *b);
static ngx_uint_t ngx_http_streaming_test_splits(u_char *in, size_t len,
    size_t max, ngx_http_streaming_test_result_t *whole, ngx_uint_t every,
    ngx_uint_t pairs, ngx_uint_t random);
static void ngx_http_streaming_test_cases(void);
static void ngx_http_streaming_test_case(ngx_http_streaming_test_case_t *tc);
static void ngx_http_streaming_test_control_sizes(void);
static void ngx_http_streaming_test_close_codes(void);
static void ngx_http_streaming_test_big(void);
static void ngx_http_streaming_test_errors_stick(void);
static void ngx_http_streaming_test_late_buffer(void);
static void ngx_http_streaming_test_random(void);
static void ngx_http_streaming_test_encoder(void);
static void ngx_http_streaming_test_close_payload(void);
static void ngx_http_streaming_test_accept(void);
static void ngx_http_streaming_test_sha1(void);
static uint64_t ngx_http_streaming_test_rand(void);


static uint64_t    ngx_http_streaming_test_seed = 0x57534652414d4531ULL;
static u_char      ngx_http_streaming_test_xs[NGX_HTTP_STREAMING_TEST_XS];


static ngx_http_streaming_test_case_t  ngx_http_streaming_test_table[] = {

    /* RFC 6455, 5.7 */

    { "rfc: masked text \"Hello\"", 0, { { 0 } },
      "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11,
      { "THello" } },

    { "rfc: masked pong \"Hello\"", 0, { { 0 } },
      "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11,
      { "OHello" } },

    { "rfc: unmasked text is 1002", 0, { { 0 } },
      "\x81\x05Hello", 7,
      { "E1002@2" } },

    /* messages */

    { "text, binary, ping, pong in a row", 0,
      { { FIN|TEXT, "a", 0, 0 }, { FIN|BINARY, "bc", 0, 0 },
        { FIN|PING, "d", 0, 0 }, { FIN|PONG, "", 0, 0 } },
      NULL, 0,
      { "Ta", "Bbc", "Pd", "O" } },

    { "empty text and binary", 0,
      { { FIN|TEXT, "", 0, 0 }, { FIN|BINARY, "", 0, 0 } }, NULL, 0,
      { "T", "B" } },

    { "text in 2 fragments", 0,
      { { TEXT, "Hel", 0, 0 }, { FIN, "lo", 0, 0 } }, NULL, 0,
      { "THello" } },

    { "text in 2 fragments, a ping between", 0,
      { { TEXT, "Hel", 0, 0 }, { FIN|PING, "ping", 0, 0 },
        { FIN, "lo", 0, 0 } },
      NULL, 0,
      { "Pping", "THello" } },

    { "binary in 4 fragments, empty ones, controls between", 0,
      { { BINARY, "a", 0, 0 }, { FIN|PONG, "", 0, 0 },
        { 0, "", 0, 0 }, { FIN|PING, "", 0, 0 }, { 0, "b", 0, 0 },
        { FIN|PING, "x", 0, 0 }, { FIN, "c", 0, 0 } },
      NULL, 0,
      { "O", "P", "Px", "Babc" } },

    { "a message after a fragmented one", 0,
      { { TEXT, "a", 0, 0 }, { FIN, "b", 0, 0 },
        { FIN|BINARY, "c", 0, 0 } },
      NULL, 0,
      { "Tab", "Bc" } },

    { "16-bit length, not minimal", 0,
      { { FIN|TEXT, "Hi", 0, LEN16 } }, NULL, 0,
      { "THi" } },

    { "64-bit length, not minimal", 0,
      { { FIN|TEXT, "Hi", 0, LEN64 } }, NULL, 0,
      { "THi" } },

    { "16-bit length of 126", 0,
      { { FIN|BINARY, XS, 126, 0 }, { FIN|TEXT, "z", 0, 0 } }, NULL, 0,
      { "B" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "Tz" } },

    { "an incomplete frame: no event", 0, { { 0 } },
      "\x81\x85\x37\xfa\x21\x3d\x7f\x9f", 8,
      { NULL } },

    { "frames after a close are still parsed", 0,
      { { FIN|CLOSE, "\x03\xe8", 0, 0 }, { FIN|TEXT, "a", 0, 0 } },
      NULL, 0,
      { "C1000:", "Ta" } },

    /* protocol errors */

    { "rsv1 set", 0, { { FIN|0x40|TEXT, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "rsv2 set", 0, { { FIN|0x20|TEXT, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "rsv3 set", 0, { { FIN|0x10|BINARY, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "reserved opcode 3", 0, { { FIN|3, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "reserved opcode 7", 0, { { FIN|7, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "reserved opcode 0xb", 0, { { FIN|0xb, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "reserved opcode 0xf", 0, { { FIN|0xf, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "unmasked frame after a good one", 0,
      { { FIN|TEXT, "a", 0, 0 }, { FIN|TEXT, "b", 0, UNMASKED } },
      NULL, 0,
      { "Ta", "E1002@9" } },

    { "fragmented ping", 0, { { PING, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "fragmented close", 0, { { CLOSE, "", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "ping of 126 bytes", 0, { { FIN|PING, XS, 126, 0 } }, NULL, 0,
      { "E1002@2" } },

    { "pong with a 64-bit length of 5", 0,
      { { FIN|PONG, "Hello", 0, LEN64 } }, NULL, 0,
      { "E1002@2" } },

    { "continuation without a message", 0,
      { { FIN, "a", 0, 0 } }, NULL, 0,
      { "E1002@1" } },

    { "continuation after a whole message", 0,
      { { FIN|TEXT, "a", 0, 0 }, { FIN, "b", 0, 0 } }, NULL, 0,
      { "Ta", "E1002@8" } },

    { "text inside a fragmented message", 0,
      { { TEXT, "a", 0, 0 }, { FIN|TEXT, "b", 0, 0 } }, NULL, 0,
      { "E1002@8" } },

    { "binary inside a fragmented message", 0,
      { { BINARY, "a", 0, 0 }, { FIN|PING, "", 0, 0 },
        { BINARY, "b", 0, 0 } },
      NULL, 0,
      { "P", "E1002@14" } },

    { "64-bit length with its high bit set", 0, { { 0 } },
      "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14,
      { "E1002@10" } },

    { "64-bit length of 2^62 is too big", 0, { { 0 } },
      "\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14,
      { "E1009@10" } },

    /* max */

    { "max: a message of max bytes", 5,
      { { FIN|TEXT, "Hello", 0, 0 } }, NULL, 0,
      { "THello" } },

    { "max: a message of max + 1 bytes", 5,
      { { FIN|TEXT, "Hello!", 0, 0 } }, NULL, 0,
      { "E1009@2" } },

    { "max: fragments over max", 5,
      { { TEXT, "Hel", 0, 0 }, { FIN|PING, "", 0, 0 },
        { FIN, "lo!", 0, 0 } },
      NULL, 0,
      { "P", "E1009@17" } },

    { "max: fragments of max bytes, then another message", 5,
      { { BINARY, "Hel", 0, 0 }, { FIN, "lo", 0, 0 },
        { FIN|BINARY, "Hello", 0, 0 } },
      NULL, 0,
      { "BHello", "BHello" } },

    { "max: 16-bit length over max", 200,
      { { FIN|BINARY, XS, 201, 0 } }, NULL, 0,
      { "E1009@4" } },

    { "max 0: empty messages only", 0xffffffff,
      { { FIN|TEXT, "", 0, 0 }, { FIN|PING, "a", 0, 0 },
        { FIN|TEXT, "a", 0, 0 } },
      NULL, 0,
      { "T", "Pa", "E1009@15" } },

    /* UTF-8 */

    { "utf-8: a 4-byte character", 0,
      { { FIN|TEXT, "\xf0\x9f\x98\x80", 0, 0 } }, NULL, 0,
      { "T\xf0\x9f\x98\x80" } },

    { "utf-8: U+D7FF, U+E000, U+FFFF, U+10FFFF", 0,
      { { FIN|TEXT, "\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf",
          0, 0 } },
      NULL, 0,
      { "T\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf" } },

    { "utf-8: a character split between fragments", 0,
      { { TEXT, "\xe2\x82", 0, 0 }, { FIN|PING, "", 0, 0 },
        { FIN, "\xac", 0, 0 } },
      NULL, 0,
      { "P", "T\xe2\x82\xac" } },

    { "utf-8: a character split over 4 fragments", 0,
      { { TEXT, "a\xf0", 0, 0 }, { 0, "\x9f", 0, 0 }, { 0, "\x98", 0, 0 },
        { FIN, "\x80", 0, 0 } },
      NULL, 0,
      { "Ta\xf0\x9f\x98\x80" } },

    { "utf-8: a close between halves of a character", 0,
      { { TEXT, "\xe2", 0, 0 }, { FIN|CLOSE, "\x03\xe8\xc3\xa9", 0, 0 },
        { FIN, "\x82\xac", 0, 0 } },
      NULL, 0,
      { "C1000:\xc3\xa9", "T\xe2\x82\xac" } },

    { "utf-8: 0xff", 0, { { FIN|TEXT, "a\xff" "b", 0, 0 } }, NULL, 0,
      { "E1007@8" } },

    { "utf-8: a lone continuation byte", 0,
      { { FIN|TEXT, "\x80", 0, 0 } }, NULL, 0,
      { "E1007@7" } },

    { "utf-8: overlong 2 bytes", 0,
      { { FIN|TEXT, "\xc0\xaf", 0, 0 } }, NULL, 0,
      { "E1007@7" } },

    { "utf-8: overlong 3 bytes", 0,
      { { FIN|TEXT, "\xe0\x80\xaf", 0, 0 } }, NULL, 0,
      { "E1007@8" } },

    { "utf-8: a surrogate", 0,
      { { FIN|TEXT, "\xed\xa0\x80", 0, 0 } }, NULL, 0,
      { "E1007@8" } },

    { "utf-8: above U+10FFFF", 0,
      { { FIN|TEXT, "\xf4\x90\x80\x80", 0, 0 } }, NULL, 0,
      { "E1007@8" } },

    { "utf-8: 0xf5", 0, { { FIN|TEXT, "\xf5\x80", 0, 0 } }, NULL, 0,
      { "E1007@7" } },

    { "utf-8: a message ends within a character", 0,
      { { FIN|TEXT, "\xe2\x82", 0, 0 } }, NULL, 0,
      { "E1007@8" } },

    { "utf-8: the last fragment ends within a character", 0,
      { { TEXT, "a\xe2", 0, 0 }, { FIN, "\x82", 0, 0 } }, NULL, 0,
      { "E1007@15" } },

    { "utf-8: a bad byte in the second fragment", 0,
      { { TEXT, "\xe2", 0, 0 }, { FIN, "\x28", 0, 0 } }, NULL, 0,
      { "E1007@14" } },

    { "utf-8: binary is not checked", 0,
      { { FIN|BINARY, "\xff\xc0", 0, 0 } }, NULL, 0,
      { "B\xff\xc0" } },

    /* close */

    { "close: empty", 0, { { FIN|CLOSE, "", 0, 0 } }, NULL, 0,
      { "C1005:" } },

    { "close: a code", 0, { { FIN|CLOSE, "\x03\xe8", 0, 0 } }, NULL, 0,
      { "C1000:" } },

    { "close: a code and a reason", 0,
      { { FIN|CLOSE, "\x03\xe9going away", 0, 0 } }, NULL, 0,
      { "C1001:going away" } },

    { "close: 4999 and a utf-8 reason", 0,
      { { FIN|CLOSE, "\x13\x87" "caf\xc3\xa9", 0, 0 } }, NULL, 0,
      { "C4999:caf\xc3\xa9" } },

    { "close: 1 byte", 0, { { FIN|CLOSE, "\x03", 0, 0 } }, NULL, 0,
      { "E1002@2" } },

    { "close: code 0", 0, { { FIN|CLOSE, "\x00\x00", 2, 0 } }, NULL, 0,
      { "E1002@8" } },

    { "close: code 1005", 0, { { FIN|CLOSE, "\x03\xed", 0, 0 } }, NULL, 0,
      { "E1002@8" } },

    { "close: code 1015 with a reason", 0,
      { { FIN|CLOSE, "\x03\xf7tls", 0, 0 } }, NULL, 0,
      { "E1002@11" } },

    { "close: a reason that is not utf-8", 0,
      { { FIN|CLOSE, "\x03\xe8\xff", 0, 0 } }, NULL, 0,
      { "E1007@9" } },

    { "close: a reason that ends within a character", 0,
      { { FIN|CLOSE, "\x03\xe8" "a\xc3", 0, 0 } }, NULL, 0,
      { "E1007@10" } },

    { NULL, 0, { { 0 } }, NULL, 0, { NULL } }
};


int
main(void)
{
    ngx_memset(ngx_http_streaming_test_xs, 'x', NGX_HTTP_STREAMING_TEST_XS);

    ngx_http_streaming_test_cases();
    ngx_http_streaming_test_control_sizes();
    ngx_http_streaming_test_close_codes();
    ngx_http_streaming_test_big();
    ngx_http_streaming_test_errors_stick();
    ngx_http_streaming_test_late_buffer();
    ngx_http_streaming_test_random();
    ngx_http_streaming_test_encoder();
    ngx_http_streaming_test_close_payload();
    ngx_http_streaming_test_accept();
    ngx_http_streaming_test_sha1();

    printf("1..%lu\n", (unsigned long) ngx_http_streaming_test_n);

    return ngx_http_streaming_test_failed ? 1 : 0;
}


/*
 * Writes a client frame: b0, the mask bit (unless UNMASKED), the length
 * (minimal, or as LEN16/LEN64 say), a masking key that depends on i, and
 * the payload masked.  Returns its size.
 */

static size_t
ngx_http_streaming_test_build(u_char *out, ngx_http_streaming_test_frame_t *f,
    ngx_uint_t i)
{
    u_char      *p, key[4];
    size_t       len, n;
    ngx_uint_t   mask;

    len = f->len ? f->len : ngx_strlen(f->payload);
    mask = (f->flags & UNMASKED) ? 0 : 0x80;

    key[0] = (u_char) (0x37 + 29 * i);
    key[1] = 0xfa;
    key[2] = (u_char) (0x21 ^ i);
    key[3] = (u_char) (i * 7);

    p = out;
    *p++ = (u_char) f->b0;

    if ((f->flags & LEN64) || len > 0xffff) {
        *p++ = (u_char) (mask | 127);

        for (n = 0; n < 8; n++) {
            *p++ = (u_char) ((uint64_t) len >> (56 - 8 * n));
        }

    } else if ((f->flags & LEN16) || len > 125) {
        *p++ = (u_char) (mask | 126);
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;

    } else {
        *p++ = (u_char) (mask | len);
    }

    if (mask) {
        p = ngx_cpymem(p, key, 4);
    }

    for (n = 0; n < len; n++) {
        *p++ = (u_char) f->payload[n] ^ (mask ? key[n & 3] : 0);
    }

    return p - out;
}


/*
 * The simulated caller.  cuts[] are the offsets where one input buffer ends
 * and the next begins.  Checks what the parser promises on every call.
 */

static void
ngx_http_streaming_test_feed(u_char *in, size_t len, size_t max,
    size_t *cuts, ngx_uint_t ncuts, ngx_http_streaming_test_result_t *r)
{
    u_char                          *buf, *piece, *p, *last;
    size_t                           a, b, n;
    ngx_int_t                        rc;
    ngx_uint_t                       i, done;
    ngx_http_streaming_ws_parser_t   ws;

    ngx_memzero(r, sizeof(ngx_http_streaming_test_result_t));

    buf = malloc(max ? max : 1);
    if (buf == NULL) {
        abort();
    }

    ngx_http_streaming_ws_parser_init(&ws, buf, max);

    done = 0;

    for (i = 0; i <= ncuts && !done; i++) {
        a = i ? cuts[i - 1] : 0;
        b = i < ncuts ? cuts[i] : len;

        piece = malloc(b - a ? b - a : 1);
        if (piece == NULL) {
            abort();
        }

        ngx_memcpy(piece, in + a, b - a);

        p = piece;
        last = piece + (b - a);

        for ( ;; ) {
            n = (size_t) -1;
            rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);

            if (n > (size_t) (last - p)) {
                snprintf(r->why, sizeof(r->why), "consumed %lu of %lu",
                         (unsigned long) n, (unsigned long) (last - p));
                done = 1;
                break;
            }

            if (rc == NGX_AGAIN) {
                if (n != (size_t) (last - p)) {
                    snprintf(r->why, sizeof(r->why),
                             "NGX_AGAIN with %lu of %lu consumed",
                             (unsigned long) n, (unsigned long) (last - p));
                    done = 1;
                }

                break;
            }

            if (rc == NGX_OK && n == 0) {
                snprintf(r->why, sizeof(r->why), "an event of 0 bytes");
                done = 1;
                break;
            }

            if (rc == NGX_OK
                && (ws.opcode == TEXT || ws.opcode == BINARY)
                && (ws.payload.len > max || ws.payload.data != buf))
            {
                snprintf(r->why, sizeof(r->why), "a message not in buf");
                done = 1;
                break;
            }

            p += n;
            ngx_http_streaming_test_add(r, &ws, rc, a + (p - piece));

            if (rc != NGX_OK) {
                /* and it sticks */
                if (ngx_http_streaming_ws_parse(&ws, p, last, &n)
                    != NGX_ERROR || n != 0)
                {
                    snprintf(r->why, sizeof(r->why), "an error not kept");
                }

                done = 1;
                break;
            }
        }

        free(piece);
    }

    free(buf);
}


static void
ngx_http_streaming_test_add(ngx_http_streaming_test_result_t *r,
    ngx_http_streaming_ws_parser_t *ws, ngx_int_t rc, size_t off)
{
    u_char                           *p;
    ngx_http_streaming_test_event_t  *ev;

    if (r->n == NGX_HTTP_STREAMING_TEST_EVENTS) {
        snprintf(r->why, sizeof(r->why), "too many events");
        return;
    }

    ev = &r->ev[r->n++];
    ev->off = off;

    ev->data = malloc(ws->payload.len + 32);
    if (ev->data == NULL) {
        abort();
    }

    p = ev->data;

    if (rc != NGX_OK) {
        p = (u_char *) p + sprintf((char *) p, "E%lu@%lu",
                                   (unsigned long) ws->code,
                                   (unsigned long) off);
        if (ws->error == NULL || ws->payload.len != 0) {
            snprintf(r->why, sizeof(r->why), "an error without a reason");
        }

    } else if (ws->opcode == CLOSE) {
        p = (u_char *) p + sprintf((char *) p, "C%lu:",
                                   (unsigned long) ws->code);
        if (ws->reason.len) {
            p = ngx_cpymem(p, ws->reason.data, ws->reason.len);
        }

    } else {
        switch (ws->opcode) {
        case TEXT:    *p++ = 'T'; break;
        case BINARY:  *p++ = 'B'; break;
        case PING:    *p++ = 'P'; break;
        case PONG:    *p++ = 'O'; break;
        default:      *p++ = '?'; break;
        }

        if (ws->payload.len) {
            p = ngx_cpymem(p, ws->payload.data, ws->payload.len);
        }
    }

    ev->len = p - ev->data;
}


static void
ngx_http_streaming_test_free(ngx_http_streaming_test_result_t *r)
{
    ngx_uint_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->ev[i].data);
    }

    r->n = 0;
}


static ngx_uint_t
ngx_http_streaming_test_same(ngx_http_streaming_test_result_t *a,
    ngx_http_streaming_test_result_t *b)
{
    ngx_uint_t  i;

    if (a->why[0] || b->why[0] || a->n != b->n) {
        return 0;
    }

    for (i = 0; i < a->n; i++) {
        if (a->ev[i].len != b->ev[i].len || a->ev[i].off != b->ev[i].off
            || ngx_memcmp(a->ev[i].data, b->ev[i].data, a->ev[i].len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Feeds the input a byte at a time; cut at every point (or, unless every,
 * at every point within 32 bytes of either end); cut at every pair of
 * points if asked; and at random points.  Each must give the events of the
 * whole.  Returns 1 if all do.
 */

static ngx_uint_t
ngx_http_streaming_test_splits(u_char *in, size_t len, size_t max,
    ngx_http_streaming_test_result_t *whole, ngx_uint_t every,
    ngx_uint_t pairs, ngx_uint_t random)
{
    size_t                            *cuts, i, j, k;
    ngx_uint_t                         ok;
    ngx_http_streaming_test_result_t  *r;

    r = malloc(sizeof(ngx_http_streaming_test_result_t));
    cuts = malloc((len + 1) * sizeof(size_t));

    if (r == NULL || cuts == NULL) {
        abort();
    }

    ok = 1;

    for (i = 1; i < len; i++) {
        cuts[i - 1] = i;
    }

    ngx_http_streaming_test_feed(in, len, max, cuts, len ? len - 1 : 0, r);

    if (!ngx_http_streaming_test_same(whole, r)) {
        ngx_http_streaming_test_diag("a byte at a time: %s", r->why);
        ok = 0;
    }

    ngx_http_streaming_test_free(r);

    for (i = 1; ok && i < len; i++) {
        if (!every && i >= 32 && i + 32 <= len) {
            continue;
        }

        ngx_http_streaming_test_feed(in, len, max, &i, 1, r);

        if (!ngx_http_streaming_test_same(whole, r)) {
            ngx_http_streaming_test_diag("cut at %lu: %s",
                                         (unsigned long) i, r->why);
            ok = 0;
        }

        ngx_http_streaming_test_free(r);

        for (j = i + 1; pairs && ok && j < len; j++) {
            cuts[0] = i;
            cuts[1] = j;

            ngx_http_streaming_test_feed(in, len, max, cuts, 2, r);

            if (!ngx_http_streaming_test_same(whole, r)) {
                ngx_http_streaming_test_diag("cut at %lu and %lu: %s",
                                             (unsigned long) i,
                                             (unsigned long) j, r->why);
                ok = 0;
            }

            ngx_http_streaming_test_free(r);
        }
    }

    for (k = 0; ok && k < random; k++) {
        j = 0;

        for (i = 0; ; i++) {
            j += 1 + ngx_http_streaming_test_rand() % 300;
            if (j >= len) {
                break;
            }

            cuts[i] = j;
        }

        ngx_http_streaming_test_feed(in, len, max, cuts, i, r);

        if (!ngx_http_streaming_test_same(whole, r)) {
            ngx_http_streaming_test_diag("random cuts: %s", r->why);
            ok = 0;
        }

        ngx_http_streaming_test_free(r);
    }

    free(cuts);
    free(r);

    return ok;
}


static void
ngx_http_streaming_test_cases(void)
{
    ngx_http_streaming_test_case_t  *tc;

    for (tc = ngx_http_streaming_test_table; tc->name; tc++) {
        ngx_http_streaming_test_case(tc);
    }
}


static void
ngx_http_streaming_test_case(ngx_http_streaming_test_case_t *tc)
{
    u_char                            *in;
    size_t                             len, max, elen;
    ngx_uint_t                         i, ok;
    ngx_http_streaming_test_result_t  *whole;

    in = malloc(NGX_HTTP_STREAMING_TEST_INPUT);
    whole = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (in == NULL || whole == NULL) {
        abort();
    }

    if (tc->raw) {
        len = tc->raw_len;
        ngx_memcpy(in, tc->raw, len);

    } else {
        len = 0;

        for (i = 0; tc->frames[i].payload; i++) {
            len += ngx_http_streaming_test_build(in + len, &tc->frames[i], i);
        }
    }

    /* max: 0 is 1024, all ones is 0 */

    max = tc->max == 0 ? 1024 : (tc->max == 0xffffffff ? 0 : tc->max);

    ngx_http_streaming_test_feed(in, len, max, NULL, 0, whole);

    ok = (whole->why[0] == '\0');

    for (i = 0; ok && i < NGX_HTTP_STREAMING_TEST_EXPECT; i++) {
        if (tc->expect[i] == NULL) {
            ok = (i == whole->n);
            break;
        }

        elen = ngx_strlen(tc->expect[i]);

        if (i >= whole->n || whole->ev[i].len != elen
            || ngx_memcmp(whole->ev[i].data, tc->expect[i], elen) != 0)
        {
            ok = 0;
        }
    }

    ngx_http_streaming_test_ok(ok, "%s", tc->name);

    if (!ok) {
        if (whole->why[0]) {
            ngx_http_streaming_test_diag("%s", whole->why);
        }

        for (i = 0; i < whole->n; i++) {
            ngx_http_streaming_test_diag("got \"%.*s\" at %lu",
                                         (int) whole->ev[i].len,
                                         whole->ev[i].data,
                                         (unsigned long) whole->ev[i].off);
        }
    }

    ngx_http_streaming_test_ok(
        ngx_http_streaming_test_splits(in, len, max, whole, 1, len <= 48,
                                       0),
        "%s: the same at every cut", tc->name);

    ngx_http_streaming_test_free(whole);
    free(whole);
    free(in);
}


/* control frames of 0, 125 and 126 bytes */

static void
ngx_http_streaming_test_control_sizes(void)
{
    u_char                            in[256], cp[128], expect[160];
    size_t                            len, sizes[] = { 0, 125, 126 };
    ngx_uint_t                        i, j, ok, ops[] = { PING, PONG, CLOSE };
    ngx_http_streaming_test_frame_t   f;
    ngx_http_streaming_test_result_t  r;

    for (i = 0; i < 3; i++) {
        for (j = 0; j < 3; j++) {
            f.b0 = FIN | ops[i];
            f.payload = sizes[j] ? XS : "";
            f.len = sizes[j];
            f.flags = 0;

            if (ops[i] == CLOSE && sizes[j] > 0) {
                /* code 3000 ("\x0b\xb8"), then a reason of x */
                f.payload = (char *) cp;
                cp[0] = 0x0b;
                cp[1] = 0xb8;
                ngx_memset(cp + 2, 'x', sizeof(cp) - 2);
            }

            len = ngx_http_streaming_test_build(in, &f, i);

            ngx_http_streaming_test_feed(in, len, 16, NULL, 0, &r);

            if (sizes[j] > 125) {
                ok = (r.n == 1 && r.ev[0].len == 7
                      && ngx_memcmp(r.ev[0].data, "E1002@2", 7) == 0);

            } else if (ops[i] == CLOSE) {
                ngx_memcpy(expect, sizes[j] ? "C3000:" : "C1005:", 6);
                ngx_memset(expect + 6, 'x', sizes[j] ? sizes[j] - 2 : 0);

                ok = (r.n == 1 && r.ev[0].len == 6 + (sizes[j] ? sizes[j] - 2
                                                                : 0)
                      && ngx_memcmp(r.ev[0].data, expect, r.ev[0].len) == 0);

            } else {
                expect[0] = (ops[i] == PING) ? 'P' : 'O';
                ngx_memset(expect + 1, 'x', sizes[j]);

                ok = (r.n == 1 && r.ev[0].len == 1 + sizes[j]
                      && ngx_memcmp(r.ev[0].data, expect, r.ev[0].len) == 0
                      && r.ev[0].off == len);
            }

            ok = ok && r.why[0] == '\0';

            ngx_http_streaming_test_ok(ok, "control 0x%lx of %lu bytes, "
                                       "max 16: %s", (unsigned long) ops[i],
                                       (unsigned long) sizes[j],
                                       sizes[j] > 125 ? "1002" : "delivered");

            ngx_http_streaming_test_free(&r);
        }
    }
}


/* every close code: allowed exactly as RFC 6455, 7.4, and its registry */

static void
ngx_http_streaming_test_close_codes(void)
{
    u_char                            in[16], code[2];
    size_t                            len;
    ngx_uint_t                        c, valid, ok, bad;
    ngx_http_streaming_test_frame_t   f;
    ngx_http_streaming_test_result_t  r;

    bad = 0;

    for (c = 0; c < 65536; c++) {
        code[0] = (u_char) (c >> 8);
        code[1] = (u_char) c;

        f.b0 = FIN | CLOSE;
        f.payload = (char *) code;
        f.len = 2;
        f.flags = 0;

        len = ngx_http_streaming_test_build(in, &f, c);

        ngx_http_streaming_test_feed(in, len, 0, NULL, 0, &r);

        valid = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014)
                || (c >= 3000 && c <= 4999);

        if (valid) {
            ok = (r.n == 1 && r.ev[0].data[0] == 'C'
                  && (ngx_uint_t) atoi((char *) r.ev[0].data + 1) == c);

        } else {
            ok = (r.n == 1 && r.ev[0].len == 7
                  && ngx_memcmp(r.ev[0].data, "E1002@8", 7) == 0);
        }

        if (!ok || r.why[0]
            || ngx_http_streaming_ws_close_code_valid(c) != valid)
        {
            if (bad++ < 5) {
                ngx_http_streaming_test_diag("close code %lu",
                                             (unsigned long) c);
            }
        }

        ngx_http_streaming_test_free(&r);
    }

    ngx_http_streaming_test_ok(bad == 0, "close codes: 1000-1003, 1007-1014, "
                               "3000-4999 accepted, the other 63530 are 1002");
}


/* RFC 6455, 5.7: 256 bytes (16-bit length), 64 KiB (64-bit length) */

static void
ngx_http_streaming_test_big(void)
{
    u_char                            *in, *x;
    size_t                             len, sizes[] = { 256, 65535, 65536 };
    ngx_uint_t                         i, ok;
    ngx_http_streaming_test_frame_t    f;
    ngx_http_streaming_test_result_t  *r;

    in = malloc(NGX_HTTP_STREAMING_TEST_INPUT);
    r = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (in == NULL || r == NULL) {
        abort();
    }

    x = ngx_http_streaming_test_xs;

    for (i = 0; i < 3; i++) {
        f.b0 = FIN | BINARY;
        f.payload = XS;
        f.len = sizes[i];
        f.flags = 0;

        len = ngx_http_streaming_test_build(in, &f, i);

        ok = (len == sizes[i] + (sizes[i] > 0xffff ? 14 : 8))
             && in[1] == (sizes[i] > 0xffff ? 0xff : 0xfe);

        ngx_http_streaming_test_feed(in, len, 65536, NULL, 0, r);

        ok = ok && r->why[0] == '\0' && r->n == 1
             && r->ev[0].len == 1 + sizes[i] && r->ev[0].data[0] == 'B'
             && ngx_memcmp(r->ev[0].data + 1, x, sizes[i]) == 0
             && r->ev[0].off == len;

        ngx_http_streaming_test_ok(ok, "binary of %lu bytes, %s length",
                                   (unsigned long) sizes[i],
                                   sizes[i] > 0xffff ? "64-bit" : "16-bit");

        ngx_http_streaming_test_ok(
            ngx_http_streaming_test_splits(in, len, 65536, r, 0, 0, 20),
            "binary of %lu bytes: the same at every cut",
            (unsigned long) sizes[i]);

        ngx_http_streaming_test_free(r);

        ngx_http_streaming_test_feed(in, len, sizes[i] - 1, NULL, 0, r);

        ok = r->n == 1 && r->ev[0].data[0] == 'E'
             && ngx_strncmp(r->ev[0].data, "E1009@", 6) == 0
             && r->ev[0].off == (sizes[i] > 0xffff ? 10ul : 4ul);

        ngx_http_streaming_test_ok(ok, "binary of %lu bytes, max %lu: 1009 "
                                   "before the payload",
                                   (unsigned long) sizes[i],
                                   (unsigned long) sizes[i] - 1);

        ngx_http_streaming_test_free(r);
    }

    free(r);
    free(in);
}


/* after an error, the parser reads nothing more, whatever comes */

static void
ngx_http_streaming_test_errors_stick(void)
{
    u_char                          buf[8], in[] = "\x81\x05Hello";
    size_t                          n;
    ngx_int_t                       rc;
    ngx_uint_t                      ok;
    ngx_http_streaming_ws_parser_t  ws;

    ngx_http_streaming_ws_parser_init(&ws, buf, sizeof(buf));

    rc = ngx_http_streaming_ws_parse(&ws, in, in + 7, &n);

    ok = rc == NGX_ERROR && n == 2
         && ws.code == NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR
         && ws.error && ngx_strcmp(ws.error, "unmasked frame") == 0;

    in[1] = 0x85;

    rc = ngx_http_streaming_ws_parse(&ws, in, in + 7, &n);

    ok = ok && rc == NGX_ERROR && n == 0
         && ws.code == NGX_HTTP_STREAMING_WS_PROTOCOL_ERROR;

    rc = ngx_http_streaming_ws_parse(&ws, in, in, &n);

    ok = ok && rc == NGX_ERROR && n == 0;

    ngx_http_streaming_test_ok(ok, "an error is kept, with its code and "
                               "reason, and nothing more is read");

    /* NGX_AGAIN on no bytes */

    ngx_http_streaming_ws_parser_init(&ws, buf, sizeof(buf));
    n = 1;
    rc = ngx_http_streaming_ws_parse(&ws, in, in, &n);

    ngx_http_streaming_test_ok(rc == NGX_AGAIN && n == 0,
                               "no bytes: NGX_AGAIN, 0 consumed");
}


/*
 * No buffer at init: control frames and empty messages need none; the
 * first payload byte of a data message asks for it (NGX_DECLINED), and the
 * message then goes on in it.
 */

static void
ngx_http_streaming_test_late_buffer(void)
{
    u_char                          buf[16], *p, *last;
    size_t                          n;
    ngx_int_t                       rc;
    ngx_uint_t                      ok;
    ngx_http_streaming_ws_parser_t  ws;

    /* a masked ping "hi" (mask 0), an empty text, then text "Hello" */
    static u_char  in[] = "\x89\x82\0\0\0\0hi"
                          "\x81\x80\0\0\0\0"
                          "\x81\x85\0\0\0\0Hello";

    ngx_http_streaming_ws_parser_init(&ws, NULL, sizeof(buf));

    p = in;
    last = in + sizeof(in) - 1;

    rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);
    ok = rc == NGX_OK && n == 8 && ws.opcode == NGX_HTTP_STREAMING_WS_OP_PING
         && ws.payload.len == 2;
    p += n;

    rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);
    ok = ok && rc == NGX_OK && n == 6
         && ws.opcode == NGX_HTTP_STREAMING_WS_OP_TEXT && ws.payload.len == 0;
    p += n;

    rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);
    ok = ok && rc == NGX_DECLINED && n == 6;
    p += n;

    ws.buf = buf;

    rc = ngx_http_streaming_ws_parse(&ws, p, last, &n);
    ok = ok && rc == NGX_OK && n == 5
         && ws.opcode == NGX_HTTP_STREAMING_WS_OP_TEXT
         && ws.payload.len == 5 && ngx_strncmp(ws.payload.data, "Hello", 5) == 0
         && ws.payload.data == buf;

    ngx_http_streaming_test_ok(ok, "a buffer given late: asked for at the "
                               "first payload byte of a data message only");
}


/*
 * Random streams of good frames: messages cut in random fragments with
 * random control frames between, random payloads, lengths in random
 * encodings.  The events must be the ones the generator meant, at every
 * random cut.
 */

static void
ngx_http_streaming_test_random(void)
{
    u_char                            *in, *payload, *e;
    size_t                             len, plen, flen, off, n, eo;
    ngx_uint_t                         iter, m, msgs, nfrag, k, op, ok, bad;
    ngx_http_streaming_test_frame_t    f;
    ngx_http_streaming_test_result_t  *r, *expect;

    in = malloc(NGX_HTTP_STREAMING_TEST_INPUT);
    payload = malloc(4096);
    r = malloc(sizeof(ngx_http_streaming_test_result_t));
    expect = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (in == NULL || payload == NULL || r == NULL || expect == NULL) {
        abort();
    }

    bad = 0;

    for (iter = 0; iter < 400; iter++) {
        ngx_memzero(expect, sizeof(ngx_http_streaming_test_result_t));
        len = 0;
        msgs = 1 + ngx_http_streaming_test_rand() % 6;

        for (m = 0; m < msgs; m++) {
            op = (ngx_http_streaming_test_rand() & 1) ? TEXT : BINARY;
            plen = ngx_http_streaming_test_rand() % 600;

            /* ASCII for text, so that any cut is a character boundary */

            for (n = 0; n < plen; n++) {
                payload[n] = (u_char) ngx_http_streaming_test_rand();
                if (op == TEXT) {
                    payload[n] = 0x20 + payload[n] % 0x5f;
                }
            }

            nfrag = 1 + ngx_http_streaming_test_rand() % 4;

            for (k = 0, off = 0; k < nfrag; k++) {
                flen = (k == nfrag - 1)
                       ? plen - off
                       : ngx_http_streaming_test_rand() % (plen - off + 1);

                f.b0 = (k == 0 ? op : 0) | (k == nfrag - 1 ? FIN : 0);
                f.payload = (char *) payload + off;
                f.len = flen;
                f.flags = ngx_http_streaming_test_rand() % 3 == 0
                          ? (ngx_http_streaming_test_rand() & 1 ? LEN16
                                                                : LEN64)
                          : 0;

                /* a frame of length 0 must be given as such */
                if (flen == 0) {
                    f.payload = "";
                    f.flags = 0;
                }

                len += ngx_http_streaming_test_build(in + len, &f, k + m);
                off += flen;

                if (k < nfrag - 1 && ngx_http_streaming_test_rand() % 2) {
                    f.b0 = FIN | PING;
                    f.payload = XS;
                    f.len = ngx_http_streaming_test_rand() % 126;
                    f.flags = 0;

                    if (f.len == 0) {
                        f.payload = "";
                    }

                    len += ngx_http_streaming_test_build(in + len, &f, k);

                    e = malloc(f.len + 1);
                    if (e == NULL) {
                        abort();
                    }

                    e[0] = 'P';
                    ngx_memset(e + 1, 'x', f.len);
                    expect->ev[expect->n].data = e;
                    expect->ev[expect->n].len = f.len + 1;
                    expect->ev[expect->n++].off = len;
                }
            }

            e = malloc(plen + 1);
            if (e == NULL) {
                abort();
            }

            e[0] = (op == TEXT) ? 'T' : 'B';
            ngx_memcpy(e + 1, payload, plen);
            eo = len;
            expect->ev[expect->n].data = e;
            expect->ev[expect->n].len = plen + 1;
            expect->ev[expect->n++].off = eo;
        }

        ngx_http_streaming_test_feed(in, len, 600, NULL, 0, r);
        ok = ngx_http_streaming_test_same(expect, r);
        ngx_http_streaming_test_free(r);

        if (ok) {
            ok = ngx_http_streaming_test_splits(in, len, 600, expect, 0, 0,
                                                3);
        }

        if (!ok && bad++ < 3) {
            ngx_http_streaming_test_diag("random stream %lu: %s",
                                         (unsigned long) iter, r->why);
        }

        ngx_http_streaming_test_free(expect);
    }

    ngx_http_streaming_test_ok(bad == 0, "400 random streams of fragmented "
                               "messages and pings, cut at random");

    free(expect);
    free(r);
    free(payload);
    free(in);
}


static void
ngx_http_streaming_test_encoder(void)
{
    u_char                          hdr[NGX_HTTP_STREAMING_WS_HEADER_MAX];
    u_char                          in[64], buf[8];
    size_t                          n, consumed;
    uint64_t                        len;
    ngx_int_t                       rc;
    ngx_uint_t                      i, ok;
    ngx_http_streaming_ws_parser_t  ws;

    static struct {
        uint64_t    len;
        size_t      size;
        char       *bytes;
    } t[] = {
        { 0, 2, "\x81\x00" },
        { 125, 2, "\x81\x7d" },
        { 126, 4, "\x81\x7e\x00\x7e" },
        { 65535, 4, "\x81\x7e\xff\xff" },
        { 65536, 10, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00" },
        { 0x7fffffffffffffffULL, 10,
          "\x81\x7f\x7f\xff\xff\xff\xff\xff\xff\xff" },
    };

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        n = ngx_http_streaming_ws_frame_header(hdr, TEXT, t[i].len, 1);

        ngx_http_streaming_test_ok(n == t[i].size
                                   && ngx_memcmp(hdr, t[i].bytes, n) == 0,
                                   "header of a text frame of %llu bytes: "
                                   "%lu bytes", (unsigned long long) t[i].len,
                                   (unsigned long) t[i].size);
    }

    n = ngx_http_streaming_ws_frame_header(hdr, PONG, 3, 1);
    ok = (n == 2 && hdr[0] == 0x8a && hdr[1] == 3);

    n = ngx_http_streaming_ws_frame_header(hdr, BINARY, 3, 0);
    ok = ok && (n == 2 && hdr[0] == 0x02 && hdr[1] == 3);

    n = ngx_http_streaming_ws_frame_header(hdr, 0, 200, 1);
    ok = ok && (n == 4 && hdr[0] == 0x80 && hdr[1] == 126);

    ngx_http_streaming_test_ok(ok, "header: opcode and FIN bits");

    /* what the encoder writes, masked as a client would, parses back */

    ok = 1;

    for (len = 0; len < 20 && ok; len++) {
        n = ngx_http_streaming_ws_frame_header(hdr, TEXT, len, 1);

        ngx_memcpy(in, hdr, n);
        in[1] |= 0x80;
        ngx_memzero(in + n, 4);
        ngx_memset(in + n + 4, 'a' + (u_char) len, len);

        ngx_http_streaming_ws_parser_init(&ws, buf, sizeof(buf));
        rc = ngx_http_streaming_ws_parse(&ws, in, in + n + 4 + len,
                                         &consumed);

        if (len <= sizeof(buf)) {
            ok = rc == NGX_OK && consumed == n + 4 + len
                 && ws.opcode == TEXT && ws.payload.len == len;

        } else {
            ok = rc == NGX_ERROR && ws.code == NGX_HTTP_STREAMING_WS_TOO_BIG;
        }
    }

    ngx_http_streaming_test_ok(ok, "encoded headers, masked, parse back");
}


static void
ngx_http_streaming_test_close_payload(void)
{
    u_char      buf[NGX_HTTP_STREAMING_WS_CONTROL_MAX], reason[200];
    size_t      n;
    ngx_str_t   s;
    ngx_uint_t  i;

    s.data = (u_char *) "bye";
    s.len = 3;

    n = ngx_http_streaming_ws_close_payload(buf, 1000, &s);
    ngx_http_streaming_test_ok(n == 5 && ngx_memcmp(buf, "\x03\xe8" "bye", 5)
                               == 0, "close payload: 1000 \"bye\"");

    n = ngx_http_streaming_ws_close_payload(buf, 4999, NULL);
    ngx_http_streaming_test_ok(n == 2 && buf[0] == 0x13 && buf[1] == 0x87,
                               "close payload: 4999, no reason");

    n = ngx_http_streaming_ws_close_payload(buf, 1005, &s);
    ngx_http_streaming_test_ok(n == 0, "close payload: 1005 is never sent");

    n = ngx_http_streaming_ws_close_payload(buf, 1006, NULL);
    ngx_http_streaming_test_ok(n == 0, "close payload: 1006 is never sent");

    /* a long ASCII reason is cut at 123 bytes */

    ngx_memset(reason, 'r', sizeof(reason));
    s.data = reason;
    s.len = sizeof(reason);

    n = ngx_http_streaming_ws_close_payload(buf, 1001, &s);
    ngx_http_streaming_test_ok(n == 125, "close payload: a reason cut to 123 "
                               "bytes");

    /* two-byte characters: byte 123 is the second of one */

    for (i = 0; i + 1 < sizeof(reason); i += 2) {
        reason[i] = 0xc3;
        reason[i + 1] = 0xa9;
    }

    n = ngx_http_streaming_ws_close_payload(buf, 1001, &s);
    ngx_http_streaming_test_ok(n == 2 + 122
                               && ngx_memcmp(buf + 2, reason, 122) == 0,
                               "close payload: not cut within a utf-8 "
                               "character");

    /* at 123 exactly, nothing is cut */

    s.len = 123;
    n = ngx_http_streaming_ws_close_payload(buf, 1001, &s);
    ngx_http_streaming_test_ok(n == 125 && ngx_memcmp(buf + 2, reason, 123)
                               == 0, "close payload: a reason of 123 bytes");
}


static void
ngx_http_streaming_test_accept(void)
{
    u_char      out[NGX_HTTP_STREAMING_WS_ACCEPT_LEN + 1], nonce[16];
    u_char      key[32], cat[64], md[EVP_MAX_MD_SIZE], expect[40];
    ngx_str_t   k;
    ngx_int_t   rc;
    ngx_uint_t  i, j, bad;
    unsigned    mdlen;

    static char  *bad_keys[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZQ===",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQAA",
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBsZSBub25j*Q==",
        "dGhlIHNhbXBsZSBub25j Q==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub2=jZQ==",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        NULL
    };

    k.data = (u_char *) "dGhlIHNhbXBsZSBub25jZQ==";
    k.len = 24;
    out[NGX_HTTP_STREAMING_WS_ACCEPT_LEN] = '\0';

    rc = ngx_http_streaming_ws_accept_key(&k, out);

    ngx_http_streaming_test_ok(rc == NGX_OK
                               && ngx_strcmp(out,
                                             "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                                  == 0,
                               "accept key: RFC 6455, 1.3");

    bad = 0;

    for (i = 0; bad_keys[i]; i++) {
        k.data = (u_char *) bad_keys[i];
        k.len = ngx_strlen(bad_keys[i]);

        if (ngx_http_streaming_ws_accept_key(&k, out) != NGX_DECLINED) {
            ngx_http_streaming_test_diag("key \"%s\" accepted", bad_keys[i]);
            bad++;
        }
    }

    ngx_http_streaming_test_ok(bad == 0, "accept key: %lu bad keys declined",
                               (unsigned long) i);

    /* random nonces, against OpenSSL's SHA-1 and base64 */

    bad = 0;

    for (i = 0; i < 1000; i++) {
        for (j = 0; j < 16; j++) {
            nonce[j] = (u_char) ngx_http_streaming_test_rand();
        }

        EVP_EncodeBlock(key, nonce, 16);

        ngx_memcpy(cat, key, 24);
        ngx_memcpy(cat + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);

        if (EVP_Digest(cat, 60, md, &mdlen, EVP_sha1(), NULL) != 1) {
            abort();
        }

        EVP_EncodeBlock(expect, md, mdlen);

        k.data = key;
        k.len = 24;

        rc = ngx_http_streaming_ws_accept_key(&k, out);

        if (rc != NGX_OK || ngx_memcmp(out, expect, 28) != 0) {
            if (bad++ < 3) {
                ngx_http_streaming_test_diag("key %s", key);
            }
        }
    }

    ngx_http_streaming_test_ok(bad == 0, "accept key: 1000 random keys as "
                               "OpenSSL computes them");
}


/* the stand-in (t/unit/sha1.c) against OpenSSL, every length to 300 */

static void
ngx_http_streaming_test_sha1(void)
{
    u_char      data[300], md[EVP_MAX_MD_SIZE], ours[20];
    size_t      len, a;
    unsigned    mdlen;
    ngx_uint_t  i, bad;
    ngx_sha1_t  sha1;

    bad = 0;

    for (i = 0; i < sizeof(data); i++) {
        data[i] = (u_char) ngx_http_streaming_test_rand();
    }

    for (len = 0; len <= sizeof(data); len++) {
        if (EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) != 1) {
            abort();
        }

        /* in two updates, cut somewhere */

        a = len ? ngx_http_streaming_test_rand() % len : 0;

        ngx_sha1_init(&sha1);
        ngx_sha1_update(&sha1, data, a);
        ngx_sha1_update(&sha1, data + a, len - a);
        ngx_sha1_final(ours, &sha1);

        if (mdlen != 20 || ngx_memcmp(ours, md, 20) != 0) {
            bad++;
        }
    }

    ngx_http_streaming_test_ok(bad == 0, "sha-1 stand-in: as OpenSSL, "
                               "lengths 0-300");
}


static uint64_t
ngx_http_streaming_test_rand(void)
{
    /* xorshift64: the same sequence on every run */

    ngx_http_streaming_test_seed ^= ngx_http_streaming_test_seed << 13;
    ngx_http_streaming_test_seed ^= ngx_http_streaming_test_seed >> 7;
    ngx_http_streaming_test_seed ^= ngx_http_streaming_test_seed << 17;

    return ngx_http_streaming_test_seed;
}
