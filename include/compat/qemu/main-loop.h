/*
 * aioctx compat: QEMU's qemu/main-loop.h — the main loop, the BQL.
 *
 * Functions are the library's (aioctx.h). Added here: QEMU's naming macros
 * qemu_bh_new / qemu_bh_new_guarded, BQL guards (BQL_LOCK_GUARD,
 * WITH_BQL_LOCK_GUARD), qemu_in_main_thread and the GLOBAL_STATE_CODE /
 * IO_CODE assertion markers, and QEMU's MainLoopPoll, the data that
 * main_loop_poll_add_notifier() notifiers receive.
 */
#ifndef AIOCTX_COMPAT_QEMU_MAIN_LOOP_H
#define AIOCTX_COMPAT_QEMU_MAIN_LOOP_H

#include <assert.h>
#include <glib.h>
#include <stdint.h>
#include "qemu/compiler.h"
#include "block/aio.h"
#include "qemu/notify.h"

/*
 * What a main-loop poll notifier (main_loop_poll_add_notifier) gets as
 * `data`: in state MAIN_LOOP_POLL_FILL before main_loop_wait polls (append
 * GPollFDs to `pollfds`, lower `timeout`: milliseconds, read as unsigned,
 * UINT32_MAX = infinite), then MAIN_LOOP_POLL_OK (revents filled in) or
 * MAIN_LOOP_POLL_ERR after. QEMU 10.2's layout (24 bytes).
 */
enum {
    MAIN_LOOP_POLL_FILL,
    MAIN_LOOP_POLL_ERR,
    MAIN_LOOP_POLL_OK,
};

typedef struct MainLoopPoll {
    int state;
    GArray *pollfds;
    int timeout;
} MainLoopPoll;

#define qemu_bh_new_guarded(cb, opaque, guard) \
    qemu_bh_new_full((cb), (opaque), (stringify(cb)), guard)
#define qemu_bh_new(cb, opaque) \
    qemu_bh_new_full((cb), (opaque), (stringify(cb)), NULL)

/* True in the thread that holds the BQL (QEMU's definition). */
static inline bool qemu_in_main_thread(void)
{
    return bql_locked();
}

/* Code that must run in the main loop thread with the BQL held. */
#define GLOBAL_STATE_CODE()                                         \
    do {                                                            \
        assert(qemu_in_main_thread());                              \
    } while (0)

/* Code that may run in any thread (I/O path). */
#define IO_CODE()                                                   \
    do {                                                            \
    } while (0)

#define IO_OR_GS_CODE()                                             \
    do {                                                            \
    } while (0)

typedef struct BQLLockAuto BQLLockAuto;

static inline BQLLockAuto *bql_auto_lock(const char *file, int line)
{
    (void)file;
    (void)line;
    bql_lock();
    return (BQLLockAuto *)(uintptr_t)1;
}

static inline void bql_auto_unlock(BQLLockAuto *l)
{
    (void)l;
    bql_unlock();
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(BQLLockAuto, bql_auto_unlock)

/* BQL_LOCK_GUARD(): take the BQL until the end of the scope. */
#define BQL_LOCK_GUARD() \
    g_autoptr(BQLLockAuto) _bql_lock_auto __attribute__((unused)) = \
        bql_auto_lock(__FILE__, __LINE__)

/* WITH_BQL_LOCK_GUARD() { ... }: the BQL is held for the block. */
#define WITH_BQL_LOCK_GUARD() \
    WITH_BQL_LOCK_GUARD_(glue(_bql_lock_auto, __COUNTER__))

#define WITH_BQL_LOCK_GUARD_(var)                                      \
    for (g_autoptr(BQLLockAuto) var = bql_auto_lock(__FILE__, (__LINE__)); \
         var;                                                           \
         bql_auto_unlock(var), var = NULL)

#endif /* AIOCTX_COMPAT_QEMU_MAIN_LOOP_H */
