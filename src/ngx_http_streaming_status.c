
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_json.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_status.h"


typedef enum {
    NGX_HTTP_STREAMING_STATUS_TEXT = 0,
    NGX_HTTP_STREAMING_STATUS_JSON,
    NGX_HTTP_STREAMING_STATUS_PROMETHEUS
} ngx_http_streaming_status_format_e;


typedef struct {
    const char                        *name;
    const char                        *type;
    const char                        *help;
    size_t                             offset;  /* of a uint64_t */
} ngx_http_streaming_metric_t;


static ngx_int_t ngx_http_streaming_status_format(ngx_http_request_t *r,
    ngx_http_streaming_status_format_e *format);
static void ngx_http_streaming_status_text(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_zone_stats_t *st);
static void ngx_http_streaming_status_json(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_zone_stats_t *st);
static void ngx_http_streaming_status_streams(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_uint_t json);
static ngx_int_t ngx_http_streaming_status_one(ngx_http_request_t *r,
    ngx_str_t *id);
static void ngx_http_streaming_status_prometheus(
    ngx_http_streaming_out_t *out, ngx_http_streaming_zone_t **zones,
    ngx_http_streaming_zone_stats_t *stats, ngx_uint_t n);


static ngx_str_t  ngx_http_streaming_status_types[] = {
    ngx_string("text/plain"),
    ngx_string("application/json"),
    ngx_string("text/plain; version=0.0.4; charset=utf-8")
};


#define ngx_http_streaming_stat(field)                                      \
    offsetof(ngx_http_streaming_zone_stats_t, field)

/* the first one is labelled by status, the others by zone only */
static ngx_http_streaming_metric_t  ngx_http_streaming_metrics[] = {
    { "nginx_streaming_streams", "gauge",
      "Streams in the zone by status.",
      ngx_http_streaming_stat(streams) },
    { "nginx_streaming_subscribers", "gauge",
      "Subscribers attached to streams in the zone.",
      ngx_http_streaming_stat(subscribers) },
    { "nginx_streaming_streams_created_total", "counter",
      "Streams created in the zone.",
      ngx_http_streaming_stat(created) },
    { "nginx_streaming_chunks_total", "counter",
      "Chunks stored in the zone.",
      ngx_http_streaming_stat(chunks) },
    { "nginx_streaming_bytes_total", "counter",
      "Chunk bytes stored in the zone.",
      ngx_http_streaming_stat(bytes) },
    { "nginx_streaming_resumes_total", "counter",
      "Subscriptions that resumed from a sequence number.",
      ngx_http_streaming_stat(resumes) },
    { "nginx_streaming_evicted_chunks_total", "counter",
      "Chunks dropped before every subscriber had received them.",
      ngx_http_streaming_stat(evicted_chunks) },
    { "nginx_streaming_rejected_total", "counter",
      "Requests refused by a limit of the zone.",
      ngx_http_streaming_stat(rejected) },
    { "nginx_streaming_zone_used_bytes", "gauge",
      "Bytes of the shared memory zone in use.",
      ngx_http_streaming_stat(used) },
    { "nginx_streaming_zone_size_bytes", "gauge",
      "Size of the shared memory zone in bytes.",
      ngx_http_streaming_stat(size) },
    { NULL, NULL, NULL, 0 }
};


