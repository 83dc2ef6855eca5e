# streaming_control: GET the state; POST pause / resume / cancel / ack;
# DELETE cancels.  The upstream-side effects are read from the mock
# upstream itself: its writes block while the stream is paused, go on after
# resume, and its connection is closed on cancel.  Commands are sent until
# one lands on a worker other than the producer's, so the cross-worker case
# is proven ($pid in X-Pid).  Every refusal has its own case.

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
streaming_zone llm 16m;
streaming_zone short 4m idle_timeout=1s;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
add_header X-Pid $pid always;

location ~ ^/p(/.*)$ {
    streaming llm;
    streaming_id $http_x_id;
    streaming_format omni;
    proxy_pass http://mock$1;
}
location ~ ^/short(/.*)$ {
    streaming short;
    streaming_id $http_x_id;
    proxy_pass http://mock$1;
}
location = /sub {
    streaming_subscribe llm;
    streaming_window 5;
}
location = /ctl {
    streaming_control llm;
    streaming_max_chunk 4k;
}
location = /ctl-short { streaming_control short; streaming_id $arg_id; }
location = /status { streaming_status; }
EOF
$t->start;

sub state_of {
    my ($id) = @_;
    my $r = $t->get("/ctl?id=$id");
    return $r->{status} == 200 ? json_decode($r->{body}) : {};
}

sub mock_stream {
    my ($mid) = @_;
    my ($s) = grep { $_->{mid} eq $mid } @{ $t->mock_stats->{streams} };
    return $s || {};
}

sub wait_until {
    my ($what, $timeout) = @_;
    my $deadline = time + $timeout * $F;
    while (time < $deadline) {
        return 1 if $what->();
        sleep 0.05;
    }
    return 0;
}

sub cmd {
    my ($id, $body, %o) = @_;
    my $r = $t->post("/ctl?id=$id", $body,
                     headers => { 'Content-Type' => 'application/json',
                                  %{ $o{headers} || {} } });
    $r->{json} = eval { json_decode($r->{body}) } || {};
    return $r;
}

