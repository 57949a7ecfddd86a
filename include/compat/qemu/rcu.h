/*
 * aioctx compat: QEMU's qemu/rcu.h — read-copy-update.
 *
 * Readers bracket accesses with rcu_read_lock()/rcu_read_unlock() (they
 * nest, never block, and are cheap); writers publish with qatomic_rcu_set()
 * and reclaim old data after synchronize_rcu() (blocks until every reader
 * that was inside a critical section when it was called has left it) or
 * with call_rcu() (runs a callback from a helper thread after a grace
 * period, with the BQL held, as QEMU does).
 *
 * Implemented in src/c/rcu.c. Differences from QEMU: a thread that calls
 * rcu_read_lock() without rcu_register_thread() is registered on the spot
 * (and unregistered when it exits), so nothing is silently unprotected;
 * calling synchronize_rcu() inside a read-side critical section aborts with
 * a message instead of deadlocking. fork() support (rcu_enable_atfork) is a
 * no-op.
 */
#ifndef AIOCTX_COMPAT_QEMU_RCU_H
#define AIOCTX_COMPAT_QEMU_RCU_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>
#include "qemu/atomic.h"

#ifdef __cplusplus
extern "C" {
#endif

void rcu_read_lock(void);
void rcu_read_unlock(void);
/* True while this thread is inside a read-side critical section. */
bool rcu_read_locked(void);

void synchronize_rcu(void);

void rcu_register_thread(void);
void rcu_unregister_thread(void);

void rcu_enable_atfork(void);
void rcu_disable_atfork(void);

struct rcu_head;
typedef void RCUCBFunc(struct rcu_head *head);

struct rcu_head {
    struct rcu_head *next;
    RCUCBFunc *func;
};

/* Queue func(head) to run after a grace period (on the RCU thread). */
void call_rcu1(struct rcu_head *head, RCUCBFunc *func);
/* Wait until every callback queued before this call has run. Releases the
 * BQL meanwhile if this thread holds it. */
void drain_call_rcu(void);

#ifdef __cplusplus
}
#endif

/*
 * call_rcu(obj, func, field): run func(obj) after a grace period. field is
 * obj's struct rcu_head member and must be the first member; func takes a
 * pointer to obj's type.
 */
#define call_rcu(head, func, field)                                      \
    call_rcu1(({                                                         \
         char __attribute__((unused))                                    \
            offset_must_be_zero[-offsetof(typeof(*(head)), field)],      \
            func_type_invalid = (func) - (void (*)(typeof(head)))(func); \
         &(head)->field;                                                 \
      }),                                                                \
      (RCUCBFunc *)(void (*)(void))(func))

/* g_free(obj) after a grace period; field is obj's first member. */
#define g_free_rcu(obj, field) \
    call_rcu1(({                                                         \
        char __attribute__((unused))                                     \
            offset_must_be_zero[-offsetof(typeof(*(obj)), field)];       \
        &(obj)->field;                                                   \
      }),                                                                \
      (RCUCBFunc *)(void (*)(void))g_free)

typedef void RCUReadAuto;
static inline RCUReadAuto *rcu_read_auto_lock(void)
{
    rcu_read_lock();
    /* Anything non-NULL will do */
    return (RCUReadAuto *)(uintptr_t)1;
}

static inline void rcu_read_auto_unlock(RCUReadAuto *r)
{
    (void)r;
    rcu_read_unlock();
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(RCUReadAuto, rcu_read_auto_unlock)

/* WITH_RCU_READ_LOCK_GUARD() { ... }: a read-side critical section for the
 * block; leaving it by any means (break, return, goto) unlocks. */
#define WITH_RCU_READ_LOCK_GUARD() \
    WITH_RCU_READ_LOCK_GUARD_(glue(_rcu_read_auto, __COUNTER__))

#define WITH_RCU_READ_LOCK_GUARD_(var) \
    for (g_autoptr(RCUReadAuto) var = rcu_read_auto_lock(); \
        (var); rcu_read_auto_unlock(var), (var) = NULL)

/* RCU_READ_LOCK_GUARD(): read-side critical section until end of scope. */
#define RCU_READ_LOCK_GUARD() \
    g_autoptr(RCUReadAuto) _rcu_read_auto __attribute__((unused)) = \
        rcu_read_auto_lock()

#endif /* AIOCTX_COMPAT_QEMU_RCU_H */
