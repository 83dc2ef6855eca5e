
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * Unit tests of the client message leaf (src/ngx_http_streaming_message.c),
 * TAP on stdout.  Each input sits in a buffer of its own size, so that
 * AddressSanitizer sees any read past it; each result is written out as one
 * line (what was understood, or the error code and message) and compared
 * with the expected line.  Then the same parses with every pool and every
 * jansson allocation failing in turn.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_streaming_message.h"
#include "tap.h"
#include "pool.h"


#define NGX_HTTP_STREAMING_TEST_LINE  1024

#define ngx_http_streaming_test_put(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)

/* which parser a case is for */
#define CTL  1                     /* ngx_http_streaming_control_parse */
#define MSG  2                     /* ngx_http_streaming_message_parse */
#define ANY  3                     /* both, the same answer */

#define SEQ  "INVALID_MESSAGE: \"sequence\" must be an integer from 0 to 2^53"
#define FROM "INVALID_MESSAGE: \"params.fromSequence\" must be an integer " \
             "from 0 to 2^53"
#define NUL  "INVALID_MESSAGE: a string contains a NUL character"
#define BAD  "INVALID_MESSAGE: message is not valid JSON"
#define SC   "{\"type\":\"stream-control\",\"payload\":"
#define RQ   "{\"type\":\"request\",\"payload\":"
#define SUB  RQ "{\"action\":\"subscribe\",\"params\":"


typedef struct {
    ngx_uint_t      parser;
    char           *input;
    size_t          len;           /* 0: strlen(input) */
    char           *expect;
} ngx_http_streaming_test_case_t;


static ngx_int_t ngx_http_streaming_test_parse(ngx_uint_t parser, u_char *in,
    size_t len, char *line, size_t size);
static void ngx_http_streaming_test_render(ngx_int_t rc,
    ngx_http_streaming_message_t *msg, const char *err, char *line,
    size_t size);
static size_t ngx_http_streaming_test_str(char *p, size_t size,
    const char *name, ngx_str_t *s);
static void ngx_http_streaming_test_expect(ngx_uint_t parser, u_char *in,
    size_t len, const char *expect, const char *name);
static void ngx_http_streaming_test_cases(void);
static void ngx_http_streaming_test_sizes(void);
static void ngx_http_streaming_test_rpc_id(void);
static void ngx_http_streaming_test_pool_failures(void);
static void ngx_http_streaming_test_json_failures(void);
static void *ngx_http_streaming_test_malloc(size_t size);


static ngx_uint_t  ngx_http_streaming_test_json_left = (ngx_uint_t) -1;
static ngx_uint_t  ngx_http_streaming_test_json_failed;


