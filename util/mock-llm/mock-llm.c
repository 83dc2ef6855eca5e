/*
 * mock-llm - a mock OpenAI-compatible LLM server for the demo, the test
 * suite and benchmarks of ngx_http_streaming_module.
 *
 * Single process, single thread, non-blocking sockets, one epoll loop and
 * one binary min-heap of per-connection timers.  libc only.
 *
 *   cc -O2 -g -Wall -Wextra -Werror -o build/mock-llm util/mock-llm/mock-llm.c
 *   build/mock-llm [-p PORT] [-l ADDR] [-q]
 *
 * See util/mock-llm/README.md for the endpoints, knobs and /stats fields.
 *
 * Structure of a response
 * -----------------------
 * Every response (including 404s and /stats) is driven by one generator
 * (gen_t) that produces "units": an optional preamble (the role chunk of a
 * chat stream), N content units (tokens, events, lines, byte pieces, or the
 * body of a non-streaming response) and optional trailing units (finish
 * chunk, usage chunk, [DONE]).  produce() turns units into bytes in the
 * connection's output buffer (adding chunked framing), honouring pacing
 * (tps/ttft), split pieces and fault injection; flush() writes the output
 * buffer to the socket.  When a write would block the connection is marked
 * "blocked", EPOLLOUT is enabled and nothing more is generated until the
 * socket drains, so memory per connection stays bounded.
 *
 * Every connection always has EPOLLRDHUP (and EPOLLIN unless its pipelined
 * input buffer is full) registered, so a client that goes away is noticed
 * at once, even while the stream sleeps between tokens.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* limits                                                              */

#define MAX_HEADER        (16 * 1024)          /* request head -> 431 */
#define MAX_BODY          (4 * 1024 * 1024)    /* request body -> 413 */
#define MAX_PIPELINED     (64 * 1024)   /* input buffered while responding */
#define MAX_CONNS         20000
#define MAX_RECS          200           /* stream records kept for /stats */
#define MAX_HDR_KNOBS     32
#define MAX_KNOB_LEN      256
#define MAX_HEADERS       200
#define MID_MAX           64
#define MODEL_MAX         256
#define MAX_TOKENS        10000000ULL
#define MAX_LENGTH_UNITS  1000000ULL    /* units when Content-Length is precomputed */
#define MAX_EVENT_SIZE    (1024 * 1024)
#define MAX_TOTAL         1000000000000ULL
#define MAX_FULL_BODY     (64ULL * 1024 * 1024)
#define MAX_TPS           1000000.0
#define MAX_TTFT_MS       3600000ULL
#define MAX_SNDBUF        (64 * 1024 * 1024)
#define COALESCE_MAX      (1024 * 1024)
#define RUN_BUDGET        64            /* units per wakeup before yielding */
#define EPOLL_EVENTS      512
#define ACCEPT_BURST      256
#define IDLE_US           (600ULL * 1000000)
#define STALL_US          (600ULL * 1000000)
#define LINGER_US         (2ULL * 1000000)
#define LINGER_MAX_BYTES  (64ULL * 1024 * 1024)
#define PIECE_GAP_US      1000ULL       /* split / trickle delay */
#define REBASE_US         100000.0      /* pacing: max catch-up burst */
#define NO_IDX            ((size_t)-1)

#if defined(__GNUC__) || defined(__clang__)
#define FALLTHROUGH __attribute__((fallthrough))
#define PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FALLTHROUGH
#define PRINTF(a, b)
#endif

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static uint64_t g_now;          /* microseconds, CLOCK_MONOTONIC */
static int g_quiet;

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void
die(const char *msg)
{
    fprintf(stderr, "mock-llm: %s: %s\n", msg, strerror(errno));
    exit(1);
}

static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);

    if (q == NULL) {
        fputs("mock-llm: out of memory\n", stderr);
        exit(1);
    }
    return q;
}

/* One log line, written with a single write(2) so lines never interleave. */
static void logmsg(const char *fmt, ...) PRINTF(1, 2);

static void
logmsg(const char *fmt, ...)
{
    char     line[1024];
    va_list  ap;
    int      n;

    if (g_quiet) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t) n > sizeof(line) - 2) {
        n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t) n) < 0) {
        /* nothing sensible to do */
    }
}

static unsigned
ndigits(uint64_t v)
{
    unsigned n = 1;

    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* growable byte buffer */
typedef struct {
    char    *d;
    size_t   len;
    size_t   cap;
} buf_t;

static void
buf_reserve(buf_t *b, size_t extra)
{
    size_t cap;

    if (b->cap - b->len >= extra && b->d != NULL) {
        return;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) {
        cap *= 2;
    }
    b->d = xrealloc(b->d, cap);
    b->cap = cap;
}

static void
buf_add(buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    buf_reserve(b, n);
    memcpy(b->d + b->len, p, n);
    b->len += n;
}

static void
buf_adds(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void
buf_fill(buf_t *b, int ch, size_t n)
{
    if (n == 0) {
        return;
    }
    buf_reserve(b, n);
    memset(b->d + b->len, ch, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *fmt, ...) PRINTF(2, 3);

static void
buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap, aq;
    int     n;

    buf_reserve(b, 128);
    va_start(ap, fmt);
    va_copy(aq, ap);
    n = vsnprintf(b->d + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(aq);
        return;
    }
    if ((size_t) n >= b->cap - b->len) {
        buf_reserve(b, (size_t) n + 1);
        vsnprintf(b->d + b->len, b->cap - b->len, fmt, aq);
    }
    va_end(aq);
    b->len += (size_t) n;
}

static void
buf_free(buf_t *b)
{
    free(b->d);
    b->d = NULL;
    b->len = b->cap = 0;
}

/* drop big allocations between requests so idle connections stay small */
static void
buf_trim(buf_t *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep) {
        buf_free(b);
    }
}

/* JSON string escaping for messages we generate from user input */
static void
buf_json_str(buf_t *b, const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char) s[i];

        if (ch == '"' || ch == '\\') {
            buf_printf(b, "\\%c", ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            buf_printf(b, "\\u%04x", ch);
        } else {
            buf_add(b, &s[i], 1);
        }
    }
}

/* ------------------------------------------------------------------ */
/* data structures                                                     */

enum route {
    R_CHAT, R_MODELS, R_SSE, R_NDJSON, R_BYTES, R_OTHER,
    R_STATS, R_STATS_RESET, R__N
};

static const char *const route_path[R__N] = {
    "/v1/chat/completions", "/v1/models", "/sse", "/ndjson", "/bytes",
    "other", "/stats", "/stats/reset"
};

enum fault {
    F_NONE, F_CLOSE, F_RESET, F_STALL, F_ERROR, F_MALFORMED, F_TRICKLE,
    F_LENGTH, F_SHORTLENGTH, F__N
};

static const char *const fault_name[F__N] = {
    "none", "close", "reset", "stall", "error", "malformed", "trickle",
    "length", "shortlength"
};

/* faults that fire at a point in the stream (after fault_after tokens) */
static int
fault_is_point(int f)
{
    return f == F_CLOSE || f == F_RESET || f == F_STALL || f == F_ERROR
           || f == F_MALFORMED || f == F_SHORTLENGTH;
}

/* faults that kill the connection */
static int
fault_kills(int f)
{
    return f == F_CLOSE || f == F_RESET || f == F_STALL || f == F_SHORTLENGTH;
}

typedef struct {
    uint64_t  tokens;           /* also "events" */
    double    tps;
    uint64_t  ttft;             /* ms */
    uint64_t  size;
    uint64_t  split;
    uint64_t  sndbuf;
    uint64_t  total;
    uint64_t  fault_after;
    int       status;
    int       fault;
    int       crlf, coalesce, chunked, named, ids, multiline, text;
    int       stamp;            /* chat tokens carry their send time */
    int       mid_set;
    char      mid[MID_MAX + 1];
} knobs_t;

/* stream record shown in /stats */
enum { ST_ACTIVE, ST_DONE, ST_CLOSED_EARLY, ST_FAULT };

typedef struct rec rec_t;
struct rec {
    rec_t      *prev, *next;
    int         listed;         /* 0 orphan (after reset), 1 active, 2 ended */
    int         state;
    int         stalled;
    int         blocked;
    int         status;
    int         fault;
    int         fault_fired;
    const char *path;
    char        mid[MID_MAX + 1];
    uint64_t    events, tokens, bytes;
    uint64_t    start_us, last_write_us, end_us;
    unsigned    epoch;
};

typedef struct {
    rec_t   *head, *tail;
    size_t   n;
} rec_list_t;

/* generator */
enum { G_CHAT, G_SSE, G_NDJSON, G_BYTES, G_BODY };
enum { PH_HDR, PH_BODY, PH_TERM, PH_END };
enum { U_NONE, U_PRE, U_CONTENT, U_POST };
enum { FR_CHUNKED, FR_LENGTH, FR_CLOSE };

typedef struct {
    int         kind;
    int         phase;
    int         pre_done;
    int         post;           /* chat: 0 finish, 1 usage, 2 [DONE], 3 end */
    int         skip_rest;      /* after fault=error */
    int         fault_fired;
    uint64_t    idx;            /* next content unit */
    uint64_t    count;          /* number of content units */
    uint64_t    fault_at;
    double      base;           /* due(idx) = base + idx * interval (us) */
    double      interval;
    int         hdr_delayed;    /* headers wait for due(0) (non-streaming) */

    /* chat */
    uint64_t    chat_id;
    long long   created;
    int         include_usage;
    uint64_t    prompt_tokens;
    char        model[MODEL_MAX + 1];
    char        prefix[MODEL_MAX + 160];
    size_t      prefix_len;
    size_t      tok_base;

    /* bytes */
    uint64_t    total;
    uint64_t    piece;

    /* G_BODY: prebuilt body, optionally sent in two halves */
    buf_t       body;
    size_t      half;

    /* response head */
    int         status;
    int         streaming;
    int         framing;
    uint64_t    content_length;
    const char *ctype;
    const char *extra_hdr;
    int         keep_hdr;
} gen_t;

typedef struct {
    char       *raw;            /* copy of the request head, NUL-split */
    const char *method;
    const char *target;
    size_t      path_len;
    const char *query;
    int         minor;
    int         conn_close, conn_keep, expect, chunked;
    int64_t     clen;
    int         nknobs;
    struct {
        const char *name;
        const char *value;
    } knobs[MAX_HDR_KNOBS];
} req_t;

enum { C_READ_HEAD, C_READ_BODY, C_RESPOND, C_LINGER };

typedef struct conn conn_t;
struct conn {
    conn_t     *prev, *next;    /* all connections */
    conn_t     *free_next;
    int         fd;
    int         closed;
    int         phase;
    uint32_t    evmask;
    size_t      heap_idx;
    uint64_t    deadline;
    uint64_t    id;
    unsigned    peer_port;

    /* input */
    buf_t       in;
    size_t      in_pos;
    size_t      scan;
    req_t       req;
    buf_t       body;
    int         cs;
    uint64_t    chunk_left;
    int         chunk_digits;
    size_t      trailer_bytes;
    uint64_t    discarded;

