/*
 * The plain generated header must be usable from C++ (extern "C", no C-only
 * constructs). Compile-and-link check plus a tiny run:
 *
 *   g++ -std=gnu++17 -Wall -Wextra -Werror -Iinclude \
 *       c-tests/test-compat-cxx.cc -o build/test-compat-cxx \
 *       target/release/libaioctx.a $(pkg-config --libs glib-2.0) \
 *       -lgcc_s -lutil -lrt -lpthread -lm -ldl
 *   build/test-compat-cxx     # prints "1..1" / "ok 1 ..." (TAP), exits 0
 */
#include "aioctx.h"

#include <cstdio>
#include <cstdlib>

static int ran;

static void bump(void *opaque)
{
    ++*static_cast<int *>(opaque);
}

int main()
{
    QEMUBHFunc *f = bump; // QEMU's function-type typedefs work in C++ too
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUBH *bh = aio_bh_new(ctx, f, &ran);

    qemu_bh_schedule(bh);
    while (aio_poll(ctx, false)) {
    }
    qemu_bh_delete(bh);
    aio_context_unref(ctx);

    Error *err = aioctx_error_new("c++");
    bool ok = ran == 1 && error_get_pretty(err)[0] == 'c';
    error_free(err);

    std::printf("1..1\n%s 1 - aioctx.h from C++\n", ok ? "ok" : "not ok");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
