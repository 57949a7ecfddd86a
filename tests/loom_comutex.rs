//! Model check (loom) of the `CoMutex` hand-off protocol: who gets the
//! mutex and who wakes whom (`src/coroutine/comutex_handoff.rs`, the very
//! code `CoMutexCore` runs, here on loom's atomics). Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom_comutex --target-dir target/loom
//! ```
//!
//! Each loom thread is a coroutine that locks, runs a critical section on
//! data in a loom `UnsafeCell` (loom reports an access not ordered after
//! the previous holder's: a missing hand-off edge) and unlocks. A locker
//! that `lock` queues is suspended: its thread ends there, and the rest of
//! it (critical section, unlock) runs when an unlocker wakes it, in the
//! unlocker's thread, as `aio_co_wake` enters a coroutine of the caller's
//! own context directly (across threads, `aio_co_schedule` only adds
//! happens-before edges and waits until the waiter is switched out, which
//! here is given: a suspended thread does nothing more). So a lost wakeup
//! is a coroutine that never finishes, checked after joining (no blocking:
//! a loom deadlock inside a `#[should_panic]` test aborts the binary, see
//! `loom_notify.rs`).
//!
//! What is not modelled: the waiter links and the token live in std
//! `UnsafeCell`s behind `wait_lock`, which loom does not race-check (the
//! protected data is); `holder_is_local` and `out_of_time` only end the
//! spin early, which is always correct, so the models pass `|| false` for
//! both and spin on every holder. (The models' spins are too short to
//! reach a turn that yields the CPU: under loom a CPU hint is a yield too.)
//!
//! `broken_*` runs a local copy of `unlock` that looks for a waiter before
//! it publishes the release, and expects loom to find the lost wakeup
//! (`#[should_panic]`): the model can fail.
#![cfg(loom)]

use std::cell::{Cell, UnsafeCell as StdCell};
use std::ptr;

use aioctx::comutex_handoff::{self, Acquired, HandoffState, MutexWaiter};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use loom::thread;

/// `preemptions`: the bound unless `LOOM_MAX_PREEMPTIONS` is set. The
/// `wait_lock` spin makes long paths, so the branch limit is raised.
fn model(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(preemptions);
    }
    b.max_branches = b.max_branches.max(100_000);
    b.check(f);
}

/// A coroutine's mutex link.
struct Waiter {
    next: Cell<*mut Waiter>,
}

impl MutexWaiter for Waiter {
    fn mutex_next(&self) -> &Cell<*mut Waiter> {
        &self.next
    }
}

/// The state of `CoMutexCore` that the protocol uses, plus what it guards.
struct Mutex {
    locked: AtomicU32,
    wait_lock: AtomicU32,
    head: StdCell<*mut Waiter>,
    tail: StdCell<*mut Waiter>,
    handoff: StdCell<u32>,
    /// One waiter record per locking coroutine.
    waiters: Vec<Waiter>,
    /// What the mutex protects.
    data: UnsafeCell<usize>,
    /// Coroutines inside the critical section (at most 1).
    inside: AtomicUsize,
    /// Critical sections completed.
    done: AtomicUsize,
}

// SAFETY: the non-atomic fields are touched only by the protocol under
// `wait_lock`, or (`data`) by the mutex's holder; loom checks the latter.
unsafe impl Sync for Mutex {}
// SAFETY: as above.
unsafe impl Send for Mutex {}

// SAFETY: only `comutex_handoff` touches `head`, `tail`, `handoff` (the
// final checks run after every thread joined).
unsafe impl HandoffState for Mutex {
    type Word = AtomicU32;
    type Waiter = Waiter;
    fn locked(&self) -> &AtomicU32 {
        &self.locked
    }
    fn wait_lock(&self) -> &AtomicU32 {
        &self.wait_lock
    }
    fn head(&self) -> &StdCell<*mut Waiter> {
        &self.head
    }
    fn tail(&self) -> &StdCell<*mut Waiter> {
        &self.tail
    }
    fn handoff(&self) -> &StdCell<u32> {
        &self.handoff
    }
}

