//! QEMU's threads and synchronization primitives for QEMU-style callers
//! (`qemu/thread.h`, `qemu/thread-posix.h`, `qemu/futex.h`): `QemuMutex`,
//! `QemuRecMutex`, `QemuCond`, `QemuSemaphore`, `QemuEvent`, `QemuThread`
//! and the futex helpers. The exported functions are in `ffi/sync.rs`.
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

use std::cell::{Cell, UnsafeCell};
use std::ffi::{CStr, CString, c_int, c_uint, c_ulong, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, Ordering, fence};

use crate::fatal::{Misuse, MisuseResult};

// ---------------------------------------------------------------------------
// Helpers

thread_local! {
    /// This thread's kernel id (`gettid`), 0 until first asked.
    static TID: Cell<c_int> = const { Cell::new(0) };
}

/// The calling thread's kernel thread id; never 0, so 0 can mean "nobody".
fn current_tid() -> c_int {
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
fn pthread_result(what: &str, rc: c_int) -> MisuseResult<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Misuse::new(format!(
            "{what} failed: {}",
            io::Error::from_raw_os_error(rc)
        )))
    }
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

// ---------------------------------------------------------------------------
// Futexes (`qemu/futex.h`)

/// Sleeps while `word` holds `val` (QEMU's `qemu_futex_wait`): returns at
/// once if it does not, else when woken by [`futex_wake`] (or spuriously).
/// Interrupted sleeps are resumed. Process-private futex.
pub(crate) fn futex_wait(word: &AtomicU32, val: u32) -> MisuseResult<()> {
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

/// Wakes up to `count` threads sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, count: c_int) -> MisuseResult<()> {
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
    fn owner(&self) -> &AtomicI32 {
        // SAFETY: the field is a live, aligned c_int that Rust only accesses
        // atomically; C never touches it.
        unsafe { AtomicI32::from_ptr(self.owner.get()) }
    }

    pub(crate) fn is_initialized(&self) -> bool {
        read_flag(&self.initialized)
    }

    fn check_initialized(&self) -> MisuseResult<()> {
        if self.is_initialized() {
            Ok(())
        } else {
            Err(Misuse::new("mutex is not initialized"))
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
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        let me = current_tid();
        // Exact: only this thread ever stores its own id.
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
    fn check_held(&self) -> MisuseResult<c_int> {
        let me = current_tid();
        match self.owner().load(Ordering::Relaxed) {
            0 => Err(Misuse::new("mutex is not locked")),
            owner if owner == me => Ok(me),
            owner => Err(Misuse::new(format!(
                "mutex is locked by thread {owner}, not by the calling thread {me}"
            ))),
        }
    }

    /// `qemu_mutex_unlock`: only by the thread that holds it.
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        self.check_held()?;
        self.owner().store(0, Ordering::Relaxed);
        // SAFETY: the mutex is initialized and held by this thread.
        let rc = unsafe { libc::pthread_mutex_unlock(self.lock.get()) };
        pthread_result("pthread_mutex_unlock", rc)
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

// ---------------------------------------------------------------------------
// QemuEvent

/// `QemuEvent::value`: set; waiters return at once.
const EV_SET: u32 = 0;
/// Reset, and no thread is (about to be) sleeping.
const EV_FREE: u32 = 1;
/// Reset, and some thread may sleep on the futex: `set` must wake it.
const EV_BUSY: u32 = u32::MAX;

/// A manual-reset event (`qemu_event_*`), QEMU's futex protocol: any
/// thread may set, reset or wait; a wait returns once the event is set.
#[repr(C)]
pub struct QemuEvent {
    /// Set (0), free (1) or busy (-1: reset with sleepers); also the futex
    /// word.
    pub value: UnsafeCell<c_uint>,
    /// True between init and destroy.
    pub initialized: UnsafeCell<bool>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(QemuEvent, value) == 0);
    assert!(offset_of!(QemuEvent, initialized) == 4);
    assert!(size_of::<QemuEvent>() == 8 && align_of::<QemuEvent>() == 4);
};

impl QemuEvent {
    fn value(&self) -> &AtomicU32 {
        // SAFETY: the field is a live, aligned c_uint that is only accessed
        // atomically (by Rust, and by the futex syscall).
        unsafe { AtomicU32::from_ptr(self.value.get()) }
    }

    fn check_initialized(&self) -> MisuseResult<()> {
        if read_flag(&self.initialized) {
            Ok(())
        } else {
            Err(Misuse::new("event is not initialized"))
        }
    }

    /// `qemu_event_init`: set if `set`, else reset.
    pub(crate) fn init(&self, set: bool) {
        self.value()
            .store(if set { EV_SET } else { EV_FREE }, Ordering::Relaxed);
        write_flag(&self.initialized, true);
    }

    /// `qemu_event_destroy`.
    pub(crate) fn destroy(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        write_flag(&self.initialized, false);
        Ok(())
    }

    /// `qemu_event_set`: sets the event and wakes every waiter.
    pub(crate) fn set(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // Pairs with the fence in `reset` and the acquire load in `wait`: the
        // caller's writes before `set` are visible to whoever sees it set.
        // A full fence because `set` may not store at all (already set).
        fence(Ordering::SeqCst);
        if self.value().load(Ordering::Relaxed) != EV_SET {
            let old = self.value().swap(EV_SET, Ordering::SeqCst);
            // The swap orders against the sleeper's final check, which the
            // kernel makes under its futex lock.
            if old == EV_BUSY {
                futex_wake(self.value(), c_int::MAX)?;
            }
        }
        Ok(())
    }

    /// `qemu_event_reset`: resets the event if it is set; no effect
    /// otherwise (a concurrent reset or wait already did).
    pub(crate) fn reset(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        // SET (0) -> FREE (1); FREE and BUSY (all ones) are unchanged.
        // SeqCst orders the reset before the caller's next check of its
        // condition (pairs with the first fence of `set`).
        self.value().fetch_or(EV_FREE, Ordering::SeqCst);
        Ok(())
    }

    /// `qemu_event_wait`: returns once the event is set.
    pub(crate) fn wait(&self) -> MisuseResult<()> {
        self.check_initialized()?;
        loop {
            // Synchronizes with `set` even when we never sleep.
            let value = self.value().load(Ordering::Acquire);
            if value == EV_SET {
                return Ok(());
            }
            if value == EV_FREE {
                // Announce a sleeper. No retry needed: BUSY -> FREE never
                // happens, so failure means the event was set meanwhile.
                if let Err(EV_SET) = self.value().compare_exchange(
                    EV_FREE,
                    EV_BUSY,
                    Ordering::SeqCst,
                    Ordering::Acquire,
                ) {
                    return Ok(());
                }
            }
            // The kernel re-checks value == BUSY under its lock, so a `set`
            // between here and the sleep makes the wait return at once.
            futex_wait(self.value(), EV_BUSY)?;
        }
    }
}

// ---------------------------------------------------------------------------
// QemuThread

/// `qemu_thread_create` mode: the thread must be joined with
/// `qemu_thread_join`, which returns its result.
pub const QEMU_THREAD_JOINABLE: c_int = 0;
/// `qemu_thread_create` mode: the thread's resources are freed when it
/// exits; it cannot be joined.
pub const QEMU_THREAD_DETACHED: c_int = 1;
/// The longest name Linux keeps for a thread (`comm`, without the NUL).
const THREAD_NAME_MAX: usize = 15;

/// A thread handle (`qemu_thread_*`), filled in by `qemu_thread_create` or
/// `qemu_thread_get_self`. QEMU's layout: only the pthread handle. Whether
/// the thread is joinable is kept out of line (a table in the library).
#[repr(C)]
pub struct QemuThread {
    /// The pthread handle.
    pub thread: UnsafeCell<libc::pthread_t>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(QemuThread, thread) == 0);
    assert!(size_of::<QemuThread>() == size_of::<libc::pthread_t>());
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuThread>() == 8 && align_of::<QemuThread>() == 8);
};

