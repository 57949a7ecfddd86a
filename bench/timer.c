/*
 * Timer benchmarks.
 *
 *   timer_mod_random/N=...   re-arm a random one of N armed timers with a
 *                            random new deadline (ns per timer_mod), for
 *                            N = 100, 10 000, 100 000. Peers, same run:
 *                            libuv (uv_timer_start on an active timer: its
 *                            binary heap), and "qemu-list", a model of
 *                            QEMU's timer_mod_ns (mutex + sorted singly
 *                            linked list, unlink and insert by walking it).
 *   million_timers/...       arm 1M timers with random deadlines, then fire
 *                            them all (arm and fire ns per timer, total ms);
 *                            peer libuv. The wait until all are due is not
 *                            timed.
 *
 * Output: `name  aioctx_value  peer  peer_value  ratio  unit` (ratio =
 * aioctx / peer; peer `-` when none); lines starting with `#` are comments.
 * Each figure is the median of 5 repetitions, in thread CPU time (the timed
 * loops never block; on a shared machine wall time would count others).
 *
 * Build (scripts/run-bench.sh does this): cc -O2 -Iinclude bench/timer.c
 *   target/release/libaioctx.a -lpthread -ldl -lm
 *   [-DAIOCTX_HAVE_LIBUV=1 $(pkg-config --cflags --libs libuv)]
 * With AIOCTX_BENCH_CALLGRIND=1: one repetition, small counts, no peers.
 */
#include "aioctx.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif

#ifndef AIOCTX_HAVE_LIBUV
#define AIOCTX_HAVE_LIBUV 0
#endif

#define MAX_REPS 5

/* Sizes; small under callgrind (see main). */
static int reps = MAX_REPS;
static long mod_ops = 500000;
static int million = 1000000;
static int with_peers = 1;

/* Timed sections never block, so they are measured in this thread's CPU
 * time: on a shared machine, wall time would mostly count other processes. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t deadline)
{
    int64_t left = deadline - now_ns();
    if (left > 0) {
        struct timespec ts = { left / 1000000000, left % 1000000000 };
        nanosleep(&ts, NULL);
    }
}

/* xorshift64: cheap enough not to matter next to the operation timed, and
 * the same sequence for every implementation. */
static uint64_t rng_state;

