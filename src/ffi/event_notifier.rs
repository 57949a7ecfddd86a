//! Event notifiers (`qemu/event_notifier.h`).

use std::ffi::c_int;

use super::boundary::ffi_call;
use super::types::EventNotifier;
use crate::fatal::{Misuse, MisuseResult};

fn notifier<'a>(e: *mut EventNotifier) -> MisuseResult<&'a mut EventNotifier> {
    // SAFETY: a non-null EventNotifier pointer from C points to the
    // caller-owned struct.
    unsafe { e.as_mut() }.ok_or_else(|| Misuse::new("EventNotifier is NULL"))
}

fn initialized<'a>(e: *mut EventNotifier) -> MisuseResult<&'a mut EventNotifier> {
    let e = notifier(e)?;
    if !e.initialized {
        return Err(Misuse::new("EventNotifier is not initialized"));
    }
    Ok(e)
}

/// Opens the notifier's eventfd (non-blocking, close-on-exec), set if
/// `active`. Returns 0 or -errno.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_init(e: *mut EventNotifier, active: c_int) -> c_int {
    ffi_call(c"event_notifier_init", || {
        let e = notifier(e)?;
        Ok(match e.init(active != 0, true) {
            Ok(()) => 0,
            Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
        })
    })
}

/// Closes the notifier's fd. Idempotent.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_cleanup(e: *mut EventNotifier) {
    ffi_call(c"event_notifier_cleanup", || {
        notifier(e)?.cleanup();
        Ok(())
    })
}

/// Wraps an already open eventfd (both read and write end).
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_init_fd(e: *mut EventNotifier, fd: c_int) {
    ffi_call(c"event_notifier_init_fd", || {
        notifier(e)?.init_fd(fd);
        Ok(())
    })
}

/// Sets the notifier (wakes whoever polls its fd). Any thread. Returns 0 or
/// -errno.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_set(e: *mut EventNotifier) -> c_int {
    ffi_call(c"event_notifier_set", || {
        Ok(match initialized(e)?.set() {
            Ok(()) => 0,
            Err(err) => -err.raw_os_error().unwrap_or(libc::EIO),
        })
    })
}

/// Clears the notifier; returns 1 if it was set, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_test_and_clear(e: *mut EventNotifier) -> c_int {
    ffi_call(c"event_notifier_test_and_clear", || {
        Ok(c_int::from(initialized(e)?.test_and_clear()))
    })
}

/// The fd to poll for readability.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_get_fd(e: *const EventNotifier) -> c_int {
    ffi_call(c"event_notifier_get_fd", || {
        Ok(initialized(e.cast_mut())?.rfd)
    })
}

/// The fd that `event_notifier_set` writes.
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_get_wfd(e: *const EventNotifier) -> c_int {
    ffi_call(c"event_notifier_get_wfd", || {
        Ok(initialized(e.cast_mut())?.wfd)
    })
}
