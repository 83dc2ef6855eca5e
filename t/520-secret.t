# streaming_secret: every stream gets a token (Stream-Token, stream-init,
# $streaming_token, SSE ids <id>:<seq>:<token>); subscribe, control and
# publish-to-existing need it (Bearer, Stream-Token, ?token=, or inside
# Last-Event-ID), else 403 FORBIDDEN.  A reused id gets a new token.

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use StreamTest;

my $F = StreamTest::timeout_factor();

my $t = StreamTest->new(workers => 2);
$t->start_mock_llm;
$t->http_config(<<'EOF');
streaming_zone llm 8m ttl=1s;
upstream mock { server 127.0.0.1:%%MOCK_PORT%%; }
log_format tok '$streaming_id $streaming_token';
EOF
$t->server_config(<<'EOF');
proxy_http_version 1.1;
streaming_secret "correct horse battery staple";
access_log %%PREFIX%%/logs/tok.log tok;

location ~ ^/p(/.*)$ {
    streaming llm;
    streaming_id $http_x_id;
    streaming_detach 5s;
    add_header X-Token $streaming_token;
    proxy_pass http://mock$1;
}
location = /sub { streaming_subscribe llm; }
location = /ctl { streaming_control llm; }
location = /pub { streaming_publish llm; }
location = /status { streaming_status; }
EOF
$t->start;

my $TOKEN = qr/^[A-Za-z0-9_-]{43}$/;

# --- a proxied stream ----------------------------------------------------------

my $r = $t->get('/p/sse', headers => { 'X-Id' => 's1', 'X-Mock-Events' => 4 });
is($r->{status}, 200, 'producer: 200');
my $tok = $r->{headers}{'stream-token'} // '';
like($tok, $TOKEN, 'Stream-Token: 43 characters of base64url (HMAC-SHA256)');
is($r->{headers}{'x-token'}, $tok, '$streaming_token is the same');
my @ev = parse_sse($r->{body});
is_deeply([ map { $_->{id} } @ev ], [ map { "s1:$_:$tok" } 1 .. 4 ],
          'SSE ids carry the token');

{
    my $s = $t->get('/sub?id=s1&from=0');
    is($s->{status}, 403, 'subscribe without the token: 403');
    is(json_decode($s->{body})->{error}{code}, 'FORBIDDEN', 'FORBIDDEN');

    $s = $t->get('/sub?id=s1&from=0&token=' . ('A' x 43));
    is($s->{status}, 403, 'a wrong token of the right length: 403');
    $s = $t->get('/sub?id=s1&from=0&token=short');
    is($s->{status}, 403, 'a short token: 403');

    $s = $t->get("/sub?id=s1&from=0&token=$tok");
    is($s->{status}, 200, '?token=: 200');
    is($s->{headers}{'stream-token'}, $tok, 'the subscriber gets Stream-Token');
    is_deeply([ map { $_->{id} } parse_sse($s->{body}) ],
              [ map { "s1:$_:$tok" } 1 .. 4 ], 'and ids with the token');

    $s = $t->get('/sub?id=s1&from=0&format=ndjson',
                 headers => { 'Authorization' => "Bearer $tok" });
    is($s->{status}, 200, 'Authorization: Bearer: 200');
    my @m = parse_ndjson($s->{body});
    is($m[0]{payload}{metadata}{token}, $tok, 'stream-init carries the token');

    $s = $t->get('/sub?id=s1&from=0', headers => { 'Stream-Token' => $tok });
    is($s->{status}, 200, 'Stream-Token header: 200');

    $s = $t->get('/sub?id=s1', headers => { 'Last-Event-ID' => "s1:2:$tok" });
    is($s->{status}, 200, 'Last-Event-ID with the token: 200');
    is_deeply([ map { $_->{id} } parse_sse($s->{body}) ],
              [ "s1:3:$tok", "s1:4:$tok" ], 'resumed after 2');

    $s = $t->get('/sub?id=s1', headers => { 'Last-Event-ID' => 's1:2:nope' });
    is($s->{status}, 403, 'Last-Event-ID with a wrong token: 403');
    $s = $t->get('/sub?id=s1', headers => { 'Last-Event-ID' => 's1:2' });
    is($s->{status}, 403, 'Last-Event-ID without a token: 403');

    $s = $t->get('/sub?id=nope&token=x');
    is($s->{status}, 404, 'an unknown stream is still 404');
}

# --- transparent resume on the producer location ----------------------------

{
    $t->mock_reset;
    my $s = $t->get('/p/sse', headers => { 'X-Id' => 's1',
                                           'Last-Event-ID' => "s1:3:$tok" });
    is($s->{status}, 200, 'producer location, Last-Event-ID with the token');
    is_deeply([ map { $_->{id} } parse_sse($s->{body}) ], [ "s1:4:$tok" ],
              'served from the zone');
    $s = $t->get('/p/sse', headers => { 'X-Id' => 's1',
                                        'Last-Event-ID' => 's1:3:bad' });
    is($s->{status}, 403, 'with a wrong token: 403');
    is($t->mock_stats->{requests}, 0, 'the upstream was not asked');
}

# --- control ------------------------------------------------------------------

{
    is($t->get('/ctl?id=s1')->{status}, 403, 'control without the token: 403');
    is($t->get("/ctl?id=s1&token=$tok")->{status}, 200,
       'control with the token: 200');
    is($t->delete('/ctl?id=s1')->{status}, 403, 'DELETE without it: 403');
}

# --- publish; a reused id gets a new token -------------------------------------

{
    my $p = $t->put('/pub?id=r1', '');
    is($p->{status}, 201, 'PUT: 201');
    my $j = json_decode($p->{body});
    my $t1 = $j->{token} // '';
    like($t1, $TOKEN, 'PUT answers with the token');
    is($p->{headers}{'stream-token'}, $t1, 'and Stream-Token');

    is($t->post('/pub?id=r1', 'x')->{status}, 403, 'POST without it: 403');
    is($t->post("/pub?id=r1&token=$t1", 'x')->{status}, 202, 'POST with it: 202');
    is($t->delete('/pub?id=r1')->{status}, 403, 'DELETE without it: 403');
    is($t->delete('/pub?id=r1', headers => { 'Authorization' => "Bearer $t1" })
          ->{status}, 200, 'DELETE with it: 200');

    # ttl=1s: the stream goes, the id is free again
    my $deadline = time + 5 * $F;
    sleep 0.1 while time < $deadline
                    && $t->get("/ctl?id=r1&token=$t1")->{status} != 404;
    $p = $t->put('/pub?id=r1', '');
    is($p->{status}, 201, 'the id again, once the old stream expired');
    my $t2 = json_decode($p->{body})->{token} // '';
    like($t2, $TOKEN, 'a token');
    isnt($t2, $t1, 'a new one: the stream\'s nonce is in it');
    is($t->post("/pub?id=r1&token=$t1", 'x')->{status}, 403,
       'the old token no longer works');
}

# --- configuration ---------------------------------------------------------------

my $log = $t->read_file('logs/tok.log');
like($log, qr/^s1 \Q$tok\E$/m, '$streaming_token in the access log');

$t->stop;

done_testing;
