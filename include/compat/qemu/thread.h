/*
 * aioctx compat: QEMU's qemu/thread.h.
 *
 * QemuMutex, QemuRecMutex, QemuCond, QemuSemaphore, QemuEvent, QemuThread
 * and their functions (qemu_mutex_lock, qemu_thread_create, ...) are real
 * functions of the library, declared in aioctx.h, as are QEMU's *_impl
 * functions and the *_func pointers its macros call through. This header adds what QEMU defines inline: the
 * QemuSpin spinlock.
 */
#ifndef AIOCTX_COMPAT_QEMU_THREAD_H
#define AIOCTX_COMPAT_QEMU_THREAD_H

#include <pthread.h>
#include <stdbool.h>
#include "aioctx.h"
#include "qemu/atomic.h"
#include "qemu/processor.h"
#include "qemu/thread-posix.h"

#ifndef QEMU_THREAD_JOINABLE
#define QEMU_THREAD_JOINABLE 0
#endif
#ifndef QEMU_THREAD_DETACHED
#define QEMU_THREAD_DETACHED 1
#endif

/*
 * QEMU's lock-function pointer types (QemuMutexLockFunc, ...), the
 * *_func hook pointers and the *_impl functions are declared in aioctx.h.
 */

/*
 * QemuSpin: a test-and-test-and-set spinlock, as in QEMU. Note that
 * qemu_spin_trylock returns true when the lock was *busy* (not taken).
 */
typedef struct QemuSpin {
    int value;
} QemuSpin;

static inline void qemu_spin_init(QemuSpin *spin)
{
    qatomic_set(&spin->value, 0);
}

static inline void qemu_spin_destroy(QemuSpin *spin)
{
    (void)spin;
}

static inline void qemu_spin_lock(QemuSpin *spin)
{
    while (unlikely(qatomic_xchg(&spin->value, 1))) {
        while (qatomic_read(&spin->value)) {
            cpu_relax();
        }
    }
}

static inline bool qemu_spin_trylock(QemuSpin *spin)
{
    return qatomic_xchg(&spin->value, 1);
}

static inline bool qemu_spin_locked(QemuSpin *spin)
{
    return qatomic_read(&spin->value);
}

static inline void qemu_spin_unlock(QemuSpin *spin)
{
    qatomic_store_release(&spin->value, 0);
}

#endif /* AIOCTX_COMPAT_QEMU_THREAD_H */
