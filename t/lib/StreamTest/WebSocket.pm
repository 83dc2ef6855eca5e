package StreamTest::WebSocket;

# A raw WebSocket (RFC 6455) client for the tests: a handshake with any
# headers added, changed or left out; frames built bit by bit (opcode, FIN,
# RSV, mask, length encoding) and written whole, in pieces with pauses or
# byte by byte; an incremental reader of the server's frames that checks
# them.  Core Perl only.  Every read has a timeout (times the timeout
# factor).  Connecting, writing and reading the socket: StreamTest::Socket,
# shared with StreamTest::Conn.  Documentation: POD at the end of this file.

use strict;
use warnings;

use parent 'StreamTest::Socket';

use Carp qw(croak);
use Digest::SHA qw(sha1);
use Exporter 'import';
use MIME::Base64 qw(encode_base64);
use Socket qw(IPPROTO_TCP TCP_NODELAY SOL_SOCKET SO_RCVBUF);
use Test::More ();
use Time::HiRes qw(time sleep);

use StreamTest::Parse qw(parse_response_head json_decode json_encode);

our $VERSION = '1.00';

use constant {
    OP_CONTINUATION => 0x0,
    OP_TEXT         => 0x1,
    OP_BINARY       => 0x2,
    OP_CLOSE        => 0x8,
    OP_PING         => 0x9,
    OP_PONG         => 0xa,
};

our @EXPORT_OK = qw(
    OP_CONTINUATION OP_TEXT OP_BINARY OP_CLOSE OP_PING OP_PONG
    accept_key random_key build_frame valid_utf8 require_upgrade
);
our %EXPORT_TAGS = (
    op => [ qw(OP_CONTINUATION OP_TEXT OP_BINARY OP_CLOSE OP_PING OP_PONG) ],
);

# RFC 6455, 1.3
use constant GUID => '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

# ---------------------------------------------------------------------------
# Plain functions
# ---------------------------------------------------------------------------

# The Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
sub accept_key {
    my ($key) = @_;
    my $a = encode_base64(sha1($key . GUID), '');
    return $a;
}

# A fresh Sec-WebSocket-Key: the base64 of 16 random bytes.
sub random_key {
    return encode_base64(join('', map { chr int rand 256 } 1 .. 16), '');
}

sub _bytes {
    my ($what, $s) = @_;
    $s //= '';
    if (utf8::is_utf8($s)) {
        my $copy = $s;
        utf8::downgrade($copy, 1)
            or croak "$what: wide characters (encode the text first)";
        return $copy;
    }
    return $s;
}

# Is $bytes UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
# above U+10FFFF)?  A loop of single matches: a quantified group would hit
# the regex engine's recursion limit on long strings.
sub valid_utf8 {
    my ($s) = @_;
    pos($s) = 0;
    while (pos($s) < length $s) {
        $s =~ /\G(?:[\x00-\x7f]+
                   |[\xc2-\xdf][\x80-\xbf]
                   |\xe0[\xa0-\xbf][\x80-\xbf]
                   |[\xe1-\xec\xee\xef][\x80-\xbf]{2}
                   |\xed[\x80-\x9f][\x80-\xbf]
                   |\xf0[\x90-\xbf][\x80-\xbf]{2}
                   |[\xf1-\xf3][\x80-\xbf]{3}
                   |\xf4[\x80-\x8f][\x80-\xbf]{2})/gcx
            or return 0;
    }
    return 1;
}

# build_frame(%o): the bytes of one frame.
#   opcode  (default OP_TEXT), payload (bytes, default ''), fin (default 1),
#   rsv     (3 bits: 4 = RSV1, 2 = RSV2, 1 = RSV3; default 0),
#   mask    (default 1), mask_key (4 bytes; default random),
#   length_bytes (0, 2 or 8: the length's encoding; default the shortest),
#   declared_length (the length the header announces; default the payload's)
sub build_frame {
    my (%o) = @_;
    my $op      = $o{opcode} // OP_TEXT;
    my $payload = _bytes('build_frame', $o{payload});
    my $fin     = $o{fin} // 1;
    my $rsv     = $o{rsv} // 0;
    my $masked  = $o{mask} // 1;
    my $len     = $o{declared_length} // length $payload;

    my $out = chr((($fin ? 1 : 0) << 7) | (($rsv & 7) << 4) | ($op & 0x0f));

    my $form = $o{length_bytes};
    $form //= $len < 126 ? 0 : $len < 65536 ? 2 : 8;
    my $mbit = $masked ? 0x80 : 0;
    if ($form == 0) {
        croak "build_frame: length $len does not fit 7 bits" if $len > 125;
        $out .= chr($mbit | $len);
    }
    elsif ($form == 2) {
        croak "build_frame: length $len does not fit 16 bits" if $len > 65535;
        $out .= chr($mbit | 126) . pack('n', $len);
    }
    elsif ($form == 8) {
        $out .= chr($mbit | 127) . pack('NN', int($len / 4294967296),
                                        $len % 4294967296);
    }
    else {
        croak "build_frame: length_bytes must be 0, 2 or 8";
    }

    if ($masked) {
        my $key = defined $o{mask_key} ? _bytes('mask_key', $o{mask_key})
                : join('', map { chr int rand 256 } 1 .. 4);
        croak 'build_frame: mask_key must be 4 bytes' unless length $key == 4;
        $out .= $key;
        my $n = length $payload;
        $payload ^= substr($key x (int($n / 4) + 1), 0, $n) if $n;
    }
    return $out . $payload;
}

