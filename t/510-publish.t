# streaming_publish: PUT creates a stream, POST appends its body as chunks
# (one chunk, or per its framing), DELETE ends it.  Subscribers on either
# worker follow it live.  While the stream is paused, or its buffer is full
# under "streaming_overflow pause" (here: an acking subscriber whose window
# stays closed), a POST gets 429 with Retry-After and nothing is stored.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->http_config(<<'EOF');
streaming_zone pub 8m;
streaming_zone small 4m buffer=4k;
streaming_zone quiet 1m idle_timeout=1s;
EOF
$t->server_config(<<'EOF');
add_header X-Pid $pid always;
location = /pub {
    streaming_publish pub;
    streaming_max_chunk 8k;
}
location /pub/ {
    streaming_publish pub;
    streaming_id $arg_stream;
    streaming_framing bytes=4;
}
location = /sub { streaming_subscribe pub; }
location = /ctl { streaming_control pub; }
location = /small { streaming_publish small; }
location = /small-sub { streaming_subscribe small; streaming_window 2; }
location = /small-ctl { streaming_control small; }
location = /status { streaming_status; }
location = /quiet { streaming_publish quiet; }
location = /quiet-sub {
    streaming_subscribe quiet;
    streaming_heartbeat 30s;
}
EOF
$t->start;

