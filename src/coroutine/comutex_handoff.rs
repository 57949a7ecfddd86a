//! The hand-off protocol of `CoMutex` (`mutex.rs`): the lock word, the
//! FIFO of waiters and who wakes whom. Generic over the atomic word and the
//! waiter type so that `tests/loom_comutex.rs` model-checks this very code
//! on loom's atomics, while `CoMutexCore` keeps std's (its layout is
//! QEMU's, asserted in `ffi/coroutine.rs`).
//!
//! `locked` counts the holder plus the coroutines waiting or about to wait.
//! Uncontended lock and unlock are one atomic RMW each (a CAS 0 -> 1, a
//! subtraction). A locker that finds the mutex held by exactly one holder
//! that is not local (it can unlock while we wait) spins, bounded, for the
//! unlock before it queues, giving the CPU away every few turns (the
//! holder's thread may be waiting for it). Otherwise it adds itself to `locked`; if that
//! did not make it the holder, it takes `wait_lock` (a spinlock around a few
//! pointer writes) and appends itself to the FIFO, then suspends. An unlock
//! that does not bring `locked` to 0 takes `wait_lock`, removes the oldest
//! waiter and hands the mutex to it (`locked` keeps counting it, so nobody
//! barges in); the caller wakes it. If an unlock finds `locked > 1` but
//! nobody queued yet (a locker between its add and its enqueue), it leaves
//! a hand-off token under `wait_lock`, which that locker picks up instead
//! of queueing.
//!
//! Memory ordering: the fast-path CAS and the add acquire, the subtraction
//! releases; a handed-over waiter is ordered after the unlocker by
//! `wait_lock` (Acquire CAS / Release store) plus the wake itself.

use std::cell::{Cell, UnsafeCell};
use std::ptr;
use std::sync::atomic::Ordering;

use crate::atomics::{spin_hint, spin_yield};

/// The atomic operations the protocol needs on a 32-bit word.
pub trait LockWord {
    fn load(&self, order: Ordering) -> u32;
    fn store(&self, val: u32, order: Ordering);
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn compare_exchange_weak(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    fn fetch_add(&self, val: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, val: u32, order: Ordering) -> u32;
}

macro_rules! impl_lock_word {
    ($t:ty) => {
        impl LockWord for $t {
            #[inline]
            fn load(&self, order: Ordering) -> u32 {
                <$t>::load(self, order)
            }
            #[inline]
            fn store(&self, val: u32, order: Ordering) {
                <$t>::store(self, val, order)
            }
            #[inline]
            fn compare_exchange(
                &self,
                current: u32,
                new: u32,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u32, u32> {
                <$t>::compare_exchange(self, current, new, success, failure)
            }
            #[inline]
            fn compare_exchange_weak(
                &self,
                current: u32,
                new: u32,
                success: Ordering,
                failure: Ordering,
            ) -> Result<u32, u32> {
                <$t>::compare_exchange_weak(self, current, new, success, failure)
            }
            #[inline]
            fn fetch_add(&self, val: u32, order: Ordering) -> u32 {
                <$t>::fetch_add(self, val, order)
            }
            #[inline]
            fn fetch_sub(&self, val: u32, order: Ordering) -> u32 {
                <$t>::fetch_sub(self, val, order)
            }
        }
    };
}

impl_lock_word!(std::sync::atomic::AtomicU32);
#[cfg(loom)]
impl_lock_word!(loom::sync::atomic::AtomicU32);

/// Something that can wait in the FIFO (a coroutine): it embeds its link.
pub trait MutexWaiter: Sized {
    /// The waiter's link; only the protocol touches it, under `wait_lock`.
    fn mutex_next(&self) -> &Cell<*mut Self>;
}

/// The protocol's state, borrowed from the fields of a mutex.
///
/// # Safety
/// `head`, `tail` and `handoff` must be touched only by this module (which
/// does so with `wait_lock` held) once the mutex is shared.
pub unsafe trait HandoffState {
    type Word: LockWord;
    type Waiter: MutexWaiter;
    fn locked(&self) -> &Self::Word;
    fn wait_lock(&self) -> &Self::Word;
    fn head(&self) -> &UnsafeCell<*mut Self::Waiter>;
    fn tail(&self) -> &UnsafeCell<*mut Self::Waiter>;
    fn handoff(&self) -> &UnsafeCell<u32>;
}

/// What [`lock`] did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Acquired {
    /// The caller holds the mutex.
    Now,
    /// The caller is queued and must suspend; the unlocker that hands the
    /// mutex over returns it from [`unlock`] and wakes it.
    Queued,
}

/// Holds `wait_lock`.
struct WaitGuard<'a, M: HandoffState>(&'a M);