static ngx_http_streaming_test_case_t  ngx_http_streaming_test_table[] = {

    /* control endpoint, the payload alone */

    { CTL, "{\"command\":\"pause\"}", 0, "control cmd=pause" },
    { CTL, "{\"command\":\"resume\",\"streamId\":\"s1\"}", 0,
      "control cmd=resume stream=s1" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"user left\"}", 0,
      "control cmd=cancel reason=user left" },
    { CTL, "{\"command\":\"ack\",\"sequence\":5,\"subscriberId\":\"sub-1\"}",
      0, "control cmd=ack sub=sub-1 seq=5" },
    { CTL, "{\"command\":\"ack\",\"sequence\":0}", 0,
      "control cmd=ack seq=0" },
    { CTL, "{\"command\":\"ack\",\"sequence\":-0}", 0,
      "control cmd=ack seq=0" },
    { CTL, "{\"command\":\"ack\",\"sequence\":9007199254740992}", 0,
      "control cmd=ack seq=9007199254740992" },
    { CTL, "{\"command\":\"pause\",\"sequence\":3}", 0,
      "control cmd=pause seq=3" },
    { CTL, " \r\n\t{ \"command\" : \"pause\" } \n", 0, "control cmd=pause" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"\"}", 0,
      "control cmd=cancel" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"caf\\u00e9 \\\"x\\\"\"}", 0,
      "control cmd=cancel reason=caf\\xc3\\xa9 \"x\"" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"caf\xc3\xa9\"}", 0,
      "control cmd=cancel reason=caf\\xc3\\xa9" },
    { CTL, "{\"command\":\"pause\",\"extra\":{\"deep\":[1,2.5,{\"x\":null}]},"
           "\"timestamp\":\"2024-01-01T00:00:00.000Z\",\"n\":-1}", 0,
      "control cmd=pause" },
    { CTL, "{\"streamId\":\"a.b_c~d-9\",\"command\":\"resume\"}", 0,
      "control cmd=resume stream=a.b_c~d-9" },

    /* sequence of every wrong kind */

    { CTL, "{\"command\":\"ack\",\"sequence\":9007199254740993}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":9223372036854775807}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":-1}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":1.5}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":1.0}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":1e3}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":\"5\"}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":true}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":null}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":[5]}", 0, SEQ },
    { CTL, "{\"command\":\"ack\",\"sequence\":{}}", 0, SEQ },
    { CTL, "{\"command\":\"pause\",\"sequence\":-1}", 0, SEQ },
    { ANY, "{\"command\":\"ack\",\"sequence\":99999999999999999999}", 0,
      "INVALID_MESSAGE: number out of range" },
    { CTL, "{\"command\":\"ack\"}", 0,
      "INVALID_MESSAGE: ack needs a sequence" },
    { CTL, "{\"command\":\"ack\",\"subscriberId\":\"s\"}", 0,
      "INVALID_MESSAGE: ack needs a sequence" },

    /* command */

    { CTL, "{}", 0, "INVALID_MESSAGE: \"command\" is required" },
    { CTL, "{\"streamId\":\"s1\"}", 0,
      "INVALID_MESSAGE: \"command\" is required" },
    { CTL, "{\"command\":5}", 0,
      "INVALID_MESSAGE: \"command\" must be a string" },
    { CTL, "{\"command\":null}", 0,
      "INVALID_MESSAGE: \"command\" must be a string" },
    { CTL, "{\"command\":[\"pause\"]}", 0,
      "INVALID_MESSAGE: \"command\" must be a string" },
    { CTL, "{\"command\":\"stop\"}", 0,
      "INVALID_MESSAGE: \"command\" must be pause, resume, cancel or ack" },
    { CTL, "{\"command\":\"PAUSE\"}", 0,
      "INVALID_MESSAGE: \"command\" must be pause, resume, cancel or ack" },
    { CTL, "{\"command\":\"pause \"}", 0,
      "INVALID_MESSAGE: \"command\" must be pause, resume, cancel or ack" },
    { CTL, "{\"command\":\"\"}", 0,
      "INVALID_MESSAGE: \"command\" must be pause, resume, cancel or ack" },
    { CTL, "{\"command\":\"pause\\u0000x\"}", 0, NUL },

    /* ids and reason */

    { CTL, "{\"command\":\"pause\",\"streamId\":5}", 0,
      "INVALID_MESSAGE: \"streamId\" must be a string" },
    { CTL, "{\"command\":\"pause\",\"streamId\":null}", 0,
      "INVALID_MESSAGE: \"streamId\" must be a string" },
    { CTL, "{\"command\":\"pause\",\"streamId\":\"\"}", 0,
      "INVALID_MESSAGE: \"streamId\" must be 1 to 128 bytes" },
    { CTL, "{\"command\":\"pause\",\"streamId\":\"a\\u0000b\"}", 0, NUL },
    { CTL, "{\"command\":\"ack\",\"sequence\":1,\"subscriberId\":false}", 0,
      "INVALID_MESSAGE: \"subscriberId\" must be a string" },
    { CTL, "{\"command\":\"ack\",\"sequence\":1,\"subscriberId\":\"\"}", 0,
      "INVALID_MESSAGE: \"subscriberId\" must be 1 to 128 bytes" },
    { CTL, "{\"command\":\"cancel\",\"reason\":5}", 0,
      "INVALID_MESSAGE: \"reason\" must be a string" },
    { CTL, "{\"command\":\"cancel\",\"reason\":{\"text\":\"x\"}}", 0,
      "INVALID_MESSAGE: \"reason\" must be a string" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"\xff\"}", 0,
      "INVALID_MESSAGE: message is not valid UTF-8" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"\xc3\"}", 0,
      "INVALID_MESSAGE: message is not valid UTF-8" },
    { CTL, "{\"command\":\"cancel\",\"reason\":\"\xed\xa0\x80\"}", 0,
      "INVALID_MESSAGE: message is not valid UTF-8" },

    /* control endpoint, a whole message */

    { CTL, SC "{\"command\":\"pause\",\"streamId\":\"s1\"},\"id\":\"m1\","
           "\"timestamp\":\"2024-01-01T00:00:00.000Z\",\"source\":\"x\"}", 0,
      "control id=m1 cmd=pause stream=s1" },
    { CTL, SC "{\"command\":\"pause\"},\"id\":42}", 0,
      "control id=42 cmd=pause" },
    { CTL, SC "{\"command\":\"pause\"},\"id\":null}", 0,
      "control cmd=pause" },
    { CTL, SC "{\"command\":\"pause\"},\"id\":\"\"}", 0,
      "control cmd=pause" },
    { CTL, SC "{\"command\":\"ack\"}}", 0,
      "INVALID_MESSAGE: ack needs a sequence" },
    { CTL, SC "{\"command\":\"ack\",\"sequence\":1.5}}", 0, SEQ },
    { CTL, SC "{}}", 0, "INVALID_MESSAGE: \"command\" is required" },
    { CTL, RQ "{\"action\":\"status\",\"params\":{\"streamId\":\"s\"}}}", 0,
      "UNKNOWN_MESSAGE_TYPE: \"type\" must be \"stream-control\"" },
    { ANY, "{\"type\":\"stream-chunk\",\"payload\":{}}", 0,
      "UNKNOWN_MESSAGE_TYPE: unknown message type" },
    { ANY, "{\"type\":\"Stream-Control\",\"payload\":{}}", 0,
      "UNKNOWN_MESSAGE_TYPE: unknown message type" },
    { ANY, "{\"type\":\"\",\"payload\":{}}", 0,
      "UNKNOWN_MESSAGE_TYPE: unknown message type" },
    { ANY, "{\"type\":5,\"payload\":{\"command\":\"pause\"}}", 0,
      "INVALID_MESSAGE: \"type\" must be a string" },
    { ANY, "{\"type\":null,\"payload\":{\"command\":\"pause\"}}", 0,
      "INVALID_MESSAGE: \"type\" must be a string" },
    { ANY, "{\"type\":\"stream-control\"}", 0,
      "INVALID_MESSAGE: \"payload\" must be an object" },
    { ANY, SC "[]}", 0, "INVALID_MESSAGE: \"payload\" must be an object" },
    { ANY, SC "\"pause\"}", 0,
      "INVALID_MESSAGE: \"payload\" must be an object" },
    { ANY, SC "null}", 0, "INVALID_MESSAGE: \"payload\" must be an object" },
    { ANY, SC "{\"command\":\"pause\",\"streamId\":\"s\"},\"id\":true}", 0,
      "INVALID_MESSAGE: \"id\" must be a string or an integer" },
    { ANY, SC "{\"command\":\"pause\",\"streamId\":\"s\"},\"id\":1.5}", 0,
      "INVALID_MESSAGE: \"id\" must be a string or an integer" },
    { ANY, SC "{\"command\":\"pause\",\"streamId\":\"s\"},\"id\":{}}", 0,
      "INVALID_MESSAGE: \"id\" must be a string or an integer" },
    { ANY, SC "{\"command\":\"pause\",\"streamId\":\"s\"},\"id\":\"a\\u0000\"}",
      0, NUL },

    /* not JSON, not an object, not all of it */

    { ANY, "", 0, "INVALID_MESSAGE: empty message" },
    { ANY, "[]", 0, "INVALID_MESSAGE: message is not a JSON object" },
    { ANY, "[{\"command\":\"pause\"}]", 0,
      "INVALID_MESSAGE: message is not a JSON object" },
    { ANY, "\"pause\"", 0, BAD },
    { ANY, "null", 0, BAD },
    { ANY, "5", 0, BAD },
    { ANY, " ", 0, "INVALID_MESSAGE: message is truncated" },
    { ANY, "{", 0, "INVALID_MESSAGE: message is truncated" },
    { ANY, "{\"command\":\"pause\"", 0,
      "INVALID_MESSAGE: message is truncated" },
    { ANY, "{\"command\":\"pau", 0, "INVALID_MESSAGE: message is truncated" },
    { ANY, "{\"command\":\"pause\"} x", 0,
      "INVALID_MESSAGE: garbage after the JSON value" },
    { ANY, "{\"command\":\"pause\"}{}", 0,
      "INVALID_MESSAGE: garbage after the JSON value" },
    { ANY, "{\"command\":\"pause\"}\0", 20,
      "INVALID_MESSAGE: garbage after the JSON value" },
    { ANY, "{\"command\":\"pa\0use\"}", 20, BAD },
    { ANY, "{\"comm\\u0000and\":\"pause\"}", 0, NUL },
    { ANY, "{\"command\":\"pause\",\"command\":\"resume\"}", 0,
      "INVALID_MESSAGE: duplicate member in an object" },
    { ANY, "{\"command\":\"pause\",\"x\":{\"a\":1,\"a\":2}}", 0,
      "INVALID_MESSAGE: duplicate member in an object" },
    { ANY, SC "{\"command\":\"pause\"},\"payload\":{}}", 0,
      "INVALID_MESSAGE: duplicate member in an object" },
    { ANY, "{command:\"pause\"}", 0, BAD },
    { ANY, "{'command':'pause'}", 0, BAD },
    { ANY, "{\"command\":\"pause\",}", 0, BAD },
    { ANY, "{\"command\":\"pause\" \"x\":1}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":[1,,2]}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":[}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":NaN}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":01}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":\"\\x\"}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":\"a\nb\"}", 0, BAD },
    { ANY, "\xef\xbb\xbf{\"command\":\"pause\"}", 0, BAD },
    { ANY, "{\"command\":\"pause\",\"x\":\"\\ud800\"}", 0, BAD },

    /* WebSocket: stream-control */

    { MSG, SC "{\"command\":\"ack\",\"streamId\":\"s1\",\"sequence\":7},"
           "\"id\":\"m1\"}", 0, "control id=m1 cmd=ack stream=s1 seq=7" },
    { MSG, SC "{\"command\":\"cancel\",\"streamId\":\"s1\",\"reason\":\"r\","
           "\"subscriberId\":\"u\"},\"id\":-7}", 0,
      "control id=-7 cmd=cancel stream=s1 sub=u reason=r" },
    { MSG, SC "{\"command\":\"pause\"}}", 0,
      "INVALID_MESSAGE: \"streamId\" is required" },
    { MSG, SC "{\"command\":\"ack\",\"streamId\":\"s1\"}}", 0,
      "INVALID_MESSAGE: ack needs a sequence" },
    { MSG, SC "{\"command\":\"ack\",\"streamId\":\"s1\",\"sequence\":-1}}", 0,
      SEQ },
    { MSG, "{\"command\":\"pause\",\"streamId\":\"s\"}", 0,
      "INVALID_MESSAGE: \"type\" is required" },
    { MSG, "{\"payload\":{\"command\":\"pause\",\"streamId\":\"s\"}}", 0,
      "INVALID_MESSAGE: \"type\" is required" },

    /* WebSocket: request */

    { MSG, SUB "{\"streamId\":\"s2\"}},\"id\":\"r1\"}", 0,
      "request id=r1 action=subscribe stream=s2" },
    { MSG, SUB "{\"streamId\":\"s2\",\"fromSequence\":10,\"token\":\"t0k\"}},"
           "\"id\":123}", 0,
      "request id=123 action=subscribe stream=s2 token=t0k from=10" },
    { MSG, SUB "{\"streamId\":\"s2\",\"fromSequence\":0}}}", 0,
      "request action=subscribe stream=s2 from=0" },
    { MSG, SUB "{\"streamId\":\"s2\",\"fromSequence\":9007199254740992}}}", 0,
      "request action=subscribe stream=s2 from=9007199254740992" },
    { MSG, SUB "{\"streamId\":\"s2\",\"token\":\"\"}}}", 0,
      "request action=subscribe stream=s2" },
    { MSG, SUB "{\"streamId\":\"s2\",\"extra\":[1]},\"more\":1},\"source\":1,"
           "\"id\":\"x\"}", 0, "request id=x action=subscribe stream=s2" },
    { MSG, RQ "{\"action\":\"unsubscribe\",\"params\":{\"streamId\":\"s\"}}}",
      0, "request action=unsubscribe stream=s" },
    { MSG, RQ "{\"action\":\"status\",\"params\":{\"streamId\":\"s\"}}}", 0,
      "request action=status stream=s" },
    { MSG, RQ "{\"action\":\"status\",\"params\":{\"streamId\":\"s\"}},"
           "\"id\":9223372036854775807}", 0,
      "request id=9223372036854775807 action=status stream=s" },
    { MSG, RQ "{\"action\":\"status\",\"params\":{\"streamId\":\"s\"}},"
           "\"id\":-9223372036854775808}", 0,
      "request id=-9223372036854775808 action=status stream=s" },
    { MSG, RQ "{\"action\":\"publish\",\"params\":{\"streamId\":\"s\"}}}", 0,
      "UNKNOWN_ACTION: unknown action" },
    { MSG, RQ "{\"action\":\"Subscribe\",\"params\":{\"streamId\":\"s\"}}}", 0,
      "UNKNOWN_ACTION: unknown action" },
    { MSG, RQ "{\"params\":{\"streamId\":\"s\"}}}", 0,
      "INVALID_MESSAGE: \"action\" is required" },
    { MSG, RQ "{\"command\":\"pause\",\"streamId\":\"s\"}}", 0,
      "INVALID_MESSAGE: \"action\" is required" },
    { MSG, RQ "{\"action\":1,\"params\":{\"streamId\":\"s\"}}}", 0,
      "INVALID_MESSAGE: \"action\" must be a string" },
    { MSG, RQ "{\"action\":\"subscribe\",\"streamId\":\"s\"}}", 0,
      "INVALID_MESSAGE: \"params\" must be an object" },
    { MSG, SUB "[]}}", 0, "INVALID_MESSAGE: \"params\" must be an object" },
    { MSG, SUB "null}}", 0, "INVALID_MESSAGE: \"params\" must be an object" },
    { MSG, SUB "{}}}", 0, "INVALID_MESSAGE: \"params.streamId\" is required" },
    { MSG, SUB "{\"streamId\":5}}}", 0,
      "INVALID_MESSAGE: \"params.streamId\" must be a string" },
    { MSG, SUB "{\"streamId\":\"\"}}}", 0,
      "INVALID_MESSAGE: \"params.streamId\" must be 1 to 128 bytes" },
    { MSG, SUB "{\"streamId\":\"s\",\"token\":5}}}", 0,
      "INVALID_MESSAGE: \"params.token\" must be a string" },
    { MSG, SUB "{\"streamId\":\"s\",\"token\":null}}}", 0,
      "INVALID_MESSAGE: \"params.token\" must be a string" },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":-1}}}", 0, FROM },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":1.5}}}", 0, FROM },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":\"5\"}}}", 0, FROM },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":true}}}", 0, FROM },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":null}}}", 0, FROM },
    { MSG, SUB "{\"streamId\":\"s\",\"fromSequence\":9007199254740993}}}", 0,
      FROM },
    { MSG, RQ "{\"action\":\"subscribe\",\"params\":{\"streamId\":\"s\"}},"
           "\"id\":false}", 0,
      "INVALID_MESSAGE: \"id\" must be a string or an integer" },
    { MSG, "{\"type\":\"response\",\"payload\":{\"success\":true}}", 0,
      "UNKNOWN_MESSAGE_TYPE: unknown message type" },
    { MSG, "{\"type\":\"stream-init\",\"payload\":{}}", 0,
      "UNKNOWN_MESSAGE_TYPE: unknown message type" },

    { 0, NULL, 0, NULL }
};


