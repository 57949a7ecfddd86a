/*
 * Threads and synchronization for QEMU-style callers (qemu/thread.h,
 * qemu/futex.h): QemuMutex, QemuRecMutex, QemuCond, QemuSemaphore,
 * QemuEvent, QemuThread, the futex helpers, struct layouts, and misuse
 * (death tests).
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude $(pkg-config --cflags
 * glib-2.0) c-tests/test-thread.c target/release/libaioctx.a $(pkg-config
 * --libs glib-2.0) -lpthread -ldl -lm -lgcc_s -rdynamic
 *
 * Data handed from one thread to another travels under a QemuMutex (which
 * ThreadSanitizer understands) or through C11 atomics, so the tests stay
 * clean under TSan even against a library built without it.
 */

#define _GNU_SOURCE /* sched_getaffinity, CPU_* */

#include "aioctx.h"
#include "qemu/thread.h"
#include "qemu/notify.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* QEMU 10.2's own prototypes (docs/spec/qemu-abi.md section 4) must compile here. */
bool qemu_thread_is_self(QemuThread *thread);
static inline void qemu_spin_destroy(QemuSpin *spin);

/* ------------------------------------------------------------------------ */
/* Layouts: callers embed these structs, so their shape is part of the ABI. */

_Static_assert(offsetof(QemuMutex, lock) == 0, "QemuMutex.lock");
_Static_assert(offsetof(QemuMutex, initialized) == sizeof(pthread_mutex_t),
               "QemuMutex.initialized");
_Static_assert(offsetof(QemuRecMutex, m) == 0, "QemuRecMutex.m");
_Static_assert(offsetof(QemuCond, cond) == 0, "QemuCond.cond");
_Static_assert(offsetof(QemuCond, initialized) == sizeof(pthread_cond_t),
               "QemuCond.initialized");
_Static_assert(offsetof(QemuSemaphore, mutex) == 0, "QemuSemaphore.mutex");
_Static_assert(offsetof(QemuSemaphore, cond) == sizeof(QemuMutex),
               "QemuSemaphore.cond");
_Static_assert(offsetof(QemuEvent, value) == 0, "QemuEvent.value (futex word)");
_Static_assert(sizeof(QemuEvent) == 8, "QemuEvent size");
_Static_assert(offsetof(QemuThread, thread) == 0, "QemuThread.thread");
#if defined(__x86_64__) && defined(__GLIBC__)
_Static_assert(sizeof(QemuMutex) == 48 && _Alignof(QemuMutex) == 8, "QemuMutex");
_Static_assert(sizeof(QemuRecMutex) == 48 && _Alignof(QemuRecMutex) == 8, "QemuRecMutex");
_Static_assert(sizeof(QemuCond) == 56 && _Alignof(QemuCond) == 8, "QemuCond");
_Static_assert(sizeof(QemuSemaphore) == 112, "QemuSemaphore");
_Static_assert(sizeof(QemuThread) == 8 && _Alignof(QemuThread) == 8, "QemuThread");
#endif
_Static_assert(QEMU_THREAD_JOINABLE == 0 && QEMU_THREAD_DETACHED == 1,
               "QEMU's thread modes");

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static gint64 now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

/* Sleeps a little so that another thread gets to block first. */
static void short_sleep(void)
{
    g_usleep(20 * 1000);
}

/* ------------------------------------------------------------------------ */
/* QemuMutex                                                                */

static void test_mutex_basic(void)
{
    QemuMutex m;

    memset(&m, 0xa5, sizeof(m));     /* init accepts garbage */
    qemu_mutex_init(&m);
    g_assert_true(m.initialized);
    qemu_mutex_lock(&m);
    g_assert_cmpint(qemu_mutex_trylock(&m), ==, -EBUSY);   /* not recursive */
    qemu_mutex_unlock(&m);
    g_assert_cmpint(qemu_mutex_trylock(&m), ==, 0);
    qemu_mutex_unlock(&m);
    qemu_mutex_destroy(&m);
    g_assert_false(m.initialized);

    /* Destroyed mutexes can be initialized again. */
    qemu_mutex_init(&m);
    qemu_mutex_lock(&m);
    qemu_mutex_unlock(&m);
    qemu_mutex_destroy(&m);
}

#define CONTENDED_THREADS 4
#ifndef CONTENDED_ITERATIONS
#define CONTENDED_ITERATIONS 1000000
#endif

typedef struct {
    QemuEvent start;       /* all workers start together */
    QemuMutex lock;
    long counter;          /* protected by lock */
    long trylock_busy;     /* protected by lock */
} Contended;

typedef struct {
    Contended *shared;
    int index;
} ContendedWorker;

static void *contended_thread(void *opaque)
{
    ContendedWorker *w = opaque;
    Contended *c = w->shared;
    long busy = 0;

    qemu_event_wait(&c->start);
    for (int i = 0; i < CONTENDED_ITERATIONS; i++) {
        if (w->index % 2 && i % 2) {
            /* Odd workers take every other lock with trylock. */
            while (qemu_mutex_trylock(&c->lock) == -EBUSY) {
                busy++;
            }
        } else {
            qemu_mutex_lock(&c->lock);
        }
        c->counter++;
        qemu_mutex_unlock(&c->lock);
    }
    qemu_mutex_lock(&c->lock);
    c->trylock_busy += busy;
    qemu_mutex_unlock(&c->lock);
    return NULL;
}

static void test_mutex_contended(void)
{
    Contended c = { .counter = 0 };
    ContendedWorker workers[CONTENDED_THREADS];
    QemuThread threads[CONTENDED_THREADS];

    qemu_event_init(&c.start, false);
    qemu_mutex_init(&c.lock);
    for (int i = 0; i < CONTENDED_THREADS; i++) {
        workers[i] = (ContendedWorker){ .shared = &c, .index = i };
        qemu_thread_create(&threads[i], "contended", contended_thread,
                           &workers[i], QEMU_THREAD_JOINABLE);
    }
    qemu_event_set(&c.start);
    for (int i = 0; i < CONTENDED_THREADS; i++) {
        g_assert_null(qemu_thread_join(&threads[i]));
    }
    g_assert_cmpint(c.counter, ==, (long)CONTENDED_THREADS * CONTENDED_ITERATIONS);
    g_test_message("trylock found the mutex busy %ld times", c.trylock_busy);
    qemu_mutex_destroy(&c.lock);
    qemu_event_destroy(&c.start);
}

typedef struct {
    QemuMutex *lock;
    int result;
} TrylockProbe;

static void *trylock_thread(void *opaque)
{
    TrylockProbe *p = opaque;

    p->result = qemu_mutex_trylock(p->lock);
    if (p->result == 0) {
        qemu_mutex_unlock(p->lock);
    }
    return NULL;
}

static int trylock_from_other_thread(QemuMutex *lock)
{
    TrylockProbe p = { .lock = lock, .result = 42 };
    QemuThread t;

    qemu_thread_create(&t, "trylock", trylock_thread, &p, QEMU_THREAD_JOINABLE);
    qemu_thread_join(&t);
    return p.result;
}

