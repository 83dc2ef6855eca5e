
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "tap.h"


ngx_uint_t  ngx_http_streaming_test_n;
ngx_uint_t  ngx_http_streaming_test_failed;


void
ngx_http_streaming_test_ok(ngx_uint_t ok, const char *fmt, ...)
{
    va_list  args;

    ngx_http_streaming_test_n++;

    if (!ok) {
        ngx_http_streaming_test_failed++;
    }

    printf("%sok %lu - ", ok ? "" : "not ",
           (unsigned long) ngx_http_streaming_test_n);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
    fflush(stdout);
}


void
ngx_http_streaming_test_diag(const char *fmt, ...)
{
    va_list  args;

    printf("# ");

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
}
