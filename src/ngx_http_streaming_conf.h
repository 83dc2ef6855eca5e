
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_CONF_H_INCLUDED_
#define _NGX_HTTP_STREAMING_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_store.h"


/*
 * The module's configuration types, shared by the request-facing parts.
 * The directives that fill them live in ngx_http_streaming_module.c.
 */


#define NGX_HTTP_STREAMING_VERSION  "0.1.0"


typedef enum {
    NGX_HTTP_STREAMING_OVERFLOW_PAUSE = 0,
    NGX_HTTP_STREAMING_OVERFLOW_EVICT
} ngx_http_streaming_overflow_e;


typedef struct {
    ngx_array_t                     zones;  /* ngx_http_streaming_zone_t * */
    ngx_array_t                     used;   /* ngx_shm_zone_t *, by name */
    ngx_uint_t                      producers;
    ngx_msec_t                      sweep;
} ngx_http_streaming_main_conf_t;


/*
 * What every request of the module (producer, subscriber) keeps about its
 * stream, for the $streaming_* variables: the first member of their ctx.
 */
typedef struct {
    ngx_str_t                       id;
    ngx_str_t                       token;
    uint64_t                        sequence;   /* last sent to the client */
    uint64_t                        chunks;
    uint64_t                        bytes;
    int64_t                         resumed_from;    /* -1: not a resume */
    ngx_msec_int_t                  first_chunk_ms;  /* -1: none yet */
    ngx_uint_t                      status;
    unsigned                        producer:1; /* else a subscriber */
} ngx_http_streaming_request_t;


typedef struct {
    ngx_shm_zone_t                 *zone;         /* streaming */
    ngx_shm_zone_t                 *subscribe;    /* streaming_subscribe */
    ngx_shm_zone_t                 *control;      /* streaming_control */
    ngx_shm_zone_t                 *publish;      /* streaming_publish */
    ngx_http_complex_value_t       *id;
    ngx_uint_t                      framing;
    size_t                          bytes_size;
    ngx_uint_t                      format;
    ngx_msec_t                      detach;
    ngx_uint_t                      overflow;
    ngx_msec_t                      heartbeat;
    ngx_msec_t                      checkpoint;
    size_t                          max_chunk;
    size_t                          send_buffer;
    ngx_uint_t                      window;
    ngx_str_t                       secret;
} ngx_http_streaming_loc_conf_t;


extern ngx_module_t  ngx_http_streaming_module;


#endif /* _NGX_HTTP_STREAMING_CONF_H_INCLUDED_ */