static void test_mutex_trylock_other_thread(void)
{
    QemuMutex m;

    qemu_mutex_init(&m);
    qemu_mutex_lock(&m);
    g_assert_cmpint(trylock_from_other_thread(&m), ==, -EBUSY);
    qemu_mutex_unlock(&m);
    g_assert_cmpint(trylock_from_other_thread(&m), ==, 0);
    qemu_mutex_destroy(&m);
}

/* ------------------------------------------------------------------------ */
/* QemuRecMutex                                                             */

typedef struct {
    QemuRecMutex *lock;
    int result;
} RecTrylockProbe;

static void *rec_trylock_thread(void *opaque)
{
    RecTrylockProbe *p = opaque;

    p->result = qemu_rec_mutex_trylock(p->lock);
    if (p->result == 0) {
        qemu_rec_mutex_unlock(p->lock);
    }
    return NULL;
}

static int rec_trylock_from_other_thread(QemuRecMutex *lock)
{
    RecTrylockProbe p = { .lock = lock, .result = 42 };
    QemuThread t;

    qemu_thread_create(&t, "rec-trylock", rec_trylock_thread, &p,
                       QEMU_THREAD_JOINABLE);
    qemu_thread_join(&t);
    return p.result;
}

static void test_rec_mutex_nesting(void)
{
    QemuRecMutex m;

    qemu_rec_mutex_init(&m);
    qemu_rec_mutex_lock(&m);
    qemu_rec_mutex_lock(&m);
    g_assert_cmpint(qemu_rec_mutex_trylock(&m), ==, 0);      /* third level */
    g_assert_cmpint(rec_trylock_from_other_thread(&m), ==, -EBUSY);
    qemu_rec_mutex_unlock(&m);
    qemu_rec_mutex_unlock(&m);
    g_assert_cmpint(rec_trylock_from_other_thread(&m), ==, -EBUSY);
    qemu_rec_mutex_unlock(&m);                               /* free now */
    g_assert_cmpint(rec_trylock_from_other_thread(&m), ==, 0);
    qemu_rec_mutex_destroy(&m);
}

/* ------------------------------------------------------------------------ */
/* QemuCond                                                                 */

typedef struct {
    QemuMutex lock;
    QemuCond cond;
    int go;          /* protected by lock */
    int waiting;     /* protected by lock */
    int woken;       /* protected by lock */
} CondTest;

static void *cond_waiter_thread(void *opaque)
{
    CondTest *t = opaque;

    qemu_mutex_lock(&t->lock);
    t->waiting++;
    while (!t->go) {
        qemu_cond_wait(&t->cond, &t->lock);
    }
    t->woken++;
    qemu_mutex_unlock(&t->lock);
    return NULL;
}

static void cond_test_init(CondTest *t)
{
    memset(t, 0, sizeof(*t));
    qemu_mutex_init(&t->lock);
    qemu_cond_init(&t->cond);
}

static void cond_test_destroy(CondTest *t)
{
    qemu_cond_destroy(&t->cond);
    qemu_mutex_destroy(&t->lock);
}

static void wait_for_waiters(CondTest *t, int n)
{
    for (;;) {
        qemu_mutex_lock(&t->lock);
        int waiting = t->waiting;
        qemu_mutex_unlock(&t->lock);
        if (waiting == n) {
            return;
        }
        short_sleep();
    }
}

static void test_cond_signal(void)
{
    CondTest t;
    QemuThread thread;

    cond_test_init(&t);
    qemu_thread_create(&thread, "cond-waiter", cond_waiter_thread, &t,
                       QEMU_THREAD_JOINABLE);
    wait_for_waiters(&t, 1);
    short_sleep();                    /* most likely asleep in the wait now */
    qemu_mutex_lock(&t.lock);
    t.go = 1;
    qemu_cond_signal(&t.cond);
    qemu_mutex_unlock(&t.lock);
    qemu_thread_join(&thread);
    g_assert_cmpint(t.woken, ==, 1);
    cond_test_destroy(&t);
}

#define BROADCAST_THREADS 4

static void test_cond_broadcast(void)
{
    CondTest t;
    QemuThread threads[BROADCAST_THREADS];

    cond_test_init(&t);
    for (int i = 0; i < BROADCAST_THREADS; i++) {
        qemu_thread_create(&threads[i], "cond-bcast", cond_waiter_thread, &t,
                           QEMU_THREAD_JOINABLE);
    }
    wait_for_waiters(&t, BROADCAST_THREADS);
    short_sleep();
    qemu_mutex_lock(&t.lock);
    t.go = 1;
    qemu_cond_broadcast(&t.cond);     /* one call wakes everybody */
    qemu_mutex_unlock(&t.lock);
    for (int i = 0; i < BROADCAST_THREADS; i++) {
        qemu_thread_join(&threads[i]);
    }
    g_assert_cmpint(t.woken, ==, BROADCAST_THREADS);
    cond_test_destroy(&t);
}

static void test_cond_timedwait_timeout(void)
{
    CondTest t;
    gint64 start, elapsed;
    bool signalled;

    cond_test_init(&t);
    qemu_mutex_lock(&t.lock);
    start = now_ms();
    signalled = qemu_cond_timedwait(&t.cond, &t.lock, 100);
    elapsed = now_ms() - start;
    g_assert_false(signalled);
    g_assert_cmpint(elapsed, >=, 99);
    g_assert_cmpint(elapsed, <, 5000);
    /* The mutex is held again: unlocking it is legal. */
    qemu_mutex_unlock(&t.lock);

    /* A zero timeout returns at once. */
    qemu_mutex_lock(&t.lock);
    g_assert_false(qemu_cond_timedwait(&t.cond, &t.lock, 0));
    qemu_mutex_unlock(&t.lock);
    cond_test_destroy(&t);
}

static void *cond_signal_later_thread(void *opaque)
{
    CondTest *t = opaque;

    short_sleep();
    qemu_mutex_lock(&t->lock);
    t->go = 1;
    qemu_cond_signal(&t->cond);
    qemu_mutex_unlock(&t->lock);
    return NULL;
}

static void test_cond_timedwait_signalled(void)
{
    CondTest t;
    QemuThread thread;
    gint64 start;

    cond_test_init(&t);
    qemu_mutex_lock(&t.lock);
    qemu_thread_create(&thread, "cond-signal", cond_signal_later_thread, &t,
                       QEMU_THREAD_JOINABLE);
    start = now_ms();
    while (!t.go) {
        /* Spurious wakeups return true too; the loop handles both. */
        g_assert_true(qemu_cond_timedwait(&t.cond, &t.lock, 10000));
    }
    g_assert_cmpint(now_ms() - start, <, 9000);
    qemu_mutex_unlock(&t.lock);
    qemu_thread_join(&thread);
    cond_test_destroy(&t);
}

/* ------------------------------------------------------------------------ */
/* QemuSemaphore                                                            */

