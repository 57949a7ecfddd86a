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
 * The read side is QEMU 10.2's, inline (an object compiled against QEMU's
 * own qemu/rcu.h interoperates with the library's writers): see
 * struct rcu_reader_data, rcu_gp_ctr and rcu_gp_event below. The rest is
 * implemented in src/rcu/. Differences from QEMU: a thread that calls
 * rcu_read_lock() without rcu_register_thread() is registered on the spot
 * (and unregistered when it exits), so nothing is silently unprotected;
 * calling synchronize_rcu() inside a read-side critical section aborts with
 * a message instead of deadlocking. fork() support (rcu_enable_atfork) is a
 * no-op.
 */
#ifndef AIOCTX_COMPAT_QEMU_RCU_H
#define AIOCTX_COMPAT_QEMU_RCU_H

#include <assert.h>
#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "aioctx.h"
#include "qemu/atomic.h"
#include "qemu/notify.h"
#include "qemu/queue.h"
#include "qemu/typedefs.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The per-thread reader record, at QEMU 10.2's layout (40 bytes): QEMU's
 * inline rcu_read_lock()/rcu_read_unlock() below, compiled into callers,
 * touch ctr, waiting and depth directly.
 */
struct rcu_reader_data {
    /* 0, or the value of rcu_gp_ctr when the outermost lock ran. */
    unsigned long ctr;
    /* Set by a writer waiting for this reader; cleared by the reader. */
    bool waiting;
    /* Nesting depth; only the owner thread uses it. */
    unsigned depth;
    /* Registry link (QEMU's; unused by aioctx, kept for the layout). */
    QLIST_ENTRY(rcu_reader_data) node;
    /* QEMU's force_rcu notifier list; unused by aioctx. */
    NotifierList force_rcu;
};

/* The grace-period counter: starts at 1, +2 per grace period. */
extern unsigned long rcu_gp_ctr;
/* Set by a reader that leaves a section a writer waits for. */
extern QemuEvent rcu_gp_event;

/*
 * The calling thread's reader record. A thread that did not call
 * rcu_register_thread() is registered on the spot.
 */
struct rcu_reader_data *get_ptr_rcu_reader(void);

static inline void rcu_read_lock(void)
{
    struct rcu_reader_data *p_rcu_reader = get_ptr_rcu_reader();
    unsigned long ctr;

    if (p_rcu_reader->depth++ > 0) {
        return;
    }
    ctr = qatomic_read(&rcu_gp_ctr);
    qatomic_set(&p_rcu_reader->ctr, ctr);
    /* Publish ctr before reading RCU-protected pointers. */
    smp_mb();
}

static inline void rcu_read_unlock(void)
{
    struct rcu_reader_data *p_rcu_reader = get_ptr_rcu_reader();

    assert(p_rcu_reader->depth != 0);
    if (--p_rcu_reader->depth > 0) {
        return;
    }
    /* The critical section precedes the store of 0. */
    qatomic_store_release(&p_rcu_reader->ctr, 0);
    /* Write ctr before reading waiting (pairs with the writer's barrier). */
    smp_mb();
    if (qatomic_read(&p_rcu_reader->waiting)) {
        qatomic_set(&p_rcu_reader->waiting, false);
        qemu_event_set(&rcu_gp_event);
    }
}

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
