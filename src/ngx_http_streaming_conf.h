
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


typedef struct {
    ngx_array_t                     zones;  /* ngx_http_streaming_zone_t * */
} ngx_http_streaming_main_conf_t;


extern ngx_module_t  ngx_http_streaming_module;


#endif /* _NGX_HTTP_STREAMING_CONF_H_INCLUDED_ */
