/*
 * aioctx compat: QEMU's block/aio.h — AioContext and bottom halves.
 *
 * The functions are the library's (aioctx.h). Like QEMU, aio_bh_new() and
 * aio_bh_schedule_oneshot() are macros that name the BH after its callback
 * (the name appears in diagnostics, e.g. a BH still scheduled when its
 * context is freed). The library also exports real functions of those
 * names for callers that cannot use the macros (take their address, or
 * #undef them).
 */
#ifndef AIOCTX_COMPAT_BLOCK_AIO_H
#define AIOCTX_COMPAT_BLOCK_AIO_H

#include "qemu/osdep.h"
#include "qemu/queue.h"
#include "qemu/event_notifier.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qemu/coroutine-core.h"
#include "qemu/aiocb.h"

#define aio_bh_schedule_oneshot(ctx, cb, opaque) \
    aio_bh_schedule_oneshot_full((ctx), (cb), (opaque), (stringify(cb)))

#define aio_bh_new_guarded(ctx, cb, opaque, guard) \
    aio_bh_new_full((ctx), (cb), (opaque), (stringify(cb)), guard)

#define aio_bh_new(ctx, cb, opaque) \
    aio_bh_new_full((ctx), (cb), (opaque), (stringify(cb)), NULL)

/* FDMonOps, fdmon_poll_ops, CqeHandler and aio_add_sqe are in aioctx.h. */

/*
 * The members of AioContext that QEMU's inline functions and block layer
 * read, at QEMU 10.2's offsets (the rest of the 608 bytes is private).
 */
typedef struct AioctxContextPublic {
    GSource source; /* aio_get_g_source(ctx) == &ctx->source, as in QEMU */
    unsigned char private0[144 - sizeof(GSource)];
    void *bdrv_graph;
    unsigned char private1[496 - 152];
    QEMUTimerListGroup tlg;
    unsigned char private2[560 - 528];
    int64_t aio_max_batch;
    unsigned char private3[592 - 568];
    const FDMonOps *fdmon_ops;
    unsigned char private4[608 - 600];
} AioctxContextPublic;

/* Whether aio_add_sqe() works on ctx: its fd monitor is io_uring
 * (AIOCTX_FDMON=io_uring, where the kernel allows it). */
static inline bool aioctx_has_io_uring_in(AioContext *ctx)
{
    return ctx && ((const AioctxContextPublic *)ctx)->fdmon_ops->add_sqe != NULL;
}

/* QEMU 10.2's form, aio_has_io_uring(void): the current context's. */
static inline bool aioctx_has_io_uring_here(void)
{
    return aioctx_has_io_uring_in(qemu_get_current_aio_context());
}

/*
 * aio_has_io_uring() as QEMU 10.2 spells it (no argument: the current
 * thread's context), or aio_has_io_uring(ctx) for a given context (the
 * form earlier aioctx headers had).
 */
#define AIOCTX_HAS_IO_URING_PICK(_0, _1, name, ...) name
#define aio_has_io_uring(...)                                              \
    AIOCTX_HAS_IO_URING_PICK(_0, ##__VA_ARGS__, aioctx_has_io_uring_in,    \
                             aioctx_has_io_uring_here)(__VA_ARGS__)

#endif /* AIOCTX_COMPAT_BLOCK_AIO_H */
