//! Whether a blocking `aio_poll` first asks the fd monitor without waiting.
//!
//! `blocked_ns` (the blocked-time statistic) brackets every blocking wait
//! with two clock reads. On this project's VMs one `rdtsc` costs ~12 ns, so
//! the pair is a visible part of an iteration whose fd was ready before it
//! started (the loop of a busy I/O thread; `bench/fd_1000.c`). A wait with
//! timeout 0 blocks for no time and needs no clock: when the fds are ready
//! already, such a probe answers the iteration and the clock is never read.
//!
//! A probe that finds nothing costs one non-blocking syscall before the
//! real, timed wait. So after a miss the next probes are skipped, 1, 3, 7,
//! ... up to [`ReadyProbe::MAX_SKIP`] iterations: a loop that mostly sleeps
//! pays one wasted probe per 64 sleeps at most, and a loop that turns busy
//! finds out within 64 iterations. A hit probes again the next time.
//!
//! Not used when the monitor times its own sleep (io_uring answers a wait
//! from ring memory without a syscall or a clock) or in the
//! `aioctx_no_stats` build (no clock to save).
//!
//! Threading: loop thread only (kept in `HandlersLocal`).

/// The probe's back-off state.
#[derive(Debug, Default)]
pub(crate) struct ReadyProbe {
    /// Blocking waits left to go without a probe.
    skip: u8,
    /// The skip set by the latest miss (0 after a hit).
    backoff: u8,
}

impl ReadyProbe {
    /// The most waits skipped after a run of misses.
    pub(crate) const MAX_SKIP: u8 = 63;

    /// Whether this blocking wait should probe first; counts a skip.
    #[inline(always)]
    pub(crate) fn should_probe(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// Records a probe's outcome: `found` means the monitor returned
    /// something (a ready fd, the wakeup, a completion).
    #[inline(always)]
    pub(crate) fn record(&mut self, found: bool) {
        if found {
            self.backoff = 0;
        } else {
            self.backoff = (self.backoff * 2 + 1).min(Self::MAX_SKIP);
            self.skip = self.backoff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadyProbe;

    /// The blocking waits, out of `waits`, that probe when every probe
    /// finds `found`.
    fn probes(p: &mut ReadyProbe, waits: usize, found: bool) -> usize {
        (0..waits)
            .filter(|_| {
                let probe = p.should_probe();
                if probe {
                    p.record(found);
                }
                probe
            })
            .count()
    }

    #[test]
    fn hits_probe_every_wait() {
        let mut p = ReadyProbe::default();
        assert_eq!(probes(&mut p, 100, true), 100);
    }

    #[test]
    fn misses_back_off_exponentially_to_one_probe_in_64() {
        let mut p = ReadyProbe::default();
        // Probes at waits 0, 2, 6, 14, 30, 62, 126, then every 64.
        assert_eq!(probes(&mut p, 127, false), 7);
        assert_eq!(probes(&mut p, 640, false), 10);
    }

    #[test]
    fn a_hit_after_misses_probes_the_next_wait() {
        let mut p = ReadyProbe::default();
        probes(&mut p, 1000, false);
        // The next probe comes within MAX_SKIP + 1 waits and hits.
        let waited = (0..=ReadyProbe::MAX_SKIP)
            .take_while(|_| !p.should_probe())
            .count();
        assert!(waited <= usize::from(ReadyProbe::MAX_SKIP));
        p.record(true);
        assert!(p.should_probe());
        // One miss after a hit skips one wait only.
        p.record(false);
        assert!(!p.should_probe());
        assert!(p.should_probe());
    }
}
