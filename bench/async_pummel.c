/*
 * bench/async_pummel.c: many threads waking one loop at once.
 *
 * 4 threads call qemu_bh_schedule on the same BH as fast as they can for
 * about 300 ms while the owner thread (bound to the context) loops
 * aio_poll(ctx, true). Scheduling a scheduled BH does nothing more, so the
 * callbacks run far less often than the schedules: they are coalesced.
 * When its time is up each hammer thread schedules once more; the owner
 * keeps polling until a callback has run after the last of those (a lost
 * final wakeup would hang it: a watchdog turns that into a failure).
 *
 *   async_pummel/schedules   qemu_bh_schedule calls per second, all
 *                            threads (higher is better);
 *   async_pummel/callbacks   callbacks run per second;
 *   async_pummel/coalescing  schedules per callback;
 *   async_pummel/lost_final  final wakeups lost (must be 0; no peer).
 *   async_pummel/sleep_wake  1000 times: the owner blocks in
 *                            aio_poll(ctx, true), another thread schedules
 *                            the BH after a random 0-20 us delay; counts
 *                            the wakeups lost (must be 0) and reports the
 *                            median schedule-to-callback latency.
 * Peer: uv_async: the same with uv_async_send on one uv_async_t (libuv's
 * async_pummel benchmark), the owner running uv_run.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "aioctx.h"
#include "bench-util.h"

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif

#define NHAMMER 4
#define WATCHDOG_NS (10ull * 1000000000ull)

typedef struct Pummel Pummel;
struct Pummel {
    void (*send)(Pummel *p);
    uint64_t duration_ns;
    atomic_bool go;
    atomic_uint final_done;   /* hammers past their final send's start */
    atomic_uint seen_final;   /* final_done as read by the last callback */
    atomic_uint_fast64_t schedules;
    atomic_uint_fast64_t callbacks;
    uint64_t t_start;
    atomic_uint_fast64_t t_end_max;
    AioContext *ctx;
    QEMUBH *bh;
#if AIOCTX_HAVE_LIBUV
    uv_loop_t loop;
    uv_async_t async;
#endif
};

static atomic_uint_fast64_t watchdog_deadline;
static const char *watchdog_what = "";

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        uint64_t d = atomic_load(&watchdog_deadline);
        if (d && bench_now_ns() > d) {
            printf("async_pummel/lost_final  1  -  -  -  lost\n");
            fflush(stdout);
            fprintf(stderr, "async_pummel: %s: hung for 10 s (lost wakeup?)\n", watchdog_what);
            _exit(1);
        }
        usleep(10000);
    }
    return NULL;
}

static void *hammer(void *arg)
{
    Pummel *p = arg;
    uint64_t n = 0, end;
    while (!atomic_load(&p->go)) {
        bench_cpu_relax();
    }
    end = p->t_start + p->duration_ns;
    for (;;) {
        for (int i = 0; i < 256; i++) {
            p->send(p);
        }
        n += 256;
        if (bench_now_ns() >= end) {
            break;
        }
    }
    end = bench_now_ns();
    atomic_fetch_add(&p->schedules, n);
    uint_fast64_t cur = atomic_load(&p->t_end_max);
    while (cur < end && !atomic_compare_exchange_weak(&p->t_end_max, &cur, end)) {
    }
    /* The final wakeup: a callback must start after this send. */
    atomic_fetch_add(&p->final_done, 1);
    p->send(p);
    return NULL;
}

static void on_callback(Pummel *p)
{
    atomic_fetch_add_explicit(&p->callbacks, 1, memory_order_relaxed);
    atomic_store(&p->seen_final, atomic_load(&p->final_done));
}

