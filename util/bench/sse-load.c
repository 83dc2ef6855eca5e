/*
 * sse-load: a single-threaded epoll load client for Server-Sent-Events
 * streams over HTTP/1.1.
 *
 * It opens N concurrent connections to one URL, sends a request on each
 * (POST with a JSON chat body by default, or GET), decodes the response
 * framing (chunked, Content-Length or close-delimited), splits the body into
 * SSE events and, for every event whose data carries "@<usec>" (the mock's
 * stamp=1 tokens, see util/mock-llm/README.md), records the latency
 * now(CLOCK_MONOTONIC) - usec.  At the end it prints one JSON object on
 * stdout.  It always stops at its timeout.
 *
 * With -w the connections are WebSocket subscribers (RFC 6455): a GET with
 * the upgrade handshake, 101 expected, then unmasked server frames are read;
 * every text message is an event, stamped like an SSE event (the first
 * "@<usec>" in it).  Pings get pongs; with -a N, every N-th stream-chunk
 * message of ngx_http_streaming_module is acknowledged with a masked
 * stream-control ack; its final stream-status (completed, error,
 * cancelled) or the server's close frame ends the connection.
 *
 * libc only.  See util/bench/README.md.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS       20000
#define MAX_HEAD        (16 * 1024)
#define READ_BUF        (256 * 1024)
#define MAX_LAT         (64u * 1024 * 1024)   /* latency samples kept */
#define EPOLL_EVENTS    1024
#define MAX_HEADERS     16
#define MAX_MSG         (1024 * 1024)       /* WebSocket message kept */
#define WS_KEY          "dGhlIHNhbXBsZSBub25jZQ=="
#define DEFAULT_BODY \
    "{\"model\":\"mock-llm\",\"stream\":true,\"messages\":" \
    "[{\"role\":\"user\",\"content\":\"benchmark\"}]}"

/* ------------------------------------------------------------------ */

static uint64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "sse-load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ------------------------------------------------------------------ */
/* per connection state                                                */

enum { S_IDLE, S_CONNECTING, S_SENDING, S_HEAD, S_BODY, S_DONE };

/* body framing; B_WS: WebSocket frames after a 101 */
enum { B_CHUNKED, B_LENGTH, B_CLOSE, B_WS };

/* WebSocket frame reader states */
enum { W_HEAD, W_PAYLOAD };

/* chunked decoder states */
enum { K_SIZE, K_EXT, K_SIZE_LF, K_DATA, K_DATA_CR, K_DATA_LF, K_TRAILER,
       K_TRAILER_LINE, K_END };

/* error kinds */
enum { E_CONNECT, E_STATUS, E_EOF, E_PARSE, E_IO, E_TIMEOUT, E__N };
static const char *err_name[E__N] = {
    "connect", "status", "eof", "parse", "io", "timeout"
};

typedef struct {
    int        fd;
    int        state;
    int        idx;
    uint64_t   start_at;        /* when to connect (ramp-up) */
    uint64_t   req_start;
    int        requests;        /* requests started on this connection */
    size_t     sent;

    /* response head */
    char      *head;
    size_t     head_len;
    int        status;
    int        framing;
    int        keep;
    uint64_t   remain;          /* B_LENGTH: body bytes left */

    /* chunked decoder */
    int        ks;
    uint64_t   chunk_left;
    int        chunk_digits;
    int        trailer_len;

    /* SSE splitter */
    int        prev_cr;
    size_t     line_len;
    char       field[6];        /* first 5 bytes of the line */
    int        is_data;
    int        ev_data;         /* current event has a data line */
    int        in_stamp;        /* parsing digits after '@' on a data line */
    uint64_t   stamp_val;
    int        stamp_digits;
    uint64_t   ev_stamp;        /* first stamp of the event, 0 = none */
    uint64_t   events;          /* events of this connection */

    /* WebSocket (-w) */
    int        ws_st;
    unsigned char ws_head[14];
    int        ws_head_len;
    int        ws_head_need;
    int        ws_op;           /* opcode of the current frame */
    int        ws_fin;
    uint64_t   ws_left;         /* payload bytes left in the frame */
    int        ws_msg_op;       /* opcode of the message being read, 0 none */
    char      *msg;             /* the message (its first MAX_MSG bytes) */
    size_t     msg_len;
    size_t     msg_cap;
    unsigned char ctl[125];     /* the control frame's payload */
    size_t     ctl_len;
    char      *out;             /* frames to send */
    size_t     out_len;
    size_t     out_off;
    size_t     out_cap;
    int        out_wait;        /* EPOLLOUT asked for */
    uint64_t   unacked;         /* chunks since the last ack */
    int        closing;         /* our close frame is queued */
} conn_t;

/* ------------------------------------------------------------------ */
/* globals                                                             */

static struct {
    const char *url;
    char        host[256];
    char        hostport[300];
    char        path[8192];
    struct sockaddr_storage addr;
    socklen_t   addrlen;
    int         conns;
    double      ramp_s;
    double      timeout_s;
    double      duration_s;
    int         reqs_per_conn;
    const char *method;
    const char *body;
    const char *headers[MAX_HEADERS];
    int         nheaders;
    int         quiet;
    int         ws;
    int         ack_every;
} opt;

static char      *g_req;
static size_t     g_req_len;
static int        g_ep;
static conn_t    *g_conns;
static uint64_t   g_t0, g_now, g_stop_new, g_deadline;

static struct {
    uint64_t  events, stamped, comments, body_bytes, raw_bytes;
    uint64_t  requests, completed, conn_closed;
    uint64_t  errors[E__N];
    uint64_t  bad_stamps;       /* stamps in the future or absurd */
    uint64_t  first_event_us, last_event_us;
    int       active;
    /* WebSocket */
    uint64_t  ws_messages, ws_binary, ws_pings, ws_pongs_sent, ws_acks_sent;
    uint64_t  ws_responses, ws_failed, ws_close_frames, ws_final_status;
} st;

