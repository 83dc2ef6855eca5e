package Bench;

# What the util/bench scripts (producer.pl, fanout.pl, wakeup.pl) share:
# the options they all take and the programs they need, the processes they
# start (mock-llm, nginx, sse-load) and their cleanup, nginx prefixes,
# configuration and start-up, nchan's publisher requests, free ports, CPU
# and memory accounting from /proc, the error log read as it grows, and
# the results file.
#
#   use FindBin qw($RealBin);
#   use lib "$RealBin/lib";
#   use Bench qw(:all);
#   my $top = Bench::setup('fanout');      # logp() prefix, cleanup on exit
#   my %o = (subs => '100,1000', ...);     # the script's own defaults
#   my $cmdline = Bench::options(\%o, '[--subs N,N] ...', 'subs=s', ...);
#
# Perl core modules only.  Everything binds to 127.0.0.1; every wait is
# bounded.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time clock_gettime CLOCK_MONOTONIC);

our @EXPORT_OK = qw(
    logp mono usec wait_for check_programs
    free_port connect_local wait_port stop_pid track_pid untrack_pid children_of
    start_mock prepare_prefix temp_paths_conf write_nginx_conf
    ours_locations nchan_locations start_nginx stop_nginx
    nginx_master workers_changed cleanup
    npub_body npub_post npub_delete
    load_start load_finish show_cmd
    proc_cpu proc_sched_ns proc_run_s proc_rss proc_nfd machine_cpu
    machine_snap machine_busy machine_pct loadavg loadavg_line clk_tck
    median md_table errlog_md write_report
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

# Calls $cond every $step s until it returns true (then true), for $secs
# at the most (then false).
sub wait_for {
    my ($secs, $step, $cond) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep $step;
    }
    return 0;
}

# ------------------------------------------------------------------
# options and programs

# Parses @ARGV into %$o, which holds the script's defaults.  @spec:
# Getopt::Long specifications, each stored in $o->{name} (the option's
# name with '_' for '-') unless a reference follows it (its destination).
# --nginx, --module and --out come with every script (their defaults
# here, like --nchan's, which a script that takes it lists in @spec).
# Dies with "usage: $0 $usage" on a bad option.  Returns the command line
# as given, for the results file.
sub options {
    my ($o, $usage, @spec) = @_;
    my $cmdline = join ' ', "util/bench/$name.pl", @ARGV;
    $o->{nginx}  //= '/usr/sbin/nginx';
    $o->{module} //= "$top/build/debian/ngx_http_streaming_module.so";
    $o->{nchan}  //= '/usr/lib/nginx/modules/ngx_nchan_module.so';
    $o->{out}    //= "$top/build/bench/$name-results.md";
    my @get;
    unshift @spec, 'nginx=s', 'module=s', 'out=s';
    while (@spec) {
        my $s = shift @spec;
        my $dest = ref $spec[0] ? shift @spec
                 : \$o->{ ($s =~ /^([\w-]+)/)[0] =~ tr/-/_/r };
        push @get, $s => $dest;
    }
    GetOptions(@get) or die "usage: $0 $usage\n";
    return $cmdline;
}

# Dies unless the programs are there: build/mock-llm, build/sse-load (with
# $a{load}), $o->{module}, $o->{nginx}, and $o->{nchan} (with $a{nchan}).
# Makes $o->{module} absolute.  Returns the paths of mock-llm and sse-load.
sub check_programs {
    my ($o, %a) = @_;
    my $mock = "$top/build/mock-llm";
    my $load = "$top/build/sse-load";
    my $make = 'make module mock' . ($a{load} ? ' bench-tools' : '');
    for ($mock, ($a{load} ? $load : ()), $o->{module}, $o->{nginx}) {
        die "missing $_ (run: $make)\n" unless -e $_;
    }
    die "missing $o->{nchan} (apt-get install libnginx-mod-nchan)\n"
        if $a{nchan} && !-e $o->{nchan};
    $o->{module} = abs_path($o->{module});
    return ($mock, $load);
}

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

# a TCP connection to 127.0.0.1:$port, undef (and $!) if there is none;
# @opt: more IO::Socket::INET arguments
sub connect_local {
    my ($port, @opt) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', @opt);
}

sub wait_port {
    my ($port, $secs) = @_;
    return wait_for($secs, 0.05, sub {
        my $s = connect_local($port) or return 0;
        close $s;
        return 1;
    });
}

