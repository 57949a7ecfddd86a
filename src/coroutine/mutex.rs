//! `CoMutex` (`qemu/coroutine.h`: `qemu_co_mutex_init`, `_lock`, `_unlock`,
//! `_assert_locked`): a mutex for coroutines, which yield instead of
//! blocking their thread.
//!
//! The protocol (lock word, FIFO of waiters, hand-off to the oldest
//! waiter, the hand-off token, the bounded spin on a holder in another
//! context, as QEMU does) is `comutex_handoff.rs`, generic so that loom
//! checks it (`tests/loom_comutex.rs`); this file adds the coroutine side:
//! the misuse checks, `holder`/`ctx` bookkeeping, suspending a queued
//! locker and waking the waiter an unlock handed the mutex to with
//! `aio_co_wake`, in the context it waits in (possibly another thread).
//!
//! The struct is caller-owned (`CoMutex`, same layout, asserted in
//! `ffi/coroutine.rs`); all-zero is an unlocked mutex.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::comutex_handoff::{self, Acquired, HandoffState, MutexWaiter};
use super::{CoBox, aio_co_wake, require_current, yield_now};
use crate::busy_poll::now_ns;
use crate::context::Context;
use crate::fatal::{LazyApiCall, Misuse, MisuseResult};

#[repr(C)]
pub(crate) struct CoMutexCore {
    locked: AtomicU32,
    wait_lock: AtomicU32,
    ctx: AtomicPtr<Context>,
    head: UnsafeCell<*mut CoBox>,
    tail: UnsafeCell<*mut CoBox>,
    /// Protected by `wait_lock`.
    handoff: UnsafeCell<u32>,
    /// At QEMU's offset 40, read by QEMU's `qemu_co_mutex_assert_locked`
    /// macro (after `handoff`, the padding is QEMU's `sequence`).
    holder: AtomicPtr<CoBox>,
}

// SAFETY: the non-atomic fields are only touched with `wait_lock` held.
unsafe impl Sync for CoMutexCore {}

// SAFETY: after `init` (before the mutex is shared), `head`, `tail` and
// `handoff` are only touched by `comutex_handoff`.
unsafe impl HandoffState for CoMutexCore {
    type Word = AtomicU32;
    type Waiter = CoBox;
    fn locked(&self) -> &AtomicU32 {
        &self.locked
    }
    fn wait_lock(&self) -> &AtomicU32 {
        &self.wait_lock
    }
    fn head(&self) -> &UnsafeCell<*mut CoBox> {
        &self.head
    }
    fn tail(&self) -> &UnsafeCell<*mut CoBox> {
        &self.tail
    }
    fn handoff(&self) -> &UnsafeCell<u32> {
        &self.handoff
    }
}

impl MutexWaiter for CoBox {
    fn mutex_next(&self) -> &Cell<*mut CoBox> {
        &self.p.mutex_next
    }
}

#[cold]
#[inline(never)]
fn lock_recursive(me: &CoBox) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' already holds this CoMutex (it is not recursive: this would deadlock)",
        me.describe()
    ))
}

#[cold]
#[inline(never)]
fn unlock_not_holder(me: &CoBox) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' does not hold this CoMutex",
        me.describe()
    ))
}

/// Turns [`CoMutexCore::lock`] spins, at most, for a holder running in
/// another thread before it queues (QEMU spins up to 1000 CPU hints). One
/// in `comutex_handoff::SPIN_YIELD_EVERY` (16) is a `sched_yield`: 64 of
/// them, so the holder gets that many chances to run if it shares our CPU.
const LOCK_SPINS: u32 = 1024;

/// The spin's wall-clock bound, counted from its first yield: on an idle
/// CPU the 1024 turns take some 15-40 us (a pause is ~13 ns, a yield a
/// fraction of a microsecond, on the 2-CPU VM this was measured on), so
/// this only ends spins whose yields gave the CPU away for long (a loaded
/// machine), which would otherwise keep this coroutine's thread from its
/// other work for up to 64 time slices.
///
/// The price, measured with `bench/co_multithread.c` on 2 CPUs: five
/// lockers on five IOThreads (`co_mutex/contended`) reach 0.5-1.1x of a
/// pthread mutex when they may spin-and-yield for milliseconds, because
/// they then never queue, but mostly fall back into the convoy of queued
/// hand-offs (one cross-thread wake-up per acquisition, 0.01-0.3x) with
/// this bound. A CoMutex exists so that a waiter does not hold up its
/// thread; QEMU's spin is bounded the same way (1000 CPU hints).
const LOCK_SPIN_MAX_NS: i64 = 200_000;

