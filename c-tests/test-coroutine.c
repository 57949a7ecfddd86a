/*
 * Coroutines: lifecycle and pooling, yield/re-enter, nesting, self/
 * entered/in_coroutine, enter order, CoMutex (many coroutines, lockable),
 * CoQueue, CoRwlock upgrade/downgrade, aio_co_enter hand-offs without
 * stack growth, cross-thread wake and schedule, co-sleep, and misuse
 * (death tests).
 *
 * Modelled on QEMU's tests/unit/test-coroutine.c.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Ic-tests -Iinclude/compat -Iinclude
 * $(pkg-config --cflags glib-2.0) c-tests/test-coroutine.c
 * target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl
 * -lm -lgcc_s -rdynamic
 *
 * ThreadSanitizer: the TSan library (make sanitize-tsan, --cfg aioctx_tsan)
 * announces coroutine stack switches as TSan fibers, so this program runs
 * under TSan too.
 */

#include "qemu/osdep.h"
#include "qemu/coroutine_int.h"
#include "qemu/coroutine.h"
#include "qemu/lockable.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"

/* The CoRwlock upgrade/downgrade scenarios (test-co-nocontext.c runs them
 * too, in a program without an AioContext). */
#include "co-rwlock-scenarios.h"

static AioContext *main_ctx;