sub j { my $r = shift; $r->{json} = eval { json_decode($r->{body}) } || {}; $r }
sub code_of { ($_[0]{json}{error} || {})->{code} // '' }
sub state_of {
    my ($id, $ctl) = @_;
    my $r = $t->get(($ctl // '/ctl') . "?id=$id");
    return $r->{status} == 200 ? json_decode($r->{body}) : {};
}

# --- PUT ---------------------------------------------------------------------

{
    my $r = j($t->put('/pub?id=s1', ''));
    is($r->{status}, 201, 'PUT: 201');
    is($r->{json}{streamId}, 's1', 'PUT: {"streamId":"s1"}');
    is($r->{headers}{'stream-id'}, 's1', 'PUT: Stream-Id header');

    $r = j($t->put('/pub?id=s1', ''));
    is($r->{status}, 409, 'PUT of an existing id: 409');
    is(code_of($r), 'STREAM_EXISTS', 'STREAM_EXISTS');

    $r = j($t->put('/pub', ''));
    is($r->{status}, 201, 'PUT without an id: 201');
    like($r->{json}{streamId} // '', qr/^[A-Za-z0-9_-]{22}$/,
         'a generated id: 128 random bits, base64url');

    $r = j($t->put('/pub?id=meta1',
                   '{"contentType":"application/x-ndjson","totalSize":100,'
                   . '"metadata":{"model":"m"}}'));
    is($r->{status}, 201, 'PUT with metadata: 201');
    my $st = state_of('meta1');
    is($st->{progress}{totalBytes}, 100, 'totalSize kept');

    for my $bad ('{"totalSize":"x"}', '{"contentType":5}', '{"totalSize":-1}',
                 '{"metadata":[]}', 'not json', '[1]')
    {
        $r = j($t->put('/pub?id=bad1', $bad));
        is($r->{status}, 400, "PUT $bad: 400");
        is(code_of($r), 'INVALID_MESSAGE', "PUT $bad: INVALID_MESSAGE");
    }
    is($t->get('/ctl?id=bad1')->{status}, 404, 'and no stream was made');

    $r = j($t->put('/pub?id=bad%20id', ''));
    is($r->{status}, 400, 'bad id: 400');
    is(code_of($r), 'INVALID_ID', 'INVALID_ID');

    is($t->get('/pub?id=s1')->{status}, 405, 'GET: 405');
}

# --- a live subscriber gets its head at once, before any chunk ------------

{
    # an SSE stream: passthrough, which writes nothing before the chunks
    $t->put('/pub?id=head1', '{"contentType":"text/event-stream"}');
    my $c = $t->stream('GET', '/sub?id=head1&from=live', timeout => 5);
    my $h = $c->read_headers(1);
    is($h && $h->{status}, 200,
       'from=live on a stream with no chunk: the head comes at once');
    $c->close;
    $t->delete('/pub?id=head1');
}

# --- POST, live subscribers on both workers, final -------------------------

{
    my %pids;
    my @subs;
    for my $i (1 .. 6) {
        my $s = $t->stream('GET', '/sub?id=s1&from=0&format=ndjson',
                           timeout => 10);
        my $h = $s->read_headers(3) || {};
        $pids{ $h->{headers}{'x-pid'} // '' }++;
        push @subs, $s;
    }
    my @seq;
    my %post_pids;
    for my $n (1 .. 5) {
        my $r = j($t->post('/pub?id=s1', "text $n",
                           headers => { 'Content-Type' => 'text/plain' }));
        push @seq, $r->{json}{sequence};
        $post_pids{ $r->{headers}{'x-pid'} // '' }++;
    }
    is_deeply(\@seq, [ 1 .. 5 ], 'POST: 202 {"sequence":n}, 1 to 5');
    my $r = j($t->post('/pub?id=s1&final=1', 'the end'));
    is($r->{status}, 202, 'POST ?final=1: 202');
    is($r->{json}{sequence}, 6, 'the last chunk is 6');

    for my $i (0 .. $#subs) {
        my $s = $subs[$i];
        my @m;
        my $deadline = time + 5 * $F;
        while (time < $deadline && !$s->complete) {
            push @m, map { json_decode($_) } $s->read_lines(1000, 0.05);
        }
        push @m, map { json_decode($_) } $s->read_lines(1000, 0.05);
        my @c = grep { $_->{type} eq 'stream-chunk' } @m;
        is_deeply([ map { $_->{payload}{data} } @c ],
                  [ (map { "text $_" } 1 .. 5), 'the end', '' ],
                  "subscriber $i: every chunk, then the final one");
        is($m[-1] && $m[-1]{payload}{status}, 'completed',
           "subscriber $i: completed");
        $s->close;
    }
    ok(keys(%pids) == 2 || keys(%post_pids) == 2,
       'subscribers and publishes on both workers');

    $r = j($t->post('/pub?id=s1', 'late'));
    is($r->{status}, 409, 'POST after the end: 409');
    is(code_of($r), 'INVALID_STATE', 'INVALID_STATE');
}

# --- POST creates; bodies cut per their framing -----------------------------

{
    my $r = j($t->post('/pub?id=sse1',
                       "data: a\n\nid: 77\ndata: b\n\n: comment\n\ndata: c",
                       headers => { 'Content-Type' => 'text/event-stream' }));
    is($r->{status}, 202, 'POST to a new id creates it');
    is($r->{json}{sequence}, 3, 'SSE body: three events (a comment is none)');
    $t->post('/pub?id=sse1&final=1', "data: d\n\n");
    my $p = $t->get('/sub?id=sse1&from=0');
    is($p->{body}, "id: sse1:1\ndata: a\n\nid: sse1:2\ndata: b\n\n"
                   . "id: sse1:3\ndata: c\n\nid: sse1:4\ndata: d\n\n",
       'passthrough: the stream\'s ids, a cut-off event ended');

    $r = j($t->post('/pub?id=nd1', qq({"a":1}\n{"a":2}\r\n\n{"a":3}),
                    headers => { 'Content-Type' => 'application/x-ndjson' }));
    is($r->{json}{sequence}, 3, 'NDJSON body: three lines');

    $r = j($t->post('/pub/?stream=b4', 'abcdefghij'));
    is($r->{json}{sequence}, 3, 'streaming_framing bytes=4: 10 bytes, 3 chunks');
    $t->delete('/pub/?stream=b4');
    my @m = parse_ndjson($t->get('/sub?id=b4&from=0&format=ndjson')->{body});
    is_deeply([ map { $_->{payload}{data} }
                grep { $_->{type} eq 'stream-chunk' } @m ],
              [ 'abcd', 'efgh', 'ij', '' ], 'cut at 4 bytes');
}

# --- sizes ---------------------------------------------------------------------

{
    my $r = j($t->post('/pub?id=big1', 'x' x 9000));
    is($r->{status}, 413, 'a body over streaming_max_chunk: 413');
    is(code_of($r), 'PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE');
    $r = $t->http('POST', '/pub?id=big1',
                  raw_request => "POST /pub?id=big1 HTTP/1.1\r\n"
                                 . "Host: localhost\r\nConnection: close\r\n"
                                 . "Transfer-Encoding: chunked\r\n\r\n"
                                 . "2328\r\n" . ('x' x 9000) . "\r\n0\r\n\r\n");
    is($r->{status}, 413, 'chunked, over the limit: 413');
    is($t->get('/ctl?id=big1')->{status}, 404, 'nothing was made');
}

# --- paused: 429, nothing stored ---------------------------------------------

{
    $t->put('/pub?id=pa1', '');
    $t->post('/pub?id=pa1', 'one');
    is(j($t->post('/ctl?id=pa1', '{"command":"pause"}'))->{status}, 200,
       'paused');
    my $r = j($t->post('/pub?id=pa1', 'two'));
    is($r->{status}, 429, 'POST while paused: 429');
    is(code_of($r), 'STREAM_PAUSED', 'STREAM_PAUSED');
    is($r->{headers}{'retry-after'}, '1', 'Retry-After: 1');
    is(state_of('pa1')->{sequence}, 1, 'nothing stored');
    $t->post('/ctl?id=pa1', '{"command":"resume"}');
    $r = j($t->post('/pub?id=pa1', 'two'));
    is($r->{status}, 202, 'resumed: 202');
    is($r->{json}{sequence}, 2, 'stored as 2: nothing lost');
}

# --- commands on a publisher's stream: subscribers see them ------------------

{
    $t->put('/pub?id=cx1', '');
    my $s = $t->stream('GET', '/sub?id=cx1&format=ndjson', timeout => 10);
    $s->read_headers(3);
    $t->post('/pub?id=cx1', 'one');
    is(j($t->post('/ctl?id=cx1', '{"command":"pause"}'))->{status}, 200,
       'pause a publisher\'s stream');
    my @m;
    my $seen = sub {
        my ($status) = @_;
        my $until = time + 5 * $F;
        while (time < $until) {
            push @m, map { json_decode($_) } $s->read_lines(1000, 0.05);
            return 1 if grep { $_->{type} eq 'stream-status'
                               && $_->{payload}{status} eq $status } @m;
        }
        return 0;
    };
    ok($seen->('paused'), 'the subscriber sees paused');
    is(j($t->post('/ctl?id=cx1', '{"command":"resume"}'))->{status}, 200,
       'resume it');
    ok($seen->('active'), 'the subscriber sees active');
    my $r = j($t->post('/ctl?id=cx1', '{"command":"cancel"}'));
    is($r->{json}{status}, 'cancelled', 'cancel it');
    my $deadline = time + 5 * $F;
    while (time < $deadline && !$s->complete) {
        push @m, map { json_decode($_) } $s->read_lines(1000, 0.05);
    }
    is_deeply([ map { $_->{payload}{status} }
                grep { $_->{type} eq 'stream-status' } @m ],
              [ 'paused', 'active', 'cancelled' ],
              'the subscriber saw paused, active, cancelled');
    my @c = grep { $_->{type} eq 'stream-chunk' } @m;
    is_deeply([ map { $_->{payload}{data} } @c ], [ 'one', '' ],
              'its chunk, then the final one');
    $r = j($t->post('/pub?id=cx1', 'two'));
    is($r->{status}, 409, 'POST to a cancelled stream: 409');
    $s->close;
}

# --- full under pause: an acking subscriber's closed window holds it ------------

{
    $t->put('/small?id=w1', '');
    my $s = $t->stream('GET', '/small-sub?id=w1&from=0&format=ndjson&ack=1',
                       timeout => 10);
    my $h = $s->read_headers(3) || {};
    my $sid = $h->{headers}{'stream-subscriber'};
    ok($sid, 'an acking subscriber, window 2');

    my ($n, $r) = (0);
    while ($n < 50) {
        $r = j($t->post('/small?id=w1', 'y' x 500));
        last if $r->{status} != 202;
        $n++;
    }
    is($r->{status}, 429, "POST once the buffer is full ($n stored): 429");
    is(code_of($r), 'STREAM_PAUSED', 'STREAM_PAUSED');
    ok($n >= 6 && $n < 20, "the buffer (4k) held about 4k of 500-byte chunks");
    is(state_of('w1', '/small-ctl')->{sequence}, $n, 'the 429 stored nothing');

    # it acks everything it has: the backlog drains, publishing goes on
    my @got;
    my $deadline = time + 5 * $F;
    while (time < $deadline) {
        push @got, map { json_decode($_) } $s->read_lines(1000, 0.05);
        my @c = grep { $_->{type} eq 'stream-chunk' } @got;
        last if @c && $c[-1]{payload}{sequence} == $n;
        if (@c) {
            my $last = $c[-1]{payload}{sequence};
            $t->post('/small-ctl?id=w1',
                     qq({"command":"ack","sequence":$last,"subscriberId":"$sid"}));
        }
    }
    my @c = grep { $_->{type} eq 'stream-chunk' } @got;
    is($c[-1] && $c[-1]{payload}{sequence}, $n, 'the subscriber got them all');
    $t->post('/small-ctl?id=w1',
             qq({"command":"ack","sequence":$n,"subscriberId":"$sid"}));
    $r = j($t->post('/small?id=w1', 'after'));
    is($r->{status}, 202, 'acked: POST is taken again');
    is($r->{json}{sequence}, $n + 1, 'as the next chunk');
    $s->close;
}

# --- DELETE ---------------------------------------------------------------------

{
    $t->put('/pub?id=d1', '');
    my $s = $t->stream('GET', '/sub?id=d1&format=ndjson', timeout => 10);
    $s->read_headers(3);
    $t->post('/pub?id=d1', 'x');
    my $r = j($t->delete('/pub?id=d1&status=error&code=MODEL_CRASHED'
                         . '&message=the%20model%20crashed'));
    is($r->{status}, 200, 'DELETE ?status=error: 200');
    is($r->{json}{status}, 'error', 'DELETE: the state says error');
    my @m;
    my $deadline = time + 5 * $F;
    while (time < $deadline && !$s->complete) {
        push @m, map { json_decode($_) } $s->read_lines(1000, 0.05);
    }
    is($m[-1] && $m[-1]{payload}{error}{code}, 'MODEL_CRASHED',
       'the subscriber gets the publisher\'s error code');
    is($m[-1] && $m[-1]{payload}{error}{message}, 'the model crashed',
       'and its message');
    $s->close;

    $r = j($t->delete('/pub?id=d1'));
    is($r->{status}, 409, 'DELETE an ended stream: 409');
    $r = j($t->delete('/pub?id=nope'));
    is($r->{status}, 404, 'DELETE an unknown stream: 404');

    $t->put('/pub?id=d2', '');
    $r = j($t->delete('/pub?id=d2&status=bogus'));
    is($r->{status}, 400, 'DELETE ?status=bogus: 400');
    $r = j($t->delete('/pub?id=d2&status=error&code=bad-code'));
    is($r->{status}, 400, 'DELETE with a bad code: 400');
    $r = j($t->delete('/pub?id=d2&status=cancelled'));
    is($r->{json}{status}, 'cancelled', 'DELETE ?status=cancelled');

    $t->put('/pub?id=d3', '');
    $r = j($t->delete('/pub?id=d3'));
    is($r->{json}{status}, 'completed', 'DELETE: completed by default');
}

# --- a publisher that goes silent ---------------------------------------------
# idle_timeout ends the stream from a worker's sweep, not from a request:
# the subscribers on both workers are told then, not at their next
# heartbeat (30 s here)

{
    $t->put('/quiet?id=q1', '');
    $t->post('/quiet?id=q1', 'x');
    my (@s, %pids);
    # until both workers hold some (the kernel picks the worker)
    for my $n (1 .. 40) {
        last if $n > 6 && keys %pids > 1;
        my $s = $t->stream('GET', '/quiet-sub?id=q1&format=ndjson',
                           timeout => 15);
        my $h = $s->read_headers(3) || {};
        $pids{ $h->{headers}{'x-pid'} // '' }++;
        push @s, $s;
    }
    my $start = time;
    my $deadline = $start + 10 * $F;
    my (%end, %code);
    while (time < $deadline && keys %end < @s) {
        for my $i (0 .. $#s) {
            next if $end{$i};
            for my $m (map { json_decode($_) } $s[$i]->read_lines(100, 0.02)) {
                next unless $m->{type} eq 'stream-status'
                            && $m->{payload}{status} eq 'error';
                $end{$i} = time - $start;
                $code{$i} = $m->{payload}{error}{code};
            }
        }
    }
    is(scalar(keys %end), scalar(@s), 'idle end: every subscriber told');
    is_deeply([ sort { $a cmp $b } values %code ],
              [ ('IDLE_TIMEOUT') x @s ], 'idle end: IDLE_TIMEOUT');
    my $last = (sort { $b <=> $a } values %end)[0] // 99;
    cmp_ok($last, '<', 5 * $F,
           sprintf('idle end: told within %.2f s of a 1 s idle timeout '
                   . '(heartbeat 30 s)', $last));
    is(scalar(keys %pids), 2, 'idle end: subscribers on both workers');
    $_->close for @s;
}

$t->stop;

done_testing;
