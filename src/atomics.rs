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
