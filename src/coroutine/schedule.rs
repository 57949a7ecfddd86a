//! Coroutines and contexts (`qemu/aio.h`: `aio_co_schedule`, `aio_co_wake`,
//! `aio_co_enter`, `aio_co_reschedule_self`).
//!
//! Each context has a lock-free stack of scheduled coroutines
//! ([`ScheduledCoroutines`]). `aio_co_schedule` (any thread) marks the
//! coroutine scheduled (a second schedule before it ran is a fatal error
//! naming the first scheduler), pushes it, and on the empty -> non-empty
//! edge schedules a oneshot BH on the context; the BH, in the context's
//! home thread, takes the whole stack, reverses it to scheduling order and
//! enters each coroutine. A coroutine scheduled while it still runs in
//! another thread (it published itself and is about to yield) is entered
//! only once that thread switched it out.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::{CoBox, Scheduler, current, enter, require_current, wait_switched_out, yield_now};
use crate::context::Context;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::thread;

/// A context's coroutines waiting for its home thread (a Treiber stack
/// linked through `CoPrivate::sched_next`).
pub(crate) struct ScheduledCoroutines {
    head: AtomicPtr<CoBox>,
}

impl ScheduledCoroutines {
    pub(crate) const fn new() -> Self {
        ScheduledCoroutines {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `co`; true if the list was empty (a BH must be scheduled).
    fn push(&self, co: &CoBox) -> bool {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            co.p.sched_next.store(head, Ordering::Relaxed);
            match self.head.compare_exchange_weak(
                head,
                co.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return head.is_null(),
                Err(h) => head = h,
            }
        }
    }

    /// Takes everything, oldest first (reversed through `sched_next`).
    fn take_fifo(&self) -> *mut CoBox {
        let mut lifo = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        let mut fifo = ptr::null_mut();
        while !lifo.is_null() {
            // SAFETY: scheduled coroutines are alive until entered.
            let next = unsafe { &*lifo }.p.sched_next.load(Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { &*lifo }
                .p
                .sched_next
                .store(fifo, Ordering::Relaxed);
            fifo = lifo;
            lifo = next;
        }
        fifo
    }
}

/// The oneshot BH: enters the context's scheduled coroutines.
unsafe extern "C" fn run_scheduled(opaque: *mut c_void) {
    // SAFETY: `opaque` is the context the BH runs on (alive while it runs).
    let ctx = unsafe { &*opaque.cast::<Context>() };
    let mut co = ctx.scheduled_coroutines.take_fifo();
    while !co.is_null() {
        // SAFETY: scheduled coroutines are alive until entered.
        let c = unsafe { &*co };
        co = c.p.sched_next.load(Ordering::Relaxed);
        let res = wait_switched_out(c).and_then(|()| {
            c.clear_scheduled();
            enter(ctx, c)
        });
        if let Err(m) = res {
            fatal::die_here(&m.0);
        }
    }
}

/// `aio_co_schedule`: enter `co` from a BH of `ctx` (any thread).
pub(crate) fn aio_co_schedule(ctx: &Context, co: &CoBox) -> MisuseResult<()> {
    co.mark_scheduled(Scheduler::AioCoSchedule)?;
    push_scheduled(ctx, co);
    Ok(())
}

/// Pushes an already marked coroutine and makes sure a BH will run it.
fn push_scheduled(ctx: &Context, co: &CoBox) {
    // The coroutine may run (in ctx's thread) and drop the last reference
    // to ctx before this function returns: hold one meanwhile.
    ctx.ref_();
    if ctx.scheduled_coroutines.push(co) {
        ctx.schedule_oneshot(
            run_scheduled,
            ctx.as_ptr().cast_mut().cast(),
            c"aio_co_schedule".as_ptr(),
        );
    }
    // SAFETY: the reference taken above.
    unsafe { Context::unref(ctx.as_ptr()) };
}

/// `aio_co_enter`: if `ctx` is the current context of this thread, enter
/// now (outside a coroutine) or once the running coroutine yields or
/// terminates (inside one); else schedule in `ctx`.
///
/// `ctx` may be null (QEMU's semantics): a coroutine that ran in a thread
/// without a current context has none, and a thread without one is "its"
/// thread, so the hand-off is direct there. From a thread that has a
/// context there is nowhere to schedule it (QEMU would crash): a misuse.
pub(crate) fn aio_co_enter(ctx: *const Context, co: &CoBox) -> MisuseResult<()> {
    let here = thread::current_context();
    if !ptr::eq(ctx, here) {
        if ctx.is_null() {
            return Err(Misuse::new(format!(
                "coroutine '{}' has no AioContext (it was never entered, or ran in a thread without one) and is woken from a thread whose current context is {here:p}; there is no context to schedule it in",
                co.describe()
            )));
        }
        // SAFETY: non-null contexts given here are live (a coroutine's
        // context outlives it, QEMU's rule; or a validated handle).
        return aio_co_schedule(unsafe { &*ctx }, co);
    }
    let me = current();
    if me.is_null() {
        return enter(ctx, co);
    }
    if ptr::eq(me, co) {
        return Err(Misuse::new(format!(
            "coroutine '{}' tried to wake itself while running",
            co.describe()
        )));
    }
    // SAFETY: the running coroutine is alive.
    unsafe { &*me }.push_wakeup(co);
    Ok(())
}

/// `aio_co_wake`: `aio_co_enter` in the context the coroutine last ran in
/// (null if it ran, or was created, in a thread without a context).
pub(crate) fn aio_co_wake(co: &CoBox) -> MisuseResult<()> {
    aio_co_enter(co.context(), co)
}

struct Reschedule {
    co: *mut CoBox,
    new_ctx: *const Context,
}

unsafe extern "C" fn reschedule_bh(opaque: *mut c_void) {
    // SAFETY: points into the yielded coroutine's frame, alive until it is
    // entered again, which this BH is what causes.
    let r = unsafe { &*opaque.cast::<Reschedule>() };
    // SAFETY: both were live when the coroutine yielded and stay so.
    let (co, ctx) = unsafe { (&*r.co, &*r.new_ctx) };
    if let Err(m) = aio_co_schedule(ctx, co) {
        fatal::die_here(&m.0);
    }
}

/// `aio_co_reschedule_self`: continue the running coroutine in `new_ctx`.
/// Scheduling happens from a BH of the current context, after this
/// coroutine yielded, so the other thread never sees it running.
pub(crate) fn aio_co_reschedule_self(new_ctx: &Context) -> MisuseResult<()> {
    let co = require_current("aio_co_reschedule_self")?;
    let old = thread::current_context();
    if ptr::eq(old, new_ctx) {
        return Ok(());
    }
    let data = Reschedule {
        co: co.as_ptr(),
        new_ctx: new_ctx.as_ptr(),
    };
    if old.is_null() {
        // No loop of our own: schedule directly; the target waits until
        // this thread has switched the coroutine out.
        aio_co_schedule(new_ctx, co)?;
    } else {
        // SAFETY: the current context is alive.
        unsafe { &*old }.schedule_oneshot(
            reschedule_bh,
            ptr::from_ref(&data).cast_mut().cast(),
            c"aio_co_reschedule_self".as_ptr(),
        );
    }
    yield_now()
}
