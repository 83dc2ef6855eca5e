
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_streaming_message.h"


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
