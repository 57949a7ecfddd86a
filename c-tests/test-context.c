/*
 * AioContext: lifecycle and reference counting, aio_notify (cross-thread,
 * before a blocking poll), empty polls, teardown warnings for BHs never
 * deleted, Error reporting, and misuse (death tests).
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude $(pkg-config --cflags
 * glib-2.0) c-tests/test-context.c target/release/libaioctx.a $(pkg-config
 * --libs glib-2.0) -lpthread -ldl -lm -lgcc_s -rdynamic
 */

#include "aioctx.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * See test-util.h for the shared helpers. Synchronization uses pthreads,
 * not GMutex/GCond (invisible to ThreadSanitizer).
 */

static void int_counter_cb(void *opaque)
{
    int *n = opaque;
    (*n)++;
}

/* Non-static with a prototype so that -rdynamic exports it and the library
 * can name it (dladdr). */
void aioctx_test_leaked_cb(void *opaque);
void aioctx_test_leaked_cb(void *opaque)
{
    (void)opaque;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle                                                                */
/* ------------------------------------------------------------------------ */

static void test_lifecycle(void)
{
    int n = 0;
    AioContext *ctx = aio_context_new(NULL);
    g_assert_nonnull(ctx);

    /* Two contexts are distinct. */
    AioContext *other = new_context();
    g_assert_true(ctx != other);
    aio_context_unref(other);

    /* An extra reference keeps the context alive past one unref. */
    aio_context_ref(ctx);
    aio_context_ref(ctx);
    aio_context_unref(ctx);
    aio_context_unref(ctx);

    /* Still fully usable (a freed context would abort here). */
    aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n, ==, 1);
    g_assert_false(aio_poll(ctx, false));

    aio_context_unref(ctx);
}

/* References taken and dropped from several threads. */
static void *ref_unref_thread(void *opaque)
{
    AioContext *ctx = opaque;
    for (int i = 0; i < 10000; i++) {
        aio_context_ref(ctx);
        aio_context_unref(ctx);
    }
    aio_context_unref(ctx);   /* the reference the creator took for us */
    return NULL;
}

static void test_ref_threads(void)
{
    AioContext *ctx = new_context();
    pthread_t tid[4];
    int n = 0;

    for (int i = 0; i < 4; i++) {
        aio_context_ref(ctx);
        g_assert_cmpint(pthread_create(&tid[i], NULL, ref_unref_thread, ctx), ==, 0);
    }
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(pthread_join(tid[i], NULL), ==, 0);
    }
    /* Exactly our reference is left: usable, then freed by our unref. */
    aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n, ==, 1);
    aio_context_unref(ctx);
}

/* The last reference may be dropped by another thread than the creator. */
static void *final_unref_thread(void *opaque)
{
    aio_context_unref(opaque);
    return NULL;
}

static void test_unref_other_thread(void)
{
    AioContext *ctx = new_context();
    pthread_t tid;
    g_assert_cmpint(pthread_create(&tid, NULL, final_unref_thread, ctx), ==, 0);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
}

static void test_new_errp(void)
{
    Error *err = NULL;

    AioContext *a = aio_context_new(&error_abort);
    AioContext *b = aio_context_new(&error_fatal);
    AioContext *c = aio_context_new(&err);
    AioContext *d = aio_context_new(NULL);

    g_assert_nonnull(a);
    g_assert_nonnull(b);
    g_assert_nonnull(c);
    g_assert_nonnull(d);
    g_assert_null(err);

    aio_context_unref(a);
    aio_context_unref(b);
    aio_context_unref(c);
    aio_context_unref(d);
}

/* Makes every new fd fail with EMFILE (in a subprocess only); returns the
 * previous limit for restore_fds. */
static struct rlimit exhaust_fds(void)
{
    struct rlimit old, rl;
    int lowest_free = dup(0);

    g_assert_cmpint(lowest_free, >=, 0);
    close(lowest_free);
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
    rl = old;
    rl.rlim_cur = (rlim_t)lowest_free;
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &rl), ==, 0);
    g_assert_cmpint(dup(0), ==, -1);
    return old;
}

/* LeakSanitizer needs fds at exit. */
static void restore_fds(struct rlimit old)
{
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
}

