//! QEMU's human-readable reports (`qemu/error-report.h`): `error_report`,
//! `warn_report`, `info_report` and the report of an `Error`.
//!
//! A report is one line, `[TIMESTAMP ][GUEST ]PROGNAME:LOCATION KIND MESSAGE`,
//! written to C's `stderr` with one stdio call (then flushed), so lines from
//! several threads do not interleave and the order against the program's own
//! `fprintf(stderr, ...)` is kept. PROGNAME is `g_get_prgname()` if set (by
//! `error_init` or the program), else the executable's short name; the
//! location is the top of the `loc_*` stack (`src/ffi/location.rs`).
//!
//! The variadic entry points (`error_report(fmt, ...)` & co.) are C shims in
//! `src/c/variadic.c` that format the message and call [`aioctx_report`].
//! Any thread.

use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::boundary::ffi_call;
use super::location::{self, LOC_CMDLINE, LOC_FILE};
use super::location::{error_guest_name, error_with_guestname, message_with_timestamp};
use crate::fatal::Misuse;

unsafe extern "C" {
    /// C's `stderr` stream (glibc's data object).
    static mut stderr: *mut libc::FILE;
    /// glibc's basename of `argv[0]`.
    static program_invocation_short_name: *const c_char;
    /// GLib >= 2.56 (glib-sys gates it behind a feature; QEMU uses it).
    fn g_date_time_format_iso8601(datetime: *mut glib_sys::GDateTime) -> *mut c_char;
}

/// What kind of report a line is: the word after the location.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Error,
    Warning,
    Info,
}

impl Kind {
    /// The C shims' code for a kind (`src/c/internal.h`: 0, 1, 2).
    fn from_c(kind: c_int) -> Option<Kind> {
        match kind {
            0 => Some(Kind::Error),
            1 => Some(Kind::Warning),
            2 => Some(Kind::Info),
            _ => None,
        }
    }

    fn word(self) -> &'static [u8] {
        match self {
            Kind::Error => b"",
            Kind::Warning => b"warning: ",
            Kind::Info => b"info: ",
        }
    }
}

/// Writes `bytes` to C's `stderr` with one stdio call and flushes it,
/// keeping `errno` (QEMU's reports do not disturb it).
pub(crate) fn print(bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: `__errno_location` returns this thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    // SAFETY: `stderr` is C's stream, initialised before `main`; `bytes`
    // is a valid buffer of its length.
    unsafe {
        let f = stderr;
        libc::fwrite(bytes.as_ptr().cast(), 1, bytes.len(), f);
        libc::fflush(f);
        *libc::__errno_location() = saved;
    }
}

