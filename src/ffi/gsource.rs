//! GLib integration (`qemu/aio.h`: `aio_get_g_source`, `aio_prepare`,
//! `aio_pending`, `aio_dispatch`).

use super::boundary::{context, ffi_call};
use super::types::{AioContext, GSource};

/// A new reference to `ctx`'s GSource: attached to a `GMainContext`, it runs
/// `ctx`'s BHs, fd handlers and timers from `g_main_context_iteration`, with
/// the same semantics as `aio_poll` (it must then be iterated in `ctx`'s
/// home thread). As in QEMU, the source is the context's own first bytes
/// (`&ctx->source`, so the result is `ctx` itself); the reference may
/// outlive the context (it is then destroyed: detached, never dispatched).
/// Release it with `g_source_unref`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_get_g_source(ctx: *mut AioContext) -> *mut GSource {
    ffi_call(c"aio_get_g_source", || Ok(context(ctx)?.g_source().cast()))
}

/// Runs each `io_poll` callback once (when every handler has one); returns
/// true if one found work (the next `aio_dispatch` handles it). Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_prepare(ctx: *mut AioContext) -> bool {
    ffi_call(c"aio_prepare", || {
        let ctx = context(ctx)?;
        let guard = ctx.enter_loop()?;
        Ok(ctx.gsource_prepare(&guard))
    })
}

/// True if an fd handler of `ctx` is ready to run (checks without
/// blocking). Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_pending(ctx: *mut AioContext) -> bool {
    ffi_call(c"aio_pending", || {
        let ctx = context(ctx)?;
        let guard = ctx.enter_loop()?;
        Ok(ctx.pending(&guard))
    })
}

/// Runs what is ready on `ctx` without waiting: BHs, ready fd handlers,
/// expired timers. Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_dispatch(ctx: *mut AioContext) {
    ffi_call(c"aio_dispatch", || {
        let ctx = context(ctx)?;
        let guard = ctx.enter_loop()?;
        ctx.dispatch(&guard);
        Ok(())
    })
}
