#!/usr/bin/perl
#
# Fan-out benchmark: one stream read by N SSE subscribers across 2 nginx
# workers, this module (`streaming` producer proxying util/mock-llm +
# `streaming_subscribe`) against nchan (Debian's libnginx-mod-nchan, loaded
# into the same nginx), plus replay time of retained chunks and RSS per idle
# subscriber (each side measured in a fresh nginx of its own).  With --ws
# the same scenarios run again with WebSocket subscribers (ours acked every
# --ws-ack chunks, window --ws-window; nchan's `nchan_subscriber websocket`).
#
#   util/bench/fanout.pl [--subs 100,1000,5000] [--msgs 500] [--rate 100]
#                        [--rss-subs 100,1000,5000] [--ws]
#
# Writes build/bench/fanout-results.md (and prints it).  Everything binds to
# 127.0.0.1; every wait is bounded.

use strict;
use warnings;

use FindBin qw($RealBin);
use lib "$RealBin/lib";

use Bench qw(:all);
use File::Path qw(make_path);
use JSON::PP;
use POSIX qw(_exit);
use Time::HiRes qw(sleep time);

my $top = Bench::setup('fanout');

my %o = (
    subs       => '100,1000,5000',
    msgs       => 500,
    rate       => 100,
    fast_msgs  => 10000,
    fast_subs  => 100,
    replay     => '500,10000',
    replay_reps => 3,
    rss_subs   => undef,
    size       => 200,
    transport  => 'sse',
    ws_ack     => 16,
    ws_window  => 1024,
);
my $cmdline = Bench::options(\%o,
    "[--subs N,N] [--msgs N] [--rate X] [--fast-msgs N] "
        . "[--fast-subs N] [--replay N,N] [--replay-reps N] "
        . "[--rss-subs N,N] [--transport sse,ws | --ws] [--ws-ack N] "
        . "[--ws-window N]",
    qw(subs=s msgs=i rate=f fast-msgs=i fast-subs=i replay=s replay-reps=i
       rss-subs=s transport=s),
    'ws' => sub { $o{transport} = 'sse,ws' },
    qw(ws-ack=i ws-window=i nchan=s));

my @subs = grep { /\S/ } split /,/, $o{subs};
die "--subs: numbers 1..8000\n" if grep { !/^\d+$/ || $_ < 1 || $_ > 8000 } @subs;
# RSS per idle subscriber: by default for each --subs count
my @rss_subs = grep { /\S/ } split /,/, $o{rss_subs} // $o{subs};
die "--rss-subs: numbers 1..8000\n"
    if grep { !/^\d+$/ || $_ < 1 || $_ > 8000 } @rss_subs;
my @replay = grep { /\S/ } split /,/, $o{replay};
die "--replay: numbers 1..10000\n"
    if grep { !/^\d+$/ || $_ < 1 || $_ > 10000 } @replay;
die "--msgs must be 1..100000\n" unless $o{msgs} >= 1 && $o{msgs} <= 100000;
die "--rate must be > 0\n" unless $o{rate} > 0;
die "--replay-reps must be 1..10\n"
    unless $o{replay_reps} >= 1 && $o{replay_reps} <= 10;
my @trs = grep { /\S/ } split /,/, $o{transport};
die "--transport: sse, ws\n"
    if !@trs || grep { !/^(sse|ws)$/ } @trs;
my %tr = map { $_ => 1 } @trs;
die "--ws-ack must be 1..--ws-window\n"
    unless $o{ws_ack} >= 1 && $o{ws_ack} <= $o{ws_window};

my ($mock_bin, $load_bin) = check_programs(\%o, load => 1, nchan => 1);

my $bench  = "$top/build/bench";
my $prefix = "$bench/fanout";
my $json   = JSON::PP->new->canonical;
my @notes;
my @errlines;
my $errlog = Bench::LogTail->new("$prefix/logs/error.log", \@errlines);
my ($mock_pid, @workers);

# ------------------------------------------------------------------
# /proc

sub snap {
    my %s = (ns => 0, rss => 0, anon => 0, fd => 0);
    for my $w (@workers) {
        $s{ns} += proc_sched_ns($w);
        my ($r, $a) = proc_rss($w);
        $s{rss} += $r;
        $s{anon} += $a;
        $s{fd} += proc_nfd($w);
    }
    $s{mock_ns} = proc_sched_ns($mock_pid);
    return { %s, %{ machine_snap() } };
}

# ------------------------------------------------------------------
# nginx

