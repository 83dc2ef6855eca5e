package Bench;

# What the util/bench scripts (producer.pl, fanout.pl, wakeup.pl) share:
# the processes they start (mock-llm, nginx, sse-load) and their cleanup,
# nginx prefixes and start-up, free ports, CPU and memory accounting from
# /proc, the error log read as it grows, and the results file.
#
#   use FindBin qw($RealBin);
#   use lib "$RealBin/lib";
#   use Bench qw(:all);
#   my $top = Bench::setup('fanout');      # logp() prefix, cleanup on exit
#
# Perl core modules only.  Everything binds to 127.0.0.1; every wait is
# bounded.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time clock_gettime CLOCK_MONOTONIC);

our @EXPORT_OK = qw(
    logp mono usec
    free_port wait_port stop_pid track_pid untrack_pid children_of
    start_mock prepare_prefix temp_paths_conf start_nginx stop_nginx
    nginx_master cleanup
    load_start load_finish show_cmd
    proc_cpu proc_sched_ns proc_run_s proc_rss proc_nfd machine_cpu
    loadavg loadavg_line clk_tck
    median md_table write_report
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $name = 'bench';
my $top;
my $owner = $$;         # only the process that set up cleans up
my @pids;               # processes started, stopped by cleanup()
my $master;             # the running nginx's master pid
my @keep_fh;           # the mock's stdout: closing it would wait for it
my $json = JSON::PP->new->canonical;

# The script's name for log lines; SIGINT / SIGTERM and the end of the
# script stop everything started.  Returns the repository's top directory.
sub setup {
    ($name) = @_;
    $owner = $$;
    $top = abs_path(dirname(abs_path($0)) . '/../..');
    $SIG{INT} = $SIG{TERM} = sub { cleanup(); exit 130 };
    return $top;
}

END {
    local $?;
    cleanup() if $$ == $owner;
}

sub logp { print STDERR "$name: @_\n" }
sub mono { clock_gettime(CLOCK_MONOTONIC) }
sub usec { int(clock_gettime(CLOCK_MONOTONIC) * 1e6) }

# ------------------------------------------------------------------
# processes

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1,
                                  ReuseAddr => 1)
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

# $sig, then SIGKILL if it is still there after $secs; reaps it
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

sub track_pid   { push @pids, @_ }
sub untrack_pid { my %g = map { $_ => 1 } @_; @pids = grep { !$g{$_} } @pids }

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

# build/mock-llm on a free port; returns (port, pid)
sub start_mock {
    my ($bin) = @_;
    my $pid = open(my $fh, '-|', $bin, '-p', '0', '-q')
        or die "cannot start mock-llm: $!\n";
    track_pid($pid);
    my $line = <$fh>;
    die "mock-llm did not start\n"
        unless defined $line && $line =~ /listening on 127\.0\.0\.1:(\d+)/;
    push @keep_fh, $fh;
    return ($1, $pid);
}

# ------------------------------------------------------------------
# nginx

# An empty prefix $dir with the given subdirectories, readable by nginx's
# workers (which may run as another user).
sub prepare_prefix {
    my ($dir, @sub) = @_;
    remove_tree($dir);
    make_path(map { "$dir/$_" } @sub);
    chmod 0755, dirname($dir), $dir, map { "$dir/$_" } @sub;
}

# the http{} lines that keep nginx's temporary files under $tmp
sub temp_paths_conf {
    my ($tmp) = @_;
    return join '', map { "    ${_}_temp_path $tmp/" . ($_ eq 'client_body'
                                                            ? 'body' : $_)
                          . ";\n" }
                    qw(client_body proxy fastcgi uwsgi scgi);
}

# Starts nginx with $a{prefix}/conf/nginx.conf (after `nginx -t`), waits
# for it to listen on $a{port} and for its $a{workers} (default 2)
# workers.  $a{nofile}: `ulimit -n` for it first (as far as the hard limit
# allows).  Returns the worker pids.
sub start_nginx {
    my (%a) = @_;
    my $prefix = $a{prefix};
    my $want = $a{workers} // 2;
    my @n = ($a{nginx}, '-p', "$prefix/", '-c', 'conf/nginx.conf');
    @n = ('sh', '-c', "ulimit -n $a{nofile} 2>/dev/null; exec \"\$0\" \"\$@\"",
          @n) if $a{nofile};
    system(@n, '-q', '-t') == 0 or die "nginx -t failed, see above\n";
    system(@n) == 0 or die "nginx did not start\n";
    my $end = time + 10;
    sleep 0.05 while time < $end && !-s "$prefix/logs/nginx.pid";
    open my $f, '<', "$prefix/logs/nginx.pid" or die "no nginx pid file\n";
    chomp($master = <$f>);
    close $f;
    wait_port($a{port}, 10) or die "nginx does not listen on $a{port}\n";
    my @w;
    $end = time + 10;
    while (time < $end) {
        @w = children_of($master);
        last if @w == $want;
        sleep 0.05;
    }
    die "expected $want nginx workers, found @w\n" unless @w == $want;
    return @w;
}

sub nginx_master { $master }

