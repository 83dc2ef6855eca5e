# Interop: real WebSocket clients on a streaming_subscribe location --
# Python's "websockets" (Debian's python3-websockets, asyncio client), the
# npm "ws" package under Node (t/node) and headless Chromium's own
# WebSocket in a page.  Each opens ONE socket: stream A subscribed by the
# URL (?id=A), stream B by a "request" subscribe.  With streaming_window 8
# the client holds its acks until both streams stop at 8 chunks, then acks
# every chunk as it arrives; it pauses B (stream-control), the test sees B
# paused (control GET, a publish answered 429 STREAM_PAUSED) and publishes
# more of A, which the client gets while B stays paused; then the client
# resumes B and reads both streams to their end.  The sessions are
# t/ws/session.mjs (Node, Chromium) and t/ws/client.py (Python); they
# report steps with GET /report (logged by nginx) and wait for the test's
# go-ahead in /go/NAME.json.  The test checks the summary each client made:
# every chunk once, in order, the bytes the test published (text in several
# scripts, and binary chunks sent base64), CRC-32 checksums, the responses,
# the ack window, the order of stream-status messages, the close code.
# Each client's block is skipped, saying why, when that client is not
# installed (util/install-deps.sh test installs python3-websockets and
# chromium, make node-deps the "ws" package).

use strict;
use warnings;
use utf8;
use Test::More;
use Compress::Raw::Zlib ();
use File::Spec;
use POSIX ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $DIR = "$StreamTest::REPO/t/ws";

my $N = 40;          # chunks per stream
my $HALF = 20;       # published before the client connects; B paused here
my $A_PAUSED = 30;   # A's chunks 21..30 are published while B is paused
my $WINDOW = 8;

# the binary chunks (not UTF-8: the clients get them base64)
my %BINARY = (A => { 13 => 1 }, B => { 7 => 1, 33 => 1 });

# --- which clients are here ---------------------------------------------------