static void test_sem_post_wait(void)
{
    QemuSemaphore s;

    qemu_sem_init(&s, 2);
    qemu_sem_wait(&s);
    g_assert_cmpint(qemu_sem_timedwait(&s, 0), ==, 0);
    g_assert_cmpint(qemu_sem_timedwait(&s, 0), ==, -1);     /* empty */
    qemu_sem_post(&s);
    qemu_sem_post(&s);
    g_assert_cmpint(qemu_sem_timedwait(&s, 1000), ==, 0);
    qemu_sem_wait(&s);
    g_assert_cmpint(qemu_sem_timedwait(&s, 0), ==, -1);
    qemu_sem_destroy(&s);
}

static void test_sem_timedwait_timeout(void)
{
    QemuSemaphore s;
    gint64 start, elapsed;

    qemu_sem_init(&s, 0);
    start = now_ms();
    g_assert_cmpint(qemu_sem_timedwait(&s, 100), ==, -1);
    elapsed = now_ms() - start;
    g_assert_cmpint(elapsed, >=, 99);
    g_assert_cmpint(elapsed, <, 5000);
    qemu_sem_destroy(&s);
}

#define SEM_ROUNDS 10000

typedef struct {
    QemuSemaphore ping;
    QemuSemaphore pong;
} PingPong;

static void *sem_pong_thread(void *opaque)
{
    PingPong *p = opaque;

    for (int i = 0; i < SEM_ROUNDS; i++) {
        qemu_sem_wait(&p->ping);
        qemu_sem_post(&p->pong);
    }
    return NULL;
}

static void test_sem_cross_thread(void)
{
    PingPong p;
    QemuThread thread;

    qemu_sem_init(&p.ping, 0);
    qemu_sem_init(&p.pong, 0);
    qemu_thread_create(&thread, "sem-pong", sem_pong_thread, &p,
                       QEMU_THREAD_JOINABLE);
    for (int i = 0; i < SEM_ROUNDS; i++) {
        qemu_sem_post(&p.ping);
        qemu_sem_wait(&p.pong);
    }
    qemu_thread_join(&thread);
    g_assert_cmpint(qemu_sem_timedwait(&p.ping, 0), ==, -1);
    g_assert_cmpint(qemu_sem_timedwait(&p.pong, 0), ==, -1);
    qemu_sem_destroy(&p.ping);
    qemu_sem_destroy(&p.pong);
}

/* ------------------------------------------------------------------------ */
/* QemuEvent                                                                */

static void test_event_basic(void)
{
    QemuEvent ev;

    qemu_event_init(&ev, true);
    qemu_event_wait(&ev);             /* set: returns at once */
    qemu_event_wait(&ev);             /* still set */
    qemu_event_reset(&ev);
    qemu_event_reset(&ev);            /* idempotent */
    qemu_event_set(&ev);
    qemu_event_set(&ev);              /* idempotent */
    qemu_event_wait(&ev);
    qemu_event_destroy(&ev);

    qemu_event_init(&ev, false);
    qemu_event_set(&ev);
    qemu_event_wait(&ev);
    qemu_event_destroy(&ev);
}

#define EVENT_WAITERS 4
#define EVENT_ROUNDS 2000

/*
 * QEMU's pattern: the waiter resets its event, checks the condition, and
 * waits only if it does not hold; the other side updates the condition,
 * then sets the event. No wakeup may be lost.
 */
typedef struct {
    QemuEvent go[EVENT_WAITERS];  /* main -> worker i: next round */
    QemuSemaphore done;           /* workers -> main: round finished */
    atomic_int round;
    atomic_int seen[EVENT_WAITERS];
} EventTest;

typedef struct {
    EventTest *t;
    int index;
} EventWorker;

static void *event_waiter_thread(void *opaque)
{
    EventWorker *w = opaque;
    EventTest *t = w->t;
    QemuEvent *go = &t->go[w->index];

    for (int r = 1; r <= EVENT_ROUNDS; r++) {
        for (;;) {
            qemu_event_reset(go);
            if (atomic_load(&t->round) >= r) {
                break;
            }
            qemu_event_wait(go);
        }
        atomic_store(&t->seen[w->index], r);
        qemu_sem_post(&t->done);
    }
    return NULL;
}

static void test_event_cross_thread(void)
{
    EventTest t;
    EventWorker workers[EVENT_WAITERS];
    QemuThread threads[EVENT_WAITERS];

    memset(&t, 0, sizeof(t));
    qemu_sem_init(&t.done, 0);
    for (int i = 0; i < EVENT_WAITERS; i++) {
        qemu_event_init(&t.go[i], false);
        workers[i] = (EventWorker){ .t = &t, .index = i };
        qemu_thread_create(&threads[i], "event-wait", event_waiter_thread,
                           &workers[i], QEMU_THREAD_JOINABLE);
    }
    for (int r = 1; r <= EVENT_ROUNDS; r++) {
        atomic_store(&t.round, r);
        for (int i = 0; i < EVENT_WAITERS; i++) {
            qemu_event_set(&t.go[i]);
        }
        for (int i = 0; i < EVENT_WAITERS; i++) {
            qemu_sem_wait(&t.done);
        }
        for (int i = 0; i < EVENT_WAITERS; i++) {
            g_assert_cmpint(atomic_load(&t.seen[i]), ==, r);
        }
    }
    for (int i = 0; i < EVENT_WAITERS; i++) {
        qemu_thread_join(&threads[i]);
        qemu_event_destroy(&t.go[i]);
    }
    qemu_sem_destroy(&t.done);
}

typedef struct {
    QemuEvent ev;
    QemuSemaphore started;
    atomic_int woken;
} SleeperTest;

static void *event_sleeper_thread(void *opaque)
{
    SleeperTest *t = opaque;

    qemu_sem_post(&t->started);
    qemu_event_wait(&t->ev);
    atomic_fetch_add(&t->woken, 1);
    return NULL;
}

/* One set wakes every thread that really sleeps on the event's futex. */
static void test_event_wakes_sleepers(void)
{
    SleeperTest t;
    QemuThread threads[EVENT_WAITERS];

    qemu_event_init(&t.ev, false);
    qemu_sem_init(&t.started, 0);
    atomic_init(&t.woken, 0);
    for (int i = 0; i < EVENT_WAITERS; i++) {
        qemu_thread_create(&threads[i], "event-sleep", event_sleeper_thread, &t,
                           QEMU_THREAD_JOINABLE);
    }
    for (int i = 0; i < EVENT_WAITERS; i++) {
        qemu_sem_wait(&t.started);
    }
    short_sleep();                     /* most likely asleep by now */
    g_assert_cmpint(atomic_load(&t.woken), ==, 0);
    qemu_event_set(&t.ev);
    for (int i = 0; i < EVENT_WAITERS; i++) {
        qemu_thread_join(&threads[i]);
    }
    g_assert_cmpint(atomic_load(&t.woken), ==, EVENT_WAITERS);
    qemu_sem_destroy(&t.started);
    qemu_event_destroy(&t.ev);
}

/* ------------------------------------------------------------------------ */
/* QemuThread                                                               */

static void *add_one_thread(void *opaque)
{
    return (void *)((uintptr_t)opaque + 1);
}

