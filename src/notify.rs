//! The wakeup handshake between threads that queue work for a context and
//! the context's poller: `aio_notify` costs no syscall unless a poller is
//! (about to be) blocked.
//!
//! Two words:
//! - `notify_me`: raised by 2 by each blocking poller (a blocking `aio_poll`,
//!   or the GSource prepare phase) before it checks for work, lowered after
//!   it woke up. Non-zero means "a wakeup must write the eventfd".
//! - `notified`: set by an explicit `aio_notify`, cleared by the poller in
//!   `accept`. It lets a notification that arrives before the poller raised
//!   `notify_me` still stop the next wait, without an eventfd round trip.
//!
//! # Why no wakeup is lost
//!
//! Work published through the BH queue: the producer does `push` (a `SeqCst`
//! CAS on the queue head) and then `must_kick_after_push` (a `SeqCst` load of
//! `notify_me`). The poller does `arm` (a `SeqCst` RMW of `notify_me`) and
//! then looks at the queue head (a `SeqCst` load). All four operations are in
//! the single total order of `SeqCst` operations, so either the producer's
//! load follows the poller's RMW (it sees `notify_me >= 2` and writes the
//! eventfd, which ends the wait) or the poller's load follows the producer's
//! push (it sees the node and does not wait). This is Dekker's pattern.
//!
//! Explicit `aio_notify` (a condition changed outside the queue): the
//! notifier stores `notified = true` (`SeqCst`) then loads `notify_me`
//! (`SeqCst`); the poller arms then loads `notified` (`SeqCst`). Same
//! argument. `accept` clears `notified` with a `SeqCst` swap: it
//! acquires every notifier whose flag it clears, and the caller's later reads
//! of its condition cannot be satisfied before the clear; otherwise a notify
//! could slip between a stale read and the clear.
//!
//! `tests/loom_notify.rs` model-checks both handshakes.

use crate::atomics::{AtomicBool, AtomicU32, Ordering};

/// The two words of the handshake; embedded in each context.
pub struct NotifyState {
    notify_me: AtomicU32,
    notified: AtomicBool,
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
            notified: AtomicBool::new(false),
        }
    }

    /// Poller: announce that a wakeup must write the eventfd. Must be
    /// followed by the check for work (queue, `is_notified`) before waiting.
    #[inline]
    pub fn arm(&self) {
        self.notify_me.fetch_add(2, Ordering::SeqCst);
    }

    /// Poller: the wait is over; wakeups may go back to being free.
    #[inline]
    pub fn disarm(&self) {
        self.notify_me.fetch_sub(2, Ordering::Release);
    }

    /// Producer, right after a `SeqCst` push of work: must it write the
    /// eventfd to wake a poller?
    #[inline]
    pub fn must_kick_after_push(&self) -> bool {
        self.notify_me.load(Ordering::SeqCst) != 0
    }

    /// `aio_notify`: record the notification; returns whether the eventfd
    /// must be written because a poller is (about to be) blocked.
    #[inline]
    pub fn notify(&self) -> bool {
        self.notified.store(true, Ordering::SeqCst);
        self.notify_me.load(Ordering::SeqCst) != 0
    }

    /// Poller, after `arm`: has someone called `aio_notify` that this poll
    /// has not accepted yet?
    #[inline]
    pub fn is_notified(&self) -> bool {
        self.notified.load(Ordering::SeqCst)
    }

    /// Whether a poller is armed (for tests and the GSource glue).
    #[inline]
    pub fn is_armed(&self) -> bool {
        self.notify_me.load(Ordering::Relaxed) != 0
    }

    /// `aio_notify_accept`: acknowledge notifications; returns whether there
    /// was one. Costs one load when there was none.
    #[inline]
    pub fn accept(&self) -> bool {
        if !self.notified.load(Ordering::Relaxed) {
            return false;
        }
        // A swap, not a store: it reads the latest `true` in the flag's
        // modification order, so it acquires the writes of every notifier
        // whose notification it clears. `SeqCst` also orders the clear before
        // the caller's next reads of its conditions (see the module docs).
        self.notified.swap(false, Ordering::SeqCst);
        true
    }
}