/* Runs one pummel; `poll_until_final` is the owner's loop. */
static void run_pummel(Pummel *p, void (*poll_until_final)(Pummel *p), const char *what)
{
    pthread_t t[NHAMMER];
    atomic_store(&p->go, false);
    atomic_store(&p->final_done, 0);
    atomic_store(&p->seen_final, 0);
    atomic_store(&p->schedules, 0);
    atomic_store(&p->callbacks, 0);
    atomic_store(&p->t_end_max, 0);
    for (int i = 0; i < NHAMMER; i++) {
        if (pthread_create(&t[i], NULL, hammer, p)) {
            bench_die("pthread_create failed");
        }
    }
    p->t_start = bench_now_ns();
    watchdog_what = what;
    atomic_store(&watchdog_deadline, p->t_start + p->duration_ns + WATCHDOG_NS);
    atomic_store(&p->go, true);
    poll_until_final(p);
    atomic_store(&watchdog_deadline, 0);
    for (int i = 0; i < NHAMMER; i++) {
        pthread_join(t[i], NULL);
    }
}

/* ---- aioctx ------------------------------------------------------------ */

static void aio_send(Pummel *p)
{
    qemu_bh_schedule(p->bh);
}

static void aio_cb(void *opaque)
{
    on_callback(opaque);
}

static void aio_owner(Pummel *p)
{
    while (atomic_load(&p->seen_final) < NHAMMER) {
        aio_poll(p->ctx, true);
    }
}

/* ---- libuv -------------------------------------------------------------- */

#if AIOCTX_HAVE_LIBUV
static void uv_send(Pummel *p)
{
    uv_async_send(&p->async);
}

static void uv_cb(uv_async_t *h)
{
    on_callback(h->data);
}

static void uv_owner(Pummel *p)
{
    while (atomic_load(&p->seen_final) < NHAMMER) {
        uv_run(&p->loop, UV_RUN_ONCE);
    }
}
#endif

/* ---- sleep/wake race ---------------------------------------------------- */

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
    atomic_uint round;        /* owner -> waker: about to block in round r */
    atomic_uint done_round;   /* the callback ran for round r */
    atomic_uint_fast64_t t_sched;
    uint64_t lat[1000];
    unsigned rounds;
} SleepWake;

static void sw_cb(void *opaque)
{
    SleepWake *s = opaque;
    unsigned r = atomic_load(&s->round);
    s->lat[r - 1] = bench_now_ns() - atomic_load(&s->t_sched);
    atomic_store(&s->done_round, r);
}