static uint32_t   g_rand = 2463534242u;      /* xorshift32: mask keys */
static uint32_t  *g_lat;
static size_t     g_nlat, g_cap_lat;
static uint64_t   g_lat_sum, g_lat_max;

static volatile sig_atomic_t g_sig;

static void
on_signal(int s)
{
    g_sig = s;
}

/* ------------------------------------------------------------------ */
/* options                                                             */

static void
usage(void)
{
    fprintf(stderr,
"usage: sse-load -u URL [options]\n"
"  -u URL      http://HOST:PORT/PATH[?QUERY] (numeric IPv4/IPv6 or localhost)\n"
"  -c N        concurrent connections (default 1, at most %d)\n"
"  -r SECONDS  ramp-up: spread connection starts over this time (default 0)\n"
"  -t SECONDS  hard timeout for the whole run (default 60)\n"
"  -d SECONDS  duration: keep re-issuing requests on every connection until\n"
"              this time has passed since the start (default: off, use -n)\n"
"  -n N        requests per connection, sent one after another on the\n"
"              keep-alive connection (default 1; ignored with -d)\n"
"  -q QUERY    append query-string knobs (e.g. tokens=200&tps=50&stamp=1)\n"
"  -m METHOD   GET or POST (default POST)\n"
"  -b BODY     request body for POST (default: a streaming chat request)\n"
"  -H 'Name: value'  extra request header (repeatable, at most %d)\n"
"  -w          WebSocket subscribers: GET with the upgrade handshake, 101,\n"
"              one event per text message\n"
"  -a N        with -w: acknowledge every N-th stream-chunk message\n"
"              (ngx_http_streaming_module's stream-control ack; default 0,\n"
"              no acks)\n"
"  -Q          no progress messages on stderr\n",
            MAX_CONNS, MAX_HEADERS);
    exit(2);
}

static double
parse_secs(const char *v, const char *what)
{
    char   *end;
    double  d = strtod(v, &end);

    if (*v == '\0' || *end != '\0' || d < 0 || d > 86400) {
        die("bad %s: '%s'", what, v);
    }
    return d;
}

static void
parse_url(const char *url, const char *query)
{
    const char *p, *hs, *he, *ps;
    char        port[16];
    size_t      n;
    struct sockaddr_in  *a4 = (struct sockaddr_in *) &opt.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &opt.addr;
    unsigned long pn;
    char       *end;

    if (strncmp(url, "http://", 7) != 0) {
        die("URL must start with http://");
    }
    p = url + 7;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (he == NULL) {
            die("bad URL host");
        }
        ps = he + 1;
    } else {
        hs = p;
        he = hs + strcspn(hs, ":/?");
        ps = he;
    }
    n = (size_t) (he - hs);
    if (n == 0 || n >= sizeof(opt.host)) {
        die("bad URL host");
    }
    memcpy(opt.host, hs, n);
    opt.host[n] = '\0';

    strcpy(port, "80");
    if (*ps == ':') {
        ps++;
        n = strcspn(ps, "/?");
        if (n == 0 || n >= sizeof(port)) {
            die("bad URL port");
        }
        memcpy(port, ps, n);
        port[n] = '\0';
        ps += n;
    }
    pn = strtoul(port, &end, 10);
    if (*end != '\0' || pn == 0 || pn > 65535) {
        die("bad URL port '%s'", port);
    }

    memset(&opt.addr, 0, sizeof(opt.addr));
    if (!strcmp(opt.host, "localhost")) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t) pn);
        opt.addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET, opt.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t) pn);
        opt.addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, opt.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t) pn);
        opt.addrlen = sizeof(*a6);
    } else {
        die("host must be a numeric address or localhost: '%s'", opt.host);
    }
    snprintf(opt.hostport, sizeof(opt.hostport),
             strchr(opt.host, ':') ? "[%s]:%s" : "%s:%s", opt.host, port);

    if (*ps == '\0') {
        ps = "/";
    } else if (*ps == '?') {
        snprintf(opt.path, sizeof(opt.path), "/%s", ps);
        ps = NULL;
    }
    if (ps) {
        if (strlen(ps) >= sizeof(opt.path)) {
            die("URL too long");
        }
        strcpy(opt.path, ps);
    }
    if (query && *query) {
        n = strlen(opt.path);
        if (n + 1 + strlen(query) >= sizeof(opt.path)) {
            die("URL too long");
        }
        snprintf(opt.path + n, sizeof(opt.path) - n, "%s%s",
                 strchr(opt.path, '?') ? "&" : "?", query);
    }
}

static void
build_request(void)
{
    size_t  cap = 16384 + strlen(opt.path) + strlen(opt.body);
    size_t  n;
    int     i, post = !strcasecmp(opt.method, "POST");

    g_req = malloc(cap);
    if (g_req == NULL) {
        die("out of memory");
    }
    if (opt.ws) {
        n = (size_t) snprintf(g_req, cap,
                              "GET %s HTTP/1.1\r\nHost: %s\r\n"
                              "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " WS_KEY "\r\n"
                              "Sec-WebSocket-Version: 13\r\n",
                              opt.path, opt.hostport);
        post = 0;
    } else {
        n = (size_t) snprintf(g_req, cap,
                              "%s %s HTTP/1.1\r\nHost: %s\r\n"
                              "Accept: text/event-stream\r\n",
                              post ? "POST" : "GET", opt.path, opt.hostport);
    }
    for (i = 0; i < opt.nheaders; i++) {
        if (strlen(opt.headers[i]) > 4096) {
            die("header too long");
        }
        n += (size_t) snprintf(g_req + n, cap - n, "%s\r\n", opt.headers[i]);
    }
    if (post) {
        n += (size_t) snprintf(g_req + n, cap - n,
                               "Content-Type: application/json\r\n"
                               "Content-Length: %zu\r\n\r\n%s",
                               strlen(opt.body), opt.body);
    } else {
        n += (size_t) snprintf(g_req + n, cap - n, "\r\n");
    }
    if (n >= cap) {
        die("request too long");
    }
    g_req_len = n;
}