ngx_int_t
ngx_http_streaming_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                            rc;
    ngx_str_t                            value;
    ngx_uint_t                           i, n, list;
    ngx_http_streaming_out_t             out;
    ngx_http_streaming_zone_t          **zones;
    ngx_http_streaming_main_conf_t      *smcf;
    ngx_http_streaming_zone_stats_t     *stats;
    ngx_http_streaming_status_format_e   format;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_streaming_status_format(r, &format) != NGX_OK) {
        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "INVALID_MESSAGE",
                                             "unknown status format");
    }

    if (ngx_http_arg(r, (u_char *) "id", 2, &value) == NGX_OK) {
        return ngx_http_streaming_status_one(r, &value);
    }

    list = (ngx_http_arg(r, (u_char *) "streams", 7, &value) == NGX_OK
            && value.len == 1 && value.data[0] == '1');

    smcf = ngx_http_get_module_main_conf(r, ngx_http_streaming_module);

    zones = smcf->zones.elts;
    n = smcf->zones.nelts;

    stats = ngx_pcalloc(r->pool,
                        (n ? n : 1) * sizeof(ngx_http_streaming_zone_stats_t));
    if (stats == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        ngx_http_streaming_store_stats(zones[i], &stats[i]);
    }

    ngx_http_streaming_out_init(&out, r->pool);

    switch (format) {

    case NGX_HTTP_STREAMING_STATUS_JSON:
        ngx_http_streaming_out_literal(&out,
                             "{\"version\":\"" NGX_HTTP_STREAMING_VERSION "\","
                             "\"nginx_version\":\"" NGINX_VERSION "\","
                             "\"zones\":{");

        for (i = 0; i < n; i++) {
            if (i) {
                ngx_http_streaming_out_literal(&out, ",");
            }

            ngx_http_streaming_status_json(&out, zones[i], &stats[i]);

            if (list) {
                ngx_http_streaming_status_streams(&out, zones[i], 1);
            }

            ngx_http_streaming_out_literal(&out, "}");
        }

        ngx_http_streaming_out_literal(&out, "}}\n");
        break;

    case NGX_HTTP_STREAMING_STATUS_PROMETHEUS:
        ngx_http_streaming_status_prometheus(&out, zones, stats, n);
        break;

    default: /* NGX_HTTP_STREAMING_STATUS_TEXT */
        ngx_http_streaming_out_printf(&out, "Streaming zones: %ui\n", n);

        for (i = 0; i < n; i++) {
            ngx_http_streaming_status_text(&out, zones[i], &stats[i]);

            if (list) {
                ngx_http_streaming_status_streams(&out, zones[i], 0);
            }
        }
    }

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_streaming_send(r, NGX_HTTP_OK,
                                   &ngx_http_streaming_status_types[format],
                                   out.first, out.size);
}


static ngx_int_t
ngx_http_streaming_status_format(ngx_http_request_t *r,
    ngx_http_streaming_status_format_e *format)
{
    ngx_str_t         value;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "format", 6, &value) == NGX_OK) {

        if (value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0) {
            *format = NGX_HTTP_STREAMING_STATUS_JSON;
            return NGX_OK;
        }

        if (value.len == 10
            && ngx_strncmp(value.data, "prometheus", 10) == 0)
        {
            *format = NGX_HTTP_STREAMING_STATUS_PROMETHEUS;
            return NGX_OK;
        }

        if ((value.len == 4 && ngx_strncmp(value.data, "text", 4) == 0)
            || (value.len == 5 && ngx_strncmp(value.data, "plain", 5) == 0))
        {
            *format = NGX_HTTP_STREAMING_STATUS_TEXT;
            return NGX_OK;
        }

        return NGX_DECLINED;
    }

    h = ngx_http_streaming_header_in(r, "Accept", 6);

    if (h != NULL
        && ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                            (u_char *) "application/json", 16 - 1)
           != NULL)
    {
        *format = NGX_HTTP_STREAMING_STATUS_JSON;
        return NGX_OK;
    }

    *format = NGX_HTTP_STREAMING_STATUS_TEXT;

    return NGX_OK;
}


static void
ngx_http_streaming_status_text(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_zone_stats_t *st)
{
    ngx_http_streaming_out_printf(out,
        "Zone %V: size %uL used %uL subscribers %uL\n"
        " streams: active %uL paused %uL completed %uL error %uL"
        " cancelled %uL\n"
        " totals: created %uL chunks %uL bytes %uL resumes %uL"
        " evicted_chunks %uL rejected %uL\n",
        &zone->name, st->size, st->used, st->subscribers,
        st->streams[NGX_HTTP_STREAMING_ACTIVE],
        st->streams[NGX_HTTP_STREAMING_PAUSED],
        st->streams[NGX_HTTP_STREAMING_COMPLETED],
        st->streams[NGX_HTTP_STREAMING_ERROR],
        st->streams[NGX_HTTP_STREAMING_CANCELLED],
        st->created, st->chunks, st->bytes, st->resumes,
        st->evicted_chunks, st->rejected);
}


