# Producer, JSON formats: omni (SSE), ndjson and jsonrpc, every envelope
# field, CRC-32 checksums, base64 for bytes that are not UTF-8, and the
# framings: sse (data field value, event name), lines (NDJSON, CRLF too),
# bytes=size; passthrough of a body that is not SSE.

use strict;
use warnings;
use Test::More;
use Encode ();
use MIME::Base64 qw(decode_base64);
use Time::Local qw(timegm);
use Time::HiRes qw(time);

use lib 't/lib';
use StreamTest;

# CRC-32, IEEE 802.3 (reflected polynomial 0xEDB88320), as zlib's crc32()
my @CRC_TABLE = map {
    my $c = $_;
    $c = ($c & 1) ? (0xEDB88320 ^ ($c >> 1)) : ($c >> 1) for 1 .. 8;
    $c;
} 0 .. 255;

sub crc32_hex {
    my ($bytes) = @_;
    my $crc = 0xFFFFFFFF;
    $crc = $CRC_TABLE[ ($crc ^ $_) & 0xFF ] ^ ($crc >> 8)
        for unpack 'C*', $bytes;
    return sprintf '%08x', $crc ^ 0xFFFFFFFF;
}

is(crc32_hex('123456789'), 'cbf43926', 'crc32 of the check string');
is(crc32_hex(''), '00000000', 'crc32 of nothing');

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;

location /omni/ {
    streaming llm;
    streaming_format omni;
    proxy_pass http://mock/;
}

location /ndjson/ {
    streaming llm;
    streaming_format ndjson;
    proxy_pass http://mock/;
}

location /jsonrpc/ {
    streaming llm;
    streaming_format jsonrpc;
    proxy_pass http://mock/;
}

location /omni-lines/ {
    streaming llm;
    streaming_format omni;
    streaming_framing lines;
    proxy_pass http://mock/;
}

location /omni-b100/ {
    streaming llm;
    streaming_format omni;
    streaming_framing bytes=100;
    proxy_pass http://mock/;
}

location /ndjson-b100/ {
    streaming llm;
    streaming_format ndjson;
    streaming_framing bytes=100;
    proxy_pass http://mock/;
}

location /jsonrpc-b100/ {
    streaming llm;
    streaming_format jsonrpc;
    streaming_framing bytes=100;
    proxy_pass http://mock/;
}

