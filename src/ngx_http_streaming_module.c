
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_framing.h"
#include "ngx_http_streaming_format.h"
#include "ngx_http_streaming_producer.h"
#include "ngx_http_streaming_subscriber.h"
#include "ngx_http_streaming_status.h"
#include "ngx_http_streaming_control.h"
#include "ngx_http_streaming_publish.h"
#include "ngx_http_streaming_share.h"


#define NGX_HTTP_STREAMING_DEFAULT_BUFFER        (256 * 1024)
#define NGX_HTTP_STREAMING_DEFAULT_TTL           (5 * 60 * 1000)
#define NGX_HTTP_STREAMING_DEFAULT_IDLE_TIMEOUT  (5 * 60 * 1000)
#define NGX_HTTP_STREAMING_MIN_ZONE_PAGES        8

#define NGX_HTTP_STREAMING_DEFAULT_HEARTBEAT     15000
#define NGX_HTTP_STREAMING_DEFAULT_WINDOW        64
#define NGX_HTTP_STREAMING_DEFAULT_CHECKPOINT    10000
#define NGX_HTTP_STREAMING_DEFAULT_MAX_CHUNK     (1024 * 1024)
#define NGX_HTTP_STREAMING_DEFAULT_SEND_BUFFER   (256 * 1024)