    /* output */
    buf_t       out;
    size_t      out_pos;
    buf_t       ev;
    size_t      ev_pos;
    uint64_t    ev_units, ev_content, out_units, out_content;
    uint64_t    piece_due;
    uint64_t    write_due;
    int         blocked;
    int         stalled;
    int         trickle;
    int         keep;
    int         acct;
    unsigned    epoch;

    knobs_t     k;
    gen_t       g;
    rec_t      *rec;
};

/* ------------------------------------------------------------------ */
/* global state                                                        */

static int         g_ep = -1;
static int         g_lfd = -1;
static int         g_sfd = -1;
static int         g_stop;
static char        g_tag_listen, g_tag_signal;
static int         g_listen_paused;
static uint64_t    g_listen_resume;
static conn_t     *g_conns;
static size_t      g_nconns;
static conn_t     *g_free;
static uint64_t    g_conn_seq;
static uint64_t    g_mid_seq;
static uint64_t    g_chat_seq;
static unsigned    g_epoch;
static rec_list_t  g_active, g_ended;

static struct {
    uint64_t requests;
    uint64_t by_path[R__N];
    uint64_t completed;
    uint64_t early_closes;
    uint64_t faults;
    uint64_t bytes_written;
    uint64_t blocked_writes;
} st;

static conn_t    **g_heap;
static size_t      g_heap_n, g_heap_cap;

/* ------------------------------------------------------------------ */
/* timer heap (one timer per connection)                               */

static void
heap_swap(size_t a, size_t b)
{
    conn_t *t = g_heap[a];

    g_heap[a] = g_heap[b];
    g_heap[b] = t;
    g_heap[a]->heap_idx = a;
    g_heap[b]->heap_idx = b;
}

static size_t
heap_up(size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (g_heap[p]->deadline <= g_heap[i]->deadline) {
            break;
        }
        heap_swap(i, p);
        i = p;
    }
    return i;
}

static void
heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < g_heap_n && g_heap[l]->deadline < g_heap[m]->deadline) {
            m = l;
        }
        if (r < g_heap_n && g_heap[r]->deadline < g_heap[m]->deadline) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(i, m);
        i = m;
    }
}

static void
timer_set(conn_t *c, uint64_t when)
{
    c->deadline = when;
    if (c->heap_idx == NO_IDX) {
        if (g_heap_n == g_heap_cap) {
            g_heap_cap = g_heap_cap ? g_heap_cap * 2 : 1024;
            g_heap = xrealloc(g_heap, g_heap_cap * sizeof(*g_heap));
        }
        g_heap[g_heap_n] = c;
        c->heap_idx = g_heap_n++;
        heap_up(c->heap_idx);
    } else if (heap_up(c->heap_idx) == c->heap_idx) {
        heap_down(c->heap_idx);
    }
}

static void
timer_del(conn_t *c)
{
    size_t i = c->heap_idx;

    if (i == NO_IDX) {
        return;
    }
    c->heap_idx = NO_IDX;
    g_heap_n--;
    if (i != g_heap_n) {
        g_heap[i] = g_heap[g_heap_n];
        g_heap[i]->heap_idx = i;
        if (heap_up(i) == i) {
            heap_down(i);
        }
    }
}

/* ------------------------------------------------------------------ */
/* stream records                                                      */

static void
list_push(rec_list_t *l, rec_t *r)
{
    r->prev = NULL;
    r->next = l->head;
    if (l->head) {
        l->head->prev = r;
    } else {
        l->tail = r;
    }
    l->head = r;
    l->n++;
}

static void
list_remove(rec_list_t *l, rec_t *r)
{
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        l->head = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    } else {
        l->tail = r->prev;
    }
    r->prev = r->next = NULL;
    l->n--;
}

static int
counting(const conn_t *c)
{
    return c->acct && c->epoch == g_epoch;
}

static rec_t *
rec_new(conn_t *c, int route)
{
    rec_t *r = xrealloc(NULL, sizeof(*r));

    memset(r, 0, sizeof(*r));
    r->state = ST_ACTIVE;
    r->path = route_path[route];
    memcpy(r->mid, c->k.mid, sizeof(r->mid));
    r->start_us = g_now;
    r->epoch = g_epoch;
    r->fault = c->k.fault;
    r->listed = 1;
    list_push(&g_active, r);
    return r;
}

static void
rec_end(conn_t *c, int state)
{
    rec_t *r = c->rec;

    if (r == NULL) {
        return;
    }
    c->rec = NULL;
    r->state = state;
    r->end_us = g_now;
    r->blocked = 0;
    r->stalled = 0;
    if (state == ST_DONE && counting(c)) {
        st.completed++;
    }
    if (r->listed != 1) {
        free(r);
        return;
    }
    list_remove(&g_active, r);
    r->listed = 2;
    list_push(&g_ended, r);
    while (g_ended.n > MAX_RECS) {
        rec_t *old = g_ended.tail;

        list_remove(&g_ended, old);
        free(old);
    }
}

static void
stats_reset(void)
{
    rec_t *r;

    memset(&st, 0, sizeof(st));
    g_epoch++;
    while ((r = g_ended.head) != NULL) {
        list_remove(&g_ended, r);
        free(r);
    }
    /* streams still running keep their record but it is no longer listed */
    while ((r = g_active.head) != NULL) {
        list_remove(&g_active, r);
        r->listed = 0;
    }
}

static const char *
rec_state(const rec_t *r)
{
    switch (r->state) {
    case ST_ACTIVE:
        return r->stalled ? "fault" : r->blocked ? "blocked" : "sending";
    case ST_DONE:
        return "done";
    case ST_CLOSED_EARLY:
        return "closed_early";
    default:
        return "fault";
    }
}

static void
rec_json(buf_t *b, const rec_t *r)
{
    uint64_t last = r->last_write_us ? r->last_write_us : r->start_us;

    buf_printf(b, "{\"mid\":\"%s\",\"path\":\"%s\",\"status\":%d,"
               "\"sent_events\":%" PRIu64 ",\"sent_tokens\":%" PRIu64
               ",\"sent_bytes\":%" PRIu64 ",\"state\":\"%s\",\"blocked\":%s,"
               "\"ms_since_last_write\":%" PRIu64 ",\"fault\":",
               r->mid, r->path, r->status, r->events, r->tokens, r->bytes,
               rec_state(r), r->blocked ? "true" : "false",
               (g_now - last) / 1000);
    if (r->fault != F_NONE) {
        buf_printf(b, "\"%s\"", fault_name[r->fault]);
    } else {
        buf_adds(b, "null");
    }
    buf_printf(b, ",\"age_ms\":%" PRIu64 ",\"ms_since_end\":",
               (g_now - r->start_us) / 1000);
    if (r->state == ST_ACTIVE) {
        buf_adds(b, "null}");
    } else {
        buf_printf(b, "%" PRIu64 "}", (g_now - r->end_us) / 1000);
    }
}

static void
build_stats(buf_t *b)
{
    static const int shown[] = { R_CHAT, R_MODELS, R_SSE, R_NDJSON, R_BYTES,
                                 R_OTHER };
    const rec_t *r;
    size_t       i, n = 0;

    buf_printf(b, "{\"requests\":%" PRIu64 ",\"by_path\":{", st.requests);
    for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
        buf_printf(b, "%s\"%s\":%" PRIu64, i ? "," : "", route_path[shown[i]],
                   st.by_path[shown[i]]);
    }
    buf_printf(b, "},\"active\":%zu,\"completed\":%" PRIu64
               ",\"early_closes\":%" PRIu64 ",\"faults\":%" PRIu64
               ",\"bytes_written\":%" PRIu64 ",\"blocked_writes\":%" PRIu64
               ",\"connections\":%zu,\"streams\":[",
               g_active.n, st.completed, st.early_closes, st.faults,
               st.bytes_written, st.blocked_writes, g_nconns);
    for (r = g_active.head; r && n < MAX_RECS; r = r->next, n++) {
        if (n) {
            buf_adds(b, ",");
        }
        rec_json(b, r);
    }
    for (r = g_ended.head; r && n < MAX_RECS; r = r->next, n++) {
        if (n) {
            buf_adds(b, ",");
        }
        rec_json(b, r);
    }
    buf_adds(b, "]}\n");
}

/* ------------------------------------------------------------------ */
/* connections: epoll interest, closing                                */

static void
update_events(conn_t *c)
{
    uint32_t            m = EPOLLRDHUP;
    struct epoll_event  ev;

    if (c->closed) {
        return;
    }
    if (c->phase != C_RESPOND || c->in.len - c->in_pos < MAX_PIPELINED) {
        m |= EPOLLIN;
    }
    if (c->blocked) {
        m |= EPOLLOUT;
    }
    if (m == c->evmask) {
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = m;
    ev.data.ptr = c;
    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) {
        c->evmask = m;
    }
}

static void
req_free(req_t *r)
{
    free(r->raw);
    memset(r, 0, sizeof(*r));
    r->clen = -1;
}

static void
gen_free(gen_t *g)
{
    buf_free(&g->body);
}

static void
close_conn(conn_t *c)
{
    if (c->closed) {
        return;
    }
    if (c->rec) {
        rec_end(c, ST_FAULT);
    }
    timer_del(c);
    close(c->fd);
    c->fd = -1;
    c->closed = 1;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        g_conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    g_nconns--;
    c->free_next = g_free;
    g_free = c;
}

static void
free_closed(void)
{
    conn_t *c;

    while ((c = g_free) != NULL) {
        g_free = c->free_next;
        req_free(&c->req);
        gen_free(&c->g);
        buf_free(&c->in);
        buf_free(&c->body);
        buf_free(&c->out);
        buf_free(&c->ev);
        free(c);
    }
}

/* The client went away (EOF, RDHUP, HUP, ERR, EPIPE, ECONNRESET). */
static void
conn_gone(conn_t *c)
{
    rec_t *r = c->rec;

    if (r != NULL) {
        logmsg("client closed early mid=%s after %" PRIu64 " events",
               r->mid, r->events);
        if (counting(c)) {
            st.early_closes++;
        }
        rec_end(c, ST_CLOSED_EARLY);
    }
    close_conn(c);
}

/* Half-close our side and wait (bounded) for the client to close, so that
 * unread input never turns our FIN into an RST. */
static void
begin_linger(conn_t *c)
{
    rec_end(c, c->g.fault_fired ? ST_FAULT : ST_DONE);
    c->phase = C_LINGER;
    c->blocked = 0;
    c->discarded = 0;
    c->in.len = c->in_pos = 0;
    shutdown(c->fd, SHUT_WR);
    timer_set(c, g_now + LINGER_US);
    update_events(c);
}

