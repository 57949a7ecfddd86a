/*
 * bench/bench-util.h: timing, statistics and report helpers shared by the
 * one-metric benchmark programs in bench/ (header-only, static inline).
 *
 * Output format (see bench/README.md): one line per metric,
 *
 *     name  aioctx_value  peer  peer_value  ratio  unit
 *
 * whitespace-separated, value = median of the runs, ratio = aioctx / peer
 * (`-` for peer, peer_value and ratio when there is no peer), followed by
 * a `#` comment line with the min/max of the runs. Every other line a
 * program prints starts with `#`.
 *
 * Environment:
 *   AIOCTX_BENCH_RUNS=N      runs per measurement (default 5)
 *   AIOCTX_BENCH_TIME_MS=T   target wall time of one run (default per program)
 *   AIOCTX_BENCH_CALLGRIND=1 (make bench-callgrind) one short run with a
 *                            fixed iteration count; programs skip their
 *                            cross-thread measurements
 *
 * Peers: AIOCTX_HAVE_LIBUV / AIOCTX_HAVE_GLIB (set by scripts/run-bench.sh)
 * say whether libuv / GLib are available; when not defined they are
 * guessed from whether the headers exist.
 */
#ifndef AIOCTX_BENCH_UTIL_H
#define AIOCTX_BENCH_UTIL_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef AIOCTX_HAVE_LIBUV
#if defined(__has_include)
#if __has_include(<uv.h>)
#define AIOCTX_HAVE_LIBUV 1
#endif
#endif
#endif
#ifndef AIOCTX_HAVE_LIBUV
#define AIOCTX_HAVE_LIBUV 0
#endif

#ifndef AIOCTX_HAVE_GLIB
#if defined(__has_include)
#if __has_include(<glib.h>)
#define AIOCTX_HAVE_GLIB 1
#endif
#endif
#endif
#ifndef AIOCTX_HAVE_GLIB
#define AIOCTX_HAVE_GLIB 0
#endif

#define BENCH_MAX_RUNS 64

/* ---- clocks ------------------------------------------------------------ */

static inline uint64_t bench_clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wall time (CLOCK_MONOTONIC), ns. */
static inline uint64_t bench_now_ns(void)
{
    return bench_clock_ns(CLOCK_MONOTONIC);
}

