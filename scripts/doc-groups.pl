#!/usr/bin/perl
# Groups the declarations of include/aioctx.h for the API reference.
#
#   doc-groups.pl HEADER          Doxygen INPUT_FILTER (docs/Doxyfile): prints
#                                 HEADER with `@ingroup G` added to the doc
#                                 comment of every top-level declaration, G
#                                 from docs/doc-groups.txt (name regex -> group),
#                                 and a Threading note where a function's
#                                 comment states no threading rule. Line
#                                 numbers are kept.
#   doc-groups.pl --check HEADER  (make check-doc-comments, part of make test)
#                                 fails when an exported function has no doc
#                                 comment, when a documented name matches no
#                                 line of docs/doc-groups.txt, or when a group
#                                 there is not defined in docs/groups.dox.
#   doc-groups.pl --no-threading HEADER
#                                 lists the functions whose comment states no
#                                 threading rule (to fix in the Rust sources).
use strict;
use warnings;
use FindBin;

my $docs = "$FindBin::Bin/../docs";
my $mode = 'filter';
if (@ARGV && $ARGV[0] =~ /^--(check|no-threading)$/) { $mode = $1; shift; }
die "usage: $0 [--check|--no-threading] HEADER\n" unless @ARGV == 1;
my $header = $ARGV[0];

# A comment states a threading rule when it names a thread, the BQL or the
# coroutine it must run in.
my $threading_re = qr/thread|coroutine only|\bBQL\b|\b(?:in|from|inside|outside) (?:a|the) coroutine|coroutine context/i;

my @map;
open(my $mf, '<', "$docs/doc-groups.txt") or die "$docs/doc-groups.txt: $!\n";
while (<$mf>) {
    next if /^\s*(#|$)/;
    my ($re, $group) = /^(\S+)\s+(\S+)\s*$/ or die "doc-groups.txt:$.: want 'PATTERN GROUP'\n";
    push @map, [qr/^(?:$re)$/, $group, $.];
}
close $mf;

sub group_of {
    my ($name) = @_;
    for my $m (@map) { return $m->[1] if $name =~ $m->[0]; }
    return undef;
}

# The name a top-level declaration line declares, and whether it is a function.
sub declared {
    my ($line) = @_;
    $line =~ s/__attribute__\s*\(\((?:[^()]|\([^()]*\))*\)\)//g;
    return ($1, 0) if $line =~ /^#define\s+(\w+)/;
    return ($1, 0) if $line =~ /^typedef\s+(?:struct|enum|union)\s+(\w+)\s*\{/;
    return ($1, 0) if $line =~ /^typedef\b[^(]*\(\s*\*\s*(\w+)\s*\)/;     # pointer type
    return ($1, 0) if $line =~ /^typedef\b.*?\b(\w+)\s*\(/;                # function type
    return ($1, 0) if $line =~ /^typedef\b.*?\b(\w+)\s*;/;
    return ($1, 1) if $line =~ /^(?:extern\s+)?[A-Za-z_][\w\s\*]*?\b(\w+)\s*\(/;
    return ($1, 0) if $line =~ /^extern\s+[^(]*?\b(\w+)\s*(?:\[[^\]]*\])?\s*;/;
    return;
}

open(my $hf, '<', $header) or die "$header: $!\n";
my @lines = <$hf>;
close $hf;

my %defined;
if ($mode eq 'check') {
    open(my $gf, '<', "$docs/groups.dox") or die "$docs/groups.dox: $!\n";
    while (<$gf>) { $defined{$1} = 1 if /\@defgroup\s+(\w+)/; }
    close $gf;
}

my @errors;
my @no_threading;
my %header_fns;
my ($depth, $in_comment, $comment_start, $comment_end) = (0, 0, -1, -1);
my %edit;    # line index of a comment's end -> text to add before its */
for my $i (0 .. $#lines) {
    my $l = $lines[$i];
    if ($in_comment) {
        if ($l =~ m{\*/}) { $in_comment = 0; $comment_end = $i; }
        next;
    }
    # Comments (of members too) never count braces; only a doc comment
    # at top level is a declaration's.
    if ($l =~ m{^\s*/\*}) {
        $comment_start = ($depth == 0 && $l =~ m{^\s*/\*\*}) ? $i : -1;
        if ($l =~ m{\*/}) { $comment_end = $i; } else { $in_comment = 1; }
        next;
    }
    next if $l =~ /^\s*$/;
    my $has_doc = $comment_end == $i - 1 && $comment_start >= 0;
    if ($depth == 0 && $l !~ /extern "C"/) {
        my ($name, $is_fn) = declared($l);
        if (defined $name && $name ne 'AIOCTX_H') {
            my $group = group_of($name);
            $header_fns{$name} = 1 if $is_fn;
            if ($is_fn && !$has_doc) {
                push @errors, "$header:" . ($i + 1) . ": exported function $name has no doc comment";
            }
            if ($has_doc) {
                my $text = join('', @lines[$comment_start .. $comment_end]);
                push @errors, "$header:" . ($i + 1) . ": $name matches no line of docs/doc-groups.txt"
                    unless defined $group;
                push @errors, "$header:" . ($i + 1) . ": $name: group $group is not defined in docs/groups.dox"
                    if defined $group && $mode eq 'check' && !$defined{$group};
                my $add = '';
                if ($is_fn && $text !~ $threading_re) {
                    push @no_threading, $name;
                    $add .= ' @note Threading: this function\'s comment states no rule of its own;'
                        . ' the threading rule on its group\'s page applies.';
                }
                $add .= " \@ingroup $group" if defined $group;
                $edit{$comment_end} = $add;
            }
        }
    }
    if ($l !~ /extern "C"/ && $l !~ /^#/) {
        my $opens = () = $l =~ /\{/g;
        my $closes = () = $l =~ /\}/g;
        $depth += $opens - $closes;
    }
    $comment_start = -1;
}

if ($mode eq 'filter') {
    for my $i (0 .. $#lines) {
        my $l = $lines[$i];
        $l =~ s{\s*\*/}{$edit{$i} */} if exists $edit{$i};
        print $l;
    }
    print STDERR "doc-groups: $_\n" for @errors;
    exit 0;
}
if ($mode eq 'no-threading') {
    print "$_\n" for @no_threading;
    exit 0;
}
# Every `extern "C" fn` of src/ffi/ must be a function seen above (so a
# declaration this parser misreads cannot escape the check), unless
# cbindgen.toml excludes it (declared by hand in include/compat/).
my $root = "$FindBin::Bin/..";
my %excluded;
if (open(my $cf, '<', "$root/cbindgen.toml")) {
    local $/;
    my $toml = <$cf>;
    close $cf;
    if ($toml =~ /^exclude\s*=\s*\[(.*?)\]/ms) {
        my $list = $1;
        $excluded{$1} = 1 while $list =~ /"(\w+)"/g;
    }
}
for my $rs (glob("$root/src/ffi/*.rs")) {
    open(my $rf, '<', $rs) or die "$rs: $!\n";
    while (<$rf>) {
        next unless /pub\s+(?:unsafe\s+)?extern\s+"C"\s+fn\s+(\w+)/;
        push @errors, "$rs:$.: $1 is exported but not found as a documented function of $header"
            unless $header_fns{$1} || $excluded{$1};
    }
    close $rf;
}
print STDERR "check-doc-comments: $_\n" for @errors;
printf "check-doc-comments: %s, %d functions without a threading statement (doc-groups.pl --no-threading lists them)\n",
    @errors ? scalar(@errors) . " problem(s)" : "every exported function documented and grouped",
    scalar @no_threading;
exit(@errors ? 1 : 0);
