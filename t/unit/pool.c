
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "pool.h"


ngx_uint_t  ngx_http_streaming_test_pool_left = (ngx_uint_t) -1;
ngx_uint_t  ngx_http_streaming_test_pool_allocs;


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *pool;

    pool = calloc(1, sizeof(ngx_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->max = size;
    pool->current = pool;
    pool->log = log;

    return pool;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t  *l, *next;

    for (l = pool->large; l; l = next) {
        next = l->next;
        free(l->alloc);
        free(l);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    ngx_pool_large_t  *l;

    if (ngx_http_streaming_test_pool_left == 0) {
        return NULL;
    }

    if (ngx_http_streaming_test_pool_left != (ngx_uint_t) -1) {
        ngx_http_streaming_test_pool_left--;
    }

    l = malloc(sizeof(ngx_pool_large_t));
    if (l == NULL) {
        return NULL;
    }

    /* malloc(0) may answer NULL: ask for at least a byte */

    l->alloc = malloc(size ? size : 1);
    if (l->alloc == NULL) {
        free(l);
        return NULL;
    }

    l->next = pool->large;
    pool->large = l;

    ngx_http_streaming_test_pool_allocs++;

    return l->alloc;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}
