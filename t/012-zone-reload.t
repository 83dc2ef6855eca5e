# A zone survives `nginx -s reload`; a reload that resizes it is refused
# with an emerg message and the running configuration keeps serving.

use strict;
use warnings;
use Test::More;

use lib 't/lib';
use StreamTest;

my $t = StreamTest->new(workers => 2);
$t->http_config('streaming_zone llm 2m ttl=60s;');
$t->server_config('location = /status { streaming_status; }');
$t->start;

sub zones { json_decode($t->get('/status?format=json')->{body})->{zones} }

sub disjoint {
    my ($a, $b) = @_;
    my %a = map { $_ => 1 } @$a;
    return !grep { $a{$_} } @$b;
}

my $before = zones();
my @old_workers = sort $t->worker_pids;
is(scalar @old_workers, 2, 'two workers');

# same size, other parameters changed, one more zone: the zone is kept
ok($t->reload(http => "streaming_zone llm 2m ttl=120s;\n"
                      . "streaming_zone extra 1m;"),
   'reload with the same zone size is accepted');
my @new_workers = sort $t->worker_pids;
ok(disjoint(\@old_workers, \@new_workers), 'all workers replaced');
my $after = zones();
is($after->{llm}{size}, $before->{llm}{size}, 'zone size kept');
is($after->{llm}{used}, $before->{llm}{used},
   'zone reused, not re-created (same usage)');
is($after->{llm}{limits}{ttl}, 120, 'new ttl in effect');
ok($after->{extra}, 'new zone added on reload');

# a resize is refused; the old configuration keeps serving
$t->expect_log(qr/\[emerg\].*streaming_zone "llm" cannot change its size from 2097152 to 4194304 on reload, restart nginx to resize it/, 1);
ok(!$t->reload(http => "streaming_zone llm 4m ttl=120s;\n"
                       . "streaming_zone extra 1m;"),
   'reload that resizes the zone is refused');
is_deeply([ sort $t->worker_pids ], \@new_workers, 'workers unchanged');
my $still = zones();
is($still->{llm}{size}, 2 * 1024 * 1024, 'still serving the 2m zone');
is($still->{llm}{limits}{ttl}, 120, 'still the running configuration');

# and a later good reload works again
ok($t->reload(http => "streaming_zone llm 2m ttl=30s;"),
   'good reload after a refused one');
my $last = zones();
is($last->{llm}{limits}{ttl}, 30, 'new configuration in effect');
is($last->{llm}{used}, $before->{llm}{used}, 'zone still the same');
ok(!$last->{extra}, 'dropped zone gone');

$t->stop;

done_testing;
