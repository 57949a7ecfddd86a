//! The wakeup handshake between threads that queue work for a context and
//! the context's poller: `aio_notify` costs no syscall unless a poller is
//! (about to be) blocked.
//!
//! Three words, and the poller's mark:
//! - `notify_me`: raised by 2 by a blocking `aio_poll` before it checks for
//!   work, lowered after it woke up; `notify_gsource`: 1 from the GSource
//!   prepare phase (the GLib loop is about to sleep) until check/dispatch.
//!   Either non-zero means "a wakeup must write the eventfd". Each has a
//!   single writer at a time, the thread in the context's loop (a
//!   `LoopGuard` holder: the home thread, or the one thread that claimed an
//!   unbound context, with a happens-before edge between successive
//!   holders), so they are written with a load and a store, as QEMU's
//!   `qatomic_set(&ctx->notify_me, qatomic_read(&ctx->notify_me) + 2)`, not
//!   an RMW. (Until issue 14 one word held both, with RMWs; the two are kept
//!   apart so that the GSource bit and a poll's count never share a word.)
//!   A poll that finds work before it would wait (`aio_compute_timeout` is
//!   0) does not raise `notify_me` at all: there is nothing to wake.
//! - `notified`: the number of explicit `aio_notify` calls so far, one
//!   increment each; `accepted`: its value when the poller last accepted
//!   (`accept`). The two differ while a notification is pending: it lets a
//!   notification that arrives before the poller raised `notify_me` still
//!   stop the next wait, without an eventfd round trip. The count doubles
//!   as the stats' number of `aio_notify` calls (`stats.rs`), so a notify
//!   does no RMW besides the one that notifies.
//!
//! # Why no wakeup is lost
//!
//! Both handshakes are Dekker's pattern built on `SeqCst` *fences* (as
//! QEMU's `smp_mb()`), not on `SeqCst` accesses: fences order every later
//! load (also the `Acquire` queue scan of `aio_compute_timeout`), and loom
//! model-checks fences exactly, while it treats `SeqCst` accesses as
//! `AcqRel` and so could not verify an access-only version.
//!
//! Work published through the BH queue: the producer does `push` (a
//! `Release` CAS on the queue head), then `must_kick_after_push` (a `SeqCst`
//! fence F1, then a load of `notify_me`). The poller does `arm` (a store
//! raising `notify_me`, then a `SeqCst` fence F2), then looks at the queue
//! head.
//! F1 and F2 are in the single total order of `SeqCst` fences. If F1 comes
//! first, the poller's look at the head (after F2) sees the push (the push
//! is before F1); if F2 comes first, the producer's load (after F1) sees
//! the poller's increment and writes the eventfd, which ends the wait.
//!
//! A BH scheduled by the thread that is in the context's loop right now
//! (inside one of its callbacks) skips all of this: it is linked on a
//! loop-local list (`bh/dispatch.rs`), with no CAS, fence or wakeup check,
//! because the only thread that could sleep on the context is the caller
//! itself, which looks at that list before it next waits. (Unless another
//! thread has announced a sleep, `notify_gsource`: then the queue and the
//! check as here.)
//!
//! Explicit `aio_notify` (a condition changed outside the queue): the
//! notifier increments `notified` (a `Release` RMW), then a `SeqCst` fence
//! and a load of `notify_me`; the poller arms (store + fence), then loads
//! `notified`. Same argument. `accept` loads `notified` (`Acquire`) and
//! records the value in `accepted`. Every write of `notified` is an RMW, so
//! the value it reads is in the release sequence of every notifier counted
//! in it: it acquires all of them, and the caller's later reads of its
//! conditions see those notifiers' writes. A notifier whose increment comes
//! after that load leaves `notified` ahead of `accepted`, pending for the
//! next poll. `accepted` is only ever set to a value read from `notified`,
//! so it never runs ahead of it; a stale store (two threads accepting at
//! once, which the home-thread rule excludes) could only make it lag,
//! which is a spurious wakeup, never a lost one.
//!
//! `tests/loom_notify.rs` model-checks both handshakes.

use crate::atomics::{AtomicU32, AtomicU64, Ordering, fence};

