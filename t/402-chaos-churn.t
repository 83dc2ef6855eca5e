# Zone exhaustion under churn: live streams until the zone is full (clear
# 503 ZONE_FULL answers, nothing stored lost), then 10,000 streams created
# and finished, twice, through a 1 MB zone: finished streams are reclaimed
# oldest first, nothing leaks, and once ttl has passed "used" is back to
# its baseline.  Requests are pipelined on keepalive connections so that
# the loop is bounded and quick.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $N = 10_000;

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone churn 1m ttl=1s;');
$t->server_config(<<'EOF');
keepalive_requests 100000;
location = /pub { streaming_publish churn; }
location = /ctl { streaming_control churn; }
location = /status { streaming_status; }
EOF
$t->start;

sub zone { json_decode($t->get('/status?format=json')->{body})->{zones}{churn} }

my $base = zone();
is($base->{streams}{active}, 0, 'an empty zone');

for my $round (1, 2) {

    # live streams until the zone is full
    my @live = $t->pipeline(map { [ 'POST', "/pub?id=live-$round-$_", 'x' x 200 ] }
                        1 .. 3000);
    my @ok = grep { $_->[0] == 202 } @live;
    my @full = grep { $_->[0] == 503 } @live;
    ok(@ok > 100, "round $round: " . scalar(@ok) . ' live streams stored');
    ok(@full > 0, "round $round: then " . scalar(@full) . ' refused: 503');
    is(scalar(@ok) + scalar(@full), 3000, "round $round: nothing else");
    my %codes = map { (eval { json_decode($_->[1])->{error}{code} } // '?') => 1 }
                @full;
    is_deeply([ sort keys %codes ], [ 'ZONE_FULL' ],
              "round $round: every refusal says ZONE_FULL");

    # nothing stored was lost: the first live one reads whole
    my $st = json_decode($t->get("/ctl?id=live-$round-1")->{body});
    is($st->{sequence}, 1, "round $round: a live stream still holds its chunk");

    # they end; then 10,000 streams created and finished through the zone
    my @end = $t->pipeline(map { [ 'DELETE', "/pub?id=live-$round-$_", '' ] }
                       1 .. scalar @ok);
    is(scalar(grep { $_->[0] == 200 } @end), scalar @ok,
       "round $round: the live ones end");

    my $t0 = time;
    my @done = $t->pipeline(map { [ 'POST', "/pub?id=done-$round-$_&final=1",
                                'y' x 100 ] } 1 .. $N);
    my $took = time - $t0;
    is(scalar(grep { $_->[0] == 202 } @done), $N,
       "round $round: $N streams created and finished"
       . sprintf(' (%.1f s)', $took));

    my $z = zone();
    ok($z->{totals}{created} >= $round * ($N + @ok),
       "round $round: the zone counted them ($z->{totals}{created})");

    # ttl: every finished stream goes, and used is back where it started
    my $deadline = time + 10 * $F;
    while (time < $deadline) {
        $z = zone();
        last if $z->{used} == $base->{used};
        sleep 0.2;
    }
    is($z->{used}, $base->{used},
       "round $round: used back to its baseline ($base->{used})");
    is_deeply($z->{streams}, $base->{streams}, "round $round: no stream left");
}

$t->stop;

done_testing;
