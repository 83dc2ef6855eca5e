# Bad input of every kind, to every endpoint that exists: the documented
# answer, nothing stored lost, and a clean error log (the harness checks it
# at stop: no alert, crit or sanitizer report).

use strict;
use warnings;
use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep);

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 4m;
EOF
$t->server_config(<<'EOF');
location /v1/ {
    streaming llm;
    streaming_id $http_x_stream_id;
    proxy_pass http://127.0.0.1:%%MOCK_PORT%%;
    proxy_http_version 1.1;
}
location /gen/ {
    streaming llm;
    proxy_pass http://127.0.0.1:%%MOCK_PORT%%/;
}
location /rpc/ {
    streaming llm;
    streaming_format jsonrpc;
    streaming_max_chunk 64k;
    proxy_pass http://127.0.0.1:%%MOCK_PORT%%/;
}
location /sub {
    streaming_subscribe llm;
}
location = /status {
    streaming_status;
}
location = /ctl {
    streaming_control llm;
    streaming_max_chunk 16k;
}
location = /pub {
    streaming_publish llm;
    streaming_max_chunk 16k;
}
location = /tok {
    streaming_subscribe llm;
    streaming_secret s;
}
EOF
$t->start;

my $chat = '{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}';

sub error_code {
    my ($r) = @_;
    my $j = eval { json_decode($r->{body}) };
    return $j && $j->{error} ? $j->{error}{code} : "(not an error body: "
        . substr($r->{body} // '', 0, 80) . ")";
}

# a stream that everything below must leave intact
my $r = $t->post('/v1/chat/completions?tokens=5', $chat,
                 headers => { 'X-Stream-Id' => 'keep' });
is($r->{status}, 200, 'a stream to keep');
my @kept = parse_sse($r->{body});
is(scalar @kept, 8, 'it has 8 events');

# --- ids -------------------------------------------------------------------

for my $id ('a b', 'a:b', 'a/b', 'a%00b', 'x' x 129, '%2e%2e', 'é', 'a"b',
            "a\tb")
{
    my $name = $id =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ger;
    $name = substr($name, 0, 20);
    my $before = $t->mock_stats->{requests};

    $r = $t->post('/v1/chat/completions', $chat,
                  headers => { 'X-Stream-Id' => $id });
    is($r->{status}, 400, "producer id '$name': 400");
    is(error_code($r), 'INVALID_ID', "producer id '$name': INVALID_ID");
    is($t->mock_stats->{requests}, $before, "producer id '$name': no upstream");

    (my $q = $id) =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord $1)/ge;
    $r = $t->get("/sub?id=$q");
    is($r->{status}, 400, "subscribe id '$name': 400");
    is(error_code($r), 'INVALID_ID', "subscribe id '$name': INVALID_ID");

    $r = $t->get("/status?id=$q");
    is($r->{status}, 400, "status id '$name': 400");
}

is($t->get('/sub')->{status}, 400, 'subscribe without an id: 400');
is($t->get('/sub?id=')->{status}, 400, 'subscribe with an empty id: 400');

# --- Last-Event-ID -----------------------------------------------------------

for my $lei ('', ':', 'keep', 'keep:', ':5', 'keep:-1', 'keep:1x', 'keep:+1',
             'keep: 1', 'keep:99999999999999999999', 'keep:0x10', 'a b:1',
             'keep:1.5', 'kee p:1')
{
    $r = $t->get('/sub', headers => { 'Last-Event-ID' => $lei });
    is($r->{status}, 400, "subscribe Last-Event-ID '$lei': 400");
    is(error_code($r), 'INVALID_MESSAGE',
       "subscribe Last-Event-ID '$lei': INVALID_MESSAGE");
}

$r = $t->get('/sub?id=other', headers => { 'Last-Event-ID' => 'keep:2' });
is(error_code($r), 'INVALID_MESSAGE', 'Last-Event-ID of another stream: 400');

