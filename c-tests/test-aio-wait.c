/*
 * Waiting across threads: aio_wait_bh_oneshot to a context polled by
 * another thread (a hand-written iothread), its FIFO flush property, calls
 * from the home thread and from unbound threads, global_aio_wait and
 * aio_wait_kick, aioctx_wait_while, and misuse (death tests).
 *
 * qemu_init_main_loop runs once, in main(): the main thread polls the main
 * context while it waits.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude $(pkg-config --cflags
 * glib-2.0) c-tests/test-aio-wait.c target/release/libaioctx.a $(pkg-config
 * --libs glib-2.0) -lpthread -ldl -lm -lgcc_s -rdynamic
 */

#include "aioctx.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * See test-util.h for the shared helpers. Synchronization uses pthreads,
 * not GMutex/GCond (invisible to ThreadSanitizer).
 */

static unsigned num_waiters(void)
{
    return __atomic_load_n(&global_aio_wait.num_waiters, __ATOMIC_SEQ_CST);
}

/* Runs every BH pending on the main context (leftover aio_wait_kick BHs). */
static void drain_main(void)
{
    while (aio_poll(qemu_get_aio_context(), false)) {
        /* nothing */
    }
}

/*
 * A hand-written iothread: binds itself to its context, then polls it until
 * a BH (scheduled by iothread_join) sets the stop flag.
 */
typedef struct {
    AioContext *ctx;
    pthread_t tid;
    bool stopping;                       /* set in the iothread itself */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;
} TestIOThread;

static void *iothread_run(void *opaque)
{
    TestIOThread *t = opaque;

    qemu_set_current_aio_context(t->ctx);
    pthread_mutex_lock(&t->lock);
    t->started = true;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);

    while (!t->stopping) {
        aio_poll(t->ctx, true);
    }
    return NULL;
}

