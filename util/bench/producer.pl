#!/usr/bin/perl
#
# Producer benchmark: plain `proxy_pass` (proxy_buffering off) against the
# same location with `streaming <zone>;`, side by side in one nginx, fed by
# util/mock-llm and driven by build/sse-load.  See util/bench/README.md.
#
#   util/bench/producer.pl [--reps N] [--streams N] [--quick] ...
#
# Writes build/bench/producer-results.md (and prints it).  Everything binds to
# 127.0.0.1; every wait is bounded.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $top = abs_path(dirname(abs_path($0)) . '/../..');

my %o = (
    reps         => 3,
    streams      => 1000,
    tps          => 50,
    tokens       => 200,
    ramp         => 1,
    bulk_tokens  => 200000,
    extra        => '500,50',
    coalesce     => 1,
    callgrind    => 1,
    cg_streams   => 20,
    cg_bulk      => 20000,
    perf         => 1,
    nginx        => '/usr/sbin/nginx',
    module       => "$top/build/debian/ngx_http_streaming_module.so",
    out          => "$top/build/bench/producer-results.md",
    quick        => 0,
);
my $cmdline = join ' ', 'util/bench/producer.pl', @ARGV;
GetOptions(
    'reps=i'        => \$o{reps},
    'streams=i'     => \$o{streams},
    'tps=f'         => \$o{tps},
    'tokens=i'      => \$o{tokens},
    'ramp=f'        => \$o{ramp},
    'bulk-tokens=i' => \$o{bulk_tokens},
    'extra-streams=s' => \$o{extra},
    'bulk-coalesce!' => \$o{coalesce},
    'callgrind!'    => \$o{callgrind},
    'cg-streams=i'  => \$o{cg_streams},
    'cg-bulk=i'     => \$o{cg_bulk},
    'perf!'         => \$o{perf},
    'nginx=s'       => \$o{nginx},
    'module=s'      => \$o{module},
    'out=s'         => \$o{out},
    'quick'         => \$o{quick},
) or die "usage: $0 [--reps N] [--streams N] [--tps X] [--tokens N] "
        . "[--bulk-tokens N] [--extra-streams N,N|''] [--no-bulk-coalesce] "
        . "[--no-callgrind] [--no-perf] "
        . "[--quick]\n";

if ($o{quick}) {
    $o{reps} = 1;
    $o{streams} = 100;
    $o{bulk_tokens} = 20000;
    $o{extra} = '';
    $o{cg_streams} = 5;
    $o{cg_bulk} = 2000;
}
die "--reps must be 1..20\n" unless $o{reps} >= 1 && $o{reps} <= 20;
die "--streams must be 1..9000\n"
    unless $o{streams} >= 1 && $o{streams} <= 9000;

my $mock_bin = "$top/build/mock-llm";
my $load_bin = "$top/build/sse-load";
for ($mock_bin, $load_bin, $o{module}, $o{nginx}) {
    die "missing $_ (run: make module mock bench-tools)\n" unless -e $_;
}
$o{module} = abs_path($o{module});

my $bench   = "$top/build/bench";
my $prefix  = "$bench/producer";
my $tck     = `getconf CLK_TCK` + 0 || 100;
my $json    = JSON::PP->new->canonical;
my @pids;           # processes we started, for cleanup
my @notes;          # observations for the results file

$SIG{INT} = $SIG{TERM} = sub { cleanup(); exit 130 };
END { local $?; cleanup() }

sub logp { print STDERR "producer: @_\n" }

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

