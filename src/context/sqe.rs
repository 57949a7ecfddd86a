//! io_uring submission for callers (QEMU 10.2's `aio_add_sqe`, `block/aio.h`;
//! the `add_sqe` slot of `ctx->fdmon_ops`): a caller in a context's thread
//! has an SQE prepared by its callback, the SQE goes into the context's own
//! ring with the fd monitor's requests, and when it completes the loop
//! copies the completion into the caller's `CqeHandler` and calls its
//! `cb`, from `aio_poll` in that thread (after the fd handlers, before the
//! timers; it counts as progress).
//!
//! Availability: only a context whose fd monitor is io_uring
//! (`AIOCTX_FDMON=io_uring`, and a kernel that allows it) has a ring; its
//! `fdmon_ops->add_sqe` is non-NULL, so inline `aio_has_io_uring()` is
//! true. Elsewhere (the poll and epoll monitors, or after a failed
//! `io_uring_enter` moved the context down to epoll) it is NULL, and a call
//! anyway is the one-line abort of any misuse: nothing was queued, so
//! nothing is lost.
//!
//! Ownership: the SQE's buffers and the `CqeHandler` belong to the caller
//! and must stay valid until `cb` has been called. Every request gets
//! exactly one call per completion (a multishot request may have several,
//! the last without `IORING_CQE_F_MORE`):
//! - at context teardown, requests still in flight are cancelled, waited
//!   for, and completed (`cqe.res` is `-ECANCELED`, or the request's own
//!   result if it finished first) before the context goes; `cb` runs in
//!   the thread dropping the last reference;
//! - when `io_uring_enter` starts failing, requests the kernel never saw
//!   complete with `-errno`, and the ones in the kernel are still
//!   delivered from the old ring.
//!
//! A context run as a GSource has GLib watch the ring's fd as well
//! (`HandlersLocal::watch_ring_in_gsource`), so a completion wakes a
//! blocking `g_main_context_iteration` (QEMU's main loop is one).
//!
//! Threading: home thread only (the thread whose current context this is).
//! `prep_sqe` and `cb` run with no lock and no borrow held.

use std::ffi::c_void;
use std::mem::{align_of, offset_of, size_of};

use super::Context;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::fdmon::io_uring::UserCompletion;
use crate::handle::Handle;

/// `void (*prep_sqe)(struct io_uring_sqe *sqe, void *opaque)`.
pub(crate) type PrepSqeFn = unsafe extern "C" fn(sqe: *mut c_void, opaque: *mut c_void);

/// QEMU's `CqeHandler` as the loop sees it (32 bytes; the exported type is
/// `ffi::types::CqeHandler`): `cb`, the `QSIMPLEQ_ENTRY` (unused here), and
/// the completion's `user_data`, `res`, `flags`.
#[repr(C)]
pub(crate) struct CqeHandlerView {
    cb: Option<unsafe extern "C" fn(*mut CqeHandlerView)>,
    next: *mut c_void,
    user_data: u64,
    res: i32,
    flags: u32,
}

const _: () = {
    assert!(size_of::<CqeHandlerView>() == 32 && align_of::<CqeHandlerView>() == 8);
    assert!(offset_of!(CqeHandlerView, user_data) == 16);
    assert!(offset_of!(CqeHandlerView, res) == 24 && offset_of!(CqeHandlerView, flags) == 28);
};

/// The kernel's 64-byte `struct io_uring_sqe`, zeroed for `prep_sqe`.
#[repr(C, align(8))]
struct RawSqe([u8; 64]);

const _: () = assert!(size_of::<RawSqe>() == size_of::<::io_uring::squeue::Entry>());

impl Context {
    /// `aio_add_sqe` on this context (the caller's current one).
    ///
    /// # Safety
    /// `prep` is safe to call with a zeroed SQE and `opaque`; `handler`
    /// points to a `CqeHandler` that, like everything the prepared SQE
    /// points at, stays valid until its `cb` has been called.
    pub(crate) unsafe fn add_sqe(
        &self,
        prep: PrepSqeFn,
        opaque: *mut c_void,
        handler: *mut CqeHandlerView,
    ) -> MisuseResult<()> {
        let guard = self.enter_loop()?;
        if let Err(backend) = self.local_handlers(&guard).can_queue_user_sqe() {
            return Err(no_ring(backend));
        }
        let mut raw = RawSqe([0; 64]);
        // SAFETY: a zeroed, aligned 64-byte SQE, ours; no borrow is held.
        unsafe { prep((&raw mut raw).cast(), opaque) };
        // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's
        // `io_uring_sqe` (64 bytes, size checked above), plain data for
        // which any bit pattern is valid.
        let sqe: ::io_uring::squeue::Entry = unsafe { std::mem::transmute(raw) };
        let mut local = self.local_handlers(&guard);
        // SAFETY: the caller keeps the SQE's buffers and the handler valid
        // until the handler's completion is delivered.
        if let Err(backend) = unsafe { local.queue_user_sqe(sqe, handler as u64) } {
            // `prep` moved the context to another monitor: it cannot.
            return Err(no_ring(backend));
        }
        self.refresh_watches_fds(&local);
        Ok(())
    }