impl CoMutexCore {
    /// `qemu_co_mutex_init`.
    pub(crate) fn init(&self) {
        self.locked.store(0, Ordering::Relaxed);
        self.wait_lock.store(0, Ordering::Relaxed);
        // SAFETY: init is called before the mutex is shared (QEMU's rule).
        unsafe {
            *self.handoff.get() = 0;
            *self.head.get() = ptr::null_mut();
            *self.tail.get() = ptr::null_mut();
        }
        self.holder.store(ptr::null_mut(), Ordering::Relaxed);
        self.ctx.store(ptr::null_mut(), Ordering::Relaxed);
    }

    /// `qemu_co_mutex_lock`: from a coroutine; yields while another holds it.
    /// Inlined: it touches no thread-local itself (`current` is a call,
    /// and `yield_now` touches none), so no address is cached across the
    /// yield.
    #[inline(always)]
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_mutex_lock")?;
        if ptr::eq(self.holder.load(Ordering::Relaxed), me) {
            return Err(lock_recursive(me));
        }
        let holder_is_local = || ptr::eq(self.ctx.load(Ordering::Relaxed), me.context());
        let mut deadline = None;
        let out_of_time = || {
            let now = now_ns();
            now >= *deadline.get_or_insert(now + LOCK_SPIN_MAX_NS)
        };
        if comutex_handoff::lock(self, me.as_ptr(), LOCK_SPINS, holder_is_local, out_of_time)
            == Acquired::Queued
        {
            // The unlocker hands the mutex over, then wakes us.
            yield_now()?;
        }
        self.holder.store(me.as_ptr(), Ordering::Relaxed);
        self.ctx.store(me.context().cast_mut(), Ordering::Relaxed);
        me.locks_held_add(1);
        Ok(())
    }

    /// `qemu_co_mutex_unlock`: from the holding coroutine.
    #[inline]
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        self.unlock_as(LazyApiCall::ACTIVE)
    }

    /// [`CoMutexCore::unlock`] for `qemu_co_mutex_unlock`, whose name
    /// (`api`) is recorded only to wake a waiter.
    #[inline(always)]
    pub(crate) fn unlock_as(&self, api: LazyApiCall) -> MisuseResult<()> {
        let me = require_current("qemu_co_mutex_unlock")?;
        if !ptr::eq(self.holder.load(Ordering::Relaxed), me) {
            return Err(unlock_not_holder(me));
        }
        // Clear `ctx` as well (QEMU does): a locker that finds the mutex
        // handed to a waiter that has not run yet must not take our context
        // for the holder's, or it queues at once instead of spinning, and
        // two threads handing the lock back and forth then sleep and wake
        // each other on every hand-off.
        self.ctx.store(ptr::null_mut(), Ordering::Relaxed);
        self.holder.store(ptr::null_mut(), Ordering::Relaxed);
        me.locks_held_add(-1);
        let next = comutex_handoff::unlock(self);
        if next.is_null() {
            return Ok(());
        }
        // `aio_co_wake` may report with `die_here`; it does not yield (we
        // run in a coroutine, so the waiter is queued or scheduled, never
        // entered from here).
        let _call = api.enter();
        // SAFETY: a waiter stays alive (suspended) until woken.
        aio_co_wake(unsafe { &*next })
    }

    /// `qemu_co_mutex_assert_locked`: the running coroutine holds it.
    pub(crate) fn assert_locked(&self) -> MisuseResult<()> {
        let me = super::current();
        if self.locked.load(Ordering::Relaxed) == 0
            || me.is_null()
            || !ptr::eq(self.holder.load(Ordering::Relaxed), me)
        {
            return Err(Misuse::new(
                "the CoMutex is not held by the running coroutine",
            ));
        }
        Ok(())
    }
}