/// The bytes of a C string, or nothing for NULL.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the returned lifetime.
unsafe fn c_bytes<'a>(p: *const c_char) -> &'a [u8] {
    if p.is_null() {
        return b"";
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

/// The current UTC time in ISO 8601 with microseconds, as GLib formats it.
fn timestamp(out: &mut Vec<u8>) {
    // SAFETY: plain GLib calls; the string is freed and the date unref'd.
    unsafe {
        let dt = glib_sys::g_date_time_new_now_utc();
        if dt.is_null() {
            return;
        }
        let s = g_date_time_format_iso8601(dt);
        out.extend_from_slice(c_bytes(s));
        glib_sys::g_free(s.cast());
        glib_sys::g_date_time_unref(dt);
    }
}

/// Appends QEMU's prefix: "PROGNAME:" then the current location, then a
/// separator.
fn location_prefix(out: &mut Vec<u8>) {
    // SAFETY: GLib's program name is a static string once set; glibc's
    // short name lives for the process.
    let prog = unsafe {
        let name = glib_sys::g_get_prgname();
        c_bytes(if name.is_null() {
            program_invocation_short_name
        } else {
            name
        })
    };
    out.extend_from_slice(prog);
    out.push(b':');
    let loc = location::current();
    match loc.kind {
        LOC_CMDLINE => {
            let argv = loc.ptr.cast::<*const c_char>();
            for i in 0..loc.num.max(0) as usize {
                out.push(b' ');
                // SAFETY: `loc_set_cmdline`'s contract: `num` words of a
                // live argv starting at `ptr`.
                out.extend_from_slice(unsafe { c_bytes(*argv.add(i)) });
            }
            out.extend_from_slice(b": ");
        }
        LOC_FILE => {
            // SAFETY: `loc_set_file`'s contract: the name outlives its use.
            out.extend_from_slice(unsafe { c_bytes(loc.ptr.cast()) });
            out.push(b':');
            if loc.num != 0 {
                out.extend_from_slice(format!("{}:", loc.num).as_bytes());
            }
            out.push(b' ');
        }
        _ => out.push(b' '),
    }
}

/// Prints one report line of `kind` with the message `msg`.
pub(crate) fn report(kind: Kind, msg: &[u8]) {
    let mut line = Vec::with_capacity(msg.len() + 64);
    // SAFETY: the flags are 1-byte C data objects (`bool`) that programs
    // set directly; read them atomically, as QEMU's `qatomic_read`.
    let (stamp, with_guest, guest) = unsafe {
        (
            AtomicBool::from_ptr(&raw mut message_with_timestamp).load(Ordering::Relaxed),
            AtomicBool::from_ptr(&raw mut error_with_guestname).load(Ordering::Relaxed),
            AtomicPtr::from_ptr((&raw mut error_guest_name).cast::<*mut c_char>())
                .load(Ordering::Relaxed),
        )
    };
    if stamp {
        timestamp(&mut line);
        line.push(b' ');
    }
    if with_guest && !guest.is_null() {
        // SAFETY: the program's guest name is a C string it keeps alive.
        line.extend_from_slice(unsafe { c_bytes(guest) });
        line.push(b' ');
    }
    location_prefix(&mut line);
    line.extend_from_slice(kind.word());
    line.extend_from_slice(msg);
    line.push(b'\n');
    print(&line);
}

/// Prints one report line: `kind` 0 error, 1 warning, 2 info; `msg` the
/// formatted message. The library's C shims (`error_report` & co.) only.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_report(kind: c_int, msg: *const c_char) {
    ffi_call(c"aioctx_report", || {
        let kind = Kind::from_c(kind).ok_or_else(|| Misuse::new("bad report kind"))?;
        // SAFETY: the shims pass a formatted NUL-terminated string.
        report(kind, unsafe { c_bytes(msg) });
        Ok(())
    })
}

/// `aioctx_report` if `*printed` is false, which it then sets (atomically);
/// returns whether it printed. The `*_report_once_cond` shims only.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_report_once(printed: *mut bool, kind: c_int, msg: *const c_char) -> bool {
    ffi_call(c"aioctx_report_once", || {
        if printed.is_null() {
            return Err(Misuse::new("printed is NULL"));
        }
        let kind = Kind::from_c(kind).ok_or_else(|| Misuse::new("bad report kind"))?;
        // SAFETY: a non-null `bool *` of the caller's call site.
        if unsafe { AtomicBool::from_ptr(printed) }.swap(true, Ordering::Relaxed) {
            return Ok(false);
        }
        // SAFETY: the shims pass a formatted NUL-terminated string.
        report(kind, unsafe { c_bytes(msg) });
        Ok(true)
    })
}

/// Sets the program name used as the report prefix to the basename of
/// `argv0` (`g_set_prgname`); NULL leaves it unchanged.
#[unsafe(no_mangle)]
pub extern "C" fn error_init(argv0: *const c_char) {
    ffi_call(c"error_init", || {
        if argv0.is_null() {
            return Ok(());
        }
        // SAFETY: a NUL-terminated string per the contract.
        let full = unsafe { CStr::from_ptr(argv0) }.to_bytes_with_nul();
        let base = match full.iter().rposition(|&b| b == b'/') {
            Some(i) => &full[i + 1..],
            None => full,
        };
        // SAFETY: `base` is NUL-terminated (a suffix of `full`); GLib
        // copies it.
        unsafe { glib_sys::g_set_prgname(base.as_ptr().cast()) };
        Ok(())
    })
}
