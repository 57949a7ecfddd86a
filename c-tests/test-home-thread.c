/*
 * Home-thread rules: qemu_init_main_loop, qemu_get_current_aio_context,
 * qemu_set_current_aio_context, in_aio_context_home_thread and the BQL
 * (bql_* and the old qemu_mutex_*_iothread names), for the main context and
 * other contexts, in the main thread and in other threads; polling rules;
 * misuse (death tests).
 *
 * qemu_init_main_loop runs once, in main(). A thread can be bound only
 * once, so every binding test uses fresh pthreads.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude $(pkg-config --cflags
 * glib-2.0) c-tests/test-home-thread.c target/release/libaioctx.a
 * $(pkg-config --libs glib-2.0) -lpthread -ldl -lm -lgcc_s -rdynamic
 */

#define _GNU_SOURCE /* pthread_setname_np */
#include "aioctx.h"
#include "test-util.h"

#include <glib.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * See test-util.h for the shared helpers. Synchronization uses pthreads,
 * not GMutex/GCond (invisible to ThreadSanitizer).
 */

static void run_in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t tid;
    g_assert_cmpint(pthread_create(&tid, NULL, fn, arg), ==, 0);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
}

/* What a thread sees of the rules. */
typedef struct {
    AioContext *current;
    bool home_main;
    bool home_other;
    bool locked;
    bool locked_old_name;
} View;

static View look(AioContext *other)
{
    View v = {
        .current = qemu_get_current_aio_context(),
        .home_main = in_aio_context_home_thread(qemu_get_aio_context()),
        .home_other = other ? in_aio_context_home_thread(other) : false,
        .locked = bql_locked(),
        .locked_old_name = qemu_mutex_iothread_locked(),
    };
    return v;
}

/* ------------------------------------------------------------------------ */
/* Main thread                                                              */
/* ------------------------------------------------------------------------ */

static void test_main_init(void)
{
    AioContext *main_ctx = qemu_get_aio_context();

    g_assert_nonnull(main_ctx);
    g_assert_true(qemu_get_aio_context() == main_ctx);

    /* qemu_init_main_loop bound it to this (the main) thread. */
    View v = look(NULL);
    g_assert_true(v.current == main_ctx);
    g_assert_true(v.home_main);
    g_assert_false(v.locked);
    g_assert_false(v.locked_old_name);

    /* The main thread polls the main context. */
    WhereRan w = { .ctx = main_ctx };
    aio_bh_schedule_oneshot(main_ctx, where_cb, &w);
    g_assert_true(aio_poll(main_ctx, false));
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_true(pthread_equal(w.thread, pthread_self()));
    g_assert_true(w.current == main_ctx);
    g_assert_true(w.in_home);
}

static void test_main_bql(void)
{
    AioContext *main_ctx = qemu_get_aio_context();

    g_assert_false(bql_locked());
    bql_lock();
    View v = look(NULL);
    g_assert_true(v.locked);
    g_assert_true(v.locked_old_name);
    g_assert_true(v.current == main_ctx);
    g_assert_true(v.home_main);
    bql_unlock();
    g_assert_false(bql_locked());

    /* The old names are the same lock. */
    qemu_mutex_lock_iothread();
    g_assert_true(bql_locked());
    g_assert_true(qemu_mutex_iothread_locked());
    qemu_mutex_unlock_iothread();
    g_assert_false(bql_locked());
    g_assert_false(qemu_mutex_iothread_locked());

    bql_lock();
    qemu_mutex_unlock_iothread();
    g_assert_false(bql_locked());
    qemu_mutex_lock_iothread();
    bql_unlock();
    g_assert_false(qemu_mutex_iothread_locked());
}

static void test_main_other_context(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    AioContext *ctx = new_context();

    /* Another context is not the main thread's home, BQL or not. */
    View v = look(ctx);
    g_assert_true(v.current == main_ctx);
    g_assert_false(v.home_other);
    bql_lock();
    v = look(ctx);
    g_assert_true(v.current == main_ctx);
    g_assert_false(v.home_other);
    g_assert_true(v.home_main);
    bql_unlock();

    /* Unbound: the main thread may still poll it, and while it does, the
     * context is the thread's current context (so QEMU code that submits
     * work to "the current context" from its callbacks targets it). */
    WhereRan w = { .ctx = ctx };
    aio_bh_schedule_oneshot(ctx, where_cb, &w);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_true(w.current == ctx);
    g_assert_true(w.in_home);
    /* ... and only while it does. */
    g_assert_true(qemu_get_current_aio_context() == main_ctx);
    g_assert_false(in_aio_context_home_thread(ctx));

    aio_context_unref(ctx);
}