static void test_thread_joinable(void)
{
    QemuThread t;

    qemu_thread_create(&t, "joinable", add_one_thread, (void *)41,
                       QEMU_THREAD_JOINABLE);
    g_assert_true(qemu_thread_join(&t) == (void *)42);

    /* NULL name: an unnamed thread. */
    qemu_thread_create(&t, NULL, add_one_thread, (void *)1, QEMU_THREAD_JOINABLE);
    g_assert_true(qemu_thread_join(&t) == (void *)2);
}

typedef struct {
    QemuSemaphore done;
    atomic_bool was_self;
} DetachedTest;

static void *detached_thread(void *opaque)
{
    DetachedTest *d = opaque;
    QemuThread self;

    qemu_thread_get_self(&self);
    atomic_store(&d->was_self, qemu_thread_is_self(&self));
    qemu_sem_post(&d->done);
    return NULL;
}

static void test_thread_detached(void)
{
    DetachedTest d;
    QemuThread t;

    qemu_sem_init(&d.done, 0);
    atomic_init(&d.was_self, false);
    qemu_thread_create(&t, "detached", detached_thread, &d, QEMU_THREAD_DETACHED);
    qemu_sem_wait(&d.done);
    g_assert_true(atomic_load(&d.was_self));
    g_assert_false(qemu_thread_is_self(&t));
    qemu_sem_destroy(&d.done);
}

/* Returns the calling thread's name as Linux shows it (g_free it). */
static void *read_comm_thread(void *opaque)
{
    char path[64];
    gchar *comm = NULL;

    (void)opaque;
    snprintf(path, sizeof(path), "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    if (!g_file_get_contents(path, &comm, NULL, NULL)) {
        return NULL;
    }
    g_strchomp(comm);
    return comm;
}

static void check_thread_name(const char *name, const char *expected)
{
    QemuThread t;
    gchar *comm;

    qemu_thread_create(&t, name, read_comm_thread, NULL, QEMU_THREAD_JOINABLE);
    comm = qemu_thread_join(&t);
    g_assert_nonnull(comm);
    g_assert_cmpstr(comm, ==, expected);
    g_free(comm);
}

static void test_thread_name(void)
{
    check_thread_name("io-worker", "io-worker");
    check_thread_name("123456789012345", "123456789012345");        /* 15 */
    /* Longer names are truncated to the 15 bytes Linux keeps. */
    check_thread_name("aioctx-test-long-thread-name", "aioctx-test-lon");
}

typedef struct {
    QemuThread main_thread;
    atomic_bool main_is_self;
    atomic_bool own_is_self;
} IsSelfTest;

static void *is_self_thread(void *opaque)
{
    IsSelfTest *t = opaque;
    QemuThread self;

    qemu_thread_get_self(&self);
    atomic_store(&t->own_is_self, qemu_thread_is_self(&self));
    atomic_store(&t->main_is_self, qemu_thread_is_self(&t->main_thread));
    return NULL;
}

static void test_thread_is_self(void)
{
    IsSelfTest t;
    QemuThread thread, copy;

    qemu_thread_get_self(&t.main_thread);
    g_assert_true(qemu_thread_is_self(&t.main_thread));
    atomic_init(&t.main_is_self, true);
    atomic_init(&t.own_is_self, false);
    qemu_thread_create(&thread, "is-self", is_self_thread, &t, QEMU_THREAD_JOINABLE);
    g_assert_false(qemu_thread_is_self(&thread));
    copy = thread;
    g_assert_false(qemu_thread_is_self(&copy));
    qemu_thread_join(&thread);
    g_assert_false(atomic_load(&t.main_is_self));
    g_assert_true(atomic_load(&t.own_is_self));
}

static void exit_helper(void *retval)
{
    qemu_thread_exit(retval);
}

static void *exiting_thread(void *opaque)
{
    exit_helper(opaque);               /* from a nested call */
    return NULL;                       /* not reached */
}

static void test_thread_exit(void)
{
    QemuThread t;
    static int token;

    qemu_thread_create(&t, "exiting", exiting_thread, &token, QEMU_THREAD_JOINABLE);
    g_assert_true(qemu_thread_join(&t) == &token);
}

static void *sigmask_thread(void *opaque)
{
    sigset_t set;

    (void)opaque;
    pthread_sigmask(SIG_SETMASK, NULL, &set);
    return (void *)(uintptr_t)(sigismember(&set, SIGUSR1) &&
                               sigismember(&set, SIGALRM) &&
                               !sigismember(&set, SIGSEGV));
}

/* As in QEMU: new threads leave signal handling to the main thread. */
static void test_thread_signal_mask(void)
{
    QemuThread t;
    sigset_t before, after;

    pthread_sigmask(SIG_SETMASK, NULL, &before);
    qemu_thread_create(&t, "sigmask", sigmask_thread, NULL, QEMU_THREAD_JOINABLE);
    g_assert_true(qemu_thread_join(&t) == (void *)1);
    pthread_sigmask(SIG_SETMASK, NULL, &after);
    g_assert_cmpint(sigismember(&before, SIGUSR1), ==, sigismember(&after, SIGUSR1));
}

/* ------------------------------------------------------------------------ */
/* Futexes                                                                  */

typedef struct {
    _Alignas(4) atomic_uint word;
    atomic_int woken;
} FutexTest;

static void *futex_waiter_thread(void *opaque)
{
    FutexTest *f = opaque;

    while (atomic_load(&f->word) == 0) {
        qemu_futex_wait(&f->word, 0);
    }
    atomic_fetch_add(&f->woken, 1);
    return NULL;
}

static void test_futex_wait_wake(void)
{
    FutexTest f;
    QemuThread threads[3];

    atomic_init(&f.word, 0);
    atomic_init(&f.woken, 0);

    /* A value that does not match returns at once. */
    qemu_futex_wait(&f.word, 1);
    /* Waking nobody is fine. */
    qemu_futex_wake_single(&f.word);
    qemu_futex_wake_all(&f.word);

    for (int i = 0; i < 3; i++) {
        qemu_thread_create(&threads[i], "futex-wait", futex_waiter_thread, &f,
                           QEMU_THREAD_JOINABLE);
    }
    short_sleep();
    g_assert_cmpint(atomic_load(&f.woken), ==, 0);
    atomic_store(&f.word, 1);
    qemu_futex_wake_single(&f.word);
    qemu_futex_wake_all(&f.word);
    for (int i = 0; i < 3; i++) {
        qemu_thread_join(&threads[i]);
    }
    g_assert_cmpint(atomic_load(&f.woken), ==, 3);
}

/* ------------------------------------------------------------------------ */
/* ------------------------------------------------------------------------ */
/* Thread-exit notifiers (qemu_thread_atexit_*). */

typedef struct {
    Notifier n;
    pthread_t ran_in;      /* the thread that called it */
    int order;             /* 1 + how many ran before it; 0: did not run */
    void *data;            /* what it was called with */
    bool remove_self;      /* the callback removes its own notifier */
} ExitRecord;

static atomic_int exit_runs;

