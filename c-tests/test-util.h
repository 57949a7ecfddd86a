/*
 * Helpers shared by the C test programs (c-tests/test-*.c): a per-test
 * watchdog, new_context(), WhereRan/where_cb, thread_syscalls(),
 * trap_subprocess_expect() and a table-driven death-test runner.
 *
 * Header-only: everything is `static inline`, so a program that does not
 * use a helper gets no "unused function" warning (-Wall -Wextra -Werror).
 * Include it after "aioctx.h".
 *
 * Synchronization in these tests uses pthreads, not GMutex/GCond: GLib's
 * futex-based GMutex is invisible to ThreadSanitizer (false reports).
 */

#ifndef AIOCTX_TEST_UTIL_H
#define AIOCTX_TEST_UTIL_H

#include "aioctx.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * A per-test watchdog: a thread that aborts the program with a message if
 * the test has not called watchdog_stop() within `seconds` (a lost wakeup
 * shows up as a hang).
 *
 *     Watchdog wd;
 *     watchdog_start(&wd, "what", 30);
 *     ...
 *     watchdog_stop(&wd);
 *
 * The message is "watchdog: 'WHAT' did not finish within N s (hang)"; a
 * test that has more to say (progress counters) sets a report callback
 * with watchdog_start_report(), whose output is appended after ": ".
 */
typedef void (*WatchdogReport)(FILE *out, void *opaque);

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    const char *what;
    int seconds;
    struct timespec deadline;
    WatchdogReport report; /* may be NULL */
    void *report_opaque;
    pthread_t thread;
} Watchdog;