sub cleanup {
    if ($nginx_master && kill 0, $nginx_master) {
        kill 'QUIT', $nginx_master;
        my $end = time + 10;
        sleep 0.05 while time < $end && kill 0, $nginx_master;
        kill 'KILL', $nginx_master if kill 0, $nginx_master;
    }
    $nginx_master = undef;
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
# CPU accounting from /proc

# utime+stime in ticks, and sched run time in ns, of one pid
sub proc_cpu {
    my ($pid) = @_;
    my ($ticks, $ns) = (0, 0);
    if (open my $f, '<', "/proc/$pid/stat") {
        my $s = <$f>;
        close $f;
        $s =~ s/^.*\)\s+//s;
        my @f = split ' ', $s;
        $ticks = $f[11] + $f[12];       # fields 14 and 15
    }
    if (open my $f, '<', "/proc/$pid/schedstat") {
        my $s = <$f>;
        close $f;
        ($ns) = split ' ', $s;
    }
    return ($ticks, $ns);
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

# total and idle jiffies of the machine
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

sub snapshot {
    my ($workers) = @_;
    my %s;
    for my $w (@$workers) {
        my ($t, $n) = proc_cpu($w);
        $s{wt} += $t;
        $s{wn} += $n;
    }
    ($s{mt}, $s{mn}) = proc_cpu($mock_pid);
    ($s{tot}, $s{idle}) = machine_cpu();
    $s{time} = time;
    return \%s;
}

# ------------------------------------------------------------------
# nginx

sub write_conf {
    my (%a) = @_;
    my $dir = $a{prefix};
    remove_tree($dir);
    make_path("$dir/conf", "$dir/logs", "$dir/modules", "$dir/tmp");
    chmod 0755, $bench, $dir, map { "$dir/$_" } qw(conf logs modules tmp);
    symlink $o{module}, "$dir/modules/ngx_http_streaming_module.so"
        or die "symlink: $!\n";
    my $proc = $a{single} ? "master_process off;\ndaemon off;\n"
                            . "worker_processes 1;"
                          : "worker_processes 2;";
    my $tmp = "$dir/tmp";
    open my $f, '>', "$dir/conf/nginx.conf" or die "$!\n";
    print $f <<"CONF";
# generated by util/bench/producer.pl
load_module modules/ngx_http_streaming_module.so;

$proc
worker_rlimit_nofile 20000;
pid logs/nginx.pid;
error_log logs/error.log warn;

events {
    worker_connections 9000;
}

http {
    access_log off;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;

    streaming_zone bench $a{zone} max_streams=0 buffer=64k ttl=10s;

    upstream mock {
        server 127.0.0.1:$a{mport};
        keepalive 1024;
    }

    server {
        listen 127.0.0.1:$a{port} backlog=4096;

        location /plain/ {
            proxy_pass http://mock/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
        }

        location /stream/ {
            proxy_pass http://mock/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
            streaming bench;
        }

        location = /status {
            streaming_status;
        }
    }
}
CONF
    close $f;
}

sub start_nginx {
    my ($port, $mport) = @_;
    write_conf(prefix => $prefix, port => $port, mport => $mport,
               zone => '256m');
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

# new warn/error lines of the nginx error log since the last call
sub new_log_lines {
    my ($file) = @_;
    open my $f, '<', $file or return ();
    seek $f, $errlog_pos, 0;
    my @l = <$f>;
    $errlog_pos = tell $f;
    close $f;
    chomp @l;
    return @l;
}

# ------------------------------------------------------------------
# one load run

sub run_load {
    my (%a) = @_;
    my @cmd = ($load_bin, '-u', $a{url}, '-c', $a{conns}, '-q', $a{query},
               '-t', $a{timeout}, '-Q');
    push @cmd, '-r', $a{ramp} if $a{ramp};
    open my $fh, '-|', @cmd or die "cannot run sse-load: $!\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    my $rc = $? >> 8;
    my $r = eval { $json->decode($out) };
    die "sse-load printed no JSON (rc $rc): $out\n" unless $r;
    $r->{rc} = $rc;
    $r->{cmd} = join ' ', map { /[&?\s]/ ? "'$_'" : $_ } @cmd;
    $r->{cmd} =~ s/\Q$top\E\///g;
    return $r;
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    my $n = @v;
    return $n % 2 ? $v[($n - 1) / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2;
}

# ------------------------------------------------------------------
# main benchmark

logp("top $top");
make_path($bench);
my $mport = start_mock();
my $port  = free_port();
my @workers = start_nginx($port, $mport);
logp("mock on $mport (pid $mock_pid), nginx on $port (master $nginx_master,"
     . " workers @workers)");
new_log_lines("$prefix/logs/error.log");

my $base = "http://127.0.0.1:$port";
my %scen = (
    A => { name => "A: LLM rate, $o{streams} streams x $o{tokens} tokens "
                   . "at $o{tps} tok/s",
           conns => $o{streams}, ramp => $o{ramp},
           query => "tokens=$o{tokens}&tps=$o{tps}&stamp=1",
           timeout => int($o{tokens} / $o{tps} + $o{ramp} + 60) },
    B => { name => "B: bulk, 1 stream x $o{bulk_tokens} tokens, "
                   . "as fast as possible",
           conns => 1, ramp => 0,
           query => "tokens=$o{bulk_tokens}&stamp=1",
           timeout => 120 },
);
my @order = ('A', 'B');
my @extra = grep { /\S/ } split /,/, $o{extra};
die "--extra-streams: numbers 1..9000, comma-separated\n"
    if grep { !/^\d+$/ || $_ < 1 || $_ > 9000 } @extra;
for my $n (@extra) {
    $scen{"A$n"} = { %{ $scen{A} }, conns => $n,
                     name => "A$n: LLM rate, $n streams x $o{tokens} tokens "
                             . "at $o{tps} tok/s" };
}
@order = ('A', (map { "A$_" } @extra), 'B');
if ($o{coalesce}) {
    $scen{Bc} = { %{ $scen{B} }, query => "tokens=$o{bulk_tokens}&stamp=1"
                                          . "&coalesce=1",
                  name => "Bc: bulk, 1 stream x $o{bulk_tokens} tokens, the "
                          . "mock writing them coalesced (up to 1 MB per "
                          . "write) so that nginx always reads full buffers" };
    push @order, 'Bc';
}

# warm-up: connections, zone, page cache
for my $loc (qw(plain stream)) {
    run_load(url => "$base/$loc/v1/chat/completions", conns => 50,
             query => 'tokens=20&tps=100&stamp=1', timeout => 30, ramp => 0.2);
}
sleep 0.5;
my @warm = new_log_lines("$prefix/logs/error.log");
push @notes, "error log during warm-up: " . scalar(@warm) . " lines" if @warm;

my %res;            # {scenario}{loc} = [runs]
my @errlines;

for my $rep (1 .. $o{reps}) {
    for my $sc (@order) {
        my @locs = $rep % 2 ? qw(plain stream) : qw(stream plain);
        for my $loc (@locs) {
            my $s = $scen{$sc};
            my $s0 = snapshot(\@workers);
            my $r = run_load(url => "$base/$loc/v1/chat/completions",
                             conns => $s->{conns}, query => $s->{query},
                             timeout => $s->{timeout}, ramp => $s->{ramp});
            sleep 0.3;      # let nginx finish closing; same for both
            my $e = snapshot(\@workers);
            my $ev = $r->{events} || 1;
            my $dt = $e->{tot} - $s0->{tot};
            my %m = (
                rep      => $rep,
                events   => $r->{events},
                errors   => $r->{errors},
                kinds    => $r->{error_kinds},
                completed => $r->{completed},
                wall     => $r->{wall_s},
                cpu_tick_us  => ($e->{wt} - $s0->{wt}) / $tck * 1e6 / $ev,
                cpu_sched_us => ($e->{wn} - $s0->{wn}) / 1e3 / $ev,
                nginx_cpu_s  => ($e->{wn} - $s0->{wn}) / 1e9,
                mock_cpu_s   => ($e->{mn} - $s0->{mn}) / 1e9,
                load_cpu_s   => $r->{cpu_s}{user} + $r->{cpu_s}{sys},
                busy     => $dt > 0 ? 1 - ($e->{idle} - $s0->{idle}) / $dt : 0,
                all_cpu_s => ($dt - ($e->{idle} - $s0->{idle})) / $tck,
                span     => $e->{time} - $s0->{time},
                p50      => $r->{latency_us}{p50},
                p90      => $r->{latency_us}{p90},
                p99      => $r->{latency_us}{p99},
                max      => $r->{latency_us}{max},
                lat_n    => $r->{latency_us}{count},
                cmd      => $r->{cmd},
            );
            $m{other_cpu_s} = $m{all_cpu_s} - $m{nginx_cpu_s} - $m{mock_cpu_s}
                              - $m{load_cpu_s};
            push @{ $res{$sc}{$loc} }, \%m;
            my @l = new_log_lines("$prefix/logs/error.log");
            push @errlines, map { "[$sc/$loc rep $rep] $_" } @l;
            logp(sprintf("rep %d %-4s %-6s events %7d errors %d "
                         . "cpu %.2f us/ev (ticks %.2f) p50 %d p99 %d us "
                         . "busy %.0f%% nginx %.2fs mock %.2fs load %.2fs "
                         . "other %.2fs%s",
                         $rep, $sc, $loc, $r->{events}, $r->{errors},
                         $m{cpu_sched_us}, $m{cpu_tick_us}, $m{p50}, $m{p99},
                         100 * $m{busy}, $m{nginx_cpu_s}, $m{mock_cpu_s},
                         $m{load_cpu_s}, $m{other_cpu_s},
                         @l ? " LOG: " . scalar(@l) : ""));
        }
    }
}

# zone state after the runs
my $status = '';
{
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 5);
    if ($s) {
        print $s "GET /status HTTP/1.0\r\nHost: x\r\n\r\n";
        local $/;
        $s->timeout(5);
        my $t = <$s> // '';
        $t =~ s/^.*?\r\n\r\n//s;
        $status = $t;
        close $s;
    }
}

# ------------------------------------------------------------------
# profile of the workers during scenario A (stream, then plain), if perf
# can sample here (software clock: this VM has no hardware counters)

my %perf;
if ($o{perf} && system('sh', '-c', 'command -v perf >/dev/null') == 0) {
    my $dur = $o{tokens} / $o{tps} + $o{ramp};
    for my $loc (qw(stream plain)) {
        my $pf = "$bench/perf-$loc.data";
        unlink $pf;
        my $ppid = fork // die "fork: $!\n";
        if ($ppid == 0) {
            open STDOUT, '>', '/dev/null';
            open STDERR, '>', "$bench/perf-$loc.log";
            exec 'perf', 'record', '-e', 'cpu-clock', '-F', '2000',
                 '-p', join(',', @workers), '-o', $pf, '--', 'sleep', $dur;
            exit 127;
        }
        push @pids, $ppid;
        sleep 0.3;
        run_load(url => "$base/$loc/v1/chat/completions",
                 conns => $o{streams}, query => $scen{A}{query},
                 timeout => $scen{A}{timeout}, ramp => $o{ramp});
        stop_pid($ppid, 'INT', 30);
        @pids = grep { $_ != $ppid } @pids;
        next unless -s $pf;
        my $rep = `perf report -i '$pf' --stdio --no-children --sort dso,sym `
                  . `--percent-limit 0.7 -g none 2>/dev/null`;
        my @lines = grep { /^\s+\d/ } split /\n/, $rep;
        $perf{$loc} = [ @lines[0 .. ($#lines < 34 ? $#lines : 34)] ];
        my $dso = `perf report -i '$pf' --stdio --no-children --sort dso `
                  . `-g none 2>/dev/null`;
        $perf{"$loc-dso"} = [ grep { /^\s+\d/ } split /\n/, $dso ];
    }
    push @errlines, map { "[perf runs] $_" }
                    new_log_lines("$prefix/logs/error.log");
}

# stop the benchmark nginx
{
    my $m = $nginx_master;
    kill 'QUIT', $m;
    my $end = time + 15;
    sleep 0.05 while time < $end && kill 0, $m;
    if (kill 0, $m) {
        push @errlines, "nginx did not exit within 15 s of SIGQUIT";
        kill 'KILL', $m;
    }
    $nginx_master = undef;
    push @errlines, map { "[shutdown] $_" }
                    new_log_lines("$prefix/logs/error.log");
}

# ------------------------------------------------------------------
# instruction counts: this VM has no hardware counters for perf stat, so
# nginx runs single-process under callgrind, one run per location and
# scenario, plus a run without load whose count is subtracted

my %cg;
my %cgfn;
if ($o{callgrind} && system('sh', '-c', 'command -v valgrind >/dev/null') == 0)
{
    my $cgdir = "$bench/callgrind";
    remove_tree($cgdir);
    make_path($cgdir);
    my $cgpre = "$bench/producer-cg";
    my %cgs = (
        A => { conns => $o{cg_streams}, ramp => 0.5,
               query => "tokens=$o{tokens}&tps=$o{tps}&stamp=1",
               timeout => int($o{tokens} / $o{tps}) + 120 },
        B => { conns => 1, ramp => 0,
               query => "tokens=$o{cg_bulk}&stamp=1", timeout => 300 },
        Bc => { conns => 1, ramp => 0,
                query => "tokens=$o{cg_bulk}&stamp=1&coalesce=1",
                timeout => 300 },
    );
    for my $job (['base', ''], ['A', 'plain'], ['A', 'stream'],
                 ['B', 'plain'], ['B', 'stream'],
                 ($o{coalesce} ? (['Bc', 'plain'], ['Bc', 'stream']) : ()))
    {
        my ($sc, $loc) = @$job;
        my $cport = free_port();
        write_conf(prefix => $cgpre, port => $cport, mport => $mport,
                   zone => '32m', single => 1);
        my $outf = "$cgdir/$sc-" . ($loc || 'none') . ".out";
        my $pid = fork // die "fork: $!\n";
        if ($pid == 0) {
            open STDOUT, '>', "$cgdir/$sc-" . ($loc || 'none') . ".log";
            open STDERR, '>&', \*STDOUT;
            exec 'valgrind', '--tool=callgrind', "--callgrind-out-file=$outf",
                 $o{nginx}, '-p', "$cgpre/", '-c', 'conf/nginx.conf';
            exit 127;
        }
        push @pids, $pid;
        if (!wait_port($cport, 120)) {
            push @notes, "callgrind: nginx did not listen ($sc $loc)";
            stop_pid($pid, 'KILL', 5);
            next;
        }
        my $r;
        if ($loc) {
            my $s = $cgs{$sc};
            $r = run_load(url => "http://127.0.0.1:$cport/$loc/v1/chat/"
                                 . "completions",
                          conns => $s->{conns}, query => $s->{query},
                          timeout => $s->{timeout}, ramp => $s->{ramp});
            sleep 0.5;
        }
        stop_pid($pid, 'QUIT', 120);
        @pids = grep { $_ != $pid } @pids;
        my $ir;
        if (open my $f, '<', $outf) {
            while (<$f>) { $ir = $1 if /^(?:summary|totals):\s+(\d+)/ }
            close $f;
        }
        $cg{$sc}{$loc || 'none'} = { ir => $ir, events => $r ? $r->{events}
                                                             : 0,
                                     errors => $r ? $r->{errors} : 0 };
        if ($loc) {
            my $ann = `callgrind_annotate --auto=no --threshold=100 '$outf' 2>/dev/null`;
            for (split /\n/, $ann) {
                next unless /^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$/;
                my ($n, $fn) = ($1, $2);
                next if $fn =~ /PROGRAM TOTALS|^file:function/;
                $n =~ tr/,//d;
                $fn =~ s/\s+\[.*\]$//;
                $fn =~ s/^\S*?:(?=[A-Za-z_0-9.]+$)//;
                $cgfn{$sc}{$loc}{$fn} += $n;
            }
        }
        push @errlines, map { "[callgrind $sc/$loc] $_" }
            do { $errlog_pos = 0; new_log_lines("$cgpre/logs/error.log") };
        logp("callgrind $sc/" . ($loc || 'none') . ": Ir "
             . ($ir // '?') . ", events " . ($r ? $r->{events} : 0));
    }
}

# ------------------------------------------------------------------
# report

sub f1 { defined $_[0] ? sprintf('%.2f', $_[0]) : 'n/a' }
sub f0 { defined $_[0] ? sprintf('%.0f', $_[0]) : 'n/a' }

my $md = '';
my $when = scalar localtime;
my $git = `cd '$top' && git rev-parse --short HEAD 2>/dev/null`;
chomp $git;
my $dirty = `cd '$top' && git status --porcelain src config 2>/dev/null`
            ne '' ? ' (src/ has uncommitted changes)' : '';
my $somt = (stat $o{module})[9];
$md .= "# Producer benchmark: plain proxy_pass vs streaming location\n\n";
$md .= "Run $when on " . `nproc` =~ s/\n//r . " CPUs; git $git$dirty; module "
       . "built " . localtime($somt) . ".\n\n";
$md .= "Command: `$cmdline` (from `make bench-producer`).\n\n";
$md .= "One nginx (`$o{nginx}`, Debian 1.22.1, worker_processes 2), two "
       . "locations side by side: `/plain/` = `proxy_pass` to the mock with "
       . "`proxy_buffering off` (HTTP/1.1 upstream keepalive), `/stream/` = "
       . "the same plus `streaming bench;` (`streaming_zone bench 256m "
       . "max_streams=0 buffer=64k ttl=10s`). Runs interleaved (plain/stream "
       . "order alternates per repetition), $o{reps} repetitions, medians "
       . "shown. nginx CPU = utime+stime of both workers "
       . "(/proc/PID/stat, ${tck} Hz ticks) and, more precise, the "
       . "scheduler's run time (/proc/PID/schedstat), divided by the SSE "
       . "events the client received. Latency = client receive time minus "
       . "the mock's CLOCK_MONOTONIC stamp in each token (`stamp=1`); "
       . "\"added\" = stream minus plain.\n\n";

$md .= "## Results\n\n";
$md .= "| scenario | location | events | nginx CPU µs/event (schedstat) "
     . "| nginx CPU µs/event (ticks) | instr/event (callgrind) | p50 µs "
     . "| p99 µs | max µs | errors |\n|---|---|---|---|---|---|---|---|---|---|\n";
my %med;
for my $sc (@order) {
    for my $loc (qw(plain stream)) {
        my $runs = $res{$sc}{$loc} or next;
        my %m;
        for my $k (qw(events cpu_sched_us cpu_tick_us p50 p99 max busy
                      nginx_cpu_s mock_cpu_s load_cpu_s other_cpu_s wall
                      errors))
        {
            $m{$k} = median(map { $_->{$k} } @$runs);
        }
        $m{errors_total} = 0;
        $m{errors_total} += $_->{errors} for @$runs;
        $med{$sc}{$loc} = \%m;
        my $cgk = $sc =~ /^A\d/ ? undef : $cg{$sc}{$loc};
        my $ipe;
        if ($cgk && defined $cgk->{ir} && $cgk->{events}
            && defined $cg{base}{none}{ir})
        {
            $ipe = ($cgk->{ir} - $cg{base}{none}{ir}) / $cgk->{events};
            $m{ipe} = $ipe;
        }
        my $lat = $sc =~ /^B/ ? ' (bulk)' : '';
        $md .= sprintf("| %s | %s | %d | %s | %s | %s | %s%s | %s%s | %s%s "
                       . "| %d |\n", $sc, $loc, $m{events}, f1($m{cpu_sched_us}),
                       f1($m{cpu_tick_us}), f0($ipe), f0($m{p50}), $lat,
                       f0($m{p99}), $lat, f0($m{max}), $lat, $m{errors_total});
    }
}

$md .= "\n## Ratios and targets\n\n";
$md .= "CPU ratios are stream÷plain of nginx CPU per event (schedstat). "
     . "\"paired\" = the median over repetitions of the ratio of the two runs "
     . "made side by side (this is what the verdict uses); \"of medians\" = "
     . "median stream ÷ median plain. Added latency = median stream p50/p99 "
     . "minus median plain p50/p99 (for B, Bc only informative: it measures "
     . "buffer depth).\n\n";
$md .= "| scenario | CPU ratio, paired | CPU ratio, of medians | per-repetition "
     . "ratios | instr/event ratio | added p50 µs | added p99 µs "
     . "| target |\n|---|---|---|---|---|---|---|---|\n";
for my $sc (@order) {
    my ($p, $s) = ($med{$sc}{plain}, $med{$sc}{stream});
    next unless $p && $s;
    my $mratio = $p->{cpu_sched_us} ? $s->{cpu_sched_us} / $p->{cpu_sched_us}
                                    : undef;
    my @pr;
    for my $i (0 .. $#{ $res{$sc}{plain} }) {
        my ($rp, $rs) = ($res{$sc}{plain}[$i], $res{$sc}{stream}[$i]);
        push @pr, $rs->{cpu_sched_us} / $rp->{cpu_sched_us}
            if $rp && $rs && $rp->{cpu_sched_us};
    }
    my $ratio = @pr ? median(@pr) : undef;
    my $iratio = $p->{ipe} && $s->{ipe} ? $s->{ipe} / $p->{ipe} : undef;
    my $limit = $sc =~ /^B/ ? 1.5 : 1.15;
    my $target = sprintf('CPU ≤ %.2fx: %s', $limit,
                         defined $ratio ? ($ratio <= $limit ? 'met' : 'MISSED')
                                        : 'n/a');
    my ($a50, $a99) = ($s->{p50} - $p->{p50}, $s->{p99} - $p->{p99});
    if ($sc !~ /^B/) {
        $target .= sprintf('; added p99 < 1000 µs: %s',
                           $a99 < 1000 ? 'met' : 'MISSED');
    }
    $md .= sprintf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", $sc,
                   defined $ratio ? sprintf('%.3f', $ratio) : 'n/a',
                   defined $mratio ? sprintf('%.3f', $mratio) : 'n/a',
                   join(' ', map { sprintf('%.2f', $_) } @pr),
                   defined $iratio ? sprintf('%.2f', $iratio) : 'n/a',
                   $sc =~ /^B/ ? "($a50)" : $a50,
                   $sc =~ /^B/ ? "($a99)" : $a99, $target);
}

$md .= "\n## Machine load (medians per run)\n\n";
$md .= "| scenario | location | wall s | nginx workers CPU s | mock CPU s "
     . "| load client CPU s | other processes CPU s "
     . "| machine busy (2 CPUs = 100%) |\n"
     . "|---|---|---|---|---|---|---|---|\n";
for my $sc (@order) {
    for my $loc (qw(plain stream)) {
        my $m = $med{$sc}{$loc} or next;
        $md .= sprintf("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f "
                       . "| %.0f%% |\n", $sc, $loc, $m->{wall},
                       $m->{nginx_cpu_s}, $m->{mock_cpu_s}, $m->{load_cpu_s},
                       $m->{other_cpu_s}, 100 * $m->{busy});
    }
}

$md .= "\nScenarios:\n\n";
for my $sc (@order) {
    my $r = $res{$sc}{plain}[0];
    $md .= "- $scen{$sc}{name}: `$r->{cmd}` (and `/stream/` instead of "
           . "`/plain/`)\n";
}

$md .= "\n## All runs\n\n| rep | scenario | location | events | errors "
     . "| CPU µs/ev sched | CPU µs/ev ticks | p50 | p99 | max | busy "
     . "| other CPU s |\n"
     . "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
for my $rep (1 .. $o{reps}) {
    for my $sc (@order) {
        for my $loc (qw(plain stream)) {
            my ($m) = grep { $_->{rep} == $rep } @{ $res{$sc}{$loc} };
            next unless $m;
            $md .= sprintf("| %d | %s | %s | %d | %d | %.2f | %.2f | %d | %d "
                           . "| %d | %.0f%% | %.2f |\n", $rep, $sc, $loc,
                           $m->{events}, $m->{errors}, $m->{cpu_sched_us},
                           $m->{cpu_tick_us}, $m->{p50}, $m->{p99}, $m->{max},
                           100 * $m->{busy}, $m->{other_cpu_s});
        }
    }
}

if (%cg) {
    $md .= "\n## Instruction counts (callgrind)\n\n"
         . "`perf stat -e instructions` reports `<not supported>` on this VM "
         . "(no hardware counters), so nginx ran single-process "
         . "(`master_process off`) under `valgrind --tool=callgrind`, one run "
         . "per scenario and location: A with $o{cg_streams} streams x "
         . "$o{tokens} tokens at $o{tps} tok/s, B (and Bc) with 1 stream x "
         . "$o{cg_bulk} tokens. Instructions/event = (Ir of the run - Ir of a run without "
         . "requests) / events. User-space instructions only (no kernel).\n\n"
         . "| run | Ir | events | instr/event |\n|---|---|---|---|\n";
    my $base_ir = $cg{base}{none}{ir};
    $md .= sprintf("| no load | %s | 0 | |\n", $base_ir // 'n/a');
    for my $sc (qw(A B Bc)) {
        for my $loc (qw(plain stream)) {
            my $c = $cg{$sc}{$loc} or next;
            $md .= sprintf("| %s %s | %s | %d | %s |\n", $sc, $loc,
                           $c->{ir} // 'n/a', $c->{events},
                           defined $c->{ir} && defined $base_ir
                           && $c->{events}
                           ? sprintf('%.0f', ($c->{ir} - $base_ir)
                                             / $c->{events})
                           : 'n/a');
        }
    }
    for my $sc (qw(A B Bc)) {
        my ($pf, $sf) = ($cgfn{$sc}{plain}, $cgfn{$sc}{stream});
        next unless $pf && $sf;
        my ($pe, $se) = ($cg{$sc}{plain}{events} || 1,
                         $cg{$sc}{stream}{events} || 1);
        my %d;
        for my $fn (keys %$sf) {
            $d{$fn} = $sf->{$fn} / $se - ($pf->{$fn} // 0) / $pe;
        }
        for my $fn (keys %$pf) {
            $d{$fn} //= - $pf->{$fn} / $pe;
        }
        my @top = (sort { $d{$b} <=> $d{$a} } keys %d)[0 .. 24];
        $md .= "\nScenario $sc: functions with the most extra instructions "
             . "per event in the streaming run (self cost, stream minus "
             . "plain, per event):\n\n| function | extra instr/event "
             . "| stream instr/event |\n|---|---|---|\n";
        for my $fn (grep { defined && $d{$_} > 0.5 } @top) {
            $md .= sprintf("| `%s` | %.0f | %.0f |\n", $fn, $d{$fn},
                           ($sf->{$fn} // 0) / $se);
        }
    }
}

if (%perf) {
    $md .= "\n## perf profile of the nginx workers during scenario A\n\n"
         . "`perf record -e cpu-clock -F 2000 -p <workers>` (software "
         . "clock sampling), flat self time by dso and symbol, one extra run "
         . "per location (not part of the table above).\n";
    for my $loc (qw(stream plain)) {
        next unless $perf{$loc};
        $md .= "\n$loc, by dso:\n\n```\n" . join("\n", @{ $perf{"$loc-dso"} })
             . "\n```\n\n$loc, top symbols:\n\n```\n"
             . join("\n", @{ $perf{$loc} }) . "\n```\n";
    }
}

$md .= "\n## nginx error log (warn and above)\n\n";
if (@errlines) {
    my $n = @errlines;
    $md .= "$n lines" . ($n > 40 ? ", first 40" : '') . ":\n\n```\n"
         . join("\n", @errlines[0 .. ($n > 40 ? 39 : $n - 1)]) . "\n```\n";
} else {
    $md .= "No lines.\n";
}
if ($status ne '') {
    $status = substr($status, 0, 3000);
    $md .= "\n## streaming_status after the timed runs\n\n```\n$status```\n";
}
$md .= "\n" . join("\n", map { "- $_" } @notes) . "\n" if @notes;

make_path(dirname($o{out}));
open my $out, '>', $o{out} or die "cannot write $o{out}: $!\n";
print $out $md;
close $out;
print $md;
logp("results written to $o{out}");
