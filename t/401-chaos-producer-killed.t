# Chaos: the worker producing a stream is killed (SIGKILL) mid-stream.  The
# master starts another; the other workers notice the dead one within a
# sweep: its stream ends with PRODUCER_LOST, a subscriber on another worker
# gets that as its final status after every chunk stored before, and the
# stored chunks stay readable; no zone lock stays held (later streams work).

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m ttl=60s;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }

server {
    listen 127.0.0.1:%%PORT2%% reuseport;
    add_header X-Worker $pid always;
    proxy_http_version 1.1;

    location ~ ^/p(/.*)$ {
        streaming llm;
        streaming_id $arg_id;
        streaming_format ndjson;
        proxy_pass http://mock$1;
    }

    location = /sub {
        streaming_subscribe llm;
        streaming_id $arg_id;
    }
}
EOF
$t->server_config('location = /status { streaming_status; }');
$t->expect_log(qr/exited on signal 9/, 1);
$t->expect_log(qr/worker\(s\) of zone "llm" died/, undef);
$t->start;

sub spread {
    my ($path, %h) = @_;
    my $c = $t->stream('GET', $path, port => $t->port(2), timeout => 10,
                       headers => \%h);
    my $h = $c->read_headers(5) || {};
    return ($c, $h->{headers}{'x-worker'} // 0);
}

sub stream_status {
    my $r = $t->get("/status?id=$_[0]");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : {};
}

# the producer: 200 events at 20/s, on some worker
my ($prod, $ppid) = spread('/p/sse?id=k1', 'X-Mock-Events' => 200, 'X-Mock-Tps' => 20);
ok($ppid, "producer on worker $ppid");
my @got = $prod->read_lines(4, 5);
is(scalar @got, 4, 'the producer streams');

# a subscriber on the other worker
my ($sub, $spid);
for (1 .. 40) {
    ($sub, $spid) = spread('/sub?id=k1&format=ndjson&from=0');
    last if $spid && $spid != $ppid;
    $sub->close;
}
isnt($spid, $ppid, "subscriber on another worker ($spid)");

sleep 0.3;
ok(kill('KILL', $ppid), 'the producer\'s worker is killed');
$prod->close;

# the subscriber gets every stored chunk, then PRODUCER_LOST, then the end
my $body = $sub->read_to_end(10) // '';
my @m = eval { parse_ndjson($body) };
my @chunks = grep { $_->{type} eq 'stream-chunk' && !$_->{payload}{isFinal} }
             @m;
ok(@chunks >= 4, scalar(@chunks) . ' chunks reached the subscriber');
is_deeply([ map { $_->{payload}{sequence} } @chunks ], [ 1 .. @chunks ],
          'every chunk once, in order');
my $last = $m[-1] || {};
is($last->{type}, 'stream-status', 'it ends with a stream-status');
is($last->{payload}{status}, 'error', 'status error');
is($last->{payload}{error}{code}, 'PRODUCER_LOST', 'code PRODUCER_LOST');
ok($sub->complete, 'the subscriber\'s response ends properly');
$sub->close;

my $st = stream_status('k1');
is($st->{status}, 'error', 'the zone: error');
is($st->{error}{code}, 'PRODUCER_LOST', 'the zone: PRODUCER_LOST');
is($st->{subscribers}, 0, 'the zone: no subscriber left');
is($st->{sequence}, scalar @chunks, 'the zone kept what was stored');

# what was stored stays readable
my $r = $t->get('/sub?id=k1&format=ndjson&from=0', port => $t->port(2));
@m = eval { parse_ndjson($r->{body}) };
is(scalar(grep { $_->{type} eq 'stream-chunk' && !$_->{payload}{isFinal} } @m),
   scalar @chunks, 'a later reader gets every stored chunk');

# the respawned worker and the zone work: no lock left held
is(scalar $t->worker_pids, 2, 'two workers again');
for my $i (1 .. 4) {
    $r = $t->get("/p/sse?id=after$i&events=3", port => $t->port(2));
    is($r->{status}, 200, "a new stream after the kill ($i)");
}
my $z = json_decode($t->get('/status?format=json')->{body})->{zones}{llm};
is($z->{streams}{active}, 0, 'no stream left active');
is($z->{subscribers}, 0, 'no subscriber left');

$t->stop;

done_testing;
