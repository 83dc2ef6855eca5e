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

use FindBin qw($RealBin);
use lib "$RealBin/lib";

use Bench qw(:all);
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);

my $top = Bench::setup('producer');

my %o = (
    reps         => 3,
    streams      => 1000,
    tps          => 50,
    tokens       => 200,
    ramp         => 1,
    bulk_tokens  => 200000,
    extra_streams => '500,50',
    bulk_coalesce => 1,
    callgrind    => 1,
    cg_streams   => 20,
    cg_bulk      => 20000,
    perf         => 1,
    quick        => 0,
);
my $cmdline = Bench::options(\%o,
    "[--reps N] [--streams N] [--tps X] [--tokens N] "
        . "[--bulk-tokens N] [--extra-streams N,N|''] [--no-bulk-coalesce] "
        . "[--no-callgrind] [--no-perf] "
        . "[--quick]",
    qw(reps=i streams=i tps=f tokens=i ramp=f bulk-tokens=i extra-streams=s
       bulk-coalesce! callgrind! cg-streams=i cg-bulk=i perf! quick));

if ($o{quick}) {
    $o{reps} = 1;
    $o{streams} = 100;
    $o{bulk_tokens} = 20000;
    $o{extra_streams} = '';
    $o{cg_streams} = 5;
    $o{cg_bulk} = 2000;
}
die "--reps must be 1..20\n" unless $o{reps} >= 1 && $o{reps} <= 20;
die "--streams must be 1..9000\n"
    unless $o{streams} >= 1 && $o{streams} <= 9000;

my ($mock_bin, $load_bin) = check_programs(\%o, load => 1);

my $bench   = "$top/build/bench";
my $prefix  = "$bench/producer";
my $tck     = clk_tck();
my @notes;          # observations for the results file
my @errlines;       # the error log's lines, for the results file
my ($mock_pid, @workers);

# ------------------------------------------------------------------
# CPU accounting from /proc

sub snapshot {
    my ($workers) = @_;
    my %s;
    for my $w (@$workers) {
        my ($t, $n) = proc_cpu($w);
        $s{wt} += $t;
        $s{wn} += $n;
    }
    ($s{mt}, $s{mn}) = proc_cpu($mock_pid);
    return { %s, %{ machine_snap() } };
}

# ------------------------------------------------------------------
# nginx

sub write_conf {
    my (%a) = @_;
    my $dir = $a{prefix};
    my $proc = $a{single} ? "master_process off;\ndaemon off;\n"
                            . "worker_processes 1;"
                          : "worker_processes 2;";
    write_nginx_conf(dir => $dir, dirs => [qw(conf logs modules tmp)],
                     connections => 9000, main => <<"MAIN", http => <<"HTTP");
load_module modules/ngx_http_streaming_module.so;

$proc
worker_rlimit_nofile 20000;
MAIN
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
HTTP
    symlink $o{module}, "$dir/modules/ngx_http_streaming_module.so"
        or die "symlink: $!\n";
}

sub start_nginx_producer {
    my ($port, $mport) = @_;
    write_conf(prefix => $prefix, port => $port, mport => $mport,
               zone => '256m');
    return start_nginx(nginx => $o{nginx}, prefix => $prefix, port => $port,
                       nofile => 20000);
}

# ------------------------------------------------------------------
# one load run

sub run_load {
    my (%a) = @_;
    my @cmd = ($load_bin, '-u', $a{url}, '-c', $a{conns}, '-q', $a{query},
               '-t', $a{timeout}, '-Q');
    push @cmd, '-r', $a{ramp} if $a{ramp};
    my $r = load_finish(load_start(@cmd), $a{timeout} + 60);
    die "sse-load: $r->{error}\n" if $r->{error};
    $r->{cmd} = show_cmd(@cmd);
    return $r;
}

# ------------------------------------------------------------------
# main benchmark

logp("top $top");
make_path($bench);
(my $mport, $mock_pid) = start_mock($mock_bin);
my $port  = free_port();
@workers = start_nginx_producer($port, $mport);
logp("mock on $mport (pid $mock_pid), nginx on $port (master "
     . nginx_master() . ", workers @workers)");
my $errlog = Bench::LogTail->new("$prefix/logs/error.log", \@errlines);
$errlog->lines;

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
my @extra = grep { /\S/ } split /,/, $o{extra_streams};
die "--extra-streams: numbers 1..9000, comma-separated\n"
    if grep { !/^\d+$/ || $_ < 1 || $_ > 9000 } @extra;
for my $n (@extra) {
    $scen{"A$n"} = { %{ $scen{A} }, conns => $n,
                     name => "A$n: LLM rate, $n streams x $o{tokens} tokens "
                             . "at $o{tps} tok/s" };
}
@order = ('A', (map { "A$_" } @extra), 'B');
if ($o{bulk_coalesce}) {
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
my @warm = $errlog->lines;
push @notes, "error log during warm-up: " . scalar(@warm) . " lines" if @warm;

my %res;            # {scenario}{loc} = [runs]
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
                busy     => (machine_busy($s0, $e))[0] // 0,
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
            my @l = $errlog->take("$sc/$loc rep $rep");
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
    my $s = connect_local($port, Timeout => 5);
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
        track_pid($ppid);
        sleep 0.3;
        run_load(url => "$base/$loc/v1/chat/completions",
                 conns => $o{streams}, query => $scen{A}{query},
                 timeout => $scen{A}{timeout}, ramp => $o{ramp});
        stop_pid($ppid, 'INT', 30);
        untrack_pid($ppid);
        next unless -s $pf;
        my $cmd = "perf report -i '$pf' --stdio --no-children --sort dso,sym "
                . "--percent-limit 0.7 -g none 2>/dev/null";
        my $rep = `$cmd`;
        my @lines = grep { /^\s+\d/ } split /\n/, $rep;
        $perf{$loc} = [ @lines[0 .. ($#lines < 34 ? $#lines : 34)] ];
        $cmd = "perf report -i '$pf' --stdio --no-children --sort dso "
             . "-g none 2>/dev/null";
        my $dso = `$cmd`;
        $perf{"$loc-dso"} = [ grep { /^\s+\d/ } split /\n/, $dso ];
    }
    $errlog->take('perf runs');
}

# stop the benchmark nginx
{
    push @errlines, "nginx did not exit within 15 s of SIGQUIT"
        unless stop_nginx(15);
    $errlog->take('shutdown');
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
                 ($o{bulk_coalesce} ? (['Bc', 'plain'], ['Bc', 'stream'])
                                    : ()))
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
        track_pid($pid);
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
        untrack_pid($pid);
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
        Bench::LogTail->new("$cgpre/logs/error.log", \@errlines)
            ->take("callgrind $sc/$loc");
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

write_report($o{out}, $md);
logp("results written to $o{out}");
