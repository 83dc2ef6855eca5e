# Producer behind fastcgi_pass: "streaming zone;" turns a FastCGI
# responder's response into a stored stream, as it does for proxy_pass.
# The responder is written here (FastCGI 1.0, one connection at a time, in a
# forked child): it answers with an SSE body, one event per FCGI_STDOUT
# record with a pause between records.  Covered: passthrough with
# fastcgi_buffering on and off (every event, "id: <id>:<n>", the first event
# before the responder has finished), omni (stream-init, chunks, the final
# chunk, stream-status completed), the replay through a streaming_subscribe
# location (also joining live), the status JSON of one stream, a responder
# that closes (no FCGI_END_REQUEST) or resets its connection mid-stream
# (status error, UPSTREAM_ERROR, the chunks received before kept), a 500
# that passes unchanged and leaves no stream, and the zone's counters.

use strict;
use warnings;
use Test::More;
use IO::Select;
use IO::Socket::IP;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $T = JSON::PP::true;
my $FALSE = JSON::PP::false;

# --- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) -------------------

my @CRC;
for my $i (0 .. 255) {
    my $c = $i;
    for (1 .. 8) {
        $c = $c & 1 ? 0xEDB88320 ^ ($c >> 1) : $c >> 1;
    }
    $CRC[$i] = $c;
}

sub crc32 {
    my $crc = 0xFFFFFFFF;
    for my $byte (unpack 'C*', $_[0]) {
        $crc = ($crc >> 8) ^ $CRC[ ($crc ^ $byte) & 0xFF ];
    }
    return sprintf '%08x', $crc ^ 0xFFFFFFFF;
}

is(crc32('123456789'), 'cbf43926', 'crc32 of the check string');

# --- a FastCGI 1.0 responder -------------------------------------------------

use constant {
    FCGI_BEGIN_REQUEST    => 1,
    FCGI_ABORT_REQUEST    => 2,
    FCGI_END_REQUEST      => 3,
    FCGI_PARAMS           => 4,
    FCGI_STDIN            => 5,
    FCGI_STDOUT           => 6,
    FCGI_RESPONDER        => 1,
    FCGI_REQUEST_COMPLETE => 0,
};

# One record: version 1, type, request id, content, padding to 8 bytes.
sub fcgi_record {
    my ($type, $rid, $content) = @_;
    my $pad = (8 - length($content) % 8) % 8;
    return pack('CCnnCx', 1, $type, $rid, length $content, $pad)
         . $content . ("\0" x $pad);
}

# The next record from $sock as (type, request id, content); () on EOF, a
# read error, a bad version or when $deadline has passed.
sub fcgi_read_record {
    my ($sock, $buf, $deadline) = @_;
    my $sel = IO::Select->new($sock);
    while (1) {
        if (length $$buf >= 8) {
            my ($ver, $type, $rid, $clen, $plen) = unpack 'CCnnC', $$buf;
            return if $ver != 1;
            if (length $$buf >= 8 + $clen + $plen) {
                my $content = substr($$buf, 8, $clen);
                substr($$buf, 0, 8 + $clen + $plen, '');
                return ($type, $rid, $content);
            }
        }
        my $left = $deadline - time;
        return if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $$buf, 65536, length $$buf);
        return unless $n;
    }
}

# FCGI_PARAMS content: name-value pairs with 1- or 4-byte lengths.
sub fcgi_params {
    my ($bytes) = @_;
    my ($pos, %p) = (0);
    my $len = sub {
        my $b = ord substr($bytes, $pos, 1);
        if ($b < 0x80) {
            $pos += 1;
            return $b;
        }
        my $l = unpack('N', substr($bytes, $pos, 4)) & 0x7FFFFFFF;
        $pos += 4;
        return $l;
    };
    while ($pos < length $bytes) {
        my $nl = $len->();
        my $vl = $len->();
        my $name = substr($bytes, $pos, $nl);
        $pos += $nl;
        $p{$name} = substr($bytes, $pos, $vl);
        $pos += $vl;
    }
    return \%p;
}

