#!/usr/bin/perl
# Self-test of the test harness (t/lib/StreamTest.pm) against stock nginx.
# Works with or without the streaming module: the module is loaded when its
# .so exists (or TEST_NGINX_MODULE says so), but nothing here uses it.

use strict;
use warnings;

use lib 't/lib';

use File::Temp qw(tempdir);
use Test::More;
use Test2::API qw(intercept);
use Time::HiRes qw(time sleep);

use StreamTest;

if (!defined $ENV{TEST_NGINX_MODULE}
    && !-e "$StreamTest::REPO/build/debian/ngx_http_streaming_module.so")
{
    $ENV{TEST_NGINX_MODULE} = '';
}

my $NGINX = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
plan skip_all => "nginx binary $NGINX not found" unless -x $NGINX;

# ---------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------

subtest 'parse_sse' => sub {
    my @ev = parse_sse("data: one\n\n");
    is(scalar @ev, 1, 'one event');
    is($ev[0]{data}, 'one', 'data');
    is($ev[0]{event}, undef, 'no event name');
    is($ev[0]{id}, undef, 'no id');
    is($ev[0]{raw}, "data: one\n\n", 'raw bytes');

    @ev = parse_sse("event: delta\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\ndata: c\r\n\r\n");
    is(scalar @ev, 2, 'CRLF: two events');
    is($ev[0]{event}, 'delta', 'CRLF: event name');
    is($ev[0]{id}, '7', 'CRLF: id');
    is($ev[0]{data}, "a\nb", 'CRLF: multi-line data, "data:b" without space');
    is($ev[0]{raw}, "event: delta\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\n", 'CRLF: raw');
    is($ev[1]{data}, 'c', 'CRLF: second event');

    @ev = parse_sse("data: x\rdata:  y\r\rdata: z\r\r");
    is(scalar @ev, 2, 'CR: two events');
    is($ev[0]{data}, "x\n y", 'CR: only one leading space stripped');
    is($ev[1]{data}, 'z', 'CR: second');

    @ev = parse_sse(": ping\n\n:\n\n: a\n:b\ndata: d\n\n");
    is(scalar @ev, 3, 'comment blocks are events');
    is($ev[0]{data}, undef, 'heartbeat has no data');
    is_deeply($ev[0]{comments}, ['ping'], 'comment text without ": "');
    is_deeply($ev[1]{comments}, [''], 'empty comment');
    is_deeply($ev[2]{comments}, [ 'a', 'b' ], 'comments beside data');
    is($ev[2]{data}, 'd', 'data beside comments');

    @ev = parse_sse("data\n\ndata\ndata\n\nevent\n\n");
    is($ev[0]{data}, '', 'field without colon: empty value');
    is($ev[1]{data}, "\n", 'two empty data lines');
    is($ev[2]{event}, '', 'event without colon');
    is($ev[2]{data}, undef, 'no data');

    @ev = parse_sse("data: done\n\ndata: incomplete\n");
    is(scalar @ev, 1, 'trailing incomplete event not returned');

    @ev = parse_sse("data: no blank line");
    is(scalar @ev, 0, 'no complete event');

    @ev = parse_sse("\n\n\r\ndata: after blanks\n\n");
    is(scalar @ev, 1, 'leading blank lines produce no event');
    is($ev[0]{raw}, "data: after blanks\n\n", 'raw starts at the first line');

    @ev = parse_sse("\xEF\xBB\xBFdata: bom\n\n");
    is($ev[0]{data}, 'bom', 'BOM skipped');

    @ev = parse_sse("id: 1\nid: 2\nretry: 1500\nretry: x\nfoo: bar\ndata: {\"a\":1}\n\n");
    is($ev[0]{id}, '2', 'last id wins');
    is($ev[0]{retry}, '1500', 'retry (invalid one ignored)');
    is_deeply($ev[0]{fields}[4], [ 'foo', 'bar' ], 'unknown field kept in fields');
    is_deeply(json_decode($ev[0]{data}), { a => 1 }, 'JSON payload');

    @ev = parse_sse("data: a: b\n\n");
    is($ev[0]{data}, 'a: b', 'only the first colon splits');

    # Incremental scanner: CRLF split over two reads.
    my ($evs, $consumed, $skip) = StreamTest::Parse::sse_scan("data: 1\r\n\r", 0, 0);
    is(scalar @$evs, 1, 'split CRLF: event dispatched at CR');
    is($skip, 1, 'split CRLF: LF to skip');
    ($evs, $consumed, $skip) =
        StreamTest::Parse::sse_scan("data: 1\r\n\r\ndata: 2\r\n\r\n", $consumed, $skip);
    is(scalar @$evs, 1, 'split CRLF: LF not taken as a blank line');
    is($evs->[0]{data}, '2', 'split CRLF: next event');
};

