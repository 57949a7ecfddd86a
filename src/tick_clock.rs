//! A cheap clock for intervals that are only reported, never acted on (the
//! `blocked_ns` statistic, see `stats.rs`): the x86-64 time-stamp counter
//! where the CPU and the kernel both vouch for it, else `CLOCK_MONOTONIC`.
//!
//! `aio_poll` reads this clock twice per blocking wait, also when the wait
//! returns at once. `rdtsc` costs about half a vDSO `clock_gettime` (10 ns
//! against 20 ns in this project's VMs), which is a tenth of what a blocking
//! poll with one ready fd adds to the syscalls (`bench/fd_1000.c`).
//!
//! The TSC is used only when CPUID says it is invariant (leaf 0x8000_0007,
//! EDX bit 8: one rate, running in every C-state), the kernel's clocksource
//! is `tsc` (the kernel found it synchronised across CPUs and stable), and
//! `rdtsc` is allowed in this process (`prctl(PR_GET_TSC)`: a sandbox may
//! make it fault). This is decided once, at the first reading: a later
//! change of clocksource (the kernel's watchdog giving up on the TSC) is not
//! followed, and only skews the statistic. Elsewhere, and under Miri, a tick
//! is a nanosecond of `CLOCK_MONOTONIC`.
//!
//! Ticks become nanoseconds at a rate measured against `CLOCK_MONOTONIC`
//! from the first reading in the process: the rate of the first conversion
//! at least [`FIRST_FIX_NS`] later is used until one at least
//! [`FINAL_FIX_NS`] later measures it again, for good. Conversions before
//! the first fix measure the rate so far. Each measurement pairs a clock
//! read with the TSC read just before and after it, and keeps the tightest
//! of a few tries, so an interrupt or a VM exit between the two reads does
//! not skew the rate. An interval whose end reads below its start (a thread
//! moved between CPUs whose counters differ) counts as 0.
//!
//! Threading: any thread; the process-wide calibration is set with atomics
//! (threads that calibrate at once store rates measured the same way).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long after the first reading a rate is first fixed.
const FIRST_FIX_NS: i64 = 1_000_000;
/// How long after the first reading the rate is measured a last time.
const FINAL_FIX_NS: i64 = 1_000_000_000;
/// Tries per paired reading (the tightest is kept).
const PAIR_TRIES: usize = 3;

/// A TSC reading and the `CLOCK_MONOTONIC` reading taken in its middle.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Pair {
    tsc: u64,
    ns: i64,
}

/// The first paired reading, when the TSC is in use.
static ORIGIN: OnceLock<Option<Pair>> = OnceLock::new();

/// Nanoseconds per TSC cycle in 32.32 fixed point; 0 until first fixed.
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);

/// The TSC value from which the rate is measured a last time
/// ([`FINAL_FIX_NS`] after the first reading); `u64::MAX` once done.
static REFIX_AT_TSC: AtomicU64 = AtomicU64::new(u64::MAX);

/// The clock now, in ticks (see the module docs).
#[inline(always)]
pub(crate) fn now_ticks() -> u64 {
    match origin() {
        Some(_) => rdtsc(),
        None => monotonic_ns() as u64,
    }
}

/// Nanoseconds from `t0` to `t1`, two [`now_ticks`] readings.
#[inline(always)]
pub(crate) fn ns_between(t0: u64, t1: u64) -> u64 {
    let ticks = t1.saturating_sub(t0);
    let Some(origin) = origin() else {
        return ticks;
    };
    let q = NS_PER_TICK_Q32.load(Ordering::Relaxed);
    if q == 0 || t1 >= REFIX_AT_TSC.load(Ordering::Relaxed) {
        return scale(ticks, calibrate(origin));
    }
    scale(ticks, q)
}

#[inline(always)]
fn scale(ticks: u64, ns_per_tick_q32: u64) -> u64 {
    ((u128::from(ticks) * u128::from(ns_per_tick_q32)) >> 32) as u64
}

#[inline(always)]
fn origin() -> Option<&'static Pair> {
    match ORIGIN.get() {
        Some(o) => o.as_ref(),
        None => first_reading(),
    }
}

#[cold]
fn first_reading() -> Option<&'static Pair> {
    ORIGIN
        .get_or_init(|| tsc_is_trusted().then(paired_reading))
        .as_ref()
}

/// The rate measured from `origin` to now; stores it when it spans
/// [`FIRST_FIX_NS`] (and arms the last measurement) or [`FINAL_FIX_NS`].
#[cold]
fn calibrate(origin: &Pair) -> u64 {
    let now = paired_reading();
    let Some(q) = rate_q32(origin, &now) else {
        return 0;
    };
    let elapsed = now.ns - origin.ns;
    if elapsed >= FINAL_FIX_NS {
        NS_PER_TICK_Q32.store(q, Ordering::Relaxed);
        REFIX_AT_TSC.store(u64::MAX, Ordering::Relaxed);
    } else if elapsed >= FIRST_FIX_NS && NS_PER_TICK_Q32.load(Ordering::Relaxed) == 0 {
        // The TSC value FINAL_FIX_NS after the origin, at this rate.
        let cycles_per_final = (u128::from(FINAL_FIX_NS as u64) << 32) / u128::from(q);
        let at = u128::from(origin.tsc) + cycles_per_final;
        REFIX_AT_TSC.store(u64::try_from(at).unwrap_or(u64::MAX), Ordering::Relaxed);
        NS_PER_TICK_Q32.store(q, Ordering::Relaxed);
    }
    q
}