/* ------------------------------------------------------------------ */
/* latency samples                                                     */

static void
lat_add(uint64_t us)
{
    uint32_t *n;

    if (us > g_lat_max) {
        g_lat_max = us;
    }
    g_lat_sum += us;
    if (g_nlat == g_cap_lat) {
        if (g_cap_lat >= MAX_LAT) {
            return;             /* keep the first MAX_LAT samples */
        }
        g_cap_lat = g_cap_lat ? g_cap_lat * 2 : 65536;
        n = realloc(g_lat, g_cap_lat * sizeof(*g_lat));
        if (n == NULL) {
            die("out of memory");
        }
        g_lat = n;
    }
    g_lat[g_nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return x < y ? -1 : x > y;
}

static uint64_t
pct(double p)
{
    size_t i;

    if (g_nlat == 0) {
        return 0;
    }
    i = (size_t) (p / 100.0 * (double) (g_nlat - 1) + 0.5);
    return g_lat[i < g_nlat ? i : g_nlat - 1];
}

/* ------------------------------------------------------------------ */
/* SSE splitter                                                        */

static void
sse_event_end(conn_t *c, uint64_t now)
{
    if (c->ev_data) {
        st.events++;
        c->events++;
        if (st.first_event_us == 0) {
            st.first_event_us = now;
        }
        st.last_event_us = now;
        if (c->ev_stamp) {
            st.stamped++;
            if (c->ev_stamp > now + 1000 || now - c->ev_stamp > 3600000000ULL)
            {
                st.bad_stamps++;
            } else {
                lat_add(now > c->ev_stamp ? now - c->ev_stamp : 0);
            }
        }
    }
    c->ev_data = 0;
    c->ev_stamp = 0;
}

static void
sse_line_end(conn_t *c, uint64_t now)
{
    if (c->in_stamp) {
        if (c->stamp_digits && !c->ev_stamp) {
            c->ev_stamp = c->stamp_val;
        }
        c->in_stamp = 0;
    }
    if (c->line_len == 0) {
        sse_event_end(c, now);
    } else {
        if (c->line_len < 5) {
            c->field[c->line_len] = '\0';
            /* "data" alone is a data line with an empty value */
            if (!strcmp(c->field, "data")) {
                c->ev_data = 1;
            } else if (c->field[0] == ':') {
                st.comments++;
            }
        } else if (c->field[0] == ':') {
            st.comments++;
        }
    }
    c->line_len = 0;
    c->is_data = 0;
}

/* feed decoded body bytes */
static void
sse_feed(conn_t *c, const char *p, size_t n, uint64_t now)
{
    size_t i;
    char   ch;

    st.body_bytes += n;
    for (i = 0; i < n; i++) {
        ch = p[i];
        if (ch == '\n') {
            if (c->prev_cr) {
                c->prev_cr = 0;         /* the LF of a CRLF */
                continue;
            }
            sse_line_end(c, now);
            continue;
        }
        c->prev_cr = 0;
        if (ch == '\r') {
            c->prev_cr = 1;
            sse_line_end(c, now);
            continue;
        }
        if (c->line_len < 5) {
            c->field[c->line_len] = ch;
            if (c->line_len == 4) {
                c->field[5] = '\0';
                if (!memcmp(c->field, "data:", 5)) {
                    c->is_data = 1;
                    c->ev_data = 1;
                }
            }
        } else if (c->is_data) {
            if (c->in_stamp) {
                if (ch >= '0' && ch <= '9' && c->stamp_digits < 19) {
                    c->stamp_val = c->stamp_val * 10 + (uint64_t) (ch - '0');
                    c->stamp_digits++;
                } else {
                    if (c->stamp_digits && !c->ev_stamp) {
                        c->ev_stamp = c->stamp_val;
                    }
                    c->in_stamp = 0;
                }
            }
            if (ch == '@' && !c->ev_stamp) {
                c->in_stamp = 1;
                c->stamp_val = 0;
                c->stamp_digits = 0;
            }
        }
        c->line_len++;
    }
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

static void conn_start(conn_t *c);

static void
conn_close(conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
        st.active--;
    }
    free(c->head);
    c->head = NULL;
    free(c->msg);
    c->msg = NULL;
    free(c->out);
    c->out = NULL;
    c->state = S_DONE;
}

static void
conn_error(conn_t *c, int kind)
{
    st.errors[kind]++;
    if (!opt.quiet && st.errors[kind] <= 3) {
        fprintf(stderr, "sse-load: connection %d: %s error (status %d, "
                "%" PRIu64 " events)\n", c->idx, err_name[kind], c->status,
                c->events);
    }
    conn_close(c);
}

static int
more_requests(conn_t *c)
{
    if (g_now >= g_deadline || g_sig) {
        return 0;
    }
    if (opt.duration_s > 0) {
        return g_now < g_stop_new;
    }
    return c->requests < opt.reqs_per_conn;
}

static void
request_begin(conn_t *c)
{
    c->requests++;
    st.requests++;
    c->req_start = g_now;
    c->sent = 0;
    c->head_len = 0;
    c->status = 0;
    c->keep = 1;
    c->prev_cr = 0;
    c->line_len = 0;
    c->is_data = 0;
    c->ev_data = 0;
    c->in_stamp = 0;
    c->ev_stamp = 0;
    c->state = S_SENDING;
}

static void
request_done(conn_t *c)
{
    struct epoll_event ev;

    st.completed++;
    /* an event not closed by a blank line at the end does not count */
    if (c->keep && more_requests(c)) {
        request_begin(c);
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    st.conn_closed++;
    conn_close(c);
}

static void
conn_start(conn_t *c)
{
    struct epoll_event ev;
    int fd, one = 1;

    fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK
                | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        st.errors[E_CONNECT]++;
        if (!opt.quiet && st.errors[E_CONNECT] <= 3) {
            fprintf(stderr, "sse-load: socket: %s\n", strerror(errno));
        }
        c->state = S_DONE;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    st.active++;
    if (connect(fd, (struct sockaddr *) &opt.addr, opt.addrlen) < 0
        && errno != EINPROGRESS)
    {
        if (!opt.quiet && st.errors[E_CONNECT] < 3) {
            fprintf(stderr, "sse-load: connect: %s\n", strerror(errno));
        }
        conn_error(c, E_CONNECT);
        return;
    }
    request_begin(c);
    c->state = S_CONNECTING;
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.ptr = c;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
}

static int
do_send(conn_t *c)
{
    struct epoll_event ev;
    ssize_t n;

    while (c->sent < g_req_len) {
        n = send(c->fd, g_req + c->sent, g_req_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return 0;
            }
            conn_error(c, c->state == S_CONNECTING ? E_CONNECT : E_IO);
            return -1;
        }
        c->sent += (size_t) n;
        c->state = S_SENDING;
    }
    c->state = S_HEAD;
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = c;
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* case-insensitive header value lookup in the NUL-terminated head */
static const char *
hdr_find(const char *head, const char *name, size_t *vlen)
{
    const char *p = strstr(head, "\r\n");
    size_t      nl = strlen(name);

    while (p && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2, *e = strstr(line, "\r\n");

        if (e == NULL) {
            return NULL;
        }
        if ((size_t) (e - line) > nl && line[nl] == ':'
            && !strncasecmp(line, name, nl))
        {
            const char *v = line + nl + 1;

            while (*v == ' ' || *v == '\t') {
                v++;
            }
            *vlen = (size_t) (e - v);
            while (*vlen && (v[*vlen - 1] == ' ' || v[*vlen - 1] == '\t')) {
                (*vlen)--;
            }
            return v;
        }
        p = e;
    }
    return NULL;
}

static int
token_in(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i;

    for (i = 0; i + tl <= n; i++) {
        if (!strncasecmp(v + i, tok, tl)) {
            return 1;
        }
    }
    return 0;
}

/* returns bytes of p consumed by the head, or -1 on error (closed) */
static ssize_t
parse_head(conn_t *c, const char *p, size_t n)
{
    size_t       take, i, vl;
    const char  *v;
    char        *end;
    int          minor;

    if (c->head == NULL) {
        c->head = malloc(MAX_HEAD + 1);
        if (c->head == NULL) {
            die("out of memory");
        }
    }
    /* copy byte by byte until CRLFCRLF */
    for (i = 0; i < n; i++) {
        if (c->head_len >= MAX_HEAD) {
            conn_error(c, E_PARSE);
            return -1;
        }
        c->head[c->head_len++] = p[i];
        if (c->head_len >= 4
            && !memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4))
        {
            break;
        }
    }
    if (i == n) {
        return (ssize_t) n;     /* need more */
    }
    take = i + 1;
    c->head[c->head_len] = '\0';

    if (sscanf(c->head, "HTTP/1.%d %d", &minor, &c->status) != 2) {
        conn_error(c, E_PARSE);
        return -1;
    }
    if (c->status == 100) {     /* interim response: skip it */
        c->head_len = 0;
        c->status = 0;
        return (ssize_t) take;
    }
    if (c->status != (opt.ws ? 101 : 200)) {
        conn_error(c, E_STATUS);
        return -1;
    }
    if (opt.ws) {
        /* frames from here on; the connection ends with the subscription */
        c->framing = B_WS;
        c->keep = 0;
        c->ws_st = W_HEAD;
        c->ws_head_len = 0;
        c->ws_head_need = 2;
        c->ws_msg_op = 0;
        c->state = S_BODY;
        return (ssize_t) take;
    }
    c->keep = minor >= 1;
    v = hdr_find(c->head, "Connection", &vl);
    if (v) {
        if (token_in(v, vl, "close")) {
            c->keep = 0;
        } else if (token_in(v, vl, "keep-alive")) {
            c->keep = 1;
        }
    }
    c->framing = B_CLOSE;
    v = hdr_find(c->head, "Transfer-Encoding", &vl);
    if (v && token_in(v, vl, "chunked")) {
        c->framing = B_CHUNKED;
        c->ks = K_SIZE;
        c->chunk_left = 0;
        c->chunk_digits = 0;
    } else if ((v = hdr_find(c->head, "Content-Length", &vl)) != NULL) {
        c->framing = B_LENGTH;
        c->remain = strtoull(v, &end, 10);
        if (end == v) {
            conn_error(c, E_PARSE);
            return -1;
        }
    } else {
        c->keep = 0;
    }
    c->state = S_BODY;
    return (ssize_t) take;
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* chunked decoding; returns 1 when the response is complete, 0 for more,
 * -1 on error (closed) */
static int
feed_chunked(conn_t *c, const char *p, size_t n, size_t *used, uint64_t now)
{
    size_t i = 0, take;
    int    h;

    while (i < n) {
        switch (c->ks) {
        case K_SIZE:
            h = hexval(p[i]);
            if (h >= 0) {
                if (c->chunk_digits >= 15) {
                    goto bad;
                }
                c->chunk_left = c->chunk_left * 16 + (uint64_t) h;
                c->chunk_digits++;
                i++;
                break;
            }
            if (c->chunk_digits == 0) {
                goto bad;
            }
            if (p[i] == '\r') {
                c->ks = K_SIZE_LF;
            } else if (p[i] == ';' || p[i] == ' ' || p[i] == '\t') {
                c->ks = K_EXT;
            } else {
                goto bad;
            }
            i++;
            break;
        case K_EXT:
            if (p[i] == '\r') {
                c->ks = K_SIZE_LF;
            }
            i++;
            break;
        case K_SIZE_LF:
            if (p[i] != '\n') {
                goto bad;
            }
            i++;
            c->chunk_digits = 0;
            if (c->chunk_left == 0) {
                c->ks = K_TRAILER;
                c->trailer_len = 0;
            } else {
                c->ks = K_DATA;
            }
            break;
        case K_DATA:
            take = n - i;
            if (take > c->chunk_left) {
                take = (size_t) c->chunk_left;
            }
            sse_feed(c, p + i, take, now);
            c->chunk_left -= take;
            i += take;
            if (c->chunk_left == 0) {
                c->ks = K_DATA_CR;
            }
            break;
        case K_DATA_CR:
            if (p[i] != '\r') {
                goto bad;
            }
            c->ks = K_DATA_LF;
            i++;
            break;
        case K_DATA_LF:
            if (p[i] != '\n') {
                goto bad;
            }
            c->ks = K_SIZE;
            i++;
            break;
        case K_TRAILER:         /* at the start of a trailer line */
            if (p[i] == '\r') {
                i++;
                break;
            }
            if (p[i] == '\n') {
                i++;
                c->ks = K_END;
                *used = i;
                return 1;
            }
            c->ks = K_TRAILER_LINE;
            break;
        case K_TRAILER_LINE:
            if (p[i] == '\n') {
                c->ks = K_TRAILER;
            }
            i++;
            break;
        default:
            goto bad;
        }
    }
    *used = i;
    return 0;

bad:
    conn_error(c, E_PARSE);
    return -1;
}

/* ------------------------------------------------------------------ */
/* WebSocket (-w)                                                      */

/* sends what is queued; -1 on error (closed) */
static int
ws_flush(conn_t *c)
{
    struct epoll_event ev;
    ssize_t n;

    while (c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                 MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                conn_error(c, E_IO);
                return -1;
            }
            if (!c->out_wait) {
                c->out_wait = 1;
                ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
                ev.data.ptr = c;
                epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            return 0;
        }
        c->out_off += (size_t) n;
    }
    c->out_off = c->out_len = 0;
    if (c->out_wait) {
        c->out_wait = 0;
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;
        epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
    return 0;
}

/* queues one masked client frame (FIN set) */
static void
ws_queue(conn_t *c, int op, const void *payload, size_t len)
{
    unsigned char *h, *d, key[4];
    size_t         need, i, hl;
    char          *n;

    need = c->out_len + 14 + len;
    if (need > c->out_cap) {
        c->out_cap = need < 256 ? 256 : need * 2;
        n = realloc(c->out, c->out_cap);
        if (n == NULL) {
            die("out of memory");
        }
        c->out = n;
    }
    h = (unsigned char *) c->out + c->out_len;
    h[0] = (unsigned char) (0x80 | op);
    if (len < 126) {
        h[1] = (unsigned char) (0x80 | len);
        hl = 2;
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char) (len >> 8);
        h[3] = (unsigned char) len;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (unsigned char) ((uint64_t) len >> (56 - 8 * i));
        }
        hl = 10;
    }
    g_rand ^= g_rand << 13;
    g_rand ^= g_rand >> 17;
    g_rand ^= g_rand << 5;
    memcpy(key, &g_rand, 4);
    memcpy(h + hl, key, 4);
    d = h + hl + 4;
    for (i = 0; i < len; i++) {
        d[i] = ((const unsigned char *) payload)[i] ^ key[i & 3];
    }
    c->out_len += hl + 4 + len;
}

