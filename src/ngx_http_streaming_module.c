
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_status.h"


#define NGX_HTTP_STREAMING_DEFAULT_BUFFER        (256 * 1024)
#define NGX_HTTP_STREAMING_DEFAULT_TTL           (5 * 60 * 1000)
#define NGX_HTTP_STREAMING_DEFAULT_IDLE_TIMEOUT  (5 * 60 * 1000)
#define NGX_HTTP_STREAMING_MIN_ZONE_PAGES        8


static void *ngx_http_streaming_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_streaming_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_streaming_zone_param(ngx_conf_t *cf,
    ngx_http_streaming_zone_t *zone, ngx_str_t *value);
static ngx_int_t ngx_http_streaming_zone_resized(ngx_conf_t *cf,
    ngx_str_t *name, size_t size);
static char *ngx_http_streaming_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_streaming_commands[] = {

    { ngx_string("streaming_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_streaming_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("streaming_status"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_streaming_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_streaming_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_streaming_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_streaming_module = {
    NGX_MODULE_V1,
    &ngx_http_streaming_module_ctx,        /* module context */
    ngx_http_streaming_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_streaming_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_streaming_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_streaming_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&smcf->zones, cf->pool, 2,
                       sizeof(ngx_http_streaming_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static char *
ngx_http_streaming_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_streaming_main_conf_t *smcf = conf;

    u_char                      *p;
    ssize_t                      size;
    ngx_str_t                   *value;
    ngx_uint_t                   i;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_streaming_zone_t   *zone, **zonep;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > 64) {
        goto invalid_name;
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
              || *p == '.'))
        {
            goto invalid_name;
        }
    }

    zonep = smcf->zones.elts;

    for (i = 0; i < smcf->zones.nelts; i++) {
        if (zonep[i]->name.len == value[1].len
            && ngx_strncmp(zonep[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate streaming_zone \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid streaming_zone size \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (NGX_HTTP_STREAMING_MIN_ZONE_PAGES * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "streaming_zone \"%V\" size \"%V\" is too small, "
                           "the minimum is %uzk", &value[1], &value[2],
                           NGX_HTTP_STREAMING_MIN_ZONE_PAGES * ngx_pagesize
                           / 1024);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_streaming_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->name = value[1];
    zone->size = size;
    zone->buffer = NGX_HTTP_STREAMING_DEFAULT_BUFFER;
    zone->ttl = NGX_HTTP_STREAMING_DEFAULT_TTL;
    zone->idle_timeout = NGX_HTTP_STREAMING_DEFAULT_IDLE_TIMEOUT;

    for (i = 3; i < cf->args->nelts; i++) {
        if (ngx_http_streaming_zone_param(cf, zone, &value[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (zone->buffer > (size_t) size / 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "streaming_zone \"%V\" buffer %uz does not fit "
                           "twice in the zone's size \"%V\"",
                           &value[1], zone->buffer, &value[2]);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_streaming_zone_resized(cf, &value[1], size) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_http_streaming_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "streaming_zone \"%V\" is already declared",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_streaming_store_init_zone;
    shm_zone->data = zone;
    zone->shm_zone = shm_zone;

    zonep = ngx_array_push(&smcf->zones);
    if (zonep == NULL) {
        return NGX_CONF_ERROR;
    }

    *zonep = zone;

    return NGX_CONF_OK;

invalid_name:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid streaming_zone name \"%V\", "
                       "1-64 characters of [A-Za-z0-9_.-] expected",
                       &value[1]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_streaming_zone_param(ngx_conf_t *cf, ngx_http_streaming_zone_t *zone,
    ngx_str_t *value)
{
    ssize_t     size;
    ngx_int_t   n;
    ngx_str_t   s, name;
    ngx_msec_t  ms;

    s.data = (u_char *) ngx_strlchr(value->data, value->data + value->len,
                                    '=');
    if (s.data == NULL) {
        goto invalid;
    }

    name.data = value->data;
    name.len = s.data - value->data;

    s.data++;
    s.len = value->data + value->len - s.data;

    if (s.len == 0) {
        goto invalid;
    }

    if (name.len == 11
        && ngx_strncmp(name.data, "max_streams", 11) == 0)
    {
        n = ngx_atoi(s.data, s.len);
        if (n == NGX_ERROR) {
            goto invalid;
        }

        zone->max_streams = n;
        return NGX_OK;
    }

    if (name.len == 15
        && ngx_strncmp(name.data, "max_subscribers", 15) == 0)
    {
        n = ngx_atoi(s.data, s.len);
        if (n == NGX_ERROR) {
            goto invalid;
        }

        zone->max_subscribers = n;
        return NGX_OK;
    }

    if (name.len == 6 && ngx_strncmp(name.data, "buffer", 6) == 0) {
        size = ngx_parse_size(&s);
        if (size == NGX_ERROR || size < 1024) {
            goto invalid;
        }

        zone->buffer = size;
        return NGX_OK;
    }

    if ((name.len == 3 && ngx_strncmp(name.data, "ttl", 3) == 0)
        || (name.len == 12 && ngx_strncmp(name.data, "idle_timeout", 12) == 0))
    {
        ms = ngx_parse_time(&s, 0);
        if (ms == (ngx_msec_t) NGX_ERROR) {
            goto invalid;
        }

        if (name.len == 3) {
            zone->ttl = ms;

        } else {
            zone->idle_timeout = ms;
        }

        return NGX_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid streaming_zone parameter \"%V\"", value);
    return NGX_ERROR;
}


/*
 * nginx quietly replaces a zone whose size changed, and every stream in it
 * would be lost: refuse such a reload instead, so the running configuration
 * keeps serving.
 */
static ngx_int_t
ngx_http_streaming_zone_resized(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *shm_zone;

    if (cf->cycle->old_cycle == NULL) {
        return NGX_OK;
    }

    part = &cf->cycle->old_cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_OK;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != &ngx_http_streaming_module
            || shm_zone[i].shm.name.len != name->len
            || ngx_strncmp(shm_zone[i].shm.name.data, name->data, name->len)
               != 0)
        {
            continue;
        }

        if (shm_zone[i].shm.size == size) {
            return NGX_OK;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "streaming_zone \"%V\" cannot change its size "
                           "from %uz to %uz on reload, restart nginx to "
                           "resize it", name, shm_zone[i].shm.size, size);
        return NGX_ERROR;
    }
}


static char *
ngx_http_streaming_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_streaming_status_handler;

    return NGX_CONF_OK;
}
