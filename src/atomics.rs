//! The atomic types used by the code that `tests/loom_*.rs` model-checks
//! (the MPSC queue of `mpsc.rs`, the notify protocol and the `CoMutex`
//! hand-off of `coroutine/comutex_handoff.rs`).
//!
//! Under `--cfg loom` they are loom's instrumented atomics, otherwise std's.
//! Code outside those modules uses std's atomics directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering, fence};

/// One turn of a spin-wait: a CPU hint; under loom a yield, so that the
/// model checker runs the thread being waited for.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A longer spin-wait gives the CPU away (loom: a yield as well).
#[inline]
pub(crate) fn spin_yield() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

/// Asks the CPU to bring the cache line of `p` in writable, ahead of an
/// atomic RMW on it. A line another CPU wrote last is otherwise fetched
/// twice when the first access is a load: shared for the load, then
/// exclusive for the RMW. A hint only: nothing is read or written.
#[inline(always)]
pub(crate) fn prefetch_for_write<T>(p: *const T) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: PREFETCHW never faults, whatever the address, and changes no
    // memory, register or flag (CPUs without PRFCHW execute it as a NOP).
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    let _ = p;
}
