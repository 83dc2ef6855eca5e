#!/usr/bin/perl
# Unit tests of the WebSocket leaf (src/ngx_http_streaming_ws.c): builds
# t/unit/ws.c with ASan and UBSan against the nginx tree that "make module"
# configured, with stand-ins for nginx's SHA-1 and base64 (t/unit/sha1.c)
# and OpenSSL to check them, runs it, and reports each of its TAP lines.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use Test::More;

my $REPO = File::Spec->rel2abs(dirname(__FILE__) . '/..');
chdir $REPO or die "chdir $REPO: $!";

my $NGX = 'build/debian/src';

plan skip_all => "$NGX/objs/ngx_auto_config.h not found: run \"make module\""
    unless -e "$NGX/objs/ngx_auto_config.h";

my @build = (
    qw(cc -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter),
    '-fsanitize=address,undefined',
    '-I', "$NGX/src/core", '-I', "$NGX/src/event", '-I', "$NGX/src/os/unix",
    '-I', "$NGX/objs", '-I', 'src',
    qw(-o build/unit/ws t/unit/ws.c t/unit/sha1.c src/ngx_http_streaming_ws.c
       -lcrypto),
);

make_path('build/unit');

if (system(@build) != 0) {
    fail("build: @build");
    done_testing();
    exit;
}

# a UBSan report fails the run instead of scrolling by
$ENV{UBSAN_OPTIONS} = 'halt_on_error=1:print_stacktrace=1';

open(my $fh, '-|', 'build/unit/ws')
    or die "cannot run build/unit/ws: $!";

my ($plan, $seen) = (undef, 0);

while (my $line = <$fh>) {
    chomp $line;

    if ($line =~ /^(not )?ok (\d+)(?: - (.*))?$/) {
        $seen++;
        ok(!defined $1, $3 // "test $2");

    } elsif ($line =~ /^1\.\.(\d+)$/) {
        $plan = $1;

    } elsif ($line =~ /^#\s?(.*)$/) {
        diag($1);

    } else {
        diag("unexpected output: $line");
    }
}

close $fh;
my $status = $?;

is($status, 0, 'the unit program exits with 0 (no failure, no sanitizer '
               . 'report)');
ok(defined $plan && $plan == $seen, 'the unit program ran its whole plan')
    or diag('plan ' . ($plan // 'missing') . ", $seen tests seen");

done_testing();
