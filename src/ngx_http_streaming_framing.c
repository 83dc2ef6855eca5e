
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_framing.h"


/* what a line of an SSE event is */
#define NGX_HTTP_STREAMING_SSE_BLANK   0
#define NGX_HTTP_STREAMING_SSE_OTHER   1
#define NGX_HTTP_STREAMING_SSE_DATA    2
#define NGX_HTTP_STREAMING_SSE_EVENT   3
#define NGX_HTTP_STREAMING_SSE_ID      4

/* f->name_len of a field name that cannot be "data" or "event" */
#define NGX_HTTP_STREAMING_SSE_NAME_LONG  6


typedef struct {
    u_char      *start;
    u_char      *end;            /* the end of its text, before the line end */
    u_char      *next;           /* after the line end */
    u_char      *value;          /* [value, end) */
} ngx_http_streaming_sse_line_t;


static u_char *ngx_http_streaming_framer_sse(ngx_http_streaming_framer_t *f,
    u_char *p, u_char *last, ngx_uint_t *kind);
static void ngx_http_streaming_framer_name(ngx_http_streaming_framer_t *f);
static u_char *ngx_http_streaming_framer_lines(ngx_http_streaming_framer_t *f,
    u_char *p, u_char *last, ngx_uint_t *kind);
static u_char *ngx_http_streaming_framer_bytes(ngx_http_streaming_framer_t *f,
    u_char *p, u_char *last, ngx_uint_t *kind);
static void ngx_http_streaming_framer_reset(ngx_http_streaming_framer_t *f);
static ngx_uint_t ngx_http_streaming_sse_line(u_char *p, u_char *last,
    ngx_http_streaming_sse_line_t *line);
static ngx_inline u_char *ngx_http_streaming_line_end(u_char *p,
    u_char *last);
static ngx_uint_t ngx_http_streaming_framing_type_is(u_char *p, size_t len,
    char *type);


static u_char  ngx_http_streaming_bom[] = { 0xef, 0xbb, 0xbf };


void
ngx_http_streaming_framer_init(ngx_http_streaming_framer_t *f,
    ngx_uint_t framing, size_t bytes_size, size_t max)
{
    ngx_memzero(f, sizeof(ngx_http_streaming_framer_t));

    /* "auto" must have been resolved by the caller; bytes is the fallback */

    if (framing != NGX_HTTP_STREAMING_FRAMING_SSE
        && framing != NGX_HTTP_STREAMING_FRAMING_LINES)
    {
        framing = NGX_HTTP_STREAMING_FRAMING_BYTES;
    }

    f->framing = framing;
    f->bytes_size = bytes_size ? bytes_size
                               : NGX_HTTP_STREAMING_FRAMING_BYTES_SIZE;
    f->max = max;

    f->start = 1;
    f->sol = 1;
}


u_char *
ngx_http_streaming_framer_scan(ngx_http_streaming_framer_t *f, u_char *p,
    u_char *last, ngx_uint_t *kind)
{
    if (f->error) {
        *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
        return p;
    }

    if (p >= last) {
        *kind = NGX_HTTP_STREAMING_FRAMER_CONTINUE;
        return p;
    }

    switch (f->framing) {

    case NGX_HTTP_STREAMING_FRAMING_SSE:
        return ngx_http_streaming_framer_sse(f, p, last, kind);

    case NGX_HTTP_STREAMING_FRAMING_LINES:
        return ngx_http_streaming_framer_lines(f, p, last, kind);

    default: /* NGX_HTTP_STREAMING_FRAMING_BYTES */
        return ngx_http_streaming_framer_bytes(f, p, last, kind);
    }
}


ngx_uint_t
ngx_http_streaming_framer_finish(ngx_http_streaming_framer_t *f)
{
    ngx_uint_t  kind;

    if (f->error) {
        return NGX_HTTP_STREAMING_FRAMER_ERROR;
    }

    if (f->pending == 0) {
        ngx_http_streaming_framer_reset(f);
        return NGX_HTTP_STREAMING_FRAMER_NONE;
    }

    if (f->framing == NGX_HTTP_STREAMING_FRAMING_LINES) {

        /* a final CR is data: a lone CR does not end a line */

        if (f->pending > f->max) {
            f->error = 1;
            return NGX_HTTP_STREAMING_FRAMER_ERROR;
        }

        kind = NGX_HTTP_STREAMING_FRAMER_CHUNK;

    } else {

        /* sse: an event without its blank line, if it has data or event */

        if (f->in_name) {
            ngx_http_streaming_framer_name(f);
        }

        kind = f->fields ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                         : NGX_HTTP_STREAMING_FRAMER_SKIP;
    }

    f->size = f->pending;
    f->trim = 0;
    f->bom = f->has_bom ? sizeof(ngx_http_streaming_bom) : 0;
    f->ids = f->has_id;

    ngx_http_streaming_framer_reset(f);

    return kind;
}


