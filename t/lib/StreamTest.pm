package StreamTest;

# Test harness for ngx_http_streaming_module: runs a private nginx (and,
# optionally, the mock LLM upstream) in a temporary prefix, talks raw HTTP to
# it, parses SSE / NDJSON / chunked bodies and checks the logs at the end.
# Core Perl only.  Full documentation: POD at the end of this file.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Errno qw(ESRCH);
use Exporter 'import';
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(refaddr weaken);
use Socket qw(SOCK_STREAM);
use Test::More ();
use Time::HiRes qw(time sleep);

use StreamTest::Parse qw(
    parse_sse parse_ndjson decode_chunked json_decode json_encode scan_log
);
use StreamTest::Conn;

our $VERSION = '1.00';

our @EXPORT = qw(
    free_port parse_sse parse_ndjson decode_chunked json_decode json_encode
);
our @EXPORT_OK = qw(scan_log timeout_factor);

# The repository root: two levels above this file's directory (t/lib).
our $REPO = do {
    my $dir = dirname(File::Spec->rel2abs(__FILE__));
    abs_path(File::Spec->catdir($dir, File::Spec->updir, File::Spec->updir));
};

# Live instances (weak references), so that END can stop forgotten ones.
my %LIVE;

# ---------------------------------------------------------------------------
# Plain functions
# ---------------------------------------------------------------------------

my %USED_PORTS;

sub free_port {
    for (1 .. 200) {
        my $s = IO::Socket::IP->new(
            LocalHost => '127.0.0.1',
            LocalPort => 0,
            Type      => SOCK_STREAM,
            Listen    => 1,
        ) or croak "free_port: cannot bind 127.0.0.1:0: $@";
        my $port = $s->sockport;
        $s->close;
        next if $USED_PORTS{$port}++;
        return $port;
    }
    croak 'free_port: no unused port found';
}

# Multiplier applied to every timeout of the harness and its clients.
sub timeout_factor {
    return $ENV{TEST_NGINX_TIMEOUT_FACTOR}
        if $ENV{TEST_NGINX_TIMEOUT_FACTOR} && $ENV{TEST_NGINX_TIMEOUT_FACTOR} > 0;
    return $ENV{TEST_NGINX_VALGRIND} ? 10 : 1;
}

sub _binary {
    my $b = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    $b = File::Spec->rel2abs($b) if $b =~ m{/} && -e $b;
    return $b;
}

sub _module {
    return $ENV{TEST_NGINX_MODULE} if defined $ENV{TEST_NGINX_MODULE};
    return "$REPO/build/debian/ngx_http_streaming_module.so";
}

sub _slurp {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or return '';
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub _spew {
    my ($file, $content) = @_;
    open(my $fh, '>:raw', $file) or croak "cannot write $file: $!";
    print {$fh} $content;
    close $fh or croak "cannot write $file: $!";
}

# /proc/<pid>/stat -> (state, ppid) or ()
sub _proc_stat {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/stat") or return;
    my $line = <$fh>;
    return unless defined $line && $line =~ /\A\d+ \(.*\) (\S) (\d+) /s;
    return ($1, $2);
}

sub _proc_cmdline {
    my ($pid) = @_;
    my $c = _slurp("/proc/$pid/cmdline");
    $c =~ tr/\0/ /;
    $c =~ s/\s+\z//;
    return $c;
}

# Live (non-zombie) children of $ppid.
sub _children {
    my ($ppid) = @_;
    opendir(my $dh, '/proc') or return;
    my @kids;
    for my $pid (grep { /\A\d+\z/ } readdir $dh) {
        my ($state, $parent) = _proc_stat($pid) or next;
        next unless $parent == $ppid;
        next if $state eq 'Z' || $state eq 'X';
        push @kids, $pid + 0;
    }
    @kids = sort { $a <=> $b } @kids;
    return @kids;
}

sub _alive {
    my ($pid) = @_;
    my ($state) = _proc_stat($pid);
    return defined $state && $state ne 'Z' && $state ne 'X';
}

# fork + exec with stdio redirected to files and extra environment.
sub _spawn {
    my (%o) = @_;
    my @cmd = @{ $o{cmd} };
    my $pid = fork;
    croak "fork failed: $!" unless defined $pid;
    if ($pid == 0) {
        # Child: never return into the test script (no END blocks here).
        eval {
            open(STDIN, '<', '/dev/null') or die "stdin: $!";
            open(STDOUT, '>>', $o{stdout}) or die "$o{stdout}: $!";
            if (defined $o{stderr} && $o{stderr} ne $o{stdout}) {
                open(STDERR, '>>', $o{stderr}) or die "$o{stderr}: $!";
            }
            else {
                open(STDERR, '>&', \*STDOUT) or die "stderr: $!";
            }
            my $env = $o{env} || {};
            $ENV{$_} = $env->{$_} for keys %$env;
            $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
            exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
        };
        print STDERR "StreamTest: cannot start @cmd: $@";
        POSIX::_exit(127);
    }
    return $pid;
}

# Waits for our child $pid.  Returns its wait status, or undef on timeout.
sub _wait_pid {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        return $? if $r == $pid;
        return -1 if $r == -1;    # not our child any more (already reaped)
        return undef if time >= $deadline;
        sleep 0.02;
    }
}

sub _describe_status {
    my ($st) = @_;
    return 'unknown (already reaped)' if $st == -1;
    return 'exit code ' . ($st >> 8) unless $st & 127;
    return 'killed by signal ' . ($st & 127) . (($st & 128) ? ' (core dumped)' : '');
}

# Runs a command to completion, returns ($exit_code, $combined_output).
sub _run_capture {
    my ($outfile, $env, $timeout, @cmd) = @_;
    unlink $outfile;
    my $pid = _spawn(cmd => \@cmd, stdout => $outfile, env => $env);
    my $st = _wait_pid($pid, $timeout);
    if (!defined $st) {
        kill 'KILL', $pid;
        $st = _wait_pid($pid, 5) // -1;
    }
    my $code = $st == -1 ? -1 : ($st & 127) ? 128 + ($st & 127) : $st >> 8;
    return ($code, _slurp($outfile));
}

sub _diag_text {
    my ($title, $text) = @_;
    $text //= '';
    $text =~ s/\s+\z//;
    Test::More::diag("$title:\n" . ($text eq '' ? '(empty)' : $text));
}

# ---------------------------------------------------------------------------
# Construction and configuration
# ---------------------------------------------------------------------------

# Signals: a test killed by INT/TERM/HUP still runs END (which stops nginx
# and removes the prefix); SIGPIPE (e.g. "prove | head") is ignored so that
# a closed output does not kill the test before its clean-up.  Handlers the
# test installed itself are left alone.
my $SIGNALS_SET;

sub _install_signal_handlers {
    return if $SIGNALS_SET++;
    $SIG{PIPE} = 'IGNORE' if !$SIG{PIPE} || $SIG{PIPE} eq 'DEFAULT';
    for my $sig (qw(INT TERM HUP)) {
        next if $SIG{$sig} && $SIG{$sig} ne 'DEFAULT';
        $SIG{$sig} = sub {
            print STDERR "# StreamTest: caught SIG$sig, cleaning up\n";
            exit 128 + { INT => 2, TERM => 15, HUP => 1 }->{$sig};
        };
    }
}

