
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/rand.h>

#include "ngx_http_streaming_store.h"


static void ngx_http_streaming_store_news_drop_locked(
    ngx_http_streaming_shctx_t *sh, ngx_pid_t pid);
static void ngx_http_streaming_store_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static void *ngx_http_streaming_store_alloc_locked(
    ngx_http_streaming_zone_t *zone, size_t size);
static void ngx_http_streaming_store_drop_head_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st);
static void ngx_http_streaming_store_min_locked(
    ngx_http_streaming_stream_t *st, uint64_t *cursor, uint64_t *bytes);
static ngx_uint_t ngx_http_streaming_store_alive(ngx_pid_t pid);
static ngx_uint_t ngx_http_streaming_store_unhold_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st);


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
    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_http_streaming_store_rbtree_insert);
    ngx_queue_init(&sh->live);
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



uint64_t
ngx_http_streaming_store_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


ngx_http_streaming_stream_t *
ngx_http_streaming_store_find_locked(ngx_http_streaming_zone_t *zone,
    u_char *id, size_t len)
{
    uint32_t                      hash;
    ngx_int_t                     rc;
    ngx_rbtree_node_t            *node, *sentinel;
    ngx_http_streaming_stream_t  *st;

    hash = ngx_crc32_short(id, len);

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        st = (ngx_http_streaming_stream_t *) node;

        rc = ngx_memn2cmp(id, st->id, len, st->id_len);

        if (rc == 0) {
            return st;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The stream a request works with, if it is still that one (its nonce):
 * "cache" keeps the pointer found last time, to save the lookup.  A
 * removed stream's nonce is wiped, and a new one's is random, so a kept
 * pointer never matches a stream it does not point to.
 */
ngx_http_streaming_stream_t *
ngx_http_streaming_store_get_locked(ngx_http_streaming_zone_t *zone,
    ngx_str_t *id, u_char *nonce, ngx_http_streaming_stream_t **cache)
{
    ngx_http_streaming_stream_t  *st;

    st = *cache;

    if (st && ngx_memcmp(st->nonce, nonce, sizeof(st->nonce)) == 0) {
        return st;
    }

    st = ngx_http_streaming_store_find_locked(zone, id->data, id->len);

    if (st == NULL || ngx_memcmp(st->nonce, nonce, sizeof(st->nonce)) != 0) {
        st = NULL;
    }

    *cache = st;

    return st;
}


/*
 * NGX_OK: created; NGX_DECLINED: the id exists (*stream is that stream);
 * NGX_BUSY: max_streams reached; NGX_ERROR: the zone is full.
 */
ngx_int_t
ngx_http_streaming_store_create_locked(ngx_http_streaming_zone_t *zone,
    u_char *id, size_t len, ngx_http_streaming_stream_t **stream)
{
    uint64_t                      now;
    ngx_http_streaming_shctx_t   *sh;
    ngx_http_streaming_stream_t  *st;

    sh = zone->sh;
    now = ngx_http_streaming_store_now();

    (void) ngx_http_streaming_store_expire_locked(zone, now);

    st = ngx_http_streaming_store_find_locked(zone, id, len);
    if (st) {
        *stream = st;
        return NGX_DECLINED;
    }

    if (zone->max_streams
        && sh->streams[NGX_HTTP_STREAMING_ACTIVE]
           + sh->streams[NGX_HTTP_STREAMING_PAUSED] >= zone->max_streams)
    {
        sh->totals.rejected++;
        return NGX_BUSY;
    }

    st = ngx_http_streaming_store_alloc_locked(zone,
                                         sizeof(ngx_http_streaming_stream_t));
    if (st == NULL) {
        sh->totals.rejected++;
        return NGX_ERROR;
    }

    ngx_memzero(st, sizeof(ngx_http_streaming_stream_t));

    ngx_memcpy(st->id, id, len);
    st->id_len = (u_char) len;
    st->node.key = ngx_crc32_short(id, len);

    st->first = 1;
    st->created = now;
    st->updated = now;
    st->checkpoint_time = now;
    st->total_size = -1;
    st->producer = ngx_pid;
    st->status = NGX_HTTP_STREAMING_ACTIVE;
    ngx_queue_init(&st->subs);

    if (RAND_bytes(st->nonce, sizeof(st->nonce)) != 1) {
        ngx_slab_free_locked(zone->shpool, st);
        return NGX_ERROR;
    }

    /* the pointer must be this process's own copy of the function */
    sh->rbtree.insert = ngx_http_streaming_store_rbtree_insert;
    ngx_rbtree_insert(&sh->rbtree, &st->node);

    ngx_queue_insert_tail(&sh->live, &st->queue);

    sh->streams[NGX_HTTP_STREAMING_ACTIVE]++;
    sh->totals.created++;

    *stream = st;

    return NGX_OK;
}


void
ngx_http_streaming_store_delete_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st)
{
    ngx_http_streaming_shctx_t  *sh;
    ngx_queue_t                 *q;

    sh = zone->sh;

    while (st->head) {
        ngx_http_streaming_store_drop_head_locked(zone, st);
    }

    /* subscribers find their stream gone when they next look */

    while (!ngx_queue_empty(&st->subs)) {
        q = ngx_queue_head(&st->subs);
        ngx_queue_remove(q);
        ngx_slab_free_locked(zone->shpool,
                      ngx_queue_data(q, ngx_http_streaming_sub_t, queue));
    }

    sh->subscribers -= st->subscribers;

    ngx_rbtree_delete(&sh->rbtree, &st->node);
    ngx_queue_remove(&st->queue);

    sh->streams[st->status]--;

    /* a pointer kept to it by a request no longer matches */
    ngx_memzero(st->nonce, sizeof(st->nonce));

    ngx_slab_free_locked(zone->shpool, st);
}


/*
 * A stream that never became one (the response was not a stream): its id
 * is free again and it does not count as created.
 */
void
ngx_http_streaming_store_release_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st)
{
    ngx_http_streaming_store_delete_locked(zone, st);
    zone->sh->totals.created--;
}