static u_char *
ngx_http_streaming_framer_sse(ngx_http_streaming_framer_t *f, u_char *p,
    u_char *last, ngx_uint_t *kind)
{
    u_char  *pos, c;
    size_t   size;

    if (f->blank_cr) {
        /* the block ended with a CR: the LF of a CRLF is still its own */

        f->blank_cr = 0;
        pos = (*p == LF) ? p + 1 : p;

        goto done;
    }

    for (pos = p; pos < last; pos++) {

        if (!(f->sol | f->in_name | f->cr | f->start)) {
            /* inside a value: on to the line's end, which memchr() finds */

            pos = ngx_http_streaming_line_end(pos, last);

            if (pos == last) {
                break;
            }
        }

        c = *pos;

        if (f->cr) {
            f->cr = 0;

            if (c == LF) {
                continue;
            }
        }

        if (f->start) {
            if (c == ngx_http_streaming_bom[f->bom_len]) {
                if (++f->bom_len == sizeof(ngx_http_streaming_bom)) {
                    f->start = 0;
                    f->has_bom = 1;
                }

                continue;
            }

            f->start = 0;

            if (f->bom_len) {
                /* not a BOM after all: those bytes began a field name */
                f->sol = 0;
                f->in_name = 1;
                f->name_len = NGX_HTTP_STREAMING_SSE_NAME_LONG;
            }
        }

        if (c == LF || c == CR) {

            if (f->sol) {
                /* a blank line ends the block */

                /*
                 * A CR that ends the buffer may be the first half of a
                 * CRLF: the next byte says, so that the event is stored
                 * with its bytes as sent.  Upstreams write whole events,
                 * so that byte is already on its way.
                 */

                if (c == CR && pos + 1 == last) {
                    f->blank_cr = 1;
                    pos++;
                    break;
                }

                if (c == CR && pos[1] == LF) {
                    pos++;
                }

                pos++;

                goto done;
            }

            if (f->in_name) {
                ngx_http_streaming_framer_name(f);
            }

            f->sol = 1;
            f->cr = (c == CR);

            continue;
        }

        if (f->sol) {
            f->sol = 0;
            f->in_name = 1;
            f->name_len = 0;
        }

        if (!f->in_name) {
            continue;
        }

        if (c == ':') {
            ngx_http_streaming_framer_name(f);

        } else if (f->name_len < sizeof(f->name)) {
            f->name[f->name_len++] = c;

        } else {
            f->name_len = NGX_HTTP_STREAMING_SSE_NAME_LONG;
        }
    }

    size = f->pending + (last - p);

    if (size > f->max) {
        f->error = 1;
        *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
        return p;
    }

    f->pending = size;
    *kind = NGX_HTTP_STREAMING_FRAMER_CONTINUE;

    return last;

done:

    size = f->pending + (pos - p);

    if (size > f->max) {
        f->error = 1;
        *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
        return p;
    }

    *kind = f->fields ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                      : NGX_HTTP_STREAMING_FRAMER_SKIP;

    f->size = size;
    f->trim = 0;
    f->bom = f->has_bom ? sizeof(ngx_http_streaming_bom) : 0;
    f->ids = f->has_id;

    ngx_http_streaming_framer_reset(f);

    return pos;
}


static void
ngx_http_streaming_framer_name(ngx_http_streaming_framer_t *f)
{
    f->in_name = 0;

    if ((f->name_len == 4 && ngx_memcmp(f->name, "data", 4) == 0)
        || (f->name_len == 5 && ngx_memcmp(f->name, "event", 5) == 0))
    {
        f->fields = 1;

    } else if (f->name_len == 2 && f->name[0] == 'i' && f->name[1] == 'd') {
        f->has_id = 1;
    }
}


