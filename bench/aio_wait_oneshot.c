/*
 * bench/aio_wait_oneshot.c: synchronous round trip to an IOThread.
 *
 *   aio_wait_oneshot  aioctx: after qemu_init_main_loop, the main thread
 *                     calls aio_wait_bh_oneshot(ctx, noop, NULL) on the
 *                     context of an IOThread made with aioctx_iothread_new
 *                     (which busy-polls at QEMU's iothread defaults: 32 us,
 *                     grow 2, shrink 2), i.e. schedules a oneshot BH there
 *                     and polls the main context until it ran; ns per call.
 *   peer              raw_eventfd: the same round trip done by hand: write
 *                     an eventfd the other thread blocks on, block on a
 *                     second eventfd until it answers.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "aioctx.h"
#include "bench-util.h"
#include "bench-peers.h"

static uint64_t count;

static void noop_cb(void *opaque)
{
    (void)opaque;
    count++; /* in the IOThread; read by the main thread after the wait */
}

static void aio_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    count = 0;
    for (uint64_t i = 0; i < n; i++) {
        aio_wait_bh_oneshot(ctx, noop_cb, NULL);
    }
    if (count != n) {
        bench_die("callback ran %llu of %llu", (unsigned long long)count, (unsigned long long)n);
    }
}

int main(void)
{
    AioctxIOThread *iot;
    AioContext *ctx;
    static BenchEfd e;
    bench_stat st[2];
    bench_fn *fns[2] = { aio_body, bench_efd_body };
    void *args[2];

    bench_start("aio_wait_oneshot", "aio_wait_bh_oneshot round trip to an IOThread");
    if (bench_callgrind()) {
        bench_note("skipped under callgrind (cross-thread)");
        return 0;
    }
    if (qemu_init_main_loop(NULL) != 0) {
        bench_die("qemu_init_main_loop failed");
    }
    iot = aioctx_iothread_new("bench-iothread", NULL);
    if (!iot) {
        bench_die("aioctx_iothread_new failed");
    }
    ctx = aioctx_iothread_get_aio_context(iot);
    bench_efd_open(&e);
    args[0] = ctx;
    args[1] = &e;
    bench_compare(2, fns, args, bench_target_ns(250), 1000, st);
    bench_line("aio_wait_oneshot", st[0], "raw_eventfd", st[1], "ns/rt");
    bench_note("IOThread poll window at the end: %lld ns",
               (long long)aioctx_context_get_poll_ns(ctx));
    aioctx_iothread_join(iot);
    bench_efd_close(&e);
    return 0;
}
