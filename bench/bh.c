/*
 * bench/bh.c: bottom-half costs of aioctx, with a raw eventfd ping-pong
 * measured in the same run as the reference for the cross-thread case.
 *
 * Numbers, not assertions. Each measurement runs 5 times; the line per
 * metric is
 *
 *     name  aioctx_value  peer  peer_value  ratio  unit
 *
 * with the median of the 5 runs ("-" where there is no peer; ratio is
 * aioctx / peer), followed by a "#" line with min and max of both.
 *
 *   bh_reschedule  same thread: a BH whose callback reschedules itself,
 *                  the thread looping aio_poll(ctx, false); ns per BH.
 *   bh_oneshot     same thread: aio_bh_schedule_oneshot + aio_poll(ctx,
 *                  false); ns per BH (includes its allocation and free).
 *                  Both same-thread numbers use the thread's CPU time (see
 *                  cpu_ns); the two-thread ones use wall time.
 *   bh_pingpong    two threads, each bound to its own context and looping
 *                  aio_poll(ctx, true); a BH of A schedules a BH of B and
 *                  vice versa; us per round trip. Peer: raw_eventfd, two
 *                  threads doing blocking read/write on two eventfds.
 *
 * Build and run: `make bench` (every bench program; report in
 * bench/RESULTS.md), or by hand:
 *   cargo build --release && cc -O2 -std=gnu11 -Wall -Wextra -Werror \
 *     bench/bh.c -o /tmp/bh $(make -s print-link-flags) && /tmp/bh
 * Runs in a few seconds.
 *
 * Environment: BH_BENCH_SCALE (default 1.0) multiplies the iteration counts.
 * AIOCTX_BENCH_CALLGRIND=1 (make bench-callgrind): only the same-thread
 * benchmarks, with small counts (instruction counts, not times, matter).
 */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "aioctx.h"
#include "bench-peers.h"

#define RUNS 5

static double scale = 1.0;

static long iters(long base)
{
    long n = (long)(base * scale);
    return n < 1 ? 1 : n;
}

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wall time, for the two-thread measurements. */
static uint64_t now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

/*
 * CPU time of the calling thread, for the same-thread measurements: they
 * never block, so on an idle machine this equals wall time, and on a busy
 * one (a CI box, parallel builds) it leaves out the time the thread was
 * not running.
 */
static uint64_t cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static void die(const char *what)
{
    fprintf(stderr, "bench/bh: %s: %s\n", what, strerror(errno));
    exit(1);
}

static AioContext *new_context(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    if (!ctx) {
        fprintf(stderr, "bench/bh: aio_context_new failed\n");
        exit(1);
    }
    return ctx;
}

/* ------------------------------------------------------------------------ */
/* (a) Same-thread reschedule. */

struct resched {
    QEMUBH *bh;
    long count;
    long n;
};

static void resched_cb(void *opaque)
{
    struct resched *r = opaque;
    if (++r->count < r->n) {
        qemu_bh_schedule(r->bh);
    }
}

/* ns per BH */
static double run_reschedule(AioContext *ctx, long n)
{
    struct resched r = { .count = 0, .n = n };
    r.bh = aio_bh_new(ctx, resched_cb, &r);
    qemu_bh_schedule(r.bh);
    uint64_t t0 = cpu_ns();
    while (r.count < n) {
        aio_poll(ctx, false);
    }
    uint64_t t1 = cpu_ns();
    qemu_bh_delete(r.bh);
    aio_poll(ctx, false); /* lets the loop free the deleted BH */
    return (double)(t1 - t0) / (double)n;
}

/* ------------------------------------------------------------------------ */
/* (b) Oneshot BHs. */

static void oneshot_cb(void *opaque)
{
    (*(long *)opaque)++;
}

/* ns per BH */
static double run_oneshot(AioContext *ctx, long n)
{
    long count = 0;
    uint64_t t0 = cpu_ns();
    for (long i = 0; i < n; i++) {
        aio_bh_schedule_oneshot(ctx, oneshot_cb, &count);
        aio_poll(ctx, false);
    }
    uint64_t t1 = cpu_ns();
    if (count != n) {
        fprintf(stderr, "bench/bh: oneshot ran %ld of %ld\n", count, n);
        exit(1);
    }
    return (double)(t1 - t0) / (double)n;
}

/* ------------------------------------------------------------------------ */
/* (c) Cross-thread BH ping-pong between two contexts. */

struct pingpong {
    AioContext *ctx_a, *ctx_b;
    QEMUBH *bh_a, *bh_b;
    long n;
    long count;          /* touched by A's BH only */
    atomic_bool done;    /* A finished: B stops polling */
    atomic_int b_ready;  /* B bound its context */
};

/* Runs in A: one round trip completed. */
static void ping_a(void *opaque)
{
    struct pingpong *p = opaque;
    if (++p->count < p->n) {
        qemu_bh_schedule(p->bh_b);
    } else {
        atomic_store(&p->done, true);
        aio_notify(p->ctx_b);
    }
}

/* Runs in B: bounce back. */
static void pong_b(void *opaque)
{
    struct pingpong *p = opaque;
    qemu_bh_schedule(p->bh_a);
}

static void *thread_b(void *opaque)
{
    struct pingpong *p = opaque;
    qemu_set_current_aio_context(p->ctx_b);
    atomic_store(&p->b_ready, 1);
    while (!atomic_load(&p->done)) {
        aio_poll(p->ctx_b, true);
    }
    /* Drain anything left (nothing is scheduled once A is done). */
    while (aio_poll(p->ctx_b, false)) {
    }
    return NULL;
}