/* Extra references to the main context are fine; it stays usable. */
static void test_main_ref_unref(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    WhereRan w = { .ctx = main_ctx };

    aio_context_ref(main_ctx);
    aio_context_ref(main_ctx);
    aio_context_unref(main_ctx);
    aio_context_unref(main_ctx);

    aio_bh_schedule_oneshot(main_ctx, where_cb, &w);
    g_assert_true(aio_poll(main_ctx, false));
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_true(qemu_get_current_aio_context() == main_ctx);
}

/* qemu_bh_new / qemu_bh_new_full make BHs of the main context. */
static void test_main_qemu_bh_new(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    MemReentrancyGuard guard = { false };
    WhereRan w1 = { .ctx = main_ctx };
    WhereRan w2 = { .ctx = main_ctx };
    QEMUBH *bh1 = qemu_bh_new(where_cb, &w1);
    QEMUBH *bh2 = qemu_bh_new_full(where_cb, &w2, "main-bh", &guard);

    AioContext *other = new_context();
    qemu_bh_schedule(bh1);
    qemu_bh_schedule(bh2);
    /* Not on another context. */
    g_assert_false(aio_poll(other, false));
    g_assert_cmpint(w1.runs, ==, 0);

    g_assert_true(aio_poll(main_ctx, false));
    g_assert_cmpint(w1.runs, ==, 1);
    g_assert_cmpint(w2.runs, ==, 1);
    g_assert_true(w1.current == main_ctx);
    g_assert_false(aio_poll(main_ctx, false));

    qemu_bh_delete(bh1);
    qemu_bh_delete(bh2);
    aio_context_unref(other);
}

/* qemu_notify_event wakes a blocked poll of the main context. */
static void *notify_event_thread(void *opaque)
{
    int *flag = opaque;
    g_usleep(20 * 1000);
    __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
    qemu_notify_event();
    return NULL;
}

static void test_main_notify_event(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    int flag = 0;
    pthread_t tid;

    g_assert_cmpint(pthread_create(&tid, NULL, notify_event_thread, &flag), ==, 0);
    while (!__atomic_load_n(&flag, __ATOMIC_ACQUIRE)) {
        aio_poll(main_ctx, true);
    }
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);

    /* Before a blocking poll too. */
    qemu_notify_event();
    g_assert_false(aio_poll(main_ctx, true));
}

/* ------------------------------------------------------------------------ */
/* Other threads                                                            */
/* ------------------------------------------------------------------------ */

typedef struct {
    AioContext *other;
    View before;
    View with_bql;
    View with_old_name;
    View after;
} UnboundViews;

static void *unbound_thread(void *opaque)
{
    UnboundViews *u = opaque;

    u->before = look(u->other);
    bql_lock();
    u->with_bql = look(u->other);
    bql_unlock();
    qemu_mutex_lock_iothread();
    u->with_old_name = look(u->other);
    qemu_mutex_unlock_iothread();
    u->after = look(u->other);
    return NULL;
}

static void test_unbound_thread(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    AioContext *ctx = new_context();
    UnboundViews u = { .other = ctx };

    run_in_thread(unbound_thread, &u);

    /* Without the BQL: no current context, no home. */
    g_assert_null(u.before.current);
    g_assert_false(u.before.home_main);
    g_assert_false(u.before.home_other);
    g_assert_false(u.before.locked);
    g_assert_false(u.before.locked_old_name);

    /* With the BQL: the main context. */
    g_assert_true(u.with_bql.current == main_ctx);
    g_assert_true(u.with_bql.home_main);
    g_assert_false(u.with_bql.home_other);
    g_assert_true(u.with_bql.locked);
    g_assert_true(u.with_bql.locked_old_name);

    g_assert_true(u.with_old_name.current == main_ctx);
    g_assert_true(u.with_old_name.home_main);
    g_assert_false(u.with_old_name.home_other);
    g_assert_true(u.with_old_name.locked);

    /* Released again. */
    g_assert_null(u.after.current);
    g_assert_false(u.after.home_main);
    g_assert_false(u.after.locked);

    /* The main thread's view did not change. */
    g_assert_true(qemu_get_current_aio_context() == main_ctx);
    g_assert_false(bql_locked());

    aio_context_unref(ctx);
}

