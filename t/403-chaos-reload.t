# nginx -s reload in the middle of 100 active streams, each with a
# subscriber: subscribers held by the old workers get SHUTDOWN and resume
# from where they were on the new ones; every subscriber ends with every
# chunk of its stream exactly once, in order, and the completed status; no
# subscriber is left stuck; once ttl has passed, the zone's "used" is back
# to its baseline.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $STREAMS = 100;
my $ROUNDS = 20;

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone rl 16m ttl=2s;');
$t->server_config(<<'EOF');
keepalive_requests 100000;
location = /pub { streaming_publish rl; }
location = /sub { streaming_subscribe rl; }
location = /status { streaming_status; }
EOF
$t->start;

sub zone { json_decode($t->get('/status?format=json')->{body})->{zones}{rl} }

my $base = zone();

is(scalar(grep { $_->[0] == 201 }
          $t->pipeline(map { [ 'PUT', "/pub?id=s$_" ] } 1 .. $STREAMS)),
   $STREAMS, "$STREAMS streams");

# one subscriber each: its connection, what it got, where to resume
my %sub;
sub connect_sub {
    my ($i) = @_;
    my $from = $sub{$i}{last} // 0;
    $sub{$i}{conn} = $t->stream('GET', "/sub?id=s$i&from=$from&format=ndjson",
                                timeout => 10);
    $sub{$i}{connects}++;
}
connect_sub($_) for 1 .. $STREAMS;

my $shutdowns = 0;
sub pump {
    for my $i (1 .. $STREAMS) {
        my $s = $sub{$i};
        next if $s->{done};
        for my $line ($s->{conn}->read_lines(10000, 0.001)) {
            my $m = eval { json_decode($line) } or next;
            if ($m->{type} eq 'stream-chunk') {
                my $p = $m->{payload};
                if ($p->{isFinal}) {
                    $s->{final} = $p->{sequence};
                } elsif ($p->{sequence} == ($s->{last} // 0) + 1) {
                    push @{ $s->{data} }, $p->{data};
                    $s->{last} = $p->{sequence};
                } else {
                    push @{ $s->{wrong} }, $p->{sequence};
                }
            } elsif ($m->{type} eq 'stream-status') {
                my $st = $m->{payload}{status};
                $shutdowns++ if ($m->{payload}{error}{code} // '') eq 'SHUTDOWN';
                $s->{status} = $st if $st ne 'active';
            }
        }
        if ($s->{conn}->complete || $s->{conn}->eof) {
            $s->{conn}->close;
            if (($s->{status} // '') eq 'completed') {
                $s->{done} = 1;
            } else {
                delete $s->{status};
                connect_sub($i);    # SHUTDOWN: resume on a new worker
            }
        }
    }
}

my $reloaded;
for my $round (1 .. $ROUNDS) {
    my $final = $round == $ROUNDS ? '&final=1' : '';
    my @r = $t->pipeline(map { [ 'POST', "/pub?id=s$_$final", "r$round" ] }
                         1 .. $STREAMS);
    is(scalar(grep { $_->[0] == 202 } @r), $STREAMS, "round $round: stored")
        if $round == 1 || $round == $ROUNDS;
    if ($round == $ROUNDS / 2) {
        $reloaded = $t->reload(http => 'streaming_zone rl 16m ttl=2s;');
    }
    pump();
}
ok($reloaded, 'reloaded in the middle');

my $deadline = time + 15 * $F;
while (time < $deadline && grep { !$sub{$_}{done} } 1 .. $STREAMS) {
    pump();
    sleep 0.02;
}

my @stuck = grep { !$sub{$_}{done} } 1 .. $STREAMS;
is(scalar @stuck, 0, 'no subscriber is stuck') or diag "stuck: @stuck";
ok($shutdowns > 0, "$shutdowns subscribers got SHUTDOWN and resumed");
my @bad = grep {
    my $s = $sub{$_};
    join(',', @{ $s->{data} || [] }) ne join(',', map { "r$_" } 1 .. $ROUNDS)
    || ($s->{final} // 0) != $ROUNDS + 1 || $s->{wrong}
} 1 .. $STREAMS;
is(scalar @bad, 0, "every subscriber got its $ROUNDS chunks once, in order, "
                   . 'and the final one')
    or diag explain [ map { [ $_, $sub{$_}{last}, $sub{$_}{wrong} ] } @bad ];

$deadline = time + 10 * $F;
my $z;
while (time < $deadline) {
    $z = zone();
    last if $z->{used} == $base->{used} && $z->{subscribers} == 0;
    sleep 0.2;
}
is($z->{subscribers}, 0, 'no subscriber left in the zone');
is($z->{used}, $base->{used}, "after ttl, used back to $base->{used}");

$t->stop;

done_testing;
