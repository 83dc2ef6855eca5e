
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * Unit tests of the framing leaf (src/ngx_http_streaming_framing.c), TAP on
 * stdout.  A simulated caller feeds inputs in pieces, each piece in a buffer
 * of its own size (so that AddressSanitizer sees any read past it), keeps
 * what the framer says to keep, and checks on every call that the pieces
 * reported are the input, exactly.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_framing.h"
#include "tap.h"


#define NGX_HTTP_STREAMING_TEST_PIECES  1024
#define NGX_HTTP_STREAMING_TEST_EXPECT  16
#define NGX_HTTP_STREAMING_TEST_CUTS    16
#define NGX_HTTP_STREAMING_TEST_BIG     ((size_t) 1 << 20)

#define SSE    NGX_HTTP_STREAMING_FRAMING_SSE
#define LINES  NGX_HTTP_STREAMING_FRAMING_LINES
#define BYTES  NGX_HTTP_STREAMING_FRAMING_BYTES

#define BOM    "\xef\xbb\xbf"


typedef struct {
    ngx_uint_t      kind;
    size_t          off;
    size_t          len;
    size_t          trim;
} ngx_http_streaming_test_piece_t;


typedef struct {
    ngx_http_streaming_test_piece_t  piece[NGX_HTTP_STREAMING_TEST_PIECES];
    ngx_uint_t                       n;
    ngx_uint_t                       error;
    size_t                           error_off;
    char                             why[512];
} ngx_http_streaming_test_result_t;


typedef struct {
    char           *name;
    ngx_uint_t      framing;
    size_t          size;
    size_t          max;           /* 0: NGX_HTTP_STREAMING_TEST_BIG */
    char           *input;
    size_t          cuts[NGX_HTTP_STREAMING_TEST_CUTS];
                                   /* given: fed in these pieces only */
    ngx_uint_t      whole_only;    /* no split tests */
    char           *expect[NGX_HTTP_STREAMING_TEST_EXPECT];
                                   /* "C..." chunk, "S..." skip, "E" */
} ngx_http_streaming_test_case_t;


typedef struct {
    char           *input;
    ngx_int_t       rc;
    char           *event;         /* NULL: no event field */
    char           *data;          /* NULL: no data field */
    char           *id;            /* the last id value, NULL: none */
    ngx_uint_t      nids;
    char           *stripped;
    char           *id_line;       /* the first id line, NULL: none */
} ngx_http_streaming_test_sse_t;


typedef struct {
    char           *type;
    ngx_uint_t      framing;
} ngx_http_streaming_test_type_t;


typedef struct {
    char           *bytes;
    size_t          len;
    ngx_int_t       rc;
    char           *name;
} ngx_http_streaming_test_utf8_t;


static void ngx_http_streaming_test_feed(ngx_uint_t framing, size_t size,
    size_t max, u_char *in, size_t len, size_t *cuts, ngx_uint_t ncuts,
    ngx_http_streaming_test_result_t *r);
static void ngx_http_streaming_test_record(
    ngx_http_streaming_test_result_t *r, ngx_uint_t framing, size_t size,
    size_t max, ngx_http_streaming_framer_t *f, ngx_uint_t kind, size_t off,
    u_char *bytes, ngx_uint_t spans, u_char *in);
static void ngx_http_streaming_test_check_sse(
    ngx_http_streaming_test_result_t *r, u_char *p, size_t len,
    ngx_uint_t kind, size_t off, size_t bom);
static void ngx_http_streaming_test_fail(ngx_http_streaming_test_result_t *r,
    const char *fmt, ...);
static void ngx_http_streaming_test_normalize(
    ngx_http_streaming_test_result_t *r, u_char *in);
static ngx_uint_t ngx_http_streaming_test_same(
    ngx_http_streaming_test_result_t *a, ngx_http_streaming_test_result_t *b);
static void ngx_http_streaming_test_show(ngx_http_streaming_test_result_t *r,
    u_char *in, const char *label);
static char *ngx_http_streaming_test_escape(u_char *p, size_t len);
static void ngx_http_streaming_test_cases(void);
static void ngx_http_streaming_test_case(ngx_http_streaming_test_case_t *tc);
static ngx_uint_t ngx_http_streaming_test_split(
    ngx_http_streaming_test_case_t *tc, size_t max, size_t *cuts,
    ngx_uint_t ncuts, ngx_http_streaming_test_result_t *whole,
    ngx_http_streaming_test_result_t *r);
static void ngx_http_streaming_test_errors(void);
static void ngx_http_streaming_test_big_bytes(void);
static void ngx_http_streaming_test_api(void);
static void ngx_http_streaming_test_sse_events(void);
static void ngx_http_streaming_test_types(void);
static void ngx_http_streaming_test_utf8(void);
static ngx_int_t ngx_http_streaming_test_utf8_ref(u_char *p, size_t len);
static void ngx_http_streaming_test_fuzz(void);
static void ngx_http_streaming_test_ref_sse(u_char *in, size_t len,
    ngx_http_streaming_test_result_t *r);
static void ngx_http_streaming_test_ref_lines(u_char *in, size_t len,
    ngx_http_streaming_test_result_t *r);
static uint64_t ngx_http_streaming_test_rand(void);


static uint64_t    ngx_http_streaming_test_seed = 0x5354524d46524d31ULL;


