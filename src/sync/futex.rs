//! Futexes (`qemu/futex.h`: `qemu_futex_wait`, `qemu_futex_wake_single`,
//! `qemu_futex_wake_all`), also used by `QemuEvent` and `QemuLockCnt`.
//!
//! A wake costs a system call even when nobody sleeps, which dominates a
//! hand-off lock built on futexes (QEMU's MCS test: every unlock wakes the
//! next node). So sleepers announce themselves: [`futex_wait`] counts the
//! thread in a bucket of [`SLEEPERS`] (chosen by the word's address) for
//! the duration of its `FUTEX_WAIT`, and [`futex_wake`] skips the system
//! call when the bucket is empty. (A waiter does not spin on the word
//! first: measured with more threads than CPUs, spinning took the CPU from
//! the thread that was to hand over.)
//!
//! Why no wakeup is lost (a Dekker pattern, both sides with a SeqCst
//! fence): the waker's caller changed the word before calling; the waker
//! fences, then reads the bucket. The waiter increments the bucket, fences,
//! then lets the kernel compare the word. If the waker read 0, the
//! waiter's increment comes later in the SeqCst order, so the kernel's
//! comparison sees the new word and `FUTEX_WAIT` returns at once. Buckets
//! shared by several words only cost spurious system calls. Every sleeper
//! in the library goes through [`futex_wait`]; a program that sleeps on a
//! word with its own `FUTEX_WAIT` system call and wakes it with
//! `qemu_futex_wake_*` is not supported (QEMU programs use `qemu_futex_wait`).

use std::ffi::c_int;
use std::io;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering, fence};

use crate::fatal::{Misuse, MisuseResult};

const BUCKETS: usize = 64;

/// One bucket per cache line, so that unrelated sleepers do not share one.
#[repr(align(64))]
struct Bucket(AtomicUsize);

/// Number of threads inside `FUTEX_WAIT`, per address bucket.
static SLEEPERS: [Bucket; BUCKETS] = [const { Bucket(AtomicUsize::new(0)) }; BUCKETS];

fn bucket(word: &AtomicU32) -> &'static AtomicUsize {
    let a = word.as_ptr() as usize;
    // Words are 4-byte aligned; mix the bits above that.
    let h = (a >> 2) ^ (a >> 8) ^ (a >> 14);
    &SLEEPERS[h % BUCKETS].0
}

/// Sleeps while `word` holds `val` (QEMU's `qemu_futex_wait`): returns at
/// once if it does not, else when woken by [`futex_wake`] (or spuriously).
/// Interrupted sleeps are resumed. Process-private futex.
pub(crate) fn futex_wait(word: &AtomicU32, val: u32) -> MisuseResult<()> {
    let sleepers = bucket(word);
    sleepers.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let res = futex_wait_syscall(word, val);
    sleepers.fetch_sub(1, Ordering::Release);
    res
}

fn futex_wait_syscall(word: &AtomicU32, val: u32) -> MisuseResult<()> {
    loop {
        // SAFETY: FUTEX_WAIT reads the live, aligned u32 behind `word`; the
        // null timeout means "no timeout".
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                val,
                ptr::null::<libc::timespec>(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Ok(()),
            Some(libc::EINTR) => continue,
            _ => return Err(Misuse::new(format!("futex wait failed: {err}"))),
        }
    }
}

/// Wakes up to `count` threads sleeping in [`futex_wait`] on `word`; the
/// caller changed the word before (no system call if nobody sleeps).
/// Inlined: when nobody sleeps (a hand-off lock whose next owner has not
/// gone to sleep yet), the whole call is the fence and one load.
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, count: c_int) -> MisuseResult<()> {
    fence(Ordering::SeqCst);
    if bucket(word).load(Ordering::Relaxed) == 0 {
        return Ok(());
    }
    futex_wake_syscall(word, count)
}

#[inline(never)]
fn futex_wake_syscall(word: &AtomicU32, count: c_int) -> MisuseResult<()> {
    // SAFETY: FUTEX_WAKE only uses the address to find sleepers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        )
    };
    if rc < 0 {
        return Err(Misuse::new(format!(
            "futex wake failed: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}
