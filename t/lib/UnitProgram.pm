package UnitProgram;

# Builds a leaf's unit program (t/unit/<name>.c and the sources it tests)
# with ASan and UBSan against the nginx tree that "make module" configured,
# runs it, and reports each of its TAP lines as a test of the caller's,
# then that it exited with 0 and ran its whole plan.
#
#   use UnitProgram;
#   UnitProgram::run('ws', [ 't/unit/sha1.c', 'src/ngx_http_streaming_ws.c' ],
#                    [ '-lcrypto' ]);

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use Test::More;

my $REPO = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $NGX = 'build/debian/src';

sub run {
    my ($name, $sources, $libs) = @_;

    chdir $REPO or die "chdir $REPO: $!";

    plan skip_all => "$NGX/objs/ngx_auto_config.h not found: "
                     . 'run "make module"'
        unless -e "$NGX/objs/ngx_auto_config.h";

    my @build = (
        qw(cc -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter),
        '-fsanitize=address,undefined',
        '-I', "$NGX/src/core", '-I', "$NGX/src/event",
        '-I', "$NGX/src/os/unix", '-I', "$NGX/objs", '-I', 'src',
        '-o', "build/unit/$name", "t/unit/$name.c", 't/unit/tap.c',
        @$sources,
        @{ $libs || [] },
    );

    make_path('build/unit');

    if (system(@build) != 0) {
        fail("build: @build");
        done_testing();
        return;
    }

    # a UBSan report fails the run instead of scrolling by
    $ENV{UBSAN_OPTIONS} = 'halt_on_error=1:print_stacktrace=1';

    open(my $fh, '-|', "build/unit/$name")
        or die "cannot run build/unit/$name: $!";

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

    is($status, 0, 'the unit program exits with 0 (no failure, no '
                   . 'sanitizer report)');
    ok(defined $plan && $plan == $seen, 'the unit program ran its whole plan')
        or diag('plan ' . ($plan // 'missing') . ", $seen tests seen");

    done_testing();
}

1;
