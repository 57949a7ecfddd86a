//! `QemuSemaphore` (`qemu/thread.h`): a mutex, a condition variable and a
//! count, as in QEMU. Threading: see `sync/mod.rs`.

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_uint};

use super::{QemuCond, QemuMutex, deadline_after_ms};
use crate::fatal::{Misuse, MisuseResult};

// ---------------------------------------------------------------------------
// QemuSemaphore

/// A counting semaphore (`qemu_sem_*`): a mutex, a condition variable and
/// the count, as in QEMU.
#[repr(C)]
pub struct QemuSemaphore {
    /// Protects `count`.
    pub mutex: QemuMutex,
    /// Signalled by every post.
    pub cond: QemuCond,
    /// Posts not yet consumed by a wait.
    pub count: UnsafeCell<c_uint>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(QemuSemaphore, mutex) == 0);
    assert!(offset_of!(QemuSemaphore, cond) == size_of::<QemuMutex>());
    assert!(offset_of!(QemuSemaphore, count) == size_of::<QemuMutex>() + size_of::<QemuCond>());
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuSemaphore>() == 112 && align_of::<QemuSemaphore>() == 8);
};

impl QemuSemaphore {
    fn check_initialized(&self) -> MisuseResult<()> {
        if self.mutex.is_initialized() {
            Ok(())
        } else {
            Err(Misuse::new("semaphore is not initialized"))
        }
    }

    /// The count; only while holding `mutex`.
    fn count(&self) -> *mut c_uint {
        self.count.get()
    }

    /// `qemu_sem_init`: a semaphore holding `init` (>= 0) posts.
    pub(crate) fn init(&self, init: c_int) -> MisuseResult<()> {
        let Ok(init) = c_uint::try_from(init) else {
            return Err(Misuse::new(format!("initial count {init} is negative")));
        };
        self.mutex.init(false)?;
        self.cond.init()?;
        // SAFETY: nobody else may use the semaphore during init.
        unsafe { *self.count() = init };
        Ok(())
    }

    /// `qemu_sem_destroy`.
    pub(crate) fn destroy(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        self.cond.destroy()?;
        self.mutex.destroy()
    }

    /// `qemu_sem_post`: adds one and wakes one waiter.
    pub(crate) fn post(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        self.mutex.lock()?;
        // SAFETY: the count is protected by the mutex, which we hold.
        let count = unsafe { &mut *self.count() };
        if *count >= c_int::MAX as c_uint {
            return Err(Misuse::new("semaphore count overflow"));
        }
        *count += 1;
        self.cond.signal()?;
        self.mutex.unlock()
    }

    /// `qemu_sem_wait` (`ms` None) and `qemu_sem_timedwait`: takes one post,
    /// waiting for it at most `ms` milliseconds. Returns false on timeout.
    pub(crate) fn wait(&self, ms: Option<c_int>) -> MisuseResult<bool> {
        self.check_initialized()?;
        let deadline = ms.map(deadline_after_ms);
        self.mutex.lock()?;
        let mut timed_out = false;
        let taken = loop {
            // SAFETY: the count is protected by the mutex, which we hold
            // here (the condition wait gives it back before returning).
            let count = unsafe { &mut *self.count() };
            if *count > 0 {
                *count -= 1;
                break true;
            }
            if timed_out {
                break false;
            }
            timed_out = !self.cond.wait(&self.mutex, deadline.as_ref())?;
        };
        self.mutex.unlock()?;
        Ok(taken)
    }
}
