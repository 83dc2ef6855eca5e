# Transparent resume on a producer location: a request that carries
# "Last-Event-ID: <streamId>:<sequence>" is served from the zone and never
# reaches the upstream.  With streaming_detach the upstream keeps going
# while the client is away, and the client that comes back gets exactly the
# rest, once, in order; without it the first disconnect cancels the
# producer and a reconnect replays what was stored; a detach time that runs
# out cancels it too; unknown streams and the end of a finished one
# answer 204.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
log_format resume '$request_uri|$http_last_event_id|$status|$streaming_id|'
                  '$streaming_chunks|$streaming_resumed_from';
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
access_log %%PREFIX%%/logs/resume.log resume;

location /d/ {
    streaming llm;
    streaming_detach 10s;
    proxy_pass http://mock/;
}

location /d1/ {
    streaming llm;
    streaming_detach 1s;
    streaming_format omni;
    proxy_pass http://mock/;
}

location /nd/ {
    streaming llm;
    streaming_format omni;
    proxy_pass http://mock/;
}

location = /status { streaming_status; }
EOF
$t->start;

sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?format=json&id=$id");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : {};
}

sub mock_stream {
    my ($mid) = @_;
    my ($s) = grep { $_->{mid} eq $mid } @{ $t->mock_stats->{streams} };
    return $s || {};
}

# polls $cond (a sub) every 50 ms until true or $timeout
sub wait_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout * $F;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->() ? 1 : 0;
}

# the rest of a response: every event until it ends
sub rest {
    my ($c, $timeout) = @_;
    my @ev;
    my $deadline = time + $timeout * $F;
    while (time < $deadline && !$c->complete && !$c->eof) {
        push @ev, $c->read_events(1000, 0.05);
    }
    push @ev, $c->read_events(1000, 0.05);
    return @ev;
}

# --- detach 10s: leave after 5 events, come back, get the rest once ----------

{
    $t->mock_reset;
    my $c = $t->stream('GET', '/d/sse?events=30&tps=20&mid=r1');
    my @first = $c->read_events(5, 3);
    my $sid = $c->head->{headers}{'stream-id'} // '';
    like($sid, qr/^[A-Za-z0-9_-]{22}$/, 'detach: a generated stream id');
    is_deeply([ map { $_->{id} } @first ], [ map { "$sid:$_" } 1 .. 5 ],
              'detach: the client read 5 events');
    $c->close;

    # the upstream goes on without a client
    sleep 0.3;
    my $s = mock_stream('r1');
    is($s->{state}, 'sending', 'detach: the upstream still sends');
    my $st = stream_status($sid);
    is($st->{status}, 'active', 'detach: the stream is active');
    ok($st->{sequence} > 5, "detach: it grew to $st->{sequence} meanwhile");

    my $again = $t->stream('GET', '/d/sse?events=30&tps=20&mid=r1',
                           headers => { 'Last-Event-ID' => "$sid:5" },
                           timeout => 5);
    my $h = $again->read_headers(3) || {};
    is($h->{status}, 200, 'resume: 200');
    is($h->{headers}{'content-type'}, 'text/event-stream', 'resume: SSE');
    is($h->{headers}{'stream-id'}, $sid, 'resume: the same Stream-Id');
    my $start = time;
    my @rest = rest($again, 5);
    ok($again->complete, 'resume: the response ends properly');
    $again->close;

    is_deeply([ map { $_->{id} } @rest ], [ map { "$sid:$_" } 6 .. 30 ],
              'resume: events 6 to 30, once, in order');
    is_deeply([ map { $_->{data} } @rest ],
              [ map { qq({"n":$_}) } 5 .. 29 ],
              'resume: the upstream\'s data, continued');
    is(join('', map { $_->{raw} } @rest),
       join('', map { "id: $sid:" . ($_ + 1) . qq(\ndata: {"n":$_}\n\n) }
                5 .. 29),
       'resume: nothing else in the body');

    my $m = $t->mock_stats;
    is($m->{requests}, 1, 'resume: ONE upstream request');
    is($m->{early_closes}, 0, 'resume: the upstream was never cut');
    $s = mock_stream('r1');
    is($s->{state}, 'done', 'resume: the upstream finished');
    is($s->{sent_tokens}, 30, 'resume: 30 events sent upstream');

    $st = stream_status($sid);
    is($st->{status}, 'completed', 'resume: the stream completed');
    is($st->{sequence}, 30, 'resume: 30 chunks');

    # the end, and just before it
    my $r = $t->get('/d/sse?events=30&tps=20&mid=r1',
                    headers => { 'Last-Event-ID' => "$sid:30" });
    is($r->{status}, 204, 'Last-Event-ID at the end: 204');
    is($r->{body}, '', 'Last-Event-ID at the end: no body');
    $r = $t->get('/d/sse?events=30&tps=20&mid=r1',
                 headers => { 'Last-Event-ID' => "$sid:31" });
    is($r->{status}, 204, 'Last-Event-ID past the end: 204');
    $r = $t->get('/d/sse?events=30&tps=20&mid=r1',
                 headers => { 'Last-Event-ID' => "$sid:28" });
    is($r->{status}, 200, 'Last-Event-ID before the end: 200');
    is_deeply([ map { $_->{id} } parse_sse($r->{body}) ],
              [ "$sid:29", "$sid:30" ], 'Last-Event-ID before the end: 29, 30');
    ok($r->{complete}, 'Last-Event-ID before the end: ends');
    is($t->mock_stats->{requests}, 1, 'still ONE upstream request');
}

