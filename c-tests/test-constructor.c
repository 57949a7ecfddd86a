/*
 * Sync primitives set up from __attribute__((constructor)) functions
 * (docs/spec/qemu-abi.md §5), before main() and before any context or main loop
 * exists, as QEMU's module-init code does: qemu_mutex_init,
 * qemu_rec_mutex_init, qemu_cond_init, qemu_sem_init, qemu_event_init,
 * qemu_co_mutex_init, qemu_co_queue_init, qemu_spin_init. The constructor
 * uses them too (lock/unlock, post/wait, set/reset); main() then checks
 * that they still work, with threads and with coroutines waiting on the
 * CoQueue under the CoMutex.
 */
#include "aioctx.h"
#include "qemu/coroutine.h"
#include "qemu/lockable.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "test-util.h"

#include <glib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

static QemuMutex early_mutex;
static QemuRecMutex early_rec_mutex;
static QemuCond early_cond;
static QemuSemaphore early_sem;
static QemuEvent early_event;
static CoMutex early_co_mutex;
static CoQueue early_co_queue;
static QemuSpin early_spin;

/* What the constructor saw. */
static struct {
    bool ran;
    bool no_main_context;
    bool no_current_context;
    int sem_trywait_empty; /* qemu_sem_timedwait(&sem, 0) on a 0 count */
    bool timed_out;        /* qemu_cond_timedwait with nobody signalling */
    bool spin_was_free;
    bool queue_empty;
} early;

__attribute__((constructor)) static void early_init(void)
{
    /* No context and no main loop yet. */
    early.no_main_context = qemu_get_aio_context() == NULL;
    early.no_current_context = qemu_get_current_aio_context() == NULL;

    qemu_mutex_init(&early_mutex);
    qemu_mutex_lock(&early_mutex);
    qemu_cond_init(&early_cond);
    qemu_cond_signal(&early_cond);
    qemu_cond_broadcast(&early_cond);
    early.timed_out = !qemu_cond_timedwait(&early_cond, &early_mutex, 1);
    qemu_mutex_unlock(&early_mutex);

    qemu_rec_mutex_init(&early_rec_mutex);
    qemu_rec_mutex_lock(&early_rec_mutex);
    qemu_rec_mutex_lock(&early_rec_mutex);
    qemu_rec_mutex_unlock(&early_rec_mutex);
    qemu_rec_mutex_unlock(&early_rec_mutex);

    qemu_sem_init(&early_sem, 1);
    qemu_sem_wait(&early_sem);
    early.sem_trywait_empty = qemu_sem_timedwait(&early_sem, 0);
    qemu_sem_post(&early_sem);
    qemu_sem_wait(&early_sem);

    qemu_event_init(&early_event, false);
    qemu_event_set(&early_event);
    qemu_event_wait(&early_event); /* set: returns at once */
    qemu_event_reset(&early_event);

    qemu_co_mutex_init(&early_co_mutex);
    qemu_co_queue_init(&early_co_queue);
    early.queue_empty = qemu_co_queue_empty(&early_co_queue);

    qemu_spin_init(&early_spin);
    early.spin_was_free = !qemu_spin_trylock(&early_spin);
    qemu_spin_unlock(&early_spin);

    early.ran = true;
}

static void test_constructor_ran(void)
{
    g_assert_true(early.ran);
    g_assert_true(early.no_main_context);
    g_assert_true(early.no_current_context);
    g_assert_true(early.timed_out);
    g_assert_cmpint(early.sem_trywait_empty, ==, -1);
    g_assert_true(early.spin_was_free);
    g_assert_true(early.queue_empty);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
    bool flag; /* protected by early_mutex */
    int rec_count;
} Shared;

