
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_streaming_message.h"


/*
 * A string member of a message and what to answer when it is missing,
 * not a string, or (ids) empty or longer than
 * NGX_HTTP_STREAMING_MESSAGE_ID_MAX, which the text spells out.
 */
#define ngx_http_streaming_message_member(name, path, max)                   \
    { name, max, "\"" path "\" is required",                                \
      "\"" path "\" must be a string",                                      \
      "\"" path "\" must be 1 to 128 bytes" }


typedef struct {
    const char     *name;
    size_t          max;          /* 0: any length, else 1 to max bytes */
    const char     *missing;
    const char     *type;
    const char     *size;
} ngx_http_streaming_message_member_t;


typedef struct {
    const char     *name;
    ngx_uint_t      value;
} ngx_http_streaming_message_name_t;


static ngx_int_t ngx_http_streaming_message_load(u_char *p, size_t len,
    json_t **root, const char **err);
static ngx_int_t ngx_http_streaming_message_envelope(ngx_pool_t *pool,
    json_t *root, ngx_http_streaming_message_t *msg, json_t **payload,
    const char **err);
static ngx_int_t ngx_http_streaming_message_control(ngx_pool_t *pool,
    json_t *payload, ngx_uint_t need_stream, ngx_http_streaming_message_t *msg,
    const char **err);
static ngx_int_t ngx_http_streaming_message_request(ngx_pool_t *pool,
    json_t *payload, ngx_http_streaming_message_t *msg, const char **err);
static ngx_int_t ngx_http_streaming_message_string(ngx_pool_t *pool,
    json_t *object, ngx_http_streaming_message_member_t *m,
    ngx_uint_t required, ngx_str_t *s, const char **err);
static ngx_int_t ngx_http_streaming_message_name(json_t *object,
    ngx_http_streaming_message_member_t *m,
    ngx_http_streaming_message_name_t *names, ngx_uint_t *value,
    const char **err);
static ngx_int_t ngx_http_streaming_message_integer(json_t *object,
    const char *name, const char *bad, uint64_t *n, const char **err);
static ngx_int_t ngx_http_streaming_message_id(ngx_pool_t *pool,
    json_t *value, ngx_str_t *s, const char **err);
static ngx_int_t ngx_http_streaming_message_copy(ngx_pool_t *pool,
    u_char *p, size_t len, ngx_str_t *s);


static const char  *ngx_http_streaming_message_nul =
    "a string contains a NUL character";


static ngx_http_streaming_message_member_t  ngx_http_streaming_message_type =
    ngx_http_streaming_message_member("type", "type", 0);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_command =
    ngx_http_streaming_message_member("command", "command", 0);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_stream_id =
    ngx_http_streaming_message_member("streamId", "streamId",
                                      NGX_HTTP_STREAMING_MESSAGE_ID_MAX);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_subscriber_id =
    ngx_http_streaming_message_member("subscriberId", "subscriberId",
                                      NGX_HTTP_STREAMING_MESSAGE_ID_MAX);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_reason =
    ngx_http_streaming_message_member("reason", "reason", 0);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_action =
    ngx_http_streaming_message_member("action", "action", 0);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_params_stream_id =
    ngx_http_streaming_message_member("streamId", "params.streamId",
                                      NGX_HTTP_STREAMING_MESSAGE_ID_MAX);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_content_type =
    ngx_http_streaming_message_member("contentType", "contentType",
                                      NGX_HTTP_STREAMING_MESSAGE_TYPE_MAX);

static ngx_http_streaming_message_member_t
    ngx_http_streaming_message_token =
    ngx_http_streaming_message_member("token", "params.token", 0);


static ngx_http_streaming_message_name_t  ngx_http_streaming_message_types[] = {
    { "stream-control", NGX_HTTP_STREAMING_MSG_CONTROL },
    { "request", NGX_HTTP_STREAMING_MSG_REQUEST },
    { NULL, 0 }
};


static ngx_http_streaming_message_name_t
    ngx_http_streaming_message_commands[] =
{
    { "pause", NGX_HTTP_STREAMING_CMD_PAUSE },
    { "resume", NGX_HTTP_STREAMING_CMD_RESUME },
    { "cancel", NGX_HTTP_STREAMING_CMD_CANCEL },
    { "ack", NGX_HTTP_STREAMING_CMD_ACK },
    { NULL, 0 }
};


static ngx_http_streaming_message_name_t
    ngx_http_streaming_message_actions[] =
{
    { "subscribe", NGX_HTTP_STREAMING_ACTION_SUBSCRIBE },
    { "unsubscribe", NGX_HTTP_STREAMING_ACTION_UNSUBSCRIBE },
    { "status", NGX_HTTP_STREAMING_ACTION_STATUS },
    { NULL, 0 }
};


