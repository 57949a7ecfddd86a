/*
 * Weak definitions of the names QEMU's block layer owns
 * (docs: ../shared/spec/qemu-abi.md section 5). Stable Rust cannot emit a
 * weak symbol, hence this file.
 *
 * register_aiocontext / unregister_aiocontext: called by the library for
 * every context (src/context.rs). QEMU's block/graph-lock.c defines them to
 * store the context's graph lock in ctx->bdrv_graph; without a block layer
 * they do nothing.
 *
 * bdrv_aio_cancel / bdrv_aio_cancel_async: QEMU's block/io.c defines them;
 * without it they forward to the library's implementation.
 */
#include "aioctx.h"

__attribute__((weak)) void register_aiocontext(AioContext *ctx)
{
    (void)ctx;
}

__attribute__((weak)) void unregister_aiocontext(AioContext *ctx)
{
    (void)ctx;
}

__attribute__((weak)) void bdrv_aio_cancel(BlockAIOCB *acb)
{
    aioctx_bdrv_aio_cancel(acb);
}

__attribute__((weak)) void bdrv_aio_cancel_async(BlockAIOCB *acb)
{
    aioctx_bdrv_aio_cancel_async(acb);
}
