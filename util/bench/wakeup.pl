#!/usr/bin/perl
#
# Cross-worker wake-up latency: a stream at a modest rate, read by
# subscribers on BOTH nginx workers; how much later do the subscribers of
# one worker get a chunk than the first subscriber of the worker that has
# it?  This module (`streaming` producer proxying util/mock-llm,
# `streaming_subscribe` subscribers, woken across workers by the doorbell)
# against nchan (Debian's libnginx-mod-nchan, loaded into the same nginx:
# publisher POSTs, EventSource subscribers, delivery across workers by
# nchan's IPC), with the publisher on the channel's owner worker ("nchan")
# and on the other one ("nchan-fwd").  By default the three run at the same
# time, each with its own stream and subscribers (--apart: one by one).
#
#   util/bench/wakeup.pl [--reps 5] [--chunks 1000] [--rate 20] [--subs 4]
#
# Writes build/bench/wakeup-results.md (and prints it).  Everything binds to
# 127.0.0.1; every wait is bounded.
#
# One client process reads every connection (the producer's own client or
# the nchan publisher, and all subscribers) in one select() loop.  Each read
# carries the kernel's receive time of the data (SO_TIMESTAMPNS, via
# recvmsg(2) through perl's syscall(); on loopback that is when nginx wrote
# it), so that the client's own scheduling does not enter the deltas; the
# CLOCK_MONOTONIC time at which select() returned is recorded as well.

use strict;
use warnings;

use FindBin qw($RealBin);
use lib "$RealBin/lib";

use Bench qw(:all);
use Config;
use File::Path qw(make_path);
use IO::Select;
use Socket qw(SOL_SOCKET);
use Time::HiRes qw(sleep time clock_gettime CLOCK_REALTIME);

my $top = Bench::setup('wakeup');

my %o = (
    reps    => 5,
    chunks  => 1000,
    rate    => 20,
    subs    => 4,
    size    => 200,
    skip    => 10,
    ttft    => 3000,
    sides   => 'ours,nchan,nchan-fwd',
    kernel_ts => 1,
    apart   => 0,
    quick   => 0,
);
my $cmdline = Bench::options(\%o,
    "[--reps N] [--chunks N] [--rate X] [--subs N] "
        . "[--size B] [--skip N] [--sides ours,nchan,nchan-fwd] "
        . "[--apart] [--no-kernel-ts] "
        . "[--quick] [--module SO] [--out FILE]",
    qw(reps=i chunks=i rate=f subs=i size=i skip=i ttft=i sides=s
       kernel-ts! apart nchan=s quick));
if ($o{quick}) {
    $o{reps} = 1;
    $o{chunks} = 200;
}
die "--reps must be 1..20\n" unless $o{reps} >= 1 && $o{reps} <= 20;
die "--chunks must be 20..100000\n"
    unless $o{chunks} >= 20 && $o{chunks} <= 100000;
die "--rate must be 0.5..1000\n" unless $o{rate} >= 0.5 && $o{rate} <= 1000;
die "--subs must be 1..50\n" unless $o{subs} >= 1 && $o{subs} <= 50;
die "--skip must be below --chunks\n"
    unless $o{skip} >= 0 && $o{skip} < $o{chunks} - 10;
die "--size must be 100..4000\n" unless $o{size} >= 100 && $o{size} <= 4000;
my @sides = grep { /\S/ } split /,/, $o{sides};
die "--sides: ours, nchan, nchan-fwd\n"
    if !@sides || grep { !/^(ours|nchan|nchan-fwd)$/ } @sides;

my $with_nchan = grep { /^nchan/ } @sides;
my ($mock_bin) = check_programs(\%o, nchan => $with_nchan);

my $bench  = "$top/build/bench";
my $prefix = "$bench/wakeup";
my (@notes, @errlines);
my $errlog = Bench::LogTail->new("$prefix/logs/error.log", \@errlines);

# ------------------------------------------------------------------
# kernel receive timestamps: SO_TIMESTAMPNS + recvmsg(2) via syscall()

