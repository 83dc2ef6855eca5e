#!/usr/bin/perl
#
# Fan-out benchmark: one stream read by N SSE subscribers across 2 nginx
# workers, this module (`streaming` producer proxying util/mock-llm +
# `streaming_subscribe`) against nchan (Debian's libnginx-mod-nchan, loaded
# into the same nginx), plus replay time of retained chunks and RSS per idle
# subscriber (each side measured in a fresh nginx of its own).
#
#   util/bench/fanout.pl [--subs 100,1000,5000] [--msgs 500] [--rate 100]
#                        [--rss-subs 100,1000,5000]
#
# Writes build/bench/fanout-results.md (and prints it).  Everything binds to
# 127.0.0.1; every wait is bounded.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(sleep time clock_gettime CLOCK_MONOTONIC);

my $top = abs_path(dirname(abs_path($0)) . '/../..');

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
    nginx      => '/usr/sbin/nginx',
    module     => "$top/build/debian/ngx_http_streaming_module.so",
    nchan      => '/usr/lib/nginx/modules/ngx_nchan_module.so',
    out        => "$top/build/bench/fanout-results.md",
);
my $cmdline = join ' ', 'util/bench/fanout.pl', @ARGV;
GetOptions(
    'subs=s'      => \$o{subs},
    'msgs=i'      => \$o{msgs},
    'rate=f'      => \$o{rate},
    'fast-msgs=i' => \$o{fast_msgs},
    'fast-subs=i' => \$o{fast_subs},
    'replay=s'    => \$o{replay},
    'replay-reps=i' => \$o{replay_reps},
    'rss-subs=s'  => \$o{rss_subs},
    'nginx=s'     => \$o{nginx},
    'module=s'    => \$o{module},
    'nchan=s'     => \$o{nchan},
    'out=s'       => \$o{out},
) or die "usage: $0 [--subs N,N] [--msgs N] [--rate X] [--fast-msgs N] "
        . "[--fast-subs N] [--replay N,N] [--replay-reps N] "
        . "[--rss-subs N,N]\n";

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

my $mock_bin = "$top/build/mock-llm";
my $load_bin = "$top/build/sse-load";
for ($mock_bin, $load_bin, $o{module}, $o{nginx}) {
    die "missing $_ (run: make module mock bench-tools)\n" unless -e $_;
}
die "missing $o{nchan} (apt-get install libnginx-mod-nchan)\n"
    unless -e $o{nchan};
$o{module} = abs_path($o{module});

my $bench  = "$top/build/bench";
my $prefix = "$bench/fanout";
my $json   = JSON::PP->new->canonical;
my @pids;
my @notes;
my @errlines;

$SIG{INT} = $SIG{TERM} = sub { cleanup(); exit 130 };
END { local $?; cleanup() }

sub logp { print STDERR "fanout: @_\n" }
sub usec { int(clock_gettime(CLOCK_MONOTONIC) * 1e6) }

# ------------------------------------------------------------------
# processes

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "cannot bind: $!\n";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub wait_port {
    my ($port, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        if ($s) { close $s; return 1 }
        sleep 0.05;
    }
    return 0;
}

