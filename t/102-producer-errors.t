# Producer errors: answers that replace the upstream call (INVALID_ID,
# STREAM_EXISTS, TOO_MANY_STREAMS), upstream failures and limits that end a
# stream in-stream (UPSTREAM_ERROR, UPSTREAM_TIMEOUT, PAYLOAD_TOO_LARGE,
# ZONE_FULL), answers that are not streams, and a client that goes away.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->write_file('html/static/a.txt', "static file\n" x 10);
$t->http_config(<<'EOF');
streaming_zone llm 4m ttl=1h;
streaming_zone one 1m max_streams=1;
streaming_zone small 32k buffer=4k;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
proxy_read_timeout 1s;

location /passthrough/ { streaming llm; proxy_pass http://mock/; }
location /omni/ {
    streaming llm;
    streaming_format omni;
    proxy_pass http://mock/;
}

location /ndjson/ {
    streaming llm;
    streaming_format ndjson;
    proxy_pass http://mock/;
}

location /jsonrpc/ {
    streaming llm;
    streaming_format jsonrpc;
    proxy_pass http://mock/;
}

# ?id= names the stream; the mock's knobs come as X-Mock-* headers
location ~ ^/id(/.*)$ {
    streaming llm;
    streaming_id $arg_id;
    streaming_format ndjson;
    proxy_read_timeout 10s;
    proxy_pass http://mock$1;
}

location /one/ {
    streaming one;
    streaming_format ndjson;
    proxy_read_timeout 10s;
    proxy_pass http://mock/;
}

location /small/ {
    streaming small;
    streaming_format omni;
    proxy_read_timeout 10s;
    proxy_pass http://mock/;
}

location /max/ {
    streaming llm;
    streaming_format omni;
    streaming_max_chunk 300;
    proxy_pass http://mock/;
}

location /max-nd/ {
    streaming llm;
    streaming_format ndjson;
    streaming_max_chunk 300;
    proxy_pass http://mock/;
}

location /slow/ {
    streaming llm;
    proxy_read_timeout 10s;
    proxy_pass http://mock/;
}

location /slow-omni/ {
    streaming llm;
    streaming_format omni;
    proxy_read_timeout 10s;
    proxy_pass http://mock/;
}

location /static/ { streaming llm; root %%PREFIX%%/html; }

location = /status { streaming_status; }
EOF
$t->start;

my $T = JSON::PP::true;
my $chat = '{"model":"mock-llm","stream":true,'
         . '"messages":[{"role":"user","content":"hi"}]}';

sub zone {
    my ($name) = @_;
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{$name // 'llm'};
}

sub requests { $t->mock_stats->{requests} }

# an error answer: status, JSON body with this code
sub is_error {
    my ($r, $status, $code, $name) = @_;
    is($r->{status}, $status, "$name: $status");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON");
    my $j = eval { json_decode($r->{body}) } || {};
    is_deeply([ sort keys %$j ], ['error'], "$name: {\"error\":...}");
    is($j->{error}{code}, $code, "$name: code $code");
    ok(defined $j->{error}{message} && length $j->{error}{message},
       "$name: a message");
    is_deeply([ sort keys %{ $j->{error} || {} } ], [qw(code message)],
              "$name: code and message only");
    ok(!exists $r->{headers}{'stream-id'}, "$name: no Stream-Id");
}

# waits (bounded) until $cond->() is true; returns its last value
sub poll {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 2) * StreamTest::timeout_factor();
    my $v;
    while (1) {
        $v = $cond->();
        return $v if $v || time > $deadline;
        sleep 0.02;
    }
}

# --- invalid ids: 400, and the upstream is never asked -------------------

for my $case ([ 'empty', '' ], [ '129 characters', 'a' x 129 ],
              [ 'escaped space', 'a%20b' ], [ 'colon', 'a:b' ],
              [ 'slash', 'a/b' ], [ 'plus', 'a+b' ], [ 'at', 'a@b' ],
              [ 'non-ASCII', '%C3%A9' ], [ 'no ?id', undef ])
{
    my ($what, $id) = @$case;
    my $before = requests();
    my $r = $t->get('/id/sse' . (defined $id ? "?id=$id" : ''),
                    headers => { 'X-Mock-Events' => 2 });
    is_error($r, 400, 'INVALID_ID', "id $what");
    is(requests(), $before, "id $what: the upstream was not called");
}

is(zone()->{totals}{created}, 0, 'invalid ids: no stream created');

# --- duplicate ids: 409 while live and once finished ---------------------

{
    my $live = $t->stream('GET', '/id/sse?id=dup-1', timeout => 5,
                          headers => { 'X-Mock-Events' => 10,
                                       'X-Mock-Tps' => 10 });
    my @first = $live->read_lines(2, 3);
    is(scalar @first, 2, 'dup: the first stream runs');
    is($live->head->{headers}{'stream-id'}, 'dup-1', 'dup: its id');

    my $before = requests();
    my $r = $t->get('/id/sse?id=dup-1', headers => { 'X-Mock-Events' => 1 });
    is_error($r, 409, 'STREAM_EXISTS', 'dup while live');
    is(requests(), $before, 'dup while live: the upstream was not called');

    my $rest = $live->read_to_end(5);
    my @m = parse_ndjson(join("\n", @first) . "\n" . ($rest // ''));
    is($m[-1]{payload}{status}, 'completed',
       'dup: the first stream was not disturbed');
    is(scalar(grep { $_->{type} eq 'stream-chunk' } @m), 11,
       'dup: the first stream has all its chunks');
    $live->close;

    $before = requests();
    $r = $t->get('/id/sse?id=dup-1', headers => { 'X-Mock-Events' => 1 });
    is_error($r, 409, 'STREAM_EXISTS', 'dup once finished (within ttl)');
    is(requests(), $before, 'dup once finished: the upstream was not called');

    $r = $t->get('/id/sse?id=dup-2', headers => { 'X-Mock-Events' => 1 });
    is($r->{status}, 200, 'another id is fine');
}

# --- max_streams=1: 503 while one is live --------------------------------

{
    my $live = $t->stream('GET', '/one/sse?events=10&tps=10', timeout => 5);
    is(scalar($live->read_lines(2, 3)), 2, 'max_streams: one stream runs');

    my $before = requests();
    my $r = $t->get('/one/sse?events=1');
    is_error($r, 503, 'TOO_MANY_STREAMS', 'max_streams=1 reached');
    is(requests(), $before, 'max_streams: the upstream was not called');
    my $z = zone('one');
    is($z->{totals}{rejected}, 1, 'max_streams: totals.rejected 1');
    is($z->{totals}{created}, 1, 'max_streams: totals.created 1');
    is($z->{streams}{active}, 1, 'max_streams: 1 active');

    ok(defined $live->read_to_end(5), 'max_streams: the first one ends');
    $live->close;

    $r = $t->get('/one/sse?events=1');
    is($r->{status}, 200, 'max_streams: a finished stream does not count');
    is(zone('one')->{totals}{rejected}, 1, 'max_streams: rejected still 1');
}

# --- what the zone counts around an in-stream end -------------------------

# [ name, path, final status, error code, chunks before the end,
#   complete (terminating chunk) ]
my @faults = (
    [ 'close', '/sse?events=5&fault=close&fault_after=2',
      'error', 'UPSTREAM_ERROR', 2 ],
    [ 'reset', '/sse?events=5&fault=reset&fault_after=2',
      'error', 'UPSTREAM_ERROR', 2 ],
    [ 'shortlength', '/sse?events=5&fault=shortlength&fault_after=2',
      'error', 'UPSTREAM_ERROR', 2 ],
    [ 'stall', '/sse?events=5&fault=stall&fault_after=2',
      'error', 'UPSTREAM_TIMEOUT', 2 ],
    [ 'chat close', '/v1/chat/completions?tokens=5&fault=close&fault_after=2',
      'error', 'UPSTREAM_ERROR', 3 ],
    [ 'error event', '/sse?events=5&fault=error&fault_after=2',
      'completed', undef, 3 ],
    # garbage lines are just fields; the block of 0xff 0xfe has no data, so
    # it is no event (as for EventSource): 4 events
    [ 'malformed', '/sse?events=3&fault=malformed&fault_after=1',
      'completed', undef, 4 ],
);

for my $f (@faults) {
    my ($what, $path, $status, $code, $chunks) = @$f;
    my $post = $path =~ /chat/;

    for my $fmt (qw(omni ndjson jsonrpc)) {
        my $name = "$what, $fmt";
        my $before = zone();
        my $start = time;
        my $r = $t->http($post ? 'POST' : 'GET', "/$fmt$path",
                         body => $post ? $chat : undef);
        my $after = zone();

        is($r->{status}, 200, "$name: 200");
        my $sid = $r->{headers}{'stream-id'} // '';
        if ($code) {
            ok(!$r->{complete} && !$r->{timed_out},
               "$name: nginx closes the connection");
        } else {
            ok($r->{complete}, "$name: the response ends properly");
        }
        ok($r->{elapsed} < 3, "$name: no waiting beyond the fault");

        if ($fmt eq 'jsonrpc') {
            my @m = eval { parse_ndjson($r->{body}) };
            my @data = grep { $_->{result} && !$_->{result}{_isLast} } @m;
            is(scalar @data, $chunks, "$name: $chunks data lines");
            if ($code) {
                my $msg = $m[-1]{error}{message};
                is_deeply($m[-1], { jsonrpc => '2.0', id => undef,
                                    error => { code => -32000,
                                               message => $msg,
                                               data => { code => $code } } },
                          "$name: the last line is the $code error");
                ok(length($m[-1]{error}{message} // ''), "$name: a message");
                my @other = grep { !$_->{result} } @m[0 .. $#m - 1];
                is(scalar @other, 0, "$name: one error line");
            } else {
                is_deeply($m[-1]{result}, { _streaming => $T, _isLast => $T,
                                            _sequence => $chunks + 1,
                                            _data => '' },
                          "$name: the last line, _isLast");
            }
        } else {
            my @m = $fmt eq 'omni'
                  ? map { json_decode($_->{data}) } parse_sse($r->{body})
                  : eval { parse_ndjson($r->{body}) };
            is_deeply([ map { $_->{type} } @m ],
                      [ 'stream-init', ('stream-chunk') x ($chunks + 1),
                        'stream-status' ],
                      "$name: init, $chunks chunks, final, status");
            my $final = $m[-2]{payload};
            is($final->{isFinal}, $T, "$name: final chunk");
            is($final->{sequence}, $chunks + 1, "$name: final sequence");
            my $p = $m[-1]{payload};
            is($p->{streamId}, $sid, "$name: status of this stream");
            is($p->{status}, $status, "$name: status $status");
            if ($code) {
                is($p->{error}{code}, $code, "$name: error $code");
                ok(length($p->{error}{message} // ''), "$name: error message");
            } else {
                ok(!exists $p->{error}, "$name: no error");
            }
            is($p->{checkpoint}{sequence}, $chunks,
               "$name: checkpoint at the last chunk");
            if ($what eq 'error event') {
                is($m[-3]{payload}{event}, 'error',
                   "$name: the upstream's error event is a chunk");
            }
        }

        my %delta = map { $_ => $after->{streams}{$_} - $before->{streams}{$_} }
                    keys %{ $after->{streams} };
        is_deeply(\%delta, { active => 0, paused => 0, cancelled => 0,
                             completed => 0, error => 0, $status => 1 },
                  "$name: the zone counts one more $status stream");
        is($after->{totals}{chunks} - $before->{totals}{chunks}, $chunks,
           "$name: the zone stored $chunks chunks");
    }
}

# --- answers that are not streams pass unchanged --------------------------

for my $case ([ 'upstream 500', GET => '/omni/sse?status=500', 500 ],
              [ 'upstream 404', GET => '/ndjson/sse?status=404', 404 ],
              [ 'upstream 503 to a chat', POST =>
                '/passthrough/v1/chat/completions?status=503', 503 ],
              [ 'unknown path', GET => '/omni/nowhere', 404 ])
{
    my ($what, $method, $path, $status) = @$case;
    (my $up_path = $path) =~ s{^/[^/]+}{};
    my $up = $t->http($method, $up_path, port => $t->mock_port,
                      body => $method eq 'POST' ? $chat : undef);
    my $before = zone();
    my $r = $t->http($method, $path, body => $method eq 'POST' ? $chat : undef);
    my $after = zone();
    is($r->{status}, $status, "$what: $status passes");
    is($r->{body}, $up->{body}, "$what: the upstream's body");
    is($r->{headers}{'content-type'}, $up->{headers}{'content-type'},
       "$what: the upstream's Content-Type");
    ok(!exists $r->{headers}{'stream-id'}, "$what: no Stream-Id");
    is_deeply($after->{streams}, $before->{streams}, "$what: no stream kept");
    is($after->{totals}{created}, $before->{totals}{created},
       "$what: no stream counted as created");
    is($after->{used}, $before->{used}, "$what: no memory kept");
}

{
    my $before = zone();
    my $r = $t->http('HEAD', '/static/a.txt');
    is($r->{status}, 200, 'HEAD: 200');
    ok(!exists $r->{headers}{'stream-id'}, 'HEAD: no stream');
    is($r->{headers}{'content-length'}, 120, 'HEAD: Content-Length kept');
    is_deeply(zone()->{streams}, $before->{streams}, 'HEAD: no stream kept');

    $r = $t->get('/static/a.txt');
    is($r->{status}, 200, 'static file: 200');
    is($r->{body}, "static file\n" x 10, 'static file: body unchanged');
    like($r->{headers}{'stream-id'} // '', qr/^[A-Za-z0-9_-]{22}$/,
         'static file: a stream');
    my $after = zone();
    is($after->{streams}{completed} - $before->{streams}{completed}, 1,
       'static file: stored as a completed stream');
    is($after->{totals}{bytes} - $before->{totals}{bytes}, 120,
       'static file: 120 bytes stored');
}

# --- streaming_max_chunk --------------------------------------------------

# the role event (about 190 bytes) fits in 300, padded tokens do not
for my $loc (qw(max max-nd)) {
    my $name = "max_chunk 300 ($loc)";
    my $before = zone();
    my $r = $t->post("/$loc/v1/chat/completions?tokens=3&size=600", $chat);
    my $after = zone();
    my @m = $loc eq 'max'
          ? map { json_decode($_->{data}) } parse_sse($r->{body})
          : eval { parse_ndjson($r->{body}) };
    is_deeply([ map { $_->{type} } @m ],
              [ 'stream-init', ('stream-chunk') x 2, 'stream-status' ],
              "$name: the role chunk, then the end");
    like($m[1]{payload}{data}, qr/"role":"assistant"/,
         "$name: chunk 1 is the role");
    is_deeply([ @{ $m[2]{payload} }{qw(sequence isFinal data)} ], [ 2, $T, '' ],
              "$name: final chunk 2");
    is($m[-1]{payload}{status}, 'error', "$name: status error");
    is($m[-1]{payload}{error}{code}, 'PAYLOAD_TOO_LARGE',
       "$name: PAYLOAD_TOO_LARGE");
    ok(!$r->{complete}, "$name: the connection is closed");
    is($after->{streams}{error} - $before->{streams}{error}, 1,
       "$name: the zone counts an error");
    is($after->{totals}{chunks} - $before->{totals}{chunks}, 1,
       "$name: one chunk stored");
}
$t->expect_log(qr/\[warn\].*a chunk exceeds streaming_max_chunk 300/, 2);

# --- ZONE_FULL: a live stream that cannot store a chunk -------------------

{
    # one event bigger than the whole zone
    my $r = $t->get('/small/sse?events=2&size=40000');
    my @m = map { json_decode($_->{data}) } parse_sse($r->{body});
    is_deeply([ map { $_->{type} } @m ],
              [ 'stream-init', 'stream-chunk', 'stream-status' ],
              'zone full, 40000-byte event: init, final, status');
    is($m[-1]{payload}{error}{code}, 'ZONE_FULL',
       'zone full, 40000-byte event: ZONE_FULL');
    is($m[-1]{payload}{status}, 'error', 'zone full, 40000-byte event: error');
    ok(!$r->{complete}, 'zone full, 40000-byte event: connection closed');

    # two streams of 10000-byte events: one fits, not a second one
    my $a = $t->stream('GET', '/small/sse?events=3&size=10000'
                              . '&fault=stall&fault_after=1', timeout => 5);
    my @ev = $a->read_events(2, 3);
    is($ev[1] && json_decode($ev[1]{data})->{payload}{sequence}, 1,
       'zone full: stream A holds a 10000-byte chunk');

    $r = $t->get('/small/sse?events=2&size=10000');
    @m = map { json_decode($_->{data}) } parse_sse($r->{body});
    is($m[-1]{payload}{error}{code}, 'ZONE_FULL',
       'zone full: stream B cannot store its chunk: ZONE_FULL');
    is_deeply([ map { $_->{type} } @m ],
              [ 'stream-init', 'stream-chunk', 'stream-status' ],
              'zone full: stream B: init, final, status');
    is($m[1]{payload}{sequence}, 1, 'zone full: stream B: final chunk 1');

    # (finished streams give way to new data: no count of errors here)
    is(zone('small')->{streams}{active}, 1, 'zone full: A still active');

    $a->close;
    poll(sub { zone('small')->{streams}{active} == 0 });

    $r = $t->get('/small/sse?events=2&size=10000');
    @m = map { json_decode($_->{data}) } parse_sse($r->{body});
    is($m[-1]{payload}{status}, 'completed',
       'zone full: with A gone, the same stream fits');
    is(scalar(grep { $_->{type} eq 'stream-chunk' } @m), 3,
       'zone full: both chunks and the final one');
}
$t->expect_log(qr/\[warn\].*zone "small" is full/, 2);

# --- the client goes away: the upstream is closed, the stream cancelled ---

$t->mock_reset;

for my $loc (qw(slow slow-omni)) {
    my $mid = "gone-$loc";
    my $before = zone();
    my $c = $t->stream('POST',
                       "/$loc/v1/chat/completions?tokens=100&tps=10&mid=$mid",
                       body => $chat, timeout => 5);
    my @ev = $c->read_events(3, 3);
    is(scalar @ev, 3, "client gone ($loc): events arrived");
    my $closed = time;
    $c->close;

    my $s = poll(sub {
        my ($s) = grep { $_->{mid} eq $mid } @{ $t->mock_stats->{streams} };
        $s && $s->{state} eq 'closed_early' ? $s : undef;
    }, 1);
    ok($s, "client gone ($loc): the mock saw the early close");
    ok(time - $closed < 1, sprintf('client gone (%s): within %.2f s',
                                   $loc, time - $closed));
    ok($s && $s->{sent_tokens} < 30,
       "client gone ($loc): the upstream stopped generating");

    my $z = poll(sub {
        my $z = zone();
        $z->{streams}{cancelled} > $before->{streams}{cancelled} ? $z : undef;
    }, 1);
    ok($z, "client gone ($loc): the stream is cancelled");
    is($z && $z->{streams}{active}, 0, "client gone ($loc): none active");
    is($z && $z->{streams}{cancelled} - $before->{streams}{cancelled}, 1,
       "client gone ($loc): one cancelled");
}
is($t->mock_stats->{early_closes}, 2, 'the mock counted two early closes');

$t->stop;

done_testing;