static TestIOThread *iothread_new(void)
{
    TestIOThread *t = g_new0(TestIOThread, 1);

    t->ctx = aio_context_new(&error_abort);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    g_assert_cmpint(pthread_create(&t->tid, NULL, iothread_run, t), ==, 0);
    pthread_mutex_lock(&t->lock);
    while (!t->started) {
        pthread_cond_wait(&t->cond, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return t;
}

static void iothread_stop_cb(void *opaque)
{
    TestIOThread *t = opaque;
    t->stopping = true;
}

static void iothread_join(TestIOThread *t)
{
    aio_bh_schedule_oneshot(t->ctx, iothread_stop_cb, t);
    g_assert_cmpint(pthread_join(t->tid, NULL), ==, 0);
    aio_context_unref(t->ctx);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    g_free(t);
}

/* ------------------------------------------------------------------------ */
/* aio_wait_bh_oneshot                                                      */
/* ------------------------------------------------------------------------ */

static void test_bh_oneshot_iothread(void)
{
    Watchdog wd;
    TestIOThread *t;

    watchdog_start(&wd, "/aio/wait/bh-oneshot/iothread", 10);
    t = iothread_new();

    WhereRan w = { .ctx = t->ctx };
    aio_wait_bh_oneshot(t->ctx, where_cb, &w);
    /* It ran, exactly once, in the iothread, before the call returned. */
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_true(pthread_equal(w.thread, t->tid));
    g_assert_false(pthread_equal(w.thread, pthread_self()));
    g_assert_true(w.current == t->ctx);
    g_assert_true(w.in_home);
    g_assert_cmpuint(num_waiters(), ==, 0);

    /* Many times in a row (each one a full cross-thread round trip). */
    for (int i = 0; i < 2000; i++) {
        aio_wait_bh_oneshot(t->ctx, where_cb, &w);
        g_assert_cmpint(w.runs, ==, i + 2);
    }
    g_assert_true(pthread_equal(w.thread, t->tid));

    iothread_join(t);
    drain_main();
    watchdog_stop(&wd);
}

/*
 * FIFO flush: every BH scheduled on ctx before aio_wait_bh_oneshot has run
 * when it returns (aioctx runs BHs in scheduling order; QEMU's LIFO order
 * would run the waiter's BH first within a batch).
 */
typedef struct {
    int count;                           /* iothread only, until the flush */
    int seen_by_flush;
    int regular_runs;
    int flushes;
} Flush;

static void flush_count_cb(void *opaque)
{
    Flush *f = opaque;
    f->count++;
}

static void flush_regular_cb(void *opaque)
{
    Flush *f = opaque;
    f->regular_runs++;
}

static void flush_slow_cb(void *opaque)
{
    Flush *f = opaque;
    g_usleep(20 * 1000);                 /* let the others pile up */
    f->count++;
}

static void flush_check_cb(void *opaque)
{
    Flush *f = opaque;
    f->seen_by_flush = f->count;
    f->flushes++;
}

static void test_bh_oneshot_fifo_flush(void)
{
    Watchdog wd;
    TestIOThread *t;
    Flush f = { 0 };
    QEMUBH *regular;

    watchdog_start(&wd, "/aio/wait/bh-oneshot/fifo-flush", 10);
    t = iothread_new();
    regular = aio_bh_new(t->ctx, flush_regular_cb, &f);

    int expect = 0;
    for (int round = 0; round < 20; round++) {
        if (round % 2 == 0) {
            /* The iothread is busy: everything below lands in one batch. */
            aio_bh_schedule_oneshot(t->ctx, flush_slow_cb, &f);
            expect++;
        }
        for (int i = 0; i < 500; i++) {
            aio_bh_schedule_oneshot(t->ctx, flush_count_cb, &f);
            expect++;
            if (i == 250) {
                qemu_bh_schedule(regular);
            }
        }
        aio_wait_bh_oneshot(t->ctx, flush_check_cb, &f);
        g_assert_cmpint(f.flushes, ==, round + 1);
        g_assert_cmpint(f.seen_by_flush, ==, expect);
        g_assert_cmpint(f.count, ==, expect);
        g_assert_cmpint(f.regular_runs, ==, round + 1);
    }

    /* Deleting is fine from the main thread; the iothread frees it. */
    qemu_bh_delete(regular);
    iothread_join(t);
    drain_main();
    watchdog_stop(&wd);
}

/* From the context's own home thread it polls that context (nested). */
typedef struct {
    AioContext *ctx;
    WhereRan inner;
    int outer_runs;
    int inner_runs_after_wait;
} Reentrant;

static void reentrant_outer_cb(void *opaque)
{
    Reentrant *r = opaque;
    r->outer_runs++;
    aio_wait_bh_oneshot(r->ctx, where_cb, &r->inner);
    r->inner_runs_after_wait = r->inner.runs;
}

static void test_bh_oneshot_from_home_thread(void)
{
    Watchdog wd;
    TestIOThread *t;

    watchdog_start(&wd, "/aio/wait/bh-oneshot/from-home-thread", 10);
    t = iothread_new();

    Reentrant r = { .ctx = t->ctx, .inner = { .ctx = t->ctx } };
    aio_wait_bh_oneshot(t->ctx, reentrant_outer_cb, &r);
    g_assert_cmpint(r.outer_runs, ==, 1);
    g_assert_cmpint(r.inner_runs_after_wait, ==, 1);
    g_assert_cmpint(r.inner.runs, ==, 1);
    g_assert_true(pthread_equal(r.inner.thread, t->tid));
    g_assert_true(r.inner.in_home);

    iothread_join(t);
    drain_main();
    watchdog_stop(&wd);
}

/* An unbound thread without the BQL sleeps until cb ran. */
typedef struct {
    AioContext *target;
    WhereRan w;
    Flush f;
    int runs_after;
    int flush_seen_after;
    int done;                            /* atomic */
} UnboundCaller;

static void *unbound_caller_thread(void *opaque)
{
    UnboundCaller *u = opaque;

    g_assert_null(qemu_get_current_aio_context());
    for (int i = 0; i < 100; i++) {
        aio_bh_schedule_oneshot(u->target, flush_count_cb, &u->f);
    }
    aio_wait_bh_oneshot(u->target, flush_check_cb, &u->f);
    u->flush_seen_after = u->f.seen_by_flush;
    aio_wait_bh_oneshot(u->target, where_cb, &u->w);
    u->runs_after = u->w.runs;
    __atomic_store_n(&u->done, 1, __ATOMIC_SEQ_CST);
    aio_wait_kick();
    return NULL;
}

static bool unbound_not_done(void *opaque)
{
    UnboundCaller *u = opaque;
    return !__atomic_load_n(&u->done, __ATOMIC_SEQ_CST);
}

static void test_bh_oneshot_unbound_thread(void)
{
    Watchdog wd;
    TestIOThread *t;
    pthread_t tid;

    watchdog_start(&wd, "/aio/wait/bh-oneshot/unbound-thread", 10);
    t = iothread_new();

    /* Target: the iothread. The main thread just joins. */
    UnboundCaller u = { .target = t->ctx, .w = { .ctx = t->ctx } };
    g_assert_cmpint(pthread_create(&tid, NULL, unbound_caller_thread, &u), ==, 0);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    g_assert_cmpint(u.runs_after, ==, 1);
    g_assert_cmpint(u.flush_seen_after, ==, 100);
    g_assert_true(pthread_equal(u.w.thread, t->tid));
    g_assert_true(u.w.current == t->ctx);

    /* Target: the main context, which the main thread polls meanwhile. */
    AioContext *main_ctx = qemu_get_aio_context();
    UnboundCaller m = { .target = main_ctx, .w = { .ctx = main_ctx } };
    g_assert_cmpint(pthread_create(&tid, NULL, unbound_caller_thread, &m), ==, 0);
    aioctx_wait_while(NULL, unbound_not_done, &m);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    g_assert_cmpint(m.runs_after, ==, 1);
    g_assert_cmpint(m.flush_seen_after, ==, 100);
    g_assert_true(pthread_equal(m.w.thread, pthread_self()));
    g_assert_true(m.w.current == main_ctx);
    g_assert_true(m.w.in_home);

    iothread_join(t);
    drain_main();
    g_assert_cmpuint(num_waiters(), ==, 0);
    watchdog_stop(&wd);
}

/* ------------------------------------------------------------------------ */
/* global_aio_wait, aio_wait_kick, aioctx_wait_while                        */
/* ------------------------------------------------------------------------ */

static void test_kick_no_waiters(void)
{
    AioContext *main_ctx = qemu_get_aio_context();

    drain_main();
    g_assert_cmpuint(num_waiters(), ==, 0);
    g_assert_cmpint(aio_compute_timeout(main_ctx), ==, -1);

    /* Nobody waits: nothing is scheduled on the main context. */
    aio_wait_kick();
    aio_wait_kick();
    g_assert_cmpint(aio_compute_timeout(main_ctx), ==, -1);
    g_assert_false(aio_poll(main_ctx, false));
}

static bool always_false(void *opaque)
{
    int *calls = opaque;
    (*calls)++;
    return false;
}

static void test_wait_while_false(void)
{
    int calls = 0;
    TestIOThread *t = iothread_new();

    drain_main();
    /* The condition is false at once: no wait, no poll. */
    g_assert_false(aioctx_wait_while(NULL, always_false, &calls));
    g_assert_cmpint(calls, ==, 1);
    g_assert_false(aioctx_wait_while(qemu_get_aio_context(), always_false, &calls));
    g_assert_cmpint(calls, ==, 2);
    g_assert_false(aioctx_wait_while(t->ctx, always_false, &calls));
    g_assert_cmpint(calls, ==, 3);
    g_assert_cmpuint(num_waiters(), ==, 0);

    iothread_join(t);
}

/* A condition set by another thread, followed by aio_wait_kick. */
typedef struct {
    int flag;                            /* atomic */
    unsigned max_waiters_seen;
    int cond_calls;
    gulong delay_us;
    int rounds;
    int round;                           /* atomic: published by the waiter */
} KickState;

static bool flag_not_set(void *opaque)
{
    KickState *k = opaque;
    unsigned n = num_waiters();
    if (n > k->max_waiters_seen) {
        k->max_waiters_seen = n;
    }
    k->cond_calls++;
    return __atomic_load_n(&k->flag, __ATOMIC_SEQ_CST) < __atomic_load_n(&k->round, __ATOMIC_SEQ_CST);
}

static void *kicker_thread(void *opaque)
{
    KickState *k = opaque;

    for (int i = 1; i <= k->rounds; i++) {
        while (__atomic_load_n(&k->round, __ATOMIC_SEQ_CST) != i) {
            g_usleep(0);
        }
        if (k->delay_us && i % 8 == 1) {
            g_usleep(k->delay_us);
        }
        __atomic_store_n(&k->flag, i, __ATOMIC_SEQ_CST);
        aio_wait_kick();
    }
    return NULL;
}

static void run_kick_rounds(AioContext *ctx, int rounds, gulong delay_us)
{
    KickState k = { .rounds = rounds, .delay_us = delay_us };
    pthread_t tid;
    int waited = 0;

    g_assert_cmpint(pthread_create(&tid, NULL, kicker_thread, &k), ==, 0);
    for (int i = 1; i <= rounds; i++) {
        __atomic_store_n(&k.round, i, __ATOMIC_SEQ_CST);
        waited += aioctx_wait_while(ctx, flag_not_set, &k);
        g_assert_cmpint(__atomic_load_n(&k.flag, __ATOMIC_SEQ_CST), ==, i);
    }
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);

    /* It counted itself as a waiter while it evaluated the condition. */
    g_assert_cmpuint(k.max_waiters_seen, ==, 1);
    g_assert_cmpuint(num_waiters(), ==, 0);
    if (delay_us) {
        g_assert_cmpint(waited, >=, 1);  /* the delayed rounds did wait */
    }
}

static void test_kick_waiter_main(void)
{
    Watchdog wd;

    watchdog_start(&wd, "/aio/wait/kick/waiter", 15);
    drain_main();
    /* Waiting on the main context (ctx NULL and the main context itself). */
    run_kick_rounds(NULL, 500, 2000);
    run_kick_rounds(qemu_get_aio_context(), 500, 0);
    drain_main();
    watchdog_stop(&wd);
}

/* The QEMU pattern: the main thread waits for work done in an iothread,
 * AIO_WAIT_WHILE(iothread_ctx, cond); the iothread kicks when done. */
typedef struct {
    int checked;                         /* atomic: the waiter looked */
    int done;                            /* atomic */
} Work;

static void work_cb(void *opaque)
{
    Work *w = opaque;
    /* Finish only after the waiter has looked at the condition, however
     * late it gets there (a preempted main thread used to find the work
     * done already and not wait at all), then while it sleeps. */
    while (!__atomic_load_n(&w->checked, __ATOMIC_SEQ_CST)) {
        g_usleep(100);
    }
    g_usleep(1000);
    __atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
    aio_wait_kick();
}

static bool work_not_done(void *opaque)
{
    Work *w = opaque;
    __atomic_store_n(&w->checked, 1, __ATOMIC_SEQ_CST);
    return !__atomic_load_n(&w->done, __ATOMIC_SEQ_CST);
}

static void test_wait_while_iothread(void)
{
    Watchdog wd;
    TestIOThread *t;

    watchdog_start(&wd, "/aio/wait/while/iothread", 10);
    drain_main();
    t = iothread_new();
    for (int i = 0; i < 200; i++) {
        Work w = { 0 };
        aio_bh_schedule_oneshot(t->ctx, work_cb, &w);
        /* Not ctx's home thread: polls the main context. */
        bool waited = aioctx_wait_while(t->ctx, work_not_done, &w);
        g_assert_true(waited);
        g_assert_cmpint(__atomic_load_n(&w.done, __ATOMIC_SEQ_CST), ==, 1);
    }
    iothread_join(t);
    drain_main();
    g_assert_cmpuint(num_waiters(), ==, 0);
    watchdog_stop(&wd);
}

/* In ctx's home thread, aioctx_wait_while polls ctx itself: a BH scheduled
 * on ctx from outside satisfies the condition without any kick. */
typedef struct {
    AioContext *ctx;
    int flag;                            /* home thread only */
    bool waited;
    int ready;                           /* atomic */
    pthread_t cb_thread;
} HomeWait;

static bool home_flag_not_set(void *opaque)
{
    HomeWait *h = opaque;
    return !h->flag;
}

static void home_set_flag_cb(void *opaque)
{
    HomeWait *h = opaque;
    h->cb_thread = pthread_self();
    h->flag = 1;
}

static void *home_waiter_thread(void *opaque)
{
    HomeWait *h = opaque;
    qemu_set_current_aio_context(h->ctx);
    __atomic_store_n(&h->ready, 1, __ATOMIC_SEQ_CST);
    h->waited = aioctx_wait_while(h->ctx, home_flag_not_set, h);
    return NULL;
}

static void test_wait_while_home_thread(void)
{
    Watchdog wd;
    HomeWait h = { 0 };
    pthread_t tid;

    watchdog_start(&wd, "/aio/wait/while/home-thread", 10);
    h.ctx = aio_context_new(&error_abort);
    g_assert_cmpint(pthread_create(&tid, NULL, home_waiter_thread, &h), ==, 0);
    while (!__atomic_load_n(&h.ready, __ATOMIC_SEQ_CST)) {
        g_usleep(1000);
    }
    g_usleep(10 * 1000);                 /* let it block */
    aio_bh_schedule_oneshot(h.ctx, home_set_flag_cb, &h);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    g_assert_true(h.waited);
    g_assert_cmpint(h.flag, ==, 1);
    g_assert_true(pthread_equal(h.cb_thread, tid));
    aio_context_unref(h.ctx);
    drain_main();
    watchdog_stop(&wd);
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    DEATH_BH_ONESHOT_NULL_CTX,
    DEATH_BH_ONESHOT_NULL_CB,
    DEATH_WAIT_WHILE_NULL_COND,
    DEATH_WAIT_WHILE_UNBOUND_THREAD,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/aio/wait/death/bh-oneshot-null-ctx", DEATH_BH_ONESHOT_NULL_CTX,
      "*aioctx: aio_wait_bh_oneshot: *NULL*" },
    { "/aio/wait/death/bh-oneshot-null-cb", DEATH_BH_ONESHOT_NULL_CB,
      "*aioctx: aio_wait_bh_oneshot: *NULL*" },
    { "/aio/wait/death/wait-while-null-cond", DEATH_WAIT_WHILE_NULL_COND,
      "*aioctx: aioctx_wait_while: *NULL*" },
    { "/aio/wait/death/wait-while-unbound-thread", DEATH_WAIT_WHILE_UNBOUND_THREAD,
      "*aioctx: aioctx_wait_while: *home thread*" },
};