ngx_int_t
ngx_http_streaming_rpc_id(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *id)
{
    char          *text;
    size_t         n;
    json_t        *root, *value;
    ngx_int_t      rc;
    json_error_t   error;

    root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    value = json_is_object(root) ? json_object_get(root, "id") : NULL;

    if (value == NULL
        || !(json_is_string(value) || json_is_number(value)
             || json_is_null(value)))
    {
        goto done;
    }

    text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    n = ngx_strlen(text);

    id->data = ngx_pnalloc(pool, n);
    if (id->data == NULL) {
        rc = NGX_ERROR;

    } else {
        ngx_memcpy(id->data, text, n);
        id->len = n;
        rc = NGX_OK;
    }

    free(text);

done:

    json_decref(root);

    return rc;
}


ngx_int_t
ngx_http_streaming_control_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_http_streaming_message_t *msg, const char **err)
{
    json_t     *root, *payload;
    ngx_int_t   rc;

    ngx_memzero(msg, sizeof(ngx_http_streaming_message_t));

    rc = ngx_http_streaming_message_load(p, len, &root, err);

    if (rc != NGX_OK) {
        return rc;
    }

    /* a whole message has a type; without one, the body is the payload */

    if (json_object_get(root, "type") == NULL) {
        msg->type = NGX_HTTP_STREAMING_MSG_CONTROL;
        payload = root;
        rc = NGX_OK;

    } else {
        rc = ngx_http_streaming_message_envelope(pool, root, msg, &payload,
                                                 err);

        if (rc == NGX_OK && msg->type != NGX_HTTP_STREAMING_MSG_CONTROL) {
            *err = "\"type\" must be \"stream-control\"";
            msg->unknown_type = 1;
            rc = NGX_DECLINED;
        }
    }

    if (rc == NGX_OK) {
        rc = ngx_http_streaming_message_control(pool, payload, 0, msg, err);
    }

    json_decref(root);

    return rc;
}


ngx_int_t
ngx_http_streaming_message_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_http_streaming_message_t *msg, const char **err)
{
    json_t     *root, *payload;
    ngx_int_t   rc;

    ngx_memzero(msg, sizeof(ngx_http_streaming_message_t));

    rc = ngx_http_streaming_message_load(p, len, &root, err);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_envelope(pool, root, msg, &payload, err);

    if (rc == NGX_OK) {
        if (msg->type == NGX_HTTP_STREAMING_MSG_CONTROL) {
            rc = ngx_http_streaming_message_control(pool, payload, 1, msg,
                                                    err);

        } else {
            rc = ngx_http_streaming_message_request(pool, payload, msg, err);
        }
    }

    json_decref(root);

    return rc;
}


/*
 * The size bound comes first; jansson bounds the nesting (2048 levels) and
 * checks UTF-8, NULs, duplicate keys and trailing bytes.
 */
/*
 * A publisher's PUT body: {"contentType":..., "totalSize":..., "metadata":
 * {...}}, every member optional; an empty body is no metadata.  *total is
 * -1 when absent.
 */
ngx_int_t
ngx_http_streaming_publish_meta_parse(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *content_type, int64_t *total, const char **err)
{
    json_t     *root, *metadata;
    uint64_t    n;
    ngx_int_t   rc;

    ngx_str_null(content_type);
    *total = -1;

    if (len == 0) {
        return NGX_OK;
    }

    rc = ngx_http_streaming_message_load(p, len, &root, err);

    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_string(pool, root,
                                       &ngx_http_streaming_message_content_type,
                                       0, content_type, err);

    if (rc == NGX_OK) {
        rc = ngx_http_streaming_message_integer(root, "totalSize",
                          "\"totalSize\" must be an integer from 0 to 2^53",
                          &n, err);

        if (rc == NGX_OK) {
            *total = (int64_t) n;
        }

        rc = (rc == NGX_DONE) ? NGX_OK : rc;
    }

    metadata = json_object_get(root, "metadata");

    if (rc == NGX_OK && metadata && !json_is_object(metadata)) {
        *err = "\"metadata\" must be an object";
        rc = NGX_DECLINED;
    }

    json_decref(root);

    return rc;
}