static u_char *
ngx_http_streaming_framer_lines(ngx_http_streaming_framer_t *f, u_char *p,
    u_char *last, ngx_uint_t *kind)
{
    u_char      *lf;
    size_t       size, data;
    ngx_uint_t   cr;

    lf = ngx_strlchr(p, last, LF);

    if (lf == NULL) {
        /* a CR at the end may yet be the start of a CRLF */

        size = f->pending + (last - p);
        cr = (last[-1] == CR);

        if (size - cr > f->max) {
            f->error = 1;
            *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
            return p;
        }

        f->pending = size;
        f->cr = cr;
        *kind = NGX_HTTP_STREAMING_FRAMER_CONTINUE;

        return last;
    }

    size = f->pending + (lf + 1 - p);
    cr = (lf > p) ? (lf[-1] == CR) : f->cr;
    data = size - 1 - cr;

    if (data > f->max) {
        f->error = 1;
        *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
        return p;
    }

    *kind = data ? NGX_HTTP_STREAMING_FRAMER_CHUNK
                 : NGX_HTTP_STREAMING_FRAMER_SKIP;

    f->size = size;
    f->trim = 1 + cr;
    f->bom = 0;

    ngx_http_streaming_framer_reset(f);

    return lf + 1;
}


static u_char *
ngx_http_streaming_framer_bytes(ngx_http_streaming_framer_t *f, u_char *p,
    u_char *last, ngx_uint_t *kind)
{
    size_t  size;

    size = ngx_min((size_t) (last - p), f->bytes_size);

    if (size > f->max) {
        f->error = 1;
        *kind = NGX_HTTP_STREAMING_FRAMER_ERROR;
        return p;
    }

    f->size = size;
    f->trim = 0;
    f->bom = 0;
    *kind = NGX_HTTP_STREAMING_FRAMER_CHUNK;

    return p + size;
}


static void
ngx_http_streaming_framer_reset(ngx_http_streaming_framer_t *f)
{
    /* the next piece starts at a line start */

    f->pending = 0;
    f->name_len = 0;
    f->start = 0;
    f->has_bom = 0;
    f->sol = 1;
    f->in_name = 0;
    f->fields = 0;
    f->has_id = 0;
    f->cr = 0;
    f->blank_cr = 0;
}


ngx_int_t
ngx_http_streaming_sse_parse(u_char *p, size_t len,
    ngx_http_streaming_sse_event_t *ev)
{
    u_char                         *last;
    size_t                          size;
    ngx_uint_t                      type;
    ngx_http_streaming_sse_line_t   line;

    ngx_memzero(ev, sizeof(ngx_http_streaming_sse_event_t));

    last = p + len;

    ev->stripped_len = len;

    while (p < last) {
        type = ngx_http_streaming_sse_line(p, last, &line);
        p = line.next;

        switch (type) {

        case NGX_HTTP_STREAMING_SSE_DATA:
            size = line.end - line.value;

            if (ev->has_data) {
                size++;
            }

            ev->data_len += size;
            ev->has_data = 1;
            break;

        case NGX_HTTP_STREAMING_SSE_EVENT:
            ev->event.data = line.value;
            ev->event.len = line.end - line.value;
            ev->has_event = 1;
            break;

        case NGX_HTTP_STREAMING_SSE_ID:
            ev->id.data = line.value;
            ev->id.len = line.end - line.value;

            size = line.next - line.start;

            if (ev->nids < NGX_HTTP_STREAMING_SSE_IDS) {
                ev->id_lines[ev->nids].data = line.start;
                ev->id_lines[ev->nids].len = size;
            }

            ev->nids++;
            ev->stripped_len -= size;
            break;

        default:
            break;
        }
    }

    return (ev->has_data || ev->has_event) ? NGX_OK : NGX_DECLINED;
}


u_char *
ngx_http_streaming_sse_data(u_char *p, size_t len, u_char *dst)
{
    u_char                         *last;
    ngx_uint_t                      first;
    ngx_http_streaming_sse_line_t   line;

    last = p + len;

    first = 1;

    while (p < last) {
        if (ngx_http_streaming_sse_line(p, last, &line)
            == NGX_HTTP_STREAMING_SSE_DATA)
        {
            if (!first) {
                *dst++ = LF;
            }

            dst = ngx_cpymem(dst, line.value, line.end - line.value);
            first = 0;
        }

        p = line.next;
    }

    return dst;
}


u_char *
ngx_http_streaming_sse_strip_id(u_char *p, size_t len, u_char *dst)
{
    u_char                         *last;
    ngx_http_streaming_sse_line_t   line;

    last = p + len;

    while (p < last) {
        if (ngx_http_streaming_sse_line(p, last, &line)
            != NGX_HTTP_STREAMING_SSE_ID)
        {
            /* dst may be the event itself: dst never passes p */
            dst = ngx_movemem(dst, line.start, line.next - line.start);
        }

        p = line.next;
    }

    return dst;
}