/* Runs the main loop until *flag is true (bounded: fails after ~10 s). */
static void poll_until(volatile bool *flag)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    while (!qatomic_read(flag)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        aio_poll(main_ctx, true);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

static void coroutine_fn set_and_exit(void *opaque)
{
    bool *done = opaque;
    *done = true;
}

static void test_lifecycle(void)
{
    Coroutine *co, *first = NULL;
    unsigned distinct = 0;
    bool done = false;

    co = qemu_coroutine_create(set_and_exit, &done);
    qemu_coroutine_enter(co);
    g_assert_true(done);

    /* 1000 in a row: terminated objects come back from the pool. */
    for (int i = 0; i < 1000; i++) {
        done = false;
        co = qemu_coroutine_create(set_and_exit, &done);
        if (co != first) {
            first = co;
            distinct++;
        }
        qemu_coroutine_enter(co);
        g_assert_true(done);
    }
    g_assert_cmpuint(distinct, <=, 2);
}

/* QEMU's test_no_dangling_access: a terminated coroutine's bytes are the
 * caller's until it is created again. */
static void coroutine_fn c2_fn(void *opaque)
{
    (void)opaque;
    qemu_coroutine_yield();
}

static void coroutine_fn c1_fn(void *opaque)
{
    qemu_coroutine_enter(opaque);
}

static void test_no_dangling_access(void)
{
    Coroutine *co1, *co2, tmp;

    co2 = qemu_coroutine_create(c2_fn, NULL);
    co1 = qemu_coroutine_create(c1_fn, co2);
    qemu_coroutine_enter(co1);
    /* co1 terminated: fill it with garbage, the library must not care. */
    tmp = *co1;
    memset(co1, 0xff, sizeof(Coroutine));
    qemu_coroutine_enter(co2);
    *co1 = tmp;
}

/* ---- yield -------------------------------------------------------------- */

static void coroutine_fn yield_5_times(void *opaque)
{
    bool *done = opaque;
    for (int i = 0; i < 5; i++) {
        qemu_coroutine_yield();
    }
    *done = true;
}

static void test_yield(void)
{
    bool done = false;
    int i = -1;
    Coroutine *co = qemu_coroutine_create(yield_5_times, &done);

    while (!done) {
        qemu_coroutine_enter(co);
        i++;
    }
    g_assert_cmpint(i, ==, 5);
}

/* ---- nesting ------------------------------------------------------------ */

typedef struct {
    unsigned n_enter, n_return, max;
} NestData;

static void coroutine_fn nest(void *opaque)
{
    NestData *nd = opaque;

    nd->n_enter++;
    if (nd->n_enter < nd->max) {
        Coroutine *child = qemu_coroutine_create(nest, nd);
        qemu_coroutine_enter(child);
    }
    nd->n_return++;
}

static void test_nesting(void)
{
    NestData nd = { .max = 1000 };
    Coroutine *root = qemu_coroutine_create(nest, &nd);

    qemu_coroutine_enter(root);
    g_assert_cmpuint(nd.n_enter, ==, nd.max);
    g_assert_cmpuint(nd.n_return, ==, nd.max);
}

/* ---- self / entered / in_coroutine -------------------------------------- */

static void coroutine_fn verify_self(void *opaque)
{
    Coroutine **expected = opaque;
    g_assert_true(qemu_coroutine_self() == *expected);
    g_assert_true(qemu_in_coroutine());
    g_assert_true(qemu_coroutine_entered(*expected));
    g_assert_true(qemu_coroutine_get_aio_context(*expected) == main_ctx);
}

static void test_self(void)
{
    Coroutine *co = qemu_coroutine_create(verify_self, &co);
    Coroutine *leader = qemu_coroutine_self();

    g_assert_nonnull(leader);
    g_assert_true(leader == qemu_coroutine_self());
    g_assert_false(qemu_in_coroutine());
    qemu_coroutine_enter(co);
    g_assert_false(qemu_in_coroutine());
}

static void coroutine_fn verify_entered_step_2(void *opaque)
{
    Coroutine *caller = opaque;

    g_assert_true(qemu_coroutine_entered(caller));
    g_assert_true(qemu_coroutine_entered(qemu_coroutine_self()));
    qemu_coroutine_yield();
    /* Re-entered from the top level: caller still entered (it waits). */
    g_assert_true(qemu_coroutine_entered(caller));
    g_assert_true(qemu_coroutine_entered(qemu_coroutine_self()));
}

static void coroutine_fn verify_entered_step_1(void *opaque)
{
    Coroutine *self = qemu_coroutine_self();
    Coroutine *coroutine;

    (void)opaque;
    g_assert_true(qemu_coroutine_entered(self));
    coroutine = qemu_coroutine_create(verify_entered_step_2, self);
    g_assert_false(qemu_coroutine_entered(coroutine));
    qemu_coroutine_enter(coroutine);
    g_assert_false(qemu_coroutine_entered(coroutine));
    qemu_coroutine_enter(coroutine);
}

static void test_entered(void)
{
    Coroutine *coroutine = qemu_coroutine_create(verify_entered_step_1, NULL);

    g_assert_false(qemu_coroutine_entered(coroutine));
    qemu_coroutine_enter(coroutine);
}

void coroutine_fn yield_once(void *opaque);
void coroutine_fn yield_once(void *opaque)
{
    (void)opaque;
    qemu_coroutine_yield();
}

static void test_enter_if_inactive(void)
{
    Coroutine *co = qemu_coroutine_create(yield_once, NULL);
    qemu_coroutine_enter_if_inactive(co); /* runs to the yield */
    qemu_coroutine_enter_if_inactive(co); /* terminates */
}

/* ---- order -------------------------------------------------------------- */

typedef struct {
    const char *name;
    int state;
} OrderRecord;

static OrderRecord records[16];
static unsigned n_records;

static void record_push(const char *name, int state)
{
    g_assert_cmpuint(n_records, <, G_N_ELEMENTS(records));
    records[n_records].name = name;
    records[n_records].state = state;
    n_records++;
}

static void coroutine_fn co_order_test(void *opaque)
{
    (void)opaque;
    record_push("co", 1);
    qemu_coroutine_yield();
    record_push("co", 2);
}

static void do_order_test(void)
{
    Coroutine *co = qemu_coroutine_create(co_order_test, NULL);

    record_push("caller", 1);
    qemu_coroutine_enter(co);
    record_push("caller", 2);
    qemu_coroutine_enter(co);
    record_push("caller", 3);
}

static void test_order(void)
{
    static const OrderRecord expected[] = {
        { "test_order", 1 },
        { "caller", 1 },
        { "co", 1 },
        { "caller", 2 },
        { "co", 2 },
        { "caller", 3 },
        { "test_order", 2 },
    };

    n_records = 0;
    record_push("test_order", 1);
    do_order_test();
    record_push("test_order", 2);
    g_assert_cmpuint(n_records, ==, G_N_ELEMENTS(expected));
    for (unsigned i = 0; i < n_records; i++) {
        g_assert_cmpstr(records[i].name, ==, expected[i].name);
        g_assert_cmpint(records[i].state, ==, expected[i].state);
    }
}

/* ---- CoMutex ------------------------------------------------------------ */

static CoMutex mutex;
static unsigned mutex_in_section;
static unsigned mutex_done;
static unsigned mutex_order[64];
static unsigned mutex_order_len;

static void coroutine_fn mutex_fn(void *opaque)
{
    unsigned id = GPOINTER_TO_UINT(opaque);

    for (int i = 0; i < 3; i++) {
        qemu_co_mutex_lock(&mutex);
        qemu_co_mutex_assert_locked(&mutex);
        g_assert_cmpuint(mutex_in_section, ==, 0);
        mutex_in_section++;
        if (i == 0) {
            mutex_order[mutex_order_len++] = id;
        }
        qemu_coroutine_yield(); /* keep it held while others queue */
        mutex_in_section--;
        qemu_co_mutex_unlock(&mutex);
    }
    mutex_done++;
}

static void test_co_mutex(void)
{
    enum { N = 50 };
    Coroutine *cos[N];

    qemu_co_mutex_init(&mutex);
    mutex_done = mutex_in_section = mutex_order_len = 0;
    for (unsigned i = 0; i < N; i++) {
        cos[i] = qemu_coroutine_create(mutex_fn, GUINT_TO_POINTER(i));
        qemu_coroutine_enter(cos[i]);
    }
    /* cos[0] holds the mutex (yielded inside); all others wait in order. */
    g_assert_cmpuint(mutex_order_len, ==, 1);
    while (mutex_done < N) {
        /* Re-enter the holder: it unlocks, hands over, locks again... */
        Coroutine *holder = mutex.holder;
        g_assert_nonnull(holder);
        qemu_coroutine_enter(holder);
    }
    g_assert_cmpuint(mutex_order_len, ==, N);
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpuint(mutex_order[i], ==, i); /* FIFO hand-off */
    }
    g_assert_cmpuint(mutex.locked, ==, 0);
    /* The last unlock clears the holder and its context, as QEMU's does
     * (a locker that read a stale context equal to its own would queue
     * instead of spinning for a holder in another thread). */
    g_assert_null(mutex.holder);
    g_assert_null(mutex.ctx);
}