/*
 * A chunk for the stream's next sequence number, to be filled and then
 * committed.  When the zone is full, finished streams nobody reads are
 * reclaimed, oldest first, then this stream's own history that every
 * subscriber has been handed; NULL means that was not enough.
 */
ngx_http_streaming_chunk_t *
ngx_http_streaming_store_chunk_alloc_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, size_t len)
{
    size_t                       size;
    uint64_t                     min, bytes;
    ngx_http_streaming_chunk_t  *chunk;

    size = offsetof(ngx_http_streaming_chunk_t, data) + len;

    for ( ;; ) {
        chunk = ngx_http_streaming_store_alloc_locked(zone, size);
        if (chunk) {
            break;
        }

        if (st->head == NULL) {
            return NULL;
        }

        ngx_http_streaming_store_min_locked(st, &min, &bytes);

        if (st->head->sequence > min) {
            return NULL;
        }

        ngx_http_streaming_store_drop_head_locked(zone, st);
    }

    chunk->next = NULL;
    chunk->sequence = st->sequence + 1;
    chunk->offset = st->bytes;
    chunk->len = (uint32_t) len;
    chunk->reserved = 0;

    return chunk;
}


/*
 * History beyond the zone's buffer is dropped oldest first, but only what
 * every subscriber has been handed, unless "evict":
 * then the oldest go regardless (a subscriber behind them gets
 * CHUNKS_EXPIRED).  Without evict, a backlog of the slowest subscriber that
 * reaches the buffer holds the producer (st->overflow) until it is down to
 * half.
 */
void
ngx_http_streaming_store_chunk_commit_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_chunk_t *chunk,
    ngx_uint_t evict)
{
    uint64_t                     min, bytes;
    ngx_http_streaming_shctx_t  *sh;

    sh = zone->sh;

    if (st->tail) {
        st->tail->next = chunk;

    } else {
        st->head = chunk;
        st->first = chunk->sequence;
    }

    st->tail = chunk;
    st->history += chunk->len;
    st->bytes += chunk->len;
    st->updated = ngx_http_streaming_store_now();

    ngx_memory_barrier();

    st->sequence = chunk->sequence;

    ngx_queue_remove(&st->queue);
    ngx_queue_insert_tail(&sh->live, &st->queue);

    sh->totals.chunks++;
    sh->totals.bytes += chunk->len;

    if (st->history <= zone->buffer) {
        return;
    }

    min = st->min_cursor;
    bytes = 0;

    while (st->history > zone->buffer && st->head != chunk) {

        if (st->head->sequence > min) {
            ngx_http_streaming_store_min_locked(st, &min, &bytes);

            if (st->head->sequence > min) {

                if (!evict) {
                    break;
                }

                sh->totals.evicted_chunks++;
            }
        }

        ngx_http_streaming_store_drop_head_locked(zone, st);
    }

    if (!evict && st->history > zone->buffer) {
        ngx_http_streaming_store_min_locked(st, &min, &bytes);

        if (st->bytes - bytes >= zone->buffer) {
            st->overflow = 1;
        }
    }
}


