//! `qemu_co_timeout` (`qemu/coroutine.h`): run a coroutine function with a
//! time limit.
//!
//! The caller (a coroutine) starts `entry(opaque)` in a new coroutine of
//! its own context and sleeps on a wakeable sleep for at most `timeout_ns`
//! of `QEMU_CLOCK_REALTIME`. If `entry` finishes first it wakes the caller
//! and the result is 0. Otherwise the caller gets `-ETIMEDOUT` at once and
//! `entry` goes on; when it finishes, `clean(opaque)` (if not NULL) runs in
//! its coroutine, since nobody waits for the result any more. A timeout of
//! 0 runs `entry` directly, without a time limit.
//!
//! Threading: both coroutines run in the caller's context and thread, so
//! the shared state needs no atomics: each side reads or writes it only
//! between its own switches.

use std::ffi::{c_int, c_void};

use super::boundary::{c_fn, ffi_call};
use super::coroutine::{
    CoroutineEntry, QemuCoSleep, aio_co_enter, qemu_co_sleep_ns_wakeable, qemu_co_sleep_wake,
    qemu_coroutine_create, qemu_in_coroutine,
};
use super::main_loop::qemu_get_current_aio_context;
use super::timer::QEMUClockType;
use crate::fatal::{Misuse, MisuseResult};

/// Marker for `typedef void CleanupFunc(void *opaque);` (cbindgen.toml).
pub struct CleanupFunc {
    _opaque: [u8; 0],
}

type PlainFn = unsafe extern "C" fn(*mut c_void);

/// What the caller and the timed coroutine share (heap, freed by the last
/// of the two to need it).
struct TimeoutState {
    entry: PlainFn,
    opaque: *mut c_void,
    clean: Option<PlainFn>,
    sleep: QemuCoSleep,
    /// `entry` returned.
    finished: bool,
    /// The caller timed out and returned: the coroutine owns the state.
    abandoned: bool,
}

/// The timed coroutine's body.
unsafe extern "C" fn timed_entry(opaque: *mut c_void) {
    let s = opaque.cast::<TimeoutState>();
    // SAFETY: the state outlives this coroutine's use of it: the caller
    // frees it only once `finished` is set, and after `abandoned` only this
    // coroutine does.
    unsafe {
        ((*s).entry)((*s).opaque);
        if (*s).abandoned {
            if let Some(clean) = (*s).clean {
                clean((*s).opaque);
            }
            drop(Box::from_raw(s));
        } else {
            (*s).finished = true;
            qemu_co_sleep_wake(&raw mut (*s).sleep);
        }
    }
}

/// Coroutine only: runs `entry(opaque)` in a new coroutine and waits for it
/// at most `timeout_ns` nanoseconds (0: no limit, `entry` runs directly).
/// Returns 0 when `entry` finished in time, `-ETIMEDOUT` otherwise; then
/// `entry` goes on and `clean(opaque)` (may be NULL) runs after it
/// returns. `entry` is not NULL.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_timeout(
    entry: *mut CoroutineEntry,
    opaque: *mut c_void,
    timeout_ns: u64,
    clean: *mut CleanupFunc,
) -> c_int {
    let checked = ffi_call(c"qemu_co_timeout", || -> MisuseResult<PlainFn> {
        if !qemu_in_coroutine() {
            return Err(Misuse::new("called outside a coroutine"));
        }
        c_fn(entry).ok_or_else(|| Misuse::new("entry is NULL"))
    });
    if timeout_ns == 0 {
        // SAFETY: the caller's coroutine function, called as documented.
        unsafe { checked(opaque) };
        return 0;
    }
    let s = Box::into_raw(Box::new(TimeoutState {
        entry: checked,
        opaque,
        clean: c_fn(clean),
        sleep: QemuCoSleep {
            to_wake: std::ptr::null_mut(),
        },
        finished: false,
        abandoned: false,
    }));
    // A `CoroutineEntry *` is a pointer to a `void (void *)` C function.
    let co = qemu_coroutine_create(timed_entry as PlainFn as *mut CoroutineEntry, s.cast());
    // Inside a coroutine of the same context this queues `co` to run when
    // the caller yields (in the sleep below).
    aio_co_enter(qemu_get_current_aio_context(), co);
    // SAFETY: `s` is alive until one side frees it (see `timed_entry`).
    unsafe {
        if !(*s).finished {
            let ns = i64::try_from(timeout_ns).unwrap_or(i64::MAX);
            qemu_co_sleep_ns_wakeable(&raw mut (*s).sleep, QEMUClockType(0), ns);
        }
        if (*s).finished {
            drop(Box::from_raw(s));
            0
        } else {
            (*s).abandoned = true;
            -libc::ETIMEDOUT
        }
    }
}