subtest 'parse_ndjson' => sub {
    my @v = parse_ndjson(qq({"a":1}\n\n{"b":[1,2]}\r\n"s"\n));
    is_deeply(\@v, [ { a => 1 }, { b => [ 1, 2 ] }, 's' ], 'values');
    is_deeply([ parse_ndjson('') ], [], 'empty');
    eval { parse_ndjson(qq({"a":1}\n{oops}\n)) };
    like($@, qr/line 2: '\{oops\}'/, 'invalid line named');
};

subtest 'json' => sub {
    is(json_encode({ b => 1, a => [ 1, "x" ] }), '{"a":[1,"x"],"b":1}', 'canonical');
    is(json_encode("\x{e9}"), qq("\xc3\xa9"), 'utf8 bytes out');
    is(json_decode(qq("\xc3\xa9")), "\x{e9}", 'utf8 bytes in');
    is(json_decode('3'), 3, 'allow_nonref');
};

subtest 'decode_chunked' => sub {
    is(decode_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), 'hello world', 'basic');
    is(decode_chunked("A;ext=1\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"), '0123456789',
        'extension and trailer');
    is(decode_chunked("0\r\n\r\n"), '', 'empty body');
    for my $bad (
        [ "5\r\nhell\r\n0\r\n\r\n",   'short chunk' ],
        [ "zz\r\nhello\r\n0\r\n\r\n", 'bad size' ],
        [ "5\nhello\n0\n\n",          'bare LF' ],
        [ "5\r\nhello\r\n",           'truncated' ],
        [ "0\r\n\r\nextra",           'trailing garbage' ],
    ) {
        eval { decode_chunked($bad->[0]) };
        like($@, qr/malformed chunked body/, "dies: $bad->[1]");
    }
};

subtest 'scan_log' => sub {
    my $log = <<'EOF';
2024/01/01 00:00:00 [notice] 1#1: start worker processes
2024/01/01 00:00:00 [alert] 1#1: worker process 7 exited on signal 11
2024/01/01 00:00:00 [error] 2#2: *1 upstream timed out
2024/01/01 00:00:00 [emerg] 1#1: unknown directive "foo"
2024/01/01 00:00:00 [error] 2#2: *3 upstream timed out
EOF
    my ($bad, $cnt) = StreamTest::scan_log($log, []);
    is(scalar @$bad, 2, 'alert and emerg are bad');
    like($bad->[0], qr/exited on signal/, 'offending line returned');
    is_deeply($cnt, [], 'no count errors without expectations');

    ($bad, $cnt) = StreamTest::scan_log($log,
        [ [ qr/unknown directive/, 1 ], [ qr/upstream timed out/, 2 ], [ qr/exited on signal 11/, undef ] ]);
    is_deeply($bad, [], 'declared lines are exempt');
    is_deeply($cnt, [], 'declared counts match');

    ($bad, $cnt) = StreamTest::scan_log($log, [ [ qr/upstream timed out/, 1 ], [ 'never seen', undef ] ]);
    is(scalar @$bad, 2, 'undeclared bad lines still reported');
    is(scalar @$cnt, 2, 'wrong count and missing line reported');
    like($cnt->[0], qr/expected 1 .* found 2/, 'count error text');

    ($bad, $cnt) = StreamTest::scan_log($log, [ { re => qr/\[error\]/, count => 0 } ]);
    like($cnt->[0], qr/expected 0/, 'count 0 forbids a pattern');

    for my $line ('==12== ERROR SUMMARY: 3 errors from 3 contexts',
        '==1==ERROR: AddressSanitizer: heap-use-after-free',
        '==1==ERROR: LeakSanitizer: detected memory leaks',
        'src/x.c:10:5: runtime error: signed integer overflow',
        '2024/01/01 00:00:00 [crit] 1#1: open() failed')
    {
        ($bad) = StreamTest::scan_log("$line\n", []);
        is(scalar @$bad, 1, "bad: $line");
    }
    ($bad) = StreamTest::scan_log("==12== ERROR SUMMARY: 0 errors from 0 contexts\n", []);
    is(scalar @$bad, 0, 'ERROR SUMMARY: 0 is fine');
};