static ngx_http_streaming_test_case_t  ngx_http_streaming_test_table[] = {

    /* sse */

    { "sse: one event", SSE, 0, 0, "data: a\n\n", {0}, 0,
      { "Cdata: a\n\n" } },

    { "sse: LF", SSE, 0, 0, "data: a\n\ndata: b\n\n", {0}, 0,
      { "Cdata: a\n\n", "Cdata: b\n\n" } },

    { "sse: CRLF", SSE, 0, 0, "data: a\r\n\r\ndata: b\r\n\r\n", {0}, 0,
      { "Cdata: a\r\n\r\n", "Cdata: b\r\n\r\n" } },

    { "sse: CR", SSE, 0, 0, "data: a\r\rdata: b\r\r", {0}, 0,
      { "Cdata: a\r\r", "Cdata: b\r\r" } },

    { "sse: mixed line ends", SSE, 0, 0,
      "data: a\r\n\ndata: b\n\r\nevent: c\rdata: c\r\r\ndata: d\n\r", {0}, 0,
      { "Cdata: a\r\n\n", "Cdata: b\n\r\n", "Cevent: c\rdata: c\r\r\n",
        "Cdata: d\n\r" } },

    { "sse: comment-only block", SSE, 0, 0,
      ": ping\n\ndata: x\n\n: a\n:b\n\n", {0}, 0,
      { "S: ping\n\n", "Cdata: x\n\n", "S: a\n:b\n\n" } },

    { "sse: retry-only block", SSE, 0, 0,
      "retry: 1000\n\ndata: x\n\n", {0}, 0,
      { "Sretry: 1000\n\n", "Cdata: x\n\n" } },

    { "sse: id-only block", SSE, 0, 0, "id: 5\r\n\r\nid\n\n", {0}, 0,
      { "Sid: 5\r\n\r\n", "Sid\n\n" } },

    { "sse: comment, retry and id inside an event", SSE, 0, 0,
      ": c\nretry: 5\nid: 1\ndata: x\n\n", {0}, 0,
      { "C: c\nretry: 5\nid: 1\ndata: x\n\n" } },

    { "sse: extra blank lines", SSE, 0, 0,
      "\ndata: a\n\n\n\r\n\rdata: b\n\n", {0}, 0,
      { "S\n", "Cdata: a\n\n", "S\n", "S\r\n", "S\r", "Cdata: b\n\n" } },

    { "sse: OpenAI", SSE, 0, 0,
      "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
      "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"
      "data: [DONE]\n\n", {0}, 0,
      { "Cdata: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
        "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        "Cdata: [DONE]\n\n" } },

    { "sse: event names", SSE, 0, 0,
      "event: delta\ndata: 1\n\nevent: done\n\nevent\n\n", {0}, 0,
      { "Cevent: delta\ndata: 1\n\n", "Cevent: done\n\n", "Cevent\n\n" } },

    { "sse: multi-line data", SSE, 0, 0,
      "data: a\ndata:b\ndata\ndata:\n\n", {0}, 0,
      { "Cdata: a\ndata:b\ndata\ndata:\n\n" } },

    { "sse: names that are not data or event", SSE, 0, 0,
      "dat: x\n\ndatas: x\n\nData: x\n\neventx: x\n\ndataevent: x\n\n"
      " data: x\n\n", {0}, 0,
      { "Sdat: x\n\n", "Sdatas: x\n\n", "SData: x\n\n", "Seventx: x\n\n",
        "Sdataevent: x\n\n", "S data: x\n\n" } },

    { "sse: value that looks like a field", SSE, 0, 0,
      "x: data\n\nid:data\n\nretry: event:1\n\n", {0}, 0,
      { "Sx: data\n\n", "Sid:data\n\n", "Sretry: event:1\n\n" } },

    { "sse: BOM", SSE, 0, 0, BOM "data: x\n\ndata: y\n\n", {0}, 0,
      { "C" BOM "data: x\n\n", "Cdata: y\n\n" } },

    { "sse: BOM and a comment", SSE, 0, 0, BOM ": c\n\n", {0}, 0,
      { "S" BOM ": c\n\n" } },

    { "sse: BOM and a blank line", SSE, 0, 0, BOM "\r\ndata: x\r\n\r\n",
      {0}, 0,
      { "S" BOM "\r\n", "Cdata: x\r\n\r\n" } },

    { "sse: BOM alone", SSE, 0, 0, BOM, {0}, 0,
      { "S" BOM } },

    { "sse: half a BOM is part of the name", SSE, 0, 0,
      "\xef\xbb" "data: x\n\ndata: y\n\n", {0}, 0,
      { "S\xef\xbb" "data: x\n\n", "Cdata: y\n\n" } },

    { "sse: half a BOM, then a line end", SSE, 0, 0,
      "\xef\n\ndata: y\n\n", {0}, 0,
      { "S\xef\n\n", "Cdata: y\n\n" } },

    { "sse: a BOM later is part of the name", SSE, 0, 0,
      "data: a\n\n" BOM "data: b\n\n", {0}, 0,
      { "Cdata: a\n\n", "S" BOM "data: b\n\n" } },

    { "sse: final event without blank line", SSE, 0, 0,
      "data: a\n\ndata: b", {0}, 0,
      { "Cdata: a\n\n", "Cdata: b" } },

    { "sse: final event with one line end", SSE, 0, 0,
      "data: a\n\nevent: e\r\n", {0}, 0,
      { "Cdata: a\n\n", "Cevent: e\r\n" } },

    { "sse: final field name without colon", SSE, 0, 0, "data", {0}, 0,
      { "Cdata" } },

    { "sse: final comment", SSE, 0, 0, "data: a\n\n: c", {0}, 0,
      { "Cdata: a\n\n", "S: c" } },

    { "sse: blank lines only", SSE, 0, 0, "\n\n\r\r\n", {0}, 0,
      { "S\n", "S\n", "S\r", "S\r\n" } },

    { "sse: empty input", SSE, 0, 0, "", {0}, 0, { NULL } },

    { "sse: CRLF split after the last CR", SSE, 0, 0,
      "data: a\r\n\r\ndata: b\r\n\r\n", { 10 }, 0,
      { "Cdata: a\r\n\r\n", "Cdata: b\r\n\r\n" } },

    { "sse: CRLF split after the first CR", SSE, 0, 0,
      "data: a\r\n\r\ndata: b\r\n\r\n", { 8 }, 0,
      { "Cdata: a\r\n\r\n", "Cdata: b\r\n\r\n" } },

    { "sse: CR at the end, then not LF", SSE, 0, 0,
      "data: a\r\rdata: b\r\r", { 9 }, 0,
      { "Cdata: a\r\r", "Cdata: b\r\r" } },

    { "sse: CRLF split in every line", SSE, 0, 0,
      "event: x\r\ndata: a\r\n\r\n", { 9, 18, 20 }, 0,
      { "Cevent: x\r\ndata: a\r\n\r\n" } },

    /* lines */

    { "lines: LF", LINES, 0, 0, "a\nbc\n", {0}, 0,
      { "Ca\n", "Cbc\n" } },

    { "lines: CRLF", LINES, 0, 0, "a\r\nbc\r\n", {0}, 0,
      { "Ca\r\n", "Cbc\r\n" } },

    { "lines: empty lines are skipped", LINES, 0, 0,
      "\na\n\n\r\nb\n", {0}, 0,
      { "S\n", "Ca\n", "S\n", "S\r\n", "Cb\n" } },

    { "lines: final line without LF", LINES, 0, 0, "a\nbc", {0}, 0,
      { "Ca\n", "Cbc" } },

    { "lines: a lone CR is not a line end", LINES, 0, 0,
      "a\rb\n\r\r\nc\r", {0}, 0,
      { "Ca\rb\n", "C\r\r\n", "Cc\r" } },

    { "lines: NDJSON", LINES, 0, 0,
      "{\"a\":1}\n{\"b\":[1,2]}\n", {0}, 0,
      { "C{\"a\":1}\n", "C{\"b\":[1,2]}\n" } },

    { "lines: SSE bytes are lines", LINES, 0, 0,
      "data: a\n\n", {0}, 0,
      { "Cdata: a\n", "S\n" } },

    { "lines: empty input", LINES, 0, 0, "", {0}, 0, { NULL } },

    { "lines: CRLF split", LINES, 0, 0, "abc\r\nd\n", { 4 }, 0,
      { "Cabc\r\n", "Cd\n" } },

    /* bytes */

    { "bytes=1", BYTES, 1, 0, "abc", {0}, 0,
      { "Ca", "Cb", "Cc" } },

    { "bytes=3: one piece", BYTES, 3, 0, "abcdefgh", {0}, 1,
      { "Cabc", "Cdef", "Cgh" } },

    { "bytes=3: every piece ends a chunk", BYTES, 3, 0, "abcdefgh", { 2 },
      0, { "Cab", "Ccde", "Cfgh" } },

    { "bytes=3: small pieces", BYTES, 3, 0, "abcdefgh", { 1, 3, 5, 6, 7 },
      0, { "Ca", "Cbc", "Cde", "Cf", "Cg", "Ch" } },

    { "bytes=3: a piece of exactly size", BYTES, 3, 0, "abcdef", { 3 }, 0,
      { "Cabc", "Cdef" } },

    { "bytes=16k: small pieces", BYTES, 16384, 0, "abcdefgh", { 4 }, 0,
      { "Cabcd", "Cefgh" } },

    /* max */

    { "sse: event of exactly max", SSE, 0, 11, "data: abc\n\n", {0}, 0,
      { "Cdata: abc\n\n" } },

    { "sse: event of max + 1", SSE, 0, 10, "data: abc\n\n", {0}, 0,
      { "E" } },

    { "sse: second event of max + 1", SSE, 0, 10,
      "data: a\n\ndata: abc\n\n", {0}, 0,
      { "Cdata: a\n\n", "E" } },

    { "sse: comment block of max + 1", SSE, 0, 10, ": 34567890\n\n", {0},
      0, { "E" } },

    { "sse: final event of exactly max", SSE, 0, 9, "data: abc", {0}, 0,
      { "Cdata: abc" } },

    { "sse: final event of max + 1", SSE, 0, 8, "data: abc", {0}, 0,
      { "E" } },

    { "lines: line of exactly max", LINES, 0, 3, "abc\nde\n", {0}, 0,
      { "Cabc\n", "Cde\n" } },

    { "lines: line of exactly max, CRLF", LINES, 0, 3, "abc\r\n", {0}, 0,
      { "Cabc\r\n" } },

    { "lines: line of max + 1", LINES, 0, 2, "ab\nabc\n", {0}, 0,
      { "Cab\n", "E" } },

    { "lines: final line of exactly max", LINES, 0, 3, "abc", {0}, 0,
      { "Cabc" } },

    { "lines: final line of max + 1", LINES, 0, 2, "abc", {0}, 0,
      { "E" } },

    { "lines: a final CR is data", LINES, 0, 3, "abc\r", {0}, 0,
      { "E" } },

    { "bytes: chunk of exactly max", BYTES, 16384, 10, "0123456789", {0},
      0, { "C0123456789" } },

    { "bytes: chunk of max + 1", BYTES, 16384, 10, "0123456789a", {0}, 1,
      { "E" } },

    { "bytes: small pieces under max", BYTES, 16384, 10, "0123456789a",
      { 5 }, 0, { "C01234", "C56789a" } },

    { NULL, 0, 0, 0, NULL, {0}, 0, { NULL } }
};


static ngx_http_streaming_test_sse_t  ngx_http_streaming_test_events[] = {

    { "data: a\n\n", NGX_OK, NULL, "a", NULL, 0, "data: a\n\n", NULL },

    { "id: 1\ndata: a\n\n", NGX_OK, NULL, "a", "1", 1, "data: a\n\n",
      "id: 1\n" },

    { "id: 1\nid:2\ndata: a\nid\n\n", NGX_OK, NULL, "a", "", 3,
      "data: a\n\n", "id: 1\n" },

    { "data: a\r\nid: 7\r\n\r\n", NGX_OK, NULL, "a", "7", 1,
      "data: a\r\n\r\n", "id: 7\r\n" },

    { "id:7\rdata: x\r\r", NGX_OK, NULL, "x", "7", 1, "data: x\r\r",
      "id:7\r" },

    { "id: 1\nid: 2\nid: 3\nid: 4\nid: 5\nid: 6\ndata: a\n\n", NGX_OK, NULL,
      "a", "6", 6, "data: a\n\n", "id: 1\n" },

    { "idx: 1\nID: 2\n id: 3\nix: 4\ni: 5\ndata: a\n\n", NGX_OK, NULL, "a",
      NULL, 0, "idx: 1\nID: 2\n id: 3\nix: 4\ni: 5\ndata: a\n\n", NULL },

    /* the helpers know no BOM: the caller passes p + f->bom */

    { BOM "data: a\n\n", NGX_DECLINED, NULL, NULL, NULL, 0,
      BOM "data: a\n\n", NULL },

    { "id: 1\n" BOM "data: a\n\n", NGX_DECLINED, NULL, NULL, "1", 1,
      BOM "data: a\n\n", "id: 1\n" },

    { "event: a\nevent: b\ndata:  two\n\n", NGX_OK, "b", " two", NULL, 0,
      "event: a\nevent: b\ndata:  two\n\n", NULL },

    { "event:x\n\n", NGX_OK, "x", NULL, NULL, 0, "event:x\n\n", NULL },

    { "event\n\n", NGX_OK, "", NULL, NULL, 0, "event\n\n", NULL },

    { "data\ndata\n\n", NGX_OK, NULL, "\n", NULL, 0, "data\ndata\n\n",
      NULL },

    { "data:\n\n", NGX_OK, NULL, "", NULL, 0, "data:\n\n", NULL },

    { "data: a\ndata: b\r\ndata:c\rdata\n\n", NGX_OK, NULL, "a\nb\nc\n",
      NULL, 0, "data: a\ndata: b\r\ndata:c\rdata\n\n", NULL },

    { "data: a:b: c\n\n", NGX_OK, NULL, "a:b: c", NULL, 0,
      "data: a:b: c\n\n", NULL },

    { ": c\nretry: 5\n\n", NGX_DECLINED, NULL, NULL, NULL, 0,
      ": c\nretry: 5\n\n", NULL },

    { "id: 9\n\n", NGX_DECLINED, NULL, NULL, "9", 1, "\n", "id: 9\n" },

    { "data: a", NGX_OK, NULL, "a", NULL, 0, "data: a", NULL },

    { "id: 1", NGX_DECLINED, NULL, NULL, "1", 1, "", "id: 1" },

    { "", NGX_DECLINED, NULL, NULL, NULL, 0, "", NULL },

    { NULL, 0, NULL, NULL, NULL, 0, NULL, NULL }
};


static ngx_http_streaming_test_type_t  ngx_http_streaming_test_type[] = {
    { "text/event-stream", SSE },
    { "text/event-stream; charset=utf-8", SSE },
    { "text/event-stream;charset=UTF-8", SSE },
    { "Text/Event-Stream", SSE },
    { " text/event-stream ", SSE },
    { "text/event-streams", BYTES },
    { "text/event", BYTES },
    { "text/event-stream-x; a=b", BYTES },
    { "application/x-ndjson", LINES },
    { "APPLICATION/X-NDJSON ; charset=utf-8", LINES },
    { "application/jsonl", LINES },
    { "application/x-jsonlines", LINES },
    { "application/json-seq", BYTES },
    { "application/json", BYTES },
    { "application/jsonlines", BYTES },
    { "text/plain", BYTES },
    { "", BYTES },
    { ";", BYTES },
    { NULL, 0 }
};


#define ngx_http_streaming_test_u8(s, rc)  { s, sizeof(s) - 1, rc, #s }

static ngx_http_streaming_test_utf8_t  ngx_http_streaming_test_utf8s[] = {
    ngx_http_streaming_test_u8("", NGX_OK),
    ngx_http_streaming_test_u8("a", NGX_OK),
    ngx_http_streaming_test_u8("\0", NGX_OK),
    ngx_http_streaming_test_u8("\x7f", NGX_OK),
    ngx_http_streaming_test_u8("\xc2\x80", NGX_OK),
    ngx_http_streaming_test_u8("\xdf\xbf", NGX_OK),
    ngx_http_streaming_test_u8("h\xc3\xa9llo", NGX_OK),
    ngx_http_streaming_test_u8("\xe0\xa0\x80", NGX_OK),
    ngx_http_streaming_test_u8("\xe2\x82\xac", NGX_OK),
    ngx_http_streaming_test_u8("\xed\x9f\xbf", NGX_OK),
    ngx_http_streaming_test_u8("\xee\x80\x80", NGX_OK),
    ngx_http_streaming_test_u8("\xef\xbf\xbf", NGX_OK),
    ngx_http_streaming_test_u8("\xf0\x90\x80\x80", NGX_OK),
    ngx_http_streaming_test_u8("\xf0\x9f\x98\x80", NGX_OK),
    ngx_http_streaming_test_u8("\xf4\x8f\xbf\xbf", NGX_OK),
    ngx_http_streaming_test_u8("\xc0\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xc1\xbf", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xe0\x80\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xe0\x9f\xbf", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf0\x80\x80\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf0\x8f\xbf\xbf", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xed\xa0\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xed\xbf\xbf", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xed\xa0\xbd\xed\xb8\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf4\x90\x80\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf5\x80\x80\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf8\x88\x80\x80\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xff", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xfe", NGX_DECLINED),
    ngx_http_streaming_test_u8("a\xff", NGX_DECLINED),
    ngx_http_streaming_test_u8("\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xbf", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xc2", NGX_DECLINED),
    ngx_http_streaming_test_u8("a\xc2", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xe2\x82", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf0\x90\x80", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xc2\x41", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xe2\x28\xa1", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xe2\x82\x28", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf0\x90\x28\xbc", NGX_DECLINED),
    ngx_http_streaming_test_u8("\xf0\x90\x80\xc0", NGX_DECLINED),
    { NULL, 0, 0, NULL }
};


int
main(void)
{
    ngx_http_streaming_test_cases();
    ngx_http_streaming_test_errors();
    ngx_http_streaming_test_big_bytes();
    ngx_http_streaming_test_api();
    ngx_http_streaming_test_sse_events();
    ngx_http_streaming_test_types();
    ngx_http_streaming_test_utf8();
    ngx_http_streaming_test_fuzz();

    printf("1..%lu\n", (unsigned long) ngx_http_streaming_test_n);

    return ngx_http_streaming_test_failed ? 1 : 0;
}


/*
 * The simulated caller.  cuts[] are the offsets where one input buffer ends
 * and the next begins.
 */

static void
ngx_http_streaming_test_feed(ngx_uint_t framing, size_t size, size_t max,
    u_char *in, size_t len, size_t *cuts, ngx_uint_t ncuts,
    ngx_http_streaming_test_result_t *r)
{
    u_char                       *buf, *p, *last, *end, *kept, *out, *whole;
    size_t                        a, b, kept_len, kept_off, out_len, off;
    ngx_uint_t                    i, kind;
    ngx_http_streaming_framer_t   f;

    ngx_memzero(r, sizeof(ngx_http_streaming_test_result_t));

    ngx_http_streaming_framer_init(&f, framing, size, max);

    kept = malloc(len + 1);
    out = malloc(len + 1);
    whole = malloc(len + 1);

    if (kept == NULL || out == NULL || whole == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    kept_len = 0;
    kept_off = 0;
    out_len = 0;
    a = 0;

    for (i = 0; i <= ncuts; i++) {
        b = (i < ncuts) ? cuts[i] : len;

        if (b <= a || b > len) {
            continue;
        }

        /* a buffer of the piece's own size: ASan sees a read beyond it */

        buf = malloc(b - a);
        if (buf == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }

        ngx_memcpy(buf, in + a, b - a);

        p = buf;
        last = buf + (b - a);

        while (p < last) {
            end = ngx_http_streaming_framer_scan(&f, p, last, &kind);

            off = a + (p - buf);

            if (end < p || end > last) {
                ngx_http_streaming_test_fail(r, "scan at %lu returned %ld",
                                             (unsigned long) off,
                                             (long) (end - p));
                free(buf);
                goto done;
            }

            if (kind == NGX_HTTP_STREAMING_FRAMER_ERROR) {
                if (end != p) {
                    ngx_http_streaming_test_fail(r, "ERROR did not return p");
                }

                r->error = 1;
                r->error_off = off;
                free(buf);
                goto done;
            }

            if (kind == NGX_HTTP_STREAMING_FRAMER_CONTINUE) {

                /*
                 * A caller copies what it keeps: a piece that is not
                 * complete must reach the end of the buffer.
                 */

                if (end != last || end == p) {
                    ngx_http_streaming_test_fail(r,
                                     "CONTINUE at %lu does not end the buffer",
                                     (unsigned long) off);
                    free(buf);
                    goto done;
                }

                if (kept_len == 0) {
                    kept_off = off;
                }

                ngx_memcpy(kept + kept_len, p, end - p);
                kept_len += end - p;
                p = end;
                continue;
            }

            if (kind != NGX_HTTP_STREAMING_FRAMER_CHUNK
                && kind != NGX_HTTP_STREAMING_FRAMER_SKIP)
            {
                ngx_http_streaming_test_fail(r, "scan kind %lu",
                                             (unsigned long) kind);
                free(buf);
                goto done;
            }

            /* [p, end) is empty only when the kept bytes are the piece */

            if (end == p && kept_len == 0) {
                ngx_http_streaming_test_fail(r, "empty range at %lu",
                                             (unsigned long) off);
                free(buf);
                goto done;
            }

            if (f.size != kept_len + (end - p)) {
                ngx_http_streaming_test_fail(r, "f->size %lu, expected %lu",
                                     (unsigned long) f.size,
                                     (unsigned long) (kept_len + (end - p)));
            }

            /* the piece as the caller sees it: kept bytes, then [p, end) */

            ngx_memcpy(whole, kept, kept_len);
            ngx_memcpy(whole + kept_len, p, end - p);

            ngx_memcpy(out + out_len, whole, kept_len + (end - p));
            out_len += kept_len + (end - p);

            ngx_http_streaming_test_record(r, framing, f.bytes_size, max, &f,
                                           kind, kept_len ? kept_off : off,
                                           whole, kept_len != 0, in);
            kept_len = 0;
            p = end;
        }

        free(buf);
        a = b;
    }

    kind = ngx_http_streaming_framer_finish(&f);

    switch (kind) {

    case NGX_HTTP_STREAMING_FRAMER_NONE:
        if (kept_len) {
            ngx_http_streaming_test_fail(r, "finish NONE with %lu kept",
                                         (unsigned long) kept_len);
        }
        break;

    case NGX_HTTP_STREAMING_FRAMER_CHUNK:
    case NGX_HTTP_STREAMING_FRAMER_SKIP:
        if (kept_len == 0 || f.size != kept_len || f.trim != 0) {
            ngx_http_streaming_test_fail(r, "finish: size %lu, trim %lu, "
                                         "kept %lu", (unsigned long) f.size,
                                         (unsigned long) f.trim,
                                         (unsigned long) kept_len);
            break;
        }

        ngx_memcpy(out + out_len, kept, kept_len);
        out_len += kept_len;

        ngx_http_streaming_test_record(r, framing, f.bytes_size, max, &f,
                                       kind, kept_off, kept, 1, in);
        break;

    case NGX_HTTP_STREAMING_FRAMER_ERROR:
        r->error = 1;
        r->error_off = len;
        goto done;

    default:
        ngx_http_streaming_test_fail(r, "finish kind %lu",
                                     (unsigned long) kind);
    }

    /* the invariant: the pieces are the input, exactly */

    if (out_len != len || ngx_memcmp(out, in, len) != 0) {
        ngx_http_streaming_test_fail(r, "pieces are not the input "
                                     "(%lu bytes of %lu)",
                                     (unsigned long) out_len,
                                     (unsigned long) len);
    }

done:

    free(kept);
    free(out);
    free(whole);
}


static void
ngx_http_streaming_test_record(ngx_http_streaming_test_result_t *r,
    ngx_uint_t framing, size_t size, size_t max,
    ngx_http_streaming_framer_t *f, ngx_uint_t kind, size_t off,
    u_char *bytes, ngx_uint_t spans, u_char *in)
{
    size_t                            len, data, done;
    ngx_http_streaming_test_piece_t  *pc;

    len = f->size;

    done = r->n ? r->piece[r->n - 1].off + r->piece[r->n - 1].len : 0;

    if (off != done) {
        ngx_http_streaming_test_fail(r, "piece at %lu after %lu",
                                     (unsigned long) off,
                                     (unsigned long) done);
    }

    if (ngx_memcmp(bytes, in + off, len) != 0) {
        ngx_http_streaming_test_fail(r, "piece at %lu differs",
                                     (unsigned long) off);
    }

    if (r->n == NGX_HTTP_STREAMING_TEST_PIECES) {
        ngx_http_streaming_test_fail(r, "too many pieces");
        return;
    }

    pc = &r->piece[r->n++];
    pc->kind = kind;
    pc->off = off;
    pc->len = len;
    pc->trim = f->trim;

    switch (framing) {

    case LINES:
        if (f->trim > len || f->trim > 2 || f->bom) {
            ngx_http_streaming_test_fail(r, "trim %lu of %lu",
                                         (unsigned long) f->trim,
                                         (unsigned long) len);
            return;
        }

        data = len - f->trim;

        if ((f->trim == 1 && bytes[data] != LF)
            || (f->trim == 2 && (bytes[data] != CR || bytes[data + 1] != LF))
            || (f->trim == 1 && data > 0 && bytes[data - 1] == CR)
            || (f->trim == 0 && len && bytes[len - 1] == LF))
        {
            ngx_http_streaming_test_fail(r, "line end of the line at %lu",
                                         (unsigned long) off);
        }

        if (ngx_strlchr(bytes, bytes + data, LF) != NULL) {
            ngx_http_streaming_test_fail(r, "LF inside the line at %lu",
                                         (unsigned long) off);
        }

        if ((kind == NGX_HTTP_STREAMING_FRAMER_CHUNK) != (data != 0)) {
            ngx_http_streaming_test_fail(r, "empty line kind at %lu",
                                         (unsigned long) off);
        }

        if (data > max) {
            ngx_http_streaming_test_fail(r, "line over max at %lu",
                                         (unsigned long) off);
        }

        break;

    case SSE:
        if (f->trim != 0 || len > max) {
            ngx_http_streaming_test_fail(r, "sse trim or max at %lu",
                                         (unsigned long) off);
        }

        if (f->bom != ((off == 0 && len >= 3 && ngx_memcmp(in, BOM, 3) == 0)
                       ? 3 : 0))
        {
            ngx_http_streaming_test_fail(r, "bom %lu at %lu",
                                         (unsigned long) f->bom,
                                         (unsigned long) off);
        }

        ngx_http_streaming_test_check_sse(r, bytes, len, kind, off, f->bom);
        break;

    default: /* BYTES */
        if (kind != NGX_HTTP_STREAMING_FRAMER_CHUNK || f->trim != 0
            || f->bom != 0 || len > size || len > max || spans)
        {
            ngx_http_streaming_test_fail(r, "bytes chunk at %lu",
                                         (unsigned long) off);
        }
    }
}


/* a block as the event helpers see it, consistent with the framer */

static void
ngx_http_streaming_test_check_sse(ngx_http_streaming_test_result_t *r,
    u_char *p, size_t len, ngx_uint_t kind, size_t off, size_t bom)
{
    u_char                          *data, *stripped, *end, *data2, *end2;
    ngx_int_t                        rc;
    ngx_http_streaming_sse_event_t   ev, ev2;

    p += bom;
    len -= bom;

    rc = ngx_http_streaming_sse_parse(p, len, &ev);

    if ((rc == NGX_OK) != (kind == NGX_HTTP_STREAMING_FRAMER_CHUNK)) {
        ngx_http_streaming_test_fail(r, "parse %ld for the block at %lu",
                                     (long) rc, (unsigned long) off);
    }

    data = malloc(ev.data_len + 1);
    stripped = malloc(ev.stripped_len + 1);
    data2 = malloc(ev.data_len + 1);

    if (data == NULL || stripped == NULL || data2 == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    end = ngx_http_streaming_sse_data(p, len, data);

    if ((size_t) (end - data) != ev.data_len) {
        ngx_http_streaming_test_fail(r, "data length at %lu",
                                     (unsigned long) off);
    }

    end = ngx_http_streaming_sse_strip_id(p, len, stripped);

    if ((size_t) (end - stripped) != ev.stripped_len) {
        ngx_http_streaming_test_fail(r, "stripped length at %lu",
                                     (unsigned long) off);
        goto done;
    }

    rc = ngx_http_streaming_sse_parse(stripped, ev.stripped_len, &ev2);

    if (ev2.nids != 0
        || ev2.has_data != ev.has_data
        || ev2.has_event != ev.has_event
        || ev2.data_len != ev.data_len
        || ev2.event.len != ev.event.len
        || (ev.event.len
            && ngx_memcmp(ev2.event.data, ev.event.data, ev.event.len) != 0))
    {
        ngx_http_streaming_test_fail(r, "stripped event at %lu differs",
                                     (unsigned long) off);
        goto done;
    }

    end2 = ngx_http_streaming_sse_data(stripped, ev.stripped_len, data2);

    if ((size_t) (end2 - data2) != ev.data_len
        || (ev.data_len && ngx_memcmp(data, data2, ev.data_len) != 0))
    {
        ngx_http_streaming_test_fail(r, "stripped data at %lu differs",
                                     (unsigned long) off);
    }

done:

    free(data);
    free(stripped);
    free(data2);
}


static void
ngx_http_streaming_test_fail(ngx_http_streaming_test_result_t *r,
    const char *fmt, ...)
{
    va_list  args;

    if (r->why[0]) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, args);
    va_end(args);
}


/*
 * A CR that ends an SSE block at the end of a buffer ends it at once; the
 * LF that may follow comes as a SKIP of its own.  Joined back, the result
 * must be that of the input in one piece.
 */

static void
ngx_http_streaming_test_normalize(ngx_http_streaming_test_result_t *r,
    u_char *in)
{
    ngx_uint_t                        i, j;
    ngx_http_streaming_test_piece_t  *a, *b;

    for (i = 0, j = 0; i < r->n; i++) {
        a = (j > 0) ? &r->piece[j - 1] : NULL;
        b = &r->piece[i];

        if (a != NULL
            && b->kind == NGX_HTTP_STREAMING_FRAMER_SKIP
            && b->len == 1 && in[b->off] == LF
            && a->len > 0 && in[a->off + a->len - 1] == CR)
        {
            a->len++;
            continue;
        }

        r->piece[j++] = *b;
    }

    r->n = j;
}


static ngx_uint_t
ngx_http_streaming_test_same(ngx_http_streaming_test_result_t *a,
    ngx_http_streaming_test_result_t *b)
{
    ngx_uint_t  i;

    if (a->n != b->n || a->error != b->error) {
        return 0;
    }

    for (i = 0; i < a->n; i++) {
        if (a->piece[i].kind != b->piece[i].kind
            || a->piece[i].off != b->piece[i].off
            || a->piece[i].len != b->piece[i].len
            || a->piece[i].trim != b->piece[i].trim)
        {
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_streaming_test_show(ngx_http_streaming_test_result_t *r,
    u_char *in, const char *label)
{
    ngx_uint_t                        i;
    ngx_http_streaming_test_piece_t  *pc;

    printf("# %s:", label);

    for (i = 0; i < r->n; i++) {
        pc = &r->piece[i];
        printf(" %c'%s'",
               pc->kind == NGX_HTTP_STREAMING_FRAMER_CHUNK ? 'C' : 'S',
               ngx_http_streaming_test_escape(in + pc->off, pc->len));
    }

    if (r->error) {
        printf(" E@%lu", (unsigned long) r->error_off);
    }

    if (r->why[0]) {
        printf(" (%s)", r->why);
    }

    printf("\n");
}


static char *
ngx_http_streaming_test_escape(u_char *p, size_t len)
{
    size_t       i, n;
    static char  buf[4096];

    for (i = 0, n = 0; i < len && n < sizeof(buf) - 8; i++) {
        if (p[i] == LF) {
            n += sprintf(buf + n, "\\n");

        } else if (p[i] == CR) {
            n += sprintf(buf + n, "\\r");

        } else if (p[i] < 0x20 || p[i] >= 0x7f || p[i] == '\'') {
            n += sprintf(buf + n, "\\x%02x", p[i]);

        } else {
            buf[n++] = p[i];
        }
    }

    buf[n] = '\0';

    return buf;
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
    size_t                             len, max, off, i, j, cuts[2], *all;
    ngx_uint_t                         k, ncuts, ok;
    ngx_http_streaming_test_piece_t   *pc;
    ngx_http_streaming_test_result_t  *r, *w, *e;

    r = malloc(sizeof(ngx_http_streaming_test_result_t));
    w = malloc(sizeof(ngx_http_streaming_test_result_t));
    e = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (r == NULL || w == NULL || e == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    in = (u_char *) tc->input;
    len = ngx_strlen(tc->input);
    max = tc->max ? tc->max : NGX_HTTP_STREAMING_TEST_BIG;

    for (ncuts = 0; ncuts < NGX_HTTP_STREAMING_TEST_CUTS; ncuts++) {
        if (tc->cuts[ncuts] == 0) {
            break;
        }
    }

    /* the expected pieces */

    ngx_memzero(e, sizeof(ngx_http_streaming_test_result_t));

    off = 0;

    for (k = 0; k < NGX_HTTP_STREAMING_TEST_EXPECT && tc->expect[k]; k++) {
        if (tc->expect[k][0] == 'E') {
            e->error = 1;
            break;
        }

        pc = &e->piece[e->n++];
        pc->kind = (tc->expect[k][0] == 'C') ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                                             : NGX_HTTP_STREAMING_FRAMER_SKIP;
        pc->off = off;
        pc->len = ngx_strlen(tc->expect[k] + 1);

        if (off + pc->len > len
            || ngx_memcmp(in + off, tc->expect[k] + 1, pc->len) != 0)
        {
            ngx_http_streaming_test_ok(0, "%s: the table's pieces are not "
                                       "its input", tc->name);
            goto done;
        }

        off += pc->len;
    }

    ngx_http_streaming_test_feed(tc->framing, tc->size, max, in, len,
                                 tc->cuts, ncuts, w);

    /* trims are checked by the feed, not listed in the table */

    for (k = 0; k < w->n && k < e->n; k++) {
        e->piece[k].trim = w->piece[k].trim;
    }

    ok = (w->why[0] == '\0' && ngx_http_streaming_test_same(w, e));

    ngx_http_streaming_test_ok(ok, "%s", tc->name);

    if (!ok) {
        ngx_http_streaming_test_show(e, in, "expected");
        ngx_http_streaming_test_show(w, in, "got");
    }

    if (ncuts || tc->whole_only || tc->framing == BYTES) {
        goto done;
    }

    /* the same pieces however the input is split */

    ngx_http_streaming_test_normalize(w, in);

    ok = 1;

    for (i = 1; ok && i < len; i++) {
        cuts[0] = i;
        ok = ngx_http_streaming_test_split(tc, max, cuts, 1, w, r);
    }

    ngx_http_streaming_test_ok(ok, "%s: every 2-piece split", tc->name);

    ok = 1;

    for (i = 1; ok && i < len; i++) {
        for (j = i + 1; ok && j < len; j++) {
            cuts[0] = i;
            cuts[1] = j;
            ok = ngx_http_streaming_test_split(tc, max, cuts, 2, w, r);
        }
    }

    ngx_http_streaming_test_ok(ok, "%s: every 3-piece split", tc->name);

    all = malloc((len + 1) * sizeof(size_t));
    if (all == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    for (i = 0; i + 1 < len; i++) {
        all[i] = i + 1;
    }

    ok = ngx_http_streaming_test_split(tc, max, all, len ? len - 1 : 0, w, r);
    free(all);

    ngx_http_streaming_test_ok(ok, "%s: 1-byte pieces", tc->name);

done:

    free(r);
    free(w);
    free(e);
}


static ngx_uint_t
ngx_http_streaming_test_split(ngx_http_streaming_test_case_t *tc, size_t max,
    size_t *cuts, ngx_uint_t ncuts, ngx_http_streaming_test_result_t *whole,
    ngx_http_streaming_test_result_t *r)
{
    u_char      *in;
    size_t       len;
    ngx_uint_t   i;

    in = (u_char *) tc->input;
    len = ngx_strlen(tc->input);

    ngx_http_streaming_test_feed(tc->framing, tc->size, max, in, len, cuts,
                                 ncuts, r);
    ngx_http_streaming_test_normalize(r, in);

    if (r->why[0] == '\0' && ngx_http_streaming_test_same(r, whole)) {
        return 1;
    }

    printf("# cut at");

    for (i = 0; i < ncuts; i++) {
        printf(" %lu", (unsigned long) cuts[i]);
    }

    printf("\n");

    ngx_http_streaming_test_show(whole, in, "whole");
    ngx_http_streaming_test_show(r, in, "split");

    return 0;
}


/* ERROR comes as soon as the byte beyond max is fed, and stays */

static void
ngx_http_streaming_test_errors(void)
{
    u_char                             *in, *end;
    size_t                              len, i, all[64];
    ngx_uint_t                          kind, t;
    ngx_http_streaming_framer_t         f;
    ngx_http_streaming_test_result_t   *r;

    static struct {
        ngx_uint_t   framing;
        size_t       max;
        char        *input;
        size_t       error_off;
    } tests[] = {
        { SSE, 10, "data: abcdefghijklmnop", 10 },
        { SSE, 10, ": abcdefghijklmnop", 10 },
        { SSE, 10, "data: a\n\ndata: abcdefghijklmnop", 19 },
        { LINES, 3, "abcdefgh\n", 3 },
        { LINES, 3, "ab\nabcdefgh\n", 6 },
        { LINES, 3, "abc\rdefgh\n", 4 },
        { BYTES, 0, "a", 0 },
        { 0, 0, NULL, 0 }
    };

    r = malloc(sizeof(ngx_http_streaming_test_result_t));
    if (r == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    for (t = 0; tests[t].input; t++) {
        in = (u_char *) tests[t].input;
        len = ngx_strlen(tests[t].input);

        for (i = 0; i + 1 < len; i++) {
            all[i] = i + 1;
        }

        ngx_http_streaming_test_feed(tests[t].framing, 1, tests[t].max, in,
                                     len, all, len - 1, r);

        ngx_http_streaming_test_ok(r->why[0] == '\0' && r->error
                                   && r->error_off == tests[t].error_off,
                                   "ERROR at the first byte over max, "
                                   "1-byte pieces: '%s'",
                                   ngx_http_streaming_test_escape(in, len));

        if (r->why[0] || r->error_off != tests[t].error_off) {
            ngx_http_streaming_test_show(r, in, "got");
        }
    }

    free(r);

    /* sticky */

    for (t = SSE; t <= BYTES; t++) {
        in = (u_char *) "data: abc\n\n";
        len = 11;

        ngx_http_streaming_framer_init(&f, t, 16384, 4);

        end = ngx_http_streaming_framer_scan(&f, in, in + len, &kind);
        ngx_http_streaming_test_ok(end == in
                                   && kind == NGX_HTTP_STREAMING_FRAMER_ERROR,
                                   "framing %lu: ERROR returns p",
                                   (unsigned long) t);

        end = ngx_http_streaming_framer_scan(&f, in, in + 1, &kind);
        ngx_http_streaming_test_ok(end == in
                                   && kind == NGX_HTTP_STREAMING_FRAMER_ERROR,
                                   "framing %lu: ERROR again",
                                   (unsigned long) t);

        ngx_http_streaming_test_ok(ngx_http_streaming_framer_finish(&f)
                                   == NGX_HTTP_STREAMING_FRAMER_ERROR,
                                   "framing %lu: finish after ERROR",
                                   (unsigned long) t);
    }
}


static void
ngx_http_streaming_test_big_bytes(void)
{
    u_char                            *in;
    size_t                             i, len, cuts[64];
    ngx_uint_t                         ok;
    ngx_http_streaming_test_result_t  *r;

    len = 40000;

    in = malloc(len);
    r = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (in == NULL || r == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    for (i = 0; i < len; i++) {
        in[i] = (u_char) ('a' + i % 26);
    }

    ngx_http_streaming_test_feed(BYTES, 16384, NGX_HTTP_STREAMING_TEST_BIG,
                                 in, len, NULL, 0, r);

    ok = (r->why[0] == '\0' && !r->error && r->n == 3
          && r->piece[0].len == 16384 && r->piece[1].len == 16384
          && r->piece[2].len == 40000 - 2 * 16384);

    ngx_http_streaming_test_ok(ok, "bytes=16k: a 40000-byte piece is cut at "
                               "16k and 32k");

    cuts[0] = 20000;

    ngx_http_streaming_test_feed(BYTES, 16384, NGX_HTTP_STREAMING_TEST_BIG,
                                 in, len, cuts, 1, r);

    ok = (r->why[0] == '\0' && !r->error && r->n == 4
          && r->piece[0].len == 16384 && r->piece[1].len == 20000 - 16384
          && r->piece[2].len == 16384 && r->piece[3].len == 20000 - 16384);

    ngx_http_streaming_test_ok(ok, "bytes=16k: two 20000-byte pieces");

    for (i = 0; i < 39; i++) {
        cuts[i] = (i + 1) * 1000;
    }

    ngx_http_streaming_test_feed(BYTES, 16384, NGX_HTTP_STREAMING_TEST_BIG,
                                 in, len, cuts, 39, r);

    ok = (r->why[0] == '\0' && !r->error && r->n == 40);

    for (i = 0; ok && i < 40; i++) {
        ok = (r->piece[i].len == 1000 && r->piece[i].off == i * 1000);
    }

    ngx_http_streaming_test_ok(ok, "bytes=16k: 1000-byte pieces are chunks");

    ngx_http_streaming_test_feed(BYTES, 0, NGX_HTTP_STREAMING_TEST_BIG,
                                 in, len, NULL, 0, r);

    ok = (r->why[0] == '\0' && r->n == 3 && r->piece[0].len == 16384);

    ngx_http_streaming_test_ok(ok, "bytes: size 0 means 16k");

    free(in);
    free(r);
}


static void
ngx_http_streaming_test_api(void)
{
    u_char                          *p, *end;
    ngx_uint_t                       kind;
    ngx_http_streaming_framer_t      f;
    ngx_http_streaming_sse_event_t   ev;

    /* an empty range */

    p = (u_char *) "data: a\n\n";

    ngx_http_streaming_framer_init(&f, SSE, 0, 100);
    end = ngx_http_streaming_framer_scan(&f, p, p, &kind);

    ngx_http_streaming_test_ok(end == p
                               && kind == NGX_HTTP_STREAMING_FRAMER_CONTINUE
                               && ngx_http_streaming_framer_finish(&f)
                                  == NGX_HTTP_STREAMING_FRAMER_NONE,
                               "an empty range is nothing");

    /* zero copy: a chunk within one buffer is that buffer's bytes */

    end = ngx_http_streaming_framer_scan(&f, p, p + 9, &kind);

    ngx_http_streaming_test_ok(end == p + 9
                               && kind == NGX_HTTP_STREAMING_FRAMER_CHUNK
                               && f.size == 9 && f.trim == 0,
                               "sse: a chunk in one buffer");

    /* lines: a CRLF split, the trim covers kept bytes */

    p = (u_char *) "abc\r\n";

    ngx_http_streaming_framer_init(&f, LINES, 0, 100);
    end = ngx_http_streaming_framer_scan(&f, p, p + 4, &kind);

    ngx_http_streaming_test_ok(end == p + 4
                               && kind == NGX_HTTP_STREAMING_FRAMER_CONTINUE,
                               "lines: 'abc\\r' continues");

    end = ngx_http_streaming_framer_scan(&f, p + 4, p + 5, &kind);

    ngx_http_streaming_test_ok(end == p + 5
                               && kind == NGX_HTTP_STREAMING_FRAMER_CHUNK
                               && f.size == 5 && f.trim == 2,
                               "lines: '\\n' ends it: size 5, trim 2");

    /* sse: an event completed by a blank line in the next buffer */

    p = (u_char *) "data: a\n\n";

    ngx_http_streaming_framer_init(&f, SSE, 0, 100);
    end = ngx_http_streaming_framer_scan(&f, p, p + 8, &kind);

    ngx_http_streaming_test_ok(end == p + 8
                               && kind == NGX_HTTP_STREAMING_FRAMER_CONTINUE,
                               "sse: 'data: a\\n' continues");

    end = ngx_http_streaming_framer_scan(&f, p + 8, p + 9, &kind);

    ngx_http_streaming_test_ok(end == p + 9
                               && kind == NGX_HTTP_STREAMING_FRAMER_CHUNK
                               && f.size == 9,
                               "sse: '\\n' ends it: size 9");

    /* the stream's BOM: part of the first piece, reported in f->bom */

    p = (u_char *) BOM "data: a\n\n" BOM "data: b\n\n";

    ngx_http_streaming_framer_init(&f, SSE, 0, 100);
    end = ngx_http_streaming_framer_scan(&f, p, p + 24, &kind);

    ngx_http_streaming_test_ok(end == p + 12
                               && kind == NGX_HTTP_STREAMING_FRAMER_CHUNK
                               && f.size == 12 && f.bom == 3
                               && ngx_http_streaming_sse_parse(p + f.bom,
                                                   f.size - f.bom, &ev)
                                  == NGX_OK
                               && ev.data_len == 1,
                               "sse: a BOM starts the first chunk, f->bom 3");

    end = ngx_http_streaming_framer_scan(&f, end, p + 24, &kind);

    ngx_http_streaming_test_ok(end == p + 24
                               && kind == NGX_HTTP_STREAMING_FRAMER_SKIP
                               && f.size == 12 && f.bom == 0,
                               "sse: a later BOM is part of a field name");

    /* "auto" falls back to bytes */

    ngx_http_streaming_framer_init(&f, NGX_HTTP_STREAMING_FRAMING_AUTO, 0,
                                   100);

    ngx_http_streaming_test_ok(f.framing == BYTES
                               && f.bytes_size
                                  == NGX_HTTP_STREAMING_FRAMING_BYTES_SIZE,
                               "auto framing falls back to bytes=16k");
}


static void
ngx_http_streaming_test_sse_events(void)
{
    u_char                          *p, *buf, *end;
    size_t                           len, n;
    ngx_int_t                        rc;
    ngx_uint_t                       ok;
    ngx_http_streaming_sse_event_t   ev;
    ngx_http_streaming_test_sse_t   *t;

    for (t = ngx_http_streaming_test_events; t->input; t++) {
        p = (u_char *) t->input;
        len = ngx_strlen(t->input);

        rc = ngx_http_streaming_sse_parse(p, len, &ev);

        ok = (rc == t->rc);

        ok = ok && (t->event == NULL
                    ? !ev.has_event
                    : ev.has_event && ev.event.len == ngx_strlen(t->event)
                      && ngx_memcmp(ev.event.data, t->event, ev.event.len)
                         == 0);

        ok = ok && (t->data == NULL
                    ? !ev.has_data && ev.data_len == 0
                    : ev.has_data && ev.data_len == ngx_strlen(t->data));

        ok = ok && (t->id == NULL
                    ? ev.nids == 0 && ev.id.len == 0
                    : ev.id.len == ngx_strlen(t->id)
                      && ngx_memcmp(ev.id.data, t->id, ev.id.len) == 0);

        ok = ok && ev.nids == t->nids
             && ev.stripped_len == ngx_strlen(t->stripped);

        ok = ok && (t->id_line == NULL
                    || (ev.id_lines[0].len == ngx_strlen(t->id_line)
                        && ngx_memcmp(ev.id_lines[0].data, t->id_line,
                                      ev.id_lines[0].len) == 0));

        buf = malloc(len + 1);
        if (buf == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }

        if (ok && t->data) {
            end = ngx_http_streaming_sse_data(p, len, buf);
            n = end - buf;
            ok = (n == ngx_strlen(t->data)
                  && ngx_memcmp(buf, t->data, n) == 0);
        }

        if (ok) {
            end = ngx_http_streaming_sse_strip_id(p, len, buf);
            n = end - buf;
            ok = (n == ngx_strlen(t->stripped)
                  && ngx_memcmp(buf, t->stripped, n) == 0);
        }

        if (ok) {
            /* in place */
            ngx_memcpy(buf, p, len);
            end = ngx_http_streaming_sse_strip_id(buf, len, buf);
            n = end - buf;
            ok = (n == ngx_strlen(t->stripped)
                  && ngx_memcmp(buf, t->stripped, n) == 0);
        }

        free(buf);

        ngx_http_streaming_test_ok(ok, "sse event '%s'",
                                   ngx_http_streaming_test_escape(p, len));
    }

    /* the ranges of every id line */

    p = (u_char *) "id: 1\ndata: a\r\nid\rid:3\r\n\r\n";
    len = ngx_strlen(p);

    (void) ngx_http_streaming_sse_parse(p, len, &ev);

    ok = (ev.nids == 3
          && ev.id_lines[0].data == p && ev.id_lines[0].len == 6
          && ev.id_lines[1].data == p + 15 && ev.id_lines[1].len == 3
          && ev.id_lines[2].data == p + 18 && ev.id_lines[2].len == 6
          && ev.id.data == p + 21 && ev.id.len == 1);

    ngx_http_streaming_test_ok(ok, "sse: id line ranges");
}


static void
ngx_http_streaming_test_types(void)
{
    ngx_uint_t                       framing;
    ngx_http_streaming_test_type_t  *t;

    for (t = ngx_http_streaming_test_type; t->type; t++) {
        framing = ngx_http_streaming_framing_from_type((u_char *) t->type,
                                                   ngx_strlen(t->type));

        ngx_http_streaming_test_ok(framing == t->framing,
                                   "framing of '%s' is %lu", t->type,
                                   (unsigned long) t->framing);
    }

    /* a length that cuts the value, without a NUL after it */

    framing = ngx_http_streaming_framing_from_type(
                                   (u_char *) "text/event-streamXYZ", 17);

    ngx_http_streaming_test_ok(framing == SSE, "type within a longer buffer");
}


static void
ngx_http_streaming_test_utf8(void)
{
    u_char                           b[5], *copy;
    size_t                           len, i;
    ngx_int_t                        rc;
    ngx_uint_t                       n, bad;
    ngx_http_streaming_test_utf8_t  *t;

    for (t = ngx_http_streaming_test_utf8s; t->bytes; t++) {

        /* an exact-size copy: a read beyond it is an ASan report */

        copy = malloc(t->len + 1);
        if (copy == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }

        ngx_memcpy(copy, t->bytes, t->len);

        rc = ngx_http_streaming_utf8_valid(copy, t->len);

        ngx_http_streaming_test_ok(rc == t->rc, "utf8 %s %s", t->name,
                                   t->rc == NGX_OK ? "valid" : "invalid");
        free(copy);
    }

    /* every 1- and 2-byte sequence, and random longer ones */

    bad = 0;

    for (n = 0; n < 65536; n++) {
        b[0] = (u_char) (n >> 8);
        b[1] = (u_char) n;

        for (len = 1; len <= 2; len++) {
            if (ngx_http_streaming_utf8_valid(b, len)
                != ngx_http_streaming_test_utf8_ref(b, len))
            {
                bad++;
            }
        }
    }

    for (n = 0; n < 1000000; n++) {
        len = 3 + ngx_http_streaming_test_rand() % 3;

        for (i = 0; i < len; i++) {
            switch (ngx_http_streaming_test_rand() % 4) {
            case 0:
                b[i] = (u_char) ngx_http_streaming_test_rand();
                break;
            case 1:
                b[i] = (u_char) (0x80 | ngx_http_streaming_test_rand() % 64);
                break;
            case 2:
                b[i] = (u_char) (0xe0 | ngx_http_streaming_test_rand() % 32);
                break;
            default:
                b[i] = (u_char) (0x80 + ngx_http_streaming_test_rand() % 8
                                        * 8);
            }
        }

        if (ngx_http_streaming_utf8_valid(b, len)
            != ngx_http_streaming_test_utf8_ref(b, len))
        {
            if (bad++ == 0) {
                ngx_http_streaming_test_diag("utf8 mismatch: %s",
                                    ngx_http_streaming_test_escape(b, len));
            }
        }
    }

    ngx_http_streaming_test_ok(bad == 0, "utf8: agrees with a reference "
                               "decoder on all 1-2 byte and 1M random "
                               "sequences");
}


/* decodes code points, then judges them: a different way to the same end */

static ngx_int_t
ngx_http_streaming_test_utf8_ref(u_char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            n = 2;
            cp = p[i] & 0x1f;
            min = 0x80;

        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 3;
            cp = p[i] & 0x0f;
            min = 0x800;

        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 4;
            cp = p[i] & 0x07;
            min = 0x10000;

        } else {
            return NGX_DECLINED;
        }

        if (i + n > len) {
            return NGX_DECLINED;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return NGX_DECLINED;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * Random inputs in random splits: the feed checks every invariant; with no
 * size limit, the pieces must also match a whole-input reference.
 */

static void
ngx_http_streaming_test_fuzz(void)
{
    u_char                            in[128];
    size_t                            len, max, size, cuts[16], i, j, c;
    ngx_uint_t                        iter, framing, ncuts, bad, mism;
    ngx_http_streaming_test_result_t  *r, *ref;

    static char  *tokens[] = {
        "data", "data:", "data: ", "event", "event:", "id", "id: ", "retry:",
        ":", " ", "x", "\r", "\n", "\r\n", "\n\n", "\r\r", "\xef", "\xbb",
        "\xbf", BOM, "\"", "{}", "\xc3\xa9", "\0"
    };

    r = malloc(sizeof(ngx_http_streaming_test_result_t));
    ref = malloc(sizeof(ngx_http_streaming_test_result_t));

    if (r == NULL || ref == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    bad = 0;
    mism = 0;

    for (iter = 0; iter < 20000; iter++) {
        framing = SSE + ngx_http_streaming_test_rand() % 3;

        len = 0;
        c = ngx_http_streaming_test_rand() % 40;

        for (i = 0; i < c; i++) {
            char  *tok;

            if (ngx_http_streaming_test_rand() % 8 == 0) {
                in[len++] = (u_char) ngx_http_streaming_test_rand();
                continue;
            }

            tok = tokens[ngx_http_streaming_test_rand()
                         % (sizeof(tokens) / sizeof(tokens[0]))];

            j = tok[0] ? ngx_strlen(tok) : 1;

            if (len + j > sizeof(in)) {
                break;
            }

            ngx_memcpy(in + len, tok, j);
            len += j;
        }

        max = (ngx_http_streaming_test_rand() % 2)
              ? NGX_HTTP_STREAMING_TEST_BIG
              : 1 + ngx_http_streaming_test_rand() % 24;
        size = 1 + ngx_http_streaming_test_rand() % 20;

        if (len > 1 && ngx_http_streaming_test_rand() % 10 == 0) {
            for (i = 0; i + 1 < len && i < 16; i++) {
                cuts[i] = i + 1;
            }

            ncuts = i;

        } else {
            ncuts = ngx_http_streaming_test_rand() % 8;

            for (i = 0; i < ncuts; i++) {
                cuts[i] = len ? ngx_http_streaming_test_rand() % len : 0;
            }

            /* sorted; equal and zero cuts are empty buffers, skipped */

            for (i = 1; i < ncuts; i++) {
                for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                    c = cuts[j];
                    cuts[j] = cuts[j - 1];
                    cuts[j - 1] = c;
                }
            }
        }

        ngx_http_streaming_test_feed(framing, size, max, in, len, cuts,
                                     ncuts, r);

        if (r->why[0]) {
            if (bad++ < 5) {
                ngx_http_streaming_test_diag("framing %lu, max %lu, "
                                             "size %lu, '%s'",
                                             (unsigned long) framing,
                                             (unsigned long) max,
                                             (unsigned long) size,
                                    ngx_http_streaming_test_escape(in, len));
                ngx_http_streaming_test_show(r, in, "got");
            }

            continue;
        }

        if (framing == BYTES || max != NGX_HTTP_STREAMING_TEST_BIG) {
            continue;
        }

        if (framing == SSE) {
            ngx_http_streaming_test_ref_sse(in, len, ref);

        } else {
            ngx_http_streaming_test_ref_lines(in, len, ref);
        }

        ngx_http_streaming_test_normalize(r, in);

        if (!ngx_http_streaming_test_same(r, ref)) {
            if (mism++ < 5) {
                ngx_http_streaming_test_diag("framing %lu, '%s'",
                                             (unsigned long) framing,
                                    ngx_http_streaming_test_escape(in, len));
                ngx_http_streaming_test_show(ref, in, "reference");
                ngx_http_streaming_test_show(r, in, "got");
            }
        }
    }

    ngx_http_streaming_test_ok(bad == 0, "fuzz: 20000 random inputs in "
                               "random splits keep every invariant");
    ngx_http_streaming_test_ok(mism == 0, "fuzz: the pieces match the "
                               "reference splitters");

    free(r);
    free(ref);
}


/* SSE blocks of a whole input, as the WHATWG rules cut them */

static void
ngx_http_streaming_test_ref_sse(u_char *in, size_t len,
    ngx_http_streaming_test_result_t *r)
{
    size_t                            pos, line, e, next, start, name;
    ngx_uint_t                        fields;
    ngx_http_streaming_test_piece_t  *pc;

    ngx_memzero(r, sizeof(ngx_http_streaming_test_result_t));

    pos = (len >= 3 && ngx_memcmp(in, BOM, 3) == 0) ? 3 : 0;
    start = 0;
    fields = 0;

    while (pos < len) {
        line = pos;

        for (e = line; e < len && in[e] != CR && in[e] != LF; e++) {
            /* void */
        }

        next = e;

        if (e < len) {
            next = e + 1;

            if (in[e] == CR && next < len && in[next] == LF) {
                next++;
            }
        }

        if (e == line && e < len) {
            pc = &r->piece[r->n++];
            pc->kind = fields ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                              : NGX_HTTP_STREAMING_FRAMER_SKIP;
            pc->off = start;
            pc->len = next - start;

            start = next;
            fields = 0;
            pos = next;
            continue;
        }

        for (name = line; name < e && in[name] != ':'; name++) {
            /* void */
        }

        if ((name - line == 4 && ngx_memcmp(in + line, "data", 4) == 0)
            || (name - line == 5 && ngx_memcmp(in + line, "event", 5) == 0))
        {
            fields = 1;
        }

        pos = next;
    }

    if (start < len) {
        pc = &r->piece[r->n++];
        pc->kind = fields ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                          : NGX_HTTP_STREAMING_FRAMER_SKIP;
        pc->off = start;
        pc->len = len - start;
    }
}


/* lines of a whole input: up to LF; trim 2 for CRLF; empty lines skipped */

static void
ngx_http_streaming_test_ref_lines(u_char *in, size_t len,
    ngx_http_streaming_test_result_t *r)
{
    size_t                            start, e;
    ngx_http_streaming_test_piece_t  *pc;

    ngx_memzero(r, sizeof(ngx_http_streaming_test_result_t));

    for (start = 0; start < len; start = e) {
        for (e = start; e < len && in[e] != LF; e++) {
            /* void */
        }

        pc = &r->piece[r->n++];
        pc->off = start;

        if (e == len) {
            pc->len = len - start;
            pc->trim = 0;
            pc->kind = NGX_HTTP_STREAMING_FRAMER_CHUNK;
            break;
        }

        e++;
        pc->len = e - start;
        pc->trim = (pc->len >= 2 && in[e - 2] == CR) ? 2 : 1;
        pc->kind = (pc->len > pc->trim) ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                                        : NGX_HTTP_STREAMING_FRAMER_SKIP;
    }
}


/* xorshift64*, a fixed seed: the same inputs on every run */

static uint64_t
ngx_http_streaming_test_rand(void)
{
    uint64_t  x;

    x = ngx_http_streaming_test_seed;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ngx_http_streaming_test_seed = x;

    return x * 0x2545f4914f6cdd1dULL;
}
