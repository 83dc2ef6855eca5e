# Stalled clients keep worker memory bounded: 50 subscribers that never
# read, on sockets with small buffers, while 20 MB go through their stream
# (streaming_overflow evict, so that they hold nobody).  Each connection
# holds at most streaming_send_buffer of unsent output, so the workers'
# RSS grows by at most about 50 x that, whatever the volume; a reader
# alongside gets every chunk.

use strict;
use warnings;
use Test::More;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $STALLED = 50;
my $SEND_BUFFER = 64 * 1024;

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone st 32m buffer=4m;');
$t->server_config(<<"EOF");
keepalive_requests 100000;
location = /pub { streaming_publish st; streaming_overflow evict; }
location = /sub {
    streaming_subscribe st;
    streaming_send_buffer $SEND_BUFFER;
    send_timeout 60s;
}
location = /status { streaming_status; }
EOF
$t->start;

sub rss_kb {
    my $sum = 0;
    for my $pid ($t->worker_pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        # private memory: the zone's shared pages count in every worker
        while (<$fh>) { $sum += $1 if /^RssAnon:\s+(\d+)/ }
    }
    return $sum;
}

$t->put('/pub?id=big', '');

# the sequences of the chunks among ndjson lines (no JSON decoding of 20 MB)
sub seqs {
    return map { /"type":"stream-chunk".*"sequence":(\d+)/ ? $1 : () } @_;
}

my @stalled;
for (1 .. $STALLED) {
    my $c = $t->stream('GET', '/sub?id=big&format=ndjson', timeout => 10);
    $c->read_headers(3);
    setsockopt($c->{sock}, SOL_SOCKET, SO_RCVBUF, 4096) if $c->{sock};
    push @stalled, $c;
}
my $reader = $t->stream('GET', '/sub?id=big&from=0&format=ndjson',
                        timeout => 30);
$reader->read_headers(3);

sleep 0.3;
my $before = rss_kb();

my $chunk = 'z' x 10240;
my $n = 0;
my @got;
for my $batch (1 .. 20) {
    my @r = $t->pipeline(map { [ 'POST', '/pub?id=big', $chunk ] } 1 .. 100);
    $n += grep { $_->[0] == 202 } @r;
    push @got, seqs($reader->read_lines(100000, 0.05));
}
$t->post('/pub?id=big&final=1', 'end');
is($n, 2000, '2000 chunks of 10 KB published (20 MB)');

my $deadline = time + 20 * $F;
while (time < $deadline && !$reader->complete) {
    push @got, seqs($reader->read_lines(100000, 0.05));
}
is_deeply(\@got, [ 1 .. 2002 ], 'the reader got every chunk and the end');

my $after = rss_kb();
my $growth = $after - $before;
my $bound = int($STALLED * $SEND_BUFFER * 2 / 1024) + 8 * 1024;
SKIP: {
    # make test (the plain build) checks it; ASan and valgrind keep freed
    # memory in quarantine on purpose
    skip 'RSS under a sanitizer or valgrind', 1 if $t->instrumented;
    ok($growth < $bound,
       "workers' private RSS grew by $growth KB for $STALLED stalled clients "
       . "(bound $bound KB; 20 MB went through)")
        or diag("RSS before $before KB, after $after KB");
}

my $z = json_decode($t->get('/status?format=json')->{body})->{zones}{st};
ok($z->{totals}{evicted_chunks} > 0,
   "old chunks were evicted past the stalled ones ($z->{totals}{evicted_chunks})");

$_->close for @stalled;
$reader->close;
$t->stop;

done_testing;