/* CPU time of the calling thread, ns. */
static inline uint64_t bench_cpu_ns(void)
{
    return bench_clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/* Keeps the compiler from deleting a computation. */
#define bench_barrier() __asm__ __volatile__("" ::: "memory")

/* ---- random numbers ---------------------------------------------------- */

/* xorshift64 with a fixed seed: every run of a program draws the same
 * sequence. */
static uint64_t bench_rng_state = 88172645463325252ull;

static inline uint64_t bench_rand(void)
{
    bench_rng_state ^= bench_rng_state << 13;
    bench_rng_state ^= bench_rng_state >> 7;
    bench_rng_state ^= bench_rng_state << 17;
    return bench_rng_state;
}

/* ---- errors and notes -------------------------------------------------- */

static const char *bench_prog = "bench";

__attribute__((noreturn, format(printf, 1, 2)))
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", bench_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Prints a `#` comment line. */
__attribute__((format(printf, 1, 2)))
static inline void bench_note(const char *fmt, ...)
{
    va_list ap;
    fputs("# ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* ---- configuration ----------------------------------------------------- */

static inline bool bench_callgrind(void)
{
    const char *s = getenv("AIOCTX_BENCH_CALLGRIND");
    return s && *s && strcmp(s, "0") != 0;
}

static inline int bench_runs(void)
{
    const char *s = getenv("AIOCTX_BENCH_RUNS");
    int n;
    if (bench_callgrind()) {
        return 1;
    }
    n = s ? atoi(s) : 5;
    if (n < 1) {
        n = 1;
    }
    return n > BENCH_MAX_RUNS ? BENCH_MAX_RUNS : n;
}

/* bench_runs(), but at most `cap` unless AIOCTX_BENCH_RUNS asks for more
 * (for programs whose single run takes seconds). */
static inline int bench_runs_capped(int cap)
{
    int n = bench_runs();
    return getenv("AIOCTX_BENCH_RUNS") || n < cap ? n : cap;
}

/* Target wall time of one run in ns: AIOCTX_BENCH_TIME_MS or `dflt_ms`. */
static inline double bench_target_ns(double dflt_ms)
{
    const char *s = getenv("AIOCTX_BENCH_TIME_MS");
    double ms = s ? atof(s) : dflt_ms;
    if (ms <= 0) {
        ms = dflt_ms;
    }
    return ms * 1e6;
}

/* Sets the program name used by bench_die and prints the header notes. */
static inline void bench_start(const char *prog, const char *what)
{
    bench_prog = prog;
    setvbuf(stdout, NULL, _IOLBF, 0);
    bench_note("%s: %s", prog, what);
    bench_note("median of %d runs (min/max on the '#' line after each result); "
               "ratio = aioctx / peer", bench_runs());
    if (bench_callgrind()) {
        bench_note("AIOCTX_BENCH_CALLGRIND: one short run, same-thread measurements only");
    }
    bench_note("%-30s %10s  %-16s %10s  %6s  %s", "name", "aioctx", "peer", "peer_value",
               "ratio", "unit");
}

/* ---- statistics -------------------------------------------------------- */

typedef struct bench_stat {
    double median, min, max;
    int n;
} bench_stat;

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline bench_stat bench_stat_of(const double *v, int n)
{
    double s[BENCH_MAX_RUNS];
    bench_stat r = { 0, 0, 0, n };
    if (n <= 0) {
        return r;
    }
    if (n > BENCH_MAX_RUNS) {
        n = BENCH_MAX_RUNS;
    }
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), bench_cmp_double);
    r.min = s[0];
    r.max = s[n - 1];
    r.median = (n & 1) ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    return r;
}

/* ---- measuring --------------------------------------------------------- */

/* A measured body: performs `n` operations. */
typedef void bench_fn(void *arg, uint64_t n);

/*
 * What bench_once measures: wall time (default), or with
 * bench_use_cpu_time(true) the calling thread's CPU time, which leaves out
 * the time the thread was preempted (for bodies that never block and run
 * on the calling thread only).
 */
static bool bench_cpu_clock;

static inline void bench_use_cpu_time(bool on)
{
    bench_cpu_clock = on;
    if (on) {
        printf("# times: CPU time of the measuring thread (the measured loops never block)\n");
    }
}

/* ns per operation of one call fn(arg, n). */
static inline double bench_once(bench_fn *fn, void *arg, uint64_t n)
{
    clockid_t c = bench_cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    uint64_t t0 = bench_clock_ns(c);
    fn(arg, n);
    return (double)(bench_clock_ns(c) - t0) / (double)n;
}

/*
 * Number of operations for one run to take about `target_ns` of wall time
 * (doubling until a call takes an eighth of it, then scaling). Under
 * callgrind: `callgrind_n`.
 */
static inline uint64_t bench_calibrate(bench_fn *fn, void *arg, double target_ns,
                                       uint64_t callgrind_n)
{
    uint64_t n = 1;
    if (bench_callgrind()) {
        return callgrind_n;
    }
    for (;;) {
        uint64_t t0 = bench_now_ns();
        double dt;
        fn(arg, n);
        dt = (double)(bench_now_ns() - t0);
        if (dt >= target_ns / 8 || n >= (UINT64_C(1) << 40)) {
            double scaled = dt > 0 ? (double)n * target_ns / dt : (double)n * 8;
            return scaled < 1 ? 1 : (uint64_t)scaled;
        }
        n *= 2;
    }
}

/*
 * Measures k bodies against each other: calibrates each to about
 * `target_ns` per run, then runs them interleaved (run r of body 0, run r
 * of body 1, ...) so that slow drifts of the machine hit all of them.
 * out[i] = ns per operation of body i.
 */
static inline void bench_compare(int k, bench_fn *const *fns, void *const *args,
                                 double target_ns, uint64_t callgrind_n, bench_stat *out)
{
    uint64_t n[16];
    double v[16][BENCH_MAX_RUNS];
    int runs = bench_runs();
    if (k > 16) {
        bench_die("bench_compare: at most 16 bodies");
    }
    for (int i = 0; i < k; i++) {
        n[i] = bench_calibrate(fns[i], args[i], target_ns, callgrind_n);
    }
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < k; i++) {
            v[i][r] = bench_once(fns[i], args[i], n[i]);
        }
    }
    for (int i = 0; i < k; i++) {
        out[i] = bench_stat_of(v[i], runs);
    }
}

/*
 * Paired rounds of two bodies: `rounds` times (at most 1024), a and b each
 * run `n` iterations back to back, in alternating order, and the round's
 * ratio a/b is kept. On a host whose speed changes from one second to the
 * next, the median of these per-round ratios follows the ratio far more
 * steadily than the ratio of two medians over a few longer runs does
 * (bench_compare). Returns the ratios' median, min and max; *q25 and *q75
 * get their quartiles, *a_ns and *b_ns the median ns per iteration of each.
 */
