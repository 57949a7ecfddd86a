/*
 * Coroutines in a program that never creates an AioContext (no
 * qemu_init_main_loop, no IOThread, no aio_context_new): QEMU's semantics.
 *
 * A coroutine entered in a thread whose current context is NULL records
 * NULL as its context; aio_co_wake / aio_co_enter(NULL, co) from a thread
 * whose current context is NULL too enter it directly (outside a
 * coroutine) or once the running coroutine yields or terminates (inside
 * one). So CoMutex, CoRwlock and CoQueue hand-offs work without a loop.
 * The one case QEMU itself would crash on (waking such a coroutine from a
 * thread that has a current context) is a death test; only its subprocess
 * creates the main context.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Ic-tests -Iinclude/compat -Iinclude
 * $(pkg-config --cflags glib-2.0) c-tests/test-co-nocontext.c
 * target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl
 * -lm -lgcc_s -rdynamic
 */

#include "qemu/osdep.h"
#include "qemu/coroutine_int.h"
#include "qemu/coroutine.h"
#include "qemu/lockable.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"

#include "co-rwlock-scenarios.h"

#include <pthread.h>

/* ---- aio_co_wake / aio_co_enter(NULL) ----------------------------------- */

static void coroutine_fn yield_once(void *opaque)
{
    unsigned *steps = opaque;
    (*steps)++;
    qemu_coroutine_yield();
    (*steps)++;
}

static void test_wake_outside_coroutine(void)
{
    unsigned steps = 0;
    Coroutine *co;

    g_assert_null(qemu_get_current_aio_context());
    co = qemu_coroutine_create(yield_once, &steps);
    qemu_coroutine_enter(co);
    g_assert_cmpuint(steps, ==, 1);
    g_assert_null(qemu_coroutine_get_aio_context(co));
    aio_co_wake(co); /* NULL == current context: entered right here */
    g_assert_cmpuint(steps, ==, 2);

    steps = 0;
    co = qemu_coroutine_create(yield_once, &steps);
    qemu_coroutine_enter(co);
    aio_co_enter(NULL, co);
    g_assert_cmpuint(steps, ==, 2);

    /* Never entered: NULL context too, and woken means entered. */
    steps = 0;
    co = qemu_coroutine_create(yield_once, &steps);
    aio_co_wake(co);
    g_assert_cmpuint(steps, ==, 1);
    aio_co_wake(co);
    g_assert_cmpuint(steps, ==, 2);
}

static Coroutine *inner_co;
static unsigned wake_log[4];
static unsigned wake_log_len;

static void coroutine_fn inner_fn(void *opaque)
{
    (void)opaque;
    wake_log[wake_log_len++] = 2;
}

static void coroutine_fn waker_fn(void *opaque)
{
    (void)opaque;
    wake_log[wake_log_len++] = 1;
    aio_co_wake(inner_co); /* queued: runs when this one terminates */
    g_assert_cmpuint(wake_log_len, ==, 1);
    wake_log[wake_log_len++] = 1;
}

static void test_wake_inside_coroutine(void)
{
    wake_log_len = 0;
    inner_co = qemu_coroutine_create(inner_fn, NULL);
    qemu_coroutine_enter(qemu_coroutine_create(waker_fn, NULL));
    g_assert_cmpuint(wake_log_len, ==, 3);
    g_assert_cmpuint(wake_log[0], ==, 1);
    g_assert_cmpuint(wake_log[1], ==, 1);
    g_assert_cmpuint(wake_log[2], ==, 2);
}

/* Another thread without a context is "the same" (NULL) context: QEMU
 * enters the coroutine there, directly. */
static pthread_t main_thread;
static bool ran_in_other_thread;

static void coroutine_fn where_fn(void *opaque)
{
    (void)opaque;
    qemu_coroutine_yield();
    ran_in_other_thread = !pthread_equal(pthread_self(), main_thread);
}

static void *wake_thread(void *opaque)
{
    g_assert_null(qemu_get_current_aio_context());
    aio_co_wake(opaque);
    return NULL;
}

static void test_wake_from_other_thread(void)
{
    Coroutine *co = qemu_coroutine_create(where_fn, NULL);
    pthread_t t;

    main_thread = pthread_self();
    ran_in_other_thread = false;
    qemu_coroutine_enter(co);
    g_assert_cmpint(pthread_create(&t, NULL, wake_thread, co), ==, 0);
    g_assert_cmpint(pthread_join(t, NULL), ==, 0);
    g_assert_true(ran_in_other_thread);
}

/* ---- CoMutex: two coroutines contending --------------------------------- */

#define MUTEX_ROUNDS 100

static CoMutex mutex;
static Coroutine *mutex_co[2];
static int mutex_holder = -1; /* who holds it and yielded inside */
static unsigned mutex_order[2 * MUTEX_ROUNDS];
static unsigned mutex_order_len;
static unsigned mutex_finished;