static void
linger_read(conn_t *c)
{
    char    tmp[16384];
    int     i;

    for (i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);

        if (n > 0) {
            c->discarded += (uint64_t) n;
            if (c->discarded > LINGER_MAX_BYTES) {
                close_conn(c);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK
                      || errno == EINTR)) {
            return;
        }
        close_conn(c);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* output                                                              */

enum { FL_DONE, FL_BLOCKED, FL_WAIT, FL_GONE };

static void
account_write(conn_t *c, size_t n)
{
    if (counting(c)) {
        st.bytes_written += n;
    }
    if (c->rec) {
        c->rec->bytes += n;
        c->rec->last_write_us = g_now;
    }
}

static void
set_blocked(conn_t *c, int on)
{
    if (c->blocked == on) {
        return;
    }
    c->blocked = on;
    if (on && counting(c)) {
        st.blocked_writes++;
    }
    if (c->rec) {
        c->rec->blocked = on;
    }
    update_events(c);
}

static int
flush(conn_t *c)
{
    while (c->out_pos < c->out.len) {
        size_t   n = c->out.len - c->out_pos;
        ssize_t  w;

        if (c->trickle) {
            if (g_now < c->write_due) {
                timer_set(c, c->write_due);
                return FL_WAIT;
            }
            n = 1;
        }
        w = send(c->fd, c->out.d + c->out_pos, n, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_pos += (size_t) w;
            account_write(c, (size_t) w);
            set_blocked(c, 0);
            if (c->trickle) {
                c->write_due = g_now + PIECE_GAP_US;
            }
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_blocked(c, 1);
            return FL_BLOCKED;
        }
        conn_gone(c);
        return FL_GONE;
    }
    c->out.len = c->out_pos = 0;
    if (c->rec) {
        c->rec->events += c->out_units;
        c->rec->tokens += c->out_content;
    }
    c->out_units = c->out_content = 0;
    set_blocked(c, 0);
    return FL_DONE;
}

/* Append body bytes to the output buffer with the response's framing. */
static void
frame(conn_t *c, const char *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (c->g.framing == FR_CHUNKED) {
        buf_printf(&c->out, "%zx\r\n", n);
        buf_add(&c->out, p, n);
        buf_add(&c->out, "\r\n", 2);
    } else {
        buf_add(&c->out, p, n);
    }
}

static const char *
reason(int code)
{
    switch (code) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Site Overloaded";
    default:  return "Status";
    }
}

static void
write_head(conn_t *c)
{
    gen_t *g = &c->g;

    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nServer: mock-llm\r\n", g->status,
               reason(g->status));
    if (g->ctype) {
        buf_printf(&c->out, "Content-Type: %s\r\n", g->ctype);
    }
    if (g->streaming) {
        buf_adds(&c->out, "Cache-Control: no-cache\r\n");
    }
    if (g->framing == FR_CHUNKED) {
        buf_adds(&c->out, "Transfer-Encoding: chunked\r\n");
    } else if (g->framing == FR_LENGTH && g->status != 204) {
        buf_printf(&c->out, "Content-Length: %" PRIu64 "\r\n",
                   g->content_length);
    }
    buf_printf(&c->out, "Connection: %s\r\n",
               g->keep_hdr ? "keep-alive" : "close");
    if (c->rec) {
        buf_printf(&c->out, "X-Mock-Mid: %s\r\n", c->rec->mid);
    }
    if (g->extra_hdr) {
        buf_adds(&c->out, g->extra_hdr);
    }
    buf_adds(&c->out, "\r\n");
}

/* ------------------------------------------------------------------ */
/* unit generators                                                     */

static const char CHAT_TOK_A[] =
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok";
static const char CHAT_TOK_B[] =
    " \"},\"finish_reason\":null}]}";

static const char *
eol(const knobs_t *k)
{
    return k->crlf ? "\r\n" : "\n";
}

/* number of 'x' characters inserted into chat token i; `extra` counts the
 * "@<usec>" stamp, if any */
static uint64_t
tok_pad(const knobs_t *k, const gen_t *g, uint64_t i, uint64_t extra)
{
    uint64_t natural = g->tok_base + ndigits(i) + extra;

    return k->size > natural ? k->size - natural : 0;
}

static void
chat_prefix(const knobs_t *k, gen_t *g)
{
    int n = snprintf(g->prefix, sizeof(g->prefix),
                     "data: {\"id\":\"chatcmpl-%" PRIu64 "\",\"object\":"
                     "\"chat.completion.chunk\",\"created\":%lld,"
                     "\"model\":\"%s\",", g->chat_id, g->created, g->model);

    g->prefix_len = n > 0 ? (size_t) n : 0;
    g->tok_base = g->prefix_len + strlen(CHAT_TOK_A) + strlen(CHAT_TOK_B)
                  + 2 * strlen(eol(k));
}

static void
chat_event(const knobs_t *k, const gen_t *g, buf_t *b, const char *choices)
{
    buf_add(b, g->prefix, g->prefix_len);
    buf_adds(b, choices);
    buf_adds(b, eol(k));
    buf_adds(b, eol(k));
}

static void
gen_chat_token(const knobs_t *k, const gen_t *g, buf_t *b, uint64_t i)
{
    uint64_t extra = 0, us;

    buf_add(b, g->prefix, g->prefix_len);
    buf_adds(b, CHAT_TOK_A);
    buf_printf(b, "%" PRIu64, i);
    if (k->stamp) {
        /* stamp=1: the token is generated right before it is written (a
         * paced or blocked stream generates nothing early), so read the
         * clock now rather than using the loop's cached g_now */
        us = mono_us();
        buf_printf(b, "@%" PRIu64, us);
        extra = 1 + ndigits(us);
    }
    buf_fill(b, 'x', (size_t) tok_pad(k, g, i, extra));
    buf_adds(b, CHAT_TOK_B);
    buf_adds(b, eol(k));
    buf_adds(b, eol(k));
}

/* pad a JSON object being built in b (started at `start`) up to `size`
 * bytes including `suffix_len` bytes still to come, with a "pad" member */
static void
json_pad(const knobs_t *k, buf_t *b, size_t start, size_t suffix_len)
{
    size_t natural = b->len - start + suffix_len;

    if (k->size > natural + 9) {
        buf_adds(b, ",\"pad\":\"");
        buf_fill(b, 'x', (size_t) (k->size - natural - 9));
        buf_adds(b, "\"");
    }
}

static void
gen_sse_event(const knobs_t *k, buf_t *b, uint64_t i)
{
    const char *e = eol(k);
    size_t      el = strlen(e), start = b->len;

    if (k->named) {
        buf_printf(b, "event: tick%s", e);
    }
    if (k->ids) {
        buf_printf(b, "id: %" PRIu64 "%s", i, e);
    }
    if (k->multiline) {
        buf_printf(b, "data: line-a-%" PRIu64 "%sdata: line-b-%" PRIu64,
                   i, e, i);
        if (k->size > b->len - start + 2 * el) {
            buf_fill(b, 'x', (size_t) (k->size - (b->len - start + 2 * el)));
        }
        buf_adds(b, e);
    } else {
        buf_printf(b, "data: {\"n\":%" PRIu64, i);
        json_pad(k, b, start, 1 + 2 * el);
        buf_adds(b, "}");
        buf_adds(b, e);
    }
    buf_adds(b, e);
}

static void
gen_ndjson_line(const knobs_t *k, buf_t *b, uint64_t i)
{
    size_t start = b->len;

    buf_printf(b, "{\"n\":%" PRIu64, i);
    json_pad(k, b, start, 1 + strlen(eol(k)));
    buf_adds(b, "}");
    buf_adds(b, eol(k));
}

/* The /bytes pattern is periodic (256 for binary, 95 for text), so pieces
 * are copied out of a precomputed table instead of computed per byte. */
#define PAT_SPAN 65536
static char g_pat_bin[PAT_SPAN + 256];
static char g_pat_txt[PAT_SPAN + 95];

static void
init_patterns(void)
{
    size_t j;

    for (j = 0; j < sizeof(g_pat_bin); j++) {
        g_pat_bin[j] = (char) (unsigned char) ((j * 7 + 3) & 0xff);
    }
    for (j = 0; j < sizeof(g_pat_txt); j++) {
        g_pat_txt[j] = (char) (32 + (j * 7 + 3) % 95);
    }
}

static void
gen_bytes_piece(const knobs_t *k, const gen_t *g, buf_t *b, uint64_t i)
{
    const char *pat = k->text ? g_pat_txt : g_pat_bin;
    uint64_t    period = k->text ? 95 : 256;
    uint64_t    off = i * g->piece, n = g->total - off;

    if (n > g->piece) {
        n = g->piece;
    }
    buf_reserve(b, (size_t) n);
    while (n > 0) {
        size_t part = n > PAT_SPAN ? PAT_SPAN : (size_t) n;

        memcpy(b->d + b->len, pat + off % period, part);
        b->len += part;
        off += part;
        n -= part;
    }
}

static int
peek_unit(const gen_t *g)
{
    if (g->skip_rest) {
        return U_NONE;
    }
    if (g->kind == G_CHAT && !g->pre_done) {
        return U_PRE;
    }
    if (g->idx < g->count) {
        return U_CONTENT;
    }
    if (g->kind == G_CHAT && g->post < 3) {
        return U_POST;
    }
    return U_NONE;
}

/* Append the next unit to b and advance; returns its type. */
static int
gen_unit(const knobs_t *k, gen_t *g, buf_t *b)
{
    int t = peek_unit(g);

    switch (t) {
    case U_PRE:
        chat_event(k, g, b, "\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                   "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}");
        g->pre_done = 1;
        break;

    case U_CONTENT:
        switch (g->kind) {
        case G_CHAT:
            gen_chat_token(k, g, b, g->idx);
            break;
        case G_SSE:
            gen_sse_event(k, b, g->idx);
            break;
        case G_NDJSON:
            gen_ndjson_line(k, b, g->idx);
            break;
        case G_BYTES:
            gen_bytes_piece(k, g, b, g->idx);
            break;
        default:
            if (g->half == 0) {
                buf_add(b, g->body.d, g->body.len);
            } else if (g->idx == 0) {
                buf_add(b, g->body.d, g->half);
            } else {
                buf_add(b, g->body.d + g->half, g->body.len - g->half);
            }
            break;
        }
        g->idx++;
        break;

    case U_POST:
        if (g->post == 0) {
            chat_event(k, g, b, "\"choices\":[{\"index\":0,\"delta\":{},"
                       "\"finish_reason\":\"stop\"}]}");
            g->post = g->include_usage ? 1 : 2;
        } else if (g->post == 1) {
            buf_add(b, g->prefix, g->prefix_len);
            buf_printf(b, "\"choices\":[],\"usage\":{\"prompt_tokens\":%"
                       PRIu64 ",\"completion_tokens\":%" PRIu64
                       ",\"total_tokens\":%" PRIu64 "}}%s%s",
                       g->prompt_tokens, g->count,
                       g->prompt_tokens + g->count, eol(k), eol(k));
            g->post = 2;
        } else {
            buf_printf(b, "data: [DONE]%s%s", eol(k), eol(k));
            g->post = 3;
        }
        break;
    }
    return t;
}

static void
gen_error_unit(const knobs_t *k, const gen_t *g, buf_t *b)
{
    static const char msg[] =
        "{\"error\":{\"message\":\"mock failure\",\"type\":\"server_error\"}}";

    if (g->kind == G_NDJSON) {
        buf_printf(b, "%s%s", msg, eol(k));
    } else {
        buf_printf(b, "event: error%sdata: %s%s%s", eol(k), msg, eol(k),
                   eol(k));
    }
}