static void *sw_waker(void *arg)
{
    SleepWake *s = arg;
    uint64_t seed = 88172645463325252ull;
    for (unsigned r = 1; r <= s->rounds; r++) {
        uint64_t delay, t0;
        while (atomic_load(&s->round) != r) {
            bench_cpu_relax();
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        delay = seed % 20000;
        t0 = bench_now_ns();
        while (bench_now_ns() - t0 < delay) {
            bench_cpu_relax();
        }
        atomic_store(&s->t_sched, bench_now_ns());
        qemu_bh_schedule(s->bh);
        while (atomic_load(&s->done_round) != r) {
            bench_cpu_relax();
        }
    }
    return NULL;
}

static void sleep_wake(AioContext *ctx)
{
    static SleepWake s;
    pthread_t t;
    double lat[1000];
    s.ctx = ctx;
    s.bh = aio_bh_new(ctx, sw_cb, &s);
    s.rounds = 1000;
    if (pthread_create(&t, NULL, sw_waker, &s)) {
        bench_die("pthread_create failed");
    }
    watchdog_what = "sleep_wake";
    for (unsigned r = 1; r <= s.rounds; r++) {
        atomic_store(&watchdog_deadline, bench_now_ns() + WATCHDOG_NS);
        atomic_store(&s.round, r);
        while (atomic_load(&s.done_round) != r) {
            aio_poll(ctx, true);
        }
    }
    atomic_store(&watchdog_deadline, 0);
    pthread_join(t, NULL);
    qemu_bh_delete(s.bh);
    for (unsigned i = 0; i < s.rounds; i++) {
        lat[i] = (double)s.lat[i];
    }
    /* bench_stat_of takes at most BENCH_MAX_RUNS values: sort by hand. */
    qsort(lat, s.rounds, sizeof(double), bench_cmp_double);
    bench_stat st = { lat[s.rounds / 2], lat[0], lat[s.rounds - 1], (int)s.rounds };
    bench_line("async_pummel/sleep_wake_lost", bench_stat_single(0), NULL, st, "lost_of_1000");
    bench_line("async_pummel/sleep_wake_latency", st, NULL, st, "ns");
}

int main(void)
{
    static Pummel a, u;
    pthread_t wd;
    int runs = bench_runs();
    double v[3][BENCH_MAX_RUNS];
    double uvv[3][BENCH_MAX_RUNS];
    double dur_ms = bench_target_ns(300) / 1e6;

    bench_start("async_pummel", "4 threads hammering one BH while its owner polls");
    if (bench_callgrind()) {
        bench_note("skipped under callgrind (cross-thread)");
        return 0;
    }
    bench_note("%d hammer threads, %.0f ms per run, %ld CPUs online", NHAMMER, dur_ms,
               sysconf(_SC_NPROCESSORS_ONLN));
    if (pthread_create(&wd, NULL, watchdog, NULL)) {
        bench_die("pthread_create failed");
    }
    pthread_detach(wd);

    a.ctx = aio_context_new(NULL);
    if (!a.ctx) {
        bench_die("aio_context_new failed");
    }
    qemu_set_current_aio_context(a.ctx);
    a.bh = aio_bh_new(a.ctx, aio_cb, &a);
    a.send = aio_send;
    a.duration_ns = (uint64_t)(dur_ms * 1e6);
#if AIOCTX_HAVE_LIBUV
    uv_loop_init(&u.loop);
    uv_async_init(&u.loop, &u.async, uv_cb);
    u.async.data = &u;
    u.send = uv_send;
    u.duration_ns = a.duration_ns;
#endif

    for (int r = 0; r < runs; r++) {
        double secs;
        run_pummel(&a, aio_owner, "aioctx pummel");
        /* Drain anything left (a schedule may land after the final one). */
        while (aio_poll(a.ctx, false)) {
        }
        secs = (double)(atomic_load(&a.t_end_max) - a.t_start) / 1e9;
        v[0][r] = (double)atomic_load(&a.schedules) / secs / 1e6;
        v[1][r] = (double)atomic_load(&a.callbacks) / secs / 1e6;
        v[2][r] = (double)atomic_load(&a.schedules) / (double)atomic_load(&a.callbacks);
#if AIOCTX_HAVE_LIBUV
        run_pummel(&u, uv_owner, "uv_async pummel");
        secs = (double)(atomic_load(&u.t_end_max) - u.t_start) / 1e9;
        uvv[0][r] = (double)atomic_load(&u.schedules) / secs / 1e6;
        uvv[1][r] = (double)atomic_load(&u.callbacks) / secs / 1e6;
        uvv[2][r] = (double)atomic_load(&u.schedules) / (double)atomic_load(&u.callbacks);
#else
        uvv[0][r] = uvv[1][r] = uvv[2][r] = 0;
#endif
    }
    const char *names[3] = { "async_pummel/schedules", "async_pummel/callbacks",
                             "async_pummel/coalescing" };
    const char *units[3] = { "Mops/s", "Mcallbacks/s", "schedules/cb" };
    for (int i = 0; i < 3; i++) {
        bench_stat sa = bench_stat_of(v[i], runs);
#if AIOCTX_HAVE_LIBUV
        bench_line(names[i], sa, "uv_async", bench_stat_of(uvv[i], runs), units[i]);
#else
        bench_line(names[i], sa, NULL, sa, units[i]);
#endif
    }
    bench_line("async_pummel/lost_final", bench_stat_single(0), NULL, bench_stat_single(0),
               "lost");
    bench_note("schedules and callbacks: higher is better; lost_final: a callback ran after "
               "every run's final schedules");

    sleep_wake(a.ctx);

#if AIOCTX_HAVE_LIBUV
    uv_close((uv_handle_t *)&u.async, NULL);
    uv_run(&u.loop, UV_RUN_DEFAULT);
    uv_loop_close(&u.loop);
#endif
    qemu_bh_delete(a.bh);
    aio_poll(a.ctx, false);
    return 0;
}