static void coroutine_fn mutex_fn(void *opaque)
{
    int me = GPOINTER_TO_INT(opaque);

    for (int i = 0; i < MUTEX_ROUNDS; i++) {
        qemu_co_mutex_lock(&mutex);
        g_assert_cmpint(mutex_holder, ==, -1);
        qemu_co_mutex_assert_locked(&mutex);
        mutex_holder = me;
        mutex_order[mutex_order_len++] = (unsigned)me;
        qemu_coroutine_yield(); /* holding it: the other one waits */
        mutex_holder = -1;
        qemu_co_mutex_unlock(&mutex); /* wakes the other (aio_co_wake) */
    }
    mutex_finished++;
}

static void test_co_mutex_contended(void)
{
    qemu_co_mutex_init(&mutex);
    mutex_order_len = 0;
    mutex_finished = 0;
    mutex_holder = -1;
    for (int i = 0; i < 2; i++) {
        mutex_co[i] = qemu_coroutine_create(mutex_fn, GINT_TO_POINTER(i));
    }
    qemu_coroutine_enter(mutex_co[0]); /* takes it, yields */
    qemu_coroutine_enter(mutex_co[1]); /* waits for it */
    g_assert_cmpint(mutex_holder, ==, 0);
    while (mutex_holder != -1) {
        /* The holder unlocks: the waiter gets it when the holder yields
         * (waiting again) or terminates, and yields holding it. */
        qemu_coroutine_enter(mutex_co[mutex_holder]);
    }
    g_assert_cmpuint(mutex_finished, ==, 2);
    g_assert_cmpuint(mutex_order_len, ==, 2 * MUTEX_ROUNDS);
    for (unsigned i = 0; i < mutex_order_len; i++) {
        g_assert_cmpuint(mutex_order[i], ==, i % 2); /* FIFO hand-off */
    }
    g_assert_cmpuint(mutex.locked, ==, 0);
}

/* ---- CoRwlock ------------------------------------------------------------ */

/* upgrade and downgrade: co-rwlock-scenarios.h (test-coroutine.c runs them
 * too, with a main loop). */

static CoRwlock rwlock;

/* Readers share the lock; a writer waits for all of them, and a reader
 * arriving after the writer waits behind it. */
static unsigned rw_readers, rw_writers, rw_log_len;
static char rw_log[16];

static void coroutine_fn rw_reader(void *opaque)
{
    (void)opaque;
    qemu_co_rwlock_rdlock(&rwlock);
    g_assert_cmpuint(rw_writers, ==, 0);
    rw_readers++;
    rw_log[rw_log_len++] = 'r';
    qemu_coroutine_yield();
    rw_readers--;
    qemu_co_rwlock_unlock(&rwlock);
}

static void coroutine_fn rw_writer(void *opaque)
{
    (void)opaque;
    qemu_co_rwlock_wrlock(&rwlock);
    g_assert_cmpuint(rw_readers, ==, 0);
    g_assert_cmpuint(rw_writers, ==, 0);
    rw_writers++;
    rw_log[rw_log_len++] = 'w';
    qemu_coroutine_yield();
    rw_writers--;
    qemu_co_rwlock_unlock(&rwlock);
}

static void test_co_rwlock_readers_writers(void)
{
    Coroutine *r1, *r2, *w, *r3;

    qemu_co_rwlock_init(&rwlock);
    rw_readers = rw_writers = rw_log_len = 0;
    r1 = qemu_coroutine_create(rw_reader, NULL);
    r2 = qemu_coroutine_create(rw_reader, NULL);
    w = qemu_coroutine_create(rw_writer, NULL);
    r3 = qemu_coroutine_create(rw_reader, NULL);
    qemu_coroutine_enter(r1);
    qemu_coroutine_enter(r2);
    g_assert_cmpuint(rw_readers, ==, 2); /* shared */
    qemu_coroutine_enter(w);             /* waits for both readers */
    qemu_coroutine_enter(r3);            /* waits behind the writer */
    g_assert_cmpuint(rw_log_len, ==, 2);
    qemu_coroutine_enter(r1);
    g_assert_cmpuint(rw_writers, ==, 0); /* r2 still reads */
    qemu_coroutine_enter(r2);            /* last reader out: w gets it */
    g_assert_cmpuint(rw_writers, ==, 1);
    g_assert_cmpuint(rw_readers, ==, 0);
    qemu_coroutine_enter(w);             /* unlock: r3 gets it */
    g_assert_cmpuint(rw_readers, ==, 1);
    qemu_coroutine_enter(r3);
    g_assert_cmpuint(rw_readers, ==, 0);
    g_assert_cmpuint(rw_log_len, ==, 4);
    g_assert_cmpmem(rw_log, 4, "rrwr", 4);
}

