
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * libFuzzer target: client JSON messages, as a control endpoint's body and
 * as a WebSocket text frame.  Invariants: an accepted message is complete
 * and in range (a known command or action, ids of 1-128 bytes, an ack with
 * its sequence, numbers up to 2^53, strings without NUL); a refused one
 * says why in a lowercase message; a WebSocket stream-control message reads
 * the same through the control endpoint's parser.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_message.h"
#include "../unit/pool.h"


#define CTL  0
#define MSG  1


static void ngx_http_streaming_fuzz_check(ngx_uint_t parser,
    ngx_http_streaming_message_t *msg);
static ngx_uint_t ngx_http_streaming_fuzz_str(ngx_str_t *s);
static ngx_uint_t ngx_http_streaming_fuzz_same(ngx_str_t *a, ngx_str_t *b);


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    u_char                        *copy;
    ngx_int_t                      rc[2];
    ngx_uint_t                     parser;
    ngx_pool_t                    *pool;
    const char                    *err;
    ngx_http_streaming_message_t   msg[2];

    /* a buffer of the input's own size, so that ASan sees a read past it */

    copy = malloc(size ? size : 1);
    pool = ngx_create_pool(1024, NULL);

    if (copy == NULL || pool == NULL) {
        abort();
    }

    memcpy(copy, in, size);

    for (parser = CTL; parser <= MSG; parser++) {
        err = NULL;

        if (parser == CTL) {
            rc[parser] = ngx_http_streaming_control_parse(pool, copy, size,
                                                          &msg[parser], &err);

        } else {
            rc[parser] = ngx_http_streaming_message_parse(pool, copy, size,
                                                          &msg[parser], &err);
        }

        switch (rc[parser]) {

        case NGX_OK:
            if (size > NGX_HTTP_STREAMING_MESSAGE_MAX) {
                abort();
            }

            ngx_http_streaming_fuzz_check(parser, &msg[parser]);
            break;

        case NGX_DECLINED:
            if (err == NULL || err[0] == '\0'
                || (err[0] >= 'A' && err[0] <= 'Z')
                || (msg[parser].unknown_type && msg[parser].unknown_action))
            {
                abort();
            }

            break;

        default:
            /* the stand-in pool does not fail: no NGX_ERROR either */
            abort();
        }
    }

    /* the same stream-control message through either door */

    if (rc[MSG] == NGX_OK
        && msg[MSG].type == NGX_HTTP_STREAMING_MSG_CONTROL)
    {
        if (rc[CTL] != NGX_OK
            || msg[CTL].command != msg[MSG].command
            || msg[CTL].has_sequence != msg[MSG].has_sequence
            || msg[CTL].sequence != msg[MSG].sequence
            || !ngx_http_streaming_fuzz_same(&msg[CTL].message_id,
                                             &msg[MSG].message_id)
            || !ngx_http_streaming_fuzz_same(&msg[CTL].stream_id,
                                             &msg[MSG].stream_id)
            || !ngx_http_streaming_fuzz_same(&msg[CTL].subscriber_id,
                                             &msg[MSG].subscriber_id)
            || !ngx_http_streaming_fuzz_same(&msg[CTL].reason,
                                             &msg[MSG].reason))
        {
            abort();
        }
    }

    ngx_destroy_pool(pool);
    free(copy);

    return 0;
}


static void
ngx_http_streaming_fuzz_check(ngx_uint_t parser,
    ngx_http_streaming_message_t *msg)
{
    if (msg->unknown_type || msg->unknown_action
        || !ngx_http_streaming_fuzz_str(&msg->message_id)
        || !ngx_http_streaming_fuzz_str(&msg->stream_id)
        || !ngx_http_streaming_fuzz_str(&msg->subscriber_id)
        || !ngx_http_streaming_fuzz_str(&msg->reason)
        || !ngx_http_streaming_fuzz_str(&msg->token)
        || msg->stream_id.len > NGX_HTTP_STREAMING_MESSAGE_ID_MAX
        || msg->subscriber_id.len > NGX_HTTP_STREAMING_MESSAGE_ID_MAX)
    {
        abort();
    }

    switch (msg->type) {

    case NGX_HTTP_STREAMING_MSG_CONTROL:
        if (msg->command < NGX_HTTP_STREAMING_CMD_PAUSE
            || msg->command > NGX_HTTP_STREAMING_CMD_ACK
            || (msg->command == NGX_HTTP_STREAMING_CMD_ACK
                && !msg->has_sequence)
            || (msg->has_sequence
                && msg->sequence > NGX_HTTP_STREAMING_MESSAGE_INT_MAX)
            || (!msg->has_sequence && msg->sequence != 0)
            || (parser == MSG && msg->stream_id.len == 0)
            || msg->action != 0 || msg->token.len != 0 || msg->has_from)
        {
            abort();
        }

        break;

    case NGX_HTTP_STREAMING_MSG_REQUEST:
        if (parser == CTL
            || msg->action < NGX_HTTP_STREAMING_ACTION_SUBSCRIBE
            || msg->action > NGX_HTTP_STREAMING_ACTION_STATUS
            || msg->stream_id.len == 0
            || (msg->has_from
                && msg->from > NGX_HTTP_STREAMING_MESSAGE_INT_MAX)
            || (!msg->has_from && msg->from != 0)
            || msg->command != 0 || msg->has_sequence
            || msg->subscriber_id.len != 0 || msg->reason.len != 0)
        {
            abort();
        }

        break;

    default:
        abort();
    }
}


/* a string is there when it has a length, and holds no NUL */
static ngx_uint_t
ngx_http_streaming_fuzz_str(ngx_str_t *s)
{
    if (s->len == 0) {
        return 1;
    }

    return s->data != NULL && memchr(s->data, '\0', s->len) == NULL;
}


static ngx_uint_t
ngx_http_streaming_fuzz_same(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}
