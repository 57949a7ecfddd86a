//! `QemuEvent` (`qemu/thread.h`): QEMU's futex protocol. Threading: see
//! `sync/mod.rs`.

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicU32, Ordering, fence};

use super::{futex_wait, futex_wake, read_flag, write_flag};
use crate::fatal::{Misuse, MisuseResult};

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