sub write_conf {
    my (%a) = @_;
    # WebSocket subscribers: every one of ours is paced by acks
    my $ws = !$tr{ws} ? '' : <<"WS";

        # ours: WebSocket subscribers, paced by acks (the client acks every
        # $o{ws_ack} chunks)
        location = /wsub {
            streaming_subscribe bench;
            streaming_id \$arg_id;
            streaming_window $o{ws_window};
        }
        # nchan: WebSocket subscribers
        location = /nwsub {
            nchan_subscriber websocket;
            nchan_channel_id \$arg_id;
            nchan_subscriber_first_message oldest;
        }
WS
    my $ours = ours_locations('bench', $o{size});
    my $nchan = nchan_locations(buffer => 10000, timeout => '10m',
                                oldest => 1);
    write_nginx_conf(dir => $prefix, connections => 12000,
                     main => <<"MAIN", http_first => <<"FIRST", http => <<"HTTP");
load_module $o{module};
load_module $o{nchan};

worker_processes 2;
worker_rlimit_nofile 20000;
MAIN
    variables_hash_max_size 2048;
FIRST
    streaming_zone bench 256m max_streams=0 buffer=16m ttl=10m;
    nchan_shared_memory_size 256m;

    upstream mock {
        server 127.0.0.1:$a{mport};
        keepalive 64;
    }

    server {
        # reuseport: subscribers spread over both workers, so about half of
        # them are on the worker that does not hold the producer
        listen 127.0.0.1:$a{port} backlog=8192 reuseport;
        # the nchan publisher sends everything over one keep-alive connection
        keepalive_requests 1000000;

$ours        location = /status {
            streaming_status;
        }

$nchan$ws    }
HTTP
}

sub start_nginx_fanout {
    my ($port, $mport) = @_;
    write_conf(port => $port, mport => $mport);
    return start_nginx(nginx => $o{nginx}, prefix => $prefix, port => $port,
                       nofile => 20000);
}

# ------------------------------------------------------------------
# sse-load in the background (load_start, load_finish)

sub load_cmd {
    my (%a) = @_;
    my @cmd = ($load_bin, '-u', $a{url}, '-c', $a{conns}, '-t', $a{timeout},
               '-Q', '-m', $a{method} // 'GET');
    if ($a{ws}) {
        push @cmd, '-w';
        push @cmd, '-a', $a{ack} if $a{ack};
    } else {
        push @cmd, '-H', 'Accept: text/event-stream';
    }
    push @cmd, '-r', $a{ramp} if $a{ramp};
    return @cmd;
}

# subscribers' path: SSE or WebSocket, ours or nchan's
sub sub_path {
    my ($tr, $side, $id, $from) = @_;
    return $side eq 'ours'
        ? ($tr eq 'ws' ? '/wsub' : '/sub') . "?id=$id&from=$from"
        : ($tr eq 'ws' ? '/nwsub' : '/nsub') . "?id=$id";
}

# subscribers' command
sub sub_cmd {
    my ($tr, $side, %a) = @_;
    return load_cmd(%a, ws => $tr eq 'ws',
                    ack => $side eq 'ours' ? $o{ws_ack} : 0);
}

# how a side is named in log lines
sub who { my ($tr, $side) = @_; $tr eq 'sse' ? $side : "$side/ws" }

# ------------------------------------------------------------------
# nchan publisher (forked child): N messages at RATE/s (0 = back to back)
# over one keep-alive connection, each stamped "@<usec> #<i> " and padded.

sub http_req {
    my ($sock, $req) = @_;
    print $sock $req;
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread($sock, my $b, 4096);
        return (0, '') unless $n;
        $head .= $b;
    }
    my ($h, $rest) = split /\r\n\r\n/, $head, 2;
    my ($st) = $h =~ m{^HTTP/1\.\d (\d+)};
    my ($cl) = $h =~ /\r\nContent-Length:\s*(\d+)/i;
    if (defined $cl) {
        while (length($rest) < $cl) {
            my $n = sysread($sock, my $b, 65536);
            last unless $n;
            $rest .= $b;
        }
    } elsif ($h =~ /chunked/i) {
        while ($rest !~ /(^|\r\n)0\r\n\r\n/) {
            my $n = sysread($sock, my $b, 65536);
            last unless $n;
            $rest .= $b;
        }
    }
    return ($st // 0, $rest);
}

sub nchan_publish {
    my ($port, $id, $n, $rate, $delete) = @_;
    my $sock = connect_local($port) or die "publisher: connect: $!\n";
    $sock->autoflush(1);
    my $t0 = time;
    my ($ok, $bad) = (0, 0);
    for my $i (1 .. $n) {
        if ($rate > 0) {
            my $due = $t0 + ($i - 1) / $rate;
            my $d = $due - time;
            sleep $d if $d > 0;
        }
        my $body = npub_body('@' . usec() . " #$i"
                             . ($i == $n ? ' #last' : '') . ' ', $o{size});
        my ($st) = http_req($sock, npub_post($id, $body));
        if ($st >= 200 && $st < 300) { $ok++ } else { $bad++ }
        last if $st == 0;
    }
    my $el = time - $t0;
    if ($delete) {
        http_req($sock, npub_delete($id));
    }
    close $sock;
    return ($ok, $bad, $el);
}

sub nchan_publish_bg {
    my @a = @_;
    pipe(my $r, my $w) or die "pipe: $!\n";
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        close $r;
        $SIG{INT} = $SIG{TERM} = 'DEFAULT';
        my @res = eval { nchan_publish(@a) };
        @res = (0, -1, 0) unless @res;
        print $w "@res\n";
        close $w;
        _exit(0);
    }
    close $w;
    track_pid($pid);
    return ($pid, $r);
}

