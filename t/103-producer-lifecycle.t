# Producer lifecycle: ttl frees a finished stream's id and memory,
# idle_timeout ends a stalled stream, heartbeats, checkpoints, the
# $streaming_* variables in the access log, nginx -t refusals, and a reload
# with a stream in flight.

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
streaming_zone short 1m ttl=1s;
streaming_zone idle 1m idle_timeout=1s;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
log_format streaming '$request_uri|$streaming_id|$streaming_sequence|'
                     '$streaming_chunks|$streaming_bytes|$streaming_status|'
                     '$streaming_first_chunk_ms';
EOF
my $server = <<'EOF';
proxy_http_version 1.1;
access_log %%PREFIX%%/logs/streaming.log streaming;

# ?id= names the stream; the mock's knobs come as X-Mock-* headers
location ~ ^/short(/.*)$ {
    streaming short;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}

location /idle/ {
    streaming idle;
    streaming_format omni;
    proxy_read_timeout 10s;
    proxy_pass http://mock/;
}

location /hb/ {
    streaming llm;
    streaming_heartbeat 1s;
    proxy_pass http://mock/;
}
location /hb-omni/ {
    streaming llm;
    streaming_format omni;
    streaming_heartbeat 1s;
    proxy_pass http://mock/;
}
location /hb-ndjson/ {
    streaming llm;
    streaming_format ndjson;
    streaming_heartbeat 1s;
    proxy_pass http://mock/;
}
location /hb-jsonrpc/ {
    streaming llm;
    streaming_format jsonrpc;
    streaming_heartbeat 1s;
    proxy_pass http://mock/;
}
location /hb-off/ {
    streaming llm;
    streaming_format omni;
    streaming_heartbeat off;
    proxy_pass http://mock/;
}

location /cp-omni/ {
    streaming llm;
    streaming_format omni;
    streaming_checkpoint 1s;
    proxy_pass http://mock/;
}
location /cp-ndjson/ {
    streaming llm;
    streaming_format ndjson;
    streaming_checkpoint 1s;
    proxy_pass http://mock/;
}
location /cp-off/ {
    streaming llm;
    streaming_format omni;
    streaming_checkpoint off;
    proxy_pass http://mock/;
}

location ~ ^/log(/.*)$ {
    streaming llm;
    streaming_id $arg_id;
    proxy_read_timeout 1s;
    proxy_pass http://mock$1;
}

