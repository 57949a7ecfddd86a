//! Contexts and the loop (`qemu/aio.h`).

use std::ffi::c_void;
use std::ptr;

use super::boundary::{check_ptr, context, context_handle, ffi_call, ffi_call_leaf};
use super::error::propagate;
use super::types::{AioContext, CqeHandler, Error, io_uring_sqe};
use crate::context::{Context, CqeHandlerView, PrepSqeFn};
use crate::fatal::{Misuse, MisuseResult};

/// Creates an event loop with its own wakeup notifier and one reference,
/// owned by the caller (drop it with `aio_context_unref`).
///
/// On failure returns NULL and reports through `errp` (NULL, `&error_abort`,
/// `&error_fatal`, or an `Error **` holding NULL).
///
/// The new context is bound to no thread: any one thread at a time may poll
/// it until a thread binds it with `qemu_set_current_aio_context`.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_new(errp: *mut *mut Error) -> *mut AioContext {
    ffi_call(c"aio_context_new", || match Context::new() {
        Ok(ctx) => Ok(context_handle(ctx)),
        Err(e) => {
            // SAFETY: errp is an `Error **` per the contract above.
            unsafe {
                propagate(
                    "aio_context_new",
                    errp,
                    &format!("failed to initialize the context's event notifier: {e}"),
                )
            };
            Ok(ptr::null_mut())
        }
    })
}

/// Takes a reference to `ctx`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_ref(ctx: *mut AioContext) {
    ffi_call(c"aio_context_ref", || {
        context(ctx)?.ref_();
        Ok(())
    })
}

/// Drops a reference to `ctx`. Any thread. The last one frees the context:
/// a BH still scheduled on it is a fatal error naming the BH (as in QEMU);
/// a BH allocated but never deleted is reported with one warning line naming
/// it, then freed. The main context is never freed.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_unref(ctx: *mut AioContext) {
    ffi_call(c"aio_context_unref", || {
        let ctx = context(ctx)?;
        // SAFETY: live (validated) and the caller owns this reference.
        unsafe { Context::unref(ctx.as_ptr()) };
        Ok(())
    })
}

/// Makes a blocked (or about to block) `aio_poll` of `ctx` return. Any
/// thread. Costs no syscall when nobody is blocked.
#[unsafe(no_mangle)]
pub extern "C" fn aio_notify(ctx: *mut AioContext) {
    ffi_call_leaf(c"aio_notify", |api| {
        context(ctx)?.notify_from(api);
        Ok(())
    })
}

/// Acknowledges notifications of `ctx` (done by `aio_poll` itself; exported
/// for QEMU compatibility). Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_notify_accept(ctx: *mut AioContext) {
    ffi_call(c"aio_notify_accept", || {
        context(ctx)?.notify_state().accept();
        Ok(())
    })
}

/// Runs one iteration of `ctx`'s loop: scheduled bottom halves, in
/// scheduling order. With `blocking`, first waits until something is ready
/// or `aio_notify` is called. Returns true if a callback made progress (an
/// idle BH does not count).
///
/// Only in `ctx`'s home thread (see `in_aio_context_home_thread`); a context
/// bound to no thread may be polled by one thread at a time. May be called
/// recursively from a callback of the same context.
#[unsafe(no_mangle)]
pub extern "C" fn aio_poll(ctx: *mut AioContext, blocking: bool) -> bool {
    ffi_call(c"aio_poll", || context(ctx)?.poll(blocking))
}

/// Nanoseconds until the next event of `ctx`: 0 if a BH is scheduled,
/// 10 ms if only idle BHs are, -1 if nothing is pending. Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_compute_timeout(ctx: *mut AioContext) -> i64 {
    ffi_call(c"aio_compute_timeout", || {
        let ctx = context(ctx)?;
        let guard = ctx.enter_loop()?;
        Ok(ctx.compute_timeout(&guard))
    })
}

/// Runs the BHs scheduled before this call, once, in scheduling order; BHs
/// scheduled meanwhile wait for the next call. Returns 1 if a non-idle BH
/// ran, else 0. Home thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_bh_poll(ctx: *mut AioContext) -> i32 {
    ffi_call(c"aio_bh_poll", || {
        let ctx = context(ctx)?;
        let guard = ctx.enter_loop()?;
        Ok(i32::from(ctx.bh_poll(&guard)))
    })
}

/// Stores the maximum batch size for `ctx`'s asynchronous I/O (QEMU compat;
/// read it back with `aioctx_context_get_aio_max_batch`). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_set_aio_params(ctx: *mut AioContext, max_batch: i64) {
    ffi_call(c"aio_context_set_aio_params", || {
        context(ctx)?.set_aio_max_batch(max_batch);
        Ok(())
    })
}

/// The value last stored with `aio_context_set_aio_params` (0 by default).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_context_get_aio_max_batch(ctx: *mut AioContext) -> i64 {
    ffi_call(c"aioctx_context_get_aio_max_batch", || {
        Ok(context(ctx)?.aio_max_batch())
    })
}

/// QEMU 10.2's io_uring submission for callers (`aio_add_sqe`, see
/// `context/sqe.rs`): `prep_sqe` fills a zeroed SQE, which is submitted
/// with the current context's next wait; when it completes, `aio_poll` in
/// this thread fills `cqe_handler->cqe` and calls `cqe_handler->cb`. Only
/// where inline `aio_has_io_uring()` is true (the context's fd monitor is
/// io_uring); elsewhere a call is a one-line abort.
#[unsafe(no_mangle)]
pub extern "C" fn aio_add_sqe(
    prep_sqe: Option<unsafe extern "C" fn(*mut io_uring_sqe, *mut c_void)>,
    opaque: *mut c_void,
    cqe_handler: *mut CqeHandler,
) {
    ffi_call(c"aio_add_sqe", || -> MisuseResult<()> {
        let prep = prep_sqe.ok_or_else(|| Misuse::new("prep_sqe is NULL"))?;
        check_ptr(cqe_handler, "cqe_handler")?;
        // SAFETY: the current context is live while it is current.
        let ctx = unsafe { crate::thread::current_context().as_ref() }.ok_or_else(|| {
            Misuse::new("no current AioContext in this thread (call it from a context's thread)")
        })?;
        // SAFETY: `PrepSqeFn` is the same C signature with `void *` for the
        // SQE pointer; the caller keeps the SQE's buffers and the handler
        // valid until `cb` runs (the aio_add_sqe contract).
        unsafe {
            ctx.add_sqe(
                std::mem::transmute::<
                    unsafe extern "C" fn(*mut io_uring_sqe, *mut c_void),
                    PrepSqeFn,
                >(prep),
                opaque,
                cqe_handler.cast::<CqeHandlerView>(),
            )
        }
    })
}
