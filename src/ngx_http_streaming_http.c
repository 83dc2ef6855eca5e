
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_http_streaming_json.h"
#include "ngx_http_streaming_http.h"
#include "ngx_http_streaming_ids.h"


#define NGX_HTTP_STREAMING_ID_RANDOM  16


static ngx_str_t  ngx_http_streaming_json_type =
    ngx_string("application/json");
static ngx_str_t  ngx_http_streaming_cache_control =
    ngx_string("Cache-Control");
static ngx_str_t  ngx_http_streaming_no_cache = ngx_string("no-cache");


ngx_table_elt_t *
ngx_http_streaming_header_in(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_int_t
ngx_http_streaming_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *content_type, ngx_chain_t *body, off_t size)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t      *cl;

    r->headers_out.status = status;
    r->headers_out.content_type = *content_type;
    r->headers_out.content_type_len = content_type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = size;

    if (ngx_http_streaming_set_header(r, &ngx_http_streaming_cache_control,
                                      &ngx_http_streaming_no_cache)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (size == 0 || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    for (cl = body; cl->next; cl = cl->next) { /* void */ }

    b = cl->buf;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return ngx_http_output_filter(r, body);
}


ngx_int_t
ngx_http_streaming_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_str_t                 s;
    ngx_http_streaming_out_t  out;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "streaming error %ui %s: %s", status, code, message);

    ngx_http_streaming_out_init(&out, r->pool);

    ngx_http_streaming_out_literal(&out, "{\"error\":{\"code\":\"");
    ngx_http_streaming_out_raw(&out, (u_char *) code, ngx_strlen(code));
    ngx_http_streaming_out_literal(&out, "\",\"message\":");

    s.data = (u_char *) message;
    s.len = ngx_strlen(message);
    ngx_http_streaming_out_json_str(&out, &s);

    ngx_http_streaming_out_literal(&out, "}}\n");

    if (out.failed) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* an error answer never leaves a request body half read */
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_streaming_send(r, status, &ngx_http_streaming_json_type,
                                   out.first, out.size);
}


/* sets a response header, replacing one of that name */
ngx_int_t
ngx_http_streaming_set_header(ngx_http_request_t *r,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0
            && h[i].key.len == key->len
            && ngx_strncasecmp(h[i].key.data, key->data, key->len) == 0)
        {
            h[i].hash = 0;
        }
    }

    if (key->len == sizeof("Cache-Control") - 1) {
#if (nginx_version >= 1023000)
        r->headers_out.cache_control = NULL;
#else
        r->headers_out.cache_control.nelts = 0;
#endif
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key = *key;
    h->value = *value;

    return NGX_OK;
}


