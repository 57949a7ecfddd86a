/*
 * bench/coroutine.c: coroutine costs of aioctx, with a plain (non-inlined)
 * function call measured in the same run as the baseline.
 *
 * Numbers, not assertions. Each measurement runs 5 times; the line per
 * metric is
 *
 *     name  aioctx_value  peer  peer_value  ratio  unit
 *
 * with the median of the 5 runs (ratio is aioctx / peer; "-" where there is
 * no peer), followed by a "#" line with min and max.
 *
 *   co_create_enter  qemu_coroutine_create + qemu_coroutine_enter of an
 *                    entry that returns at once (pooled: no allocation);
 *                    ns per coroutine. Peer: func_call.
 *   co_enter_yield   qemu_coroutine_enter + qemu_coroutine_yield of one
 *                    coroutine looping on yield; ns per pair. Peer: func_call.
 *   co_nesting       10 000 coroutines nested (each creates and enters the
 *                    next) x 1000 rounds; seconds for all rounds.
 *   co_mutex         qemu_co_mutex_lock + unlock, uncontended, in a
 *                    coroutine; ns per pair. Peer: func_call.
 *   func_call        a call through a function pointer to an empty
 *                    noinline function; ns per call.
 *
 * Build and run:
 *   cargo build --release && cc -O2 -std=gnu11 -Wall -Wextra -Werror \
 *     -Iinclude bench/coroutine.c -o /tmp/coroutine \
 *     target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl \
 *     -lm -lgcc_s && /tmp/coroutine
 *
 * Environment: CO_BENCH_SCALE (default 1.0) multiplies the iteration counts.
 */

#include "aioctx.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 5

static double scale = 1.0;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long scaled(long n)
{
    long v = (long)((double)n * scale);
    return v > 0 ? v : 1;
}

/* ---- the measured bodies ---------------------------------------------- */

static volatile unsigned sink;

__attribute__((noinline)) static void empty_fn(void *opaque)
{
    (void)opaque;
    __asm__ volatile("" ::: "memory");
}

static void (*volatile fn_ptr)(void *) = empty_fn;

static double bench_func_call(void)
{
    long n = scaled(100000000);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        fn_ptr(NULL);
    }
    return (now_ns() - t0) / (double)n;
}

static void returns_at_once(void *opaque)
{
    (void)opaque;
}

static double bench_create_enter(void)
{
    long n = scaled(5000000);
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(returns_at_once, NULL));
    }
    return (now_ns() - t0) / (double)n;
}

static volatile bool stop_yielding;

static void yield_loop(void *opaque)
{
    (void)opaque;
    while (!stop_yielding) {
        qemu_coroutine_yield();
    }
}

static double bench_enter_yield(void)
{
    long n = scaled(10000000);
    Coroutine *co = qemu_coroutine_create(yield_loop, NULL);
    double t0, t;

    stop_yielding = false;
    qemu_coroutine_enter(co);
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        qemu_coroutine_enter(co);
    }
    t = (now_ns() - t0) / (double)n;
    stop_yielding = true;
    qemu_coroutine_enter(co);
    return t;
}

typedef struct {
    unsigned n_enter, max;
} Nest;

static void nest(void *opaque)
{
    Nest *nd = opaque;
    if (++nd->n_enter < nd->max) {
        qemu_coroutine_enter(qemu_coroutine_create(nest, nd));
    }
}

static double bench_nesting(void)
{
    long rounds = scaled(1000);
    double t0 = now_ns();
    for (long i = 0; i < rounds; i++) {
        Nest nd = { 0, 10000 };
        qemu_coroutine_enter(qemu_coroutine_create(nest, &nd));
        sink = nd.n_enter;
    }
    return (now_ns() - t0) / 1e9;
}

static CoMutex mutex;
static double mutex_result;

static void mutex_loop(void *opaque)
{
    long n = *(long *)opaque;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        qemu_co_mutex_lock(&mutex);
        qemu_co_mutex_unlock(&mutex);
    }
    mutex_result = (now_ns() - t0) / (double)n;
}

static double bench_co_mutex(void)
{
    long n = scaled(20000000);
    qemu_co_mutex_init(&mutex);
    qemu_coroutine_enter(qemu_coroutine_create(mutex_loop, &n));
    return mutex_result;
}

/* ---- statistics and output --------------------------------------------- */

typedef struct {
    double median, min, max;
} Stats;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static Stats measure(double (*f)(void))
{
    double v[RUNS];
    Stats s;
    for (int i = 0; i < RUNS; i++) {
        v[i] = f();
    }
    qsort(v, RUNS, sizeof(v[0]), cmp_double);
    s.median = v[RUNS / 2];
    s.min = v[0];
    s.max = v[RUNS - 1];
    return s;
}

static void report(const char *name, Stats a, const char *peer, const Stats *p,
                   const char *unit)
{
    if (p) {
        printf("%-16s %9.3f  %-10s %9.3f  %6.2f  %s\n", name, a.median, peer,
               p->median, a.median / p->median, unit);
        printf("#   %s min %.3f max %.3f; %s min %.3f max %.3f\n", name, a.min,
               a.max, peer, p->min, p->max);
    } else {
        printf("%-16s %9.3f  %-10s %9s  %6s  %s\n", name, a.median, "-", "-",
               "-", unit);
        printf("#   %s min %.3f max %.3f\n", name, a.min, a.max);
    }
    fflush(stdout);
}

int main(void)
{
    const char *env = getenv("CO_BENCH_SCALE");
    Stats call, create, pair, nesting, mtx;

    if (env) {
        scale = atof(env);
    }
    printf("# aioctx bench/coroutine.c: median of %d runs (min/max on the '#' "
           "line), scale %.2f\n", RUNS, scale);
    printf("# name  aioctx_value  peer  peer_value  ratio  unit\n");
    call = measure(bench_func_call);
    create = measure(bench_create_enter);
    pair = measure(bench_enter_yield);
    mtx = measure(bench_co_mutex);
    nesting = measure(bench_nesting);
    report("func_call", call, "-", NULL, "ns/call");
    report("co_create_enter", create, "func_call", &call, "ns/coroutine");
    report("co_enter_yield", pair, "func_call", &call, "ns/pair");
    report("co_mutex", mtx, "func_call", &call, "ns/lock+unlock");
    report("co_nesting", nesting, "-", NULL, "s/(10000x1000)");
    return 0;
}