/* Failure (no fd for the notifier): NULL, and the error goes to errp. */
static void test_new_failure(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        struct rlimit old = exhaust_fds();
        g_assert_null(aio_context_new(&err));
        g_assert_nonnull(err);
        fprintf(stderr, "pretty: %s\n", error_get_pretty(err));
        error_free(err);
        g_assert_null(aio_context_new(NULL));
        restore_fds(old);

        /* Works again once fds are available. */
        AioContext *ctx = aio_context_new(&error_abort);
        aio_context_unref(ctx);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("*pretty: ?*");
}

static void test_new_failure_abort(void)
{
    if (g_test_subprocess()) {
        exhaust_fds();
        aio_context_new(&error_abort);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: aio_context_new: *");
}

static void test_new_failure_fatal(void)
{
    if (g_test_subprocess()) {
        exhaust_fds();
        aio_context_new(&error_fatal);
        fprintf(stderr, "error_fatal returned\n");
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: aio_context_new: *");
    g_test_trap_assert_stderr_unmatched("*error_fatal returned*");
}

/* Many contexts alive at once, then freed (fds and memory are released:
 * ASan/LSan and the fd limit would catch leaks over many iterations). */
static void test_many_contexts(void)
{
    enum { N = 256 };
    AioContext **ctx = g_new0(AioContext *, N);

    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < N; i++) {
            ctx[i] = new_context();
        }
        for (int i = 0; i < N; i++) {
            g_assert_false(aio_poll(ctx[i], false));
            aio_context_unref(ctx[i]);
        }
    }
    g_free(ctx);
}

static void test_aio_params(void)
{
    AioContext *ctx = new_context();
    g_assert_cmpint(aioctx_context_get_aio_max_batch(ctx), ==, 0);
    aio_context_set_aio_params(ctx, 32);
    g_assert_cmpint(aioctx_context_get_aio_max_batch(ctx), ==, 32);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* aio_poll and aio_notify                                                  */
/* ------------------------------------------------------------------------ */

static void test_poll_empty(void)
{
    AioContext *ctx = new_context();

    g_assert_false(aio_poll(ctx, false));
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);

    aio_context_unref(ctx);
}

/* No lost wakeup: a notification before the blocking poll makes it return. */
static void test_notify_before_poll(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();

    watchdog_start(&wd, "/aio/context/notify/before-poll", 10);

    aio_notify(ctx);
    g_assert_false(aio_poll(ctx, true));

    /* Again, several times in a row. */
    for (int i = 0; i < 1000; i++) {
        aio_notify(ctx);
        g_assert_false(aio_poll(ctx, true));
    }

    /* Several notifications are coalesced but still wake the poll. */
    aio_notify(ctx);
    aio_notify(ctx);
    aio_notify(ctx);
    g_assert_false(aio_poll(ctx, true));

    /* A notification also ends a poll that has BHs to run. */
    int n = 0;
    aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    aio_notify(ctx);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(n, ==, 1);

    aio_context_unref(ctx);
    watchdog_stop(&wd);
}

/*
 * aio_notify from another thread wakes a blocked aio_poll. Each round the
 * poller publishes the round number and polls until the notifier has
 * acknowledged it (aio_poll may return spuriously; it must not block after
 * the notification).
 */
typedef struct {
    AioContext *ctx;
    int rounds;
    int round;           /* atomic: published by the poller */
    int acked;           /* atomic: published by the notifier */
} NotifyPing;

static void *notify_thread(void *opaque)
{
    NotifyPing *p = opaque;

    for (int i = 1; i <= p->rounds; i++) {
        while (__atomic_load_n(&p->round, __ATOMIC_ACQUIRE) != i) {
            sched_yield();
        }
        if (i % 16 == 0) {
            g_usleep(200);   /* let the poller go to sleep first */
        }
        __atomic_store_n(&p->acked, i, __ATOMIC_RELEASE);
        aio_notify(p->ctx);
    }
    return NULL;
}