# --- detach: the stream ends while nobody is there ---------------------------

{
    $t->mock_reset;
    my $c = $t->stream('GET', '/d/sse?events=10&tps=20&mid=r2');
    my @first = $c->read_events(2, 3);
    my $sid = $c->head->{headers}{'stream-id'} // '';
    $c->close;
    ok(wait_until(sub { mock_stream('r2')->{state} eq 'done' }, 3),
       'ended while detached: the upstream finished');
    is(stream_status($sid)->{status}, 'completed',
       'ended while detached: completed');

    my $r = $t->get('/d/sse', headers => { 'Last-Event-ID' => "$sid:2" });
    is($r->{status}, 200, 'ended while detached: resume 200');
    ok($r->{complete}, 'ended while detached: ends');
    is_deeply([ map { $_->{id} } parse_sse($r->{body}) ],
              [ map { "$sid:$_" } 3 .. 10 ], 'ended while detached: 3 to 10');
    is($t->mock_stats->{requests}, 1, 'ended while detached: ONE request');
}

# --- no detach: the first disconnect cancels the producer --------------------

{
    $t->mock_reset;
    my $c = $t->stream('GET', '/nd/sse?events=60&tps=20&mid=r3');
    my @first = $c->read_events(4, 3);   # init and chunks 1-3
    my $sid = $c->head->{headers}{'stream-id'} // '';
    is_deeply([ map { $_->{event} } @first ],
              [ 'stream-init', ('stream-chunk') x 3 ], 'no detach: 3 chunks');
    $c->close;

    ok(wait_until(sub { mock_stream('r3')->{state} eq 'closed_early' }, 2),
       'no detach: the upstream connection is closed at once');
    is($t->mock_stats->{early_closes}, 1, 'no detach: one early close');
    my $st = stream_status($sid);
    is($st->{status}, 'cancelled', 'no detach: the stream is cancelled');
    my $n = $st->{sequence} // 0;
    ok($n >= 3 && $n < 60, "no detach: $n chunks stored");

    my $r = $t->get('/nd/sse?events=60&tps=20&mid=r3',
                    headers => { 'Last-Event-ID' => "$sid:2" });
    is($r->{status}, 200, 'no detach: reconnect 200');
    ok($r->{complete}, 'no detach: reconnect ends');
    my @m = map { json_decode($_->{data}) } parse_sse($r->{body});
    is_deeply([ map { $_->{type} } @m ],
              [ 'stream-init', ('stream-chunk') x ($n - 2 + 1),
                'stream-status' ],
              'no detach: init, the stored chunks after 2, final, status');
    is($m[0]{payload}{metadata}{resumePosition}, 2,
       'no detach: resumePosition 2');
    is_deeply([ map { $_->{payload}{sequence} } @m[ 1 .. $#m - 1 ] ],
              [ 3 .. $n + 1 ], "no detach: chunks 3 to $n and the final one");
    is_deeply([ map { $_->{payload}{data} } @m[ 1 .. $#m - 2 ] ],
              [ map { qq({"n":$_}) } 2 .. $n - 1 ], 'no detach: their data');
    my $end = $m[-1]{payload} || {};
    is($end->{status}, 'cancelled', 'no detach: ends cancelled');
    is($end->{error}{code}, 'CANCELLED', 'no detach: code CANCELLED');
    is($t->mock_stats->{requests}, 1, 'no detach: no second upstream request');

    $r = $t->get('/nd/sse', headers => { 'Last-Event-ID' => "$sid:$n" });
    is($r->{status}, 204, 'no detach: Last-Event-ID at the end: 204');
}

# --- detach 1s runs out: the producer is cancelled ---------------------------

{
    $t->mock_reset;
    my $c = $t->stream('GET', '/d1/sse?events=80&tps=20&mid=r4');
    my @first = $c->read_events(3, 3);   # init and chunks 1-2
    my $sid = $c->head->{headers}{'stream-id'} // '';
    $c->close;
    my $left = time;

    sleep 0.5;
    is(mock_stream('r4')->{state}, 'sending',
       'detach 1s: after 0.5 s the upstream still sends');
    ok(wait_until(sub { mock_stream('r4')->{state} eq 'closed_early' }, 2.5),
       'detach 1s: then it is closed');
    my $after = time - $left;
    ok($after > 0.9 && $after < 2.0 * $F,
       sprintf('detach 1s: closed %.2f s after the client left', $after));
    my $st = stream_status($sid);
    is($st->{status}, 'cancelled', 'detach 1s: cancelled');
    my $n = $st->{sequence} // 0;
    ok($n >= 15 && $n < 80, "detach 1s: $n chunks stored meanwhile");

    my $r = $t->get('/d1/sse', headers => { 'Last-Event-ID' => "$sid:2" });
    is($r->{status}, 200, 'detach 1s: reconnect 200');
    my @m = map { json_decode($_->{data}) } parse_sse($r->{body});
    is_deeply([ map { $_->{payload}{sequence} }
                grep { $_->{type} eq 'stream-chunk' } @m ],
              [ 3 .. $n + 1 ], "detach 1s: chunks 3 to $n, final");
    is($m[-1] && $m[-1]{payload}{status}, 'cancelled',
       'detach 1s: ends cancelled');
    is($t->mock_stats->{requests}, 1, 'detach 1s: ONE upstream request');
}

# --- detach 1s counts from the LAST subscriber that left ---------------------
#
# Two clients that come back and leave again.  A: leaves at 0.1 s, back at
# 0.3 s, leaves again at 0.8 s: the producer must still run 1 s after that
# (at 1.5 s), and be cancelled by 2.3 s.  B: leaves, comes back and stays
# past the first detach time, then leaves at 1.6 s: cancelled within about
# a second after that, not left running to the end of the stream.

for my $case ([ 'came back briefly', 0.5 ], [ 'stayed past detach', 1.3 ]) {
    my ($what, $stay) = @$case;
    $t->mock_reset;
    my $c = $t->stream('GET', '/d1/sse?events=120&tps=20&mid=r5');
    $c->read_events(3, 3);
    my $sid = $c->head->{headers}{'stream-id'} // '';
    $c->close;
    sleep 0.2;

    $c = $t->stream('GET', '/d1/sse', timeout => 5,
                    headers => { 'Last-Event-ID' => "$sid:2" });
    my $t0 = time;
    my @ev;
    push @ev, $c->read_events(1000, 0.05) while time - $t0 < $stay;
    ok(@ev > 5, "$what: the second client reads");
    $c->close;
    my $left = time;

    sleep 0.7;
    is(mock_stream('r5')->{state}, 'sending',
       "$what: 0.7 s after the last client left the upstream still sends");
    ok(wait_until(sub { mock_stream('r5')->{state} ne 'sending' }, 2),
       "$what: then it stops");
    my $after = time - $left;
    is(mock_stream('r5')->{state}, 'closed_early',
       "$what: the upstream connection was closed");
    ok($after > 0.9 && $after < 1.8 * $F,
       sprintf('%s: %.2f s after the last client left', $what, $after));
    is(stream_status($sid)->{status}, 'cancelled', "$what: cancelled");
    is($t->mock_stats->{requests}, 1, "$what: ONE upstream request");
}

# --- Last-Event-ID of no known stream ----------------------------------------

{
    $t->mock_reset;
    for my $loc (qw(d nd d1)) {
        my $r = $t->get("/$loc/sse?events=3",
                        headers => { 'Last-Event-ID' => 'nosuchstream:3' });
        is($r->{status}, 204, "/$loc/, unknown stream: 204");
        is($r->{body}, '', "/$loc/, unknown stream: no body");
        $r = $t->post("/$loc/v1/chat/completions", '{"stream":true}',
                      headers => { 'Last-Event-ID' => 'nosuchstream:0' });
        is($r->{status}, 204, "/$loc/, POST, unknown stream: 204");
    }
    is($t->mock_stats->{requests}, 0, 'unknown streams: no upstream request');

    # not of the <streamId>:<sequence> form: a new stream
    my $r = $t->get('/d/sse?events=3', headers => { 'Last-Event-ID' => '42' });
    is($r->{status}, 200, 'Last-Event-ID "42": a new stream');
    my $sid = $r->{headers}{'stream-id'} // '';
    is_deeply([ map { $_->{id} } parse_sse($r->{body}) ],
              [ map { "$sid:$_" } 1 .. 3 ], 'Last-Event-ID "42": from 1');
    is($t->mock_stats->{requests}, 1, 'Last-Event-ID "42": the upstream asked');
}

# --- the access log of the resumes -------------------------------------------

{
    my @lines = grep { /\|[^|]*:\d+\|/ } split /\n/,
                $t->read_file('logs/resume.log');
    my ($r1) = grep { m{^/d/sse\?events=30&tps=20&mid=r1\|\S+:5\|200\|} }
               @lines;
    like($r1 // '', qr/\|25\|5$/, 'log: the resume sent 25 chunks after 5');
    my ($unknown) = grep { /nosuchstream:3\|204\|/ } @lines;
    ok($unknown, 'log: the 204 of an unknown stream');
}

$t->stop;

done_testing;