# $sig, then SIGKILL if it is still there after $secs; reaps it
sub stop_pid {
    my ($pid, $sig, $secs) = @_;
    return unless $pid && kill 0, $pid;
    kill $sig, $pid;
    return if wait_for($secs, 0.05, sub {
        my $r = waitpid($pid, WNOHANG);
        return $r == $pid || ($r < 0 && !kill 0, $pid);
    });
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

# Makes the prefix $a{dir} (its subdirectories $a{dirs}, by default conf,
# logs and tmp, as prepare_prefix) and writes its conf/nginx.conf:
# $a{main} (load_module, worker_* lines), the pid file and the error log
# (warn) under logs/, $a{connections} worker connections, and http{}:
# the access log off, $a{http_first}, the temporary paths under tmp/, a
# blank line, then $a{http} (the servers).
sub write_nginx_conf {
    my (%a) = @_;
    my $dir = $a{dir};
    prepare_prefix($dir, @{ $a{dirs} // [qw(conf logs tmp)] });
    open my $f, '>', "$dir/conf/nginx.conf" or die "$!\n";
    print $f "# generated by util/bench/$name.pl\n$a{main}"
        . "pid logs/nginx.pid;\nerror_log logs/error.log warn;\n\n"
        . "events {\n    worker_connections $a{connections};\n}\n\n"
        . "http {\n    access_log off;\n" . ($a{http_first} // '')
        . temp_paths_conf("$dir/tmp") . "\n$a{http}}\n";
    close $f;
}

# server{} lines: ours, the producer location /pub (`streaming $zone`,
# proxying the mock's `stamp=1&size=$size` with the request's tokens, tps
# and ttft) and the subscribers' /sub; both with `streaming_id $arg_id`
sub ours_locations {
    my ($zone, $size) = @_;
    return <<"OURS";
        # ours: producer
        location = /pub {
            proxy_pass http://mock/v1/chat/completions?stamp=1&size=$size&tokens=\$arg_tokens&tps=\$arg_tps&ttft=\$arg_ttft;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;
            streaming $zone;
            streaming_id \$arg_id;
        }
        # ours: subscribers
        location = /sub {
            streaming_subscribe $zone;
            streaming_id \$arg_id;
        }
OURS
}

# server{} lines: nchan's publisher /npub (keeping $a{buffer} messages for
# $a{timeout}) and EventSource subscribers /nsub (from the oldest message
# with $a{oldest}); the channel id is $arg_id
sub nchan_locations {
    my (%a) = @_;
    my $oldest = $a{oldest} ? "            nchan_subscriber_first_message"
                              . " oldest;\n" : '';
    return <<"NCHAN";
        # nchan: publisher and EventSource subscribers
        location = /npub {
            nchan_publisher;
            nchan_channel_id \$arg_id;
            nchan_message_buffer_length $a{buffer};
            nchan_message_timeout $a{timeout};
        }
        location = /nsub {
            nchan_subscriber eventsource;
            nchan_channel_id \$arg_id;
$oldest        }
NCHAN
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
    wait_for(10, 0.05, sub { -s "$prefix/logs/nginx.pid" });
    open my $f, '<', "$prefix/logs/nginx.pid" or die "no nginx pid file\n";
    chomp($master = <$f>);
    close $f;
    wait_port($a{port}, 10) or die "nginx does not listen on $a{port}\n";
    my @w;
    wait_for(10, 0.05, sub { @w = children_of($master); @w == $want });
    die "expected $want nginx workers, found @w\n" unless @w == $want;
    return @w;
}

sub nginx_master { $master }

# a note when the running nginx's workers are no longer @workers
sub workers_changed {
    my @now = children_of($master);
    return "@now" ne "@_"
        ? ("nginx workers changed during the run: @_ -> @now") : ();
}

# SIGQUIT, SIGKILL after $secs (default 10); false if it had to be killed
sub stop_nginx {
    my ($secs) = @_;
    my $ok = 1;
    if ($master && kill 0, $master) {
        kill 'QUIT', $master;
        wait_for($secs // 10, 0.05, sub { !kill 0, $master });
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
# nchan's publisher location (/npub, as nchan_locations)

# $mark padded with 'x' so that the SSE event nchan sends of it ("id:
# <time>:<tag>\ndata: <body>\n\n") is about $size bytes
sub npub_body {
    my ($mark, $size) = @_;
    my $len = $size - 30;
    $mark .= 'x' x ($len - length $mark) if length $mark < $len;
    return $mark;
}

# the HTTP/1.1 request that publishes $body to channel $id
sub npub_post {
    my ($id, $body) = @_;
    return "POST /npub?id=$id HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         . "Content-Type: text/plain\r\nContent-Length: " . length($body)
         . "\r\n\r\n$body";
}

# the one that deletes channel $id (its subscribers are closed)
sub npub_delete {
    my ($id) = @_;
    return "DELETE /npub?id=$id HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         . "Content-Length: 0\r\n\r\n";
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

# machine_cpu() as {tot, idle, steal} and the time
sub machine_snap {
    my %s;
    @s{qw(tot idle steal)} = machine_cpu();
    $s{time} = time;
    return \%s;
}

# from two machine_snap()s (or hashes with tot, idle, steal): the share of
# the CPUs' time that was busy, and of that stolen; undef without ticks
sub machine_busy {
    my ($a, $b) = @_;
    my $dt = $b->{tot} - $a->{tot};
    return (undef, undef) unless $dt > 0;
    return (1 - ($b->{idle} - $a->{idle}) / $dt,
            ($b->{steal} - $a->{steal}) / $dt);
}

# for the results file: the number of CPUs, and machine_busy() in per
# cent (0 without ticks)
sub machine_pct {
    my ($busy, $steal) = machine_busy(@_);
    return (`nproc` =~ s/\s+//r, 100 * ($busy // 0), 100 * ($steal // 0));
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

# the results file's lines for the error log: @lines, the first $max of
# them (cut to 400 characters), and their number
sub errlog_md {
    my ($max, @lines) = @_;
    return ('## nginx error log (warn and above)', '',
            @lines ? ('```', (map { substr($_, 0, 400) }
                              @lines[0 .. ($#lines >= $max ? $max - 1
                                                           : $#lines)]),
                      '```')
                   : ('(empty)'),
            '', 'Total lines: ' . scalar(@lines), '');
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
# the last call; take($what) returns them too and adds them, each as
# "[$what] line", to the array given to new(); rewind() starts again (a
# new nginx, a new file).

package Bench::LogTail;

sub new {
    my ($class, $file, $into) = @_;
    return bless { file => $file, pos => 0, into => $into }, $class;
}

sub take {
    my ($self, $what) = @_;
    my @l = $self->lines;
    push @{ $self->{into} }, map { "[$what] $_" } @l if $self->{into};
    return @l;
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
