#!/usr/bin/env bash
# Installs into a temporary prefix (`make install PREFIX=$tmp`) and builds
# tests/consumers/consumer.c the ways a C project would, each against the
# shared and the static library, then runs every program (it exits non-zero
# unless its BH and oneshot ran):
#   pkgconfig  cc ... $(pkg-config --cflags --libs aioctx | aioctx-static)
#   cmake      find_package(aioctx) + aioctx::aioctx / aioctx::aioctx_static
#   meson      dependency('aioctx') / dependency('aioctx-static')
# Shared programs must load libaioctx.so.0 from the prefix, static ones must
# not load it at all. Prints TAP-style lines and "N passed, N failed".
set -euo pipefail
src=$(cd "$(dirname "$0")/../tests/consumers" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
make -s install PREFIX="$prefix" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; exit 1; }
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
pass=0 fail=0
log="$tmp/log"

# linked_as KIND PROG [PREFIX]: PROG runs and uses libaioctx the KIND way
# (shared: the one in PREFIX/lib, default $prefix).
linked_as() {
    local kind=$1 prog=$2 from=${3:-$prefix}
    local libs
    "$prog" >/dev/null || return 1
    # ldd's output is captured first: with pipefail, `ldd | grep -q` fails
    # whenever grep exits at its first match and ldd gets SIGPIPE.
    libs=$(ldd "$prog") || return 1
    if [ "$kind" = shared ]; then
        grep -q "libaioctx.so.0 => $from/lib/" <<<"$libs"
    else
        ! grep -q libaioctx <<<"$libs"
    fi
}
check() {
    local name=$1; shift
    if "$@" >"$log" 2>&1; then
        echo "ok - consumers: $name"; pass=$((pass + 1))
    else
        echo "not ok - consumers: $name"; sed 's/^/#   /' "$log"; fail=$((fail + 1))
    fi
}

pkgconfig_build() {
    local kind=$1 out="$tmp/pkgconfig/consumer-$1"
    mkdir -p "$tmp/pkgconfig"
    if [ "$kind" = shared ]; then
        $cc -std=gnu11 -Wall -Wextra -Werror "$src/consumer.c" -o "$out" \
            $(pkg-config --cflags --libs aioctx) -Wl,-rpath,"$prefix/lib"
    else
        # Exactly as README.md shows it: no edits to the pkg-config output.
        $cc -std=gnu11 -Wall -Wextra -Werror "$src/consumer.c" -o "$out" \
            $(pkg-config --cflags --libs --static aioctx-static)
    fi && linked_as "$kind" "$out"
}

# Copies a consumer project with consumer.c next to it (Meson refuses
# sources outside its tree) so the build leaves nothing in the checkout.
project_dir() {
    mkdir -p "$tmp/$1-src"
    cp "$src/$1"/* "$src/consumer.c" "$tmp/$1-src/"
    echo "$tmp/$1-src"
}

# Against a copy of the prefix in another directory: the package is
# relocatable (paths relative to aioctxConfig.cmake).
cmake_build() {
    local dir moved="$tmp/relocated"
    dir=$(project_dir cmake)
    cp -a "$prefix" "$moved"
    cmake -S "$dir" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$moved" \
        -DCMAKE_C_FLAGS="-std=gnu11 -Wall -Wextra -Werror" -DCMAKE_BUILD_RPATH="$moved/lib" &&
        cmake --build "$tmp/cmake-build" &&
        linked_as shared "$tmp/cmake-build/consumer-shared" "$moved" &&
        linked_as static "$tmp/cmake-build/consumer-static"
}

meson_build() {
    local dir
    dir=$(project_dir meson)
    # build_rpath: the shared program finds the prefix's library without
    # LD_LIBRARY_PATH (Meson adds no rpath for pkg-config -L paths).
    meson setup "$tmp/meson-build" "$dir" -Dc_link_args="-Wl,-rpath,$prefix/lib" &&
        ninja -C "$tmp/meson-build" &&
        linked_as shared "$tmp/meson-build/consumer-shared" &&
        linked_as static "$tmp/meson-build/consumer-static"
}

check "pkg-config aioctx (shared)" pkgconfig_build shared
check "pkg-config --static aioctx-static" pkgconfig_build static
check "CMake find_package(aioctx): aioctx::aioctx, aioctx::aioctx_static" cmake_build
check "Meson dependency('aioctx'), dependency('aioctx-static')" meson_build
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