typedef struct {
    AioContext *ctx;
    AioContext *main_ctx;
    View bound;
    View bound_bql;
    View after;
    WhereRan ran;
    bool polled;
    /* handshake with the main thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int phase;
} BoundViews;

static void bound_wait_phase(BoundViews *b, int phase)
{
    pthread_mutex_lock(&b->lock);
    while (b->phase < phase) {
        pthread_cond_wait(&b->cond, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
}

static void bound_set_phase(BoundViews *b, int phase)
{
    pthread_mutex_lock(&b->lock);
    b->phase = phase;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

static void *bound_thread(void *opaque)
{
    BoundViews *b = opaque;

    qemu_set_current_aio_context(b->ctx);
    b->bound = look(b->ctx);
    bql_lock();
    b->bound_bql = look(b->ctx);
    bql_unlock();
    b->after = look(b->ctx);

    bound_set_phase(b, 1);          /* bound: main checks its own view */
    bound_wait_phase(b, 2);         /* main scheduled a BH on ctx */
    b->polled = aio_poll(b->ctx, true);
    return NULL;
}

static void test_bound_thread(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    AioContext *ctx = new_context();
    BoundViews *b = g_new0(BoundViews, 1);
    pthread_t tid;

    b->ctx = ctx;
    b->main_ctx = main_ctx;
    b->ran.ctx = ctx;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);

    g_assert_cmpint(pthread_create(&tid, NULL, bound_thread, b), ==, 0);
    bound_wait_phase(b, 1);

    /* The main thread is not ctx's home thread, BQL or not. */
    g_assert_false(in_aio_context_home_thread(ctx));
    bql_lock();
    g_assert_false(in_aio_context_home_thread(ctx));
    g_assert_true(qemu_get_current_aio_context() == main_ctx);
    bql_unlock();

    aio_bh_schedule_oneshot(ctx, where_cb, &b->ran);
    bound_set_phase(b, 2);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);

    /* A bound thread sees its own context... */
    g_assert_true(b->bound.current == ctx);
    g_assert_true(b->bound.home_other);
    g_assert_false(b->bound.home_main);
    g_assert_false(b->bound.locked);
    /* ...also while it holds the BQL, which adds the main context. */
    g_assert_true(b->bound_bql.current == ctx);
    g_assert_true(b->bound_bql.home_other);
    g_assert_true(b->bound_bql.home_main);
    g_assert_true(b->bound_bql.locked);
    g_assert_true(b->after.current == ctx);
    g_assert_false(b->after.home_main);

    /* Its BH ran in it, polled by it. */
    g_assert_true(b->polled);
    g_assert_cmpint(b->ran.runs, ==, 1);
    g_assert_true(pthread_equal(b->ran.thread, tid));
    g_assert_true(b->ran.current == ctx);
    g_assert_true(b->ran.in_home);

    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    g_free(b);
    aio_context_unref(ctx);
}

/* Several bound threads at once, each seeing only its own context. */
typedef struct {
    AioContext *ctx;
    AioContext *others[4];
    bool ok;
    pthread_barrier_t *barrier;
} MultiBound;

static void *multi_bound_thread(void *opaque)
{
    MultiBound *m = opaque;

    qemu_set_current_aio_context(m->ctx);
    pthread_barrier_wait(m->barrier);   /* all bound */
    m->ok = qemu_get_current_aio_context() == m->ctx;
    for (int i = 0; i < 4; i++) {
        bool expect = m->others[i] == m->ctx;
        if (in_aio_context_home_thread(m->others[i]) != expect) {
            m->ok = false;
        }
    }
    if (in_aio_context_home_thread(qemu_get_aio_context())) {
        m->ok = false;
    }
    pthread_barrier_wait(m->barrier);   /* all checked */
    return NULL;
}

static void test_bound_threads_many(void)
{
    AioContext *ctx[4];
    MultiBound m[4];
    pthread_t tid[4];
    pthread_barrier_t barrier;

    pthread_barrier_init(&barrier, NULL, 4);
    for (int i = 0; i < 4; i++) {
        ctx[i] = new_context();
    }
    for (int i = 0; i < 4; i++) {
        m[i] = (MultiBound){ .ctx = ctx[i], .barrier = &barrier };
        for (int j = 0; j < 4; j++) {
            m[i].others[j] = ctx[j];
        }
        g_assert_cmpint(pthread_create(&tid[i], NULL, multi_bound_thread, &m[i]), ==, 0);
    }
    for (int i = 0; i < 4; i++) {
        g_assert_cmpint(pthread_join(tid[i], NULL), ==, 0);
        g_assert_true(m[i].ok);
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 4; i++) {
        aio_context_unref(ctx[i]);
    }
}

