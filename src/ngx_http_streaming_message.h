
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_
#define _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * JSON messages from clients (a JSON-RPC request body, Omni control
 * messages), parsed with jansson.  A leaf: plain functions over byte
 * ranges, no request, no store; the only nginx function they call is
 * ngx_pnalloc().
 */


#define NGX_HTTP_STREAMING_CMD_PAUSE            1
#define NGX_HTTP_STREAMING_CMD_RESUME           2
#define NGX_HTTP_STREAMING_CMD_CANCEL           3
#define NGX_HTTP_STREAMING_CMD_ACK              4

#define NGX_HTTP_STREAMING_ACTION_SUBSCRIBE     1
#define NGX_HTTP_STREAMING_ACTION_UNSUBSCRIBE   2
#define NGX_HTTP_STREAMING_ACTION_STATUS        3

#define NGX_HTTP_STREAMING_MSG_CONTROL          1
#define NGX_HTTP_STREAMING_MSG_REQUEST          2

/* a longer message is declined before it is parsed */
#define NGX_HTTP_STREAMING_MESSAGE_MAX          65536

/* a publisher's contentType: 1 to this many bytes */
#define NGX_HTTP_STREAMING_MESSAGE_TYPE_MAX     127

/* streamId and subscriberId: 1 to this many bytes */
#define NGX_HTTP_STREAMING_MESSAGE_ID_MAX       128

/* sequence and fromSequence: 0 to 2^53, exact in any JSON client */
#define NGX_HTTP_STREAMING_MESSAGE_INT_MAX      9007199254740992ULL


typedef struct {
    ngx_uint_t      type;            /* MSG_CONTROL or MSG_REQUEST */
    ngx_str_t       message_id;      /* the envelope's "id", empty if none */

    /* stream-control */
    ngx_uint_t      command;         /* CMD_* */
    ngx_str_t       stream_id;       /* empty when absent */
    ngx_str_t       subscriber_id;   /* empty when absent */
    ngx_str_t       reason;          /* empty when absent */
    uint64_t        sequence;

    /* request */
    ngx_uint_t      action;          /* ACTION_* */
    ngx_str_t       token;           /* params.token, empty when absent */
    uint64_t        from;            /* params.fromSequence */

    unsigned        has_sequence:1;
    unsigned        has_from:1;

    /* on NGX_DECLINED: UNKNOWN_MESSAGE_TYPE, UNKNOWN_ACTION, else 0 */
    unsigned        unknown_type:1;
    unsigned        unknown_action:1;
} ngx_http_streaming_message_t;


/*
 * The "id" member of a JSON-RPC request object, as compact JSON text (a
 * string, a number or null); NGX_DECLINED when the body is not a JSON
 * object with a usable id, NGX_ERROR when out of memory.
 */
ngx_int_t ngx_http_streaming_rpc_id(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *id);

/*
 * A control endpoint's body: a whole "stream-control" message or just its
 * payload.  A WebSocket text frame: a whole "stream-control" (streamId
 * required) or "request" message.
 *
 * NGX_OK; NGX_DECLINED with *err set to a static, lowercase, human message
 * (the caller answers 400 INVALID_MESSAGE with it, or UNKNOWN_MESSAGE_TYPE,
 * UNKNOWN_ACTION as msg says); NGX_ERROR out of pool memory (jansson
 * reports most of its own allocation failures as syntax errors: those come
 * back as NGX_DECLINED).  *msg is zeroed first; its strings point into pool
 * copies.
 */
ngx_int_t ngx_http_streaming_control_parse(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_http_streaming_message_t *msg, const char **err);
ngx_int_t ngx_http_streaming_message_parse(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_http_streaming_message_t *msg, const char **err);

/*
 * A publisher's PUT body (optional members contentType, totalSize,
 * metadata); NGX_DECLINED with *err as above.
 */
ngx_int_t ngx_http_streaming_publish_meta_parse(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *content_type, int64_t *total, const char **err);


#endif /* _NGX_HTTP_STREAMING_MESSAGE_H_INCLUDED_ */
