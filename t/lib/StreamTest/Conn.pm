package StreamTest::Conn;

# A raw HTTP/1.x client connection with an incremental response reader.
# Created by StreamTest->stream / StreamTest->http; see the POD in
# StreamTest.pm for the documented interface.  Connecting, writing and
# reading the socket: StreamTest::Socket.

use strict;
use warnings;

use parent 'StreamTest::Socket';

use Time::HiRes qw(time);

use StreamTest::Parse qw(parse_response_head sse_scan);

# StreamTest::Conn->new(
#     host => '127.0.0.1', port => N, request => $bytes, method => 'GET',
#     timeout => seconds (default for every read), factor => timeout factor)
# Connects and sends the request.  Dies when the connection is refused.
sub new {
    my ($class, %o) = @_;
    my $factor = $o{factor} || 1;
    my $self = bless {
        host       => $o{host} // '127.0.0.1',
        port       => $o{port},
        method     => uc($o{method} // 'GET'),
        timeout    => $o{timeout} // 5,
        factor     => $factor,
        started    => time,
        raw        => '',    # every byte received
        inbuf      => '',    # received bytes not yet parsed as head/body
        body       => '',    # decoded body
        head       => undef, # parsed response head
        mode       => undef, # chunked | length | eof | none
        complete   => 0,     # body framing says the body is complete
        eof        => 0,     # the peer closed the connection
        timed_out  => 0,
        cursor     => 0,     # offset in body consumed by read_events/lines/to_end
        sse_skip   => 0,
        sse_bom    => 1,
    }, $class;

    $self->_connect;
    $self->send($o{request}) if defined $o{request} && length $o{request};
    return $self;
}

sub body     { $_[0]{body} }
sub raw      { $_[0]{raw} }
sub complete { $_[0]{complete} }
sub head     { $_[0]{head} }
sub elapsed  { time - $_[0]{started} }

# Body bytes not yet consumed by read_events / read_lines / read_to_end.
sub unread { substr($_[0]{body}, $_[0]{cursor}) }

# Mark everything received so far as consumed.
sub discard {
    my ($self) = @_;
    $self->{cursor}   = length $self->{body};
    $self->{sse_skip} = 0;
    $self->{sse_bom}  = 0;
    return $self;
}

# send($bytes, $timeout): write everything (used for the request, and for
# tests that trickle a request body).  Returns true on success, false when
# the peer closed or the timeout expired.
sub send {
    my ($self, $bytes, $timeout) = @_;
    return $self->_write($bytes, $self->_deadline($timeout));
}

# Bytes read (StreamTest::Socket::_fill): kept, and parsed.
sub _received {
    my ($self, $buf) = @_;
    $self->{raw}   .= $buf;
    $self->{inbuf} .= $buf;
    $self->_process;
}

# Parse the head (skipping 1xx responses) and then feed the body decoder.
sub _process {
    my ($self) = @_;

    while (!$self->{head}) {
        my $i = index($self->{inbuf}, "\r\n\r\n");
        my $seplen = 4;
        my $j = index($self->{inbuf}, "\n\n");
        if ($j >= 0 && ($i < 0 || $j < $i)) {
            ($i, $seplen) = ($j, 2);
        }
        return if $i < 0;
        my $head = substr($self->{inbuf}, 0, $i);
        substr($self->{inbuf}, 0, $i + $seplen, '');
        my $h = parse_response_head($head);
        if (!$h) {
            # Not HTTP: treat everything as body until EOF.
            $self->{head} = {
                status => undef, reason => undef, headers => {},
                header_list => [], bad_head => $head,
            };
            $self->{inbuf} = $head . "\r\n\r\n" . $self->{inbuf};
            $self->{mode} = 'eof';
            last;
        }
        next if $h->{status} >= 100 && $h->{status} < 200 && $h->{status} != 101;
        $self->{head} = $h;
        $self->_choose_mode;
    }

    my $mode = $self->{mode};
    return if $self->{complete};

    if ($mode eq 'chunked') {
        my $data = $self->{inbuf};
        $self->{inbuf} = '';
        if (StreamTest::Parse::chunked_feed($self->{chunked}, $data, \$self->{body})) {
            $self->{complete} = 1;
            $self->{trailers} = $self->{chunked}{trailers};
            $self->{extra}    = $self->{chunked}{rest};
        }
    }
    elsif ($mode eq 'length') {
        my $take = length $self->{inbuf};
        $take = $self->{remaining} if $take > $self->{remaining};
        $self->{body} .= substr($self->{inbuf}, 0, $take, '');
        $self->{remaining} -= $take;
        if ($self->{remaining} == 0) {
            $self->{complete} = 1;
            $self->{extra} = $self->{inbuf};
            $self->{inbuf} = '';
        }
    }
    elsif ($mode eq 'none') {
        $self->{complete} = 1;
        $self->{extra} = $self->{inbuf};
        $self->{inbuf} = '';
    }
    else {    # eof
        $self->{body} .= $self->{inbuf};
        $self->{inbuf} = '';
    }
}

sub _choose_mode {
    my ($self) = @_;
    my $h  = $self->{head};
    my $st = $h->{status};
    my $te = $h->{headers}{'transfer-encoding'} // '';
    my $cl = $h->{headers}{'content-length'};
    if ($self->{method} eq 'HEAD' || $st == 204 || $st == 304 || $st == 101) {
        $self->{mode} = 'none';
    }
    elsif ($te =~ /\bchunked\s*\z/i) {
        $self->{mode}    = 'chunked';
        $self->{chunked} = StreamTest::Parse::chunked_new();
    }
    elsif (defined $cl && $cl =~ /\A\s*(\d+)\s*\z/) {
        $self->{mode}      = 'length';
        $self->{remaining} = $1;
    }
    else {
        $self->{mode} = 'eof';
    }
}

sub _on_eof {
    my ($self) = @_;
    if ($self->{head} && ($self->{mode} // '') eq 'eof') {
        $self->{complete} = 1;
    }
}

# Reads until the response head arrived.  Returns a hashref
# { status, reason, version, headers, header_list } or undef on
# timeout / EOF before a complete head.
sub read_headers {
    my ($self, $timeout) = @_;
    return $self->_head_by($self->_deadline($timeout));
}

sub _head_by {
    my ($self, $deadline) = @_;
    until ($self->{head}) {
        my $n = $self->_fill($deadline);
        return undef unless $n;
    }
    return $self->{head};
}

# True when no more body bytes can arrive.
sub _finished {
    my ($self) = @_;
    return 1 if $self->{eof};
    return $self->{complete} && $self->{mode} ne 'eof';
}

# Reads until the whole decoded body received so far matches $re.
# Returns the body so far, or undef on timeout/EOF without a match.
sub read_until {
    my ($self, $re, $timeout) = @_;
    $re = qr/$re/ unless ref $re eq 'Regexp';
    my $deadline = $self->_deadline($timeout);
    return undef unless $self->_head_by($deadline);
    while (1) {
        return $self->{body} if $self->{body} =~ $re;
        return undef if $self->_finished;
        $self->_fill($deadline) or return $self->{body} =~ $re ? $self->{body} : undef;
    }
}

# Returns up to $n complete SSE events after the cursor; fewer when the
# timeout expired or the stream ended.  The cursor moves past them.
sub read_events {
    my ($self, $n, $timeout) = @_;
    $n //= 1;
    my $deadline = $self->_deadline($timeout);
    my @out;
    return @out unless $self->_head_by($deadline);
    my $cr_waited = -1;
    while (1) {
        if ($self->{sse_bom}) {
            my $pending = $self->unread;
            if (length($pending) >= 3 || $self->_finished) {
                $self->{cursor} += 3 if $pending =~ /\A\xEF\xBB\xBF/;
                $self->{sse_bom} = 0;
            }
        }
        if (!$self->{sse_bom}) {
            my ($events, $consumed, $skip, $ends) =
                sse_scan($self->{body}, $self->{cursor}, $self->{sse_skip});
            my $want = $n - @out;
            my $take = @$events > $want ? $want : scalar @$events;
            my ($end, $end_skip) = $take ? @{ $ends->[ $take - 1 ] } : ();
            my $len = length $self->{body};

            # The last event ends with a CR that is the last byte received:
            # it may be the first half of a CRLF.  Wait briefly for the LF so
            # that the event's raw bytes are complete.
            if ($take && $end_skip && $end == $len && $cr_waited != $len
                && !$self->_finished)
            {
                $cr_waited = $len;
                my $short = time + 0.2 * $self->{factor};
                $short = $deadline if $deadline < $short;
                my $was = $self->{timed_out};
                $self->_fill($short);
                $self->{timed_out} = $was;
                next;
            }

            push @out, @{$events}[ 0 .. $take - 1 ] if $take;
            if ($take < @$events) {
                ($self->{cursor}, $self->{sse_skip}) = ($end, $end_skip);
            }
            else {
                ($self->{cursor}, $self->{sse_skip}) = ($consumed, $skip);
            }
            return @out if @out >= $n;
        }
        last if $self->_finished;
        last unless $self->_fill($deadline);
    }
    return @out;
}

# Does the response leave the connection open after the body?
sub _keepalive {
    my ($self) = @_;
    my $h = $self->{head} or return 0;
    return 0 unless defined $h->{status};
    my $conn = lc($h->{headers}{connection} // '');
    return 0 if $conn =~ /\bclose\b/;
    return 1 if $conn =~ /\bkeep-alive\b/;
    return ($h->{version} // '') ne 'HTTP/1.0';
}

# Convenience: one event or undef.
sub read_event {
    my ($self, $timeout) = @_;
    my ($ev) = $self->read_events(1, $timeout);
    return $ev;
}

# Returns up to $n complete lines (LF-terminated; the LF and an optional CR
# before it are removed) after the cursor; fewer on timeout/EOF.
sub read_lines {
    my ($self, $n, $timeout) = @_;
    $n //= 1;
    my $deadline = $self->_deadline($timeout);
    my @out;
    return @out unless $self->_head_by($deadline);
    while (1) {
        while (@out < $n) {
            my $i = index($self->{body}, "\n", $self->{cursor});
            last if $i < 0;
            my $line = substr($self->{body}, $self->{cursor}, $i - $self->{cursor});
            $line =~ s/\r\z//;
            push @out, $line;
            $self->{cursor} = $i + 1;
        }
        return @out if @out >= $n;
        last if $self->_finished;
        last unless $self->_fill($deadline);
    }
    return @out;
}

# Convenience: one line or undef.
sub read_line {
    my ($self, $timeout) = @_;
    my ($line) = $self->read_lines(1, $timeout);
    return $line;
}

# Reads until EOF and returns the body after the cursor, moving the cursor
# to the end.  When the response does not announce "Connection: close"
# (a keep-alive response), the end of the body by its framing is enough.
# Returns undef on timeout (nothing is consumed then).
sub read_to_end {
    my ($self, $timeout) = @_;
    my $deadline = $self->_deadline($timeout);
    $self->_head_by($deadline);
    until ($self->_finished && ($self->{eof} || $self->_keepalive)) {
        defined $self->_fill($deadline) or return undef;
    }
    my $rest = $self->unread;
    $self->discard;
    return $rest;
}

# Builds the http() result hash from this connection.
sub result {
    my ($self) = @_;
    my $h = $self->{head} // {};
    my %r = (
        status      => $h->{status},
        reason      => $h->{reason},
        version     => $h->{version},
        headers     => $h->{headers} // {},
        header_list => $h->{header_list} // [],
        body        => $self->{body},
        raw         => $self->{raw},
        elapsed     => $self->elapsed,
        complete    => $self->{complete},
    );
    $r{timed_out}  = 1 if $self->{timed_out};
    $r{trailers}   = $self->{trailers} if $self->{trailers};
    $r{reset}      = 1 if $self->{reset};
    $r{read_error} = $self->{read_error} if $self->{read_error};
    return \%r;
}

1;
