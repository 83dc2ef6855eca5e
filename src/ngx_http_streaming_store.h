
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_STORE_H_INCLUDED_
#define _NGX_HTTP_STREAMING_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_ids.h"


/*
 * The store: streams kept in a shared memory zone.  It knows no request,
 * no wire format and no transport.
 */


#define NGX_HTTP_STREAMING_ZONE_MAGIC    0x5354524dU    /* "STRM" */
#define NGX_HTTP_STREAMING_ZONE_LAYOUT   6

#define NGX_HTTP_STREAMING_TYPE_MAX      127
#define NGX_HTTP_STREAMING_CODE_MAX      32
#define NGX_HTTP_STREAMING_ERROR_TEXT_MAX   160
#define NGX_HTTP_STREAMING_PIDS          8
#define NGX_HTTP_STREAMING_WORKERS       64


typedef enum {
    NGX_HTTP_STREAMING_ACTIVE = 0,
    NGX_HTTP_STREAMING_PAUSED,
    NGX_HTTP_STREAMING_COMPLETED,
    NGX_HTTP_STREAMING_ERROR,
    NGX_HTTP_STREAMING_CANCELLED,
    NGX_HTTP_STREAMING_NSTATUS
} ngx_http_streaming_status_e;


/*
 * A chunk.  Its sequence number is written before it is linked, and the
 * stream's sequence after that, so that a worker dying in the middle of an
 * append never leaves a half-written chunk visible.
 */
typedef struct ngx_http_streaming_chunk_s  ngx_http_streaming_chunk_t;

struct ngx_http_streaming_chunk_s {
    ngx_http_streaming_chunk_t     *next;
    uint64_t                        sequence;
    uint64_t                        offset;     /* stream bytes before it */
    uint32_t                        len;
    uint32_t                        reserved;
    u_char                          data[1];
};


/*
 * A subscriber's place in a stream, for every worker to see: what it has
 * been handed (the slowest one holds the history and, under
 * "streaming_overflow pause", the producer) and which worker to ring.
 */
typedef struct {
    ngx_queue_t                     queue;      /* st->subs */
    uint64_t                        cursor;     /* last sequence handed */
    uint64_t                        bytes;      /* stream bytes up to it */
    uint64_t                        left;       /* ms it detached; 0: no */
    uint64_t                        acked;      /* acknowledged up to */
    ngx_pid_t                       pid;
    uint32_t                        id;
    unsigned                        producer:1; /* the producer's client */
    unsigned                        acks:1;     /* paced by its acks */
} ngx_http_streaming_sub_t;


typedef struct {
    ngx_rbtree_node_t               node;       /* key: crc32 of the id */
    ngx_queue_t                     queue;      /* sh->live or sh->finished */

    uint64_t                        sequence;   /* the last chunk stored */
    uint64_t                        first;      /* the oldest retained */
    uint64_t                        bytes;      /* every chunk stored */
    uint64_t                        history;    /* bytes retained */
    ngx_http_streaming_chunk_t     *head;
    ngx_http_streaming_chunk_t     *tail;

    uint64_t                        checkpoint_sequence;
    uint64_t                        checkpoint_bytes;
    uint64_t                        checkpoint_time;

    uint64_t                        created;    /* Unix time, ms */
    uint64_t                        updated;
    uint64_t                        finished;
    int64_t                         total_size; /* -1: unknown */

    ngx_pid_t                       producer;
    ngx_uint_t                      subscribers;
    ngx_queue_t                     subs;
    uint64_t                        min_cursor; /* a lower bound */
    uint64_t                        last_left;  /* ms a subscriber left */
    uint32_t                        next_sub;

    /* the workers its subscribers are on, to ring on a new chunk */
    ngx_pid_t                       pids[NGX_HTTP_STREAMING_PIDS];
    uint32_t                        pid_subs[NGX_HTTP_STREAMING_PIDS];
    ngx_uint_t                      pids_overflow;

    u_char                          status;
    u_char                          overflow;   /* producer held */
    u_char                          framing;
    u_char                          id_len;
    u_char                          type_len;
    u_char                          code_len;
    u_char                          message_len;

    u_char                          nonce[16];
    u_char                          id[NGX_HTTP_STREAMING_ID_MAX];
    u_char                          type[NGX_HTTP_STREAMING_TYPE_MAX];
    u_char                          code[NGX_HTTP_STREAMING_CODE_MAX];
    u_char                          message[NGX_HTTP_STREAMING_ERROR_TEXT_MAX];
} ngx_http_streaming_stream_t;


/* zone-wide counters, only ever increased */
typedef struct {
    ngx_atomic_t                    created;
    ngx_atomic_t                    chunks;
    ngx_atomic_t                    bytes;
    ngx_atomic_t                    resumes;
    ngx_atomic_t                    evicted_chunks;
    ngx_atomic_t                    rejected;
} ngx_http_streaming_totals_t;



/*
 * What the workers are rung about: a stream with news for a worker, in a
 * short list all workers share; a worker whose news did not fit (or was
 * not of one stream) has its bit in news_all and looks at everything.
 */
#define NGX_HTTP_STREAMING_NEWS          32
#define NGX_HTTP_STREAMING_WAIT_BUCKETS  64

typedef struct {
    ngx_pid_t                       pid;
    void                           *stream;
} ngx_http_streaming_news_t;

/*
 * The zone header.  Everything here is position independent within the
 * zone (no function or per-cycle pointers are dereferenced from it), so that
 * workers of an old and a new configuration generation can share it.
 */