/* CoMutex through QemuLockable: lock guards and qemu_co_queue_wait. */
static CoQueue lockable_queue;
static unsigned lockable_value;

static void coroutine_fn lockable_waiter(void *opaque)
{
    (void)opaque;
    QEMU_LOCK_GUARD(&mutex);
    while (lockable_value == 0) {
        qemu_co_queue_wait(&lockable_queue, &mutex);
    }
    qemu_co_mutex_assert_locked(&mutex);
    lockable_value++;
}

static void coroutine_fn lockable_setter(void *opaque)
{
    (void)opaque;
    WITH_QEMU_LOCK_GUARD(&mutex) {
        lockable_value = 1;
        qemu_co_queue_restart_all(&lockable_queue);
    }
}

static void test_co_mutex_lockable(void)
{
    Coroutine *w1, *w2, *s;

    qemu_co_mutex_init(&mutex);
    qemu_co_queue_init(&lockable_queue);
    lockable_value = 0;
    w1 = qemu_coroutine_create(lockable_waiter, NULL);
    w2 = qemu_coroutine_create(lockable_waiter, NULL);
    qemu_coroutine_enter(w1);
    qemu_coroutine_enter(w2);
    g_assert_false(qemu_co_queue_empty(&lockable_queue));
    s = qemu_coroutine_create(lockable_setter, NULL);
    qemu_coroutine_enter(s);
    /* Woken by aio_co_wake from a coroutine: ran after the setter ended. */
    g_assert_cmpuint(lockable_value, ==, 3);
    g_assert_true(qemu_co_queue_empty(&lockable_queue));
    g_assert_cmpuint(mutex.locked, ==, 0);
}

/* CoQueue with a NULL lock and qemu_co_enter_next from outside. */
static void coroutine_fn queue_waiter(void *opaque)
{
    unsigned *woken = opaque;
    qemu_co_queue_wait(&lockable_queue, NULL);
    (*woken)++;
}

static void test_co_queue_enter_next(void)
{
    unsigned woken = 0;

    qemu_co_queue_init(&lockable_queue);
    for (int i = 0; i < 3; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(queue_waiter, &woken));
    }
    g_assert_true(qemu_co_enter_next(&lockable_queue, NULL));
    g_assert_cmpuint(woken, ==, 1);
    qemu_co_enter_all(&lockable_queue, NULL);
    g_assert_cmpuint(woken, ==, 3);
    g_assert_false(qemu_co_enter_next(&lockable_queue, NULL));
}

