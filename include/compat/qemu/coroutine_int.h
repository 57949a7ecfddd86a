/*
 * aioctx compat: QEMU's qemu/coroutine_int.h — the layout of struct
 * Coroutine, for code that embeds, copies or inspects coroutine objects
 * (QEMU's tests copy a terminated coroutine away and back).
 *
 * The fields are QEMU's. aioctx keeps its own state outside these bytes:
 * it writes entry, entry_arg, caller, ctx, scheduled and locks_held as
 * mirrors while the coroutine is live (read them for debugging only), and
 * never touches the object between termination and the
 * qemu_coroutine_create that hands it out again.
 */
#ifndef AIOCTX_COMPAT_QEMU_COROUTINE_INT_H
#define AIOCTX_COMPAT_QEMU_COROUTINE_INT_H

#include "qemu/osdep.h"
#include "qemu/queue.h"
#include "qemu/coroutine.h"

typedef enum {
    COROUTINE_YIELD = 1,
    COROUTINE_TERMINATE = 2,
    COROUTINE_ENTER = 3,
} CoroutineAction;

struct Coroutine {
    CoroutineEntry *entry;
    void *entry_arg;
    Coroutine *caller;

    /* Only used by QEMU's pool; unused by aioctx. */
    QSLIST_ENTRY(Coroutine) pool_next;

    size_t locks_held;

    /* The context the coroutine last ran in. */
    AioContext *ctx;

    /* Name of the function that scheduled it, while scheduled. */
    const char *scheduled;

    /* Unused by aioctx (its queues link coroutines privately). */
    QSIMPLEQ_ENTRY(Coroutine) co_queue_next;
    QSIMPLEQ_HEAD(, Coroutine) co_queue_wakeup;
    QSLIST_ENTRY(Coroutine) co_scheduled_next;
};

#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct Coroutine) == AIOCTX_COROUTINE_SIZE,
               "struct Coroutine must match aioctx's AIOCTX_COROUTINE_SIZE");
#endif

#endif /* AIOCTX_COMPAT_QEMU_COROUTINE_INT_H */
