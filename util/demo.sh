#!/bin/sh
# Runs the demo in the foreground: the mock LLM server and Debian's nginx
# with the module and conf-examples/demo.conf.  Ctrl-C stops both.
#
#   DEMO_PORT (default 8080), MOCK_PORT (default 8081)

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
prefix="$top/build/demo"
port=${DEMO_PORT:-8080}
mport=${MOCK_PORT:-8081}
nginx=${NGINX:-/usr/sbin/nginx}

rm -rf "$prefix"
mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/modules" "$prefix/tmp"
chmod 755 "$prefix" "$prefix/logs" "$prefix/tmp"
ln -sf "$top/build/debian/ngx_http_streaming_module.so" "$prefix/modules/"

sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$port/" \
    -e "s/127\.0\.0\.1:8081/127.0.0.1:$mport/" \
    "$top/conf-examples/demo.conf" > "$prefix/conf/nginx.conf"

"$top/build/mock-llm" -p "$mport" > "$prefix/logs/mock-llm.out" 2>&1 &
mock=$!

# nginx runs in the foreground; stop the mock server with it
trap 'kill $mock 2>/dev/null; wait $mock 2>/dev/null' EXIT INT TERM

"$nginx" -p "$prefix/" -c conf/nginx.conf -t -q

cat <<MSG

  nginx  http://127.0.0.1:$port/   (conf: $prefix/conf/nginx.conf)
  mock   http://127.0.0.1:$mport/   (an OpenAI-compatible LLM server)

  Try, in another terminal:

    curl -N -i http://127.0.0.1:$port/v1/chat/completions \\
         -H 'Content-Type: application/json' \\
         -d '{"model":"mock-llm","stream":true,"messages":[{"role":"user","content":"hi"}]}'

    # the Stream-Id response header names the stream: read it again,
    # from any sequence, as NDJSON Omni messages
    curl -N "http://127.0.0.1:$port/streams/?id=<Stream-Id>&format=ndjson&from=0"

    curl http://127.0.0.1:$port/streaming-status
    curl http://127.0.0.1:$port/streaming-status?format=json
    curl http://127.0.0.1:$port/streaming-status?format=prometheus

  Ctrl-C stops nginx and the mock server.

MSG

"$nginx" -p "$prefix/" -c conf/nginx.conf \
    -g "daemon off; error_log stderr notice;"