static void record_exit(Notifier *n, void *data)
{
    ExitRecord *r = container_of(n, ExitRecord, n);

    r->ran_in = pthread_self();
    r->order = atomic_fetch_add(&exit_runs, 1) + 1;
    r->data = data;
    if (r->remove_self) {
        qemu_thread_atexit_remove(n);
    }
}

typedef struct {
    ExitRecord rec[3];
    pthread_t self;
    bool call_exit;        /* end with qemu_thread_exit instead of return */
} ExitTest;

static void *atexit_thread(void *opaque)
{
    ExitTest *t = opaque;

    t->self = pthread_self();
    for (int i = 0; i < 3; i++) {
        t->rec[i].n.notify = record_exit;
        qemu_thread_atexit_add(&t->rec[i].n);
    }
    /* rec[1] is removed: it must not run. */
    qemu_thread_atexit_remove(&t->rec[1].n);
    /* Nothing ran yet: notifiers run only when the thread ends. */
    g_assert_cmpint(atomic_load(&exit_runs), ==, 0);
    if (t->call_exit) {
        qemu_thread_exit(t);
    }
    return t;
}

static void check_atexit(bool call_exit)
{
    QemuThread thread;
    ExitTest t;

    memset(&t, 0, sizeof(t));
    t.call_exit = call_exit;
    t.rec[2].remove_self = true;
    atomic_store(&exit_runs, 0);
    qemu_thread_create(&thread, "atexit", atexit_thread, &t, QEMU_THREAD_JOINABLE);
    g_assert_true(qemu_thread_join(&thread) == &t);

    g_assert_cmpint(atomic_load(&exit_runs), ==, 2);
    /* Newest first, in the exiting thread, with data NULL (QEMU's order). */
    g_assert_cmpint(t.rec[2].order, ==, 1);
    g_assert_cmpint(t.rec[0].order, ==, 2);
    g_assert_cmpint(t.rec[1].order, ==, 0);
    for (int i = 0; i < 3; i += 2) {
        g_assert_true(pthread_equal(t.rec[i].ran_in, t.self));
        g_assert_null(t.rec[i].data);
    }
    /* The one that removed itself is off the list (QEMU's QLIST_REMOVE). */
    g_assert_null(t.rec[2].n.node.le_prev);
}

static void test_atexit_return(void)
{
    check_atexit(false);
}

static void test_atexit_thread_exit(void)
{
    check_atexit(true);
}

/* The main thread's list is its own: a thread's notifiers never run it. */
static void test_atexit_per_thread(void)
{
    QemuThread thread;
    ExitTest t;
    ExitRecord mine = { .n.notify = record_exit };

    qemu_thread_atexit_add(&mine.n);
    memset(&t, 0, sizeof(t));
    atomic_store(&exit_runs, 0);
    qemu_thread_create(&thread, "atexit2", atexit_thread, &t, QEMU_THREAD_JOINABLE);
    qemu_thread_join(&thread);
    g_assert_cmpint(atomic_load(&exit_runs), ==, 2);
    g_assert_cmpint(mine.order, ==, 0);
    qemu_thread_atexit_remove(&mine.n);
    g_assert_null(mine.n.node.le_prev);
}

/* ------------------------------------------------------------------------ */
/* CPU affinity (qemu_thread_set/get_affinity). */

#define ULONG_BITS (8 * sizeof(unsigned long))

static void *affinity_thread(void *opaque)
{
    qemu_sem_wait(opaque);
    return NULL;
}

static void test_affinity_round_trip(void)
{
    QemuThread t;
    QemuSemaphore done;
    unsigned long cpu0 = 1, *got = NULL, nbits = 0;
    cpu_set_t mine;

    g_assert_cmpint(sched_getaffinity(0, sizeof(mine), &mine), ==, 0);
    if (!CPU_ISSET(0, &mine)) {
        g_test_skip("CPU 0 is not available to this process");
        return;
    }
    qemu_sem_init(&done, 0);
    qemu_thread_create(&t, "affinity", affinity_thread, &done, QEMU_THREAD_JOINABLE);

    g_assert_cmpint(qemu_thread_set_affinity(&t, &cpu0, 1), ==, 0);
    g_assert_cmpint(qemu_thread_get_affinity(&t, &got, &nbits), ==, 0);
    g_assert_nonnull(got);
    g_assert_cmpuint(nbits, >=, CPU_SETSIZE);
    g_assert_cmpuint(nbits % ULONG_BITS, ==, 0);
    g_assert_cmpuint(got[0], ==, 1);                 /* CPU 0 only */
    for (unsigned long i = 1; i < nbits / ULONG_BITS; i++) {
        g_assert_cmpuint(got[i], ==, 0);
    }
    g_free(got);

    /* Bits past nbits are ignored: only bit 0 of 0x3 counts. */
    cpu0 = 3;
    g_assert_cmpint(qemu_thread_set_affinity(&t, &cpu0, 1), ==, 0);
    g_assert_cmpint(qemu_thread_get_affinity(&t, &got, &nbits), ==, 0);
    g_assert_cmpuint(got[0], ==, 1);
    g_free(got);

    /* The calling thread's handle works too, and is left unchanged. */
    {
        QemuThread self;
        cpu_set_t after;

        qemu_thread_get_self(&self);
        g_assert_cmpint(qemu_thread_get_affinity(&self, &got, &nbits), ==, 0);
        for (unsigned long cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            g_assert_cmpint(!!(got[cpu / ULONG_BITS] & (1UL << (cpu % ULONG_BITS))), ==,
                            !!CPU_ISSET(cpu, &mine));
        }
        g_free(got);
        g_assert_cmpint(sched_getaffinity(0, sizeof(after), &after), ==, 0);
        g_assert_true(CPU_EQUAL(&mine, &after));
    }

    qemu_sem_post(&done);
    qemu_thread_join(&t);
    qemu_sem_destroy(&done);
}

/* No usable CPU in the set: EINVAL, and the affinity is unchanged. */
static void test_affinity_errors(void)
{
    QemuThread t;
    QemuSemaphore done;
    unsigned long none = 0, *got = NULL, nbits = 0;
    unsigned long far[(CPU_SETSIZE * 4) / ULONG_BITS] = { 0 };
    cpu_set_t mine;

    g_assert_cmpint(sched_getaffinity(0, sizeof(mine), &mine), ==, 0);
    qemu_sem_init(&done, 0);
    qemu_thread_create(&t, "affinity", affinity_thread, &done, QEMU_THREAD_JOINABLE);

    g_assert_cmpint(qemu_thread_set_affinity(&t, &none, 1), ==, EINVAL);
    g_assert_cmpint(qemu_thread_set_affinity(&t, NULL, 0), ==, EINVAL);
    /* Only a CPU far past any this machine has. */
    far[G_N_ELEMENTS(far) - 1] = 1UL << (ULONG_BITS - 1);
    g_assert_cmpint(qemu_thread_set_affinity(&t, far, CPU_SETSIZE * 4), ==, EINVAL);
    /* A bitmap larger than any Linux supports (not read). */
    g_assert_cmpint(qemu_thread_set_affinity(&t, far, ~0UL), ==, EINVAL);

    g_assert_cmpint(qemu_thread_get_affinity(&t, &got, &nbits), ==, 0);
    for (unsigned long cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        g_assert_cmpint(!!(got[cpu / ULONG_BITS] & (1UL << (cpu % ULONG_BITS))), ==,
                        !!CPU_ISSET(cpu, &mine));
    }
    g_free(got);

    qemu_sem_post(&done);
    qemu_thread_join(&t);
    qemu_sem_destroy(&done);
}

