#!/usr/bin/perl
# Unit tests of the framing leaf (src/ngx_http_streaming_framing.c):
# t/unit/framing.c, built with ASan and UBSan and run by t/lib/UnitProgram.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use UnitProgram;

UnitProgram::run('framing', [ 'src/ngx_http_streaming_framing.c' ]);
