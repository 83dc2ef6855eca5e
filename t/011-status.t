# streaming_status: plain text, JSON and Prometheus, with the zones' real
# sizes and every counter present.

use strict;
use warnings;
use Test::More;

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 2);
$t->http_config(<<'EOF');
streaming_zone llm 4m max_streams=100 max_subscribers=7 buffer=128k ttl=90s
               idle_timeout=2m;
streaming_zone other 1m;
EOF
$t->server_config(<<'EOF');
location = /status { streaming_status; }
location /srv { return 200 "ok\n"; }
EOF
$t->start;

my %size = (llm => 4 * 1024 * 1024, other => 1024 * 1024);
my @status = qw(active paused completed error cancelled);
my @totals = qw(created chunks bytes resumes evicted_chunks rejected);

my ($nginx_version) = `@{[ $t->binary ]} -v 2>&1` =~ m{nginx/(\S+)};

# JSON, by query and by Accept
for my $how ([ '/status?format=json' ],
             [ '/status', headers => { Accept => 'application/json' } ],
             [ '/status', headers => {
                   Accept => 'text/html;q=0.9, application/json' } ])
{
    my ($path, %opt) = @$how;
    my $r = $t->get($path, %opt);
    my $what = "$path " . join ' ', %{ $opt{headers} || {} };

    is($r->{status}, 200, "json status 200: $what");
    like($r->{headers}{'content-type'}, qr{^application/json}, "json type: $what");
    is($r->{headers}{'cache-control'}, 'no-cache', "no-cache: $what");

    my $j = eval { json_decode($r->{body}) };
    ok($j, "valid JSON: $what") or diag "$@ $r->{body}";
    next unless $j;

    is_deeply([ sort keys %$j ], [qw(nginx_version version zones)], 'top keys');
    like($j->{version}, qr/^\d+\.\d+\.\d+$/, 'version x.y.z');
    is($j->{nginx_version}, $nginx_version, 'nginx_version is the running nginx');
    is_deeply([ sort keys %{ $j->{zones} } ], [qw(llm other)], 'both zones');

    for my $name (sort keys %size) {
        my $z = $j->{zones}{$name};
        is_deeply([ sort keys %$z ],
                  [ sort qw(size used streams subscribers totals limits) ],
                  "$name: zone keys");
        is($z->{size}, $size{$name}, "$name: real size");
        ok($z->{used} > 0 && $z->{used} < $z->{size},
           "$name: used ($z->{used}) between 0 and size");
        is($z->{used} % 4096, 0, "$name: used counts whole pages");
        is_deeply([ sort keys %{ $z->{streams} } ], [ sort @status ],
                  "$name: every status");
        is($z->{streams}{$_}, 0, "$name: streams.$_ = 0") for @status;
        is($z->{subscribers}, 0, "$name: subscribers 0");
        is_deeply([ sort keys %{ $z->{totals} } ], [ sort @totals ],
                  "$name: every total");
        is($z->{totals}{$_}, 0, "$name: totals.$_ = 0") for @totals;
    }

    is_deeply($j->{zones}{llm}{limits},
              { max_streams => 100, max_subscribers => 7, buffer => 131072,
                ttl => 90, idle_timeout => 120 },
              'llm: limits as configured');
    is_deeply($j->{zones}{other}{limits},
              { max_streams => 0, max_subscribers => 0, buffer => 262144,
                ttl => 300, idle_timeout => 300 },
              'other: default limits');
}

# every worker answers the same: the zone is shared
my %seen;
for (1 .. 20) {
    my $j = json_decode($t->get('/status?format=json')->{body});
    $seen{ $j->{zones}{llm}{used} }++;
}
is(scalar keys %seen, 1, 'every answer shows the same zone usage');

# plain text
{
    my $r = $t->get('/status');
    is($r->{status}, 200, 'text status 200');
    like($r->{headers}{'content-type'}, qr{^text/plain}, 'text type');
    my @l = split /\n/, $r->{body};
    is($l[0], 'Streaming zones: 2', 'text: zone count');
    like($l[1], qr/^Zone llm: size 4194304 used \d+ subscribers 0$/, 'text: llm');
    is($l[2], ' streams: active 0 paused 0 completed 0 error 0 cancelled 0',
       'text: llm streams');
    is($l[3], ' totals: created 0 chunks 0 bytes 0 resumes 0'
              . ' evicted_chunks 0 rejected 0', 'text: llm totals');
    like($l[4], qr/^Zone other: size 1048576 used \d+ subscribers 0$/,
         'text: other');
    is(scalar @l, 7, 'text: 7 lines');
    is($t->get('/status?format=text')->{body}, $r->{body}, '?format=text');
}

