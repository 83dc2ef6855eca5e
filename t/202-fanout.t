# Fan-out: 20 subscribers of one stream each get every chunk once, in order,
# in their own format.  A subscriber that stops reading (small
# streaming_send_buffer, small socket buffers, big events): under
# "streaming_overflow evict" it slows nobody, old chunks go, and it ends
# with CHUNKS_EXPIRED when it reads again; under "pause" it holds the
# producer (the upstream stops sending) until it reads again, and nothing is
# lost for anyone.

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
streaming_zone fan 8m;
streaming_zone ev 8m buffer=64k;
streaming_zone pz 8m buffer=64k;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }

# subscribers of the overflow tests: small kernel send buffers, so that a
# client that stops reading soon stops taking chunks
server {
    listen 127.0.0.1:%%PORT2%% sndbuf=4k;
    server_name slow;

    location = /sub-ev {
        streaming_subscribe ev;
        streaming_send_buffer 4k;
    }
    location = /sub-pz {
        streaming_subscribe pz;
        streaming_send_buffer 4k;
    }
}
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;

location ~ ^/p(/.*)$ {
    streaming fan;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}
location ~ ^/ev(/.*)$ {
    streaming ev;
    streaming_id $arg_id;
    streaming_overflow evict;
    proxy_pass http://mock$1;
}
location ~ ^/pz(/.*)$ {
    streaming pz;
    streaming_id $arg_id;
    streaming_overflow pause;
    proxy_pass http://mock$1;
}

location = /sub { streaming_subscribe fan; }
location = /sub-ev { streaming_subscribe ev; }
location = /sub-pz { streaming_subscribe pz; }

location = /status { streaming_status; }
EOF
$t->start;

sub zone {
    my ($name) = @_;
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{$name};
}

sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?format=json&id=$id");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : {};
}

# a producer's stream exists once its request passed the precontent phase,
# before the upstream's first byte: its subscribers can attach from 0
sub wait_stream {
    my ($id) = @_;
    my $deadline = time + 3 * $F;
    while (time < $deadline) {
        return 1 if $t->get("/status?format=json&id=$id")->{status} == 200;
        sleep 0.02;
    }
    return 0;
}

sub mock_stream {
    my ($mid) = @_;
    my ($s) = grep { $_->{mid} eq $mid } @{ $t->mock_stats->{streams} };
    return $s || {};
}

# whatever complete items (SSE events or lines) a connection has now
sub items {
    my ($kind, $c) = @_;
    return $kind eq 'lines' ? $c->read_lines(10000, 0.005)
                            : $c->read_events(10000, 0.005);
}

# JSON::PP is slow on long strings: a big message's data is replaced by its
# length before decoding (the overflow tests only look at sequences)
sub light_decode {
    my ($json) = @_;
    if (length $json > 1000) {
        $json =~ s/"(_?data)":"((?:[^"\\]|\\.)*)"/
                   qq("$1":"<) . length($2) . '>"'/ex;
    }
    return json_decode($json);
}

