#!/bin/sh
# Builds the libFuzzer targets in t/fuzz/ with clang (ASan + UBSan) and runs
# each for a bounded time from the seed corpus in t/fuzz/corpus/<name>/.
# New inputs go to build/fuzz/corpus-<name>/, crashes to build/fuzz/.
#
# usage: util/fuzz.sh [seconds per target, default 60] [target...]

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
[ $# -gt 0 ] && shift

"$top/util/install-deps.sh" fuzz

# the nginx headers of the configured nginx-dev tree (make module)
ngx="$top/build/debian/src"
if [ ! -f "$ngx/objs/ngx_auto_config.h" ]; then
    "$top/util/build-debian.sh"
fi

out="$top/build/fuzz"
mkdir -p "$out"

cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
        -Wall -Wextra -Werror -Wno-unused-parameter
        -I $ngx/src/core -I $ngx/src/event -I $ngx/src/event/modules
        -I $ngx/src/os/unix -I $ngx/objs -I $top/src"

# each target and the leaf sources it needs
sources() {
    case "$1" in
    framing) echo "$top/src/ngx_http_streaming_framing.c" ;;
    ids)     echo "$top/src/ngx_http_streaming_ids.c" ;;
    message) echo "$top/src/ngx_http_streaming_message.c" \
                  "$top/t/unit/pool.c" ;;
    ws)      echo "$top/src/ngx_http_streaming_ws.c" \
                  "$top/src/ngx_http_streaming_framing.c" \
                  "$top/t/unit/sha1.c" ;;
    *) echo "unknown fuzz target $1" >&2; exit 2 ;;
    esac
}

# and the libraries it links with
libs() {
    case "$1" in
    message) echo "-ljansson" ;;
    esac
}

targets=${*:-$(cd "$top/t/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')}

status=0

for t in $targets; do
    # shellcheck disable=SC2046,SC2086
    clang $cflags -o "$out/fuzz_$t" "$top/t/fuzz/fuzz_$t.c" $(sources "$t") \
        $(libs "$t")

    mkdir -p "$out/corpus-$t"
    echo "fuzz_$t: $seconds s"

    if ! "$out/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$out/crash-$t-" \
            "$out/corpus-$t" "$top/t/fuzz/corpus/$t" \
            > "$out/fuzz_$t.log" 2>&1
    then
        echo "fuzz_$t FAILED: see $out/fuzz_$t.log and $out/crash-$t-*"
        tail -40 "$out/fuzz_$t.log"
        status=1
        continue
    fi

    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" \
        "$out/fuzz_$t.log" | sed "s/^/  /"
done

exit $status
