# Every configuration in conf-examples/ is valid as it stands (nginx -t on
# the file itself), and works when run (its http {} block, on test ports).

use strict;
use warnings;
use Test::More;

use lib 't/lib';
use StreamTest;

my @files = sort glob("$StreamTest::REPO/conf-examples/*.conf");
ok(scalar @files >= 2, 'conf-examples/ has configurations');

# The http {} block of a configuration, found by matching braces.
sub http_block {
    my ($text) = @_;
    $text =~ s/#[^\n]*//g;
    $text =~ /\bhttp\s*\{/g or return;
    my ($depth, $start) = (1, pos $text);
    while ($text =~ /([{}])/g) {
        $depth += $1 eq '{' ? 1 : -1;
        return substr($text, $start, pos($text) - 1 - $start) if $depth == 0;
    }
    return;
}

for my $file (@files) {
    my $name = (split m{/}, $file)[-1];
    my $text = do { local (@ARGV, $/) = $file; <> };

    my $t = StreamTest->new(workers => 1, name => $name);

    # 1. the file itself
    my $prefix = $t->prefix;
    mkdir "$prefix/modules";
    if ($t->module_path ne '') {
        symlink $t->module_path, "$prefix/modules/ngx_http_streaming_module.so"
            or die "symlink: $!";
    }
    my $conf = $text;
    # a module linked into the binary (the ASan build) needs no load_module
    $conf =~ s/^load_module[^\n]*\n//m if $t->module_path eq '';
    # an unprivileged run cannot write Debian's default temp paths
    $conf =~ s/^(\s*http\s*\{)/$1\n    client_body_temp_path $prefix\/tmp\/b;\n    proxy_temp_path $prefix\/tmp\/p;\n    fastcgi_temp_path $prefix\/tmp\/f;\n    uwsgi_temp_path $prefix\/tmp\/u;\n    scgi_temp_path $prefix\/tmp\/s;/m
        if $> != 0;
    open my $fh, '>', "$prefix/conf/example.conf" or die $!;
    print $fh $conf;
    close $fh;
    local $ENV{UBSAN_OPTIONS} =
        "suppressions=$StreamTest::REPO/util/sanitizers/ubsan.supp";
    local $ENV{ASAN_OPTIONS} = 'detect_leaks=0';
    my $out = `${\ $t->binary} -t -q -p $prefix/ -c $prefix/conf/example.conf -e $prefix/logs/example-t.log 2>&1`;
    is($?, 0, "$name: nginx -t accepts the file as it is") or diag $out;

    # 2. its http {} block, run, on the test's ports
    my $http = http_block($text);
    ok(defined $http, "$name: has an http {} block") or next;
    my $mock = $text =~ /127\.0\.0\.1:80(?:81|00)\b/;
    $t->start_mock_llm if $mock;
    $http =~ s/127\.0\.0\.1:8080/127.0.0.1:%%PORT2%%/g;
    $http =~ s/127\.0\.0\.1:80(?:81|00)\b/127.0.0.1:%%MOCK_PORT%%/g;
    $t->http_config($http);
    $t->start;

    my $port = $t->port(2);
    my $r = $t->get('/streaming-status?format=json', port => $port);
    is($r->{status}, 200, "$name: status endpoint answers");
    my $j = eval { json_decode($r->{body}) } || {};
    ok(scalar keys %{ $j->{zones} || {} }, "$name: status lists its zones");

    if ($mock) {
        my $body = '{"model":"mock-llm","stream":true,'
                 . '"messages":[{"role":"user","content":"hi"}]}';
        $r = $t->post('/v1/chat/completions?tokens=5', $body, port => $port,
                      headers => { 'Content-Type' => 'application/json' });
        is($r->{status}, 200, "$name: chat completion through nginx");
        my @ev = parse_sse($r->{body});
        my $text = join '', map {
            my $d = eval { json_decode($_->{data}) };
            $d && $d->{choices} && @{ $d->{choices} }
                ? ($d->{choices}[0]{delta}{content} // '') : '';
        } grep { defined $_->{data} && $_->{data} ne '[DONE]' } @ev;
        is($text, 'tok0 tok1 tok2 tok3 tok4 ', "$name: every token arrived");
        is($ev[-1]{data}, '[DONE]', "$name: ends with [DONE]");

        # a streaming location: the stream is stored and can be read again
        if (my $sid = $r->{headers}{'stream-id'}) {
            my ($sub) = $http =~ m{location\s+(/\S+/)\s*\{\s*streaming_subscribe};
            ok($sub, "$name: has a subscribe location");
            my $again = $t->get("${sub}?id=$sid", port => $port);
            is($again->{status}, 200, "$name: the stream reads again");
            is(scalar(grep { defined $_->{data} } parse_sse($again->{body})),
               scalar(@ev), "$name: every event stored");
        }
    }

    $t->stop;
}

done_testing;
