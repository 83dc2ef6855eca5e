
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_http_streaming_store.h"


ngx_str_t  ngx_http_streaming_status_names[] = {
    ngx_string("active"),
    ngx_string("paused"),
    ngx_string("completed"),
    ngx_string("error"),
    ngx_string("cancelled"),
    ngx_null_string
};


ngx_int_t
ngx_http_streaming_store_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_streaming_zone_t  *ozone = data;

    size_t                       len;
    ngx_slab_pool_t             *shpool;
    ngx_http_streaming_zone_t   *zone;
    ngx_http_streaming_shctx_t  *sh;

    zone = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (ozone) {
        /* reload: the same zone, with every stream in it, carries on */
        zone->shpool = ozone->shpool;
        zone->sh = ozone->sh;
        return NGX_OK;
    }

    zone->shpool = shpool;

    if (shm_zone->shm.exists) {
        sh = shpool->data;

        if (sh == NULL
            || sh->magic != NGX_HTTP_STREAMING_ZONE_MAGIC
            || sh->layout != NGX_HTTP_STREAMING_ZONE_LAYOUT)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "streaming_zone \"%V\" has an unknown layout",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        zone->sh = sh;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_http_streaming_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    /*
     * sh->rbtree.insert is a function pointer living in shared memory:
     * whoever inserts sets it to its own copy first, under the lock
     */
    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_rbtree_insert_value);
    ngx_queue_init(&sh->finished);

    if (RAND_bytes(sh->nonce, sizeof(sh->nonce)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "RAND_bytes() failed for streaming_zone \"%V\"",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    len = sizeof(" in streaming_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in streaming_zone \"%V\"%Z",
                &shm_zone->shm.name);

    shpool->log_nomem = 0;

    sh->layout = NGX_HTTP_STREAMING_ZONE_LAYOUT;

    /* the magic last: a zone is valid only once it is complete */
    ngx_memory_barrier();
    sh->magic = NGX_HTTP_STREAMING_ZONE_MAGIC;

    shpool->data = sh;
    zone->sh = sh;

    return NGX_OK;
}


void
ngx_http_streaming_store_stats(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_zone_stats_t *st)
{
    ngx_uint_t                   i;
    ngx_slab_pool_t             *shpool;
    ngx_http_streaming_shctx_t  *sh;

    shpool = zone->shpool;
    sh = zone->sh;

    st->size = zone->shm_zone->shm.size;

    ngx_shmtx_lock(&shpool->mutex);

    st->used = st->size - shpool->pfree * ngx_pagesize;

    for (i = 0; i < NGX_HTTP_STREAMING_NSTATUS; i++) {
        st->streams[i] = sh->streams[i];
    }

    st->subscribers = sh->subscribers;

    ngx_shmtx_unlock(&shpool->mutex);

    st->created = sh->totals.created;
    st->chunks = sh->totals.chunks;
    st->bytes = sh->totals.bytes;
    st->resumes = sh->totals.resumes;
    st->evicted_chunks = sh->totals.evicted_chunks;
    st->rejected = sh->totals.rejected;
}

