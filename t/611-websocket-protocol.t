# The Omni protocol over WebSocket (SPEC §3, §4, §5, §8): the handshake's
# answers, the stream a location names subscribed at once, subscribe /
# unsubscribe / status requests and their errors (the socket stays open),
# ack windows, pause / resume / cancel, several streams on one socket, a
# publisher on another worker, heartbeat pings and the silent client closed
# with 1001, backpressure under "streaming_overflow pause" with nothing
# lost, a reload (SHUTDOWN, close 1001, resume on a new socket), and the
# memory of a worker holding one long connection through 25,000 frames.
#
# Streams are made with streaming_publish and fed by the test's POSTs.
# Which worker holds a socket is read from /proc (the socket's inode among
# the worker's descriptors); which one took a POST from its X-Pid header.

use strict;
use warnings;
use Test::More;
use Compress::Zlib ();
use MIME::Base64 ();
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;
use StreamTest::WebSocket qw(:op build_frame require_upgrade);

my $F = StreamTest::timeout_factor();
my $SECRET = 'ws-test-secret';

my $t = StreamTest->new(workers => 2);
my $http = <<'EOF';
streaming_zone ws 16m;
streaming_zone tiny 1m buffer=1k;
streaming_zone sec 4m;
streaming_zone bp 16m buffer=256k;

# connections spread over the workers by the kernel
server {
    listen 127.0.0.1:%%PORT2%% reuseport;
    server_name spread;
    add_header X-Pid $pid always;
    location = /ws { streaming_subscribe ws; }
    location = /pub { streaming_publish ws; }
}

# backpressure: a small kernel send buffer, 64k of unsent data per socket
server {
    listen 127.0.0.1:%%PORT3%% sndbuf=16k;
    server_name bp;
    add_header X-Pid $pid always;
    streaming_overflow pause;
    location = /ws {
        streaming_subscribe bp;
        streaming_send_buffer 64k;
        streaming_window 100000;
    }
    location = /pub { streaming_publish bp; streaming_max_chunk 64k; }
}
EOF
my $server = <<"EOF";
add_header X-Pid \$pid always;
location = /ws { streaming_subscribe ws; }
location = /ws-w4 { streaming_subscribe ws; streaming_window 4; }
location = /ws-hb { streaming_subscribe ws; streaming_heartbeat 1s; }
location = /sub { streaming_subscribe ws; }
location = /pub { streaming_publish ws; }
location = /ctl { streaming_control ws; }
location = /tiny-ws { streaming_subscribe tiny; }
location = /tiny-pub { streaming_publish tiny; }
location = /sec-ws { streaming_subscribe sec; streaming_secret $SECRET; }
location = /sec-pub { streaming_publish sec; streaming_secret $SECRET; }
location = /status { streaming_status; }
EOF
$t->http_config($http);
$t->server_config($server);
$t->start;

# --- helpers -------------------------------------------------------------------