/* ---- aio_co_enter hand-offs --------------------------------------------- */

#define HANDOFFS 100000

static Coroutine *handoff_co[2];
static Coroutine *handoff_leader;
static unsigned handoff_count;
static uintptr_t handoff_sp[2];
static int handoff_last_yielder = -1;

static void coroutine_fn handoff_fn(void *opaque)
{
    unsigned me = GPOINTER_TO_UINT(opaque);
    char marker;

    while (handoff_count < HANDOFFS) {
        uintptr_t sp = (uintptr_t)&marker;
        if (handoff_sp[me] == 0) {
            handoff_sp[me] = sp;
        }
        g_assert_cmphex(sp, ==, handoff_sp[me]); /* constant depth */
        /* Entered from the top-level loop, never from the other one. */
        g_assert_true(qemu_coroutine_self()->caller == handoff_leader);
        handoff_count++;
        aio_co_enter(main_ctx, handoff_co[!me]);
        handoff_last_yielder = (int)me;
        qemu_coroutine_yield();
        handoff_last_yielder = -1;
    }
}

static void test_aio_co_enter_handoff(void)
{
    handoff_count = 0;
    handoff_sp[0] = handoff_sp[1] = 0;
    handoff_leader = qemu_coroutine_self();
    handoff_co[0] = qemu_coroutine_create(handoff_fn, GUINT_TO_POINTER(0));
    handoff_co[1] = qemu_coroutine_create(handoff_fn, GUINT_TO_POINTER(1));
    /* Give the second one a yielded state first. */
    qemu_coroutine_enter(handoff_co[0]);
    g_assert_cmpuint(handoff_count, >=, HANDOFFS);
    /* The last one to hand off is still yielded; let it finish. */
    for (int i = 0; i < 2; i++) {
        if (!qemu_coroutine_entered(handoff_co[i]) && handoff_last_yielder == i) {
            qemu_coroutine_enter(handoff_co[i]);
        }
    }
}

/* ---- cross-thread wake and schedule ------------------------------------- */

static Coroutine *worker_target;
static bool worker_co_done;

static void coroutine_fn wait_for_worker(void *opaque)
{
    (void)opaque;
    qemu_coroutine_yield();
    g_assert_true(qemu_get_current_aio_context() == main_ctx);
    qatomic_set(&worker_co_done, true);
}

static void *worker_wake(void *opaque)
{
    (void)opaque;
    aio_co_wake(worker_target); /* not the home thread: scheduled */
    return NULL;
}

static void test_worker_wake(void)
{
    QemuThread t;

    worker_co_done = false;
    worker_target = qemu_coroutine_create(wait_for_worker, NULL);
    qemu_coroutine_enter(worker_target);
    qemu_thread_create(&t, "waker", worker_wake, NULL, QEMU_THREAD_JOINABLE);
    poll_until(&worker_co_done);
    qemu_thread_join(&t);
}

/*
 * A coroutine publishes itself and yields; a worker schedules it at once,
 * maybe before the yield happened. It must be entered only after it yielded.
 */
static Coroutine *published;
static unsigned published_rounds;
static bool published_done;

static void *schedule_published(void *opaque)
{
    (void)opaque;
    for (unsigned i = 0; i < 1000; i++) {
        Coroutine *co;
        while (!(co = qatomic_xchg(&published, NULL))) {
            sched_yield();
        }
        aio_co_schedule(main_ctx, co);
    }
    return NULL;
}

static void coroutine_fn publish_and_yield(void *opaque)
{
    (void)opaque;
    for (unsigned i = 0; i < 1000; i++) {
        qatomic_set(&published, qemu_coroutine_self());
        qemu_coroutine_yield();
        published_rounds++;
    }
    qatomic_set(&published_done, true);
}

static void test_schedule_while_running(void)
{
    QemuThread t;

    published_done = false;
    published_rounds = 0;
    qemu_thread_create(&t, "scheduler", schedule_published, NULL,
                       QEMU_THREAD_JOINABLE);
    qemu_coroutine_enter(qemu_coroutine_create(publish_and_yield, NULL));
    poll_until(&published_done);
    qemu_thread_join(&t);
    g_assert_cmpuint(published_rounds, ==, 1000);
}