/* our close frame, once */
static void
ws_close(conn_t *c, unsigned code)
{
    unsigned char p[2];

    if (c->closing) {
        return;
    }
    c->closing = 1;
    p[0] = (unsigned char) (code >> 8);
    p[1] = (unsigned char) code;
    ws_queue(c, 0x8, p, 2);
}

/* the value of "key": in the message, NULL if absent; JSON as our module
 * writes it (no blanks); inside a JSON string the quotes are escaped, so a
 * match is a key */
static const char *
ws_json_find(const char *m, size_t n, const char *key)
{
    const char *v = memmem(m, n, key, strlen(key));

    return v ? v + strlen(key) : NULL;
}

/* one whole text or binary message */
static void
ws_message_end(conn_t *c, uint64_t now)
{
    const char *m = c->msg, *v, *e;
    size_t      n = c->msg_len, i;
    uint64_t    stamp = 0, seq;
    int         digits;
    char        ack[512];
    int         len;

    st.ws_messages++;
    if (c->ws_msg_op == 0x2) {
        st.ws_binary++;
    }
    c->ws_msg_op = 0;

    /* the stamp: the first "@" followed by digits, as in an SSE event */
    for (i = 0; m && i < n && !stamp; i++) {
        if (m[i] != '@') {
            continue;
        }
        digits = 0;
        while (i + 1 < n && m[i + 1] >= '0' && m[i + 1] <= '9'
               && digits < 19)
        {
            stamp = stamp * 10 + (uint64_t) (m[++i] - '0');
            digits++;
        }
    }
    c->ev_data = 1;
    c->ev_stamp = stamp;
    sse_event_end(c, now);
    if (m == NULL) {
        return;
    }

    if (ws_json_find(m, n, "\"type\":\"response\"")) {
        st.ws_responses++;
        if (ws_json_find(m, n, "\"success\":false")) {
            st.ws_failed++;
            if (!opt.quiet && st.ws_failed <= 3) {
                fprintf(stderr, "sse-load: connection %d: %.*s\n", c->idx,
                        (int) (n > 400 ? 400 : n), m);
            }
        }
        return;
    }

    /* not the final marker: the subscription is dropped after it */
    if (opt.ack_every && ws_json_find(m, n, "\"type\":\"stream-chunk\"")
        && !ws_json_find(m, n, "\"isFinal\":true")
        && ++c->unacked >= (uint64_t) opt.ack_every
        && (v = ws_json_find(m, n, "\"sequence\":")) != NULL
        && (e = ws_json_find(m, n, "\"streamId\":\"")) != NULL)
    {
        seq = strtoull(v, NULL, 10);
        for (i = 0; e + i < m + n && e[i] != '"' && i < 200; i++) {
            /* the id */
        }
        len = snprintf(ack, sizeof(ack), "{\"type\":\"stream-control\","
                       "\"id\":\"a\",\"payload\":{\"streamId\":\"%.*s\","
                       "\"command\":\"ack\",\"sequence\":%" PRIu64 "}}",
                       (int) i, e, seq);
        ws_queue(c, 0x1, ack, (size_t) len);
        st.ws_acks_sent++;
        c->unacked = 0;
    }

    if (ws_json_find(m, n, "\"type\":\"stream-status\"")
        && (ws_json_find(m, n, "\"status\":\"completed\"")
            || ws_json_find(m, n, "\"status\":\"error\"")
            || ws_json_find(m, n, "\"status\":\"cancelled\"")))
    {
        /* the subscription's end: we close */
        st.ws_final_status++;
        ws_close(c, 1000);
    }
}

