#!/bin/sh
# Builds nginx from source with the module as a dynamic module.
#
# usage: util/build-nginx.sh 1.22|1.26 debug|asan|release
#   NGINX_SRC=/path/to/nginx-x.y.z   use that tree instead of apt-get source
#
# output: build/nginx-<version>-<flavor>/nginx, and for debug and release
#         build/nginx-<version>-<flavor>/ngx_http_streaming_module.so.
# The asan flavor links the module in (--add-module): every dynamic module
# defines its own ngx_modules[], which AddressSanitizer reports as an ODR
# violation, and it covers the static build of the module's config too.

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
version=${1:-1.26}
flavor=${2:-debug}

if [ -n "$NGINX_SRC" ]; then
    src=$(cd "$NGINX_SRC" && pwd)
    version=$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
              "$src/src/core/nginx.h")
else
    src=$("$top/util/fetch-nginx-src.sh" "$version")
fi

out="$top/build/nginx-$version-$flavor"
warn="-Wall -Wextra -Werror"
link=dynamic

case "$flavor" in
debug)
    cc_opt="-g -O0 $warn"
    ld_opt=""
    ;;
release)
    cc_opt="-g -O2 $warn"
    ld_opt=""
    ;;
asan)
    # NGX_DEBUG_PALLOC makes every pool allocation its own malloc(), so that
    # AddressSanitizer sees overruns inside pools too.  nginx's HTTP/2 code
    # reads and writes unaligned integers on purpose where the CPU allows it
    # (NGX_HAVE_NONALIGNED), so UBSan's alignment check is off.
    san="-fsanitize=address,undefined -fno-sanitize=alignment"
    san="$san -fno-omit-frame-pointer"
    cc_opt="-g -O1 $san -DNGX_DEBUG_PALLOC=1 $warn"
    ld_opt="$san"
    link=static
    ;;
*)
    echo "usage: $0 1.22|1.26 debug|asan|release" >&2
    exit 2
    ;;
esac

"$top/util/install-deps.sh" src

mkdir -p "$out"

if [ $link = static ]; then
    add_module="--add-module=$top"
    targets=binary
else
    add_module="--add-dynamic-module=$top"
    targets="binary modules"
fi

stamp="$out/configured"
if [ ! -f "$stamp" ] || [ "$top/config" -nt "$stamp" ] \
   || [ "$0" -nt "$stamp" ]
then
    (
        cd "$src"
        ./configure \
            --builddir="$out/objs" \
            --prefix="$out/prefix" \
            --with-debug \
            --with-compat \
            --with-threads \
            --with-pcre-jit \
            --with-http_ssl_module \
            --with-http_v2_module \
            --with-http_stub_status_module \
            --with-http_realip_module \
            --with-http_auth_request_module \
            --with-cc-opt="$cc_opt" \
            --with-ld-opt="$ld_opt" \
            "$add_module" > "$out/configure.log" 2>&1 \
        || { tail -20 "$out/configure.log"; exit 1; }
    )
    touch "$stamp"
fi

# shellcheck disable=SC2086
(cd "$src" && make -f "$out/objs/Makefile" -j"$(nproc)" $targets) \
    > "$out/make.log" 2>&1 \
|| { grep -E -B2 -A6 'error|warning' "$out/make.log" | head -60; exit 1; }

cp "$out/objs/nginx" "$out/.nginx.tmp"
mv -f "$out/.nginx.tmp" "$out/nginx"
if [ $link = dynamic ]; then
    cp "$out/objs/ngx_http_streaming_module.so" "$out/.module.so.tmp"
    mv -f "$out/.module.so.tmp" "$out/ngx_http_streaming_module.so"
fi
echo "built $out/nginx ($("$out/nginx" -v 2>&1)), module $link"
