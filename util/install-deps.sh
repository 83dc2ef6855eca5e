#!/bin/sh
# Installs the Debian packages that building and testing need.
# As root: apt-get update (once) and install what is missing.
# Otherwise: say what to install and fail.
#
# usage: util/install-deps.sh [build|test|asan|src|demo|all]...

set -e

want=""
for what in "${@:-test}"; do
    case "$what" in
    build) want="$want gcc make nginx nginx-dev libpcre2-dev zlib1g-dev
                       libssl-dev libjansson-dev" ;;
    src)   want="$want gcc make dpkg-dev libpcre2-dev zlib1g-dev libssl-dev libjansson-dev" ;;
    test)  want="$want gcc make nginx nginx-dev libpcre2-dev zlib1g-dev
                       libssl-dev libjansson-dev perl curl nghttp2-client openssl chromium
                       python3-websockets" ;;
    asan)  want="$want gcc make dpkg-dev libpcre2-dev zlib1g-dev libssl-dev libjansson-dev
                       perl curl nghttp2-client openssl chromium python3-websockets" ;;
    valgrind) want="$want valgrind" ;;
    fuzz)  want="$want clang libclang-rt-14-dev libssl-dev libjansson-dev" ;;
    demo)  want="$want gcc make nginx nginx-dev libpcre2-dev zlib1g-dev
                       libssl-dev libjansson-dev curl" ;;
    *) echo "install-deps.sh: unknown set \"$what\"" >&2; exit 2 ;;
    esac
done

# the interop tests drive Node clients (t/node): Debian's node where the
# machine has none of its own
case " $want " in
*" curl "*) command -v npm >/dev/null 2>&1 || want="$want nodejs npm" ;;
esac

missing=""
for p in $want; do
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null \
         | grep -q "install ok installed"
    then
        missing="$missing $p"
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$missing" >&2
    echo "install them as root: apt-get update && apt-get install -y$missing" >&2
    exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