/* bql_locked is per thread; the BQL excludes other threads. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool locked_at_start;
    bool acquired;
    bool release;
    bool locked_while_held;
} BqlPeer;

static void *bql_peer_thread(void *opaque)
{
    BqlPeer *p = opaque;

    p->locked_at_start = bql_locked();
    bql_lock();                          /* blocks while main holds it */
    pthread_mutex_lock(&p->lock);
    p->acquired = true;
    p->locked_while_held = bql_locked();
    pthread_cond_broadcast(&p->cond);
    while (!p->release) {
        pthread_cond_wait(&p->cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    bql_unlock();
    return NULL;
}

static void test_bql_per_thread(void)
{
    BqlPeer p = { 0 };
    pthread_t tid;

    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);

    bql_lock();
    g_assert_cmpint(pthread_create(&tid, NULL, bql_peer_thread, &p), ==, 0);
    g_usleep(50 * 1000);
    pthread_mutex_lock(&p.lock);
    g_assert_false(p.acquired);          /* excluded while main holds it */
    pthread_mutex_unlock(&p.lock);
    g_assert_true(bql_locked());
    bql_unlock();

    pthread_mutex_lock(&p.lock);
    while (!p.acquired) {
        pthread_cond_wait(&p.cond, &p.lock);
    }
    pthread_mutex_unlock(&p.lock);
    /* The peer holds it now; this thread does not. */
    g_assert_false(bql_locked());
    g_assert_false(qemu_mutex_iothread_locked());
    g_assert_true(qemu_get_current_aio_context() == qemu_get_aio_context());

    pthread_mutex_lock(&p.lock);
    p.release = true;
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&p.lock);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);

    g_assert_false(p.locked_at_start);   /* main held it, not the peer */
    g_assert_true(p.locked_while_held);
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.cond);
}

#define BQL_THREADS 4
#define BQL_ITERS 2000

static int bql_counter;                  /* protected by the BQL */

static void *bql_increment_thread(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < BQL_ITERS; i++) {
        bql_lock();
        int v = bql_counter;
        if (i % 64 == 0) {
            sched_yield();               /* widen the window */
        }
        bql_counter = v + 1;
        bql_unlock();
    }
    return NULL;
}

static void test_bql_mutual_exclusion(void)
{
    pthread_t tid[BQL_THREADS];

    bql_counter = 0;
    for (int i = 0; i < BQL_THREADS; i++) {
        g_assert_cmpint(pthread_create(&tid[i], NULL, bql_increment_thread, NULL), ==, 0);
    }
    for (int i = 0; i < BQL_THREADS; i++) {
        g_assert_cmpint(pthread_join(tid[i], NULL), ==, 0);
    }
    bql_lock();
    g_assert_cmpint(bql_counter, ==, BQL_THREADS * BQL_ITERS);
    bql_unlock();
}

/* A thread holding the BQL is in the main context's home: it may poll it. */
typedef struct {
    AioContext *main_ctx;
    bool polled;
} BqlPoller;

static void *bql_poll_main_thread(void *opaque)
{
    BqlPoller *p = opaque;
    bql_lock();
    p->polled = aio_poll(p->main_ctx, false);
    bql_unlock();
    return NULL;
}

static void test_bql_poll_main(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    BqlPoller p = { .main_ctx = main_ctx };
    WhereRan w = { .ctx = main_ctx };
    pthread_t tid;

    aio_bh_schedule_oneshot(main_ctx, where_cb, &w);
    g_assert_cmpint(pthread_create(&tid, NULL, bql_poll_main_thread, &p), ==, 0);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);

    g_assert_true(p.polled);
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_true(pthread_equal(w.thread, tid));
    g_assert_true(w.current == main_ctx);   /* via the BQL */
    g_assert_true(w.in_home);
}

/* An unbound context can be polled by any one thread at a time. */
typedef struct {
    AioContext *ctx;
    bool polled;
} PollIt;

static void *poll_it_thread(void *opaque)
{
    PollIt *p = opaque;
    p->polled = aio_poll(p->ctx, false);
    return NULL;
}

