# Cross-worker delivery: a subscriber on one worker gets the chunks a
# producer on another worker stores, promptly (the doorbell, not the
# heartbeat, wakes it); after a reload, subscribers on the new workers get
# the chunks of a producer that stayed on an old one; a worker holding a
# subscriber is killed (SIGKILL), the master starts another, and the client
# resumes with Last-Event-ID on a live worker with nothing lost or doubled.
#
# Connections go to a "reuseport" listener, so that the kernel spreads them
# over the workers; every response says which worker served it (X-Worker).

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
my $http = <<'EOF';
streaming_zone llm 4m buffer=64k;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }

server {
    listen 127.0.0.1:%%PORT2%% reuseport;
    server_name spread;
    add_header X-Worker $pid always;
    proxy_http_version 1.1;

    location ~ ^/p(/.*)$ {
        streaming llm;
        streaming_id $arg_id;
        proxy_pass http://mock$1;
    }

    location = /sub { streaming_subscribe llm; }
}
EOF
$t->http_config($http);
$t->server_config(<<'EOF');
location = /status { streaming_status; }
EOF
$t->start;

sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?format=json&id=$id");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : {};
}

sub alive { return kill(0, $_[0]) ? 1 : 0 }

# a connection to the spreading listener and the worker that took it
sub spread {
    my ($method, $path, %o) = @_;
    my $c = $t->stream($method, $path, port => $t->port(2), timeout => 10,
                       %o);
    my $h = $c->read_headers(5) || {};
    return ($c, $h->{headers}{'x-worker'} // 0, $h->{status} // 0);
}

# Subscribes until a worker other than $not takes the connection (bounded).
sub subscribe_elsewhere {
    my ($path, $not, %o) = @_;
    for my $try (1 .. 40) {
        my ($c, $pid, $status) = spread('GET', $path, %o);
        return ($c, $pid, $try) if $pid && $pid != $not;
        $c->close;
    }
    return (undef, 0, 40);
}

# Reads connections at once until they end; records when each data chunk
# arrived: name => { seq => time }, plus the raw items.
# $c{name} = [ conn, 'sse' | 'lines' ]
sub watch {
    my ($conns, $timeout) = @_;
    my (%at, %items);
    my $deadline = time + $timeout * $F;
    while (time < $deadline) {
        my $open = 0;
        for my $name (sort keys %$conns) {
            my ($c, $kind) = @{ $conns->{$name} };
            next if $c->complete || $c->eof;
            $open++;
            my @it = $kind eq 'sse' ? $c->read_events(1000, 0.002)
                                    : $c->read_lines(1000, 0.002);
            my $now = time;
            for my $it (@it) {
                push @{ $items{$name} }, $it;
                my $seq;
                if ($kind eq 'sse') {
                    ($seq) = ($it->{id} // '') =~ /:(\d+)$/;
                } else {
                    my $m = json_decode($it);
                    $seq = $m->{payload}{sequence}
                        if $m->{type} eq 'stream-chunk'
                           && !$m->{payload}{isFinal};
                }
                $at{$name}{$seq} //= $now if defined $seq;
            }
        }
        last unless $open;
    }
    return (\%at, \%items);
}

# the data chunks' sequences of an ndjson subscriber, and its end
sub ndjson_seqs {
    my ($lines) = @_;
    my @m = map { json_decode($_) } @{ $lines || [] };
    my @seq = map { $_->{payload}{sequence} }
              grep { $_->{type} eq 'stream-chunk' && !$_->{payload}{isFinal} }
              @m;
    my $end = @m ? $m[-1]{payload} : {};
    return (\@seq, $end);
}

# For the chunks both got live: the largest delay of the subscriber behind
# the producer's own client, and the largest gap between two chunks.
sub lags {
    my ($prod, $sub, $from, $to) = @_;
    my ($lag, $gap) = (0, 0);
    for my $n ($from .. $to) {
        next unless defined $prod->{$n} && defined $sub->{$n};
        my $d = $sub->{$n} - $prod->{$n};
        $lag = $d if $d > $lag;
        if ($n > $from && defined $sub->{ $n - 1 }) {
            my $g = $sub->{$n} - $sub->{ $n - 1 };
            $gap = $g if $g > $gap;
        }
    }
    return ($lag, $gap);
}

# --- a subscriber on another worker than the producer ------------------------

{
    my ($prod, $ppid) = spread('GET', '/p/sse?id=x1',
                               headers => { 'X-Mock-Events' => 30,
                                            'X-Mock-Tps' => 20 });
    ok($ppid, "x1: the producer runs on worker $ppid");
    my ($sub, $spid, $tries) = subscribe_elsewhere(
        '/sub?id=x1&from=0&format=ndjson', $ppid);
    ok($sub, "x1: a subscriber on worker $spid, another one ($tries tries)");
    $sub ||= $prod;

    my ($at, $items) = watch({ prod => [ $prod, 'sse' ],
                               sub => [ $sub, 'lines' ] }, 5);
    $prod->close;
    $sub->close;

    my ($seqs, $end) = ndjson_seqs($items->{sub});
    is_deeply($seqs, [ 1 .. 30 ], 'x1: chunks 1 to 30 once, in order');
    is($end->{status}, 'completed', 'x1: completed');

    # the chunks that came after it had caught up
    my @live = grep { ($at->{sub}{$_} // 0) > ($at->{sub}{1} // 0) + 0.05 }
               1 .. 30;
    ok(@live >= 20, 'x1: ' . scalar(@live) . ' chunks came live');
    my ($lag, $gap) = lags($at->{prod}, $at->{sub}, $live[0] // 1, 30);
    ok($lag < 0.15 * $F, sprintf('x1: each live chunk at most %.0f ms after '
                                . 'the producer\'s client got it',
                                $lag * 1000));
    ok($gap < 0.2 * $F, sprintf('x1: at most %.0f ms between two chunks '
                                . '(20 per second)', $gap * 1000));
}

# --- reload: an old worker's producer feeds new workers' subscribers ---------

{
    my ($prod, $ppid) = spread('GET', '/p/sse?id=x2',
                               headers => { 'X-Mock-Events' => 40,
                                            'X-Mock-Tps' => 20 });
    my @first = $prod->read_events(5, 3);
    is(scalar @first, 5, 'reload: the producer runs');
    my @old = $t->worker_pids;

    ok($t->reload(http => $http . "# generation 2\n"), 'reload: done');
    my @new = $t->worker_pids;
    is(scalar @new, 2, 'reload: two new workers');
    ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old),
       'reload: none of them is an old one');
    ok(alive($ppid), "reload: the producer's old worker $ppid still runs");

    my %c = (prod => [ $prod, 'sse' ]);
    my %pid;
    for my $i (1 .. 2) {
        my ($c, $pid) = spread('GET', '/sub?id=x2&from=0&format=ndjson');
        $c{"sub$i"} = [ $c, 'lines' ];
        $pid{"sub$i"} = $pid;
        ok((grep { $_ == $pid } @new),
           "reload: subscriber $i on a new worker ($pid)");
    }

    my ($at, $items) = watch(\%c, 6);
    $_->[0]->close for values %c;

    is(scalar(@{ $items->{prod} || [] }) + 5, 40,
       'reload: the producer\'s client got everything');
    for my $name (qw(sub1 sub2)) {
        my ($seqs, $end) = ndjson_seqs($items->{$name});
        is_deeply($seqs, [ 1 .. 40 ], "reload: $name: chunks 1-40");
        is($end->{status}, 'completed', "reload: $name: completed");
        my @live = grep { ($at->{$name}{$_} // 0)
                          > ($at->{$name}{1} // 0) + 0.05 } 1 .. 40;
        ok(@live >= 25, "reload: $name: " . scalar(@live) . ' came live');
        my ($lag, $gap) = lags($at->{prod}, $at->{$name}, $live[0] // 1, 40);
        ok($lag < 0.15 * $F,
           sprintf('reload: %s: at most %.0f ms behind the old worker\'s '
                   . 'client', $name, $lag * 1000));
        ok($gap < 0.2 * $F,
           sprintf('reload: %s: at most %.0f ms between chunks', $name,
                   $gap * 1000));
    }

    my $deadline = time + 3 * $F;
    sleep 0.05 while alive($ppid) && time < $deadline;
    ok(!alive($ppid), 'reload: the old worker exits once its stream ended');
}

# --- SIGKILL of the worker that holds a subscriber ---------------------------

{
    my $n = 100;
    my ($prod, $ppid) = spread('GET', '/p/sse?id=x3',
                               headers => { 'X-Mock-Events' => $n,
                                            'X-Mock-Size' => 1500,
                                            'X-Mock-Tps' => 50 });
    my ($sub, $spid) = subscribe_elsewhere('/sub?id=x3&from=0', $ppid);
    ok($sub, "kill: producer on $ppid, subscriber on $spid");
    $sub ||= $prod;

    # both read for a while
    my (@pev, @sev);
    my $deadline = time + 3 * $F;
    while (time < $deadline && @sev < 15) {
        push @pev, $prod->read_events(1000, 0.01);
        push @sev, $sub->read_events(1000, 0.01);
    }
    ok(@sev >= 15, 'kill: the subscriber read ' . scalar(@sev) . ' events');

    ok(kill('KILL', $spid), "kill: SIGKILL to worker $spid");
    push @sev, $sub->read_events(1000, 0.5);
    ok($sub->eof, 'kill: the subscriber\'s connection is gone');
    ok(!$sub->complete, 'kill: its response did not end properly');
    $sub->close;

    $deadline = time + 5 * $F;
    my @w;
    while (time < $deadline) {
        @w = $t->worker_pids;
        last if @w == 2 && !grep { $_ == $spid } @w;
        sleep 0.05;
    }
    is(scalar(grep { $_ != $spid } @w), 2,
       'kill: the master started another worker');

    # EventSource-like: the last id it saw
    my $last = $sev[-1]{id} // '';
    like($last, qr/^x3:\d+$/, "kill: the last id seen: $last");
    my ($again, $apid, $st) = spread('GET', '/sub',
                                     headers => { 'Last-Event-ID' => $last });
    is($st, 200, "kill: resumed with Last-Event-ID on worker $apid");
    ok((grep { $_ == $apid } @w), 'kill: a live worker');

    # the killed worker's subscriber is no longer attached: only the
    # producer's client and the resumed one count, and the history it had
    # not received holds nothing back
    $deadline = time + 2 * $F;
    sleep 0.05 while (stream_status('x3')->{subscribers} // 0) > 2
                     && time < $deadline;
    is(stream_status('x3')->{subscribers}, 2,
       'kill: the stream counts 2 subscribers: the producer\'s client and '
       . 'the resumed one') or diag explain stream_status('x3');

    my @rest;
    $deadline = time + 6 * $F;
    while (time < $deadline && !($again->complete || $again->eof)
           || !($prod->complete || $prod->eof))
    {
        last if time > $deadline;
        push @rest, $again->read_events(1000, 0.01);
        push @pev, $prod->read_events(1000, 0.01);
    }
    push @rest, $again->read_events(1000, 0.01);
    ok($again->complete, 'kill: the resumed response ends properly');
    $again->close;
    $prod->close;

    my @ids = map { $_->{id} } @sev, @rest;
    is_deeply(\@ids, [ map { "x3:$_" } 1 .. $n ],
              'kill: before and after: every event once, in order');
    is(scalar @pev, $n, 'kill: the producer\'s client got every event');
    my $s = stream_status('x3');
    is($s->{status}, 'completed', 'kill: the stream completed')
        or diag explain $s, $t->mock_stats->{streams}[0];
    is($s->{subscribers}, 0, 'kill: no subscriber left on it, not even '
                             . 'the killed worker\'s');
    my $j = json_decode($t->get('/status?format=json')->{body});
    is($j->{zones}{llm}{subscribers}, 0, 'kill: none in the zone');
}

$t->expect_log(qr/exited on signal 9/, 1);

$t->stop;

done_testing;