typedef struct {
    uint32_t                        magic;
    uint32_t                        layout;
    u_char                          nonce[16];

    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     live;       /* least recently updated
                                                   first */
    ngx_queue_t                     finished;   /* oldest first */

    ngx_uint_t                      streams[NGX_HTTP_STREAMING_NSTATUS];
    ngx_uint_t                      subscribers;

    /* the workers that use the zone, to notice one that died */
    ngx_pid_t                       workers[NGX_HTTP_STREAMING_WORKERS];

    /* what the workers are rung about (a doorbell only says "look") */
    uint64_t                        news_all;   /* by workers[] slot */
    ngx_uint_t                      nnews;
    ngx_http_streaming_news_t       news[NGX_HTTP_STREAMING_NEWS];

    ngx_http_streaming_totals_t     totals;
} ngx_http_streaming_shctx_t;


/* one per streaming_zone directive, per configuration cycle */
typedef struct {
    ngx_str_t                       name;
    ngx_shm_zone_t                 *shm_zone;
    ngx_slab_pool_t                *shpool;
    ngx_http_streaming_shctx_t     *sh;

    size_t                          size;
    size_t                          buffer;
    ngx_uint_t                      max_streams;
    ngx_uint_t                      max_subscribers;
    ngx_msec_t                      ttl;
    ngx_msec_t                      idle_timeout;

    /* this worker's own: what waits for news, by stream; its doorbell */
    ngx_queue_t                     waiters[NGX_HTTP_STREAMING_WAIT_BUCKETS];
    ngx_connection_t               *doorbell;
    ngx_uint_t                      ended;      /* streams ended by expiry
                                                   have readers to tell */
} ngx_http_streaming_zone_t;


/* a consistent copy of a zone's figures, taken under its lock */
typedef struct {
    uint64_t                        size;
    uint64_t                        used;
    uint64_t                        streams[NGX_HTTP_STREAMING_NSTATUS];
    uint64_t                        subscribers;
    uint64_t                        created;
    uint64_t                        chunks;
    uint64_t                        bytes;
    uint64_t                        resumes;
    uint64_t                        evicted_chunks;
    uint64_t                        rejected;
} ngx_http_streaming_zone_stats_t;


ngx_int_t ngx_http_streaming_store_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
void ngx_http_streaming_store_stats(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_zone_stats_t *st);

uint64_t ngx_http_streaming_store_now(void);

#define ngx_http_streaming_store_lock(zone)                                  \
    ngx_shmtx_lock(&(zone)->shpool->mutex)
#define ngx_http_streaming_store_unlock(zone)                                \
    ngx_shmtx_unlock(&(zone)->shpool->mutex)

/* the following are called with the zone locked */

ngx_http_streaming_stream_t *ngx_http_streaming_store_find_locked(
    ngx_http_streaming_zone_t *zone, u_char *id, size_t len);
ngx_http_streaming_stream_t *ngx_http_streaming_store_get_locked(
    ngx_http_streaming_zone_t *zone, ngx_str_t *id, u_char *nonce,
    ngx_http_streaming_stream_t **cache);
ngx_int_t ngx_http_streaming_store_create_locked(
    ngx_http_streaming_zone_t *zone, u_char *id, size_t len,
    ngx_http_streaming_stream_t **stream);
void ngx_http_streaming_store_delete_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st);
void ngx_http_streaming_store_release_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st);
ngx_http_streaming_chunk_t *ngx_http_streaming_store_chunk_alloc_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    size_t len);
void ngx_http_streaming_store_chunk_commit_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_http_streaming_chunk_t *chunk, ngx_uint_t evict);
void ngx_http_streaming_store_finish_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t status, ngx_str_t *code,
    ngx_str_t *message);
ngx_int_t ngx_http_streaming_store_sub_add_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    uint64_t cursor, ngx_http_streaming_sub_t **sub);
ngx_uint_t ngx_http_streaming_store_sub_remove_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_http_streaming_sub_t *sub);
ngx_uint_t ngx_http_streaming_store_sub_advance_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_http_streaming_sub_t *sub, ngx_http_streaming_chunk_t *chunk);
ngx_http_streaming_chunk_t *ngx_http_streaming_store_chunk_after_locked(
    ngx_http_streaming_stream_t *st, uint64_t sequence);
ngx_uint_t ngx_http_streaming_store_local_subs_locked(
    ngx_http_streaming_stream_t *st);
ngx_uint_t ngx_http_streaming_store_pids_locked(
    ngx_http_streaming_stream_t *st, ngx_pid_t *pids);
void ngx_http_streaming_store_set_status_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_uint_t status);
int64_t ngx_http_streaming_store_remaining_ms(
    ngx_http_streaming_stream_t *st);
void ngx_http_streaming_store_command_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_uint_t status);
ngx_int_t ngx_http_streaming_store_ack_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st,
    ngx_str_t *subscriber, uint64_t sequence, const char **why);
void ngx_http_streaming_store_checkpoint_locked(
    ngx_http_streaming_stream_t *st, uint64_t now);
ngx_uint_t ngx_http_streaming_store_expire_locked(
    ngx_http_streaming_zone_t *zone, uint64_t now);
void ngx_http_streaming_store_worker_add_locked(
    ngx_http_streaming_zone_t *zone, ngx_pid_t pid);
void ngx_http_streaming_store_news_locked(ngx_http_streaming_zone_t *zone,
    ngx_pid_t pid, void *st);
ngx_uint_t ngx_http_streaming_store_news_take_locked(
    ngx_http_streaming_zone_t *zone, void **streams, ngx_uint_t *all);
ngx_uint_t ngx_http_streaming_store_reap_locked(
    ngx_http_streaming_zone_t *zone, ngx_pid_t *live);

extern ngx_str_t  ngx_http_streaming_status_names[];


#endif /* _NGX_HTTP_STREAMING_STORE_H_INCLUDED_ */
