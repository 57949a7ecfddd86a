/*
 * aioctx compat: QEMU's qemu/coroutine.h — coroutines plus CoQueue,
 * CoRwlock, co-sleep and the lockable-based wait macros.
 *
 * The functions are declared by aioctx.h; QEMU spells some of them as
 * macros over a QemuLockable (qemu/lockable.h), reproduced here:
 *   qemu_co_queue_wait(queue, lock)     lock: NULL, QemuMutex *, CoMutex *, ...
 *   qemu_co_queue_wait_flags(queue, lock, flags)
 *   qemu_co_enter_next(queue, lock)
 *   qemu_co_enter_all(queue, lock)
 */
#ifndef AIOCTX_COMPAT_QEMU_COROUTINE_H
#define AIOCTX_COMPAT_QEMU_COROUTINE_H

#include "qemu/osdep.h"
#include "qemu/coroutine-core.h"
#include "qemu/queue.h"
#include "qemu/timer.h"
#include "qemu/lockable.h"

typedef enum {
    /* Enqueue at the front of the queue (qemu_co_queue_wait_flags). */
    CO_QUEUE_WAIT_FRONT = 0x1,
} CoQueueWaitFlags;

/* A statically initialized, empty CoQueue. */
#define CO_QUEUE_INITIALIZER(name) { NULL, NULL }

#define qemu_co_queue_wait(queue, lock) \
    qemu_co_queue_wait_impl(queue, QEMU_MAKE_LOCKABLE(lock), 0)
#define qemu_co_queue_wait_flags(queue, lock, flags) \
    qemu_co_queue_wait_impl(queue, QEMU_MAKE_LOCKABLE(lock), (flags))
#define qemu_co_enter_next(queue, lock) \
    qemu_co_enter_next_impl(queue, QEMU_MAKE_LOCKABLE(lock))
#define qemu_co_enter_all(queue, lock) \
    qemu_co_enter_all_impl(queue, QEMU_MAKE_LOCKABLE(lock))

#endif /* AIOCTX_COMPAT_QEMU_COROUTINE_H */