/* the end of a control frame; 1 when the connection is done, -1 on error
 * (closed) */
static int
ws_control_end(conn_t *c)
{
    switch (c->ws_op) {
    case 0x9:                   /* ping */
        st.ws_pings++;
        if (!c->closing) {
            ws_queue(c, 0xA, c->ctl, c->ctl_len);
            st.ws_pongs_sent++;
        }
        return 0;
    case 0xA:                   /* pong */
        return 0;
    default:                    /* close: answered (if not ours), done */
        st.ws_close_frames++;
        if (!c->closing) {
            ws_close(c, c->ctl_len >= 2
                        ? (unsigned) (c->ctl[0] << 8 | c->ctl[1]) : 1000);
        }
        return ws_flush(c) < 0 ? -1 : 1;
    }
}

/* frames; returns 1 when the connection is done, 0 for more, -1 on error
 * (closed) */
static int
ws_feed(conn_t *c, const unsigned char *p, size_t n, uint64_t now)
{
    size_t   i = 0, take, k;
    uint64_t len;
    int      r, op, ctl;
    char    *nm;

    while (i < n) {
        if (c->ws_st == W_HEAD) {
            c->ws_head[c->ws_head_len++] = p[i++];
            if (c->ws_head_len == 2) {
                /* a server frame is not masked */
                if ((c->ws_head[0] & 0x70) || (c->ws_head[1] & 0x80)) {
                    goto bad;
                }
                k = c->ws_head[1] & 0x7f;
                c->ws_head_need = 2 + (k == 126 ? 2 : k == 127 ? 8 : 0);
            }
            if (c->ws_head_len < c->ws_head_need) {
                continue;
            }
            op = c->ws_head[0] & 0x0f;
            c->ws_fin = c->ws_head[0] >> 7;
            len = c->ws_head[1] & 0x7f;
            if (len == 126) {
                len = (uint64_t) c->ws_head[2] << 8 | c->ws_head[3];
            } else if (len == 127) {
                len = 0;
                for (k = 0; k < 8; k++) {
                    len = len << 8 | c->ws_head[2 + k];
                }
                if (len >> 63) {
                    goto bad;
                }
            }
            ctl = op >= 0x8;
            if ((ctl && (op > 0xA || !c->ws_fin || len > 125))
                || (!ctl && op > 0x2)
                || (op == 0x0 && c->ws_msg_op == 0)
                || ((op == 0x1 || op == 0x2) && c->ws_msg_op != 0))
            {
                goto bad;
            }
            if (op == 0x1 || op == 0x2) {
                c->ws_msg_op = op;
                c->msg_len = 0;
            }
            c->ws_op = op;
            c->ws_left = len;
            c->ws_head_len = 0;
            c->ws_head_need = 2;
            c->ctl_len = 0;
            c->ws_st = W_PAYLOAD;
            if (len) {
                continue;
            }
        } else {
            take = n - i;
            if (take > c->ws_left) {
                take = (size_t) c->ws_left;
            }
            st.body_bytes += take;
            if (c->ws_op >= 0x8) {
                memcpy(c->ctl + c->ctl_len, p + i, take);
                c->ctl_len += take;
            } else {
                k = c->msg_len + take > MAX_MSG ? MAX_MSG - c->msg_len : take;
                if (c->msg_len + k > c->msg_cap) {
                    c->msg_cap = c->msg_len + k < 1024
                                 ? 1024 : (c->msg_len + k) * 2;
                    nm = realloc(c->msg, c->msg_cap);
                    if (nm == NULL) {
                        die("out of memory");
                    }
                    c->msg = nm;
                }
                if (k) {
                    memcpy(c->msg + c->msg_len, p + i, k);
                    c->msg_len += k;
                }
            }
            i += take;
            c->ws_left -= take;
            if (c->ws_left) {
                continue;
            }
        }
        /* the frame is complete */
        c->ws_st = W_HEAD;
        if (c->ws_op >= 0x8) {
            r = ws_control_end(c);
            if (r) {
                return r;
            }
        } else if (c->ws_fin) {
            ws_message_end(c, now);
        }
    }
    r = c->out_off < c->out_len ? ws_flush(c) : 0;
    return r < 0 ? -1 : 0;

bad:
    conn_error(c, E_PARSE);
    return -1;
}