/* ---- co-sleep ----------------------------------------------------------- */

static QemuCoSleep sleep_state;
static bool sleep_done;

static void coroutine_fn sleeper(void *opaque)
{
    int64_t t0 = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t ns = *(int64_t *)opaque;

    qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, 1000000); /* 1 ms */
    g_assert_cmpint(qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - t0, >=, 1000000);
    qemu_co_sleep_ns_wakeable(&sleep_state, QEMU_CLOCK_REALTIME, ns);
    qatomic_set(&sleep_done, true);
}

static void test_co_sleep(void)
{
    int64_t ns = 60LL * 1000000000; /* a minute: woken early */
    int64_t t0 = g_get_monotonic_time();
    Coroutine *co = qemu_coroutine_create(sleeper, &ns);

    sleep_done = false;
    qemu_coroutine_enter(co);
    while (!qatomic_read(&sleep_state.to_wake)) {
        aio_poll(main_ctx, true);
    }
    g_assert_false(sleep_done);
    qemu_co_sleep_wake(&sleep_state);
    g_assert_true(sleep_done); /* woken from outside: entered at once */
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 10 * G_USEC_PER_SEC);
    qemu_co_sleep_wake(&sleep_state); /* nobody sleeps: no-op */
}

/* ---- death tests -------------------------------------------------------- */
/* Entry points of the death tests are global so that -rdynamic exports
 * them and the messages can name them. */

void coroutine_fn enter_self(void *opaque);
void coroutine_fn enter_self(void *opaque)
{
    (void)opaque;
    qemu_coroutine_enter(qemu_coroutine_self());
}

void coroutine_fn nothing(void *opaque);
void coroutine_fn nothing(void *opaque)
{
    (void)opaque;
}