sub stop_pid {
    my ($pid, $sig, $secs) = @_;
    return unless $pid && kill 0, $pid;
    kill $sig, $pid;
    my $end = time + $secs;
    while (time < $end) {
        my $r = waitpid($pid, WNOHANG);
        return if $r == $pid || ($r < 0 && !kill 0, $pid);
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

my ($mock_pid, $mock_fh, $nginx_master);

sub stop_nginx {
    if ($nginx_master && kill 0, $nginx_master) {
        kill 'QUIT', $nginx_master;
        my $end = time + 10;
        sleep 0.05 while time < $end && kill 0, $nginx_master;
        kill 'KILL', $nginx_master if kill 0, $nginx_master;
    }
    $nginx_master = undef;
}

sub cleanup {
    stop_nginx();
    for my $p (@pids) { stop_pid($p, 'TERM', 10) }
    @pids = ();
}

sub start_mock {
    $mock_pid = open($mock_fh, '-|', $mock_bin, '-p', '0', '-q')
        or die "cannot start mock-llm: $!\n";
    push @pids, $mock_pid;
    my $line = <$mock_fh>;
    die "mock-llm did not start\n"
        unless defined $line && $line =~ /listening on 127\.0\.0\.1:(\d+)/;
    return $1;
}

# ------------------------------------------------------------------
# /proc

sub proc_sched_ns {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/schedstat" or return 0;
    my $s = <$f>;
    close $f;
    my ($ns) = split ' ', $s;
    return $ns;
}

# VmRSS and RssAnon in bytes
sub proc_rss {
    my ($pid) = @_;
    my ($rss, $anon) = (0, 0);
    open my $f, '<', "/proc/$pid/status" or return (0, 0);
    while (my $l = <$f>) {
        $rss  = $1 * 1024 if $l =~ /^VmRSS:\s+(\d+)/;
        $anon = $1 * 1024 if $l =~ /^RssAnon:\s+(\d+)/;
    }
    close $f;
    return ($rss, $anon);
}

sub proc_nfd {
    my ($pid) = @_;
    opendir my $d, "/proc/$pid/fd" or return 0;
    my $n = grep { /^\d+$/ } readdir $d;
    closedir $d;
    return $n;
}

sub children_of {
    my ($ppid) = @_;
    my @c;
    opendir my $d, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $f, '<', "/proc/$p/stat" or next;
        my $s = <$f>;
        close $f;
        next unless defined $s;
        $s =~ s/^.*\)\s+//s;
        my @f = split ' ', $s;
        push @c, $p if $f[1] == $ppid;
    }
    closedir $d;
    return sort { $a <=> $b } @c;
}

sub machine_cpu {
    open my $f, '<', '/proc/stat' or return (0, 0);
    my $l = <$f>;
    close $f;
    my @v = split ' ', $l;
    shift @v;
    my $tot = 0;
    $tot += $_ for @v[0 .. 7];
    return ($tot, $v[3] + $v[4]);
}

my @workers;

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
    ($s{tot}, $s{idle}) = machine_cpu();
    $s{time} = time;
    return \%s;
}

# ------------------------------------------------------------------
# nginx

sub write_conf {
    my (%a) = @_;
    my $dir = $prefix;
    remove_tree($dir);
    make_path("$dir/conf", "$dir/logs", "$dir/tmp");
    chmod 0755, $bench, $dir, map { "$dir/$_" } qw(conf logs tmp);
    my $tmp = "$dir/tmp";
    open my $f, '>', "$dir/conf/nginx.conf" or die "$!\n";
    print $f <<"CONF";
# generated by util/bench/fanout.pl
load_module $o{module};
load_module $o{nchan};

worker_processes 2;
worker_rlimit_nofile 20000;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 12000;
}

http {
    access_log off;
    variables_hash_max_size 2048;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;

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

        # ours: producer
        location = /pub {
            proxy_pass http://mock/v1/chat/completions?stamp=1&size=$o{size}&tokens=\$arg_tokens&tps=\$arg_tps&ttft=\$arg_ttft;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
            streaming bench;
            streaming_id \$arg_id;
        }
        # ours: subscribers
        location = /sub {
            streaming_subscribe bench;
            streaming_id \$arg_id;
        }
        location = /status {
            streaming_status;
        }

        # nchan: publisher and EventSource subscribers
        location = /npub {
            nchan_publisher;
            nchan_channel_id \$arg_id;
            nchan_message_buffer_length 10000;
            nchan_message_timeout 10m;
        }
        location = /nsub {
            nchan_subscriber eventsource;
            nchan_channel_id \$arg_id;
            nchan_subscriber_first_message oldest;
        }
    }
}
CONF
    close $f;
}

sub start_nginx {
    my ($port, $mport) = @_;
    write_conf(port => $port, mport => $mport);
    my $t = system('sh', '-c', 'ulimit -n 20000 2>/dev/null; exec "$0" "$@"',
                   $o{nginx}, '-p', "$prefix/", '-c', 'conf/nginx.conf',
                   '-q', '-t');
    die "nginx -t failed, see above\n" if $t != 0;
    $t = system('sh', '-c', 'ulimit -n 20000 2>/dev/null; exec "$0" "$@"',
                $o{nginx}, '-p', "$prefix/", '-c', 'conf/nginx.conf');
    die "nginx did not start\n" if $t != 0;
    my $end = time + 10;
    while (time < $end && !-s "$prefix/logs/nginx.pid") { sleep 0.05 }
    open my $f, '<', "$prefix/logs/nginx.pid" or die "no nginx pid file\n";
    chomp($nginx_master = <$f>);
    close $f;
    wait_port($port, 10) or die "nginx does not listen on $port\n";
    my @w;
    $end = time + 10;
    while (time < $end) {
        @w = children_of($nginx_master);
        last if @w == 2;
        sleep 0.05;
    }
    die "expected 2 nginx workers, found @w\n" unless @w == 2;
    return @w;
}

