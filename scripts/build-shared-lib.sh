#!/usr/bin/env bash
# Builds libaioctx.so.$VERSION (SONAME libaioctx.so.$MAJOR) from the static
# library.
#
# Exported: every global symbol defined by the crate's own Rust objects,
# i.e. its #[no_mangle] items: the C API, including the functions written
# in C (src/c/variadic.c), which Rust trampolines export under their QEMU
# names (src/ffi/c_exports.rs). Rust's std, the dependencies and the C
# objects' own symbols (aioctx_c_*, the weak block-layer defaults of
# src/c/block_hooks.c) stay local. That is the set rustc exports from
# cargo's cdylib (target/release/libaioctx.so); `make check-cdylib-exports`
# compares the two.
#
# usage: build-shared-lib.sh STATIC_LIB OUT_DIR VERSION "LIBS..."
set -euo pipefail
lib=$1 out=$2 version=$3 libs=$4
major=${version%%.*}
mkdir -p "$out"
map="$out/aioctx.map"
{
    echo '{ global:'
    nm -g --defined-only "$lib" 2>/dev/null | awk '
        /:$/ { member = $0; next }
        NF == 3 && $2 ~ /[TDBRV]/ &&
        member ~ /^aioctx\.aioctx\./ &&
        $3 !~ /^(_ZN|_R|anon\.)/ { print "  " $3 ";" }' | sort -u
    echo 'local: *; };'
} > "$map"
${CC:-cc} -shared -Wl,-soname,"libaioctx.so.$major" -Wl,--version-script="$map" \
    -o "$out/libaioctx.so.$version" \
    -Wl,--whole-archive "$lib" -Wl,--no-whole-archive $libs
ln -sf "libaioctx.so.$version" "$out/libaioctx.so.$major"
ln -sf "libaioctx.so.$major" "$out/libaioctx.so"