/*
 * A subscriber that starts after "cursor".  NGX_BUSY: max_subscribers
 * reached; NGX_ERROR: no memory.
 */
ngx_int_t
ngx_http_streaming_store_sub_add_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, uint64_t cursor,
    ngx_http_streaming_sub_t **sub)
{
    ngx_uint_t                   i, free;
    ngx_http_streaming_sub_t    *s;
    ngx_http_streaming_chunk_t  *chunk;

    if (zone->max_subscribers && st->subscribers >= zone->max_subscribers) {
        zone->sh->totals.rejected++;
        return NGX_BUSY;
    }

    s = ngx_http_streaming_store_alloc_locked(zone,
                                              sizeof(ngx_http_streaming_sub_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(s, sizeof(ngx_http_streaming_sub_t));

    s->cursor = cursor;
    s->acked = cursor;
    s->pid = ngx_pid;
    s->id = ++st->next_sub;

    if (cursor >= st->sequence) {
        s->cursor = st->sequence;
        s->acked = st->sequence;
        s->bytes = st->bytes;

    } else {
        chunk = ngx_http_streaming_store_chunk_after_locked(st, cursor);
        s->bytes = chunk ? chunk->offset : 0;
    }

    ngx_queue_insert_tail(&st->subs, &s->queue);

    st->subscribers++;
    zone->sh->subscribers++;

    if (s->cursor < st->min_cursor) {
        st->min_cursor = s->cursor;
    }

    free = NGX_HTTP_STREAMING_PIDS;

    for (i = 0; i < NGX_HTTP_STREAMING_PIDS; i++) {
        if (st->pid_subs[i] && st->pids[i] == ngx_pid) {
            st->pid_subs[i]++;
            break;
        }

        if (st->pid_subs[i] == 0 && free == NGX_HTTP_STREAMING_PIDS) {
            free = i;
        }
    }

    if (i == NGX_HTTP_STREAMING_PIDS) {
        if (free < NGX_HTTP_STREAMING_PIDS) {
            st->pids[free] = ngx_pid;
            st->pid_subs[free] = 1;

        } else {
            st->pids_overflow++;
        }
    }

    *sub = s;

    return NGX_OK;
}


/* returns 1 when that lets a held producer go on */
ngx_uint_t
ngx_http_streaming_store_sub_remove_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_sub_t *sub)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_STREAMING_PIDS; i++) {
        if (st->pid_subs[i] && st->pids[i] == sub->pid) {
            st->pid_subs[i]--;
            break;
        }
    }

    if (i == NGX_HTTP_STREAMING_PIDS && st->pids_overflow) {
        st->pids_overflow--;
    }

    ngx_queue_remove(&sub->queue);

    st->subscribers--;
    zone->sh->subscribers--;

    if (!sub->producer) {
        st->last_left = ngx_http_streaming_store_now();
    }

    ngx_slab_free_locked(zone->shpool, sub);

    return ngx_http_streaming_store_unhold_locked(zone, st);
}


/*
 * The subscriber was handed "chunk".  Returns 1 when that lets a held
 * producer go on: the caller wakes it.
 */
ngx_uint_t
ngx_http_streaming_store_sub_advance_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_http_streaming_sub_t *sub,
    ngx_http_streaming_chunk_t *chunk)
{
    sub->cursor = chunk->sequence;
    sub->bytes = chunk->offset + chunk->len;

    if (!st->overflow) {
        return 0;
    }

    return ngx_http_streaming_store_unhold_locked(zone, st);
}