sub new {
    my ($class, %o) = @_;
    _install_signal_handlers();
    my $name = $o{name} // do {
        my $b = basename($0);
        $b =~ s/\.t\z//;
        $b;
    };
    (my $safe = $name) =~ s/[^A-Za-z0-9_.-]+/_/g;
    $safe = substr($safe, 0, 40);

    my $prefix = tempdir("nginx-$safe-XXXXXX", TMPDIR => 1, CLEANUP => 0);
    $prefix = abs_path($prefix);
    chmod 0755, $prefix;
    for my $d (qw(conf logs tmp html)) {
        make_path("$prefix/$d", { mode => 0755 });
        chmod 0755, "$prefix/$d";
    }

    my $self = bless {
        name            => $name,
        workers         => $o{workers} // 2,
        error_log_level => $o{error_log_level} // 'info',
        prefix          => $prefix,
        ports           => { 1 => free_port(), 2 => free_port(), 3 => free_port() },
        cfg             => { main => '', events => '', http => '', server => '' },
        expected        => [],
        owner_pid       => $$,
        factor          => timeout_factor(),
        nt_count        => 0,
    }, $class;

    $LIVE{ refaddr $self } = $self;
    weaken $LIVE{ refaddr $self };
    return $self;
}

sub name   { $_[0]{name} }
sub prefix { $_[0]{prefix} }

sub port {
    my ($self, $n) = @_;
    $n //= 1;
    $self->{ports}{$n} //= free_port();
    return $self->{ports}{$n};
}

sub _cfg_accessor {
    my ($key) = @_;
    return sub {
        my ($self, @v) = @_;
        $self->{cfg}{$key} = $v[0] // '' if @v;
        return $self->{cfg}{$key};
    };
}

{
    no strict 'refs';
    *{"main_config"}   = _cfg_accessor('main');
    *{"events_config"} = _cfg_accessor('events');
    *{"http_config"}   = _cfg_accessor('http');
    *{"server_config"} = _cfg_accessor('server');
}

sub module_path { _module() }
sub binary      { _binary() }

# True when nginx runs under valgrind or is built with a sanitizer: memory
# figures (RSS) mean nothing there.
sub instrumented {
    return 1 if $ENV{TEST_NGINX_VALGRIND};
    my $v = `${\ _binary()} -V 2>&1`;
    return $v =~ /-fsanitize/ ? 1 : 0;
}

sub _subst {
    my ($self, $text) = @_;
    $text =~ s{%%PORT(\d*)%%}{ $self->port($1 eq '' ? 1 : $1) }ge;
    $text =~ s{%%PREFIX%%}{$self->{prefix}}g;
    $text =~ s{%%MODULE%%}{ _module() }ge;
    if ($text =~ /%%MOCK_PORT%%/) {
        croak '%%MOCK_PORT%% used in the config, but start_mock_llm() was not called'
            unless $self->{mock_port};
        $text =~ s{%%MOCK_PORT%%}{$self->{mock_port}}g;
    }
    return $text;
}

sub _indent {
    my ($text, $pad) = @_;
    $text //= '';
    $text =~ s/\A\n+//;
    $text =~ s/\s+\z//;
    return '' if $text eq '';
    return join('', map { "$pad$_\n" } split /\n/, $text);
}

