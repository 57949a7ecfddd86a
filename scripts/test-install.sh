#!/usr/bin/env bash
# Installs into a temporary prefix and builds examples/hello-bh.c with
# nothing but `pkg-config aioctx`: against the shared library, and against
# the static one with `pkg-config --static aioctx-static`. Then builds a compat-style
# program that includes "qemu/aio.h" from the installed compat tree.
set -euo pipefail
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
make -s install PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
pass=0 fail=0
check() {
    local name=$1; shift
    if "$@"; then echo "ok - $name"; pass=$((pass + 1)); else echo "not ok - $name"; fail=$((fail + 1)); fi
}
shared() {
    $cc -std=gnu11 -Wall -Wextra -Werror examples/hello-bh.c -o "$prefix/hello-shared" \
        $(pkg-config --cflags --libs aioctx) -Wl,-rpath,"$prefix/lib" &&
        "$prefix/hello-shared" >/dev/null &&
        ldd "$prefix/hello-shared" | grep "libaioctx.so.0 => $prefix/lib/" >/dev/null
}
static() {
    $cc -std=gnu11 -Wall -Wextra -Werror examples/hello-bh.c -o "$prefix/hello-static" \
        $(pkg-config --cflags --libs --static aioctx-static) &&
        "$prefix/hello-static" >/dev/null && ! ldd "$prefix/hello-static" | grep libaioctx >/dev/null
}
compat() {
    printf '%s\n' '#include "qemu/osdep.h"' '#include "qemu/aio.h"' '#include "qemu/main-loop.h"' \
        '#include "qapi/error.h"' \
        'static void cb(void *o) { (*(int *)o)++; }' \
        'int main(void) { int n = 0; Error *err = NULL; AioContext *ctx = aio_context_new(&error_abort);' \
        '  aio_bh_schedule_oneshot(ctx, cb, &n); while (aio_poll(ctx, false)) {}' \
        '  error_setg(&err, "x%d", n); error_free(err); aio_context_unref(ctx); return n == 1 ? 0 : 1; }' \
        > "$prefix/compat.c" &&
        $cc -std=gnu11 -Wall -Wextra -Werror "$prefix/compat.c" -o "$prefix/compat" \
            $(pkg-config --cflags --libs aioctx) -Wl,-rpath,"$prefix/lib" && "$prefix/compat"
}
check "install: hello-bh with pkg-config (shared)" shared
check "install: hello-bh with pkg-config --static aioctx-static" static
check "install: QEMU-style program against the installed compat headers" compat
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