# a producer location takes a Last-Event-ID not of the <id>:<n> form for
# the upstream's own business: it streams as usual
{
    my $before = $t->mock_stats->{requests};
    $r = $t->post('/gen/v1/chat/completions?tokens=2', $chat,
                  headers => { 'Last-Event-ID' => 'keep:99999999999999999999' });
    is($r->{status}, 200, 'producer, overflowing Last-Event-ID: a new stream');
    is($t->mock_stats->{requests}, $before + 1,
       'producer, overflowing Last-Event-ID: the upstream is asked');

    $r = $t->post('/gen/v1/chat/completions', $chat,
                  headers => { 'Last-Event-ID' => 'nosuch:3' });
    is($r->{status}, 204, 'producer, unknown stream: 204');
}

# --- start points and parameters ---------------------------------------------

for my $from ('-1', 'abc', '1e5', '18446744073709551616', '9223372036854775808',
              '', '%201', '0x1', '%31')
{
    $r = $t->get("/sub?id=keep&from=$from");
    is($r->{status}, 400, "from='$from': 400");
    is(error_code($r), 'INVALID_MESSAGE', "from='$from': INVALID_MESSAGE");
}

$r = $t->get('/sub?id=keep&starting_after=-5');
is($r->{status}, 400, 'starting_after=-5: 400');

$r = $t->get('/sub?id=keep&from=100');
is($r->{status}, 204, 'from beyond a finished stream: 204');

for my $f ('xml', 'OMNI', '', 'ndjson%00') {
    $r = $t->get("/sub?id=keep&format=$f");
    is($r->{status}, 400, "format='$f': 400");
}

$r = $t->get('/status?format=yaml');
is($r->{status}, 400, 'status format=yaml: 400');
$r = $t->get('/status?id=nosuch');
is($r->{status}, 404, 'status of an unknown stream: 404');
is(error_code($r), 'INVALID_STREAM', 'status of an unknown stream: INVALID_STREAM');

# --- methods -------------------------------------------------------------------

for my $m (qw(POST PUT DELETE PATCH OPTIONS)) {
    is($t->http($m, '/sub?id=keep', body => 'x')->{status}, 405,
       "subscribe $m: 405");
}

# --- JSON-RPC bodies ---------------------------------------------------------

my @bodies = (
    [ 'not JSON', 'this is not json', 'null' ],
    [ 'truncated JSON', '{"jsonrpc":"2.0","id":7,', 'null' ],
    [ 'an array', '[{"jsonrpc":"2.0","id":1}]', 'null' ],
    [ 'id is an object', '{"jsonrpc":"2.0","id":{"a":1}}', 'null' ],
    [ 'duplicate id', '{"id":1,"id":2}', 'null' ],
    [ 'deeply nested', '{"id":3,"x":' . ('[' x 5000) . (']' x 5000) . '}', 'null|3' ],
    [ 'invalid UTF-8', qq({"id":"\xff\xfe"}), 'null' ],
    [ 'over streaming_max_chunk', '{"id":9,"pad":"' . ('a' x 70000) . '"}', 'null' ],
    [ 'a string id', '{"jsonrpc":"2.0","id":"q-1"}', '"q-1"' ],
);

for my $b (@bodies) {
    my ($name, $body, $want) = @$b;
    $r = $t->post('/rpc/v1/chat/completions?tokens=1', $body);
    is($r->{status}, 200, "jsonrpc, $name: streams");
    my @l = eval { parse_ndjson($r->{body}) };
    my $id = @l ? json_encode($l[0]{id}) : '(nothing)';
    like($id, qr/^(?:$want)$/, "jsonrpc, $name: id $id");
}

# --- control and publish -------------------------------------------------------

