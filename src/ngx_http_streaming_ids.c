
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_streaming_ids.h"


ngx_int_t
ngx_http_streaming_id_valid(u_char *id, size_t len)
{
    u_char  *p, *last;

    if (len == 0 || len > NGX_HTTP_STREAMING_ID_MAX) {
        return 0;
    }

    for (p = id, last = id + len; p < last; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
            || (*p >= '0' && *p <= '9')
            || *p == '.' || *p == '_' || *p == '~' || *p == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/* an error code a publisher gives: 1-32 characters of [A-Z0-9_] */
ngx_int_t
ngx_http_streaming_code_valid(u_char *code, size_t len)
{
    u_char  *p, *last;

    if (len == 0 || len > NGX_HTTP_STREAMING_CODE_LEN) {
        return 0;
    }

    for (p = code, last = code + len; p < last; p++) {
        if ((*p < 'A' || *p > 'Z') && (*p < '0' || *p > '9') && *p != '_') {
            return 0;
        }
    }

    return 1;
}


/* "<streamId>:<sequence>" or "<streamId>:<sequence>:<token>" */
ngx_int_t
ngx_http_streaming_last_event_id(ngx_str_t *value, ngx_str_t *id,
    uint64_t *sequence)
{
    u_char     *p, *last, *colon;
    ngx_str_t   seq;

    p = value->data;
    last = p + value->len;

    colon = ngx_strlchr(p, last, ':');
    if (colon == NULL) {
        return NGX_DECLINED;
    }

    id->data = p;
    id->len = colon - p;

    if (!ngx_http_streaming_id_valid(id->data, id->len)) {
        return NGX_DECLINED;
    }

    seq.data = colon + 1;
    p = ngx_strlchr(seq.data, last, ':');
    seq.len = (p ? p : last) - seq.data;

    return ngx_http_streaming_sequence(&seq, sequence);
}


/* the <token> of "<streamId>:<sequence>:<token>"; empty when none */
void
ngx_http_streaming_last_event_token(ngx_str_t *value, ngx_str_t *token)
{
    u_char  *p, *last;

    last = value->data + value->len;
    token->len = 0;
    token->data = NULL;

    p = ngx_strlchr(value->data, last, ':');

    if (p) {
        p = ngx_strlchr(p + 1, last, ':');
    }

    if (p) {
        token->data = p + 1;
        token->len = last - token->data;
    }
}


/* a sequence number: decimal digits, no sign, no overflow */
ngx_int_t
ngx_http_streaming_sequence(ngx_str_t *s, uint64_t *n)
{
    u_char    *p;
    uint64_t   v;

    if (s->len == 0 || s->len > NGX_INT64_LEN) {
        return NGX_DECLINED;
    }

    v = 0;

    for (p = s->data; p < s->data + s->len; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        if (v > (NGX_HTTP_STREAMING_MAX_SEQUENCE - (*p - '0')) / 10) {
            return NGX_DECLINED;
        }

        v = v * 10 + (*p - '0');
    }

    *n = v;

    return NGX_OK;
}