# What one connection delivered (items in its format), as a list of
# [ sequence, data ] for its data chunks, and the end:
# { final => sequence, status => ..., code => ... }
sub decode_items {
    my ($fmt, $items) = @_;
    my (@chunks, %end);
    for my $it (@$items) {
        if ($fmt eq 'passthrough') {
            my ($seq) = ($it->{id} // '') =~ /:(\d+)$/;
            push @chunks, [ $seq, $it->{data} ] if defined $it->{data};
            next;
        }
        my $m = light_decode($fmt eq 'omni' ? $it->{data} : $it);
        if ($fmt eq 'jsonrpc') {
            if ($m->{error}) {
                $end{status} = 'error';
                $end{code} = $m->{error}{data}{code};
            } elsif ($m->{result}{_isLast}) {
                $end{final} = $m->{result}{_sequence};
            } else {
                push @chunks, [ $m->{result}{_sequence},
                                $m->{result}{_data} ];
            }
            next;
        }
        my $p = $m->{payload};
        if ($m->{type} eq 'stream-chunk') {
            if ($p->{isFinal}) {
                $end{final} = $p->{sequence};
            } else {
                push @chunks, [ $p->{sequence}, $p->{data} ];
            }
        } elsif ($m->{type} eq 'stream-status'
                 && ($p->{status} ne 'active' || $p->{error})) {
            $end{status} = $p->{status};
            $end{code} = $p->{error} && $p->{error}{code};
        }
    }
    return (\@chunks, \%end);
}

# --- 20 subscribers of one stream --------------------------------------------

{
    my $prod = $t->stream('GET', '/p/sse?id=fan',
                          headers => { 'X-Mock-Events' => 50,
                                       'X-Mock-Tps' => 50 },
                          timeout => 10);
    is(($prod->read_headers(3) || {})->{status}, 200, 'fan: producing');

    my @fmts = qw(passthrough omni ndjson jsonrpc);
    my %c;
    for my $i (1 .. 20) {
        my $fmt = $fmts[ $i % 4 ];
        my $c = $t->stream('GET', "/sub?id=fan&from=0&format=$fmt",
                           timeout => 10);
        $c{$i} = [ $c, $fmt, $fmt eq 'passthrough' || $fmt eq 'omni'
                             ? 'sse' : 'lines', [] ];
    }
    $c{0} = [ $prod, 'passthrough', 'sse', [] ];
    for my $i (1 .. 20) {
        is(($c{$i}[0]->read_headers(3) || {})->{status}, 200,
           "fan: subscriber $i in");
    }
    is(zone('fan')->{subscribers}, 21,
       'fan: 20 subscribers and the producer\'s client');

    my $deadline = time + 8 * $F;
    while (time < $deadline) {
        my $open = 0;
        for my $i (sort { $a <=> $b } keys %c) {
            my ($c, $fmt, $kind, $got) = @{ $c{$i} };
            next if $c->complete || $c->eof;
            $open++;
            push @$got, items($kind, $c);
        }
        last unless $open;
    }

    for my $i (sort { $a <=> $b } keys %c) {
        my ($c, $fmt, $kind, $got) = @{ $c{$i} };
        my $name = $i ? "fan: subscriber $i ($fmt)" : 'fan: producer\'s client';
        push @$got, items($kind, $c);
        ok($c->complete, "$name: ends properly");
        $c->close;
        my ($chunks, $end) = decode_items($fmt, $got);
        is_deeply([ map { $_->[0] } @$chunks ], [ 1 .. 50 ],
                  "$name: chunks 1-50, once, in order");
        is_deeply([ map { $_->[1] } @$chunks ],
                  [ map { qq({"n":$_}) } 0 .. 49 ], "$name: their data");
        next if $fmt eq 'passthrough';
        is($end->{final}, 51, "$name: final 51");
        is($end->{status}, 'completed', "$name: completed")
            unless $fmt eq 'jsonrpc';
    }

    my $deadline2 = time + 3 * $F;
    sleep 0.05 while zone('fan')->{subscribers} && time < $deadline2;
    is(zone('fan')->{subscribers}, 0, 'fan: no subscriber left');
}

# A subscriber that will not read (for a while), on the server whose
# sockets have a small send buffer.  Its own receive buffer stays as the
# kernel makes it: a tiny one with loopback's 64k MSS would make the
# window updates crawl once it reads again.
sub slow_subscriber {
    my ($path) = @_;
    return $t->stream('GET', $path, port => $t->port(2), timeout => 10);
}

# reads the given connections until they end or the deadline passes;
# $c{name} = [ conn, format, kind, \@items ]
sub drain {
    my ($conns, $timeout) = @_;
    my $deadline = time + $timeout * $F;
    while (time < $deadline) {
        my $open = 0;
        for my $name (sort keys %$conns) {
            my ($c, $fmt, $kind, $got) = @{ $conns->{$name} };
            next if $c->complete || $c->eof;
            $open++;
            push @$got, items($kind, $c);
        }
        last unless $open;
    }
    for my $name (sort keys %$conns) {
        my ($c, $fmt, $kind, $got) = @{ $conns->{$name} };
        push @$got, items($kind, $c);
    }
}

# the sequence of the last data chunk a connection has read
sub last_seq {
    my ($conn) = @_;
    my ($chunks) = decode_items($conn->[1], $conn->[3]);
    return @$chunks ? $chunks->[-1][0] : 0;
}

# --- a small streaming_send_buffer, a client that reads: everything ----------
#
# streaming_send_buffer 4k and events of 2000 bytes: the connection's unsent
# output reaches the limit at nearly every chunk; delivery must go on as the
# socket drains.

{
    my $n = 200;
    my $prod = $t->stream('GET', '/ev/sse?id=sb1',
                          headers => { 'X-Mock-Events' => $n,
                                       'X-Mock-Size' => 2000,
                                       'X-Mock-Tps' => 400,
                                       'X-Mock-Ttft' => 300 },
                          timeout => 10);
    ok(wait_stream('sb1'), 'send_buffer 4k: producing');
    my %c = (producer => [ $prod, 'passthrough', 'sse', [] ]);
    for my $fmt (qw(passthrough ndjson)) {
        my $c = $t->stream('GET', "/sub-ev?id=sb1&from=0&format=$fmt",
                           port => $t->port(2), timeout => 10);
        $c{$fmt} = [ $c, $fmt, $fmt eq 'ndjson' ? 'lines' : 'sse', [] ];
    }
    drain(\%c, 4);
    for my $name (sort keys %c) {
        my ($c, $fmt) = @{ $c{$name} };
        ok($c->complete, "send_buffer 4k: $name: ends properly");
        $c->close;
        my ($chunks, $end) = decode_items($fmt, $c{$name}[3]);
        is_deeply([ map { $_->[0] } @$chunks ], [ 1 .. $n ],
                  "send_buffer 4k: $name: every chunk once, in order");
    }
}

# --- evict: the slow one slows nobody and ends with CHUNKS_EXPIRED -----------

{
    my $n = 300;
    my $base = zone('ev');
    my $start = time;
    my $prod = $t->stream('GET', '/ev/sse?id=ev1',
                          headers => { 'X-Mock-Events' => $n,
                                       'X-Mock-Size' => 2000,
                                       'X-Mock-Tps' => 300,
                                       'X-Mock-Ttft' => 300,
                                       'X-Mock-Mid' => 'ev1' },
                          timeout => 10);
    ok(wait_stream('ev1'), 'evict: producing');

    my $slow = slow_subscriber('/sub-ev?id=ev1&from=0&format=ndjson');
    is(($slow->read_headers(3) || {})->{status}, 200, 'evict: slow one in');

    my %c = (producer => [ $prod, 'passthrough', 'sse', [] ]);
    for my $i (1 .. 3) {
        my $c = $t->stream('GET', '/sub-ev?id=ev1&from=0&format=ndjson',
                           timeout => 10);
        $c{"fast $i"} = [ $c, 'ndjson', 'lines', [] ];
    }

    drain(\%c, 8);
    my $took = time - $start;
    # 300 events at 300 per second: about a second
    ok($took < 2.5 * $F,
       sprintf('evict: the fast ones got everything in %.2f s', $took));
    is(mock_stream('ev1')->{state}, 'done', 'evict: the upstream finished');

    for my $name (sort keys %c) {
        my ($c, $fmt) = @{ $c{$name} };
        ok($c->complete, "evict: $name: ends properly");
        $c->close;
        my ($chunks, $end) = decode_items($fmt, $c{$name}[3]);
        is_deeply([ map { $_->[0] } @$chunks ], [ 1 .. $n ],
                  "evict: $name: every chunk once, in order");
        is($end->{status}, 'completed', "evict: $name: completed")
            unless $fmt eq 'passthrough';
    }

    my $st = stream_status('ev1');
    is($st->{status}, 'completed', 'evict: the stream completed');
    my $z = zone('ev');
    my $evicted = $z->{totals}{evicted_chunks}
                  - $base->{totals}{evicted_chunks};
    ok($evicted > 0, "evict: totals.evicted_chunks counts $evicted");
    ok($st->{first} > 1, "evict: the history starts at $st->{first}");

    # now it reads: what it had, then CHUNKS_EXPIRED, then the end
    my %s = (slow => [ $slow, 'ndjson', 'lines', [] ]);
    drain(\%s, 5);
    ok($slow->eof || $slow->complete, 'evict: the slow one is closed');
    my ($chunks, $end) = decode_items('ndjson', $s{slow}[3]);
    my $got = @$chunks;
    ok($got > 0 && $got < $n, "evict: the slow one got $got chunks");
    is_deeply([ map { $_->[0] } @$chunks ], [ 1 .. $got ],
              'evict: the slow one: those in order, without a gap');
    is($end->{status}, 'error', 'evict: the slow one: status error');
    is($end->{code}, 'CHUNKS_EXPIRED', 'evict: the slow one: CHUNKS_EXPIRED');
    ok(!defined $end->{final}, 'evict: the slow one: no final chunk');
    $slow->close;
}

# --- pause: the slow one holds the producer until it reads -------------------

{
    my $n = 600;
    my $prod = $t->stream('GET', '/pz/sse?id=pz1',
                          headers => { 'X-Mock-Events' => $n,
                                       'X-Mock-Size' => 2000,
                                       'X-Mock-Sndbuf' => 8192,
                                       'X-Mock-Ttft' => 300,
                                       'X-Mock-Mid' => 'pz1' },
                          timeout => 10);
    ok(wait_stream('pz1'), 'pause: producing');
    my $slow = slow_subscriber('/sub-pz?id=pz1&from=0&format=omni');
    is(($slow->read_headers(3) || {})->{status}, 200, 'pause: slow one in');

    my %c = (producer => [ $prod, 'passthrough', 'sse', [] ]);
    for my $i (1 .. 2) {
        my $c = $t->stream('GET', '/sub-pz?id=pz1&from=0&format=ndjson',
                           timeout => 10);
        $c{"fast $i"} = [ $c, 'ndjson', 'lines', [] ];
    }

    # read the others until nothing new came for 0.5 s
    my ($last, $since) = (0, time);
    my $deadline = time + 5 * $F;
    while (time < $deadline && time - $since < 0.5) {
        for my $name (sort keys %c) {
            push @{ $c{$name}[3] }, items($c{$name}[2], $c{$name}[0]);
        }
        my $seq = last_seq($c{producer});
        ($last, $since) = ($seq, time) if $seq != $last;
    }
    ok($last > 0 && $last < $n,
       "pause: the stream stopped at $last of $n while the slow one waits");
    for my $name (sort keys %c) {
        is(last_seq($c{$name}), $last, "pause: $name got up to $last");
    }

    # the upstream fills the socket buffers first (slowly, on a loaded
    # machine): once its writes block, nothing more may leave it
    my $bdeadline = time + 5 * $F;
    sleep 0.05 while time < $bdeadline
                     && (mock_stream('pz1')->{state} // '') ne 'blocked';
    my $m1 = mock_stream('pz1');
    sleep 0.3;
    my $m2 = mock_stream('pz1');
    is($m2->{state}, 'blocked', 'pause: the upstream is blocked');
    ok($m2->{blocked}, 'pause: blocked: true');
    is($m2->{sent_events}, $m1->{sent_events},
       "pause: the upstream sent nothing more ($m2->{sent_events} events)");
    ok(($m2->{sent_tokens} // $n) < $n, 'pause: it is not done');
    my $st = stream_status('pz1');
    is($st->{status}, 'active', 'pause: an overflow hold leaves it active');
    is($st->{sequence}, $last, "pause: the zone holds $last chunks");

    # it reads again: everything flows, to the end, for everyone
    $c{slow} = [ $slow, 'omni', 'sse', [] ];
    drain(\%c, 10);
    is(mock_stream('pz1')->{state}, 'done', 'pause: the upstream finished');

    for my $name (sort keys %c) {
        my ($c, $fmt) = @{ $c{$name} };
        ok($c->complete, "pause: $name: ends properly");
        $c->close;
        my ($chunks, $end) = decode_items($fmt, $c{$name}[3]);
        is_deeply([ map { $_->[0] } @$chunks ], [ 1 .. $n ],
                  "pause: $name: every chunk once, in order");
        next if $fmt eq 'passthrough';
        is($end->{final}, $n + 1, "pause: $name: final");
        is($end->{status}, 'completed', "pause: $name: completed");
    }
    is(stream_status('pz1')->{status}, 'completed', 'pause: completed');
    is(zone('pz')->{totals}{evicted_chunks}, 0, 'pause: nothing evicted');
}

$t->stop;

done_testing;
