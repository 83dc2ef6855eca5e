# Interop: the official OpenAI Node SDK (t/node, openai@6) and curl -N
# stream chat completions from the mock LLM through a "streaming"
# passthrough location, with proxy_buffering on and off, and see the first
# token long before the upstream has finished.

use strict;
use warnings;
use Test::More;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time);

use lib 't/lib';
use StreamTest;

my $node = (grep { -x "$_/node" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'node is not installed' unless $node;
$node .= '/node';

my $dir = "$StreamTest::REPO/t/node";
my $script = "$dir/openai-chat.mjs";
ok(-f "$dir/node_modules/openai/package.json",
   't/node/node_modules has the openai SDK (npm ci --prefix t/node)')
    or do { diag 'install it: npm ci --prefix t/node'; done_testing; exit };

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; keepalive 4; }
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
proxy_set_header Connection "";

location /on/ {
    streaming llm;
    proxy_buffering on;
    proxy_pass http://mock/;
}

location /off/ {
    streaming llm;
    proxy_buffering off;
    proxy_pass http://mock/;
}

location = /status { streaming_status; }
EOF
$t->start;

my $base = 'http://127.0.0.1:' . $t->port;

# Runs commands at once (stdout captured, stderr to a log file) until all
# ended or the deadline; returns name => { out, chunks => [ [ t, bytes ] ],
# status }.
sub run_all {
    my ($cmds, $timeout) = @_;
    my $start = time;
    my (%run, %by_fh);
    my $sel = IO::Select->new;
    for my $name (sort keys %$cmds) {
        my $err = $t->prefix . "/logs/$name.stderr" =~ s/ /_/gr;
        my $pid = open(my $fh, '-|') // die "fork: $!";
        if (!$pid) {
            open STDERR, '>', $err or POSIX::_exit(127);
            exec @{ $cmds->{$name} } or POSIX::_exit(127);
        }
        $run{$name} = { pid => $pid, fh => $fh, out => '', chunks => [],
                        stderr => $err };
        $by_fh{ fileno $fh } = $name;
        $sel->add($fh);
    }
    my $deadline = $start + $timeout * $F;
    while ($sel->count && time < $deadline) {
        for my $fh ($sel->can_read($deadline - time)) {
            my $name = $by_fh{ fileno $fh };
            my $n = sysread $fh, my $buf, 65536;
            if (!$n) {
                $sel->remove($fh);
                next;
            }
            $run{$name}{out} .= $buf;
            push @{ $run{$name}{chunks} }, [ time - $start, $buf ];
        }
    }
    for my $name (sort keys %run) {
        my $r = $run{$name};
        if ($sel->exists($r->{fh})) {
            diag "$name: still running after $timeout s, stopped";
            kill 'TERM', $r->{pid};
        }
        close $r->{fh};
        $r->{status} = $?;
        $r->{stderr_text} = do { local (@ARGV, $/) = $r->{stderr}; <> } // '';
    }
    return \%run;
}

sub sdk {
    my ($loc, %knobs) = @_;
    return [ $node, $script, "$base/$loc/v1",
             map { "X-Mock-$_=$knobs{$_}" } sort keys %knobs ];
}

sub curl {
    my ($loc, $query) = @_;
    return [ 'curl', '-sSN', '--max-time', 15 * $F, '-H',
             'Content-Type: application/json', '--data-binary',
             '{"model":"mock-llm","stream":true,'
             . '"messages":[{"role":"user","content":"hi"}]}',
             "$base/$loc/v1/chat/completions?$query" ];
}

sub text_of {
    my ($body) = @_;
    return join '', map {
        my $d = eval { json_decode($_->{data}) } || {};
        $d->{choices} && @{ $d->{choices} }
            ? $d->{choices}[0]{delta}{content} // '' : '';
    } grep { defined $_->{data} && $_->{data} ne '[DONE]' } parse_sse($body);
}

# --- the SDK gets the whole completion, with usage, and no error ----------

my $streams = 0;

for my $loc (qw(on off)) {
    my $run = run_all({ sdk => sdk($loc, Tokens => 7) }, 10)->{sdk};
    is($run->{status}, 0, "SDK ($loc): exit 0") or diag $run->{stderr_text};
    my $r = eval { json_decode($run->{out}) } || {};
    is($r->{error}, undef, "SDK ($loc): no SDK error");
    is($r->{text}, join('', map { "tok$_ " } 0 .. 6), "SDK ($loc): the text");
    is($r->{finish_reason}, 'stop', "SDK ($loc): finish_reason stop");
    is_deeply($r->{usage}, { prompt_tokens => 2, completion_tokens => 7,
                             total_tokens => 9 }, "SDK ($loc): usage");
    # role, 7 tokens, finish, usage; [DONE] ends the iteration
    is($r->{chunks}, 10, "SDK ($loc): every chunk");
    is(scalar @{ $r->{ids} || [] }, 1, "SDK ($loc): one completion id");
    like($r->{stream_id} // '', qr/^[A-Za-z0-9_-]{22}$/,
         "SDK ($loc): the response has a Stream-Id");
    like($r->{content_type} // '', qr{^text/event-stream},
         "SDK ($loc): text/event-stream");
    $streams++;
}

# --- first token long before the end: SDK and curl -N, buffering on/off ---

{
    # 20 tokens at 5 per second: the upstream needs about 4 s
    my %cmds = map {
        ("sdk $_" => sdk($_, Tokens => 20, Tps => 5),
         "curl $_" => curl($_, 'tokens=20&tps=5'))
    } qw(on off);
    my $run = run_all(\%cmds, 12);

    for my $loc (qw(on off)) {
        my $s = $run->{"sdk $loc"};
        is($s->{status}, 0, "slow SDK ($loc): exit 0")
            or diag $s->{stderr_text};
        my $r = eval { json_decode($s->{out}) } || {};
        is($r->{error}, undef, "slow SDK ($loc): no error");
        is($r->{text}, join('', map { "tok$_ " } 0 .. 19),
           "slow SDK ($loc): the text");
        ok(defined $r->{first_token_ms} && $r->{first_token_ms} < 1500 * $F,
           "slow SDK ($loc): first token after "
           . ($r->{first_token_ms} // '-') . ' ms');
        ok(($r->{total_ms} // 0) > 3500,
           "slow SDK ($loc): the end after " . ($r->{total_ms} // '-')
           . ' ms, with the upstream');

        my $c = $run->{"curl $loc"};
        is($c->{status}, 0, "curl -N ($loc): exit 0") or diag $c->{stderr_text};
        is(text_of($c->{out}), join('', map { "tok$_ " } 0 .. 19),
           "curl -N ($loc): the text");
        my ($first) = map { $_->[0] } grep { $_->[1] =~ /tok0 / }
                      @{ $c->{chunks} };
        my $last = @{ $c->{chunks} } ? $c->{chunks}[-1][0] : 0;
        ok(defined $first && $first < 1.0 * $F,
           sprintf('curl -N (%s): tok0 after %.2f s', $loc, $first // -1));
        ok($last > 3.5, sprintf('curl -N (%s): [DONE] after %.2f s',
                                $loc, $last));
        my @ev = parse_sse($c->{out});
        is($ev[-1]{data}, '[DONE]', "curl -N ($loc): [DONE] last");
        like($ev[0]{id} // '', qr/^[A-Za-z0-9_-]{22}:1$/,
             "curl -N ($loc): event ids from the module");
        $streams += 2;
    }
}

{
    my $j = json_decode($t->get('/status?format=json')->{body});
    is_deeply($j->{zones}{llm}{streams},
              { active => 0, paused => 0, completed => $streams, error => 0,
                cancelled => 0 },
              "status: $streams streams completed");
}

$t->stop;

done_testing;