static ngx_int_t
ngx_http_streaming_message_load(u_char *p, size_t len, json_t **root,
    const char **err)
{
    json_t        *value;
    json_error_t   error;

    if (len == 0) {
        *err = "empty message";
        return NGX_DECLINED;
    }

    if (len > NGX_HTTP_STREAMING_MESSAGE_MAX) {
        *err = "message is larger than 65536 bytes";
        return NGX_DECLINED;
    }

    value = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, &error);

    if (value == NULL) {

        switch (json_error_code(&error)) {

        case json_error_out_of_memory:
            return NGX_ERROR;

        case json_error_stack_overflow:
            *err = "message nested too deeply";
            break;

        case json_error_invalid_utf8:
            *err = "message is not valid UTF-8";
            break;

        case json_error_premature_end_of_input:
            *err = "message is truncated";
            break;

        case json_error_end_of_input_expected:
            *err = "garbage after the JSON value";
            break;

        case json_error_null_character:
        case json_error_null_byte_in_key:
            *err = ngx_http_streaming_message_nul;
            break;

        case json_error_duplicate_key:
            *err = "duplicate member in an object";
            break;

        case json_error_numeric_overflow:
            *err = "number out of range";
            break;

        default:
            *err = "message is not valid JSON";
        }

        return NGX_DECLINED;
    }

    if (!json_is_object(value)) {
        json_decref(value);
        *err = "message is not a JSON object";
        return NGX_DECLINED;
    }

    *root = value;

    return NGX_OK;
}


