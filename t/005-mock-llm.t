# The mock LLM upstream does what the other tests rely on: OpenAI-shaped
# streams, deterministic tokens, knobs, faults, and counters of what it saw.

use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 1);
my $mport = $t->start_mock_llm;
ok($mport, 'mock started');

my $chat = '{"model":"m","stream":true,"stream_options":{"include_usage":true},'
         . '"messages":[{"role":"user","content":"hi"}]}';

sub content {
    join '', map {
        my $d = json_decode($_->{data});
        @{ $d->{choices} } ? ($d->{choices}[0]{delta}{content} // '') : '';
    } grep { defined $_->{data} && $_->{data} ne '[DONE]' } @_;
}

# streaming chat completion, straight from the mock
my $r = $t->post('/v1/chat/completions?tokens=4', $chat, port => $mport);
is($r->{status}, 200, 'stream: 200');
like($r->{headers}{'content-type'}, qr{^text/event-stream}, 'stream: SSE');
is($r->{headers}{'transfer-encoding'}, 'chunked', 'stream: chunked');
my @ev = parse_sse($r->{body});
is(content(@ev), 'tok0 tok1 tok2 tok3 ', 'stream: deterministic tokens');
is(json_decode($ev[0]{data})->{object}, 'chat.completion.chunk', 'chunk object');
is(json_decode($ev[0]{data})->{choices}[0]{delta}{role}, 'assistant',
   'first event carries the role');
is(json_decode($ev[-3]{data})->{choices}[0]{finish_reason}, 'stop',
   'finish_reason stop');
is(json_decode($ev[-2]{data})->{usage}{completion_tokens}, 4, 'usage chunk');
is($ev[-1]{data}, '[DONE]', 'ends with [DONE]');

# non-streaming
$r = $t->post('/v1/chat/completions?tokens=3', '{"stream":false}', port => $mport);
my $j = json_decode($r->{body});
is($j->{choices}[0]{message}{content}, 'tok0 tok1 tok2 ', 'non-stream body');
ok($r->{headers}{'content-length'}, 'non-stream: Content-Length');

# generic producers and knobs
$r = $t->get('/ndjson?events=3&crlf=1', port => $mport);
is($r->{body}, qq({"n":0}\r\n{"n":1}\r\n{"n":2}\r\n), 'ndjson with CRLF');
$r = $t->get('/sse?events=2&named=1&ids=1', port => $mport);
@ev = parse_sse($r->{body});
is(scalar @ev, 2, 'sse: two events');
is($ev[1]{event}, 'tick', 'sse: named');
ok(defined $ev[1]{id}, 'sse: with ids');
$r = $t->get('/bytes?total=1000&size=100', port => $mport);
is(length $r->{body}, 1000, 'bytes: total');
$r = $t->post('/v1/chat/completions?status=503', $chat, port => $mport);
is($r->{status}, 503, 'status knob');
$r = $t->post('/v1/chat/completions?tokens=2&bogus=1', $chat, port => $mport);
is($r->{status}, 400, 'unknown knob refused');

# faults
$r = $t->post('/v1/chat/completions?tokens=10&fault=close&fault_after=2',
              $chat, port => $mport);
unlike($r->{raw}, qr/\r\n0\r\n\r\n$/, 'fault=close: no final chunk');
is(content(grep { defined $_->{data} } parse_sse($r->{raw} =~ s/\r\n[0-9a-f]+\r\n//gr)),
   'tok0 tok1 ', 'fault=close after 2 tokens');

# counters: requests, and a client that closes early
$t->mock_reset;
my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $mport)
    or die "connect: $@";
print $s "POST /v1/chat/completions?tokens=100&tps=10&mid=early HTTP/1.1\r\n"
       . "Host: x\r\nContent-Length: " . length($chat) . "\r\n\r\n$chat";
sleep 0.3;
close $s;
my $st;
for (1 .. 50) {
    $st = $t->mock_stats;
    last if $st->{early_closes};
    sleep 0.02;
}
is($st->{requests}, 1, 'stats: one request');
is($st->{early_closes}, 1, 'stats: early close seen');
my ($early) = grep { $_->{mid} eq 'early' } @{ $st->{streams} };
is($early->{state}, 'closed_early', 'stats: stream state closed_early');
ok($early->{sent_events} >= 2 && $early->{sent_events} < 20,
   "stats: stopped after $early->{sent_events} events");

$t->stop_mock_llm;

done_testing;
