//! Waiting across contexts (`qemu/aio-wait.h`).

use std::ffi::c_void;

use super::boundary::{context, ffi_call, required_c_fn};
use super::types::{AioContext, QEMUBHFunc};
use crate::fatal::Misuse;
use crate::wait;

pub use crate::wait::{AioWait, global_aio_wait};

/// Call after changing a condition that someone may be waiting on with
/// `AIO_WAIT_WHILE`: if anyone waits, wakes the main loop so that it
/// re-checks. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_wait_kick() {
    ffi_call(c"aio_wait_kick", || {
        wait::kick();
        Ok(())
    })
}

/// `AIO_WAIT_WHILE(ctx, cond(opaque))` as a function: while `cond(opaque)`
/// returns true, runs `aio_poll(ctx, true)` if this is `ctx`'s home thread,
/// else `aio_poll` of the main context (the caller must then be the main
/// loop thread). `ctx` may be NULL (wait on the main context). Returns
/// whether it waited.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_wait_while(
    ctx: *mut AioContext,
    cond: Option<unsafe extern "C" fn(opaque: *mut c_void) -> bool>,
    opaque: *mut c_void,
) -> bool {
    ffi_call(c"aioctx_wait_while", || {
        let ctx = if ctx.is_null() {
            None
        } else {
            Some(context(ctx)?)
        };
        let cond = cond.ok_or_else(|| Misuse::new("cond is NULL"))?;
        // SAFETY: the C caller passed `cond` for `opaque`.
        wait::wait_while(ctx, || unsafe { cond(opaque) })
    })
}

/// Runs `cb(opaque)` in `ctx`'s home thread and returns once it ran. Because
/// BHs run in scheduling order, every BH scheduled on `ctx` before this call
/// has run too. Call it from the main loop thread (it polls the main context
/// meanwhile) or from `ctx`'s home thread (it polls `ctx`), holding no lock
/// that `cb` or the loop needs; an unbound thread without the BQL sleeps
/// until `cb` ran.
#[unsafe(no_mangle)]
pub extern "C" fn aio_wait_bh_oneshot(
    ctx: *mut AioContext,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
) {
    ffi_call(c"aio_wait_bh_oneshot", || {
        wait::bh_oneshot(context(ctx)?, required_c_fn(cb)?, opaque)
    })
}
