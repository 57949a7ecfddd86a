//! `QemuCond` (`qemu/thread.h`): a pthread condition variable on
//! `CLOCK_MONOTONIC`. Threading: see `sync/mod.rs`.

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::sync::atomic::Ordering;

use super::{QemuMutex, deadline_after_ms, pthread_result, read_flag, write_flag};
use crate::fatal::{Misuse, MisuseResult};

// ---------------------------------------------------------------------------
// QemuCond

/// A condition variable (`qemu_cond_*`), used with a `QemuMutex`.
/// Timed waits measure `CLOCK_MONOTONIC`.
#[repr(C)]
pub struct QemuCond {
    /// The pthread condition variable (`CLOCK_MONOTONIC`).
    pub cond: UnsafeCell<libc::pthread_cond_t>,
    /// True between init and destroy.
    pub initialized: UnsafeCell<bool>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    let cond = size_of::<libc::pthread_cond_t>();
    assert!(offset_of!(QemuCond, cond) == 0);
    assert!(offset_of!(QemuCond, initialized) == cond);
    assert!(align_of::<QemuCond>() == align_of::<libc::pthread_cond_t>());
    assert!(size_of::<QemuCond>() == (cond + 1).next_multiple_of(align_of::<QemuCond>()));
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuCond>() == 56 && align_of::<QemuCond>() == 8);
};

impl QemuCond {
    fn check_initialized(&self) -> MisuseResult<()> {
        if read_flag(&self.initialized) {
            Ok(())
        } else {
            Err(Misuse::new("condition variable is not initialized"))
        }
    }

    /// `qemu_cond_init`. The caller may pass uninitialized memory.
    pub(crate) fn init(&self) -> MisuseResult<()> {
        let mut attr = MaybeUninit::<libc::pthread_condattr_t>::uninit();
        // SAFETY: `attr` is initialized by pthread_condattr_init before any
        // other use and destroyed once; the cond storage is the caller's.
        unsafe {
            pthread_result(
                "pthread_condattr_init",
                libc::pthread_condattr_init(attr.as_mut_ptr()),
            )?;
            let rc = libc::pthread_condattr_setclock(attr.as_mut_ptr(), libc::CLOCK_MONOTONIC);
            let rc = if rc == 0 {
                libc::pthread_cond_init(self.cond.get(), attr.as_ptr())
            } else {
                rc
            };
            libc::pthread_condattr_destroy(attr.as_mut_ptr());
            pthread_result("pthread_cond_init", rc)?;
        }
        write_flag(&self.initialized, true);
        Ok(())
    }

    /// `qemu_cond_destroy`.
    pub(crate) fn destroy(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // SAFETY: the condition variable is initialized.
        let rc = unsafe { libc::pthread_cond_destroy(self.cond.get()) };
        pthread_result("pthread_cond_destroy", rc)?;
        write_flag(&self.initialized, false);
        Ok(())
    }

    /// `qemu_cond_signal`: wakes one waiter, if any.
    pub(crate) fn signal(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // SAFETY: the condition variable is initialized.
        pthread_result("pthread_cond_signal", unsafe {
            libc::pthread_cond_signal(self.cond.get())
        })
    }

    /// `qemu_cond_broadcast`: wakes all waiters.
    pub(crate) fn broadcast(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // SAFETY: the condition variable is initialized.
        pthread_result("pthread_cond_broadcast", unsafe {
            libc::pthread_cond_broadcast(self.cond.get())
        })
    }

    /// `qemu_cond_wait` (`deadline` None) and `qemu_cond_timedwait`:
    /// atomically unlocks `mutex`, which the calling thread must hold, sleeps,
    /// and locks it again. Returns false if `deadline` (`CLOCK_MONOTONIC`)
    /// passed, true otherwise (signalled, or spuriously woken).
    pub(crate) fn wait(
        &self,
        mutex: &QemuMutex,
        deadline: Option<&libc::timespec>,
    ) -> MisuseResult<bool> {
        self.check_initialized()?;
        mutex.check_initialized()?;
        let me = mutex.check_held()?;
        mutex.owner().store(0, Ordering::Relaxed);
        // SAFETY: the condition variable is initialized and this thread
        // holds the mutex; `deadline` is a live timespec.
        let rc = unsafe { self.wait_pthread(mutex.lock.get(), deadline) };
        // The mutex is held again, whatever rc says.
        mutex.owner().store(me, Ordering::Relaxed);
        match rc {
            libc::ETIMEDOUT => Ok(false),
            rc => pthread_result("pthread_cond_wait", rc).map(|()| true),
        }
    }

    /// `pthread_cond_wait`/`_timedwait` on `mutex`; returns pthread's code.
    ///
    /// # Safety
    /// The condition variable is initialized; `mutex` is a live pthread
    /// mutex that the calling thread holds.
    unsafe fn wait_pthread(
        &self,
        mutex: *mut libc::pthread_mutex_t,
        deadline: Option<&libc::timespec>,
    ) -> c_int {
        // SAFETY: per the contract; `deadline` is a live timespec.
        unsafe {
            match deadline {
                None => libc::pthread_cond_wait(self.cond.get(), mutex),
                Some(ts) => libc::pthread_cond_timedwait(self.cond.get(), mutex, ts),
            }
        }
    }

    /// Waits on this condition variable with a pthread mutex that is not a
    /// `QemuMutex` (the BQL): at most `ms` milliseconds if given. Returns
    /// false on timeout, true otherwise; `mutex` is held again either way.
    ///
    /// # Safety
    /// `mutex` is a live pthread mutex that the calling thread holds.
    pub(crate) unsafe fn wait_raw(
        &self,
        mutex: *mut libc::pthread_mutex_t,
        ms: Option<c_int>,
    ) -> MisuseResult<bool> {
        self.check_initialized()?;
        let deadline = ms.map(deadline_after_ms);
        // SAFETY: initialized (checked above); `mutex` per the contract.
        let rc = unsafe { self.wait_pthread(mutex, deadline.as_ref()) };
        match rc {
            libc::ETIMEDOUT => Ok(false),
            rc => pthread_result("pthread_cond_wait", rc).map(|()| true),
        }
    }

    /// `qemu_cond_timedwait`: waits at most `ms` milliseconds.
    pub(crate) fn wait_ms(&self, mutex: &QemuMutex, ms: c_int) -> MisuseResult<bool> {
        self.wait(mutex, Some(&deadline_after_ms(ms)))
    }
}
