# Subscribe: every start point (first retained chunk, ?from=, its alias
# ?starting_after=, Last-Event-ID, ?from=live), every format (passthrough,
# omni, ndjson by ?format= and by Accept, jsonrpc) on SSE, NDJSON and binary
# streams, the replay of a finished stream, replay then live on an active
# one, the answers 204 / 400 / 404 / 405 / 410 / 503, HEAD, the $streaming_*
# variables of subscribers in the access log and the status counters.

use strict;
use warnings;
use Test::More;
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();
my $T = JSON::PP::true;
my $FALSE = JSON::PP::false;

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
streaming_zone tiny 1m buffer=1k;
streaming_zone lim 1m max_subscribers=2;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
log_format sub '$request_uri|$status|$streaming_id|$streaming_sequence|'
               '$streaming_chunks|$streaming_bytes|$streaming_status|'
               '$streaming_resumed_from';
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
access_log %%PREFIX%%/logs/sub.log sub;

# producers: ?id= names the stream, the mock's knobs come as X-Mock-*
location ~ ^/p(/.*)$ {
    streaming llm;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}
location ~ ^/tiny(/.*)$ {
    streaming tiny;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}
location ~ ^/lim(/.*)$ {
    streaming lim;
    streaming_id $arg_id;
    proxy_pass http://mock$1;
}

location = /sub { streaming_subscribe llm; }
location ~ ^/by-name/([^/]+)$ {
    streaming_subscribe llm;
    streaming_id $1;
}
location = /sub-tiny { streaming_subscribe tiny; }
location = /sub-lim { streaming_subscribe lim; }

location = /status { streaming_status; }
EOF
$t->start;