/* Misuse: each case runs in a subprocess that must abort with the message. */

typedef enum {
    DEATH_UNLOCK_UNLOCKED,
    DEATH_UNLOCK_OTHER_THREAD,
    DEATH_DESTROY_LOCKED,
    DEATH_LOCK_TWICE,
    DEATH_LOCK_UNINITIALIZED,
    DEATH_LOCK_DESTROYED,
    DEATH_LOCK_NULL,
    DEATH_REC_UNLOCK_UNLOCKED,
    DEATH_REC_DESTROY_LOCKED,
    DEATH_COND_WAIT_UNLOCKED,
    DEATH_COND_UNINITIALIZED,
    DEATH_SEM_UNINITIALIZED,
    DEATH_SEM_INIT_NEGATIVE,
    DEATH_EVENT_UNINITIALIZED,
    DEATH_JOIN_DETACHED,
    DEATH_JOIN_TWICE,
    DEATH_JOIN_SELF,
    DEATH_JOIN_FOREIGN,
    DEATH_JOIN_ZEROED,
    DEATH_AFFINITY_ZEROED,
    DEATH_GET_AFFINITY_ZEROED,
    DEATH_AFFINITY_NULL_THREAD,
    DEATH_ATEXIT_REMOVE_UNLISTED,
    DEATH_ATEXIT_ADD_NULL_NOTIFY,
    DEATH_CREATE_BAD_MODE,
    DEATH_CREATE_NULL_ROUTINE,
    DEATH_FUTEX_MISALIGNED,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/thread/death/mutex/unlock-unlocked", DEATH_UNLOCK_UNLOCKED,
      "*aioctx: qemu_mutex_unlock: *not locked*" },
    { "/thread/death/mutex/unlock-other-thread", DEATH_UNLOCK_OTHER_THREAD,
      "*aioctx: qemu_mutex_unlock: *locked by thread*" },
    { "/thread/death/mutex/destroy-locked", DEATH_DESTROY_LOCKED,
      "*aioctx: qemu_mutex_destroy: *locked*" },
    { "/thread/death/mutex/lock-twice", DEATH_LOCK_TWICE,
      "*aioctx: qemu_mutex_lock: *already locked*" },
    { "/thread/death/mutex/lock-uninitialized", DEATH_LOCK_UNINITIALIZED,
      "*aioctx: qemu_mutex_lock: *not initialized*" },
    { "/thread/death/mutex/lock-destroyed", DEATH_LOCK_DESTROYED,
      "*aioctx: qemu_mutex_lock: *not initialized*" },
    { "/thread/death/mutex/lock-null", DEATH_LOCK_NULL,
      "*aioctx: qemu_mutex_lock: *NULL*" },
#ifndef __SANITIZE_THREAD__
    /* QemuRecMutex detects these from pthread's EPERM/EBUSY; TSan's
     * interceptors report the misuse themselves before pthread returns, so
     * the child dies with TSan's report instead of ours. */
    { "/thread/death/rec-mutex/unlock-unlocked", DEATH_REC_UNLOCK_UNLOCKED,
      "*aioctx: qemu_rec_mutex_unlock: *not locked*" },
    { "/thread/death/rec-mutex/destroy-locked", DEATH_REC_DESTROY_LOCKED,
      "*aioctx: qemu_rec_mutex_destroy: *locked*" },
#endif
    { "/thread/death/cond/wait-unlocked", DEATH_COND_WAIT_UNLOCKED,
      "*aioctx: qemu_cond_wait: *not locked*" },
    { "/thread/death/cond/uninitialized", DEATH_COND_UNINITIALIZED,
      "*aioctx: qemu_cond_signal: *not initialized*" },
    { "/thread/death/sem/uninitialized", DEATH_SEM_UNINITIALIZED,
      "*aioctx: qemu_sem_post: *not initialized*" },
    { "/thread/death/sem/init-negative", DEATH_SEM_INIT_NEGATIVE,
      "*aioctx: qemu_sem_init: *negative*" },
    { "/thread/death/event/uninitialized", DEATH_EVENT_UNINITIALIZED,
      "*aioctx: qemu_event_wait: *not initialized*" },
    { "/thread/death/thread/join-detached", DEATH_JOIN_DETACHED,
      "*aioctx: qemu_thread_join: *DETACHED*" },
    { "/thread/death/thread/join-twice", DEATH_JOIN_TWICE,
      "*aioctx: qemu_thread_join: *already joined*" },
    { "/thread/death/thread/join-self", DEATH_JOIN_SELF,
      "*aioctx: qemu_thread_join: *itself*" },
    { "/thread/death/thread/join-foreign", DEATH_JOIN_FOREIGN,
      "*aioctx: qemu_thread_join: *not started by qemu_thread_create*" },
    { "/thread/death/thread/join-zeroed", DEATH_JOIN_ZEROED,
      "*aioctx: qemu_thread_join: *not filled in*" },
    { "/thread/death/thread/set-affinity-zeroed", DEATH_AFFINITY_ZEROED,
      "*aioctx: qemu_thread_set_affinity: *not filled in*" },
    { "/thread/death/thread/get-affinity-zeroed", DEATH_GET_AFFINITY_ZEROED,
      "*aioctx: qemu_thread_get_affinity: *not filled in*" },
    { "/thread/death/thread/set-affinity-null", DEATH_AFFINITY_NULL_THREAD,
      "*aioctx: qemu_thread_set_affinity: *QemuThread is NULL*" },
    { "/thread/death/thread/atexit-remove-unlisted", DEATH_ATEXIT_REMOVE_UNLISTED,
      "*aioctx: qemu_thread_atexit_remove: *not on a thread-exit list*" },
    { "/thread/death/thread/atexit-add-null-notify", DEATH_ATEXIT_ADD_NULL_NOTIFY,
      "*aioctx: qemu_thread_atexit_add: *NULL*" },
    { "/thread/death/thread/create-bad-mode", DEATH_CREATE_BAD_MODE,
      "*aioctx: qemu_thread_create: *mode 7*" },
    { "/thread/death/thread/create-null-routine", DEATH_CREATE_NULL_ROUTINE,
      "*aioctx: qemu_thread_create: *NULL*" },
    { "/thread/death/futex/misaligned", DEATH_FUTEX_MISALIGNED,
      "*aioctx: qemu_futex_wake_all: *misaligned*" },
};

static void *lock_thread(void *opaque)
{
    qemu_mutex_lock(opaque);
    return NULL;
}