int
main(void)
{
    ngx_http_streaming_test_cases();
    ngx_http_streaming_test_sizes();
    ngx_http_streaming_test_rpc_id();
    ngx_http_streaming_test_pool_failures();
    ngx_http_streaming_test_json_failures();

    printf("1..%lu\n", (unsigned long) ngx_http_streaming_test_n);

    return ngx_http_streaming_test_failed ? 1 : 0;
}


/*
 * One parse of a copy of the input in a buffer of its own size, written out
 * to line; the pool is gone by the time line is read, so line holds copies.
 */
static ngx_int_t
ngx_http_streaming_test_parse(ngx_uint_t parser, u_char *in, size_t len,
    char *line, size_t size)
{
    u_char                        *copy;
    ngx_int_t                      rc;
    ngx_pool_t                    *pool;
    const char                    *err;
    ngx_http_streaming_message_t   msg;

    copy = malloc(len ? len : 1);
    pool = ngx_create_pool(1024, NULL);

    if (copy == NULL || pool == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }

    ngx_memcpy(copy, in, len);

    err = NULL;

    if (parser == CTL) {
        rc = ngx_http_streaming_control_parse(pool, copy, len, &msg, &err);

    } else {
        rc = ngx_http_streaming_message_parse(pool, copy, len, &msg, &err);
    }

    /* what jansson held is freed: the strings must be the pool's copies */

    free(copy);

    ngx_http_streaming_test_render(rc, &msg, err, line, size);

    ngx_destroy_pool(pool);

    return rc;
}


