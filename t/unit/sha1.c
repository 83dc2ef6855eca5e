
/*
 * Copyright (C) ngx_http_streaming_module authors
 */


/*
 * Stand-ins for the nginx functions that the WebSocket leaf calls for the
 * accept key, ngx_sha1_*() (FIPS 180-4) and the base64 pair, for the unit
 * program and the fuzz target, which link no nginx object (the nginx-dev
 * tree has headers only).  Written from the specifications, with nginx's
 * behaviour where it matters: ngx_decode_base64() stops at the first "=",
 * refuses a byte outside the alphabet and a length of 4n + 1.  The unit
 * program checks the SHA-1 against OpenSSL's.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_sha1.h>


#define ngx_http_streaming_test_rol(x, n)                                    \
    (((x) << (n)) | ((x) >> (32 - (n))))


static void ngx_http_streaming_test_sha1_block(ngx_sha1_t *ctx,
    const u_char *p);


static u_char  ngx_http_streaming_test_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


void
ngx_sha1_init(ngx_sha1_t *ctx)
{
    ctx->a = 0x67452301;
    ctx->b = 0xefcdab89;
    ctx->c = 0x98badcfe;
    ctx->d = 0x10325476;
    ctx->e = 0xc3d2e1f0;
    ctx->bytes = 0;
}


void
ngx_sha1_update(ngx_sha1_t *ctx, const void *data, size_t size)
{
    size_t         used, n;
    const u_char  *p;

    p = data;

    while (size) {
        used = ctx->bytes & 63;
        n = ngx_min(size, 64 - used);

        ngx_memcpy(ctx->buffer + used, p, n);

        ctx->bytes += n;
        p += n;
        size -= n;

        if (((used + n) & 63) == 0) {
            ngx_http_streaming_test_sha1_block(ctx, ctx->buffer);
        }
    }
}


void
ngx_sha1_final(u_char result[20], ngx_sha1_t *ctx)
{
    u_char      pad[72];
    size_t      n;
    uint64_t    bits;
    uint32_t    h[5];
    ngx_uint_t  i;

    bits = ctx->bytes * 8;

    /* 0x80, zeros up to 56 mod 64, the length in bits, big-endian */

    n = 64 + 56 - (ctx->bytes & 63);
    if (n > 64) {
        n -= 64;
    }

    ngx_memzero(pad, sizeof(pad));
    pad[0] = 0x80;

    for (i = 0; i < 8; i++) {
        pad[n + i] = (u_char) (bits >> (56 - 8 * i));
    }

    ngx_sha1_update(ctx, pad, n + 8);

    h[0] = ctx->a;
    h[1] = ctx->b;
    h[2] = ctx->c;
    h[3] = ctx->d;
    h[4] = ctx->e;

    for (i = 0; i < 20; i++) {
        result[i] = (u_char) (h[i / 4] >> (24 - 8 * (i % 4)));
    }
}


static void
ngx_http_streaming_test_sha1_block(ngx_sha1_t *ctx, const u_char *p)
{
    uint32_t    w[80], a, b, c, d, e, f, k, t;
    ngx_uint_t  i;

    for (i = 0; i < 16; i++) {
        w[i] = ((uint32_t) p[4 * i] << 24) | ((uint32_t) p[4 * i + 1] << 16)
               | ((uint32_t) p[4 * i + 2] << 8) | p[4 * i + 3];
    }

    for (i = 16; i < 80; i++) {
        t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = ngx_http_streaming_test_rol(t, 1);
    }

    a = ctx->a;
    b = ctx->b;
    c = ctx->c;
    d = ctx->d;
    e = ctx->e;

    for (i = 0; i < 80; i++) {

        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5a827999;

        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ed9eba1;

        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8f1bbcdc;

        } else {
            f = b ^ c ^ d;
            k = 0xca62c1d6;
        }

        t = ngx_http_streaming_test_rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = ngx_http_streaming_test_rol(b, 30);
        b = a;
        a = t;
    }

    ctx->a += a;
    ctx->b += b;
    ctx->c += c;
    ctx->d += d;
    ctx->e += e;
}


void
ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    u_char      *d, *s;
    size_t       len;
    uint32_t     v;
    ngx_uint_t   i, n;

    s = src->data;
    d = dst->data;

    for (len = src->len; len; len -= n, s += n) {
        n = ngx_min(len, 3);

        v = 0;
        for (i = 0; i < 3; i++) {
            v = (v << 8) | (i < n ? s[i] : 0);
        }

        for (i = 0; i < 4; i++) {
            *d++ = (i <= n)
                   ? ngx_http_streaming_test_b64[(v >> (18 - 6 * i)) & 63]
                   : '=';
        }
    }

    dst->len = d - dst->data;
}


ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    u_char      *d, *hit;
    size_t       len, i;
    uint32_t     v;
    ngx_uint_t   bits;

    for (len = 0; len < src->len; len++) {
        if (src->data[len] == '=') {
            break;
        }

        if (ngx_strlchr(ngx_http_streaming_test_b64,
                        ngx_http_streaming_test_b64 + 64, src->data[len])
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;
    v = 0;
    bits = 0;

    for (i = 0; i < len; i++) {
        hit = ngx_strlchr(ngx_http_streaming_test_b64,
                          ngx_http_streaming_test_b64 + 64, src->data[i]);

        v = (v << 6) | (uint32_t) (hit - ngx_http_streaming_test_b64);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            *d++ = (u_char) (v >> bits);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}
