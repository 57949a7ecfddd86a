//! Adaptive busy polling (`aio_context_set_poll_params`): the window
//! controller (`PollParams`) and the spin loop (`Context::busy_poll`).
//!
//! Before a blocking wait, when every registered handler has an `io_poll`
//! callback (`aio_poll_disabled()` is false) and the window for this
//! iteration is non-zero, the loop calls the `io_poll` callbacks in a loop
//! for up to that window, also watching its own queue of BHs and the
//! `notified` flag (the context notifier's `io_poll`). While it spins,
//! `notify_me` is *not* raised: a thread that schedules a BH or calls
//! `aio_notify` sees nobody asleep and makes no syscall. Only when the
//! window passes does the loop arm `notify_me`, re-check for work (see
//! `notify.rs`) and block.
//!
//! ## The window (QEMU's rule)
//!
//! After each blocking `aio_poll`, with `event_ns` the time from the start
//! of the poll window to the event: `event_ns <= window` means polling paid
//! off (keep the window); `event_ns > max_ns` means it could not have
//! (shrink: `window /= shrink`, or 0 when shrink is 0); otherwise grow
//! (`window = window ? window * grow : 4 us`, grow 0 meaning 2, capped at
//! `max_ns`).
//!
//! ## Why that alone does not converge, and the three additions
//!
//! Two contexts that answer each other (a cross-thread ping-pong) can be in
//! a steady state where both spin (each answer comes within a microsecond,
//! inside the other's window) or one where both block. When both block,
//! each event comes one blocked wake-up of the peer after the window starts;
//! on a VM that costs 40-130 us, more than a usual `max_ns` (32 us), so
//! QEMU's rule shrinks to 0 and stays there: neither side ever spins while
//! the other is spinning, and they never find out that they could.
//!
//! - **The event's time, not the wake-up's.** After a wait that blocked,
//!   the event is timed when the waker wrote the eventfd (`kick` records
//!   its clock here, beside the system call), not when the poller ran
//!   again. A window that ran out just before the peer's answer (a
//!   preemption, an interrupt) would otherwise count the wake-up latency,
//!   more than `max_ns` on a VM, and shrink; the peer, which then waits for
//!   a poller that is asleep, runs out too, and the two keep each other's
//!   windows too short. Timed at the kick, the window grows past the
//!   jitter instead. Events that end a wait without a kick (an fd, a timer)
//!   are timed at the wake-up, as in QEMU.
//! - **Probes.** When the window is 0 and events keep coming later than
//!   `max_ns` (but not idle-late, see below), every `probe_interval`-th
//!   such blocking iteration starts a probe: for [`PROBE_LEN`] iterations
//!   the loop spins for up to `max_ns` (never longer: `max_ns` keeps its
//!   meaning). A probe that finds its event while spinning sets the window
//!   to `max_ns` (from there QEMU's rule applies). A probe that finds
//!   nothing doubles `probe_interval` (from [`PROBE_FIRST`] up to
//!   [`PROBE_MAX`]), so a context whose events really come late spends at
//!   most `PROBE_LEN * max_ns` of spinning per `PROBE_MAX` blocked waits.
//!   The interval restarts at [`PROBE_FIRST`] after a hit and whenever the
//!   window shrinks to 0 (probe soon after a shrink). Because two peers in
//!   the ping-pong run the same number of iterations, their probes overlap,
//!   which is what lets them reach the spinning state together.
//! - **Idle.** An event later than [`IDLE_FACTOR`] × `max_ns` means there is
//!   no traffic to poll for: the window drops to 0 at once (rather than
//!   halving on each of the following rare wake-ups) and the probe countdown
//!   does not advance, so an idle context burns no CPU on polling.
//!
//! The spin yields the CPU (`sched_yield`) every [`YIELD_EVERY_NS`]: on a
//! loaded machine the peer that will answer may be runnable on this CPU,
//! and a spin that never yields would make it wait for the whole window.
//!
//! The window reported by `aioctx_context_get_poll_ns` / the
//! `poll_window_ns` stat is the adaptive window; a probe iteration spins
//! for `max_ns` while it is 0 (counted in `poll_hits` / `poll_misses`).
//!
//! Threading: the parameters may be set from any thread (which resets the
//! window and the probe state); the rest is updated by the polling thread
//! only (relaxed atomics so that other threads may read the window).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::context::{Context, LoopGuard};
use crate::handlers::Handler;

/// The first non-zero window (QEMU: 4 microseconds).
const INITIAL_WINDOW_NS: i64 = 4_000;
/// Blocked waits with window 0 before the first probe.
pub(crate) const PROBE_FIRST: i64 = 8;
/// The longest probe interval (blocked waits with window 0).
pub(crate) const PROBE_MAX: i64 = 1024;
/// Iterations one probe spins for `max_ns`.
pub(crate) const PROBE_LEN: i64 = 4;
/// While spinning, `sched_yield` this often: when the thread that will
/// produce the event shares this CPU (2 vCPUs, other load), spinning
/// without yielding only delays it by the whole window.
const YIELD_EVERY_NS: i64 = 1_000;
/// An event later than this many `max_ns` means the context is idle.
pub(crate) const IDLE_FACTOR: i64 = 64;

