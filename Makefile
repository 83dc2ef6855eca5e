# ngx_http_streaming_module
#
#   make            the module for Debian's nginx (build/debian/*.so)
#   make test       build it and run the test suite against Debian's nginx
#   make demo       run nginx with conf-examples/demo.conf and the mock LLM
#   make asan       the test suite on nginx 1.26 built with ASan + UBSan
#   make test-1.26  the test suite on nginx 1.26 built from source
#   make debug      nginx $(NGINX_VERSION) from source, with the module, -O0
#   make fuzz       the libFuzzer targets, FUZZ_TIME seconds each
#   make valgrind   a representative part of the suite under valgrind
#   make bench-tools  the benchmark load client (build/sse-load)
#   make bench-producer  plain proxy_pass vs streaming location benchmark
#                   (writes build/bench/producer-results.md)
#   make bench-fanout    fan-out to N SSE subscribers, ours vs nchan
#                   (writes build/bench/fanout-results.md)
#   make bench-fanout-ws the same with SSE and WebSocket subscribers
#   make bench-wakeup    cross-worker wake-up latency, ours vs nchan
#                   (writes build/bench/wakeup-results.md)
#
# NGINX_SRC=/path/to/nginx   build from that tree instead of apt-get source
# TEST=t/010-zone.t          run only these tests

NGINX_VERSION ?= 1.26
TEST          ?= t/
FUZZ_TIME     ?= 60
PROVE         ?= prove
PROVE_FLAGS   ?= -r

CC            ?= cc
MOCK_CFLAGS    = -O2 -g -Wall -Wextra -Werror

SRCS = config $(wildcard src/*.c src/*.h)

.PHONY: all module mock node-deps test asan test-1.26 valgrind debug demo \
        fuzz clean bench-tools bench-producer bench-fanout bench-fanout-ws \
        bench-wakeup

# the valgrind run: status, formats, errors, subscribers, resume, bad input,
# publish, tokens, WebSocket frames and protocol
VALGRIND_TESTS = t/011-status.t t/101-producer-formats.t \
                 t/102-producer-errors.t t/200-subscribe.t \
                 t/201-transparent-resume.t t/400-bad-input.t \
                 t/510-publish.t t/520-secret.t \
                 t/610-websocket-conformance.t t/611-websocket-protocol.t

all: module

module: build/debian/ngx_http_streaming_module.so

build/debian/ngx_http_streaming_module.so: $(SRCS) util/build-debian.sh
	util/build-debian.sh

mock: build/mock-llm

build/mock-llm: util/mock-llm/mock-llm.c
	@mkdir -p build
	$(CC) $(MOCK_CFLAGS) -o $@ $<

bench-tools: build/sse-load

build/sse-load: util/bench/sse-load.c
	@mkdir -p build
	$(CC) $(MOCK_CFLAGS) -o $@ $<

# BENCH_FLAGS: options for util/bench/producer.pl (e.g. --quick)
bench-producer: module mock bench-tools
	util/bench/producer.pl $(BENCH_FLAGS)

# fan-out to N SSE subscribers, ours vs nchan (libnginx-mod-nchan)
# (writes build/bench/fanout-results.md); FANOUT_FLAGS: util/bench/fanout.pl options
bench-fanout: module mock bench-tools
	util/bench/fanout.pl $(FANOUT_FLAGS)

# the same scenarios over SSE and over WebSocket in one run (--ws; also
# make bench-fanout FANOUT_FLAGS=--ws)
bench-fanout-ws: module mock bench-tools
	util/bench/fanout.pl --ws $(FANOUT_FLAGS)

# cross-worker wake-up latency, ours vs nchan (libnginx-mod-nchan)
# (writes build/bench/wakeup-results.md); WAKEUP_FLAGS: util/bench/wakeup.pl
# options (e.g. --reps 1, --quick)
bench-wakeup: module mock
	util/bench/wakeup.pl $(WAKEUP_FLAGS)

# third-party clients for the interop tests (npm, versions locked)
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
	    [ t/node/node_modules/.package-lock.json -nt t/node/package-lock.json ] \
	    || npm ci --prefix t/node --no-audit --no-fund; fi

test: module mock
	util/install-deps.sh test
	$(MAKE) node-deps
	$(PROVE) $(PROVE_FLAGS) $(TEST)

asan: mock node-deps
	util/install-deps.sh asan
	util/build-nginx.sh 1.26 asan
	TEST_NGINX_BINARY=$(CURDIR)/build/nginx-1.26-asan/nginx \
	TEST_NGINX_MODULE= \
	$(PROVE) $(PROVE_FLAGS) $(TEST)

test-1.26: mock node-deps
	util/install-deps.sh asan
	util/build-nginx.sh 1.26 release
	TEST_NGINX_BINARY=$(CURDIR)/build/nginx-1.26-release/nginx \
	TEST_NGINX_MODULE=$(CURDIR)/build/nginx-1.26-release/ngx_http_streaming_module.so \
	$(PROVE) $(PROVE_FLAGS) $(TEST)

valgrind: module mock
	util/install-deps.sh test valgrind
	TEST_NGINX_VALGRIND=1 $(PROVE) $(VALGRIND_TESTS)

debug:
	util/build-nginx.sh $(NGINX_VERSION) debug

fuzz: module
	util/fuzz.sh $(FUZZ_TIME)

demo: module mock
	util/install-deps.sh demo
	util/demo.sh

clean:
	rm -rf build
