//! `Error` objects (`qapi/error.h`): the parts that are not variadic.

use std::ffi::c_char;

use super::boundary::ffi_call;
use super::types::Error;
use crate::fatal::Misuse;

pub use crate::error::{error_abort, error_fatal};

/// Frees `err` (NULL is allowed).
#[unsafe(no_mangle)]
pub extern "C" fn error_free(err: *mut Error) {
    ffi_call("error_free", || {
        if !err.is_null() {
            // SAFETY: non-null errors handed to C come from Box::into_raw.
            drop(unsafe { Box::from_raw(err) });
        }
        Ok(())
    })
}

/// The message of `err`, valid until `err` is freed.
#[unsafe(no_mangle)]
pub extern "C" fn error_get_pretty(err: *const Error) -> *const c_char {
    ffi_call("error_get_pretty", || {
        if err.is_null() {
            return Err(Misuse::new("Error is NULL"));
        }
        // SAFETY: non-null errors handed to C are live `Error`s.
        Ok(unsafe { &*err }.message().as_ptr())
    })
}