sub zone {
    my ($name) = @_;
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{ $name // 'llm' };
}

sub stream_status {
    my ($id) = @_;
    my $r = $t->get("/status?format=json&id=$id");
    return $r->{status} == 200 ? json_decode($r->{body})->{stream} : undef;
}

# an SSE event's bytes without its "id" lines
sub strip_id {
    my ($raw) = @_;
    my @lines = $raw =~ /([^\r\n]*(?:\r\n|\r|\n))/g;
    return join '', grep { !/^id(?:[:\r\n])/ } @lines;
}

# The messages of a subscribe response: SSE events for passthrough, JSON
# objects otherwise.
sub messages {
    my ($fmt, $body) = @_;
    return parse_sse($body) if $fmt eq 'passthrough';
    return map { json_decode($_->{data}) } parse_sse($body) if $fmt eq 'omni';
    return parse_ndjson($body);
}

# access log lines by request URI (the first of each)
sub log_lines {
    my %line;
    for (split /\n/, $t->read_file('logs/sub.log')) {
        my ($uri) = split /\|/;
        $line{$uri} //= $_;
    }
    return %line;
}

# --- the streams -------------------------------------------------------------

# fin: 5 SSE events, named, two data lines each, finished
my $fin = $t->get('/p/sse?id=fin', headers => { 'X-Mock-Events' => 5,
                                                 'X-Mock-Named' => 1,
                                                 'X-Mock-Multiline' => 1 });
is($fin->{status}, 200, 'fin: produced');
my @fin = grep { defined $_->{data} } parse_sse($fin->{body});
is_deeply([ map { $_->{id} } @fin ], [ map { "fin:$_" } 1 .. 5 ],
          'fin: five events');
is_deeply([ map { $_->{data} } @fin ],
          [ map { "line-a-$_\nline-b-$_" } 0 .. 4 ], 'fin: their data');
# what the stream stores per chunk (the event without its id line)
my @fin_bytes = map { length strip_id($_->{raw}) } @fin;

# nd: 4 NDJSON lines
my $nd = $t->get('/p/ndjson?id=nd', headers => { 'X-Mock-Events' => 4 });
is($nd->{status}, 200, 'nd: produced');

# bin: 1000 bytes that are not UTF-8
my $bin = $t->get('/p/bytes?id=bin', headers => { 'X-Mock-Total' => 1000,
                                                   'X-Mock-Size' => 300 });
is(length $bin->{body}, 1000, 'bin: produced');

# tt: 30 events of 100 bytes in a zone that retains 1k
my $tt = $t->get('/tiny/sse?id=tt', headers => { 'X-Mock-Events' => 30,
                                                  'X-Mock-Size' => 100 });
is($tt->{status}, 200, 'tt: produced');
my $tt_first = (stream_status('tt') || {})->{first} // 0;
ok($tt_first > 1 && $tt_first < 30,
   "tt: history beyond buffer=1k dropped, first retained is $tt_first");

# --- replay of a finished stream: start points x formats ---------------------

# Checks one subscribe response against the chunks of "fin" it should
# carry (sequence numbers), in its format.
sub check_fin {
    my ($name, $r, $fmt, $seqs, $resume) = @_;

    is($r->{status}, 200, "$name: 200");
    ok($r->{complete}, "$name: the response ends properly");
    is($r->{headers}{'stream-id'}, 'fin', "$name: Stream-Id");
    is($r->{headers}{'cache-control'}, 'no-cache', "$name: no-cache");
    is($r->{headers}{'x-accel-buffering'}, 'no', "$name: X-Accel-Buffering");
    is($r->{headers}{'content-type'},
       $fmt eq 'passthrough' || $fmt eq 'omni' ? 'text/event-stream'
                                               : 'application/x-ndjson',
       "$name: Content-Type");

    my @m = eval { messages($fmt, $r->{body}) };
    is($@, '', "$name: parses");

    if ($fmt eq 'passthrough') {
        is(join('', map { $_->{raw} } @m),
           join('', map { $fin[ $_ - 1 ]{raw} } @$seqs),
           "$name: the producer's events " . join(',', @$seqs)
           . ', byte for byte, nothing more');
        return;
    }

    if ($fmt eq 'jsonrpc') {
        is_deeply(\@m,
                  [ (map { { jsonrpc => '2.0', id => undef,
                             result => { _streaming => $T, _sequence => $_,
                                         _isLast => $FALSE,
                                         _data => $fin[ $_ - 1 ]{data} } } }
                     @$seqs),
                    { jsonrpc => '2.0', id => undef,
                      result => { _streaming => $T, _sequence => 6,
                                  _isLast => $T, _data => '' } } ],
                  "$name: lines " . join(',', @$seqs) . ', then the last (6)');
        return;
    }

    my @types = map { $_->{type} } @m;
    is_deeply(\@types, [ 'stream-init', ('stream-chunk') x (@$seqs + 1),
                         'stream-status' ],
              "$name: init, " . scalar(@$seqs) . ' chunks, final, status');
    my $init = $m[0]{payload} || {};
    is($init->{streamId}, 'fin', "$name: init streamId");
    is($init->{contentType}, 'text/event-stream', "$name: init contentType");
    is_deeply($init->{metadata}, { resumable => $T, resumePosition => $resume },
              "$name: init resumePosition $resume");

    my @chunks = map { $_->{payload} } grep { $_->{type} eq 'stream-chunk' } @m;
    my $final = pop @chunks;
    is_deeply([ map { [ $_->{sequence}, $_->{data}, $_->{event},
                        $_->{isFinal} ] } @chunks ],
              [ map { [ $_, $fin[ $_ - 1 ]{data}, 'tick', $FALSE ] } @$seqs ],
              "$name: chunks " . join(',', @$seqs)
              . ': data field value and event name');
    is_deeply($final, { streamId => 'fin', sequence => 6, data => '',
                        isFinal => $T, checksum => '00000000' },
              "$name: final chunk 6");
    my $st = $m[-1]{payload} || {};
    is($st->{status}, 'completed', "$name: status completed");
    is($st->{checkpoint}{sequence}, 5, "$name: checkpoint at 5");
    my $total = 0;
    $total += $_ for @fin_bytes;
    is($st->{progress}{bytesTransferred}, $total,
       "$name: progress $total bytes");
}

# [ name, path, headers, sequences replayed, resume position ]
my @starts = (
    [ 'first retained', '/sub?id=fin', {}, [ 1 .. 5 ], 0 ],
    [ 'from=0', '/sub?id=fin&from=0', {}, [ 1 .. 5 ], 0 ],
    [ 'from=2', '/sub?id=fin&from=2', {}, [ 3 .. 5 ], 2 ],
    [ 'starting_after=4', '/sub?id=fin&starting_after=4', {}, [5], 4 ],
    [ 'Last-Event-ID names the stream', '/sub',
      { 'Last-Event-ID' => 'fin:1' }, [ 2 .. 5 ], 1 ],
    [ 'Last-Event-ID and the same ?id=', '/sub?id=fin',
      { 'Last-Event-ID' => 'fin:3' }, [ 4, 5 ], 3 ],
    [ 'Last-Event-ID wins over from', '/sub?id=fin&from=4',
      { 'Last-Event-ID' => 'fin:0' }, [ 1 .. 5 ], 0 ],
    [ 'streaming_id', '/by-name/fin', {}, [ 1 .. 5 ], 0 ],
    [ 'streaming_id, from=3', '/by-name/fin?from=3', {}, [ 4, 5 ], 3 ],
    [ 'streaming_id, Last-Event-ID', '/by-name/fin',
      { 'Last-Event-ID' => 'fin:2' }, [ 3 .. 5 ], 2 ],
    [ 'from=live of a finished stream', '/sub?id=fin&from=live', {}, [], 5 ],
);

for my $case (@starts) {
    my ($what, $path, $headers, $seqs, $resume) = @$case;
    for my $fmt (qw(default omni ndjson accept jsonrpc)) {
        my $p = $path;
        my %h = %$headers;
        my $want = $fmt;
        if ($fmt eq 'default') {
            $want = 'passthrough';
        } elsif ($fmt eq 'accept') {
            $h{Accept} = 'text/plain, application/x-ndjson;q=0.9';
            $want = 'ndjson';
        } else {
            $p .= ($p =~ /\?/ ? '&' : '?') . "format=$fmt";
        }
        my $before = zone()->{totals}{resumes};
        my $r = $t->get($p, headers => \%h);
        check_fin("$what ($fmt)", $r, $want, $seqs, $resume);
        is(zone()->{totals}{resumes} - $before, $resume > 0 ? 1 : 0,
           "$what ($fmt): totals.resumes counts "
           . ($resume > 0 ? 'a resume' : 'no resume'));
    }
}

# the end of a finished stream: EventSource must stop reconnecting
for my $case ([ '/sub', 'fin:5' ], [ '/sub', 'fin:6' ], [ '/sub', 'fin:99' ],
              [ '/sub?id=fin&format=omni', 'fin:5' ],
              [ '/by-name/fin', 'fin:5' ])
{
    my ($path, $lid) = @$case;
    my $r = $t->get($path, headers => { 'Last-Event-ID' => $lid });
    is($r->{status}, 204, "$path, Last-Event-ID $lid: 204");
    is($r->{body}, '', "$path, Last-Event-ID $lid: no body");
}

# --- streams that are not SSE ------------------------------------------------

{
    my @lines = split /\n/, $nd->{body};
    my $r = $t->get('/sub?id=nd');
    is($r->{headers}{'content-type'}, 'text/event-stream',
       'nd: default format of a lines stream is omni');
    my @m = messages('omni', $r->{body});
    is_deeply([ map { [ $_->{payload}{sequence}, $_->{payload}{data} ] }
                grep { $_->{type} eq 'stream-chunk' } @m ],
              [ (map { [ $_ + 1, $lines[$_] ] } 0 .. 3), [ 5, '' ] ],
              'nd omni: a chunk per line, then the final one');
    is($m[0]{payload}{contentType}, 'application/x-ndjson',
       'nd omni: init contentType');
    ok(!exists $m[1]{payload}{event}, 'nd omni: no event name');
    is($m[-1]{payload}{status}, 'completed', 'nd omni: completed');

    $r = $t->get('/sub?id=nd', headers => { Accept => 'application/x-ndjson' });
    is($r->{headers}{'content-type'}, 'application/x-ndjson',
       'nd: Accept application/x-ndjson');
    @m = messages('ndjson', $r->{body});
    is_deeply([ map { $_->{payload}{sequence} }
                grep { $_->{type} eq 'stream-chunk' } @m ], [ 1 .. 5 ],
              'nd ndjson: chunks 1-4 and the final one');

    $r = $t->get('/sub?id=nd&format=passthrough&from=1');
    is($r->{headers}{'content-type'}, 'text/event-stream',
       'nd passthrough: SSE');
    @m = parse_sse($r->{body});
    is_deeply([ map { [ $_->{id}, $_->{data} ] } @m ],
              [ map { [ "nd:" . ($_ + 1), $lines[$_] ] } 1 .. 3 ],
              'nd passthrough from=1: an SSE event per line, numbered');
    is(join('', map { $_->{raw} } @m), $r->{body},
       'nd passthrough: nothing but those events');

    $r = $t->get('/sub?id=nd&format=jsonrpc&from=3');
    is_deeply([ map { [ $_->{result}{_sequence}, $_->{result}{_data},
                        $_->{result}{_isLast} ] } parse_ndjson($r->{body}) ],
              [ [ 4, $lines[3], $FALSE ], [ 5, '', $T ] ],
              'nd jsonrpc from=3: the last line and the end');
}

{
    my $r = $t->get('/sub?id=bin');
    is($r->{status}, 200, 'bin: 200');
    my @m = messages('omni', $r->{body});
    is($m[0]{type}, 'stream-init', 'bin: omni by default');
    is($m[0]{payload}{contentType}, 'application/octet-stream',
       'bin: init contentType');
    my @c = grep { $_->{type} eq 'stream-chunk' && !$_->{payload}{isFinal} }
            @m;
    is_deeply([ map { $_->{payload}{sequence} } @c ], [ 1 .. scalar @c ],
              'bin: chunks numbered from 1');
    is(scalar(grep { ($_->{payload}{encoding} // '') ne 'base64' } @c), 0,
       'bin: every chunk base64');
    ok(join('', map { decode_base64($_->{payload}{data}) } @c) eq $bin->{body},
       'bin: the chunks make up the body');
    is($m[-1]{payload}{status}, 'completed', 'bin: completed');
}

# --- history beyond buffer: the first retained, 410 before it ----------------

{
    my $r = $t->get('/sub-tiny?id=tt&format=ndjson');
    my @m = messages('ndjson', $r->{body});
    is($m[0]{payload}{metadata}{resumePosition}, $tt_first - 1,
       'tt: no start point: resumes before the first retained chunk');
    is_deeply([ map { $_->{payload}{sequence} }
                grep { $_->{type} eq 'stream-chunk' } @m ],
              [ $tt_first .. 31 ],
              "tt: chunks $tt_first-30 and the final one");

    $r = $t->get('/sub-tiny?id=tt&format=jsonrpc&from=' . ($tt_first - 1));
    is($r->{status}, 200, 'tt: from the one before the first retained: 200');
    is(scalar(parse_ndjson($r->{body})), 31 - $tt_first + 1,
       'tt: every retained chunk and the end');

    for my $case ([ 'from=0', '/sub-tiny?id=tt&from=0', {} ],
                  [ 'from=' . ($tt_first - 2),
                    '/sub-tiny?id=tt&from=' . ($tt_first - 2), {} ],
                  [ 'starting_after=1', '/sub-tiny?id=tt&starting_after=1',
                    {} ],
                  [ 'Last-Event-ID tt:3', '/sub-tiny',
                    { 'Last-Event-ID' => 'tt:3' } ])
    {
        my ($what, $path, $h) = @$case;
        my $r = $t->get($path, headers => $h);
        is($r->{status}, 410, "tt $what: 410");
        my $e = eval { json_decode($r->{body}) } || {};
        is($e->{error}{code}, 'CHUNKS_EXPIRED', "tt $what: CHUNKS_EXPIRED");
        like($e->{error}{message} // '', qr/\b$tt_first\b/,
             "tt $what: the message names the earliest retained sequence");
    }

    $r = $t->get('/sub-tiny?id=fin');
    is($r->{status}, 404, 'a stream of another zone is not found');
}

# --- answers that refuse -----------------------------------------------------

my $long = 'x' x 129;
# [ path, headers, status, code ]
my @refused = (
    [ '/sub?id=nope', {}, 404, 'INVALID_STREAM' ],
    [ '/by-name/nope', {}, 404, 'INVALID_STREAM' ],
    [ '/sub', { 'Last-Event-ID' => 'nope:3' }, 404, 'INVALID_STREAM' ],
    [ '/sub', {}, 400, 'INVALID_ID' ],
    [ '/sub?id=', {}, 400, 'INVALID_ID' ],
    [ '/sub?id=a%20b', {}, 400, 'INVALID_ID' ],
    [ '/sub?id=a:b', {}, 400, 'INVALID_ID' ],
    [ "/sub?id=$long", {}, 400, 'INVALID_ID' ],
    [ '/sub?id=fin&from=abc', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&from=-1', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&from=1.5', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&from=', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&from=99999999999999999999', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&from=LIVE', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&starting_after=x', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&format=xml', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin&format=', {}, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => 'fin' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => 'fin:' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => 'fin:x' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => 'fin:-1' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => ':3' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub', { 'Last-Event-ID' => 'a b:3' }, 400, 'INVALID_MESSAGE' ],
    [ '/sub?id=fin', { 'Last-Event-ID' => 'nd:1' }, 400, 'INVALID_MESSAGE' ],
    [ '/by-name/fin', { 'Last-Event-ID' => 'nd:1' }, 400, 'INVALID_MESSAGE' ],
);

for my $case (@refused) {
    my ($path, $h, $status, $code) = @$case;
    my $name = "$path" . (%$h ? " ($h->{'Last-Event-ID'})" : '');
    my $r = $t->get($path, headers => $h);
    is($r->{status}, $status, "$name: $status");
    is($r->{headers}{'content-type'}, 'application/json', "$name: JSON");
    my $e = eval { json_decode($r->{body}) } || {};
    is($e->{error}{code}, $code, "$name: $code");
    ok(length($e->{error}{message} // ''), "$name: a message");
}

# --- methods -----------------------------------------------------------------

{
    my $r = $t->head('/sub?id=fin');
    is($r->{status}, 200, 'HEAD: 200');
    is($r->{headers}{'content-type'}, 'text/event-stream', 'HEAD: type');
    is($r->{headers}{'stream-id'}, 'fin', 'HEAD: Stream-Id');
    is($r->{body}, '', 'HEAD: no body');
    ok($r->{complete}, 'HEAD: complete');

    $r = $t->head('/sub?id=nd&format=ndjson');
    is($r->{headers}{'content-type'}, 'application/x-ndjson',
       'HEAD ndjson: type');
    is($t->head('/sub?id=nope')->{status}, 404, 'HEAD of no stream: 404');

    for my $m (qw(POST PUT DELETE PATCH)) {
        my $r = $t->http($m, '/sub?id=fin', body => $m eq 'DELETE' ? undef
                                                                  : '{}');
        is($r->{status}, 405, "$m: 405");
    }
    is(zone()->{subscribers}, 0, 'after all that: no subscriber left');
}

# --- replay then live --------------------------------------------------------

# Reads several responses at once until all ended or the deadline passed.
# $c{name} = [ conn, 'sse' | 'lines' ]; returns name => [ [ time, item ] ].
sub collect {
    my ($conns, $timeout, $start) = @_;
    $start //= time;
    my $deadline = time + $timeout * $F;
    my %got;
    while (time < $deadline) {
        my $open = 0;
        for my $name (sort keys %$conns) {
            my ($c, $kind) = @{ $conns->{$name} };
            next if $c->complete || $c->eof;
            $open++;
            my @items = $kind eq 'sse' ? $c->read_events(1000, 0.01)
                                       : $c->read_lines(1000, 0.01);
            push @{ $got{$name} }, map { [ time - $start, $_ ] } @items;
        }
        last unless $open;
    }
    $_->[0]->close for values %$conns;
    return \%got;
}

{
    my $base = zone();
    my $prod = $t->stream('GET', '/p/sse?id=live',
                          headers => { 'X-Mock-Events' => 20,
                                       'X-Mock-Tps' => 10 },
                          timeout => 10);
    my @pev = $prod->read_events(5, 3);
    is(scalar @pev, 5, 'live: the producer runs');

    my $start = time;
    my %c = (
        replay => [ $t->stream('GET', '/sub?id=live&format=omni'), 'sse' ],
        live => [ $t->stream('GET', '/sub?id=live&from=live&format=ndjson'),
                  'lines' ],
        lid => [ $t->stream('GET', '/sub?log=lid',
                            headers => { 'Last-Event-ID' => 'live:3' }),
                 'sse' ],
        rpc => [ $t->stream('GET', '/sub?id=live&format=jsonrpc&from=2'),
                 'lines' ],
    );
    $_->[0]->read_headers(3) for values %c;

    my $r = $t->get('/sub?id=live&from=100');
    is($r->{status}, 400, 'live: from beyond the stream: 400');
    is((eval { json_decode($r->{body}) } || {})->{error}{code},
       'INVALID_MESSAGE', 'live: INVALID_MESSAGE');

    my $z = zone();
    is($z->{subscribers}, 5, 'live: the producer\'s client and 4 subscribers');
    is($z->{totals}{resumes} - $base->{totals}{resumes}, 3,
       'live: 3 of them resumed after a sequence > 0');
    is((stream_status('live') || {})->{subscribers}, 5,
       'live: the stream counts them');

    $c{producer} = [ $prod, 'sse' ];
    my $got = collect(\%c, 6, $start);

    my @p = (@pev, map { $_->[1] } @{ $got->{producer} || [] });
    is_deeply([ map { $_->{id} } @p ], [ map { "live:$_" } 1 .. 20 ],
              'live: the producer\'s client got 20 events');

    # replay: what was there at once, the rest as it came
    {
        my @items = @{ $got->{replay} || [] };
        my @m = map { json_decode($_->[1]{data}) } @items;
        my @chunks = grep { $m[$_]{type} eq 'stream-chunk'
                            && !$m[$_]{payload}{isFinal} } 0 .. $#m;
        is_deeply([ map { $m[$_]{payload}{sequence} } @chunks ], [ 1 .. 20 ],
                  'replay+live: chunks 1 to 20, once, in order');
        is_deeply([ map { $m[$_]{payload}{data} } @chunks ],
                  [ map { qq({"n":$_}) } 0 .. 19 ], 'replay+live: their data');
        my $at5 = @chunks >= 5 ? $items[ $chunks[4] ][0] : 99;
        ok($at5 < 0.5 * $F, sprintf('replay+live: chunks 1-5 replayed at '
                                    . 'once (%.2f s)', $at5));
        my $at20 = @chunks >= 20 ? $items[ $chunks[19] ][0] : 0;
        ok($at20 > 0.9, sprintf('replay+live: chunk 20 came live, after '
                                . '%.2f s', $at20));
        is($m[-2] && $m[-2]{payload}{sequence}, 21, 'replay+live: final 21');
        ok($m[-2] && $m[-2]{payload}{isFinal}, 'replay+live: isFinal');
        is($m[-1] && $m[-1]{payload}{status}, 'completed',
           'replay+live: completed');
        is($m[0] && $m[0]{payload}{metadata}{resumePosition}, 0,
           'replay+live: resumePosition 0');
    }

    # from=live: only what came after it attached
    my $live_from;
    {
        my @m = map { json_decode($_->[1]) } @{ $got->{live} || [] };
        $live_from = $m[0] ? $m[0]{payload}{metadata}{resumePosition} : -1;
        ok($live_from >= 5 && $live_from < 20,
           "from=live: attached after sequence $live_from");
        my @seq = map { $_->{payload}{sequence} }
                  grep { $_->{type} eq 'stream-chunk' } @m;
        is_deeply(\@seq, [ $live_from + 1 .. 21 ],
                  'from=live: only the chunks after it, and the final one');
        is($m[-1] && $m[-1]{payload}{status}, 'completed',
           'from=live: completed');
    }

    # Last-Event-ID, passthrough: the producer's own events after 3
    {
        my @ev = map { $_->[1] } @{ $got->{lid} || [] };
        is_deeply([ map { $_->{id} } @ev ], [ map { "live:$_" } 4 .. 20 ],
                  'Last-Event-ID live:3: events 4 to 20');
        is(join('', map { $_->{raw} } @ev),
           join('', map { $_->{raw} } @p[ 3 .. 19 ]),
           'Last-Event-ID live:3: byte for byte what the producer sent');
    }

    {
        my @m = map { json_decode($_->[1]) } @{ $got->{rpc} || [] };
        is_deeply([ map { $_->{result}{_sequence} } @m ], [ 3 .. 21 ],
                  'jsonrpc from=2: 3 to 20 and the last');
        ok(@m && $m[-1]{result}{_isLast}, 'jsonrpc from=2: _isLast');
    }

    # stored bytes of chunks: each event without its id line
    my $bytes = sub {
        my $s = 0;
        $s += length strip_id($p[ $_ - 1 ]{raw} // '') for @_;
        return $s;
    };

    my $deadline = time + 3 * $F;
    sleep 0.05 while zone()->{subscribers} && time < $deadline;
    is(zone()->{subscribers}, 0, 'live: every subscriber gone at the end');

    # the access log of those subscribers
    my %line;
    $deadline = time + 3 * $F;
    while (time < $deadline) {
        %line = log_lines();
        last if 3 == grep { exists $line{$_} }
                '/sub?id=live&format=omni', '/sub?log=lid',
                '/sub?id=live&from=live&format=ndjson';
        sleep 0.05;
    }
    is_deeply([ split /\|/, $line{'/sub?id=live&format=omni'} // '', -1 ],
              [ '/sub?id=live&format=omni', 200, 'live', 20, 20,
                $bytes->(1 .. 20), 'completed', '' ],
              'log: replay+live: sequence, chunks, bytes, status, not resumed');
    is_deeply([ split /\|/, $line{'/sub?log=lid'} // '', -1 ],
              [ '/sub?log=lid', 200, 'live', 20, 17, $bytes->(4 .. 20),
                'completed', 3 ], 'log: Last-Event-ID: resumed from 3');
    is_deeply([ split /\|/,
                $line{'/sub?id=live&from=live&format=ndjson'} // '', -1 ],
              [ '/sub?id=live&from=live&format=ndjson', 200, 'live', 20,
                20 - $live_from, $bytes->($live_from + 1 .. 20), 'completed',
                $live_from ], 'log: from=live: resumed from where it joined');
}

# the access log of the replays above
{
    my %line = log_lines();
    my $sum = sub { my $s = 0; $s += $fin_bytes[ $_ - 1 ] for @_; $s };
    is($line{'/sub?id=fin&format=ndjson'},
       '/sub?id=fin&format=ndjson|200|fin|5|5|' . $sum->(1 .. 5)
       . '|completed|', 'log: full replay');
    is($line{'/sub?id=fin&from=2'},
       '/sub?id=fin&from=2|200|fin|5|3|' . $sum->(3 .. 5) . '|completed|2',
       'log: from=2');
    is($line{'/sub?id=fin&from=live'},
       '/sub?id=fin&from=live|200|fin|5|0|0|completed|5',
       'log: from=live of a finished stream');
    is($line{'/sub?id=nope'}, '/sub?id=nope|404|-|-|-|-|-|-',
       'log: no stream, no values');
}

# --- max_subscribers=2: the producer's client is one -------------------------

{
    my $base = zone('lim');
    my $prod = $t->stream('GET', '/lim/sse?id=lim1',
                          headers => { 'X-Mock-Events' => 15,
                                       'X-Mock-Tps' => 10 },
                          timeout => 10);
    is(scalar($prod->read_events(1, 3)), 1, 'max_subscribers: producing');

    my $s1 = $t->stream('GET', '/sub-lim?id=lim1&format=ndjson');
    is(($s1->read_headers(3) || {})->{status}, 200,
       'max_subscribers: the first subscriber is in');
    is(scalar($s1->read_lines(2, 3)), 2, 'max_subscribers: it reads');

    my $r = $t->get('/sub-lim?id=lim1');
    is($r->{status}, 503, 'max_subscribers: the second one: 503');
    is((eval { json_decode($r->{body}) } || {})->{error}{code},
       'TOO_MANY_SUBSCRIBERS', 'max_subscribers: TOO_MANY_SUBSCRIBERS');
    my $z = zone('lim');
    is($z->{totals}{rejected} - $base->{totals}{rejected}, 1,
       'max_subscribers: totals.rejected counts it');
    is($z->{subscribers}, 2, 'max_subscribers: 2 subscribers');

    $s1->close;
    my $deadline = time + 3 * $F;
    sleep 0.05 while zone('lim')->{subscribers} > 1 && time < $deadline;
    is(zone('lim')->{subscribers}, 1, 'max_subscribers: one left');

    my $s2 = $t->stream('GET', '/sub-lim?id=lim1&format=ndjson', timeout => 5);
    is(($s2->read_headers(3) || {})->{status}, 200,
       'max_subscribers: room again');
    my @m = map { json_decode($_) } $s2->read_lines(100, 4);
    is($m[-1] && $m[-1]{payload}{status}, 'completed',
       'max_subscribers: it reads to the end');
    my @ev = $prod->read_events(100, 4);
    is(scalar(@ev), 14, 'max_subscribers: the producer\'s client too');
    $s2->close;
    $prod->close;
}

$t->stop;

done_testing;