static void
ngx_http_streaming_test_render(ngx_int_t rc,
    ngx_http_streaming_message_t *msg, const char *err, char *line,
    size_t size)
{
    char    *p, *last;
    size_t   n;

    static const char  *commands[] = {
        "none", "pause", "resume", "cancel", "ack"
    };

    static const char  *actions[] = {
        "none", "subscribe", "unsubscribe", "status"
    };

    if (rc == NGX_ERROR) {
        snprintf(line, size, "ERROR");
        return;
    }

    if (rc == NGX_DECLINED) {
        snprintf(line, size, "%s: %s",
                 msg->unknown_type ? "UNKNOWN_MESSAGE_TYPE"
                 : msg->unknown_action ? "UNKNOWN_ACTION"
                                       : "INVALID_MESSAGE",
                 err ? err : "(no message)");
        return;
    }

    if (rc != NGX_OK) {
        snprintf(line, size, "rc %ld", (long) rc);
        return;
    }

    p = line;
    last = line + size;

    n = snprintf(p, last - p, "%s",
                 msg->type == NGX_HTTP_STREAMING_MSG_CONTROL ? "control"
                 : msg->type == NGX_HTTP_STREAMING_MSG_REQUEST ? "request"
                                                               : "type?");
    p += ngx_min(n, (size_t) (last - p - 1));

    p += ngx_http_streaming_test_str(p, last - p, "id", &msg->message_id);

    if (msg->command || msg->type == NGX_HTTP_STREAMING_MSG_CONTROL) {
        n = snprintf(p, last - p, " cmd=%s",
                     msg->command <= NGX_HTTP_STREAMING_CMD_ACK
                     ? commands[msg->command] : "?");
        p += ngx_min(n, (size_t) (last - p - 1));
    }

    if (msg->action || msg->type == NGX_HTTP_STREAMING_MSG_REQUEST) {
        n = snprintf(p, last - p, " action=%s",
                     msg->action <= NGX_HTTP_STREAMING_ACTION_STATUS
                     ? actions[msg->action] : "?");
        p += ngx_min(n, (size_t) (last - p - 1));
    }

    p += ngx_http_streaming_test_str(p, last - p, "stream", &msg->stream_id);
    p += ngx_http_streaming_test_str(p, last - p, "sub", &msg->subscriber_id);
    p += ngx_http_streaming_test_str(p, last - p, "reason", &msg->reason);
    p += ngx_http_streaming_test_str(p, last - p, "token", &msg->token);

    if (msg->has_sequence) {
        n = snprintf(p, last - p, " seq=%llu",
                     (unsigned long long) msg->sequence);
        p += ngx_min(n, (size_t) (last - p - 1));
    }

    if (msg->has_from) {
        n = snprintf(p, last - p, " from=%llu",
                     (unsigned long long) msg->from);
        p += ngx_min(n, (size_t) (last - p - 1));
    }

    if (msg->unknown_type || msg->unknown_action) {
        snprintf(p, last - p, " (an unknown flag on NGX_OK)");
    }
}