sub write_all {
    my ($sock, $bytes) = @_;
    while (length $bytes) {
        my $n = syswrite($sock, $bytes);
        return 0 unless $n;
        substr($bytes, 0, $n, '');
    }
    return 1;
}

# Serves one request on $sock.  The query string selects what to answer:
#   events=N   N SSE events 'data: {"n":i}' (default 5), one FCGI_STDOUT
#              record each, delay=MS apart (default 20)
#   fail=K     close the connection K events in (no FCGI_END_REQUEST)
#   reset=K    reset the connection K events in (RST)
#   status=500 a 500 with a JSON body
# $note->(text) records what happened, with the time, in the log.
sub fcgi_serve {
    my ($sock, $log) = @_;
    my $buf = '';
    my $deadline = time + 10;
    my ($rid, $params, $stdin, $params_done, $stdin_done) = (undef, '', '');

    while (!$params_done || !$stdin_done) {
        my ($type, $id, $content) = fcgi_read_record($sock, \$buf, $deadline);
        return unless defined $type;
        if ($type == FCGI_BEGIN_REQUEST) {
            my ($role) = unpack 'n', $content;
            return unless $role == FCGI_RESPONDER;
            $rid = $id;
        }
        elsif ($type == FCGI_PARAMS) {
            length $content ? ($params .= $content) : ($params_done = 1);
        }
        elsif ($type == FCGI_STDIN) {
            length $content ? ($stdin .= $content) : ($stdin_done = 1);
        }
        elsif ($type == FCGI_ABORT_REQUEST) {
            return;
        }
    }
    return unless defined $rid;

    my $p = fcgi_params($params);
    my %q = map { /^([^=]*)=?(.*)$/ } split /&/, $p->{QUERY_STRING} // '';
    my $name = $q{id} // '-';
    my $note = sub {
        syswrite $log, sprintf("%.6f %s %s\n", time, $name, $_[0]);
    };
    $note->(sprintf 'begin %s %s stdin=%d', $p->{REQUEST_METHOD} // '-',
                    $p->{REQUEST_URI} // '-', length $stdin);

    if (($q{status} // '') eq '500') {
        my $body = qq({"error":"the responder failed"}\n);
        write_all($sock, fcgi_record(FCGI_STDOUT, $rid,
                      "Status: 500 Internal Server Error\r\n"
                      . "Content-Type: application/json\r\n"
                      . 'Content-Length: ' . length($body) . "\r\n\r\n"
                      . $body)
                  . fcgi_record(FCGI_STDOUT, $rid, '')
                  . fcgi_record(FCGI_END_REQUEST, $rid,
                                pack('NCx3', 0, FCGI_REQUEST_COMPLETE)));
        $note->('end 500');
        return;
    }

    my $n = $q{events} // 5;
    my $delay = ($q{delay} // 20) / 1000;
    write_all($sock, fcgi_record(FCGI_STDOUT, $rid,
                                 "Status: 200 OK\r\n"
                                 . "Content-Type: text/event-stream\r\n\r\n"))
        or return $note->('end gone');
    for my $i (1 .. $n) {
        sleep $delay if $i > 1;
        if (defined $q{reset} && $i > $q{reset}) {
            # closed with a zero linger time: RST instead of FIN
            setsockopt($sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            return $note->('end reset');       # the caller closes $sock
        }
        if (defined $q{fail} && $i > $q{fail}) {
            return $note->('end closed');      # the caller closes $sock
        }
        write_all($sock, fcgi_record(FCGI_STDOUT, $rid,
                                     qq(data: {"n":$i}\n\n)))
            or return $note->('end gone');
        $note->("event $i");
    }
    write_all($sock, fcgi_record(FCGI_STDOUT, $rid, '')
                     . fcgi_record(FCGI_END_REQUEST, $rid,
                                   pack('NCx3', 0, FCGI_REQUEST_COMPLETE)))
        or return $note->('end gone');
    $note->('end done');
}

# Forks the responder, listening on 127.0.0.1:$port (bound before the fork,
# so no request can come too early).  It serves one connection at a time
# and exits when the test process is gone or after 30 s; returns its pid.
sub start_responder {
    my ($port, $logfile) = @_;
    my $listen = IO::Socket::IP->new(
        LocalHost => '127.0.0.1',
        LocalPort => $port,
        Proto     => 'tcp',
        Listen    => 16,
        ReuseAddr => 1,
    ) or die "responder: cannot listen on 127.0.0.1:$port: $@";
    my $parent = $$;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid) {
        close $listen;
        return $pid;
    }

    # the child: never returns into the test (no END blocks, no output)
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    $SIG{PIPE} = 'IGNORE';
    eval {
        open(my $log, '>>', $logfile) or die "$logfile: $!";
        my $until = time + 30 * $F;
        my $sel = IO::Select->new($listen);
        while (time < $until && getppid() == $parent) {
            next unless $sel->can_read(0.2);
            my $c = $listen->accept or next;
            fcgi_serve($c, $log);
            close $c;
        }
    };
    POSIX::_exit(0);
}

# --- nginx -------------------------------------------------------------------

my $t = StreamTest->new(workers => 2);
my $fcgi_port = free_port();
my $fcgi_log = $t->prefix . '/logs/fcgi.log';
my $fcgi_pid = start_responder($fcgi_port, $fcgi_log);
my $test_pid = $$;

END {
    if ($fcgi_pid && $$ == $test_pid) {
        kill 'KILL', $fcgi_pid;
        waitpid $fcgi_pid, 0;
    }
}

$t->http_config(<<'EOF');
streaming_zone llm 4m;
EOF
(my $server = <<'EOF') =~ s/%%FCGI_PORT%%/$fcgi_port/g;
fastcgi_param QUERY_STRING      $query_string;
fastcgi_param REQUEST_METHOD    $request_method;
fastcgi_param CONTENT_TYPE      $content_type;
fastcgi_param CONTENT_LENGTH    $content_length;
fastcgi_param SCRIPT_NAME       $fastcgi_script_name;
fastcgi_param REQUEST_URI       $request_uri;
fastcgi_param DOCUMENT_URI      $document_uri;
fastcgi_param SERVER_PROTOCOL   $server_protocol;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param REMOTE_ADDR       $remote_addr;
fastcgi_param REMOTE_PORT       $remote_port;
fastcgi_param SERVER_ADDR       $server_addr;
fastcgi_param SERVER_PORT       $server_port;
fastcgi_param SERVER_NAME       $server_name;
fastcgi_read_timeout 10s;

location /on/ {
    streaming llm;
    streaming_id $arg_id;
    fastcgi_buffering on;
    fastcgi_pass 127.0.0.1:%%FCGI_PORT%%;
}

location /off/ {
    streaming llm;
    streaming_id $arg_id;
    fastcgi_buffering off;
    fastcgi_pass 127.0.0.1:%%FCGI_PORT%%;
}

location /omni/ {
    streaming llm;
    streaming_id $arg_id;
    streaming_format omni;
    fastcgi_pass 127.0.0.1:%%FCGI_PORT%%;
}

location = /sub {
    streaming_subscribe llm;
    streaming_id $arg_id;
}

location = /status { streaming_status; }
EOF
$t->server_config($server);
$t->start;

# --- helpers -----------------------------------------------------------------

# the responder's log: { id => [ [ time, what ], ... ] }
sub responder_log {
    my %log;
    for (split /\n/, $t->read_file('logs/fcgi.log')) {
        my ($at, $id, $what) = /^(\S+) (\S+) (.*)$/ or next;
        push @{ $log{$id} }, [ $at, $what ];
    }
    return \%log;
}

# when the responder wrote $what for $id (undef if it did not)
sub responder_at {
    my ($log, $id, $what) = @_;
    my ($e) = grep { $_->[1] eq $what } @{ $log->{$id} || [] };
    return $e ? $e->[0] : undef;
}

# The responder's log once it holds $what for $id: it writes each line
# after the bytes it describes, so the client may be a little faster.
sub responder_wait {
    my ($id, $what) = @_;
    my $deadline = time + 2 * $F;
    while (1) {
        my $log = responder_log();
        return $log if defined responder_at($log, $id, $what)
                       || time > $deadline;
        sleep 0.01;
    }
}

# the status JSON of one stream (undef unless 200)
sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?id=$id");
    return $r->{status} == 200 ? json_decode($r->{body}) : undef;
}

sub zone {
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{llm};
}

# an SSE event's bytes without its "id" lines
sub strip_id {
    my ($raw) = @_;
    my @lines = $raw =~ /([^\r\n]*(?:\r\n|\r|\n))/g;
    return join '', grep { !/^id(?:[:\r\n])/ } @lines;
}

sub ids_of { [ map { $_->{id} } @_ ] }

# what the responder sends for events 1 .. $n
sub want_events { map { qq(data: {"n":$_}\n\n) } 1 .. $_[0] }

sub omni_messages { map { json_decode($_->{data}) } parse_sse($_[0]) }

# Checks the omni messages of a stream of $n events ended with $status.
sub check_omni {
    my ($name, $id, $msgs, $n, $status, $code) = @_;
    return fail("$name: no messages") unless @$msgs;
    is_deeply([ map { $_->{type} } @$msgs ],
              [ 'stream-init', ('stream-chunk') x ($n + 1), 'stream-status' ],
              "$name: stream-init, $n chunks, the final chunk, stream-status");
    my $init = $msgs->[0]{payload} || {};
    is($init->{streamId}, $id, "$name: stream-init names the stream");
    like($init->{contentType} // '', qr{^text/event-stream},
         "$name: stream-init: the responder's Content-Type");
    my @chunks = map { $_ && $_->{payload} || {} } @$msgs[ 1 .. $n ];
    is_deeply([ map { [ @{$_}{qw(streamId sequence data isFinal checksum)} ] }
                @chunks ],
              [ map { [ $id, $_, qq({"n":$_}), $FALSE, crc32(qq({"n":$_})) ] }
                1 .. $n ],
              "$name: chunks 1 to $n: the events' data, checksums");
    my $final = $msgs->[ $n + 1 ] && $msgs->[ $n + 1 ]{payload} || {};
    is_deeply([ @{$final}{qw(sequence data isFinal checksum)} ],
              [ $n + 1, '', $T, '00000000' ],
              "$name: final chunk " . ($n + 1));
    my $st = $msgs->[-1]{payload} || {};
    is($st->{streamId}, $id, "$name: stream-status of this stream");
    is($st->{status}, $status, "$name: stream-status $status");
    is($st->{checkpoint}{sequence}, $n, "$name: checkpoint at chunk $n");
    if ($code) {
        is($st->{error}{code}, $code, "$name: error code $code");
        ok(length($st->{error}{message} // ''), "$name: an error message");
    }
    else {
        ok(!exists $st->{error}, "$name: no error");
    }
}

my %count = (completed => 0, error => 0, requests => 0);

# --- passthrough, fastcgi_buffering on and off, GET and POST --------------

my $body = '{"model":"m","stream":true,"messages":[]}';

for my $loc (qw(on off)) {
    for my $method (qw(GET POST)) {
        my $id = "pt-$loc-" . lc $method;
        my $name = "fastcgi_buffering $loc, $method";
        my $r = $t->http($method, "/$loc/gen?id=$id&events=5",
                         body => $method eq 'POST' ? $body : undef);
        $count{requests}++;

        is($r->{status}, 200, "$name: 200");
        ok($r->{complete}, "$name: the response ends properly");
        like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
             "$name: the responder's Content-Type");
        is($r->{headers}{'stream-id'}, $id, "$name: Stream-Id $id");
        is($r->{headers}{'cache-control'}, 'no-cache',
           "$name: Cache-Control: no-cache");
        is($r->{headers}{'x-accel-buffering'}, 'no',
           "$name: X-Accel-Buffering: no");

        my @ev = parse_sse($r->{body});
        is_deeply(ids_of(@ev), [ map { "$id:$_" } 1 .. 5 ],
                  "$name: five events, id: $id:1 to $id:5");
        is_deeply([ map { strip_id($_->{raw}) } @ev ], [ want_events(5) ],
                  "$name: each event as the responder sent it");
        is(join('', map { $_->{raw} } @ev), $r->{body},
           "$name: nothing but the events in the body");

        my $log = responder_wait($id, 'end done');
        my $begin = $log->{$id} && $log->{$id}[0][1];
        is($begin, sprintf('begin %s /%s/gen?id=%s&events=5 stdin=%d',
                           $method, $loc, $id,
                           $method eq 'POST' ? length $body : 0),
           "$name: the responder got the request (params, stdin)");
        ok(defined responder_at($log, $id, 'end done'),
           "$name: the responder finished");

        my $s = stream_status($id);
        is($s && $s->{zone}, 'llm', "$name: status ?id=: zone llm");
        is($s && $s->{stream}{status}, 'completed',
           "$name: status ?id=: completed");
        is($s && $s->{stream}{sequence}, 5, "$name: status ?id=: sequence 5");
        is($s && $s->{stream}{bytes}, length(join '', want_events(5)),
           "$name: status ?id=: the events' bytes");
        is($s && $s->{stream}{checkpoint}{sequence}, 5,
           "$name: status ?id=: checkpoint at 5");
        $count{completed}++;

        # read again, through the subscribe location
        my $sub = $t->get("/sub?id=$id");
        is($sub->{status}, 200, "$name: subscribe: 200");
        ok($sub->{complete}, "$name: subscribe: the replay ends");
        is_deeply([ map { $_->{raw} } parse_sse($sub->{body}) ],
                  [ map { $_->{raw} } @ev ],
                  "$name: subscribe: the same events, the same ids");
    }
}

# --- streaming: the first event before the responder has finished --------
#
# 6 events 150 ms apart: the responder works for 0.75 s.  A subscriber that
# joins after the second event gets the replay, then the rest live.

for my $loc (qw(on off)) {
    my $id = "live-$loc";
    my $name = "live, fastcgi_buffering $loc";
    my $c = $t->stream('GET', "/$loc/gen?id=$id&events=6&delay=150",
                       timeout => 10);
    $count{requests}++;
    my ($sub, $sub_at, @ev, @at);
    my $deadline = time + 10 * $F;
    while (time < $deadline && !$c->complete && !$c->eof) {
        for my $e ($c->read_events(1, 0.02)) {
            push @ev, $e;
            push @at, time;
        }
        if (@ev >= 2 && !$sub) {
            $sub = $t->stream('GET', "/sub?id=$id", timeout => 10);
            $sub_at = time;
        }
    }
    push @ev, $c->read_events(100, 0.1);

    is($c->head && $c->head->{status}, 200, "$name: 200");
    is_deeply(ids_of(@ev), [ map { "$id:$_" } 1 .. 6 ],
              "$name: six events, id: $id:1 to $id:6");
    is_deeply([ map { strip_id($_->{raw}) } @ev ], [ want_events(6) ],
              "$name: each event as sent");
    ok($c->complete, "$name: the response ends properly");

    my $log = responder_wait($id, 'end done');
    my $end = responder_at($log, $id, 'end done');
    ok(@at && defined $end && $at[0] < $end,
       sprintf('%s: the first event arrived %.3f s before the responder '
               . 'finished', $name, defined $end && @at ? $end - $at[0] : 0));
    # event i is not held back until later ones are written
    my @late = grep {
        my $next = responder_at($log, $id, 'event ' . ($_ + 2));
        !defined $at[ $_ - 1 ] || !defined $next || $at[ $_ - 1 ] > $next;
    } 1 .. 4;
    is_deeply(\@late, [], "$name: every event arrived before the responder "
                          . 'wrote the one after the next')
        or diag explain { arrived => \@at, responder => $log->{$id} };

    ok($sub && defined $end && $sub_at < $end,
       "$name: a subscriber joined after the second event, while live");
    if ($sub) {
        my @s = $sub->read_events(100, 5);
        ok($sub->complete, "$name: the subscriber's response ends");
        is_deeply([ map { $_->{raw} } @s ], [ map { $_->{raw} } @ev ],
                  "$name: the subscriber got the same six events");
        $sub->close;
    }
    $c->close;

    my $s = stream_status($id);
    is($s && $s->{stream}{status}, 'completed', "$name: status completed");
    is($s && $s->{stream}{sequence}, 6, "$name: status sequence 6");
    $count{completed}++;
}

# --- omni --------------------------------------------------------------------

{
    my $id = 'omni-1';
    my $name = 'omni';
    my $r = $t->get("/omni/gen?id=$id&events=4");
    $count{requests}++;
    is($r->{status}, 200, "$name: 200");
    ok($r->{complete}, "$name: the response ends properly");
    like($r->{headers}{'content-type'} // '', qr{^text/event-stream},
         "$name: SSE");
    is($r->{headers}{'stream-id'}, $id, "$name: Stream-Id");

    my @sse = parse_sse($r->{body});
    is_deeply([ map { $_->{event} } @sse ],
              [ 'stream-init', ('stream-chunk') x 5, 'stream-status' ],
              "$name: event names are the message types");
    is_deeply([ map { $_->{id} } @sse[ 1 .. 5 ] ],
              [ map { "$id:$_" } 1 .. 5 ], "$name: chunk event ids");
    my @m = map { json_decode($_->{data}) } @sse;
    check_omni($name, $id, \@m, 4, 'completed');

    my $s = stream_status($id);
    is($s && $s->{stream}{status}, 'completed', "$name: status completed");
    is($s && $s->{stream}{sequence}, 4, "$name: status sequence 4");
    $count{completed}++;

    my $sub = $t->get("/sub?id=$id&format=omni");
    is($sub->{status}, 200, "$name: subscribe ?format=omni: 200");
    my @sm = omni_messages($sub->{body});
    check_omni("$name, subscribe", $id, \@sm, 4, 'completed');

    $sub = $t->get("/sub?id=$id");
    is_deeply([ map { strip_id($_->{raw}) } parse_sse($sub->{body}) ],
              [ want_events(4) ],
              "$name: subscribe, passthrough: the events as sent");
}

# --- the responder fails mid-stream ---------------------------------------
#
# "fail": it closes its connection after 2 events, without FCGI_END_REQUEST
# (an application that dies); "reset": the connection is reset instead.
# Either way the FastCGI response is incomplete: the stream ends with
# status error, UPSTREAM_ERROR, and keeps the two chunks.

for my $how (qw(fail reset)) {
    my $what = $how eq 'fail' ? 'closed' : 'reset';
    for my $loc (qw(on off omni)) {
        my $id = "$how-$loc";
        my $name = "$what after 2 events ($loc)";
        my $r = $t->get("/$loc/gen?id=$id&events=5&$how=2");
        $count{requests}++;
        is($r->{status}, 200, "$name: 200");
        ok(!$r->{timed_out}, "$name: no waiting");
        ok(defined responder_at(responder_wait($id, "end $what"), $id,
                                "end $what"),
           "$name: the responder $what the connection");

        if ($loc eq 'omni') {
            my @m = omni_messages($r->{body});
            check_omni($name, $id, \@m, 2, 'error', 'UPSTREAM_ERROR');
        }
        else {
            my @ev = parse_sse($r->{body});
            is_deeply(ids_of(@ev), [ "$id:1", "$id:2" ],
                      "$name: the two events sent");
            is_deeply([ map { strip_id($_->{raw}) } @ev ],
                      [ want_events(2) ], "$name: as sent");
        }
        # the client can tell: no last chunk
        ok(!$r->{complete}, "$name: the response does not end properly");

        my $s = stream_status($id);
        is($s && $s->{stream}{status}, 'error', "$name: status error");
        is($s && $s->{stream}{error}{code}, 'UPSTREAM_ERROR',
           "$name: status: UPSTREAM_ERROR");
        is($s && $s->{stream}{sequence}, 2, "$name: status: sequence 2");
        $count{error}++;

        # the chunks received before stay readable
        my $sub = $t->get("/sub?id=$id&format=omni");
        is($sub->{status}, 200, "$name: subscribe: 200");
        my @sm = omni_messages($sub->{body});
        check_omni("$name, subscribe", $id, \@sm, 2, 'error',
                   'UPSTREAM_ERROR');

        $sub = $t->get("/sub?id=$id");
        is_deeply([ map { strip_id($_->{raw}) } parse_sse($sub->{body}) ],
                  [ want_events(2) ],
                  "$name: subscribe, passthrough: the two events");
    }
}

# --- a 500 passes unchanged and leaves no stream ---------------------------

for my $loc (qw(on off omni)) {
    my $id = "e500-$loc";
    my $name = "500 ($loc)";
    my $before = zone();
    my $r = $t->get("/$loc/gen?id=$id&status=500");
    $count{requests}++;
    is($r->{status}, 500, "$name: 500 passes");
    is($r->{body}, qq({"error":"the responder failed"}\n),
       "$name: the responder's body");
    is($r->{headers}{'content-type'}, 'application/json',
       "$name: the responder's Content-Type");
    ok(!exists $r->{headers}{'stream-id'}, "$name: no Stream-Id");
    ok(defined responder_at(responder_wait($id, 'end 500'), $id, 'end 500'),
       "$name: the responder answered it");

    my $st = $t->get("/status?id=$id");
    is($st->{status}, 404, "$name: status ?id=: 404");
    is(eval { json_decode($st->{body})->{error}{code} }, 'INVALID_STREAM',
       "$name: status ?id=: INVALID_STREAM");
    is($t->get("/sub?id=$id")->{status}, 404, "$name: subscribe: 404");
    my $after = zone();
    is_deeply($after->{streams}, $before->{streams}, "$name: no stream kept");
    is($after->{totals}{created}, $before->{totals}{created},
       "$name: no stream counted as created");

    # the id was not taken
    $r = $t->get("/$loc/gen?id=$id&events=1");
    $count{requests}++;
    is($r->{status}, 200, "$name: the same id streams afterwards");
    my $s = stream_status($id);
    is($s && $s->{stream}{status}, 'completed',
       "$name: that stream completed");
    $count{completed}++;
}

# --- the zone's counters, the responder's work ------------------------------

{
    my $z = zone();
    is_deeply($z->{streams}, { active => 0, paused => 0, cancelled => 0,
                               completed => $count{completed},
                               error => $count{error} },
              "zone: $count{completed} completed, $count{error} error");
    is($z->{totals}{created}, $count{completed} + $count{error},
       'zone: totals.created');

    # subscribers are served from the zone, never by the responder
    my $log = responder_log();
    my $begins = grep { $_->[1] =~ /^begin / } map { @$_ } values %$log;
    is($begins, $count{requests},
       "the responder served $count{requests} requests, one per producer "
       . 'request');
}

$t->stop;

kill 'TERM', $fcgi_pid;
waitpid $fcgi_pid, 0;
$fcgi_pid = undef;

done_testing;