/* a stream's answer is never cached, nor held by a proxy in front */
ngx_int_t
ngx_http_streaming_set_no_cache(ngx_http_request_t *r)
{
    static ngx_str_t  accel = ngx_string("X-Accel-Buffering");
    static ngx_str_t  no = ngx_string("no");

    if (ngx_http_streaming_set_header(r, &ngx_http_streaming_cache_control,
                                      &ngx_http_streaming_no_cache)
        != NGX_OK
        || ngx_http_streaming_set_header(r, &accel, &no) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Starts reading a request body of at most max bytes for the handler; a
 * Content-Length over it is answered at once.  What the content handler
 * returns.  "what" names the body in the answer and the log.
 */
ngx_int_t
ngx_http_streaming_read_body_start(ngx_http_request_t *r, size_t max,
    const char *what, ngx_http_client_body_handler_pt handler)
{
    ngx_int_t  rc;

    if (r->headers_in.content_length_n > (off_t) max) {
        return ngx_http_streaming_send_too_large(r, what);
    }

    rc = ngx_http_read_client_request_body(r, handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/* 413 PAYLOAD_TOO_LARGE for a body over streaming_max_chunk */
ngx_int_t
ngx_http_streaming_send_too_large(ngx_http_request_t *r, const char *what)
{
    u_char  *p;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "streaming: %s is over streaming_max_chunk", what);

    p = ngx_pnalloc(r->pool, sizeof("the  is over streaming_max_chunk")
                             + ngx_strlen(what));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(p, "the %s is over streaming_max_chunk%Z", what);

    return ngx_http_streaming_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "PAYLOAD_TOO_LARGE", (char *) p);
}


/*
 * The whole request body in one piece (empty when there is none);
 * NGX_DECLINED when it is over max bytes.
 */
ngx_int_t
ngx_http_streaming_read_body(ngx_http_request_t *r, ngx_str_t *body,
    size_t max)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->data = NULL;
    body->len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > (off_t) max) {
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    return NGX_OK;
}


/*
 * The stream a request names: streaming_id if set, else ?id= (with
 * NGX_HTTP_STREAMING_ID_ARG), else 128 random bits, base64url (with
 * NGX_HTTP_STREAMING_ID_GENERATE).  NGX_DECLINED: none, or not a valid id.
 */
ngx_int_t
ngx_http_streaming_request_id(ngx_http_request_t *r,
    ngx_http_complex_value_t *cv, ngx_uint_t how, ngx_str_t *id)
{
    ngx_str_t  raw;
    u_char     random[NGX_HTTP_STREAMING_ID_RANDOM];

    if (cv) {
        if (ngx_http_complex_value(r, cv, id) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_streaming_id_valid(id->data, id->len)
               ? NGX_OK : NGX_DECLINED;
    }

    if ((how & NGX_HTTP_STREAMING_ID_ARG)
        && ngx_http_arg(r, (u_char *) "id", 2, id) == NGX_OK)
    {
        return ngx_http_streaming_id_valid(id->data, id->len)
               ? NGX_OK : NGX_DECLINED;
    }

    if (!(how & NGX_HTTP_STREAMING_ID_GENERATE)) {
        ngx_str_null(id);
        return NGX_DECLINED;
    }

    if (RAND_bytes(random, sizeof(random)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "streaming: RAND_bytes() failed");
        return NGX_ERROR;
    }

    id->data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(sizeof(random)));
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    raw.data = random;
    raw.len = sizeof(random);

    ngx_encode_base64url(id, &raw);

    return NGX_OK;
}


ngx_int_t
ngx_http_streaming_send_bad_id(ngx_http_request_t *r)
{
    return ngx_http_streaming_send_error(r, NGX_HTTP_BAD_REQUEST,
                                         "INVALID_ID",
                                         "stream id must be 1-128 "
                                         "characters of [A-Za-z0-9._~-]");
}


/* a query argument, percent-decoded into the request's pool */
ngx_int_t
ngx_http_streaming_arg_unescaped(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   arg;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, arg.len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    dst = value->data;
    src = arg.data;

    ngx_unescape_uri(&dst, &src, arg.len, NGX_UNESCAPE_URI);

    value->len = dst - value->data;

    return NGX_OK;
}


/*
 * The stream's token: base64url(HMAC-SHA256(secret, id + the stream's
 * random nonce)), so that a reused id never accepts an old token.
 */
ngx_int_t
ngx_http_streaming_token(ngx_pool_t *pool, ngx_str_t *secret, ngx_str_t *id,
    u_char *nonce, ngx_str_t *token)
{
    u_char        *data;
    ngx_str_t      raw;
    unsigned int   len;
    u_char         md[EVP_MAX_MD_SIZE];

    data = ngx_pnalloc(pool, id->len + NGX_HTTP_STREAMING_NONCE_LEN);
    if (data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ngx_cpymem(data, id->data, id->len), nonce,
               NGX_HTTP_STREAMING_NONCE_LEN);

    len = 0;

    if (HMAC(EVP_sha256(), secret->data, (int) secret->len, data,
             id->len + NGX_HTTP_STREAMING_NONCE_LEN, md, &len)
        == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "streaming: HMAC() failed");
        return NGX_ERROR;
    }

    token->data = ngx_pnalloc(pool, ngx_base64_encoded_length(len));
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    raw.data = md;
    raw.len = len;

    ngx_encode_base64url(token, &raw);

    return NGX_OK;
}


