//! The entry points of the library's C shims for `qapi/error.h`
//! (`src/c/variadic.c`): each variadic function formats its text there and
//! hands it here, where the rules live (`src/ffi/error.rs`). Also the public
//! constructors `aioctx_error_new*` and `aioctx_error_class`.
//!
//! The shim entry points are excluded from `aioctx.h` (cbindgen.toml) and
//! declared in `src/c/internal.h`; they report misuse under the name of the
//! QEMU function the program called (`error_setg`, `error_prepend`, ...).

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr;

use super::boundary::ffi_call;
use super::error::{WhenHeld, deliver, error_fatal};
use super::types::Error;
use crate::error::Origin;
use crate::fatal::{Misuse, MisuseResult};

/// A new `Error` holding a copy of `msg` (NUL-terminated, not NULL). The
/// caller owns it: store it into an `Error **` or free it with `error_free`.
/// Its class is `ERROR_CLASS_GENERIC_ERROR`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_new(msg: *const c_char) -> *mut Error {
    ffi_call(c"aioctx_error_new", || new_with_class(msg, 0))
}

/// Like `aioctx_error_new`, with the QAPI class `err_class` (an
/// `ErrorClass` of `qapi/error.h`: 0 to `ERROR_CLASS__MAX - 1`). Used by
/// the `error_setg` & co. shims before `aioctx_error_set`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_new_class(err_class: c_int, msg: *const c_char) -> *mut Error {
    ffi_call(c"aioctx_error_new_class", || {
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
    ffi_call(c"aioctx_error_class", || {
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
    let msg = unsafe { CStr::from_ptr(msg) }.to_bytes();
    Ok(Box::into_raw(Error::with_class(
        msg,
        class,
        Origin::Unknown,
    )))
}

/// The bytes of a C string the shims pass (NULL is misuse).
///
/// # Safety
/// `p` is NULL or NUL-terminated and valid for the returned lifetime.
unsafe fn text<'a>(p: *const c_char, what: &'static str) -> MisuseResult<&'a [u8]> {
    if p.is_null() {
        return Err(Misuse::new(what));
    }
    // SAFETY: per the contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A C string the shims pass, copied (NULL becomes "").
///
/// # Safety
/// As [`text`].
unsafe fn owned(p: *const c_char) -> CString {
    if p.is_null() {
        return CString::default();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_owned()
}

/// `error_setg` & co.: records the call site (`__func__`, `__FILE__`,
/// `__LINE__`) in `err` (made by `aioctx_error_new_class`) and stores it
/// through `errp` (the rules of `src/ffi/error.rs`; an `errp` that already
/// holds an error is misuse).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_set(
    errp: *mut *mut Error,
    err: *mut Error,
    src: *const c_char,
    line: c_int,
    func: *const c_char,
) {
    ffi_call(c"error_setg", || {
        if err.is_null() {
            return Err(Misuse::new("Error is NULL"));
        }
        // SAFETY: `err` comes from `aioctx_error_new_class` (Box::into_raw).
        let mut err = unsafe { Box::from_raw(err) };
        // SAFETY: the shims pass the macros' `__func__` and `__FILE__`.
        let (func, src) = unsafe { (owned(func), owned(src)) };
        err.set_origin(Origin::Caller { func, src, line });
        // SAFETY: `errp` per QEMU's contract.
        unsafe { deliver(errp, err, WhenHeld::Misuse) }
    })
}

/// `error_prepend`: prefixes the message of `*errp` with `prefix`, if
/// `errp` and `*errp` are set.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_prepend(errp: *const *mut Error, prefix: *const c_char) {
    ffi_call(c"error_prepend", || {
        // SAFETY: `errp` is NULL or a valid `Error *const *`.
        if errp.is_null() || unsafe { *errp }.is_null() {
            return Ok(());
        }
        // SAFETY: the shim's formatted prefix.
        let prefix = unsafe { text(prefix, "prefix is NULL") }?;
        // SAFETY: a non-null `*errp` is a live `Error` owned by the caller,
        // who is not using it during this call.
        unsafe { &mut **errp }.prepend(prefix);
        Ok(())
    })
}

/// `error_append_hint`: appends `hint` to the hint of `*errp`. A NULL
/// `errp` drops it; `&error_fatal` (the hint would be lost: use
/// `ERRP_GUARD()`) and an `errp` holding no error are misuse (QEMU asserts).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_append_hint(errp: *const *mut Error, hint: *const c_char) {
    ffi_call(c"error_append_hint", || {
        if errp.is_null() {
            return Ok(());
        }
        if ptr::eq(errp, &raw const error_fatal) {
            return Err(Misuse::new(
                "errp is &error_fatal; use ERRP_GUARD() to keep hints",
            ));
        }
        // SAFETY: a valid `Error *const *` per QEMU's contract.
        let err = unsafe { *errp };
        if err.is_null() {
            return Err(Misuse::new("errp holds no error"));
        }
        // SAFETY: the shim's formatted hint.
        let hint = unsafe { text(hint, "hint is NULL") }?;
        // SAFETY: a live `Error` owned by the caller (see above).
        unsafe { &mut *err }.append_hint(hint);
        Ok(())
    })
}

/// `error_propagate_prepend`: if `*dst_errp` is free to take it, prefixes
/// `err` with `prefix`; then `error_propagate(dst_errp, err)`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_error_propagate_prepend(
    dst_errp: *mut *mut Error,
    err: *mut Error,
    prefix: *const c_char,
) {
    ffi_call(c"error_propagate_prepend", || {
        if err.is_null() {
            return Ok(());
        }
        // SAFETY: `err` is an error handed to C (Box::into_raw).
        let mut err = unsafe { Box::from_raw(err) };
        // SAFETY: `dst_errp` is NULL or a valid `Error **`; error_abort and
        // error_fatal hold NULL.
        if !dst_errp.is_null() && unsafe { *dst_errp }.is_null() {
            // SAFETY: the shim's formatted prefix.
            err.prepend(unsafe { text(prefix, "prefix is NULL") }?);
        }
        // SAFETY: as above.
        unsafe { deliver(dst_errp, err, WhenHeld::KeepFirst) }
    })
}
