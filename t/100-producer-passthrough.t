# Producer, passthrough format: an SSE upstream (the mock LLM) proxied
# through "streaming zone;" reaches the client byte for byte, except that
# every event carries "id: <streamId>:<n>" instead of its own id line, with
# proxy_buffering on and off; the first token is not held back; the zone
# counts what went through.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

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

# the id comes from ?id=; the mock gets no query string (it would refuse
# "id"), its knobs come as X-Mock-* headers
location ~ ^/id(/.*)$ {
    streaming llm;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}

location = /status { streaming_status; }
EOF
$t->start;

my $chat = '{"model":"mock-llm","stream":true,'
         . '"stream_options":{"include_usage":true},'
         . '"messages":[{"role":"user","content":"hello there"}]}';

# what the upstream sends, as [ method, path, body ]
my @cases = (
    [ 'chat completion', POST => '/v1/chat/completions?tokens=5', $chat ],
    [ 'upstream ids removed', GET => '/sse?events=5&ids=1' ],
    [ 'named events, CRLF, ids', GET => '/sse?events=4&named=1&ids=1&crlf=1' ],
    [ 'multi-line data', GET => '/sse?events=4&multiline=1' ],
    [ 'multi-line data, CRLF', GET => '/sse?events=3&multiline=1&crlf=1' ],
    [ 'events split across reads', GET => '/sse?events=6&split=7&ids=1' ],
    [ 'CRLF split between CR and LF', GET => '/sse?events=4&split=2&crlf=1' ],
    [ 'chat split across reads, CRLF', POST =>
      '/v1/chat/completions?tokens=3&split=7&crlf=1', $chat ],
    [ 'trickled byte by byte', GET =>
      '/sse?events=3&fault=trickle&crlf=1&ids=1&named=1' ],
    [ 'big events', GET => '/sse?events=3&size=20000' ],
    # garbage lines are fields; a block of 0xff 0xfe has no data: no event
    # for EventSource, forwarded but not numbered
    [ 'malformed upstream', GET =>
      '/sse?events=3&fault=malformed&fault_after=1' ],
);

# an event's bytes without its "id" lines (whatever their line end)
sub strip_id {
    my ($raw) = @_;
    my @lines = $raw =~ /([^\r\n]*(?:\r\n|\r|\n))/g;
    return join '', grep { !/^id(?:[:\r\n])/ } @lines;
}

# chatcmpl-<n> counts the mock's chat requests and "created" is the time:
# not part of the comparison
sub norm {
    return $_[0] =~ s/chatcmpl-\d+/chatcmpl-N/gr
                 =~ s/"created":\d+/"created":0/gr;
}

my %expect = (streams => 0, chunks => 0, bytes => 0);

sub totals {
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{llm}{totals};
}

for my $case (@cases) {
    my ($what, $method, $path, $body) = @$case;

    my $up = $t->http($method, $path, body => $body, port => $t->mock_port);
    is($up->{status}, 200, "$what: upstream answers") or next;
    my @want = parse_sse($up->{body});

    for my $loc (qw(on off)) {
        my $name = "$what (proxy_buffering $loc)";
        my $before = totals();
        my $r = $t->http($method, "/$loc$path", body => $body);

        is($r->{status}, 200, "$name: 200");
        ok($r->{complete}, "$name: the response ends properly");
        like($r->{headers}{'content-type'}, qr{^text/event-stream},
             "$name: Content-Type kept");

        my $sid = $r->{headers}{'stream-id'} // '';
        like($sid, qr/^[A-Za-z0-9_-]{22}$/, "$name: generated Stream-Id");
        is_deeply([ map { $_->[1] } grep { lc $_->[0] eq 'cache-control' }
                        @{ $r->{header_list} } ],
                  [ 'no-cache' ], "$name: one Cache-Control: no-cache");
        is($r->{headers}{'x-accel-buffering'}, 'no',
           "$name: X-Accel-Buffering: no");

        my @got = parse_sse($r->{body});
        is(scalar @got, scalar @want, "$name: every event arrived");
        is(join('', map { $_->{raw} } @got), $r->{body},
           "$name: nothing but events in the body");

        my $n = 0;
        my $bytes = 0;
        for my $i (0 .. $#want) {
            my $ev = $got[$i] or last;
            my $event = defined $want[$i]{data};
            $n++ if $event;
            my @ids = map { $_->[1] } grep { $_->[0] eq 'id' }
                      @{ $ev->{fields} };
            is_deeply(\@ids, $event ? [ "$sid:$n" ] : [],
                      "$name: block $i: " . ($event ? "id $sid:$n"
                                                    : 'no data, no id'));
            is(norm(strip_id($ev->{raw})), norm(strip_id($want[$i]{raw})),
               "$name: block $i: the upstream's bytes");
            $bytes += length strip_id($ev->{raw}) if $event;
        }

        # the stream keeps each event as sent, without its id line
        my $after = totals();
        is($after->{chunks} - $before->{chunks}, $n,
           "$name: the zone stored every event ($n)");
        is($after->{bytes} - $before->{bytes}, $bytes,
           "$name: the zone stored $bytes bytes");

        $expect{streams}++;
        $expect{chunks} += $n;
        $expect{bytes} += $bytes;
    }
}