static void
gen_malformed_unit(const knobs_t *k, const gen_t *g, buf_t *b)
{
    const char *e = eol(k);

    if (g->kind == G_NDJSON) {
        buf_printf(b, "garbage line that is not json%s{\"n\":%s", e, e);
    } else {
        /* a line with no "field:" syntax, then an event whose data is
         * invalid JSON */
        buf_printf(b, "garbage line without a field name%s"
                   "data: {\"choices\":[{\"delta\":{\"content\":\"broken%s%s",
                   e, e, e);
    }
    buf_add(b, "\xff\xfe", 2);
    buf_printf(b, "%s%s", e, g->kind == G_NDJSON ? "" : e);
}

/* Total body length of a streaming response (for Content-Length modes). */
static uint64_t
dry_run_length(const conn_t *c)
{
    gen_t     g = c->g;
    buf_t     tmp = { NULL, 0, 0 };
    uint64_t  total = 0;

    if (g.kind == G_BYTES) {
        return g.total;
    }
    while (peek_unit(&g) != U_NONE) {
        tmp.len = 0;
        gen_unit(&c->k, &g, &tmp);
        total += tmp.len;
    }
    buf_free(&tmp);
    return total;
}

/* ------------------------------------------------------------------ */
/* producing the response                                              */

enum { P_MORE, P_WAIT, P_END, P_GONE, P_FLUSH };

static uint64_t
due_now(gen_t *g)
{
    double d = g->base + (double) g->idx * g->interval;

    /* after a long stall (blocked socket, slow machine) do not burst out
     * everything that was missed; continue the schedule from now */
    if (g->interval > 0 && (double) g_now > d + REBASE_US) {
        g->base = (double) g_now - (double) g->idx * g->interval;
        d = (double) g_now;
    }
    return d <= 0 ? 0 : (uint64_t) d;
}

static void
move_ev_units(conn_t *c)
{
    c->out_units += c->ev_units;
    c->out_content += c->ev_content;
    c->ev_units = c->ev_content = 0;
    c->ev.len = c->ev_pos = 0;
}

/* Move the staged unit bytes (ev) into the output, split if asked. */
static int
emit_ev(conn_t *c)
{
    size_t n = c->ev.len - c->ev_pos;

    if (c->k.split) {
        if (g_now < c->piece_due) {
            timer_set(c, c->piece_due);
            return P_WAIT;
        }
        if (n > c->k.split) {
            n = (size_t) c->k.split;
        }
        c->piece_due = g_now + PIECE_GAP_US;
    }
    frame(c, c->ev.d + c->ev_pos, n);
    c->ev_pos += n;
    if (c->ev_pos == c->ev.len) {
        move_ev_units(c);
        if (c->ev.cap > 4 * COALESCE_MAX) {
            buf_free(&c->ev);
        }
    }
    return P_MORE;
}

static int
fire_fault(conn_t *c)
{
    gen_t    *g = &c->g;
    uint64_t  sent = c->rec ? c->rec->tokens : 0;

    g->fault_fired = 1;
    if (c->rec) {
        c->rec->fault_fired = 1;
    }
    if (counting(c)) {
        st.faults++;
    }
    logmsg("fault injected: %s mid=%s after %" PRIu64 " tokens",
           fault_name[c->k.fault], c->rec ? c->rec->mid : "-", sent);

    switch (c->k.fault) {
    case F_CLOSE:
    case F_SHORTLENGTH:
        begin_linger(c);
        return P_GONE;

    case F_RESET: {
        struct linger lg;

        lg.l_onoff = 1;
        lg.l_linger = 0;
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        rec_end(c, ST_FAULT);
        close_conn(c);
        return P_GONE;
    }

    case F_STALL:
        c->stalled = 1;
        if (c->rec) {
            c->rec->stalled = 1;
        }
        timer_set(c, g_now + STALL_US);
        return P_WAIT;

    case F_ERROR:
        gen_error_unit(&c->k, g, &c->ev);
        c->ev_units++;
        g->skip_rest = 1;
        return P_MORE;

    default: /* F_MALFORMED */
        gen_malformed_unit(&c->k, g, &c->ev);
        c->ev_units++;
        return P_MORE;
    }
}

/*
 * Put the next piece of the response into c->out (which is empty unless
 * coalescing).  Returns P_MORE (something was appended), P_FLUSH (flush the
 * output before going on), P_WAIT (a timer is set), P_END (response fully
 * produced) or P_GONE (the connection was closed or handed to linger).
 */
static int
produce(conn_t *c)
{
    gen_t    *g = &c->g;
    knobs_t  *k = &c->k;
    uint64_t  due;
    int       t, r;

    if (c->ev_pos < c->ev.len) {
        return emit_ev(c);
    }

    switch (g->phase) {
    case PH_HDR:
        if (g->hdr_delayed) {
            due = due_now(g);
            if (g_now < due) {
                timer_set(c, due);
                return P_WAIT;
            }
        }
        write_head(c);
        g->phase = PH_BODY;
        if (!k->coalesce) {
            return P_MORE;
        }
        FALLTHROUGH;

    case PH_BODY:
        for (;;) {
            t = peek_unit(g);
            if (t != U_PRE && fault_is_point(k->fault) && !g->fault_fired
                && g->idx >= g->fault_at)
            {
                if (c->ev.len) {
                    break;
                }
                if (c->out_pos < c->out.len) {
                    return P_FLUSH;
                }
                due = due_now(g);
                if (g_now < due) {
                    timer_set(c, due);
                    return P_WAIT;
                }
                r = fire_fault(c);
                if (r != P_MORE) {
                    return r;
                }
                if (!k->coalesce) {
                    break;
                }
                continue;
            }
            if (t == U_NONE) {
                g->phase = PH_TERM;
                break;
            }
            if (t == U_CONTENT) {
                due = due_now(g);
                if (g_now < due) {
                    if (c->ev.len) {
                        break;
                    }
                    timer_set(c, due);
                    return P_WAIT;
                }
            }
            gen_unit(k, g, &c->ev);
            c->ev_units++;
            if (t == U_CONTENT) {
                c->ev_content++;
            }
            if (!k->coalesce || c->ev.len >= COALESCE_MAX) {
                break;
            }
        }
        if (c->ev.len) {
            return emit_ev(c);
        }
        if (g->phase != PH_TERM) {
            return P_FLUSH;
        }
        FALLTHROUGH;

    case PH_TERM:
        g->phase = PH_END;
        if (g->framing == FR_CHUNKED) {
            buf_add(&c->out, "0\r\n\r\n", 5);
            return P_MORE;
        }
        FALLTHROUGH;

    default:
        return P_END;
    }
}

/* coalesce=1: keep producing into the output buffer until something has
 * to wait, so that everything ready goes out in one write */
static int
produce_coalesced(conn_t *c)
{
    int r;

    for (;;) {
        r = produce(c);
        if (r == P_GONE) {
            return r;
        }
        if (r != P_MORE || c->out.len - c->out_pos >= COALESCE_MAX) {
            break;
        }
    }
    if (c->out_pos < c->out.len) {
        return P_MORE;
    }
    return r == P_FLUSH ? P_MORE : r;
}

static int process_input(conn_t *c);
static void response_done(conn_t *c);

/* Drive the current response as far as possible without blocking. */
static void
run(conn_t *c)
{
    int budget, r;

    for (budget = RUN_BUDGET; budget > 0; budget--) {
        if (c->closed || c->phase != C_RESPOND || c->stalled) {
            return;
        }
        if (c->out_pos < c->out.len) {
            if (flush(c) != FL_DONE) {
                return;
            }
        }
        r = c->k.coalesce ? produce_coalesced(c) : produce(c);
        switch (r) {
        case P_MORE:
        case P_FLUSH:
            continue;
        case P_END:
            response_done(c);
            if (c->closed || c->phase != C_READ_HEAD) {
                return;
            }
            if (process_input(c) <= 0) {
                return;
            }
            continue;       /* a pipelined request started a response */
        default:
            return;
        }
    }
    if (!c->closed && c->phase == C_RESPOND) {
        timer_set(c, g_now + 1);        /* yield to other connections */
    }
}

/* ------------------------------------------------------------------ */
/* starting responses                                                  */

static void
log_request(const conn_t *c, int status, const char *extra)
{
    const req_t *r = &c->req;
    size_t       tl;

    if (g_quiet) {
        return;
    }
    tl = r->target ? strlen(r->target) : 1;
    if (tl > 300) {
        tl = 300;
    }
    logmsg("%s %.*s -> %d%s%s", r->method ? r->method : "-", (int) tl,
           r->target ? r->target : "-", status, extra ? " " : "",
           extra ? extra : "");
}

static void
count_request(conn_t *c, int route)
{
    c->epoch = g_epoch;
    c->acct = route != R_STATS && route != R_STATS_RESET;
    if (c->acct) {
        st.requests++;
        st.by_path[route]++;
    }
}

static void
begin_respond(conn_t *c)
{
    c->phase = C_RESPOND;
    c->out_units = c->out_content = c->ev_units = c->ev_content = 0;
    c->piece_due = c->write_due = 0;
    c->g.phase = PH_HDR;
    c->g.keep_hdr = c->keep;
    if (fault_kills(c->k.fault)) {
        c->keep = 0;        /* advertise keep-alive, but die anyway */
    }
    update_events(c);
}

/* A response with a prebuilt body (errors, models, stats, non-streaming
 * chat).  The body is taken over from *body. */
static void
start_body(conn_t *c, int status, const char *ctype, buf_t *body,
           const char *extra_hdr, int do_close)
{
    gen_t *g = &c->g;

    gen_free(g);
    memset(g, 0, sizeof(*g));
    g->kind = G_BODY;
    g->status = status;
    g->ctype = ctype;
    g->extra_hdr = extra_hdr;
    g->body = *body;
    memset(body, 0, sizeof(*body));
    if (status == 204 || status == 304) {
        g->body.len = 0;
    }
    g->count = g->body.len ? 1 : 0;
    if (c->req.method && !strcmp(c->req.method, "HEAD")) {
        g->count = 0;       /* headers only; Content-Length still set */
    }
    g->framing = FR_LENGTH;
    g->content_length = g->body.len;
    g->base = (double) g_now;
    if (do_close) {
        c->keep = 0;
    }
    begin_respond(c);
}

static void
json_error(buf_t *b, int code, const char *type, const char *msg)
{
    buf_adds(b, "{\"error\":{\"message\":\"");
    buf_json_str(b, msg, strlen(msg));
    buf_printf(b, "\",\"type\":\"%s\",\"code\":%d}}\n", type, code);
}

static void
start_error(conn_t *c, int status, const char *msg, int do_close,
            const char *extra_hdr)
{
    buf_t b = { NULL, 0, 0 };

    json_error(&b, status, "invalid_request_error", msg);
    c->k.fault = F_NONE;
    c->k.split = 0;
    c->k.coalesce = 0;
    c->trickle = 0;
    log_request(c, status, msg);
    start_body(c, status, "application/json", &b, extra_hdr, do_close);
}

/* errors found before the request could be routed (400, 413, 431) */
static void
start_early_error(conn_t *c, int status, const char *msg)
{
    count_request(c, R_OTHER);
    memset(&c->k, 0, sizeof(c->k));
    start_error(c, status, msg, 1, NULL);
}

/* ------------------------------------------------------------------ */
/* knobs                                                               */