/// Nanoseconds per cycle (32.32) between two paired readings; None if no
/// cycle or no nanosecond passed (or the clocks went back).
fn rate_q32(from: &Pair, to: &Pair) -> Option<u64> {
    let cycles = to.tsc.checked_sub(from.tsc).filter(|&c| c > 0)?;
    let elapsed = u64::try_from(to.ns - from.ns).ok().filter(|&e| e > 0)?;
    let q = (u128::from(elapsed) << 32) / u128::from(cycles);
    u64::try_from(q).ok().filter(|&q| q > 0)
}

/// A `CLOCK_MONOTONIC` reading with the TSC at its middle: the tightest of
/// [`PAIR_TRIES`] brackets of TSC reads around it.
fn paired_reading() -> Pair {
    let mut best: Option<(u64, Pair)> = None;
    for _ in 0..PAIR_TRIES {
        let before = rdtsc();
        let ns = monotonic_ns();
        let after = rdtsc();
        let width = after.wrapping_sub(before);
        if best.is_none_or(|(w, _)| width < w) {
            let tsc = before + width / 2;
            best = Some((width, Pair { tsc, ns }));
        }
    }
    best.expect("PAIR_TRIES > 0").1
}

fn monotonic_ns() -> i64 {
    crate::timer::ClockType::Realtime.now_ns()
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and reads a register; it
    // is only used once `tsc_is_trusted` found it allowed.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn rdtsc() -> u64 {
    unreachable!("the TSC is only used on x86-64")
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn tsc_is_trusted() -> bool {
    use std::arch::x86_64::__cpuid;
    // `__cpuid` is safe from Rust 1.94 on; this crate builds with 1.88.
    #[allow(unused_unsafe)]
    // SAFETY: every x86-64 CPU has `cpuid`; leaf 0x8000_0007 is read only
    // after leaf 0x8000_0000 says it exists.
    let invariant = unsafe {
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
    };
    let mut tsc_mode: libc::c_int = 0;
    // SAFETY: PR_GET_TSC writes one int through the pointer, which is valid.
    let allowed = unsafe { libc::prctl(libc::PR_GET_TSC, &raw mut tsc_mode) } == 0
        && tsc_mode == libc::PR_TSC_ENABLE;
    invariant
        && allowed
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn tsc_is_trusted() -> bool {
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A measured sleep lies between the shortest and longest interval
    /// `Instant` allows around the two readings (2 % + 50 µs slack), before
    /// and after the rate is first fixed.
    #[test]
    fn measures_a_sleep() {
        for _ in 0..2 {
            let (a0, t0, b0) = (Instant::now(), now_ticks(), Instant::now());
            std::thread::sleep(Duration::from_millis(5));
            let (a1, t1, b1) = (Instant::now(), now_ticks(), Instant::now());
            let measured = ns_between(t0, t1);
            let (shortest, longest) = ((a1 - b0).as_nanos() as u64, (b1 - a0).as_nanos() as u64);
            let slack = longest / 50 + 50_000;
            assert!(
                measured + slack >= shortest && measured <= longest + slack,
                "measured {measured} ns, Instant says {shortest}..{longest} ns"
            );
        }
        if origin().is_some() {
            assert_ne!(
                NS_PER_TICK_Q32.load(Ordering::Relaxed),
                0,
                "rate fixed after 5 ms"
            );
        }
    }

    #[test]
    fn an_end_before_the_start_is_zero() {
        let t = now_ticks();
        assert_eq!(ns_between(t + 1000, t), 0);
    }

    #[test]
    fn rate_from_two_pairs() {
        let p = |tsc, ns| Pair { tsc, ns };
        // 2.8 GHz: 1 ms is 2_800_000 cycles.
        let q = rate_q32(&p(1_000, 5_000), &p(2_801_000, 1_005_000)).unwrap();
        assert_eq!(scale(2_800_000, q), 999_999, "1 ms, rounded down");
        // 10 s: the 32-bit fraction is off by under 1 ns per 2^32 cycles.
        assert!(scale(28_000_000_000, q).abs_diff(10_000_000_000) <= 10);
        // 1 GHz exactly, and a huge tick count that must not overflow.
        let q = rate_q32(&p(0, 0), &p(1 << 40, 1 << 40)).unwrap();
        assert_eq!(q, 1 << 32);
        assert_eq!(scale(u64::MAX, q), u64::MAX);
        // No cycle, no time, or a clock that went back: no rate.
        assert_eq!(rate_q32(&p(5, 0), &p(5, 100)), None);
        assert_eq!(rate_q32(&p(5, 100), &p(50, 100)), None);
        assert_eq!(rate_q32(&p(50, 0), &p(5, 100)), None);
        assert_eq!(rate_q32(&p(5, 100), &p(50, 0)), None);
    }

    #[test]
    fn paired_reading_moves_forward() {
        if origin().is_none() {
            return; // no TSC here: nothing pairs readings
        }
        let (a, b) = (paired_reading(), paired_reading());
        assert!(b.ns >= a.ns && b.tsc > a.tsc, "{a:?} then {b:?}");
    }
}
