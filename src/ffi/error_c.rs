//! The Rust half of the C-side `Error` API (`qapi/error.h`).
//!
//! `error_setg`, `error_prepend`, `error_propagate`, ... are variadic or
//! print QEMU-style reports, so they are written in C (`src/c/variadic.c`).
//! `Error` is opaque to C, so C creates one through this single entry point.

use std::ffi::{CStr, c_char};

use super::boundary::ffi_call;
use super::types::Error;
use crate::fatal::Misuse;

/// A new `Error` holding a copy of `msg` (NUL-terminated, not NULL). The
/// caller owns it: store it into an `Error **` or free it with `error_free`.
/// Used by the C implementation of `error_setg` and friends.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_new(msg: *const c_char) -> *mut Error {
    ffi_call("aioctx_error_new", || {
        if msg.is_null() {
            return Err(Misuse::new("message is NULL"));
        }
        // SAFETY: a non-null C string per the contract above.
        let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        Ok(Box::into_raw(Error::new(&msg)))
    })
}