/* the chunk with sequence + 1, if it is retained */
ngx_http_streaming_chunk_t *
ngx_http_streaming_store_chunk_after_locked(ngx_http_streaming_stream_t *st,
    uint64_t sequence)
{
    ngx_http_streaming_chunk_t  *chunk;

    if (sequence + 1 < st->first || sequence >= st->sequence) {
        return NULL;
    }

    for (chunk = st->head; chunk; chunk = chunk->next) {
        if (chunk->sequence == sequence + 1) {
            return chunk;
        }
    }

    return NULL;
}


/* how many of the stream's subscribers this worker holds */
ngx_uint_t
ngx_http_streaming_store_local_subs_locked(ngx_http_streaming_stream_t *st)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_STREAMING_PIDS; i++) {
        if (st->pid_subs[i] && st->pids[i] == ngx_pid) {
            return st->pid_subs[i];
        }
    }

    /* not in the table (more workers than it holds): assume company */
    return st->pids_overflow ? 2 : 0;
}


/*
 * The other workers that have subscribers of the stream; at most
 * NGX_HTTP_STREAMING_PIDS * 2 pids are written.
 */
ngx_uint_t
ngx_http_streaming_store_pids_locked(ngx_http_streaming_stream_t *st,
    ngx_pid_t *pids)
{
    ngx_uint_t                 i, j, n;
    ngx_queue_t               *q;
    ngx_http_streaming_sub_t  *sub;

    n = 0;

    for (i = 0; i < NGX_HTTP_STREAMING_PIDS; i++) {
        if (st->pid_subs[i] && st->pids[i] != ngx_pid) {
            pids[n++] = st->pids[i];
        }
    }

    if (st->pids_overflow == 0) {
        return n;
    }

    /* more workers than the table holds (reloads): look at every one */

    for (q = ngx_queue_head(&st->subs);
         q != ngx_queue_sentinel(&st->subs)
         && n < NGX_HTTP_STREAMING_PIDS * 2;
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_streaming_sub_t, queue);

        if (sub->pid == ngx_pid) {
            continue;
        }

        for (j = 0; j < n; j++) {
            if (pids[j] == sub->pid) {
                break;
            }
        }

        if (j == n) {
            pids[n++] = sub->pid;
        }
    }

    return n;
}


void
ngx_http_streaming_store_set_status_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t status)
{
    zone->sh->streams[st->status]--;
    zone->sh->streams[status]++;
    st->status = (u_char) status;
    st->updated = ngx_http_streaming_store_now();
}


void
ngx_http_streaming_store_finish_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t status, ngx_str_t *code,
    ngx_str_t *message)
{
    size_t  len;

    if (st->status != NGX_HTTP_STREAMING_ACTIVE
        && st->status != NGX_HTTP_STREAMING_PAUSED)
    {
        return;
    }

    ngx_http_streaming_store_set_status_locked(zone, st, status);

    st->finished = st->updated;
    ngx_http_streaming_store_checkpoint_locked(st, st->finished);

    if (code) {
        len = ngx_min(code->len, NGX_HTTP_STREAMING_CODE_MAX);
        ngx_memcpy(st->code, code->data, len);
        st->code_len = (u_char) len;
    }

    if (message) {
        len = ngx_min(message->len, NGX_HTTP_STREAMING_ERROR_TEXT_MAX);
        ngx_memcpy(st->message, message->data, len);
        st->message_len = (u_char) len;
    }

    ngx_queue_remove(&st->queue);
    ngx_queue_insert_tail(&zone->sh->finished, &st->queue);
}


/*
 * How long until the stream is whole, at the rate it has come so far: -1
 * without a known total or any bytes yet.
 */
int64_t
ngx_http_streaming_store_remaining_ms(ngx_http_streaming_stream_t *st)
{
    uint64_t  elapsed;

    if (st->total_size < 0 || st->bytes == 0) {
        return -1;
    }

    if (st->status != NGX_HTTP_STREAMING_ACTIVE
        && st->status != NGX_HTTP_STREAMING_PAUSED)
    {
        return (st->status == NGX_HTTP_STREAMING_COMPLETED) ? 0 : -1;
    }

    if ((uint64_t) st->total_size <= st->bytes) {
        return 0;
    }

    elapsed = (st->updated > st->created) ? st->updated - st->created : 1;

    return (int64_t) (((uint64_t) st->total_size - st->bytes)
                      * elapsed / st->bytes);
}


