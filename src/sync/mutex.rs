//! `QemuMutex` and `QemuRecMutex` (`qemu/thread.h`): pthread mutexes plus
//! the owner that misuse detection needs. Threading: see `sync/mod.rs`.

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

use super::{current_tid, pthread_result, read_flag, write_flag};
use crate::fatal::{Misuse, MisuseResult};

// ---------------------------------------------------------------------------
// QemuMutex and QemuRecMutex

/// A mutex (`qemu_mutex_*`), embedded by value in caller structs.
///
/// Not recursive: locking it again in the thread that holds it aborts.
/// Only the thread that locked it may unlock it.
#[repr(C)]
pub struct QemuMutex {
    /// The pthread mutex (default kind; recursive inside a `QemuRecMutex`).
    pub lock: UnsafeCell<libc::pthread_mutex_t>,
    /// True between init and destroy.
    pub initialized: UnsafeCell<bool>,
    /// Kernel thread id of the thread holding the mutex, 0 when unlocked.
    /// aioctx addition, for misuse checks.
    pub owner: UnsafeCell<c_int>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    let lock = size_of::<libc::pthread_mutex_t>();
    assert!(offset_of!(QemuMutex, lock) == 0);
    assert!(offset_of!(QemuMutex, initialized) == lock);
    assert!(offset_of!(QemuMutex, owner) == lock + 4);
    assert!(align_of::<QemuMutex>() == align_of::<libc::pthread_mutex_t>());
    assert!(size_of::<QemuMutex>() == (lock + 8).next_multiple_of(align_of::<QemuMutex>()));
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuMutex>() == 48 && align_of::<QemuMutex>() == 8);
};

/// A recursive mutex (`qemu_rec_mutex_*`): the thread holding it may lock
/// it again and must unlock it as many times.
///
/// QEMU's layout: only a `QemuMutex`. The lock depth and holder are kept by
/// the recursive pthread mutex itself; unlocking by a thread that does not
/// hold it is caught by pthread's `EPERM`, destroying a locked one by its
/// `EBUSY`. (`m.owner` stays 0: the non-recursive owner checks do not apply.)
#[repr(C)]
pub struct QemuRecMutex {
    /// The mutex, initialized as a recursive pthread mutex.
    pub m: QemuMutex,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(QemuRecMutex, m) == 0);
    assert!(size_of::<QemuRecMutex>() == size_of::<QemuMutex>());
    assert!(align_of::<QemuRecMutex>() == align_of::<QemuMutex>());
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuRecMutex>() == 48);
};

impl QemuMutex {
    pub(super) fn owner(&self) -> &AtomicI32 {
        // SAFETY: the field is a live, aligned c_int that Rust only accesses
        // atomically; C never touches it.
        unsafe { AtomicI32::from_ptr(self.owner.get()) }
    }

    pub(crate) fn is_initialized(&self) -> bool {
        read_flag(&self.initialized)
    }

    #[inline]
    pub(super) fn check_initialized(&self) -> MisuseResult<()> {
        if self.is_initialized() {
            Ok(())
        } else {
            Err(not_initialized())
        }
    }

    /// `qemu_mutex_init` (`recursive` false) / `qemu_rec_mutex_init`.
    /// The caller may pass uninitialized memory.
    pub(crate) fn init(&self, recursive: bool) -> MisuseResult<()> {
        if recursive {
            let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            // SAFETY: `attr` is initialized by pthread_mutexattr_init before
            // any other use and destroyed once, after pthread_mutex_init.
            unsafe {
                pthread_result(
                    "pthread_mutexattr_init",
                    libc::pthread_mutexattr_init(attr.as_mut_ptr()),
                )?;
                libc::pthread_mutexattr_settype(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_RECURSIVE);
                let rc = libc::pthread_mutex_init(self.lock.get(), attr.as_ptr());
                libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
                pthread_result("pthread_mutex_init", rc)?;
            }
        } else {
            // SAFETY: (re)initializes the caller's pthread_mutex_t storage;
            // the contract forbids concurrent use during init.
            let rc = unsafe { libc::pthread_mutex_init(self.lock.get(), ptr::null()) };
            pthread_result("pthread_mutex_init", rc)?;
        }
        self.owner().store(0, Ordering::Relaxed);
        write_flag(&self.initialized, true);
        Ok(())
    }

    /// `qemu_mutex_destroy` / `qemu_rec_mutex_destroy`.
    pub(crate) fn destroy(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        match self.owner().load(Ordering::Relaxed) {
            0 => {}
            owner if owner == current_tid() => {
                return Err(Misuse::new("mutex is locked (by the calling thread)"));
            }
            owner => return Err(Misuse::new(format!("mutex is locked (by thread {owner})"))),
        }
        // SAFETY: the mutex is initialized and (as far as the owner field
        // tells) unlocked; pthread still reports EBUSY if it is locked.
        let rc = unsafe { libc::pthread_mutex_destroy(self.lock.get()) };
        if rc == libc::EBUSY {
            return Err(Misuse::new("mutex is locked"));
        }
        pthread_result("pthread_mutex_destroy", rc)?;
        write_flag(&self.initialized, false);
        Ok(())
    }

