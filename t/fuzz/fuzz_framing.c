
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * libFuzzer target: the framer (sse, lines, bytes) over arbitrary input
 * cut at arbitrary places, and the SSE event helpers over every chunk it
 * finds.  Invariants: the pieces are the input, byte for byte; no chunk
 * exceeds max; an SSE chunk's helpers agree on sizes.
 *
 * The first 4 input bytes choose the framing, max, the bytes size and the
 * seed of the cut points.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_framing.h"


#define FUZZ_MAX_PIECES  64


static void
fuzz_check_sse(u_char *p, size_t len)
{
    u_char                          *data, *end;
    ngx_http_streaming_sse_event_t   ev;

    (void) ngx_http_streaming_sse_parse(p, len, &ev);

    data = malloc(len + 1);
    if (data == NULL) {
        return;
    }

    end = ngx_http_streaming_sse_data(p, len, data);
    if ((size_t) (end - data) != ev.data_len) {
        abort();
    }

    end = ngx_http_streaming_sse_strip_id(p, len, data);
    if ((size_t) (end - data) != ev.stripped_len || ev.stripped_len > len) {
        abort();
    }

    free(data);
}


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    u_char                       *input, *p, *last, *end, *kept, *out;
    size_t                        max, bytes_size, len, nkept, nout, piece;
    uint32_t                      seed;
    ngx_uint_t                    framing, kind, pieces;
    ngx_http_streaming_framer_t   f;

    if (size < 4) {
        return 0;
    }

    framing = NGX_HTTP_STREAMING_FRAMING_SSE + in[0] % 3;
    max = 1 + in[1] * 4;
    bytes_size = 1 + in[2] % max;
    seed = in[3];

    input = malloc(size - 4 + 1);
    kept = malloc(size - 4 + 1);
    out = malloc(size - 4 + 1);

    if (input == NULL || kept == NULL || out == NULL) {
        goto done;
    }

    len = size - 4;
    memcpy(input, in + 4, len);

    ngx_http_streaming_framer_init(&f, framing, bytes_size, max);

    nkept = 0;
    nout = 0;
    pieces = 0;

    for (p = input; p < input + len; p = last) {

        /* the next input buffer: a pseudo-random cut */
        seed = seed * 1103515245 + 12345;
        piece = 1 + (seed >> 16) % 97;
        last = ngx_min(p + piece, input + len);

        if (++pieces > FUZZ_MAX_PIECES) {
            last = input + len;
        }

        while (p < last) {
            end = ngx_http_streaming_framer_scan(&f, p, last, &kind);

            if (end < p || end > last) {
                abort();
            }

            switch (kind) {

            case NGX_HTTP_STREAMING_FRAMER_CONTINUE:
                memcpy(kept + nkept, p, end - p);
                nkept += end - p;
                break;

            case NGX_HTTP_STREAMING_FRAMER_CHUNK:
            case NGX_HTTP_STREAMING_FRAMER_SKIP:
                memcpy(kept + nkept, p, end - p);
                nkept += end - p;

                if (f.size != nkept || f.trim > f.size) {
                    abort();
                }

                if (kind == NGX_HTTP_STREAMING_FRAMER_CHUNK) {
                    if (f.size - f.trim > max) {
                        abort();
                    }

                    if (framing == NGX_HTTP_STREAMING_FRAMING_SSE) {
                        fuzz_check_sse(kept, nkept);
                    }
                }

                memcpy(out + nout, kept, nkept);
                nout += nkept;
                nkept = 0;
                break;

            default: /* NGX_HTTP_STREAMING_FRAMER_ERROR */
                if (end != p) {
                    abort();
                }

                goto done;
            }

            p = end;
        }
    }

    switch (ngx_http_streaming_framer_finish(&f)) {

    case NGX_HTTP_STREAMING_FRAMER_CHUNK:
    case NGX_HTTP_STREAMING_FRAMER_SKIP:
        memcpy(out + nout, kept, nkept);
        nout += nkept;
        nkept = 0;
        break;

    case NGX_HTTP_STREAMING_FRAMER_NONE:
        break;

    default:
        goto done;
    }

    /* every byte in exactly one piece, in order */
    if (nkept != 0 || nout != len || memcmp(out, input, len) != 0) {
        abort();
    }

    (void) ngx_http_streaming_utf8_valid(input, len);

done:

    free(input);
    free(kept);
    free(out);

    return 0;
}
