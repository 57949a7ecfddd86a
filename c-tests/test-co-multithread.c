/*
 * Coroutines across threads, modelled on QEMU's
 * tests/unit/test-aio-multithread.c: 4 IOThreads (aioctx_iothread_*),
 * coroutines rescheduling themselves round-robin across them for ~1 s,
 * a CoMutex contended by coroutines of every thread (the counter must be
 * exact: no lost hand-off, no lost wakeup), and QemuMutex and futex-based
 * mutex baselines doing the same work.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude/compat -Iinclude
 * $(pkg-config --cflags glib-2.0) c-tests/test-co-multithread.c
 * target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl
 * -lm -lgcc_s -rdynamic
 *
 * ThreadSanitizer: runs under make sanitize-tsan (the TSan library
 * announces coroutine switches as fibers). See test-coroutine.c.
 */

#include "qemu/osdep.h"
#include "qemu/coroutine.h"
#include "qemu/futex.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"

#define NUM_CONTEXTS 4
#define SECONDS 1

static AioctxIOThread *threads[NUM_CONTEXTS];
static AioContext *ctx[NUM_CONTEXTS];
static bool now_stopping;
static int running;

static void create_threads(void)
{
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        threads[i] = aioctx_iothread_new("co-mt", &error_abort);
        ctx[i] = aioctx_iothread_get_aio_context(threads[i]);
    }
}

static void join_threads(void)
{
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        aioctx_iothread_join(threads[i]);
        threads[i] = NULL;
    }
}

/* Starts one `entry` coroutine per context, runs them for SECONDS, then
 * stops them and waits (bounded) until all terminated. */
static void run_everywhere(CoroutineEntry *entry)
{
    gint64 deadline;

    qatomic_set(&now_stopping, false);
    qatomic_set(&running, NUM_CONTEXTS);
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        aio_co_schedule(ctx[i], qemu_coroutine_create(entry, NULL));
    }
    g_usleep(SECONDS * G_USEC_PER_SEC);
    qatomic_set(&now_stopping, true);
    deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
    while (qatomic_read(&running) > 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
}

/* ---- round-robin rescheduling ------------------------------------------- */

static unsigned count_retry;
static unsigned count_here[NUM_CONTEXTS];
static unsigned count_other[NUM_CONTEXTS];

static int context_index(AioContext *c)
{
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        if (ctx[i] == c) {
            return i;
        }
    }
    return -1;
}

static void coroutine_fn round_robin_entry(void *opaque)
{
    (void)opaque;
    while (!qatomic_read(&now_stopping)) {
        int me = context_index(qemu_get_current_aio_context());
        int next = (me + 1) % NUM_CONTEXTS;

        g_assert_cmpint(me, >=, 0);
        g_assert_true(qemu_coroutine_get_aio_context(qemu_coroutine_self()) == ctx[me]);
        qatomic_inc(&count_here[me]);
        /* Schedule self elsewhere, then yield: the other thread may pick it
         * up before the yield, and must wait for it. */
        aio_co_schedule(ctx[next], qemu_coroutine_self());
        qemu_coroutine_yield();
        qatomic_inc(&count_other[next]);
    }
    qatomic_dec(&running);
}

static void test_round_robin(void)
{
    unsigned total = 0;

    create_threads();
    run_everywhere(round_robin_entry);
    join_threads();
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        total += count_here[i];
        g_assert_cmpuint(count_here[i], >, 0);
    }
    (void)count_retry;
    g_test_message("%u reschedules in %d s", total, SECONDS);
}

/* aio_co_reschedule_self: hop through all contexts in turn. */
static void coroutine_fn hop_entry(void *opaque)
{
    unsigned *hops = opaque;
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < NUM_CONTEXTS; i++) {
            aio_co_reschedule_self(ctx[i]);
            g_assert_true(qemu_get_current_aio_context() == ctx[i]);
            (*hops)++;
        }
    }
    qatomic_dec(&running);
}