/// The mode of every live thread `qemu_thread_create` started, by pthread
/// handle, so that joining a detached thread or joining twice aborts
/// instead of being undefined. A joinable thread's entry is removed when it
/// is joined (its handle cannot be reused before); a detached thread's entry
/// is inserted by its creator under this lock and removed by the thread
/// itself at exit (TLS destructor), before its handle can be reused. A
/// handle not in the table was already joined, or belongs to a thread
/// `qemu_thread_create` did not start.
static THREAD_MODES: std::sync::Mutex<Vec<(libc::pthread_t, c_int)>> =
    std::sync::Mutex::new(Vec::new());

fn thread_modes() -> std::sync::MutexGuard<'static, Vec<(libc::pthread_t, c_int)>> {
    THREAD_MODES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes `handle`'s entry; returns its mode if there was one.
fn take_thread_mode(
    modes: &mut Vec<(libc::pthread_t, c_int)>,
    handle: libc::pthread_t,
) -> Option<c_int> {
    let i = modes.iter().position(|&(h, _)| h == handle)?;
    Some(modes.swap_remove(i).1)
}

/// Owned by a detached thread: its drop (at thread exit, also after
/// `qemu_thread_exit`) removes the thread's entry from [`THREAD_MODES`].
struct DetachedEntry(libc::pthread_t);