sub error_code { ($_[0]{json}{error} || {})->{code} // '' }

# --- GET and the answers before any stream ---------------------------------

{
    my $r = $t->get('/ctl?id=nope');
    is($r->{status}, 404, 'unknown stream: 404');
    is(json_decode($r->{body})->{error}{code}, 'INVALID_STREAM',
       'unknown stream: INVALID_STREAM');

    $r = $t->get('/ctl?id=bad%20id');
    is($r->{status}, 400, 'bad id: 400');
    is(json_decode($r->{body})->{error}{code}, 'INVALID_ID', 'bad id: INVALID_ID');

    $r = $t->get('/ctl');
    is($r->{status}, 400, 'no id: 400');

    $r = $t->put('/ctl?id=x', '{}');
    is($r->{status}, 405, 'PUT: 405');
}

# --- pause, resume, cancel on a proxied stream -----------------------------

my $prod = $t->stream('GET', '/p/sse',
                      headers => { 'X-Id' => 'live1',
                                   'X-Mock-Events' => 5000,
                                   'X-Mock-Size' => 2000,
                                   'X-Mock-Tps' => 500,
                                   'X-Mock-Sndbuf' => 8192,
                                   'X-Mock-Mid' => 'live1' },
                      timeout => 30);
my $ph = $prod->read_headers(3) || {};
is($ph->{status}, 200, 'producer: 200');
my $ppid = $ph->{headers}{'x-pid'};
ok($ppid, "producer on worker $ppid");

my $sub = $t->stream('GET', '/sub?id=live1&from=0&format=ndjson', timeout => 30);
is(($sub->read_headers(3) || {})->{status}, 200, 'subscriber in');
my (@sub_lines, @prod_events);
sub pump {
    push @sub_lines, $sub->read_lines(100000, 0.01);
    push @prod_events, $prod->read_events(100000, 0.01);
}

ok(wait_until(sub { pump(); (state_of('live1')->{sequence} // 0) > 20 }, 5),
   'the stream is flowing');

{
    my ($r, $other);
    for (1 .. 20) {
        $r = cmd('live1', '{"command":"pause"}');
        last unless $r->{status} == 200;
        if ($r->{headers}{'x-pid'} ne $ppid) {
            $other = 1;
            last;
        }
        # same worker: undo it and try for the other one
        cmd('live1', '{"command":"resume"}');
    }
    is($r->{status}, 200, 'pause: 200');
    ok($other, 'pause: sent to a worker other than the producer\'s');
    is($r->{json}{status}, 'paused', 'pause: the answer shows paused');
}

# blocked, and its count stands still (the kernel buffers between it and
# nginx are full)
{
    my $prev = -1;
    ok(wait_until(sub {
           pump();
           my $m = mock_stream('live1');
           my $still = ($m->{sent_events} // -2) == $prev;
           $prev = $m->{sent_events} // -1;
           sleep 0.25;
           ($m->{state} // '') eq 'blocked' && $still }, 8),
       'paused: the upstream\'s writes block');
}
{
    my $m1 = mock_stream('live1');
    my $s1 = state_of('live1');
    sleep 0.5;
    pump();
    my $m2 = mock_stream('live1');
    my $s2 = state_of('live1');
    is($m2->{sent_events}, $m1->{sent_events},
       'paused: the upstream sent nothing more');
    is($s2->{sequence}, $s1->{sequence}, 'paused: nothing more stored');
    is($s2->{status}, 'paused', 'paused: GET says paused');
    my $st = json_decode($t->get('/status?format=json')->{body});
    is($st->{zones}{llm}{streams}{paused}, 1, 'status: one paused stream');
}
{
    my @m = map { eval { json_decode($_) } || {} } @sub_lines;
    ok((grep { $_->{type} eq 'stream-status'
               && $_->{payload}{status} eq 'paused' } @m),
       'subscriber: stream-status paused');
    my @p = map { eval { json_decode($_->{data}) } || {} } @prod_events;
    ok((grep { ($_->{type} // '') eq 'stream-status'
               && $_->{payload}{status} eq 'paused' } @p),
       'producer\'s client (omni): stream-status paused');
}

{
    my $r = cmd('live1', '{"command":"pause"}');
    is($r->{status}, 409, 'pause a paused stream: 409');
    is(error_code($r), 'INVALID_STATE', 'pause a paused stream: INVALID_STATE');
}

{
    my $seq = state_of('live1')->{sequence};
    my $r = cmd('live1', '{"type":"stream-control","id":"m1",'
                         . '"payload":{"streamId":"live1","command":"resume"}}');
    is($r->{status}, 200, 'resume (whole Omni message): 200');
    is($r->{json}{status}, 'active', 'resume: active');
    ok(wait_until(sub { pump(); (state_of('live1')->{sequence} // 0) > $seq + 20 },
                  5), 'resumed: chunks flow again');
    isnt(mock_stream('live1')->{state}, 'done', 'resumed: not at its end yet');
    my @m = map { eval { json_decode($_) } || {} } @sub_lines;
    my @st = map { $_->{payload}{status} }
             grep { $_->{type} eq 'stream-status' } @m;
    is_deeply([ @st[0, 1] ], [ 'paused', 'active' ],
              'subscriber: paused, then active');

    $r = cmd('live1', '{"command":"resume"}');
    is($r->{status}, 409, 'resume an active stream: 409');
}

{
    my $r = $t->delete('/ctl?id=live1');
    is($r->{status}, 200, 'DELETE: 200');
    is(json_decode($r->{body})->{status}, 'cancelled', 'DELETE: cancelled');
    ok(wait_until(sub { (mock_stream('live1')->{state} // '') eq 'closed_early' },
                  5), 'cancel: the upstream saw its connection closed');
    ok(wait_until(sub { pump(); $sub->complete || $sub->eof }, 5),
       'cancel: the subscriber\'s response ends');
    pump();
    my @m = map { eval { json_decode($_) } || {} } @sub_lines;
    my @chunks = grep { $_->{type} eq 'stream-chunk' } @m;
    ok($chunks[-1]{payload}{isFinal}, 'cancel: the subscriber got the final chunk');
    is($m[-1]{payload}{status}, 'cancelled', 'cancel: then stream-status cancelled');
    my @seqs = map { $_->{payload}{sequence} } @chunks;
    is_deeply(\@seqs, [ 1 .. scalar @seqs ], 'subscriber: every chunk once');

    ok(wait_until(sub { pump(); $prod->complete || $prod->eof }, 5),
       'cancel: the producer\'s client response ends');
    my @p = map { eval { json_decode($_->{data}) } || {} } @prod_events;
    is($p[-1]{payload}{status}, 'cancelled', 'producer\'s client: cancelled');

    my $kept = state_of('live1');
    my ($first, $last) = @{$kept}{qw(first sequence)};
    my $again = $t->get('/sub?id=live1&format=ndjson');
    my @r = eval { parse_ndjson($again->{body}) };
    is_deeply([ map { $_->{payload}{sequence} }
                grep { $_->{type} eq 'stream-chunk' } @r ],
              [ $first .. $last + 1 ],
              "cancelled: the retained chunks ($first-$last) stay readable");
    is($r[-1] && $r[-1]{payload}{status}, 'cancelled',
       'cancelled: a later subscriber sees cancelled');

    $r = cmd('live1', '{"command":"cancel"}');
    is($r->{status}, 409, 'cancel a cancelled stream: 409');
    $r = cmd('live1', '{"command":"pause"}');
    is($r->{status}, 409, 'pause a cancelled stream: 409');
    is(error_code($r), 'INVALID_STATE', 'INVALID_STATE');
    $sub->close;
    $prod->close;
}

# --- malformed commands: 400 each, nothing changes -------------------------

{
    my $done = $t->get('/p/sse', headers => { 'X-Id' => 'done1',
                                              'X-Mock-Events' => 3 });
    is($done->{status}, 200, 'a completed stream');
    my %bad = (
        'invalid JSON'        => '{"command":',
        'not an object'       => '["pause"]',
        'empty body'          => '',
        'wrong type'          => '{"command":5}',
        'unknown command'     => '{"command":"explode"}',
        'ack without sequence' => '{"command":"ack","subscriberId":"1"}',
        'negative sequence'   => '{"command":"ack","sequence":-1,"subscriberId":"1"}',
        'sequence as string'  => '{"command":"ack","sequence":"3","subscriberId":"1"}',
        'trailing garbage'    => '{"command":"pause"} x',
        'streamId of another' => '{"command":"cancel","streamId":"other"}',
    );
    for my $case (sort keys %bad) {
        my $r = cmd('done1', $bad{$case});
        is($r->{status}, 400, "$case: 400");
        is(error_code($r), 'INVALID_MESSAGE', "$case: INVALID_MESSAGE");
    }
    my $r = cmd('done1', '{"type":"request","payload":{"action":"status"}}');
    is($r->{status}, 400, 'another message type: 400');
    is(error_code($r), 'UNKNOWN_MESSAGE_TYPE', 'UNKNOWN_MESSAGE_TYPE');

    $r = cmd('done1', '{"command":"cancel","reason":"' . ('x' x 5000) . '"}');
    is($r->{status}, 413, 'body over streaming_max_chunk: 413');
    is(error_code($r), 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE');

    # chunked, so the length is only known once read
    $r = $t->http('POST', '/ctl?id=done1',
                  raw_request => "POST /ctl?id=done1 HTTP/1.1\r\n"
                                 . "Host: localhost\r\nConnection: close\r\n"
                                 . "Transfer-Encoding: chunked\r\n\r\n"
                                 . "1400\r\n" . ('x' x 5120) . "\r\n0\r\n\r\n");
    is($r->{status}, 413, 'chunked body over the limit: 413');

    # a body cut short: the client goes away, nothing is done
    my $c = $t->stream('POST', '/ctl?id=done1',
                       raw_request => "POST /ctl?id=done1 HTTP/1.1\r\n"
                                      . "Host: localhost\r\n"
                                      . "Content-Length: 100\r\n\r\n"
                                      . '{"command":"can');
    $c->close;

    is(state_of('done1')->{status}, 'completed',
       'after all that: still completed');
    $r = cmd('done1', '{"command":"resume"}');
    is($r->{status}, 409, 'resume a completed stream: 409');
}

# --- acks: a window of 5 unacknowledged chunks ------------------------------

{
    my $r = $t->get('/p/sse', headers => { 'X-Id' => 'ack1',
                                           'X-Mock-Events' => 20 });
    is($r->{status}, 200, 'a stream of 20 events');

    my $s = $t->stream('GET', '/sub?id=ack1&from=0&format=ndjson&ack=1',
                       timeout => 10);
    my $h = $s->read_headers(3) || {};
    my $sid = $h->{headers}{'stream-subscriber'};
    like($sid // '', qr/^\d+$/, 'ack=1: a Stream-Subscriber header');

    my @got;
    my $read = sub {
        my $until = time + 0.4 * $F;
        while (time < $until) {
            push @got, map { json_decode($_) } $s->read_lines(1000, 0.05);
        }
        return [ map { $_->{payload}{sequence} }
                 grep { $_->{type} eq 'stream-chunk' } @got ];
    };
    $read->();
    is($got[0]{payload}{metadata}{subscriberId}, $sid,
       'stream-init carries the subscriberId');
    is_deeply($read->(), [ 1 .. 5 ], 'the window: 5 chunks, then nothing');

    $r = cmd('ack1', qq({"command":"ack","sequence":3,"subscriberId":"$sid"}));
    is($r->{status}, 200, 'ack 3: 200');
    is_deeply($read->(), [ 1 .. 8 ], 'ack 3 opens the window to 8');

    $r = cmd('ack1', qq({"command":"ack","sequence":2,"subscriberId":"$sid"}));
    is($r->{status}, 200, 'an older ack: 200 (acks are cumulative)');
    is_deeply($read->(), [ 1 .. 8 ], 'and changes nothing');

    $r = cmd('ack1', qq({"command":"ack","sequence":15,"subscriberId":"$sid"}));
    is($r->{status}, 409, 'ack beyond what was sent: 409');
    is(error_code($r), 'INVALID_STATE', 'INVALID_STATE');

    $r = cmd('ack1', '{"command":"ack","sequence":1,"subscriberId":"999"}');
    is($r->{status}, 400, 'ack for an unknown subscriber: 400');
    $r = cmd('ack1', '{"command":"ack","sequence":1}');
    is($r->{status}, 400, 'ack without subscriberId: 400');

    for my $upto (8, 13, 18) {
        cmd('ack1', qq({"command":"ack","sequence":$upto,"subscriberId":"$sid"}));
    }
    ok(wait_until(sub { $read->(); $s->complete }, 3),
       'acked along: the response ends');
    my $chunks = $read->();
    is_deeply($chunks, [ 1 .. 21 ], 'every chunk and the final one');
    is($got[-1]{payload}{status}, 'completed', 'completed');
    $s->close;

    my $plain = $t->get('/sub?id=ack1&from=0&format=ndjson');
    is(scalar(grep { $_->{type} eq 'stream-chunk' } parse_ndjson($plain->{body})),
       21, 'a subscriber without ack=1 is not held by the window');
    unlike(join(',', keys %{ $plain->{headers} }), qr/stream-subscriber/,
           'and gets no Stream-Subscriber header');
}

# --- a paused stream ends at idle_timeout -----------------------------------

{
    my $p = $t->stream('GET', '/short/sse',
                       headers => { 'X-Id' => 'idle1',
                                    'X-Mock-Events' => 1000,
                                    'X-Mock-Tps' => 20,
                                    'X-Mock-Mid' => 'idle1' },
                       timeout => 10);
    is(($p->read_headers(3) || {})->{status}, 200, 'idle: producing');
    my $r = $t->post('/ctl-short?id=idle1', '{"command":"pause"}');
    is($r->{status}, 200, 'idle: paused');
    my $st;
    ok(wait_until(sub {
           $st = json_decode($t->get('/ctl-short?id=idle1')->{body});
           $st->{status} ne 'paused' }, 4),
       'idle: the paused stream ended by itself');
    is($st->{status}, 'error', 'idle: status error');
    is($st->{error}{code}, 'IDLE_TIMEOUT', 'idle: IDLE_TIMEOUT');
    ok(wait_until(sub { (mock_stream('idle1')->{state} // '') eq 'closed_early' },
                  3), 'idle: the upstream connection was closed');
    $p->close;
}

$t->stop;

done_testing;
