# Graceful worker exit (reload) with subscribers attached: each gets a final
# SHUTDOWN error (stream-status in omni and ndjson, a JSON-RPC error line)
# or, in passthrough, just the end of its response, at once; reconnecting
# from the last sequence it saw (from=, Last-Event-ID) on a new worker
# resumes with nothing lost or doubled.  The producer keeps going on its old
# worker, which exits once the stream ended; an old worker with nothing
# but subscribers exits at once.

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
EOF
# subscribers come in through a "reuseport" listener: the kernel spreads
# them over both workers
my $server = <<'EOF';
listen 127.0.0.1:%%PORT2%% reuseport;
proxy_http_version 1.1;
add_header X-Worker $pid always;

location ~ ^/p(/.*)$ {
    streaming llm;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}

location = /sub { streaming_subscribe llm; }

location = /status { streaming_status; }
EOF
$t->server_config($server);
$t->start;

sub alive { return kill(0, $_[0]) ? 1 : 0 }

sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?format=json&id=$id");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : {};
}

# One subscriber's messages, whatever its format, as
# { seq => [ data chunk sequences ], final => n, status => .., code => .. }
sub summary {
    my ($fmt, $items) = @_;
    my %s = (seq => []);
    for my $it (@$items) {
        if ($fmt eq 'passthrough') {
            my ($n) = ($it->{id} // '') =~ /:(\d+)$/;
            push @{ $s{seq} }, $n if defined $it->{data};
            next;
        }
        my $m = json_decode($fmt eq 'omni' ? $it->{data} : $it);
        if ($fmt eq 'jsonrpc') {
            if ($m->{error}) {
                $s{status} = 'error';
                $s{code} = $m->{error}{data}{code};
                $s{rpc_code} = $m->{error}{code};
            } elsif ($m->{result}{_isLast}) {
                $s{final} = $m->{result}{_sequence};
            } else {
                push @{ $s{seq} }, $m->{result}{_sequence};
            }
            next;
        }
        my $p = $m->{payload};
        if ($m->{type} eq 'stream-chunk') {
            if ($p->{isFinal}) { $s{final} = $p->{sequence} }
            else { push @{ $s{seq} }, $p->{sequence} }
        } elsif ($m->{type} eq 'stream-status') {
            $s{status} = $p->{status};
            $s{code} = $p->{error} && $p->{error}{code};
        } elsif ($m->{type} eq 'stream-init') {
            $s{resume} = $p->{metadata}{resumePosition};
        }
    }
    return \%s;
}

my $n = 50;
my ($prod, $ppid);
{
    $prod = $t->stream('GET', '/p/sse?id=s1',
                       headers => { 'X-Mock-Events' => $n,
                                    'X-Mock-Tps' => 20 },
                       timeout => 10);
    my $h = $prod->read_headers(3) || {};
    $ppid = $h->{headers}{'x-worker'} // 0;
    ok($ppid, "the producer runs on worker $ppid");
}

# [ name, format, kind, path ]
my @subs = (
    [ 'omni', 'omni', 'sse', '/sub?id=s1&from=0&format=omni' ],
    [ 'ndjson', 'ndjson', 'lines', '/sub?id=s1&from=0&format=ndjson' ],
    [ 'ndjson by Accept', 'ndjson', 'lines', '/sub?id=s1&from=0',
      { Accept => 'application/x-ndjson' } ],
    [ 'jsonrpc', 'jsonrpc', 'lines', '/sub?id=s1&from=0&format=jsonrpc' ],
    [ 'passthrough', 'passthrough', 'sse', '/sub?id=s1' ],
);
my %c;
for my $s (@subs) {
    my ($name, $fmt, $kind, $path, $h) = @$s;
    # several of each, so that both workers hold some
    for my $i (1 .. 3) {
        my $c = $t->stream('GET', $path, headers => $h || {}, timeout => 10,
                           port => $t->port(2));
        my $head = $c->read_headers(3) || {};
        $c{"$name $i"} = { conn => $c, fmt => $fmt, kind => $kind,
                           worker => $head->{headers}{'x-worker'} // 0,
                           items => [] };
    }
}

# everyone has caught up with a few chunks
my @pev;
my $deadline = time + 3 * $F;
while (time < $deadline) {
    push @pev, $prod->read_events(1000, 0.01);
    for my $s (values %c) {
        push @{ $s->{items} }, $s->{kind} eq 'sse'
            ? $s->{conn}->read_events(1000, 0.002)
            : $s->{conn}->read_lines(1000, 0.002);
    }
    last if @pev >= 5
            && !grep { @{ summary($_->{fmt}, $_->{items})->{seq} } < 5 }
                     values %c;
}
ok(@pev >= 5, 'the stream runs: ' . scalar(@pev) . ' events');
my @old = $t->worker_pids;
my %held = map { $_->{worker} => 1 } values %c;
is(scalar(keys %held), 2, 'subscribers on both workers')
    or diag explain \%held;

my $reload_at = time;
ok($t->reload(server => "$server\n# generation 2\n"), 'reload');
my @new = $t->worker_pids;

# each subscriber: SHUTDOWN and the end of its response, at once
for my $name (sort keys %c) {
    my $s = $c{$name};
    my $c = $s->{conn};
    my $until = time + 3 * $F;
    while (time < $until && !$c->complete && !$c->eof) {
        push @{ $s->{items} }, $s->{kind} eq 'sse'
            ? $c->read_events(1000, 0.01) : $c->read_lines(1000, 0.01);
        push @pev, $prod->read_events(1000, 0.001);
    }
    push @{ $s->{items} }, $s->{kind} eq 'sse'
        ? $c->read_events(1000, 0.01) : $c->read_lines(1000, 0.01);
    my $took = time - $reload_at;
    ok($c->complete, "$name: the response ends properly");
    ok($took < 2 * $F, sprintf('%s: ended %.2f s after the reload', $name,
                               $took));
    $c->close;

    my $sum = summary($s->{fmt}, $s->{items});
    my $got = $sum->{seq};
    ok(@$got >= 5 && @$got < $n, "$name: " . scalar(@$got) . ' chunks');
    is_deeply($got, [ 1 .. scalar @$got ], "$name: those, in order");
    ok(!defined $sum->{final}, "$name: no final chunk: the stream goes on");
    if ($s->{fmt} eq 'passthrough') {
        is(scalar(grep { !defined $_->{data} } @{ $s->{items} }), 0,
           "$name: nothing but events");
    } else {
        is($sum->{status}, 'error', "$name: a final status error");
        is($sum->{code}, 'SHUTDOWN', "$name: SHUTDOWN");
        is($sum->{rpc_code}, -32000, "$name: JSON-RPC code -32000")
            if $s->{fmt} eq 'jsonrpc';
    }
    $s->{before} = $got;
}

# the old worker with nothing but subscribers is gone; the producer's stays
{
    my ($other) = grep { $_ != $ppid } @old;
    my $until = time + 2 * $F;
    sleep 0.05 while alive($other) && time < $until;
    ok(!alive($other), "the other old worker $other exited");
    ok(alive($ppid), "the producer's old worker $ppid still runs");
    is(stream_status('s1')->{status}, 'active', 'the stream is active');
}

# everyone reconnects from where it stood, on a new worker
my %again;
for my $name (sort keys %c) {
    my $s = $c{$name};
    my $last = $s->{before}[-1] // 0;
    my ($path, %h) = ('/sub?id=s1&format=' . $s->{fmt} . "&from=$last");
    if ($s->{fmt} eq 'passthrough') {
        ($path, %h) = ('/sub', 'Last-Event-ID' => "s1:$last");
    }
    my $c = $t->stream('GET', $path, headers => \%h, timeout => 10);
    my $head = $c->read_headers(3) || {};
    is($head->{status}, 200, "$name: resumes after $last");
    my $w = $head->{headers}{'x-worker'} // 0;
    ok((grep { $_ == $w } @new), "$name: on a new worker ($w)");
    $again{$name} = { %$s, conn => $c, items => [] };
}

$deadline = time + 5 * $F;
while (time < $deadline) {
    my $open = 0;
    for my $s (values %again) {
        my $c = $s->{conn};
        next if $c->complete || $c->eof;
        $open++;
        push @{ $s->{items} }, $s->{kind} eq 'sse'
            ? $c->read_events(1000, 0.005) : $c->read_lines(1000, 0.005);
    }
    push @pev, $prod->read_events(1000, 0.005)
        unless $prod->complete || $prod->eof;
    last unless $open || !($prod->complete || $prod->eof);
}
my $ended = time;

for my $name (sort keys %again) {
    my $s = $again{$name};
    ok($s->{conn}->complete, "$name: the resumed response ends properly");
    $s->{conn}->close;
    my $sum = summary($s->{fmt}, $s->{items});
    is_deeply([ @{ $s->{before} }, @{ $sum->{seq} } ], [ 1 .. $n ],
              "$name: before and after the reload: every chunk once, "
              . 'in order');
    next if $s->{fmt} eq 'passthrough';
    is($sum->{final}, $n + 1, "$name: the final chunk");
    is($sum->{status}, 'completed', "$name: completed")
        unless $s->{fmt} eq 'jsonrpc';
    is($sum->{resume}, $s->{before}[-1], "$name: resumePosition")
        if $s->{fmt} ne 'jsonrpc';
}

ok($prod->complete, 'the producer\'s response ends properly');
$prod->close;
is_deeply([ map { $_->{id} } @pev ], [ map { "s1:$_" } 1 .. $n ],
          'the producer\'s client got every event, through the reload');
is(stream_status('s1')->{status}, 'completed', 'the stream completed');

{
    my $until = time + 3 * $F;
    sleep 0.05 while alive($ppid) && time < $until;
    ok(!alive($ppid), sprintf('the producer\'s old worker exited, %.2f s '
                              . 'after the stream ended', time - $ended));
    is(scalar($t->worker_pids(all => 1)), 2, 'two workers left');
}

$t->stop;

done_testing;