static void *idle_thread(void *opaque)
{
    return opaque;
}

/* A thread not started by qemu_thread_create hands out its own handle. */
static void *foreign_get_self(void *opaque)
{
    qemu_thread_get_self(opaque);
    return NULL;
}

static void run_death_case(int which)
{
    pthread_t foreign;
    Notifier n;
    unsigned long one_cpu = 1, *bitmap = NULL, nbits = 0;
    QemuMutex m;
    QemuRecMutex rm;
    QemuCond c;
    QemuSemaphore s;
    QemuEvent ev;
    QemuThread t;
    static uint32_t words[2];

    switch ((DeathCase)which) {
    case DEATH_UNLOCK_UNLOCKED:
        qemu_mutex_init(&m);
        qemu_mutex_unlock(&m);
        break;
    case DEATH_UNLOCK_OTHER_THREAD:
        qemu_mutex_init(&m);
        qemu_thread_create(&t, "locker", lock_thread, &m, QEMU_THREAD_JOINABLE);
        qemu_thread_join(&t);          /* the thread ended holding it */
        qemu_mutex_unlock(&m);
        break;
    case DEATH_DESTROY_LOCKED:
        qemu_mutex_init(&m);
        qemu_mutex_lock(&m);
        qemu_mutex_destroy(&m);
        break;
    case DEATH_LOCK_TWICE:
        qemu_mutex_init(&m);
        qemu_mutex_lock(&m);
        qemu_mutex_lock(&m);
        break;
    case DEATH_LOCK_UNINITIALIZED:
        memset(&m, 0, sizeof(m));
        qemu_mutex_lock(&m);
        break;
    case DEATH_LOCK_DESTROYED:
        qemu_mutex_init(&m);
        qemu_mutex_destroy(&m);
        qemu_mutex_lock(&m);
        break;
    case DEATH_LOCK_NULL:
        qemu_mutex_lock(NULL);
        break;
    case DEATH_REC_UNLOCK_UNLOCKED:
        qemu_rec_mutex_init(&rm);
        qemu_rec_mutex_unlock(&rm);
        break;
    case DEATH_REC_DESTROY_LOCKED:
        qemu_rec_mutex_init(&rm);
        qemu_rec_mutex_lock(&rm);
        qemu_rec_mutex_destroy(&rm);
        break;
    case DEATH_COND_WAIT_UNLOCKED:
        qemu_mutex_init(&m);
        qemu_cond_init(&c);
        qemu_cond_wait(&c, &m);
        break;
    case DEATH_COND_UNINITIALIZED:
        memset(&c, 0, sizeof(c));
        qemu_cond_signal(&c);
        break;
    case DEATH_SEM_UNINITIALIZED:
        memset(&s, 0, sizeof(s));
        qemu_sem_post(&s);
        break;
    case DEATH_SEM_INIT_NEGATIVE:
        qemu_sem_init(&s, -1);
        break;
    case DEATH_EVENT_UNINITIALIZED:
        memset(&ev, 0, sizeof(ev));
        qemu_event_wait(&ev);
        break;
    case DEATH_JOIN_DETACHED:
        qemu_thread_create(&t, "detached", idle_thread, NULL, QEMU_THREAD_DETACHED);
        qemu_thread_join(&t);
        break;
    case DEATH_JOIN_TWICE:
        qemu_thread_create(&t, "twice", idle_thread, NULL, QEMU_THREAD_JOINABLE);
        qemu_thread_join(&t);
        qemu_thread_join(&t);
        break;
    case DEATH_JOIN_SELF:
        qemu_thread_get_self(&t);
        qemu_thread_join(&t);
        break;
    case DEATH_JOIN_FOREIGN:
        g_assert_cmpint(pthread_create(&foreign, NULL, foreign_get_self, &t), ==, 0);
        g_assert_cmpint(pthread_join(foreign, NULL), ==, 0);
        g_assert_true(pthread_equal(t.thread, foreign));
        qemu_thread_join(&t);
        break;
    case DEATH_JOIN_ZEROED:
        memset(&t, 0, sizeof(t));
        qemu_thread_join(&t);
        break;
    case DEATH_AFFINITY_ZEROED:
        memset(&t, 0, sizeof(t));
        qemu_thread_set_affinity(&t, &one_cpu, 1);
        break;
    case DEATH_GET_AFFINITY_ZEROED:
        memset(&t, 0, sizeof(t));
        qemu_thread_get_affinity(&t, &bitmap, &nbits);
        break;
    case DEATH_AFFINITY_NULL_THREAD:
        qemu_thread_set_affinity(NULL, &one_cpu, 1);
        break;
    case DEATH_ATEXIT_REMOVE_UNLISTED:
        memset(&n, 0, sizeof(n));
        n.notify = record_exit;
        qemu_thread_atexit_remove(&n);
        break;
    case DEATH_ATEXIT_ADD_NULL_NOTIFY:
        memset(&n, 0, sizeof(n));
        qemu_thread_atexit_add(&n);
        break;
    case DEATH_CREATE_BAD_MODE:
        qemu_thread_create(&t, "bad-mode", idle_thread, NULL, 7);
        break;
    case DEATH_CREATE_NULL_ROUTINE:
        qemu_thread_create(&t, "null", NULL, NULL, QEMU_THREAD_JOINABLE);
        break;
    case DEATH_FUTEX_MISALIGNED:
        qemu_futex_wake_all((char *)words + 1);
        break;
    }
    /* Only reached if the library did not abort: the parent then fails. */
}

/* ------------------------------------------------------------------------ */
/* QEMU's *_impl functions and the *_func hook pointers its macros call. */

static atomic_int hook_calls;

static void counting_mutex_lock(QemuMutex *m, const char *file, int line)
{
    atomic_fetch_add(&hook_calls, 1);
    qemu_mutex_lock_impl(m, file, line);
}

static int counting_mutex_trylock(QemuMutex *m, const char *file, int line)
{
    atomic_fetch_add(&hook_calls, 1);
    return qemu_mutex_trylock_impl(m, file, line);
}

static void counting_rec_mutex_lock(QemuRecMutex *m, const char *file, int line)
{
    atomic_fetch_add(&hook_calls, 1);
    qemu_rec_mutex_lock_impl(m, file, line);
}

static bool counting_cond_timedwait(QemuCond *c, QemuMutex *m, int ms,
                                    const char *file, int line)
{
    atomic_fetch_add(&hook_calls, 1);
    return qemu_cond_timedwait_impl(c, m, ms, file, line);
}