static void
knobs_default(knobs_t *k, int route)
{
    memset(k, 0, sizeof(*k));
    k->tokens = 20;
    k->chunked = 1;
    k->fault_after = 3;
    k->total = 65536;
    if (route == R_BYTES) {
        k->size = 1024;
    }
}

static int
parse_uint(const char *v, uint64_t max, uint64_t *out)
{
    uint64_t x = 0;

    if (*v == '\0') {
        return -1;
    }
    for (; *v; v++) {
        uint64_t d;

        if (*v < '0' || *v > '9') {
            return -1;
        }
        d = (uint64_t) (*v - '0');
        if (x > max / 10) {
            return -1;
        }
        x *= 10;
        if (d > max - x) {
            return -1;
        }
        x += d;
    }
    *out = x;
    return 0;
}

static int
parse_double(const char *v, double max, double *out)
{
    double x = 0, f = 0.1;
    int    nd = 0;

    while (*v >= '0' && *v <= '9') {
        x = x * 10 + (*v++ - '0');
        nd++;
        if (x > max) {
            return -1;
        }
    }
    if (*v == '.') {
        v++;
        while (*v >= '0' && *v <= '9') {
            x += (*v++ - '0') * f;
            f /= 10;
            nd++;
        }
    }
    if (*v != '\0' || nd == 0 || x > max) {
        return -1;
    }
    *out = x;
    return 0;
}

static int
parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes")
        || !strcasecmp(v, "on"))
    {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "0") || !strcasecmp(v, "false") || !strcasecmp(v, "no")
        || !strcasecmp(v, "off"))
    {
        *out = 0;
        return 0;
    }
    return -1;
}

static int
valid_mid(const char *v)
{
    size_t n = strlen(v), i;

    if (n == 0 || n > MID_MAX) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!isalnum((unsigned char) v[i]) && !strchr("._:-/@+", v[i])) {
            return 0;
        }
    }
    return 1;
}

/* name is already lower-case with '-' mapped to '_' */
static int
set_knob(knobs_t *k, const char *name, const char *v, char *err, size_t errsz)
{
    uint64_t u;
    int      b, f;

#define BAD() do { \
        snprintf(err, errsz, "invalid value for knob %s: '%.64s'", name, v); \
        return -1; \
    } while (0)

    if (!strcmp(name, "tokens") || !strcmp(name, "events")) {
        if (parse_uint(v, MAX_TOKENS, &k->tokens)) BAD();
    } else if (!strcmp(name, "tps")) {
        if (parse_double(v, MAX_TPS, &k->tps)) BAD();
    } else if (!strcmp(name, "ttft")) {
        if (parse_uint(v, MAX_TTFT_MS, &k->ttft)) BAD();
    } else if (!strcmp(name, "size")) {
        if (parse_uint(v, MAX_EVENT_SIZE, &k->size)) BAD();
    } else if (!strcmp(name, "mid")) {
        if (!valid_mid(v)) BAD();
        snprintf(k->mid, sizeof(k->mid), "%s", v);
        k->mid_set = 1;
    } else if (!strcmp(name, "crlf")) {
        if (parse_bool(v, &k->crlf)) BAD();
    } else if (!strcmp(name, "split")) {
        if (parse_uint(v, MAX_EVENT_SIZE, &k->split)) BAD();
    } else if (!strcmp(name, "coalesce")) {
        if (parse_bool(v, &k->coalesce)) BAD();
    } else if (!strcmp(name, "sndbuf")) {
        if (parse_uint(v, MAX_SNDBUF, &k->sndbuf)) BAD();
    } else if (!strcmp(name, "chunked")) {
        if (parse_bool(v, &k->chunked)) BAD();
    } else if (!strcmp(name, "status")) {
        if (parse_uint(v, 599, &u) || u < 200) BAD();
        k->status = (int) u;
    } else if (!strcmp(name, "fault")) {
        for (f = 0; f < F__N; f++) {
            if (!strcasecmp(v, fault_name[f])) {
                break;
            }
        }
        if (f == F__N) BAD();
        k->fault = f;
    } else if (!strcmp(name, "fault_after")) {
        if (parse_uint(v, MAX_TOKENS, &k->fault_after)) BAD();
    } else if (!strcmp(name, "named")) {
        if (parse_bool(v, &k->named)) BAD();
    } else if (!strcmp(name, "ids")) {
        if (parse_bool(v, &k->ids)) BAD();
    } else if (!strcmp(name, "multiline")) {
        if (parse_bool(v, &b)) BAD();
        k->multiline = b;
    } else if (!strcmp(name, "total")) {
        if (parse_uint(v, MAX_TOTAL, &k->total)) BAD();
    } else if (!strcmp(name, "text")) {
        if (parse_bool(v, &k->text)) BAD();
    } else if (!strcmp(name, "stamp")) {
        if (parse_bool(v, &k->stamp)) BAD();
    } else {
        snprintf(err, errsz, "unknown knob: '%.64s'", name);
        return -1;
    }
    return 0;
#undef BAD
}

static void
knob_name(char *dst, size_t dstsz, const char *src, size_t n)
{
    size_t i;

    if (n >= dstsz) {
        n = dstsz - 1;
    }
    for (i = 0; i < n; i++) {
        char ch = (char) tolower((unsigned char) src[i]);

        dst[i] = ch == '-' ? '_' : ch;
    }
    dst[n] = '\0';
}

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* percent-decode s[0..n) into dst; -1 if too long */
static int
url_decode(char *dst, size_t dstsz, const char *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        int ch = (unsigned char) s[i];

        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0
                   && hexval(s[i + 2]) >= 0)
        {
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (o + 1 >= dstsz) {
            return -1;
        }
        dst[o++] = (char) ch;
    }
    dst[o] = '\0';
    return 0;
}

/* headers first, then the query string (so the query string wins) */
static int
apply_knobs(conn_t *c, char *err, size_t errsz)
{
    req_t      *r = &c->req;
    const char *q, *amp, *eq;
    char        name[64], raw[MAX_KNOB_LEN], val[MAX_KNOB_LEN];
    int         i;

    for (i = 0; i < r->nknobs; i++) {
        knob_name(name, sizeof(name), r->knobs[i].name,
                  strlen(r->knobs[i].name));
        if (set_knob(&c->k, name, r->knobs[i].value, err, errsz)) {
            return -1;
        }
    }
    for (q = r->query; q && *q; q = *amp ? amp + 1 : amp) {
        size_t len, nlen;

        amp = strchr(q, '&');
        if (amp == NULL) {
            amp = q + strlen(q);
        }
        len = (size_t) (amp - q);
        if (len == 0) {
            continue;
        }
        eq = memchr(q, '=', len);
        nlen = eq ? (size_t) (eq - q) : len;
        if (url_decode(raw, sizeof(raw), q, nlen)) {
            snprintf(err, errsz, "query parameter name too long");
            return -1;
        }
        knob_name(name, sizeof(name), raw, strlen(raw));
        if (eq) {
            if (url_decode(val, sizeof(val), eq + 1, len - nlen - 1)) {
                snprintf(err, errsz, "value of %.64s too long", name);
                return -1;
            }
        } else {
            snprintf(val, sizeof(val), "1");
        }
        if (set_knob(&c->k, name, val, err, errsz)) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* a tiny tolerant JSON scanner for chat requests                      */

typedef struct {
    const char *p, *e;
    int         depth;
} jp_t;

typedef struct {
    int       stream;
    int       include_usage;
    uint64_t  words;
    char      model[MODEL_MAX + 1];
} chat_req_t;

static void
jws(jp_t *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n'
                           || *j->p == '\r'))
    {
        j->p++;
    }
}

/* string at j->p; s and n get the raw (still escaped) contents */
static int
jstr(jp_t *j, const char **s, size_t *n)
{
    const char *start;

    if (j->p >= j->e || *j->p != '"') {
        return -1;
    }
    start = ++j->p;
    while (j->p < j->e) {
        if (*j->p == '\\') {
            j->p += 2;
            continue;
        }
        if (*j->p == '"') {
            if (s) {
                *s = start;
                *n = (size_t) (j->p - start);
            }
            j->p++;
            return 0;
        }
        j->p++;
    }
    j->p = j->e;
    return -1;
}

static int
jbool(jp_t *j, int *b)
{
    if (j->e - j->p >= 4 && !memcmp(j->p, "true", 4)) {
        j->p += 4;
        *b = 1;
        return 0;
    }
    if (j->e - j->p >= 5 && !memcmp(j->p, "false", 5)) {
        j->p += 5;
        *b = 0;
        return 0;
    }
    return -1;
}

static int jskip(jp_t *j);

/* iterate members: 1 = key found (positioned at the value), 0 = end */
static int
jmember(jp_t *j, int *first, const char **k, size_t *kn)
{
    jws(j);
    if (j->p >= j->e) {
        return -1;
    }
    if (*j->p == '}') {
        j->p++;
        return 0;
    }
    if (!*first) {
        if (*j->p != ',') {
            return -1;
        }
        j->p++;
        jws(j);
    }
    *first = 0;
    if (jstr(j, k, kn)) {
        return -1;
    }
    jws(j);
    if (j->p >= j->e || *j->p != ':') {
        return -1;
    }
    j->p++;
    jws(j);
    return 1;
}

/* iterate array elements: 1 = positioned at an element, 0 = end */
static int
jelement(jp_t *j, int *first)
{
    jws(j);
    if (j->p >= j->e) {
        return -1;
    }
    if (*j->p == ']') {
        j->p++;
        return 0;
    }
    if (!*first) {
        if (*j->p != ',') {
            return -1;
        }
        j->p++;
        jws(j);
    }
    *first = 0;
    return 1;
}

static int
jskip(jp_t *j)
{
    const char *start;
    size_t      kn;
    int         first = 1, r;

    jws(j);
    if (j->p >= j->e) {
        return -1;
    }
    if (*j->p == '"') {
        return jstr(j, NULL, NULL);
    }
    if (*j->p == '{' || *j->p == '[') {
        int obj = *j->p == '{';

        if (++j->depth > 64) {
            return -1;
        }
        j->p++;
        for (;;) {
            const char *k;

            r = obj ? jmember(j, &first, &k, &kn) : jelement(j, &first);
            if (r <= 0) {
                break;
            }
            if (jskip(j)) {
                return -1;
            }
        }
        j->depth--;
        return r;
    }
    start = j->p;
    while (j->p < j->e && (isalnum((unsigned char) *j->p) || *j->p == '-'
                           || *j->p == '+' || *j->p == '.'))
    {
        j->p++;
    }
    return j->p > start ? 0 : -1;
}

#define JKEY(k, kn, lit) ((kn) == sizeof(lit) - 1 && !memcmp(k, lit, kn))

static uint64_t
count_words(const char *s, size_t n)
{
    uint64_t words = 0;
    size_t   i;
    int      in_word = 0, ws;

    for (i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            i++;
            ws = s[i] == 'n' || s[i] == 't' || s[i] == 'r';
        } else {
            ws = isspace((unsigned char) s[i]);
        }
        if (!ws && !in_word) {
            words++;
        }
        in_word = !ws;
    }
    return words;
}