impl<M: HandoffState> Drop for WaitGuard<'_, M> {
    fn drop(&mut self) {
        self.0.wait_lock().store(0, Ordering::Release);
    }
}

fn take_wait_lock<M: HandoffState>(m: &M) -> WaitGuard<'_, M> {
    let mut spins = 0u32;
    while m
        .wait_lock()
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            spin_hint();
        } else {
            spin_yield();
        }
    }
    WaitGuard(m)
}

/// Locks `m` for `me`: at once, after spinning up to `spins` turns for a
/// holder that `holder_is_local` says is not local, or by queueing.
/// `out_of_time` is asked after each turn that yielded the CPU and ends
/// the spin when it says so (a bound on the spin's wall-clock time).
#[inline]
pub fn lock<M: HandoffState>(
    m: &M,
    me: *mut M::Waiter,
    spins: u32,
    holder_is_local: impl Fn() -> bool,
    out_of_time: impl FnMut() -> bool,
) -> Acquired {
    if m.locked()
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
        && !spin_for_unlock(m, spins, holder_is_local, out_of_time)
        && m.locked().fetch_add(1, Ordering::Acquire) != 0
    {
        return queue_or_take_handoff(m, me);
    }
    Acquired::Now
}

/// In [`spin_for_unlock`], every this many turns gives the CPU away
/// (`sched_yield`) instead of a CPU hint.
pub(crate) const SPIN_YIELD_EVERY: u32 = 16;

/// The mutex is held: while its only holder is not local (so it can
/// unlock while we wait) and nobody queued, spin a little for the unlock
/// instead of queueing. True if the mutex is now ours.
///
/// Every [`SPIN_YIELD_EVERY`]th turn yields the CPU: the holder's thread
/// may be waiting for this very CPU (more threads than CPUs), and then
/// pausing only burns the time it needs to unlock; yielding lets it run
/// (and on an otherwise idle CPU costs one system call). Without it, two
/// IOThreads sharing one CPU handed the mutex over through the queue on
/// nearly every turn of the holder's time slice (a spin that can only time
/// out, then a cross-thread wake-up), and five coroutines on two CPUs
/// formed a convoy of wake-ups that never drained. On a loaded machine a
/// yield can give the CPU away for a whole time slice, so the caller's
/// `out_of_time`, asked after each yield, bounds the spin in wall-clock
/// time as well.
#[cold]
fn spin_for_unlock<M: HandoffState>(
    m: &M,
    spins: u32,
    holder_is_local: impl Fn() -> bool,
    mut out_of_time: impl FnMut() -> bool,
) -> bool {
    for turn in 1..=spins {
        match m.locked().load(Ordering::Relaxed) {
            0 => {
                if m.locked()
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
            }
            // The holder cannot unlock before we suspend.
            1 if holder_is_local() => return false,
            1 => {}
            // Others wait already: queue behind them (FIFO).
            _ => return false,
        }
        if turn % SPIN_YIELD_EVERY == 0 {
            spin_yield();
            if out_of_time() {
                return false;
            }
        } else {
            spin_hint();
        }
    }
    false
}

#[cold]
fn queue_or_take_handoff<M: HandoffState>(m: &M, me: *mut M::Waiter) -> Acquired {
    let _g = take_wait_lock(m);
    // SAFETY: `wait_lock` is held; `me` and queued waiters are alive (a
    // waiter stays suspended until it is handed the mutex).
    unsafe {
        if *m.handoff().get() != 0 {
            *m.handoff().get() = 0;
            return Acquired::Now;
        }
        (*me).mutex_next().set(ptr::null_mut());
        let tail = *m.tail().get();
        if tail.is_null() {
            *m.head().get() = me;
        } else {
            (*tail).mutex_next().set(me);
        }
        *m.tail().get() = me;
    }
    Acquired::Queued
}

/// Unlocks `m` (the caller holds it). Returns the waiter the mutex was
/// handed to, which the caller must wake, or null.
#[inline]
pub fn unlock<M: HandoffState>(m: &M) -> *mut M::Waiter {
    if m.locked().fetch_sub(1, Ordering::Release) == 1 {
        return ptr::null_mut();
    }
    hand_over(m)
}

#[cold]
fn hand_over<M: HandoffState>(m: &M) -> *mut M::Waiter {
    let _g = take_wait_lock(m);
    // SAFETY: `wait_lock` is held; queued waiters are alive.
    unsafe {
        let head = *m.head().get();
        if head.is_null() {
            *m.handoff().get() = 1;
            return ptr::null_mut();
        }
        let after = (*head).mutex_next().get();
        *m.head().get() = after;
        if after.is_null() {
            *m.tail().get() = ptr::null_mut();
        }
        head
    }
}
