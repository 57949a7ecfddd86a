//! `CoQueue` (`qemu/coroutine.h`: `qemu_co_queue_init`,
//! `qemu_co_queue_wait`, `qemu_co_queue_next`, `qemu_co_queue_restart_all`,
//! `qemu_co_enter_next`, `qemu_co_enter_all`, `qemu_co_queue_empty`): a FIFO
//! of yielded coroutines, linked through their `queue_next`.
//!
//! As in QEMU the queue has no lock of its own: callers protect it with the
//! lock they pass to `qemu_co_queue_wait` (a `QemuLockable`: CoMutex,
//! QemuMutex, ... or NULL when all users run in one thread). Waking goes
//! through `aio_co_wake`, so a waiter resumes in its own context.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr;

use super::{CoBox, aio_co_wake, require_current, yield_now};
use crate::fatal::{Misuse, MisuseResult};

/// `CO_QUEUE_WAIT_FRONT`: wait at the head of the queue.
pub(crate) const CO_QUEUE_WAIT_FRONT: u32 = 1;

/// `CoQueueWaitFlags` as received from C.
#[derive(Clone, Copy)]
pub(crate) struct QueueWaitFlags(pub(crate) u32);

/// The core's view of the caller-owned `CoQueue` (same layout).
#[repr(C)]
pub(crate) struct CoQueueCore {
    first: UnsafeCell<*mut CoBox>,
    last: UnsafeCell<*mut CoBox>,
}

/// `struct QemuLockable` of `qemu/lockable.h`: an object and its lock and
/// unlock functions.
#[repr(C)]
pub(crate) struct Lockable {
    object: *mut c_void,
    lock: Option<unsafe extern "C" fn(*mut c_void)>,
    unlock: Option<unsafe extern "C" fn(*mut c_void)>,
}

impl Lockable {
    /// # Safety
    /// `l` is null or a `QemuLockable` whose functions fit its object.
    pub(crate) unsafe fn from_ptr<'a>(l: *mut c_void) -> MisuseResult<Option<&'a Lockable>> {
        if l.is_null() {
            return Ok(None);
        }
        // SAFETY: per the caller.
        let r = unsafe { &*l.cast::<Lockable>() };
        if r.lock.is_none() || r.unlock.is_none() {
            return Err(Misuse::new(
                "QemuLockable has a NULL lock or unlock function",
            ));
        }
        Ok(Some(r))
    }

    fn lock(&self) {
        if let Some(f) = self.lock {
            // SAFETY: the C caller built this lockable for this object.
            unsafe { f(self.object) };
        }
    }

    fn unlock(&self) {
        if let Some(f) = self.unlock {
            // SAFETY: as in `lock`.
            unsafe { f(self.object) };
        }
    }
}

impl CoQueueCore {
    /// `qemu_co_queue_init`.
    pub(crate) fn init(&self) {
        // SAFETY: init is called before the queue is shared.
        unsafe {
            *self.first.get() = ptr::null_mut();
            *self.last.get() = ptr::null_mut();
        }
    }

    /// `qemu_co_queue_empty`.
    pub(crate) fn is_empty(&self) -> bool {
        // SAFETY: the caller's lock protects the queue (QEMU's contract).
        unsafe { (*self.first.get()).is_null() }
    }

    fn push(&self, co: &CoBox, front: bool) {
        // SAFETY: the caller's lock protects the queue; queued coroutines
        // are alive (suspended).
        unsafe {
            let first = *self.first.get();
            if front {
                co.p.queue_next.set(first);
                *self.first.get() = co.as_ptr();
                if first.is_null() {
                    *self.last.get() = co.as_ptr();
                }
            } else {
                co.p.queue_next.set(ptr::null_mut());
                let last = *self.last.get();
                if last.is_null() {
                    *self.first.get() = co.as_ptr();
                } else {
                    (*last).p.queue_next.set(co.as_ptr());
                }
                *self.last.get() = co.as_ptr();
            }
        }
    }

    fn pop(&self) -> Option<&CoBox> {
        // SAFETY: as in `push`.
        unsafe {
            let first = *self.first.get();
            if first.is_null() {
                return None;
            }
            let next = (*first).p.queue_next.get();
            *self.first.get() = next;
            if next.is_null() {
                *self.last.get() = ptr::null_mut();
            }
            (*first).p.queue_next.set(ptr::null_mut());
            Some(&*first)
        }
    }

    /// `qemu_co_queue_wait_impl`: queue the running coroutine, release
    /// `lock`, yield until woken, take `lock` again.
    pub(crate) fn wait(&self, lock: Option<&Lockable>, flags: QueueWaitFlags) -> MisuseResult<()> {
        let me = require_current("qemu_co_queue_wait")?;
        self.push(me, flags.0 & CO_QUEUE_WAIT_FRONT != 0);
        if let Some(l) = lock {
            l.unlock();
        }
        yield_now()?;
        if let Some(l) = lock {
            l.lock();
        }
        Ok(())
    }

    /// `qemu_co_queue_next`: wake the first waiter; false if none.
    pub(crate) fn next(&self) -> MisuseResult<bool> {
        match self.pop() {
            Some(co) => aio_co_wake(co).map(|()| true),
            None => Ok(false),
        }
    }

    /// `qemu_co_queue_restart_all`.
    pub(crate) fn restart_all(&self) -> MisuseResult<()> {
        while self.next()? {}
        Ok(())
    }

    /// `qemu_co_enter_next_impl`: wake the first waiter with `lock`
    /// released meanwhile; false if none.
    pub(crate) fn enter_next(&self, lock: Option<&Lockable>) -> MisuseResult<bool> {
        let Some(co) = self.pop() else {
            return Ok(false);
        };
        if let Some(l) = lock {
            l.unlock();
        }
        aio_co_wake(co)?;
        if let Some(l) = lock {
            l.lock();
        }
        Ok(true)
    }

    /// `qemu_co_enter_all_impl`.
    pub(crate) fn enter_all(&self, lock: Option<&Lockable>) -> MisuseResult<()> {
        while self.enter_next(lock)? {}
        Ok(())
    }
}