    /// Calls the `CqeHandler`s of the completed requests; whether any ran.
    /// Inline up to the check that there are some (every loop iteration).
    #[inline(always)]
    pub(crate) fn dispatch_user_completions(&self, guard: &super::LoopGuard<'_>) -> bool {
        if !self.local_handlers(guard).has_user_completions() {
            return false;
        }
        self.call_user_completions(guard)
    }

    /// [`Context::dispatch_user_completions`] when there are some.
    #[inline(never)]
    fn call_user_completions(&self, guard: &super::LoopGuard<'_>) -> bool {
        let done = {
            let mut local = self.local_handlers(guard);
            let done = local.take_user_completions();
            self.refresh_watches_fds(&local);
            done
        };
        // SAFETY: each handler was given to `add_sqe` and stays valid until
        // this call (the caller's promise); no borrow is held.
        unsafe { call_handlers(done) };
        true
    }

    /// Teardown: cancels callers' requests still in flight, waits for
    /// them, and calls their handlers (see the module docs). Callbacks may
    /// queue more requests; those are cancelled in the next round.
    pub(super) fn cancel_user_requests(&self) {
        for _ in 0..16 {
            let done = {
                let mut local = self.local.handlers.borrow_mut();
                if !local.has_user_requests_or_completions() {
                    return;
                }
                local.cancel_user_requests();
                local.take_user_completions()
            };
            // SAFETY: as in `call_user_completions`.
            unsafe { call_handlers(done) };
        }
        fatal::die_here(
            "io_uring completion handlers keep submitting requests (aio_add_sqe) while the context is torn down",
        );
    }
}

/// Fills each completion into its handler and calls `cb`.
///
/// # Safety
/// Each `handler` address is a live `CqeHandler` given to `add_sqe`.
unsafe fn call_handlers(done: Vec<UserCompletion>) {
    for c in done {
        let h = c.handler as *mut CqeHandlerView;
        // SAFETY: live and caller-owned (see above); we are the only
        // writer until `cb` runs.
        let cb = unsafe {
            (*h).user_data = c.handler;
            (*h).res = c.res;
            (*h).flags = c.flags;
            (*h).cb
        };
        if let Some(cb) = cb {
            // SAFETY: the caller's callback for its own handler.
            unsafe { cb(h) };
        }
    }
}

#[cold]
fn no_ring(backend: &str) -> Misuse {
    Misuse::new(format!(
        "io_uring submission is not available: this context's fd monitor is {backend} \
         (fdmon_ops->add_sqe is NULL; check aio_has_io_uring() first; AIOCTX_FDMON=io_uring enables it)"
    ))
}

/// `ctx->fdmon_ops->add_sqe` of the io_uring table: QEMU's
/// `void (*add_sqe)(AioContext *, prep_sqe, opaque, CqeHandler *)`, for
/// code that calls through the table rather than `aio_add_sqe`.
pub(crate) unsafe extern "C" fn fdmon_io_uring_add_sqe(
    ctx: *mut c_void,
    prep: Option<PrepSqeFn>,
    opaque: *mut c_void,
    handler: *mut c_void,
) {
    // SAFETY: `from_handle` checks any pointer (NULL, misaligned, freed).
    let res = unsafe { Context::from_handle(ctx.cast()) }.and_then(|c| {
        let prep = prep.ok_or_else(|| Misuse::new("prep_sqe is NULL"))?;
        if handler.is_null() || !handler.cast::<CqeHandlerView>().is_aligned() {
            return Err(Misuse::new("cqe_handler is NULL or misaligned"));
        }
        // SAFETY: forwarded: QEMU's contract for add_sqe's arguments.
        unsafe { c.add_sqe(prep, opaque, handler.cast()) }
    });
    if let Err(m) = res {
        fatal::die("aio_add_sqe", &m.0);
    }
}