static void test_unbound_context_any_thread(void)
{
    AioContext *ctx = new_context();
    WhereRan w = { .ctx = ctx };
    PollIt p = { .ctx = ctx };
    pthread_t tid;

    for (int round = 0; round < 3; round++) {
        aio_bh_schedule_oneshot(ctx, where_cb, &w);
        g_assert_cmpint(pthread_create(&tid, NULL, poll_it_thread, &p), ==, 0);
        g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
        g_assert_true(p.polled);
        g_assert_cmpint(w.runs, ==, 2 * round + 1);
        g_assert_true(pthread_equal(w.thread, tid));
        /* While a thread polls an unbound context, it is that thread's
         * current context and home. */
        g_assert_true(w.current == ctx);
        g_assert_true(w.in_home);

        aio_bh_schedule_oneshot(ctx, where_cb, &w);
        g_assert_true(aio_poll(ctx, false));
        g_assert_cmpint(w.runs, ==, 2 * round + 2);
        g_assert_true(pthread_equal(w.thread, pthread_self()));
    }
    aio_context_unref(ctx);
}

/*
 * A thread bound to a context exits: the binding is cleared, so the context
 * is bound to no thread again. (Thread tokens are never reused: a new
 * thread, which glibc may give the dead thread's TLS block, is not taken
 * for the dead one.)
 */
typedef struct {
    AioContext *ctx;
    WhereRan *w;
    bool home_before;
    bool home_after;
} BindPoll;

static void *bind_and_poll_thread(void *opaque)
{
    BindPoll *b = opaque;

    b->home_before = in_aio_context_home_thread(b->ctx);
    qemu_set_current_aio_context(b->ctx);
    b->home_after = in_aio_context_home_thread(b->ctx);
    if (b->w) {
        aio_bh_schedule_oneshot(b->ctx, where_cb, b->w);
        g_assert_true(aio_poll(b->ctx, false));
    }
    return NULL;
}

/* Thread A binds and polls, exits; thread B can bind the context again. */
static void test_exited_home_rebind(void)
{
    AioContext *ctx = new_context();
    WhereRan w = { .ctx = ctx };
    pthread_t tid;

    for (int round = 0; round < 3; round++) {
        BindPoll b = { .ctx = ctx, .w = &w };

        g_assert_cmpint(pthread_create(&tid, NULL, bind_and_poll_thread, &b), ==, 0);
        g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
        g_assert_false(b.home_before);
        g_assert_true(b.home_after);
        g_assert_cmpint(w.runs, ==, round + 1);
        g_assert_true(pthread_equal(w.thread, tid));
        g_assert_true(w.current == ctx);
        g_assert_true(w.in_home);
    }
    aio_context_unref(ctx);
}

/* Thread A binds and polls, exits; the context is unbound: any one thread
 * (here the main thread) may poll it, and it is nobody's home otherwise. */
static void test_exited_home_unbound(void)
{
    AioContext *ctx = new_context();
    WhereRan w = { .ctx = ctx };
    BindPoll b = { .ctx = ctx, .w = &w };

    run_in_thread(bind_and_poll_thread, &b);
    g_assert_cmpint(w.runs, ==, 1);
    g_assert_false(in_aio_context_home_thread(ctx));

    aio_bh_schedule_oneshot(ctx, where_cb, &w);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(w.runs, ==, 2);
    g_assert_true(pthread_equal(w.thread, pthread_self()));
    g_assert_true(w.current == ctx);
    g_assert_true(w.in_home);
    g_assert_false(in_aio_context_home_thread(ctx));
    aio_context_unref(ctx);
}

/*
 * Ending the process with exit() while a thread holds the BQL is fine (QEMU
 * does it): only a thread that exits alone with it is reported.
 */
static void *bql_then_exit_thread(void *opaque)
{
    (void)opaque;
    bql_lock();
    fflush(stdout);
    exit(0);
}