#[derive(Default)]
pub(crate) struct PollParams {
    max_ns: AtomicI64,
    grow: AtomicI64,
    shrink: AtomicI64,
    /// The current window; 0 = do not spin (except in a probe).
    window_ns: AtomicI64,
    /// Blocked waits with window 0 left before the next probe.
    probe_countdown: AtomicI64,
    /// Iterations left in the current probe (0: not probing).
    probe_left: AtomicI64,
    /// The countdown to restart with after a probe ends.
    probe_interval: AtomicI64,
    /// The clock of the first kick (eventfd write) since the poller last
    /// blocked (`expect_kick`), 0 if none: the time of the event that ended
    /// the wait, without the wake-up latency that follows it.
    kicked_at_ns: AtomicI64,
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
        self.restart_probes();
        self.probe_left.store(0, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.max_ns.load(Ordering::Relaxed) > 0
    }

    /// The adaptive window (0 while probing).
    #[inline]
    pub(crate) fn window_ns(&self) -> i64 {
        self.window_ns.load(Ordering::Relaxed)
    }

    /// How long this iteration may spin: the window, or `max_ns` in a probe.
    #[inline]
    pub(crate) fn spin_ns(&self) -> i64 {
        match self.window_ns() {
            0 if self.probe_left.load(Ordering::Relaxed) > 0 => self.max_ns.load(Ordering::Relaxed),
            w => w,
        }
    }

    /// Poller, before it arms `notify_me` to block: forget earlier kicks.
    #[inline]
    pub(crate) fn expect_kick(&self) {
        self.kicked_at_ns.store(0, Ordering::Relaxed);
    }

