# streaming_zone and streaming_status: every bad value is refused by
# `nginx -t` with a message naming the directive and the value.

use strict;
use warnings;
use Test::More;

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 1);

# [ http {} lines, server {} lines, expected message ]
my @bad = (
    [ 'streaming_zone;', '',
      qr/invalid number of arguments in "streaming_zone" directive/ ],
    [ 'streaming_zone z;', '',
      qr/invalid number of arguments in "streaming_zone" directive/ ],
    [ 'streaming_zone z abc;', '',
      qr/invalid streaming_zone size "abc"/ ],
    [ 'streaming_zone z -1m;', '',
      qr/invalid streaming_zone size "-1m"/ ],
    [ 'streaming_zone z 1k;', '',
      qr/streaming_zone "z" size "1k" is too small/ ],
    [ 'streaming_zone "" 1m;', '',
      qr/invalid streaming_zone name ""/ ],
    [ 'streaming_zone "a b" 1m;', '',
      qr/invalid streaming_zone name "a b"/ ],
    [ 'streaming_zone a"b 1m;', '',
      qr/invalid streaming_zone name "a"b"/ ],
    [ 'streaming_zone ' . ('x' x 65) . ' 1m;', '',
      qr/invalid streaming_zone name "x{65}"/ ],
    [ 'streaming_zone z 1m max_streams=-1;', '',
      qr/invalid streaming_zone parameter "max_streams=-1"/ ],
    [ 'streaming_zone z 1m max_streams=abc;', '',
      qr/invalid streaming_zone parameter "max_streams=abc"/ ],
    [ 'streaming_zone z 1m max_streams=;', '',
      qr/invalid streaming_zone parameter "max_streams="/ ],
    [ 'streaming_zone z 1m max_streams;', '',
      qr/invalid streaming_zone parameter "max_streams"/ ],
    [ 'streaming_zone z 1m max_subscribers=1.5;', '',
      qr/invalid streaming_zone parameter "max_subscribers=1.5"/ ],
    [ 'streaming_zone z 1m buffer=0;', '',
      qr/invalid streaming_zone parameter "buffer=0"/ ],
    [ 'streaming_zone z 1m buffer=512;', '',
      qr/invalid streaming_zone parameter "buffer=512"/ ],
    [ 'streaming_zone z 1m buffer=lots;', '',
      qr/invalid streaming_zone parameter "buffer=lots"/ ],
    [ 'streaming_zone z 1m buffer=600k;', '',
      qr/streaming_zone "z" buffer 614400 does not fit twice in the zone's size "1m"/ ],
    [ 'streaming_zone z 1m ttl=forever;', '',
      qr/invalid streaming_zone parameter "ttl=forever"/ ],
    [ 'streaming_zone z 1m ttl=-5s;', '',
      qr/invalid streaming_zone parameter "ttl=-5s"/ ],
    [ 'streaming_zone z 1m idle_timeout=5x;', '',
      qr/invalid streaming_zone parameter "idle_timeout=5x"/ ],
    [ 'streaming_zone z 1m colour=blue;', '',
      qr/invalid streaming_zone parameter "colour=blue"/ ],
    [ "streaming_zone z 1m;\nstreaming_zone z 2m;", '',
      qr/duplicate streaming_zone "z"/ ],
    [ '', 'streaming_zone z 1m;',
      qr/"streaming_zone" directive is not allowed here/ ],
    [ '', 'location /s { streaming_status on; }',
      qr/invalid number of arguments in "streaming_status" directive/ ],
    [ 'streaming_status;', '',
      qr/"streaming_status" directive is not allowed here/ ],
);

for my $case (@bad) {
    my ($http, $server, $re) = @$case;
    my ($rc, $out) = $t->nginx_t(http => $http, server => $server);
    my $name = (split /\n/, $http || $server)[-1];
    isnt($rc, 0, "nginx -t refuses: $name");
    like($out, qr/\[emerg\].*$re.* in \S+nginx-t-\d+\.conf:\d+/,
         "message names directive, value and place: $name");
}

# every parameter at once, and the smallest zone
my ($rc, $out) = $t->nginx_t(http => <<'EOF', server => <<'EOF2');
streaming_zone llm 16m max_streams=100 max_subscribers=50 buffer=64k
               ttl=30s idle_timeout=2m;
streaming_zone tiny.zone-2 32k max_streams=0 max_subscribers=0 ttl=0
               buffer=4k;
EOF
location /status { streaming_status; }
EOF2
is($rc, 0, 'a config with every parameter passes nginx -t') or diag $out;

done_testing;