/* the first CR or LF in [p, last), or last */
static ngx_inline u_char *
ngx_http_streaming_line_end(u_char *p, u_char *last)
{
    u_char  *lf, *cr;

    lf = memchr(p, LF, last - p);

    if (lf == NULL) {
        lf = last;
    }

    cr = memchr(p, CR, lf - p);

    return cr ? cr : lf;
}


static ngx_uint_t
ngx_http_streaming_sse_line(u_char *p, u_char *last,
    ngx_http_streaming_sse_line_t *line)
{
    u_char  *q, *name;
    size_t   n;

    line->start = p;

    q = ngx_http_streaming_line_end(p, last);

    line->end = q;

    if (q < last) {
        if (*q++ == CR && q < last && *q == LF) {
            q++;
        }
    }

    line->next = q;

    if (line->end == p) {
        line->value = p;
        return NGX_HTTP_STREAMING_SSE_BLANK;
    }

    name = ngx_strlchr(p, line->end, ':');

    if (name == NULL) {
        /* a field name alone: its value is empty */
        name = line->end;
        line->value = line->end;

    } else {
        line->value = name + 1;

        if (line->value < line->end && *line->value == ' ') {
            line->value++;
        }
    }

    n = name - p;

    if (n == 4 && ngx_memcmp(p, "data", 4) == 0) {
        return NGX_HTTP_STREAMING_SSE_DATA;
    }

    if (n == 5 && ngx_memcmp(p, "event", 5) == 0) {
        return NGX_HTTP_STREAMING_SSE_EVENT;
    }

    if (n == 2 && p[0] == 'i' && p[1] == 'd') {
        return NGX_HTTP_STREAMING_SSE_ID;
    }

    return NGX_HTTP_STREAMING_SSE_OTHER;
}


ngx_uint_t
ngx_http_streaming_framing_from_type(u_char *type, size_t len)
{
    u_char  *p, *last;

    last = type + len;

    while (type < last && (*type == ' ' || *type == '\t')) {
        type++;
    }

    for (p = type; p < last; p++) {
        if (*p == ';' || *p == ' ' || *p == '\t') {
            break;
        }
    }

    len = p - type;

    if (ngx_http_streaming_framing_type_is(type, len, "text/event-stream")) {
        return NGX_HTTP_STREAMING_FRAMING_SSE;
    }

    if (ngx_http_streaming_framing_type_is(type, len, "application/x-ndjson")
        || ngx_http_streaming_framing_type_is(type, len, "application/jsonl")
        || ngx_http_streaming_framing_type_is(type, len,
                                              "application/x-jsonlines"))
    {
        return NGX_HTTP_STREAMING_FRAMING_LINES;
    }

    return NGX_HTTP_STREAMING_FRAMING_BYTES;
}


static ngx_uint_t
ngx_http_streaming_framing_type_is(u_char *p, size_t len, char *type)
{
    size_t  i;

    /* type is lowercase */

    for (i = 0; i < len; i++) {
        if (type[i] == '\0' || ngx_tolower(p[i]) != (u_char) type[i]) {
            return 0;
        }
    }

    return type[len] == '\0';
}


ngx_int_t
ngx_http_streaming_utf8_valid(u_char *p, size_t len)
{
    u_char      *last, c, lo, hi;
    ngx_uint_t   n;

    last = p + len;

    while (p < last) {
        c = *p++;

        if (c < 0x80) {
            continue;
        }

        /*
         * The ranges of the second byte that exclude overlong forms,
         * surrogates (ED A0-BF) and code points above U+10FFFF.
         */

        lo = 0x80;
        hi = 0xbf;

        if (c < 0xc2) {
            /* a continuation byte, or an overlong two-byte form */
            return NGX_DECLINED;
        }

        if (c < 0xe0) {
            n = 1;

        } else if (c < 0xf0) {
            n = 2;

            if (c == 0xe0) {
                lo = 0xa0;

            } else if (c == 0xed) {
                hi = 0x9f;
            }

        } else if (c < 0xf5) {
            n = 3;

            if (c == 0xf0) {
                lo = 0x90;

            } else if (c == 0xf4) {
                hi = 0x8f;
            }

        } else {
            return NGX_DECLINED;
        }

        if ((size_t) (last - p) < n || *p < lo || *p > hi) {
            return NGX_DECLINED;
        }

        for (p++, n--; n; p++, n--) {
            if ((*p & 0xc0) != 0x80) {
                return NGX_DECLINED;
            }
        }
    }

    return NGX_OK;
}