impl Mutex {
    fn new(coroutines: usize) -> Self {
        Mutex {
            locked: AtomicU32::new(0),
            wait_lock: AtomicU32::new(0),
            head: StdCell::new(ptr::null_mut()),
            tail: StdCell::new(ptr::null_mut()),
            handoff: StdCell::new(0),
            waiters: (0..coroutines)
                .map(|_| Waiter {
                    next: Cell::new(ptr::null_mut()),
                })
                .collect(),
            data: UnsafeCell::new(0),
            inside: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    fn waiter(&self, i: usize) -> *mut Waiter {
        ptr::from_ref(&self.waiters[i]).cast_mut()
    }
}

type Unlock = fn(&Mutex) -> *mut Waiter;

/// The critical section, then the unlock; a waiter the unlock handed the
/// mutex to is woken, i.e. its own critical section and unlock run.
fn critical_section_then_unlock(m: &Mutex, unlock: Unlock) {
    assert_eq!(m.inside.fetch_add(1, Ordering::Relaxed), 0, "two holders");
    // SAFETY: loom checks that this access is ordered after the last one.
    m.data.with_mut(|d| unsafe { *d += 1 });
    m.inside.fetch_sub(1, Ordering::Relaxed);
    m.done.fetch_add(1, Ordering::Relaxed);
    if !unlock(m).is_null() {
        critical_section_then_unlock(m, unlock);
    }
}

/// One coroutine: lock (suspending if queued), critical section, unlock.
fn coroutine(m: &Mutex, i: usize, spins: u32, unlock: Unlock) {
    match comutex_handoff::lock(m, m.waiter(i), spins, || false, || false) {
        Acquired::Now => critical_section_then_unlock(m, unlock),
        Acquired::Queued => {} // suspended: the unlocker that wakes it runs the rest
    }
}

/// The main coroutine takes the mutex, `lockers` coroutines in other
/// threads contend, the main one unlocks. Every coroutine must finish.
fn contend(lockers: usize, spins: u32, unlock: Unlock) {
    // Three threads with a bound of 3 take minutes; 2 still reaches every
    // order of the two lockers' adds, enqueues and the hand-offs.
    let preemptions = if lockers > 1 { 2 } else { 3 };
    model(preemptions, move || {
        let m = Arc::new(Mutex::new(lockers + 1));
        assert_eq!(
            comutex_handoff::lock(&*m, m.waiter(0), spins, || false, || false),
            Acquired::Now
        );
        let threads: Vec<_> = (1..=lockers)
            .map(|i| {
                let m = m.clone();
                thread::spawn(move || coroutine(&m, i, spins, unlock))
            })
            .collect();
        critical_section_then_unlock(&m, unlock);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            m.done.load(Ordering::Relaxed),
            lockers + 1,
            "lost wakeup: a queued coroutine was never handed the mutex"
        );
        assert_eq!(m.locked.load(Ordering::Relaxed), 0, "left locked");
        // SAFETY: every thread joined.
        unsafe {
            assert!((*m.head.get()).is_null(), "a waiter left queued");
            assert_eq!(*m.handoff.get(), 0, "a hand-off token left behind");
        }
        // SAFETY: every thread joined.
        m.data.with(|d| assert_eq!(unsafe { *d }, lockers + 1));
    });
}

#[test]
fn one_locker_spinning_on_the_holder() {
    contend(1, 2, comutex_handoff::unlock::<Mutex>);
}

#[test]
fn one_locker_queueing_at_once() {
    contend(1, 0, comutex_handoff::unlock::<Mutex>);
}

#[test]
fn two_lockers_handed_over_in_turn() {
    contend(2, 0, comutex_handoff::unlock::<Mutex>);
}

/// `unlock` with one change: it looks for a waiter *before* it publishes
/// the release. A locker that adds itself to `locked` after the look and
/// before the release queues behind nobody's back: the release brings
/// `locked` from 2 to 1 without a hand-off or a token, and the locker is
/// never woken.
fn unlock_checks_waiters_before_release(m: &Mutex) -> *mut Waiter {
    while m
        .wait_lock
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        thread::yield_now();
    }
    // SAFETY: `wait_lock` is held.
    let next = unsafe {
        let head = *m.head.get();
        if !head.is_null() {
            let after = (*head).next.get();
            *m.head.get() = after;
            if after.is_null() {
                *m.tail.get() = ptr::null_mut();
            }
        }
        head
    };
    m.wait_lock.store(0, Ordering::Release);
    if next.is_null() {
        m.locked.fetch_sub(1, Ordering::Release);
    }
    next
}

#[test]
#[should_panic(expected = "lost wakeup")]
fn broken_unlock_checks_waiters_before_release_loses_wakeup() {
    contend(1, 0, unlock_checks_waiters_before_release);
}
