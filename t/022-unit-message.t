#!/usr/bin/perl
# Unit tests of the client message leaf (src/ngx_http_streaming_message.c):
# t/unit/message.c with a stand-in pool (t/unit/pool.c) and jansson, built
# with ASan and UBSan and run by t/lib/UnitProgram.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use UnitProgram;

UnitProgram::run('message', [ 't/unit/pool.c',
                              'src/ngx_http_streaming_message.c' ],
                 [ '-ljansson' ]);
