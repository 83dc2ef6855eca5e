
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#ifndef _NGX_HTTP_STREAMING_TAP_H_INCLUDED_
#define _NGX_HTTP_STREAMING_TAP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* TAP output of the unit programs: "ok N - ...", "# ...", counters */

extern ngx_uint_t  ngx_http_streaming_test_n;
extern ngx_uint_t  ngx_http_streaming_test_failed;

void ngx_http_streaming_test_ok(ngx_uint_t ok, const char *fmt, ...);
void ngx_http_streaming_test_diag(const char *fmt, ...);


#endif /* _NGX_HTTP_STREAMING_TAP_H_INCLUDED_ */