/* pause or resume: a change that counts as activity for idle_timeout */
void
ngx_http_streaming_store_command_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t status)
{
    ngx_http_streaming_store_set_status_locked(zone, st, status);

    ngx_queue_remove(&st->queue);
    ngx_queue_insert_tail(&zone->sh->live, &st->queue);
}


/*
 * An acknowledgement of every chunk up to "sequence" by the subscriber
 * "subscriber" (acks are cumulative).  NGX_DECLINED: no such subscriber
 * that asked for acks; NGX_BUSY: beyond what it was sent.
 */
ngx_int_t
ngx_http_streaming_store_ack_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_str_t *subscriber,
    uint64_t sequence, const char **why)
{
    ngx_int_t                  n;
    ngx_queue_t               *q;
    ngx_http_streaming_sub_t  *sub;

    n = subscriber->len ? ngx_atoi(subscriber->data, subscriber->len)
                        : NGX_ERROR;

    for (q = ngx_queue_head(&st->subs);
         n != NGX_ERROR && q != ngx_queue_sentinel(&st->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_streaming_sub_t, queue);

        if (sub->id != (uint32_t) n || !sub->acks) {
            continue;
        }

        if (sequence > sub->cursor) {
            *why = "ack beyond what the subscriber was sent";
            return NGX_BUSY;
        }

        if (sequence > sub->acked) {
            sub->acked = sequence;
        }

        return NGX_OK;
    }

    *why = "no subscriber of the stream with that subscriberId asked "
           "for acks";

    return NGX_DECLINED;
}


void
ngx_http_streaming_store_checkpoint_locked(ngx_http_streaming_stream_t *st,
    uint64_t now)
{
    st->checkpoint_sequence = st->sequence;
    st->checkpoint_bytes = st->bytes;
    st->checkpoint_time = now;
}


/*
 * Ends streams idle for longer than idle_timeout and removes finished
 * streams older than ttl; a bounded amount of work per call, since the
 * zone is locked.  Returns how many streams it ended or removed; sets
 * zone->ended when an ended stream had subscribers to tell.
 */
ngx_uint_t
ngx_http_streaming_store_expire_locked(ngx_http_streaming_zone_t *zone,
    uint64_t now)
{
    ngx_uint_t                    n;
    ngx_queue_t                  *q;
    ngx_http_streaming_shctx_t   *sh;
    ngx_http_streaming_stream_t  *st;

    static ngx_str_t  idle = ngx_string("IDLE_TIMEOUT");
    static ngx_str_t  idle_message = ngx_string("nothing received for "
                                                "the idle timeout");

    sh = zone->sh;

    for (n = 0; n < 64 && zone->idle_timeout; n++) {
        if (ngx_queue_empty(&sh->live)) {
            break;
        }

        q = ngx_queue_head(&sh->live);
        st = ngx_queue_data(q, ngx_http_streaming_stream_t, queue);

        if (st->updated + zone->idle_timeout > now) {
            break;
        }

        if (st->subscribers) {
            /* they are told by this worker's next sweep */
            zone->ended = 1;
        }

        ngx_http_streaming_store_finish_locked(zone, st,
                                               NGX_HTTP_STREAMING_ERROR,
                                               &idle, &idle_message);
    }

    for ( /* void */ ; n < 128; n++) {
        if (ngx_queue_empty(&sh->finished)) {
            break;
        }

        q = ngx_queue_head(&sh->finished);
        st = ngx_queue_data(q, ngx_http_streaming_stream_t, queue);

        if (st->finished + zone->ttl > now) {
            break;
        }

        if (st->subscribers) {
            /* still read: it goes when its readers are done */
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&sh->finished, q);
            continue;
        }

        ngx_http_streaming_store_delete_locked(zone, st);
    }

    return n;
}


void
ngx_http_streaming_store_worker_add_locked(ngx_http_streaming_zone_t *zone,
    ngx_pid_t pid)
{
    ngx_uint_t   i;
    ngx_pid_t   *workers;

    workers = zone->sh->workers;

    for (i = 0; i < NGX_HTTP_STREAMING_WORKERS; i++) {
        /* a dead worker's slot is freed by reap, after its cleanup */

        if (workers[i] == 0) {
            workers[i] = pid;
            zone->sh->news_all &= ~((uint64_t) 1 << i);
            return;
        }
    }
}