static void test_notify_cross_thread(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    NotifyPing p = { .ctx = ctx, .rounds = 2000 };
    pthread_t tid;

    watchdog_start(&wd, "/aio/context/notify/cross-thread", 15);
    g_assert_cmpint(pthread_create(&tid, NULL, notify_thread, &p), ==, 0);
    for (int i = 1; i <= p.rounds; i++) {
        __atomic_store_n(&p.round, i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&p.acked, __ATOMIC_ACQUIRE) != i) {
            /* Nothing is scheduled: a notification is not progress. */
            g_assert_false(aio_poll(ctx, true));
        }
    }
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    aio_context_unref(ctx);
    watchdog_stop(&wd);
}

/* A poller that is certainly asleep is woken by aio_notify. */
typedef struct {
    AioContext *ctx;
    int phase;           /* atomic */
} SleepyPoll;

static void *sleepy_notifier(void *opaque)
{
    SleepyPoll *s = opaque;
    g_usleep(50 * 1000);
    __atomic_store_n(&s->phase, 1, __ATOMIC_RELEASE);
    aio_notify(s->ctx);
    return NULL;
}

static void test_notify_wakes_blocked_poll(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    SleepyPoll s = { .ctx = ctx };
    pthread_t tid;

    watchdog_start(&wd, "/aio/context/notify/wakes-blocked", 10);
    gint64 start = g_get_monotonic_time();
    g_assert_cmpint(pthread_create(&tid, NULL, sleepy_notifier, &s), ==, 0);
    while (__atomic_load_n(&s.phase, __ATOMIC_ACQUIRE) == 0) {
        aio_poll(ctx, true);
    }
    gint64 elapsed = g_get_monotonic_time() - start;
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    /* It did block (roughly until the notification). */
    g_assert_cmpint(elapsed, >=, 40 * 1000);
    aio_context_unref(ctx);
    watchdog_stop(&wd);
}

/* aio_notify costs no syscall when nobody is blocked, and a blocking poll
 * that was notified beforehand does not touch the eventfd either. */
