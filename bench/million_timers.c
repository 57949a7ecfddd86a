/*
 * bench/million_timers.c: arm 1,000,000 timers at random deadlines within
 * about 1 s, then run the loop until all have fired (libuv's
 * million_timers, with random instead of stepped deadlines).
 *
 *   million_timers/arm      aioctx: aio_timer_init + timer_mod
 *                           (QEMU_CLOCK_REALTIME, SCALE_NS, now + rand(1 s))
 *                           ns per timer;
 *   million_timers/run_cpu  CPU time of the loop thread while it runs
 *                           aio_poll(ctx, true) until every timer fired,
 *                           ns per timer (the wall time is ~1 s by design);
 *   million_timers/total    wall time from the first arm to the last
 *                           callback, ms;
 *   million_timers/late_max   median of the runs' largest lateness
 *                           (callback time - deadline), us;
 *   million_timers/late_mean  mean lateness, us.
 * 3 runs by default (one takes ~5 s with the peer); AIOCTX_BENCH_RUNS
 * overrides.
 *   peer  uv_million_timers: uv_timer_init + uv_timer_start(now +
 *         rand(1000) ms) and uv_run(UV_RUN_DEFAULT) (libuv's timers have
 *         ms resolution).
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif

#define NTIMERS 1000000

typedef struct {
    double arm, run_cpu, total_ms, late_us, mean_late_us;
} Result;

static uint64_t fired;
static int64_t max_late, sum_late;

static QEMUTimer *timers;
static int64_t *deadline;

static void aio_cb_late(void *opaque)
{
    QEMUTimer *t = opaque;
    int64_t late = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - deadline[t - timers];
    if (late > max_late) {
        max_late = late;
    }
    sum_late += late;
    fired++;
}

static Result aio_million(AioContext *ctx, int n)
{
    Result r;
    uint64_t t0, t1, c0, t2;
    int64_t now;
    fired = 0;
    max_late = 0;
    sum_late = 0;
    t0 = bench_now_ns();
    now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    for (int i = 0; i < n; i++) {
        deadline[i] = now + (int64_t)(bench_rand() % 1000000000u);
        aio_timer_init(ctx, &timers[i], QEMU_CLOCK_REALTIME, SCALE_NS, aio_cb_late, &timers[i]);
        timer_mod(&timers[i], deadline[i]);
    }
    t1 = bench_now_ns();
    c0 = bench_cpu_ns();
    while (fired < (uint64_t)n) {
        aio_poll(ctx, true);
    }
    r.run_cpu = (double)(bench_cpu_ns() - c0) / n;
    t2 = bench_now_ns();
    r.arm = (double)(t1 - t0) / n;
    r.total_ms = (double)(t2 - t0) / 1e6;
    r.late_us = (double)max_late / 1e3;
    r.mean_late_us = (double)sum_late / n / 1e3;
    for (int i = 0; i < n; i++) {
        timer_deinit(&timers[i]);
    }
    return r;
}

#if AIOCTX_HAVE_LIBUV
static uv_timer_t *uv_timers;

static void uv_cb(uv_timer_t *h)
{
    (void)h;
    fired++;
}

static void on_uv_close(uv_handle_t *h)
{
    (void)h;
}

static Result uv_million(int n)
{
    Result r;
    uv_loop_t loop;
    uint64_t t0, t1, c0, t2;
    fired = 0;
    uv_loop_init(&loop);
    t0 = bench_now_ns();
    for (int i = 0; i < n; i++) {
        uv_timer_init(&loop, &uv_timers[i]);
        uv_timer_start(&uv_timers[i], uv_cb, bench_rand() % 1000, 0);
    }
    t1 = bench_now_ns();
    c0 = bench_cpu_ns();
    uv_run(&loop, UV_RUN_DEFAULT);
    r.run_cpu = (double)(bench_cpu_ns() - c0) / n;
    t2 = bench_now_ns();
    if (fired != (uint64_t)n) {
        bench_die("uv: %llu of %d timers fired", (unsigned long long)fired, n);
    }
    r.arm = (double)(t1 - t0) / n;
    r.total_ms = (double)(t2 - t0) / 1e6;
    r.late_us = 0;
    for (int i = 0; i < n; i++) {
        uv_close((uv_handle_t *)&uv_timers[i], on_uv_close);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r;
}
#endif

int main(void)
{
    int runs = bench_runs_capped(3);
    int n = bench_callgrind() ? 10000 : NTIMERS;
    static double a[5][BENCH_MAX_RUNS], u[4][BENCH_MAX_RUNS];
    AioContext *ctx;

    bench_start("million_timers", "arm 1M timers due within ~1 s, run them all");
    bench_note("runs: %d (capped at 3: one run takes ~5 s with the peer)", runs);
    ctx = aio_context_new(NULL);
    timers = calloc((size_t)n, sizeof(*timers));
    deadline = calloc((size_t)n, sizeof(*deadline));
    if (!ctx || !timers || !deadline) {
        bench_die("setup failed");
    }
#if AIOCTX_HAVE_LIBUV
    uv_timers = calloc((size_t)n, sizeof(*uv_timers));
    if (!uv_timers) {
        bench_die("out of memory");
    }
#endif
    for (int r = 0; r < runs; r++) {
        Result x = aio_million(ctx, n);
        a[0][r] = x.arm;
        a[1][r] = x.run_cpu;
        a[2][r] = x.total_ms;
        a[3][r] = x.late_us;
        a[4][r] = x.mean_late_us;
#if AIOCTX_HAVE_LIBUV
        x = uv_million(n);
        u[0][r] = x.arm;
        u[1][r] = x.run_cpu;
        u[2][r] = x.total_ms;
#endif
    }
    {
        const char *names[3] = { "million_timers/arm", "million_timers/run_cpu",
                                 "million_timers/total" };
        const char *units[3] = { "ns/timer", "ns/timer", "ms" };
        for (int i = 0; i < 3; i++) {
#if AIOCTX_HAVE_LIBUV
            bench_line(names[i], bench_stat_of(a[i], runs), "uv_million_timers",
                       bench_stat_of(u[i], runs), units[i]);
#else
            bench_line(names[i], bench_stat_of(a[i], runs), NULL, bench_stat_of(a[i], runs),
                       units[i]);
#endif
        }
        bench_line("million_timers/late_max", bench_stat_of(a[3], runs), NULL,
                   bench_stat_of(a[3], runs), "us");
        bench_line("million_timers/late_mean", bench_stat_of(a[4], runs), NULL,
                   bench_stat_of(a[4], runs), "us");
    }
    bench_note("%d timers per run", n);
    aio_context_unref(ctx);
    return 0;
}
