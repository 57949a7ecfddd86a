//! Adaptive busy polling (`aio_context_set_poll_params`).
//!
//! Before a blocking wait, when every registered handler has an `io_poll`
//! callback (`aio_poll_disabled()` is false) and the current window
//! `poll_ns` is non-zero, the loop calls the `io_poll` callbacks in a loop
//! for up to `poll_ns`, also watching its own queue of BHs and the
//! `notified` flag (the context notifier's `io_poll`). While it spins,
//! `notify_me` is *not* raised: a thread that schedules a BH or calls
//! `aio_notify` sees nobody asleep and makes no syscall. Only when the
//! window passes does the loop arm `notify_me`, re-check for work (see
//! `notify.rs`) and block.
//!
//! After each blocking `aio_poll`, with `block_ns` the time from the start
//! of polling to the event: `block_ns <= poll_ns` means polling paid off
//! (keep the window); `block_ns > max_ns` means it could not have (shrink:
//! `poll_ns /= shrink`, or 0 when shrink is 0); otherwise grow (`poll_ns =
//! poll_ns ? poll_ns * grow : 4 us`, grow 0 meaning 2, capped at `max_ns`).
//!
//! Threading: the parameters may be set from any thread; the window is
//! updated by the polling thread.

use std::sync::atomic::{AtomicI64, Ordering};

/// The first non-zero window (QEMU: 4 microseconds).
const INITIAL_WINDOW_NS: i64 = 4_000;

#[derive(Default)]
pub(crate) struct PollParams {
    max_ns: AtomicI64,
    grow: AtomicI64,
    shrink: AtomicI64,
    /// The current window; 0 = do not spin.
    window_ns: AtomicI64,
}

impl PollParams {
    /// Sets the parameters and resets the window. Errors on negative values.
    pub(crate) fn set(&self, max_ns: i64, grow: i64, shrink: i64) -> Result<(), String> {
        if max_ns < 0 || grow < 0 || shrink < 0 {
            return Err(format!(
                "poll parameters must not be negative (max_ns {max_ns}, grow {grow}, shrink {shrink})"
            ));
        }
        self.max_ns.store(max_ns, Ordering::Relaxed);
        self.grow.store(grow, Ordering::Relaxed);
        self.shrink.store(shrink, Ordering::Relaxed);
        self.window_ns.store(0, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.max_ns.load(Ordering::Relaxed) > 0
    }

    #[inline]
    pub(crate) fn window_ns(&self) -> i64 {
        self.window_ns.load(Ordering::Relaxed)
    }

    /// Adapts the window after a blocking poll whose event came `block_ns`
    /// after polling started.
    pub(crate) fn adapt(&self, block_ns: i64) {
        let max_ns = self.max_ns.load(Ordering::Relaxed);
        if max_ns <= 0 {
            return;
        }
        let window = self.window_ns.load(Ordering::Relaxed);
        let new = if block_ns <= window {
            window
        } else if block_ns > max_ns {
            match self.shrink.load(Ordering::Relaxed) {
                0 => 0,
                shrink => window / shrink,
            }
        } else if window == 0 {
            INITIAL_WINDOW_NS.min(max_ns)
        } else {
            let grow = match self.grow.load(Ordering::Relaxed) {
                0 => 2,
                grow => grow,
            };
            window.saturating_mul(grow).min(max_ns)
        };
        self.window_ns.store(new, Ordering::Relaxed);
    }
}

/// Monotonic nanoseconds (QEMU_CLOCK_REALTIME), for measuring poll windows.
#[inline]
pub(crate) fn now_ns() -> i64 {
    crate::timer::ClockType::Realtime.now_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(max: i64, grow: i64, shrink: i64) -> PollParams {
        let p = PollParams::default();
        p.set(max, grow, shrink).unwrap();
        p
    }

    #[test]
    fn negative_values_are_rejected() {
        assert!(PollParams::default().set(-1, 0, 0).is_err());
        assert!(PollParams::default().set(0, -1, 0).is_err());
        assert!(PollParams::default().set(0, 0, -1).is_err());
    }

    #[test]
    fn grows_from_zero_to_4us_then_by_grow_capped_at_max() {
        let p = params(32_000, 2, 2);
        p.adapt(10_000);
        assert_eq!(p.window_ns(), 4_000);
        p.adapt(10_000);
        assert_eq!(p.window_ns(), 8_000);
        p.adapt(10_000);
        assert_eq!(p.window_ns(), 16_000);
        p.adapt(30_000);
        assert_eq!(p.window_ns(), 32_000);
        p.adapt(31_000); // paid off: keep
        assert_eq!(p.window_ns(), 32_000);
    }

    #[test]
    fn grow_zero_means_two_and_shrink_zero_means_reset() {
        let p = params(100_000, 0, 0);
        p.adapt(50_000);
        p.adapt(50_000);
        assert_eq!(p.window_ns(), 8_000);
        p.adapt(1_000_000);
        assert_eq!(p.window_ns(), 0);
    }

    #[test]
    fn shrinks_when_events_come_later_than_max() {
        let p = params(32_000, 2, 4);
        for _ in 0..4 {
            p.adapt(20_000);
        }
        assert_eq!(p.window_ns(), 32_000);
        p.adapt(1_000_000);
        assert_eq!(p.window_ns(), 8_000);
    }

    #[test]
    fn disabled_when_max_is_zero() {
        let p = params(0, 2, 2);
        assert!(!p.enabled());
        p.adapt(10);
        assert_eq!(p.window_ns(), 0);
    }
}