# require_upgrade($t, $response, $name): is($response->{status}, 101, $name)
# for a test's first handshake; when it fails the endpoint does not answer,
# and the test ends there ($t stopped, done_testing, exit).
sub require_upgrade {
    my ($t, $res, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return 1 if Test::More::is($res->{status}, 101, $name // 'handshake: 101');
    Test::More::diag(Test::More::explain($res));
    Test::More::diag('the WebSocket endpoint does not answer: nothing more to test');
    $t->stop;
    Test::More::done_testing();
    exit;
}

# ---------------------------------------------------------------------------
# Construction and handshake
# ---------------------------------------------------------------------------

sub _factor {
    return $StreamTest::VERSION ? StreamTest::timeout_factor()
         : $ENV{TEST_NGINX_TIMEOUT_FACTOR} || 1;
}

# StreamTest::WebSocket->new(port => N, host => '127.0.0.1', timeout => 5,
#                            factor => F, rcvbuf => bytes)
sub new {
    my ($class, %o) = @_;
    croak 'new: port is required' unless $o{port};
    my $self = bless {
        host      => $o{host} // '127.0.0.1',
        port      => $o{port},
        timeout   => $o{timeout} // 5,
        factor    => $o{factor} || _factor(),
        inbuf     => '',
        eof       => 0,
        reset     => 0,
        timed_out => 0,
        open      => 0,
        auto_pong => $o{auto_pong} ? 1 : 0,
        pings     => [],
        pongs     => [],
        frames    => 0,
        close     => undef,
        violations => [],
        messages  => [],    # data messages read while looking for a close
    }, $class;

    my $sock = $self->_connect;
    # every write goes out at once: pieces written with pauses in between
    # reach the server as separate reads
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $o{rcvbuf}) if $o{rcvbuf};
    return $self;
}

# StreamTest::WebSocket->open($t, $path, %o): connects to $t's port (or
# port => ...) and performs the handshake; returns ($ws, $response).
sub open {
    my ($class, $t, $path, %o) = @_;
    my %new = (port => $o{port} // $t->port, timeout => $o{timeout} // 5,
               factor => $t->{factor});
    $new{$_} = delete $o{$_} for grep { exists $o{$_} } qw(rcvbuf auto_pong);
    delete @o{qw(port timeout)};
    my $ws = $class->new(%new);
    my $res = $ws->handshake($path, %o);
    return ($ws, $res);
}

sub _header_list {
    my ($h) = @_;
    return () unless defined $h;
    return map { [ $_, $h->{$_} ] } sort keys %$h if ref $h eq 'HASH';
    croak 'headers must be a hash or array reference' unless ref $h eq 'ARRAY';
    croak 'headers: odd number of elements' if @$h % 2;
    return map { [ $h->[ 2 * $_ ], $h->[ 2 * $_ + 1 ] ] } 0 .. $#$h / 2;
}

# handshake($path, %o): sends the opening request and reads the answer.
#   headers  hash or array of extra headers; a name of a default header
#            replaces it, an undef value leaves it out
#   key      the Sec-WebSocket-Key (undef: no key header); default random
#   version  Sec-WebSocket-Version (undef: none); default 13
#   method   default GET; http10 => 1 for an HTTP/1.0 request line
#   raw_request  bytes sent as they are instead
#   timeout
sub handshake {
    my ($self, $path, %o) = @_;
    my $key = exists $o{key} ? $o{key} : random_key();
    my $version = exists $o{version} ? $o{version} : 13;
    my $req = $o{raw_request};

    if (!defined $req) {
        my @h = ([ 'Host', 'localhost' ], [ 'Upgrade', 'websocket' ],
                 [ 'Connection', 'Upgrade' ],
                 [ 'Sec-WebSocket-Version', $version ],
                 [ 'Sec-WebSocket-Key', $key ]);
        for my $u (_header_list($o{headers})) {
            my ($i) = grep { lc $h[$_][0] eq lc $u->[0] } 0 .. $#h;
            if (defined $i) { $h[$i][1] = $u->[1] } else { push @h, $u }
        }
        $req = ($o{method} // 'GET') . " $path HTTP/"
             . ($o{http10} ? '1.0' : '1.1') . "\r\n";
        for my $pair (@h) {
            my ($k, $v) = @$pair;
            next unless defined $v;
            $req .= "$k: $_\r\n" for ref $v eq 'ARRAY' ? @$v : ($v);
        }
        $req .= "\r\n";
    }
    $self->{key} = $key;

    my $deadline = $self->_deadline($o{timeout});
    my %res = (status => undef, headers => {}, header_list => [], body => '');
    if (!$self->send_raw($req, timeout => $o{timeout})) {
        $res{error} = 'write failed: ' . ($self->{write_error} // 'timeout');
        return $self->{response} = \%res;
    }

    my $i;
    while (($i = index($self->{inbuf}, "\r\n\r\n")) < 0) {
        if (!$self->_fill($deadline)) {
            $res{error} = $self->{eof} ? 'connection closed before the head'
                                       : 'timeout before the head';
            $res{raw} = $self->{inbuf};
            return $self->{response} = \%res;
        }
    }
    my $head = substr($self->{inbuf}, 0, $i);
    substr($self->{inbuf}, 0, $i + 4) = '';
    my $h = parse_response_head($head);
    if (!$h) {
        $res{error} = 'not an HTTP response';
        $res{raw} = $head;
        return $self->{response} = \%res;
    }
    %res = (%res, %$h, head => $head);

    if ($h->{status} == 101) {
        $res{expected_accept} = defined $key ? accept_key($key) : undef;
        $res{accept_ok} = defined $key
            && ($h->{headers}{'sec-websocket-accept'} // '') eq accept_key($key)
            ? 1 : 0;
        $self->{open} = 1;
        return $self->{response} = \%res;
    }

    # not upgraded: the body, by its framing, or up to EOF
    my $te = $h->{headers}{'transfer-encoding'} // '';
    my $cl = $h->{headers}{'content-length'};
    if ($te =~ /chunked/i) {
        my $st = StreamTest::Parse::chunked_new();
        my $body = '';
        my $done = StreamTest::Parse::chunked_feed($st, $self->{inbuf}, \$body);
        $self->{inbuf} = '';
        while (!$done) {
            last unless $self->_fill($deadline);
            $done = StreamTest::Parse::chunked_feed($st, $self->{inbuf}, \$body);
            $self->{inbuf} = '';
        }
        $res{body} = $body;
        $res{complete} = $done ? 1 : 0;
    }
    elsif (defined $cl && $cl =~ /\A\d+\z/) {
        while (length $self->{inbuf} < $cl) {
            last unless $self->_fill($deadline);
        }
        $res{body} = substr($self->{inbuf}, 0, $cl);
        $res{complete} = length $res{body} == $cl ? 1 : 0;
        substr($self->{inbuf}, 0, length $res{body}) = '';
    }
    elsif ($o{method} && $o{method} eq 'HEAD' || $h->{status} == 204
           || $h->{status} == 304)
    {
        $res{complete} = 1;
    }
    else {
        1 while $self->_fill($deadline);
        $res{body} = $self->{inbuf};
        $self->{inbuf} = '';
        $res{complete} = $self->{eof} ? 1 : 0;
    }
    $res{json} = eval { json_decode($res{body}) } if length $res{body};
    return $self->{response} = \%res;
}

# ---------------------------------------------------------------------------
# Accessors
# ---------------------------------------------------------------------------

sub response   { $_[0]{response} }
sub is_open    { $_[0]{open} }
sub reset      { $_[0]{reset} }
sub close_frame { $_[0]{close} }
sub pings      { @{ $_[0]{pings} } }
sub pongs      { @{ $_[0]{pongs} } }
sub violations { @{ $_[0]{violations} } }
sub local_port { $_[0]{sock} ? $_[0]{sock}->sockport : undef }

sub auto_pong {
    my ($self, @v) = @_;
    $self->{auto_pong} = $v[0] ? 1 : 0 if @v;
    return $self->{auto_pong};
}

# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

# send_raw($bytes, %o): writes bytes, whole or in pieces.
#   pieces => N      N pieces of about equal size
#   piece  => size   pieces of that many bytes (1: byte by byte)
#   split_at => [ offsets ]   pieces cut at these offsets
#   pause  => seconds between pieces (default 0.005 when cut)
#   timeout
# False when the peer closed or the timeout expired.
sub send_raw {
    my ($self, $bytes, %o) = @_;
    $bytes = _bytes('send_raw', $bytes);
    my @pieces = ($bytes);
    my $len = length $bytes;
    if ($o{split_at}) {
        my @at = sort { $a <=> $b } grep { $_ > 0 && $_ < $len } @{ $o{split_at} };
        my $prev = 0;
        @pieces = ();
        for my $at (@at, $len) {
            push @pieces, substr($bytes, $prev, $at - $prev);
            $prev = $at;
        }
    }
    elsif ($o{piece} || $o{pieces}) {
        my $size = $o{piece} || int(($len + $o{pieces} - 1) / $o{pieces}) || 1;
        @pieces = map { substr($bytes, $_ * $size, $size) }
                  0 .. int(($len - 1) / $size);
    }
    my $pause = $o{pause} // (@pieces > 1 ? 0.005 : 0);
    my $deadline = $self->_deadline($o{timeout});
    for my $i (0 .. $#pieces) {
        sleep $pause if $i && $pause;
        return 0 unless $self->_write($pieces[$i], $deadline);
    }
    return 1;
}

# send_frame(%o): build_frame(%o), written as send_raw(%o) writes.
sub send_frame {
    my ($self, %o) = @_;
    my %f = map { $_ => $o{$_} } grep { exists $o{$_} }
            qw(opcode payload fin rsv mask mask_key length_bytes
               declared_length);
    my %w = map { $_ => $o{$_} } grep { exists $o{$_} }
            qw(pieces piece split_at pause timeout);
    return $self->send_raw(build_frame(%f), %w);
}

sub send_text   { my ($s, $p, %o) = @_; $s->send_frame(%o, opcode => OP_TEXT,   payload => $p) }
sub send_binary { my ($s, $p, %o) = @_; $s->send_frame(%o, opcode => OP_BINARY, payload => $p) }
sub send_ping   { my ($s, $p, %o) = @_; $s->send_frame(%o, opcode => OP_PING,   payload => $p // '') }
sub send_pong   { my ($s, $p, %o) = @_; $s->send_frame(%o, opcode => OP_PONG,   payload => $p // '') }

# send_json($value, %o): one text frame with the value as JSON.
sub send_json {
    my ($self, $v, %o) = @_;
    return $self->send_text(json_encode($v), %o);
}

# send_close($code, $reason, %o): a close frame; no code: empty payload.
sub send_close {
    my ($self, $code, $reason, %o) = @_;
    my $payload = defined $code ? pack('n', $code) . _bytes('reason', $reason)
                                : '';
    return $self->send_frame(%o, opcode => OP_CLOSE, payload => $payload);
}

# send_fragments($opcode, [ @parts ], %o): one message as a frame per part
# (the first with $opcode, the others continuations, FIN on the last),
# written one by one with pause => seconds (default 0.005) in between.
# Frame options (rsv, mask, ...) apply to every frame.
sub send_fragments {
    my ($self, $op, $parts, %o) = @_;
    my $pause = delete $o{pause} // 0.005;
    for my $i (0 .. $#$parts) {
        sleep $pause if $i && $pause;
        $self->send_frame(%o, opcode => $i ? OP_CONTINUATION : $op,
                          payload => $parts->[$i],
                          fin => $i == $#$parts ? 1 : 0) or return 0;
    }
    return 1;
}

# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------

# every sysread (StreamTest::Socket::_fill) asks for up to 256k
use constant READ_SIZE => 262144;

sub _violation {
    my ($self, $what, $f) = @_;
    push @{ $self->{violations} }, $what;
    local $Test::Builder::Level = $Test::Builder::Level + 3;
    Test::More::ok(0, "WebSocket: the server's frames follow RFC 6455: $what");
    Test::More::diag(sprintf('frame: opcode 0x%x, fin %d, rsv %d, masked %d,'
                             . ' %d bytes', $f->{opcode}, $f->{fin}, $f->{rsv},
                             $f->{masked}, length $f->{payload}));
}

# One whole frame from inbuf, or undef if it is not all there yet.
sub _take_frame {
    my ($self) = @_;
    my $in = \$self->{inbuf};
    return undef if length $$in < 2;
    my ($b0, $b1) = unpack('CC', $$in);
    my $masked = $b1 & 0x80 ? 1 : 0;
    my $len = $b1 & 0x7f;
    my $hlen = 2;
    if ($len == 126) {
        return undef if length $$in < 4;
        $len = unpack('n', substr($$in, 2, 2));
        $hlen = 4;
    }
    elsif ($len == 127) {
        return undef if length $$in < 10;
        my ($hi, $lo) = unpack('NN', substr($$in, 2, 8));
        $len = $hi * 4294967296 + $lo;
        $hlen = 10;
    }
    $hlen += 4 if $masked;
    return undef if length $$in < $hlen + $len;
    my $payload = substr($$in, $hlen, $len);
    if ($masked) {
        my $key = substr($$in, $hlen - 4, 4);
        $payload ^= substr($key x (int($len / 4) + 1), 0, $len) if $len;
    }
    substr($$in, 0, $hlen + $len) = '';
    my $f = {
        opcode  => $b0 & 0x0f,
        fin     => $b0 & 0x80 ? 1 : 0,
        rsv     => ($b0 >> 4) & 7,
        masked  => $masked,
        payload => $payload,
        header_length => $hlen,
    };
    $self->{frames}++;

    $self->_violation('a server frame is masked', $f) if $masked;
    $self->_violation('RSV bits set (no extension was negotiated)', $f)
        if $f->{rsv};
    $self->_violation('a reserved opcode', $f)
        if ($f->{opcode} >= 3 && $f->{opcode} <= 7) || $f->{opcode} >= 0xb;
    if ($f->{opcode} >= 8) {
        $self->_violation('a control frame over 125 bytes', $f) if $len > 125;
        $self->_violation('a fragmented control frame', $f) unless $f->{fin};
    }
    if ($f->{opcode} == OP_CLOSE) {
        $self->_violation('a close frame of 1 byte', $f) if $len == 1;
        if ($len >= 2) {
            $f->{code} = unpack('n', $payload);
            $f->{reason} = substr($payload, 2);
            $self->_violation("close code $f->{code} is not allowed on the wire", $f)
                unless _close_code_valid($f->{code});
            $self->_violation('a close reason that is not UTF-8', $f)
                unless valid_utf8($f->{reason});
        }
    }
    return $f;
}

# Close codes an endpoint may send (RFC 6455 7.4, IANA registry)
sub _close_code_valid {
    my ($c) = @_;
    return ($c >= 1000 && $c <= 1003) || ($c >= 1007 && $c <= 1014)
        || ($c >= 3000 && $c <= 4999);
}

# read_frame($timeout): the next frame, as it came (pings are not
# answered here):
#   { opcode, fin, rsv, masked, payload, code?, reason? (close) }
# undef on timeout or EOF (see timed_out / eof).
sub read_frame {
    my ($self, $timeout) = @_;
    return $self->_frame_by($self->_deadline($timeout));
}

sub _frame_by {
    my ($self, $deadline) = @_;
    while (1) {
        my $f = $self->_take_frame;
        return $f if $f;
        return undef unless $self->_fill($deadline);
    }
}

# A control frame met while reading messages: recorded; a ping answered
# when auto_pong is on; a close remembered.
sub _control {
    my ($self, $f) = @_;
    if ($f->{opcode} == OP_PING) {
        push @{ $self->{pings} }, { payload => $f->{payload}, at => time };
        $self->send_pong($f->{payload}) if $self->{auto_pong} && !$self->{close};
    }
    elsif ($f->{opcode} == OP_PONG) {
        push @{ $self->{pongs} }, { payload => $f->{payload}, at => time };
    }
    elsif ($f->{opcode} == OP_CLOSE) {
        $self->{close} = { code => $f->{code}, reason => $f->{reason},
                           payload => $f->{payload}, at => time };
    }
}

# read_message($timeout): the next data message, its fragments joined:
#   { opcode => OP_TEXT | OP_BINARY, payload, frames }
# Control frames on the way are recorded (pings, pongs, close_frame).
# undef on timeout, EOF or a close frame.
sub read_message {
    my ($self, $timeout) = @_;
    return $self->_message_by($self->_deadline($timeout));
}

sub _message_by {
    my ($self, $deadline) = @_;
    return undef if $self->{close};
    my $msg;
    while (1) {
        my $f = $self->_frame_by($deadline) or return undef;
        if ($f->{opcode} >= 8) {
            $self->_control($f);
            return undef if $self->{close};
            next;
        }
        if ($f->{opcode} == OP_CONTINUATION) {
            if (!$msg) {
                $self->_violation('a continuation without a message', $f);
                next;
            }
            $msg->{payload} .= $f->{payload};
            $msg->{frames}++;
        }
        else {
            $self->_violation('a new message inside a fragmented one', $f)
                if $msg;
            $msg = { opcode => $f->{opcode}, payload => $f->{payload},
                     frames => 1 };
        }
        next unless $f->{fin};
        $self->_violation('a text message that is not UTF-8', $f)
            if $msg->{opcode} == OP_TEXT && !valid_utf8($msg->{payload});
        return $msg;
    }
}

# read_json($timeout): the next text message, decoded; undef on timeout,
# EOF or close.  A text message that is not JSON is a failed assertion.
sub read_json {
    my ($self, $timeout) = @_;
    return $self->_json_by($self->_deadline($timeout));
}

sub _json_by {
    my ($self, $deadline) = @_;
    while (1) {
        my $m = $self->_message_by($deadline) or return undef;
        if ($m->{opcode} != OP_TEXT) {
            local $Test::Builder::Level = $Test::Builder::Level + 2;
            Test::More::ok(0, 'WebSocket: the server sends text messages only');
            next;
        }
        my $v = eval { json_decode($m->{payload}) };
        return $v if defined $v;
        local $Test::Builder::Level = $Test::Builder::Level + 2;
        Test::More::ok(0, 'WebSocket: a text message of the server is JSON');
        Test::More::diag("message: $m->{payload}\nerror: $@");
    }
}

# read_jsons($n, $timeout): up to $n decoded messages; fewer on timeout,
# EOF or close.
sub read_jsons {
    my ($self, $n, $timeout) = @_;
    my $deadline = $self->_deadline($timeout);
    my @out;
    while (@out < $n) {
        my $v = $self->_json_by($deadline) // last;
        push @out, $v;
    }
    return @out;
}

# read_json_until($predicate, $timeout): reads messages until one
# satisfies $predicate->($msg); returns ($that_message, \@every_message_read
# including it), or (undef, \@read) on timeout, EOF or close.
sub read_json_until {
    my ($self, $pred, $timeout) = @_;
    my $deadline = $self->_deadline($timeout);
    my @seen;
    while (1) {
        my $v = $self->_json_by($deadline);
        return (undef, \@seen) unless defined $v;
        push @seen, $v;
        local $_ = $v;
        return ($v, \@seen) if $pred->($v);
    }
}

# read_close($timeout): reads until a close frame; returns { code, reason,
# payload, at, messages => [ data messages read before it ] }, or undef on
# timeout or EOF without one.  The messages also stay in messages_seen.
sub read_close {
    my ($self, $timeout) = @_;
    my $deadline = $self->_deadline($timeout);
    my @msgs;
    until ($self->{close}) {
        my $m = $self->_message_by($deadline);
        if ($m) {
            push @msgs, $m;
            next;
        }
        last unless $self->{close};
    }
    push @{ $self->{messages} }, @msgs;
    return undef unless $self->{close};
    return { %{ $self->{close} }, messages => \@msgs };
}

sub messages_seen { @{ $_[0]{messages} } }

# wait_eof($timeout): reads (and keeps counting, not returning) whatever
# comes until the server closes the connection; 1 on EOF (or reset), 0 on
# timeout.  Frames that came are parsed and recorded: after_close counts
# those that came after a close frame.
sub wait_eof {
    my ($self, $timeout) = @_;
    my $deadline = $self->_deadline($timeout);
    while (1) {
        while (my $f = $self->_take_frame) {
            if ($self->{close}) {
                $self->{after_close}++;
                next;
            }
            $self->_control($f) if $f->{opcode} >= 8;
        }
        my $n = $self->_fill($deadline);
        return 1 if defined $n && $n == 0;
        return 0 unless defined $n;
    }
}

# frames that came after the server's close frame (counted by wait_eof)
sub after_close { $_[0]{after_close} // 0 }

# Unparsed bytes (an incomplete frame, or bytes after a refusal).
sub pending { $_[0]{inbuf} }

1;

__END__

=head1 NAME

StreamTest::WebSocket - raw WebSocket client for the tests of
ngx_http_streaming_module

=head1 SYNOPSIS

    use lib 't/lib';
    use StreamTest;
    use StreamTest::WebSocket qw(:op);

    my ($ws, $res) = StreamTest::WebSocket->open($t, '/ws?id=s1&from=0');
    is($res->{status}, 101);
    ok($res->{accept_ok}, 'Sec-WebSocket-Accept matches the key');

    $ws->send_json({ type => 'request', id => 'r1',
                     payload => { action => 'status',
                                  params => { streamId => 's1' } } });
    my $m = $ws->read_json(5);

    # a frame header written byte by byte, the payload in 10 pieces
    $ws->send_frame(opcode => OP_TEXT, payload => $json, piece => 1);
    $ws->send_text($json, pieces => 10, pause => 0.01);

    # protocol errors
    $ws->send_frame(opcode => OP_TEXT, payload => 'x', rsv => 4);
    my $close = $ws->read_close(5);
    is($close->{code}, 1002);
    ok($ws->wait_eof(5), 'then the TCP connection is closed');

=head1 DESCRIPTION

A WebSocket client with full control over what it sends, for protocol
conformance tests, and a strict reader of what the server sends.  Every
read takes a timeout in seconds (default: the connection's C<timeout>,
default 5), multiplied by C<StreamTest::timeout_factor()>.  Core Perl only
(L<Digest::SHA>, L<MIME::Base64>, L<IO::Socket::IP>, L<JSON::PP> through
L<StreamTest::Parse>).

Every frame the server sends is checked: not masked, no RSV bit, no
reserved opcode, control frames unfragmented and at most 125 bytes, no
1-byte close payload, a close code allowed on the wire and a UTF-8 close
reason, continuations only inside a message, text messages in UTF-8.  A frame that
breaks one of these rules is a failed assertion (C<WebSocket: the server's
frames follow RFC 6455: ...>) with a C<diag> of the frame, and is listed by
C<violations>; no assertion is emitted otherwise.

The socket layer (connecting, C<_write>, C<_fill>, C<sock>, C<eof>,
C<timed_out>, C<shutdown_write>, C<close>) is inherited from
L<StreamTest::Socket>, which L<StreamTest::Conn> shares; only the reading
size differs (256k a read here).

=head1 FUNCTIONS

Exported on request (C<:op> exports the opcodes).

=over

=item OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG

=item accept_key($key)

C<base64(SHA-1($key . "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))>.

=item random_key()

The base64 of 16 random bytes.

=item valid_utf8($bytes)

Whether the bytes are UTF-8 as RFC 3629 defines it: no overlong forms, no
surrogates, nothing above U+10FFFF (noncharacters such as U+FFFF are
valid).

=item build_frame(%options)

The bytes of one frame.  Options: C<opcode> (default C<OP_TEXT>),
C<payload> (bytes; a string with wide characters dies), C<fin> (default
1), C<rsv> (three bits: 4 = RSV1, 2 = RSV2, 1 = RSV3), C<mask> (default 1;
0 sends an unmasked frame), C<mask_key> (4 bytes, default random),
C<length_bytes> (0, 2 or 8: the length in 7 bits, 16 bits or 64 bits,
for lengths not in their shortest form), C<declared_length> (the length the
header announces, when it should differ from the payload's, e.g. a header
announcing a huge frame).

=item require_upgrade($t, $response, $name)

For a test's first handshake: C<is($response-E<gt>{status}, 101, $name)>
(C<$name> defaults to C<handshake: 101>), true when it passed.  When it
failed, the endpoint does not answer and nothing more can be tested: the
response is shown with C<diag>, C<$t> is stopped, C<done_testing> is
called and the test exits.

    my ($ws, $r) = StreamTest::WebSocket->open($t, '/ws');
    require_upgrade($t, $r);

=back

=head1 METHODS

=head2 Connecting

=over

=item StreamTest::WebSocket->new(port => $port, %options)

Connects to C<host> (default 127.0.0.1) and C<port>; dies when the
connection is refused.  Options: C<timeout> (default 5), C<factor>
(default C<StreamTest::timeout_factor()>), C<rcvbuf> (C<SO_RCVBUF>, for
clients that should not take much), C<auto_pong>.  C<TCP_NODELAY> is set,
so that pieces written with pauses in between reach the server as separate
reads.

=item StreamTest::WebSocket->open($t, $path, %options)

C<new> on C<< $t->port >> (or C<port>), then C<handshake>; returns
C<($ws, $response)>.  C<timeout>, C<rcvbuf> and C<auto_pong> go to C<new>,
the rest to C<handshake>.

=item $ws->handshake($path, %options)

Sends the opening request

    GET $path HTTP/1.1
    Host: localhost
    Upgrade: websocket
    Connection: Upgrade
    Sec-WebSocket-Version: 13
    Sec-WebSocket-Key: <random>

and reads the answer.  Options: C<headers> (hash or array reference of
name/value pairs; a default header of the same name, any case, is replaced
by it; an undef value leaves it out; an array reference value repeats the
header), C<key> (the key; C<undef>: no key header), C<version> (C<undef>:
no version header), C<method>, C<http10> (an HTTP/1.0 request line),
C<raw_request> (bytes sent instead), C<timeout>.  Returns

    {
        status, reason, version, headers => { lc-name => value },
        header_list => [ [ Name => value ], ... ],
        accept_ok => 1,            # 101 only: Sec-WebSocket-Accept is right
        expected_accept => '...',  # 101 only
        body, json,                # not 101: the body (by Content-Length,
                                   # chunked, or up to EOF) and its JSON
        complete,                  # not 101: the body is all there
        error => '...',            # no (valid) answer
    }

After a 101, bytes that came with the head are kept for the frame reader.

=back

=head2 Writing

Each method returns true, or false when the write failed (the peer closed:
C<EPIPE>, C<ECONNRESET>) or its timeout expired.

=over

=item $ws->send_raw($bytes, %options)

Writes bytes.  C<pieces =E<gt> N> cuts them in N pieces of about equal
size, C<piece =E<gt> SIZE> in pieces of SIZE bytes (1: byte by byte),
C<split_at =E<gt> [ offsets ]> at those offsets; C<pause> is the sleep
between two pieces (default 0.005 s when cut).  C<timeout> bounds the
whole write.

=item $ws->send_frame(%options)

C<build_frame> with the frame options, written as C<send_raw> writes with
the writing options (C<pieces>, C<piece>, C<split_at>, C<pause>,
C<timeout>).

=item $ws->send_text($bytes, %o), send_binary, send_ping($payload, %o), send_pong

One frame of that opcode; C<%o> as C<send_frame> (so a text frame can have
C<fin =E<gt> 0>, C<rsv>, C<mask =E<gt> 0>, C<pieces>...).

=item $ws->send_json($value, %o)

A text frame with the value as JSON (UTF-8).

=item $ws->send_close($code, $reason, %o)

A close frame: the code in two bytes and the reason bytes; with an undef
code, an empty payload.  For a 1-byte payload use
C<send_frame(opcode =E<gt> OP_CLOSE, payload =E<gt> "\x03")>.

=item $ws->send_fragments($opcode, [ @parts ], %o)

One message as one frame per part: the first of C<$opcode>, the others
continuations, FIN on the last only.  C<pause> between frames (default
0.005 s); other options apply to every frame.

=back

=head2 Reading

=over

=item $ws->read_frame($timeout)

The next frame as it came: C<{ opcode, fin, rsv, masked, payload,
header_length }>, plus C<code> and C<reason> for a close frame with a
payload.  Pings are not answered here.  C<undef> on timeout (C<timed_out>
is set) or EOF (C<eof>).

=item $ws->read_message($timeout)

The next data message with its fragments joined: C<{ opcode, payload,
frames }>.  Control frames on the way are recorded: pings (answered with a
pong of the same payload when C<auto_pong> is on), pongs, and a close
frame, after which it returns undef.  C<undef> on timeout, EOF or close.

=item $ws->read_json($timeout), $ws->read_jsons($n, $timeout)

The next text message(s) decoded as JSON (character strings).  A binary
message or a text message that is not JSON is a failed assertion and is
skipped.

=item $ws->read_json_until(sub { ... }, $timeout)

Reads messages until one satisfies the predicate (called with the message,
also in C<$_>); returns C<($message, \@all_read)> or C<(undef, \@all_read)>.

=item $ws->read_close($timeout)

Reads until a close frame; returns C<{ code, reason, payload, at,
messages }> (C<code> undef for an empty close payload; C<messages>: the
data messages read before it, also kept in C<messages_seen>), or undef
when the timeout expired or the connection ended without one.

=item $ws->wait_eof($timeout)

Reads until the server closes the TCP connection: 1 (EOF or reset), or 0
when the timeout expired.  Frames that arrive meanwhile are parsed;
C<after_close> counts those that came after the server's close frame.

=back

=head2 State

=over

=item $ws->response

The hash C<handshake> returned.

=item $ws->close_frame

The server's close frame seen by C<read_message> and friends: C<{ code,
reason, payload, at }>, or undef.

=item $ws->pings, $ws->pongs

Lists of C<{ payload, at }> of the pings and pongs read by
C<read_message> and friends (C<at>: C<Time::HiRes::time> of arrival).

=item $ws->auto_pong($on)

Answer the server's pings (off unless C<new> got C<auto_pong>).

=item $ws->violations

The RFC 6455 rules the server's frames broke (each also a failed
assertion).

=item $ws->eof, $ws->reset, $ws->timed_out, $ws->is_open, $ws->pending,
$ws->after_close, $ws->messages_seen, $ws->local_port, $ws->sock

=item $ws->shutdown_write, $ws->close

Half-close (FIN to the server) and close.

=back

=cut