static void
parse_message(jp_t *j, chat_req_t *cr)
{
    const char *k, *s;
    size_t      kn, sn;
    int         first = 1;

    if (j->p >= j->e || *j->p != '{') {
        jskip(j);
        return;
    }
    j->p++;
    while (jmember(j, &first, &k, &kn) == 1) {
        if (JKEY(k, kn, "content") && j->p < j->e && *j->p == '"') {
            if (jstr(j, &s, &sn) == 0) {
                cr->words += count_words(s, sn);
            }
        } else if (jskip(j)) {
            return;
        }
    }
}

/* returns 0 if the body parsed as an object, -1 if not (values found
 * before the error are kept) */
static int
parse_chat(const char *body, size_t len, chat_req_t *cr)
{
    jp_t        j = { body, body + len, 0 };
    const char *k, *s;
    size_t      kn, sn;
    int         first = 1, r, b;

    jws(&j);
    if (j.p >= j.e) {
        return 0;           /* empty body: all defaults */
    }
    if (*j.p != '{') {
        return -1;
    }
    j.p++;
    while ((r = jmember(&j, &first, &k, &kn)) == 1) {
        if (JKEY(k, kn, "stream") && jbool(&j, &b) == 0) {
            cr->stream = b;
        } else if (JKEY(k, kn, "model") && j.p < j.e && *j.p == '"') {
            if (jstr(&j, &s, &sn)) {
                return -1;
            }
            if (sn > 0 && sn <= MODEL_MAX && !memchr(s, '\0', sn)) {
                size_t i;

                for (i = 0; i < sn && (unsigned char) s[i] >= 0x20; i++) {
                }
                if (i == sn && s[sn - 1] != '\\') {
                    memcpy(cr->model, s, sn);
                    cr->model[sn] = '\0';
                }
            }
        } else if (JKEY(k, kn, "stream_options") && j.p < j.e
                   && *j.p == '{')
        {
            int f2 = 1;

            j.p++;
            while ((r = jmember(&j, &f2, &k, &kn)) == 1) {
                if (JKEY(k, kn, "include_usage") && jbool(&j, &b) == 0) {
                    cr->include_usage = b;
                } else if (jskip(&j)) {
                    return -1;
                }
            }
            if (r < 0) {
                return -1;
            }
        } else if (JKEY(k, kn, "messages") && j.p < j.e && *j.p == '[') {
            int f2 = 1;

            j.p++;
            while ((r = jelement(&j, &f2)) == 1) {
                parse_message(&j, cr);
            }
            if (r < 0) {
                return -1;
            }
        } else if (jskip(&j)) {
            return -1;
        }
    }
    return r;
}

/* ------------------------------------------------------------------ */
/* request handling                                                    */

static void
start_simple_json(conn_t *c, int status, const char *json)
{
    buf_t b = { NULL, 0, 0 };

    buf_adds(&b, json);
    log_request(c, status, NULL);
    start_body(c, status, "application/json", &b, NULL, 0);
}

static void
build_chat_body(const knobs_t *k, gen_t *g, buf_t *b)
{
    uint64_t i;

    buf_printf(b, "{\"id\":\"chatcmpl-%" PRIu64 "\",\"object\":"
               "\"chat.completion\",\"created\":%lld,\"model\":\"%s\","
               "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
               "\"content\":\"", g->chat_id, g->created, g->model);
    for (i = 0; i < k->tokens; i++) {
        buf_printf(b, "tok%" PRIu64, i);
        buf_fill(b, 'x', (size_t) tok_pad(k, g, i, 0));
        buf_adds(b, " ");
    }
    buf_printf(b, "\"},\"finish_reason\":\"stop\"}],\"usage\":{"
               "\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64
               ",\"total_tokens\":%" PRIu64 "}}\n", g->prompt_tokens,
               k->tokens, g->prompt_tokens + k->tokens);
}

static void
start_generator(conn_t *c, int route)
{
    knobs_t     *k = &c->k;
    gen_t       *g = &c->g;
    req_t       *r = &c->req;
    chat_req_t   cr;
    char         err[256], info[256];
    int          stream = 1, bad_json = 0;
    uint64_t     start = g_now;

    knobs_default(k, route);
    if (apply_knobs(c, err, sizeof(err))) {
        start_error(c, 400, err, 0, NULL);
        return;
    }
    if (!k->mid_set) {
        snprintf(k->mid, sizeof(k->mid), "%" PRIu64, ++g_mid_seq);
    }

    memset(&cr, 0, sizeof(cr));
    if (route == R_CHAT) {
        if (parse_chat(c->body.d ? c->body.d : "", c->body.len, &cr) < 0) {
            bad_json = 1;
        }
        stream = cr.stream;
    }

    if (k->status) {
        k->fault = F_NONE;
    } else {
        if (!stream && (k->fault == F_ERROR || k->fault == F_MALFORMED)) {
            start_error(c, 400, "fault not supported for non-streaming "
                        "responses", 0, NULL);
            return;
        }
        if (route == R_BYTES
            && (k->fault == F_ERROR || k->fault == F_MALFORMED))
        {
            start_error(c, 400, "fault not supported for /bytes", 0, NULL);
            return;
        }
        if (!k->chunked && k->fault != F_NONE && k->fault != F_LENGTH) {
            start_error(c, 400, "faults are not supported with chunked=0",
                        0, NULL);
            return;
        }
        if (!stream && k->fault == F_LENGTH) {
            k->fault = F_NONE;  /* already Content-Length */
        }
        if (route == R_BYTES && k->size == 0) {
            k->size = 1024;
        }
        if (stream && route != R_BYTES
            && (!k->chunked || k->fault == F_LENGTH
                || k->fault == F_SHORTLENGTH)
            && k->tokens > MAX_LENGTH_UNITS)
        {
            start_error(c, 400, "too many events for a Content-Length body",
                        0, NULL);
            return;
        }
        if (k->stamp
            && (!stream || !k->chunked || k->fault == F_LENGTH
                || k->fault == F_SHORTLENGTH))
        {
            start_error(c, 400, "stamp needs a streaming response without "
                        "Content-Length", 0, NULL);
            return;
        }
        if (!stream
            && (double) k->tokens * (double) (k->size + 32) > MAX_FULL_BODY)
        {
            start_error(c, 400, "non-streaming response would be too large",
                        0, NULL);
            return;
        }
    }

    if (k->sndbuf) {
        int v = (int) k->sndbuf;

        setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    }

    gen_free(g);
    memset(g, 0, sizeof(*g));

    if (k->status) {
        buf_t b = { NULL, 0, 0 };

        buf_printf(&b, "{\"error\":{\"message\":\"mock error\",\"type\":"
                   "\"mock\",\"code\":%d}}\n", k->status);
        snprintf(info, sizeof(info), "mid=%s status knob", k->mid);
        log_request(c, k->status, info);
        c->rec = rec_new(c, route);
        c->rec->status = k->status;
        start_body(c, k->status, "application/json", &b, NULL, 0);
        g->base = (double) start + (double) k->ttft * 1000.0;
        g->hdr_delayed = 1;
        return;
    }

    g->status = 200;
    g->streaming = stream;
    g->base = (double) start + (double) k->ttft * 1000.0;
    if (k->tps > 0 && !k->coalesce) {
        g->interval = 1e6 / k->tps;
    }

    switch (route) {
    case R_CHAT:
        g->kind = G_CHAT;
        g->ctype = stream ? "text/event-stream" : "application/json";
        g->chat_id = ++g_chat_seq;
        g->created = (long long) time(NULL);
        g->include_usage = cr.include_usage;
        g->prompt_tokens = cr.words;
        snprintf(g->model, sizeof(g->model), "%s",
                 cr.model[0] ? cr.model : "mock-llm");
        chat_prefix(k, g);
        g->count = k->tokens;
        break;
    case R_SSE:
        g->kind = G_SSE;
        g->ctype = "text/event-stream";
        g->count = k->tokens;
        break;
    case R_NDJSON:
        g->kind = G_NDJSON;
        g->ctype = "application/x-ndjson";
        g->count = k->tokens;
        break;
    default:
        g->kind = G_BYTES;
        g->ctype = "application/octet-stream";
        g->total = k->total;
        g->piece = k->size;
        g->count = (k->total + k->size - 1) / k->size;
        break;
    }

    if (!stream) {
        /* non-streaming chat: one body, sent when the last token would
         * have been generated; killing faults cut it in half */
        build_chat_body(k, g, &g->body);
        if (g->interval > 0 && k->tokens > 1) {
            g->base += (double) (k->tokens - 1) * g->interval;
        }
        g->interval = 0;
        g->kind = G_BODY;
        g->hdr_delayed = 1;
        g->framing = FR_LENGTH;
        g->content_length = g->body.len;
        if (fault_kills(k->fault)) {
            g->half = g->body.len / 2;
            g->count = 2;
            g->fault_at = 1;
        } else {
            g->count = 1;
        }
    } else {
        if (!k->chunked || k->fault == F_LENGTH
            || k->fault == F_SHORTLENGTH)
        {
            g->framing = FR_LENGTH;
            g->content_length = dry_run_length(c);
            if (k->fault == F_SHORTLENGTH) {
                g->content_length += 100;
            }
        } else if (r->minor == 0) {
            g->framing = FR_CLOSE;
            c->keep = 0;
        } else {
            g->framing = FR_CHUNKED;
        }
        g->fault_at = k->fault_after < g->count ? k->fault_after : g->count;
    }

    c->rec = rec_new(c, route);
    c->rec->status = 200;

    snprintf(info, sizeof(info), "mid=%s %s %s=%" PRIu64 " tps=%g%s%s%s",
             k->mid, stream ? "stream" : "non-stream",
             route == R_BYTES ? "total" : "tokens",
             route == R_BYTES ? k->total : k->tokens, k->tps,
             k->fault ? " fault=" : "", k->fault ? fault_name[k->fault] : "",
             bad_json ? " (unparsable JSON body)" : "");
    log_request(c, 200, info);

    begin_respond(c);

    if (k->fault == F_TRICKLE || k->fault == F_LENGTH) {
        g->fault_fired = 1;
        c->rec->fault_fired = 1;
        if (counting(c)) {
            st.faults++;
        }
        if (k->fault == F_TRICKLE) {
            c->trickle = 1;
        }
        logmsg("fault injected: %s mid=%s", fault_name[k->fault], k->mid);
    }
}

static int
route_of(const char *path, size_t n)
{
    int i;

    for (i = 0; i < R__N; i++) {
        if (i != R_OTHER && strlen(route_path[i]) == n
            && !memcmp(route_path[i], path, n))
        {
            return i;
        }
    }
    return R_OTHER;
}