/* " name=value", bytes outside printable ASCII as \xNN; "" when empty */
static size_t
ngx_http_streaming_test_str(char *p, size_t size, const char *name,
    ngx_str_t *s)
{
    size_t       n, i;
    const char  *fmt;

    if (s->len == 0) {
        return 0;
    }

    if (s->data == NULL) {
        n = snprintf(p, size, " %s=(NULL)", name);
        return ngx_min(n, size - 1);
    }

    n = snprintf(p, size, " %s=", name);
    n = ngx_min(n, size - 1);

    for (i = 0; i < s->len && n + 5 < size; i++) {
        fmt = (s->data[i] >= 0x20 && s->data[i] < 0x7f) ? "%c" : "\\x%02x";
        n += snprintf(p + n, size - n, fmt, s->data[i]);
    }

    return n;
}


static void
ngx_http_streaming_test_expect(ngx_uint_t parser, u_char *in, size_t len,
    const char *expect, const char *name)
{
    char        line[NGX_HTTP_STREAMING_TEST_LINE];
    char       *m;
    ngx_int_t   rc;
    ngx_uint_t  ok;

    rc = ngx_http_streaming_test_parse(parser, in, len, line, sizeof(line));

    ok = (strcmp(line, expect) == 0);

    if (!ok) {
        ngx_http_streaming_test_diag("expected: %s", expect);
        ngx_http_streaming_test_diag("     got: %s", line);
    }

    /* a human message: lowercase, no full stop */

    if (rc == NGX_DECLINED) {
        m = strstr(line, ": ");

        if (m == NULL || (m[2] >= 'A' && m[2] <= 'Z')
            || line[strlen(line) - 1] == '.')
        {
            ngx_http_streaming_test_diag("badly written: %s", line);
            ok = 0;
        }
    }

    ngx_http_streaming_test_ok(ok, "%s %s", parser == CTL ? "control"
                                                          : "message", name);
}


