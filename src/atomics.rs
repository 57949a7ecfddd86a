//! The atomic types used by the code that `tests/loom_*.rs` model-checks
//! (the MPSC queue of `mpsc.rs` and the notify protocol).
//!
//! Under `--cfg loom` they are loom's instrumented atomics, otherwise std's.
//! Code outside those modules uses std's atomics directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering, fence};