location /pass/ { streaming llm; proxy_pass http://mock/; }

location /pass-b100/ {
    streaming llm;
    streaming_framing bytes=100;
    proxy_pass http://mock/;
}

location = /status { streaming_status; }
EOF
$t->start;

my $chat = '{"model":"mock-llm","stream":true,'
         . '"messages":[{"role":"user","content":"hi"}]}';

sub totals {
    my $j = json_decode($t->get('/status?format=json')->{body});
    return $j->{zones}{llm}{totals};
}

sub utf8_ok {
    my ($bytes) = @_;
    return eval { Encode::decode('UTF-8', "$bytes", Encode::FB_CROAK); 1 };
}

# the bytes a chunk message carries
sub chunk_bytes {
    my ($p) = @_;
    return decode_base64($p->{data}) if ($p->{encoding} // '') eq 'base64';
    return Encode::encode('UTF-8', $p->{data});
}

my $T = JSON::PP::true;
my $F = JSON::PP::false;

# The messages of one stream in omni/ndjson form.  $want: list of
# { data => bytes, event => name } for the framings that cut exactly, or
# { concat => bytes, max => size } for bytes framing.
sub check_omni {
    my ($name, $sid, $type, $msgs, $want, $stored) = @_;
    my $now = time;

    my @types = map { $_->{type} // '' } @$msgs;
    is($types[0], 'stream-init', "$name: stream-init first");
    is($types[-1], 'stream-status', "$name: stream-status last");
    is($types[-2], 'stream-chunk', "$name: final chunk before it");

    my ($prev_ts, %ids) = ('');
    for my $i (0 .. $#$msgs) {
        my $m = $msgs->[$i];
        is_deeply([ sort keys %$m ], [qw(id payload source timestamp type)],
                  "$name: message $i: envelope fields");
        ok(defined $m->{id} && !ref $m->{id} && length $m->{id},
           "$name: message $i: id");
        is($m->{source}, 'nginx', "$name: message $i: source");
        is($m->{payload}{streamId}, $sid, "$name: message $i: streamId");
        my $ts = $m->{timestamp} // '';
        if ($ts =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$/) {
            my $at = timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000;
            ok(abs($at - $now) < 10, "$name: message $i: timestamp is now");
        } else {
            fail("$name: message $i: timestamp '$ts' is ISO 8601 UTC with ms");
        }
        ok($ts ge $prev_ts, "$name: message $i: timestamps do not go back");
        $prev_ts = $ts;
        $ids{ $m->{id} }++ if $m->{type} ne 'stream-status';
    }
    is(scalar(grep { $_ > 1 } values %ids), 0,
       "$name: init and chunk messages have distinct ids");

    my $init = $msgs->[0]{payload};
    is($init->{contentType}, $type, "$name: init contentType");
    is_deeply($init->{metadata}, { resumable => $T, resumePosition => 0 },
              "$name: init metadata");
    ok(!exists $init->{totalSize}, "$name: no totalSize for a chunked body");

    my @chunks = map { $_->{payload} }
                 grep { $_->{type} eq 'stream-chunk' } @$msgs;
    my $final = pop @chunks;
    my $n = scalar @chunks;
    my ($all, $bad) = ('', 0);

    for my $i (0 .. $#chunks) {
        my $p = $chunks[$i];
        my $seq = $i + 1;
        is($p->{sequence}, $seq, "$name: chunk $seq: sequence");
        is($p->{isFinal}, $F, "$name: chunk $seq: isFinal false");
        my $bytes = chunk_bytes($p);
        $all .= $bytes;
        if (utf8_ok($bytes)) {
            ok(!exists $p->{encoding}, "$name: chunk $seq: UTF-8, no encoding");
        } else {
            is($p->{encoding}, 'base64', "$name: chunk $seq: base64");
            is($p->{data}, MIME::Base64::encode_base64($bytes, ''),
               "$name: chunk $seq: canonical base64");
        }
        is($p->{checksum}, crc32_hex($bytes), "$name: chunk $seq: checksum");

        if (ref $want eq 'ARRAY') {
            my $w = $want->[$i] || {};
            is($bytes, $w->{data}, "$name: chunk $seq: data");
            is($p->{event}, $w->{event}, "$name: chunk $seq: event");
            is_deeply([ sort keys %$p ],
                      [ sort(qw(streamId sequence data isFinal checksum),
                             (defined $w->{event} ? 'event' : ()),
                             (exists $p->{encoding} ? 'encoding' : ())) ],
                      "$name: chunk $seq: payload fields");
        } else {
            $bad++ if length $bytes > $want->{max} || length $bytes == 0;
        }
    }

    if (ref $want eq 'ARRAY') {
        is($n, scalar @$want, "$name: one chunk per upstream unit");
    } else {
        is($bad, 0, "$name: every chunk has 1 to $want->{max} bytes");
        is(length $all, length $want->{concat}, "$name: every byte arrived");
        ok($all eq $want->{concat}, "$name: the chunks make up the body");
    }

    is_deeply($final, { streamId => $sid, sequence => $n + 1, data => '',
                        isFinal => $T, checksum => '00000000' },
              "$name: final chunk: empty, isFinal, sequence " . ($n + 1));

    my $st = $msgs->[-1]{payload};
    is($st->{status}, 'completed', "$name: status completed");
    ok(!exists $st->{error}, "$name: no error");
    is_deeply($st->{progress}, { bytesTransferred => $stored },
              "$name: progress.bytesTransferred = $stored stored bytes");
    my $cp = $st->{checkpoint} || {};
    is($cp->{sequence}, $n, "$name: checkpoint.sequence");
    is($cp->{bytesTransferred}, $stored, "$name: checkpoint.bytesTransferred");
    ok(($cp->{timestamp} // 0) =~ /^\d{13}$/
       && abs($cp->{timestamp} / 1000 - $now) < 10,
       "$name: checkpoint.timestamp is Unix ms");
    is(scalar @$msgs, $n + 3, "$name: init, $n chunks, final, status");
}

# what the upstream sends, straight from the mock
sub upstream {
    my ($method, $path, $body) = @_;
    my $r = $t->http($method, $path, body => $body, port => $t->mock_port);
    die "mock: $path: $r->{status}" unless $r->{status} == 200;
    return $r;
}

sub sse_units {
    my ($r) = @_;
    return [ map { { data => $_->{data}, event => $_->{event} } }
             grep { defined $_->{data} } parse_sse($r->{body}) ];
}

sub line_units {
    my ($r) = @_;
    return [ map { { data => $_ } } split /\r?\n/, $r->{body} ];
}

# [ name, method, path, body, content type, units | bytes framing size ]
my @cases = (
    [ 'sse', GET => '/sse?events=5', undef, 'text/event-stream', \&sse_units ],
    [ 'sse named, ids', GET => '/sse?events=3&named=1&ids=1', undef,
      'text/event-stream', \&sse_units ],
    [ 'sse multi-line', GET => '/sse?events=3&multiline=1', undef,
      'text/event-stream', \&sse_units ],
    [ 'sse multi-line CRLF', GET => '/sse?events=3&multiline=1&crlf=1&named=1',
      undef, 'text/event-stream', \&sse_units ],
    [ 'chat', POST => '/v1/chat/completions?tokens=3', $chat,
      'text/event-stream', \&sse_units ],
    [ 'lines (auto)', GET => '/ndjson?events=4', undef,
      'application/x-ndjson', \&line_units ],
    [ 'lines CRLF (auto)', GET => '/ndjson?events=3&crlf=1', undef,
      'application/x-ndjson', \&line_units ],
    [ 'lines, split reads', GET => '/ndjson?events=3&split=5', undef,
      'application/x-ndjson', \&line_units ],
);

for my $case (@cases) {
    my ($what, $method, $path, $body, $type, $units) = @$case;
    my $up = upstream($method, $path, $body);
    my $want = $units->($up);
    # the chat's "created" and "chatcmpl-<n>" differ between requests
    my $chatty = $path =~ /chat/;

    for my $fmt (qw(omni ndjson jsonrpc)) {
        my $name = "$what, $fmt";
        my $before = totals();
        my $r = $t->http($method, "/$fmt$path", body => $body);
        my $after = totals();

        is($r->{status}, 200, "$name: 200");
        ok($r->{complete}, "$name: ends properly");
        my $sid = $r->{headers}{'stream-id'} // '';
        like($sid, qr/^[A-Za-z0-9_-]{22}$/, "$name: Stream-Id");
        is($r->{headers}{'cache-control'}, 'no-cache', "$name: no-cache");
        is($r->{headers}{'content-type'},
           $fmt eq 'omni' ? 'text/event-stream' : 'application/x-ndjson',
           "$name: Content-Type");
        ok(!exists $r->{headers}{'content-length'}, "$name: no Content-Length");
        is($after->{chunks} - $before->{chunks}, scalar @$want,
           "$name: the zone stored every unit");
        my $stored = $after->{bytes} - $before->{bytes};

        my $w = $want;
        if ($chatty) {
            # compare with what this request's upstream sent: same shape
            $w = [ map { { %$_ } } @$want ];
        }

        if ($fmt eq 'jsonrpc') {
            my @lines = split /\n/, $r->{body}, -1;
            is(pop @lines, '', "$name: ends with a line end");
            my @m = map { eval { json_decode($_) } } @lines;
            is(scalar @m, scalar @$w + 1,
               "$name: a line per chunk, and the last");
            for my $i (0 .. $#m) {
                my $last = $i == $#m;
                my $data = $last ? '' : $m[$i]{result}{_data};
                my $wd = $last ? '' : $w->[$i]{data};
                ($data, $wd) = map { s/chatcmpl-\d+/chatcmpl-N/r
                                     =~ s/"created":\d+/"created":0/r }
                               ($data // '', $wd // '') if $chatty;
                is_deeply($m[$i],
                          { jsonrpc => '2.0', id => undef,
                            result => { _streaming => $T,
                                        _sequence => $i + 1,
                                        _isLast => $last ? $T : $F,
                                        _data => $m[$i]{result}{_data} } },
                          "$name: line " . ($i + 1) . ': JSON-RPC result');
                is(Encode::encode('UTF-8', $data), $wd,
                   "$name: line " . ($i + 1) . ': _data');
            }
            next;
        }

        my @msgs;
        if ($fmt eq 'omni') {
            my @ev = parse_sse($r->{body});
            is(join('', map { $_->{raw} } @ev), $r->{body},
               "$name: nothing but SSE events");
            for my $ev (@ev) {
                my $m = eval { json_decode($ev->{data}) } || {};
                push @msgs, $m;
                is($ev->{event}, $m->{type}, "$name: event: $m->{type}");
                is($ev->{id}, $m->{type} eq 'stream-chunk'
                                  ? "$sid:$m->{payload}{sequence}" : undef,
                   "$name: $m->{type}: SSE id");
            }
        } else {
            @msgs = eval { parse_ndjson($r->{body}) };
            is($@, '', "$name: every line is JSON");
            like($r->{body}, qr/\n\z/, "$name: the last line ends");
        }

        if ($chatty) {
            for my $m (@msgs) {
                my $p = $m->{payload};
                next unless $m->{type} eq 'stream-chunk' && !$p->{isFinal};
                my $norm = $p->{data} =~ s/chatcmpl-\d+/chatcmpl-N/r
                           =~ s/"created":\d+/"created":0/r;
                my $i = $p->{sequence} - 1;
                is($norm, ($w->[$i]{data} // '')
                          =~ s/chatcmpl-\d+/chatcmpl-N/r
                          =~ s/"created":\d+/"created":0/r,
                   "$name: chunk $p->{sequence}: the event's data");
                $w->[$i]{data} = Encode::encode('UTF-8', $p->{data});
            }
        }

        check_omni($name, $sid, $type, \@msgs, $w, $stored);
    }
}

# bytes framing: /bytes in pieces of 300, cut at 100; not UTF-8, then text
for my $text (0, 1) {
    my $path = "/bytes?total=1000&size=300&text=$text";
    my $body = upstream(GET => $path)->{body};
    is(length $body, 1000, "bytes text=$text: the mock sends 1000 bytes");

    for my $fmt (qw(omni ndjson)) {
        my $name = "bytes=100 text=$text, $fmt";
        my $before = totals();
        my $r = $t->get("/$fmt-b100$path");
        my $after = totals();
        is($r->{status}, 200, "$name: 200");
        ok($r->{complete}, "$name: ends properly");
        my $sid = $r->{headers}{'stream-id'} // '';
        my @msgs = $fmt eq 'omni'
                 ? map { json_decode($_->{data}) } parse_sse($r->{body})
                 : parse_ndjson($r->{body});
        check_omni($name, $sid, 'application/octet-stream', \@msgs,
                   { concat => $body, max => 100 },
                   $after->{bytes} - $before->{bytes});
        is($after->{bytes} - $before->{bytes}, 1000,
           "$name: 1000 bytes stored");
        my @enc = map { $_->{payload}{encoding} // 'none' }
                  grep { $_->{type} eq 'stream-chunk'
                         && !$_->{payload}{isFinal} } @msgs;
        is_deeply([ sort keys %{{ map { $_ => 1 } @enc }} ],
                  [ $text ? 'none' : 'base64' ],
                  "$name: " . ($text ? 'text as is' : 'every chunk base64'));
    }

    my $r = $t->get("/jsonrpc-b100$path");
    my @m = parse_ndjson($r->{body});
    my $all = join '', map { $_->{result}{_data} // '' } @m[0 .. $#m - 1];
    if ($text) {
        is($all, $body, 'bytes=100 text=1, jsonrpc: _data makes up the body');
        is(scalar(grep { length $_->{result}{_data} > 100 } @m), 0,
           'bytes=100 text=1, jsonrpc: at most 100 bytes per line');
    }
    is($m[-1]{result}{_isLast}, $T, "bytes=100 text=$text, jsonrpc: last line");
}

# auto framing of a binary body: bytes, cut at 16k
{
    my $body = upstream(GET => '/bytes?total=40000&size=10000')->{body};
    my $r = $t->get('/omni/bytes?total=40000&size=10000');
    my @msgs = map { json_decode($_->{data}) } parse_sse($r->{body});
    my $sid = $r->{headers}{'stream-id'};
    check_omni('bytes (auto)', $sid, 'application/octet-stream', \@msgs,
               { concat => $body, max => 16384 }, 40000);
}

# explicit lines framing on an NDJSON body
{
    my $up = upstream(GET => '/ndjson?events=3&crlf=1');
    my $r = $t->get('/omni-lines/ndjson?events=3&crlf=1');
    my @msgs = map { json_decode($_->{data}) } parse_sse($r->{body});
    check_omni('lines (explicit), CRLF', $r->{headers}{'stream-id'},
               'application/x-ndjson', \@msgs, line_units($up), 21);
}

# passthrough of a body that is not SSE: unchanged, yet stored
for my $case ([ '/pass/ndjson?events=4&crlf=1', 'application/x-ndjson', 4,
                length('{"n":0}') * 4 ],
              [ '/pass-b100/bytes?total=1000&size=300',
                'application/octet-stream', undef, 1000 ])
{
    my ($path, $type, $chunks, $bytes) = @$case;
    (my $up_path = $path) =~ s{^/[^/]+}{};
    my $up = upstream(GET => $up_path);
    my $before = totals();
    my $r = $t->get($path);
    my $after = totals();
    is($r->{status}, 200, "passthrough $path: 200");
    ok($r->{body} eq $up->{body}, "passthrough $path: body unchanged");
    is($r->{headers}{'content-type'}, $type, "passthrough $path: type kept");
    like($r->{headers}{'stream-id'} // '', qr/^[A-Za-z0-9_-]{22}$/,
         "passthrough $path: Stream-Id");
    is($after->{created} - $before->{created}, 1,
       "passthrough $path: a stream");
    if (defined $chunks) {
        is($after->{chunks} - $before->{chunks}, $chunks,
           "passthrough $path: a chunk per line");
    } else {
        ok($after->{chunks} - $before->{chunks} >= 10,
           "passthrough $path: chunks of at most 100 bytes");
    }
    is($after->{bytes} - $before->{bytes}, $bytes,
       "passthrough $path: $bytes bytes stored");
}

{
    my $j = json_decode($t->get('/status?format=json')->{body});
    my $s = $j->{zones}{llm}{streams};
    is($s->{active} + $s->{error} + $s->{cancelled} + $s->{paused}, 0,
       'status: every stream completed');
}

$t->stop;

done_testing;
