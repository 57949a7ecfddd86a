//! Sleeping coroutines (`qemu/coroutine.h`: `qemu_co_sleep_ns`,
//! `qemu_co_sleep_ns_wakeable`, `qemu_co_sleep`, `qemu_co_sleep_wake`).
//!
//! The sleeper arms a timer on its thread's current context (a `QEMUTimer`
//! in its own frame), records itself in the caller's `QemuCoSleep` and
//! yields; the timer callback, or an earlier `qemu_co_sleep_wake`, clears
//! the record and wakes it with `aio_co_wake`. While it sleeps the
//! coroutine counts as scheduled (entering or scheduling it aborts).

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::{CoBox, Scheduler, aio_co_wake, require_current, yield_now};
use crate::fatal::{self, Misuse, MisuseResult};
use crate::thread;
use crate::timer::{ClockType, Timer};

/// The core's view of the caller-owned `QemuCoSleep` (same layout).
#[repr(C)]
pub(crate) struct SleepCore {
    to_wake: AtomicPtr<CoBox>,
}

impl SleepCore {
    /// An empty record (`QemuCoSleep w = { 0 }`).
    pub(crate) fn new() -> Self {
        SleepCore {
            to_wake: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// `qemu_co_sleep_wake`: wake the sleeper recorded in `w`, if any.
pub(crate) fn co_sleep_wake(w: &SleepCore) -> MisuseResult<()> {
    let co = w.to_wake.swap(ptr::null_mut(), Ordering::AcqRel);
    if co.is_null() {
        return Ok(());
    }
    // SAFETY: a sleeping coroutine is suspended, so alive.
    let co = unsafe { &*co };
    co.clear_scheduled();
    aio_co_wake(co)
}

unsafe extern "C" fn sleep_timer_cb(opaque: *mut c_void) {
    // SAFETY: the QemuCoSleep outlives the armed timer (both are removed
    // before the sleeper returns).
    let w = unsafe { &*opaque.cast::<SleepCore>() };
    if let Err(m) = co_sleep_wake(w) {
        fatal::die_here(&m.0);
    }
}

/// `qemu_co_sleep`: sleep until woken through `w` (no timer).
pub(crate) fn co_sleep(w: &SleepCore) -> MisuseResult<()> {
    let me = require_current("qemu_co_sleep")?;
    me.mark_scheduled(Scheduler::QemuCoSleep)?;
    w.to_wake.store(me.as_ptr(), Ordering::Release);
    yield_now()
}

/// `qemu_co_sleep_ns_wakeable`: sleep `ns` of `clock` unless woken earlier
/// through `w`.
pub(crate) fn co_sleep_ns_wakeable(w: &SleepCore, clock: ClockType, ns: i64) -> MisuseResult<()> {
    let me = require_current("qemu_co_sleep_ns")?;
    let ctx = thread::current_context();
    if ctx.is_null() {
        return Err(Misuse::new(
            "no current AioContext in this thread to run the sleep timer",
        ));
    }
    // SAFETY: the current context is alive.
    let ctx = unsafe { &*ctx };
    // SAFETY: `Timer` is atomics only; all-zero is a never-initialized timer.
    let timer: Timer = unsafe { std::mem::zeroed() };
    timer.init(
        ctx,
        clock,
        1,
        0,
        sleep_timer_cb,
        ptr::from_ref(w).cast_mut().cast(),
    )?;
    me.mark_scheduled(Scheduler::QemuCoSleep)?;
    w.to_wake.store(me.as_ptr(), Ordering::Release);
    timer.arm(clock.now_ns().saturating_add(ns), false, false)?;
    // The timer fires in this thread's loop, so only after this yield.
    yield_now()?;
    timer.deinit()
}
