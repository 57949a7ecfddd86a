//! The Rust half of the C-side `Error` API (`qapi/error.h`).
//!
//! `error_setg`, `error_prepend`, `error_propagate`, ... are variadic or
//! print QEMU-style reports, so they are written in C (`src/c/variadic.c`).
//! `Error` is opaque to C, so C creates one (with its QAPI class) and reads
//! its class through these entry points.

use std::ffi::{CStr, c_char, c_int};

use super::boundary::ffi_call;
use super::types::Error;
use crate::fatal::{Misuse, MisuseResult};

/// A new `Error` holding a copy of `msg` (NUL-terminated, not NULL). The
/// caller owns it: store it into an `Error **` or free it with `error_free`.
/// Used by the C implementation of `error_setg` and friends.
/// Its class is `ERROR_CLASS_GENERIC_ERROR`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_new(msg: *const c_char) -> *mut Error {
    ffi_call("aioctx_error_new", || new_with_class(msg, 0))
}

/// Like `aioctx_error_new`, with the QAPI class `err_class` (an
/// `ErrorClass` of `qapi/error.h`: 0 to `ERROR_CLASS__MAX - 1`). Used by
/// `error_set` and by the C functions that replace or copy an error.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_new_class(err_class: c_int, msg: *const c_char) -> *mut Error {
    ffi_call("aioctx_error_new_class", || {
        if !(0..ERROR_CLASS_MAX).contains(&err_class) {
            return Err(Misuse::new(format!(
                "error class {err_class} is not an ErrorClass (0..{ERROR_CLASS_MAX})"
            )));
        }
        new_with_class(msg, err_class)
    })
}

/// The class `err` was created with (`error_get_class` in C).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_class(err: *const Error) -> c_int {
    ffi_call("aioctx_error_class", || {
        if err.is_null() {
            return Err(Misuse::new("Error is NULL"));
        }
        // SAFETY: non-null errors handed to C are live `Error`s.
        Ok(unsafe { &*err }.class())
    })
}

/// `ERROR_CLASS__MAX` of `qapi/error.h`.
const ERROR_CLASS_MAX: c_int = 5;

fn new_with_class(msg: *const c_char, class: c_int) -> MisuseResult<*mut Error> {
    if msg.is_null() {
        return Err(Misuse::new("message is NULL"));
    }
    // SAFETY: a non-null C string per the contract above.
    let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    Ok(Box::into_raw(Error::with_class(&msg, class)))
}

/// The fatal report of the library's C code (`src/c/*.c`): prints
/// `aioctx: <func>: <problem>` through the same path as Rust's reports
/// (only the first fatal report of the process prints) and aborts. Not for
/// programs: excluded from `aioctx.h`, declared in `src/c/internal.h`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_c_fatal(func: *const c_char, problem: *const c_char) -> ! {
    fn text(p: *const c_char) -> std::borrow::Cow<'static, str> {
        if p.is_null() {
            return "(null)".into();
        }
        // SAFETY: the library's C code passes NUL-terminated strings that
        // stay valid until the abort.
        unsafe { CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
            .into()
    }
    crate::fatal::die(&text(func), &text(problem))
}