subtest 'build_request' => sub {
    my $req = StreamTest::build_request('POST', '/p', body => 'abc',
        headers => [ 'X-A' => 1, 'X-A' => 2 ]);
    is($req, "POST /p HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2\r\n"
        . "Connection: close\r\nContent-Length: 3\r\n\r\nabc", 'defaults and body');
    $req = StreamTest::build_request('GET', '/', http10 => 1,
        headers => { Host => 'example', Connection => undef });
    is($req, "GET / HTTP/1.0\r\nHost: example\r\n\r\n", 'override and suppress defaults');
};

subtest 'free_port' => sub {
    my %seen;
    $seen{ free_port() }++ for 1 .. 20;
    is(scalar keys %seen, 20, 'no port returned twice');
};

# ---------------------------------------------------------------------------
# Stand-in mock LLM (the real one is TEST_NGINX_MOCK_LLM / build/mock-llm)
# ---------------------------------------------------------------------------

my $tmp = tempdir('streamtest-self-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $fake_mock = "$tmp/fake-mock";
{
    open(my $fh, '>', $fake_mock) or die "$fake_mock: $!";
    print {$fh} "#!$^X\n", <<'EOF';
use strict;
use warnings;
use IO::Socket::IP;
use Time::HiRes qw(sleep);

my %o = @ARGV;
my $srv = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => $o{'-p'} // 0,
    Listen => 16, ReuseAddr => 1) or die "listen: $@";
$| = 1;
print 'listening on 127.0.0.1:', $srv->sockport, "\n";
my $requests = 0;
$SIG{PIPE} = 'IGNORE';

while (my $c = $srv->accept) {
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        my $n = sysread($c, $buf, 4096, length $buf) or last;
    }
    my ($method, $path) = $buf =~ /\A(\S+) (\S+)/ or next;
    my ($len) = $buf =~ /^Content-Length:\s*(\d+)/mi;
    my $body = substr($buf, index($buf, "\r\n\r\n") + 4);
    while (defined $len && length $body < $len) {
        sysread($c, $body, $len - length $body, length $body) or last;
    }
    my $send = sub { syswrite($c, $_) for @_ };
    my $ok = sub {
        my ($type, $content) = @_;
        $send->("HTTP/1.1 200 OK\r\nContent-Type: $type\r\nContent-Length: "
            . length($content) . "\r\nConnection: close\r\n\r\n$content");
    };
    if ($path eq '/stats' && $method eq 'GET') {
        $ok->('application/json', qq({"requests":$requests}));
    }
    elsif ($path eq '/stats/reset' && $method eq 'POST') {
        $requests = 0;
        $ok->('application/json', '{"ok":true}');
    }
    elsif ($path eq '/sse') {
        $requests++;
        $send->("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
        for my $part ("data: one\n\n", ": ping\n\n", "event: two\ndata: 2a\ndata: 2b\n\n",
            "data: three\n\n")
        {
            sleep 0.05;
            $send->($part);
        }
    }
    elsif ($path eq '/split') {
        # A chunked SSE + NDJSON body dribbled out in 1..3 byte pieces.
        $requests++;
        my $body = "data: a\r\n\r\ndata: b\r\n\r\n";
        my $chunked = '';
        for my $piece ("data: a\r", "\n\r\nda", "ta: b\r\n\r\n") {
            $chunked .= sprintf("%x\r\n%s\r\n", length $piece, $piece);
        }
        $chunked .= "0\r\n\r\n";
        $send->("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        my $i = 0;
        while ($i < length $chunked) {
            my $n = 1 + $i % 3;
            $send->(substr($chunked, $i, $n));
            $i += $n;
            sleep 0.002;
        }
    }
    elsif ($path eq '/ndjson') {
        $requests++;
        $send->("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n");
        for my $n (1 .. 3) {
            sleep 0.05;
            $send->(qq({"n":$n}\r\n));
        }
    }
    else {
        $requests++;
        $send->("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    close $c;
}
EOF
    close $fh;
    chmod 0755, $fake_mock;
}

# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

my $t = StreamTest->new(workers => 2);
like($t->prefix, qr{^/}, 'prefix is absolute');
ok(-d $t->prefix . "/$_", "prefix has $_/") for qw(conf logs tmp html);
isnt($t->port, $t->port(2), 'distinct ports');

my $mport = $t->start_mock_llm(binary => $fake_mock);
like($mport, qr/^\d+$/, 'stand-in mock started');
is($t->mock_port, $mport, 'mock_port');

$t->write_file('html/chunked/index.html', "<p>a</p><!--# echo var=\"x\" default=\"X\" --><p>b</p>\n");

$t->http_config(<<'EOF');
server {
    listen 127.0.0.1:%%PORT2%%;
    location / { return 200 "port2 %%PREFIX%%\n"; }
}
EOF
$t->server_config(<<'EOF');
location /hello { return 200 "hi\n"; }
location /chunked/ { ssi on; }
location /proxied/ {
    proxy_pass http://127.0.0.1:%%MOCK_PORT%%/;
    proxy_buffering off;
}
EOF

like($t->config_text, qr/listen 127\.0\.0\.1:\d+;/, 'placeholders replaced');
unlike($t->config_text, qr/%%/, 'no placeholder left');
if ($t->module_path eq '') {
    unlike($t->config_text, qr/load_module/, 'no load_module for an empty TEST_NGINX_MODULE');
}
else {
    like($t->config_text, qr/^load_module \Q${\ $t->module_path }\E;/m, 'load_module line');
}
if ($> == 0) {
    like($t->config_text, qr/^user root;/m, 'user root as root');
}
else {
    unlike($t->config_text, qr/^user /m, 'no user directive when unprivileged');
}

$t->start;
my $master = $t->master_pid;
ok($master && kill(0, $master), 'master running');
my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers');

subtest 'http' => sub {
    my $r = $t->get('/hello');
    is($r->{status}, 200, 'status');
    is($r->{reason}, 'OK', 'reason');
    is($r->{body}, "hi\n", 'body');
    is($r->{headers}{'content-length'}, 3, 'lower-cased header names');
    is($r->{headers}{connection}, 'close', 'connection close');
    like($r->{raw}, qr/\AHTTP\/1\.1 200 OK\r\n.*\r\n\r\nhi\n\z/s, 'raw bytes');
    ok(!$r->{timed_out}, 'not timed out');
    ok($r->{elapsed} < 5, 'elapsed');
    ok((grep { $_->[0] eq 'Server' } @{ $r->{header_list} }), 'header_list keeps names');

    $r = $t->get('/', port => $t->port(2));
    is($r->{body}, "port2 " . $t->prefix . "\n", '%%PORT2%% and %%PREFIX%%');

    $r = $t->get('/nope');
    is($r->{status}, 404, 'not found');

    $r = $t->post('/hello', 'x' x 10);
    is($r->{status}, 200, 'POST with body');

    $r = $t->head('/hello');
    is($r->{status}, 200, 'HEAD');
    is($r->{body}, '', 'HEAD has no body');
    ok(!$r->{timed_out}, 'HEAD does not wait for a body');

    $r = $t->get('/chunked/');
    is($r->{status}, 200, 'SSI status');
    is($r->{headers}{'transfer-encoding'}, 'chunked', 'chunked response');
    is($r->{body}, "<p>a</p>X<p>b</p>\n", 'chunked body decoded');
    my ($raw_body) = $r->{raw} =~ /\r\n\r\n(.*)\z/s;
    is(decode_chunked($raw_body), $r->{body}, 'decode_chunked on the raw body');

    $r = $t->get('/chunked/', http10 => 1);
    ok(!defined $r->{headers}{'transfer-encoding'}, 'HTTP/1.0: not chunked');
    is($r->{body}, "<p>a</p>X<p>b</p>\n", 'HTTP/1.0 body');

    $r = $t->http('GET', '/hello',
        raw_request => "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    is($r->{body}, "hi\n", 'raw_request');

    $r = $t->http('GET', '/', raw_request => "GET /hello HTTP/1.1\r\nHost: x\r\n", timeout => 0.5);
    ok($r->{timed_out}, 'incomplete request times out');
    is($r->{status}, undef, 'no status on timeout');

    $r = $t->http('GET', '/x', raw_request => "BAD\r\n\r\n");
    is($r->{status}, 400, 'bad request answered 400');

    # Keep-alive: the body framing ends the read, not EOF.
    my $t0 = time;
    $r = $t->get('/hello', headers => { Connection => 'keep-alive' }, timeout => 3);
    is($r->{body}, "hi\n", 'keep-alive body');
    ok(!$r->{timed_out} && time - $t0 < 2, 'keep-alive: no wait for EOF');
};

subtest 'stream' => sub {
    my $c = $t->stream('GET', '/proxied/sse', headers => { Accept => 'text/event-stream' });
    isa_ok($c, 'StreamTest::Conn');
    my $h = $c->read_headers(5);
    is($h->{status}, 200, 'status');
    is($h->{headers}{'content-type'}, 'text/event-stream', 'content type');
    is($h->{headers}{'transfer-encoding'}, 'chunked', 'nginx streams chunked');
    my $body = $c->read_until(qr/ping/, 5);
    like($body, qr/\Adata: one\n\n: ping\n\n/, 'read_until');
    my @ev = $c->read_events(2, 5);
    is(scalar @ev, 2, 'two events');
    is($ev[0]{data}, 'one', 'first event');
    is($ev[1]{data}, undef, 'heartbeat comment');
    is_deeply($ev[1]{comments}, ['ping'], 'comment');
    my $ev = $c->read_event(5);
    is($ev->{event}, 'two', 'named event');
    is($ev->{data}, "2a\n2b", 'multi-line data');
    @ev = $c->read_events(5, 5);
    is(scalar @ev, 1, 'stream ends: fewer events than asked');
    is($ev[0]{data}, 'three', 'last event');
    ok($c->complete, 'complete');
    is($c->read_to_end(1), '', 'nothing left');
    ok($c->eof, 'eof after read_to_end');
    is(scalar(parse_sse($c->body)), 4, 'parse_sse on the whole body');
    $c->close;

    # Timeout: ask for more than arrives in time (timing only meaningful
    # when timeouts are not scaled, i.e. not under valgrind).
    $c = $t->stream('GET', '/proxied/sse');
    my $t0 = time;
    @ev = $c->read_events(4, 0.07);
    if (StreamTest::timeout_factor() == 1) {
        ok(@ev < 4, 'read_events returns early on timeout');
        ok(time - $t0 < 1, 'timeout honoured');
    }
    my $rest = $c->read_to_end(5);
    if (@ev < 4) {
        like($rest, qr/data: three\n\n\z/, 'read_to_end returns the rest');
    }
    else {
        is($rest, '', 'read_to_end: all consumed already');
    }
    unlike($rest, qr/data: one/, 'consumed events not returned again')
        if @ev && $ev[0]{data} eq 'one';
    $c->close;

    # NDJSON lines.
    $c = $t->stream('GET', '/proxied/ndjson');
    my @lines = $c->read_lines(2, 5);
    is_deeply(\@lines, [ '{"n":1}', '{"n":2}' ], 'read_lines');
    is_deeply([ parse_ndjson($c->read_to_end(5)) ], [ { n => 3 } ], 'rest as NDJSON');
    $c->close;

    # Awkwardly split chunked SSE, directly from the stand-in.
    $c = $t->stream('GET', '/split', port => $t->mock_port);
    @ev = $c->read_events(3, 5);
    is(scalar @ev, 2, 'split: two events');
    is($ev[0]{data}, 'a', 'split: first');
    is($ev[1]{data}, 'b', 'split: second (CRLF split across reads)');
    is($ev[0]{raw}, "data: a\r\n\r\n", 'split: raw');
    is($c->body, "data: a\r\n\r\ndata: b\r\n\r\n", 'split: dechunked body');
    $c->close;
};

subtest 'mock stats' => sub {
    my $s = $t->mock_stats;
    ok($s->{requests} >= 4, 'mock counted requests');
    ok($t->mock_reset, 'mock_reset');
    is($t->mock_stats->{requests}, 0, 'stats reset');
};

subtest 'nginx_t' => sub {
    my ($code, $out) = $t->nginx_t(server => 'location / { bogus_directive_x on; }');
    isnt($code, 0, 'broken config: non-zero exit');
    like($out, qr/unknown directive "bogus_directive_x"/, 'broken config: message');
    ($code, $out) = $t->nginx_t();
    is($code, 0, 'current config passes') or diag $out;
    like($out, qr/syntax is ok/, 'syntax is ok');
    unlike($t->error_log, qr/bogus_directive_x/, 'nginx -t does not write to error.log');
};

subtest 'reload' => sub {
    my @old = $t->worker_pids;
    my $mark = $t->log_mark;
    my $r = $t->reload(server => <<'EOF');
location /hello { return 200 "hello again\n"; }
EOF
    is($r, 1, 'reload accepted');
    my @new = $t->worker_pids;
    is(scalar @new, 2, 'two new workers');
    my %old = map { $_ => 1 } @old;
    ok(!(grep { $old{$_} } @new), 'worker pids are all new');
    is($t->master_pid, $master, 'same master');
    is($t->get('/hello')->{body}, "hello again\n", 'new config answers');
    ok($t->wait_for_log(qr/reconfiguring/, 5, from => $mark), 'wait_for_log from mark');
    ok(!$t->wait_for_log(qr/no such line/, 0.2), 'wait_for_log times out');

    $t->expect_log(qr/\[emerg\].*unknown directive "broken_directive_y"/, 1);
    @old = $t->worker_pids;
    is($t->reload(server => 'broken_directive_y;'), 0, 'refused reload returns 0');
    is_deeply([ $t->worker_pids ], \@old, 'workers unchanged');
    is($t->get('/hello')->{body}, "hello again\n", 'old config still answers');
    unlike($t->config_text, qr/broken_directive_y/, 'config parts restored');
};

$t->stop;
ok(!kill(0, $master), 'master gone after stop');
ok(!(grep { kill 0, $_ } $t->worker_pids, @workers), 'workers gone after stop');
my @ours = grep { _cmdline($_) =~ /\Q${\ $t->prefix }\E/ } _all_pids();
is_deeply(\@ours, [], 'no process of this prefix left');
like($t->error_log, qr/gracefully shutting down/, 'error log readable after stop');
$t->stop;    # idempotent
pass('second stop is a no-op');

# ---------------------------------------------------------------------------
# Failures are detected: run stop() inside intercept and inspect assertions
# ---------------------------------------------------------------------------

subtest 'stop reports problems' => sub {
    my $u = StreamTest->new(workers => 1, name => 'must-fail');
    $u->server_config('location / { return 204; }');
    $u->expect_log(qr/this line never appears/, 1);
    my $events = intercept {
        $u->start;
        $u->reload(server => 'undeclared_directive_z;');
        $u->stop;
    };
    my %res = map {
        my $f = $_->facet_data;
        $f->{assert} ? ($f->{assert}{details} => $f->{assert}{pass}) : ()
    } @$events;
    is($res{'must-fail: nginx exited cleanly'}, 1, 'exit check passes');
    is($res{'must-fail: no alerts, crashes or sanitizer reports in the logs'}, 0,
        'undeclared [emerg] fails the log check');
    is($res{'must-fail: expected error log lines'}, 0, 'missing expected line fails');
    my ($bad, $counts) = $u->check_logs;
    like($bad->[0], qr/undeclared_directive_z/, 'offending line reported');

    # A sanitizer report file fails the check too.
    my $v = StreamTest->new(workers => 1, name => 'asan');
    $v->start;
    $v->write_file('logs/asan.12345', "==12345==ERROR: AddressSanitizer: heap-buffer-overflow\n");
    $events = intercept { $v->stop };
    %res = map {
        my $f = $_->facet_data;
        $f->{assert} ? ($f->{assert}{details} => $f->{assert}{pass}) : ()
    } @$events;
    is($res{'asan: no alerts, crashes or sanitizer reports in the logs'}, 0,
        'asan report file fails the log check');
    is($res{'asan: expected error log lines'}, 1, 'nothing declared: count check passes');

    # So does a valgrind log with a definite leak (but not one without).
    my $w = StreamTest->new(workers => 1, name => 'valgrind');
    $w->start;
    $w->write_file('logs/valgrind.1.log', "==1== ERROR SUMMARY: 0 errors from 0 contexts\n");
    $w->write_file('logs/valgrind.2.log',
        "==2==    definitely lost: 16 bytes in 1 blocks\n==2== ERROR SUMMARY: 0 errors\n");
    $events = intercept { $w->stop };
    ($bad) = $w->check_logs;
    is(scalar @$bad, 1, 'one valgrind log reported');
    like($bad->[0], qr/\Avalgrind\.2\.log:.*definitely lost: 16/s, 'the leaking one');
};

subtest 'start failure is reported' => sub {
    my $w = StreamTest->new(workers => 1, name => 'no-start');
    $w->server_config('this_is_not_a_directive;');
    my $died;
    my $events = intercept { eval { $w->start; 1 } or $died = $@ };
    like($died, qr/nginx failed to start/, 'start dies');
    my ($fail) = grep { $_->facet_data->{assert} } @$events;
    ok($fail && !$fail->facet_data->{assert}{pass}, 'start emits a failing assertion');
    ok(!$w->master_pid, 'no master left');
    my $events2 = intercept { $w->stop };
    is(scalar(grep { $_->facet_data->{assert} } @$events2), 0, 'stop after failed start asserts nothing');
};

subtest 'forgotten stop and dying tests are cleaned up' => sub {
    my $script = "$tmp/forgot.t";
    open(my $fh, '>', $script) or die;
    print {$fh} <<'EOF';
use strict; use warnings;
use Test::More;
use StreamTest;
my $t = StreamTest->new(workers => 1, name => 'forgot');
$t->start;
print "# MASTER ", $t->master_pid, " PREFIX ", $t->prefix, "\n";
ok(1, 'started');
die "dying on purpose\n" if $ENV{DIE_NOW};
done_testing;
EOF
    close $fh;
    for my $die (0, 1) {
        local $ENV{DIE_NOW} = $die;
        local $ENV{TEST_NGINX_LEAVE};
        my $out = `$^X -I$StreamTest::REPO/t/lib $script 2>&1`;
        my $exit = $? >> 8;
        my ($pid, $prefix) = $out =~ /# MASTER (\d+) PREFIX (\S+)/;
        ok($pid, "die=$die: script started nginx") or diag $out;
        ok($pid && !kill(0, $pid), "die=$die: master gone");
        ok($prefix && !-d $prefix, "die=$die: prefix removed");
        if ($die) {
            isnt($exit, 0, 'dying script fails');
            like($out, qr/^ok \d+ - forgot: nginx exited cleanly/m, 'checks ran from END');
        }
        else {
            is($exit, 0, 'forgotten stop after done_testing: clean pass') or diag $out;
            unlike($out, qr/^not ok/m, 'no failures') or diag $out;
        }
    }
};

# ---------------------------------------------------------------------------
# The real mock LLM, when it has been built
# ---------------------------------------------------------------------------

my $real_mock = $ENV{TEST_NGINX_MOCK_LLM} || "$StreamTest::REPO/build/mock-llm";
SKIP: {
    skip "mock LLM $real_mock not built", 3 unless -x $real_mock;
    my $m = StreamTest->new(name => 'real-mock');
    my $port = $m->start_mock_llm;
    like($port, qr/^\d+$/, 'real mock started');
    is(ref $m->mock_stats, 'HASH', 'real mock stats');
    ok($m->mock_reset, 'real mock reset');
    $m->stop;
}

done_testing;

sub _all_pids {
    opendir(my $d, '/proc') or return;
    return grep { /^\d+$/ } readdir $d;
}

sub _cmdline {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/cmdline") or return '';
    local $/;
    my $c = <$fh> // '';
    $c =~ tr/\0/ /;
    return $c;
}
