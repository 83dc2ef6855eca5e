# A real browser's EventSource (headless Chromium) reads a "streaming"
# location with streaming_detach; a proxy between the browser and nginx cuts
# the connection after the 8th event; Chromium reconnects with
# Last-Event-ID, is served the rest from the zone, then gets 204 at the end
# and stops.  The page ends with every event exactly once, in order, and the
# upstream saw one request.  The page reports what it got with a request
# that nginx logs.

use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::IP;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $CHROMIUM = '/usr/bin/chromium';
plan skip_all => "$CHROMIUM is not installed" unless -x $CHROMIUM;

my $F = StreamTest::timeout_factor();
my $EVENTS = 50;
my $CUT = 8;

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
log_format es '$uri|$status|$http_last_event_id|$streaming_id|'
              '$streaming_chunks|$streaming_resumed_from';
log_format report '$arg_d';
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
# one request per connection: the proxy looks at each request's head
keepalive_timeout 0;

location / { root %%PREFIX%%/html; }

location /es/ {
    access_log %%PREFIX%%/logs/es.log es;
    streaming llm;
    streaming_detach 30s;
    proxy_pass http://mock/;
}

location = /report {
    access_log %%PREFIX%%/logs/report.log report;
    return 204;
}

location = /status { streaming_status; }
EOF

$t->write_file('html/index.html', <<"EOF");
<!doctype html>
<html><head><meta charset="utf-8"><title>EventSource resume</title></head>
<body><pre id="log"></pre>
<script>
var got = [], opens = 0, errors = 0, reported = false;
function report(why) {
    if (reported) { return; }
    reported = true;
    var d = JSON.stringify({ why: why, got: got, opens: opens,
                             errors: errors });
    document.getElementById('log').textContent = d;
    fetch('/report?d=' + encodeURIComponent(d));
}
var es = new EventSource('/es/sse?events=$EVENTS&tps=10&mid=chromium');
es.onopen = function () { opens++; };
es.onmessage = function (e) { got.push(e.lastEventId + '=' + e.data); };
es.onerror = function () {
    errors++;
    if (es.readyState === EventSource.CLOSED) { report('closed'); }
};
setTimeout(function () { es.close(); report('timeout'); }, 20000);
</script>
</body></html>
EOF

$t->start;

# --- the cutting proxy -------------------------------------------------------

# Relays connections to nginx (one request each: nginx keeps none alive);
# the first EventSource request (no
# Last-Event-ID) gets the response up to the end of its $CUT-th event, then
# both sides are closed.  Runs in a child process.
sub run_proxy {
    my ($listen, $to) = @_;
    my $sel = IO::Select->new($listen);
    my (%peer, %state);
    my $cut_done = 0;
    while (1) {
        for my $s ($sel->can_read(1)) {
            if ($s == $listen) {
                my $c = $listen->accept or next;
                my $u = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                            PeerPort => $to) or next;
                $peer{$c} = $u;
                $peer{$u} = $c;
                $state{$c} = { client => 1, req => '' };
                $state{$u} = { client => 0, client_sock => $c };
                $sel->add($c, $u);
                next;
            }
            # its peer may have been closed earlier in this round
            my $other = $peer{$s} or next;
            my $n = sysread($s, my $buf, 65536);
            if (!$n) {
                $sel->remove($s, $other);
                delete @peer{ $s, $other };
                close $s;
                close $other;
                next;
            }
            my $st = $state{$s};
            if ($st->{client}) {
                $st->{req} .= $buf if length $st->{req} < 65536;
                if (!$cut_done && !$st->{watch}
                    && $st->{req} =~ m{^GET /es/}
                    && $st->{req} =~ /\r\n\r\n/
                    && $st->{req} !~ /^Last-Event-ID:/mi)
                {
                    $st->{watch} = 1;
                    $state{$other}{watch} = 1;
                    $state{$other}{resp} = '';
                    $cut_done = 1;
                }
                syswrite($other, $buf);
                next;
            }
            if ($st->{watch}) {
                # forward up to the end of the $CUT-th event, then cut
                $st->{resp} .= $buf;
                my $body = index($st->{resp}, "\r\n\r\n");
                my ($pos, $count) = ($body < 0 ? 0 : $body + 4, 0);
                my $end;
                while ($body >= 0) {
                    my $i = index($st->{resp}, "\n\n", $pos);
                    last if $i < 0;
                    $pos = $i + 2;
                    if (++$count == $CUT) { $end = $pos; last }
                }
                if (defined $end) {
                    my $sent = $st->{sent} // 0;
                    syswrite($other, substr($st->{resp}, $sent, $end - $sent));
                    $sel->remove($s, $other);
                    delete @peer{ $s, $other };
                    close $s;
                    close $other;
                    next;
                }
                $st->{sent} = length $st->{resp};
            }
            syswrite($other, $buf);
        }
    }
}