static bool always_true(void *opaque)
{
    (void)opaque;
    return true;
}

static void *wait_while_unbound_thread(void *opaque)
{
    /* Neither the main context's home thread nor a BQL holder: it may
     * poll neither the main context nor (bound elsewhere) wait on it. */
    (void)opaque;
    aioctx_wait_while(qemu_get_aio_context(), always_true, NULL);
    return NULL;
}

static void noop_cb(void *opaque)
{
    (void)opaque;
}

static void run_death_case(int which)
{
    AioContext *ctx = aio_context_new(&error_abort);
    pthread_t tid;

    switch ((DeathCase)which) {
    case DEATH_BH_ONESHOT_NULL_CTX:
        aio_wait_bh_oneshot(NULL, noop_cb, NULL);
        break;
    case DEATH_BH_ONESHOT_NULL_CB:
        aio_wait_bh_oneshot(ctx, NULL, NULL);
        break;
    case DEATH_WAIT_WHILE_NULL_COND:
        aioctx_wait_while(ctx, NULL, NULL);
        break;
    case DEATH_WAIT_WHILE_UNBOUND_THREAD:
        g_assert_cmpint(pthread_create(&tid, NULL, wait_while_unbound_thread, ctx), ==, 0);
        pthread_join(tid, NULL);
        break;
    }
    /* Only reached if the library did not abort: the parent then fails. */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_assert_cmpint(qemu_init_main_loop(&error_abort), ==, 0);
    g_assert_cmpuint(num_waiters(), ==, 0);

    g_test_add_func("/aio/wait/bh-oneshot/iothread", test_bh_oneshot_iothread);
    g_test_add_func("/aio/wait/bh-oneshot/fifo-flush", test_bh_oneshot_fifo_flush);
    g_test_add_func("/aio/wait/bh-oneshot/from-home-thread", test_bh_oneshot_from_home_thread);
    g_test_add_func("/aio/wait/bh-oneshot/unbound-thread", test_bh_oneshot_unbound_thread);
    g_test_add_func("/aio/wait/kick/no-waiters", test_kick_no_waiters);
    g_test_add_func("/aio/wait/kick/waiter", test_kick_waiter_main);
    g_test_add_func("/aio/wait/while/false", test_wait_while_false);
    g_test_add_func("/aio/wait/while/iothread", test_wait_while_iothread);
    g_test_add_func("/aio/wait/while/home-thread", test_wait_while_home_thread);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);

    return g_test_run();
}
