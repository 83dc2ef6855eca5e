
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_WEBSOCKET_H_INCLUDED_
#define _NGX_HTTP_STREAMING_WEBSOCKET_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_streaming_subscriber.h"


/*
 * The WebSocket endpoint of streaming_subscribe locations (RFC 6455): the
 * handshake, then Omni messages in text frames, many streams on one
 * socket, stream-control and requests from the client.
 */

/* the request asks for a WebSocket: HTTP/1.1 GET with Upgrade: websocket */
ngx_uint_t ngx_http_streaming_websocket_wanted(ngx_http_request_t *r);

/* sn: the stream the location names (an empty id: none yet) */
ngx_int_t ngx_http_streaming_websocket_start(ngx_http_request_t *r,
    ngx_http_streaming_zone_t *zone, ngx_http_streaming_subscription_t *sn);


#endif /* _NGX_HTTP_STREAMING_WEBSOCKET_H_INCLUDED_ */