my $errlog_pos = 0;

sub new_log_lines {
    my ($what) = @_;
    open my $f, '<', "$prefix/logs/error.log" or return ();
    seek $f, $errlog_pos, 0;
    my @l = <$f>;
    $errlog_pos = tell $f;
    close $f;
    chomp @l;
    push @errlines, map { "[$what] $_" } @l;
    return @l;
}

# ------------------------------------------------------------------
# sse-load in the background

sub load_cmd {
    my (%a) = @_;
    my @cmd = ($load_bin, '-u', $a{url}, '-c', $a{conns}, '-t', $a{timeout},
               '-Q', '-m', $a{method} // 'GET',
               '-H', 'Accept: text/event-stream');
    push @cmd, '-r', $a{ramp} if $a{ramp};
    return @cmd;
}

sub show_cmd {
    my $c = join ' ', map { /[&?\s:]/ ? "'$_'" : $_ } @_;
    $c =~ s/\Q$top\E\///g;
    return $c;
}

# start; returns (pid, fh)
sub load_start {
    my @cmd = @_;
    my $pid = open(my $fh, '-|', @cmd) or die "cannot run sse-load: $!\n";
    push @pids, $pid;
    return ($pid, $fh);
}

sub load_finish {
    my ($pid, $fh, $secs) = @_;
    # bounded: sse-load has its own -t; this is only a fallback
    my $out = '';
    {
        local $/;
        local $SIG{ALRM} = sub { die "alarm\n" };
        alarm($secs);
        eval { $out = <$fh>; 1 };
        alarm(0);
    }
    stop_pid($pid, 'TERM', 5);
    close $fh;
    @pids = grep { $_ != $pid } @pids;
    my $r = eval { $json->decode($out // '') };
    return $r // { error => "no JSON from sse-load: " . substr($out // '', 0, 200) };
}

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
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp')
        or die "publisher: connect: $!\n";
    $sock->autoflush(1);
    my $t0 = time;
    my ($ok, $bad) = (0, 0);
    # body length chosen so that the SSE event nchan sends
    # ("id: <time>:<tag>\ndata: <body>\n\n") is about --size bytes
    my $blen = $o{size} - 30;
    for my $i (1 .. $n) {
        if ($rate > 0) {
            my $due = $t0 + ($i - 1) / $rate;
            my $d = $due - time;
            sleep $d if $d > 0;
        }
        my $body = '@' . usec() . " #$i" . ($i == $n ? ' #last' : '') . ' ';
        $body .= 'x' x ($blen - length $body) if length $body < $blen;
        my ($st) = http_req($sock, "POST /npub?id=$id HTTP/1.1\r\n"
            . "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n$body");
        if ($st >= 200 && $st < 300) { $ok++ } else { $bad++ }
        last if $st == 0;
    }
    my $el = time - $t0;
    if ($delete) {
        http_req($sock, "DELETE /npub?id=$id HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        . "Content-Length: 0\r\n\r\n");
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
    push @pids, $pid;
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
    @pids = grep { $_ != $pid } @pids;
    my ($ok, $bad, $el) = split ' ', ($l // '0 -1 0');
    return { ok => $ok, bad => $bad, secs => $el };
}

# ------------------------------------------------------------------
# replay client: GET, time until the last retained chunk has arrived

sub replay_once {
    my ($port, $path, $done_re, $want) = @_;
    my $t0 = time;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Proto => 'tcp')
        or return { error => "connect: $!" };
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

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    my $n = @v;
    return $n % 2 ? $v[($n - 1) / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2;
}

# ------------------------------------------------------------------
# main

logp("top $top");
make_path($bench);
my $m0 = snap_machine();
sub snap_machine { my ($t, $i) = machine_cpu(); return { tot => $t, idle => $i, time => time } }
my $load0 = do { open my $f, '<', '/proc/loadavg'; scalar <$f> };
my $mport = start_mock();
my $port  = free_port();
@workers = start_nginx($port, $mport);
logp("mock on $mport (pid $mock_pid), nginx on $port (master $nginx_master,"
     . " workers @workers)");
new_log_lines('start');
my $base = "http://127.0.0.1:$port";
my @cmds;
my %res;    # {side}{scenario} = {...}

sub wait_fds {
    my ($target, $secs) = @_;
    my $end = time + $secs;
    my $s;
    while (time < $end) {
        $s = snap();
        return $s if $s->{fd} >= $target;
        sleep 0.1;
    }
    return snap();
}

sub wait_stream {
    my ($id, $secs) = @_;
    my $end = time + $secs;
    while (time < $end) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        if ($s) {
            my ($st, $body) = http_req($s, "GET /status?format=json&id=$id "
                                . "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            close $s;
            return 1 if $st == 200 && $body =~ /\Q"$id"\E/;
        }
        sleep 0.05;
    }
    return 0;
}

my $seq = 0;

# one fan-out run: $n subscribers, $msgs messages at $rate (0 = fast)
sub fanout {
    my ($side, $label, $n, $msgs, $rate) = @_;
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
    my $path = $side eq 'ours' ? "/sub?id=$id&from=live" : "/nsub?id=$id";
    my @c = load_cmd(url => "$base$path", conns => $n, ramp => $ramp,
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
    $r{busy} = ($s2->{tot} - $s1->{tot})
        ? 1 - ($s2->{idle} - $s1->{idle}) / ($s2->{tot} - $s1->{tot}) : undef;
    $r{secs} = $s2->{time} - $s1->{time};
    $r{lat} = $lr->{latency_us} // {};
    $r{errors} = $lr->{errors};
    $r{error_kinds} = $lr->{error_kinds};
    $r{cmd} = show_cmd(@c);
    $r{pcmd} = $pcmd;
    my @l = new_log_lines("$label $side");
    $r{errlog} = scalar @l;
    $res{$side}{$label} = \%r;
    logp(sprintf("%-6s %-22s subs %d attached %d events %d/%d stamped %d "
                 . "p50 %s p99 %s us, %.0f ns/ev, rss/sub %.0f B, errors %s, "
                 . "errlog %d", $side, $label, $n, $r{attached}, $ev,
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
    my @l = new_log_lines("replay $n $side");
    $r{errlog} = scalar @l;
    $res{$side}{"replay$n"} = \%r;
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
    my ($side, $n) = @_;
    stop_nginx();
    @workers = start_nginx($port, $mport);
    $errlog_pos = 0;
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
    my $path = $side eq 'ours' ? "/sub?id=$id&from=0" : "/nsub?id=$id";
    my @c = load_cmd(url => "$base$path", conns => $n, ramp => $ramp,
                     timeout => int($attach_wait + 30));
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
        @pids = grep { $_ != $pid } @pids;
    }
    my @l = new_log_lines("RSS $n $side");
    $r{errlog} = scalar @l;
    $res{$side}{"rss$n"} = \%r;
    logp(sprintf("%-6s RSS, fresh nginx: %d subs, attached %d, %.0f B"
                 . " (anon %.0f B) per idle subscriber", $side, $n,
                 $r{attached}, $r{rss_per_sub}, $r{anon_per_sub}));
}

# warm-up
fanout('ours', 'warmup', 20, 20, 100);
fanout('nchan', 'warmup', 20, 20, 100);

my @labels;
my $flip = 0;
for my $n (@subs) {
    my $label = "$n subs \@ $o{rate}/s";
    push @labels, $label;
    my @sides = $flip++ % 2 ? qw(nchan ours) : qw(ours nchan);
    fanout($_, $label, $n, $o{msgs}, $o{rate}) for @sides;
}
if ($o{fast_msgs} > 0) {
    my $label = "$o{fast_subs} subs, fast";
    push @labels, $label;
    fanout($_, $label, $o{fast_subs}, $o{fast_msgs}, 0) for qw(ours nchan);
}
for my $n (@replay) {
    replay($_, $n) for qw(ours nchan);
}
my $m1 = snap_machine();
my $load1 = do { open my $f, '<', '/proc/loadavg'; scalar <$f> };
my $final_status = do {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp');
    my ($st, $b) = $s ? http_req($s, "GET /status HTTP/1.1\r\nHost: x\r\n"
                                   . "Connection: close\r\n\r\n") : (0, '');
    $b;
};
my $alive = kill(0, $workers[0]) && kill(0, $workers[1]);
my @wnow = children_of($nginx_master);
push @notes, "nginx workers changed during the run: @workers -> @wnow"
    if "@wnow" ne "@workers";
for my $n (@rss_subs) {
    rss_idle($_, $n) for qw(ours nchan);
}
cleanup();
new_log_lines('shutdown');

# ------------------------------------------------------------------
# report

sub f0 { defined $_[0] ? sprintf('%.0f', $_[0]) : '–' }
sub f2 { defined $_[0] ? sprintf('%.2f', $_[0]) : '–' }
sub ratio {
    my ($a, $b) = @_;
    return '–' unless defined $a && defined $b && $b != 0;
    return sprintf('%.2f', $a / $b);
}

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
push @md, "## Fan-out", '';
push @md, "| scenario | side | subscribers attached | events received / expected | errors | p50 µs | p99 µs | max µs | nginx CPU ns / delivery | machine busy |";
push @md, "|---|---|---|---|---|---|---|---|---|---|";
for my $l (@labels) {
    for my $side (qw(ours nchan)) {
        my $r = $res{$side}{$l} or next;
        push @md, sprintf("| %s | %s | %d / %d | %d / %d | %s | %s | %s | %s | %s | %s%% |",
            $l, $side, $r->{attached}, $r->{subs}, $r->{stamped},
            $r->{expected}, $r->{errors} // '?', f0($r->{lat}{p50}),
            f0($r->{lat}{p99}), f0($r->{lat}{max}), f0($r->{ns_per_stamped}),
            defined $r->{busy} ? sprintf('%.0f', 100 * $r->{busy}) : '–');
    }
}
push @md, '', "\"events received\" counts stamped events (one per"
    . " chunk/message); CPU per delivery = schedstat run time of both workers"
    . " from all-attached to all-finished ÷ stamped events received by all"
    . " subscribers. \"subscribers attached\" = new descriptors in the two"
    . " workers after the attach wait (ours: the producer's two descriptors are"
    . " in the baseline).", '';

push @md, "## Ratios (ours ÷ nchan; below 1 = ours is lower)", '';
push @md, "| scenario | p50 latency | p99 latency | CPU / delivery |";
push @md, "|---|---|---|---|";
for my $l (@labels) {
    my ($a, $b) = ($res{ours}{$l}, $res{nchan}{$l});
    next unless $a && $b;
    push @md, sprintf("| %s | %s | %s | %s |", $l,
        ratio($a->{lat}{p50}, $b->{lat}{p50}),
        ratio($a->{lat}{p99}, $b->{lat}{p99}),
        ratio($a->{ns_per_stamped}, $b->{ns_per_stamped}));
}
push @md, '';

push @md, "## RSS per idle subscriber (a fresh nginx per side)", '';
push @md, "For each count and side a new nginx is started (same configuration),"
    . " a stream with one chunk is made (ours: a `streaming` request whose"
    . " mock sends token 0 at once and token 1 only after 100 s; nchan: one"
    . " published message), N subscribers read it (`from=0` / nchan's oldest"
    . " message) and stay idle. RSS per idle subscriber = (VmRSS, and"
    . " RssAnon, of both workers with the N subscribers attached − the same"
    . " before they attached) ÷ N.", '';
push @md, "| subscribers | ours attached | ours B (VmRSS; RssAnon) | nchan attached | nchan B (VmRSS; RssAnon) | ratio (VmRSS) |";
push @md, "|---|---|---|---|---|---|";
for my $n (@rss_subs) {
    my ($a, $b) = ($res{ours}{"rss$n"}, $res{nchan}{"rss$n"});
    next unless $a && $b;
    push @md, sprintf("| %d | %d | %s; %s | %d | %s; %s | %s |", $n,
        $a->{attached}, f0($a->{rss_per_sub}), f0($a->{anon_per_sub}),
        $b->{attached}, f0($b->{rss_per_sub}), f0($b->{anon_per_sub}),
        ratio($a->{rss_per_sub}, $b->{rss_per_sub}));
}
push @md, '';

push @md, "## Replay to a reconnecting client", '';
push @md, "Time from connect until the last retained chunk has arrived (ours:"
    . " `from=0` on a completed stream, until the response ends; nchan:"
    . " `nchan_subscriber_first_message oldest`, until the message marked"
    . " `#last` arrives), median of $o{replay_reps}.", '';
push @md, "| retained | ours s | nchan s | ratio | ours stamps seen | nchan stamps seen | ours status | nchan status |";
push @md, "|---|---|---|---|---|---|---|---|";
for my $n (@replay) {
    my ($a, $b) = ($res{ours}{"replay$n"}, $res{nchan}{"replay$n"});
    push @md, sprintf("| %d | %s | %s | %s | %s | %s | %s | %s |", $n,
        defined $a->{secs} ? sprintf('%.4f', $a->{secs}) : '–',
        defined $b->{secs} ? sprintf('%.4f', $b->{secs}) : '–',
        ratio($a->{secs}, $b->{secs}), $a->{stamps}, $b->{stamps},
        $a->{status}, $b->{status});
}
push @md, '';

push @md, "## Machine load", '';
my $mt = $m1->{tot} - $m0->{tot};
push @md, sprintf("- CPUs: %s; whole run %.0f s, machine busy %.0f%%",
    `nproc` =~ s/\s+//r, $m1->{time} - $m0->{time},
    $mt ? 100 * (1 - ($m1->{idle} - $m0->{idle}) / $mt) : 0);
push @md, "- loadavg before: $load0" =~ s/\n//r;
push @md, "- loadavg after: $load1" =~ s/\n//r;
push @md, "- the subscribers' client, the mock / publisher and both nginx"
    . " workers share these CPUs; the \"machine busy\" column shows runs where"
    . " the machine was saturated (latency then includes queueing in the"
    . " client).", '';

push @md, "## Commands", '';
push @md, '```';
push @md, "make bench-fanout   # = $cmdline";
for my $l ('warmup', @labels) {
    for my $side (qw(ours nchan)) {
        my $r = $res{$side}{$l} or next;
        push @md, "# $l, $side";
        push @md, "$r->{pcmd}" if $r->{pcmd};
        push @md, $r->{cmd};
    }
}
for my $n (@replay) {
    for my $side (qw(ours nchan)) {
        my $r = $res{$side}{"replay$n"} or next;
        push @md, "# replay $n, $side";
        push @md, $r->{fill};
        push @md, "GET $r->{path} (x$o{replay_reps}, own client in fanout.pl)";
    }
}
for my $n (@rss_subs) {
    for my $side (qw(ours nchan)) {
        my $r = $res{$side}{"rss$n"} or next;
        push @md, "# RSS, $n idle subscribers, $side (fresh nginx)";
        push @md, $r->{pcmd}, $r->{cmd};
    }
}
push @md, '```', '';
push @md, "nginx.conf: `build/bench/fanout/conf/nginx.conf`.", '';

push @md, "## nchan publisher", '';
for my $l (@labels) {
    my $r = $res{nchan}{$l} or next;
    my $p = $r->{pub};
    push @md, sprintf("- %s: %d published, %d failed, %.2f s (%.0f msg/s)",
        $l, $p->{ok}, $p->{bad}, $p->{secs},
        $p->{secs} ? $p->{ok} / $p->{secs} : 0);
}
push @md, '';
push @md, "## sse-load error kinds", '';
for my $l (@labels) {
    for my $side (qw(ours nchan)) {
        my $r = $res{$side}{$l} or next;
        push @md, "- $l, $side: " . $json->encode($r->{error_kinds} // {})
            . ($side eq 'ours' && $r->{producer}
               ? "; producer client: events $r->{producer}{events}, errors "
                 . ($r->{producer}{errors} // '?') : '');
    }
}
push @md, '';
push @md, "## Notes", '';
push @md, "- $_" for @notes;
push @md, "- nginx workers alive at the end: " . ($alive ? 'yes' : 'NO');
push @md, '';
push @md, "## nginx error log (warn and above)", '';
push @md, @errlines ? ('```', (map { substr($_, 0, 400) } @errlines[0 .. ($#errlines > 60 ? 60 : $#errlines)]), '```')
                    : ('(empty)');
push @md, '', "Total lines: " . scalar(@errlines), '';
push @md, "## streaming_status at the end", '', '```', ($final_status // '') =~ s/\s+$//r, '```', '';

open my $out, '>', $o{out} or die "$o{out}: $!\n";
print $out join("\n", @md), "\n";
close $out;
print join("\n", @md), "\n";