/* the type, the id and the payload object of a whole message */
static ngx_int_t
ngx_http_streaming_message_envelope(ngx_pool_t *pool, json_t *root,
    ngx_http_streaming_message_t *msg, json_t **payload, const char **err)
{
    json_t     *value;
    ngx_int_t   rc;

    /* the id first: even a refusal answers with it */

    value = json_object_get(root, "id");

    if (value != NULL) {
        rc = ngx_http_streaming_message_id(pool, value, &msg->message_id,
                                           err);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_streaming_message_name(root,
                                         &ngx_http_streaming_message_type,
                                         ngx_http_streaming_message_types,
                                         &msg->type, err);
    if (rc != NGX_OK) {
        return rc;
    }

    if (msg->type == 0) {
        *err = "unknown message type";
        msg->unknown_type = 1;
        return NGX_DECLINED;
    }

    value = json_object_get(root, "payload");

    if (!json_is_object(value)) {
        *err = "\"payload\" must be an object";
        return NGX_DECLINED;
    }

    *payload = value;

    return NGX_OK;
}


static ngx_int_t
ngx_http_streaming_message_control(ngx_pool_t *pool, json_t *payload,
    ngx_uint_t need_stream, ngx_http_streaming_message_t *msg,
    const char **err)
{
    ngx_int_t  rc;

    rc = ngx_http_streaming_message_name(payload,
                                         &ngx_http_streaming_message_command,
                                         ngx_http_streaming_message_commands,
                                         &msg->command, err);
    if (rc != NGX_OK) {
        return rc;
    }

    if (msg->command == 0) {
        *err = "\"command\" must be pause, resume, cancel or ack";
        return NGX_DECLINED;
    }

    rc = ngx_http_streaming_message_string(pool, payload,
                                        &ngx_http_streaming_message_stream_id,
                                        need_stream, &msg->stream_id, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_string(pool, payload,
                                    &ngx_http_streaming_message_subscriber_id,
                                    0, &msg->subscriber_id, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_string(pool, payload,
                                           &ngx_http_streaming_message_reason,
                                           0, &msg->reason, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_integer(payload, "sequence",
                                  "\"sequence\" must be an integer from 0 to "
                                  "2^53", &msg->sequence, err);
    if (rc == NGX_DECLINED) {
        return rc;
    }

    msg->has_sequence = (rc == NGX_OK);

    if (msg->command == NGX_HTTP_STREAMING_CMD_ACK && !msg->has_sequence) {
        *err = "ack needs a sequence";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_streaming_message_request(ngx_pool_t *pool, json_t *payload,
    ngx_http_streaming_message_t *msg, const char **err)
{
    json_t     *params;
    ngx_int_t   rc;

    rc = ngx_http_streaming_message_name(payload,
                                         &ngx_http_streaming_message_action,
                                         ngx_http_streaming_message_actions,
                                         &msg->action, err);
    if (rc != NGX_OK) {
        return rc;
    }

    if (msg->action == 0) {
        *err = "unknown action";
        msg->unknown_action = 1;
        return NGX_DECLINED;
    }

    /* every action names a stream */

    params = json_object_get(payload, "params");

    if (!json_is_object(params)) {
        *err = "\"params\" must be an object";
        return NGX_DECLINED;
    }

    rc = ngx_http_streaming_message_string(pool, params,
                                 &ngx_http_streaming_message_params_stream_id,
                                 1, &msg->stream_id, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_string(pool, params,
                                           &ngx_http_streaming_message_token,
                                           0, &msg->token, err);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_streaming_message_integer(params, "fromSequence",
                                  "\"params.fromSequence\" must be an "
                                  "integer from 0 to 2^53", &msg->from, err);
    if (rc == NGX_DECLINED) {
        return rc;
    }

    msg->has_from = (rc == NGX_OK);

    return NGX_OK;
}


/* NGX_OK with an empty *s when the member is absent and not required */
static ngx_int_t
ngx_http_streaming_message_string(ngx_pool_t *pool, json_t *object,
    ngx_http_streaming_message_member_t *m, ngx_uint_t required, ngx_str_t *s,
    const char **err)
{
    size_t      len;
    json_t     *value;
    const char *text;

    value = json_object_get(object, m->name);

    if (value == NULL) {
        if (required) {
            *err = m->missing;
            return NGX_DECLINED;
        }

        return NGX_OK;
    }

    if (!json_is_string(value)) {
        *err = m->type;
        return NGX_DECLINED;
    }

    text = json_string_value(value);
    len = json_string_length(value);

    /* jansson refuses "\u0000" without JSON_ALLOW_NUL; this is a backstop */

    if (ngx_strlen(text) != len) {
        *err = ngx_http_streaming_message_nul;
        return NGX_DECLINED;
    }

    if (m->max && (len == 0 || len > m->max)) {
        *err = m->size;
        return NGX_DECLINED;
    }

    return ngx_http_streaming_message_copy(pool, (u_char *) text, len, s);
}


/* NGX_OK with *value 0 when the string is none of the names */
static ngx_int_t
ngx_http_streaming_message_name(json_t *object,
    ngx_http_streaming_message_member_t *m,
    ngx_http_streaming_message_name_t *names, ngx_uint_t *value,
    const char **err)
{
    size_t      len;
    json_t     *v;
    const char *text;

    v = json_object_get(object, m->name);

    if (v == NULL) {
        *err = m->missing;
        return NGX_DECLINED;
    }

    if (!json_is_string(v)) {
        *err = m->type;
        return NGX_DECLINED;
    }

    text = json_string_value(v);
    len = json_string_length(v);

    *value = 0;

    for ( /* void */ ; names->name; names++) {
        if (ngx_strlen(names->name) == len
            && ngx_memcmp(names->name, text, len) == 0)
        {
            *value = names->value;
            break;
        }
    }

    return NGX_OK;
}


/*
 * NGX_OK, NGX_DONE when absent, NGX_DECLINED when not an integer from 0 to
 * 2^53 (a real such as 1.0, a string, a boolean, null: all refused).
 */
static ngx_int_t
ngx_http_streaming_message_integer(json_t *object, const char *name,
    const char *bad, uint64_t *n, const char **err)
{
    json_t      *value;
    json_int_t   i;

    value = json_object_get(object, name);

    if (value == NULL) {
        return NGX_DONE;
    }

    if (!json_is_integer(value)) {
        *err = bad;
        return NGX_DECLINED;
    }

    i = json_integer_value(value);

    if (i < 0 || (uint64_t) i > NGX_HTTP_STREAMING_MESSAGE_INT_MAX) {
        *err = bad;
        return NGX_DECLINED;
    }

    *n = (uint64_t) i;

    return NGX_OK;
}


/* the envelope's id: a string, or an integer kept as its decimal text */
static ngx_int_t
ngx_http_streaming_message_id(ngx_pool_t *pool, json_t *value, ngx_str_t *s,
    const char **err)
{
    size_t       len;
    u_char      *p, buf[NGX_INT64_LEN];
    uint64_t     n;
    json_int_t   i;
    const char  *text;

    if (json_is_null(value)) {
        return NGX_OK;
    }

    if (json_is_string(value)) {
        text = json_string_value(value);
        len = json_string_length(value);

        if (ngx_strlen(text) != len) {
            *err = ngx_http_streaming_message_nul;
            return NGX_DECLINED;
        }

        return ngx_http_streaming_message_copy(pool, (u_char *) text, len, s);
    }

    if (!json_is_integer(value)) {
        *err = "\"id\" must be a string or an integer";
        return NGX_DECLINED;
    }

    i = json_integer_value(value);

    /* the magnitude as unsigned, so that the most negative one fits too */
    n = (i < 0) ? (uint64_t) 0 - (uint64_t) i : (uint64_t) i;

    p = buf + sizeof(buf);

    do {
        *--p = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    if (i < 0) {
        *--p = '-';
    }

    return ngx_http_streaming_message_copy(pool, p, buf + sizeof(buf) - p, s);
}


static ngx_int_t
ngx_http_streaming_message_copy(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *s)
{
    if (len == 0) {
        ngx_str_null(s);
        return NGX_OK;
    }

    s->data = ngx_pnalloc(pool, len);
    if (s->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(s->data, p, len);
    s->len = len;

    return NGX_OK;
}
