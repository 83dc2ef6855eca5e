package StreamTest::Parse;

# Pure parsing helpers shared by StreamTest and StreamTest::Conn:
# SSE, NDJSON, HTTP/1.1 chunked transfer coding, JSON, HTTP response heads,
# and the error-log scanner.  No I/O happens here.

use strict;
use warnings;

use Carp qw(croak);
use Exporter 'import';
use JSON::PP ();

our @EXPORT_OK = qw(
    parse_sse parse_ndjson decode_chunked json_decode json_encode
    scan_log parse_response_head sse_scan
);

my $JSON = JSON::PP->new->canonical->allow_nonref->utf8;

sub json_encode { return $JSON->encode($_[0]) }
sub json_decode { return $JSON->decode($_[0]) }

# ---------------------------------------------------------------------------
# Server-Sent Events (WHATWG "event stream interpretation")
# ---------------------------------------------------------------------------

# sse_scan($text, $pos, $skip_lf)
#
# Incremental scanner.  Parses complete events of $text starting at byte
# offset $pos.  $skip_lf is true when the previous chunk of the stream ended
# with a CR, in which case a LF at $pos belongs to that CR (CRLF split over
# two reads) and is skipped.
#
# Returns (\@events, $consumed, $skip_lf_at_consumed, \@ends): $consumed is
# the offset just after the last complete block (dispatched event or empty
# block); the caller resumes there with the returned skip flag once more data
# arrived.  $ends[$i] is [ $offset_after_event_i, $skip_flag_there ].
sub sse_scan {
    my ($text, $pos, $skip_lf) = @_;
    $pos //= 0;

    my $len = length $text;
    my (@events, @ends);
    my $consumed      = $pos;
    my $consumed_skip = $skip_lf ? 1 : 0;
    my $block;            # event under construction
    my $block_start;      # offset of its first line

    while ($pos < $len) {
        if ($skip_lf) {
            $skip_lf = 0;
            if (substr($text, $pos, 1) eq "\n") {
                $pos++;
                if (!$block) {
                    $consumed      = $pos;
                    $consumed_skip = 0;
                }
                next;
            }
        }

        my $line_start = $pos;
        pos($text) = $pos;
        last unless $text =~ /\G([^\r\n]*)(\r\n|\r|\n)/g;
        my ($line, $term) = ($1, $2);
        $pos = pos($text);

        # A CR at the very end of the data may be the first half of a CRLF.
        $skip_lf = ($term eq "\r" && $pos == $len) ? 1 : 0;

        if ($line eq '') {
            if ($block) {
                $block->{raw} = substr($text, $block_start, $pos - $block_start);
                $block->{data} = join "\n", @{ delete $block->{_data} }
                    if $block->{_data};
                delete $block->{_data};
                push @events, $block;
                push @ends, [ $pos, $skip_lf ];
                $block = undef;
            }
            $consumed      = $pos;
            $consumed_skip = $skip_lf;
            next;
        }

        if (!$block) {
            $block = {
                event    => undef,
                data     => undef,
                id       => undef,
                retry    => undef,
                comments => [],
                fields   => [],
            };
            $block_start = $line_start;
        }

        if (substr($line, 0, 1) eq ':') {
            my $comment = substr($line, 1);
            $comment =~ s/^ //;
            push @{ $block->{comments} }, $comment;
            next;
        }

        my ($name, $value);
        my $colon = index($line, ':');
        if ($colon >= 0) {
            $name  = substr($line, 0, $colon);
            $value = substr($line, $colon + 1);
            $value =~ s/^ //;
        }
        else {
            ($name, $value) = ($line, '');
        }
        push @{ $block->{fields} }, [ $name, $value ];

        if ($name eq 'event') {
            $block->{event} = $value;
        }
        elsif ($name eq 'data') {
            push @{ $block->{_data} }, $value;
        }
        elsif ($name eq 'id') {
            $block->{id} = $value if index($value, "\0") < 0;
        }
        elsif ($name eq 'retry') {
            $block->{retry} = $value if $value =~ /\A[0-9]+\z/;
        }
    }

    return (\@events, $consumed, $consumed_skip, \@ends);
}