static ngx_int_t ngx_http_streaming_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_streaming_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_streaming_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_streaming_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_streaming_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_streaming(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_framing(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_off_msec(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_conf_id(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_conf_enum(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_conf_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_conf_invalid(ngx_conf_t *cf,
    ngx_command_t *cmd);
static char *ngx_http_streaming_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_streaming_zone_param(ngx_conf_t *cf,
    ngx_http_streaming_zone_t *zone, ngx_str_t *value);
static ngx_int_t ngx_http_streaming_zone_resized(ngx_conf_t *cf,
    ngx_str_t *name, size_t size);
static char *ngx_http_streaming_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_subscribe(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_streaming_conf_number(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_streaming_conf_secret(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_streaming_endpoint(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_shm_zone_t *ngx_http_streaming_use_zone(ngx_conf_t *cf,
    ngx_str_t *name);
static ngx_int_t ngx_http_streaming_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_streaming_init_process(ngx_cycle_t *cycle);
static void ngx_http_streaming_exit_process(ngx_cycle_t *cycle);
static void ngx_http_streaming_sweep(ngx_event_t *ev);
static void ngx_http_streaming_reap(ngx_http_streaming_zone_t *zone,
    ngx_log_t *log);


/*
 * How often each worker ends idle streams and removes expired ones: a
 * quarter of the shortest ttl or idle_timeout, within these bounds.
 */
#define NGX_HTTP_STREAMING_SWEEP      1000
#define NGX_HTTP_STREAMING_SWEEP_MIN  100


static ngx_conf_enum_t  ngx_http_streaming_formats[] = {
    { ngx_string("passthrough"), NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH },
    { ngx_string("omni"), NGX_HTTP_STREAMING_FORMAT_OMNI },
    { ngx_string("ndjson"), NGX_HTTP_STREAMING_FORMAT_NDJSON },
    { ngx_string("jsonrpc"), NGX_HTTP_STREAMING_FORMAT_JSONRPC },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_streaming_overflows[] = {
    { ngx_string("pause"), NGX_HTTP_STREAMING_OVERFLOW_PAUSE },
    { ngx_string("evict"), NGX_HTTP_STREAMING_OVERFLOW_EVICT },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_streaming_commands[] = {

    { ngx_string("streaming_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_streaming_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("streaming"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("streaming_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_id,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, id),
      NULL },

    { ngx_string("streaming_framing"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_framing,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("streaming_format"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, format),
      &ngx_http_streaming_formats },

    { ngx_string("streaming_detach"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_off_msec,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, detach),
      NULL },

    { ngx_string("streaming_overflow"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_enum,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, overflow),
      &ngx_http_streaming_overflows },

    { ngx_string("streaming_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_number,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, window),
      NULL },

    { ngx_string("streaming_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_off_msec,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("streaming_checkpoint"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_off_msec,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, checkpoint),
      NULL },

    { ngx_string("streaming_max_chunk"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_size,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, max_chunk),
      NULL },

    { ngx_string("streaming_send_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_size,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, send_buffer),
      NULL },

    { ngx_string("streaming_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_conf_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, secret),
      NULL },

    { ngx_string("streaming_subscribe"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_subscribe,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("streaming_control"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, control),
      ngx_http_streaming_control_handler },

    { ngx_string("streaming_publish"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_streaming_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_streaming_loc_conf_t, publish),
      ngx_http_streaming_publish_handler },

    { ngx_string("streaming_status"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_streaming_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_streaming_module_ctx = {
    ngx_http_streaming_preconfiguration,   /* preconfiguration */
    ngx_http_streaming_postconfiguration,  /* postconfiguration */

    ngx_http_streaming_create_main_conf,   /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_streaming_create_loc_conf,    /* create location configuration */
    ngx_http_streaming_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_streaming_module = {
    NGX_MODULE_V1,
    &ngx_http_streaming_module_ctx,        /* module context */
    ngx_http_streaming_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_streaming_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_streaming_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_STREAMING_VAR_ID          0
#define NGX_HTTP_STREAMING_VAR_TOKEN       1
#define NGX_HTTP_STREAMING_VAR_SEQUENCE    2
#define NGX_HTTP_STREAMING_VAR_CHUNKS      3
#define NGX_HTTP_STREAMING_VAR_BYTES       4
#define NGX_HTTP_STREAMING_VAR_STATUS      5
#define NGX_HTTP_STREAMING_VAR_RESUMED     6
#define NGX_HTTP_STREAMING_VAR_FIRST       7


static ngx_http_variable_t  ngx_http_streaming_vars[] = {

    { ngx_string("streaming_id"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_token"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_TOKEN, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_sequence"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_SEQUENCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_chunks"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_CHUNKS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_bytes"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_BYTES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_status"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_resumed_from"), NULL, ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_RESUMED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("streaming_first_chunk_ms"), NULL,
      ngx_http_streaming_variable,
      NGX_HTTP_STREAMING_VAR_FIRST, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_streaming_preconfiguration(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_streaming_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* every zone used is declared; filters are installed only when used */
static ngx_int_t
ngx_http_streaming_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                       i;
    ngx_shm_zone_t                 **used;
    ngx_http_streaming_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_streaming_module);

    used = smcf->used.elts;

    for (i = 0; i < smcf->used.nelts; i++) {
        if (used[i]->data == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown streaming_zone \"%V\"",
                               &used[i]->shm.name);
            return NGX_ERROR;
        }
    }

    if (smcf->producers) {
        return ngx_http_streaming_producer_init(cf);
    }

    return NGX_OK;
}


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

    if (ngx_array_init(&smcf->used, cf->pool, 2, sizeof(ngx_shm_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return smcf;
}


static void *
ngx_http_streaming_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_streaming_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_streaming_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->id = NULL;
     */

    slcf->zone = NGX_CONF_UNSET_PTR;
    slcf->framing = NGX_CONF_UNSET_UINT;
    slcf->bytes_size = NGX_CONF_UNSET_SIZE;
    slcf->format = NGX_CONF_UNSET_UINT;
    slcf->detach = NGX_CONF_UNSET_MSEC;
    slcf->overflow = NGX_CONF_UNSET_UINT;
    slcf->heartbeat = NGX_CONF_UNSET_MSEC;
    slcf->checkpoint = NGX_CONF_UNSET_MSEC;
    slcf->max_chunk = NGX_CONF_UNSET_SIZE;
    slcf->send_buffer = NGX_CONF_UNSET_SIZE;
    slcf->window = NGX_CONF_UNSET_UINT;

    return slcf;
}


static char *
ngx_http_streaming_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_streaming_loc_conf_t *prev = parent;
    ngx_http_streaming_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->zone, prev->zone, NULL);

    if (conf->id == NULL) {
        conf->id = prev->id;
    }

    if (conf->framing == NGX_CONF_UNSET_UINT) {
        conf->framing = prev->framing;
        conf->bytes_size = prev->bytes_size;
    }

    ngx_conf_merge_uint_value(conf->framing, prev->framing,
                              NGX_HTTP_STREAMING_FRAMING_AUTO);
    ngx_conf_merge_size_value(conf->bytes_size, prev->bytes_size,
                              NGX_HTTP_STREAMING_FRAMING_BYTES_SIZE);
    ngx_conf_merge_uint_value(conf->format, prev->format,
                              NGX_HTTP_STREAMING_FORMAT_PASSTHROUGH);
    ngx_conf_merge_msec_value(conf->detach, prev->detach, 0);
    ngx_conf_merge_uint_value(conf->overflow, prev->overflow,
                              NGX_HTTP_STREAMING_OVERFLOW_PAUSE);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat,
                              NGX_HTTP_STREAMING_DEFAULT_HEARTBEAT);
    ngx_conf_merge_msec_value(conf->checkpoint, prev->checkpoint,
                              NGX_HTTP_STREAMING_DEFAULT_CHECKPOINT);
    ngx_conf_merge_size_value(conf->max_chunk, prev->max_chunk,
                              NGX_HTTP_STREAMING_DEFAULT_MAX_CHUNK);
    ngx_conf_merge_size_value(conf->send_buffer, prev->send_buffer,
                              NGX_HTTP_STREAMING_DEFAULT_SEND_BUFFER);
    ngx_conf_merge_uint_value(conf->window, prev->window,
                              NGX_HTTP_STREAMING_DEFAULT_WINDOW);
    ngx_conf_merge_str_value(conf->secret, prev->secret, "");

    if (conf->framing == NGX_HTTP_STREAMING_FRAMING_BYTES
        && conf->bytes_size > conf->max_chunk)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "streaming_framing bytes=%uz exceeds "
                           "streaming_max_chunk %uz",
                           conf->bytes_size, conf->max_chunk);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_streaming(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_streaming_loc_conf_t *slcf = conf;

    ngx_str_t                        *value;
    ngx_shm_zone_t                   *shm_zone;
    ngx_http_streaming_main_conf_t   *smcf;

    if (slcf->zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->zone = NULL;
        return NGX_CONF_OK;
    }

    shm_zone = ngx_http_streaming_use_zone(cf, &value[1]);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_streaming_module);
    smcf->producers++;

    slcf->zone = shm_zone;

    return NGX_CONF_OK;
}


/* auto | sse | lines | bytes[=size] */
static char *
ngx_http_streaming_framing(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_streaming_loc_conf_t *slcf = conf;

    ssize_t     size;
    ngx_str_t  *value, s;

    if (slcf->framing != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "auto") == 0) {
        slcf->framing = NGX_HTTP_STREAMING_FRAMING_AUTO;

    } else if (ngx_strcmp(value[1].data, "sse") == 0) {
        slcf->framing = NGX_HTTP_STREAMING_FRAMING_SSE;

    } else if (ngx_strcmp(value[1].data, "lines") == 0) {
        slcf->framing = NGX_HTTP_STREAMING_FRAMING_LINES;

    } else if (ngx_strcmp(value[1].data, "bytes") == 0) {
        slcf->framing = NGX_HTTP_STREAMING_FRAMING_BYTES;

    } else if (ngx_strncmp(value[1].data, "bytes=", 6) == 0) {
        s.data = value[1].data + 6;
        s.len = value[1].len - 6;

        size = ngx_parse_size(&s);
        if (size == NGX_ERROR || size == 0) {
            goto invalid;
        }

        slcf->framing = NGX_HTTP_STREAMING_FRAMING_BYTES;
        slcf->bytes_size = size;

    } else {
        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid streaming_framing \"%V\", expected auto, "
                       "sse, lines, bytes or bytes=size", &value[1]);
    return NGX_CONF_ERROR;
}


/* off | time; off is 0 */
static char *
ngx_http_streaming_off_msec(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_msec_t  *msp;

    msp = (ngx_msec_t *) (p + cmd->offset);

    if (*msp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *msp = 0;
        return NGX_CONF_OK;
    }

    *msp = ngx_parse_time(&value[1], 0);

    if (*msp == (ngx_msec_t) NGX_ERROR || *msp == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %V \"%V\", expected off or a time",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
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
    for (i = 0; i < NGX_HTTP_STREAMING_WAIT_BUCKETS; i++) {
        ngx_queue_init(&zone->waiters[i]);
    }

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


/* a constant id is checked now, an id from variables for each request */
static char *
ngx_http_streaming_conf_id(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                      *rv;
    ngx_http_complex_value_t  *cv;

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    cv = *(ngx_http_complex_value_t **) ((char *) conf + cmd->offset);

    if (cv->lengths == NULL
        && !ngx_http_streaming_id_valid(cv->value.data, cv->value.len))
    {
        return ngx_http_streaming_conf_invalid(cf, cmd);
    }

    return NGX_CONF_OK;
}


/*
 * The stock slots, with a message that names the directive and the value
 * (theirs name one or the other).
 */
static char *
ngx_http_streaming_conf_enum(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t        *value;
    ngx_conf_enum_t  *e;

    value = cf->args->elts;

    for (e = cmd->post; e->name.len; e++) {
        if (e->name.len == value[1].len
            && ngx_strcmp(e->name.data, value[1].data) == 0)
        {
            return ngx_conf_set_enum_slot(cf, cmd, conf);
        }
    }

    return ngx_http_streaming_conf_invalid(cf, cmd);
}


static char *
ngx_http_streaming_conf_size(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t     size;
    ngx_str_t  *value;

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size == 0) {
        return ngx_http_streaming_conf_invalid(cf, cmd);
    }

    return ngx_conf_set_size_slot(cf, cmd, conf);
}


/* a positive number */
static char *
ngx_http_streaming_conf_number(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_int_t   n;
    ngx_str_t  *value;

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n == 0) {
        return ngx_http_streaming_conf_invalid(cf, cmd);
    }

    return ngx_conf_set_num_slot(cf, cmd, conf);
}


/* an HMAC key: not empty */
static char *
ngx_http_streaming_conf_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return ngx_http_streaming_conf_invalid(cf, cmd);
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);
}


/*
 * streaming_control, streaming_publish: a location that works on the
 * streams of a zone; cmd->post is its content handler.
 */
static char *
ngx_http_streaming_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                 *value;
    ngx_shm_zone_t           **field;
    ngx_http_core_loc_conf_t  *clcf;

    field = (ngx_shm_zone_t **) (p + cmd->offset);

    if (*field) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *field = ngx_http_streaming_use_zone(cf, &value[1]);
    if (*field == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = (ngx_http_handler_pt) cmd->post;

    return NGX_CONF_OK;
}


static char *
ngx_http_streaming_conf_invalid(ngx_conf_t *cf, ngx_command_t *cmd)
{
    ngx_str_t  *value;

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %V \"%V\"",
                       &cmd->name, &value[1]);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_streaming_subscribe(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_streaming_loc_conf_t *slcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (slcf->subscribe) {
        return "is duplicate";
    }

    value = cf->args->elts;

    slcf->subscribe = ngx_http_streaming_use_zone(cf, &value[1]);
    if (slcf->subscribe == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_streaming_subscriber_handler;

    return NGX_CONF_OK;
}


/* a zone named by a location, maybe declared later in the configuration */
static ngx_shm_zone_t *
ngx_http_streaming_use_zone(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_shm_zone_t                  *shm_zone, **used;
    ngx_http_streaming_main_conf_t  *smcf;

    shm_zone = ngx_shared_memory_add(cf, name, 0, &ngx_http_streaming_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_streaming_module);

    used = ngx_array_push(&smcf->used);
    if (used == NULL) {
        return NULL;
    }

    *used = shm_zone;

    return shm_zone;
}


static char *
ngx_http_streaming_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_streaming_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_streaming_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_event_t                      *ev;
    ngx_http_streaming_zone_t       **zones;
    ngx_http_streaming_main_conf_t   *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_streaming_module);

    if (smcf == NULL || smcf->zones.nelts == 0) {
        return NGX_OK;
    }

    zones = smcf->zones.elts;

    for (i = 0; i < smcf->zones.nelts; i++) {
        if (ngx_http_streaming_subscriber_init_process(cycle, zones[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /*
         * a worker respawned after a crash starts here: the one it replaces
         * is cleaned up first
         */
        ngx_http_streaming_reap(zones[i], cycle->log);

        ngx_http_streaming_store_lock(zones[i]);
        ngx_http_streaming_store_worker_add_locked(zones[i], ngx_pid);
        ngx_http_streaming_store_unlock(zones[i]);
    }

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_http_streaming_sweep;
    ev->data = smcf;
    ev->log = cycle->log;
    ev->cancelable = 1;

    smcf->sweep = NGX_HTTP_STREAMING_SWEEP;

    for (i = 0; i < smcf->zones.nelts; i++) {
        if (zones[i]->ttl) {
            smcf->sweep = ngx_min(smcf->sweep, zones[i]->ttl / 4);
        }

        if (zones[i]->idle_timeout) {
            smcf->sweep = ngx_min(smcf->sweep, zones[i]->idle_timeout / 4);
        }
    }

    smcf->sweep = ngx_max(smcf->sweep, NGX_HTTP_STREAMING_SWEEP_MIN);

    ngx_add_timer(ev, smcf->sweep);

    return NGX_OK;
}


/*
 * Streams whose producer is gone (a worker killed, a request lost) would
 * otherwise never end: every worker sweeps the zones now and then.
 */
static void
ngx_http_streaming_sweep(ngx_event_t *ev)
{
    uint64_t                          now;
    ngx_pid_t                         pids[NGX_HTTP_STREAMING_WORKERS];
    ngx_uint_t                        i, k, n;
    ngx_http_streaming_zone_t        *zone, **zones;
    ngx_http_streaming_main_conf_t   *smcf;

    if (ngx_exiting) {
        return;
    }

    smcf = ev->data;
    zones = smcf->zones.elts;
    now = ngx_http_streaming_store_now();

    for (i = 0; i < smcf->zones.nelts; i++) {
        zone = zones[i];

        ngx_http_streaming_store_lock(zone);

        (void) ngx_http_streaming_store_expire_locked(zone, now);

        n = 0;

        if (zone->ended) {
            /* streams that ended idle: every worker's readers look */
            zone->ended = 0;

            for (k = 0; k < NGX_HTTP_STREAMING_WORKERS; k++) {
                if (zone->sh->workers[k]) {
                    pids[n++] = zone->sh->workers[k];
                }
            }
        }

        ngx_http_streaming_store_unlock(zone);

        if (n) {
            ngx_http_streaming_ring(zone, NULL, pids, n);
        }

        ngx_http_streaming_reap(zone, ev->log);
    }

    ngx_add_timer(ev, smcf->sweep);
}


static void
ngx_http_streaming_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_streaming_zone_t       **zones;
    ngx_http_streaming_main_conf_t   *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_streaming_module);

    if (smcf == NULL) {
        return;
    }

    zones = smcf->zones.elts;

    for (i = 0; i < smcf->zones.nelts; i++) {
        ngx_http_streaming_subscriber_exit_process(zones[i]);
    }

    ngx_http_streaming_share_exit();
}


/* the $streaming_* variables, from either kind of request */
static ngx_int_t
ngx_http_streaming_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                        *p;
    ngx_str_t                     *s;
    ngx_http_streaming_request_t  *req;

    req = ngx_http_get_module_ctx(r->main, ngx_http_streaming_module);

    if (req == NULL || req->id.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    switch (data) {

    case NGX_HTTP_STREAMING_VAR_ID:
        v->len = req->id.len;
        v->data = req->id.data;
        return NGX_OK;

    case NGX_HTTP_STREAMING_VAR_TOKEN:
        v->len = req->token.len;
        v->data = req->token.data;
        return NGX_OK;

    case NGX_HTTP_STREAMING_VAR_STATUS:
        s = &ngx_http_streaming_status_names[req->status];
        v->len = s->len;
        v->data = s->data;
        return NGX_OK;

    case NGX_HTTP_STREAMING_VAR_RESUMED:
        if (req->resumed_from < 0) {
            v->len = 0;
            v->data = (u_char *) "";
            return NGX_OK;
        }

        break;

    case NGX_HTTP_STREAMING_VAR_FIRST:
        if (req->first_chunk_ms < 0) {
            v->len = 0;
            v->data = (u_char *) "";
            return NGX_OK;
        }

        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    switch (data) {

    case NGX_HTTP_STREAMING_VAR_SEQUENCE:
        v->len = ngx_sprintf(p, "%uL", req->sequence) - p;
        break;

    case NGX_HTTP_STREAMING_VAR_CHUNKS:
        v->len = ngx_sprintf(p, "%uL", req->chunks) - p;
        break;

    case NGX_HTTP_STREAMING_VAR_BYTES:
        v->len = ngx_sprintf(p, "%uL", req->bytes) - p;
        break;

    case NGX_HTTP_STREAMING_VAR_RESUMED:
        v->len = ngx_sprintf(p, "%L", req->resumed_from) - p;
        break;

    default: /* NGX_HTTP_STREAMING_VAR_FIRST */
        v->len = ngx_sprintf(p, "%M", (ngx_msec_t) req->first_chunk_ms) - p;
        break;
    }

    return NGX_OK;
}


/* workers that died: their subscribers and streams end, the others look */
static void
ngx_http_streaming_reap(ngx_http_streaming_zone_t *zone, ngx_log_t *log)
{
    ngx_pid_t   live[NGX_HTTP_STREAMING_WORKERS];
    ngx_uint_t  n, dead;

    ngx_memzero(live, sizeof(live));

    ngx_http_streaming_store_lock(zone);
    dead = ngx_http_streaming_store_reap_locked(zone, live);
    ngx_http_streaming_store_unlock(zone);

    if (dead == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "streaming: %ui worker(s) of zone \"%V\" died, their "
                  "subscribers and streams were ended", dead, &zone->name);

    for (n = 0; n < NGX_HTTP_STREAMING_WORKERS && live[n]; n++) {
        /* void */
    }

    ngx_http_streaming_ring(zone, NULL, live, n);
}