my %recvmsg_nr = ('x86_64' => 47, 'aarch64' => 212);
my ($arch) = $Config{archname} =~ /^([^-]+)/;
my $SYS_recvmsg = $recvmsg_nr{$arch // ''};
my $SO_TIMESTAMPNS = 35;    # also SCM_TIMESTAMPNS (asm-generic)
my $kts = $o{kernel_ts} && $^O eq 'linux' && $Config{ptrsize} == 8
          && defined $SYS_recvmsg;
push @notes, "kernel receive timestamps unavailable ($^O $arch):"
             . " client times only" if $o{kernel_ts} && !$kts;

my $RBUF = 65536;
my $rbuf = "\0" x $RBUF;
my $cbuf = "\0" x 256;
vec($rbuf, 0, 8) = 0;        # own, writable buffers (no shared copies)
vec($cbuf, 0, 8) = 0;

# one read: (bytes, kernel time in s (CLOCK_REALTIME) or undef); bytes
# undef on error, '' on EOF
sub read_ts {
    my ($fh) = @_;
    unless ($kts) {
        my $n = sysread($fh, my $b, $RBUF);
        return (defined $n ? $b : undef, undef);
    }
    substr($cbuf, 0, 16) = "\0" x 16;
    # struct iovec { base, len }; struct msghdr { name, namelen, iov,
    # iovlen, control, controllen, flags }
    my $iov = pack('pQ', $rbuf, $RBUF);
    my $mh = pack('QLx4pQpQix4', 0, 0, $iov, 1, $cbuf, length $cbuf, 0);
    my $n = syscall($SYS_recvmsg, fileno($fh), $mh, 0);
    return (undef, undef) if $n < 0;
    my $ctllen = (unpack('QLx4QQQQ', $mh))[5];
    my $t;
    my $off = 0;
    while ($off + 16 <= $ctllen) {
        my ($len, $lev, $type) = unpack("x$off QLL", $cbuf);
        last if $len < 16;
        if ($lev == SOL_SOCKET && $type == $SO_TIMESTAMPNS && $len >= 32) {
            my ($s, $ns) = unpack('x' . ($off + 16) . ' QQ', $cbuf);
            $t = $s + $ns / 1e9;
        }
        $off += ($len + 7) & ~7;
    }
    return (substr($rbuf, 0, $n), $t);
}

# CLOCK_REALTIME - CLOCK_MONOTONIC, from the tightest of a few samples
sub clock_offset {
    my ($best, $w);
    for (1 .. 20) {
        my $a = mono();
        my $r = clock_gettime(CLOCK_REALTIME);
        my $b = mono();
        if (!defined $w || $b - $a < $w) {
            $w = $b - $a;
            $best = $r - ($a + $b) / 2;
        }
    }
    return $best;
}

# ------------------------------------------------------------------
# nginx

sub write_conf {
    my (%a) = @_;
    my $nchan_load = $with_nchan ? "load_module $o{nchan};" : '';
    my $nchan_http = $with_nchan
        ? nchan_locations(buffer => 100, timeout => '5m') : '';
    my $ours = ours_locations('wake', $o{size});
    write_nginx_conf(dir => $prefix, connections => 1024,
                     main => <<"MAIN", http => <<"HTTP");
load_module $o{module};
$nchan_load

worker_processes 2;
MAIN
    streaming_zone wake 64m max_streams=0 buffer=1m ttl=1m;

    upstream mock {
        server 127.0.0.1:$a{mport};
        keepalive 16;
    }

    server {
        # reuseport: the kernel spreads connections over both workers; the
        # script keeps the ones that land where it wants them
        listen 127.0.0.1:$a{port} reuseport;
        keepalive_requests 1000000;
        # which worker serves a connection
        add_header X-Worker \$pid always;

$ours$nchan_http    }
HTTP
}

sub start_nginx_wakeup {
    my ($port, $mport) = @_;
    write_conf(port => $port, mport => $mport);
    return start_nginx(nginx => $o{nginx}, prefix => $prefix, port => $port);
}

# ------------------------------------------------------------------
# connections: HTTP/1.1 responses (chunked, Content-Length or until
# close), the body scanned for the chunks' marks as it arrives
#
# ours:   the mock's stamped token "tok<i>@<usec>" (i from 0)
# nchan:  the publisher's body "@<usec> #<i> " (i from 1)
# nprobe: the owner probe's body "@<usec> %<i> "

my %mark = (ours => qr/tok(\d+)\@(\d+)\D/, nchan => qr/\@(\d+) #(\d+)\D/,
            nprobe => qr/\@(\d+) %(\d+)\D/);

my ($port, $mock_pid, @workers);

sub conn_open {
    my ($side, $role, $req) = @_;
    my $s = connect_local($port) or die "connect 127.0.0.1:$port: $!\n";
    $s->autoflush(1);
    setsockopt($s, SOL_SOCKET, $SO_TIMESTAMPNS, pack('i', 1))
        or die "SO_TIMESTAMPNS: $!\n" if $kts;
    my $c = { sock => $s, side => $side, role => $role, raw => '',
              st => 'head', body => '', seen => {}, resp => [],
              done => 0, eof => 0 };
    syswrite($s, $req) if defined $req;
    return $c;
}

sub conn_close {
    my ($c) = @_;
    close $c->{sock} if $c->{sock};
    $c->{sock} = undef;
    $c->{done} = 1;
}

# the body: find complete marks, remember when the first time
sub body_add {
    my ($c, $data, $kt, $ut) = @_;
    $c->{body} .= $data;
    my $re = $mark{ $c->{side} };
    while ($c->{body} =~ /$re/g) {
        my ($seq, $stamp) = $c->{side} eq 'ours' ? ($1, $2) : ($2, $1);
        $c->{seen}{$seq} //= [$kt, $ut, $stamp / 1e6];
    }
    $c->{body} = substr($c->{body}, -64) if length $c->{body} > 64;
}

sub response_done {
    my ($c, $kt, $ut) = @_;
    push @{ $c->{resp} }, [$c->{status}, $kt, $ut];
    if ($c->{role} eq 'pub') {
        $c->{st} = 'head';      # keep-alive: the next response
        $c->{body} = '';
    } else {
        $c->{st} = 'end';
        $c->{done} = 1;
    }
}

sub feed {
    my ($c, $kt, $ut) = @_;
    while (length $c->{raw}) {
        my $st = $c->{st};
        if ($st eq 'head') {
            my $i = index($c->{raw}, "\r\n\r\n");
            return if $i < 0;
            my $h = substr($c->{raw}, 0, $i + 4, '');
            my ($status) = $h =~ m{^HTTP/1\.\d (\d{3})};
            $c->{status} = $status // 0;
            my %h;
            $h{lc $1} = $2 while $h =~ /\r\n([^:\r\n]+):[ \t]*([^\r\n]*)/g;
            $c->{headers} = \%h;
            $c->{worker} //= $h{'x-worker'};
            $c->{head_at} //= $ut;
            if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
                $c->{st} = 'size';
            } elsif (defined $h{'content-length'}) {
                $c->{left} = $h{'content-length'};
                $c->{st} = 'cl';
                response_done($c, $kt, $ut) if $c->{left} == 0;
            } else {
                $c->{st} = 'close';
            }
        } elsif ($st eq 'size') {
            return unless $c->{raw} =~ s/\A([0-9A-Fa-f]+)[^\r\n]*\r\n//;
            $c->{left} = hex $1;
            $c->{st} = $c->{left} ? 'data' : 'trailer';
        } elsif ($st eq 'data' || $st eq 'cl') {
            my $k = $c->{left} < length $c->{raw} ? $c->{left}
                                                  : length $c->{raw};
            body_add($c, substr($c->{raw}, 0, $k, ''), $kt, $ut);
            $c->{left} -= $k;
            next if $c->{left};
            if ($st eq 'cl') { response_done($c, $kt, $ut) }
            else             { $c->{st} = 'crlf' }
        } elsif ($st eq 'crlf') {
            return if length $c->{raw} < 2;
            substr($c->{raw}, 0, 2, '');
            $c->{st} = 'size';
        } elsif ($st eq 'trailer') {
            if ($c->{raw} =~ s/\A\r\n// || $c->{raw} =~ s/\A.*?\r\n\r\n//s) {
                response_done($c, $kt, $ut);
            } else {
                return;
            }
        } elsif ($st eq 'close') {
            body_add($c, $c->{raw}, $kt, $ut);
            $c->{raw} = '';
        } else {
            $c->{raw} = '';     # after the end: ignored
        }
    }
}