sub j { my $r = shift; $r->{json} = eval { json_decode($r->{body}) } || {}; $r }
sub err_code { (($_[0] || {})->{error} || {})->{code} // '' }
sub crc { sprintf '%08x', Compress::Zlib::crc32($_[0]) }

# the bytes of a chunk's data
sub data_bytes {
    my ($p) = @_;
    return MIME::Base64::decode_base64($p->{data} // '')
        if ($p->{encoding} // '') eq 'base64';
    my $d = $p->{data} // '';
    utf8::encode($d);
    return $d;
}

sub ws_open {
    my ($path, %o) = @_;
    my ($ws, $r) = StreamTest::WebSocket->open($t, $path, timeout => 5, %o);
    return wantarray ? ($ws, $r) : $ws;
}

sub publish {
    my ($id, @data) = @_;
    my @seq;
    for my $d (@data) {
        my $r = j($t->post("/pub?id=$id", $d));
        push @seq, $r->{status} == 202 ? $r->{json}{sequence} : "HTTP $r->{status}";
    }
    return @seq;
}

my $MID = 0;
sub request {
    my ($ws, $action, %params) = @_;
    my $id = delete $params{_id} // 'q' . ++$MID;
    $ws->send_json({ type => 'request', id => $id,
                     payload => { action => $action, params => \%params } });
    return $id;
}

sub control {
    my ($ws, $stream, $command, %more) = @_;
    my $id = delete $more{_id} // 'c' . ++$MID;
    $ws->send_json({ type => 'stream-control', id => $id,
                     payload => { streamId => $stream, command => $command,
                                  %more } });
    return $id;
}

# Reads until the response to $id; returns (response, \@messages read).
sub response_to {
    my ($ws, $id, $timeout) = @_;
    return $ws->read_json_until(
        sub { $_->{type} eq 'response' && ($_->{correlationId} // '') eq $id },
        $timeout // 3);
}

sub is_error_response {
    my ($m, $code, $name) = @_;
    ok($m && $m->{type} eq 'response' && $m->{payload}
       && !$m->{payload}{success}
       && ($m->{payload}{error}{code} // '') eq $code,
       "$name: success:false, $code") or diag(explain($m));
    ok($m && ($m->{payload}{error}{message} // '') ne '',
       "$name: with a message");
}

# a status request answered (the socket is open and working)
sub still_open {
    my ($ws, $stream, $name) = @_;
    my $id = request($ws, 'status', streamId => $stream);
    my ($m) = response_to($ws, $id);
    ok($m && $m->{payload}{success}, "$name: the socket still answers")
        or diag(explain({ m => $m, close => $ws->close_frame,
                          eof => $ws->eof }));
}

# The data chunks, final chunk and last status of one stream's messages.
sub summary {
    my ($stream, @m) = @_;
    my %s = (seq => [], data => []);
    for my $m (@m) {
        my $p = $m->{payload} || {};
        next unless ($p->{streamId} // '') eq $stream;
        if ($m->{type} eq 'stream-chunk') {
            if ($p->{isFinal}) { $s{final} = $p->{sequence}; next }
            push @{ $s{seq} }, $p->{sequence};
            push @{ $s{data} }, $p->{data};
            $s{bad_crc}++ if ($p->{checksum} // '') ne crc(data_bytes($p));
        }
        elsif ($m->{type} eq 'stream-status') {
            $s{status} = $p->{status};
            $s{code} = $p->{error} && $p->{error}{code};
            push @{ $s{statuses} }, $p->{status};
        }
        elsif ($m->{type} eq 'stream-init') {
            $s{init}++;
            $s{init_msg} = $m;
        }
    }
    return \%s;
}

# Reads until $stream's final stream-status (completed/error/cancelled).
sub read_to_end_of {
    my ($ws, $stream, $timeout) = @_;
    my ($end, $all) = $ws->read_json_until(
        sub { $_->{type} eq 'stream-status'
              && ($_->{payload}{streamId} // '') eq $stream
              && $_->{payload}{status} =~ /^(completed|error|cancelled)$/ },
        $timeout // 5);
    return @$all;
}

# The worker holding the server side of a socket to $port: the socket's
# inode (/proc/net/tcp) among a worker's descriptors.
sub socket_worker {
    my ($ws, $port) = @_;
    my $local = sprintf('0100007F:%04X', $port);
    my $peer  = sprintf('0100007F:%04X', $ws->local_port // 0);
    my $inode;
    if (open my $fh, '<', '/proc/net/tcp') {
        while (<$fh>) {
            my @f = split;
            next unless @f > 9 && $f[1] eq $local && $f[2] eq $peer;
            $inode = $f[9];
            last;
        }
    }
    return 0 unless $inode;
    for my $pid ($t->worker_pids(all => 1)) {
        opendir(my $dh, "/proc/$pid/fd") or next;
        for my $fd (readdir $dh) {
            my $l = readlink("/proc/$pid/fd/$fd") // next;
            return $pid if $l eq "socket:[$inode]";
        }
    }
    return 0;
}

sub vmrss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return 0;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/ }
    return 0;
}

# --- streams used below -----------------------------------------------------------

# done: 3 chunks, completed
$t->put('/pub?id=done', '');
publish('done', 'one', 'two');
$t->post('/pub?id=done&final=1', "three \xe2\x82\xac");
# live: 2 chunks, active
$t->put('/pub?id=live', '');
publish('live', 'l1', 'l2');

# --- the handshake's answers ---------------------------------------------------

{
    my ($ws, $r) = ws_open('/ws?id=live&from=0');
    require_upgrade($t, $r);
    ok($r->{accept_ok}, '101: Sec-WebSocket-Accept matches the key')
        or diag("expected $r->{expected_accept}, got "
                . ($r->{headers}{'sec-websocket-accept'} // 'none'));
    like($r->{headers}{upgrade} // '', qr/^websocket$/i, '101: Upgrade: websocket');
    like($r->{headers}{connection} // '', qr/\bupgrade\b/i, '101: Connection: upgrade');
    is($r->{headers}{'stream-id'}, 'live', '101: Stream-Id');
    ok(!exists $r->{headers}{'sec-websocket-protocol'}, '101: no subprotocol');
    ok(!exists $r->{headers}{'sec-websocket-extensions'}, '101: no extension');
    ok(!exists $r->{headers}{'content-length'}
       && !exists $r->{headers}{'transfer-encoding'}, '101: no body framing');
    $ws->close;
}

{
    my ($ws, $r) = ws_open('/ws?id=live',
                           headers => [ 'Sec-WebSocket-Protocol' => 'chat, omni',
                                        'Sec-WebSocket-Extensions' =>
                                            'permessage-deflate; client_max_window_bits' ]);
    is($r->{status}, 101, 'asking for a subprotocol and permessage-deflate: 101');
    ok(!exists $r->{headers}{'sec-websocket-protocol'}, 'none selected');
    ok(!exists $r->{headers}{'sec-websocket-extensions'}, 'no extension negotiated');
    $ws->close;

    ($ws, $r) = ws_open('/ws?id=live', headers => { Connection => 'keep-alive, Upgrade',
                                                    Upgrade => 'WebSocket' });
    is($r->{status}, 101, 'Connection: keep-alive, Upgrade / Upgrade: WebSocket: 101');
    $ws->close;
}

# [ name, path, handshake options, status, code ]
my @refusals = (
    [ 'version 12', '/ws?id=live', [ version => 12 ], 426, 'INVALID_MESSAGE' ],
    [ 'version 8', '/ws?id=live', [ version => 8 ], 426, 'INVALID_MESSAGE' ],
    [ 'no key', '/ws?id=live', [ key => undef ], 400, 'INVALID_MESSAGE' ],
    [ 'a key that is not base64 of 16 bytes', '/ws?id=live', [ key => 'abc' ],
      400, 'INVALID_MESSAGE' ],
    [ 'a key of 15 bytes', '/ws?id=live',
      [ key => 'AAECAwQFBgcICQoLDA0O' ], 400, 'INVALID_MESSAGE' ],
    [ 'an unknown stream', '/ws?id=nope', [], 404, 'INVALID_STREAM' ],
    [ 'a bad id', '/ws?id=bad%20id', [], 400, 'INVALID_ID' ],
    [ 'a bad start point', '/ws?id=live&from=abc', [], 400, 'INVALID_MESSAGE' ],
);
for my $c (@refusals) {
    my ($name, $path, $o, $status, $code) = @$c;
    my $mark = $t->log_mark;
    my ($ws, $r) = ws_open($path, @$o);
    is($r->{status}, $status, "handshake, $name: $status");
    is(err_code($r->{json}), $code, "handshake, $name: $code")
        or diag($r->{body});
    if ($status == 426) {
        is($r->{headers}{'sec-websocket-version'}, '13',
           "handshake, $name: Sec-WebSocket-Version: 13");
    }
    ok(!$ws->read_frame(0.2), "handshake, $name: no frame follows");
    $ws->close;
    my @bad = grep { /\[(alert|crit|emerg)\]/ } split /\n/, $t->error_log($mark);
    is(scalar @bad, 0, "handshake, $name: nothing logged above error")
        or diag(join "\n", @bad);
}

{
    # an expired start point: chunk 1 is no longer retained
    $t->put('/tiny-pub?id=tt', '');
    $t->post('/tiny-pub?id=tt', 'x' x 200) for 1 .. 20;
    my ($ws, $r) = ws_open('/tiny-ws?id=tt&from=0');
    is($r->{status}, 410, 'handshake, start point no longer retained: 410');
    is(err_code($r->{json}), 'CHUNKS_EXPIRED', 'CHUNKS_EXPIRED');
    $ws->close;
}

{
    # HTTP/1.0 cannot upgrade: an ordinary subscription
    my ($ws, $r) = ws_open('/ws?id=done&from=0', http10 => 1);
    is($r->{status}, 200, 'an HTTP/1.0 Upgrade: not upgraded (200)');
    ok(!defined $r->{headers}{upgrade}, 'HTTP/1.0: no Upgrade header');
    $ws->close;
    ($ws, $r) = ws_open('/ws?id=done&from=0', method => 'POST',
                        headers => { 'Content-Length' => 0 });
    isnt($r->{status}, 101, 'a POST with Upgrade: not upgraded');
    $ws->close;
}

# --- secrets -------------------------------------------------------------------

my $tok;
{
    my $r = j($t->put('/sec-pub?id=k1', ''));
    $tok = $r->{json}{token} // '';
    ok(length $tok, 'a stream with a token');
    $t->post('/sec-pub?id=k1', 'secret chunk', headers => { 'Stream-Token' => $tok });

    ($r) = (ws_open('/sec-ws?id=k1&from=0'))[1];
    is($r->{status}, 403, 'handshake with a secret, no token: 403');
    is(err_code($r->{json}), 'FORBIDDEN', 'FORBIDDEN');
    ($r) = (ws_open('/sec-ws?id=k1&from=0&token=' . ('A' x 43)))[1];
    is($r->{status}, 403, 'a wrong token: 403');

    my $ws;
    ($ws, $r) = ws_open("/sec-ws?id=k1&from=0&token=$tok");
    is($r->{status}, 101, '?token=: 101');
    is($r->{headers}{'stream-token'}, $tok, '101: Stream-Token');
    my @m = $ws->read_jsons(2, 3);
    is($m[0] && $m[0]{payload}{metadata}{token}, $tok, 'stream-init carries the token');
    is($m[1] && $m[1]{payload}{data}, 'secret chunk', 'the chunk');
    $ws->close;

    ($ws, $r) = ws_open('/sec-ws?id=k1&from=0',
                        headers => { Authorization => "Bearer $tok" });
    is($r->{status}, 101, 'Authorization: Bearer: 101');
    $ws->close;

    # subscribe requests on a socket that names no stream
    $ws = ws_open('/sec-ws');
    my $id = request($ws, 'subscribe', streamId => 'k1', fromSequence => 0);
    my ($m) = response_to($ws, $id);
    is_error_response($m, 'FORBIDDEN', 'subscribe with no token');
    $id = request($ws, 'subscribe', streamId => 'k1', token => 'A' x 43);
    ($m) = response_to($ws, $id);
    is_error_response($m, 'FORBIDDEN', 'subscribe with a wrong token');
    $id = request($ws, 'subscribe', streamId => 'k1', fromSequence => 0,
                  token => $tok);
    ($m) = response_to($ws, $id);
    ok($m && $m->{payload}{success}, 'subscribe with the token: success');
    my ($c) = $ws->read_json_until(sub { $_->{type} eq 'stream-chunk' }, 3);
    is($c && $c->{payload}{data}, 'secret chunk', 'and the chunk');
    $ws->close;
}

# --- the stream a location names, to its end ----------------------------------------

{
    my $ws = ws_open('/ws?id=done&from=0');
    my @m = read_to_end_of($ws, 'done');
    my $init = $m[0] || {};
    is($init->{type}, 'stream-init', 'done: stream-init first');
    is($init->{payload}{streamId}, 'done', 'stream-init: streamId');
    like($init->{payload}{metadata}{subscriberId} // '', qr/^\d+$/,
         'stream-init: subscriberId, a decimal string');
    is($init->{payload}{metadata}{resumePosition}, 0, 'stream-init: resumePosition 0');
    for my $m (@m) {
        ok($m->{id} && $m->{timestamp} && ($m->{source} // '') eq 'nginx',
           "$m->{type}: the Omni envelope (id, timestamp, source)")
            or diag(explain($m));
    }
    my $s = summary('done', @m);
    is_deeply($s->{seq}, [ 1, 2, 3 ], 'done: chunks 1 to 3');
    my $euro = "three \x{20ac}";
    is_deeply($s->{data}, [ 'one', 'two', $euro ], 'done: their data');
    is($s->{bad_crc} // 0, 0, 'done: every checksum is the CRC-32 of the data');
    is($s->{final}, 4, 'done: the final chunk, sequence 4');
    is($s->{status}, 'completed', 'done: stream-status completed last');
    my ($fin) = grep { $_->{type} eq 'stream-chunk' && $_->{payload}{isFinal} } @m;
    is($fin && $fin->{payload}{data}, '', 'the final chunk has data ""');
    ok(!$ws->read_frame(0.3), 'nothing after the end');
    still_open($ws, 'done', 'after the end');
    $ws->close;
}

{
    my ($ws, $r) = ws_open('/ws?id=done&from=2');
    my @m = read_to_end_of($ws, 'done');
    is($m[0]{payload}{metadata}{resumePosition}, 2, 'from=2: resumePosition 2');
    is_deeply(summary('done', @m)->{seq}, [ 3 ], 'from=2: chunk 3 only');
    $ws->close;
    ($ws, $r) = ws_open('/ws?id=done', headers => { 'Last-Event-ID' => 'done:1' });
    @m = read_to_end_of($ws, 'done');
    is_deeply(summary('done', @m)->{seq}, [ 2, 3 ], 'Last-Event-ID done:1: 2 and 3');
    $ws->close;
    ($ws, $r) = ws_open('/ws?id=live&from=live');
    is($r->{status}, 101, 'from=live: 101');
    my ($init) = $ws->read_jsons(1, 3);
    is($init && $init->{type}, 'stream-init', 'from=live: stream-init');
    ok(!$ws->read_json(0.5), 'from=live: no old chunk');
    publish('live', 'l3');
    my $c = $ws->read_json(3);
    is($c && $c->{payload}{data}, 'l3', 'from=live: the new chunk');
    $ws->close;
}

# --- a socket that names no stream; requests --------------------------------------

{
    my $ws = ws_open('/ws');
    ok($ws->is_open, 'no id: 101');
    ok(!$ws->read_frame(0.5), 'no id: no subscription, nothing sent');

    my $id = request($ws, 'subscribe', streamId => 'done', _id => 'r1');
    my ($m, $all) = response_to($ws, 'r1');
    ok($m && $m->{payload}{success}, 'subscribe: success');
    is($m && $m->{correlationId}, 'r1', 'subscribe: correlationId in the envelope');
    is($m && $m->{payload}{correlationId}, 'r1', 'and in the payload');
    is($m && $m->{payload}{data}{streamId}, 'done', 'data.streamId');
    like($m && $m->{payload}{data}{subscriberId} // '', qr/^\d+$/,
         'data.subscriberId, decimal');
    is($m && $m->{payload}{data}{resumePosition}, 0, 'data.resumePosition 0');
    ok($m && $m->{id} && $m->{timestamp} && $m->{source} eq 'nginx',
       'response: the Omni envelope');
    is(scalar(@$all), 1, 'the response comes before anything of the stream');
    my @s = read_to_end_of($ws, 'done');
    is($s[0]{type}, 'stream-init', 'then stream-init');
    is($s[0]{payload}{metadata}{subscriberId}, $m->{payload}{data}{subscriberId},
       'with the same subscriberId');
    my $sum = summary('done', @s);
    is_deeply($sum->{seq}, [ 1, 2, 3 ], 'then chunks 1 to 3');
    is($sum->{status}, 'completed', 'and completed');

    # the subscription ended and was dropped: the same stream again
    $id = request($ws, 'subscribe', streamId => 'done', fromSequence => 1);
    ($m) = response_to($ws, $id);
    ok($m && $m->{payload}{success}, 'subscribe again to an ended stream: success');
    is($m && $m->{payload}{data}{resumePosition}, 1, 'fromSequence 1: resumePosition 1');
    is_deeply(summary('done', read_to_end_of($ws, 'done'))->{seq}, [ 2, 3 ],
              'fromSequence 1: chunks 2 and 3');

    # live: subscribed twice is refused
    $id = request($ws, 'subscribe', streamId => 'live', fromSequence => 1);
    ($m) = response_to($ws, $id);
    ok($m && $m->{payload}{success}, 'subscribe live from 1');
    my @c = $ws->read_jsons(3, 3);
    is_deeply(summary('live', @c)->{seq}, [ 2, 3 ], 'live: chunks 2 and 3');
    $id = request($ws, 'subscribe', streamId => 'live');
    ($m) = response_to($ws, $id);
    is_error_response($m, 'INVALID_STATE', 'subscribe twice');

    # status
    $id = request($ws, 'status', streamId => 'live');
    ($m) = response_to($ws, $id);
    my $ctl = json_decode($t->get('/ctl?id=live')->{body});
    ok($m && $m->{payload}{success}, 'status: success');
    my $d = $m ? $m->{payload}{data} : {};
    is_deeply({ map { $_ => $d->{$_} } qw(status sequence bytes first) },
              { map { $_ => $ctl->{$_} } qw(status sequence bytes first) },
              'status: the state the control endpoint gives');
    is($d->{subscribers}, $ctl->{subscribers}, 'status: subscribers');
    $id = request($ws, 'status', streamId => 'nope');
    ($m) = response_to($ws, $id);
    is_error_response($m, 'INVALID_STREAM', 'status of an unknown stream');

    # unsubscribe
    $id = request($ws, 'unsubscribe', streamId => 'live', _id => 'u1');
    ($m) = response_to($ws, 'u1');
    ok($m && $m->{payload}{success}, 'unsubscribe: success');
    is($m && $m->{payload}{data}{streamId}, 'live', 'unsubscribe: data.streamId');
    publish('live', 'l4');
    my @after = $ws->read_jsons(1, 0.7);
    is(scalar @after, 0, 'nothing of the stream after unsubscribe')
        or diag(explain(\@after));
    $id = request($ws, 'unsubscribe', streamId => 'live');
    ($m) = response_to($ws, $id);
    is_error_response($m, 'INVALID_STREAM', 'unsubscribe when not subscribed');

    # refusals, each followed by a working status request
    my $long = 'x' x 129;
    my @bad = (
        [ 'subscribe to an unknown stream', 'INVALID_STREAM',
          { type => 'request', id => 'e1',
            payload => { action => 'subscribe', params => { streamId => 'nope' } } } ],
        [ 'subscribe to a bad id', 'INVALID_ID',
          { type => 'request', id => 'e2',
            payload => { action => 'subscribe', params => { streamId => 'a b' } } } ],
        [ 'an unknown action', 'UNKNOWN_ACTION',
          { type => 'request', id => 'e3',
            payload => { action => 'rewind', params => { streamId => 'live' } } } ],
        [ 'an unknown type', 'UNKNOWN_MESSAGE_TYPE',
          { type => 'stream-rewind', id => 'e4', payload => { streamId => 'live' } } ],
        [ 'a streamId of 129 bytes', 'INVALID_MESSAGE',
          { type => 'request', id => 'e5',
            payload => { action => 'subscribe', params => { streamId => $long } } } ],
        [ 'fromSequence not a number', 'INVALID_MESSAGE',
          { type => 'request', id => 'e6',
            payload => { action => 'subscribe',
                         params => { streamId => 'live', fromSequence => 'x' } } } ],
        [ 'fromSequence -1', 'INVALID_MESSAGE',
          { type => 'request', id => 'e7',
            payload => { action => 'subscribe',
                         params => { streamId => 'live', fromSequence => -1 } } } ],
        [ 'an ack with sequence 1.5', 'INVALID_MESSAGE',
          { type => 'stream-control', id => 'e8',
            payload => { streamId => 'live', command => 'ack', sequence => 1.5 } } ],
        [ 'an ack without a sequence', 'INVALID_MESSAGE',
          { type => 'stream-control', id => 'e9',
            payload => { streamId => 'live', command => 'ack' } } ],
        [ 'a request without params', 'INVALID_MESSAGE',
          { type => 'request', id => 'e10', payload => { action => 'status' } } ],
        [ 'an unknown command', 'INVALID_MESSAGE',
          { type => 'stream-control', id => 'e11',
            payload => { streamId => 'live', command => 'rewind' } } ],
    );
    for my $b (@bad) {
        my ($name, $code, $msg) = @$b;
        $ws->send_json($msg);
        my ($r) = $ws->read_json_until(sub { $_->{type} eq 'response' }, 3);
        is_error_response($r, $code, $name);
        is($r && $r->{correlationId}, $msg->{id}, "$name: correlationId");
        still_open($ws, 'done', $name);
    }
    for my $raw ([ 'invalid JSON', '{"type":"request",' ],
                 [ 'a JSON array', '[1,2]' ], [ 'a JSON string', '"status"' ],
                 [ 'a JSON number', '42' ], [ 'JSON null', 'null' ],
                 [ 'an empty message', '' ],
                 [ 'two JSON objects', '{"type":"request"}{}' ])
    {
        my ($name, $text) = @$raw;
        $ws->send_text($text);
        my ($r) = $ws->read_json_until(sub { $_->{type} eq 'response' }, 3);
        is_error_response($r, 'INVALID_MESSAGE', $name);
        ok($r && (!defined $r->{correlationId} || $r->{correlationId} eq ''),
           "$name: correlationId empty or absent");
        still_open($ws, 'done', $name);
    }
    $ws->close;
}

{
    # subscribing from a start point no longer retained
    my $ws = ws_open('/tiny-ws');
    my $id = request($ws, 'subscribe', streamId => 'tt', fromSequence => 0);
    my ($m) = response_to($ws, $id);
    is_error_response($m, 'CHUNKS_EXPIRED', 'subscribe from an expired point');
    $ws->close;
}

# --- ack window: streaming_window 4 ---------------------------------------------

{
    $t->put('/pub?id=aw', '');
    publish('aw', map { "a$_" } 1 .. 10);
    my $ws = ws_open('/ws-w4?id=aw&from=0');
    my ($init) = $ws->read_jsons(1, 3);
    my $sid = $init ? $init->{payload}{metadata}{subscriberId} : '';
    my @m;
    my $deadline = time + 1.0 * $F;
    while (time < $deadline) { push @m, $ws->read_jsons(100, 0.1) }
    is_deeply(summary('aw', @m)->{seq}, [ 1 .. 4 ], 'window 4: exactly 4 chunks');

    control($ws, 'aw', 'ack', sequence => 4, subscriberId => '999999', _id => 'a0');
    my ($r) = response_to($ws, 'a0');
    ok($r && !$r->{payload}{success}, 'an ack with another subscriberId fails');
    ok(!$ws->read_json(0.5), 'and opens nothing');

    control($ws, 'aw', 'ack', sequence => 4, subscriberId => $sid, _id => 'a1');
    @m = ();
    $deadline = time + 1.0 * $F;
    while (time < $deadline) { push @m, $ws->read_jsons(100, 0.1) }
    is_deeply(summary('aw', @m)->{seq}, [ 5 .. 8 ], 'ack 4: chunks 5 to 8');
    is(scalar(grep { $_->{type} eq 'response' } @m), 0,
       'a successful ack gets no answer');

    control($ws, 'aw', 'ack', sequence => 8, _id => 'a2');
    @m = $ws->read_jsons(2, 3);
    is_deeply(summary('aw', @m)->{seq}, [ 9, 10 ],
              'ack 8 (no subscriberId): chunks 9 and 10');
    $t->post('/pub?id=aw&final=1', 'a11');
    @m = read_to_end_of($ws, 'aw');
    my $s = summary('aw', @m);
    is_deeply($s->{seq}, [ 11 ], 'then 11');
    is($s->{final}, 12, 'the final chunk');
    is($s->{status}, 'completed', 'completed');

    control($ws, 'other', 'ack', sequence => 1, _id => 'a3');
    ($r) = response_to($ws, 'a3');
    is_error_response($r, 'INVALID_STREAM', 'an ack for a stream not subscribed here');
    $ws->close;
}

{
    # the default window, 64: a socket that never acks gets 64 chunks
    $t->put('/pub?id=d64', '');
    publish('d64', map { "d$_" } 1 .. 100);
    my $ws = ws_open('/ws?id=d64&from=0');
    my @m;
    my $deadline = time + 1.5 * $F;
    while (time < $deadline) { push @m, $ws->read_jsons(1000, 0.1) }
    is_deeply(summary('d64', @m)->{seq}, [ 1 .. 64 ],
              'default window: 64 chunks until an ack');
    control($ws, 'd64', 'ack', sequence => 64);
    @m = $ws->read_jsons(36, 3);
    is_deeply(summary('d64', @m)->{seq}, [ 65 .. 100 ], 'ack 64: the other 36');
    $ws->close;
}

# --- pause / resume / cancel over the socket ----------------------------------------

{
    $t->put('/pub?id=pc', '');
    publish('pc', 'one');
    my $http_sub = $t->stream('GET', '/sub?id=pc&from=0&format=ndjson', timeout => 10);
    $http_sub->read_headers(3);
    my $ws = ws_open('/ws?id=pc&from=0');
    my @m = $ws->read_jsons(2, 3);
    is_deeply(summary('pc', @m)->{seq}, [ 1 ], 'pc: chunk 1');

    my $id = control($ws, 'pc', 'pause');
    my ($r, $all) = response_to($ws, $id);
    ok($r && $r->{payload}{success}, 'pause: success');
    is($r && $r->{payload}{correlationId}, $id, 'pause: correlationId');
    is($r && $r->{payload}{data}{status}, 'paused', 'pause: data is the new state');
    my ($st) = grep { $_->{type} eq 'stream-status' } @$all;
    ($st) = $ws->read_json_until(sub { $_->{type} eq 'stream-status' }, 3)
        unless $st;
    is($st && $st->{payload}{status}, 'paused', 'pause: stream-status paused on the socket');
    is(json_decode($t->get('/ctl?id=pc')->{body})->{status}, 'paused',
       'pause: the control endpoint says paused');
    ok($http_sub->read_until(qr/"status":"paused"/, 3),
       'pause: an HTTP subscriber gets stream-status paused');
    my $p = j($t->post('/pub?id=pc', 'held'));
    is($p->{status}, 429, 'paused: a publish POST gets 429');

    $id = control($ws, 'pc', 'pause');
    ($r) = response_to($ws, $id);
    is_error_response($r, 'INVALID_STATE', 'pause a paused stream');

    $id = control($ws, 'pc', 'resume');
    ($r, $all) = response_to($ws, $id);
    ok($r && $r->{payload}{success}, 'resume: success');
    is($r && $r->{payload}{data}{status}, 'active', 'resume: active');
    ($st) = grep { $_->{type} eq 'stream-status' } @$all;
    ($st) = $ws->read_json_until(sub { $_->{type} eq 'stream-status' }, 3)
        unless $st;
    is($st && $st->{payload}{status}, 'active', 'resume: stream-status active');
    is(j($t->post('/pub?id=pc', 'two'))->{status}, 202, 'resumed: a POST gets 202');
    my ($c) = $ws->read_json_until(sub { $_->{type} eq 'stream-chunk' }, 3);
    is($c && $c->{payload}{sequence}, 2, 'resumed: chunk 2');

    $id = control($ws, 'nope', 'pause');
    ($r) = response_to($ws, $id);
    is_error_response($r, 'INVALID_STREAM', 'pause a stream not subscribed here');
    $id = control($ws, 'live', 'pause');
    ($r) = response_to($ws, $id);
    is_error_response($r, 'INVALID_STREAM', 'pause an existing stream not subscribed here');
    is(json_decode($t->get('/ctl?id=live')->{body})->{status}, 'active',
       'and that stream is untouched');

    $id = control($ws, 'pc', 'cancel', reason => 'test');
    ($r, $all) = response_to($ws, $id);
    ok($r && $r->{payload}{success}, 'cancel: success');
    is($r && $r->{payload}{data}{status}, 'cancelled', 'cancel: cancelled');
    push @$all, read_to_end_of($ws, 'pc')
        unless grep { $_->{type} eq 'stream-status'
                      && $_->{payload}{status} eq 'cancelled' } @$all;
    my $s = summary('pc', @$all);
    is($s->{final}, 3, 'cancel: the final chunk');
    is($s->{status}, 'cancelled', 'cancel: stream-status cancelled');
    is(j($t->post('/pub?id=pc', 'late'))->{status}, 409, 'cancelled: POST 409');
    still_open($ws, 'pc', 'after cancel');
    $id = control($ws, 'pc', 'resume');
    ($r) = response_to($ws, $id);
    is_error_response($r, 'INVALID_STREAM',
                      'a command after the subscription ended');
    $ws->close;
    $http_sub->close;
}

# --- two streams on one socket ---------------------------------------------------

{
    $t->put("/pub?id=$_", '') for qw(i1 i2);
    my $ws = ws_open('/ws?id=i1&from=0');
    my $id = request($ws, 'subscribe', streamId => 'i2', fromSequence => 0);
    my ($r, $all) = response_to($ws, $id);
    ok($r && $r->{payload}{success}, 'a second stream on the socket');
    my @m = @$all;
    for my $n (1 .. 10) {
        publish('i1', "A$n");
        publish('i2', "B$n");
    }
    $t->post('/pub?id=i1&final=1', '');
    $t->post('/pub?id=i2&final=1', '');
    my %done;
    my $deadline = time + 5 * $F;
    while (keys(%done) < 2 && time < $deadline) {
        my $x = $ws->read_json(0.5) or next;
        push @m, $x;
        $done{ $x->{payload}{streamId} } = 1
            if $x->{type} eq 'stream-status'
               && $x->{payload}{status} eq 'completed';
    }
    my ($s1, $s2) = (summary('i1', @m), summary('i2', @m));
    is_deeply($s1->{data}, [ map { "A$_" } 1 .. 10 ], 'i1: its chunks in order');
    is_deeply($s2->{data}, [ map { "B$_" } 1 .. 10 ], 'i2: its chunks in order');
    is_deeply([ $s1->{status}, $s2->{status} ], [ 'completed', 'completed' ],
              'both completed');
    is_deeply([ $s1->{init}, $s2->{init} ], [ 1, 1 ], 'one stream-init each');
    my @order = map { $_->{payload}{streamId} }
                grep { $_->{type} eq 'stream-chunk' } @m;
    my $switches = grep { $order[$_] ne $order[ $_ - 1 ] } 1 .. $#order;
    ok($switches >= 5, "their messages interleave ($switches switches)");
    is(scalar(grep { $_->{type} =~ /^stream-/
                     && !defined $_->{payload}{streamId} } @m), 0,
       'every stream message names its stream');
    $ws->close;
}

# --- a publisher on another worker --------------------------------------------------

{
    $t->put('/pub?id=xw', '');
    my ($ws, $wpid);
    for (1 .. 20) {
        ($ws) = ws_open('/ws?id=xw&from=0', port => $t->port(2));
        $wpid = socket_worker($ws, $t->port(2));
        last if $wpid;
        $ws->close;
    }
    ok($wpid, "the socket is held by worker $wpid");
    is($ws->response->{headers}{'x-pid'} // $wpid, $wpid,
       '(its 101 says the same)');
    $ws->read_jsons(1, 3);    # stream-init
    my ($cross, @lag);
    my $n = 0;
    for my $try (1 .. 40) {
        my $r = j($t->post('/pub?id=xw', "x$try", port => $t->port(2)));
        my $t0 = time;    # stored by now: the 202 says so
        $n++;
        my $c = $ws->read_json(2);
        if (!$c || $c->{type} ne 'stream-chunk' || $c->{payload}{data} ne "x$try") {
            fail("chunk $try arrives") or diag(explain($c));
            last;
        }
        if (($r->{headers}{'x-pid'} // 0) != $wpid) {
            $cross++;
            push @lag, time - $t0;
        }
        last if $cross && $cross >= 5;
    }
    ok($cross, "published on the other worker: $cross of $n chunks");
    my ($max) = sort { $b <=> $a } @lag;
    ok(defined $max && $max < 0.5 * $F,
       sprintf('each arrived within %.1f ms of its 202', ($max // 9) * 1000))
        or diag("delays: @lag");
    $ws->close;
}

# --- heartbeat pings -----------------------------------------------------------------

{
    $t->put('/pub?id=hb', '');
    my $t0 = time;
    my %c = (silent => scalar ws_open('/ws-hb?id=hb&from=0'),
             pong   => scalar ws_open('/ws-hb?id=hb&from=0', auto_pong => 1),
             bare   => scalar ws_open('/ws-hb'));
    my %closed;
    my $deadline = time + 6 * $F;
    while (time < $deadline) {
        for my $k (sort keys %c) {
            my $ws = $c{$k};
            next if $closed{$k};
            $ws->read_message(0.02);
            $closed{$k} = $ws->close_frame->{at} - $t0 if $ws->close_frame;
            $closed{$k} = -1 if !$closed{$k} && $ws->eof;
        }
    }
    for my $k (qw(silent bare)) {
        my $ws = $c{$k};
        ok($ws->pings >= 2, "heartbeat 1s, $k client: pings (" . $ws->pings . ')');
        is($ws->close_frame && $ws->close_frame->{code}, 1001,
           "$k client that answers nothing: closed with 1001");
        my $at = $closed{$k} // 99;
        ok($at >= 2.5 && $at <= 5 * $F,
           sprintf('%s client: closed %.1f s after it opened (three intervals)',
                   $k, $at));
        ok($ws->wait_eof(2), "$k client: the TCP connection closed");
    }
    my $ws = $c{pong};
    ok($ws->pings >= 4, 'the client that answers: pings (' . $ws->pings . ')');
    ok(!$ws->close_frame && !$ws->eof, 'the client that answers pongs stays open');
    my @gaps = map { $ws->{pings}[$_]{at} - $ws->{pings}[ $_ - 1 ]{at} }
               1 .. $#{ $ws->{pings} };
    ok(!grep({ $_ < 0.5 || $_ > 1.8 * $F } @gaps),
       'a ping every second: ' . join(' ', map { sprintf '%.2f', $_ } @gaps));
    still_open($ws, 'hb', 'the client that answers');
    $_->close for values %c;
}

# --- backpressure: streaming_overflow pause -------------------------------------

{
    my $port = $t->port(3);
    $t->http('PUT', '/pub?id=bp', port => $port, body => '');
    my ($ws, $r) = ws_open('/ws?id=bp&from=0', port => $port, rcvbuf => 4096);
    is($r->{status}, 101, 'backpressure: a socket that does not read');
    my $chunk = 'b' x 16000;
    my ($stored, $held) = (0, 0);
    for my $n (1 .. 2000) {
        my $p = $t->http('POST', '/pub?id=bp', port => $port,
                         body => sprintf('%06d', $n) . $chunk);
        if ($p->{status} == 202) { $stored++; next }
        if ($p->{status} == 429) {
            $held = 1;
            is(err_code(eval { json_decode($p->{body}) }), 'STREAM_PAUSED',
               'backpressure: 429 STREAM_PAUSED');
            ok($p->{headers}{'retry-after'}, 'backpressure: with Retry-After');
            last;
        }
        fail("publish $n: $p->{status}");
        last;
    }
    ok($held, "the publisher gets 429 once the buffer is full ($stored chunks"
              . ' of 16k stored)');
    ok($stored >= 10, 'after the buffer had filled');

    # now read: every stored chunk, in order; the publisher goes on
    my (@seq, $bad, $more);
    my $deadline = time + 20 * $F;
    while (time < $deadline) {
        my $m = $ws->read_json(0.2);
        if (!$m) {
            if (!$more && @seq >= $stored) {
                # released: the publisher may go on, then end the stream
                my $p = $t->http('POST', '/pub?id=bp&final=1', port => $port,
                                 body => 'last');
                $more = $p->{status};
            }
            next;
        }
        next unless $m->{type} =~ /^stream-(chunk|status)$/;
        last if $m->{type} eq 'stream-status'
                && $m->{payload}{status} eq 'completed';
        next if $m->{type} ne 'stream-chunk' || $m->{payload}{isFinal};
        push @seq, $m->{payload}{sequence};
        my $d = $m->{payload}{data};
        $bad++ unless $d eq 'last'
                      || $d eq sprintf('%06d', $m->{payload}{sequence}) . $chunk;
    }
    is_deeply(\@seq, [ 1 .. $stored + 1 ],
              'every chunk arrives, in order, then the one published after');
    is($bad // 0, 0, 'each with its data');
    is($more, 202, 'once the client read, the publisher is accepted again');
    $ws->close;
}

# --- memory per frame on a long connection ------------------------------------------

{
    my ($ws, $r) = ws_open('/ws');
    my $pid = socket_worker($ws, $t->port);
    ok($pid, "the long connection is held by worker $pid");
    my $req = json_encode({ type => 'request', id => 'm',
                            payload => { action => 'status',
                                         params => { streamId => 'live' } } });
    my ($pongs, $answers) = (0, 0);
    my $run = sub {
        my ($pings, $statuses) = @_;
        while ($pings > 0) {
            my $n = $pings > 1000 ? 1000 : $pings;
            $ws->send_raw(join '', map { build_frame(opcode => OP_PING,
                                                     payload => "m$_") } 1 .. $n);
            for my $i (1 .. $n) {
                my $f = $ws->read_frame(5) or last;
                if ($f->{opcode} == OP_PING) {    # a heartbeat
                    $ws->send_pong($f->{payload});
                    redo;
                }
                $pongs++ if $f->{opcode} == OP_PONG && $f->{payload} eq "m$i";
            }
            $pings -= $n;
        }
        while ($statuses > 0) {
            my $n = $statuses > 250 ? 250 : $statuses;
            $ws->send_raw(join '', map { build_frame(payload => $req) } 1 .. $n);
            for (1 .. $n) {
                my $m = $ws->read_json(5) or last;
                $answers++ if $m->{type} eq 'response' && $m->{payload}{success};
            }
            $statuses -= $n;
        }
    };
    $run->(2000, 500);
    my $before = vmrss_kb($pid);
    ($pongs, $answers) = (0, 0);
    $run->(20000, 5000);
    my $after = vmrss_kb($pid);
    is($pongs, 20000, '20,000 pings on one socket: 20,000 pongs');
    is($answers, 5000, '5,000 status requests: 5,000 answers');
    SKIP: {
        skip 'RSS under a sanitizer or valgrind', 1 if $t->instrumented;
        my $growth = $after - $before;
        ok($growth < 1024, "the worker's RSS grew by $growth KB (bound 1 MB)")
            or diag("VmRSS before $before KB, after $after KB");
    }
    $ws->send_close(1000);
    is(($ws->read_close(3) || {})->{code}, 1000, 'then closed with 1000');
}

# --- reload: SHUTDOWN and 1001, resume on a new socket ------------------------

{
    $t->put('/pub?id=rl', '');
    publish('rl', map { "r$_" } 1 .. 5);
    my $ws = ws_open('/ws?id=rl&from=0');
    my $bare = ws_open('/ws');
    my @m = $ws->read_jsons(6, 3);
    my $s = summary('rl', @m);
    is_deeply($s->{seq}, [ 1 .. 5 ], 'reload: the socket has chunks 1 to 5');

    my $at = time;
    ok($t->reload(server => "$server\n# generation 2\n"), 'reload');
    my $c = $ws->read_close(5);
    push @m, map { json_decode($_->{payload}) } @{ $c ? $c->{messages} : [] };
    $s = summary('rl', @m);
    is($s->{status}, 'error', 'reload: a final stream-status error');
    is($s->{code}, 'SHUTDOWN', 'reload: SHUTDOWN');
    ok(!defined $s->{final}, 'reload: no final chunk: the stream goes on');
    is($c && $c->{code}, 1001, 'reload: then close 1001');
    ok($c && $c->{at} - $at < 3 * $F, 'reload: at once');
    ok($ws->wait_eof(3), 'reload: then the TCP connection is closed');
    my $bc = $bare->read_close(5);
    is($bc && $bc->{code}, 1001, 'reload: a socket with no subscription: close 1001');

    publish('rl', map { "r$_" } 6 .. 8);
    my $last = $s->{seq}[-1] // 0;
    my $again = ws_open("/ws?id=rl&from=$last");
    ok($again->is_open, "reload: a new socket from $last");
    publish('rl', 'r9');
    $t->post('/pub?id=rl&final=1', 'r10');
    my @n = read_to_end_of($again, 'rl');
    my $s2 = summary('rl', @n);
    is($n[0] && $n[0]{payload}{metadata}{resumePosition}, $last,
       "reload: resumePosition $last");
    is_deeply([ @{ $s->{seq} }, @{ $s2->{seq} } ], [ 1 .. 10 ],
              'reload: chunks 1 to 10 over both sockets, nothing lost or doubled');
    is_deeply($s2->{data}, [ map { "r$_" } $last + 1 .. 10 ], 'with their data');
    is($s2->{status}, 'completed', 'reload: completed');
    $again->close;
}

$t->stop;
done_testing;
