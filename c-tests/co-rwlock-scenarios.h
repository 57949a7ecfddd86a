/*
 * QEMU's CoRwlock upgrade and downgrade scenarios (tests/unit/
 * test-coroutine.c), shared by two programs that run them in different
 * worlds: test-coroutine.c (after qemu_init_main_loop, so the coroutines
 * record the main context) and test-co-nocontext.c (a program that never
 * creates an AioContext, so they record NULL). The hand-offs must be the
 * same in both: a waiter woken from a coroutine runs when that coroutine
 * yields or terminates.
 *
 * Header-only: the functions are `static inline` GTest functions, so a
 * program registers them under its own paths:
 *
 *     g_test_add_func("/.../upgrade", co_rwlock_test_upgrade);
 *     g_test_add_func("/.../downgrade", co_rwlock_test_downgrade);
 *
 * Include it after "qemu/coroutine.h".
 */

#ifndef AIOCTX_CO_RWLOCK_SCENARIOS_H
#define AIOCTX_CO_RWLOCK_SCENARIOS_H

#include "qemu/coroutine.h"

#include <glib.h>
#include <stdbool.h>

/* The lock of both scenarios; each test initializes it again. */
static CoRwlock co_rwlock_scenario_lock;

/* The coroutine bodies; opaque is a bool set when the body finishes. */

static inline void coroutine_fn co_rwlock_yield_upgrade(void *opaque)
{
    qemu_co_rwlock_rdlock(&co_rwlock_scenario_lock);
    qemu_coroutine_yield();
    qemu_co_rwlock_upgrade(&co_rwlock_scenario_lock);
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    *(bool *)opaque = true;
}

static inline void coroutine_fn co_rwlock_wrlock_yield(void *opaque)
{
    qemu_co_rwlock_wrlock(&co_rwlock_scenario_lock);
    qemu_coroutine_yield();
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    *(bool *)opaque = true;
}

static inline void coroutine_fn co_rwlock_rdlock_yield(void *opaque)
{
    qemu_co_rwlock_rdlock(&co_rwlock_scenario_lock);
    qemu_coroutine_yield();
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    qemu_coroutine_yield();
    *(bool *)opaque = true;
}

static inline void coroutine_fn co_rwlock_wrlock_downgrade(void *opaque)
{
    qemu_co_rwlock_wrlock(&co_rwlock_scenario_lock);
    qemu_co_rwlock_downgrade(&co_rwlock_scenario_lock);
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    *(bool *)opaque = true;
}

static inline void coroutine_fn co_rwlock_rdlock(void *opaque)
{
    qemu_co_rwlock_rdlock(&co_rwlock_scenario_lock);
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    *(bool *)opaque = true;
}

static inline void coroutine_fn co_rwlock_wrlock(void *opaque)
{
    qemu_co_rwlock_wrlock(&co_rwlock_scenario_lock);
    qemu_co_rwlock_unlock(&co_rwlock_scenario_lock);
    *(bool *)opaque = true;
}

/*
 * QEMU's test_co_rwlock_upgrade: reader 1 holds the lock; writer 2 waits;
 * reader 1 upgrades: it must wait behind the writer, which then runs first.
 */
static inline void co_rwlock_test_upgrade(void)
{
    bool c1_done = false, c2_done = false;
    Coroutine *c1, *c2;

    qemu_co_rwlock_init(&co_rwlock_scenario_lock);
    c1 = qemu_coroutine_create(co_rwlock_yield_upgrade, &c1_done);
    c2 = qemu_coroutine_create(co_rwlock_wrlock_yield, &c2_done);
    qemu_coroutine_enter(c1);
    qemu_coroutine_enter(c2);
    /* c1 upgrades: waits behind c2, whose ticket it releases its read for. */
    qemu_coroutine_enter(c1);
    /* c2 got the write lock (woken from c1's upgrade) and yielded. */
    g_assert_false(c1_done);
    g_assert_false(c2_done);
    qemu_coroutine_enter(c2); /* unlock: wakes c1, which finishes */
    g_assert_true(c2_done);
    g_assert_true(c1_done);
}

/*
 * QEMU's test_co_rwlock_downgrade:
 * Reader 1 holds; writer 2 (downgrades), reader 3, writer 4, reader 5 queue
 * in that order. When 1 unlocks, 2 gets the write lock, downgrades and
 * lets 3 in, then unlocks; 4 waits for 3; 5 waits behind 4 (fairness).
 * 1's unlock runs the whole chain.
 */
static inline void co_rwlock_test_downgrade(void)
{
    bool done[5] = { false };
    Coroutine *c[5];

    qemu_co_rwlock_init(&co_rwlock_scenario_lock);
    c[0] = qemu_coroutine_create(co_rwlock_rdlock_yield, &done[0]);
    c[1] = qemu_coroutine_create(co_rwlock_wrlock_downgrade, &done[1]);
    c[2] = qemu_coroutine_create(co_rwlock_rdlock, &done[2]);
    c[3] = qemu_coroutine_create(co_rwlock_wrlock, &done[3]);
    c[4] = qemu_coroutine_create(co_rwlock_rdlock, &done[4]);
    for (int i = 0; i < 5; i++) {
        qemu_coroutine_enter(c[i]);
    }
    for (int i = 1; i < 5; i++) {
        g_assert_false(done[i]); /* all queued behind reader 1 */
    }
    qemu_coroutine_enter(c[0]); /* unlocks: the chain runs */
    for (int i = 1; i < 5; i++) {
        g_assert_true(done[i]);
    }
    qemu_coroutine_enter(c[0]);
    g_assert_true(done[0]);
}

#endif /* AIOCTX_CO_RWLOCK_SCENARIOS_H */
