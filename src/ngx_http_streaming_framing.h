
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_FRAMING_H_INCLUDED_
#define _NGX_HTTP_STREAMING_FRAMING_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Framing: producer bytes cut into chunks (streaming_framing), SSE event
 * helpers and UTF-8 validation.  A leaf: plain functions over byte ranges
 * that know no request, no store and no wire format, allocate nothing and
 * call no nginx function that needs linking, so that a unit test or a fuzzer
 * can compile this file alone.
 *
 * The framer.  ngx_http_streaming_framer_init() takes a resolved framing
 * (see ngx_http_streaming_framing_from_type(); AUTO falls back to BYTES),
 * bytes_size (0: 16k) and max.  The caller then feeds each input buffer to
 * ngx_http_streaming_framer_scan() until it is used up.  Each call, with
 * p < last, returns the end of the next piece of the buffer, end > p, and
 * says in *kind what [p, end) is:
 *
 *     CONTINUE  the start or the middle of a piece that is not complete;
 *               end is always last.  The caller keeps (copies) the bytes;
 *     CHUNK     the end of a chunk: the chunk is the bytes kept since the
 *               last CHUNK or SKIP, followed by [p, end).  A chunk that
 *               lies within one buffer is [p, end) itself: no copy;
 *     SKIP      the same, but the piece is not a chunk (SSE blocks without
 *               data or event, empty lines): the caller forwards its bytes
 *               but does not number them;
 *     ERROR     the piece grows beyond max: the stream ends with
 *               PAYLOAD_TOO_LARGE.  The return value is p, and every later
 *               call returns ERROR again.
 *
 * After CHUNK and SKIP:
 *
 *     f->size   the whole piece's length: bytes kept plus [p, end);
 *     f->trim   line-end bytes at the end of the piece that are not part of
 *               the chunk: lines framing, 1 for LF, 2 for CRLF (the CR may
 *               be in the bytes kept); 0 in other framings and for a final
 *               line without LF.  The chunk is the first f->size - f->trim
 *               bytes;
 *     f->bom    bytes at the start of the piece that are the stream's UTF-8
 *               BOM: 3 for the first piece of an sse stream that starts with
 *               one, else 0.  Pass the piece to the SSE helpers below
 *               without them.
 *
 * At the end of input, ngx_http_streaming_framer_finish() says what the
 * bytes kept are: NONE (nothing kept), CHUNK (the final chunk: a line
 * without LF, an SSE event without its blank line), SKIP or ERROR; f->size,
 * f->trim and f->bom as above.
 *
 * Every byte fed is in exactly one piece: the pieces, in order, are the
 * input.  The caller's loop:
 *
 *     for (p = b->pos; p < b->last; p = end) {
 *         end = ngx_http_streaming_framer_scan(f, p, b->last, &kind);
 *
 *         switch (kind) {
 *         case CONTINUE: keep [p, end); break;
 *         case CHUNK:    chunk = kept + [p, end), f->size - f->trim bytes;
 *                        drop the kept bytes; break;
 *         case SKIP:     forward kept + [p, end); drop the kept bytes; break;
 *         case ERROR:    end the stream;
 *         }
 *     }
 *
 * max bounds a piece: for sse, all bytes of a block, chunk or not, line
 * ends included; for lines, the line without its line end; for bytes, the
 * chunk.  ERROR comes from the call that scans the first byte beyond max,
 * so the caller never keeps more than max bytes (lines: max + 1, when a CR
 * may yet be the start of a CRLF).  NGX_MAX_SIZE_T_VALUE is no limit.
 *
 * sse: a block is the bytes up to and including the blank line that ends
 * it; line ends are LF, CRLF or CR, mixed at will, and may be split between
 * buffers.  A block with a "data" or "event" field (with or without a
 * colon) is a CHUNK; others (comments, "retry", "id", extra blank lines)
 * are SKIP.  A BOM at the very start of the stream is part of the first
 * piece (f->bom) and not of a field name; anywhere else its bytes are just
 * bytes.  A blank line ended by a CR that is the last byte of the buffer
 * may be the first half of a CRLF: the block ends with the next call, with
 * that LF if the next buffer starts with one (the event is kept as sent),
 * and otherwise with an empty [p, end) (the kept bytes are the block).
 *
 * lines: a line is the bytes up to and including LF (CRLF is the line end,
 * a lone CR is data); an empty line is a SKIP.
 *
 * bytes: every call returns a CHUNK of min(bytes_size, last - p) bytes, so
 * every buffer ends a chunk; nothing is ever kept.  A chunk over max is an
 * ERROR: bytes_size should not exceed max.
 */


typedef enum {
    NGX_HTTP_STREAMING_FRAMING_AUTO = 0,
    NGX_HTTP_STREAMING_FRAMING_SSE,
    NGX_HTTP_STREAMING_FRAMING_LINES,
    NGX_HTTP_STREAMING_FRAMING_BYTES
} ngx_http_streaming_framing_e;