location /llm/ { streaming llm; proxy_pass http://mock/; }
location /plain/ { proxy_pass http://mock/; }

location = /status { streaming_status; }
EOF
$t->server_config($server);
$t->start;

my $chat = '{"model":"mock-llm","stream":true,'
         . '"messages":[{"role":"user","content":"hi"}]}';

sub zone {
    my ($name) = @_;
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{$name // 'llm'};
}

# Reads several responses at once until all ended or the deadline passed.
# $c{name} = [ conn, 'sse' | 'lines' ]; returns name => [ [ time, item ] ].
sub collect {
    my ($conns, $timeout) = @_;
    my $start = time;
    my $deadline = $start + $timeout * $F;
    my %got;
    while (time < $deadline) {
        my $open = 0;
        for my $name (sort keys %$conns) {
            my ($c, $kind) = @{ $conns->{$name} };
            next if $c->complete || $c->eof;
            $open++;
            my @items = $kind eq 'sse' ? $c->read_events(1000, 0.02)
                                       : $c->read_lines(1000, 0.02);
            push @{ $got{$name} }, map { [ time - $start, $_ ] } @items;
        }
        last unless $open;
    }
    $_->[0]->close for values %$conns;
    return \%got;
}

# --- ttl: a finished stream's id and memory are free again after it -------

{
    my $base = zone('short');
    my %h = ('X-Mock-Events' => 3);

    my $r = $t->get('/short/sse?id=again', headers => \%h);
    is($r->{status}, 200, 'ttl: first stream');
    is(zone('short')->{streams}{completed}, 1, 'ttl: it is completed');

    $r = $t->get('/short/sse?id=again', headers => \%h);
    is($r->{status}, 409, 'ttl: its id is taken within ttl');

    sleep 1.5;

    my $z = zone('short');
    is($z->{streams}{completed}, 0,
       'ttl: after ttl, no new request: the stream is gone from the status');
    is($z->{used}, $base->{used},
       "ttl: after ttl, no new request: used back to $base->{used}");

    $r = $t->get('/short/sse?id=again', headers => \%h);
    is($r->{status}, 200, 'ttl: after ttl the id is free again');
    is_deeply([ map { $_->{id} } parse_sse($r->{body}) ],
              [ 'again:1', 'again:2', 'again:3' ], 'ttl: a new stream, from 1');
    is(zone('short')->{streams}{completed}, 1, 'ttl: one completed stream');

    sleep 1.5;

    # a request that creates no stream (the upstream answers 500) still
    # passes through the zone
    $r = $t->get('/short/sse?id=probe', headers => { 'X-Mock-Status' => 500 });
    is($r->{status}, 500, 'ttl: a 500 answer');
    $z = zone('short');
    is_deeply($z->{streams}, { active => 0, paused => 0, completed => 0,
                               error => 0, cancelled => 0 },
              'ttl: every stream gone');
    is($z->{used}, $base->{used}, "ttl: used back to $base->{used}");
}

# --- idle_timeout=1s: the upstream stalls after 2 events -------------------

{
    my $before = zone('idle');
    my $c = $t->stream('GET', '/idle/sse?events=5&fault=stall&fault_after=2'
                              . '&mid=idle');
    my $got = collect({ idle => [ $c, 'sse' ] }, 5)->{idle} || [];
    my @at = map { $_->[0] } @$got;
    my @m = map { json_decode($_->[1]{data}) } @$got;

    is_deeply([ map { $_->{type} } @m ],
              [ 'stream-init', ('stream-chunk') x 3, 'stream-status' ],
              'idle_timeout: init, 2 chunks, final, status');
    my $p = $m[-1] ? $m[-1]{payload} : {};
    is($p->{status}, 'error', 'idle_timeout: status error');
    is($p->{error}{code}, 'IDLE_TIMEOUT', 'idle_timeout: IDLE_TIMEOUT');
    ok(@at && $at[-1] > 0.9 && $at[-1] < 2.5 * $F,
       sprintf('idle_timeout: ended after %.2f s', $at[-1] // -1));
    is($m[-2] && $m[-2]{payload}{sequence}, 3, 'idle_timeout: final chunk 3');
    my $z = zone('idle');
    is($z->{streams}{error} - $before->{streams}{error}, 1,
       'idle_timeout: the zone counts an error');
    is($z->{streams}{active}, 0, 'idle_timeout: nothing active');
    my ($s) = grep { $_->{mid} eq 'idle' } @{ $t->mock_stats->{streams} };
    is($s && $s->{state}, 'closed_early',
       'idle_timeout: the upstream connection was closed');
}

# --- heartbeats and checkpoints: all at once -------------------------------

{
    my %c = (
        'hb passthrough' => [ $t->stream('GET', '/hb/sse?events=2&ttft=2500'),
                              'sse' ],
        'hb omni' => [ $t->stream('GET', '/hb-omni/sse?events=2&ttft=2500'),
                       'sse' ],
        'hb ndjson' => [ $t->stream('GET',
                                    '/hb-ndjson/sse?events=2&ttft=2500'),
                         'lines' ],
        'hb jsonrpc' => [ $t->stream('GET',
                                     '/hb-jsonrpc/sse?events=2&ttft=2500'),
                          'lines' ],
        'hb off' => [ $t->stream('GET', '/hb-off/sse?events=2&ttft=2500'),
                      'sse' ],
        'hb chat' => [ $t->stream('POST', '/hb/v1/chat/completions'
                                          . '?tokens=2&ttft=2500',
                                  body => $chat), 'sse' ],
        'cp omni' => [ $t->stream('GET', '/cp-omni/sse?events=10&tps=4'),
                       'sse' ],
        'cp ndjson' => [ $t->stream('GET', '/cp-ndjson/sse?events=10&tps=4'),
                         'lines' ],
        'cp off' => [ $t->stream('GET', '/cp-off/sse?events=10&tps=4'),
                      'sse' ],
    );
    my $got = collect(\%c, 8);

    # heartbeats: 2.5 s before the first event, one each second
    for my $name ('hb passthrough', 'hb omni', 'hb off', 'hb chat') {
        my @items = @{ $got->{$name} || [] };
        my @ev = map { $_->[1] } @items;
        my @hb = grep { !defined $_->{data} } @ev;
        my @data = grep { defined $_->{data} } @ev;
        # the omni init and the chat role event come at once
        my ($lead) = $name eq 'hb omni' || $name eq 'hb chat'
                   ? grep { defined $ev[$_]{data} } 0 .. $#ev : ();
        my $count = 0;
        my $i = defined $lead ? $lead + 1 : 0;
        $count++, $i++ while $i < @ev && !defined $ev[$i]{data};

        if ($name eq 'hb off') {
            is(scalar @hb, 0, "$name: no heartbeat");
            next;
        }
        ok($count >= 1 && $count <= 3,
           "$name: $count heartbeats before the first token");
        is_deeply([ map { $_->{raw} } @hb ], [ (": heartbeat\n\n") x @hb ],
                  "$name: each is ': heartbeat'");
        my ($hb_at) = map { $_->[0] } grep { !defined $_->[1]{data} } @items;
        ok(defined $hb_at && $hb_at > 0.8 && $hb_at < 2.0 * $F,
           sprintf('%s: first heartbeat after %.2f s', $name, $hb_at // -1));
        my $sid = $c{$name}[0]->head->{headers}{'stream-id'};
        my @ids = map { $_->{id} } grep { $_->{id} } @data;
        my @want = $name eq 'hb passthrough' ? (1, 2)
                 : $name eq 'hb chat' ? (1 .. 5) : (1 .. 3);
        is_deeply(\@ids, [ map { "$sid:$_" } @want ],
                  "$name: heartbeats are not numbered");
    }

    {
        my @lines = map { $_->[1] } @{ $got->{'hb ndjson'} || [] };
        my @m = map { json_decode($_) } @lines;
        my @types = map { $_->{type} } @m;
        my $i = 1;
        $i++ while $i < @m && $m[$i]{type} eq 'stream-status';
        ok($i - 1 >= 1 && $i - 1 <= 3,
           'hb ndjson: ' . ($i - 1) . ' stream-status lines before the data');
        my $hb = $m[1] ? $m[1]{payload} : {};
        is($hb->{status}, 'active', 'hb ndjson: status active');
        is($hb->{progress}{bytesTransferred}, 0, 'hb ndjson: no bytes yet');
        ok(!exists $hb->{error}, 'hb ndjson: no error');
        is($types[-1], 'stream-status', 'hb ndjson: final status');
        is($m[-1]{payload}{status}, 'completed', 'hb ndjson: completed');
    }

    {
        my @m = map { json_decode($_->[1]) } @{ $got->{'hb jsonrpc'} || [] };
        is_deeply([ map { $_->{result}{_sequence} } @m ], [ 1, 2, 3 ],
                  'hb jsonrpc: data lines and the last only');
    }

    # checkpoints: 10 events at 4 per second, a checkpoint each second
    for my $name ('cp omni', 'cp ndjson', 'cp off') {
        my @m = map { json_decode(ref $_->[1] ? $_->[1]{data} : $_->[1]) }
                @{ $got->{$name} || [] };
        my @types = map { $_->{type} } @m;
        is($types[-1], 'stream-status', "$name: final status");
        is($m[-1]{payload}{status}, 'completed', "$name: completed");
        is(scalar(grep { $_ eq 'stream-chunk' } @types), 11,
           "$name: 10 chunks and the final one");
        my ($seq, @mid, @where) = (0);
        for my $k (0 .. $#m - 1) {
            my $p = $m[$k]{payload};
            $seq = $p->{sequence} if $m[$k]{type} eq 'stream-chunk';
            push @mid, [ $seq, $p ] if $m[$k]{type} eq 'stream-status';
        }
        if ($name eq 'cp off') {
            is(scalar @mid, 0, "$name: no checkpoint mid-stream");
            next;
        }
        ok(@mid >= 1 && @mid <= 3,
           "$name: " . scalar(@mid) . ' checkpoints mid-stream');
        my $prev = 0;
        for my $k (0 .. $#mid) {
            my ($after, $p) = @{ $mid[$k] };
            my $cp = $p->{checkpoint} || {};
            is($p->{status}, 'active', "$name: checkpoint $k: status active");
            is($cp->{sequence}, $after,
               "$name: checkpoint $k: at the chunk before it ($after)");
            is($cp->{bytesTransferred}, 15 * $after,
               "$name: checkpoint $k: bytesTransferred");
            is($p->{progress}{bytesTransferred}, 15 * $after,
               "$name: checkpoint $k: progress");
            ok(($cp->{timestamp} // 0) =~ /^\d{13}$/
               && abs($cp->{timestamp} / 1000 - time) < 10,
               "$name: checkpoint $k: timestamp in Unix ms");
            ok(!$prev || $cp->{timestamp} - $prev >= 900,
               "$name: checkpoint $k: a second after the one before");
            $prev = $cp->{timestamp} // 0;
        }
    }
}

# --- variables in the access log ------------------------------------------

{
    my $r = $t->get('/log/sse?id=log-1', headers => { 'X-Mock-Events' => 5,
                                                       'X-Mock-Ttft' => 300 });
    is($r->{status}, 200, 'log: a stream');

    $r = $t->get('/log/sse?id=log-2',
                 headers => { 'X-Mock-Events' => 5, 'X-Mock-Fault' => 'stall',
                              'X-Mock-Fault-After' => 2 });
    is($r->{status}, 200, 'log: a stream that times out');

    my $c = $t->stream('GET', '/log/sse?id=log-3',
                       headers => { 'X-Mock-Events' => 50,
                                    'X-Mock-Tps' => 10 });
    is(scalar($c->read_events(3, 3)), 3, 'log: a stream the client leaves');
    $c->close;

    $r = $t->get('/plain/sse?events=1');
    is($r->{status}, 200, 'log: not a stream');

    my %line;
    my $deadline = time + 3 * $F;
    while (time < $deadline) {
        %line = map { (split /\|/)[0] => $_ }
                split /\n/, $t->read_file('logs/streaming.log');
        last if 4 == grep { exists $line{$_} }
                '/log/sse?id=log-1', '/log/sse?id=log-2',
                '/log/sse?id=log-3', '/plain/sse?events=1';
        sleep 0.05;
    }

    my @f = split /\|/, $line{'/log/sse?id=log-1'} // '', -1;
    is_deeply([ @f[1 .. 5] ], [ 'log-1', 5, 5, 75, 'completed' ],
              'log: id, sequence, chunks, bytes, status of a stream');
    ok(($f[6] // '') =~ /^\d+$/ && $f[6] >= 300 && $f[6] < 1300,
       "log: first_chunk_ms ($f[6]) counts the upstream's 300 ms");

    @f = split /\|/, $line{'/log/sse?id=log-2'} // '', -1;
    is_deeply([ @f[1 .. 5] ], [ 'log-2', 2, 2, 30, 'error' ],
              'log: a stream that failed');
    like($f[6] // '', qr/^\d+$/, 'log: its first_chunk_ms');

    @f = split /\|/, $line{'/log/sse?id=log-3'} // '', -1;
    is($f[1], 'log-3', 'log: the left stream');
    is($f[5], 'cancelled', 'log: status cancelled');
    ok(($f[2] // '') =~ /^\d+$/ && $f[2] >= 3 && $f[2] < 20,
       "log: sequence $f[2] when the client left");
    is($f[3], $f[2], 'log: as many chunks as the sequence');
    is($f[4], 15 * ($f[2] // 0), 'log: their bytes');

    @f = split /\|/, $line{'/plain/sse?events=1'} // '', -1;
    is_deeply([ @f[1 .. 6] ], [ ('-') x 6 ], 'log: empty outside streams');
}
$t->expect_log(qr/upstream timed out/, 1);

# --- nginx -t refuses bad values ------------------------------------------

# [ directive line, where, message (besides "[emerg]" and "in FILE:LINE",
#   which nginx itself leaves out for an unknown variable) ]
my @bad = (
    [ 'streaming nozone;', loc => qr/streaming(?:_zone)?\b.*"nozone"/ ],
    [ 'streaming_id "a b";', loc => qr/streaming_id\b.*"a b"/ ],
    [ 'streaming_id "a:b";', loc => qr/streaming_id\b.*"a:b"/ ],
    [ 'streaming_id $nonexistent;', loc => qr/unknown "nonexistent" variable/ ],
    [ 'streaming_framing foo;', loc => qr/streaming_framing\b.*"foo"/ ],
    [ 'streaming_framing bytes=0;', loc => qr/streaming_framing\b.*"bytes=0"/ ],
    [ 'streaming_framing bytes=abc;', loc =>
      qr/streaming_framing\b.*"bytes=abc"/ ],
    [ 'streaming_framing bytes=;', loc => qr/streaming_framing\b.*"bytes="/ ],
    [ 'streaming_framing bytes=2m;', loc =>
      qr/streaming_framing\b.*streaming_max_chunk/ ],
    [ 'streaming_format xml;', loc => qr/streaming_format\b.*"xml"/ ],
    [ 'streaming_heartbeat abc;', loc => qr/streaming_heartbeat\b.*"abc"/ ],
    [ 'streaming_heartbeat 0;', loc => qr/streaming_heartbeat\b.*"0"/ ],
    [ 'streaming_heartbeat -1s;', loc => qr/streaming_heartbeat\b.*"-1s"/ ],
    [ 'streaming_checkpoint 5x;', loc => qr/streaming_checkpoint\b.*"5x"/ ],
    [ 'streaming_max_chunk abc;', loc => qr/streaming_max_chunk\b.*"abc"/ ],
    [ 'streaming_max_chunk 0;', loc => qr/streaming_max_chunk\b.*"0"/ ],
    [ 'streaming_send_buffer -1;', loc => qr/streaming_send_buffer\b.*"-1"/ ],
    [ 'streaming_send_buffer 0;', loc => qr/streaming_send_buffer\b.*"0"/ ],
    [ 'streaming_window 0;', loc => qr/streaming_window\b.*"0"/ ],
    [ 'streaming_window -3;', loc => qr/streaming_window\b.*"-3"/ ],
    [ 'streaming_window lots;', loc => qr/streaming_window\b.*"lots"/ ],
    [ 'streaming_secret "";', loc => qr/streaming_secret\b.*""/ ],
    [ 'streaming_control nozone;', loc => qr/nozone/ ],
    [ 'streaming_publish nozone;', loc => qr/nozone/ ],
    [ 'streaming_control llm; streaming_control llm;', loc =>
      qr/"streaming_control" directive is duplicate/ ],
    [ 'streaming_zone z abc;', http => qr/streaming_zone\b.*"abc"/ ],
    [ 'streaming_zone z 1m max_streams=abc;', http =>
      qr/streaming_zone\b.*"max_streams=abc"/ ],
    [ 'streaming_zone z 1m max_streams=-1;', http =>
      qr/streaming_zone\b.*"max_streams=-1"/ ],
    [ 'streaming_zone z 1m ttl=abc;', http => qr/streaming_zone\b.*"ttl=abc"/ ],
    [ 'streaming_zone z 1m ttl=;', http => qr/streaming_zone\b.*"ttl="/ ],
    [ 'streaming_zone z 1m idle_timeout=xyz;', http =>
      qr/streaming_zone\b.*"idle_timeout=xyz"/ ],
    [ 'streaming_zone z 1m buffer=abc;', http =>
      qr/streaming_zone\b.*"buffer=abc"/ ],
    [ 'streaming_zone z 1m foo=1;', http => qr/streaming_zone\b.*"foo=1"/ ],
);

for my $case (@bad) {
    my ($line, $where, $re) = @$case;
    my %parts = $where eq 'http'
        ? (http => $t->http_config . "\n$line\n")
        : (server => "$server\nlocation /bad/ { $line return 204; }");
    my ($rc, $out) = $t->nginx_t(%parts);
    isnt($rc, 0, "nginx -t refuses '$line'");
    my ($emerg) = grep { /\[emerg\]/ } split /\n/, $out;
    my $at = $line =~ /nonexistent/ ? '' : ' in \S+:\d+';
    like($emerg // '', qr/\[emerg\] .*$re.*$at$/,
         "'$line': the message names the directive and the value")
        or diag $out;
}

{
    my ($rc, $out) = $t->nginx_t;
    is($rc, 0, 'nginx -t accepts the running configuration') or diag $out;
}

# --- reload with a stream in flight ---------------------------------------

{
    my $before = zone();
    my $c = $t->stream('POST', '/llm/v1/chat/completions?tokens=20&tps=10',
                       body => $chat, timeout => 10);
    my @ev = $c->read_events(3, 3);
    is(scalar @ev, 3, 'reload: the stream runs');

    ok($t->reload(server => $server . "location /new { return 200 new; }\n"),
       'reload: done');
    is($t->get('/new')->{body}, 'new', 'reload: the new configuration serves');

    push @ev, $c->read_events(100, 6);
    ok($c->complete, 'reload: the stream ended properly');
    $c->close;
    is(scalar @ev, 23, 'reload: every event (role, 20 tokens, finish, [DONE])');
    is($ev[-1]{data}, '[DONE]', 'reload: [DONE] last');
    my $sid = $c->head->{headers}{'stream-id'};
    is_deeply([ map { $_->{id} } @ev ], [ map { "$sid:$_" } 1 .. 23 ],
              'reload: numbered without a gap');

    my $z = zone();
    is($z->{streams}{completed} - $before->{streams}{completed}, 1,
       'reload: the zone counts it completed');
    is($z->{streams}{active}, $before->{streams}{active},
       'reload: nothing more active');
    is($z->{totals}{chunks} - $before->{totals}{chunks}, 23,
       'reload: every chunk stored');
}

$t->stop;

done_testing;