# Renders a complete nginx.conf.  %o: main events http server (default: the
# current ones), error_log, pid (file paths).
sub _render {
    my ($self, %o) = @_;
    my $p = $self->{prefix};
    my %c = map { $_ => (exists $o{$_} ? $o{$_} // '' : $self->{cfg}{$_}) }
        qw(main events http server);
    my $error_log = $o{error_log} // "$p/logs/error.log";
    my $pid       = $o{pid}       // "$p/logs/nginx.pid";
    my $module    = _module();

    my $conf = '';
    $conf .= "load_module $module;\n" if $module ne '';
    $conf .= "\n" . _indent($c{main}, '') . "\n" if $c{main} =~ /\S/;
    $conf .= <<"EOF";
worker_processes $self->{workers};
daemon off;
master_process on;
EOF
    $conf .= "user root;\n" if $> == 0;
    $conf .= <<"EOF";
error_log $error_log $self->{error_log_level};
pid $pid;

events {
    worker_connections 1024;
EOF
    $conf .= _indent($c{events}, '    ');
    $conf .= <<"EOF";
}

http {
    access_log $p/logs/access.log;
    client_body_temp_path $p/tmp/body;
    proxy_temp_path $p/tmp/proxy;
    fastcgi_temp_path $p/tmp/fastcgi;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;

EOF
    $conf .= _indent($c{http}, '    ');
    $conf .= <<"EOF";

    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

EOF
    $conf .= _indent($c{server}, '        ');
    $conf .= <<"EOF";
    }
}
EOF
    return $self->_subst($conf);
}

# The nginx.conf text that start() / reload() write.
sub config_text { $_[0]->_render }

sub _write_conf {
    my ($self) = @_;
    my $text = $self->_render;
    _spew("$self->{prefix}/conf/nginx.conf", $text);
    return $text;
}

# Writes a file below the prefix (e.g. 'html/a.txt'); returns its path.
sub write_file {
    my ($self, $rel, $content) = @_;
    my $path = "$self->{prefix}/$rel";
    make_path(dirname($path), { mode => 0755 });
    _spew($path, $content // '');
    chmod 0644, $path;
    return $path;
}

sub read_file {
    my ($self, $rel) = @_;
    return _slurp("$self->{prefix}/$rel");
}

sub _nginx_env {
    my ($self) = @_;
    my $p = $self->{prefix};
    my $asan  = "log_path=$p/logs/asan:detect_leaks=1:abort_on_error=0";
    # nginx core's own reports are suppressed there, never the module's
    my $ubsan = "print_stacktrace=1:log_path=$p/logs/ubsan"
        . ":suppressions=$REPO/util/sanitizers/ubsan.supp";
    $asan  .= ":$ENV{ASAN_OPTIONS}"  if defined $ENV{ASAN_OPTIONS}  && $ENV{ASAN_OPTIONS} ne '';
    $ubsan .= ":$ENV{UBSAN_OPTIONS}" if defined $ENV{UBSAN_OPTIONS} && $ENV{UBSAN_OPTIONS} ne '';
    return { ASAN_OPTIONS => $asan, UBSAN_OPTIONS => $ubsan };
}

# ---------------------------------------------------------------------------
# Running nginx
# ---------------------------------------------------------------------------

sub start {
    my ($self) = @_;
    croak 'start: nginx is already running' if $self->{pid};
    croak 'start: this instance was stopped; create a new StreamTest' if $self->{stopped};

    my $p    = $self->{prefix};
    my $conf = $self->_write_conf;
    _diag_text("nginx.conf ($p/conf/nginx.conf)", $conf) if $ENV{TEST_NGINX_VERBOSE};

    unlink "$p/logs/nginx.pid";
    my @cmd = (_binary(), '-p', "$p/", '-c', "$p/conf/nginx.conf", '-e', "$p/logs/error.log");
    if ($ENV{TEST_NGINX_VALGRIND}) {
        _spew("$p/conf/valgrind.supp", $self->_valgrind_suppressions);
        unshift @cmd, 'valgrind', '--error-exitcode=99',
            "--log-file=$p/logs/valgrind.%p.log", '--track-origins=yes',
            '--leak-check=full', '--errors-for-leak-kinds=definite',
            '--show-leak-kinds=definite', '--num-callers=30',
            "--suppressions=$p/conf/valgrind.supp",
            split(' ', $ENV{TEST_NGINX_VALGRIND_OPTIONS} // '');
    }
    $self->{cmd} = \@cmd;

    my $pid = _spawn(
        cmd    => \@cmd,
        stdout => "$p/logs/stderr.log",
        stderr => "$p/logs/stderr.log",
        env    => $self->_nginx_env,
    );
    $self->{pid} = $pid;

    my $deadline = time + 10 * $self->{factor};
    my $want = $self->{workers} =~ /\A\d+\z/ ? $self->{workers} : 1;
    my $why;
    while (1) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            $why = 'nginx exited during start-up: ' . _describe_status($?);
            CORE::delete $self->{pid};
            last;
        }
        my $pidfile = _slurp("$p/logs/nginx.pid");
        if ($pidfile =~ /\A(\d+)\s*\z/ && $1 == $pid && _children($pid) >= $want) {
            my $what = (readlink("/proc/$pid/exe") // '') . ' ' . _proc_cmdline($pid);
            $why = "process $pid does not look like nginx: $what"
                unless $what =~ /nginx|valgrind|memcheck/;
            last;
        }
        if (time > $deadline) {
            $why = 'nginx did not come up within ' . (10 * $self->{factor})
                . ' s (pid file or worker processes missing)';
            last;
        }
        sleep 0.02;
    }

    if ($why) {
        $self->{start_failed} = 1;
        Test::More::fail("$self->{name}: nginx started");
        Test::More::diag($why);
        _diag_text('command', "@cmd");
        _diag_text('error.log', _slurp("$p/logs/error.log"));
        _diag_text('stderr.log', _slurp("$p/logs/stderr.log"));
        _diag_text('nginx.conf', $conf) unless $ENV{TEST_NGINX_VERBOSE};
        $self->_kill_nginx(0) if $self->{pid};
        die "StreamTest: nginx failed to start: $why\n";
    }

    $self->{started} = 1;
    return $self;
}

# Known allocations of nginx core that are never freed when a worker exits
# (ngx_worker_process_exit destroys the cycle pool but not the connection
# array, nor the environment copy): not bugs of the module under test.
sub _valgrind_suppressions {
    my ($self) = @_;
    my $supp = <<'EOF';
{
   nginx-core-worker-environment
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   fun:ngx_set_environment
}
{
   nginx-core-worker-connections
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   fun:ngx_event_process_init
   fun:ngx_worker_process_init
}
{
   nginx-core-regex-compile-context
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   ...
   fun:pcre2_compile_context_create_8
   fun:ngx_regex_compile
}
EOF
    # A stripped binary shows those static functions only as frames of the
    # nginx object, so match by object there (a module compiled into a
    # stripped binary could hide behind this; a .so module cannot).
    if (!_has_static_symbols(_binary())) {
        my $bin = _binary();
        $supp .= <<"EOF";
{
   nginx-core-worker-connections-stripped
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:ngx_alloc
   obj:$bin
   obj:$bin
   obj:$bin
   fun:ngx_spawn_process
}
EOF
    }
    return $supp;
}

my %HAS_SYMBOLS;

# Does the binary carry a symbol table (names of static functions)?
sub _has_static_symbols {
    my ($bin) = @_;
    return $HAS_SYMBOLS{$bin} //= do {
        my $found = 0;
        if (open(my $fh, '<:raw', $bin)) {
            my $tail = '';
            while (read($fh, my $buf, 1 << 20)) {
                if (index($tail . $buf, "ngx_worker_process_init\0") >= 0) {
                    $found = 1;
                    last;
                }
                $tail = substr($buf, -32);
            }
        }
        $found;
    };
}

sub master_pid { $_[0]{pid} }

# Has worker $pid begun a graceful shutdown (or gone)?  The process title
# says so, except under valgrind; the error log says so at levels up to
# "notice" (only lines after the worker's own start line count).
sub _is_shutting_down {
    my ($self, $pid, $log) = @_;
    return 1 unless _alive($pid);
    return 1 if _proc_cmdline($pid) =~ /shutting down/;
    $log //= $self->error_log;
    my $start = rindex($log, "start worker process $pid\n");
    my $quit  = rindex($log, "] $pid#$pid: gracefully shutting down");
    return 1 if $quit >= 0 && $quit > $start;
    return 0;
}

# Worker processes of the running master (children whose ppid is the
# master), without processes that are gracefully shutting down and without
# cache manager/loader processes.
sub worker_pids {
    my ($self, %o) = @_;
    my $master = $self->{pid} or return;
    my $log = $o{all} ? undef : $self->error_log;
    my @pids;
    for my $pid (_children($master)) {
        my $cmd = _proc_cmdline($pid);
        next if $cmd =~ /cache (?:manager|loader)/;
        next if !$o{all} && $self->_is_shutting_down($pid, $log);
        push @pids, $pid;
    }
    return @pids;
}

sub reload {
    my ($self, %cfg) = @_;
    croak 'reload: nginx is not running' unless $self->{pid};
    for my $k (keys %cfg) {
        croak "reload: unknown config part '$k' (use main, events, http, server)"
            unless exists $self->{cfg}{$k};
    }
    my %saved = %{ $self->{cfg} };
    $self->{cfg}{$_} = $cfg{$_} // '' for keys %cfg;

    my $log    = "$self->{prefix}/logs/error.log";
    my $conf   = $self->_write_conf;
    _diag_text('reloaded nginx.conf', $conf) if $ENV{TEST_NGINX_VERBOSE};

    # Workers still shutting down from an earlier reload are old too, but
    # only the active ones are replaced one for one.
    my @old    = $self->worker_pids(all => 1);
    my %old    = map { $_ => 1 } @old;
    my $active = () = $self->worker_pids;
    my $expect = $active ? $active
        : $self->{workers} =~ /\A\d+\z/ ? $self->{workers} : 1;
    my $offset = -s $log // 0;

    kill 'HUP', $self->{pid} or croak "reload: kill HUP $self->{pid}: $!";

    my $timeout  = 10 * $self->{factor};
    my $deadline = time + $timeout;
    my @new;
    while (1) {
        my $since = substr(_slurp($log), $offset);
        if ($since =~ /^[^\n]*\[emerg\][^\n]*\n/m) {
            # Refused: the master keeps the old configuration.
            $self->{cfg} = \%saved;
            $self->_write_conf;
            return 0;
        }
        @new = grep { !$old{$_} } $self->worker_pids;
        if (@new >= $expect) {
            my $old_done = 1;
            my $text = $self->error_log;
            for my $pid (@old) {
                next if $self->_is_shutting_down($pid, $text);
                $old_done = 0;
                last;
            }
            return 1 if $old_done;
        }
        last if time > $deadline;
        sleep 0.05;
    }
    Test::More::diag("$self->{name}: reload: no complete set of new"
        . " workers after $timeout s (old: @old, new: @new)");
    return @new >= $expect ? 1 : 0;
}

sub error_log {
    my ($self, $from) = @_;
    my $text = _slurp("$self->{prefix}/logs/error.log");
    return defined $from ? substr($text, $from > length $text ? length $text : $from) : $text;
}

# Current size of the error log: pass it as from => to wait_for_log or as
# the argument of error_log() to look only at lines written after it.
sub log_mark {
    my ($self) = @_;
    return -s "$self->{prefix}/logs/error.log" // 0;
}

sub wait_for_log {
    my ($self, $re, $timeout, %o) = @_;
    $re = qr/$re/ unless ref $re eq 'Regexp';
    my $deadline = time + ($timeout // 5) * $self->{factor};
    while (1) {
        return 1 if $self->error_log($o{from}) =~ $re;
        return 0 if time > $deadline;
        sleep 0.05;
    }
}

sub expect_log {
    my ($self, $re, $count) = @_;
    $re = qr/$re/ unless ref $re eq 'Regexp';
    push @{ $self->{expected} }, [ $re, $count ];
    return $self;
}

sub nginx_t {
    my ($self, %cfg) = @_;
    for my $k (keys %cfg) {
        croak "nginx_t: unknown config part '$k' (use main, events, http, server)"
            unless exists $self->{cfg}{$k};
    }
    my $p = $self->{prefix};
    my $n = ++$self->{nt_count};
    my $file = "$p/conf/nginx-t-$n.conf";
    my $log  = "$p/logs/nginx-t-$n.log";
    my $conf = $self->_render(%cfg, error_log => $log, pid => "$p/logs/nginx-t-$n.pid");
    _spew($file, $conf);
    _diag_text("nginx -t config ($file)", $conf) if $ENV{TEST_NGINX_VERBOSE};
    # Sanitizer reports of nginx -t go to its output (scanned at stop);
    # leaks at the exit of a config test are not interesting.
    my %env = (
        ASAN_OPTIONS  => 'detect_leaks=0:abort_on_error=0',
        UBSAN_OPTIONS => "print_stacktrace=1"
                         . ":suppressions=$REPO/util/sanitizers/ubsan.supp",
    );
    for my $k (keys %env) {
        $env{$k} .= ":$ENV{$k}" if defined $ENV{$k} && $ENV{$k} ne '';
    }
    return _run_capture("$p/logs/nginx-t-$n.out", \%env, 60 * $self->{factor},
        _binary(), '-t', '-p', "$p/", '-c', $file, '-e', $log);
}

# Sends $sig to the master (and nothing else); for tests of signal handling.
sub signal {
    my ($self, $sig) = @_;
    croak 'signal: nginx is not running' unless $self->{pid};
    return kill $sig, $self->{pid};
}

# Stops nginx: QUIT, then TERM, then KILL.  Returns the description of
# how it ended; records $self->{exit_status} and $self->{stopped_by}.
sub _kill_nginx {
    my ($self, $graceful) = @_;
    my $pid = $self->{pid} or return;
    my $f = $self->{factor};
    my @kids = _children($pid);
    my ($st, $by);
    if ($graceful) {
        kill 'QUIT', $pid;
        $st = _wait_pid($pid, 10 * $f);
        $by = 'QUIT';
        if (!defined $st) {
            Test::More::diag("$self->{name}: nginx did not exit within "
                . 10 * $f . ' s of SIGQUIT; sending SIGTERM'
                . ' (a stuck worker, or a client connection still open?)');
            push @kids, _children($pid);
            kill 'TERM', $pid;
            $st = _wait_pid($pid, 5 * $f);
            $by = 'TERM';
        }
    }
    if (!defined $st) {
        push @kids, _children($pid);
        kill 'KILL', $pid;
        $st = _wait_pid($pid, 5) // -1;
        $by = 'KILL';
    }
    # Workers orphaned by a killed master must not survive the test.
    for my $kid (@kids) {
        kill 'KILL', $kid if _alive($kid) && (_proc_stat($kid))[1] != $pid;
    }
    $self->{exit_status} = $st;
    $self->{stopped_by}  = $by;
    $self->{leftover}    = [ grep { _alive($_) } @kids ];
    CORE::delete $self->{pid};
    return $by;
}

sub stop {
    my ($self, %o) = @_;
    return 1 if $self->{stopped};
    return 1 if $self->{owner_pid} != $$;
    $self->{stopped} = 1;
    local $?;
    local $@;

    $self->_kill_nginx(1) if $self->{pid};
    $self->_stop_mock;

    return 1 unless $self->{started};

    my $p    = $self->{prefix};
    my $name = $self->{name};
    my $quiet = $o{quiet_if_ok};
    _diag_text("$name: error.log", $self->error_log) if $ENV{TEST_NGINX_VERBOSE};

    # 1. nginx exited by itself on SIGQUIT, with status 0.
    my $st = $self->{exit_status} // -1;
    my @exit_problems;
    push @exit_problems, "nginx needed SIG$self->{stopped_by} to stop"
        if $self->{stopped_by} ne 'QUIT';
    push @exit_problems, 'nginx master ended with ' . _describe_status($st)
        if $st != 0;
    push @exit_problems, 'valgrind reported errors (exit code 99)'
        if $ENV{TEST_NGINX_VALGRIND} && $st != -1 && !($st & 127) && ($st >> 8) == 99;
    push @exit_problems, "processes left behind: @{ $self->{leftover} }"
        if @{ $self->{leftover} || [] };
    $self->_assert(!@exit_problems, "$name: nginx exited cleanly", \@exit_problems, $quiet);

    # 2. No alerts, crashes or sanitizer/valgrind reports.
    my ($bad, $counts) = $self->check_logs;
    $self->_assert(!@$bad, "$name: no alerts, crashes or sanitizer reports in the logs",
        $bad, $quiet);

    # 3. Declared log lines appeared as often as declared.
    $self->_assert(!@$counts, "$name: expected error log lines", $counts, $quiet);

    return 1;
}

sub _assert {
    my ($self, $ok, $name, $details, $quiet) = @_;
    return if $ok && $quiet;
    local $Test::Builder::Level = $Test::Builder::Level + 2;
    Test::More::ok($ok, $name) or Test::More::diag(join "\n", @$details);
}

# Runs the log checks without asserting anything.
# Returns (\@problems, \@count_errors).
sub check_logs {
    my ($self) = @_;
    my $p = $self->{prefix};
    my @exp = @{ $self->{expected} };

    my ($bad_err, $counts) = scan_log(_slurp("$p/logs/error.log"), \@exp);
    my ($bad_std)          = scan_log(_slurp("$p/logs/stderr.log"), \@exp);
    my @bad = ((map { "error.log: $_" } @$bad_err), (map { "stderr.log: $_" } @$bad_std));

    for my $file (sort glob("$p/logs/nginx-t-*.out")) {
        my @lines = grep { /AddressSanitizer|LeakSanitizer|runtime error:/ }
            split /\n/, _slurp($file);
        push @bad, map { basename($file) . ": $_" } @lines;
    }
    for my $file (sort(glob("$p/logs/asan*"), glob("$p/logs/ubsan*"))) {
        my $text = _slurp($file);
        next unless $text =~ /\S/;
        my @lines = split /\n/, $text;
        splice(@lines, 60, @lines - 60, '...') if @lines > 60;
        push @bad, basename($file) . ":\n" . join("\n", @lines);
    }
    for my $file (sort glob("$p/logs/valgrind.*.log")) {
        my $text = _slurp($file);
        next unless $text =~ /ERROR SUMMARY: [1-9]|definitely lost: [1-9]/;
        my @lines = split /\n/, $text;
        splice(@lines, 120, @lines - 120, '...') if @lines > 120;
        push @bad, basename($file) . ":\n" . join("\n", @lines);
    }
    return (\@bad, $counts);
}

# ---------------------------------------------------------------------------
# Mock LLM upstream
# ---------------------------------------------------------------------------

sub start_mock_llm {
    my ($self, %o) = @_;
    croak 'start_mock_llm: already running' if $self->{mock_pid};
    my $bin = $o{binary} // $ENV{TEST_NGINX_MOCK_LLM} // "$REPO/build/mock-llm";
    croak "start_mock_llm: $bin is not an executable file (build it, or set TEST_NGINX_MOCK_LLM)"
        unless -f $bin && -x _;
    my @args = (@{ $o{args} // [ '-p', '0', '-q' ] }, @{ $o{extra_args} // [] });

    my $p   = $self->{prefix};
    my $out = "$p/logs/mock-llm.out";
    my $err = "$p/logs/mock-llm.err";
    unlink $out;
    my $pid = _spawn(cmd => [ $bin, @args ], stdout => $out, stderr => $err);
    $self->{mock_pid} = $pid;

    my $deadline = time + 10 * $self->{factor};
    my $why;
    while (1) {
        my $text = _slurp($out);
        if ($text =~ /\A[^\n]*listening on ([0-9.]+|\[[0-9a-fA-F:]+\]|[\w.-]+):(\d+)/) {
            $self->{mock_port} = $2 + 0;
            $self->{mock_host} = $1;
            return $self->{mock_port};
        }
        if (waitpid($pid, WNOHANG) == $pid) {
            $why = 'mock LLM exited: ' . _describe_status($?);
            CORE::delete $self->{mock_pid};
            last;
        }
        if (time > $deadline) {
            $why = 'mock LLM did not print "listening on 127.0.0.1:PORT" within '
                . 10 * $self->{factor} . ' s';
            last;
        }
        sleep 0.02;
    }
    Test::More::fail("$self->{name}: mock LLM started");
    Test::More::diag("$why\ncommand: $bin @args");
    _diag_text('mock stdout', _slurp($out));
    _diag_text('mock stderr', _slurp($err));
    $self->_stop_mock;
    die "StreamTest: mock LLM failed to start: $why\n";
}

sub mock_port { $_[0]{mock_port} }
sub mock_pid  { $_[0]{mock_pid} }

sub _stop_mock {
    my ($self) = @_;
    my $pid = CORE::delete $self->{mock_pid} or return;
    local $?;
    kill 'TERM', $pid;
    my $st = _wait_pid($pid, 5 * $self->{factor});
    if (!defined $st) {
        kill 'KILL', $pid;
        _wait_pid($pid, 5);
    }
    return 1;
}

sub stop_mock_llm { $_[0]->_stop_mock }

sub mock_stats {
    my ($self) = @_;
    croak 'mock_stats: mock LLM not started' unless $self->{mock_port};
    my $r = $self->http('GET', '/stats', port => $self->{mock_port});
    croak 'mock_stats: GET /stats answered ' . ($r->{status} // 'nothing')
        . ": $r->{body}" unless ($r->{status} // 0) == 200;
    return json_decode($r->{body});
}

sub mock_reset {
    my ($self) = @_;
    croak 'mock_reset: mock LLM not started' unless $self->{mock_port};
    my $r = $self->http('POST', '/stats/reset', port => $self->{mock_port}, body => '');
    croak 'mock_reset: POST /stats/reset answered ' . ($r->{status} // 'nothing')
        unless ($r->{status} // 0) =~ /\A2\d\d\z/;
    return 1;
}

# ---------------------------------------------------------------------------
# HTTP client
# ---------------------------------------------------------------------------

# Builds request bytes from (method, path, headers => {..} | [..],
# body => $bytes, http10 => 0|1).
sub build_request {
    my ($method, $path, %o) = @_;
    my @user;
    my $h = $o{headers};
    if (ref $h eq 'HASH') {
        @user = map { [ $_, $h->{$_} ] } sort keys %$h;
    }
    elsif (ref $h eq 'ARRAY') {
        croak 'headers: odd number of elements' if @$h % 2;
        for (my $i = 0; $i < @$h; $i += 2) {
            push @user, [ $h->[$i], $h->[ $i + 1 ] ];
        }
    }
    elsif (defined $h) {
        croak 'headers must be a hash or array reference';
    }
    my %has = map { lc($_->[0]) => 1 } @user;

    my @lines;
    push @lines, [ 'Host', 'localhost' ] unless $has{host};
    for my $pair (@user) {
        my ($k, $v) = @$pair;
        next unless defined $v;
        push @lines, map { [ $k, $_ ] } ref $v eq 'ARRAY' ? @$v : ($v);
    }
    push @lines, [ 'Connection', 'close' ] unless $has{connection};
    if (defined $o{body} && !$has{'content-length'} && !$has{'transfer-encoding'}) {
        push @lines, [ 'Content-Length', length $o{body} ];
    }

    my $version = $o{http10} ? 'HTTP/1.0' : 'HTTP/1.1';
    my $req = "$method $path $version\r\n";
    $req .= "$_->[0]: $_->[1]\r\n" for @lines;
    $req .= "\r\n";
    $req .= $o{body} if defined $o{body};
    return $req;
}

sub stream {
    my ($self, $method, $path, %o) = @_;
    my $req = $o{raw_request} // build_request($method, $path, %o);
    my $method_for_framing = $method;
    if (defined $o{raw_request} && $o{raw_request} =~ /\A(\S+)/) {
        $method_for_framing = $1;
    }
    return StreamTest::Conn->new(
        host    => $o{host} // '127.0.0.1',
        port    => $o{port} // $self->port,
        method  => $method_for_framing,
        request => $req,
        timeout => $o{timeout} // 5,
        factor  => $self->{factor},
    );
}

sub http {
    my ($self, $method, $path, %o) = @_;
    my $t0 = time;
    my $conn = eval { $self->stream($method, $path, %o) };
    if (!$conn) {
        my $err = $@ || 'connect failed';
        $err =~ s/ at \S+ line \d+.*//s;
        Test::More::diag("$self->{name}: $method $path: $err");
        return {
            status => undef, reason => undef, headers => {}, header_list => [],
            body => '', raw => '', elapsed => time - $t0, error => $err,
        };
    }
    $conn->read_to_end($o{timeout});
    my $r = $conn->result;
    $conn->close;
    return $r;
}

sub get    { my ($self, $path, %o) = @_;        $self->http('GET',    $path, %o) }
sub head   { my ($self, $path, %o) = @_;        $self->http('HEAD',   $path, %o) }
sub delete { my ($self, $path, %o) = @_;        $self->http('DELETE', $path, %o) }
sub post   { my ($self, $path, $body, %o) = @_; $self->http('POST', $path, %o, body => $body) }
sub put    { my ($self, $path, $body, %o) = @_; $self->http('PUT',  $path, %o, body => $body) }

# Many requests on one keepalive connection, sent 200 at a time without
# waiting (pipelined): [ method, path, body ] each; returns [ status, body ]
# of each answer, in order.  Dies when answers are missing.
sub pipeline {
    my ($self, @reqs) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1',
                                PeerPort => $self->port, Timeout => 10)
        or croak "pipeline: connect: $@";
    my @out;
    while (my @batch = splice @reqs, 0, 200) {
        my $bytes = join '', map {
            my ($m, $path, $body) = @$_;
            $body //= '';
            "$m $path HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body"
        } @batch;
        syswrite($s, $bytes) == length $bytes or croak "pipeline: write: $!";
        my $buf = '';
        my $want = @batch;
        my $deadline = time + 20 * $self->{factor};
        while ($want && time < $deadline) {
            if ($buf =~ /\A(HTTP\/1\.1 (\d+)[^\r]*\r\n(?:[^\r]+\r\n)*?)\r\n/) {
                my ($head, $status) = ($1, $2);
                my ($len) = $head =~ /^Content-Length: (\d+)/mi;
                my $end = length($head) + 2 + ($len // 0);
                if (length $buf >= $end) {
                    push @out, [ $status, substr($buf, length($head) + 2,
                                                 $len // 0) ];
                    substr($buf, 0, $end) = '';
                    $want--;
                    next;
                }
            }
            my $n = sysread($s, my $chunk, 65536);
            last unless $n;
            $buf .= $chunk;
        }
        croak "pipeline: $want answers missing" if $want;
    }
    close $s;
    return @out;
}

# ---------------------------------------------------------------------------
# Clean-up
# ---------------------------------------------------------------------------

sub _cleanup {
    my ($self) = @_;
    return if $self->{cleaned} || $self->{owner_pid} != $$;
    $self->{cleaned} = 1;
    CORE::delete $LIVE{ refaddr $self };
    if ($ENV{TEST_NGINX_LEAVE}) {
        Test::More::diag("$self->{name}: prefix left in $self->{prefix}");
        return;
    }
    remove_tree($self->{prefix}, { safe => 1 }) if $self->{prefix} && -d $self->{prefix};
}

# Is the Test::More plan already closed (done_testing, skip_all, or a
# numeric plan)?  Then only failing checks are reported.
sub _plan_closed {
    my $tb = Test::More->builder;
    my $ended = eval { Test2::API::test2_stack()->top->ended };
    return 1 if $ended;
    my $plan = eval { $tb->has_plan };
    return defined $plan && $plan =~ /\A\d+\z/ ? 1 : 0;
}

sub DESTROY {
    my ($self) = @_;
    return if $self->{owner_pid} != $$;
    local ($?, $@, $!);
    if (${^GLOBAL_PHASE} eq 'DESTRUCT') {
        # Too late for Test::More: just make sure nothing is left running.
        $self->_kill_nginx(0) if $self->{pid};
        $self->_stop_mock;
    }
    else {
        $self->stop(quiet_if_ok => _plan_closed());
    }
    $self->_cleanup;
}

END {
    my $status = $?;
    for my $t (grep { defined } values %LIVE) {
        next if $t->{owner_pid} != $$;
        $t->stop(quiet_if_ok => _plan_closed());
        $t->_cleanup;
    }
    $? = $status;
}

1;

__END__

=head1 NAME

StreamTest - test harness for ngx_http_streaming_module

=head1 SYNOPSIS

    use strict;
    use warnings;
    use lib 't/lib';
    use Test::More;
    use StreamTest;

    my $t = StreamTest->new(workers => 2);
    my $mport = $t->start_mock_llm;            # optional, before start()
    $t->http_config('upstream llm { server 127.0.0.1:%%MOCK_PORT%%; }');
    $t->server_config(<<'EOF');
    location /hello { return 200 "hi\n"; }
    EOF
    $t->start;

    my $r = $t->get('/hello');
    is($r->{status}, 200);
    is($r->{body}, "hi\n");

    my $c = $t->stream('GET', '/sse', headers => { Accept => 'text/event-stream' });
    my $h = $c->read_headers(5);
    my @ev = $c->read_events(3, 5);
    $c->close;

    $t->expect_log(qr/upstream timed out/, 1);
    $t->stop;                                  # 3 assertions on exit and logs
    done_testing;

=head1 ENVIRONMENT

=over

=item TEST_NGINX_BINARY

nginx binary; default F</usr/sbin/nginx>.

=item TEST_NGINX_MODULE

Path of the module F<.so>; default
F<E<lt>repoE<gt>/build/debian/ngx_http_streaming_module.so> (repo = the
directory above F<t/>, found from this file's location).  The empty string
means the module is compiled in: no C<load_module> line is written.

=item TEST_NGINX_MOCK_LLM

Mock LLM server binary; default F<E<lt>repoE<gt>/build/mock-llm>.

=item TEST_NGINX_LEAVE=1

Keep the temporary prefix (its path is printed with C<diag>).

=item TEST_NGINX_VERBOSE=1

C<diag> the generated configuration(s) and, at stop, the error log.

=item TEST_NGINX_VALGRIND=1

Run nginx under C<valgrind --error-exitcode=99
--log-file=PREFIX/logs/valgrind.%p.log --track-origins=yes
--leak-check=full --errors-for-leak-kinds=definite
--show-leak-kinds=definite --num-callers=30
--suppressions=PREFIX/conf/valgrind.supp>, plus the options in
C<TEST_NGINX_VALGRIND_OPTIONS> (split on spaces; e.g. more
C<--suppressions=FILE>).  Full leak checking shows where a leak was
allocated.  The generated suppression file covers only what nginx core
never frees when a worker exits (the connection array allocated in
C<ngx_event_process_init> and the environment copy of
C<ngx_set_environment>); for a stripped binary the first is matched by the
nginx object's frames.  All timeouts are multiplied by 10.

=item TEST_NGINX_TIMEOUT_FACTOR

Overrides the timeout multiplier (default 1, or 10 under valgrind).  It
applies to every timeout of the harness, including the ones tests pass to
the client methods.

=back

nginx itself gets C<ASAN_OPTIONS=log_path=PREFIX/logs/asan:detect_leaks=1:abort_on_error=0>
and C<UBSAN_OPTIONS=print_stacktrace=1:log_path=PREFIX/logs/ubsan:suppressions=util/sanitizers/ubsan.supp>, with the
user's own values of these variables appended (so a user's
C<UBSAN_OPTIONS=suppressions=FILE> works).  Some runtimes ignore one of the
C<log_path>s and write to stderr: F<logs/stderr.log> is scanned too.
C<nginx -t> (see C<nginx_t>) runs with C<detect_leaks=0> and no
C<log_path>: its reports appear in the returned output.

=head1 SIGNALS

The first C<new> sets C<$SIG{PIPE}> to C<IGNORE> and makes SIGINT, SIGTERM
and SIGHUP C<exit> (128 + signal number), unless the test installed its own
handlers: a test interrupted or writing to a closed pipe still runs its
C<END> clean-up, so no nginx is left running.  Processes the harness spawns
get the default dispositions back.

=head1 EXPORTED FUNCTIONS

=over

=item free_port()

A free TCP port on 127.0.0.1 (bind to port 0, read it, close).  Never
returns the same port twice in one process.

=item parse_sse($text)

Parses a complete C<text/event-stream> body following the WHATWG rules (LF,
CRLF and CR line ends; one leading space stripped from a value; a line
without colon is a field name with an empty value; events dispatched at
blank lines; a leading UTF-8 BOM is skipped).  Returns a list of hashrefs:

    {
        event    => value of the last "event" field, or undef,
        data     => "data" values joined with "\n", or undef if no data line,
        id       => value of the last "id" field of this event, or undef,
        retry    => value of the last valid (all digits) "retry" field, or undef,
        comments => [ comment lines without ':' and one optional space ],
        fields   => [ [ name, value ], ... ] every field line in order,
        raw      => the event's exact bytes including the terminating blank line,
    }

Unlike a browser, C<id> is per event (not the persistent "last event ID"),
C<event> stays undef rather than defaulting to C<message>, and blocks
without data (for example heartbeat comments) are returned too, with C<data>
undef.  Blank lines with nothing before them produce no event.  A trailing
incomplete event (no terminating blank line) is not returned.

=item parse_ndjson($text)

Decoded JSON values, one per non-empty line (a CR before the LF is
ignored).  Dies naming the line on invalid JSON.

=item decode_chunked($bytes)

Decodes a complete chunked transfer-coded body (chunk extensions and
trailers allowed; CRLF required).  Dies on malformed input, on a truncated
body (no last chunk and final CRLF) and on bytes after the end.

=item json_decode($bytes), json_encode($value)

JSON::PP with C<canonical>, C<allow_nonref> and C<utf8>.

=back

Also available: C<StreamTest::scan_log> and C<StreamTest::timeout_factor>
(exportable on request), C<StreamTest::build_request>.

=head1 METHODS

=head2 Setting up

=over

=item StreamTest->new(%options)

Options: C<workers> (default 2; C<auto> is allowed), C<error_log_level>
(default C<info>), C<name> (default: the test file's base name; prefixes
assertion names and the temporary directory).  Creates the temporary prefix
(under C<$TMPDIR> or F</tmp>) with F<conf>, F<logs>, F<tmp>, F<html>, all
mode 0755, and picks three free ports.

=item $t->main_config($text), events_config, http_config, server_config

Set (and, without argument, return) the extra configuration for the main
context, C<events {}>, C<http {}> (before the default server) and the default
server (C<listen 127.0.0.1:%%PORT%%> and C<server_name localhost> are
already there).  Placeholders replaced in the whole file: C<%%PORT%%>,
C<%%PORT2%%>, C<%%PORT3%%> (any C<%%PORTn%%> works: further ports are picked
on first use), C<%%PREFIX%%>, C<%%MOCK_PORT%%> (dies if C<start_mock_llm>
was not called), C<%%MODULE%%>.

Generated configuration:

    load_module MODULE;                  # unless TEST_NGINX_MODULE is ''
    MAIN_CONFIG
    worker_processes N;
    daemon off;
    master_process on;
    user root;                           # only when running as root
    error_log PREFIX/logs/error.log LEVEL;
    pid PREFIX/logs/nginx.pid;
    events { worker_connections 1024; EVENTS_CONFIG }
    http {
        access_log PREFIX/logs/access.log;
        client_body_temp_path ... proxy_temp_path ... (all under PREFIX/tmp)
        HTTP_CONFIG
        server { listen 127.0.0.1:%%PORT%%; server_name localhost; SERVER_CONFIG }
    }

=item $t->config_text

The configuration text C<start> would write now.

=item $t->write_file($relative_path, $content), $t->read_file($relative_path)

Write / read a file below the prefix (e.g. C<html/a.txt>); directories are
created.  C<write_file> returns the absolute path.

=item $t->port, $t->port($n), $t->prefix, $t->name, $t->binary, $t->module_path

=back

=head2 Running nginx

=over

=item $t->start

Writes F<conf/nginx.conf> and runs C<BINARY -p PREFIX/ -c PREFIX/conf/nginx.conf
-e PREFIX/logs/error.log> (fork + exec; stdout and stderr go to
F<logs/stderr.log>), then waits until the pid file names the started
process and the expected number of workers run (the listening sockets are
open by then).  Timeout 10 s (times the timeout factor).  On failure it
emits a failing assertion, the reason, the error log, stderr and the config
with C<diag>, and dies.  Emits no assertion on success.

=item $t->master_pid

The master's pid (the forked child: C<daemon off>), undef when not running.

=item $t->worker_pids(all => 0)

Children of the master found through F</proc/*/stat>, excluding zombies,
cache manager/loader processes and (unless C<all =E<gt> 1>) workers that are
gracefully shutting down after a reload (known from the process title, or,
under valgrind, from the worker's C<gracefully shutting down> line in the
error log, which needs C<error_log_level> C<notice> or lower).

=item $t->reload(http => ..., server => ..., main => ..., events => ...)

Replaces the given parts, rewrites the configuration, sends SIGHUP and
waits (10 s) until as many new workers as there were old ones are running
and every old worker has exited or begun shutting down (so new connections
reach the new configuration).  Returns 1.  If an C<[emerg]> line appears in
the error log after the HUP, the reload was refused: the previous parts are
restored (in memory and in F<nginx.conf>) and 0 is returned.  That
C<[emerg]> line fails the log check unless the test declared it with
C<expect_log>.  On timeout: C<diag>, and 1 if enough new workers came up,
else 0.

=item $t->signal($signal)

Sends a signal to the master.

=item $t->stop(quiet_if_ok => 0)

Idempotent.  SIGQUIT, wait 10 s; SIGTERM, wait 5 s; SIGKILL (workers left
by a killed master are killed too).  Stops the mock LLM (SIGTERM, then
SIGKILL).  Then, if nginx had started, runs exactly three assertions:

=over

=item 1. C<NAME: nginx exited cleanly> - the master exited on SIGQUIT with
status 0 (so a hang on graceful shutdown, for instance a stream that never
ends, fails here), no process left behind, no valgrind error exit code.

=item 2. C<NAME: no alerts, crashes or sanitizer reports in the logs> - no
line of F<logs/error.log> or F<logs/stderr.log> matches C<[alert]>,
C<[emerg]>, C<[crit]>, C<exited on signal>, C<AddressSanitizer>,
C<LeakSanitizer>, C<runtime error:> or C<ERROR SUMMARY: [1-9]>, unless it
matches a pattern declared with C<expect_log>; no non-empty F<logs/asan*> or
F<logs/ubsan*> file; no F<logs/valgrind.*.log> with C<ERROR SUMMARY: [1-9]>
or C<definitely lost: [1-9]>; no sanitizer report in the output of an
C<nginx_t> run.

=item 3. C<NAME: expected error log lines> - each C<expect_log> pattern
matched the declared number of lines of F<logs/error.log>.

=back

The offending lines are shown with C<diag>.  If a test forgets C<stop>, it
is called when the object is destroyed or from an C<END> block; if the plan
is already closed then (C<done_testing> was called, or a numeric plan), only
failing checks are reported.  The prefix is removed when the object goes
away or at C<END> (unless C<TEST_NGINX_LEAVE>), so logs can still be read
after C<stop>.  Processes forked by the test never stop or clean up the
parent's nginx.

=item $t->check_logs

The checks of assertion 2 and 3 without asserting: returns
C<(\@problems, \@count_errors)>.

=item $t->expect_log($regex, $count)

Declares that C<$count> lines (undef: at least one; 0: none) of the error
log match C<$regex> (a C<qr//> or a string).  Matching lines, in
F<error.log> and F<stderr.log>, are exempt from the failure scan.

=item $t->error_log($from), $t->log_mark

The error log text (from byte offset C<$from> if given); C<log_mark> is the
log's current size, to look only at what is written after it.

=item $t->wait_for_log($regex, $timeout, from => $mark)

Polls the error log (every 50 ms, default timeout 5 s) until it matches;
returns 1, or 0 on timeout.

=item $t->nginx_t(%parts)

Writes a configuration built from the given parts (C<main>, C<events>,
C<http>, C<server>; missing parts are the current ones) to
F<conf/nginx-t-N.conf> (with its own error log and pid file, so its
C<[emerg]> lines never reach F<logs/error.log>) and runs
C<nginx -t -p PREFIX/ -c FILE -e PREFIX/logs/nginx-t-N.log> (never under
valgrind).  Returns C<($exit_code, $combined_stdout_and_stderr)>; the exit
code is 128 + N if it died from signal N.

=back

=head2 Mock LLM upstream

=over

=item $t->start_mock_llm(args => [...], extra_args => [...], binary => $path)

Runs C<TEST_NGINX_MOCK_LLM -p 0 -q> (or the given arguments), stdout to
F<logs/mock-llm.out>, stderr to F<logs/mock-llm.err>, and waits for the
first stdout line C<listening on 127.0.0.1:PORT> (the mock must flush it).
Returns the port.  Call it before C<start> so C<%%MOCK_PORT%%> is known.
Fails and dies like C<start> when the mock does not come up.  The mock is
stopped (SIGTERM) by C<stop>, or earlier by C<< $t->stop_mock_llm >>.

=item $t->mock_port, $t->mock_pid

=item $t->mock_stats

C<GET /stats> on the mock, decoded from JSON (dies unless 200).

=item $t->mock_reset

C<POST /stats/reset> on the mock (dies unless 2xx).

=back

=head2 HTTP client

=over

=item $t->http($method, $path, %options)

Options: C<headers> (hashref, or arrayref of name/value pairs; a value may
be an arrayref for repeated headers; an undef value suppresses a default
header), C<body>, C<port> (default C<< $t->port >>), C<host> (default
127.0.0.1), C<timeout> (default 5 s, for the whole exchange), C<http10>,
C<raw_request> (sent verbatim instead of building a request).  The request
is HTTP/1.1 with C<Host: localhost> and C<Connection: close> unless
overridden, plus C<Content-Length> when there is a body (unless a
Content-Length or Transfer-Encoding header was given).

Reads until EOF, the end of the body according to its framing, or the
timeout, and returns

    {
        status      => 200,            # undef if no (valid) status line arrived
        reason      => 'OK',
        version     => 'HTTP/1.1',
        headers     => { lc-name => value, ... },   # repeated: joined with ", "
        header_list => [ [ Name => value ], ... ],
        body        => decoded body (chunked decoded),
        raw         => every byte received,
        elapsed     => seconds,
        complete    => 1 if the body framing completed (or EOF for close-delimited),
        timed_out   => 1,              # only when the timeout expired
        trailers    => [ [ name, value ], ... ],    # only for chunked trailers
        reset       => 1,              # only on ECONNRESET
        error       => 'connect ...',  # only if the connection failed (also diag)
    }

Interim 1xx responses are skipped.  A malformed chunked body dies.

=item $t->get($path, %o), head, delete, post($path, $body, %o), put($path, $body, %o)

=item $t->instrumented

True when nginx runs under valgrind or was built with a sanitizer, where
memory figures such as RSS mean nothing.

=item $t->pipeline([ $method, $path, $body ], ...)

Sends the requests on one keepalive connection, 200 at a time without
waiting for answers (HTTP/1.1 pipelining), and returns C<[ status, body ]>
of each answer in order; dies when answers are missing (20 s per batch,
times the timeout factor).  Answers must carry C<Content-Length>.

=item $t->stream($method, $path, %options)

Same options as C<http>; connects, sends the request and returns a
C<StreamTest::Conn> (dies if the connection is refused).  The C<timeout>
option is the default for its read methods.

=back

=head2 StreamTest::Conn

All timeouts are in seconds (times the timeout factor) and default to the
connection's timeout.  The decoded body accumulates in C<body>; a cursor
marks how much of it C<read_events>, C<read_lines> and C<read_to_end> have
consumed (C<read_until> neither uses nor moves it).

=over

=item $c->read_headers($timeout)

Reads the status line and headers; returns C<{ status, reason, version,
headers, header_list }> or undef on timeout / EOF.  The other read methods
call it first.

=item $c->read_until($regex, $timeout)

Reads until the whole body received so far matches; returns the body so far,
or undef on timeout or end of stream without a match.

=item $c->read_events($n, $timeout), $c->read_event($timeout)

The next C<$n> complete SSE events after the cursor (parsed as by
C<parse_sse>; a leading BOM is skipped).  Fewer if the timeout expired or
the stream ended.  C<read_event> returns one event or undef.  A CRLF split
across two reads is handled: when an event ends with a CR that is the last
byte received so far, it waits up to 0.2 s for a possible LF so that C<raw>
is exact.

=item $c->read_lines($n, $timeout), $c->read_line($timeout)

The next C<$n> complete LF-terminated lines (without LF and a CR before
it); fewer on timeout / end.

=item $c->read_to_end($timeout)

Reads until EOF and returns the body after the cursor (consuming it); undef
on timeout.  If the response keeps the connection open (no
C<Connection: close>; HTTP/1.1, or HTTP/1.0 with keep-alive), the end of the
body by its framing is enough.

=item $c->send($bytes, $timeout)

Writes more bytes (e.g. a trickled request body).  False if the peer
closed or the timeout expired.

=item $c->body, $c->raw, $c->unread, $c->discard, $c->eof, $c->complete,
$c->timed_out, $c->head, $c->elapsed, $c->result, $c->shutdown_write,
$c->close, $c->sock

C<unread> is the body after the cursor, C<discard> consumes it; C<eof>:
the server closed the connection; C<complete>: the body framing ended
(last chunk, Content-Length reached, or EOF for close-delimited bodies);
C<result> is the hashref C<http> returns.

=back

=head1 LOG SCANNER

C<StreamTest::scan_log($text, \@expected)> returns
C<(\@bad_lines, \@count_errors)>.  C<@expected> holds C<[ $regex, $count ]>
pairs (or C<{ re =E<gt> ..., count =E<gt> ... }>).  See C<stop> for the
patterns.

=cut
