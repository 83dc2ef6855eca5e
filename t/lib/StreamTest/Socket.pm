package StreamTest::Socket;

# The TCP layer that StreamTest::Conn (an HTTP/1.x response reader) and
# StreamTest::WebSocket (a WebSocket frame reader) share: connecting,
# writing everything before a deadline, reading what comes into
# $self->{inbuf}, half-closing and closing.  The subclasses bless their own
# hash and say what happens to bytes read (_received) and at EOF (_on_eof).
# Documentation: POD at the end of this file.

use strict;
use warnings;

use Carp qw(croak);
use Errno qw(EAGAIN EINTR EWOULDBLOCK ECONNRESET);
use IO::Select;
use IO::Socket::IP;
use Socket qw(SOCK_STREAM MSG_NOSIGNAL MSG_DONTWAIT);
use Time::HiRes qw(time);

# bytes asked of one sysread
use constant READ_SIZE => 65536;

# _connect: connects to $self->{host}:$self->{port} within
# $self->{timeout} * $self->{factor} seconds; dies when that fails.
sub _connect {
    my ($self) = @_;
    my $sock = IO::Socket::IP->new(
        PeerHost => $self->{host},
        PeerPort => $self->{port},
        Type     => SOCK_STREAM,
        Timeout  => $self->{timeout} * $self->{factor},
    ) or croak "connect to $self->{host}:$self->{port} failed: "
        . ($@ || $!);
    $sock->autoflush(1);
    $self->{sock} = $sock;
    return $sock;
}

sub sock      { $_[0]{sock} }
sub eof       { $_[0]{eof} }
sub timed_out { $_[0]{timed_out} }

sub _deadline {
    my ($self, $timeout) = @_;
    return time + ($timeout // $self->{timeout}) * $self->{factor};
}

# _write($bytes, $deadline): writes everything.  False when the peer closed
# or the deadline passed; write_error says which.
sub _write {
    my ($self, $bytes, $deadline) = @_;
    my $sock = $self->{sock} or return 0;
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $bytes) {
        my $left = $deadline - time;
        if ($left <= 0) {
            $self->{write_error} = 'timeout';
            return 0;
        }
        next unless $sel->can_write($left);
        my $n = CORE::send($sock, substr($bytes, $off),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
            $self->{write_error} = "$!";
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# _fill($deadline): waits for and reads more bytes, handing them to
# _received.  Returns their number, 0 on EOF (or reset: reset and
# read_error are set), undef on timeout (timed_out is set).
sub _fill {
    my ($self, $deadline) = @_;
    return 0 if $self->{eof};
    my $sock = $self->{sock};
    if (!$sock) {
        $self->{eof} = 1;
        $self->_on_eof;
        return 0;
    }
    my $sel = IO::Select->new($sock);
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            $self->{timed_out} = 1;
            return undef;
        }
        next unless $sel->can_read($left);
        my $n = sysread($sock, my $buf, $self->READ_SIZE);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $self->{reset} = 1 if $! == ECONNRESET;
            $self->{read_error} = "$!";
            $n = 0;
        }
        if ($n == 0) {
            $self->{eof} = 1;
            $self->_on_eof;
            return 0;
        }
        $self->_received($buf);
        return $n;
    }
}

# Bytes read: kept for the subclass's parser.
sub _received { $_[0]{inbuf} .= $_[1] }

# The peer closed the connection.
sub _on_eof { }

# Half-close: tell the server we will not send any more.
sub shutdown_write {
    my ($self) = @_;
    shutdown($self->{sock}, 1) if $self->{sock};
    return 1;
}

sub close {
    my ($self) = @_;
    if ($self->{sock}) {
        $self->{sock}->close;
        $self->{sock} = undef;
    }
    return 1;
}

sub DESTROY { $_[0]->close }

1;

__END__

=head1 NAME

StreamTest::Socket - the TCP layer of StreamTest::Conn and
StreamTest::WebSocket

=head1 DESCRIPTION

A base class, not used on its own.  The object is a hash with C<host>,
C<port>, C<timeout> (seconds) and C<factor> (the timeout factor) set by the
subclass's constructor, which then calls C<_connect>.  All timeouts are
multiplied by C<factor>.

=over

=item $obj->_connect

Connects (within C<timeout>), sets autoflush and C<< $obj->{sock} >>; dies
when the connection fails.

=item $obj->_deadline($timeout)

C<time + ($timeout // timeout) * factor>.

=item $obj->_write($bytes, $deadline)

Writes all the bytes; false when the peer closed or the deadline passed
(C<< $obj->{write_error} >>: the error, or C<timeout>).

=item $obj->_fill($deadline)

Waits for bytes and reads up to C<READ_SIZE> of them (a constant a
subclass may override; 65536 here), handing them to C<_received> (which
appends them to C<< $obj->{inbuf} >> unless overridden).  Returns their
number; 0 on EOF or a reset (C<eof> set, C<_on_eof> called; C<reset> and
C<read_error> set on an error); undef when the deadline passed
(C<timed_out> set).

=item $obj->sock, $obj->eof, $obj->timed_out, $obj->shutdown_write,
$obj->close

The socket; whether the peer closed; whether a read timed out; half-close
(FIN to the server); close (also on destruction).

=back

=cut