static void test_bql_held_at_process_exit(void)
{
    if (g_test_subprocess()) {
        run_in_thread(bql_then_exit_thread, NULL);
        g_assert_not_reached();
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_assert_false(g_test_trap_reached_timeout());
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr_unmatched("*aioctx*");
}

/* A thread that locks and unlocks the BQL exits quietly; the BQL is free. */
static void *bql_lock_unlock_thread(void *opaque)
{
    (void)opaque;
    bql_lock();
    bql_unlock();
    return NULL;
}

static void test_bql_thread_exit_unlocked(void)
{
    run_in_thread(bql_lock_unlock_thread, NULL);
    run_in_thread(bql_lock_unlock_thread, NULL);
    g_assert_false(bql_locked());
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    DEATH_SET_CURRENT_MAIN_THREAD,
    DEATH_SET_CURRENT_TWICE,
    DEATH_SET_CURRENT_SAME_TWICE,
    DEATH_SET_CURRENT_TAKEN,
    DEATH_SET_CURRENT_NULL,
    DEATH_HOME_NULL,
    DEATH_POLL_OTHER_HOME,
    DEATH_POLL_REBOUND_HOME,
    DEATH_BH_POLL_OTHER_HOME,
    DEATH_COMPUTE_TIMEOUT_OTHER_HOME,
    DEATH_POLL_MAIN_NO_BQL,
    DEATH_BQL_TWICE,
    DEATH_BQL_UNLOCK_UNLOCKED,
    DEATH_OLD_UNLOCK_UNLOCKED,
    DEATH_BQL_UNLOCK_OTHER_THREAD,
    DEATH_UNREF_MAIN,
    DEATH_BQL_THREAD_EXIT,
    DEATH_BQL_THREAD_EXIT_UNNAMED,
    DEATH_EXIT_IN_BH,
    DEATH_EXIT_IN_FD_HANDLER,
    DEATH_QEMU_EXIT_IN_BH,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/aio/home-thread/death/set-current/main-thread", DEATH_SET_CURRENT_MAIN_THREAD,
      "*aioctx: qemu_set_current_aio_context: *already bound*" },
    { "/aio/home-thread/death/set-current/twice", DEATH_SET_CURRENT_TWICE,
      "*aioctx: qemu_set_current_aio_context: *already bound*" },
    { "/aio/home-thread/death/set-current/same-twice", DEATH_SET_CURRENT_SAME_TWICE,
      "*aioctx: qemu_set_current_aio_context: *already bound*" },
    { "/aio/home-thread/death/set-current/taken", DEATH_SET_CURRENT_TAKEN,
      "*aioctx: qemu_set_current_aio_context: *bound*" },
    { "/aio/home-thread/death/set-current/null", DEATH_SET_CURRENT_NULL,
      "*aioctx: qemu_set_current_aio_context: *NULL*" },
    { "/aio/home-thread/death/in-home-null", DEATH_HOME_NULL,
      "*aioctx: in_aio_context_home_thread: *NULL*" },
    { "/aio/home-thread/death/poll-other-home", DEATH_POLL_OTHER_HOME,
      "*aioctx: aio_poll: *home thread*" },
    { "/aio/home-thread/death/poll-rebound-home", DEATH_POLL_REBOUND_HOME,
      "*aioctx: aio_poll: *home thread*" },
    { "/aio/home-thread/death/bh-poll-other-home", DEATH_BH_POLL_OTHER_HOME,
      "*aioctx: aio_bh_poll: *home thread*" },
    { "/aio/home-thread/death/compute-timeout-other-home", DEATH_COMPUTE_TIMEOUT_OTHER_HOME,
      "*aioctx: aio_compute_timeout: *home thread*" },
    { "/aio/home-thread/death/poll-main-no-bql", DEATH_POLL_MAIN_NO_BQL,
      "*aioctx: aio_poll: *home thread*" },
    { "/aio/home-thread/death/bql-lock-twice", DEATH_BQL_TWICE,
      "*aioctx: bql_lock: *" },
    { "/aio/home-thread/death/bql-unlock-unlocked", DEATH_BQL_UNLOCK_UNLOCKED,
      "*aioctx: bql_unlock: *" },
    { "/aio/home-thread/death/old-unlock-unlocked", DEATH_OLD_UNLOCK_UNLOCKED,
      "*aioctx: qemu_mutex_unlock_iothread: *" },
    { "/aio/home-thread/death/bql-unlock-other-thread", DEATH_BQL_UNLOCK_OTHER_THREAD,
      "*aioctx: bql_unlock: *" },
    { "/aio/home-thread/death/unref-main-context", DEATH_UNREF_MAIN,
      "*aioctx: aio_context_unref: *main*" },
    { "/aio/home-thread/death/bql-thread-exit", DEATH_BQL_THREAD_EXIT,
      "*aioctx: bql_lock: thread \"bql-holder\" (tid *) exited holding the BQL\n" },
    { "/aio/home-thread/death/bql-thread-exit-unnamed", DEATH_BQL_THREAD_EXIT_UNNAMED,
      "*aioctx: bql_lock: thread * exited holding the BQL\n" },
    /* Issue 15.2: a thread ending inside a callback leaves a poll running. */
    { "/aio/home-thread/death/pthread-exit-in-bh", DEATH_EXIT_IN_BH,
      "*aioctx: aio_poll: thread \"bh-exiter\" (tid *) exited "
      "(pthread_exit/qemu_thread_exit) inside a callback of aio_poll\n" },
    { "/aio/home-thread/death/pthread-exit-in-fd-handler", DEATH_EXIT_IN_FD_HANDLER,
      "*aioctx: aio_poll: thread \"fd-exiter\" (tid *) exited "
      "(pthread_exit/qemu_thread_exit) inside a callback of aio_poll\n" },
    { "/aio/home-thread/death/qemu-thread-exit-in-bh", DEATH_QEMU_EXIT_IN_BH,
      "*aioctx: aio_poll: thread \"qemu-exiter\" (tid *) exited "
      "(pthread_exit/qemu_thread_exit) inside a callback of aio_poll\n" },
};