static void test_death_yield_outside(void)
{
    if (g_test_subprocess()) {
        qemu_coroutine_yield();
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: qemu_coroutine_yield: *coroutine*");
}

static void test_death_enter_running(void)
{
    if (g_test_subprocess()) {
        qemu_coroutine_enter(qemu_coroutine_create(enter_self, NULL));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_enter: coroutine 'enter_self' is already running*");
}

static void test_death_enter_terminated(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = qemu_coroutine_create(nothing, NULL);
        qemu_coroutine_enter(co);
        qemu_coroutine_enter(co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_enter: coroutine 'nothing' has terminated*");
}

/* Garbage, misaligned and freed handles: one line naming what is wrong
 * (the object's magic number is checked; it lies past QEMU's 88 bytes). */
static void test_death_garbage_handle(void)
{
    if (g_test_subprocess()) {
        void *garbage = g_malloc(512);
        memset(garbage, 0x5a, 512);
        qemu_coroutine_enter(garbage);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_enter: Coroutine 0x* is not a valid coroutine (no coroutine magic*\n");
    g_test_trap_assert_stderr_unmatched("*aioctx:*aioctx:*");
}

static void test_death_misaligned_handle(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = qemu_coroutine_create(nothing, NULL);
        qemu_coroutine_entered((Coroutine *)((char *)co + 1));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_entered: Coroutine 0x* is not a valid coroutine (misaligned pointer)\n");
}

#define FREED_COUNT 300
static Coroutine *freed_cos[FREED_COUNT];

/* Creates and terminates FREED_COUNT coroutines; at exit this thread's
 * pool moves to the shared one. */
static void *terminate_many(void *opaque)
{
    (void)opaque;
    for (int i = 0; i < FREED_COUNT; i++) {
        freed_cos[i] = qemu_coroutine_create(nothing, NULL);
    }
    for (int i = 0; i < FREED_COUNT; i++) {
        qemu_coroutine_enter(freed_cos[i]);
    }
    return NULL;
}

static void test_death_freed_handle(void)
{
    if (g_test_subprocess()) {
        QemuThread t;

        qemu_thread_create(&t, "terminator", terminate_many, NULL, QEMU_THREAD_JOINABLE);
        qemu_thread_join(&t);
        /* The shared pool shrinks to its floor (128): the coroutines beyond
         * it are freed, the last one (freed last) is still quarantined. */
        qemu_coroutine_dec_pool_size(UINT_MAX);
        qemu_coroutine_enter(freed_cos[FREED_COUNT - 1]);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_enter: Coroutine 0x* was already freed (it terminated and its pool was trimmed)\n");
}

static void test_death_schedule_twice(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = qemu_coroutine_create(yield_once, NULL);
        qemu_coroutine_enter(co);
        aio_co_schedule(main_ctx, co);
        aio_co_schedule(main_ctx, co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: aio_co_schedule: coroutine 'yield_once' was already scheduled by aio_co_schedule*");
}

static void test_death_enter_scheduled(void)
{
    if (g_test_subprocess()) {
        Coroutine *co = qemu_coroutine_create(yield_once, NULL);
        qemu_coroutine_enter(co);
        aio_co_schedule(main_ctx, co);
        qemu_coroutine_enter(co);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: qemu_coroutine_enter: coroutine 'yield_once' is scheduled by aio_co_schedule*");
}

static void test_death_unlock_not_held(void)
{
    if (g_test_subprocess()) {
        qemu_co_mutex_init(&mutex);
        qemu_coroutine_enter(qemu_coroutine_create(
            (CoroutineEntry *)(void (*)(void))qemu_co_mutex_unlock, &mutex));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: qemu_co_mutex_unlock: *does not hold this CoMutex*");
}

static unsigned overflow_depth(unsigned n)
{
    volatile char big[64 * 1024];
    big[0] = (char)n;
    if (n == 0) {
        return big[0];
    }
    return overflow_depth(n - 1) + big[0];
}

static void coroutine_fn overflow(void *opaque)
{
    /* 64 MiB of frames on a 1 MiB stack. */
    *(unsigned *)opaque = overflow_depth(1024);
}

static void test_death_stack_overflow(void)
{
    if (g_test_subprocess()) {
        static unsigned result;
        qemu_coroutine_enter(qemu_coroutine_create(overflow, &result));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed(); /* SIGSEGV on the guard page */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);
    main_ctx = qemu_get_aio_context();

    g_test_add_func("/coroutine/basic/lifecycle", test_lifecycle);
    g_test_add_func("/coroutine/basic/no-dangling-access", test_no_dangling_access);
    g_test_add_func("/coroutine/basic/yield", test_yield);
    g_test_add_func("/coroutine/basic/nesting", test_nesting);
    g_test_add_func("/coroutine/basic/self", test_self);
    g_test_add_func("/coroutine/basic/entered", test_entered);
    g_test_add_func("/coroutine/basic/enter-if-inactive", test_enter_if_inactive);
    g_test_add_func("/coroutine/basic/order", test_order);
    g_test_add_func("/coroutine/locking/co-mutex", test_co_mutex);
    g_test_add_func("/coroutine/locking/co-mutex/lockable", test_co_mutex_lockable);
    g_test_add_func("/coroutine/locking/co-queue/enter-next", test_co_queue_enter_next);
    g_test_add_func("/coroutine/locking/co-rwlock/upgrade", co_rwlock_test_upgrade);
    g_test_add_func("/coroutine/locking/co-rwlock/downgrade", co_rwlock_test_downgrade);
    g_test_add_func("/coroutine/aio/co-enter/handoff", test_aio_co_enter_handoff);
    g_test_add_func("/coroutine/aio/co-wake/worker-thread", test_worker_wake);
    g_test_add_func("/coroutine/aio/co-schedule/while-running", test_schedule_while_running);
    g_test_add_func("/coroutine/aio/co-sleep", test_co_sleep);
    g_test_add_func("/coroutine/death/yield-outside", test_death_yield_outside);
    g_test_add_func("/coroutine/death/enter-running", test_death_enter_running);
    g_test_add_func("/coroutine/death/enter-terminated", test_death_enter_terminated);
    g_test_add_func("/coroutine/death/schedule-twice", test_death_schedule_twice);
    g_test_add_func("/coroutine/death/garbage-handle", test_death_garbage_handle);
    g_test_add_func("/coroutine/death/misaligned-handle", test_death_misaligned_handle);
    g_test_add_func("/coroutine/death/freed-handle", test_death_freed_handle);
    g_test_add_func("/coroutine/death/enter-scheduled", test_death_enter_scheduled);
    g_test_add_func("/coroutine/death/unlock-not-held", test_death_unlock_not_held);
    g_test_add_func("/coroutine/death/stack-overflow", test_death_stack_overflow);
    return g_test_run();
}
