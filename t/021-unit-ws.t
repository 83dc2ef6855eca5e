#!/usr/bin/perl
# Unit tests of the WebSocket leaf (src/ngx_http_streaming_ws.c): t/unit/ws.c
# with stand-ins for nginx's SHA-1 and base64 (t/unit/sha1.c) and OpenSSL to
# check them, built with ASan and UBSan and run by t/lib/UnitProgram.

use strict;
use warnings;

use File::Basename qw(dirname);
use lib dirname(__FILE__) . '/lib';
use UnitProgram;

UnitProgram::run('ws', [ 't/unit/sha1.c', 'src/ngx_http_streaming_ws.c' ],
                 [ '-lcrypto' ]);