static void test_notify_no_syscall(void)
{
    AioContext *ctx = new_context();
    guint64 r0, w0, r1, w1;
    const int iters = 100000;

    aio_notify(ctx);                     /* warm up */
    g_assert_false(aio_poll(ctx, true));
    if (!thread_syscalls(&r0, &w0)) {
        aio_context_unref(ctx);
        g_test_skip("/proc/thread-self/io is not available");
        return;
    }
    for (int i = 0; i < iters; i++) {
        aio_notify(ctx);
        g_assert_false(aio_poll(ctx, false));
        aio_notify(ctx);
        g_assert_false(aio_poll(ctx, true));
    }
    g_assert_true(thread_syscalls(&r1, &w1));
    g_assert_cmpuint(w1 - w0, ==, 0);
    g_assert_cmpuint(r1 - r0, <, 16);    /* the /proc reads themselves */
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* Teardown with BHs never deleted: one warning each, no abort              */
/* ------------------------------------------------------------------------ */

static void test_unref_leaked_bh_warning(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = new_context();
        int n = 0;

        aio_bh_new_full(ctx, aioctx_test_leaked_cb, NULL, "leaked-named-bh", NULL);
        aio_bh_new(ctx, aioctx_test_leaked_cb, NULL);
        /* Ran once, then forgotten. */
        QEMUBH *ran = aio_bh_new_full(ctx, int_counter_cb, &n, "leaked-ran-bh", NULL);
        qemu_bh_schedule(ran);
        g_assert_true(aio_poll(ctx, false));
        g_assert_cmpint(n, ==, 1);
        /* Cancelled (not scheduled any more) but not deleted. */
        QEMUBH *cancelled = aio_bh_new_full(ctx, int_counter_cb, &n,
                                            "leaked-cancelled-bh", NULL);
        qemu_bh_schedule(cancelled);
        qemu_bh_cancel(cancelled);
        /* Deleted: no warning for this one. */
        QEMUBH *deleted = aio_bh_new_full(ctx, int_counter_cb, &n,
                                          "properly-deleted-bh", NULL);
        qemu_bh_delete(deleted);

        aio_context_unref(ctx);
        g_assert_cmpint(n, ==, 1);
        fprintf(stderr, "survived-unref\n");
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("*aioctx: aio_context_unref: *leaked-named-bh*");
    g_test_trap_assert_stderr("*aioctx: aio_context_unref: *aioctx_test_leaked_cb*");
    g_test_trap_assert_stderr("*aioctx: aio_context_unref: *leaked-ran-bh*");
    g_test_trap_assert_stderr("*aioctx: aio_context_unref: *leaked-cancelled-bh*");
    g_test_trap_assert_stderr("*survived-unref*");
    /* One line each. */
    g_test_trap_assert_stderr_unmatched("*leaked-named-bh*leaked-named-bh*");
    g_test_trap_assert_stderr_unmatched("*leaked-ran-bh*leaked-ran-bh*");
    g_test_trap_assert_stderr_unmatched("*properly-deleted-bh*");
}

/* ------------------------------------------------------------------------ */
/* Error                                                                    */
/* ------------------------------------------------------------------------ */

/* qemu_init_main_loop is once per process, so this runs in a subprocess. */
static void test_error_api(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;

        g_assert_cmpint(qemu_init_main_loop(&err), ==, 0);
        g_assert_null(err);
        g_assert_nonnull(qemu_get_aio_context());

        /* The second call fails and reports through errp. */
        g_assert_cmpint(qemu_init_main_loop(&err), ==, -1);
        g_assert_nonnull(err);
        const char *msg = error_get_pretty(err);
        g_assert_nonnull(msg);
        g_assert_cmpuint(strlen(msg), >, 0);
        fprintf(stderr, "pretty: %s\n", msg);
        error_free(err);

        /* errp == NULL discards the error. */
        g_assert_cmpint(qemu_init_main_loop(NULL), ==, -1);

        error_free(NULL);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("*pretty: *already*");
}

static void test_error_abort(void)
{
    if (g_test_subprocess()) {
        g_assert_cmpint(qemu_init_main_loop(&error_abort), ==, 0);
        qemu_init_main_loop(&error_abort);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: qemu_init_main_loop: *already*");
}

static void test_error_fatal(void)
{
    if (g_test_subprocess()) {
        g_assert_cmpint(qemu_init_main_loop(&error_fatal), ==, 0);
        qemu_init_main_loop(&error_fatal);
        fprintf(stderr, "error_fatal returned\n");
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: qemu_init_main_loop: *already*");
    g_test_trap_assert_stderr_unmatched("*error_fatal returned*");
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    DEATH_POLL_NULL,
    DEATH_NOTIFY_NULL,
    DEATH_REF_NULL,
    DEATH_UNREF_NULL,
    DEATH_COMPUTE_TIMEOUT_NULL,
    DEATH_DOUBLE_UNREF,
    DEATH_POLL_FREED,
    DEATH_REF_FREED,
    DEATH_UNREF_WHILE_POLLING,
    DEATH_POLL_CONCURRENT,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/aio/context/death/poll-null", DEATH_POLL_NULL,
      "*aioctx: aio_poll: *NULL*" },
    { "/aio/context/death/notify-null", DEATH_NOTIFY_NULL,
      "*aioctx: aio_notify: *NULL*" },
    { "/aio/context/death/ref-null", DEATH_REF_NULL,
      "*aioctx: aio_context_ref: *NULL*" },
    { "/aio/context/death/unref-null", DEATH_UNREF_NULL,
      "*aioctx: aio_context_unref: *NULL*" },
    { "/aio/context/death/compute-timeout-null", DEATH_COMPUTE_TIMEOUT_NULL,
      "*aioctx: aio_compute_timeout: *NULL*" },
    { "/aio/context/death/double-unref", DEATH_DOUBLE_UNREF,
      "*aioctx: aio_context_unref: *freed*" },
    { "/aio/context/death/poll-freed", DEATH_POLL_FREED,
      "*aioctx: aio_poll: *freed*" },
    { "/aio/context/death/ref-freed", DEATH_REF_FREED,
      "*aioctx: aio_context_ref: *freed*" },
    { "/aio/context/death/unref-while-polling", DEATH_UNREF_WHILE_POLLING,
      "*aioctx: aio_context_unref: *" },
    { "/aio/context/death/poll-concurrent", DEATH_POLL_CONCURRENT,
      "*aioctx: aio_poll: *thread*" },
};

static void unref_cb(void *opaque)
{
    aio_context_unref(opaque);
}

/* For DEATH_POLL_CONCURRENT: a thread parked inside a BH of an unbound
 * context, i.e. in the middle of its aio_poll. */
typedef struct {
    AioContext *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool inside;
} Parked;

static void park_cb(void *opaque)
{
    Parked *p = opaque;
    pthread_mutex_lock(&p->lock);
    p->inside = true;
    pthread_cond_broadcast(&p->cond);
    for (;;) {
        pthread_cond_wait(&p->cond, &p->lock);   /* until the process dies */
    }
}

static void *park_thread(void *opaque)
{
    Parked *p = opaque;
    aio_bh_schedule_oneshot(p->ctx, park_cb, p);
    aio_poll(p->ctx, true);
    return NULL;
}

static void run_death_case(int which)
{
    AioContext *ctx = new_context();

    switch ((DeathCase)which) {
    case DEATH_POLL_NULL:
        aio_poll(NULL, false);
        break;
    case DEATH_NOTIFY_NULL:
        aio_notify(NULL);
        break;
    case DEATH_REF_NULL:
        aio_context_ref(NULL);
        break;
    case DEATH_UNREF_NULL:
        aio_context_unref(NULL);
        break;
    case DEATH_COMPUTE_TIMEOUT_NULL:
        aio_compute_timeout(NULL);
        break;
    case DEATH_DOUBLE_UNREF:
        /* The dead context is quarantined, so the stale handle is caught. */
        aio_context_unref(ctx);
        aio_context_unref(ctx);
        break;
    case DEATH_POLL_FREED:
        aio_context_unref(ctx);
        aio_poll(ctx, false);
        break;
    case DEATH_REF_FREED:
        aio_context_unref(ctx);
        aio_context_ref(ctx);
        break;
    case DEATH_UNREF_WHILE_POLLING:
        /* The last reference dropped by one of the context's own BHs. */
        aio_bh_schedule_oneshot(ctx, unref_cb, ctx);
        aio_poll(ctx, false);
        break;
    case DEATH_POLL_CONCURRENT: {
        static Parked p;
        pthread_t tid;
        p.ctx = ctx;
        pthread_mutex_init(&p.lock, NULL);
        pthread_cond_init(&p.cond, NULL);
        g_assert_cmpint(pthread_create(&tid, NULL, park_thread, &p), ==, 0);
        pthread_mutex_lock(&p.lock);
        while (!p.inside) {
            pthread_cond_wait(&p.cond, &p.lock);
        }
        pthread_mutex_unlock(&p.lock);
        /* Another thread is inside aio_poll of this unbound context. */
        aio_poll(ctx, false);
        break;
    }
    }
    /* Only reached if the library did not abort: the parent then fails. */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/aio/context/lifecycle", test_lifecycle);
    g_test_add_func("/aio/context/ref/threads", test_ref_threads);
    g_test_add_func("/aio/context/unref/other-thread", test_unref_other_thread);
    g_test_add_func("/aio/context/unref/leaked-bh-warning", test_unref_leaked_bh_warning);
    g_test_add_func("/aio/context/new/errp", test_new_errp);
    g_test_add_func("/aio/context/new/many", test_many_contexts);
    g_test_add_func("/aio/context/new/failure", test_new_failure);
    g_test_add_func("/aio/context/new/failure-abort", test_new_failure_abort);
    g_test_add_func("/aio/context/new/failure-fatal", test_new_failure_fatal);
    g_test_add_func("/aio/context/aio-params", test_aio_params);
    g_test_add_func("/aio/context/poll/empty", test_poll_empty);
    g_test_add_func("/aio/context/notify/before-poll", test_notify_before_poll);
    g_test_add_func("/aio/context/notify/cross-thread", test_notify_cross_thread);
    g_test_add_func("/aio/context/notify/wakes-blocked", test_notify_wakes_blocked_poll);
    g_test_add_func("/aio/context/notify/no-syscall", test_notify_no_syscall);
    g_test_add_func("/aio/context/error/api", test_error_api);
    g_test_add_func("/aio/context/error/abort", test_error_abort);
    g_test_add_func("/aio/context/error/fatal", test_error_fatal);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);

    return g_test_run();
}
