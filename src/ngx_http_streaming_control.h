
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_
#define _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * streaming_control: a stream's state, and the commands (pause, resume,
 * cancel, ack) that any worker takes and the stream's workers act on.
 */

#include "ngx_http_streaming_conf.h"
#include "ngx_http_streaming_store.h"


ngx_int_t ngx_http_streaming_control_handler(ngx_http_request_t *r);
const char *ngx_http_streaming_control_locked(ngx_http_streaming_zone_t *zone,
    ngx_http_streaming_stream_t *st, ngx_uint_t command, ngx_pid_t *pids,
    ngx_uint_t *n);

/* "state", "pause", "resume", "cancel", "ack": by NGX_HTTP_STREAMING_CMD_* */
extern const char  *ngx_http_streaming_command_names[];


#endif /* _NGX_HTTP_STREAMING_CONTROL_H_INCLUDED_ */