# SIGQUIT, SIGKILL after $secs (default 10); false if it had to be killed
sub stop_nginx {
    my ($secs) = @_;
    my $ok = 1;
    if ($master && kill 0, $master) {
        kill 'QUIT', $master;
        my $end = time + ($secs // 10);
        sleep 0.05 while time < $end && kill 0, $master;
        if (kill 0, $master) {
            kill 'KILL', $master;
            $ok = 0;
        }
    }
    $master = undef;
    return $ok;
}

sub cleanup {
    stop_nginx();
    for my $p (@pids) { stop_pid($p, 'TERM', 10) }
    @pids = ();
}

# ------------------------------------------------------------------
# build/sse-load

# starts it; returns (pid, fh)
sub load_start {
    my @cmd = @_;
    my $pid = open(my $fh, '-|', @cmd) or die "cannot run sse-load: $!\n";
    track_pid($pid);
    return ($pid, $fh);
}

# Its JSON, read within $secs (a fallback: sse-load has its own -t); the
# exit status in {rc}, or {error} when it printed no JSON.
sub load_finish {
    my ($pid, $fh, $secs) = @_;
    my ($out, $eof) = ('', 0);
    {
        local $/;
        local $SIG{ALRM} = sub { die "alarm\n" };
        alarm($secs);
        $eof = eval { $out = <$fh>; 1 };
        alarm(0);
    }
    stop_pid($pid, 'TERM', 5) unless $eof;
    close $fh;
    my $rc = $eof ? $? >> 8 : undef;
    stop_pid($pid, 'TERM', 5);
    untrack_pid($pid);
    my $r = eval { $json->decode($out // '') };
    return { error => "no JSON from sse-load: " . substr($out // '', 0, 200) }
        unless $r;
    $r->{rc} = $rc;
    return $r;
}

# a command line to show, relative to the repository
sub show_cmd {
    my $c = join ' ', map { /[&?\s]/ ? "'$_'" : $_ } @_;
    $c =~ s/\Q$top\E\///g if defined $top;
    return $c;
}

# ------------------------------------------------------------------
# /proc

# utime+stime in ticks, and the scheduler's run time in ns, of one pid
sub proc_cpu {
    my ($pid) = @_;
    my $ticks = 0;
    if (open my $f, '<', "/proc/$pid/stat") {
        my $s = <$f>;
        close $f;
        $s =~ s/^.*\)\s+//s;
        my @f = split ' ', $s;
        $ticks = $f[11] + $f[12];       # fields 14 and 15
    }
    return ($ticks, proc_sched_ns($pid));
}

sub proc_sched_ns {
    my ($pid) = @_;
    open my $f, '<', "/proc/$pid/schedstat" or return 0;
    my $s = <$f>;
    close $f;
    my ($ns) = split ' ', $s // '0';
    return $ns;
}

sub proc_run_s { proc_sched_ns($_[0]) / 1e9 }

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

# open descriptors
sub proc_nfd {
    my ($pid) = @_;
    opendir my $d, "/proc/$pid/fd" or return 0;
    my $n = grep { /^\d+$/ } readdir $d;
    closedir $d;
    return $n;
}

# the machine's total, idle (+ iowait) and steal jiffies
sub machine_cpu {
    open my $f, '<', '/proc/stat' or return (0, 0, 0);
    my $l = <$f>;
    close $f;
    my @v = split ' ', $l;
    shift @v;
    my $tot = 0;
    $tot += $_ for @v[0 .. 7];
    return ($tot, $v[3] + $v[4], $v[7]);
}

# the three load averages; loadavg_line: /proc/loadavg as it is
sub loadavg {
    my $l = loadavg_line() // return '?';
    return join ' ', (split ' ', $l)[0 .. 2];
}

sub loadavg_line {
    open my $f, '<', '/proc/loadavg' or return undef;
    my $l = <$f>;
    close $f;
    chomp $l if defined $l;
    return $l;
}

sub clk_tck { `getconf CLK_TCK` + 0 || 100 }

# ------------------------------------------------------------------
# results

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return undef unless @v;
    my $n = @v;
    return $n % 2 ? $v[($n - 1) / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2;
}

# the lines of a Markdown table: a header row (array ref), then rows
sub md_table {
    my ($head, @rows) = @_;
    return ('| ' . join(' | ', @$head) . ' |', '|' . ('---|' x @$head),
            map { '| ' . join(' | ', @$_) . ' |' } @rows);
}

# writes the results file (making its directory) and prints it
sub write_report {
    my ($file, $text) = @_;
    make_path(dirname($file));
    open my $out, '>', $file or die "cannot write $file: $!\n";
    print $out $text;
    close $out;
    print $text;
}

# ------------------------------------------------------------------
# An error log read as it grows: lines() returns the lines written since
# the last call; rewind() starts again (a new nginx, a new file).

package Bench::LogTail;

sub new {
    my ($class, $file) = @_;
    return bless { file => $file, pos => 0 }, $class;
}

sub rewind { $_[0]{pos} = 0 }

sub lines {
    my ($self) = @_;
    open my $f, '<', $self->{file} or return ();
    seek $f, $self->{pos}, 0;
    my @l = <$f>;
    $self->{pos} = tell $f;
    close $f;
    chomp @l;
    return @l;
}

1;
