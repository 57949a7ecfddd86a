//! Coroutines and contexts (`qemu/aio.h`: `aio_co_schedule`, `aio_co_wake`,
//! `aio_co_enter`, `aio_co_reschedule_self`).
//!
//! Each context has a lock-free queue of scheduled coroutines
//! ([`ScheduledCoroutines`], the generic MPSC queue of `mpsc.rs`).
//! `aio_co_schedule` (any thread) marks the coroutine scheduled (a second
//! schedule before it ran is a fatal error naming the first scheduler),
//! pushes it, and on the empty -> non-empty edge schedules a oneshot BH on
//! the context; the BH, in the context's home thread, takes the whole
//! queue in scheduling order (FIFO) and enters each coroutine. A coroutine scheduled while it still runs in
//! another thread (it published itself and is about to yield) is entered
//! only once that thread switched it out.

use std::ffi::c_void;
use std::ptr;

use super::{CoBox, Scheduler, current, enter, require_current, wait_switched_out, yield_now};
use crate::atomics::{AtomicPtr, Ordering};
use crate::context::Context;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::mpsc::{MpscNode, MpscQueue};
use crate::thread;

/// A context's coroutines waiting for its home thread: the generic MPSC
/// queue (`mpsc.rs`), linked through `CoPrivate::sched_next`, so pushing
/// allocates nothing. A coroutine is pushed at most once until it is taken
/// (`mark_scheduled` fails a second schedule).
pub(crate) type ScheduledCoroutines = MpscQueue<CoBox>;

impl MpscNode for CoBox {
    fn next(&self) -> &AtomicPtr<CoBox> {
        &self.p.sched_next
    }
}

/// The entry symbol of each coroutine waiting in `queue`, oldest first (for
/// `aioctx_context_dump`). Coroutines the BH already took and is entering
/// one by one are not listed.
///
/// # Safety
/// The caller is the context's home thread (holds its `LoopGuard`) or owns
/// the context (teardown): the only one that takes coroutines off the queue
/// and enters them, so the linked ones stay alive and their links stay put
/// while it walks.
pub(crate) unsafe fn describe_scheduled(queue: &ScheduledCoroutines) -> Vec<String> {
    let mut names = Vec::new();
    let mut co = queue.peek();
    while !co.is_null() {
        // SAFETY: scheduled coroutines are alive until entered, which only
        // the caller's thread does (see above); their links were published
        // by the push that `peek`'s Acquire load saw.
        let c = unsafe { &*co };
        names.push(c.describe());
        co = c.p.sched_next.load(Ordering::Relaxed);
    }
    names.reverse();
    names
}

/// The oneshot BH: enters the context's scheduled coroutines.
unsafe extern "C" fn run_scheduled(opaque: *mut c_void) {
    // SAFETY: `opaque` is the context the BH runs on (alive while it runs).
    let ctx = unsafe { &*opaque.cast::<Context>() };
    let mut co = ctx.scheduled_coroutines().take_all_fifo();
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
    // SAFETY: `co` is live and, marked scheduled, in no queue until the BH
    // below takes it; a scheduled coroutine stays alive until entered.
    if unsafe { ctx.scheduled_coroutines().push(co.as_ptr()) } {
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