my @control = (
    [ 'not JSON', 'pause', 400, 'INVALID_MESSAGE' ],
    [ 'invalid UTF-8', qq({"command":"pa\xffuse"}), 400, 'INVALID_MESSAGE' ],
    [ 'NUL escape', '{"command":"pause\u0000"}', 400, 'INVALID_MESSAGE' ],
    [ 'deeply nested', '{"command":"pause","x":' . ('[' x 5000)
                       . (']' x 5000) . '}', 400, 'INVALID_MESSAGE' ],
    [ 'duplicate member', '{"command":"pause","command":"cancel"}', 400,
      'INVALID_MESSAGE' ],
    [ 'huge sequence', '{"command":"ack","sequence":1e400,"subscriberId":"1"}',
      400, 'INVALID_MESSAGE' ],
    [ 'an id too long', '{"command":"ack","sequence":1,"subscriberId":"'
                        . ('9' x 200) . '"}', 400, 'INVALID_MESSAGE' ],
    [ 'over streaming_max_chunk', '{"command":"pause","r":"' . ('a' x 17000)
                                  . '"}', 413, 'PAYLOAD_TOO_LARGE' ],
    [ 'a finished stream', '{"command":"pause"}', 409, 'INVALID_STATE' ],
);
for my $c (@control) {
    my ($name, $body, $status, $code) = @$c;
    $r = $t->post('/ctl?id=keep', $body);
    is($r->{status}, $status, "control, $name: $status");
    is(error_code($r), $code, "control, $name: $code");
}
for my $m (qw(PUT PATCH OPTIONS)) {
    is($t->http($m, '/ctl?id=keep', body => 'x')->{status}, 405,
       "control $m: 405");
}
is($t->get('/ctl?id=' . ('x' x 129))->{status}, 400, 'control: id too long');

my @publish = (
    [ 'PUT', '/pub?id=keep', '', 409, 'STREAM_EXISTS' ],
    [ 'POST', '/pub?id=keep', 'more', 409, 'INVALID_STATE' ],
    [ 'PUT', '/pub?id=a%20b', '', 400, 'INVALID_ID' ],
    [ 'PUT', '/pub?id=m1', '{"totalSize":1.5}', 400, 'INVALID_MESSAGE' ],
    [ 'PUT', '/pub?id=m1', "{\"contentType\":\"\xc3(\"}", 400, 'INVALID_MESSAGE' ],
    [ 'POST', '/pub?id=m1', 'x' x 17000, 413, 'PAYLOAD_TOO_LARGE' ],
    [ 'DELETE', '/pub?id=m1', '', 404, 'INVALID_STREAM' ],
    [ 'DELETE', '/pub?id=keep&status=error&code=' . ('A' x 33), '', 400,
      'INVALID_MESSAGE' ],
);
for my $c (@publish) {
    my ($m, $path, $body, $status, $code) = @$c;
    $r = $t->http($m, $path, body => $body);
    is($r->{status}, $status, "publish $m $path: $status");
    is(error_code($r), $code, "publish $m: $code");
}
is($t->get('/ctl?id=m1')->{status}, 404, 'publish: nothing was created');

for my $tok ('', 'x' x 43, 'x' x 5000, '%00', "a\x01b") {
    my $r = $t->get('/tok?id=keep&from=0',
                    headers => { 'Stream-Token' => $tok });
    is($r->{status}, 403, 'a bad token (' . length($tok) . ' bytes): 403');
}

# --- broken requests -----------------------------------------------------------

sub raw {
    my ($bytes) = @_;
    my $s = IO::Socket::IP->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                                Timeout => 5) or die "connect: $@";
    print $s $bytes;
    shutdown $s, 1;
    local $/;
    my $res = <$s> // '';
    close $s;
    return $res;
}

like(raw("POST /rpc/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
         . "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"id\""),
     qr/^(?:HTTP\/1\.1 400|)/, 'truncated chunked body: 400 or closed');
like(raw("POST /rpc/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
         . "Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
     qr/^HTTP\/1\.1 400/, 'malformed chunked body: 400');
like(raw("GET /sub?id=keep HTTP/1.1\r\nHost: x\r\nLast-Event-ID: keep\x00:1\r\n\r\n"),
     qr/^HTTP\/1\.1 400/, 'NUL in a header: 400');
like(raw("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
         . "Content-Length: 10\r\n\r\nabc"),
     qr/^(?:HTTP\/1\.1 \d{3}|)/, 'a body shorter than Content-Length: no crash');

# --- nothing stored was lost ---------------------------------------------------

$r = $t->get('/sub?id=keep&from=0');
is($r->{status}, 200, 'the kept stream still reads');
my @again = parse_sse($r->{body});
is_deeply([ map { $_->{raw} } @again ], [ map { $_->{raw} } @kept ],
          'the kept stream is intact, byte for byte');

my $st = json_decode($t->get('/status?id=keep')->{body});
is($st->{stream}{status}, 'completed', 'the kept stream: completed');
is($st->{stream}{sequence}, 8, 'the kept stream: 8 chunks');

$t->stop;

done_testing;