sub nchan_publish_wait {
    my ($pid, $r, $secs) = @_;
    my $l;
    {
        local $SIG{ALRM} = sub { die "alarm\n" };
        alarm($secs);
        eval { $l = <$r>; 1 };
        alarm(0);
    }
    stop_pid($pid, 'TERM', 5);
    untrack_pid($pid);
    my ($ok, $bad, $el) = split ' ', ($l // '0 -1 0');
    return { ok => $ok, bad => $bad, secs => $el };
}

# ------------------------------------------------------------------
# replay client: GET, time until the last retained chunk has arrived

sub replay_once {
    my ($port, $path, $done_re, $want) = @_;
    my $t0 = time;
    my $sock = connect_local($port) or return { error => "connect: $!" };
    print $sock "GET $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                . "Accept: text/event-stream\r\nConnection: close\r\n\r\n";
    my $buf = '';
    my $t_end;
    my $deadline = time + 60;
    my $rin = '';
    vec($rin, fileno($sock), 1) = 1;
    while (time < $deadline) {
        my $n = select(my $rout = $rin, undef, undef, 1);
        next unless $n;
        $n = sysread($sock, my $b, 262144);
        if (!$n) { $t_end = time; last }
        my $from = length($buf) > 64 ? length($buf) - 64 : 0;
        $buf .= $b;
        if ($done_re && substr($buf, $from) =~ $done_re) { $t_end = time; last }
    }
    close $sock;
    my ($st) = $buf =~ m{^HTTP/1\.\d (\d+)};
    my $stamps = () = $buf =~ /\@\d{6,}/g;
    return { status => $st // 0, secs => defined $t_end ? $t_end - $t0 : undef,
             stamps => $stamps, bytes => length $buf,
             timeout => defined $t_end ? 0 : 1 };
}

# ------------------------------------------------------------------
# main

logp("top $top");
make_path($bench);
my $m0 = machine_snap();
my $load0 = loadavg_line();
(my $mport, $mock_pid) = start_mock($mock_bin);
my $port  = free_port();
@workers = start_nginx_fanout($port, $mport);
logp("mock on $mport (pid $mock_pid), nginx on $port (master " . nginx_master() . ","
     . " workers @workers)");
$errlog->take('start');
my $base = "http://127.0.0.1:$port";
my @cmds;
my %res;    # {transport}{side}{scenario} = {...}

sub wait_fds {
    my ($target, $secs) = @_;
    my $s;
    return wait_for($secs, 0.1, sub { $s = snap(); $s->{fd} >= $target })
        ? $s : snap();
}

sub wait_stream {
    my ($id, $secs) = @_;
    return wait_for($secs, 0.05, sub {
        my $s = connect_local($port) or return 0;
        my ($st, $body) = http_req($s, "GET /status?format=json&id=$id "
                            . "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        close $s;
        return $st == 200 && $body =~ /\Q"$id"\E/;
    });
}

my $seq = 0;

# one fan-out run: $n subscribers, $msgs messages at $rate (0 = fast), over
# SSE or WebSocket ($tr)
sub fanout {
    my ($tr, $side, $label, $n, $msgs, $rate) = @_;
    $seq++;
    my $id = "f$seq$side";
    my $ramp = $n > 200 ? sprintf('%.1f', $n / 2000) : 0;
    my $attach_wait = 5 + $n / 500;
    my $run_secs = ($rate > 0 ? $msgs / $rate : 30) + 30;
    my %r = (side => $side, label => $label, subs => $n, msgs => $msgs);
    my ($ppid, $pfh, $pcmd);
    my $ttft = int(($attach_wait + 2) * 1000);
    my $s0 = snap();                       # nothing attached yet
    if ($side eq 'ours') {
        # producer starts at once; its mock upstream waits ttft before
        # the first token, the subscribers attach during that time
        my @p = load_cmd(url => "$base/pub?id=$id&tokens=$msgs&tps=$rate"
                                . "&ttft=$ttft",
                         conns => 1, timeout => int($run_secs + $ttft / 1000),
                         method => 'POST');
        ($ppid, $pfh) = load_start(@p);
        $pcmd = show_cmd(@p);
        wait_stream($id, 10) or push @notes, "$label ours: stream $id not seen in status";
        $s0 = snap();                      # producer attached, no subscribers
    }
    my $path = sub_path($tr, $side, $id, 'live');
    my @c = sub_cmd($tr, $side, url => "$base$path", conns => $n,
                    ramp => $ramp,
                    timeout => int($attach_wait + $run_secs + $ttft / 1000));
    my ($lpid, $lfh) = load_start(@c);
    my $s1 = wait_fds($s0->{fd} + $n, $attach_wait);
    sleep 0.5;
    $s1 = snap();                          # N idle subscribers attached
    $r{attached} = $s1->{fd} - $s0->{fd};
    $r{rss_per_sub} = ($s1->{rss} - $s0->{rss}) / $n;
    $r{anon_per_sub} = ($s1->{anon} - $s0->{anon}) / $n;
    my $pub;
    if ($side eq 'nchan') {
        my ($pp, $pr) = nchan_publish_bg($port, $id, $msgs, $rate, 1);
        $pub = nchan_publish_wait($pp, $pr, int($run_secs + 30));
        $pcmd = "publisher: $msgs x POST /npub?id=$id at "
                . ($rate ? "$rate/s" : 'full speed')
                . " (one keep-alive connection), then DELETE";
        $r{pub} = $pub;
    }
    my $lr = load_finish($lpid, $lfh, int($attach_wait + $run_secs + $ttft / 1000 + 30));
    my $s2 = snap();
    if ($side eq 'ours') {
        my $pr = load_finish($ppid, $pfh, 30);
        $r{producer} = $pr;
    }
    $r{load} = $lr;
    my $ev = $lr->{events} // 0;
    $r{events} = $ev;
    $r{expected} = $n * $msgs;
    $r{stamped} = $lr->{stamped_events} // 0;
    $r{cpu_ns} = $s2->{ns} - $s1->{ns};
    $r{ns_per_ev} = $ev ? $r{cpu_ns} / $ev : undef;
    $r{ns_per_stamped} = $r{stamped} ? $r{cpu_ns} / $r{stamped} : undef;
    $r{mock_ns} = $s2->{mock_ns} - $s1->{mock_ns};
    @r{qw(busy steal)} = machine_busy($s1, $s2);
    $r{secs} = $s2->{time} - $s1->{time};
    $r{ws} = $lr->{ws};
    $r{bytes_per_ev} = $ev ? ($lr->{body_bytes} // 0) / $ev : undef;
    $r{lat} = $lr->{latency_us} // {};
    $r{errors} = $lr->{errors};
    $r{error_kinds} = $lr->{error_kinds};
    $r{cmd} = show_cmd(@c);
    $r{pcmd} = $pcmd;
    my @l = $errlog->take("$label " . who($tr, $side));
    $r{errlog} = scalar @l;
    $res{$tr}{$side}{$label} = \%r;
    logp(sprintf("%-6s %-22s subs %d attached %d events %d/%d stamped %d "
                 . "p50 %s p99 %s us, %.0f ns/ev, rss/sub %.0f B, errors %s, "
                 . "errlog %d", who($tr, $side), $label, $n, $r{attached}, $ev,
                 $r{expected}, $r{stamped}, $r{lat}{p50} // '-',
                 $r{lat}{p99} // '-', $r{ns_per_ev} // -1, $r{rss_per_sub},
                 $lr->{errors} // '?', $r{errlog}));
    sleep 1;   # let closed connections go
}

sub replay {
    my ($side, $n) = @_;
    $seq++;
    my $id = "r$seq$side";
    my %r = (side => $side, n => $n);
    if ($side eq 'ours') {
        my @p = load_cmd(url => "$base/pub?id=$id&tokens=$n&tps=0&ttft=0",
                         conns => 1, timeout => 60, method => 'POST');
        my ($pp, $pf) = load_start(@p);
        my $pr = load_finish($pp, $pf, 90);
        $r{fill} = "producer: " . show_cmd(@p) . " (events "
                   . ($pr->{stamped_events} // '?') . ")";
    } else {
        my ($pp, $pr) = nchan_publish_bg($port, $id, $n, 0, 0);
        my $p = nchan_publish_wait($pp, $pr, 120);
        $r{fill} = "publisher: $n x POST /npub?id=$id back to back "
                   . "(ok $p->{ok}, failed $p->{bad}, "
                   . sprintf('%.2f s', $p->{secs}) . ")";
    }
    my $path = $side eq 'ours' ? "/sub?id=$id&from=0" : "/nsub?id=$id";
    my $done = $side eq 'ours' ? undef : qr/#last /;
    my @t;
    for (1 .. $o{replay_reps}) {
        my $x = replay_once($port, $path, $done, $n);
        push @t, $x;
    }
    $r{runs} = \@t;
    $r{secs} = median(map { $_->{secs} } @t);
    $r{stamps} = join '/', map { $_->{stamps} } @t;
    $r{status} = join '/', map { $_->{status} } @t;
    $r{path} = $path;
    my @l = $errlog->take("replay $n $side");
    $r{errlog} = scalar @l;
    $res{sse}{$side}{"replay$n"} = \%r;
    logp(sprintf("%-6s replay %d: %s s (stamps %s, status %s)", $side, $n,
                 defined $r{secs} ? sprintf('%.4f', $r{secs}) : '-',
                 $r{stamps}, $r{status}));
}

# RSS per idle subscriber, in a fresh nginx for each side, so that memory
# the workers kept from earlier scenarios does not hide (or add to) what N
# subscribers cost.  The stream holds one chunk and sends nothing more while
# they are measured; they read it (from=0 / nchan's oldest message), so
# every one of them has had its response head and one event sent.
sub rss_idle {
    my ($tr, $side, $n) = @_;
    stop_nginx();
    @workers = start_nginx_fanout($port, $mport);
    $errlog->rewind;
    $seq++;
    my $id = "m$seq$side";
    my $attach_wait = 5 + $n / 500;
    my $ramp = $n > 200 ? sprintf('%.1f', $n / 2000) : 0;
    my %r = (side => $side, subs => $n);
    my ($ppid, $pfh);
    if ($side eq 'ours') {
        # token 0 at once, token 1 only after 100 s (the producer is
        # stopped long before)
        my @p = load_cmd(url => "$base/pub?id=$id&tokens=2&tps=0.01&ttft=0",
                         conns => 1, timeout => int($attach_wait + 60),
                         method => 'POST');
        ($ppid, $pfh) = load_start(@p);
        $r{pcmd} = show_cmd(@p);
        wait_stream($id, 10)
            or push @notes, "RSS $n ours: stream $id not seen in status";
        sleep 0.3;
    } else {
        my ($pp, $pr) = nchan_publish_bg($port, $id, 1, 0, 0);
        my $p = nchan_publish_wait($pp, $pr, 30);
        $r{pcmd} = "publisher: 1 x POST /npub?id=$id (ok $p->{ok})";
    }
    my $s0 = snap();
    my $path = sub_path($tr, $side, $id, 0);
    my @c = sub_cmd($tr, $side, url => "$base$path", conns => $n,
                    ramp => $ramp, timeout => int($attach_wait + 30));
    my ($lpid, $lfh) = load_start(@c);
    wait_fds($s0->{fd} + $n, $attach_wait);
    sleep 0.5;
    my $s1 = snap();
    $r{attached} = $s1->{fd} - $s0->{fd};
    $r{rss_per_sub} = ($s1->{rss} - $s0->{rss}) / $n;
    $r{anon_per_sub} = ($s1->{anon} - $s0->{anon}) / $n;
    $r{cmd} = show_cmd(@c);
    for ([$lpid, $lfh], [$ppid, $pfh]) {
        my ($pid, $fh) = @$_;
        next unless $pid;
        stop_pid($pid, 'TERM', 5);
        close $fh;
        untrack_pid($pid);
    }
    my @l = $errlog->take("RSS $n " . who($tr, $side));
    $r{errlog} = scalar @l;
    $res{$tr}{$side}{"rss$n"} = \%r;
    logp(sprintf("%-6s RSS, fresh nginx: %d subs, attached %d, %.0f B"
                 . " (anon %.0f B) per idle subscriber", who($tr, $side), $n,
                 $r{attached}, $r{rss_per_sub}, $r{anon_per_sub}));
}

# warm-up
for my $tr (@trs) {
    fanout($tr, 'ours', 'warmup', 20, 20, 100);
    fanout($tr, 'nchan', 'warmup', 20, 20, 100);
}

# each scenario over each transport, one right after the other, so that
# the machine's load changes as little as possible between them
my @labels;
my $flip = 0;
for my $n (@subs) {
    my $label = "$n subs \@ $o{rate}/s";
    push @labels, $label;
    for my $tr (@trs) {
        my @sides = $flip++ % 2 ? qw(nchan ours) : qw(ours nchan);
        fanout($tr, $_, $label, $n, $o{msgs}, $o{rate}) for @sides;
    }
}
if ($o{fast_msgs} > 0) {
    my $label = "$o{fast_subs} subs, fast";
    push @labels, $label;
    for my $tr (@trs) {
        fanout($tr, $_, $label, $o{fast_subs}, $o{fast_msgs}, 0)
            for qw(ours nchan);
    }
}
for my $n (@replay) {
    replay($_, $n) for qw(ours nchan);
}
my $m1 = machine_snap();
my $load1 = loadavg_line();
my $final_status = do {
    my $s = connect_local($port);
    my ($st, $b) = $s ? http_req($s, "GET /status HTTP/1.1\r\nHost: x\r\n"
                                   . "Connection: close\r\n\r\n") : (0, '');
    $b;
};
my $alive = kill(0, $workers[0]) && kill(0, $workers[1]);
push @notes, workers_changed(@workers);
for my $n (@rss_subs) {
    for my $tr (@trs) {
        rss_idle($tr, $_, $n) for qw(ours nchan);
    }
}
cleanup();
$errlog->take('shutdown');

# ------------------------------------------------------------------
# report

sub f0 { defined $_[0] ? sprintf('%.0f', $_[0]) : '–' }
sub f2 { defined $_[0] ? sprintf('%.2f', $_[0]) : '–' }
sub ratio {
    my ($a, $b) = @_;
    return '–' unless defined $a && defined $b && $b != 0;
    return sprintf('%.2f', $a / $b);
}

my %trname = (sse => 'SSE', ws => 'WebSocket');
# one row of a scenario's figures
sub cells {
    my ($tr, $label, $r) = @_;
    my @c = ($label, $r->{side}, "$r->{attached} / $r->{subs}",
             "$r->{stamped} / $r->{expected}", $r->{errors} // '?',
             f0($r->{lat}{p50}), f0($r->{lat}{p99}), f0($r->{lat}{max}),
             f0($r->{ns_per_stamped}));
    my $busy = defined $r->{busy} ? sprintf('%.0f%%', 100 * $r->{busy})
                                  : '–';
    return (@c, $busy) if $tr eq 'sse';
    my $ws = $r->{ws} // {};
    return (@c, f0($r->{bytes_per_ev}),
            ($ws->{acks_sent} // '?') . ' / ' . ($ws->{failed_responses} // '?'),
            $busy . (defined $r->{steal}
                     ? sprintf(' (%.0f%%)', 100 * $r->{steal}) : ''));
}
# "ours / nchan (ratio)"
sub pair {
    my ($a, $b, $fmt) = @_;
    return sprintf('%s / %s (%s)', $fmt->($a), $fmt->($b), ratio($a, $b));
}
sub fms { defined $_[0] ? sprintf('%.2f', $_[0] / 1000) : '–' }

my @md;
push @md, "# Fan-out benchmark: ngx_http_streaming_module vs nchan", '';
push @md, "Generated by `$cmdline` on " . scalar(localtime) . ".", '';
push @md, "One nginx (`$o{nginx}`, 2 workers, `reuseport`, so the subscribers"
    . " spread over both workers and about half of them are on the worker"
    . " that does not hold the producer / publisher) with both"
    . " `" . ($o{module} =~ s/\Q$top\E\///r) . "` and `$o{nchan}` loaded."
    . " Ours: `streaming bench;` producer location proxying `build/mock-llm`"
    . " (`POST /v1/chat/completions?stamp=1&size=$o{size}`), subscribers"
    . " `GET /sub?id=X&from=live` (`streaming_subscribe`). nchan: publisher"
    . " `POST /npub?id=X` (`nchan_publisher`) from this script over one"
    . " keep-alive connection, body `\@<usec> #<i> xxx…` (~$o{size} bytes per"
    . " SSE event), subscribers `GET /nsub?id=X` (`nchan_subscriber"
    . " eventsource`). Subscribers: `build/sse-load` (GET, `Accept:"
    . " text/event-stream`); latency = receive time − the `\@<usec>`"
    . " CLOCK_MONOTONIC stamp written by the mock / the publisher.", '';
push @md, "WebSocket: the same producers and scenarios, subscribers"
    . " `build/sse-load -w` (the RFC 6455 handshake, one event per text"
    . " message, its latency from the first `\@<usec>` in it, as for SSE)."
    . " Ours: `GET /wsub?id=X&from=live` (`streaming_subscribe` with"
    . " `streaming_window $o{ws_window}`; every chunk is an Omni"
    . " `stream-chunk` JSON message; every WebSocket subscription is paced"
    . " by acks, and the client acks every $o{ws_ack} chunks with a masked"
    . " `stream-control` `ack`, closes after the final `stream-status`)."
    . " nchan: `GET /nwsub?id=X` (`nchan_subscriber websocket`, the"
    . " message body as it was published; nchan closes with a close frame"
    . " on the channel's `DELETE`), no acks.", '' if $tr{ws};
for my $tr (@trs) {
    my $R = $res{$tr};
    my @head = ('scenario', 'side', 'subscribers attached',
                'events received / expected', 'errors', 'p50 µs', 'p99 µs',
                'max µs', 'nginx CPU ns / delivery');
    push @head, $tr eq 'sse' ? 'machine busy'
        : ('bytes / message', 'acks sent / failed responses',
           'machine busy (steal)');
    push @md, $tr eq 'sse' ? "## Fan-out" : "## Fan-out, WebSocket", '';
    push @md, md_table(\@head, map { my $l = $_;
        map { $R->{$_}{$l} ? [cells($tr, $l, $R->{$_}{$l})] : () }
            qw(ours nchan) } @labels);
    push @md, '', "\"events received\" counts stamped events (one per"
        . " chunk/message); CPU per delivery = schedstat run time of both"
        . " workers from all-attached to all-finished ÷ stamped events"
        . " received by all subscribers. \"subscribers attached\" = new"
        . " descriptors in the two workers after the attach wait (ours: the"
        . " producer's two descriptors are in the baseline).", ''
        if $tr eq 'sse';
    push @md, '', "Messages are text frames; \"events received\" counts"
        . " stamped messages (ours: the `stream-chunk`s with a token, not"
        . " `stream-init`, the role chunk, the final marker and"
        . " `stream-status`); bytes / message = frame payload bytes ÷ all"
        . " messages. CPU per delivery as for SSE; for ours it includes"
        . " reading the acks.", '' if $tr eq 'ws';
    push @md, $tr eq 'sse' ? "## Ratios (ours ÷ nchan; below 1 = ours is lower)"
        : "## Ratios, WebSocket (ours ÷ nchan; below 1 = ours is lower)", '';
    push @md, md_table(['scenario', 'p50 latency', 'p99 latency',
                        'CPU / delivery'],
        map { my ($a, $b) = ($R->{ours}{$_}, $R->{nchan}{$_});
              $a && $b ? [$_, ratio($a->{lat}{p50}, $b->{lat}{p50}),
                          ratio($a->{lat}{p99}, $b->{lat}{p99}),
                          ratio($a->{ns_per_stamped}, $b->{ns_per_stamped})]
                       : () } @labels);
    push @md, '';
}
if (@trs > 1) {
    push @md, "## SSE and WebSocket side by side (ours / nchan, ratio)", '';
    push @md, "RSS from the fresh-nginx measurement below (where that count"
        . " was measured).", '';
    my @rows;
    for my $l (@labels) {
        my ($n) = $l =~ /^(\d+) subs \@/;
        for my $tr (@trs) {
            my ($a, $b) = ($res{$tr}{ours}{$l}, $res{$tr}{nchan}{$l});
            next unless $a && $b;
            my ($ra, $rb) = defined $n ? ($res{$tr}{ours}{"rss$n"},
                                          $res{$tr}{nchan}{"rss$n"}) : ();
            push @rows, [$l, $trname{$tr},
                pair($a->{lat}{p50}, $b->{lat}{p50}, \&fms),
                pair($a->{lat}{p99}, $b->{lat}{p99}, \&fms),
                pair($a->{ns_per_stamped}, $b->{ns_per_stamped}, \&f0),
                $ra && $rb ? pair($ra->{rss_per_sub}, $rb->{rss_per_sub},
                                  \&f0) : '–'];
        }
    }
    push @md, md_table(['scenario', 'transport', 'p50 ms', 'p99 ms',
                        'nginx CPU ns / delivery',
                        'RSS B per idle subscriber'], @rows);
    push @md, '';
}

for my $tr (@trs) {
    my $R = $res{$tr};
    push @md, $tr eq 'sse'
        ? "## RSS per idle subscriber (a fresh nginx per side)"
        : "## RSS per idle subscriber, WebSocket (a fresh nginx per side)",
        '';
    push @md, "For each count and side a new nginx is started (same"
        . " configuration), a stream with one chunk is made (ours: a"
        . " `streaming` request whose mock sends token 0 at once and token 1"
        . " only after 100 s; nchan: one published message), N subscribers"
        . " read it (`from=0` / nchan's oldest message) and stay idle. RSS"
        . " per idle subscriber = (VmRSS, and RssAnon, of both workers with"
        . " the N subscribers attached − the same before they attached) ÷"
        . " N.", '' if $tr eq 'sse';
    push @md, "The same with WebSocket subscribers (ours: `stream-init` and"
        . " the one chunk read; nchan: the one message).", ''
        if $tr eq 'ws';
    push @md, md_table(['subscribers', 'ours attached',
                        'ours B (VmRSS; RssAnon)', 'nchan attached',
                        'nchan B (VmRSS; RssAnon)', 'ratio (VmRSS)'],
        map { my ($a, $b) = ($R->{ours}{"rss$_"}, $R->{nchan}{"rss$_"});
              $a && $b ? [$_, $a->{attached},
                          f0($a->{rss_per_sub}) . '; ' . f0($a->{anon_per_sub}),
                          $b->{attached},
                          f0($b->{rss_per_sub}) . '; ' . f0($b->{anon_per_sub}),
                          ratio($a->{rss_per_sub}, $b->{rss_per_sub})]
                       : () } @rss_subs);
    push @md, '';
}

push @md, "## Replay to a reconnecting client", '';
push @md, "Time from connect until the last retained chunk has arrived (ours:"
    . " `from=0` on a completed stream, until the response ends; nchan:"
    . " `nchan_subscriber_first_message oldest`, until the message marked"
    . " `#last` arrives), median of $o{replay_reps}.", '';
push @md, "| retained | ours s | nchan s | ratio | ours stamps seen | nchan stamps seen | ours status | nchan status |";
push @md, "|---|---|---|---|---|---|---|---|";
for my $n (@replay) {
    my ($a, $b) = ($res{sse}{ours}{"replay$n"}, $res{sse}{nchan}{"replay$n"});
    push @md, sprintf("| %d | %s | %s | %s | %s | %s | %s | %s |", $n,
        defined $a->{secs} ? sprintf('%.4f', $a->{secs}) : '–',
        defined $b->{secs} ? sprintf('%.4f', $b->{secs}) : '–',
        ratio($a->{secs}, $b->{secs}), $a->{stamps}, $b->{stamps},
        $a->{status}, $b->{status});
}
push @md, '';

push @md, "## Machine load", '';
my ($ncpu, $busy, $steal) = machine_pct($m0, $m1);
push @md, sprintf("- CPUs: %s; whole run %.0f s, machine busy %.0f%%"
    . " (steal %.0f%%)", $ncpu, $m1->{time} - $m0->{time}, $busy, $steal);
push @md, "- loadavg before: $load0" =~ s/\n//r;
push @md, "- loadavg after: $load1" =~ s/\n//r;
push @md, "- the subscribers' client, the mock / publisher and both nginx"
    . " workers share these CPUs; the \"machine busy\" column shows runs where"
    . " the machine was saturated (latency then includes queueing in the"
    . " client).", '';

push @md, "## Commands", '';
push @md, '```';
push @md, "make bench-fanout   # = $cmdline";
for my $tr (@trs) {
    for my $l ('warmup', @labels) {
        for my $side (qw(ours nchan)) {
            my $r = $res{$tr}{$side}{$l} or next;
            push @md, "# $l, $side" . ($tr eq 'ws' ? ', WebSocket' : '');
            push @md, "$r->{pcmd}" if $r->{pcmd};
            push @md, $r->{cmd};
        }
    }
}
for my $n (@replay) {
    for my $side (qw(ours nchan)) {
        my $r = $res{sse}{$side}{"replay$n"} or next;
        push @md, "# replay $n, $side";
        push @md, $r->{fill};
        push @md, "GET $r->{path} (x$o{replay_reps}, own client in fanout.pl)";
    }
}
for my $n (@rss_subs) {
    for my $tr (@trs) {
        for my $side (qw(ours nchan)) {
            my $r = $res{$tr}{$side}{"rss$n"} or next;
            push @md, "# RSS, $n idle subscribers, $side"
                      . ($tr eq 'ws' ? ', WebSocket' : '') . " (fresh nginx)";
            push @md, $r->{pcmd}, $r->{cmd};
        }
    }
}
push @md, '```', '';
push @md, "nginx.conf: `build/bench/fanout/conf/nginx.conf`.", '';

push @md, "## nchan publisher", '';
for my $tr (@trs) {
    for my $l (@labels) {
        my $r = $res{$tr}{nchan}{$l} or next;
        my $p = $r->{pub};
        push @md, sprintf("- %s%s: %d published, %d failed, %.2f s"
            . " (%.0f msg/s)", $l, $tr eq 'ws' ? ', WebSocket' : '',
            $p->{ok}, $p->{bad}, $p->{secs},
            $p->{secs} ? $p->{ok} / $p->{secs} : 0);
    }
}
push @md, '';
push @md, "## sse-load error kinds", '';
for my $tr (@trs) {
    for my $l (@labels) {
        for my $side (qw(ours nchan)) {
            my $r = $res{$tr}{$side}{$l} or next;
            push @md, "- $l, $side" . ($tr eq 'ws' ? ', WebSocket' : '')
                . ": " . $json->encode($r->{error_kinds} // {})
                . ($r->{ws} ? "; WebSocket: " . $json->encode($r->{ws}) : '')
                . ($side eq 'ours' && $r->{producer}
                   ? "; producer client: events $r->{producer}{events},"
                     . " errors " . ($r->{producer}{errors} // '?') : '');
        }
    }
}
push @md, '';
push @md, "## Notes", '';
push @md, "- $_" for @notes;
push @md, "- nginx workers alive at the end: " . ($alive ? 'yes' : 'NO');
push @md, '';
push @md, errlog_md(61, @errlines);
push @md, "## streaming_status at the end", '', '```', ($final_status // '') =~ s/\s+$//r, '```', '';

write_report($o{out}, join("\n", @md) . "\n");
