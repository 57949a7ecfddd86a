//! `Error` objects through `Error **errp` (`qapi/error.h`): the errp rules,
//! once, for the library's own errors and the C callers' alike, and the
//! non-variadic half of the API.
//!
//! The rules, as QEMU's `error_handle`:
//!  - `errp == NULL`: the error is freed;
//!  - `&error_abort`: the error is reported and the process aborts. A C
//!    caller's error prints QEMU's `Unexpected error in FUNC() at FILE:LINE:`
//!    then its report line (`PROGNAME: message`) and hint; an error the
//!    library made itself prints the library's fatal line
//!    `aioctx: FUNCTION: message`, naming the exported function;
//!  - `&error_fatal`: the same report (without the `Unexpected error` line),
//!    then `exit(1)`;
//!  - `*errp` already holds an error: `error_setg` & co. (and the library)
//!    abort, as QEMU's assertion does; `error_propagate` frees the new error
//!    (the first one wins);
//!  - else `*errp` takes the error, which the caller frees (`error_free`,
//!    `error_report_err`, ...).
//!
//! The variadic functions (`error_setg`, `error_prepend`,
//! `error_append_hint`, ...) are C shims (`src/c/variadic.c`) that format
//! their text and call the entry points of `src/ffi/error_c.rs`.

use std::ffi::c_char;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::boundary::ffi_call;
use super::report::{self, Kind};
use super::types::Error;
use crate::error::Origin;
use crate::fatal::{self, Misuse, MisuseResult};

/// Pass `&error_abort` as `errp` to abort (with the message) on error.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut error_abort: *mut Error = ptr::null_mut();

/// Pass `&error_fatal` as `errp` to print the message and `exit(1)` on error.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut error_fatal: *mut Error = ptr::null_mut();

/// What storing into an `errp` that already holds an error does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenHeld {
    /// `error_setg` & co.: a caller bug (QEMU asserts).
    Misuse,
    /// `error_propagate`: the first error wins; the new one is freed.
    KeepFirst,
}

/// Prints `err` as `error_report_err` does: its report line, then its hint.
fn report_err(kind: Kind, err: &Error) {
    report::report(kind, err.message().to_bytes());
    report::print(err.hint());
}

/// The message and hint of a library error, for its one fatal line.
fn library_text(err: &Error) -> String {
    let mut text = err.message().to_string_lossy().into_owned();
    let hint = String::from_utf8_lossy(err.hint());
    if !hint.is_empty() {
        text.push('\n');
        text.push_str(hint.trim_end_matches('\n'));
    }
    text
}

/// `&error_abort`'s report, then abort.
fn abort_with(err: Box<Error>) -> ! {
    match err.origin() {
        Origin::Library(func) => fatal::die(func, &library_text(&err)),
        Origin::Caller { func, src, line } => {
            let head = format!(
                "Unexpected error in {}() at {}:{line}:\n",
                func.to_string_lossy(),
                src.to_string_lossy()
            );
            report::print(head.as_bytes());
            report_err(Kind::Error, &err);
        }
        Origin::Unknown => report_err(Kind::Error, &err),
    }
    std::process::abort()
}

/// `&error_fatal`'s report, then `exit(1)`.
fn exit_with(err: Box<Error>) -> ! {
    match err.origin() {
        Origin::Library(func) => {
            let line = format!("aioctx: {func}: {}\n", library_text(&err));
            report::print(line.as_bytes());
        }
        _ => report_err(Kind::Error, &err),
    }
    std::process::exit(1)
}

/// Stores `err` through `errp` with the rules of the module doc: the one
/// implementation of them.
///
/// # Safety
/// `errp` is NULL, `&error_abort`, `&error_fatal`, or a valid `Error **`.
pub(super) unsafe fn deliver(
    errp: *mut *mut Error,
    err: Box<Error>,
    when_held: WhenHeld,
) -> MisuseResult<()> {
    if errp.is_null() {
        return Ok(());
    }
    if ptr::eq(errp, &raw mut error_abort) {
        abort_with(err);
    }
    if ptr::eq(errp, &raw mut error_fatal) {
        exit_with(err);
    }
    // SAFETY: a valid `Error **` per the caller.
    let held = unsafe { *errp };
    if held.is_null() {
        // SAFETY: as above.
        unsafe { *errp = Box::into_raw(err) };
        return Ok(());
    }
    if when_held == WhenHeld::KeepFirst {
        return Ok(());
    }
    let site = match err.origin() {
        Origin::Caller { func, src, line } => format!(
            " (from {}() at {}:{line})",
            func.to_string_lossy(),
            src.to_string_lossy()
        ),
        _ => String::new(),
    };
    // SAFETY: a non-null `*errp` is a live `Error` of this library.
    let first = unsafe { &*held }.message().to_string_lossy();
    Err(Misuse::new(format!(
        "errp already holds an error (\"{first}\"); cannot also report \"{}\"{site}",
        err.message().to_string_lossy()
    )))
}