static inline void *watchdog_thread(void *opaque)
{
    Watchdog *w = opaque;

    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        int rc = pthread_cond_timedwait(&w->cond, &w->lock, &w->deadline);
        if (rc == ETIMEDOUT && !w->done) {
            fprintf(stderr, "watchdog: '%s' did not finish within %d s (hang)",
                    w->what, w->seconds);
            if (w->report) {
                fputs(": ", stderr);
                w->report(stderr, w->report_opaque);
            }
            fputc('\n', stderr);
            abort();
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/*
 * Starts `w`; when it fires, report(stderr, opaque) (if not NULL) adds to
 * the message. Pair with watchdog_stop().
 */
static inline void watchdog_start_report(Watchdog *w, const char *what, int seconds,
                                         WatchdogReport report, void *opaque)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    w->done = false;
    w->what = what;
    w->seconds = seconds;
    w->report = report;
    w->report_opaque = opaque;
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += seconds;
    g_assert_cmpint(pthread_create(&w->thread, NULL, watchdog_thread, w), ==, 0);
}

/* Starts `w` with the plain message. Pair with watchdog_stop(). */
static inline void watchdog_start(Watchdog *w, const char *what, int seconds)
{
    watchdog_start_report(w, what, seconds, NULL, NULL);
}

/* Stops and joins the watchdog thread; `w` may be started again. */
static inline void watchdog_stop(Watchdog *w)
{
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    g_assert_cmpint(pthread_join(w->thread, NULL), ==, 0);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                 */
/* ------------------------------------------------------------------------ */

/* A new AioContext (aborts on failure); release with aio_context_unref. */
static inline AioContext *new_context(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    g_assert_nonnull(ctx);
    return ctx;
}

/* ------------------------------------------------------------------------ */
/* Where a callback ran                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Records where where_cb (a BH callback, opaque = the WhereRan) ran: how
 * often, in which thread, the thread's current context, and whether that
 * thread is the home thread of `ctx` (set `ctx` before scheduling).
 */
typedef struct {
    AioContext *ctx;
    int runs;
    pthread_t thread;
    AioContext *current;
    bool in_home;
} WhereRan;

static inline void where_cb(void *opaque)
{
    WhereRan *w = opaque;
    w->runs++;
    w->thread = pthread_self();
    w->current = qemu_get_current_aio_context();
    w->in_home = in_aio_context_home_thread(w->ctx);
}

/* ------------------------------------------------------------------------ */
/* Syscall counts                                                           */
/* ------------------------------------------------------------------------ */

/* This thread's read/write syscall counts, from /proc/thread-self/io
 * (needs task I/O accounting; false if unavailable). */
static inline bool thread_syscalls(guint64 *syscr, guint64 *syscw)
{
    char buf[512];
    FILE *f = fopen("/proc/thread-self/io", "r");
    bool found_r = false, found_w = false;

    if (!f) {
        return false;
    }
    while (fgets(buf, sizeof(buf), f)) {
        if (sscanf(buf, "syscr: %" G_GUINT64_FORMAT, syscr) == 1) {
            found_r = true;
        } else if (sscanf(buf, "syscw: %" G_GUINT64_FORMAT, syscw) == 1) {
            found_w = true;
        }
    }
    fclose(f);
    return found_r && found_w;
}

/* ------------------------------------------------------------------------ */
/* Subprocess tests                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Runs the current test again in a GTest subprocess and checks how it
 * ended: within `seconds` (not killed by the timeout), passed if `passes`
 * (else failed), and with a stderr that matches `stderr_pattern`
 * (g_pattern_match_simple syntax; without '*' or '?' the whole stderr must
 * be exactly that). The test function does the work itself when
 * g_test_subprocess() is true:
 *
 *     if (g_test_subprocess()) {
 *         ...;
 *         return;
 *     }
 *     trap_subprocess_expect(10, false, "*aioctx: aio_poll: *NULL*");
 */
static inline void trap_subprocess_expect(unsigned seconds, bool passes,
                                          const char *stderr_pattern)
{
    g_test_trap_subprocess(NULL, (guint64)seconds * G_USEC_PER_SEC,
                           G_TEST_SUBPROCESS_DEFAULT);
    g_assert_false(g_test_trap_reached_timeout());
    if (passes) {
        g_test_trap_assert_passed();
    } else {
        g_test_trap_assert_failed();
    }
    g_test_trap_assert_stderr(stderr_pattern);
}

/* ------------------------------------------------------------------------ */
/* Death tests                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Table-driven death tests: each entry is one GTest that runs case `which`
 * of the program's run function in a subprocess; the subprocess must fail
 * (abort) within 10 s, and its stderr must match `stderr_pattern`
 * (g_pattern_match_simple syntax, e.g. "*aioctx: aio_poll: *NULL*").
 * A run function that returns means the library did not abort: the child
 * then exits successfully and the parent fails the test.
 *
 *     static void run_death_case(int which)
 *     {
 *         switch ((DeathCase)which) { case DEATH_X: ...; break; }
 *     }
 *     ...
 *     add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
 */
typedef struct {
    const char *path;           /* GTest path */
    int which;                  /* the program's case number (an enum value) */
    const char *stderr_pattern; /* what the dying child must print */
} DeathTest;

typedef void (*DeathCaseFn)(int which);

typedef struct {
    const DeathTest *test;
    DeathCaseFn run_case;
} DeathTestData;

static inline void death_test_run(gconstpointer opaque)
{
    const DeathTestData *d = opaque;

    if (g_test_subprocess()) {
        d->run_case(d->test->which);
        /* The child passes, so the parent fails the test; say why. */
        fprintf(stderr, "death test %s (case %d) survived\n", d->test->path,
                d->test->which);
        return;
    }
    trap_subprocess_expect(10, false, d->test->stderr_pattern);
}

/* Adds one GTest per entry of `tests` (n entries), run by run_case. */
/*
 * The per-test data lives in static storage, not on the heap: a GTest
 * subprocess exits without freeing its suites, and LeakSanitizer would
 * report heap copies as leaks in every death-test child.
 */
#define DEATH_TESTS_MAX 64

static inline void add_death_tests(const DeathTest *tests, size_t n, DeathCaseFn run_case)
{
    static DeathTestData data[DEATH_TESTS_MAX];
    static size_t used;

    g_assert_cmpuint(used + n, <=, DEATH_TESTS_MAX);
    for (size_t i = 0; i < n; i++) {
        DeathTestData *d = &data[used++];

        d->test = &tests[i];
        d->run_case = run_case;
        g_test_add_data_func(tests[i].path, d, death_test_run);
    }
}

#endif /* AIOCTX_TEST_UTIL_H */
