//! `CoRwlock` (`qemu/coroutine.h`: `qemu_co_rwlock_init`, `_rdlock`,
//! `_wrlock`, `_upgrade`, `_downgrade`, `_unlock`), QEMU's algorithm: an
//! internal CoMutex protects the owner count (readers, or -1 for a writer)
//! and a FIFO of tickets, one per waiting coroutine, kept in the waiter's
//! own frame. A waiting writer makes later readers wait too (fairness);
//! whoever releases the lock wakes the next ticket if it can now run, and
//! each woken reader wakes the reader behind it.

use std::cell::UnsafeCell;
use std::ptr;

use super::{CoBox, CoMutexCore, aio_co_wake, require_current, yield_now};
use crate::fatal::{Misuse, MisuseResult};

struct Ticket {
    read: bool,
    co: *mut CoBox,
    next: *mut Ticket,
}

/// The core's view of the caller-owned `CoRwlock` (same layout).
#[repr(C)]
pub(crate) struct CoRwlockCore {
    mutex: CoMutexCore,
    /// Protected by `mutex`: readers, or -1 when a writer owns it.
    owners: UnsafeCell<i32>,
    first: UnsafeCell<*mut Ticket>,
    last: UnsafeCell<*mut Ticket>,
}

impl CoRwlockCore {
    /// `qemu_co_rwlock_init`.
    pub(crate) fn init(&self) {
        self.mutex.init();
        // SAFETY: init runs before the lock is shared.
        unsafe {
            *self.owners.get() = 0;
            *self.first.get() = ptr::null_mut();
            *self.last.get() = ptr::null_mut();
        }
    }

    // The helpers below require `self.mutex` to be held.

    fn owners(&self) -> i32 {
        // SAFETY: `mutex` is held.
        unsafe { *self.owners.get() }
    }

    fn set_owners(&self, n: i32) {
        // SAFETY: `mutex` is held.
        unsafe { *self.owners.get() = n };
    }

    fn no_tickets(&self) -> bool {
        // SAFETY: `mutex` is held.
        unsafe { (*self.first.get()).is_null() }
    }

    fn push_ticket(&self, t: &mut Ticket) {
        t.next = ptr::null_mut();
        // SAFETY: `mutex` is held; tickets live in suspended waiters' frames.
        unsafe {
            let last = *self.last.get();
            if last.is_null() {
                *self.first.get() = t;
            } else {
                (*last).next = t;
            }
            *self.last.get() = t;
        }
    }

    /// Wakes the first ticket if it can run now; releases `mutex`.
    fn maybe_wake_one(&self) -> MisuseResult<()> {
        // SAFETY: `mutex` is held; the first ticket's frame is alive.
        let co = unsafe {
            let t = *self.first.get();
            let mut co = ptr::null_mut();
            if !t.is_null() {
                if (*t).read {
                    if self.owners() >= 0 {
                        self.set_owners(self.owners() + 1);
                        co = (*t).co;
                    }
                } else if self.owners() == 0 {
                    self.set_owners(-1);
                    co = (*t).co;
                }
                if !co.is_null() {
                    *self.first.get() = (*t).next;
                    if (*t).next.is_null() {
                        *self.last.get() = ptr::null_mut();
                    }
                }
            }
            co
        };
        self.mutex.unlock()?;
        if !co.is_null() {
            // SAFETY: the ticket's coroutine is suspended, so alive.
            aio_co_wake(unsafe { &*co })?;
        }
        Ok(())
    }

    /// Queues a ticket for the running coroutine, releases `mutex` (via
    /// `release`), and yields until the ticket is granted.
    fn wait_ticket(
        &self,
        me: &CoBox,
        read: bool,
        release: impl FnOnce(&Self) -> MisuseResult<()>,
    ) -> MisuseResult<()> {
        let mut ticket = Ticket {
            read,
            co: me.as_ptr(),
            next: ptr::null_mut(),
        };
        self.push_ticket(&mut ticket);
        release(self)?;
        yield_now()
    }

    /// `qemu_co_rwlock_rdlock`.
    pub(crate) fn rdlock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_rwlock_rdlock")?;
        self.mutex.lock()?;
        // For fairness, wait if a writer is in line.
        if self.owners() == 0 || (self.owners() > 0 && self.no_tickets()) {
            self.set_owners(self.owners() + 1);
            self.mutex.unlock()?;
        } else {
            self.wait_ticket(me, true, |s| s.mutex.unlock())?;
            // Possibly wake another reader, which wakes the next in line.
            self.mutex.lock()?;
            self.maybe_wake_one()?;
        }
        me.locks_held_add(1);
        Ok(())
    }

    /// `qemu_co_rwlock_wrlock`.
    pub(crate) fn wrlock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_rwlock_wrlock")?;
        self.mutex.lock()?;
        if self.owners() == 0 {
            self.set_owners(-1);
            self.mutex.unlock()?;
        } else {
            self.wait_ticket(me, false, |s| s.mutex.unlock())?;
        }
        me.locks_held_add(1);
        Ok(())
    }

    /// `qemu_co_rwlock_upgrade`: read lock to write lock. Waits for the
    /// other readers, and behind writers already in line.
    pub(crate) fn upgrade(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_rwlock_upgrade")?;
        self.mutex.lock()?;
        if self.owners() <= 0 {
            self.mutex.unlock()?;
            return Err(Misuse::new("the CoRwlock is not held for reading"));
        }
        if self.owners() == 1 && self.no_tickets() {
            self.set_owners(-1);
            self.mutex.unlock()
        } else {
            self.set_owners(self.owners() - 1);
            self.wait_ticket(me, false, |s| s.maybe_wake_one())
        }
    }

    /// `qemu_co_rwlock_downgrade`: write lock to read lock; wakes readers
    /// in line behind it.
    pub(crate) fn downgrade(&self) -> MisuseResult<()> {
        require_current("qemu_co_rwlock_downgrade")?;
        self.mutex.lock()?;
        if self.owners() != -1 {
            self.mutex.unlock()?;
            return Err(Misuse::new("the CoRwlock is not held for writing"));
        }
        self.set_owners(1);
        self.maybe_wake_one()
    }

    /// `qemu_co_rwlock_unlock`.
    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        let me = require_current("qemu_co_rwlock_unlock")?;
        self.mutex.lock()?;
        match self.owners() {
            n if n > 0 => self.set_owners(n - 1),
            -1 => self.set_owners(0),
            _ => {
                self.mutex.unlock()?;
                return Err(Misuse::new("the CoRwlock is not locked"));
            }
        }
        me.locks_held_add(-1);
        self.maybe_wake_one()
    }
}
