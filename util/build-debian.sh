#!/bin/sh
# Builds ngx_http_streaming_module.so for the installed Debian nginx, from
# the nginx-dev package's tree, configured with the flags the package
# records, building the modules only.
#
# output: build/debian/ngx_http_streaming_module.so

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/debian"
src=/usr/share/nginx/src

"$top/util/install-deps.sh" build

mkdir -p "$out"

# configure again only when the nginx-dev tree or the module's build script
# changed; make takes care of the sources
stamp="$out/configured"
if [ ! -f "$stamp" ] || [ "$src/conf_flags" -nt "$stamp" ] \
   || [ "$top/config" -nt "$stamp" ]
then
    rm -rf "$out/src"
    cp -r "$src" "$out/src"
    (
        cd "$out/src"
        # conf_flags defines NGX_CONF_FLAGS as a bash array
        flags=$(bash -c '. ./conf_flags; printf "%s\n" "${NGX_CONF_FLAGS[@]}"')
        # shellcheck disable=SC2086
        IFS='
'
        set -- $flags
        ./configure "$@" \
            --with-cc-opt="-g -O2 -fPIC -Wall -Wextra -Werror" \
            --add-dynamic-module="$top" > "$out/configure.log" 2>&1 \
        || { tail -20 "$out/configure.log"; exit 1; }
    )
    touch "$stamp"
fi

make -C "$out/src" -f objs/Makefile -j"$(nproc)" modules > "$out/make.log" 2>&1 \
|| { grep -E -B2 -A6 'error|warning' "$out/make.log" | head -60; exit 1; }

# a new file, not overwritten in place: a running nginx maps the old one
cp "$out/src/objs/ngx_http_streaming_module.so" "$out/.module.so.tmp"
mv -f "$out/.module.so.tmp" "$out/ngx_http_streaming_module.so"
echo "built $out/ngx_http_streaming_module.so for $(/usr/sbin/nginx -v 2>&1)"