my $proxy_port = free_port();
my $listen = IO::Socket::IP->new(LocalHost => '127.0.0.1',
                                 LocalPort => $proxy_port, Listen => 16,
                                 ReuseAddr => 1)
    or die "proxy listen: $@";
my $proxy_pid = fork;
die "fork: $!" unless defined $proxy_pid;
if (!$proxy_pid) {
    $SIG{TERM} = sub { POSIX::_exit(0) };
    eval { run_proxy($listen, $t->port) };
    POSIX::_exit(0);
}
close $listen;

# --- the browser -------------------------------------------------------------

my $profile = $t->prefix . '/chromium';
mkdir $profile;
my $started = time;
my $chromium_pid = fork;
die "fork: $!" unless defined $chromium_pid;
if (!$chromium_pid) {
    POSIX::setpgid(0, 0);
    open STDOUT, '>', $t->prefix . '/logs/chromium.out';
    open STDERR, '>', $t->prefix . '/logs/chromium.err';
    no warnings 'exec';
    exec $CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
         '--disable-background-networking', '--no-first-run',
         '--disable-extensions', '--disable-dev-shm-usage',
         "--user-data-dir=$profile",
         "http://127.0.0.1:$proxy_port/index.html";
    POSIX::_exit(127);
}

# the page's report, or give up after 25 s
my $report;
my $deadline = time + 25 * $F;
while (time < $deadline) {
    my $log = eval { $t->read_file('logs/report.log') } // '';
    if ($log =~ /^(\S+)$/m) {
        (my $d = $1) =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        $report = eval { json_decode($d) };
        last;
    }
    last if waitpid($chromium_pid, POSIX::WNOHANG()) == $chromium_pid;
    sleep 0.1;
}
my $took = time - $started;

# stop the browser (its process group) and the proxy
for my $sig ('TERM', 'KILL') {
    kill $sig, -$chromium_pid;
    my $until = time + 3;
    sleep 0.05 while waitpid($chromium_pid, POSIX::WNOHANG()) == 0
                     && time < $until;
    last unless kill 0, $chromium_pid;
}
kill 'TERM', $proxy_pid;
waitpid($proxy_pid, 0);

ok($report, sprintf('the page reported after %.1f s', $took))
    or diag 'chromium stderr: '
            . (eval { $t->read_file('logs/chromium.err') } // '');
$report ||= { got => [] };
is($report->{why}, 'closed', 'the EventSource stopped by itself (204)');

my @got = @{ $report->{got} || [] };
my ($sid) = ($got[0] // '') =~ /^([A-Za-z0-9_-]{22}):1=/;
ok($sid, 'events carry "<streamId>:<n>" ids');
$sid //= 'none';
is_deeply(\@got,
          [ map { "$sid:" . ($_ + 1) . qq(={"n":$_}) } 0 .. $EVENTS - 1 ],
          "the page got every event once, in order ($EVENTS)");
is($report->{opens}, 2, 'two opens: the first request and the resume');

# what nginx saw of the EventSource, in the order the requests came (a
# line is logged when its request ends, and the cut first request, whose
# producer goes on detached, may end after the resume): by Last-Event-ID
sub lei_order { my ($l) = @_; $l eq '-' ? -1 : ($l =~ /:(\d+)$/)[0] // 1e9 }
my @es = sort { lei_order($a->[2]) <=> lei_order($b->[2]) }
         map { [ split /\|/, $_, -1 ] }
         split /\n/, eval { $t->read_file('logs/es.log') } // '';
is(scalar @es, 3, 'three EventSource requests') or diag explain \@es;
is_deeply([ map { $_->[2] } @es ], [ '-', "$sid:$CUT", "$sid:$EVENTS" ],
          'Last-Event-ID: none, the last before the cut, the last');
is_deeply([ map { $_->[1] } @es ], [ 200, 200, 204 ],
          'answers: 200, 200 (resumed), 204 (the end)');
is($es[1] && $es[1][4], $EVENTS - $CUT,
   'the resume sent the ' . ($EVENTS - $CUT) . ' events after the cut');
is($es[1] && $es[1][5], $CUT, "the resume started after $CUT");

my $m = $t->mock_stats;
is($m->{requests}, 1, 'the upstream saw ONE request');
my ($s) = grep { $_->{mid} eq 'chromium' } @{ $m->{streams} };
is($s && $s->{state}, 'done', 'it ran to its end');

my $st = json_decode($t->get("/status?format=json&id=$sid")->{body} // '{}');
is($st->{stream}{status}, 'completed', 'the stream completed');

$t->stop;

done_testing;