/* ---- CoQueue ------------------------------------------------------------- */

static CoQueue queue;
static CoMutex queue_mutex;
static unsigned queue_value, queue_woken;

static void coroutine_fn queue_waiter(void *opaque)
{
    (void)opaque;
    qemu_co_mutex_lock(&queue_mutex);
    while (queue_value == 0) {
        qemu_co_queue_wait(&queue, &queue_mutex);
    }
    qemu_co_mutex_assert_locked(&queue_mutex);
    queue_value--;
    queue_woken++;
    qemu_co_mutex_unlock(&queue_mutex);
}

static void coroutine_fn queue_post_one(void *opaque)
{
    (void)opaque;
    qemu_co_mutex_lock(&queue_mutex);
    queue_value++;
    g_assert_true(qemu_co_queue_next(&queue));
    qemu_co_mutex_unlock(&queue_mutex);
}

static void coroutine_fn queue_post_all(void *opaque)
{
    unsigned n = GPOINTER_TO_UINT(opaque);
    qemu_co_mutex_lock(&queue_mutex);
    queue_value += n;
    qemu_co_queue_restart_all(&queue);
    qemu_co_mutex_unlock(&queue_mutex);
}

static void test_co_queue(void)
{
    qemu_co_queue_init(&queue);
    qemu_co_mutex_init(&queue_mutex);
    queue_value = queue_woken = 0;
    for (int i = 0; i < 4; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(queue_waiter, NULL));
    }
    g_assert_false(qemu_co_queue_empty(&queue));
    g_assert_cmpuint(queue_woken, ==, 0);

    qemu_coroutine_enter(qemu_coroutine_create(queue_post_one, NULL));
    g_assert_cmpuint(queue_woken, ==, 1);
    qemu_coroutine_enter(qemu_coroutine_create(queue_post_all, GUINT_TO_POINTER(3)));
    g_assert_cmpuint(queue_woken, ==, 4);
    g_assert_true(qemu_co_queue_empty(&queue));
    g_assert_cmpuint(queue_mutex.locked, ==, 0);

    /* From outside any coroutine: qemu_co_queue_next and enter_next. */
    for (int i = 0; i < 2; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(queue_waiter, NULL));
    }
    queue_value = 2;
    g_assert_true(qemu_co_queue_next(&queue));
    g_assert_cmpuint(queue_woken, ==, 5);
    g_assert_true(qemu_co_enter_next(&queue, NULL));
    g_assert_cmpuint(queue_woken, ==, 6);
    g_assert_false(qemu_co_queue_next(&queue));
    g_assert_true(qemu_co_queue_empty(&queue));
}

/* ---- death: the case QEMU itself would crash on ------------------------- */

static void test_death_wake_from_thread_with_context(void)
{
    if (g_test_subprocess()) {
        unsigned steps = 0;
        Coroutine *co = qemu_coroutine_create(yield_once, &steps);
        qemu_coroutine_enter(co); /* no context: records NULL */
        qemu_init_main_loop(&error_abort);
        bql_lock(); /* now this thread's current context is the main one */
        g_assert_nonnull(qemu_get_current_aio_context());
        aio_co_wake(co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: aio_co_wake: coroutine '*' has no AioContext*"
        "woken from a thread whose current context is*");
}

static void test_death_enter_null_from_thread_with_context(void)
{
    if (g_test_subprocess()) {
        unsigned steps = 0;
        Coroutine *co = qemu_coroutine_create(yield_once, &steps);
        qemu_coroutine_enter(co);
        qemu_init_main_loop(&error_abort);
        bql_lock();
        aio_co_enter(NULL, co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: aio_co_enter: coroutine '*' has no AioContext*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/co-nocontext/wake/outside-coroutine", test_wake_outside_coroutine);
    g_test_add_func("/co-nocontext/wake/inside-coroutine", test_wake_inside_coroutine);
    g_test_add_func("/co-nocontext/wake/other-thread", test_wake_from_other_thread);
    g_test_add_func("/co-nocontext/mutex/contended", test_co_mutex_contended);
    g_test_add_func("/co-nocontext/rwlock/upgrade", co_rwlock_test_upgrade);
    g_test_add_func("/co-nocontext/rwlock/downgrade", co_rwlock_test_downgrade);
    g_test_add_func("/co-nocontext/rwlock/readers-writers", test_co_rwlock_readers_writers);
    g_test_add_func("/co-nocontext/queue/wait-next-restart-all", test_co_queue);
    g_test_add_func("/co-nocontext/death/wake-from-thread-with-context",
                    test_death_wake_from_thread_with_context);
    g_test_add_func("/co-nocontext/death/enter-null-from-thread-with-context",
                    test_death_enter_null_from_thread_with_context);
    return g_test_run();
}