static inline uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void rng_seed(uint64_t seed)
{
    rng_state = seed | 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static void report(const char *name, double ours, const char *peer, double theirs,
                   const char *unit)
{
    if (theirs > 0) {
        printf("%-28s %12.1f  %-10s %12.1f  %7.3f  %s\n", name, ours, peer, theirs,
               ours / theirs, unit);
    } else {
        printf("%-28s %12.1f  %-10s %12s  %7s  %s\n", name, ours, "-", "-", "-", unit);
    }
    fflush(stdout);
}

static void never_cb(void *opaque)
{
    (void)opaque;
    abort(); /* the timer_mod benchmark's deadlines are never reached */
}

/* Deadlines far in the future, spread over ~1000 s. */
#define FAR_NS (3600LL * 1000000000LL)
#define SPREAD_NS (1000LL * 1000000000LL)

/* ---- aioctx: timer_mod on a random one of N armed timers ---- */

static double aioctx_mod_random(int n, long ops)
{
    AioContext *ctx = aio_context_new(NULL);
    QEMUTimer *timers = calloc(n, sizeof(*timers));
    int64_t base = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + FAR_NS;

    rng_seed(42);
    for (int i = 0; i < n; i++) {
        aio_timer_init(ctx, &timers[i], QEMU_CLOCK_REALTIME, SCALE_NS, never_cb, NULL);
        timer_mod_ns(&timers[i], base + (int64_t)(rng() % SPREAD_NS));
    }
    int64_t start = cpu_ns();
    for (long k = 0; k < ops; k++) {
        uint64_t r = rng();
        timer_mod_ns(&timers[r % n], base + (int64_t)((r >> 20) % SPREAD_NS));
    }
    double ns = (double)(cpu_ns() - start) / ops;
    for (int i = 0; i < n; i++) {
        timer_del(&timers[i]);
    }
    free(timers);
    aio_context_unref(ctx);
    return ns;
}

/* ---- model of QEMU's sorted timer list (util/qemu-timer.c) ---- */

typedef struct ModelTimer {
    int64_t expire_time; /* -1: not pending */
    struct ModelTimer *next;
} ModelTimer;

typedef struct {
    pthread_mutex_t lock;
    ModelTimer *active;
} ModelList;

static void model_del_locked(ModelList *l, ModelTimer *ts)
{
    ModelTimer **pt = &l->active;
    ts->expire_time = -1;
    for (;;) {
        ModelTimer *t = *pt;
        if (!t) {
            break;
        }
        if (t == ts) {
            *pt = t->next;
            break;
        }
        pt = &t->next;
    }
}

static void model_mod_ns(ModelList *l, ModelTimer *ts, int64_t expire_time)
{
    pthread_mutex_lock(&l->lock);
    model_del_locked(l, ts);
    ModelTimer **pt = &l->active;
    for (;;) {
        ModelTimer *t = *pt;
        if (!t || t->expire_time > expire_time) {
            break;
        }
        pt = &t->next;
    }
    ts->expire_time = expire_time;
    ts->next = *pt;
    *pt = ts;
    pthread_mutex_unlock(&l->lock);
}

static int cmp_model_timer(const void *a, const void *b)
{
    const ModelTimer *x = *(ModelTimer *const *)a, *y = *(ModelTimer *const *)b;
    return x->expire_time < y->expire_time ? -1 : x->expire_time > y->expire_time;
}

static double qemu_model_mod_random(int n, long ops)
{
    ModelList l = { .active = NULL };
    ModelTimer *timers = calloc(n, sizeof(*timers));
    int64_t base = now_ns() + FAR_NS;

    pthread_mutex_init(&l.lock, NULL);
    rng_seed(42);
    /* Set up the sorted list directly: N inserts would be O(N^2). */
    ModelTimer **sorted = calloc(n, sizeof(*sorted));
    for (int i = 0; i < n; i++) {
        timers[i].expire_time = base + (int64_t)(rng() % SPREAD_NS);
        sorted[i] = &timers[i];
    }
    qsort(sorted, n, sizeof(*sorted), cmp_model_timer);
    for (int i = n - 1; i >= 0; i--) {
        sorted[i]->next = l.active;
        l.active = sorted[i];
    }
    free(sorted);
    int64_t start = cpu_ns();
    for (long k = 0; k < ops; k++) {
        uint64_t r = rng();
        model_mod_ns(&l, &timers[r % n], base + (int64_t)((r >> 20) % SPREAD_NS));
    }
    double ns = (double)(cpu_ns() - start) / ops;
    pthread_mutex_destroy(&l.lock);
    free(timers);
    return ns;
}

#if AIOCTX_HAVE_LIBUV
static void uv_never_cb(uv_timer_t *t)
{
    (void)t;
    abort();
}

static double libuv_mod_random(int n, long ops)
{
    uv_loop_t loop;
    uv_timer_t *timers = calloc(n, sizeof(*timers));
    /* libuv deadlines are ms relative to the loop's time. */
    const uint64_t far_ms = FAR_NS / 1000000, spread_ms = SPREAD_NS / 1000000;

    uv_loop_init(&loop);
    rng_seed(42);
    for (int i = 0; i < n; i++) {
        uv_timer_init(&loop, &timers[i]);
        uv_timer_start(&timers[i], uv_never_cb, far_ms + rng() % spread_ms, 0);
    }
    int64_t start = cpu_ns();
    for (long k = 0; k < ops; k++) {
        uint64_t r = rng();
        uv_timer_start(&timers[r % n], uv_never_cb, far_ms + (r >> 20) % spread_ms, 0);
    }
    double ns = (double)(cpu_ns() - start) / ops;
    for (int i = 0; i < n; i++) {
        uv_close((uv_handle_t *)&timers[i], NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);
    return ns;
}
#endif

static void bench_mod_random(int n)
{
    double ours[MAX_REPS], uv[MAX_REPS], qemu[MAX_REPS];
    /* The list model is O(n) per operation: fewer iterations. */
    long model_ops = n <= 100 ? mod_ops : mod_ops * 20 / n;
    char name[64];

    snprintf(name, sizeof(name), "timer_mod_random/N=%d", n);
    for (int r = 0; r < reps; r++) {
        ours[r] = aioctx_mod_random(n, mod_ops);
    }
    double m_ours = median(ours, reps);
    if (!with_peers) {
        report(name, m_ours, "-", 0, "ns/op");
        return;
    }
#if AIOCTX_HAVE_LIBUV
    for (int r = 0; r < reps; r++) {
        uv[r] = libuv_mod_random(n, mod_ops);
    }
    report(name, m_ours, "libuv", median(uv, reps), "ns/op");
#else
    (void)uv;
#endif
    for (int r = 0; r < reps; r++) {
        qemu[r] = qemu_model_mod_random(n, model_ops);
    }
    report(name, m_ours, "qemu-list", median(qemu, reps), "ns/op");
}

/* ---- 1M timers armed, then fired ---- */

#define SPREAD_100MS (100LL * 1000000) /* deadlines within 100 ms */

static long fired_count;

static void count_cb(void *opaque)
{
    (void)opaque;
    fired_count++;
}

static void aioctx_million(double *arm_ns, double *fire_ns)
{
    AioContext *ctx = aio_context_new(NULL);
    QEMUTimer *timers = calloc(million, sizeof(*timers));

    rng_seed(7);
    for (int i = 0; i < million; i++) {
        aio_timer_init(ctx, &timers[i], QEMU_CLOCK_REALTIME, SCALE_NS, count_cb, NULL);
    }
    int64_t base = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t start = cpu_ns();
    for (int i = 0; i < million; i++) {
        timer_mod_ns(&timers[i], base + (int64_t)(rng() % SPREAD_100MS));
    }
    *arm_ns = (double)(cpu_ns() - start) / million;

    sleep_until(base + SPREAD_100MS + 1000000);
    fired_count = 0;
    start = cpu_ns();
    while (fired_count < million) {
        aio_poll(ctx, false);
    }
    *fire_ns = (double)(cpu_ns() - start) / million;
    free(timers);
    aio_context_unref(ctx);
}

#if AIOCTX_HAVE_LIBUV
static void uv_count_cb(uv_timer_t *t)
{
    (void)t;
    fired_count++;
}

static void libuv_million(double *arm_ns, double *fire_ns)
{
    uv_loop_t loop;
    uv_timer_t *timers = calloc(million, sizeof(*timers));
    const uint64_t spread_ms = SPREAD_100MS / 1000000;

    uv_loop_init(&loop);
    rng_seed(7);
    for (int i = 0; i < million; i++) {
        uv_timer_init(&loop, &timers[i]);
    }
    uv_update_time(&loop);
    int64_t base = now_ns();
    int64_t start = cpu_ns();
    for (int i = 0; i < million; i++) {
        uv_timer_start(&timers[i], uv_count_cb, rng() % spread_ms, 0);
    }
    *arm_ns = (double)(cpu_ns() - start) / million;

    sleep_until(base + SPREAD_100MS + 2000000);
    fired_count = 0;
    start = cpu_ns();
    while (fired_count < million) {
        uv_run(&loop, UV_RUN_NOWAIT);
    }
    *fire_ns = (double)(cpu_ns() - start) / million;
    for (int i = 0; i < million; i++) {
        uv_close((uv_handle_t *)&timers[i], NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(timers);
}
#endif

static void bench_million(void)
{
    double arm[MAX_REPS], fire[MAX_REPS], total[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        aioctx_million(&arm[r], &fire[r]);
        total[r] = (arm[r] + fire[r]) * million / 1e6;
    }
    double m_arm = median(arm, reps), m_fire = median(fire, reps);
    double m_total = median(total, reps);
#if AIOCTX_HAVE_LIBUV
    if (with_peers) {
        double uarm[MAX_REPS], ufire[MAX_REPS], utotal[MAX_REPS];
        for (int r = 0; r < reps; r++) {
            libuv_million(&uarm[r], &ufire[r]);
            utotal[r] = (uarm[r] + ufire[r]) * million / 1e6;
        }
        report("million_timers/arm", m_arm, "libuv", median(uarm, reps), "ns/timer");
        report("million_timers/fire", m_fire, "libuv", median(ufire, reps), "ns/timer");
        report("million_timers/total", m_total, "libuv", median(utotal, reps), "ms");
        return;
    }
#endif
    report("million_timers/arm", m_arm, "-", 0, "ns/timer");
    report("million_timers/fire", m_fire, "-", 0, "ns/timer");
    report("million_timers/total", m_total, "-", 0, "ms");
}

int main(void)
{
    const char *cg = getenv("AIOCTX_BENCH_CALLGRIND");
    if (cg && *cg && strcmp(cg, "0") != 0) {
        reps = 1;
        mod_ops = 20000;
        million = 20000;
        with_peers = 0;
    }
    printf("# aioctx timer benchmark: median of %d runs; ratio = aioctx / peer;\n", reps);
    printf("# times are thread CPU time (the timed loops never block)\n");
    printf("# qemu-list = model of QEMU's sorted-list timer_mod_ns, built into this bench\n");
    printf("# %-26s %12s  %-10s %12s  %7s  %s\n", "name", "aioctx", "peer", "peer_value",
           "ratio", "unit");
    bench_mod_random(100);
    bench_mod_random(10000);
    bench_mod_random(100000);
    bench_million();
    return 0;
}