static void
conn_readable(conn_t *c, char *buf)
{
    ssize_t  n, k;
    size_t   off, used;
    uint64_t now;
    int      r, reads;

    for (reads = 0; reads < 16; reads++) {
        n = recv(c->fd, buf, READ_BUF, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            conn_error(c, E_IO);
            return;
        }
        now = mono_us();
        if (n == 0) {
            if (c->state == S_BODY && c->framing == B_WS && c->closing) {
                request_done(c);        /* our close frame was answered */
            } else if (c->state == S_BODY && c->framing == B_CLOSE) {
                sse_line_end(c, now);   /* flush nothing; EOF ends it */
                c->keep = 0;
                request_done(c);
            } else {
                conn_error(c, E_EOF);
            }
            return;
        }
        st.raw_bytes += (uint64_t) n;
        off = 0;
        while (off < (size_t) n) {
            if (c->state == S_HEAD) {
                k = parse_head(c, buf + off, (size_t) n - off);
                if (k < 0) {
                    return;
                }
                off += (size_t) k;
                if (c->state != S_BODY) {
                    continue;
                }
                if (c->framing == B_LENGTH && c->remain == 0) {
                    request_done(c);
                    if (c->state == S_DONE) {
                        return;
                    }
                    goto unexpected;
                }
                continue;
            }
            if (c->state != S_BODY) {
                goto unexpected;
            }
            switch (c->framing) {
            case B_WS:
                r = ws_feed(c, (const unsigned char *) buf + off,
                            (size_t) n - off, now);
                if (r < 0) {
                    return;
                }
                if (r == 1) {
                    request_done(c);
                    return;
                }
                off = (size_t) n;
                break;
            case B_CHUNKED:
                r = feed_chunked(c, buf + off, (size_t) n - off, &used, now);
                if (r < 0) {
                    return;
                }
                off += used;
                if (r == 1) {
                    request_done(c);
                    if (c->state == S_DONE) {
                        return;
                    }
                    if (off < (size_t) n) {
                        goto unexpected;
                    }
                }
                break;
            case B_LENGTH:
                used = (size_t) n - off;
                if (used > c->remain) {
                    used = (size_t) c->remain;
                }
                sse_feed(c, buf + off, used, now);
                off += used;
                c->remain -= used;
                if (c->remain == 0) {
                    request_done(c);
                    if (c->state == S_DONE) {
                        return;
                    }
                    if (off < (size_t) n) {
                        goto unexpected;
                    }
                }
                break;
            default:
                sse_feed(c, buf + off, (size_t) n - off, now);
                off = (size_t) n;
                break;
            }
        }
        if (n < READ_BUF) {
            return;
        }
    }
    return;

unexpected:
    /* bytes before our request was sent (or after the response) */
    conn_error(c, E_PARSE);
}