static void
ngx_http_streaming_test_cases(void)
{
    char                            name[160];
    size_t                          len, i, n;
    ngx_uint_t                      parser;
    ngx_http_streaming_test_case_t *tc;

    for (tc = ngx_http_streaming_test_table; tc->input; tc++) {

        len = tc->len ? tc->len : strlen(tc->input);

        /* the input, shortened and printable, names the test */

        for (i = 0, n = 0; i < len && n < sizeof(name) - 5; i++) {
            name[n++] = (tc->input[i] >= 0x20 && tc->input[i] < 0x7f)
                        ? tc->input[i] : '?';
        }

        if (i < len) {
            name[n++] = '.';
            name[n++] = '.';
            name[n++] = '.';
        }

        name[n] = '\0';

        for (parser = CTL; parser <= MSG; parser++) {
            if (tc->parser & parser) {
                ngx_http_streaming_test_expect(parser, (u_char *) tc->input,
                                               len, tc->expect, name);
            }
        }
    }
}


/* the size bound, the id bound, nesting, long strings */
static void
ngx_http_streaming_test_sizes(void)
{
    char     expect[NGX_HTTP_STREAMING_TEST_LINE];
    u_char  *buf, *p, *end;
    size_t   len, n;

    buf = malloc(NGX_HTTP_STREAMING_MESSAGE_MAX + 2);
    if (buf == NULL) {
        exit(2);
    }

    /* exactly 64 KiB (padded with blanks) is parsed; a byte more is not */

    len = NGX_HTTP_STREAMING_MESSAGE_MAX;
    p = ngx_http_streaming_test_put(buf, "{\"command\":\"pause\"}");
    ngx_memset(p, ' ', buf + len - p);

    ngx_http_streaming_test_expect(CTL, buf, len, "control cmd=pause",
                                   "of 65536 bytes");

    buf[len] = ' ';

    ngx_http_streaming_test_expect(CTL, buf, len + 1,
                                   "INVALID_MESSAGE: message is larger than "
                                   "65536 bytes", "of 65537 bytes");
    ngx_http_streaming_test_expect(MSG, buf, len + 1,
                                   "INVALID_MESSAGE: message is larger than "
                                   "65536 bytes", "of 65537 bytes");

    /* a reason that fills the rest of 64 KiB */

    p = ngx_http_streaming_test_put(buf,
                                    "{\"command\":\"cancel\",\"reason\":\"");
    end = ngx_http_streaming_test_put(p, "\"}");
    n = buf + len - end;
    ngx_memset(p, 'r', n);
    (void) ngx_http_streaming_test_put(p + n, "\"}");

    ngx_http_streaming_test_ok(ngx_http_streaming_test_parse(CTL, buf, len,
                                                   expect, sizeof(expect))
                               == NGX_OK
                               && ngx_strncmp(expect, "control cmd=cancel "
                                              "reason=rrrr", 30) == 0
                               && strlen(expect) > sizeof(expect) - 8,
                               "control a reason of %lu bytes",
                               (unsigned long) n);

    /* ids of 128 bytes, not 129 */

    p = ngx_http_streaming_test_put(buf,
                                    "{\"command\":\"pause\",\"streamId\":\"");
    ngx_memset(p, 'a', 128);
    p = ngx_http_streaming_test_put(p + 128, "\"}");

    end = (u_char *) ngx_http_streaming_test_put(expect,
                                                 "control cmd=pause stream=");
    ngx_memset(end, 'a', 128);
    end[128] = '\0';

    ngx_http_streaming_test_expect(CTL, buf, p - buf, expect,
                                   "a streamId of 128 bytes");

    p = ngx_http_streaming_test_put(buf,
                                    "{\"command\":\"pause\",\"streamId\":\"");
    ngx_memset(p, 'a', 129);
    p = ngx_http_streaming_test_put(p + 129, "\"}");

    ngx_http_streaming_test_expect(CTL, buf, p - buf,
                                   "INVALID_MESSAGE: \"streamId\" must be 1 to "
                                   "128 bytes", "a streamId of 129 bytes");

    p = ngx_http_streaming_test_put(buf, "{\"command\":\"ack\",\"sequence\":1,"
                                         "\"subscriberId\":\"");
    ngx_memset(p, 'b', 129);
    p = ngx_http_streaming_test_put(p + 129, "\"}");

    ngx_http_streaming_test_expect(CTL, buf, p - buf,
                                   "INVALID_MESSAGE: \"subscriberId\" must be "
                                   "1 to 128 bytes",
                                   "a subscriberId of 129 bytes");

    /* the bound is in bytes: 65 two-byte characters are too many */

    p = ngx_http_streaming_test_put(buf, RQ "{\"action\":\"status\","
                                         "\"params\":{\"streamId\":\"");
    for (n = 0; n < 65; n++) {
        p = ngx_http_streaming_test_put(p, "\xc3\xa9");
    }
    p = ngx_http_streaming_test_put(p, "\"}}}");

    ngx_http_streaming_test_expect(MSG, buf, p - buf,
                                   "INVALID_MESSAGE: \"params.streamId\" must "
                                   "be 1 to 128 bytes",
                                   "a streamId of 65 two-byte characters");

    /* nesting: jansson's bound (2048 levels) holds */

    p = ngx_http_streaming_test_put(buf, "{\"command\":\"pause\",\"x\":");
    ngx_memset(p, '[', 2000);
    ngx_memset(p + 2000, ']', 2000);
    p = ngx_http_streaming_test_put(p + 4000, "}");

    ngx_http_streaming_test_expect(CTL, buf, p - buf, "control cmd=pause",
                                   "2000 nested arrays in an unknown member");

    p = ngx_http_streaming_test_put(buf, "{\"command\":\"pause\",\"x\":");
    ngx_memset(p, '[', 30000);
    ngx_memset(p + 30000, ']', 30000);
    p = ngx_http_streaming_test_put(p + 60000, "}");

    ngx_http_streaming_test_expect(CTL, buf, p - buf,
                                   "INVALID_MESSAGE: message nested too "
                                   "deeply", "30000 nested arrays");

    p = buf;
    for (n = 0; n < 5000; n++) {
        p = ngx_http_streaming_test_put(p, "{\"a\":");
    }

    ngx_http_streaming_test_expect(MSG, buf, p - buf,
                                   "INVALID_MESSAGE: message nested too "
                                   "deeply", "5000 nested objects, unclosed");

    free(buf);
}