/* the worker pid will be rung about the stream (NULL: about anything) */
void
ngx_http_streaming_store_news_locked(ngx_http_streaming_zone_t *zone,
    ngx_pid_t pid, void *st)
{
    uint64_t                     bit;
    ngx_uint_t                   i;
    ngx_http_streaming_shctx_t  *sh;

    sh = zone->sh;

    for (i = 0; i < NGX_HTTP_STREAMING_WORKERS; i++) {
        if (sh->workers[i] == pid) {
            break;
        }
    }

    if (i == NGX_HTTP_STREAMING_WORKERS) {
        /* not one of the zone's: its doorbell makes it look at all */
        return;
    }

    bit = (uint64_t) 1 << i;

    if (sh->news_all & bit) {
        return;
    }

    if (st == NULL || sh->nnews == NGX_HTTP_STREAMING_NEWS) {
        sh->news_all |= bit;
        return;
    }

    for (i = 0; i < sh->nnews; i++) {
        if (sh->news[i].pid == pid && sh->news[i].stream == st) {
            return;
        }
    }

    sh->news[sh->nnews].pid = pid;
    sh->news[sh->nnews].stream = st;
    sh->nnews++;
}


/* a dead worker's news goes */
static void
ngx_http_streaming_store_news_drop_locked(ngx_http_streaming_shctx_t *sh,
    ngx_pid_t pid)
{
    ngx_uint_t  i, j;

    for (i = 0, j = 0; i < sh->nnews; i++) {
        if (sh->news[i].pid != pid) {
            sh->news[j++] = sh->news[i];
        }
    }

    sh->nnews = j;
}


/*
 * This worker's news, taken: how many streams went to "streams"
 * (NGX_HTTP_STREAMING_NEWS at most), and *all when it must look at all.
 */
ngx_uint_t
ngx_http_streaming_store_news_take_locked(ngx_http_streaming_zone_t *zone,
    void **streams, ngx_uint_t *all)
{
    uint64_t                     bit;
    ngx_uint_t                   i, n;
    ngx_http_streaming_shctx_t  *sh;

    sh = zone->sh;

    for (i = 0; i < NGX_HTTP_STREAMING_WORKERS; i++) {
        if (sh->workers[i] == ngx_pid) {
            break;
        }
    }

    *all = 1;

    if (i < NGX_HTTP_STREAMING_WORKERS) {
        bit = (uint64_t) 1 << i;
        *all = (sh->news_all & bit) ? 1 : 0;
        sh->news_all &= ~bit;
    }

    n = 0;

    for (i = 0; i < sh->nnews; i++) {
        if (sh->news[i].pid == ngx_pid) {
            streams[n++] = sh->news[i].stream;
        }
    }

    ngx_http_streaming_store_news_drop_locked(sh, ngx_pid);

    return n;
}


/*
 * A worker that died (killed, crashed) leaves subscribers that will never
 * read again, holding history and maybe the producer, and maybe streams it
 * produced: the subscribers go, the streams end with PRODUCER_LOST.
 * Returns how many workers died; "live" gets the others, to be rung.
 */
