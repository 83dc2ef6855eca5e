# streaming_checkpoint and progress: a stream with a known total (the
# publisher's totalSize) reports bytesTransferred, totalBytes, percentage
# and estimatedRemainingMs (from the observed rate) in its state, and its
# ndjson subscribers get a stream-status with progress and checkpoint once
# they have caught up with a new checkpoint, and always once at the end.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone cz 4m;');
$t->server_config(<<'EOF');
location = /pub { streaming_publish cz; streaming_checkpoint 100ms; }
location = /sub { streaming_subscribe cz; }
location = /ctl { streaming_control cz; }
EOF
$t->start;

is($t->put('/pub?id=c1', '{"totalSize":1000}')->{status}, 201,
   'a stream of 1000 bytes');
my $s = $t->stream('GET', '/sub?id=c1&format=ndjson', timeout => 10);
is(($s->read_headers(3) || {})->{status}, 200, 'a subscriber');

my $t0 = time;
$t->post('/pub?id=c1', 'a' x 250);
sleep 0.3;
$t->post('/pub?id=c1', 'b' x 250);
my $elapsed_ms = (time - $t0) * 1000;

my $st = json_decode($t->get('/ctl?id=c1')->{body});
is($st->{progress}{bytesTransferred}, 500, 'state: 500 bytes');
is($st->{progress}{totalBytes}, 1000, 'state: of 1000');
is($st->{progress}{percentage}, 50, 'state: 50%');
my $est = $st->{progress}{estimatedRemainingMs} // -1;
ok($est >= 0.5 * 300 && $est <= 4 * $elapsed_ms * $F,
   "state: about as long again to go ($est ms, $elapsed_ms ms so far)");
is($st->{checkpoint}{sequence}, 2, 'the checkpoint is at chunk 2');

my @m;
my $deadline = time + 3 * $F;
while (time < $deadline) {
    push @m, map { json_decode($_) } $s->read_lines(100, 0.05);
    last if grep { $_->{type} eq 'stream-status'
                   && ($_->{payload}{checkpoint}{sequence} // 0) == 2 } @m;
}
my ($cp) = grep { $_->{type} eq 'stream-status'
                  && ($_->{payload}{checkpoint}{sequence} // 0) == 2 } @m;
ok($cp, 'the subscriber got a stream-status with the checkpoint');
is($cp && $cp->{payload}{status}, 'active', 'status active');
is($cp && $cp->{payload}{progress}{totalBytes}, 1000, 'with totalBytes');
ok($cp && defined $cp->{payload}{progress}{estimatedRemainingMs},
   'and estimatedRemainingMs');
my @before = grep { $_->{type} eq 'stream-chunk' } @m;
is($before[-1]{payload}{sequence}, 2, 'after the chunks it covers');

$t->post('/pub?id=c1&final=1', 'c' x 500);
$deadline = time + 3 * $F;
while (time < $deadline && !$s->complete) {
    push @m, map { json_decode($_) } $s->read_lines(100, 0.05);
}
my $end = $m[-1]{payload};
is($end->{status}, 'completed', 'the end: completed');
is($end->{progress}{percentage}, 100, 'the end: 100%');
is($end->{progress}{estimatedRemainingMs}, 0, 'the end: nothing remains');
is($end->{checkpoint}{sequence}, 3, 'the end: a checkpoint at the last chunk');
$s->close;

$t->stop;

done_testing;