/// Reports `msg` through `errp` on behalf of the exported function `func`
/// (the library's own errors), with `error_setg`'s rules.
///
/// # Safety
/// `errp` is NULL, `&error_abort`, `&error_fatal`, or a valid `Error **`.
pub(crate) unsafe fn propagate(func: &'static str, errp: *mut *mut Error, msg: &str) {
    let err = Error::with_class(msg.as_bytes(), 0, Origin::Library(func));
    // SAFETY: per the caller.
    if let Err(m) = unsafe { deliver(errp, err, WhenHeld::Misuse) } {
        fatal::die(func, &m.0);
    }
}

/// Takes back an `Error` handed to C.
///
/// # Safety
/// `err` is non-null and came from `Box::into_raw` in this library.
unsafe fn take(err: *mut Error) -> Box<Error> {
    // SAFETY: per the caller.
    unsafe { Box::from_raw(err) }
}

fn non_null(err: *mut Error) -> MisuseResult<*mut Error> {
    if err.is_null() {
        Err(Misuse::new("Error is NULL"))
    } else {
        Ok(err)
    }
}

/// Frees `err` (NULL is allowed), its hint with it.
#[unsafe(no_mangle)]
pub extern "C" fn error_free(err: *mut Error) {
    ffi_call(c"error_free", || {
        if !err.is_null() {
            // SAFETY: non-null errors handed to C come from Box::into_raw.
            drop(unsafe { take(err) });
        }
        Ok(())
    })
}

/// The message of `err`, valid until `err` is freed or changed.
#[unsafe(no_mangle)]
pub extern "C" fn error_get_pretty(err: *const Error) -> *const c_char {
    ffi_call(c"error_get_pretty", || {
        let err = non_null(err.cast_mut())?;
        // SAFETY: non-null errors handed to C are live `Error`s.
        Ok(unsafe { &*err }.message().as_ptr())
    })
}

/// A new error with the message, class, hint and origin of `err` (not
/// NULL). The caller owns it.
#[unsafe(no_mangle)]
pub extern "C" fn error_copy(err: *const Error) -> *mut Error {
    ffi_call(c"error_copy", || {
        let err = non_null(err.cast_mut())?;
        // SAFETY: non-null errors handed to C are live `Error`s.
        Ok(Box::into_raw(Box::new(unsafe { &*err }.clone())))
    })
}

/// Moves `local_err` into `*dst_errp`: a NULL `local_err` does nothing; a
/// NULL `dst_errp` frees it; `&error_abort` / `&error_fatal` report it
/// (with its hint) and abort / `exit(1)`; if `*dst_errp` already holds an
/// error, `local_err` is freed (the first error wins).
#[unsafe(no_mangle)]
pub extern "C" fn error_propagate(dst_errp: *mut *mut Error, local_err: *mut Error) {
    ffi_call(c"error_propagate", || {
        if local_err.is_null() {
            return Ok(());
        }
        // SAFETY: a non-null error handed to C; `dst_errp` per the contract.
        unsafe { deliver(dst_errp, take(local_err), WhenHeld::KeepFirst) }
    })
}

/// Prints `err` (not NULL) with `error_report` ("PROGNAME: message"), then
/// its hint, then frees it.
#[unsafe(no_mangle)]
pub extern "C" fn error_report_err(err: *mut Error) {
    ffi_call(c"error_report_err", || {
        // SAFETY: a non-null error handed to C.
        report_err(Kind::Error, &*unsafe { take(non_null(err)?) });
        Ok(())
    })
}

/// Like `error_report_err`, as a warning ("PROGNAME: warning: message").
#[unsafe(no_mangle)]
pub extern "C" fn warn_report_err(err: *mut Error) {
    ffi_call(c"warn_report_err", || {
        // SAFETY: a non-null error handed to C.
        report_err(Kind::Warning, &*unsafe { take(non_null(err)?) });
        Ok(())
    })
}

/// `warn_report_err(err)` if `*printed` is false, which it then sets
/// (atomically); otherwise just frees `err`. Returns true if it printed.
#[unsafe(no_mangle)]
pub extern "C" fn warn_report_err_once_cond(printed: *mut bool, err: *mut Error) -> bool {
    ffi_call(c"warn_report_err_once_cond", || {
        if printed.is_null() {
            return Err(Misuse::new("printed is NULL"));
        }
        // SAFETY: a non-null error handed to C.
        let err = unsafe { take(non_null(err)?) };
        // SAFETY: a non-null `bool *` of the caller's call site.
        if unsafe { AtomicBool::from_ptr(printed) }.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        report_err(Kind::Warning, &err);
        Ok(true)
    })
}

/// Frees `*errp` and sets it to NULL; aborts if `errp` or `*errp` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn error_free_or_abort(errp: *mut *mut Error) {
    ffi_call(c"error_free_or_abort", || {
        // SAFETY: a non-null `Error **` per the contract.
        if errp.is_null() || unsafe { *errp }.is_null() {
            return Err(Misuse::new("no error"));
        }
        // SAFETY: as above; `*errp` is an error handed to C.
        unsafe {
            drop(take(*errp));
            *errp = ptr::null_mut();
        }
        Ok(())
    })
}
