
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_TEST_POOL_H_INCLUDED_
#define _NGX_HTTP_STREAMING_TEST_POOL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * A stand-in for the nginx pool functions that leaves call, for the unit
 * programs and fuzz targets, which link no nginx object (the nginx-dev tree
 * has headers only).  Every allocation is a malloc() of its own, so that
 * AddressSanitizer sees any access past it; ngx_destroy_pool() frees all.
 */


/* allocations that succeed before every later one fails; -1: no limit */
extern ngx_uint_t  ngx_http_streaming_test_pool_left;

/* allocations made so far, all pools */
extern ngx_uint_t  ngx_http_streaming_test_pool_allocs;


#endif /* _NGX_HTTP_STREAMING_TEST_POOL_H_INCLUDED_ */