static void
ngx_http_streaming_status_json(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_zone_stats_t *st)
{
    ngx_http_streaming_out_json_str(out, &zone->name);

    ngx_http_streaming_out_printf(out,
        ":{\"size\":%uL,\"used\":%uL,"
        "\"streams\":{\"active\":%uL,\"paused\":%uL,\"completed\":%uL,"
        "\"error\":%uL,\"cancelled\":%uL},"
        "\"subscribers\":%uL,"
        "\"totals\":{\"created\":%uL,\"chunks\":%uL,\"bytes\":%uL,"
        "\"resumes\":%uL,\"evicted_chunks\":%uL,\"rejected\":%uL},"
        "\"limits\":{\"max_streams\":%ui,\"max_subscribers\":%ui,"
        "\"buffer\":%uz,\"ttl\":%M,\"idle_timeout\":%M}",
        st->size, st->used,
        st->streams[NGX_HTTP_STREAMING_ACTIVE],
        st->streams[NGX_HTTP_STREAMING_PAUSED],
        st->streams[NGX_HTTP_STREAMING_COMPLETED],
        st->streams[NGX_HTTP_STREAMING_ERROR],
        st->streams[NGX_HTTP_STREAMING_CANCELLED],
        st->subscribers,
        st->created, st->chunks, st->bytes, st->resumes,
        st->evicted_chunks, st->rejected,
        zone->max_streams, zone->max_subscribers, zone->buffer,
        zone->ttl / 1000, zone->idle_timeout / 1000);
}


/* the zone's streams, taken under its lock */
static void
ngx_http_streaming_status_streams(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t *zone, ngx_uint_t json)
{
    ngx_str_t                     id;
    ngx_uint_t                    n;
    ngx_rbtree_node_t            *node, *root, *sentinel;
    ngx_http_streaming_stream_t  *st;

    if (json) {
        ngx_http_streaming_out_literal(out, ",\"stream_list\":[");
    }

    ngx_http_streaming_store_lock(zone);

    root = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    if (root != sentinel) {
        n = 0;

        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&zone->sh->rbtree, node))
        {
            st = (ngx_http_streaming_stream_t *) node;

            if (!json) {
                id.data = st->id;
                id.len = st->id_len;

                ngx_http_streaming_out_printf(out,
                    " stream %V: %V sequence %uL bytes %uL subscribers %ui\n",
                    &id, &ngx_http_streaming_status_names[st->status],
                    st->sequence, st->bytes, st->subscribers);
                continue;
            }

            if (n++) {
                ngx_http_streaming_out_literal(out, ",");
            }

            ngx_http_streaming_status_stream(out, st);
        }
    }

    ngx_http_streaming_store_unlock(zone);

    if (json) {
        ngx_http_streaming_out_literal(out, "]");
    }
}


/* one stream's state as a JSON object (status, control) */
void
ngx_http_streaming_status_stream(ngx_http_streaming_out_t *out,
    ngx_http_streaming_stream_t *st)
{
    int64_t    remaining;
    ngx_str_t  s;

    s.data = st->id;
    s.len = st->id_len;

    ngx_http_streaming_out_literal(out, "{\"id\":");
    ngx_http_streaming_out_json_str(out, &s);

    ngx_http_streaming_out_printf(out,
        ",\"status\":\"%V\",\"sequence\":%uL,\"first\":%uL,"
        "\"bytes\":%uL,\"subscribers\":%ui,\"created\":%uL,"
        "\"updated\":%uL,\"checkpoint\":{\"sequence\":%uL,"
        "\"bytesTransferred\":%uL,\"timestamp\":%uL},"
        "\"progress\":{\"bytesTransferred\":%uL",
        &ngx_http_streaming_status_names[st->status], st->sequence,
        st->first, st->bytes, st->subscribers, st->created, st->updated,
        st->checkpoint_sequence, st->checkpoint_bytes, st->checkpoint_time,
        st->bytes);

    if (st->total_size >= 0) {
        ngx_http_streaming_out_printf(out, ",\"totalBytes\":%L",
                                      st->total_size);

        if (st->total_size > 0) {
            ngx_http_streaming_out_printf(out, ",\"percentage\":%uL",
                                  (uint64_t) ngx_min(st->bytes * 100
                                                 / (uint64_t) st->total_size,
                                                 100));
        }

        remaining = ngx_http_streaming_store_remaining_ms(st);

        if (remaining >= 0) {
            ngx_http_streaming_out_printf(out,
                                          ",\"estimatedRemainingMs\":%L",
                                          remaining);
        }
    }

    ngx_http_streaming_out_literal(out, "}");

    if (st->code_len) {
        s.data = st->code;
        s.len = st->code_len;
        ngx_http_streaming_out_literal(out, ",\"error\":{\"code\":");
        ngx_http_streaming_out_json_str(out, &s);

        s.data = st->message;
        s.len = st->message_len;
        ngx_http_streaming_out_literal(out, ",\"message\":");
        ngx_http_streaming_out_json_str(out, &s);
        ngx_http_streaming_out_literal(out, "}");
    }

    ngx_http_streaming_out_literal(out, "}");
}