static void test_reschedule_self(void)
{
    unsigned hops = 0;
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    create_threads();
    qatomic_set(&running, 1);
    aio_co_schedule(ctx[0], qemu_coroutine_create(hop_entry, &hops));
    while (qatomic_read(&running) > 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    join_threads();
    g_assert_cmpuint(hops, ==, 100 * NUM_CONTEXTS);
}

/* ---- CoMutex contended by all threads ----------------------------------- */

static CoMutex comutex;
static unsigned counter;
static unsigned atomic_counter;

static void coroutine_fn co_mutex_entry(void *opaque)
{
    (void)opaque;
    while (!qatomic_read(&now_stopping)) {
        qemu_co_mutex_lock(&comutex);
        counter++;
        qemu_co_mutex_unlock(&comutex);
        /* After the unlock: the iothread must not exit before the waiter
         * it handed the mutex to has run. */
        qatomic_inc(&atomic_counter);
    }
    qatomic_dec(&running);
}

static void test_co_mutex_contended(void)
{
    counter = atomic_counter = 0;
    qemu_co_mutex_init(&comutex);
    create_threads();
    run_everywhere(co_mutex_entry);
    join_threads();
    g_test_message("CoMutex: %u increments in %d s", counter, SECONDS);
    g_assert_cmpuint(counter, ==, atomic_counter);
    g_assert_cmpuint(counter, >, 0);
    g_assert_cmpuint(comutex.locked, ==, 0);
}

/* Many coroutines per context, all contending. */
#define PER_CONTEXT 8
static void coroutine_fn co_mutex_many_entry(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < 2000; i++) {
        qemu_co_mutex_lock(&comutex);
        counter++;
        if (i % 7 == 0) {
            /* Hold it across a reschedule to another thread. */
            aio_co_reschedule_self(ctx[i % NUM_CONTEXTS]);
        }
        qemu_co_mutex_unlock(&comutex);
    }
    qatomic_dec(&running);
}

static void test_co_mutex_many(void)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;

    counter = 0;
    qemu_co_mutex_init(&comutex);
    create_threads();
    qatomic_set(&running, NUM_CONTEXTS * PER_CONTEXT);
    for (int i = 0; i < NUM_CONTEXTS * PER_CONTEXT; i++) {
        aio_co_schedule(ctx[i % NUM_CONTEXTS],
                        qemu_coroutine_create(co_mutex_many_entry, NULL));
    }
    while (qatomic_read(&running) > 0) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    join_threads();
    g_assert_cmpuint(counter, ==, NUM_CONTEXTS * PER_CONTEXT * 2000);
}

/* ---- baselines: QemuMutex and a futex mutex ----------------------------- */

static QemuMutex qmutex;

static void coroutine_fn qemu_mutex_entry(void *opaque)
{
    (void)opaque;
    while (!qatomic_read(&now_stopping)) {
        qemu_mutex_lock(&qmutex);
        counter++;
        qemu_mutex_unlock(&qmutex);
        qatomic_inc(&atomic_counter);
    }
    qatomic_dec(&running);
}

static void test_qemu_mutex_baseline(void)
{
    counter = atomic_counter = 0;
    qemu_mutex_init(&qmutex);
    create_threads();
    run_everywhere(qemu_mutex_entry);
    join_threads();
    qemu_mutex_destroy(&qmutex);
    g_test_message("QemuMutex: %u increments in %d s", counter, SECONDS);
    g_assert_cmpuint(counter, ==, atomic_counter);
}

/* Drepper's "futexes are tricky" mutex 2, as in QEMU's test. */
static int futex_word;

static void mutex_lock(void)
{
    int old = qatomic_cmpxchg(&futex_word, 0, 1);
    if (old == 0) {
        return;
    }
    if (old != 2) {
        old = qatomic_xchg(&futex_word, 2);
    }
    while (old != 0) {
        qemu_futex_wait(&futex_word, 2);
        old = qatomic_xchg(&futex_word, 2);
    }
}

static void mutex_unlock(void)
{
    if (qatomic_fetch_dec(&futex_word) != 1) {
        qatomic_set(&futex_word, 0);
        qemu_futex_wake_single(&futex_word);
    }
}

static void coroutine_fn futex_mutex_entry(void *opaque)
{
    (void)opaque;
    while (!qatomic_read(&now_stopping)) {
        mutex_lock();
        counter++;
        mutex_unlock();
        qatomic_inc(&atomic_counter);
    }
    qatomic_dec(&running);
}

static void test_futex_mutex_baseline(void)
{
    counter = atomic_counter = 0;
    futex_word = 0;
    create_threads();
    run_everywhere(futex_mutex_entry);
    join_threads();
    g_test_message("futex mutex: %u increments in %d s", counter, SECONDS);
    g_assert_cmpuint(counter, ==, atomic_counter);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/co-multithread/schedule/round-robin", test_round_robin);
    g_test_add_func("/co-multithread/schedule/reschedule-self", test_reschedule_self);
    g_test_add_func("/co-multithread/co-mutex/contended", test_co_mutex_contended);
    g_test_add_func("/co-multithread/co-mutex/many", test_co_mutex_many);
    g_test_add_func("/co-multithread/baseline/qemu-mutex", test_qemu_mutex_baseline);
    g_test_add_func("/co-multithread/baseline/futex-mutex", test_futex_mutex_baseline);
    return g_test_run();
}
