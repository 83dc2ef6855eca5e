
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_STORE_H_INCLUDED_
#define _NGX_HTTP_STREAMING_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The store: streams kept in a shared memory zone.  It knows no request,
 * no wire format and no transport.
 */


#define NGX_HTTP_STREAMING_ZONE_MAGIC    0x5354524dU    /* "STRM" */
#define NGX_HTTP_STREAMING_ZONE_LAYOUT   1


typedef enum {
    NGX_HTTP_STREAMING_ACTIVE = 0,
    NGX_HTTP_STREAMING_PAUSED,
    NGX_HTTP_STREAMING_COMPLETED,
    NGX_HTTP_STREAMING_ERROR,
    NGX_HTTP_STREAMING_CANCELLED,
    NGX_HTTP_STREAMING_NSTATUS
} ngx_http_streaming_status_e;


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
    ngx_queue_t                     finished;   /* oldest first */

    ngx_uint_t                      streams[NGX_HTTP_STREAMING_NSTATUS];
    ngx_uint_t                      subscribers;

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

extern ngx_str_t  ngx_http_streaming_status_names[];


#endif /* _NGX_HTTP_STREAMING_STORE_H_INCLUDED_ */
