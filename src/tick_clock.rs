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
//! EDX bit 8: one rate, running in every C-state) *and* the kernel's
//! clocksource is `tsc` (the kernel found it synchronised across CPUs and
//! stable; it switches away from it when it stops trusting it). Elsewhere,
//! and under Miri, a tick is a nanosecond of `CLOCK_MONOTONIC`.
//!
//! Ticks become nanoseconds at a rate measured against `CLOCK_MONOTONIC`:
//! from the first reading in the process to the first conversion at least
//! [`CALIBRATION_NS`] later, which fixes it for good. Conversions before
//! that use the rate measured so far, exact to within the jitter of two
//! clock reads (tens of ns). An interval whose end reads below its start
//! (a thread moved between CPUs whose counters differ) counts as 0.
//!
//! Threading: any thread; the process-wide calibration is set with atomics.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long after the first reading the rate is fixed.
const CALIBRATION_NS: u64 = 1_000_000;

/// The first reading of both clocks, when the TSC is in use.
struct Origin {
    tsc: u64,
    ns: i64,
}

/// `Some` when ticks are TSC cycles, `None` when they are nanoseconds.
static ORIGIN: OnceLock<Option<Origin>> = OnceLock::new();

/// Nanoseconds per TSC cycle in 32.32 fixed point; 0 until calibrated.
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);

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
    match NS_PER_TICK_Q32.load(Ordering::Relaxed) {
        0 => calibrate(origin, ticks),
        q => scale(ticks, q),
    }
}

#[inline(always)]
fn scale(ticks: u64, ns_per_tick_q32: u64) -> u64 {
    ((u128::from(ticks) * u128::from(ns_per_tick_q32)) >> 32) as u64
}

#[inline(always)]
fn origin() -> Option<&'static Origin> {
    match ORIGIN.get() {
        Some(o) => o.as_ref(),
        None => first_reading(),
    }
}

#[cold]
fn first_reading() -> Option<&'static Origin> {
    ORIGIN
        .get_or_init(|| {
            tsc_is_trusted().then(|| Origin {
                tsc: rdtsc(),
                ns: monotonic_ns(),
            })
        })
        .as_ref()
}

/// Converts `ticks` at the rate measured since the first reading; fixes
/// the rate once that spans [`CALIBRATION_NS`].
#[cold]
fn calibrate(origin: &Origin, ticks: u64) -> u64 {
    let (tsc, ns) = (rdtsc(), monotonic_ns());
    let cycles = tsc.saturating_sub(origin.tsc);
    let elapsed = u64::try_from(ns - origin.ns).unwrap_or(0);
    if cycles == 0 {
        return 0;
    }
    let q = ((u128::from(elapsed) << 32) / u128::from(cycles)).min(u128::from(u64::MAX)) as u64;
    if elapsed >= CALIBRATION_NS && q != 0 {
        NS_PER_TICK_Q32.store(q, Ordering::Relaxed);
    }
    scale(ticks, q)
}

fn monotonic_ns() -> i64 {
    crate::timer::ClockType::Realtime.now_ns()
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and reads a register.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn rdtsc() -> u64 {
    unreachable!("the TSC is only used on x86-64")
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn tsc_is_trusted() -> bool {
    use std::arch::x86_64::__cpuid;
    // Leaf 0x8000_0000 gives the highest extended leaf there is.
    let invariant =
        __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0;
    invariant
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

    /// A measured sleep agrees with `Instant` to within 2 % plus 100 µs,
    /// before and after the rate is fixed.
    #[test]
    fn measures_a_sleep() {
        for _ in 0..2 {
            let (t0, start) = (now_ticks(), Instant::now());
            std::thread::sleep(Duration::from_millis(5));
            let (t1, real) = (now_ticks(), start.elapsed());
            let measured = ns_between(t0, t1);
            let real = real.as_nanos() as u64;
            let slack = real / 50 + 100_000;
            assert!(
                measured.abs_diff(real) <= slack,
                "measured {measured} ns, Instant says {real} ns"
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
}