struct pp_run {
    struct pingpong *p;
    double us_per_rt;
};

static void *thread_a(void *opaque)
{
    struct pp_run *run = opaque;
    struct pingpong *p = run->p;
    qemu_set_current_aio_context(p->ctx_a);
    while (!atomic_load(&p->b_ready)) {
        sched_yield();
    }
    uint64_t t0 = now_ns();
    qemu_bh_schedule(p->bh_b);
    while (p->count < p->n) {
        aio_poll(p->ctx_a, true);
    }
    uint64_t t1 = now_ns();
    run->us_per_rt = (double)(t1 - t0) / 1000.0 / (double)p->n;
    return NULL;
}

/* us per round trip */
static double run_bh_pingpong(long n)
{
    struct pingpong p = { .n = n };
    atomic_init(&p.done, false);
    atomic_init(&p.b_ready, 0);
    p.ctx_a = new_context();
    p.ctx_b = new_context();
    p.bh_a = aio_bh_new_full(p.ctx_a, ping_a, &p, "bench ping", NULL);
    p.bh_b = aio_bh_new_full(p.ctx_b, pong_b, &p, "bench pong", NULL);

    struct pp_run run = { .p = &p };
    pthread_t ta, tb;
    if (pthread_create(&tb, NULL, thread_b, &p) ||
        pthread_create(&ta, NULL, thread_a, &run)) {
        die("pthread_create");
    }
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);

    qemu_bh_delete(p.bh_a);
    qemu_bh_delete(p.bh_b);
    aio_context_unref(p.ctx_a);
    aio_context_unref(p.ctx_b);
    return run.us_per_rt;
}

/* ------------------------------------------------------------------------ */
/* (d) Raw eventfd ping-pong (the reference). */

/* BenchEfd and bench_efd_* are in bench-peers.h. */

/* us per round trip */
static double run_raw_pingpong(long n)
{
    BenchEfd r = { .n = (uint64_t)n };
    bench_efd_open(&r);
    pthread_t tb;
    if (pthread_create(&tb, NULL, bench_efd_thread, &r)) {
        die("pthread_create");
    }
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        bench_efd_write(r.ab);
        bench_efd_read(r.ba);
    }
    uint64_t t1 = now_ns();
    pthread_join(tb, NULL);
    bench_efd_close(&r);
    return (double)(t1 - t0) / 1000.0 / (double)n;
}

/* ------------------------------------------------------------------------ */
/* Reporting. */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, min, max;
};

static struct stats summarize(const double *v)
{
    double s[RUNS];
    memcpy(s, v, sizeof s);
    qsort(s, RUNS, sizeof s[0], cmp_double);
    return (struct stats){ s[RUNS / 2], s[0], s[RUNS - 1] };
}

static void report(const char *name, const double *mine, const char *peer,
                   const double *theirs, const char *unit)
{
    struct stats a = summarize(mine);
    if (theirs) {
        struct stats b = summarize(theirs);
        printf("%-14s %8.3f  %-12s %8.3f  %5.2f  %s\n", name, a.median, peer,
               b.median, a.median / b.median, unit);
        printf("#   %s min %.3f max %.3f; %s min %.3f max %.3f\n", name, a.min,
               a.max, peer, b.min, b.max);
    } else {
        printf("%-14s %8.3f  %-12s %8s  %5s  %s\n", name, a.median, "-", "-",
               "-", unit);
        printf("#   %s min %.3f max %.3f\n", name, a.min, a.max);
    }
    fflush(stdout);
}

int main(void)
{
    bench_prog = "bench/bh"; /* for bench_die in bench-peers.h, as die() */
    const char *s = getenv("BH_BENCH_SCALE");
    if (s && *s) {
        scale = atof(s);
        if (scale <= 0) {
            scale = 1.0;
        }
    }
    const char *cg = getenv("AIOCTX_BENCH_CALLGRIND");
    const bool callgrind = cg && *cg && strcmp(cg, "0") != 0;
    if (callgrind) {
        scale *= 0.005;
    }

    const long n_resched = iters(4000000);
    const long n_oneshot = iters(2000000);
    const long n_pingpong = iters(30000);

    printf("# aioctx bench/bh.c: median of %d runs (min/max on the '#' line "
           "below each); ratio = aioctx / peer\n", RUNS);
    printf("# name          aioctx       peer             peer  ratio  unit\n");

    /* Same-thread loops run in this thread on an unbound context. */
    AioContext *ctx = new_context();
    double resched[RUNS], oneshot[RUNS];
    run_reschedule(ctx, n_resched / 10); /* warm up */
    for (int i = 0; i < RUNS; i++) {
        resched[i] = run_reschedule(ctx, n_resched);
    }
    report("bh_reschedule", resched, NULL, NULL, "ns/bh");

    run_oneshot(ctx, n_oneshot / 10);
    for (int i = 0; i < RUNS; i++) {
        oneshot[i] = run_oneshot(ctx, n_oneshot);
    }
    report("bh_oneshot", oneshot, NULL, NULL, "ns/bh");
    aio_context_unref(ctx);
    if (callgrind) {
        return 0;
    }

    /* Interleave the two ping-pongs so that drift hits both alike. */
    double bh_pp[RUNS], raw_pp[RUNS];
    run_raw_pingpong(n_pingpong / 10);
    run_bh_pingpong(n_pingpong / 10);
    for (int i = 0; i < RUNS; i++) {
        raw_pp[i] = run_raw_pingpong(n_pingpong);
        bh_pp[i] = run_bh_pingpong(n_pingpong);
    }
    report("bh_pingpong", bh_pp, "raw_eventfd", raw_pp, "us/roundtrip");
    return 0;
}