    /// `qemu_mutex_lock`: blocks until the mutex is free.
    ///
    /// Fast path: one `pthread_mutex_trylock` (a single CAS) and the owner
    /// store. The owner check against relocking needs no read before it:
    /// a free mutex is not held by anyone, the calling thread included. Only
    /// when it is busy does [`Self::lock_contended`] read the owner (exact
    /// for the calling thread, which alone stores its own id) and block.
    #[inline]
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // SAFETY: the mutex is initialized.
        if unsafe { libc::pthread_mutex_trylock(self.lock.get()) } == 0 {
            self.owner().store(current_tid(), Ordering::Relaxed);
            return Ok(());
        }
        self.lock_contended()
    }

    #[cold]
    fn lock_contended(&self) -> MisuseResult<()> {
        let me = current_tid();
        if self.owner().load(Ordering::Relaxed) == me {
            return Err(Misuse::new(
                "mutex is already locked by the calling thread (it is not recursive: deadlock)",
            ));
        }
        // SAFETY: the mutex is initialized.
        let rc = unsafe { libc::pthread_mutex_lock(self.lock.get()) };
        pthread_result("pthread_mutex_lock", rc)?;
        self.owner().store(me, Ordering::Relaxed);
        Ok(())
    }

    /// `qemu_mutex_trylock`: 0 if locked now, `-EBUSY` if it is held
    /// (by anyone, including the calling thread).
    pub(crate) fn trylock(&self) -> MisuseResult<c_int> {
        self.check_initialized()?;
        // SAFETY: the mutex is initialized.
        match unsafe { libc::pthread_mutex_trylock(self.lock.get()) } {
            0 => {
                self.owner().store(current_tid(), Ordering::Relaxed);
                Ok(0)
            }
            libc::EBUSY => Ok(-libc::EBUSY),
            rc => pthread_result("pthread_mutex_trylock", rc).map(|()| 0),
        }
    }

    /// Checks that the calling thread holds the mutex; returns its id.
    #[inline]
    pub(super) fn check_held(&self) -> MisuseResult<c_int> {
        let me = current_tid();
        let owner = self.owner().load(Ordering::Relaxed);
        if owner == me {
            Ok(me)
        } else {
            Err(not_held(owner, me))
        }
    }

    /// `qemu_mutex_unlock`: only by the thread that holds it.
    #[inline]
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        self.check_held()?;
        self.owner().store(0, Ordering::Relaxed);
        // SAFETY: the mutex is initialized and held by this thread.
        let rc = unsafe { libc::pthread_mutex_unlock(self.lock.get()) };
        pthread_result("pthread_mutex_unlock", rc)
    }
}

#[cold]
fn not_initialized() -> Misuse {
    Misuse::new("mutex is not initialized")
}

#[cold]
fn not_held(owner: c_int, me: c_int) -> Misuse {
    if owner == 0 {
        Misuse::new("mutex is not locked")
    } else {
        Misuse::new(format!(
            "mutex is locked by thread {owner}, not by the calling thread {me}"
        ))
    }
}

impl QemuRecMutex {
    /// `qemu_rec_mutex_init`. The caller may pass uninitialized memory.
    pub(crate) fn init(&self) -> MisuseResult<()> {
        self.m.init(true)
    }

    /// `qemu_rec_mutex_destroy`: aborts if it is locked (pthread's `EBUSY`).
    pub(crate) fn destroy(&self) -> MisuseResult<()> {
        self.m.destroy()
    }

    /// `qemu_rec_mutex_lock`.
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        self.m.check_initialized()?;
        // SAFETY: the mutex is initialized.
        let rc = unsafe { libc::pthread_mutex_lock(self.m.lock.get()) };
        pthread_result("pthread_mutex_lock", rc)
    }

    /// `qemu_rec_mutex_trylock`: 0 if locked now (or once more), else
    /// `-EBUSY`.
    pub(crate) fn trylock(&self) -> MisuseResult<c_int> {
        self.m.check_initialized()?;
        // SAFETY: the mutex is initialized.
        match unsafe { libc::pthread_mutex_trylock(self.m.lock.get()) } {
            0 => Ok(0),
            libc::EBUSY => Ok(-libc::EBUSY),
            rc => pthread_result("pthread_mutex_trylock", rc).map(|()| 0),
        }
    }

    /// `qemu_rec_mutex_unlock`: undoes one lock; only by the holder. A
    /// recursive pthread mutex checks the holder and answers `EPERM`
    /// otherwise (not locked, or locked by another thread).
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        self.m.check_initialized()?;
        // SAFETY: the mutex is initialized.
        match unsafe { libc::pthread_mutex_unlock(self.m.lock.get()) } {
            libc::EPERM => Err(Misuse::new(
                "recursive mutex is not locked by the calling thread",
            )),
            rc => pthread_result("pthread_mutex_unlock", rc),
        }
    }
}