static inline bench_stat bench_paired(bench_fn *fa, void *arga, bench_fn *fb, void *argb,
                                      uint64_t n, int rounds, double *q25, double *q75,
                                      double *a_ns, double *b_ns)
{
    static double ra[1024], rb[1024], q[1024];
    bench_stat r = { 0, 0, 0, 0 };
    if (rounds > 1024) {
        rounds = 1024;
    }
    if (rounds < 1) {
        return r;
    }
    for (int i = 0; i < rounds; i++) {
        if (i & 1) {
            rb[i] = bench_once(fb, argb, n);
            ra[i] = bench_once(fa, arga, n);
        } else {
            ra[i] = bench_once(fa, arga, n);
            rb[i] = bench_once(fb, argb, n);
        }
        q[i] = rb[i] != 0 ? ra[i] / rb[i] : 0;
    }
    qsort(ra, (size_t)rounds, sizeof(double), bench_cmp_double);
    qsort(rb, (size_t)rounds, sizeof(double), bench_cmp_double);
    qsort(q, (size_t)rounds, sizeof(double), bench_cmp_double);
    r.median = q[rounds / 2];
    r.min = q[0];
    r.max = q[rounds - 1];
    r.n = rounds;
    *q25 = q[rounds / 4];
    *q75 = q[(3 * rounds) / 4];
    *a_ns = ra[rounds / 2];
    *b_ns = rb[rounds / 2];
    return r;
}

/* ---- reporting --------------------------------------------------------- */

/* A value with about 4 significant digits and no exponent. */
static inline const char *bench_fmt(char *buf, size_t len, double v)
{
    double a = v < 0 ? -v : v;
    if (a >= 1000) {
        snprintf(buf, len, "%.0f", v);
    } else if (a >= 100) {
        snprintf(buf, len, "%.1f", v);
    } else if (a >= 10) {
        snprintf(buf, len, "%.2f", v);
    } else if (a >= 0.1 || a == 0) {
        snprintf(buf, len, "%.3f", v);
    } else {
        snprintf(buf, len, "%.5f", v);
    }
    return buf;
}

/* A ratio: 3 decimals, none from 100 up, 2 significant digits below 0.01. */
static inline const char *bench_fmt_ratio(char *buf, size_t len, double ratio)
{
    if (ratio >= 100) {
        snprintf(buf, len, "%.0f", ratio);
    } else if (ratio >= 0.01 || ratio == 0) {
        snprintf(buf, len, "%.3f", ratio);
    } else {
        snprintf(buf, len, "%.2g", ratio);
    }
    return buf;
}

/* The result line alone, with the ratio given (bench_paired's median). */
static inline void bench_row(const char *name, double value, const char *peer, double peer_value,
                             double ratio, const char *unit)
{
    char b1[32], b2[32], b3[32];
    printf("%-32s %10s  %-16s %10s  %6s  %s\n", name, bench_fmt(b1, sizeof b1, value), peer,
           bench_fmt(b2, sizeof b2, peer_value), bench_fmt_ratio(b3, sizeof b3, ratio), unit);
}

/*
 * One result line; peer NULL means no peer. The `#` line after it gives
 * min/max of the runs.
 */
static inline void bench_line(const char *name, bench_stat a, const char *peer, bench_stat p,
                              const char *unit)
{
    char b1[32], b4[32], b5[32], b6[32], b7[32];
    if (peer) {
        bench_row(name, a.median, peer, p.median, p.median != 0 ? a.median / p.median : 0, unit);
        printf("#   %s: aioctx min %s max %s; %s min %s max %s\n", name,
               bench_fmt(b4, sizeof b4, a.min), bench_fmt(b5, sizeof b5, a.max), peer,
               bench_fmt(b6, sizeof b6, p.min), bench_fmt(b7, sizeof b7, p.max));
    } else {
        printf("%-32s %10s  %-16s %10s  %6s  %s\n", name, bench_fmt(b1, sizeof b1, a.median),
               "-", "-", "-", unit);
        printf("#   %s: aioctx min %s max %s\n", name, bench_fmt(b4, sizeof b4, a.min),
               bench_fmt(b5, sizeof b5, a.max));
    }
    fflush(stdout);
}

/* A single-valued stat (a count or a one-off measurement). */
static inline bench_stat bench_stat_single(double v)
{
    bench_stat s = { v, v, v, 1 };
    return s;
}

#endif /* AIOCTX_BENCH_UTIL_H */
