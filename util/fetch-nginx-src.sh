#!/bin/sh
# Fetches an nginx source tree with `apt-get source`, from Debian bookworm
# (1.22) or trixie (1.26), into build/src/, and prints its path.
#
# usage: util/fetch-nginx-src.sh 1.22|1.26

set -e

top=$(cd "$(dirname "$0")/.." && pwd)

case "$1" in
1.22) suite=bookworm ;;   # the version of Debian's own nginx package
1.26) suite=trixie ;;
*) echo "usage: $0 1.22|1.26" >&2; exit 2 ;;
esac

dir="$top/build/src/$suite"
found=$(ls -d "$dir"/nginx-"$1".* 2>/dev/null | head -n 1)

if [ -n "$found" ] && [ -f "$found/configure" ]; then
    echo "$found"
    exit 0
fi

"$top/util/install-deps.sh" src >&2

if ! apt-cache showsrc nginx 2>/dev/null | grep -q "^Version: $1\."; then
    list=/etc/apt/sources.list.d/ngx-streaming-deb-src.sources
    if [ "$(id -u)" != 0 ]; then
        echo "no deb-src entry for $suite: as root, add one beside the" \
             "existing sources (Types: deb-src, Suites: $suite)" >&2
        exit 1
    fi

    # a source-only entry: it never changes which binary packages install
    cat > "$list" <<SOURCES
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -q >&2
fi

mkdir -p "$dir"
(cd "$dir" && apt-get source -q "nginx/$suite" >&2)

found=$(ls -d "$dir"/nginx-"$1".* | head -n 1)
echo "$found"
