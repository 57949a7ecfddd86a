//! QEMU's threads and synchronization primitives for QEMU-style callers
//! (`qemu/thread.h`, `qemu/thread-posix.h`, `qemu/futex.h`): `QemuMutex`,
//! `QemuRecMutex`, `QemuCond`, `QemuSemaphore`, `QemuEvent` and the futex
//! helpers, one file each under `sync/` (`QemuThread` is `qemu_thread.rs`).
//! The exported functions are in `ffi/sync.rs`.
//!
//! The structs are caller-owned and embedded by value in C structs, so they
//! are `#[repr(C)]` with QEMU's fields, plus what misuse detection needs
//! (`QemuMutex::owner`; `QemuThread`'s mode is kept out of line). Several threads use one object
//! at the same time, so every field is an `UnsafeCell`: Rust only ever holds
//! shared references and reads or writes fields through atomic views or raw
//! pointers, never through `&mut`.
//!
//! Mutexes, condition variables and threads are plain pthread objects
//! (ThreadSanitizer understands them); semaphores are a mutex, a condition
//! variable and a count, as in QEMU; `QemuEvent` is QEMU's futex protocol.
//!
//! Misuse that QEMU asserts against is a [`Misuse`] (the exported function
//! then aborts naming itself): using an object that is not initialized,
//! unlocking a mutex that is not locked or that another thread holds,
//! destroying a locked mutex, locking a (non-recursive) mutex twice in one
//! thread, waiting on a condition without holding its mutex, joining a
//! detached thread or a thread twice. Owner checks are exact for the thread
//! that holds a mutex; another thread may read a stale owner, which can only
//! change the wording of the report, never turn misuse into success.

mod cond;
mod event;
mod futex;
mod mutex;
mod semaphore;

pub use cond::QemuCond;
pub use event::QemuEvent;
pub(crate) use futex::{futex_wait, futex_wake};
pub use mutex::{QemuMutex, QemuRecMutex};
pub use semaphore::QemuSemaphore;

use std::cell::{Cell, UnsafeCell};
use std::ffi::c_int;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::fatal::{Misuse, MisuseResult};

// ---------------------------------------------------------------------------
// Helpers

thread_local! {
    /// This thread's kernel id (`gettid`), 0 until first asked.
    static TID: Cell<c_int> = const { Cell::new(0) };
}

/// The calling thread's kernel thread id; never 0, so 0 can mean "nobody".
#[inline]
pub(crate) fn current_tid() -> c_int {
    TID.with(|cached| {
        let mut tid = cached.get();
        if tid == 0 {
            // SAFETY: gettid takes no arguments and always succeeds.
            tid = unsafe { libc::syscall(libc::SYS_gettid) } as c_int;
            cached.set(tid);
        }
        tid
    })
}

/// Turns a pthread-style return code (0 or an errno value) into a result.
#[inline]
pub(crate) fn pthread_result(what: &str, rc: c_int) -> MisuseResult<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(pthread_failed(what, rc))
    }
}

#[cold]
fn pthread_failed(what: &str, rc: c_int) -> Misuse {
    Misuse::new(format!(
        "{what} failed: {}",
        io::Error::from_raw_os_error(rc)
    ))
}

/// Reads a C `bool` field that may hold garbage (memory never initialized)
/// as a byte, so that a garbage value is "not initialized" instead of an
/// invalid Rust `bool`.
fn read_flag(flag: &UnsafeCell<bool>) -> bool {
    // SAFETY: the field is a live, aligned byte; every access to it from
    // Rust is atomic.
    unsafe { AtomicU8::from_ptr(flag.get().cast::<u8>()) }.load(Ordering::Relaxed) == 1
}

fn write_flag(flag: &UnsafeCell<bool>, value: bool) {
    // SAFETY: as in `read_flag`.
    unsafe { AtomicU8::from_ptr(flag.get().cast::<u8>()) }
        .store(u8::from(value), Ordering::Relaxed);
}

/// `CLOCK_MONOTONIC` now plus `ms` milliseconds (negative counts as 0), the
/// absolute deadline `pthread_cond_timedwait` wants for a condition
/// variable initialized with that clock.
fn deadline_after_ms(ms: c_int) -> libc::timespec {
    // QEMU_CLOCK_REALTIME is CLOCK_MONOTONIC.
    let now = crate::timer::ClockType::Realtime.now_ns();
    crate::fdmon::timespec_from_ns(now + i64::from(ms.max(0)) * 1_000_000)
}