#define NGX_HTTP_STREAMING_FRAMER_NONE        0
#define NGX_HTTP_STREAMING_FRAMER_CONTINUE    1
#define NGX_HTTP_STREAMING_FRAMER_CHUNK       2
#define NGX_HTTP_STREAMING_FRAMER_SKIP        3
#define NGX_HTTP_STREAMING_FRAMER_ERROR       4

#define NGX_HTTP_STREAMING_FRAMING_BYTES_SIZE  16384


typedef struct {
    /* configuration, set by ngx_http_streaming_framer_init() */
    ngx_uint_t      framing;      /* SSE, LINES or BYTES */
    size_t          bytes_size;
    size_t          max;

    /* output of the last CHUNK or SKIP */
    size_t          size;         /* the whole piece */
    size_t          trim;         /* line-end bytes at its end */
    size_t          bom;          /* BOM bytes at its start */
    ngx_uint_t      ids;          /* sse: it has an "id" line */

    /* private */
    size_t          pending;      /* bytes kept by the caller */
    u_char          name[5];      /* sse: start of the field name */
    u_char          bom_len;      /* sse: BOM bytes seen at stream start */

    unsigned        name_len:3;   /* sse: 0-5; 6: longer, or not a field */
    unsigned        start:1;      /* sse: at the very start of the stream */
    unsigned        has_bom:1;    /* sse: the piece starts with the BOM */
    unsigned        sol:1;        /* sse: at the start of a line */
    unsigned        in_name:1;    /* sse: in a field name */
    unsigned        fields:1;     /* sse: the block has data or event */
    unsigned        has_id:1;     /* sse: the block has an id line */
    unsigned        cr:1;         /* the last byte kept is a CR */
    unsigned        blank_cr:1;   /* sse: a blank line's CR ends the
                                     buffer: its LF may follow */
    unsigned        error:1;
} ngx_http_streaming_framer_t;


/*
 * One SSE event (a CHUNK or SKIP block of sse framing, contiguous, without
 * the stream's BOM: see f->bom), as ngx_http_streaming_sse_parse() sees it.
 * Pointers point into the event.  These helpers know no BOM: U+FEFF is part
 * of a field name, as it is mid-stream.
 */

#define NGX_HTTP_STREAMING_SSE_IDS  4

typedef struct {
    ngx_str_t       event;        /* the last "event" value */
    ngx_str_t       id;           /* the last "id" value, if nids */
    size_t          data_len;     /* the data value's length */
    size_t          stripped_len; /* the size of sse_strip_id()'s output */

    ngx_uint_t      nids;         /* "id" lines, may exceed SSE_IDS */

    /* the first "id" lines, each with its line end */
    ngx_str_t       id_lines[NGX_HTTP_STREAMING_SSE_IDS];

    unsigned        has_data:1;
    unsigned        has_event:1;
} ngx_http_streaming_sse_event_t;


void ngx_http_streaming_framer_init(ngx_http_streaming_framer_t *f,
    ngx_uint_t framing, size_t bytes_size, size_t max);
u_char *ngx_http_streaming_framer_scan(ngx_http_streaming_framer_t *f,
    u_char *p, u_char *last, ngx_uint_t *kind);
ngx_uint_t ngx_http_streaming_framer_finish(ngx_http_streaming_framer_t *f);

/*
 * Parses one event: NGX_OK if it has a data or event field (a chunk),
 * NGX_DECLINED if not.  The data value is the values of the "data" lines
 * (one space after the colon dropped; "data" without a colon is empty)
 * joined with LF, as EventSource delivers it.
 */
ngx_int_t ngx_http_streaming_sse_parse(u_char *p, size_t len,
    ngx_http_streaming_sse_event_t *ev);

/* writes the data value (ev->data_len bytes) to dst, returns its end */
u_char *ngx_http_streaming_sse_data(u_char *p, size_t len, u_char *dst);

/*
 * Copies the event without its "id" lines (each with its line end):
 * ev->stripped_len bytes.  Returns the end.  dst may be p: the event is
 * then stripped in place.
 */
u_char *ngx_http_streaming_sse_strip_id(u_char *p, size_t len, u_char *dst);

/*
 * The framing for a Content-Type value: SSE for text/event-stream, LINES
 * for application/x-ndjson, application/jsonl and application/x-jsonlines
 * (case-insensitive, parameters allowed), BYTES otherwise.
 */
ngx_uint_t ngx_http_streaming_framing_from_type(u_char *type, size_t len);

/*
 * Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF):
 * NGX_OK if valid, NGX_DECLINED if not.
 */
ngx_int_t ngx_http_streaming_utf8_valid(u_char *p, size_t len);


#endif /* _NGX_HTTP_STREAMING_FRAMING_H_INCLUDED_ */