# one read from a readable connection
sub pump {
    my ($c, $ut, $off) = @_;
    my ($data, $kt) = read_ts($c->{sock});
    $kt = defined $kt ? $kt - $off : $ut;       # on the monotonic clock
    if (!defined $data || $data eq '') {
        $c->{eof} = 1;
        response_done($c, $kt, $ut) if $c->{st} eq 'close';
        conn_close($c);
        return;
    }
    $c->{raw} .= $data;
    feed($c, $kt, $ut);
}

# reads one connection until its response head is in (bounded)
sub wait_head {
    my ($c, $secs, $off) = @_;
    my $sel = IO::Select->new($c->{sock});
    my $end = mono() + $secs;
    while (!defined $c->{status} && $c->{sock} && mono() < $end) {
        next unless $sel->can_read(0.2);
        pump($c, mono(), $off);
    }
    return defined $c->{status};
}

# Opens subscribers until each worker holds $per of them; a connection
# that lands on a worker that has enough is closed.  Bounded.
sub attach {
    my ($side, $path, $workers, $off, $per) = @_;
    $per //= $o{subs};
    my (%n, @subs);
    my $max = 40 + 20 * $per;
    my $tries = 0;
    while (grep { ($n{$_} // 0) < $per } @$workers) {
        return (undef, "$tries connections, workers: "
                . join(', ', map { "$_: " . ($n{$_} // 0) } @$workers))
            if $tries++ >= $max;
        my $c = conn_open($side, 'sub', "GET $path HTTP/1.1\r\n"
                          . "Host: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                          . "Connection: close\r\n\r\n");
        if (!wait_head($c, 5, $off) || $c->{status} != 200) {
            my $st = $c->{status} // 'none';
            conn_close($c);
            return (undef, "subscriber: status $st");
        }
        my $w = $c->{worker} // 0;
        if (grep { $_ == $w } @$workers and ($n{$w} // 0) < $per) {
            $n{$w}++;
            push @subs, $c;
        } else {
            conn_close($c);
        }
    }
    return (\@subs, "$tries connections");
}

# nchan: a publisher connection on a worker that $ok->(pid) accepts,
# learnt from the answer to a GET of the channel; bounded
sub nchan_pub_conn {
    my ($side, $id, $off, $ok) = @_;
    for (1 .. 40) {
        my $c = conn_open($side, 'pub', "GET /npub?id=$id HTTP/1.1\r\n"
                          . "Host: 127.0.0.1\r\n\r\n");
        if (!wait_head($c, 10, $off)) {
            conn_close($c);
            return undef;
        }
        my $end = mono() + 5;
        pump($c, mono(), $off)
            while @{ $c->{resp} } < 1 && $c->{sock} && mono() < $end
                  && IO::Select->new($c->{sock})->can_read(0.2);
        @{ $c->{resp} } = ();
        return $c if $c->{sock} && $ok->($c->{worker} // 0);
        conn_close($c);
    }
    return undef;
}

# nchan keeps a channel on one worker, its owner (chosen from the id):
# a message published on another worker goes to the owner first, which
# passes it on to the subscribers of every worker.  Which worker owns $id:
# the one whose subscriber gets most of a few probe messages first.
sub nchan_owner {
    my ($id, $off) = @_;
    my ($subs, $how) = attach('nprobe', "/nsub?id=$id", \@workers, $off, 1);
    return (undef, "probe subscribers: $how") unless $subs;
    my $p = nchan_pub_conn('nprobe', $id, $off, sub { 1 });
    if (!$p) {
        conn_close($_) for @$subs;
        return (undef, 'probe publisher: no answer');
    }
    my @c = ($p, @$subs);
    my $sel = IO::Select->new(map { $_->{sock} } @c);
    my $read = sub {
        my ($secs) = @_;
        my $end = mono() + $secs;
        while (mono() < $end) {
            my @r = $sel->can_read($end - mono());
            my $ut = mono();
            for my $fh (@r) {
                my ($c) = grep { $_->{sock} && $_->{sock} == $fh } @c;
                next unless $c;
                pump($c, $ut, $off);
                $sel->remove($fh) unless $c->{sock};
            }
        }
    };
    $read->(0.3);                       # subscriptions settle
    my $n = 9;
    for my $k (1 .. $n) {
        my $b = sprintf('@%d %%%d ', int(mono() * 1e6), $k);
        syswrite($p->{sock}, npub_post($id, $b));
        $read->(0.03);
    }
    $read->(0.3);
    my %votes;
    for my $k (1 .. $n) {
        my @t = sort { $a->[0] <=> $b->[0] }
                map { $_->{seen}{$k} ? [$_->{seen}{$k}[0], $_->{worker}] : () }
                @$subs;
        $votes{ $t[0][1] }++ if @t == 2;
    }
    # the probe's channel goes; the run's subscribers make it again
    if ($p->{sock}) {
        syswrite($p->{sock}, npub_delete($id));
        $read->(0.2);
    }
    conn_close($_) for @c;
    my ($owner) = sort { $votes{$b} <=> $votes{$a} } keys %votes;
    my $v = join ', ', map { "$_: $votes{$_}" } sort keys %votes;
    return (undef, "probe: no clear owner (first: $v)")
        unless $owner && $votes{$owner} >= $n - 2;
    return ($owner, "first: $v");
}

# ------------------------------------------------------------------
# statistics

sub pct {
    my ($v, $p) = @_;       # $v sorted
    return undef unless @$v;
    my $i = int($p / 100 * @$v + 0.999999) - 1;
    $i = 0 if $i < 0;
    $i = $#$v if $i > $#$v;
    return $v->[$i];
}

sub stats {
    my @v = sort { $a <=> $b } @_;
    return { n => scalar @v, p50 => pct(\@v, 50), p90 => pct(\@v, 90),
             p99 => pct(\@v, 99), max => @v ? $v[-1] : undef };
}


# ------------------------------------------------------------------
# one run of one side

# ------------------------------------------------------------------
# runs: a side is set up (producer / publisher, subscribers), then one
# loop reads every connection of the sides that run together, then each
# side's figures are computed

my $seq = 0;

sub side_setup {
    my ($side, $rep, $ttft) = @_;
    $seq++;
    my $id = "w$seq$side";
    my $kind = $side eq 'ours' ? 'ours' : 'nchan';
    my %r = (side => $side, rep => $rep, id => $id);
    my $st = { side => $side, kind => $kind, id => $id, r => \%r };
    my $off = clock_offset();
    my $t0 = mono();
    my $ref;
    if ($side eq 'ours') {
        # the mock holds back the first token for ttft; the subscribers
        # (and the other sides) are set up meanwhile
        my $body = '{"stream":true}';
        $ref = conn_open($kind, 'prod', "POST /pub?id=$id&tokens=$o{chunks}"
            . "&tps=$o{rate}&ttft=$ttft HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            . "Content-Type: application/json\r\nConnection: close\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n$body");
        if (!wait_head($ref, 10, $off) || $ref->{status} != 200) {
            conn_close($ref);
            $r{error} = 'producer: status ' . ($ref->{status} // 'none');
            return $st;
        }
        $st->{ttft_end} = $t0 + $ttft / 1000;
        @$st{qw(first last)} = (0, $o{chunks} - 1);
        # from=0: the role chunk is replayed at once, which sends the
        # response head; the tokens come live
        $st->{sub_path} = "/sub?id=$id&from=0";
        $r{cmd} = "POST /pub?id=$id&tokens=$o{chunks}&tps=$o{rate}"
                  . "&ttft=$ttft (-> mock: stamp=1&size=$o{size})";
    } else {
        # which worker owns the channel; then the publisher's connection
        # on that worker (nchan) or on the other one (nchan-fwd).  When
        # the machine is busy the probe can be unclear: another id, twice.
        my ($owner, $why);
        for my $try (1 .. 3) {
            ($owner, $why) = nchan_owner($id, $off);
            last if $owner;
            push @notes, "rep $rep $side: id $id: $why"
                         . ($try == 3 ? '; the run goes on, owner unknown'
                                      : '');
            $id = $st->{id} = $r{id} = "w${seq}x$try$side";
        }
        # no clear owner: the run goes on with the publisher anywhere,
        # its layout unknown
        $r{owner} = $owner;
        $r{probe} = $why;
        $ref = nchan_pub_conn($kind, $id, $off, !$owner ? sub { 1 }
                              : $side eq 'nchan' ? sub { $_[0] == $owner }
                              : sub { $_[0] != $owner });
        if (!$ref) {
            $r{error} = 'publisher: no connection on the wanted worker';
            return $st;
        }
        @$st{qw(first last)} = (1, $o{chunks});
        $st->{sub_path} = "/nsub?id=$id";
        $r{cmd} = "owner probe (1 subscriber per worker, 9 x POST"
                  . " /npub?id=$id 30 ms apart, DELETE); then $o{chunks} x"
                  . " POST /npub?id=$id at $o{rate}/s (one keep-alive"
                  . " connection on the "
                  . ($side eq 'nchan' ? 'owner' : 'other worker')
                  . "), then DELETE";
    }
    $st->{ref} = $ref;
    my $pw = $ref->{worker} // 0;
    if (!grep { $_ == $pw } @workers) {
        conn_close($ref);
        $r{error} = "producer on unknown worker '$pw'";
        return $st;
    }
    $r{worker} = $pw;
    my ($subs, $how) = attach($kind, $st->{sub_path}, \@workers, $off);
    if (!$subs) {
        conn_close($ref);
        $r{error} = "attach: $how";
        return $st;
    }
    $st->{subs} = $subs;
    $r{attach} = $how;
    $st->{attached} = mono();
    logp(sprintf('rep %d %s: set up in %.3f s (%s)', $rep, $side,
                 $st->{attached} - $t0, $how));
    return $st;
}

# nchan: the next message of a side, due now
sub publish_next {
    my ($st) = @_;
    my $n = $st->{next_pub}++;
    my $b = npub_body(sprintf('@%d #%d ', int(mono() * 1e6), $n), $o{size});
    syswrite($st->{ref}{sock}, npub_post($st->{id}, $b));
    my $now = mono();
    $st->{due} = $now < $st->{due} + 0.1 ? $st->{due} + 1 / $o{rate}
                                         : $now + 1 / $o{rate};
}

# One select() loop over all connections of @$sts until each side is
# done.  nchan sides publish on their own schedule: when sides run
# together, shifted by a fraction of the period against ours' chunks (and
# each other's), so that the workers are not handed two chunks at once.
sub run_loop {
    my ($sts) = @_;
    my $off = clock_offset();
    my @conns = map { ($_->{ref}, @{ $_->{subs} }) } @$sts;
    my %by_fd = map { (fileno($_->{sock}) => $_) } @conns;
    my $sel = IO::Select->new(map { $_->{sock} } @conns);
    my ($ours) = grep { $_->{kind} eq 'ours' } @$sts;
    my @pubs = grep { $_->{kind} eq 'nchan' } @$sts;
    my $slots = @pubs + ($ours ? 1 : 0);
    for my $i (0 .. $#pubs) {
        my $p = $pubs[$i];
        $p->{next_pub} = $p->{first};
        $p->{deleted} = 0;
        $p->{shift} = ($i + ($ours ? 1 : 0)) / $slots / $o{rate};
    }
    # without ours, publishing starts once the subscriptions settled
    my $start = mono() + 0.5;
    $_->{due} = $start + $_->{shift} for $ours ? () : @pubs;
    my $span = ($o{chunks} - 1) / $o{rate};
    my $deadline = ($ours ? $ours->{ttft_end} : mono()) + $span + 30;
    my $finished = 0;
    while (mono() < $deadline) {
        my $open = 0;
        for my $st (@$sts) {
            next if $st->{finished};
            my $subs = $st->{subs};
            my $have_all = !grep { !$_->{done} && !$_->{seen}{ $st->{last} } }
                           @$subs;
            if ($st->{kind} eq 'ours') {
                $st->{finished} = 1 if $have_all && $st->{ref}{done};
            } else {
                if ($st->{next_pub} > $st->{last} && !$st->{deleted}
                    && $have_all && @{ $st->{ref}{resp} } >= $o{chunks}) {
                    # the end: the channel goes, its subscribers are closed
                    syswrite($st->{ref}{sock}, npub_delete($st->{id}));
                    $st->{deleted} = mono();
                }
                $st->{finished} = 1
                    if $st->{deleted} && (mono() - $st->{deleted} > 2
                                          || !grep { !$_->{done} } @$subs);
            }
            $open++ unless $st->{finished};
        }
        last unless $open;
        last unless grep { !$_->{done} } @conns;
        # nchan's schedule, once ours' first chunk shows its phase
        if ($ours && @pubs && !defined $pubs[0]{due}) {
            my ($s0) = map { $_->[2] } grep { defined }
                       $ours->{ref}{seen}{ $ours->{first} };
            if (defined $s0) {
                $_->{due} = $s0 + $_->{shift} + 1 / $o{rate} for @pubs;
            } elsif (mono() > $ours->{ttft_end} + 2) {
                $_->{due} = mono() + $_->{shift} for @pubs;
            }
        }
        my $wait = 0.5;
        for my $p (@pubs) {
            next unless defined $p->{due} && $p->{next_pub} <= $p->{last};
            my $w = $p->{due} - mono();
            $wait = $w < 0 ? 0 : $w if $w < $wait;
        }
        my @ready = $sel->can_read($wait);
        my $ut = mono();
        for my $fh (@ready) {
            my $c = $by_fd{ fileno($fh) } or next;
            next unless $c->{sock};
            pump($c, $ut, $off);
            $sel->remove($fh) unless $c->{sock};
        }
        for my $p (@pubs) {
            publish_next($p) while defined $p->{due}
                && $p->{next_pub} <= $p->{last} && mono() >= $p->{due};
        }
    }
    $_->{r}{finished} = $_->{finished} ? 1 : 0 for @$sts;
    $_->{r}{clock_drift_us} = (clock_offset() - $off) * 1e6 for @$sts;
    conn_close($_) for @conns;
}

# the figures of one side after its loop
sub side_figures {
    my ($st) = @_;
    my %r = %{ $st->{r} };
    my ($ref, $subs) = @$st{qw(ref subs)};
    my ($first, $last, $attached) = @$st{qw(first last attached)};
    my $pw = $r{worker};
    # reference time of each chunk: the producer's own client; for nchan
    # the publish response (the n-th response answers the n-th POST)
    my %reft;
    if ($st->{kind} eq 'ours') {
        %reft = %{ $ref->{seen} };
    } else {
        my $i = $first;
        for my $x (@{ $ref->{resp} }) {
            last if $i > $last;
            my ($status, $kt, $ut) = @$x;
            $r{pub_bad}++ unless $status >= 200 && $status < 300;
            $reft{$i++} = [$kt, $ut];
        }
        $r{published} = $i - $first;
    }
    my @same = grep { $_->{worker} == $pw } @$subs;
    my @cross = grep { $_->{worker} != $pw } @$subs;
    $r{subs_same} = scalar @same;
    $r{subs_cross} = scalar @cross;
    # the worker that should have a chunk first: ours, the producer's;
    # nchan, the channel's owner (when the probe found it)
    my $origin = $r{owner} // $pw;
    $r{origin} = !defined $r{owner} && $st->{kind} eq 'nchan' ? 'unknown'
               : $origin == $pw ? 'producer' : 'other';
    my @near = grep { $_->{worker} == $origin } @$subs;
    my @far = grep { $_->{worker} != $origin } @$subs;
    my ($first_near, $chunks_both) = (0, 0);
    # chunks counted: past --skip and sent after everyone was attached
    my (%d, $counted);
    my $expected = 0;
    for my $s ($first + $o{skip} .. $last) {
        my $rt = $reft{$s} or next;
        next if $rt->[1] < $attached + 0.2;
        $counted++;
        $expected += @$subs;
        # the stamp: when the mock / the publisher wrote the chunk
        my ($stamp) = map { $_->{seen}{$s} ? $_->{seen}{$s}[2] : () }
                      $ref, @$subs;
        for my $k (0, 1) {        # 0 kernel receive time, 1 client time
            my $kk = $k ? 'u_' : '';
            my ($fn) = sort { $a <=> $b } map { $_->{seen}{$s}[$k] }
                       grep { $_->{seen}{$s} } @near;
            my ($ff) = sort { $a <=> $b } map { $_->{seen}{$s}[$k] }
                       grep { $_->{seen}{$s} } @far;
            if (defined $fn && defined $ff) {
                if (!$k) {
                    $chunks_both++;
                    $first_near++ if $fn <= $ff;
                }
                # wake-up: each subscriber of the worker that got the
                # chunk later, behind the first subscriber of the one that
                # got it first (whichever that was for this chunk)
                my ($late, $t) = $fn <= $ff ? (\@far, $fn) : (\@near, $ff);
                for my $c (@$late) {
                    my $x = $c->{seen}{$s} or next;
                    push @{ $d{"${kk}wake"} }, $x->[$k] - $t;
                }
            }
            push @{ $d{"${kk}ref_origin"} }, $rt->[$k] - $stamp
                if defined $stamp;
            for my $c (@same) {
                my $x = $c->{seen}{$s} or next;
                push @{ $d{"${kk}same"} }, $x->[$k] - $rt->[$k];
                push @{ $d{"${kk}same_origin"} }, $x->[$k] - $stamp
                    if defined $stamp;
            }
            for my $c (@cross) {
                my $x = $c->{seen}{$s} or next;
                push @{ $d{"${kk}cross"} }, $x->[$k] - $rt->[$k];
                push @{ $d{"${kk}cross_origin"} }, $x->[$k] - $stamp
                    if defined $stamp;
            }
        }
    }
    # how often a subscriber on the origin worker really was first
    $r{first_near} = $chunks_both ? $first_near / $chunks_both : undef;
    my $got = scalar(@{ $d{same} // [] }) + scalar(@{ $d{cross} // [] });
    $r{counted} = $counted // 0;
    $r{missing} = $expected - $got;
    $r{stats} = { map { ($_ => stats(map { $_ * 1e6 } @{ $d{$_} })) }
                  keys %d };
    # the difference of the percentiles: other worker − same worker
    for my $k ('', 'u_') {
        my ($c, $s) = ($r{stats}{"${k}cross"}, $r{stats}{"${k}same"});
        next unless $c && $s;
        $r{stats}{"${k}diff"} = { map { ($_ => defined $c->{$_}
            && defined $s->{$_} ? $c->{$_} - $s->{$_} : undef) }
            qw(p50 p90 p99 max) };
    }
    return \%r;
}

# one repetition: the sides together in one loop, or one after the other
sub run_rep {
    my ($rep, @order) = @_;
    my @groups = $o{apart} ? (map { [$_] } @order) : ([@order]);
    my @out;
    for my $g (@groups) {
        my $c0 = machine_snap();
        my @cpu0 = times;
        my $ng0 = 0;
        $ng0 += proc_run_s($_) for @workers;
        my $mk0 = proc_run_s($mock_pid);
        my $w0 = mono();
        # ours first: its ttft covers the set-up of the others
        my @g = sort { ($a ne 'ours') <=> ($b ne 'ours') } @$g;
        my $nn = grep { $_ ne 'ours' } @g;
        my $ttft = $o{ttft} + ($o{apart} ? 0 : 2000 * $nn);
        my @sts = map { side_setup($_, $rep, $ttft) } @g;
        my @ok = grep { !$_->{r}{error} } @sts;
        run_loop(\@ok) if @ok;
        my ($busy, $steal) = machine_busy($c0, machine_snap());
        my @cpu1 = times;
        my $ng1 = 0;
        $ng1 += proc_run_s($_) for @workers;
        my %m = (
            busy => $busy,
            steal => $steal,
            client_cpu => $cpu1[0] + $cpu1[1] - $cpu0[0] - $cpu0[1],
            nginx_cpu => $ng1 - $ng0,
            mock_cpu => proc_run_s($mock_pid) - $mk0,
            wall => mono() - $w0,
            load => loadavg(),
            together => scalar @g,
        );
        for my $st (@sts) {
            my $r = $st->{r}{error} ? { %{ $st->{r} } } : side_figures($st);
            %$r = (%$r, %m);
            push @out, $r;
            my @l = $errlog->take("rep $rep $st->{side}");
            $r->{errlog} = scalar @l;
            if ($r->{error}) {
                logp("rep $rep $st->{side}: $r->{error}");
                push @notes, "rep $rep $st->{side}: $r->{error}";
                next;
            }
            my $w = $r->{stats}{wake} // {};
            logp(sprintf("rep %d %-9s producer worker %s, first: %s (%s),"
                . " subs %d+%d, chunks %d, missing %d; wake-up p50 %s p99"
                . " %s max %s us; busy %s%% (steal %s%%)", $rep,
                $st->{side}, $r->{worker}, $r->{origin},
                defined $r->{first_near}
                    ? sprintf('%.0f%%', 100 * $r->{first_near}) : '?',
                $r->{subs_same}, $r->{subs_cross}, $r->{counted},
                $r->{missing}, fus($w->{p50}), fus($w->{p99}),
                fus($w->{max}), pc($r->{busy}), pc($r->{steal})));
        }
        sleep 0.5;
    }
    return @out;
}

sub fus { defined $_[0] ? sprintf('%.0f', $_[0]) : '–' }
sub pc { defined $_[0] ? sprintf('%.0f', 100 * $_[0]) : '?' }

# ------------------------------------------------------------------
# main

make_path($bench);
logp("kernel receive timestamps: " . ($kts ? 'yes' : 'no'));
my $m0 = machine_snap();
my $load0 = loadavg();
(my $mport, $mock_pid) = start_mock($mock_bin);
$port = free_port();
@workers = start_nginx_wakeup($port, $mport);
logp("mock on $mport, nginx on $port (master " . nginx_master() . ", workers"
     . " @workers)");
$errlog->take('start');

my %res;    # {side}[rep] = {...}
for my $rep (1 .. $o{reps}) {
    my @order = $rep % 2 ? @sides : reverse @sides;
    push @{ $res{ $_->{side} } }, $_ for run_rep($rep, @order);
}
push @notes, workers_changed(@workers);
my $m1 = machine_snap();
my $load1 = loadavg();
cleanup();
$errlog->take('shutdown');

# ------------------------------------------------------------------
# report

# the median over the repetitions of one statistic
sub med_stat {
    my ($side, $key, $p) = @_;
    return median(map { $_->{stats}{$key}{$p} }
                  grep { !$_->{error} } @{ $res{$side} // [] });
}

sub ratio {
    my ($a, $b) = @_;
    return '–' unless defined $a && defined $b && $a > 0 && $b > 0;
    return sprintf('%.2f', $a / $b);
}

my @metrics = (
    [wake => 'wake-up: subscriber on the worker that got the chunk later'
             . ' − first subscriber on the worker that got it first'],
    [cross => 'subscriber on the other worker − reference'],
    [same => 'subscriber on the producer\'s / publisher\'s worker −'
             . ' reference'],
    [diff => 'difference of the two rows above (other − same)'],
    [cross_origin => 'subscriber on the other worker − stamp'],
    [same_origin => 'subscriber on the producer\'s / publisher\'s worker'
                    . ' − stamp'],
    [ref_origin => 'reference − stamp'],
);
my @ps = qw(p50 p90 p99 max);
my %side_name = (
    ours => 'ours',
    nchan => 'nchan (publisher on the owner)',
    'nchan-fwd' => 'nchan-fwd (publisher on the other worker)',
);

my @md;
push @md, '# Cross-worker wake-up latency: ngx_http_streaming_module vs'
          . ' nchan', '';
push @md, "Generated by `$cmdline` on " . scalar(localtime) . '.', '';
push @md, "One nginx (`$o{nginx}`, `worker_processes 2`, a `reuseport`"
    . ' listener, `add_header X-Worker $pid always`) with `'
    . ($o{module} =~ s/\Q$top\E\///r) . '`'
    . ($with_nchan ? " and `$o{nchan}`" : '') . " loaded. Per run one"
    . " stream of $o{chunks} chunks at $o{rate}/s (~$o{size}-byte SSE"
    . " events) and $o{subs} subscribers on each worker (connections are"
    . ' opened until each worker holds that many; the others are closed).'
    . ($o{apart}
       ? ' The sides run one after the other, in an order that alternates'
         . ' per repetition.'
       : ' The sides run at the same time, each with its own stream and'
         . ' subscribers, read by one client loop, so that whatever else'
         . ' the machine does hits them alike; nchan\'s messages are'
         . ' published shifted against ours\' chunks (by 1/' . scalar(@sides)
         . ' of the period per side), so that no two arrive at once.'), '';
push @md, '- ours: `POST /pub` (`streaming` proxying `build/mock-llm`'
    . " `stamp=1`, ttft $o{ttft} ms while the subscribers attach); the"
    . ' reference is that request\'s own client; subscribers'
    . ' `GET /sub?id=X&from=0` (the head comes with the replayed role'
    . ' chunk; the tokens come live). The producer\'s worker stores a'
    . ' chunk, rings the other worker\'s doorbell and writes to its own'
    . ' subscribers.';
push @md, '- nchan: this script POSTs the messages to `/npub?id=X`'
    . ' (`nchan_publisher`) over one keep-alive connection; the'
    . ' reference is the publish response; subscribers `GET /nsub?id=X`'
    . ' (`nchan_subscriber eventsource`). nchan keeps each channel on one'
    . ' worker, its owner (chosen from the id); a message published'
    . ' elsewhere goes to the owner first. Before each run a probe finds'
    . ' the owner of the id (which worker\'s subscriber gets 9 probe'
    . ' messages first), then the publisher connection is opened on the'
    . ' owner ("nchan", the same layout as ours) or on the other worker'
    . ' ("nchan-fwd", one more hop through nchan\'s IPC). On a busy machine'
    . ' the probe can be unclear; after three ids the run goes on with the'
    . ' publisher on any worker ("owner unknown" in the runs table).', '';
push @md, 'Times: ' . ($kts
    ? 'the kernel\'s receive timestamp of the read that completed a'
      . ' chunk\'s mark (SO_TIMESTAMPNS; on loopback, when nginx wrote it),'
      . ' so the client\'s own scheduling is not in the deltas; the'
      . ' "client times" table uses the time the client\'s select()'
      . ' returned.'
    : 'the time the client\'s select() returned.')
    . " The first $o{skip} chunks and those before all subscribers were"
    . ' attached are not counted. The stamp is the CLOCK_MONOTONIC time the'
    . ' mock (ours) or the publisher (nchan) wrote the chunk. "Wake-up" is'
    . ' measured per chunk from the first subscriber of the worker that got'
    . ' it first (usually the producer\'s worker for ours, the owner for'
    . ' nchan, but on a busy machine the other worker sometimes wins) to'
    . ' each subscriber of the other worker; negative values in the other'
    . ' rows mean that subscriber got the chunk before the reference.', '';

push @md, '## Medians over the repetitions (µs)', '';
push @md, 'Each cell: the median over the runs (' . $o{reps} . ' per side)'
    . ' of that run\'s percentile over all (chunk, subscriber) pairs.', '';
push @md, '| delay | side | p50 | p90 | p99 | max |';
push @md, '|---|---|---|---|---|---|';
for my $m (@metrics) {
    for my $side (@sides) {
        push @md, sprintf('| %s | %s | %s |', $m->[1], $side,
            join(' | ', map { fus(med_stat($side, $m->[0], $_)) } @ps));
    }
}
push @md, '';
my @vs = grep { /^nchan/ } @sides;
if ((grep { $_ eq 'ours' } @sides) && @vs) {
    push @md, '## Ratios ours ÷ nchan (below 1 = ours is lower; – where'
              . ' a figure is not positive)', '';
    push @md, '| delay | ' . join(' | ', map { my $v = $_;
        map { "$_ vs $v" } qw(p50 p99) } @vs) . ' |';
    push @md, '|---|' . ('---|' x (2 * @vs));
    for my $m (@metrics) {
        push @md, sprintf('| %s | %s |', $m->[1], join(' | ',
            map { my $v = $_; map { ratio(med_stat('ours', $m->[0], $_),
                                          med_stat($v, $m->[0], $_)) }
                                  qw(p50 p99) } @vs));
    }
    push @md, '';
}
if ($kts) {
    push @md, '## The same, client times (select() return; µs)', '';
    push @md, '| delay | side | p50 | p90 | p99 | max |';
    push @md, '|---|---|---|---|---|---|';
    for my $m (@metrics[0 .. 3]) {
        for my $side (@sides) {
            push @md, sprintf('| %s | %s | %s |', $m->[1], $side,
                join(' | ', map { fus(med_stat($side, "u_$m->[0]", $_)) }
                            @ps));
        }
    }
    push @md, '';
}
my $target = med_stat('ours', 'wake', 'p99');
push @md, '## Target', '';
push @md, defined $target
    ? sprintf('Cross-worker wake-up p99 of ours (median of the runs): %s'
              . ' µs: %s (target < 1,000 µs). Per run: %s µs.',
              fus($target), $target < 1000 ? 'met' : 'missed',
              join(', ', map { fus($_->{stats}{wake}{p99}) }
                         grep { !$_->{error} } @{ $res{ours} }))
    : 'No figure for ours.';
push @md, '';

push @md, '## Runs', '';
push @md, '| rep | side | producer worker | subs same + other | attach'
    . ' | should have it first (and did, share of chunks) | chunks counted'
    . ' | missing |'
    . ' wake-up p50 / p99 / max µs | other − ref p99 µs | same − ref p99 µs'
    . ' | machine busy (steal) | CPU s: nginx workers / mock / client'
    . ($o{apart} ? '' : ' (all sides of the repetition)') . ' |'
    . ' loadavg | clock drift µs |';
push @md, '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
for my $rep (1 .. $o{reps}) {
    for my $side (@sides) {
        my $r = $res{$side}[$rep - 1] or next;
        if ($r->{error}) {
            push @md, "| $rep | $side | error: $r->{error} |"
                      . ' | | | | | | | | | | | |';
            next;
        }
        my $s = $r->{stats};
        my $o = $r->{origin} eq 'unknown' ? 'owner unknown'
              : $r->{origin} eq 'producer'
                ? ($side eq 'ours' ? 'producer\'s worker'
                                   : 'owner = publisher\'s worker')
                : 'owner = other worker';
        push @md, sprintf('| %d | %s | %s | %d + %d | %s | %s (%s) | %d |'
            . ' %d | %s / %s / %s | %s | %s | %s%% (%s%%) | %.2f / %.2f /'
            . ' %.2f | %s |'
            . ' %.0f |', $rep, $side,
            $r->{worker}, $r->{subs_same}, $r->{subs_cross}, $r->{attach},
            $o, defined $r->{first_near}
                ? sprintf('%.0f%%', 100 * $r->{first_near}) : '?',
            $r->{counted}, $r->{missing}, fus($s->{wake}{p50}),
            fus($s->{wake}{p99}), fus($s->{wake}{max}), fus($s->{cross}{p99}),
            fus($s->{same}{p99}),
            defined $r->{busy} ? sprintf('%.0f', 100 * $r->{busy}) : '?',
            defined $r->{steal} ? sprintf('%.0f', 100 * $r->{steal}) : '?',
            $r->{nginx_cpu}, $r->{mock_cpu} // 0, $r->{client_cpu},
            $r->{load}, $r->{clock_drift_us});
    }
}
push @md, '';
push @md, '## Machine', '';
my ($ncpu, $busy, $steal) = machine_pct($m0, $m1);
push @md, sprintf('- CPUs: %s; whole run %.0f s, machine busy %.0f%%,'
    . ' of which steal (the hypervisor ran something else) %.0f%%',
    $ncpu, time - $m0->{time}, $busy, $steal);
push @md, "- loadavg before: $load0; after: $load1";
push @md, '- both nginx workers, the mock and this client share these'
    . ' CPUs, and whatever else runs on the machine: a worker that is not'
    . ' scheduled at once shows up as wake-up latency.', '';
push @md, '## Commands', '', '```';
push @md, "make bench-wakeup   # = $cmdline";
for my $side (@sides) {
    my $r = $res{$side}[0] or next;
    push @md, "# $side, per run: " . ($r->{cmd} // '');
    push @md, '# subscribers: GET '
        . ($side eq 'ours' ? '/sub?id=X&from=0' : '/nsub?id=X')
        . ", Accept: text/event-stream, until $o{subs} per worker";
}
push @md, '```', '';
push @md, 'nginx.conf: `build/bench/wakeup/conf/nginx.conf`.', '';
push @md, '## Notes', '';
push @md, "- $_" for @notes;
push @md, '- (none)' unless @notes;
push @md, '';
push @md, errlog_md(41, @errlines);

write_report($o{out}, join("\n", @md) . "\n");