# Debian's python3-websockets is for /usr/bin/python3, which need not be the
# first python3 on PATH
my ($python) = grep {
    -x $_ && system("$_ -c 'import websockets' >/dev/null 2>&1") == 0
} ((map { "$_/python3" } split /:/, $ENV{PATH} // ''), '/usr/bin/python3');
my $node = (grep { -x "$_/node" } split /:/, $ENV{PATH} // '')[0];
$node .= '/node' if $node;
my $CHROMIUM = '/usr/bin/chromium';

my %MISSING = (
    python => $python ? undef
                      : 'no python3 with "websockets" (apt-get install '
                        . 'python3-websockets)',
    node => !$node ? 'node is not installed'
          : !-f "$StreamTest::REPO/t/node/node_modules/ws/package.json"
            ? 'the npm "ws" package is not installed (npm ci --prefix t/node)'
          : undef,
    chromium => -x $CHROMIUM ? undef : "$CHROMIUM is not installed",
);

# --- nginx -----------------------------------------------------------------------

my $t = StreamTest->new(workers => 2);
$t->http_config(<<'EOF');
streaming_zone ws 8m;
log_format report '$arg_c $arg_s $arg_d';
EOF
$t->server_config(<<'EOF');
# the page's summary is one long GET
large_client_header_buffers 4 64k;

streaming_window 8;
streaming_overflow pause;
# no periodic checkpoint: the stream-status messages a client gets are
# exactly the state changes
streaming_checkpoint off;

location = /pub {
    streaming_publish ws;
    streaming_framing bytes;
}
location = /ws {
    streaming_subscribe ws;
    streaming_id $arg_id;
}
location = /ctl { streaming_control ws; }

location = /report {
    access_log %%PREFIX%%/logs/report.log report;
    return 204;
}
location /go/ {
    root %%PREFIX%%/html;
    log_not_found off;
    expires -1;
}
location /wsclient/ {
    root %%PREFIX%%/html;
    types {
        text/html        html;
        text/javascript  mjs;
    }
}
EOF
$t->start;

for my $f ('client.html', 'session.mjs') {
    open my $fh, '<:raw', "$DIR/$f" or die "$DIR/$f: $!";
    $t->write_file("html/wsclient/$f", do { local $/; <$fh> });
}

my $base = '127.0.0.1:' . $t->port;

# --- what is published ----------------------------------------------------------

my @WORDS = (
    'héllo wörld', '日本語のテキスト', 'emoji 😀🚀 and 𝄞 (outside the BMP)',
    'Ελληνικά γράμματα', 'кириллица', "quote \" backslash \\ tab\t nl\n cr\r",
    '¡ñ€£¥ © ®', 'שלום עולם', '中文 ✓ ✗', "control \x01\x1b\x7f", 'plain ascii',
);

# chunk $i of stream $which (A or B) of client $name: bytes
sub chunk_bytes {
    my ($name, $which, $i) = @_;
    if ($BINARY{$which}{$i}) {
        return "\xff\xfe\x00\x80 $name $which $i \xc3\x28 "
               . pack('C*', 0 .. 31, 192 .. 255);
    }
    my $s = "$name-$which #$i: " . $WORDS[($i * 7 + length $name) % @WORDS]
            . ('.' x ($i % 5));
    utf8::encode($s);
    return $s;
}

sub crc { sprintf '%08x', Compress::Raw::Zlib::crc32($_[0]) }

sub j { my $r = shift; $r->{json} = eval { json_decode($r->{body}) } || {}; $r }

sub ctl_state {
    my ($id) = @_;
    my $r = $t->get("/ctl?id=$id");
    return $r->{status} && $r->{status} == 200 ? json_decode($r->{body}) : {};
}

# POSTs chunks [id, i] in order (?final=1 on chunk $N); returns a list of
# the ones not answered 202 {"sequence": i}
sub publish {
    my ($name, @list) = @_;
    my @bad;
    for my $c (@list) {
        my ($which, $i) = @$c;
        my $id = "$name-$which";
        my $r = j($t->post("/pub?id=$id" . ($i == $N ? '&final=1' : ''),
                           chunk_bytes($name, $which, $i),
                           headers => { 'Content-Type'
                                        => 'application/octet-stream' }));
        push @bad, "$id #$i: $r->{status} $r->{body}"
            unless $r->{status} && $r->{status} == 202
                   && ($r->{json}{sequence} // 0) == $i;
    }
    return @bad;
}

# --- the clients' reports ---------------------------------------------------

# step => data of client $name reported so far
sub reports {
    my ($name) = @_;
    my %r;
    for my $line (split /\n/, $t->read_file('logs/report.log')) {
        my ($c, $s, $d) = split / /, $line, 3;
        next unless defined $d && $c eq $name;
        $d =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        $r{$s} = eval { json_decode($d) } // { undecodable => $d };
    }
    return \%r;
}

# waits (up to $timeout s times F) for step $step of the client; stops early
# when the client has ended (exited, or the page sent its summary).  Returns
# the step's data or undef.
sub wait_step {
    my ($cl, $step, $timeout) = @_;
    my $deadline = time + $timeout * $F;
    while (time < $deadline) {
        my $r = reports($cl->{name});
        return $r->{$step} if $r->{$step};
        return undef if !alive($cl) || $r->{summary};
        sleep 0.05;
    }
    return undef;
}

sub alive {
    my ($cl) = @_;
    return 0 if defined $cl->{status};
    my $r = waitpid($cl->{pid}, POSIX::WNOHANG());
    return 1 if $r == 0;
    $cl->{status} = $r == $cl->{pid} ? $? : -1;
    return 0;
}

sub spawn {
    my ($name, @cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $t->prefix . "/logs/$name.out";
        open STDERR, '>', $t->prefix . "/logs/$name.err";
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        no warnings 'exec';
        exec @cmd;
        POSIX::_exit(127);
    }
    return { name => $name, pid => $pid };
}

# the client's process group: TERM, then KILL
sub stop_client {
    my ($cl) = @_;
    for my $sig ('TERM', 'KILL') {
        last unless alive($cl);
        kill $sig, -$cl->{pid};
        my $until = time + 3;
        sleep 0.05 while alive($cl) && time < $until;
    }
    kill 'KILL', -$cl->{pid};    # what the client left in its group
}

# --- one client's session ------------------------------------------------------

my %LAUNCH = (
    python => sub {
        my ($opt) = @_;
        return spawn('python', $python, "$DIR/client.py", json_encode($opt));
    },
    node => sub {
        my ($opt) = @_;
        return spawn('node', $node, "$DIR/client.mjs", json_encode($opt));
    },
    chromium => sub {
        my ($opt) = @_;
        my $profile = $t->prefix . '/chromium';
        mkdir $profile;
        (my $o = json_encode($opt))
            =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
        return spawn('chromium', $CHROMIUM, '--headless', '--no-sandbox',
                     '--disable-gpu', '--disable-background-networking',
                     '--no-first-run', '--disable-extensions',
                     '--disable-dev-shm-usage', "--user-data-dir=$profile",
                     "http://$base/wsclient/client.html?o=$o");
    },
);

# python and node print the summary on stdout and exit; the page reports it
sub summary_of {
    my ($cl, $timeout) = @_;
    my $deadline = time + $timeout * $F;
    if ($cl->{name} eq 'chromium') {
        return wait_step($cl, 'summary', $timeout);
    }
    sleep 0.05 while alive($cl) && time < $deadline;
    return undef if alive($cl);
    my ($line) = grep { /^\{/ } reverse split /\n/,
                 $t->read_file("logs/$cl->{name}.out");
    return $line ? eval { json_decode($line) } : undef;
}

sub run_client {
    my ($name) = @_;
    my ($A, $B) = ("$name-A", "$name-B");

    # both streams, and the first half of each, before the client comes
    is(j($t->put("/pub?id=$A", ''))->{status}, 201, "PUT $A");
    is(j($t->put("/pub?id=$B", ''))->{status}, 201, "PUT $B");
    my @bad = publish($name, map { ([ A => $_ ], [ B => $_ ]) } 1 .. $HALF);
    is("@bad", '', "chunks 1..$HALF of both published");

    my $started = time;
    my $cl = $LAUNCH{$name}->({
        name => $name, ws => "ws://$base/ws?id=$A", http => "http://$base",
        a => $A, b => $B, window => $WINDOW, pauseAt => $HALF,
        factor => $F, timeout => 60,
    });

    # the client subscribed to both, filled and opened the windows, paused B
    my $paused = wait_step($cl, 'paused', 40);
    note "at the pause the client had: " . json_encode($paused) if $paused;
    ok($paused, sprintf('the client paused %s (%.1f s)', $B, time - $started))
        or diag "report: " . explain(reports($name));
    if ($paused) {
        my $sb = ctl_state($B);
        is($sb->{status}, 'paused', "control GET: $B is paused");
        is($sb->{sequence}, $HALF, "$B holds $HALF chunks");
        is($sb->{subscribers}, 1, "$B has one subscriber (the socket)");
        is(ctl_state($A)->{subscribers}, 1, "$A has one subscriber");
        is(ctl_state($A)->{status}, 'active', "$A stays active");
        my $r = j($t->post("/pub?id=$B", 'refused while paused'));
        is($r->{status}, 429, "POST to the paused $B: 429");
        is(($r->{json}{error} || {})->{code}, 'STREAM_PAUSED',
           'STREAM_PAUSED');
        is(ctl_state($B)->{sequence}, $HALF, 'nothing was stored');

        @bad = publish($name, map { [ A => $_ ] } $HALF + 1 .. $A_PAUSED);
        is("@bad", '', "chunks " . ($HALF + 1) . "..$A_PAUSED of $A "
                       . "published while $B is paused");

        my $go = $t->write_file("html/go/.$name.json",
                                json_encode({ aUntil => $A_PAUSED }));
        rename $go, $t->prefix . "/html/go/$name.json" or die "rename: $!";

        my $resumed = wait_step($cl, 'resumed', 30);
        ok($resumed, "the client resumed $B");
        is(ctl_state($B)->{status}, 'active', "control GET: $B is active");

        # the rest, interleaved, each stream ended with ?final=1
        @bad = publish($name, map {
            ([ B => $HALF + $_ ],
             $A_PAUSED + $_ <= $N ? [ A => $A_PAUSED + $_ ] : ())
        } 1 .. $N - $HALF);
        is("@bad", '', "the rest of both streams published");
    }

    my $sum = summary_of($cl, $paused ? 40 : 5);
    my $took = time - $started;
    stop_client($cl);
    ok($sum, sprintf('the client reported its summary (%.1f s)', $took))
        or diag "$name stderr: " . $t->read_file("logs/$name.err");
    $sum ||= {};
    note "client: $sum->{client}" if $sum->{client};
    is($cl->{status}, 0, 'the client exited with 0')
        unless $name eq 'chromium';
    is_deeply($sum->{errors}, [], 'the client saw no protocol error')
        or diag explain $sum->{errors};
    return diag 'no session: nothing more to check' unless $sum->{streams};

    # the handshake: no subprotocol, no extension (permessage-deflate was
    # offered by all three)
    my $h = $sum->{handshake} || {};
    if ($name ne 'chromium') {
        is($h->{status}, 101, 'handshake: 101');
        is($h->{streamId}, $A, "handshake: Stream-Id: $A");
        is($h->{extensionsHeader}, undef, 'no Sec-WebSocket-Extensions');
    }
    is($h->{extensions}, '', 'no extension negotiated');
    is($h->{protocol}, '', 'no subprotocol');

    # responses: the subscribe, the pause and the resume
    my $rs = $sum->{responses} || {};
    is_deeply([ sort keys %$rs ], [ qw(c2 p1 r1) ],
              'responses: r1 (subscribe), p1 (pause), c2 (resume), no other')
        or diag explain $rs;
    # acks are answered only when they fail, and none may fail: not even
    # one that crossed its stream's end on the wire (the client acks the
    # last chunks while the server, which sent them with the final chunk
    # and status, has already dropped the subscription)
    my @acks = @{ $sum->{ackAnswers} || [] };
    is_deeply(\@acks, [], 'no ack answered (none failed)')
        or diag explain \@acks;
    my %p = map { $_ => ($rs->{$_} || {})->{payload} || {} } qw(r1 p1 c2);
    is_deeply([ map { $p{$_}{correlationId} } qw(r1 p1 c2) ],
              [ qw(r1 p1 c2) ], 'payload.correlationId = the request id');
    is_deeply([ map { $p{$_}{success} ? 1 : 0 } qw(r1 p1 c2) ], [ 1, 1, 1 ],
              'all three: success');
    my $r1 = $p{r1}{data} || {};
    is($r1->{streamId}, $B, "subscribe: data.streamId $B");
    like($r1->{subscriberId} // '', qr/^\d+$/,
         'subscribe: data.subscriberId, a decimal string');
    is($r1->{resumePosition}, 0, 'subscribe: data.resumePosition 0');
    is(($p{p1}{data} || {})->{status}, 'paused', 'pause: data.status paused');
    is(($p{c2}{data} || {})->{status}, 'active', 'resume: data.status active');

    my $sa = ($sum->{streams} || {})->{$A} || {};
    my $sb = ($sum->{streams} || {})->{$B} || {};

    # stream-init of each: its own subscriber id
    my $ia = ($sa->{init} || {})->{metadata} || {};
    my $ib = ($sb->{init} || {})->{metadata} || {};
    is(($sa->{init} || {})->{streamId}, $A, "stream-init of $A");
    like($ia->{subscriberId} // '', qr/^\d+$/, "$A: subscriberId");
    is($ia->{resumePosition}, 0, "$A: resumePosition 0");
    is(($sb->{init} || {})->{streamId}, $B, "stream-init of $B");
    like($ib->{subscriberId} // '', qr/^\d+$/, "$B: subscriberId");
    is($ib->{subscriberId}, $r1->{subscriberId},
       "$B: the subscriberId of the response");

    # the window: both streams stopped at 8 unacknowledged chunks
    is_deeply($sum->{hold}, { $A => $WINDOW, $B => $WINDOW },
              "before any ack: $WINDOW chunks of each, no more");
    is($sa->{maxUnacked}, $WINDOW, "$A: never more than $WINDOW unacked");
    is($sb->{maxUnacked}, $WINDOW, "$B: never more than $WINDOW unacked");

    # every message of each stream, once, in order
    my $fin = $N + 1;
    is_deeply($sa->{log},
              [ 'init', 1 .. $N, "final $fin", 'completed' ],
              "$A: init, 1..$N, the final chunk, completed")
        or diag explain $sa->{log};
    is_deeply($sb->{log},
              [ 'init', 1 .. $HALF, 'paused', 'active', $HALF + 1 .. $N,
                "final $fin", 'completed' ],
              "$B: init, 1..$HALF, paused, active, " . ($HALF + 1)
              . "..$N, the final chunk, completed")
        or diag explain $sb->{log};
    # $A's chunks after the ones the client had when it reported the pause,
    # up to $A_PAUSED, came while $B was paused
    my $pa = ($paused || {})->{$A} // 0;
    is_deeply($sa->{whileOtherPaused}, [ $pa + 1 .. $A_PAUSED ],
              "$A: chunks " . ($pa + 1) . "..$A_PAUSED arrived while $B "
              . 'was paused');
    is_deeply($sb->{whilePaused}, [], "$B: nothing while paused");
    is(($sa->{end} || {})->{status}, 'completed', "$A: completed");
    is(($sb->{end} || {})->{status}, 'completed', "$B: completed");

    # the bytes, their encoding, their checksums
    for my $which ('A', 'B') {
        my $id = "$name-$which";
        my @c = @{ ($which eq 'A' ? $sa : $sb)->{chunks} || [] };
        my @want = map { chunk_bytes($name, $which, $_) } 1 .. $N;
        is_deeply([ map { $_->{s} } @c ], [ 1 .. $fin ],
                  "$id: chunks 1..$fin");
        is_deeply([ map { $_->{h} } @c ], [ (map { unpack 'H*', $_ } @want), '' ],
                  "$id: the bytes published, then the empty final chunk");
        is_deeply([ map { $_->{f} ? 1 : 0 } @c ], [ (0) x $N, 1 ],
                  "$id: isFinal only on the last");
        is_deeply([ map { $_->{e} } @c ],
                  [ (map { $BINARY{$which}{$_} ? 'base64' : undef } 1 .. $N),
                    undef ],
                  "$id: encoding base64 on the binary chunks ("
                  . join(',', sort { $a <=> $b } keys %{ $BINARY{$which} })
                  . ') only');
        is_deeply([ map { $_->{ok} ? 1 : 0 } @c ], [ (1) x @c ],
                  "$id: every checksum matches the client's CRC-32");
        is_deeply([ map { $_->{c} } @c ], [ (map { crc($_) } @want, '') ],
                  "$id: the checksums are CRC-32 of the published bytes");
    }

    is($sum->{closeCode}, 1000, 'the server answered the close with 1000');

    # the server let go of the socket's subscriptions
    my ($na, $nb);
    my $deadline = time + 5 * $F;
    while (time < $deadline) {
        ($na, $nb) = map { ctl_state($_)->{subscribers} } $A, $B;
        last if defined $na && defined $nb && $na == 0 && $nb == 0;
        sleep 0.05;
    }
    is_deeply([ $na, $nb ], [ 0, 0 ], 'no subscriber left on either stream');
    is_deeply([ map { ctl_state($_)->{status} } $A, $B ],
              [ 'completed', 'completed' ], 'both streams completed');
}

for my $name (qw(python node chromium)) {
    subtest "$name WebSocket client" => sub {
        plan skip_all => $MISSING{$name} if $MISSING{$name};
        run_client($name);
    };
}

$t->stop;

done_testing;
