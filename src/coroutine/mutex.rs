//! `CoMutex` (`qemu/coroutine.h`: `qemu_co_mutex_init`, `_lock`, `_unlock`,
//! `_assert_locked`): a mutex for coroutines, which yield instead of
//! blocking their thread.
//!
//! `locked` counts the holder plus the coroutines waiting or about to wait.
//! Uncontended lock and unlock are one atomic RMW each (a CAS 0 -> 1, a
//! subtraction; no lock). A locker that finds the mutex held by exactly one
//! coroutine running in another context spins (bounded) for the unlock
//! before it queues, as QEMU does: handing the mutex to a queued waiter in
//! another thread costs a cross-thread wakeup and a trip through that
//! thread's event loop, which a critical section of a few instructions
//! never needs. Under contention a short spinlock protects the FIFO of
//! waiters (linked through the waiters' `mutex_next`); unlock hands the
//! mutex directly to the oldest waiter and wakes it with `aio_co_wake`, in
//! the context it waits in (possibly another thread), so nobody barges in
//! ahead of a waiter. If an unlock finds `locked > 1` but nobody queued
//! yet (a locker between its add and its enqueue), it leaves a hand-off
//! token that this locker (or the next one to take the spinlock) picks up.
//!
//! The struct is caller-owned (`CoMutex`, same layout, asserted in
//! `ffi/coroutine.rs`); all-zero is an unlocked mutex.

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use super::{CoBox, aio_co_wake, require_current, yield_now};
use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};

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

/// Iterations [`CoMutexCore::lock`] spins, at most, for a holder running in
/// another thread before it queues (QEMU spins up to 1000).
const LOCK_SPINS: u32 = 1000;

/// Holds `wait_lock` (a spinlock: its critical sections are a few pointer
/// writes and never call user code).
struct WaitGuard<'a>(&'a CoMutexCore);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.wait_lock.store(0, Ordering::Release);
    }
}

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

    fn wait_lock(&self) -> WaitGuard<'_> {
        let mut spins = 0u32;
        while self
            .wait_lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        WaitGuard(self)
    }

    /// `qemu_co_mutex_lock`: from a coroutine; yields while another holds it.
    #[inline]
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_mutex_lock")?;
        if ptr::eq(self.holder.load(Ordering::Relaxed), me) {
            return Err(Misuse::new(format!(
                "coroutine '{}' already holds this CoMutex (it is not recursive: this would deadlock)",
                me.describe()
            )));
        }
        if self
            .locked
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
            && !self.spin_for_unlock(me)
            && self.locked.fetch_add(1, Ordering::Acquire) != 0
        {
            self.lock_slow(me)?;
        }
        self.holder.store(me.as_ptr(), Ordering::Relaxed);
        self.ctx.store(me.context().cast_mut(), Ordering::Relaxed);
        me.locks_held_add(1);
        Ok(())
    }

    /// The mutex is held: while its only holder runs in another context
    /// (so it can unlock while we wait) and nobody queued, spin a little
    /// for the unlock instead of queueing, which would cost the holder a
    /// cross-thread `aio_co_wake` and us a trip through our event loop
    /// (QEMU does the same). True if the mutex is now ours.
    #[cold]
    fn spin_for_unlock(&self, me: &CoBox) -> bool {
        let here = me.context();
        for _ in 0..LOCK_SPINS {
            match self.locked.load(Ordering::Relaxed) {
                0 => {
                    if self
                        .locked
                        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return true;
                    }
                }
                // The holder runs in this thread: it cannot unlock before
                // we yield.
                1 if ptr::eq(self.ctx.load(Ordering::Relaxed), here) => return false,
                1 => {}
                // Others wait already: queue behind them (FIFO).
                _ => return false,
            }
            std::hint::spin_loop();
        }
        false
    }

    #[cold]
    fn lock_slow(&self, me: &CoBox) -> MisuseResult<()> {
        {
            let _g = self.wait_lock();
            // SAFETY: `wait_lock` is held.
            unsafe {
                if *self.handoff.get() != 0 {
                    *self.handoff.get() = 0;
                    return Ok(());
                }
                me.p.mutex_next.set(ptr::null_mut());
                let tail = *self.tail.get();
                if tail.is_null() {
                    *self.head.get() = me.as_ptr();
                } else {
                    (*tail).p.mutex_next.set(me.as_ptr());
                }
                *self.tail.get() = me.as_ptr();
            }
        }
        // The unlocker hands the mutex over, then wakes us.
        yield_now()
    }

    /// `qemu_co_mutex_unlock`: from the holding coroutine.
    #[inline]
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_mutex_unlock")?;
        if !ptr::eq(self.holder.load(Ordering::Relaxed), me) {
            return Err(Misuse::new(format!(
                "coroutine '{}' does not hold this CoMutex",
                me.describe()
            )));
        }
        self.holder.store(ptr::null_mut(), Ordering::Relaxed);
        me.locks_held_add(-1);
        if self.locked.fetch_sub(1, Ordering::Release) == 1 {
            return Ok(());
        }
        self.unlock_slow()
    }

    #[cold]
    fn unlock_slow(&self) -> MisuseResult<()> {
        let next = {
            let _g = self.wait_lock();
            // SAFETY: `wait_lock` is held; queued coroutines are alive.
            unsafe {
                let head = *self.head.get();
                if head.is_null() {
                    *self.handoff.get() = 1;
                    return Ok(());
                }
                let after = (*head).p.mutex_next.get();
                *self.head.get() = after;
                if after.is_null() {
                    *self.tail.get() = ptr::null_mut();
                }
                head
            }
        };
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