    /// Waker, about to write the eventfd of a blocked poller: records the
    /// time if the poller adapts a window and no earlier kick did. A clock
    /// read beside a system call.
    pub(crate) fn note_kick(&self) {
        if self.enabled() {
            let _ = self.kicked_at_ns.compare_exchange(
                0,
                now_ns().max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Poller, after a blocked wait that started its poll window at
    /// `start`: ns from `start` to the first kick, else to now.
    ///
    /// The event is what the window waits for, so its time counts, not the
    /// time the poller took to wake up after it (tens of microseconds on a
    /// VM, more than a usual `max_ns`): a window that ran out just before
    /// the peer's answer then grows instead of shrinking. The kick time is
    /// a hint (relaxed): a late or missing one only makes this the wake-up
    /// time, as in QEMU.
    pub(crate) fn blocked_event_ns(&self, start: i64) -> i64 {
        let now = now_ns();
        let kicked = self.kicked_at_ns.load(Ordering::Relaxed);
        let at = if kicked != 0 && kicked <= now {
            kicked
        } else {
            now
        };
        (at - start).max(0)
    }

    fn restart_probes(&self) {
        self.probe_interval.store(PROBE_FIRST, Ordering::Relaxed);
        self.probe_countdown.store(PROBE_FIRST, Ordering::Relaxed);
    }

    /// [`PollParams::adapt`] for a blocking poll that found work ready
    /// before it would spin or wait: the event counts as 1 ns after the
    /// window started, without reading the clock (QEMU reads it, and gets
    /// the ~100 ns its own bookkeeping took, which the rule treats alike
    /// unless the window is shorter than that).
    #[inline]
    pub(crate) fn adapt_ready_at_once(&self) {
        if self.enabled() {
            self.adapt(1, false);
        }
    }

    /// Adapts the window after a blocking poll whose event came `event_ns`
    /// after its poll window started; `hit` says the spin found it.
    pub(crate) fn adapt(&self, event_ns: i64, hit: bool) {
        let max_ns = self.max_ns.load(Ordering::Relaxed);
        if max_ns <= 0 {
            return;
        }
        let window = self.window_ns();
        if event_ns > max_ns.saturating_mul(IDLE_FACTOR) {
            // Idle: no traffic to poll for, and no probing either.
            self.window_ns.store(0, Ordering::Relaxed);
            self.probe_left.store(0, Ordering::Relaxed);
            return;
        }
        let probe_left = self.probe_left.load(Ordering::Relaxed);
        if window == 0 && probe_left > 0 {
            if hit {
                self.window_ns.store(max_ns, Ordering::Relaxed);
                self.probe_left.store(0, Ordering::Relaxed);
                self.restart_probes();
                return;
            }
            if event_ns > max_ns {
                // The probe spun max_ns for nothing.
                self.probe_left.store(probe_left - 1, Ordering::Relaxed);
                if probe_left == 1 {
                    let next = (self.probe_interval.load(Ordering::Relaxed) * 2).min(PROBE_MAX);
                    self.probe_interval.store(next, Ordering::Relaxed);
                    self.probe_countdown.store(next, Ordering::Relaxed);
                }
                return;
            }
            // Work was there without spinning: QEMU's rule below.
        }
        let new = self.qemu_rule(window, event_ns, max_ns);
        if new == 0 {
            if window > 0 {
                self.restart_probes(); // just shrank to 0: probe soon
            } else if event_ns > max_ns {
                let left = self.probe_countdown.load(Ordering::Relaxed) - 1;
                self.probe_countdown.store(left, Ordering::Relaxed);
                if left <= 0 {
                    self.probe_left.store(PROBE_LEN, Ordering::Relaxed);
                }
            }
        } else {
            self.probe_left.store(0, Ordering::Relaxed);
        }
        self.window_ns.store(new, Ordering::Relaxed);
    }

    /// QEMU's grow/shrink rule.
    fn qemu_rule(&self, window: i64, event_ns: i64, max_ns: i64) -> i64 {
        if event_ns <= window {
            window
        } else if event_ns > max_ns {
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
        }
    }
}

/// Monotonic nanoseconds (QEMU_CLOCK_REALTIME), for measuring poll windows.
#[inline]
pub(crate) fn now_ns() -> i64 {
    crate::timer::ClockType::Realtime.now_ns()
}

impl Context {
    /// Spins on the `io_poll` callbacks (and the context's own queue and
    /// notification flag) for up to this iteration's window (see
    /// [`PollParams::spin_ns`]), capped by `timeout_ns`, from `start` (the
    /// clock when the poll began). Returns when it found work, in ns after
    /// `start`, or None; handlers whose `io_poll` reported work are appended
    /// to `hits`.
    ///
    /// The time of a find is the clock read of the spin turn that found it
    /// (at most one turn early): reading the clock again would delay, by a
    /// vDSO call, the work that another thread waits for.
    pub(crate) fn busy_poll(
        &self,
        guard: &LoopGuard<'_>,
        timeout_ns: i64,
        start: i64,
        hits: &mut Vec<Arc<Handler>>,
    ) -> Option<i64> {
        let window = self.poll_params().spin_ns();
        if window == 0 || self.handlers().poll_disabled() {
            return None;
        }
        let max_ns = if timeout_ns < 0 {
            window
        } else {
            window.min(timeout_ns)
        };
        let pollers: Vec<Arc<Handler>> = self.local_handlers(guard).pollers().to_vec();
        for h in &pollers {
            if let (Some(begin), true) = (h.cb.io_poll_begin, h.is_live()) {
                // SAFETY: registered by the C caller for `opaque`; no borrow held.
                unsafe { begin(h.cb.opaque) };
            }
        }
        let poll_once = |hits: &mut Vec<Arc<Handler>>| {
            poll_handlers_once(&pollers, hits);
            !hits.is_empty() || self.bh_linked(guard) || self.notify_state().is_notified()
        };
        let mut found = poll_once(hits);
        let mut last_yield = start;
        let mut now = start;
        loop {
            if found {
                break;
            }
            now = now_ns();
            if now - start >= max_ns {
                break;
            }
            if now - last_yield >= YIELD_EVERY_NS {
                // The peer we wait for may be runnable on this very CPU.
                std::thread::yield_now();
                last_yield = now;
            } else {
                std::hint::spin_loop();
            }
            found = poll_once(hits);
        }
        let mut ended = false;
        for h in &pollers {
            if let (Some(end), true) = (h.cb.io_poll_end, h.is_live()) {
                // SAFETY: as above.
                unsafe { end(h.cb.opaque) };
                ended = true;
            }
        }
        if !found && ended {
            // An event may have arrived between the last poll and io_poll_end.
            found = poll_once(hits);
        }
        let stats = self.loop_stats(guard);
        if found {
            stats.poll_hits.incr();
            Some(now - start)
        } else {
            stats.poll_misses.incr();
            None
        }
    }
}

/// Calls each live handler's `io_poll` once; appends those that found work
/// to `hits` (once each: hits may be kept from an earlier call).
pub(crate) fn poll_handlers_once(pollers: &[Arc<Handler>], hits: &mut Vec<Arc<Handler>>) {
    for h in pollers {
        if let (Some(poll), true) = (h.cb.io_poll, h.is_live()) {
            // SAFETY: registered by the C caller for `opaque`; the callers
            // hold no lock or borrow.
            if unsafe { poll(h.cb.opaque) } && !hits.iter().any(|x| Arc::ptr_eq(x, h)) {
                hits.push(Arc::clone(h));
            }
        }
    }
}

#[cfg(test)]
mod tests;
