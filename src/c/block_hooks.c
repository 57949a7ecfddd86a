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
 *
 * Overriding works when the program links the static library: its strong
 * definitions win over these. The shared libraries (cargo's cdylib and
 * scripts/build-shared-lib.sh's) export none of the four; their own calls
 * bind to these defaults. Exporting them would take a Rust definition (the
 * cdylib exports only Rust items, see src/ffi/c_exports.rs), which is
 * strong and would clash with the program's in a static link; and a
 * program's definition would then override the library's only by ELF
 * interposition.
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