# Prometheus, line by line
{
    my $r = $t->get('/status?format=prometheus');
    is($r->{status}, 200, 'prometheus status 200');
    is($r->{headers}{'content-type'},
       'text/plain; version=0.0.4; charset=utf-8', 'prometheus type');

    my %type = (
        nginx_streaming_streams               => 'gauge',
        nginx_streaming_subscribers           => 'gauge',
        nginx_streaming_streams_created_total => 'counter',
        nginx_streaming_chunks_total          => 'counter',
        nginx_streaming_bytes_total           => 'counter',
        nginx_streaming_resumes_total         => 'counter',
        nginx_streaming_evicted_chunks_total  => 'counter',
        nginx_streaming_rejected_total        => 'counter',
        nginx_streaming_zone_used_bytes       => 'gauge',
        nginx_streaming_zone_size_bytes       => 'gauge',
    );

    my (%help, %typed, %samples, @junk);
    my $current = '';
    for my $line (split /\n/, $r->{body}) {
        if ($line =~ /^# HELP (\w+) (\S.*)$/) {
            $help{$1}++;
            $current = $1;
        } elsif ($line =~ /^# TYPE (\w+) (\w+)$/) {
            $typed{$1} = $2;
            is($1, $current, "TYPE $1 follows its HELP");
        } elsif ($line =~ /^(\w+)\{([^}]*)\} (\d+)$/) {
            my ($name, $labels, $v) = ($1, $2, $3);
            is($name, $current, "sample $name under its HELP and TYPE");
            my %l = map { /^(\w+)="([^"]*)"$/ ? ($1 => $2) : ('?' => $_) }
                    split /,/, $labels;
            push @{ $samples{$name} }, [ \%l, $v ];
        } else {
            push @junk, $line;
        }
    }

    is_deeply(\@junk, [], 'no unparsable lines');
    is_deeply([ sort keys %help ], [ sort keys %type ], 'every metric has HELP');
    is($help{$_}, 1, "one HELP for $_") for sort keys %type;
    is($typed{$_}, $type{$_}, "TYPE $_ $type{$_}") for sort keys %type;

    for my $name (sort keys %type) {
        my @s = @{ $samples{$name} || [] };
        if ($name eq 'nginx_streaming_streams') {
            is(scalar @s, 10, "$name: 2 zones x 5 statuses");
            my %got = map {; "$_->[0]{zone}/$_->[0]{status}" => $_->[1] } @s;
            for my $z (qw(llm other)) {
                is($got{"$z/$_"}, 0, "$name\{zone=$z,status=$_\} 0") for @status;
            }
            is_deeply([ map { join ',', sort keys %{ $_->[0] } } @s ],
                      [ ('status,zone') x 10 ], "$name: labels zone, status");
            next;
        }
        is(scalar @s, 2, "$name: one sample per zone");
        is_deeply([ map { join ',', keys %{ $_->[0] } } @s ],
                  [ 'zone', 'zone' ], "$name: label zone only");
        my %v = map { $_->[0]{zone} => $_->[1] } @s;
        if ($name eq 'nginx_streaming_zone_size_bytes') {
            is($v{$_}, $size{$_}, "$name\{zone=$_\} real size") for sort keys %size;
        } elsif ($name eq 'nginx_streaming_zone_used_bytes') {
            ok($v{$_} > 0 && $v{$_} < $size{$_}, "$name\{zone=$_\} > 0")
                for sort keys %size;
        } else {
            is($v{$_}, 0, "$name\{zone=$_\} 0") for sort keys %size;
        }
    }
}

# errors and methods
{
    my $r = $t->get('/status?format=xml');
    is($r->{status}, 400, 'unknown format: 400');
    is_deeply(json_decode($r->{body}),
              { error => { code => 'INVALID_MESSAGE',
                           message => 'unknown status format' } },
              'unknown format: INVALID_MESSAGE error body');

    $r = $t->post('/status', 'x');
    is($r->{status}, 405, 'POST: 405');

    $r = $t->http('HEAD', '/status?format=json');
    is($r->{status}, 200, 'HEAD: 200');
    is($r->{body}, '', 'HEAD: no body');

    is($t->get('/srv')->{body}, "ok\n", 'other locations unaffected');
}

$t->stop;

done_testing;
