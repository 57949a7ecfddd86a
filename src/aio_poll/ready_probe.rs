//! Whether a blocking `aio_poll` first asks the fd monitor without waiting.
//!
//! `blocked_ns` (the blocked-time statistic) brackets every blocking wait
//! with two clock reads. On this project's VMs one `rdtsc` costs ~12 ns, so
//! the pair is a visible part of an iteration whose fd was ready before it
//! started (the loop of a busy I/O thread; `bench/fd_1000.c`). A wait with
//! timeout 0 blocks for no time and needs no clock: when the fds are ready
//! already, such a probe answers the iteration and the clock is never read.
//!
//! A probe that finds nothing costs a non-blocking syscall (a few hundred
//! ns) before the real, timed wait, against ~25 ns saved by one that finds
//! something: so the loop probes only while it is confident. It probes
//! after [`ReadyProbe::STREAK`] blocking waits in a row found their fds
//! ready at once: a probe that found something, or a timed wait that
//! returned within [`ReadyProbe::QUICK_NS`] (less than a thread's sleep and
//! wake-up takes). A probe that finds nothing, or a wait that slept, ends
//! the streak. A loop that sleeps never probes; a hot one that sometimes
//! waits wastes at most one probe per `STREAK + 1` waits, all of them quick.
//!
//! Not used when the monitor times its own sleep (io_uring answers a wait
//! from ring memory without a syscall or a clock) or in the
//! `aioctx_no_stats` build (no clock to save, and no measured time to learn
//! from).
//!
//! Threading: loop thread only (kept in `HandlersLocal`).

/// Blocking waits in a row that found their fds ready at once.
#[derive(Debug, Default)]
pub(crate) struct ReadyProbe {
    streak: u8,
}

impl ReadyProbe {
    /// Quick waits in a row after which the loop probes.
    pub(crate) const STREAK: u8 = 8;
    /// A timed wait that returned sooner did not sleep (its fds were ready,
    /// or became so within a few microseconds).
    pub(crate) const QUICK_NS: u64 = 5_000;

    /// Whether the next blocking wait should probe first.
    #[inline(always)]
    pub(crate) fn should_probe(&self) -> bool {
        self.streak >= Self::STREAK
    }

    /// Records a probe's outcome: `found` means the monitor returned
    /// something (a ready fd, the wakeup, a completion).
    #[inline(always)]
    pub(crate) fn record_probe(&mut self, found: bool) {
        if !found {
            self.streak = 0;
        }
    }

    /// Records the blocked time of a timed wait (None: not measured).
    #[inline(always)]
    pub(crate) fn record_wait(&mut self, blocked_ns: Option<u64>) {
        self.streak = match blocked_ns {
            Some(ns) if ns < Self::QUICK_NS => (self.streak + 1).min(Self::STREAK),
            _ => 0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyProbe;

    const QUICK: Option<u64> = Some(ReadyProbe::QUICK_NS - 1);
    const SLEPT: Option<u64> = Some(ReadyProbe::QUICK_NS);

    #[test]
    fn probes_after_a_streak_of_quick_waits() {
        let mut p = ReadyProbe::default();
        for _ in 0..ReadyProbe::STREAK {
            assert!(!p.should_probe());
            p.record_wait(QUICK);
        }
        assert!(p.should_probe());
        // Hits keep it probing.
        for _ in 0..100 {
            p.record_probe(true);
            assert!(p.should_probe());
        }
    }

    #[test]
    fn a_miss_or_a_sleep_ends_the_streak() {
        let mut p = ReadyProbe::default();
        for _ in 0..ReadyProbe::STREAK {
            p.record_wait(QUICK);
        }
        p.record_probe(false);
        assert!(!p.should_probe());

        for _ in 0..ReadyProbe::STREAK - 1 {
            p.record_wait(QUICK);
        }
        p.record_wait(SLEPT);
        for _ in 0..ReadyProbe::STREAK - 1 {
            p.record_wait(QUICK);
            assert!(!p.should_probe());
        }
    }

    #[test]
    fn unmeasured_waits_never_start_probing() {
        // The aioctx_no_stats build: no clock, so no blocked time.
        let mut p = ReadyProbe::default();
        for _ in 0..100 {
            p.record_wait(None);
        }
        assert!(!p.should_probe());
    }

    /// A hot loop whose every ninth wait sleeps: one probe in
    /// `STREAK + 1` waits misses, no more.
    #[test]
    fn a_loop_that_keeps_sleeping_wastes_few_probes() {
        let mut p = ReadyProbe::default();
        let mut wasted = 0;
        for i in 0..900 {
            let ready = i % 9 != 8; // 8 quick waits, then one that sleeps
            if p.should_probe() {
                p.record_probe(ready);
                if ready {
                    continue;
                }
                wasted += 1;
            }
            p.record_wait(if ready { QUICK } else { SLEPT });
        }
        let bound = 900 / (usize::from(ReadyProbe::STREAK) + 1);
        assert!(wasted <= bound, "{wasted} probes missed in 900 waits");
    }
}
