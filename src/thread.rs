//! Threads and contexts: the current context of each thread, the main
//! context, the big QEMU lock (BQL) and the home-thread rule
//! (`qemu/main-loop.h`: `qemu_get_current_aio_context`,
//! `qemu_set_current_aio_context`, `qemu_get_aio_context`, `bql_*`,
//! `in_aio_context_home_thread`).
//!
//! Rules (api.md §2):
//! - A thread is bound to at most one context, once
//!   (`qemu_set_current_aio_context`); `qemu_init_main_loop` binds the main
//!   context to the calling thread.
//! - `qemu_get_current_aio_context()` is the bound context, else the main
//!   context while this thread holds the BQL, else NULL.
//! - `in_aio_context_home_thread(ctx)`: ctx is the current context, or ctx is
//!   the main context and this thread holds the BQL.
//! - A context bound to no thread may be polled by any one thread at a time;
//!   while that thread polls it, it is that thread's current context.
//! - The BQL is one process-wide, non-recursive mutex; `bql_locked()` says
//!   whether *this* thread holds it.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use parking_lot::lock_api::RawMutex as _;

use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};

thread_local! {
    static CURRENT: Cell<*const Context> = const { Cell::new(ptr::null()) };
    static HOLDS_BQL: Cell<bool> = const { Cell::new(false) };
    /// An unbound context this thread is polling right now: for the time of
    /// that poll it is the thread's current context (see `enter_polling`).
    static POLLING: Cell<*const Context> = const { Cell::new(ptr::null()) };
    /// Its address identifies the thread (see [`thread_token`]).
    static TOKEN: u8 = const { 0 };
}

static MAIN_CONTEXT: AtomicPtr<Context> = AtomicPtr::new(ptr::null_mut());
static BQL: parking_lot::RawMutex = parking_lot::RawMutex::INIT;

/// A cheap identity for the calling thread: the address of a thread-local.
/// Distinct for all live threads (an exited thread's may be reused).
#[inline]
pub(crate) fn thread_token() -> *mut u8 {
    TOKEN.with(|t| ptr::from_ref(t).cast_mut())
}

/// The context bound to this thread, or null.
#[inline]
pub(crate) fn bound_context() -> *const Context {
    CURRENT.with(Cell::get)
}

/// The main context, or null before `qemu_init_main_loop`.
#[inline]
pub(crate) fn main_context() -> *const Context {
    MAIN_CONTEXT.load(Ordering::Acquire)
}

#[inline]
pub(crate) fn holds_bql() -> bool {
    HOLDS_BQL.with(Cell::get)
}

/// Makes `ctx`, an unbound context this thread starts polling, the current
/// context until [`leave_polling`] restores the returned previous value. So
/// inside its callbacks `qemu_get_current_aio_context()` is the context that
/// runs them, as QEMU code expects.
pub(crate) fn enter_polling(ctx: *const Context) -> *const Context {
    POLLING.with(|p| p.replace(ctx))
}

pub(crate) fn leave_polling(prev: *const Context) {
    POLLING.with(|p| p.set(prev));
}

/// `qemu_get_current_aio_context`: the unbound context being polled, else
/// the bound context, else the main context while holding the BQL.
#[inline]
pub(crate) fn current_context() -> *const Context {
    let polling = POLLING.with(Cell::get);
    if !polling.is_null() {
        return polling;
    }
    let bound = bound_context();
    if !bound.is_null() {
        bound
    } else if holds_bql() {
        main_context()
    } else {
        ptr::null()
    }
}

/// `in_aio_context_home_thread`.
#[inline]
pub(crate) fn in_home_thread(ctx: &Context) -> bool {
    let ctx = ptr::from_ref(ctx);
    ctx == bound_context()
        || ctx == POLLING.with(Cell::get)
        || (ctx == main_context() && holds_bql())
}

/// `qemu_set_current_aio_context`: binds this thread to `ctx`, once.
pub(crate) fn bind_current(ctx: &Context) -> MisuseResult<()> {
    if !bound_context().is_null() {
        return Err(Misuse::new(
            "this thread is already bound to a context (the binding is once per thread)",
        ));
    }
    ctx.claim_home_thread(thread_token())?;
    CURRENT.with(|c| c.set(ptr::from_ref(ctx)));
    Ok(())
}

/// Forgets this thread's binding if it is `ctx` (the context is going away).
pub(crate) fn unbind_if_current(ctx: &Context) {
    CURRENT.with(|c| {
        if c.get() == ptr::from_ref(ctx) {
            c.set(ptr::null());
        }
    });
}

/// Publishes the main context (once); false if one was already set.
pub(crate) fn set_main_context(ctx: *const Context) -> bool {
    MAIN_CONTEXT
        .compare_exchange(
            ptr::null_mut(),
            ctx.cast_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

pub(crate) fn bql_lock() -> MisuseResult<()> {
    if holds_bql() {
        return Err(Misuse::new(
            "this thread already holds the BQL (it is not recursive)",
        ));
    }
    BQL.lock();
    HOLDS_BQL.with(|h| h.set(true));
    Ok(())
}

pub(crate) fn bql_unlock() -> MisuseResult<()> {
    if !holds_bql() {
        return Err(Misuse::new("this thread does not hold the BQL"));
    }
    HOLDS_BQL.with(|h| h.set(false));
    // SAFETY: this thread holds the lock (checked above via HOLDS_BQL, which
    // is set only after `lock()` returned in this same thread).
    unsafe { BQL.unlock() };
    Ok(())
}