/* Callbacks that end their thread. */
static void pthread_exit_cb(void *opaque)
{
    (void)opaque;
    pthread_exit(NULL);
}

static void qemu_thread_exit_cb(void *opaque)
{
    (void)opaque;
    qemu_thread_exit(NULL);
}

/* Polls ctx (unbound) once with a BH whose callback ends the thread. */
static void *exit_in_bh_thread(void *opaque)
{
    AioContext *ctx = opaque;

    pthread_setname_np(pthread_self(), "bh-exiter");
    aio_bh_schedule_oneshot(ctx, pthread_exit_cb, NULL);
    aio_poll(ctx, true);
    return NULL;               /* not reached */
}

static void *qemu_exit_in_bh_thread(void *opaque)
{
    AioContext *ctx = opaque;

    aio_bh_schedule_oneshot(ctx, qemu_thread_exit_cb, NULL);
    aio_poll(ctx, true);
    return NULL;               /* not reached */
}

/* Binds ctx, then polls it with a readable fd whose handler ends the thread. */
static void *exit_in_fd_handler_thread(void *opaque)
{
    AioContext *ctx = opaque;
    int fds[2];

    pthread_setname_np(pthread_self(), "fd-exiter");
    qemu_set_current_aio_context(ctx);
    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    aio_set_fd_handler(ctx, fds[0], pthread_exit_cb, NULL, NULL, NULL, NULL);
    aio_poll(ctx, true);
    return NULL;               /* not reached */
}

/* Locks the BQL and exits without unlocking it (named if opaque is). */
static void *bql_exit_thread(void *opaque)
{
    if (opaque) {
        pthread_setname_np(pthread_self(), opaque);
    }
    bql_lock();
    return NULL;
}

/* A thread bound to ctx that stays alive (parked) until the process dies. */
typedef struct {
    AioContext *ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
} Parked;

static void *parked_bound_thread(void *opaque)
{
    Parked *p = opaque;
    if (p->ctx) {
        qemu_set_current_aio_context(p->ctx);
    } else {
        bql_lock();
    }
    pthread_mutex_lock(&p->lock);
    p->ready = true;
    pthread_cond_broadcast(&p->cond);
    for (;;) {
        pthread_cond_wait(&p->cond, &p->lock);
    }
    return NULL;
}