sub parse_sse {
    my ($text) = @_;
    croak 'parse_sse: undefined text' unless defined $text;
    my $start = 0;
    if ($text =~ /\A\xEF\xBB\xBF/) {
        $start = 3;
    }
    elsif ($text =~ /\A\x{FEFF}/) {
        $start = 1;
    }
    my ($events) = sse_scan($text, $start, 0);
    return @$events;
}

# ---------------------------------------------------------------------------
# NDJSON
# ---------------------------------------------------------------------------

sub parse_ndjson {
    my ($text) = @_;
    croak 'parse_ndjson: undefined text' unless defined $text;
    my @values;
    my $n = 0;
    for my $line (split /\n/, $text) {
        $n++;
        $line =~ s/\r\z//;
        next if $line =~ /\A\s*\z/;
        my $v = eval { $JSON->decode($line) };
        if ($@) {
            my $err = $@;
            $err =~ s/\s+\z//;
            croak "parse_ndjson: invalid JSON on line $n: '$line': $err";
        }
        push @values, $v;
    }
    return @values;
}

# ---------------------------------------------------------------------------
# Chunked transfer coding
# ---------------------------------------------------------------------------

# Incremental decoder.  $st is a hashref holding the state; feed it bytes,
# it appends decoded data to $$out and returns true once the final chunk and
# the trailer section were read.  Dies on malformed input.  Bytes after the
# end of the chunked body are left in $st->{rest}.
sub chunked_new { return { state => 'size', buf => '', remaining => 0, offset => 0, trailers => [] } }

sub chunked_feed {
    my ($st, $bytes, $out) = @_;
    $st->{buf} .= $bytes if defined $bytes;

    while (1) {
        my $state = $st->{state};

        if ($state eq 'done') {
            $st->{rest} .= $st->{buf};
            $st->{buf} = '';
            return 1;
        }

        if ($state eq 'size') {
            my $i = index($st->{buf}, "\r\n");
            if ($i < 0) {
                _chunk_error($st, 'chunk size line without CRLF or too long')
                    if length($st->{buf}) > 1024 || $st->{buf} =~ /\n/;
                return 0;
            }
            my $line = substr($st->{buf}, 0, $i);
            if ($line !~ /\A([0-9a-fA-F]{1,15})[ \t]*(?:;.*)?\z/s) {
                _chunk_error($st, "bad chunk size line '$line'");
            }
            my $size = hex $1;
            _consume($st, $i + 2);
            if ($size == 0) {
                $st->{state} = 'trailer';
            }
            else {
                $st->{remaining} = $size;
                $st->{state}     = 'data';
            }
            next;
        }

        if ($state eq 'data') {
            return 0 if $st->{buf} eq '';
            my $take = length $st->{buf};
            $take = $st->{remaining} if $take > $st->{remaining};
            $$out .= substr($st->{buf}, 0, $take);
            _consume($st, $take);
            $st->{remaining} -= $take;
            $st->{state} = 'data_crlf' if $st->{remaining} == 0;
            next;
        }

        if ($state eq 'data_crlf') {
            return 0 if length($st->{buf}) < 2;
            _chunk_error($st, 'chunk data not followed by CRLF')
                unless substr($st->{buf}, 0, 2) eq "\r\n";
            _consume($st, 2);
            $st->{state} = 'size';
            next;
        }

        if ($state eq 'trailer') {
            my $i = index($st->{buf}, "\r\n");
            return 0 if $i < 0;
            my $line = substr($st->{buf}, 0, $i);
            _consume($st, $i + 2);
            if ($line eq '') {
                $st->{state} = 'done';
                $st->{rest}  = '';
                next;
            }
            _chunk_error($st, "bad trailer line '$line'")
                unless $line =~ /\A([^:\s]+):[ \t]*(.*?)[ \t]*\z/s;
            push @{ $st->{trailers} }, [ $1, $2 ];
            next;
        }

        die "chunked decoder: unknown state $state";
    }
}