/* ?id=: one stream, from whichever zone holds it */
static ngx_int_t
ngx_http_streaming_status_one(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_uint_t                        i;
    ngx_http_streaming_out_t          out;
    ngx_http_streaming_zone_t       **zones;
    ngx_http_streaming_stream_t      *st;
    ngx_http_streaming_main_conf_t   *smcf;

    static ngx_str_t  type = ngx_string("application/json");

    if (!ngx_http_streaming_id_valid(id->data, id->len)) {
        return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                             "INVALID_ID",
                                             "stream id must be 1-128 "
                                             "characters of [A-Za-z0-9._~-]");
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_streaming_module);
    zones = smcf->zones.elts;

    ngx_http_streaming_out_init(&out, r->pool);

    for (i = 0; i < smcf->zones.nelts; i++) {
        ngx_http_streaming_store_lock(zones[i]);

        st = ngx_http_streaming_store_find_locked(zones[i], id->data,
                                                  id->len);
        if (st) {
            ngx_http_streaming_out_literal(&out, "{\"zone\":");
            ngx_http_streaming_out_json_str(&out, &zones[i]->name);
            ngx_http_streaming_out_literal(&out, ",\"stream\":");
            ngx_http_streaming_status_stream(&out, st);
            ngx_http_streaming_out_literal(&out, "}\n");
        }

        ngx_http_streaming_store_unlock(zones[i]);

        if (st) {
            if (out.failed) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_streaming_send(r, NGX_HTTP_OK, &type, out.first,
                                           out.size);
        }
    }

    return ngx_http_streaming_send_error(r, NGX_HTTP_NOT_FOUND,
                                         "INVALID_STREAM", "no such stream");
}


static void
ngx_http_streaming_status_prometheus(ngx_http_streaming_out_t *out,
    ngx_http_streaming_zone_t **zones, ngx_http_streaming_zone_stats_t *stats,
    ngx_uint_t n)
{
    uint64_t                     *v;
    ngx_uint_t                    i, m, s;
    ngx_http_streaming_metric_t  *metric;

    for (m = 0; ngx_http_streaming_metrics[m].name; m++) {
        metric = &ngx_http_streaming_metrics[m];

        ngx_http_streaming_out_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
                                      metric->name, metric->help,
                                      metric->name, metric->type);

        for (i = 0; i < n; i++) {
            v = (uint64_t *) ((u_char *) &stats[i] + metric->offset);

            if (m != 0) {
                ngx_http_streaming_out_printf(out, "%s{zone=\"%V\"} %uL\n",
                                              metric->name, &zones[i]->name,
                                              *v);
                continue;
            }

            for (s = 0; s < NGX_HTTP_STREAMING_NSTATUS; s++) {
                ngx_http_streaming_out_printf(out,
                    "%s{zone=\"%V\",status=\"%V\"} %uL\n",
                    metric->name, &zones[i]->name,
                    &ngx_http_streaming_status_names[s], v[s]);
            }
        }
    }
}