/* ------------------------------------------------------------------ */

static void
print_json(uint64_t wall_us, struct rusage *ru)
{
    int    i;
    double wall = (double) wall_us / 1e6;
    double evspan = st.last_event_us > st.first_event_us
                    ? (double) (st.last_event_us - st.first_event_us) / 1e6
                    : 0;
    uint64_t errors = 0;

    for (i = 0; i < E__N; i++) {
        errors += st.errors[i];
    }
    if (g_nlat) {
        qsort(g_lat, g_nlat, sizeof(*g_lat), cmp_u32);
    }
    printf("{\"url\":\"http://%s%s\",\"connections\":%d,"
           "\"requests\":%" PRIu64 ",\"completed\":%" PRIu64
           ",\"connections_completed\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"error_kinds\":{",
           opt.hostport, opt.path, opt.conns, st.requests, st.completed,
           st.conn_closed, errors);
    for (i = 0; i < E__N; i++) {
        printf("%s\"%s\":%" PRIu64, i ? "," : "", err_name[i], st.errors[i]);
    }
    printf("},\"events\":%" PRIu64 ",\"stamped_events\":%" PRIu64
           ",\"bad_stamps\":%" PRIu64 ",\"comments\":%" PRIu64
           ",\"body_bytes\":%" PRIu64 ",\"bytes\":%" PRIu64
           ",\"wall_s\":%.6f,\"events_span_s\":%.6f,\"events_per_s\":%.1f",
           st.events, st.stamped, st.bad_stamps, st.comments, st.body_bytes,
           st.raw_bytes, wall, evspan,
           evspan > 0 ? (double) st.events / evspan : 0.0);
    printf(",\"latency_us\":{\"count\":%zu,\"mean\":%.1f,\"p50\":%" PRIu64
           ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64
           ",\"max\":%" PRIu64 "}",
           g_nlat, g_nlat ? (double) g_lat_sum / (double) g_nlat : 0.0,
           pct(50), pct(90), pct(99), pct(99.9), g_lat_max);
    if (opt.ws) {
        printf(",\"ws\":{\"messages\":%" PRIu64 ",\"binary\":%" PRIu64
               ",\"pings\":%" PRIu64 ",\"pongs_sent\":%" PRIu64
               ",\"acks_sent\":%" PRIu64 ",\"responses\":%" PRIu64
               ",\"failed_responses\":%" PRIu64 ",\"close_frames\":%" PRIu64
               ",\"final_status\":%" PRIu64 "}",
               st.ws_messages, st.ws_binary, st.ws_pings, st.ws_pongs_sent,
               st.ws_acks_sent, st.ws_responses, st.ws_failed,
               st.ws_close_frames, st.ws_final_status);
    }
    printf(",\"cpu_s\":{\"user\":%.6f,\"sys\":%.6f}"
           ",\"timed_out\":%s}\n",
           (double) ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6,
           (double) ru->ru_stime.tv_sec + ru->ru_stime.tv_usec / 1e6,
           st.errors[E_TIMEOUT] ? "true" : "false");
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    struct epoll_event  evs[EPOLL_EVENTS];
    struct rlimit       rl;
    struct sigaction    sa;
    struct rusage       ru;
    const char         *query = NULL;
    char               *buf;
    int                 o, i, n, next = 0, wait_ms;
    uint64_t            t;

    opt.conns = 1;
    opt.timeout_s = 60;
    opt.reqs_per_conn = 1;
    opt.method = "POST";
    opt.body = DEFAULT_BODY;

    while ((o = getopt(argc, argv, "u:c:r:t:d:n:q:m:b:H:wa:Qh")) != -1) {
        switch (o) {
        case 'u': opt.url = optarg; break;
        case 'c':
            opt.conns = atoi(optarg);
            if (opt.conns < 1 || opt.conns > MAX_CONNS) {
                die("-c must be 1..%d", MAX_CONNS);
            }
            break;
        case 'r': opt.ramp_s = parse_secs(optarg, "ramp-up"); break;
        case 't': opt.timeout_s = parse_secs(optarg, "timeout"); break;
        case 'd': opt.duration_s = parse_secs(optarg, "duration"); break;
        case 'n':
            opt.reqs_per_conn = atoi(optarg);
            if (opt.reqs_per_conn < 1 || opt.reqs_per_conn > 1000000) {
                die("-n must be 1..1000000");
            }
            break;
        case 'q': query = optarg; break;
        case 'm':
            if (strcasecmp(optarg, "GET") && strcasecmp(optarg, "POST")) {
                die("-m must be GET or POST");
            }
            opt.method = optarg;
            break;
        case 'b': opt.body = optarg; break;
        case 'H':
            if (opt.nheaders == MAX_HEADERS || !strchr(optarg, ':')
                || strpbrk(optarg, "\r\n"))
            {
                die("bad or too many -H");
            }
            opt.headers[opt.nheaders++] = optarg;
            break;
        case 'w': opt.ws = 1; break;
        case 'a':
            opt.ack_every = atoi(optarg);
            if (opt.ack_every < 0 || opt.ack_every > 1000000) {
                die("-a must be 0..1000000");
            }
            break;
        case 'Q': opt.quiet = 1; break;
        default: usage();
        }
    }
    if (opt.url == NULL || optind != argc || opt.timeout_s <= 0) {
        usage();
    }
    if (opt.ws) {
        /* one subscription per connection */
        opt.method = "GET";
        opt.reqs_per_conn = 1;
        opt.duration_s = 0;
    } else if (opt.ack_every) {
        die("-a needs -w");
    }
    parse_url(opt.url, query);
    build_request();

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0
        && rl.rlim_cur < (rlim_t) opt.conns + 64)
    {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t) opt.conns + 64) {
            die("RLIMIT_NOFILE too low for %d connections", opt.conns);
        }
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    g_conns = calloc((size_t) opt.conns, sizeof(conn_t));
    buf = malloc(READ_BUF);
    if (g_conns == NULL || buf == NULL) {
        die("out of memory");
    }
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        die("epoll_create1: %s", strerror(errno));
    }

    g_t0 = g_now = mono_us();
    g_deadline = g_t0 + (uint64_t) (opt.timeout_s * 1e6);
    g_stop_new = g_t0 + (uint64_t) (opt.duration_s * 1e6);
    for (i = 0; i < opt.conns; i++) {
        g_conns[i].fd = -1;
        g_conns[i].idx = i;
        g_conns[i].state = S_IDLE;
        g_conns[i].start_at = g_t0 + (opt.conns > 1
            ? (uint64_t) (opt.ramp_s * 1e6 * i / (opt.conns - 1)) : 0);
    }

    for (;;) {
        g_now = mono_us();
        if (g_sig || g_now >= g_deadline) {
            break;
        }
        while (next < opt.conns && g_conns[next].start_at <= g_now) {
            conn_start(&g_conns[next++]);
        }
        if (next == opt.conns && st.active == 0) {
            break;
        }
        t = g_deadline;
        if (next < opt.conns && g_conns[next].start_at < t) {
            t = g_conns[next].start_at;
        }
        wait_ms = (int) ((t - g_now + 999) / 1000);
        if (wait_ms > 1000) {
            wait_ms = 1000;
        }
        n = epoll_wait(g_ep, evs, EPOLL_EVENTS, wait_ms);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait: %s", strerror(errno));
        }
        g_now = mono_us();
        for (i = 0; i < n; i++) {
            conn_t   *c = evs[i].data.ptr;
            uint32_t  e = evs[i].events;

            if (c->state == S_DONE) {
                continue;
            }
            if ((e & EPOLLOUT)
                && (c->state == S_CONNECTING || c->state == S_SENDING))
            {
                if (e & EPOLLERR) {
                    conn_error(c, E_CONNECT);
                    continue;
                }
                if (do_send(c) < 0) {
                    continue;
                }
            } else if ((e & EPOLLOUT) && c->out_off < c->out_len) {
                if (ws_flush(c) < 0) {
                    continue;
                }
            }
            if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                if (c->state == S_CONNECTING && (e & (EPOLLERR | EPOLLHUP))) {
                    conn_error(c, E_CONNECT);
                    continue;
                }
                conn_readable(c, buf);
            }
        }
    }

    /* whatever is still open has timed out (or was interrupted) */
    for (i = 0; i < opt.conns; i++) {
        if (g_conns[i].fd >= 0) {
            st.errors[E_TIMEOUT]++;
            conn_close(&g_conns[i]);
        }
    }
    st.errors[E_TIMEOUT] += (uint64_t) (opt.conns - next);   /* never started */

    getrusage(RUSAGE_SELF, &ru);
    print_json(mono_us() - g_t0, &ru);
    free(g_lat);
    free(buf);
    free(g_conns);
    free(g_req);
    close(g_ep);
    for (i = 0; i < E__N; i++) {
        if (st.errors[i]) {
            return 1;
        }
    }
    return 0;
}
