//! Per-thread exit notifiers (`qemu_thread_atexit_add/remove`,
//! `qemu/thread.h`), as in QEMU's util/qemu-thread-posix.c.
//!
//! Each thread has its own list of caller-owned `Notifier`s, linked through
//! the notifiers' own `node` (QEMU's `QLIST_ENTRY`), newest first. When a
//! thread started by `qemu_thread_create` ends (its start routine returns,
//! or it calls `qemu_thread_exit`), that thread runs every notifier of its
//! list, newest first, as `notify(notifier, NULL)` (QEMU's
//! `notifier_list_notify(&thread_exit, NULL)`). Other threads (the main
//! thread, threads from `pthread_create`) never run theirs, as in QEMU.
//!
//! A notifier may remove itself (or add new ones, which do not run) from
//! its callback. No lock is involved: the list belongs to its thread.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use crate::fatal::{Misuse, MisuseResult};

/// `void (*notify)(Notifier *, void *data)`.
pub type NotifyFn = unsafe extern "C" fn(*mut Notifier, *mut c_void);

/// QEMU's `QLIST_ENTRY(Notifier)`.
#[repr(C)]
pub struct NotifierLink {
    pub le_next: *mut Notifier,
    /// The address of the previous element's `le_next` (or of the head).
    pub le_prev: *mut *mut Notifier,
}

/// QEMU's `Notifier` (24 bytes, align 8), caller-owned.
#[repr(C)]
pub struct Notifier {
    pub notify: Option<NotifyFn>,
    pub node: NotifierLink,
}

/// QEMU's `NotifierList` (8 bytes): `QLIST_HEAD(, Notifier)`.
#[repr(C)]
pub struct NotifierList {
    pub lh_first: *mut Notifier,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<Notifier>() == 24 && align_of::<Notifier>() == 8);
    assert!(offset_of!(Notifier, notify) == 0);
    assert!(offset_of!(Notifier, node) == 8);
    assert!(offset_of!(NotifierLink, le_next) == 0);
    assert!(offset_of!(NotifierLink, le_prev) == 8);
    assert!(size_of::<NotifierList>() == 8 && align_of::<NotifierList>() == 8);
};

thread_local! {
    /// This thread's list head (`lh_first`); its address is stable for the
    /// thread's life, so the first notifier's `le_prev` may point at it.
    static HEAD: Cell<*mut Notifier> = const { Cell::new(ptr::null_mut()) };
}

/// `qemu_thread_atexit_add`: puts `n` at the head of the calling thread's
/// list.
///
/// # Safety
/// `n` is a valid, aligned `Notifier` that stays alive (and is not moved)
/// until it is removed or has run; it is on no list.
pub(crate) unsafe fn add(n: *mut Notifier) -> MisuseResult<()> {
    // SAFETY: `n` is valid per the contract.
    if unsafe { (*n).notify }.is_none() {
        return Err(Misuse::new("notifier's notify function is NULL"));
    }
    HEAD.with(|head| {
        let first = head.get();
        // SAFETY: `n` is valid and on no list; `first`, if not NULL, is a
        // live notifier of this thread's list (the add contract), whose
        // `le_prev` now points at `n`'s `le_next`. `head.as_ptr()` is this
        // thread's head, alive while the thread runs.
        unsafe {
            (*n).node.le_next = first;
            if !first.is_null() {
                (*first).node.le_prev = &raw mut (*n).node.le_next;
            }
            (*n).node.le_prev = head.as_ptr();
        }
        head.set(n);
    });
    Ok(())
}

/// `qemu_thread_atexit_remove`: takes `n` off the list it is on.
///
/// # Safety
/// `n` is a valid, aligned `Notifier`, either on a list of the calling
/// thread or with a NULL `le_prev` (zeroed, or already removed).
pub(crate) unsafe fn remove(n: *mut Notifier) -> MisuseResult<()> {
    // SAFETY: `n` is valid per the contract; a non-NULL `le_prev` points at
    // the previous element's `le_next` or at the head, both alive.
    unsafe {
        let prev = (*n).node.le_prev;
        if prev.is_null() || *prev != n {
            return Err(Misuse::new("notifier is not on a thread-exit list"));
        }
        let next = (*n).node.le_next;
        if !next.is_null() {
            (*next).node.le_prev = prev;
        }
        *prev = next;
        (*n).node.le_next = ptr::null_mut();
        (*n).node.le_prev = ptr::null_mut();
    }
    Ok(())
}

/// Runs the calling thread's notifiers, newest first, as QEMU's
/// `notifier_list_notify(list, NULL)` (`QLIST_FOREACH_SAFE`: a callback may
/// remove its own notifier). Called by the thread itself as it ends, with no
/// lock held.
pub(crate) fn notify_all() {
    let mut n = HEAD.with(Cell::get);
    while !n.is_null() {
        // SAFETY: `n` is on this thread's list, so alive (add contract).
        let (next, notify) = unsafe { ((*n).node.le_next, (*n).notify) };
        if let Some(notify) = notify {
            // SAFETY: the caller of `qemu_thread_atexit_add` passed `notify`
            // for `n`; QEMU passes data NULL.
            unsafe { notify(n, ptr::null_mut()) };
        }
        n = next;
    }
}