/// The two words of the handshake and the poller's mark; embedded in each
/// context.
pub struct NotifyState {
    /// 2 per blocking `aio_poll` that is about to wait (see the module docs).
    notify_me: AtomicU32,
    /// 1 while the GSource loop may sleep (prepare to check/dispatch).
    notify_gsource: AtomicU32,
    /// `aio_notify` calls so far (wraps at 2^64).
    notified: AtomicU64,
    /// `notified` as of the last `accept`: written only by the poller (load
    /// + store, no RMW), read by it.
    accepted: AtomicU64,
}

impl Default for NotifyState {
    fn default() -> Self {
        Self::new()
    }
}

impl NotifyState {
    pub fn new() -> Self {
        NotifyState {
            notify_me: AtomicU32::new(0),
            notify_gsource: AtomicU32::new(0),
            notified: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// Poller: announce that a wakeup must write the eventfd. Must be
    /// followed by the check for work (queue, `is_notified`) before waiting.
    /// Only the thread in the context's loop calls it (module docs), so a
    /// load and a store, not an RMW.
    #[inline]
    pub fn arm(&self) {
        let v = self.notify_me.load(Ordering::Relaxed);
        self.notify_me.store(v + 2, Ordering::Relaxed);
        // F2 of the module docs: the increment before the checks for work.
        fence(Ordering::SeqCst);
    }

    /// Poller: the wait is over; wakeups may go back to being free.
    #[inline]
    pub fn disarm(&self) {
        let v = self.notify_me.load(Ordering::Relaxed);
        self.notify_me.store(v - 2, Ordering::Release);
    }

    /// GSource prepare: the GLib loop is about to sleep; idempotent (GLib
    /// may skip `check` after a ready prepare).
    #[inline]
    pub fn arm_gsource(&self) {
        self.notify_gsource.store(1, Ordering::Relaxed);
        // As in `arm`.
        fence(Ordering::SeqCst);
    }

    /// GSource check/dispatch: the GLib loop woke up.
    #[inline]
    pub fn disarm_gsource(&self) {
        self.notify_gsource.store(0, Ordering::Release);
    }

    /// Whether a poller announced it may sleep (two loads of one cache
    /// line). After the fence of the caller.
    #[inline]
    fn sleeper(&self) -> bool {
        (self.notify_me.load(Ordering::Relaxed) | self.notify_gsource.load(Ordering::Relaxed)) != 0
    }

    /// Producer, right after a push of work: must it write the eventfd to
    /// wake a poller?
    #[inline]
    pub fn must_kick_after_push(&self) -> bool {
        // F1 of the module docs: the push before the look at `notify_me`.
        fence(Ordering::SeqCst);
        self.sleeper()
    }

    /// `aio_notify`: record the notification; returns whether the eventfd
    /// must be written because a poller is (about to be) blocked.
    #[inline]
    pub fn notify(&self) -> bool {
        // An RMW, so that `accept` acquires every notifier it counts.
        self.notified.fetch_add(1, Ordering::Release);
        fence(Ordering::SeqCst);
        self.sleeper()
    }

    /// Poller, after `arm`: has someone called `aio_notify` that this poll
    /// has not accepted yet?
    #[inline]
    pub fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire) != self.accepted.load(Ordering::Relaxed)
    }

    /// The number of `notify` calls so far (wraps at 2^64), for the stats.
    /// `Acquire`: see `stats::collect`.
    #[inline]
    pub fn notify_count(&self) -> u64 {
        self.notified.load(Ordering::Acquire)
    }

    /// Whether a poller is armed (for tests and the GSource glue).
    #[inline]
    pub fn is_armed(&self) -> bool {
        self.sleeper()
    }

    /// `aio_notify_accept`: acknowledge notifications; returns whether there
    /// was one. Costs two loads when there was none. Only the poller calls
    /// it.
    #[inline]
    pub fn accept(&self) -> bool {
        // `Acquire`: the writes of every notifier counted in `n` (see the
        // module docs).
        let n = self.notified.load(Ordering::Acquire);
        if n == self.accepted.load(Ordering::Relaxed) {
            return false;
        }
        self.accepted.store(n, Ordering::Relaxed);
        true
    }
}
