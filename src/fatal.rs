//! Fatal misuse reports: one line `aioctx: <function>: <problem>` on stderr,
//! then `abort()`.
//!
//! Domain code returns [`Misuse`] for contract violations; the FFI boundary
//! (`ffi::boundary`) turns it into a report naming the exported function the
//! C caller used. Warnings use the same prefix and do not abort.

use std::borrow::Cow;
use std::fmt;

/// A contract violation by the C caller, described in a few words.
#[derive(Debug)]
pub(crate) struct Misuse(pub(crate) Cow<'static, str>);

impl Misuse {
    pub(crate) fn new(problem: impl Into<Cow<'static, str>>) -> Self {
        Misuse(problem.into())
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type MisuseResult<T> = Result<T, Misuse>;

/// Writes the whole line with one `write(2)` so that lines from several
/// threads never interleave, and without taking Rust's stderr lock (a report
/// may be made while another thread holds it).
fn write_stderr_line(line: &str) {
    let mut buf = line.as_bytes();
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid, initialized byte slice for its length.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        buf = &buf[n as usize..];
    }
}

/// Reports `problem` for the exported function `func` and aborts.
#[cold]
pub(crate) fn die(func: &str, problem: &str) -> ! {
    write_stderr_line(&format!("aioctx: {func}: {problem}\n"));
    std::process::abort()
}

/// Reports a non-fatal problem with the same prefix as [`die`].
#[cold]
pub(crate) fn warn(func: &str, problem: &str) {
    write_stderr_line(&format!("aioctx: {func}: warning: {problem}\n"));
}
