# WebSocket conformance (RFC 6455) of the subscribe endpoint, case groups
# after the Autobahn testsuite's (the cases are our own): 1 framing, 2 pings
# and pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close
# handling, 9 limits, 10 masking and binary messages.
#
# The sockets subscribe to nothing (no ?id=): what the server answers is a
# "status" request for a published stream, so a message that arrives intact
# gets a response with success:true and the stream's state.  Each protocol
# error is checked three ways: the close frame's code, the TCP connection
# closed after it (nothing more sent), and the reason logged at "info"
# (the parser's own words, see src/ngx_http_streaming_ws.h) and at no
# other level.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;
use StreamTest::WebSocket qw(:op build_frame require_upgrade);

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone ws 8m;');
$t->server_config(<<'EOF');
location = /ws { streaming_subscribe ws; }
location = /ws4k { streaming_subscribe ws; streaming_max_chunk 4k; }
location = /pub { streaming_publish ws; }
EOF
$t->start;

is($t->put('/pub?id=f1', '')->{status}, 201, 'stream f1 created');
is($t->post('/pub?id=f1', 'one')->{status}, 202, 'f1: one chunk');

# --- helpers -------------------------------------------------------------------

my $N = 0;

# A "status" request for f1 as JSON text (bytes), padded with JSON
# whitespace inside the object to exactly $o{len} bytes; $o{id_bytes} is
# put into the id string as it is (raw, possibly invalid, UTF-8).
sub status_req {
    my (%o) = @_;
    my $id = $o{id} // 'r' . ++$N;
    my $head = '{"type":"request","id":"' . $id . ($o{id_bytes} // '') . '",';
    my $tail = '"payload":{"action":"status","params":{"streamId":"f1"}}}';
    my $pad = 0;
    if (defined $o{len}) {
        $pad = $o{len} - length($head) - length($tail);
        die "status_req: $o{len} bytes is too short" if $pad < 0;
    }
    return ($head . (' ' x $pad) . $tail, $id . ($o{id_bytes} // ''));
}

sub ws_open {
    my ($path, %o) = @_;
    my ($ws, $r) = StreamTest::WebSocket->open($t, $path // '/ws',
                                               timeout => 5, %o);
    return ($ws, $r);
}

# The next message must be the answer to a status request $id for f1.
sub status_ok {
    my ($ws, $id, $name) = @_;
    my $m = $ws->read_json(3);
    my $ok = ok($m && ($m->{type} // '') eq 'response'
                && $m->{payload}{success}
                && ($m->{payload}{data}{status} // '') eq 'active'
                && ($m->{payload}{data}{sequence} // -1) == 1,
                "$name: answered (success, f1 active at 1)");
    if (!$ok) {
        diag(explain($m // { nothing => 1, eof => $ws->eof,
                             close => $ws->close_frame }));
        return 0;
    }
    my $cid = $id;
    utf8::decode($cid);
    is($m->{correlationId}, $cid, "$name: correlationId")
        or diag(explain($m));
    return 1;
}

# A protocol error: close $code, then nothing more and EOF; $log (a
# string or regex) logged at info since $mark and at no other level.
sub error_close {
    my ($ws, $code, $log, $name, $mark) = @_;
    my $c = $ws->read_close(3);
    is($c && $c->{code}, $code, "$name: close $code")
        or diag(explain({ close => $c, eof => $ws->eof,
                          timed_out => $ws->timed_out,
                          messages => [ map { $_->{payload} }
                                        $ws->messages_seen ] }));
    ok($ws->wait_eof(3), "$name: then the TCP connection is closed");
    is($ws->after_close, 0, "$name: nothing after the close frame");
    $ws->close;
    return unless defined $log;
    my $re = ref $log ? $log : qr/\Q$log\E/;
    ok($t->wait_for_log(qr/\[info\][^\n]*$re/, 3, from => $mark),
       "$name: \"$log\" logged at info");
    my @other = grep { /$re/ && !/\[info\]/ } split /\n/, $t->error_log($mark);
    is(scalar @other, 0, "$name: and at no other level") or diag(join "\n", @other);
}

# Opens a socket, sends what $send does, expects an error close.
sub error_case {
    my ($name, $code, $log, $send, $path) = @_;
    my $mark = $t->log_mark;
    my ($ws, $r) = ws_open($path);
    if (($r->{status} // 0) != 101) {
        fail("$name: the handshake answered 101");
        return;
    }
    $send->($ws);
    error_close($ws, $code, $log, $name, $mark);
}

# For error_case: a text message in two frames, '{"type":' then a
# continuation of $tail sent with the frame options %bad.
sub bad_continuation {
    my ($tail, %bad) = @_;
    return sub {
        my $ws = shift;
        $ws->send_frame(payload => '{"type":', fin => 0);
        $ws->send_frame(opcode => OP_CONTINUATION, payload => $tail, %bad);
    };
}

# --- the endpoint answers ------------------------------------------------------

{
    my ($ws, $r) = ws_open('/ws');
    require_upgrade($t, $r);
    ok($r->{accept_ok}, 'Sec-WebSocket-Accept matches the key');
    my ($req, $id) = status_req();
    $ws->send_text($req);
    status_ok($ws, $id, 'a status request');
    $ws->send_close(1000);
    is(($ws->read_close(3) || {})->{code}, 1000, 'closed with 1000');
}

# --- 1 framing -------------------------------------------------------------------

{
    my ($ws) = ws_open('/ws');

    # 1.1 an empty text message: not JSON, answered, the socket stays
    $ws->send_text('');
    my $m = $ws->read_json(3);
    ok($m && $m->{type} eq 'response' && !$m->{payload}{success}
       && $m->{payload}{error}{code} eq 'INVALID_MESSAGE',
       '1.1 an empty text message: INVALID_MESSAGE') or diag(explain($m));

    # 1.2 lengths at the edges of the 7-bit, 16-bit and 64-bit encodings,
    # up to the limit, min(streaming_max_chunk 1m, 64k)
    for my $len (125, 126, 127, 1000, 65535, 65536) {
        my ($req, $id) = status_req(len => $len);
        $ws->send_text($req);
        status_ok($ws, $id, "1.2 a text message of $len bytes");
    }

    # 1.3 lengths not in their shortest encoding are accepted
    for my $form (2, 8) {
        my ($req, $id) = status_req();
        $ws->send_frame(payload => $req, length_bytes => $form);
        status_ok($ws, $id, "1.3 a short length in $form bytes");
    }

    # 1.4 a payload written in many pieces
    {
        my ($req, $id) = status_req(len => 3000);
        $ws->send_text($req, pieces => 60, pause => 0.005);
        status_ok($ws, $id, '1.4 3000 bytes in 60 writes');
    }

    # 1.5 frame headers written byte by byte: 7-bit, 16-bit, 64-bit lengths
    for my $case ([ 100, 0, 6 ], [ 300, 2, 8 ], [ 300, 8, 14 ]) {
        my ($len, $form, $hlen) = @$case;
        my ($req, $id) = status_req(len => $len);
        my $frame = build_frame(payload => $req, length_bytes => $form);
        $ws->send_raw($frame, split_at => [ 1 .. $hlen ], pause => 0.01);
        status_ok($ws, $id, "1.5 a $hlen-byte header byte by byte");
    }

    # 1.6 a whole frame byte by byte
    {
        my ($req, $id) = status_req();
        $ws->send_text($req, piece => 1, pause => 0.002);
        status_ok($ws, $id, '1.6 a whole frame byte by byte');
    }

    # 1.7 several frames in one write, and a write that ends in the middle
    # of the second frame's header
    {
        my ($r1, $i1) = status_req();
        my ($r2, $i2) = status_req(len => 200);
        my ($r3, $i3) = status_req();
        my $bytes = join '', map { build_frame(payload => $_) } $r1, $r2, $r3;
        $ws->send_raw($bytes, split_at => [ length(build_frame(payload => $r1)) + 1 ],
                      pause => 0.05);
        status_ok($ws, $i1, '1.7 three frames in two writes: the first');
        status_ok($ws, $i2, '1.7 the second');
        status_ok($ws, $i3, '1.7 the third');
    }

    # 1.8 a mask of zeros, a mask of ones
    for my $key ("\0\0\0\0", "\xff\xff\xff\xff") {
        my ($req, $id) = status_req();
        $ws->send_frame(payload => $req, mask_key => $key);
        status_ok($ws, $id, '1.8 mask key ' . unpack('H*', $key));
    }
    $ws->close;
}

error_case('1.9 a message over 64k (default limit)', 1009, 'message too big',
           sub { $_[0]->send_text((status_req(len => 65537))[0]) });
error_case('1.10 a 64-bit length with its high bit set', 1002,
           '64-bit length with its high bit set',
           sub {
               $_[0]->send_raw("\x81\xff\x80\0\0\0\0\0\0\x05" . "\0\0\0\0"
                               . 'hello');
           });

# --- 2 pings and pongs ----------------------------------------------------------

{
    my ($ws) = ws_open('/ws');
    my $bin125 = join '', map { chr(($_ * 7 + 3) & 255) } 0 .. 124;
    for my $case ([ 'empty', '' ], [ 'text', 'hello' ],
                  [ '125 bytes, binary', $bin125 ])
    {
        my ($name, $p) = @$case;
        $ws->send_ping($p);
        my $f = $ws->read_frame(3);
        ok($f && $f->{opcode} == OP_PONG && $f->{payload} eq $p,
           "2.1 ping ($name): a pong with its payload")
            or diag(explain($f));
    }

    # 2.2 unsolicited pongs: ignored
    $ws->send_pong('unsolicited');
    $ws->send_pong('');
    my ($req, $id) = status_req();
    $ws->send_text($req);
    my $f = $ws->read_frame(3);
    ok($f && $f->{opcode} == OP_TEXT,
       '2.2 unsolicited pongs: ignored (the next frame is the response)')
        or diag(explain($f));

    # 2.3 ten pings in one write, ten with pauses: ten pongs each, in order
    $ws->send_raw(join '', map { build_frame(opcode => OP_PING,
                                             payload => "p$_") } 1 .. 10);
    my @p = map { $ws->read_frame(3) } 1 .. 10;
    is_deeply([ map { $_ && $_->{opcode} == OP_PONG ? $_->{payload} : undef } @p ],
              [ map { "p$_" } 1 .. 10 ], '2.3 ten pings in one write: ten pongs');
    $ws->send_ping("q$_") && sleep 0.01 for 1 .. 10;
    @p = map { $ws->read_frame(3) } 1 .. 10;
    is_deeply([ map { $_ && $_->{opcode} == OP_PONG ? $_->{payload} : undef } @p ],
              [ map { "q$_" } 1 .. 10 ], '2.3 ten pings one by one: ten pongs');

    # 2.4 a ping byte by byte
    $ws->send_ping('slow', piece => 1, pause => 0.01);
    $f = $ws->read_frame(3);
    ok($f && $f->{opcode} == OP_PONG && $f->{payload} eq 'slow',
       '2.4 a ping byte by byte: answered');
    $ws->close;
}

error_case('2.5 a ping of 126 bytes', 1002, 'control frame over 125 bytes',
           sub { $_[0]->send_ping('x' x 126) });
error_case('2.6 a pong of 126 bytes', 1002, 'control frame over 125 bytes',
           sub { $_[0]->send_pong('x' x 126) });
error_case('2.7 a ping announcing 64k bytes', 1002,
           'control frame over 125 bytes',
           sub { $_[0]->send_frame(opcode => OP_PING, payload => 'x' x 65536) });

# --- 3 reserved bits -----------------------------------------------------------

for my $rsv (1 .. 7) {
    my $bits = join '+', map { "RSV$_" } grep { $rsv & (8 >> $_) } 1 .. 3;
    error_case("3.$rsv a text frame with $bits", 1002, 'reserved bits set',
               sub { $_[0]->send_frame(payload => (status_req())[0],
                                       rsv => $rsv) });
}
error_case('3.8 a ping with RSV1', 1002, 'reserved bits set',
           sub { $_[0]->send_frame(opcode => OP_PING, payload => 'x', rsv => 4) });
error_case('3.9 a close with RSV3', 1002, 'reserved bits set',
           sub { $_[0]->send_frame(opcode => OP_CLOSE,
                                   payload => pack('n', 1000), rsv => 1) });
error_case('3.10 RSV2 on a continuation', 1002, 'reserved bits set',
           bad_continuation('"x"}', rsv => 2));

# --- 4 opcodes -----------------------------------------------------------------

for my $op (3 .. 7, 0xb .. 0xf) {
    for my $payload ('', 'x') {
        error_case(sprintf('4 opcode 0x%x, %d-byte payload', $op,
                           length $payload),
                   1002, 'reserved opcode',
                   sub { $_[0]->send_frame(opcode => $op, payload => $payload) });
    }
}
error_case('4 opcode 0x5 inside a fragmented message', 1002, 'reserved opcode',
           sub {
               my $ws = shift;
               $ws->send_frame(payload => '{"type":', fin => 0);
               $ws->send_frame(opcode => 5, payload => 'x');
           });

# --- 5 fragmentation -----------------------------------------------------------

{
    my ($ws) = ws_open('/ws');
    my ($req, $id) = status_req();
    my $len = length $req;

    $ws->send_fragments(OP_TEXT, [ substr($req, 0, 20), substr($req, 20) ]);
    status_ok($ws, $id, '5.1 two fragments');

    ($req, $id) = status_req();
    $ws->send_fragments(OP_TEXT, [ substr($req, 0, 10), substr($req, 10, 30),
                                   substr($req, 40) ]);
    status_ok($ws, $id, '5.2 three fragments');

    ($req, $id) = status_req();
    $ws->send_fragments(OP_TEXT, [ split //, $req ], pause => 0);
    status_ok($ws, $id, '5.3 a fragment per byte (' . length($req)
              . ' fragments)');

    ($req, $id) = status_req();
    $ws->send_fragments(OP_TEXT, [ '', substr($req, 0, 30), '', substr($req, 30),
                                   '' ]);
    status_ok($ws, $id, '5.4 empty fragments among them');

    ($req, $id) = status_req(len => 20000);
    $ws->send_fragments(OP_TEXT, [ unpack('(a1000)*', $req) ], pause => 0);
    status_ok($ws, $id, '5.5 20000 bytes in 20 fragments');

    # 5.6 a ping between fragments: answered before the message completes
    ($req, $id) = status_req();
    $ws->send_frame(payload => substr($req, 0, 25), fin => 0);
    $ws->send_ping('between');
    my $f = $ws->read_frame(3);
    ok($f && $f->{opcode} == OP_PONG && $f->{payload} eq 'between',
       '5.6 a ping between fragments: the pong comes at once')
        or diag(explain($f));
    $ws->send_frame(opcode => OP_CONTINUATION, payload => substr($req, 25, 25),
                    fin => 0);
    $ws->send_pong('unsolicited, between');
    $ws->send_ping('again');
    $ws->send_frame(opcode => OP_CONTINUATION, payload => substr($req, 50));
    $f = $ws->read_frame(3);
    ok($f && $f->{opcode} == OP_PONG && $f->{payload} eq 'again',
       '5.6 a second ping between fragments answered');
    status_ok($ws, $id, '5.6 and the message completes');

    # 5.7 the fragments written byte by byte
    ($req, $id) = status_req();
    my $bytes = build_frame(payload => substr($req, 0, 40), fin => 0)
        . build_frame(opcode => OP_PING, payload => 'in')
        . build_frame(opcode => OP_CONTINUATION, payload => substr($req, 40));
    $ws->send_raw($bytes, piece => 1, pause => 0.001);
    $f = $ws->read_frame(3);
    ok($f && $f->{opcode} == OP_PONG && $f->{payload} eq 'in',
       '5.7 fragments and a ping written byte by byte: the pong');
    status_ok($ws, $id, '5.7 and the message');
    $ws->close;
}

error_case('5.8 a continuation with no message started', 1002,
           'continuation without a message',
           sub { $_[0]->send_frame(opcode => OP_CONTINUATION, payload => 'x',
                                   fin => 0) });
error_case('5.9 a final continuation with no message started', 1002,
           'continuation without a message',
           sub { $_[0]->send_frame(opcode => OP_CONTINUATION, payload => 'x') });
error_case('5.10 a continuation after a complete message', 1002,
           'continuation without a message',
           sub {
               my $ws = shift;
               $ws->send_text((status_req())[0]);
               $ws->send_frame(opcode => OP_CONTINUATION, payload => 'x');
           });
error_case('5.11 a text frame inside a fragmented message', 1002,
           'new message inside a fragmented one',
           sub {
               my $ws = shift;
               $ws->send_frame(payload => '{"type":', fin => 0);
               $ws->send_text((status_req())[0]);
           });
error_case('5.12 a binary frame inside a fragmented text message', 1002,
           'new message inside a fragmented one',
           sub {
               my $ws = shift;
               $ws->send_frame(payload => '{"type":', fin => 0);
               $ws->send_binary('x');
           });
for my $case ([ 'ping', OP_PING, 'p' ], [ 'pong', OP_PONG, 'p' ],
              [ 'close', OP_CLOSE, pack('n', 1000) ])
{
    my ($name, $op, $payload) = @$case;
    error_case("5.13 a fragmented $name", 1002, 'fragmented control frame',
               sub {
                   my $ws = shift;
                   $ws->send_frame(opcode => $op, payload => $payload, fin => 0);
                   $ws->send_frame(opcode => OP_CONTINUATION, payload => 'x');
               });
}

# --- 6 UTF-8 -------------------------------------------------------------------

{
    my ($ws) = ws_open('/ws');
    # [ name, bytes ]: valid UTF-8, at the edges of each length
    for my $case ([ 'Greek, 2-byte', "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" ],
                  [ 'U+007F', "\x7f" ],
                  [ 'U+0080', "\xc2\x80" ], [ 'U+07FF', "\xdf\xbf" ],
                  [ 'U+0800', "\xe0\xa0\x80" ], [ 'U+D7FF', "\xed\x9f\xbf" ],
                  [ 'U+E000', "\xee\x80\x80" ], [ 'U+FFFD', "\xef\xbf\xbd" ],
                  [ 'U+FFFF', "\xef\xbf\xbf" ],
                  [ 'U+10000', "\xf0\x90\x80\x80" ],
                  [ 'U+1D11E', "\xf0\x9d\x84\x9e" ],
                  [ 'U+10FFFF', "\xf4\x8f\xbf\xbf" ])
    {
        my ($name, $bytes) = @$case;
        my ($req, $id) = status_req(id_bytes => $bytes);
        $ws->send_text($req);
        status_ok($ws, $id, "6.1 valid UTF-8: $name");
    }

    # a code point cut between fragments, and between TCP writes
    my $clef = "\xf0\x9d\x84\x9e";
    my ($req, $id) = status_req(id_bytes => "a${clef}b");
    my $at = index($req, $clef) + 2;
    $ws->send_fragments(OP_TEXT, [ substr($req, 0, $at), substr($req, $at) ]);
    status_ok($ws, $id, '6.2 a 4-byte character cut in two fragments');

    ($req, $id) = status_req(id_bytes => "\xe2\x82\xac$clef");
    $at = index($req, "\xe2\x82\xac");
    $ws->send_fragments(OP_TEXT, [ substr($req, 0, $at + 1),
                                   substr($req, $at + 1, 1),
                                   substr($req, $at + 2, 2),
                                   substr($req, $at + 4, 1),
                                   substr($req, $at + 5, 2),
                                   substr($req, $at + 7) ]);
    status_ok($ws, $id, '6.3 characters cut in six fragments, 1 to 2 bytes each');

    ($req, $id) = status_req(id_bytes => $clef x 4);
    $ws->send_text($req, piece => 3, pause => 0.002);
    status_ok($ws, $id, '6.4 characters cut across TCP writes');
    $ws->close;
}

# [ name, bytes ] placed in the id string of a status request
my @invalid = (
    [ 'a lone continuation byte 0x80', "\x80" ],
    [ 'a lone continuation byte 0xbf', "\xbf" ],
    [ 'a 2-byte start followed by ASCII', "\xc3a" ],
    [ 'overlong "/" in 2 bytes (c0 af)', "\xc0\xaf" ],
    [ 'overlong U+007F in 2 bytes (c1 bf)', "\xc1\xbf" ],
    [ 'overlong "/" in 3 bytes (e0 80 af)', "\xe0\x80\xaf" ],
    [ 'overlong U+07FF in 3 bytes (e0 9f bf)', "\xe0\x9f\xbf" ],
    [ 'overlong "/" in 4 bytes (f0 80 80 af)', "\xf0\x80\x80\xaf" ],
    [ 'overlong U+FFFF in 4 bytes (f0 8f bf bf)', "\xf0\x8f\xbf\xbf" ],
    [ 'surrogate U+D800', "\xed\xa0\x80" ],
    [ 'surrogate U+DBFF', "\xed\xaf\xbf" ],
    [ 'surrogate U+DC00', "\xed\xb0\x80" ],
    [ 'surrogate U+DFFF', "\xed\xbf\xbf" ],
    [ 'a surrogate pair (U+D834 U+DD1E, CESU-8)', "\xed\xa0\xb4\xed\xb4\x9e" ],
    [ 'above U+10FFFF (f4 90 80 80)', "\xf4\x90\x80\x80" ],
    [ 'f5 80 80 80', "\xf5\x80\x80\x80" ],
    [ 'a 5-byte form (f8 88 80 80 80)', "\xf8\x88\x80\x80\x80" ],
    [ 'a 6-byte form (fc 84 80 80 80 80)', "\xfc\x84\x80\x80\x80\x80" ],
    [ 'fe', "\xfe" ],
    [ 'ff', "\xff" ],
);

for my $case (@invalid) {
    my ($name, $bytes) = @$case;
    error_case("6.5 invalid UTF-8: $name", 1007, 'invalid utf-8',
               sub { $_[0]->send_text((status_req(id_bytes => $bytes))[0]) });
}
error_case('6.6 a text message that ends within a character', 1007,
           'text message ends within a utf-8 character',
           sub { $_[0]->send_text((status_req())[0] . "\xe2\x82") });
error_case('6.7 valid fragments, invalid bytes in the last one', 1007,
           'invalid utf-8',
           sub {
               my ($req) = status_req(id_bytes => "\xff");
               my $at = index($req, "\xff") - 2;
               $_[0]->send_fragments(OP_TEXT, [ substr($req, 0, 10),
                                                substr($req, 10, $at - 10),
                                                substr($req, $at) ]);
           });
error_case('6.8 a fragmented message whose last fragment ends within a '
           . 'character', 1007, 'text message ends within a utf-8 character',
           sub {
               my ($req) = status_req();
               $_[0]->send_fragments(OP_TEXT, [ substr($req, 0, 10),
                                                substr($req, 10) . "\xf0\x9d" ]);
           });
# the check runs as the bytes come: the first fragment is refused before
# any other is sent (the test never sends one)
error_case('6.9 invalid bytes in a first fragment: closed before the rest',
           1007, 'invalid utf-8',
           sub { $_[0]->send_frame(payload => "{\"id\":\"\xed\xa0\x80",
                                   fin => 0) });
error_case('6.10 invalid bytes within a frame still arriving', 1007,
           'invalid utf-8',
           sub {
               my $ws = shift;
               my $frame = build_frame(payload => "ab\xc0\xaf" . ('c' x 200));
               $ws->send_raw(substr($frame, 0, 12));   # header and mask (8), 4 bytes
           });

# --- 7 close handling ------------------------------------------------------------

sub close_case {
    my ($name, $send, $want) = @_;
    my ($ws, $r) = ws_open('/ws');
    if (($r->{status} // 0) != 101) {
        fail("$name: the handshake answered 101");
        return;
    }
    $send->($ws);
    my $c = $ws->read_close(3);
    is($c && $c->{code}, $want, "$name: answered with close $want")
        or diag(explain($c));
    ok($ws->wait_eof(3), "$name: then the TCP connection is closed");
    is($ws->after_close, 0, "$name: nothing after the close frame");
    is(scalar($ws->messages_seen) + scalar($ws->pongs), 0,
       "$name: nothing before it either");
}

close_case('7.1 close 1000', sub { $_[0]->send_close(1000, 'bye') }, 1000);
close_case('7.2 close with no payload', sub { $_[0]->send_close(undef) }, 1000);
close_case('7.3 close 1000, the longest reason (123 bytes)',
           sub { $_[0]->send_close(1000, 'r' x 123) }, 1000);
close_case('7.4 close 1000, a UTF-8 reason',
           sub { $_[0]->send_close(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce"
                                         . "\xbc\xce\xb5") }, 1000);
for my $code (1000 .. 1003, 1007 .. 1011, 3000, 3999, 4000, 4999) {
    close_case("7.5 close $code echoed", sub { $_[0]->send_close($code, 'x') },
               $code);
}
close_case('7.6 close written byte by byte',
           sub { $_[0]->send_close(1001, 'away', piece => 1, pause => 0.01) },
           1001);
close_case('7.7 frames after a close are ignored',
           sub {
               $_[0]->send_raw(build_frame(opcode => OP_CLOSE,
                                           payload => pack('n', 1000))
                               . build_frame(opcode => OP_PING, payload => 'p')
                               . build_frame(payload => (status_req())[0]));
           }, 1000);
close_case('7.8 a close between fragments',
           sub {
               my $ws = shift;
               $ws->send_frame(payload => '{"type":', fin => 0);
               $ws->send_close(1000);
           }, 1000);

error_case('7.9 a close with a 1-byte payload', 1002, 'close frame of 1 byte',
           sub { $_[0]->send_frame(opcode => OP_CLOSE, payload => "\x03") });
for my $code (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
              65535)
{
    error_case("7.10 close $code (not allowed on the wire)", 1002,
               'invalid close code',
               sub { $_[0]->send_close($code, 'x') });
}
# the parser refuses an invalid reason with 1007 (ngx_http_streaming_ws.h)
error_case('7.11 a close reason that is not UTF-8', 1007,
           'invalid utf-8 in a close reason',
           sub { $_[0]->send_close(1000, "ok\xff") });
error_case('7.12 a close reason cut within a character', 1007,
           'invalid utf-8 in a close reason',
           sub { $_[0]->send_close(1000, "ok\xe2\x82") });

# the client closes its side without a close frame: the server closes too
{
    my ($ws) = ws_open('/ws');
    $ws->shutdown_write;
    ok($ws->wait_eof(3), '7.13 TCP closed by the client: the server closes');
}

# --- 9 limits --------------------------------------------------------------------

{
    my ($ws, $r) = ws_open('/ws4k');
    is($r->{status}, 101, '9.1 /ws4k: 101');
    my ($req, $id) = status_req(len => 4096);
    $ws->send_text($req);
    status_ok($ws, $id, '9.1 a message of exactly streaming_max_chunk (4k)');
    ($req, $id) = status_req(len => 4096);
    $ws->send_fragments(OP_TEXT, [ unpack('(a1000)*', $req) ]);
    status_ok($ws, $id, '9.2 4k in five fragments');
    $ws->close;
}
error_case('9.3 a message of 4k + 1 bytes', 1009, 'message too big',
           sub { $_[0]->send_text((status_req(len => 4097))[0]) }, '/ws4k');
error_case('9.4 4k + 1 bytes in fragments', 1009, 'message too big',
           sub {
               my ($req) = status_req(len => 4097);
               $_[0]->send_fragments(OP_TEXT, [ unpack('(a2000)*', $req) ]);
           }, '/ws4k');
# refused on the header: the payload is never sent
error_case('9.5 a header announcing 1 GB', 1009, 'message too big',
           sub { $_[0]->send_raw(substr(build_frame(payload => 'x',
                                                   declared_length => 1 << 30,
                                                   length_bytes => 8),
                                        0, 14)) }, '/ws4k');
error_case('9.6 a header announcing 4k + 1 bytes', 1009, 'message too big',
           sub { $_[0]->send_raw(substr(build_frame(payload => 'x',
                                                   declared_length => 4097),
                                        0, 8)) }, '/ws4k');

# --- 10 masking, binary messages -------------------------------------------------

error_case('10.1 an unmasked text frame', 1002, 'unmasked frame',
           sub { $_[0]->send_frame(payload => (status_req())[0], mask => 0) });
error_case('10.2 an unmasked ping', 1002, 'unmasked frame',
           sub { $_[0]->send_frame(opcode => OP_PING, payload => 'p', mask => 0) });
error_case('10.3 an unmasked continuation', 1002, 'unmasked frame',
           bad_continuation('1}', mask => 0));
error_case('10.4 a binary message', 1003, qr/binary/i,
           sub { $_[0]->send_binary((status_req())[0]) });
error_case('10.5 a fragmented binary message', 1003, qr/binary/i,
           sub { $_[0]->send_fragments(OP_BINARY, [ "\x01\x02", "\x03" ]) });
error_case('10.6 an empty binary message', 1003, qr/binary/i,
           sub { $_[0]->send_binary('') });

# --- the stream is untouched, the server still answers -----------------------------

{
    my ($ws) = ws_open('/ws');
    my ($req, $id) = status_req();
    $ws->send_text($req);
    status_ok($ws, $id, 'after all of that, a new socket is answered');
    $ws->send_close(1000);
    $ws->read_close(3);
}

$t->stop;
done_testing;