/* the JSON-RPC id the producer echoes */
static void
ngx_http_streaming_test_rpc_id(void)
{
    size_t       i, len;
    u_char      *copy;
    ngx_int_t    rc;
    ngx_str_t    id;
    ngx_pool_t  *pool;

    static struct {
        char        *input;
        ngx_int_t    rc;
        char        *id;
    } cases[] = {
        { "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"m\"}", NGX_OK, "7" },
        { "{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\"}", NGX_OK, "\"a\\\"b\"" },
        { "{\"id\":null}", NGX_OK, "null" },
        { "{\"jsonrpc\":\"2.0\"}", NGX_DECLINED, NULL },
        { "{\"id\":[1]}", NGX_DECLINED, NULL },
        { "{\"id\":1,\"id\":2}", NGX_DECLINED, NULL },
        { "[{\"id\":1}]", NGX_DECLINED, NULL },
        { "{\"id\":1", NGX_DECLINED, NULL }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = strlen(cases[i].input);
        copy = malloc(len);
        pool = ngx_create_pool(1024, NULL);

        if (copy == NULL || pool == NULL) {
            exit(2);
        }

        ngx_memcpy(copy, cases[i].input, len);
        ngx_str_null(&id);

        rc = ngx_http_streaming_rpc_id(pool, copy, len, &id);

        free(copy);

        ngx_http_streaming_test_ok(rc == cases[i].rc
                                   && (cases[i].id == NULL
                                       || (id.len == strlen(cases[i].id)
                                           && ngx_memcmp(id.data, cases[i].id,
                                                         id.len) == 0)),
                                   "rpc_id %s", cases[i].input);

        ngx_destroy_pool(pool);
    }
}


