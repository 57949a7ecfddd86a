//! Bottom halves (`qemu/aio.h`).

use std::ffi::{c_char, c_void};
use std::ptr;

use super::boundary::{bh_handle, context, ffi_call, ffi_call_leaf, live_bh, required_c_fn};
use super::types::{AioContext, MemReentrancyGuard, QEMUBH, QEMUBHFunc};
use crate::bh::Bh;
use crate::context::Context;
use crate::fatal::MisuseResult;

/// The body of the `*_bh_new*` functions: a new unscheduled BH of `ctx`.
pub(super) fn new_bh(
    ctx: &Context,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
    name: *const c_char,
    reentrancy_guard: *mut MemReentrancyGuard,
) -> MisuseResult<*mut QEMUBH> {
    let cb = required_c_fn(cb)?;
    Ok(bh_handle(ctx.bh_new(cb, opaque, name, reentrancy_guard)))
}

/// Allocates a bottom half of `ctx` that calls `cb(opaque)`; not scheduled.
/// Any thread. Free it with `qemu_bh_delete`.
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_new(
    ctx: *mut AioContext,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
) -> *mut QEMUBH {
    ffi_call(c"aio_bh_new", || {
        new_bh(context(ctx)?, cb, opaque, ptr::null(), ptr::null_mut())
    })
}

/// Like `aio_bh_new`, with a debug `name` (may be NULL; must stay valid while
/// the BH exists, e.g. a string literal) used in diagnostics, and an optional
/// reentrancy guard whose `engaged_in_io` is true while `cb` runs.
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_new_full(
    ctx: *mut AioContext,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
    name: *const c_char,
    reentrancy_guard: *mut MemReentrancyGuard,
) -> *mut QEMUBH {
    ffi_call(c"aio_bh_new_full", || {
        new_bh(context(ctx)?, cb, opaque, name, reentrancy_guard)
    })
}

/// Allocates a bottom half that runs `cb(opaque)` once on `ctx`'s next
/// dispatch, then frees itself. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_schedule_oneshot(
    ctx: *mut AioContext,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
) {
    ffi_call(c"aio_bh_schedule_oneshot", || {
        context(ctx)?.schedule_oneshot(required_c_fn(cb)?, opaque, ptr::null());
        Ok(())
    })
}

/// Like `aio_bh_schedule_oneshot`, with a debug `name` (may be NULL; must
/// stay valid until the BH ran).
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_schedule_oneshot_full(
    ctx: *mut AioContext,
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
    name: *const c_char,
) {
    ffi_call(c"aio_bh_schedule_oneshot_full", || {
        context(ctx)?.schedule_oneshot(required_c_fn(cb)?, opaque, name);
        Ok(())
    })
}

/// Schedules `bh` to run on the next dispatch of its context and wakes the
/// context. Any thread; wait-free (no lock, no allocation). Scheduling a
/// scheduled BH does nothing more: it runs once.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_schedule(bh: *mut QEMUBH) {
    ffi_call_leaf(c"qemu_bh_schedule", |api| live_bh(bh)?.schedule(false, api))
}

/// Like `qemu_bh_schedule`, but the BH does not count as progress for
/// `aio_poll`, and a blocked loop may take up to ~10 ms to run it.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_schedule_idle(bh: *mut QEMUBH) {
    ffi_call_leaf(c"qemu_bh_schedule_idle", |api| {
        live_bh(bh)?.schedule(true, api)
    })
}

/// Unschedules `bh`; it stays allocated and can be scheduled again. Any
/// thread. A callback already running is not interrupted.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_cancel(bh: *mut QEMUBH) {
    ffi_call_leaf(c"qemu_bh_cancel", |_| {
        live_bh(bh)?.cancel();
        Ok(())
    })
}

/// Cancels and frees `bh`. Any thread, including from `bh`'s own callback.
/// The memory is released by the context's loop once it no longer
/// references the BH; the handle must not be used again.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_delete(bh: *mut QEMUBH) {
    ffi_call(c"qemu_bh_delete", || live_bh(bh)?.delete())
}

/// Calls `bh`'s callback now, engaging its reentrancy guard (if any) while
/// it runs. Does not change whether `bh` is scheduled.
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_call(bh: *mut QEMUBH) {
    ffi_call(c"aio_bh_call", || {
        let bh = live_bh(bh)?;
        // SAFETY: validated live BH; nothing of it is used after the call.
        unsafe { Bh::call(bh) };
        Ok(())
    })
}
