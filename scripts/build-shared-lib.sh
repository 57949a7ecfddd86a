#!/usr/bin/env bash
# Builds libaioctx.so.$VERSION (SONAME libaioctx.so.$MAJOR) from the static
# library, so that the shared library also exports the functions written in
# C (src/c/: the variadic error API, RCU), which cargo's cdylib would hide
# behind its own export list.
#
# Exported: every global symbol defined by the crate's own objects and the
# C objects, i.e. the C API; Rust's std and dependencies stay local.
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
        (member ~ /^aioctx\.aioctx\./ || member ~ /-(variadic|rcu)\.o:$/) &&
        $3 !~ /^(_ZN|_R|anon\.)/ { print "  " $3 ";" }' | sort -u
    echo 'local: *; };'
} > "$map"
${CC:-cc} -shared -Wl,-soname,"libaioctx.so.$major" -Wl,--version-script="$map" \
    -o "$out/libaioctx.so.$version" \
    -Wl,--whole-archive "$lib" -Wl,--no-whole-archive $libs
ln -sf "libaioctx.so.$version" "$out/libaioctx.so.$major"
ln -sf "libaioctx.so.$major" "$out/libaioctx.so"
