#!/usr/bin/env bash
# check-cdylib-exports.sh CDYLIB SHARED_LIB STATIC_LIB: cargo's cdylib
# (target/release/libaioctx.so) must be usable as the real shared library:
#
# 1. the C objects of STATIC_LIB (src/c/) define no global function or data
#    object under a public name: each C function is aioctx_c_NAME, exported
#    as NAME by a Rust trampoline (src/ffi/c_exports.rs), because rustc's
#    cdylib exports only Rust items (weak defaults are allowed: block_hooks.c);
# 2. CDYLIB exports exactly what SHARED_LIB (scripts/build-shared-lib.sh,
#    the installed library) exports;
# 3. CDYLIB exports every function and data object of
#    tests/data/qemu-abi-symbols.txt (less the known gaps);
# 4. a C program linked against CDYLIB alone calls the C-written functions
#    (tests/cdylib/c-exports.c) and prints the expected lines.
#
# CFLAGS_EXTRA: include flags for GLib (the compat headers include glib.h).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cdylib=${1:-target/release/libaioctx.so}
shared=${2:?usage: check-cdylib-exports.sh CDYLIB SHARED_LIB STATIC_LIB}
static=${3:-target/release/libaioctx.a}
pass=0 fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
not_ok() { echo "not ok - $1"; fail=$((fail + 1)); }
exports() { nm -D --defined-only "$1" | awk 'NF == 3 { print $3 }' | sort -u; }

# 1. The members compiled from src/c/*.c (cc names them HASH-NAME.o).
c_members=$(for c in src/c/*.c; do basename "$c" .c; done | paste -sd'|')
public_c=$(nm -g --defined-only "$static" 2>/dev/null | awk -v c="-($c_members)[.]o:$" '
    /:$/ { member = $0; next }
    member ~ c && NF == 3 && $2 ~ /[TDBR]/ && $3 !~ /^aioctx_c_/ {
        print "  " substr(member, 1, length(member) - 1) ": " $3 }')
if [ -z "$public_c" ]; then
    ok "C objects define only aioctx_c_* (and weak) symbols"
else
    not_ok "C objects define public names the cdylib cannot export (rename to aioctx_c_NAME and add NAME to src/ffi/c_exports.rs):"
    echo "$public_c"
fi

# 2.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exports "$cdylib" >"$tmp/cdylib"
exports "$shared" >"$tmp/shared"
if cmp -s "$tmp/cdylib" "$tmp/shared"; then
    ok "$cdylib exports what $shared exports ($(wc -l <"$tmp/cdylib") names)"
else
    not_ok "$cdylib and $shared export different names (< cdylib only, > shared only):"
    diff "$tmp/cdylib" "$tmp/shared" | grep '^[<>]' | sed 's/^/  /'
fi

# 3.
missing=$(awk '$2 ~ /^[TDB]$/ { print $1 }' tests/data/qemu-abi-symbols.txt |
    grep -vxF -f tests/data/qemu-abi-missing.txt - | sort -u | comm -23 - "$tmp/cdylib")
if [ -z "$missing" ]; then
    ok "$cdylib exports every function and data object of tests/data/qemu-abi-symbols.txt"
else
    not_ok "$cdylib lacks names of tests/data/qemu-abi-symbols.txt:"
    echo "$missing" | sed 's/^/  /'
fi

# 4. Linked by path: target/release also holds libaioctx.a.
prog=$tmp/cdylib-c-exports
# shellcheck disable=SC2086 # CFLAGS_EXTRA is a list of flags
if ${CC:-cc} -std=gnu11 -Wall -Wextra -Werror -Iinclude/compat -Iinclude ${CFLAGS_EXTRA:-} \
    -o "$prog" tests/cdylib/c-exports.c "$cdylib" -Wl,-rpath,"$(cd "$(dirname "$cdylib")" && pwd)" &&
    "$prog" 2>"$tmp/stderr"; then
    expected="cdylib-c-exports: prefix p: setg 7
hint 0.25
cdylib-c-exports: report s 42 1.5
cdylib-c-exports: warning: warn 1099511627776
printf x"
    if [ "$(cat "$tmp/stderr")" = "$expected" ]; then
        ok "a C program linked against $cdylib calls the C-written functions"
    else
        not_ok "tests/cdylib/c-exports.c printed (diff against the expected lines):"
        diff <(echo "$expected") "$tmp/stderr" | sed 's/^/  /' || true
    fi
else
    not_ok "tests/cdylib/c-exports.c does not build or run against $cdylib"
    cat "$tmp/stderr" 2>/dev/null | sed 's/^/  /' || true
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