/*
 * Whether the request presents the token "expected": in Last-Event-ID
 * ("given", from its third part), "Authorization: Bearer", "Stream-Token"
 * or ?token=.  Compared in constant time.
 */
ngx_int_t
ngx_http_streaming_token_presented(ngx_http_request_t *r, ngx_str_t *given,
    ngx_str_t *expected)
{
    ngx_str_t         token;
    ngx_table_elt_t  *h;

    token.len = 0;

    if (given && given->len) {
        token = *given;

    } else if (r->headers_in.authorization
               && r->headers_in.authorization->value.len > 7
               && ngx_strncasecmp(r->headers_in.authorization->value.data,
                                  (u_char *) "Bearer ", 7) == 0)
    {
        token.data = r->headers_in.authorization->value.data + 7;
        token.len = r->headers_in.authorization->value.len - 7;

    } else {
        h = ngx_http_streaming_header_in(r, "Stream-Token", 12);

        if (h) {
            token = h->value;

        } else if (ngx_http_arg(r, (u_char *) "token", 5, &token) != NGX_OK) {
            token.len = 0;
        }
    }

    if (token.len != expected->len || token.len == 0
        || CRYPTO_memcmp(token.data, expected->data, token.len) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "streaming: %s token for the stream",
                      token.len ? "wrong" : "no");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_streaming_send_forbidden(ngx_http_request_t *r)
{
    return ngx_http_streaming_send_error(r, NGX_HTTP_FORBIDDEN, "FORBIDDEN",
                                         "the stream's token is missing or "
                                         "wrong");
}


ngx_int_t
ngx_http_streaming_set_token(ngx_http_request_t *r, ngx_str_t *token)
{
    static ngx_str_t  name = ngx_string("Stream-Token");

    if (token->len == 0) {
        return NGX_OK;
    }

    return ngx_http_streaming_set_header(r, &name, token);
}


/*
 * With streaming_secret set: NGX_OK when the request presents the
 * stream's token (then in *token), NGX_DECLINED when not (403); without
 * one, NGX_OK and an empty token.
 */
ngx_int_t
ngx_http_streaming_token_check(ngx_http_request_t *r, ngx_str_t *secret,
    ngx_str_t *id, u_char *nonce, ngx_str_t *given, ngx_str_t *token)
{
    ngx_str_null(token);

    if (secret->len == 0) {
        return NGX_OK;
    }

    if (ngx_http_streaming_token(r->pool, secret, id, nonce, token)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_streaming_token_presented(r, given, token);
}


/*
 * The stream a request names, with the zone locked, and the token that
 * streaming_secret asks for: NGX_OK and *st, else the HTTP status the
 * request gets (404, 403, 500), which the caller sends with
 * ngx_http_streaming_send_refusal() once it has unlocked the zone.
 */
ngx_int_t
ngx_http_streaming_find_locked(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_str_t *secret, ngx_str_t *id,
    ngx_http_streaming_stream_t **st, ngx_str_t *token)
{
    ngx_int_t  rc;

    *st = ngx_http_streaming_store_find_locked(zone, id->data, id->len);

    if (*st == NULL) {
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_streaming_token_check(r, secret, id, (*st)->nonce, NULL,
                                        token);

    switch (rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_DECLINED:
        return NGX_HTTP_FORBIDDEN;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


ngx_int_t
ngx_http_streaming_send_refusal(ngx_http_request_t *r, ngx_int_t status)
{
    switch (status) {

    case NGX_HTTP_NOT_FOUND:
        return ngx_http_streaming_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "INVALID_STREAM",
                                             "no such stream");

    case NGX_HTTP_FORBIDDEN:
        return ngx_http_streaming_send_forbidden(r);

    default:
        return status;
    }
}