static void
handle_request(conn_t *c)
{
    req_t      *r = &c->req;
    int         route = route_of(r->target, r->path_len);
    int         get = !strcmp(r->method, "GET");
    int         post = !strcmp(r->method, "POST");
    buf_t       b = { NULL, 0, 0 };

    count_request(c, route);
    c->keep = r->minor == 1 ? !r->conn_close : r->conn_keep;
    knobs_default(&c->k, route);
    c->trickle = 0;

    switch (route) {
    case R_STATS:
        if (!get) {
            start_error(c, 405, "method not allowed", 0, "Allow: GET\r\n");
            return;
        }
        build_stats(&b);
        start_body(c, 200, "application/json", &b, NULL, 0);
        return;

    case R_STATS_RESET:
        if (!post) {
            start_error(c, 405, "method not allowed", 0, "Allow: POST\r\n");
            return;
        }
        stats_reset();
        start_simple_json(c, 200, "{\"ok\":true}\n");
        return;

    case R_MODELS:
        if (!get) {
            start_error(c, 405, "method not allowed", 0, "Allow: GET\r\n");
            return;
        }
        start_simple_json(c, 200, "{\"object\":\"list\",\"data\":[{\"id\":"
                          "\"mock-llm\",\"object\":\"model\",\"created\":0,"
                          "\"owned_by\":\"mock-llm\"}]}\n");
        return;

    case R_CHAT:
        if (!post) {
            start_error(c, 405, "method not allowed", 0, "Allow: POST\r\n");
            return;
        }
        start_generator(c, route);
        return;

    case R_SSE:
    case R_NDJSON:
    case R_BYTES:
        if (!get) {
            start_error(c, 405, "method not allowed", 0, "Allow: GET\r\n");
            return;
        }
        start_generator(c, route);
        return;

    default:
        start_error(c, 404, "not found", 0, NULL);
        return;
    }
}

/* ------------------------------------------------------------------ */
/* request parsing                                                     */

