/*
 * QemuLockCnt (qemu/lockcnt.h): QEMU's 4-byte layout, the count and lock
 * operations, inc waiting while the count is zero and the lock is held,
 * and mutual exclusion under contention.
 */
#include "qemu/osdep.h"
#include "qemu/lockcnt.h"

#include "test-util.h"

#include <stdatomic.h>

_Static_assert(sizeof(QemuLockCnt) == 4, "sizeof(QemuLockCnt)");
_Static_assert(_Alignof(QemuLockCnt) == 4, "_Alignof(QemuLockCnt)");

static void test_counts(void)
{
    QemuLockCnt l;

    qemu_lockcnt_init(&l);
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 0);
    qemu_lockcnt_inc(&l);
    qemu_lockcnt_inc(&l);
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 2);
    /* Not the last visitor: no lock. */
    g_assert_false(qemu_lockcnt_dec_and_lock(&l));
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 1);
    /* The last one: 0 and locked. */
    g_assert_true(qemu_lockcnt_dec_and_lock(&l));
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 0);
    qemu_lockcnt_unlock(&l);

    qemu_lockcnt_inc(&l);
    qemu_lockcnt_inc(&l);
    g_assert_false(qemu_lockcnt_dec_if_lock(&l));
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 2);
    qemu_lockcnt_dec(&l);
    g_assert_true(qemu_lockcnt_dec_if_lock(&l));
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 0);
    /* inc_and_unlock: one visitor, and the lock is free again. */
    qemu_lockcnt_inc_and_unlock(&l);
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 1);
    qemu_lockcnt_lock(&l);
    qemu_lockcnt_unlock(&l);
    qemu_lockcnt_dec(&l);
    qemu_lockcnt_destroy(&l);
}

typedef struct {
    QemuLockCnt l;
    atomic_bool entered;
} IncWait;

static void *inc_thread(void *opaque)
{
    IncWait *w = opaque;

    qemu_lockcnt_inc(&w->l);
    atomic_store(&w->entered, true);
    return NULL;
}

static void test_inc_waits_for_unlock_at_zero(void)
{
    IncWait w;
    pthread_t t;

    qemu_lockcnt_init(&w.l);
    atomic_init(&w.entered, false);
    qemu_lockcnt_lock(&w.l);
    g_assert_cmpint(pthread_create(&t, NULL, inc_thread, &w), ==, 0);
    g_usleep(50000);
    g_assert_false(atomic_load(&w.entered));
    g_assert_cmpuint(qemu_lockcnt_count(&w.l), ==, 0);
    qemu_lockcnt_unlock(&w.l);
    pthread_join(t, NULL);
    g_assert_true(atomic_load(&w.entered));
    g_assert_cmpuint(qemu_lockcnt_count(&w.l), ==, 1);
}

static void test_inc_while_locked_with_visitors(void)
{
    QemuLockCnt l;

    /* With visitors already in, inc does not wait for the lock. */
    qemu_lockcnt_init(&l);
    qemu_lockcnt_inc(&l);
    qemu_lockcnt_lock(&l);
    qemu_lockcnt_inc(&l);
    g_assert_cmpuint(qemu_lockcnt_count(&l), ==, 2);
    qemu_lockcnt_unlock(&l);
}

enum { THREADS = 4, ITERS = 50000 };

typedef struct {
    QemuLockCnt l;
    long counter; /* protected by the lock */
} Contended;

static void *lock_loop(void *opaque)
{
    Contended *c = opaque;

    for (int i = 0; i < ITERS; i++) {
        qemu_lockcnt_lock(&c->l);
        c->counter++;
        qemu_lockcnt_unlock(&c->l);
        qemu_lockcnt_inc(&c->l);
        if (qemu_lockcnt_dec_and_lock(&c->l)) {
            c->counter++;
            qemu_lockcnt_unlock(&c->l);
        }
    }
    return NULL;
}

static void test_mutual_exclusion(void)
{
    Watchdog wd;
    Contended c = { .counter = 0 };
    pthread_t t[THREADS];

    watchdog_start(&wd, "lockcnt contention", 60);
    qemu_lockcnt_init(&c.l);
    for (int i = 0; i < THREADS; i++) {
        g_assert_cmpint(pthread_create(&t[i], NULL, lock_loop, &c), ==, 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    watchdog_stop(&wd);
    /* Every lock, plus every dec_and_lock that reached zero. */
    g_assert_cmpint(c.counter, >=, (long)THREADS * ITERS);
    g_assert_cmpint(c.counter, <=, 2L * THREADS * ITERS);
    g_assert_cmpuint(qemu_lockcnt_count(&c.l), ==, 0);
}

static void run_death_case(int which)
{
    (void)which;
    qemu_lockcnt_inc(NULL);
}

static const DeathTest death_tests[] = {
    { "/lockcnt/null", 0, "*aioctx: qemu_lockcnt_inc: QemuLockCnt is NULL*" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/lockcnt/counts", test_counts);
    g_test_add_func("/lockcnt/inc-waits-for-unlock-at-zero", test_inc_waits_for_unlock_at_zero);
    g_test_add_func("/lockcnt/inc-while-locked-with-visitors", test_inc_while_locked_with_visitors);
    g_test_add_func("/lockcnt/mutual-exclusion", test_mutual_exclusion);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
    return g_test_run();
}