sub _consume {
    my ($st, $n) = @_;
    substr($st->{buf}, 0, $n, '');
    $st->{offset} += $n;
}

sub _chunk_error {
    my ($st, $msg) = @_;
    die "malformed chunked body at byte $st->{offset}: $msg\n";
}

sub decode_chunked {
    my ($bytes) = @_;
    croak 'decode_chunked: undefined input' unless defined $bytes;
    my $st  = chunked_new();
    my $out = '';
    my $done = chunked_feed($st, $bytes, \$out);
    die "malformed chunked body: truncated (no terminating zero-size chunk"
        . " and blank line)\n" unless $done;
    die "malformed chunked body: " . length($st->{rest})
        . " unexpected bytes after the end\n" if length $st->{rest};
    return $out;
}

# ---------------------------------------------------------------------------
# HTTP response head
# ---------------------------------------------------------------------------

# parse_response_head($head_without_final_blank_line)
# Returns { status, reason, version, headers, header_list } or undef when the
# first line is not a status line.
sub parse_response_head {
    my ($head) = @_;
    my @lines = split /\r?\n/, $head;
    my $first = shift @lines;
    return undef
        unless defined $first && $first =~ m{\A(HTTP/\d+\.\d+)\s+(\d{3})(?:\s+(.*))?\z};
    my %r = (version => $1, status => $2 + 0, reason => $3 // '');
    my (@list, %h);
    for my $line (@lines) {
        if ($line =~ /\A[ \t]/ && @list) {     # obsolete line folding
            (my $cont = $line) =~ s/\A[ \t]+//;
            $list[-1][1] .= " $cont";
            next;
        }
        my ($name, $value) = $line =~ /\A([^:]+):[ \t]*(.*?)[ \t]*\z/
            or next;
        push @list, [ $name, $value ];
    }
    for my $pair (@list) {
        my $k = lc $pair->[0];
        $h{$k} = exists $h{$k} ? "$h{$k}, $pair->[1]" : $pair->[1];
    }
    $r{headers}     = \%h;
    $r{header_list} = \@list;
    return \%r;
}

# ---------------------------------------------------------------------------
# Error log scanning
# ---------------------------------------------------------------------------

our @BAD_PATTERNS = (
    qr/\[alert\]/,
    qr/\[emerg\]/,
    qr/\[crit\]/,
    qr/exited on signal/,
    qr/AddressSanitizer/,
    qr/LeakSanitizer/,
    qr/runtime error:/,
    qr/ERROR SUMMARY: [1-9]/,
);

# scan_log($text, \@expected) -> (\@bad_lines, \@count_errors)
#
# @expected holds [ $regex, $count ] pairs ($count undef = at least one;
# hashrefs { re => ..., count => ... } are accepted too).  A line matching
# any expected pattern is never reported as bad.
sub scan_log {
    my ($text, $expected) = @_;
    $text //= '';
    my @exp = map { _norm_expect($_) } @{ $expected // [] };
    my @seen = (0) x @exp;
    my @bad;

    for my $line (split /\r?\n/, $text) {
        my $exempt = 0;
        for my $i (0 .. $#exp) {
            if ($line =~ $exp[$i][0]) {
                $seen[$i]++;
                $exempt = 1;
            }
        }
        next if $exempt;
        for my $re (@BAD_PATTERNS) {
            if ($line =~ $re) {
                push @bad, $line;
                last;
            }
        }
    }

    my @count_errors;
    for my $i (0 .. $#exp) {
        my ($re, $want) = @{ $exp[$i] };
        if (defined $want) {
            push @count_errors,
                "expected $want line(s) matching $re, found $seen[$i]"
                if $seen[$i] != $want;
        }
        elsif ($seen[$i] == 0) {
            push @count_errors, "expected at least one line matching $re, found none";
        }
    }
    return (\@bad, \@count_errors);
}

sub _norm_expect {
    my ($e) = @_;
    my ($re, $count) = ref $e eq 'HASH' ? @{$e}{qw(re count)} : @$e;
    $re = qr/$re/ unless ref $re eq 'Regexp';
    return [ $re, $count ];
}

1;