static int
is_tchar(int ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Parse the head copied into r->raw; returns 0 or an HTTP status. */
static int
parse_head_block(conn_t *c, const char **why)
{
    req_t *r = &c->req;
    char  *p = r->raw, *eolp, *sp, *line, *name, *val, *end;
    int    nheaders = 0;

    eolp = strchr(p, '\n');
    if (eolp == NULL) {
        *why = "bad request line";
        return 400;
    }
    *eolp = '\0';
    if (eolp > p && eolp[-1] == '\r') {
        eolp[-1] = '\0';
    }
    sp = strchr(p, ' ');
    if (sp == NULL || sp == p || sp - p > 15) {
        *why = "bad request line";
        return 400;
    }
    *sp = '\0';
    r->method = p;
    for (; *p; p++) {
        if (!is_tchar((unsigned char) *p)) {
            *why = "bad method";
            return 400;
        }
    }
    r->target = sp + 1;
    sp = strchr(r->target, ' ');
    if (sp == NULL || r->target[0] != '/') {
        *why = "bad request target";
        return 400;
    }
    *sp = '\0';
    if (!strcmp(sp + 1, "HTTP/1.1")) {
        r->minor = 1;
    } else if (!strcmp(sp + 1, "HTTP/1.0")) {
        r->minor = 0;
    } else {
        *why = "unsupported HTTP version";
        return 400;
    }
    r->path_len = strcspn(r->target, "?#");
    r->query = r->target[r->path_len] == '?' ? r->target + r->path_len + 1
                                               : NULL;
    if (r->query) {
        /* drop a fragment if a client sent one */
        char *hash = strchr((char *) r->query, '#');

        if (hash) {
            *hash = '\0';
        }
    }

    for (p = eolp + 1; *p; p = eolp + 1) {
        eolp = strchr(p, '\n');
        if (eolp == NULL) {
            break;
        }
        *eolp = '\0';
        if (eolp > p && eolp[-1] == '\r') {
            eolp[-1] = '\0';
        }
        line = p;
        if (*line == '\0') {
            break;
        }
        if (++nheaders > MAX_HEADERS) {
            *why = "too many header fields";
            return 431;
        }
        if (*line == ' ' || *line == '\t') {
            *why = "obsolete line folding";
            return 400;
        }
        val = strchr(line, ':');
        if (val == NULL || val == line) {
            *why = "bad header line";
            return 400;
        }
        *val++ = '\0';
        for (name = line; *name; name++) {
            if (!is_tchar((unsigned char) *name)) {
                *why = "bad header name";
                return 400;
            }
        }
        name = line;
        while (*val == ' ' || *val == '\t') {
            val++;
        }
        end = val + strlen(val);
        while (end > val && (end[-1] == ' ' || end[-1] == '\t')) {
            *--end = '\0';
        }

        if (!strcasecmp(name, "content-length")) {
            uint64_t v;

            if (parse_uint(val, (uint64_t) INT64_MAX, &v)
                || (r->clen >= 0 && (uint64_t) r->clen != v))
            {
                *why = "bad Content-Length";
                return 400;
            }
            r->clen = (int64_t) v;
        } else if (!strcasecmp(name, "transfer-encoding")) {
            if (strcasecmp(val, "chunked")) {
                *why = "unsupported Transfer-Encoding";
                return 400;
            }
            r->chunked = 1;
        } else if (!strcasecmp(name, "connection")) {
            char *tok = val;

            while (*tok) {
                size_t n;

                tok += strspn(tok, " \t,");
                n = strcspn(tok, " \t,");
                if (n == 5 && !strncasecmp(tok, "close", 5)) {
                    r->conn_close = 1;
                } else if (n == 10 && !strncasecmp(tok, "keep-alive", 10)) {
                    r->conn_keep = 1;
                }
                tok += n;
            }
        } else if (!strcasecmp(name, "expect")) {
            if (!strcasecmp(val, "100-continue")) {
                r->expect = 1;
            }
        } else if (!strncasecmp(name, "x-mock-", 7) && name[7]) {
            if (r->nknobs == MAX_HDR_KNOBS) {
                *why = "too many X-Mock headers";
                return 400;
            }
            r->knobs[r->nknobs].name = name + 7;
            r->knobs[r->nknobs].value = val;
            r->nknobs++;
        }
    }
    if (r->chunked && r->clen >= 0) {
        *why = "both Content-Length and Transfer-Encoding";
        return 400;
    }
    return 0;
}

/* Look for a complete request head; 1 = parsed, 0 = need more,
 * -1 = an error response was started. */
static int
parse_head(conn_t *c)
{
    const char *s, *why = NULL;
    size_t      avail, i, end = 0;
    int         status;

    /* tolerate empty lines before a request line */
    while (c->scan == 0 && c->in_pos < c->in.len
           && (c->in.d[c->in_pos] == '\r' || c->in.d[c->in_pos] == '\n'))
    {
        c->in_pos++;
    }
    s = c->in.d + c->in_pos;
    avail = c->in.len - c->in_pos;
    for (i = c->scan; i < avail; i++) {
        if (s[i] != '\n') {
            continue;
        }
        if (i + 1 < avail && s[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (i + 2 < avail && s[i + 1] == '\r' && s[i + 2] == '\n') {
            end = i + 3;
            break;
        }
        if (i + 1 >= avail || (i + 2 >= avail && s[i + 1] == '\r')) {
            break;
        }
    }
    if (end == 0) {
        c->scan = i;
        if (avail >= MAX_HEADER) {
            start_early_error(c, 431, "request header too large");
            return -1;
        }
        return 0;
    }
    if (end > MAX_HEADER) {
        start_early_error(c, 431, "request header too large");
        return -1;
    }
    req_free(&c->req);
    c->req.raw = xrealloc(NULL, end + 1);
    memcpy(c->req.raw, s, end);
    c->req.raw[end] = '\0';
    c->in_pos += end;
    c->scan = 0;
    if (memchr(c->req.raw, '\0', end)) {
        start_early_error(c, 400, "NUL byte in request head");
        return -1;
    }
    status = parse_head_block(c, &why);
    if (status) {
        start_early_error(c, status, why);
        return -1;
    }
    return 1;
}

enum { CS_SIZE, CS_EXT, CS_SIZE_LF, CS_DATA, CS_DATA_CR, CS_DATA_LF,
       CS_TRAILER, CS_TRAILER_LINE, CS_TRAILER_LF, CS_DONE };

/* incremental chunked decoder: 1 done, 0 need more, -1 bad, -2 too big */
static int
chunk_decode(conn_t *c)
{
    while (c->in_pos < c->in.len) {
        int ch = (unsigned char) c->in.d[c->in_pos];

        switch (c->cs) {
        case CS_SIZE: {
            int v = hexval(ch);

            if (v >= 0) {
                c->chunk_left = c->chunk_left * 16 + (uint64_t) v;
                c->chunk_digits++;
                c->in_pos++;
                if (c->chunk_left > MAX_BODY) {
                    return -2;
                }
                continue;
            }
            if (c->chunk_digits == 0) {
                return -1;
            }
            c->in_pos++;
            if (ch == ';' || ch == ' ' || ch == '\t') {
                c->cs = CS_EXT;
                continue;
            }
            if (ch == '\r') {
                c->cs = CS_SIZE_LF;
                continue;
            }
            if (ch == '\n') {
                break;
            }
            return -1;
        }
        case CS_EXT:
            c->in_pos++;
            if (++c->trailer_bytes > MAX_HEADER) {
                return -1;
            }
            if (ch == '\n') {
                break;
            }
            continue;
        case CS_SIZE_LF:
            if (ch != '\n') {
                return -1;
            }
            c->in_pos++;
            break;
        case CS_DATA: {
            size_t   avail = c->in.len - c->in_pos;
            size_t   n = avail < c->chunk_left ? avail : (size_t) c->chunk_left;

            buf_add(&c->body, c->in.d + c->in_pos, n);
            c->in_pos += n;
            c->chunk_left -= n;
            if (c->chunk_left == 0) {
                c->cs = CS_DATA_CR;
            }
            continue;
        }
        case CS_DATA_CR:
            c->in_pos++;
            if (ch == '\r') {
                c->cs = CS_DATA_LF;
                continue;
            }
            if (ch == '\n') {
                c->cs = CS_SIZE;
                c->chunk_digits = 0;
                continue;
            }
            return -1;
        case CS_DATA_LF:
            if (ch != '\n') {
                return -1;
            }
            c->in_pos++;
            c->cs = CS_SIZE;
            c->chunk_digits = 0;
            continue;
        case CS_TRAILER:
            c->in_pos++;
            if (ch == '\n') {
                c->cs = CS_DONE;
                return 1;
            }
            c->cs = ch == '\r' ? CS_TRAILER_LF : CS_TRAILER_LINE;
            continue;
        case CS_TRAILER_LINE:
            c->in_pos++;
            if (++c->trailer_bytes > MAX_HEADER) {
                return -1;
            }
            if (ch == '\n') {
                c->cs = CS_TRAILER;
            }
            continue;
        case CS_TRAILER_LF:
            if (ch != '\n') {
                return -1;
            }
            c->in_pos++;
            c->cs = CS_DONE;
            return 1;
        default:
            return 1;
        }

        /* end of a chunk-size line */
        if (c->body.len + c->chunk_left > MAX_BODY) {
            return -2;
        }
        c->cs = c->chunk_left ? CS_DATA : CS_TRAILER;
    }
    return c->cs == CS_DONE;
}

/* 1 = body complete, 0 = need more, -1 = error response started */
static int
read_body(conn_t *c)
{
    req_t    *r = &c->req;
    uint64_t  want, avail, n;

    if (r->chunked) {
        int x = chunk_decode(c);

        if (x == -1) {
            start_early_error(c, 400, "bad chunked request body");
            return -1;
        }
        if (x == -2) {
            start_early_error(c, 413, "request body too large");
            return -1;
        }
        return x;
    }
    want = r->clen > 0 ? (uint64_t) r->clen : 0;
    avail = c->in.len - c->in_pos;
    n = want - c->body.len;
    if (n > avail) {
        n = avail;
    }
    buf_add(&c->body, c->in.d + c->in_pos, (size_t) n);
    c->in_pos += (size_t) n;
    return c->body.len == want;
}

static void
reset_for_request(conn_t *c)
{
    c->body.len = 0;
    c->cs = CS_SIZE;
    c->chunk_left = 0;
    c->chunk_digits = 0;
    c->trailer_bytes = 0;
}

/* Parse buffered input.  1 = a response was started (call run()),
 * 0 = need more input, -1 = connection closed. */
static int
process_input(conn_t *c)
{
    int x;

    if (c->phase == C_READ_HEAD) {
        x = parse_head(c);
        if (x == 0) {
            return 0;
        }
        if (x < 0) {
            return 1;
        }
        reset_for_request(c);
        if (c->req.clen > MAX_BODY) {
            start_early_error(c, 413, "request body too large");
            return 1;
        }
        c->phase = C_READ_BODY;
        if (c->req.expect && c->req.minor == 1
            && (c->req.chunked || c->req.clen > 0)
            && (c->req.chunked
                || (uint64_t) (c->in.len - c->in_pos) < (uint64_t) c->req.clen))
        {
            buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
            if (flush(c) == FL_GONE) {
                return -1;
            }
        }
    }
    if (c->phase == C_READ_BODY) {
        x = read_body(c);
        if (x == 0) {
            timer_set(c, g_now + IDLE_US);
            return 0;
        }
        if (x < 0) {
            return 1;
        }
        handle_request(c);
        return 1;
    }
    return 0;
}

static void
response_done(conn_t *c)
{
    rec_end(c, c->g.fault_fired ? ST_FAULT : ST_DONE);
    gen_free(&c->g);
    c->g.phase = PH_HDR;
    c->acct = 0;
    c->trickle = 0;
    c->stalled = 0;
    buf_trim(&c->out, 65536);
    buf_trim(&c->ev, 65536);
    if (!c->keep) {
        begin_linger(c);
        return;
    }
    req_free(&c->req);
    c->body.len = 0;
    buf_trim(&c->body, 65536);
    c->phase = C_READ_HEAD;
    c->scan = 0;
    timer_set(c, g_now + IDLE_US);
    update_events(c);
}

/* ------------------------------------------------------------------ */
/* socket events                                                       */

/* >0 bytes read, 0 EOF, -1 nothing (would block / no room), -2 error */
static ssize_t
read_more(conn_t *c, size_t limit)
{
    size_t   unread = c->in.len - c->in_pos, room;
    ssize_t  n;

    if (unread >= limit) {
        return -1;
    }
    if (c->in_pos == c->in.len) {
        c->in.len = c->in_pos = 0;
    } else if (c->in_pos > 0 && c->in.cap - c->in.len < 4096) {
        memmove(c->in.d, c->in.d + c->in_pos, unread);
        c->in.len = unread;
        c->in_pos = 0;
    }
    room = limit - unread;
    buf_reserve(&c->in, room < 4096 ? room : 4096);
    if (room > c->in.cap - c->in.len) {
        room = c->in.cap - c->in.len;
    }
    n = recv(c->fd, c->in.d + c->in.len, room, 0);
    if (n > 0) {
        c->in.len += (size_t) n;
        return n;
    }
    if (n == 0) {
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return -1;
    }
    return -2;
}

static void
on_conn_event(conn_t *c, uint32_t events)
{
    ssize_t n;

    if (c->phase == C_LINGER) {
        linger_read(c);
        return;
    }
    if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        conn_gone(c);
        return;
    }
    if (events & EPOLLIN) {
        if (c->phase == C_RESPOND) {
            n = read_more(c, MAX_PIPELINED);
            if (n == 0 || n == -2) {
                conn_gone(c);
                return;
            }
            update_events(c);
        } else {
            n = read_more(c, c->phase == C_READ_HEAD ? MAX_HEADER + 1024
                                                     : 256 * 1024);
            if (n == 0 || n == -2) {
                conn_gone(c);
                return;
            }
            if (n > 0) {
                int x = process_input(c);

                if (x < 0 || c->closed) {
                    return;
                }
                if (x > 0) {
                    run(c);
                    return;
                }
            }
        }
    }
    if ((events & EPOLLOUT) && !c->closed) {
        if (c->phase == C_RESPOND) {
            run(c);
        } else if (c->out_pos < c->out.len) {
            flush(c);
        }
    }
}

static void
on_timer(conn_t *c)
{
    switch (c->phase) {
    case C_RESPOND:
        if (c->stalled) {
            logmsg("stall timeout mid=%s, closing",
                   c->rec ? c->rec->mid : "-");
            begin_linger(c);
            return;
        }
        run(c);
        return;
    case C_LINGER:
        close_conn(c);
        return;
    default:
        if (c->in.len > c->in_pos || c->phase == C_READ_BODY) {
            logmsg("request read timeout, closing connection");
        }
        close_conn(c);
        return;
    }
}

static void
pause_listen(int on)
{
    struct epoll_event ev;

    if (on == g_listen_paused) {
        return;
    }
    g_listen_paused = on;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &g_tag_listen;
    epoll_ctl(g_ep, on ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, g_lfd, &ev);
    if (on) {
        g_listen_resume = g_now + 100000;
    }
}

static void
on_accept(void)
{
    int i;

    for (i = 0; i < ACCEPT_BURST; i++) {
        struct sockaddr_storage  sa;
        socklen_t                sl = sizeof(sa);
        struct epoll_event       ev;
        conn_t                  *c;
        int                      fd, one = 1;

        fd = accept4(g_lfd, (struct sockaddr *) &sa, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
                || errno == ENOMEM)
            {
                logmsg("accept: %s; pausing accepts for 100 ms",
                       strerror(errno));
                pause_listen(1);
            }
            return;
        }
        if (g_nconns >= MAX_CONNS) {
            logmsg("too many connections (%d), closing new one", MAX_CONNS);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        c = xrealloc(NULL, sizeof(*c));
        memset(c, 0, sizeof(*c));
        c->fd = fd;
        c->id = ++g_conn_seq;
        c->heap_idx = NO_IDX;
        c->phase = C_READ_HEAD;
        c->req.clen = -1;
        if (sa.ss_family == AF_INET) {
            c->peer_port = ntohs(((struct sockaddr_in *) &sa)->sin_port);
        } else if (sa.ss_family == AF_INET6) {
            c->peer_port = ntohs(((struct sockaddr_in6 *) &sa)->sin6_port);
        }
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->evmask = ev.events;
        c->next = g_conns;
        if (g_conns) {
            g_conns->prev = c;
        }
        g_conns = c;
        g_nconns++;
        timer_set(c, g_now + IDLE_US);
    }
}

/* ------------------------------------------------------------------ */
/* main                                                                */

static void
usage(FILE *f)
{
    fputs("usage: mock-llm [-p PORT] [-l ADDR] [-q]\n"
          "  -p PORT  port to listen on (default 0 = ephemeral)\n"
          "  -l ADDR  loopback address to bind (default 127.0.0.1)\n"
          "  -q       quiet: no log lines on stderr\n", f);
}

static void
raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int
main(int argc, char **argv)
{
    struct sockaddr_storage  ss;
    struct sockaddr_in      *sin = (struct sockaddr_in *) &ss;
    struct sockaddr_in6     *sin6 = (struct sockaddr_in6 *) &ss;
    struct epoll_event       ev, evs[EPOLL_EVENTS];
    const char              *addr = "127.0.0.1";
    char                     host[INET6_ADDRSTRLEN];
    socklen_t                sl;
    sigset_t                 sigs;
    uint64_t                 port = 0;
    int                      opt, one = 1, i, n, timeout;

    while ((opt = getopt(argc, argv, "p:l:qh")) != -1) {
        switch (opt) {
        case 'p':
            if (parse_uint(optarg, 65535, &port)) {
                fprintf(stderr, "mock-llm: bad port '%s'\n", optarg);
                return 2;
            }
            break;
        case 'l':
            addr = optarg;
            break;
        case 'q':
            g_quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(addr, "localhost")) {
        addr = "127.0.0.1";
    }

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
            fprintf(stderr, "mock-llm: refusing non-loopback address %s\n",
                    addr);
            return 2;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t) port);
        sl = sizeof(*sin);
    } else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
            fprintf(stderr, "mock-llm: refusing non-loopback address %s\n",
                    addr);
            return 2;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t) port);
        sl = sizeof(*sin6);
    } else {
        fprintf(stderr, "mock-llm: bad address '%s'\n", addr);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    init_patterns();
    g_now = mono_us();

    g_lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (g_lfd < 0) {
        die("socket");
    }
    setsockopt(g_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(g_lfd, (struct sockaddr *) &ss, sl) < 0) {
        die("bind");
    }
    if (listen(g_lfd, 4096) < 0) {
        die("listen");
    }
    sl = sizeof(ss);
    if (getsockname(g_lfd, (struct sockaddr *) &ss, &sl) < 0) {
        die("getsockname");
    }

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) < 0) {
        die("sigprocmask");
    }
    g_sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (g_sfd < 0) {
        die("signalfd");
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        die("epoll_create1");
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &g_tag_listen;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_lfd, &ev) < 0) {
        die("epoll_ctl");
    }
    ev.data.ptr = &g_tag_signal;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_sfd, &ev) < 0) {
        die("epoll_ctl");
    }

    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        printf("listening on %s:%u\n", host, ntohs(sin->sin_port));
    } else {
        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        printf("listening on [%s]:%u\n", host, ntohs(sin6->sin6_port));
    }
    fflush(stdout);

    while (!g_stop) {
        uint64_t limit;
        int      guard;

        g_now = mono_us();
        timeout = 1000;
        if (g_heap_n) {
            uint64_t d = g_heap[0]->deadline;

            if (d <= g_now) {
                timeout = 0;
            } else if (d - g_now < 1000000) {
                timeout = (int) ((d - g_now + 999) / 1000);
            }
        }
        if (g_listen_paused) {
            timeout = g_listen_resume <= g_now ? 0 : timeout < 100 ? timeout
                                                                   : 100;
        }

        n = epoll_wait(g_ep, evs, EPOLL_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }
        g_now = mono_us();

        for (i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;

            if (p == &g_tag_listen) {
                on_accept();
            } else if (p == &g_tag_signal) {
                struct signalfd_siginfo si;

                while (read(g_sfd, &si, sizeof(si)) == sizeof(si)) {
                    g_stop = 1;
                }
            } else if (!((conn_t *) p)->closed) {
                on_conn_event(p, evs[i].events);
            }
        }

        if (g_listen_paused && g_listen_resume <= g_now) {
            pause_listen(0);
        }

        limit = g_now;
        for (guard = 0; g_heap_n && g_heap[0]->deadline <= limit
                        && guard < 1000000; guard++)
        {
            conn_t *c = g_heap[0];

            timer_del(c);
            on_timer(c);
        }
        free_closed();
    }

    logmsg("shutting down");
    while (g_conns) {
        conn_t *c = g_conns;

        if (c->rec) {
            rec_end(c, ST_FAULT);
        }
        close_conn(c);
    }
    free_closed();
    stats_reset();
    free(g_heap);
    close(g_lfd);
    close(g_sfd);
    close(g_ep);
    return 0;
}