/* The pointers start at the *_impl functions and work through them. */
static void test_lock_hooks_default(void)
{
    QemuMutex m;
    QemuRecMutex rm;
    QemuCond c;

    g_assert(qemu_mutex_lock_func == qemu_mutex_lock_impl);
    g_assert(qemu_mutex_trylock_func == qemu_mutex_trylock_impl);
    g_assert(qemu_rec_mutex_lock_func == qemu_rec_mutex_lock_impl);
    g_assert(qemu_rec_mutex_trylock_func == qemu_rec_mutex_trylock_impl);
    g_assert(qemu_cond_wait_func == qemu_cond_wait_impl);
    g_assert(qemu_cond_timedwait_func == qemu_cond_timedwait_impl);
    g_assert(bql_mutex_lock_func == qemu_mutex_lock_impl);

    qemu_mutex_init(&m);
    qemu_mutex_lock_func(&m, __FILE__, __LINE__);
    g_assert_cmpint(qemu_mutex_trylock(&m), ==, -EBUSY);
    qemu_mutex_unlock_impl(&m, __FILE__, __LINE__);
    g_assert_cmpint(qemu_mutex_trylock_func(&m, __FILE__, __LINE__), ==, 0);
    qemu_mutex_unlock(&m);

    qemu_rec_mutex_init(&rm);
    qemu_rec_mutex_lock_func(&rm, __FILE__, __LINE__);
    g_assert_cmpint(qemu_rec_mutex_trylock_func(&rm, __FILE__, __LINE__), ==, 0);
    qemu_rec_mutex_unlock_impl(&rm, __FILE__, __LINE__);
    qemu_rec_mutex_unlock(&rm);
    qemu_rec_mutex_destroy(&rm);

    qemu_cond_init(&c);
    qemu_mutex_lock(&m);
    g_assert_false(qemu_cond_timedwait_func(&c, &m, 1, __FILE__, __LINE__));
    /* The mutex is held again after the timeout. */
    g_assert_cmpint(qemu_mutex_trylock(&m), ==, -EBUSY);
    qemu_mutex_unlock(&m);
    qemu_cond_destroy(&c);
    qemu_mutex_destroy(&m);

    g_assert_false(bql_locked());
    bql_lock_impl(__FILE__, __LINE__);
    g_assert_true(bql_locked());
    bql_unlock();
}

/* A program (QEMU's lock profiler) may swap a pointer for its own wrapper. */
static void test_lock_hooks_swapped(void)
{
    QemuMutex m;
    QemuRecMutex rm;
    QemuCond c;
    QemuMutexLockFunc saved_lock = qemu_mutex_lock_func;
    QemuMutexTrylockFunc saved_trylock = qemu_mutex_trylock_func;
    QemuRecMutexLockFunc saved_rec_lock = qemu_rec_mutex_lock_func;
    QemuCondTimedWaitFunc saved_timedwait = qemu_cond_timedwait_func;

    atomic_store(&hook_calls, 0);
    qemu_mutex_lock_func = counting_mutex_lock;
    qemu_mutex_trylock_func = counting_mutex_trylock;
    qemu_rec_mutex_lock_func = counting_rec_mutex_lock;
    qemu_cond_timedwait_func = counting_cond_timedwait;

    qemu_mutex_init(&m);
    qemu_mutex_lock_func(&m, __FILE__, __LINE__);
    g_assert_cmpint(atomic_load(&hook_calls), ==, 1);
    /* It really locked: the plain trylock sees it busy. */
    g_assert_cmpint(qemu_mutex_trylock(&m), ==, -EBUSY);
    g_assert_cmpint(qemu_mutex_trylock_func(&m, __FILE__, __LINE__), ==, -EBUSY);
    g_assert_cmpint(atomic_load(&hook_calls), ==, 2);
    qemu_mutex_unlock_impl(&m, __FILE__, __LINE__);

    qemu_rec_mutex_init(&rm);
    qemu_rec_mutex_lock_func(&rm, __FILE__, __LINE__);
    qemu_rec_mutex_lock_func(&rm, __FILE__, __LINE__);
    g_assert_cmpint(atomic_load(&hook_calls), ==, 4);
    qemu_rec_mutex_unlock(&rm);
    qemu_rec_mutex_unlock_impl(&rm, __FILE__, __LINE__);
    qemu_rec_mutex_destroy(&rm);

    qemu_cond_init(&c);
    qemu_mutex_lock(&m);
    g_assert_false(qemu_cond_timedwait_func(&c, &m, 1, __FILE__, __LINE__));
    g_assert_cmpint(atomic_load(&hook_calls), ==, 5);
    qemu_mutex_unlock(&m);
    qemu_cond_destroy(&c);
    qemu_mutex_destroy(&m);

    qemu_mutex_lock_func = saved_lock;
    qemu_mutex_trylock_func = saved_trylock;
    qemu_rec_mutex_lock_func = saved_rec_lock;
    qemu_cond_timedwait_func = saved_timedwait;
    g_assert(qemu_mutex_lock_func == qemu_mutex_lock_impl);
}

/*
 * Every test runs under a watchdog: a lost wakeup shows up as a hang, and
 * SIGALRM (not blocked in this thread) then ends the program.
 */
static void run_with_watchdog(gconstpointer opaque)
{
    void (*const *fn)(void) = opaque;

    alarm(120);
    (*fn)();
    alarm(0);
}

static void add_test(const char *path, void (*const *fn)(void))
{
    g_test_add_data_func(path, fn, run_with_watchdog);
}

static const struct {
    const char *path;
    void (*fn)(void);
} tests[] = {
    { "/thread/mutex/basic", test_mutex_basic },
    { "/thread/mutex/contended", test_mutex_contended },
    { "/thread/mutex/trylock-other-thread", test_mutex_trylock_other_thread },
    { "/thread/rec-mutex/nesting", test_rec_mutex_nesting },
    { "/thread/cond/signal", test_cond_signal },
    { "/thread/cond/broadcast", test_cond_broadcast },
    { "/thread/cond/timedwait-timeout", test_cond_timedwait_timeout },
    { "/thread/cond/timedwait-signalled", test_cond_timedwait_signalled },
    { "/thread/sem/post-wait", test_sem_post_wait },
    { "/thread/sem/timedwait-timeout", test_sem_timedwait_timeout },
    { "/thread/sem/cross-thread", test_sem_cross_thread },
    { "/thread/event/basic", test_event_basic },
    { "/thread/event/cross-thread", test_event_cross_thread },
    { "/thread/event/wakes-sleepers", test_event_wakes_sleepers },
    { "/thread/thread/joinable", test_thread_joinable },
    { "/thread/thread/detached", test_thread_detached },
    { "/thread/thread/name", test_thread_name },
    { "/thread/thread/is-self", test_thread_is_self },
    { "/thread/thread/exit", test_thread_exit },
    { "/thread/thread/signal-mask", test_thread_signal_mask },
    { "/thread/atexit/return", test_atexit_return },
    { "/thread/atexit/thread-exit", test_atexit_thread_exit },
    { "/thread/atexit/per-thread", test_atexit_per_thread },
    { "/thread/affinity/round-trip", test_affinity_round_trip },
    { "/thread/affinity/errors", test_affinity_errors },
    { "/thread/futex/wait-wake", test_futex_wait_wake },
    { "/thread/lock-hooks/default", test_lock_hooks_default },
    { "/thread/lock-hooks/swapped", test_lock_hooks_swapped },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    for (size_t i = 0; i < G_N_ELEMENTS(tests); i++) {
        add_test(tests[i].path, &tests[i].fn);
    }
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);

    return g_test_run();
}