impl Drop for DetachedEntry {
    fn drop(&mut self) {
        take_thread_mode(&mut thread_modes(), self.0);
    }
}

thread_local! {
    /// Whether `qemu_thread_create` started this thread (only those run
    /// their thread-exit notifiers, as in QEMU).
    static CREATED: Cell<bool> = const { Cell::new(false) };
    static DETACHED_ENTRY: Cell<Option<DetachedEntry>> = const { Cell::new(None) };
}

/// A thread's start routine, as C declares it: `void *(*)(void *)`.
pub(crate) type StartRoutine = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// What a new thread needs; owned by the new thread once it runs.
struct StartArgs {
    routine: StartRoutine,
    arg: *mut c_void,
    name: Option<CString>,
    detached: bool,
}

/// The first function of every thread `create` starts: names the thread,
/// then runs the caller's routine. Nothing with a destructor lives across
/// that call, so `qemu_thread_exit` (a forced unwind) may end the thread.
extern "C" fn thread_start(opaque: *mut c_void) -> *mut c_void {
    // SAFETY: `opaque` is the box `create` leaked for this thread, handed
    // over exactly once.
    let args = unsafe { Box::from_raw(opaque.cast::<StartArgs>()) };
    if let Some(name) = &args.name {
        // Best effort, as in QEMU: a thread without a name still runs.
        // SAFETY: `name` is a NUL-terminated string of at most 15 bytes.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    }
    if args.detached {
        // SAFETY: pthread_self always succeeds.
        let me = unsafe { libc::pthread_self() };
        DETACHED_ENTRY.with(|e| e.set(Some(DetachedEntry(me))));
    }
    CREATED.with(|c| c.set(true));
    let (routine, arg) = (args.routine, args.arg);
    drop(args);
    // SAFETY: the caller of `qemu_thread_create` passed `routine` for `arg`.
    let result = unsafe { routine(arg) };
    // QEMU's pthread_cleanup_pop(1) of qemu_thread_atexit_notify.
    crate::thread_exit::notify_all();
    result
}

/// The first 15 bytes of `name` (what Linux keeps), if any.
fn thread_name(name: Option<&CStr>) -> Option<CString> {
    let bytes = name?.to_bytes();
    let bytes = &bytes[..bytes.len().min(THREAD_NAME_MAX)];
    Some(CString::new(bytes).expect("a CStr has no interior NUL"))
}

impl QemuThread {
    fn handle(&self) -> libc::pthread_t {
        // SAFETY: plain read of the caller's handle; the contract forbids
        // writing it concurrently.
        unsafe { *self.thread.get() }
    }

    /// `qemu_thread_create`: starts `routine(arg)` in a new thread named
    /// `name` (truncated to 15 bytes). As in QEMU the new thread starts with
    /// every signal blocked except SIGSEGV, SIGFPE and SIGILL (signal
    /// handling is left to the main thread); the caller's mask is unchanged.
    pub(crate) fn create(
        &self,
        name: Option<&CStr>,
        routine: StartRoutine,
        arg: *mut c_void,
        mode: c_int,
    ) -> MisuseResult<()> {
        let detached = match mode {
            QEMU_THREAD_JOINABLE => false,
            QEMU_THREAD_DETACHED => true,
            other => {
                return Err(Misuse::new(format!(
                    "mode {other} is neither QEMU_THREAD_JOINABLE nor QEMU_THREAD_DETACHED"
                )));
            }
        };
        let args = Box::new(StartArgs {
            routine,
            arg,
            name: thread_name(name),
            detached,
        });

        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut blocked = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old_mask = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `attr` and the signal sets are initialized by their init
        // calls before use; `attr` is destroyed once. pthread_create writes
        // the handle straight into the caller's struct (as QEMU does), so it
        // is there before the new thread can look at it. On success the new
        // thread owns `args`; on failure it is reclaimed here.
        unsafe {
            pthread_result(
                "pthread_attr_init",
                libc::pthread_attr_init(attr.as_mut_ptr()),
            )?;
            if detached {
                libc::pthread_attr_setdetachstate(attr.as_mut_ptr(), libc::PTHREAD_CREATE_DETACHED);
            }
            libc::sigfillset(blocked.as_mut_ptr());
            for sig in [libc::SIGSEGV, libc::SIGFPE, libc::SIGILL] {
                libc::sigdelset(blocked.as_mut_ptr(), sig);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, blocked.as_ptr(), old_mask.as_mut_ptr());
            let args = Box::into_raw(args);
            // Held across pthread_create so that a detached thread's exit
            // cannot remove its entry before it is inserted.
            let mut modes = thread_modes();
            let rc =
                libc::pthread_create(self.thread.get(), attr.as_ptr(), thread_start, args.cast());
            if rc == 0 {
                let handle = *self.thread.get();
                take_thread_mode(&mut modes, handle);
                modes.push((handle, mode));
            }
            drop(modes);
            libc::pthread_sigmask(libc::SIG_SETMASK, old_mask.as_ptr(), ptr::null_mut());
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            if rc != 0 {
                drop(Box::from_raw(args));
            }
            pthread_result("pthread_create", rc)
        }
    }

    /// `qemu_thread_join`: waits for a joinable thread to end and returns
    /// its result.
    pub(crate) fn join(&self) -> MisuseResult<*mut c_void> {
        let handle = self.handle();
        if handle == 0 {
            return Err(Misuse::new(
                "QemuThread was not filled in by qemu_thread_create",
            ));
        }
        // SAFETY: pthread_equal compares two handles.
        if unsafe { libc::pthread_equal(handle, libc::pthread_self()) } != 0 {
            return Err(Misuse::new("a thread cannot join itself"));
        }
        {
            let mut modes = thread_modes();
            match modes.iter().find(|&&(h, _)| h == handle).map(|&(_, m)| m) {
                Some(QEMU_THREAD_JOINABLE) => {
                    // Taken now: a second join (even a concurrent one) aborts.
                    take_thread_mode(&mut modes, handle);
                }
                Some(_) => {
                    return Err(Misuse::new(
                        "thread was created with QEMU_THREAD_DETACHED and cannot be joined",
                    ));
                }
                None => {
                    return Err(Misuse::new(
                        "thread is not joinable: not started by qemu_thread_create, already joined, or a QEMU_THREAD_DETACHED thread that has ended",
                    ));
                }
            }
        }
        let mut result = ptr::null_mut();
        // SAFETY: `handle` is a joinable thread that nobody joined before
        // (its entry was in the table and is now taken); `result` is a live
        // out-parameter.
        let rc = unsafe { libc::pthread_join(handle, &mut result) };
        pthread_result("pthread_join", rc)?;
        Ok(result)
    }

    /// `qemu_thread_get_self`: a handle for the calling thread.
    pub(crate) fn get_self(&self) {
        // SAFETY: writes the caller's struct, which no other thread may use
        // meanwhile.
        unsafe { *self.thread.get() = libc::pthread_self() };
    }

    /// `qemu_thread_is_self`.
    pub(crate) fn is_self(&self) -> bool {
        // SAFETY: pthread_equal compares two handles.
        unsafe { libc::pthread_equal(self.handle(), libc::pthread_self()) != 0 }
    }

    /// The handle, which must have been filled in (by `create` or
    /// `get_self`).
    fn filled_handle(&self) -> MisuseResult<libc::pthread_t> {
        match self.handle() {
            0 => Err(Misuse::new(
                "QemuThread was not filled in by qemu_thread_create or qemu_thread_get_self",
            )),
            handle => Ok(handle),
        }
    }

    /// `qemu_thread_set_affinity`: restricts the thread to the CPUs whose
    /// bits are set among the first `nbits` bits of `host_cpus` (QEMU's
    /// bitmap: bit `i` is bit `i % BITS` of word `i / BITS`, which is also
    /// `cpu_set_t`'s layout). 0 or an errno value, positive as pthread's (QEMU's convention;
    /// `EINVAL`: no usable CPU set).
    pub(crate) fn set_affinity(&self, host_cpus: &[c_ulong], nbits: usize) -> MisuseResult<c_int> {
        let handle = self.filled_handle()?;
        if nbits > AFFINITY_MAX_BITS || host_cpus.len() != bitmap_words(nbits) {
            return Ok(libc::EINVAL);
        }
        // At least one word, so that an empty set is passed as one (EINVAL).
        let mut set = vec![0 as c_ulong; bitmap_words(nbits).max(1)];
        set[..host_cpus.len()].copy_from_slice(host_cpus);
        if nbits % ULONG_BITS != 0 {
            // Bits past `nbits` are not the caller's.
            set[nbits / ULONG_BITS] &= (1 << (nbits % ULONG_BITS)) - 1;
        }
        // SAFETY: `set` is an initialized buffer of the size passed; the
        // kernel reads it as a cpu_set_t of that size. `handle` is a thread
        // the caller vouches for (filled in, not yet joined).
        let rc = unsafe {
            libc::pthread_setaffinity_np(
                handle,
                std::mem::size_of_val(set.as_slice()),
                set.as_ptr().cast(),
            )
        };
        Ok(rc)
    }

    /// `qemu_thread_get_affinity`: the thread's CPU set as a bitmap of
    /// `nbits` bits (a multiple of the word size, at least `CPU_SETSIZE`),
    /// or the (positive) errno value.
    pub(crate) fn get_affinity(&self) -> MisuseResult<Result<(Vec<c_ulong>, usize), c_int>> {
        let handle = self.filled_handle()?;
        let mut nbits = libc::CPU_SETSIZE as usize;
        loop {
            let mut set = vec![0 as c_ulong; bitmap_words(nbits)];
            // SAFETY: `set` is a writable buffer of the size passed; as in
            // `set_affinity` for `handle`.
            let rc = unsafe {
                libc::pthread_getaffinity_np(
                    handle,
                    std::mem::size_of_val(set.as_slice()),
                    set.as_mut_ptr().cast(),
                )
            };
            match rc {
                0 => return Ok(Ok((set, nbits))),
                // The kernel has more CPUs than the buffer holds.
                libc::EINVAL if nbits < AFFINITY_MAX_BITS => nbits *= 2,
                rc => return Ok(Err(rc)),
            }
        }
    }
}

/// Bits in a bitmap word (`unsigned long`).
const ULONG_BITS: usize = c_ulong::BITS as usize;
/// The largest CPU bitmap the affinity functions handle (far above Linux's
/// `NR_CPUS` limit of 8192).
pub(crate) const AFFINITY_MAX_BITS: usize = 1 << 20;

/// Words of a bitmap of `nbits` bits (QEMU's `BITS_TO_LONGS`).
pub(crate) fn bitmap_words(nbits: usize) -> usize {
    nbits.div_ceil(ULONG_BITS)
}

/// `qemu_thread_exit`: ends the calling thread with result `retval`.
///
/// pthread_exit unwinds the thread's stack (a forced unwind): the caller
/// must not hold a panic boundary or values with destructors.
pub(crate) fn exit_thread(retval: *mut c_void) -> ! {
    // QEMU runs the thread-exit notifiers from a cleanup handler of the
    // threads it creates; here, before the unwind starts.
    if CREATED.with(Cell::get) {
        crate::thread_exit::notify_all();
    }
    // SAFETY: ends only the calling thread; `retval` is handed to the joiner
    // untouched.
    unsafe { libc::pthread_exit(retval) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    extern "C" fn return_arg(arg: *mut c_void) -> *mut c_void {
        arg
    }

    fn in_table(handle: libc::pthread_t) -> bool {
        thread_modes().iter().any(|&(h, _)| h == handle)
    }

    fn new_thread() -> QemuThread {
        QemuThread {
            thread: UnsafeCell::new(0),
        }
    }

    #[test]
    fn joined_thread_leaves_the_mode_table() {
        let t = new_thread();
        t.create(None, return_arg, 7 as *mut c_void, QEMU_THREAD_JOINABLE)
            .unwrap();
        assert!(in_table(t.handle()));
        assert_eq!(t.join().unwrap(), 7 as *mut c_void);
        assert!(!in_table(t.handle()));
        assert!(t.join().is_err(), "a second join must be refused");
    }

    #[test]
    fn detached_thread_leaves_the_mode_table_at_exit() {
        let threads: Vec<QemuThread> = (0..8).map(|_| new_thread()).collect();
        for t in &threads {
            t.create(None, return_arg, ptr::null_mut(), QEMU_THREAD_DETACHED)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // A handle may be reused by a later thread of another test, which
        // would put it back: wait until each one was seen absent once.
        let mut gone = vec![false; threads.len()];
        while !gone.iter().all(|&g| g) {
            for (t, g) in threads.iter().zip(gone.iter_mut()) {
                *g |= !in_table(t.handle());
            }
            assert!(
                Instant::now() < deadline,
                "detached entries were not removed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
