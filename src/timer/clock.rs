//! QEMU's four clocks (`qemu/timer.h`: `QEMUClockType`, `qemu_clock_get_ns`,
//! `qemu_clock_enable`).
//!
//! - REALTIME: `CLOCK_MONOTONIC`.
//! - HOST: `CLOCK_REALTIME` (wall clock; may jump).
//! - VIRTUAL, VIRTUAL_RT: `CLOCK_MONOTONIC` minus the time spent disabled.
//!   `qemu_clock_enable(type, false)` freezes the value; re-enabling resumes
//!   from the frozen value, without a jump. Each pauses independently.
//!
//! Every clock has an `enabled` flag: timers of a disabled clock neither fire
//! nor count in deadlines (see `timer.rs`).
//!
//! Threading: reading a clock is lock-free from any thread. The pausable
//! clocks publish (paused, offset, frozen) through a sequence lock so that a
//! reader never mixes two states; enable/disable transitions are serialized
//! by one mutex.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, fence};

use parking_lot::Mutex;

use crate::fatal::{Misuse, MisuseResult};

/// Number of clocks (`QEMU_CLOCK_MAX`).
pub(crate) const CLOCK_COUNT: usize = 4;

/// A valid `QEMUClockType` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClockType {
    Realtime = 0,
    Virtual = 1,
    Host = 2,
    VirtualRt = 3,
}

impl ClockType {
    pub(crate) const ALL: [ClockType; CLOCK_COUNT] = [
        ClockType::Realtime,
        ClockType::Virtual,
        ClockType::Host,
        ClockType::VirtualRt,
    ];

    /// Validates a `QEMUClockType` received from C.
    pub(crate) fn from_raw(raw: c_int) -> MisuseResult<ClockType> {
        usize::try_from(raw)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
            .ok_or_else(|| {
                Misuse::new(format!(
                    "invalid QEMUClockType {raw} (expected QEMU_CLOCK_REALTIME, _VIRTUAL, _HOST or _VIRTUAL_RT)"
                ))
            })
    }

    #[inline]
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The clock's current value in nanoseconds (`qemu_clock_get_ns`).
    #[inline]
    pub(crate) fn now_ns(self) -> i64 {
        match self {
            ClockType::Realtime => os_clock_ns(libc::CLOCK_MONOTONIC),
            ClockType::Host => os_clock_ns(libc::CLOCK_REALTIME),
            ClockType::Virtual | ClockType::VirtualRt => CLOCKS[self.index()].pausable_now(),
        }
    }

    /// Whether timers of this clock may fire. `SeqCst`: see
    /// `TimerList::run` for the handshake with `qemu_clock_enable(false)`.
    #[inline]
    pub(crate) fn is_enabled(self) -> bool {
        CLOCKS[self.index()].enabled.load(Ordering::SeqCst)
    }

    fn is_pausable(self) -> bool {
        matches!(self, ClockType::Virtual | ClockType::VirtualRt)
    }
}

#[inline]
// `time_t` and `c_long` are `i64` here but narrower on 32-bit targets.
#[allow(clippy::useless_conversion)]
fn os_clock_ns(id: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids used here
    // always exist on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i64::from(ts.tv_sec) * 1_000_000_000 + i64::from(ts.tv_nsec)
}

struct ClockState {
    enabled: AtomicBool,
    /// Sequence lock word for the three fields below: odd while a writer
    /// (holding `TRANSITIONS`) updates them.
    seq: AtomicU64,
    paused: AtomicBool,
    /// While running: value = monotonic - offset.
    offset: AtomicI64,
    /// While paused: the value.
    frozen: AtomicI64,
}

impl ClockState {
    const fn new() -> Self {
        ClockState {
            enabled: AtomicBool::new(true),
            seq: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            offset: AtomicI64::new(0),
            frozen: AtomicI64::new(0),
        }
    }

    #[inline]
    fn pausable_now(&self) -> i64 {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let value = if self.paused.load(Ordering::Relaxed) {
                    self.frozen.load(Ordering::Relaxed)
                } else {
                    os_clock_ns(libc::CLOCK_MONOTONIC) - self.offset.load(Ordering::Relaxed)
                };
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return value;
                }
            }
            std::hint::spin_loop();
        }
    }

    /// Pauses (freezes the current value) or resumes (continues from it).
    /// The caller holds `TRANSITIONS`.
    fn set_paused(&self, paused: bool) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mono = os_clock_ns(libc::CLOCK_MONOTONIC);
        if paused {
            let value = mono - self.offset.load(Ordering::Relaxed);
            self.frozen.store(value, Ordering::Relaxed);
        } else {
            let frozen = self.frozen.load(Ordering::Relaxed);
            self.offset.store(mono - frozen, Ordering::Relaxed);
        }
        self.paused.store(paused, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }
}

static CLOCKS: [ClockState; CLOCK_COUNT] = [const { ClockState::new() }; CLOCK_COUNT];

/// Serializes `qemu_clock_enable` transitions (not taken by readers).
static TRANSITIONS: Mutex<()> = Mutex::new(());

/// Sets the `enabled` flag of `clock`, pausing or resuming a pausable
/// clock's value with it. Returns whether the flag changed.
pub(crate) fn set_enabled(clock: ClockType, enabled: bool) -> bool {
    let _serialized = TRANSITIONS.lock();
    let state = &CLOCKS[clock.index()];
    if state.enabled.load(Ordering::Relaxed) == enabled {
        return false;
    }
    if enabled {
        // Resume the value first, so that a timer that sees the clock
        // enabled also sees it running.
        if clock.is_pausable() {
            state.set_paused(false);
        }
        state.enabled.store(true, Ordering::SeqCst);
    } else {
        state.enabled.store(false, Ordering::SeqCst);
        if clock.is_pausable() {
            state.set_paused(true);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_map_to_qemu_numbering() {
        assert_eq!(ClockType::from_raw(0).unwrap(), ClockType::Realtime);
        assert_eq!(ClockType::from_raw(1).unwrap(), ClockType::Virtual);
        assert_eq!(ClockType::from_raw(2).unwrap(), ClockType::Host);
        assert_eq!(ClockType::from_raw(3).unwrap(), ClockType::VirtualRt);
        assert!(ClockType::from_raw(4).is_err());
        assert!(ClockType::from_raw(-1).is_err());
    }

    #[test]
    fn pausable_state_freezes_and_resumes_without_a_jump() {
        // A private state, so the global clocks used by other tests are
        // left alone.
        let state = ClockState::new();
        let _serialized = TRANSITIONS.lock();
        state.set_paused(true);
        let frozen = state.pausable_now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(state.pausable_now(), frozen);
        state.set_paused(false);
        let resumed = state.pausable_now();
        assert!(resumed >= frozen);
        assert!(
            resumed - frozen < 4_000_000,
            "jumped by {}",
            resumed - frozen
        );
    }
}