static void *signal_thread(void *opaque)
{
    Shared *s = opaque;

    /* the recursive mutex excludes the main thread, recursively taken */
    qemu_rec_mutex_lock(&early_rec_mutex);
    qemu_rec_mutex_lock(&early_rec_mutex);
    s->rec_count++;
    qemu_rec_mutex_unlock(&early_rec_mutex);
    qemu_rec_mutex_unlock(&early_rec_mutex);

    qemu_mutex_lock(&early_mutex);
    s->flag = true;
    qemu_cond_signal(&early_cond);
    qemu_mutex_unlock(&early_mutex);

    qemu_sem_post(&early_sem);
    qemu_event_set(&early_event);

    qemu_spin_lock(&early_spin);
    qemu_spin_unlock(&early_spin);
    return NULL;
}

static void test_sync_after_constructor(void)
{
    Shared s = { 0 };
    pthread_t th;
    Watchdog wd;

    watchdog_start(&wd, "sync primitives from a constructor", 30);
    g_assert_cmpint(qemu_mutex_trylock(&early_mutex), ==, 0);
    qemu_mutex_unlock(&early_mutex);
    g_assert_false(qemu_spin_trylock(&early_spin));
    qemu_spin_unlock(&early_spin);

    qemu_mutex_lock(&early_mutex);
    g_assert_cmpint(pthread_create(&th, NULL, signal_thread, &s), ==, 0);
    while (!s.flag) {
        qemu_cond_wait(&early_cond, &early_mutex);
    }
    qemu_mutex_unlock(&early_mutex);
    qemu_sem_wait(&early_sem);       /* the thread's post */
    qemu_event_wait(&early_event);   /* the thread's set */
    pthread_join(th, NULL);
    watchdog_stop(&wd);
    g_assert_cmpint(s.rec_count, ==, 1);
    g_assert_cmpint(qemu_sem_timedwait(&early_sem, 0), ==, -1);
}

/* ---- coroutines: the CoQueue and CoMutex from the constructor ---------- */

static int woken;
static int holders;     /* coroutines inside the CoMutex */
static int max_holders;
static int waiting;

static void coroutine_fn queue_waiter(void *opaque)
{
    (void)opaque;
    qemu_co_mutex_lock(&early_co_mutex);
    waiting++;
    qemu_co_queue_wait(&early_co_queue, &early_co_mutex);
    /* woken, holding the CoMutex again */
    holders++;
    max_holders = MAX(max_holders, holders);
    woken++;
    holders--;
    qemu_co_mutex_unlock(&early_co_mutex);
}

static void coroutine_fn queue_waker(void *opaque)
{
    (void)opaque;
    qemu_co_mutex_lock(&early_co_mutex);
    qemu_co_queue_restart_all(&early_co_queue);
    qemu_co_mutex_unlock(&early_co_mutex);
}

static void test_co_queue_after_constructor(void)
{
    enum { N = 3 };
    Watchdog wd;

    watchdog_start(&wd, "CoQueue from a constructor", 30);
    for (int i = 0; i < N; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(queue_waiter, NULL));
    }
    /* all wait on the queue, none holds the CoMutex */
    g_assert_cmpint(waiting, ==, N);
    g_assert_false(qemu_co_queue_empty(&early_co_queue));
    g_assert_cmpint(woken, ==, 0);

    qemu_coroutine_enter(qemu_coroutine_create(queue_waker, NULL));
    g_assert_true(qemu_co_queue_empty(&early_co_queue));
    /* the woken ones may be scheduled on the main context: run it */
    for (int spins = 0; woken < N; spins++) {
        g_assert_cmpint(spins, <, 100000);
        aio_poll(qemu_get_aio_context(), false);
    }
    watchdog_stop(&wd);
    g_assert_cmpint(woken, ==, N);
    g_assert_cmpint(max_holders, ==, 1);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/constructor/ran", test_constructor_ran);
    g_test_add_func("/constructor/sync", test_sync_after_constructor);
    g_test_add_func("/constructor/co-queue", test_co_queue_after_constructor);
    return g_test_run();
}
