# HTTP/2: producer, subscribe and status over TLS (certificate made at test
# time) and over h2c, with curl --http2 and nghttp; a client that resets its
# stream cancels the producer like a closed connection does.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep time);

use lib 't/lib';
use StreamTest;

for my $tool (qw(curl nghttp openssl)) {
    plan skip_all => "$tool is not installed" unless grep { -x "$_/$tool" }
        split /:/, $ENV{PATH};
}

my $t = StreamTest->new(workers => 2);
my $p = $t->prefix;

system('sh', '-c', 'exec openssl "$@" 2>/dev/null', 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
       '-subj', '/CN=localhost', '-days', '1',
       '-keyout', "$p/conf/key.pem", '-out', "$p/conf/cert.pem") == 0
    or BAIL_OUT('openssl could not make a certificate');
chmod 0644, "$p/conf/key.pem";

$t->start_mock_llm;

# 1.25 moved http2 from "listen" to its own directive
my ($version) = `${\ $t->binary} -v 2>&1` =~ m{nginx/(\d+\.\d+)};
my $h2 = $version >= 1.25 ? 'http2 on;' : '';
my $lh2 = $version >= 1.25 ? '' : ' http2';

$t->http_config(<<"EOF");
streaming_zone llm 4m;

server {
    listen 127.0.0.1:%%PORT2%% ssl$lh2;
    listen 127.0.0.1:%%PORT3%%$lh2;
    $h2
    ssl_certificate     %%PREFIX%%/conf/cert.pem;
    ssl_certificate_key %%PREFIX%%/conf/key.pem;

    location /v1/ {
        streaming llm;
        streaming_id \$http_x_stream_id;
        proxy_pass http://127.0.0.1:%%MOCK_PORT%%;
    }

    location /omni/ {
        streaming llm;
        streaming_format omni;
        proxy_pass http://127.0.0.1:%%MOCK_PORT%%/;
    }

    location /sub {
        streaming_subscribe llm;
        streaming_id \$arg_id;
    }

    location = /status {
        streaming_status;
    }

    location = /pub {
        streaming_publish llm;
        streaming_max_chunk 64k;
    }

    location = /ctl {
        streaming_control llm;
    }
}
EOF
$t->start;

my $tls = 'https://localhost:' . $t->port(2);
my $h2c = 'http://127.0.0.1:' . $t->port(3);
my $body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}';

sub curl {
    my (@args) = @_;
    my $out = `curl -s --max-time 10 @args 2>&1`;
    return ($? >> 8, $out);
}

