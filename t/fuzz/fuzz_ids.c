
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * libFuzzer target: stream ids, Last-Event-ID values and sequence numbers
 * as clients send them.  Invariants: what is accepted is valid, in range,
 * and reads back the same once written out again.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>

#include "ngx_http_streaming_ids.h"


int
LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    char        buf[NGX_HTTP_STREAMING_ID_MAX + 32];
    uint64_t    seq, again;
    ngx_str_t   value, id, id2, s;
    u_char     *copy;

    copy = malloc(size + 1);
    if (copy == NULL) {
        return 0;
    }

    memcpy(copy, in, size);

    value.data = copy;
    value.len = size;

    (void) ngx_http_streaming_id_valid(copy, size);

    if (ngx_http_streaming_sequence(&value, &seq) == NGX_OK) {
        if (seq > NGX_HTTP_STREAMING_MAX_SEQUENCE) {
            abort();
        }
    }

    if (ngx_http_streaming_last_event_id(&value, &id, &seq) == NGX_OK) {

        if (!ngx_http_streaming_id_valid(id.data, id.len)
            || seq > NGX_HTTP_STREAMING_MAX_SEQUENCE
            || id.data < copy || id.data + id.len > copy + size)
        {
            abort();
        }

        /* written out again, it reads back the same */

        snprintf(buf, sizeof(buf), "%.*s:%llu", (int) id.len,
                 (char *) id.data, (unsigned long long) seq);

        s.data = (u_char *) buf;
        s.len = strlen(buf);

        if (ngx_http_streaming_last_event_id(&s, &id2, &again) != NGX_OK
            || again != seq || id2.len != id.len
            || memcmp(id2.data, id.data, id.len) != 0)
        {
            abort();
        }
    }

    free(copy);

    return 0;
}