ngx_uint_t
ngx_http_streaming_store_reap_locked(ngx_http_streaming_zone_t *zone,
    ngx_pid_t *live)
{
    ngx_pid_t                     dead;
    ngx_uint_t                    i, n, nlive;
    ngx_queue_t                  *q, *next;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_streaming_sub_t     *sub;
    ngx_http_streaming_shctx_t   *sh;
    ngx_http_streaming_stream_t  *st;

    static ngx_str_t  lost = ngx_string("PRODUCER_LOST");
    static ngx_str_t  lost_message = ngx_string("the worker producing the "
                                                "stream died");

    sh = zone->sh;
    n = 0;
    nlive = 0;

    for (i = 0; i < NGX_HTTP_STREAMING_WORKERS; i++) {
        if (sh->workers[i] == 0) {
            continue;
        }

        if (ngx_http_streaming_store_alive(sh->workers[i])) {
            live[nlive++] = sh->workers[i];
            continue;
        }

        dead = sh->workers[i];
        sh->workers[i] = 0;
        sh->news_all &= ~((uint64_t) 1 << i);
        ngx_http_streaming_store_news_drop_locked(sh, dead);
        n++;

        root = sh->rbtree.root;
        sentinel = sh->rbtree.sentinel;

        if (root == sentinel) {
            continue;
        }

        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&sh->rbtree, node))
        {
            st = (ngx_http_streaming_stream_t *) node;

            for (q = ngx_queue_head(&st->subs);
                 q != ngx_queue_sentinel(&st->subs);
                 q = next)
            {
                next = ngx_queue_next(q);
                sub = ngx_queue_data(q, ngx_http_streaming_sub_t, queue);

                if (sub->pid == dead) {
                    (void) ngx_http_streaming_store_sub_remove_locked(zone,
                                                                  st, sub);
                }
            }

            if (st->producer == dead) {
                ngx_http_streaming_store_finish_locked(zone, st,
                                                    NGX_HTTP_STREAMING_ERROR,
                                                    &lost, &lost_message);
            }
        }
    }

    return n;
}


static ngx_uint_t
ngx_http_streaming_store_alive(ngx_pid_t pid)
{
    return !(kill(pid, 0) == -1 && ngx_errno == NGX_ESRCH);
}


static void
ngx_http_streaming_store_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t           **p;
    ngx_http_streaming_stream_t  *a, *b;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            a = (ngx_http_streaming_stream_t *) node;
            b = (ngx_http_streaming_stream_t *) temp;

            p = (ngx_memn2cmp(a->id, b->id, a->id_len, b->id_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* finished streams that nobody reads give way to new data, oldest first */
static void *
ngx_http_streaming_store_alloc_locked(ngx_http_streaming_zone_t *zone,
    size_t size)
{
    void                         *p;
    ngx_queue_t                  *q, *next;
    ngx_http_streaming_stream_t  *st;

    p = ngx_slab_alloc_locked(zone->shpool, size);
    if (p) {
        return p;
    }

    for (q = ngx_queue_head(&zone->sh->finished);
         q != ngx_queue_sentinel(&zone->sh->finished);
         q = next)
    {
        next = ngx_queue_next(q);
        st = ngx_queue_data(q, ngx_http_streaming_stream_t, queue);

        if (st->subscribers) {
            continue;
        }

        ngx_http_streaming_store_delete_locked(zone, st);

        p = ngx_slab_alloc_locked(zone->shpool, size);
        if (p) {
            return p;
        }
    }

    return NULL;
}


static void
ngx_http_streaming_store_drop_head_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st)
{
    ngx_http_streaming_chunk_t  *chunk;

    chunk = st->head;

    st->head = chunk->next;

    if (st->head == NULL) {
        st->tail = NULL;
        st->first = st->sequence + 1;

    } else {
        st->first = st->head->sequence;
    }

    st->history -= chunk->len;

    ngx_slab_free_locked(zone->shpool, chunk);
}


/* the slowest subscriber's place; the stream's end when there is none */
static void
ngx_http_streaming_store_min_locked(ngx_http_streaming_stream_t *st,
    uint64_t *cursor, uint64_t *bytes)
{
    ngx_queue_t               *q;
    ngx_http_streaming_sub_t  *sub;

    *cursor = st->sequence;
    *bytes = st->bytes;

    for (q = ngx_queue_head(&st->subs);
         q != ngx_queue_sentinel(&st->subs);
         q = ngx_queue_next(q))
    {
        sub = ngx_queue_data(q, ngx_http_streaming_sub_t, queue);

        if (sub->cursor < *cursor) {
            *cursor = sub->cursor;
        }

        if (sub->bytes < *bytes) {
            *bytes = sub->bytes;
        }
    }

    st->min_cursor = *cursor;
}


/* a held producer goes on once the slowest backlog is down to half */
static ngx_uint_t
ngx_http_streaming_store_unhold_locked(
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_stream_t *st)
{
    uint64_t  min, bytes;

    if (!st->overflow) {
        return 0;
    }

    ngx_http_streaming_store_min_locked(st, &min, &bytes);

    if (st->bytes - bytes > zone->buffer / 2) {
        return 0;
    }

    st->overflow = 0;

    return 1;
}