static void start_parked(Parked *p, AioContext *ctx)
{
    pthread_t tid;
    p->ctx = ctx;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    g_assert_cmpint(pthread_create(&tid, NULL, parked_bound_thread, p), ==, 0);
    pthread_mutex_lock(&p->lock);
    while (!p->ready) {
        pthread_cond_wait(&p->cond, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
}

static void *set_twice_thread(void *opaque)
{
    AioContext **ctx = opaque;
    qemu_set_current_aio_context(ctx[0]);
    qemu_set_current_aio_context(ctx[1]);
    return NULL;
}

static void *poll_main_thread(void *opaque)
{
    aio_poll(opaque, false);
    return NULL;
}

static void run_death_case(int which)
{
    static Parked parked;
    AioContext *ctx = new_context();
    AioContext *pair[2];

    switch ((DeathCase)which) {
    case DEATH_SET_CURRENT_MAIN_THREAD:
        /* main() bound this thread to the main context already. */
        qemu_set_current_aio_context(ctx);
        break;
    case DEATH_SET_CURRENT_TWICE:
        pair[0] = ctx;
        pair[1] = new_context();
        run_in_thread(set_twice_thread, pair);
        break;
    case DEATH_SET_CURRENT_SAME_TWICE:
        pair[0] = ctx;
        pair[1] = ctx;
        run_in_thread(set_twice_thread, pair);
        break;
    case DEATH_SET_CURRENT_TAKEN:
        start_parked(&parked, ctx);
        pair[0] = ctx;
        pair[1] = ctx;
        /* A fresh thread binds a context another thread is bound to. */
        run_in_thread(set_twice_thread, pair);
        break;
    case DEATH_SET_CURRENT_NULL:
        pair[0] = NULL;
        pair[1] = NULL;
        run_in_thread(set_twice_thread, pair);
        break;
    case DEATH_HOME_NULL:
        in_aio_context_home_thread(NULL);
        break;
    case DEATH_POLL_OTHER_HOME:
        start_parked(&parked, ctx);
        aio_poll(ctx, false);
        break;
    case DEATH_POLL_REBOUND_HOME: {
        /* Its first home thread exited; a live thread bound it again. */
        BindPoll b = { .ctx = ctx };
        run_in_thread(bind_and_poll_thread, &b);
        start_parked(&parked, ctx);
        aio_poll(ctx, false);
        break;
    }
    case DEATH_BH_POLL_OTHER_HOME:
        start_parked(&parked, ctx);
        aio_bh_poll(ctx);
        break;
    case DEATH_COMPUTE_TIMEOUT_OTHER_HOME:
        start_parked(&parked, ctx);
        aio_compute_timeout(ctx);
        break;
    case DEATH_POLL_MAIN_NO_BQL:
        run_in_thread(poll_main_thread, qemu_get_aio_context());
        break;
    case DEATH_BQL_TWICE:
        bql_lock();
        bql_lock();
        break;
    case DEATH_BQL_UNLOCK_UNLOCKED:
        bql_unlock();
        break;
    case DEATH_OLD_UNLOCK_UNLOCKED:
        qemu_mutex_unlock_iothread();
        break;
    case DEATH_BQL_UNLOCK_OTHER_THREAD:
        start_parked(&parked, NULL);     /* that thread holds the BQL */
        bql_unlock();
        break;
    case DEATH_BQL_THREAD_EXIT:
        run_in_thread(bql_exit_thread, (void *)"bql-holder");
        break;
    case DEATH_BQL_THREAD_EXIT_UNNAMED:
        run_in_thread(bql_exit_thread, NULL);
        break;
    case DEATH_EXIT_IN_BH:
        run_in_thread(exit_in_bh_thread, ctx);
        /* Without the exit hook: the context looks polled forever. */
        aio_context_unref(ctx);
        break;
    case DEATH_EXIT_IN_FD_HANDLER:
        run_in_thread(exit_in_fd_handler_thread, ctx);
        aio_poll(ctx, false);
        break;
    case DEATH_QEMU_EXIT_IN_BH: {
        QemuThread t;

        qemu_thread_create(&t, "qemu-exiter", qemu_exit_in_bh_thread, ctx,
                           QEMU_THREAD_JOINABLE);
        qemu_thread_join(&t);
        aio_context_unref(ctx);
        break;
    }
    case DEATH_UNREF_MAIN:
        /* Drops the reference qemu_init_main_loop keeps: never freed. */
        aio_context_unref(qemu_get_aio_context());
        break;
    }
    /* Only reached if the library did not abort: the parent then fails. */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    /* Binds the main context to this thread; once per process. */
    g_assert_null(qemu_get_aio_context());
    g_assert_null(qemu_get_current_aio_context());
    g_assert_cmpint(qemu_init_main_loop(&error_abort), ==, 0);

    g_test_add_func("/aio/home-thread/main/init", test_main_init);
    g_test_add_func("/aio/home-thread/main/bql", test_main_bql);
    g_test_add_func("/aio/home-thread/main/other-context", test_main_other_context);
    g_test_add_func("/aio/home-thread/main/ref-unref", test_main_ref_unref);
    g_test_add_func("/aio/home-thread/main/qemu-bh-new", test_main_qemu_bh_new);
    g_test_add_func("/aio/home-thread/main/notify-event", test_main_notify_event);
    g_test_add_func("/aio/home-thread/thread/unbound", test_unbound_thread);
    g_test_add_func("/aio/home-thread/thread/bound", test_bound_thread);
    g_test_add_func("/aio/home-thread/thread/bound-many", test_bound_threads_many);
    g_test_add_func("/aio/home-thread/thread/exited-home-rebind", test_exited_home_rebind);
    g_test_add_func("/aio/home-thread/thread/exited-home-unbound", test_exited_home_unbound);
    g_test_add_func("/aio/home-thread/bql/per-thread", test_bql_per_thread);
    g_test_add_func("/aio/home-thread/bql/mutual-exclusion", test_bql_mutual_exclusion);
    g_test_add_func("/aio/home-thread/bql/poll-main", test_bql_poll_main);
    g_test_add_func("/aio/home-thread/bql/held-at-process-exit", test_bql_held_at_process_exit);
    g_test_add_func("/aio/home-thread/bql/thread-exit-unlocked", test_bql_thread_exit_unlocked);
    g_test_add_func("/aio/home-thread/unbound-context/any-thread",
                    test_unbound_context_any_thread);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);

    return g_test_run();
}