sub tokens {
    join '', map {
        my $d = eval { json_decode($_->{data}) };
        $d && $d->{choices} && @{ $d->{choices} }
            ? ($d->{choices}[0]{delta}{content} // '') : '';
    } grep { defined $_->{data} && $_->{data} ne '[DONE]' } @_;
}

for my $case ([ 'TLS', "-k --http2 --resolve localhost:${\ $t->port(2)}:127.0.0.1", $tls ],
              [ 'h2c', '--http2-prior-knowledge', $h2c ])
{
    my ($name, $flags, $base) = @$case;
    my $id = "h2-$name";

    my ($rc, $out) = curl("$flags -i -H 'X-Stream-Id: $id'",
                          "--data '$body'",
                          "'$base/v1/chat/completions?tokens=5'");
    is($rc, 0, "$name: producer request ok") or diag $out;
    like($out, qr{^HTTP/2 200}m, "$name: answered over HTTP/2");
    like($out, qr{^stream-id: \Q$id\E\r?$}mi, "$name: Stream-Id");
    my ($head, $payload) = split /\r?\n\r?\n/, $out, 2;
    my @ev = parse_sse($payload // '');
    is(tokens(@ev), 'tok0 tok1 tok2 tok3 tok4 ', "$name: every token");
    # the role event, 5 tokens, finish_reason, [DONE]
    is_deeply([ map { $_->{id} } @ev ], [ map { "$id:$_" } 1 .. 8 ],
              "$name: numbered events");

    ($rc, $out) = curl($flags, "'$base/sub?id=$id&format=ndjson'");
    my @m = eval { parse_ndjson($out) };
    is($m[0] && $m[0]{type}, 'stream-init', "$name: subscribe: stream-init");
    is(scalar(grep { $_->{type} eq 'stream-chunk' } @m), 9,
       "$name: subscribe: 8 chunks and the final one");
    is($m[-1] && $m[-1]{payload}{status}, 'completed',
       "$name: subscribe: completed");

    ($rc, $out) = curl($flags, "'$base/status?format=json'");
    my $j = eval { json_decode($out) };
    ok($j && $j->{zones}{llm}, "$name: status over HTTP/2");

    ($rc, $out) = curl($flags, "'$base/omni/sse?events=3'");
    my @o = map { eval { json_decode($_->{data}) } } parse_sse($out);
    is_deeply([ map { $_ && $_->{type} } @o ],
              [ 'stream-init', ('stream-chunk') x 4, 'stream-status' ],
              "$name: omni over HTTP/2");
}

# nghttp, a second HTTP/2 client
{
    open my $in, '>', "$p/body.json" or die $!;
    print $in $body;
    close $in;

    my $out = `nghttp -H 'x-stream-id: nghttp-1' -d $p/body.json '$h2c/v1/chat/completions?tokens=3' 2>&1`;
    is($? >> 8, 0, 'nghttp: exit 0') or diag $out;
    my @ev = parse_sse($out);
    is(tokens(@ev), 'tok0 tok1 tok2 ', 'nghttp: every token');
    is($ev[0]{id}, 'nghttp-1:1', 'nghttp: ids rewritten');

    $out = `nghttp -v -ns '$tls/sub?id=nghttp-1&format=ndjson' 2>&1`;
    like($out, qr/:status: 200/, 'nghttp over TLS: subscribe answers 200');
}

# several subscribers of a live stream on one HTTP/2 connection (one
# worker): the chunks they share are encoded once and linked to each
# stream's output; every one of them gets every chunk, in its format
for my $case ([ 'TLS', "-k --http2 --resolve localhost:${\ $t->port(2)}:127.0.0.1", $tls ],
              [ 'h2c', '--http2-prior-knowledge', $h2c ])
{
    my ($name, $flags, $base) = @$case;
    my $id = "h2-fan-$name";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        exec 'sh', '-c', "curl -s --max-time 20 $flags -H 'X-Stream-Id: $id'"
             . " --data '$body'"
             . " '$base/v1/chat/completions?tokens=40&tps=40'"
             . " > $p/fan-$name.out 2>&1";
        exit 127;
    }
    for (1 .. 100) {
        my (undef, $o) = curl($flags, "'$base/status?id=$id'");
        last if $o =~ /"status"/;
        select undef, undef, undef, 0.02;
    }
    my @fmts = (qw(ndjson passthrough) x 3);
    my @args = map { "-o $p/fan-$name-$_.out"
                     . " '$base/sub?id=$id&from=0&format=$fmts[$_]'" }
               0 .. $#fmts;
    my ($rc, $out) = curl("$flags --parallel --parallel-immediate", @args);
    is($rc, 0, "$name: 6 subscribers on one connection") or diag $out;
    waitpid $pid, 0;
    for my $i (0 .. $#fmts) {
        my $got = $t->read_file("fan-$name-$i.out");
        my @seq;
        if ($fmts[$i] eq 'ndjson') {
            my @m = eval { parse_ndjson($got) };
            @seq = map { $_->{payload}{sequence} }
                   grep { $_->{type} eq 'stream-chunk' } @m;
            is($m[-1] && $m[-1]{payload}{status}, 'completed',
               "$name: subscriber $i ($fmts[$i]): completed");
        } else {
            my @ev = parse_sse($got);
            is(tokens(@ev), join('', map { "tok$_ " } 0 .. 39),
               "$name: subscriber $i ($fmts[$i]): every token");
            @seq = map { /:(\d+)$/ ? $1 : -1 } map { $_->{id} } @ev;
        }
        is_deeply(\@seq, [ 1 .. ($fmts[$i] eq 'ndjson' ? 44 : 43) ],
                  "$name: subscriber $i ($fmts[$i]): in order, once");
    }
}

# publish and control over HTTP/2: request bodies (DATA frames, one of
# them larger than the initial window) are read whole before acting
for my $case ([ 'TLS', "-k --http2 --resolve localhost:${\ $t->port(2)}:127.0.0.1", $tls ],
              [ 'h2c', '--http2-prior-knowledge', $h2c ])
{
    my ($name, $flags, $base) = @$case;
    my $id = "h2-pub-$name";
    my ($rc, $out) = curl("$flags -i -X PUT -d ''", "'$base/pub?id=$id'");
    like($out, qr{^HTTP/2 201}m, "$name: PUT over HTTP/2: 201");

    open my $big, '>', "$p/big-$name.txt" or die $!;
    print $big 'z' x 40000;
    close $big;
    ($rc, $out) = curl("$flags -H 'Content-Type: text/plain'",
                       "--data-binary \@$p/big-$name.txt",
                       "'$base/pub?id=$id'");
    is(eval { json_decode($out)->{sequence} }, 1,
       "$name: a 40000-byte POST is one chunk") or diag $out;

    ($rc, $out) = curl($flags, "--data-binary \@$p/big-$name.txt",
                       "-H 'Content-Type: text/plain'",
                       "-w '%{http_code}'", "-o /dev/null",
                       "'$base/pub?id=$id&final=1'");
    is($out, '202', "$name: final POST: 202");

    ($rc, $out) = curl($flags, "'$base/sub?id=$id&format=ndjson'");
    my @m = eval { parse_ndjson($out) };
    is_deeply([ map { length $_->{payload}{data} }
                grep { $_->{type} eq 'stream-chunk' } @m ],
              [ 40000, 40000, 0 ], "$name: both chunks whole, then the end");

    ($rc, $out) = curl($flags, "-d '{\"command\":\"pause\"}'",
                       "-w ' %{http_code}'", "'$base/ctl?id=$id'");
    like($out, qr/INVALID_STATE.* 409$/s, "$name: control over HTTP/2: 409");

    ($rc, $out) = curl($flags, "-d '{\"command\":'", "-w ' %{http_code}'",
                       "'$base/ctl?id=$id'");
    like($out, qr/INVALID_MESSAGE.* 400$/s, "$name: a truncated command: 400");

    ($rc, $out) = curl($flags, "-X DELETE", "-w ' %{http_code}'",
                       "'$base/pub?id=$id'");
    like($out, qr/ 409$/, "$name: DELETE of an ended stream: 409");
}

# a client that resets its HTTP/2 stream mid-generation cancels the producer
{
    $t->mock_reset;
    my ($rc, $out) = curl('--http2-prior-knowledge --max-time 1',
                          "-H 'X-Stream-Id: h2-reset'", "--data '$body'",
                          "'$h2c/v1/chat/completions?tokens=100&tps=10&mid=reset'");
    my $st;
    for (1 .. 50) {
        $st = $t->mock_stats;
        last if $st->{early_closes};
        sleep 0.05;
    }
    is($st->{early_closes}, 1, 'RST_STREAM: the upstream saw the close');

    my $s = {};
    for (1 .. 50) {
        (undef, my $o) = curl('--http2-prior-knowledge',
                              "'$h2c/status?id=h2-reset'");
        $s = eval { json_decode($o) } || {};
        last if ($s->{stream}{status} // 'active') ne 'active';
        sleep 0.05;
    }
    is($s->{stream}{status}, 'cancelled', 'RST_STREAM: the stream is cancelled');
}

$t->stop;

done_testing;
