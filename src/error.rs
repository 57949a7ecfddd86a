//! QEMU's `Error` objects (`qapi/error.h`): an opaque error with a message,
//! reported through `Error **errp` out-parameters.
//!
//! Ownership: an `Error` stored into `*errp` belongs to the caller, who frees
//! it with `error_free`. The special targets follow QEMU: `&error_abort`
//! prints the message and aborts, `&error_fatal` prints it and exits with
//! status 1, `NULL` discards it. Storing into an `errp` that already holds an
//! error is a caller bug and aborts, as QEMU's assertion does.

use std::ffi::{CStr, CString, c_int};
use std::ptr;

use crate::fatal;

/// Pass `&error_abort` as `errp` to abort (with the message) on error.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut error_abort: *mut Error = ptr::null_mut();

/// Pass `&error_fatal` as `errp` to print the message and `exit(1)` on error.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut error_fatal: *mut Error = ptr::null_mut();

/// An error message and its QAPI class (`ErrorClass`: 0 is
/// `ERROR_CLASS_GENERIC_ERROR`). Opaque to C.
pub struct Error {
    msg: CString,
    class: c_int,
}

impl Error {
    pub(crate) fn new(msg: &str) -> Box<Error> {
        Error::with_class(msg, 0)
    }

    pub(crate) fn with_class(msg: &str, class: c_int) -> Box<Error> {
        // Interior NULs cannot be represented in C; replace them.
        let msg = CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced");
        Box::new(Error { msg, class })
    }

    pub(crate) fn class(&self) -> c_int {
        self.class
    }

    pub(crate) fn message(&self) -> &CStr {
        &self.msg
    }
}

/// Reports `msg` through `errp` on behalf of the exported function `func`.
///
/// # Safety
/// `errp` is NULL, `&error_abort`, `&error_fatal`, or a valid `Error **`.
pub(crate) unsafe fn propagate(func: &str, errp: *mut *mut Error, msg: &str) {
    if errp.is_null() {
        return;
    }
    if ptr::eq(errp, &raw mut error_abort) {
        fatal::die(func, msg);
    }
    if ptr::eq(errp, &raw mut error_fatal) {
        let line = format!("aioctx: {func}: {msg}\n");
        // SAFETY: writes a valid buffer to stderr.
        unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        std::process::exit(1);
    }
    // SAFETY: a valid `Error **` per the caller.
    if unsafe { !(*errp).is_null() } {
        fatal::die(
            func,
            &format!("errp already holds an error; cannot also report: {msg}"),
        );
    }
    // SAFETY: as above.
    unsafe { *errp = Box::into_raw(Error::new(msg)) };
}
