/*
 * bench/million_bh.c: the cost of scheduling and dispatching a BH must not
 * grow with the number of BHs allocated on the context.
 *
 *   million_bh  aioctx: 1,000,000 BHs allocated with aio_bh_new on one
 *               context, one of them (the last allocated; also the first,
 *               see million_bh/first) scheduled with qemu_bh_schedule and
 *               dispatched with aio_poll(ctx, false); ns per
 *               schedule + dispatch.
 *   peer        1_allocated: the same on a context with that single BH.
 *               The ratio is the growth factor (1.0 = flat).
 *   million_bh/alloc  ns per aio_bh_new (no peer), and million_bh/delete
 *               ns per qemu_bh_delete + the aio_poll that frees them.
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

#define NBH 1000000

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
} One;

static uint64_t count;

static void cb(void *opaque)
{
    (void)opaque;
    count++;
}

static void body(void *arg, uint64_t n)
{
    One *o = arg;
    count = 0;
    for (uint64_t i = 0; i < n; i++) {
        qemu_bh_schedule(o->bh);
        aio_poll(o->ctx, false);
    }
    if (count != n) {
        bench_die("BH ran %llu of %llu", (unsigned long long)count, (unsigned long long)n);
    }
}

int main(void)
{
    One big_last, big_first, small;
    QEMUBH **bhs;
    uint64_t t0, t_alloc, t_del;
    bench_stat st[3];
    bench_fn *fns[3] = { body, body, body };
    void *args[3] = { &big_last, &big_first, &small };
    int nbh = bench_callgrind() ? 10000 : NBH;

    bench_start("million_bh", "schedule + dispatch of 1 BH among 1M allocated");
    bench_use_cpu_time(true);
    bhs = malloc(sizeof(*bhs) * (size_t)nbh);
    if (!bhs) {
        bench_die("out of memory");
    }
    big_last.ctx = aio_context_new(NULL);
    small.ctx = aio_context_new(NULL);
    if (!big_last.ctx || !small.ctx) {
        bench_die("aio_context_new failed");
    }
    t0 = bench_now_ns();
    for (int i = 0; i < nbh; i++) {
        bhs[i] = aio_bh_new(big_last.ctx, cb, NULL);
    }
    t_alloc = bench_now_ns() - t0;
    big_last.bh = bhs[nbh - 1];
    big_first.ctx = big_last.ctx;
    big_first.bh = bhs[0];
    small.bh = aio_bh_new(small.ctx, cb, NULL);
    bench_note("%d BHs allocated", nbh);

    bench_compare(3, fns, args, bench_target_ns(200), 100000, st);
    bench_line("million_bh", st[0], "1_allocated", st[2], "ns/bh");
    bench_line("million_bh/first", st[1], "1_allocated", st[2], "ns/bh");

    t0 = bench_now_ns();
    for (int i = 0; i < nbh; i++) {
        qemu_bh_delete(bhs[i]);
    }
    aio_poll(big_last.ctx, false);
    t_del = bench_now_ns() - t0;
    bench_line("million_bh/alloc", bench_stat_single((double)t_alloc / nbh), NULL,
               bench_stat_single(0), "ns/bh");
    bench_line("million_bh/delete", bench_stat_single((double)t_del / nbh), NULL,
               bench_stat_single(0), "ns/bh");
    bench_note("alloc/delete: one run each (the million BHs are allocated once)");

    qemu_bh_delete(small.bh);
    aio_poll(small.ctx, false);
    aio_context_unref(small.ctx);
    aio_context_unref(big_last.ctx);
    free(bhs);
    return 0;
}