/*
 * Every pool allocation a parse makes fails in turn: NGX_ERROR each time,
 * nothing leaks (LeakSanitizer), and with enough of them the same answer.
 */
static void
ngx_http_streaming_test_pool_failures(void)
{
    char         want[NGX_HTTP_STREAMING_TEST_LINE];
    char         line[NGX_HTTP_STREAMING_TEST_LINE];
    size_t       len;
    ngx_int_t    rc;
    ngx_uint_t   i, k, need, ok;

    static struct {
        ngx_uint_t   parser;
        char        *input;
    } cases[] = {
        { CTL, SC "{\"command\":\"ack\",\"streamId\":\"s\",\"sequence\":1,"
               "\"subscriberId\":\"u\",\"reason\":\"r\"},\"id\":\"m\"}" },
        { MSG, SUB "{\"streamId\":\"s\",\"token\":\"t\"}},\"id\":-12}" }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = strlen(cases[i].input);

        need = ngx_http_streaming_test_pool_allocs;
        rc = ngx_http_streaming_test_parse(cases[i].parser,
                                           (u_char *) cases[i].input, len,
                                           want, sizeof(want));
        need = ngx_http_streaming_test_pool_allocs - need;

        ok = (rc == NGX_OK && need > 0);

        for (k = 0; ok && k < need; k++) {
            ngx_http_streaming_test_pool_left = k;

            rc = ngx_http_streaming_test_parse(cases[i].parser,
                                               (u_char *) cases[i].input, len,
                                               line, sizeof(line));
            if (rc != NGX_ERROR) {
                ngx_http_streaming_test_diag("pool allocation %lu of %lu "
                                             "failed: %s", (unsigned long) k,
                                             (unsigned long) need, line);
                ok = 0;
            }
        }

        ngx_http_streaming_test_pool_left = need;

        rc = ngx_http_streaming_test_parse(cases[i].parser,
                                           (u_char *) cases[i].input, len,
                                           line, sizeof(line));

        ngx_http_streaming_test_pool_left = (ngx_uint_t) -1;

        ngx_http_streaming_test_ok(ok && rc == NGX_OK
                                   && strcmp(line, want) == 0,
                                   "each of %lu pool allocations failing: "
                                   "NGX_ERROR", (unsigned long) need);
    }
}


/*
 * The same with jansson's allocations.  jansson reports most of its own
 * allocation failures as syntax errors, so NGX_DECLINED is as good an
 * answer as NGX_ERROR here; what counts is no crash, no leak and no wrong
 * NGX_OK.
 */
static void
ngx_http_streaming_test_json_failures(void)
{
    char         want[NGX_HTTP_STREAMING_TEST_LINE];
    char         line[NGX_HTTP_STREAMING_TEST_LINE];
    size_t       len;
    ngx_int_t    rc;
    ngx_uint_t   i, k, ok;

    static struct {
        ngx_uint_t   parser;
        char        *input;
    } cases[] = {
        { CTL, SC "{\"command\":\"ack\",\"streamId\":\"s\",\"sequence\":1,"
               "\"subscriberId\":\"u\",\"reason\":\"r\",\"x\":[1,{}]},"
               "\"id\":\"m\"}" },
        { MSG, SUB "{\"streamId\":\"s\",\"token\":\"t\"}},\"id\":-12}" },
        { CTL, "{\"command\":\"pause\",\"command\":\"pause\"}" }
    };

    json_set_alloc_funcs(ngx_http_streaming_test_malloc, free);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = strlen(cases[i].input);

        (void) ngx_http_streaming_test_parse(cases[i].parser,
                                             (u_char *) cases[i].input, len,
                                             want, sizeof(want));
        ok = 1;

        for (k = 0; k < 1000; k++) {
            ngx_http_streaming_test_json_left = k;
            ngx_http_streaming_test_json_failed = 0;

            rc = ngx_http_streaming_test_parse(cases[i].parser,
                                               (u_char *) cases[i].input, len,
                                               line, sizeof(line));

            if (ngx_http_streaming_test_json_failed == 0) {
                break;
            }

            if (rc == NGX_OK) {
                ngx_http_streaming_test_diag("jansson allocation %lu "
                                             "failed: %s", (unsigned long) k,
                                             line);
                ok = 0;
            }
        }

        ngx_http_streaming_test_json_left = (ngx_uint_t) -1;

        ngx_http_streaming_test_ok(ok && k < 1000 && strcmp(line, want) == 0,
                                   "each of %lu jansson allocations failing: "
                                   "no NGX_OK, then \"%s\"", (unsigned long) k,
                                   want);
    }

    json_set_alloc_funcs(malloc, free);
}


static void *
ngx_http_streaming_test_malloc(size_t size)
{
    if (ngx_http_streaming_test_json_left == 0) {
        ngx_http_streaming_test_json_failed++;
        return NULL;
    }

    if (ngx_http_streaming_test_json_left != (ngx_uint_t) -1) {
        ngx_http_streaming_test_json_left--;
    }

    return malloc(size);
}
