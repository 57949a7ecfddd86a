/*
 * aioctx compat: QEMU's block/aio-wait.h — AIO_WAIT_WHILE.
 *
 * AIO_WAIT_WHILE(ctx, cond): count this thread in global_aio_wait, then
 * while cond is true, run aio_poll(ctx, true) if this is ctx's home thread,
 * else aio_poll of the main context (the caller must then be the main loop
 * thread). Whoever makes cond false from another thread calls
 * aio_wait_kick(). Evaluates to true if it polled at least once.
 * ctx may be NULL (wait on the main context). As in QEMU 9+, no context
 * lock is involved, so AIO_WAIT_WHILE_UNLOCKED is the same macro.
 */
#ifndef AIOCTX_COMPAT_BLOCK_AIO_WAIT_H
#define AIOCTX_COMPAT_BLOCK_AIO_WAIT_H

#include "block/aio.h"
#include "qemu/main-loop.h"

#define AIO_WAIT_WHILE_INTERNAL(ctx, cond) ({                      \
    bool waited_ = false;                                          \
    AioWait *wait_ = &global_aio_wait;                             \
    AioContext *ctx_ = (ctx);                                      \
    /* Increment wait_->num_waiters before evaluating cond. */     \
    qatomic_inc(&wait_->num_waiters);                              \
    /* Paired with the barrier in aio_wait_kick(). */              \
    smp_mb__after_rmw();                                           \
    if (ctx_ && in_aio_context_home_thread(ctx_)) {                \
        while ((cond)) {                                           \
            aio_poll(ctx_, true);                                  \
            waited_ = true;                                        \
        }                                                          \
    } else {                                                       \
        assert(qemu_get_current_aio_context() ==                   \
               qemu_get_aio_context());                            \
        while ((cond)) {                                           \
            aio_poll(qemu_get_aio_context(), true);                \
            waited_ = true;                                        \
        }                                                          \
    }                                                              \
    qatomic_dec(&wait_->num_waiters);                              \
    waited_; })

#define AIO_WAIT_WHILE(ctx, cond)                                  \
    AIO_WAIT_WHILE_INTERNAL(ctx, cond)

#define AIO_WAIT_WHILE_UNLOCKED(ctx, cond)                         \
    AIO_WAIT_WHILE_INTERNAL(ctx, cond)

/* True if this thread is not the main loop thread. */
static inline bool in_iothread(void)
{
    return qemu_get_current_aio_context() != qemu_get_aio_context();
}

#endif /* AIOCTX_COMPAT_BLOCK_AIO_WAIT_H */