# the id given by streaming_id
{
    my $id = 'My.stream-id_~42';
    my $r = $t->get("/id/sse?id=$id", headers => { 'X-Mock-Events' => 3,
                                                    'X-Mock-Ids' => 1 });
    is($r->{status}, 200, 'streaming_id: 200');
    is($r->{headers}{'stream-id'}, $id, 'streaming_id: Stream-Id is the id');
    my @ev = parse_sse($r->{body});
    is_deeply([ map { $_->{id} } @ev ], [ map { "$id:$_" } 1 .. 3 ],
              'streaming_id: event ids use it');
    is_deeply([ map { $_->{data} } @ev ], [ map { qq({"n":$_}) } 0 .. 2 ],
              'streaming_id: data as sent');
    $expect{streams}++;
    $expect{chunks} += 3;
    $expect{bytes} += length strip_id($_->{raw}) for @ev;

    my $long = 'x' x 128;
    $r = $t->get("/id/sse?id=$long", headers => { 'X-Mock-Events' => 1 });
    is($r->{status}, 200, 'streaming_id: 128 characters accepted');
    is($r->{headers}{'stream-id'}, $long, 'streaming_id: long Stream-Id');
    @ev = parse_sse($r->{body});
    is($ev[0]{id}, "$long:1", 'streaming_id: long id in the event');
    $expect{streams}++;
    $expect{chunks} += 1;
    $expect{bytes} += length strip_id($ev[0]{raw});
}

# every generated id differs
{
    my %seen;
    for (1 .. 10) {
        my $r = $t->get('/on/sse?events=1');
        $seen{ $r->{headers}{'stream-id'} // '' }++;
        $expect{streams}++;
        $expect{chunks}++;
        $expect{bytes} += length qq(data: {"n":0}\n\n);
    }
    is(scalar(grep { /^[A-Za-z0-9_-]{22}$/ } keys %seen), 10,
       'ten streams, ten different generated ids');
}

# The first token arrives while the upstream still generates: 20 tokens at
# 5 per second take about 4 s; both buffering modes at once.
{
    my $f = StreamTest::timeout_factor();
    my %c;
    for my $loc (qw(on off)) {
        $c{$loc} = $t->stream('POST',
                              "/$loc/v1/chat/completions?tokens=20&tps=5",
                              body => $chat, timeout => 10);
    }
    my $start = time;
    my (%arrived, %events);
    my $deadline = $start + 10 * $f;
    my $upstream_busy;
    while (time < $deadline) {
        my $open = 0;
        for my $loc (qw(on off)) {
            my $c = $c{$loc};
            next if $c->complete || $c->eof;
            $open++;
            for my $ev ($c->read_events(100, 0.02)) {
                push @{ $events{$loc} }, $ev;
                push @{ $arrived{$loc} }, time - $start;
            }
        }
        if (!defined $upstream_busy && $events{on} && $events{off}) {
            # both got their first event: the mock must still be at work
            my $st = $t->mock_stats;
            $upstream_busy = $st->{active};
        }
        last unless $open;
    }

    is($upstream_busy, 2, 'first events arrived while both upstream '
                          . 'streams were still generating');

    for my $loc (qw(on off)) {
        my @ev = @{ $events{$loc} || [] };
        my @at = @{ $arrived{$loc} || [] };
        # role chunk, 20 tokens, finish, usage, [DONE]
        is(scalar @ev, 24, "tps=5 ($loc): every event");
        ok(@at && $at[0] < 1.0 * $f,
           sprintf('tps=5 (%s): first event after %.2f s, long before 4 s',
                   $loc, $at[0] // -1));
        ok(@at && $at[1] < 1.0 * $f,
           sprintf('tps=5 (%s): first token after %.2f s', $loc,
                   $at[1] // -1));
        # token i is due at i/5 s; it must not wait for later ones
        my @late = grep { $at[ $_ + 1 ] > $_ / 5 + 0.7 * $f } 0 .. 19;
        is_deeply(\@late, [], "tps=5 ($loc): every token arrived on time")
            or diag explain \@at;
        ok($at[-1] > 3.3, sprintf('tps=5 (%s): the last event came with '
                                  . 'the upstream, after %.2f s',
                                  $loc, $at[-1] // -1));
        my $text = join '', map {
            my $d = json_decode($_->{data});
            @{ $d->{choices} } ? $d->{choices}[0]{delta}{content} // '' : '';
        } grep { $_->{data} ne '[DONE]' } @ev;
        is($text, join('', map { "tok$_ " } 0 .. 19),
           "tps=5 ($loc): the text");
        is($ev[-1]{data}, '[DONE]', "tps=5 ($loc): [DONE] last");
        my $sid = $c{$loc}->head->{headers}{'stream-id'};
        is_deeply([ map { $_->{id} } @ev ], [ map { "$sid:$_" } 1 .. 24 ],
                  "tps=5 ($loc): numbered 1 to 24");
        $expect{streams}++;
        $expect{chunks} += @ev;
        $expect{bytes} += length strip_id($_->{raw}) for @ev;
        $c{$loc}->close;
    }
}

# what the zone counted
{
    my $j = json_decode($t->get('/status?format=json')->{body});
    my $z = $j->{zones}{llm};
    is_deeply($z->{streams}, { active => 0, paused => 0, cancelled => 0,
                               error => 0, completed => $expect{streams} },
              "status: $expect{streams} streams completed, nothing else");
    is($z->{totals}{created}, $expect{streams}, 'status: totals.created');
    is($z->{totals}{chunks}, $expect{chunks},
       "status: totals.chunks = $expect{chunks} events sent");
    is($z->{totals}{bytes}, $expect{bytes},
       "status: totals.bytes = $expect{bytes} bytes of events");
    is($z->{totals}{rejected}, 0, 'status: nothing rejected');
}

$t->stop;

done_testing;
