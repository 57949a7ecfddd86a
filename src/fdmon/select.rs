//! Backend selection: the `AIOCTX_FDMON` override and opening a backend
//! with the fallback io_uring -> epoll -> poll when the kernel (or a
//! sandbox) refuses one.

use std::ffi::OsStr;
use std::io;
use std::sync::OnceLock;

use super::{Backend, FdMonitor, epoll, io_uring, poll};

/// The backend forced by `AIOCTX_FDMON`, read once per process.
pub(crate) fn forced_backend() -> Option<Backend> {
    static FORCED: OnceLock<Option<Backend>> = OnceLock::new();
    *FORCED.get_or_init(|| {
        let value = std::env::var_os("AIOCTX_FDMON")?;
        parse_backend(&value).unwrap_or_else(|problem| {
            crate::fatal::warn("AIOCTX_FDMON", &problem);
            None
        })
    })
}

/// Parses an `AIOCTX_FDMON` value: `Ok(None)` when empty (unset), the
/// warning text when unknown.
pub(super) fn parse_backend(value: &OsStr) -> Result<Option<Backend>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    [Backend::Poll, Backend::Epoll, Backend::IoUring]
        .into_iter()
        .find(|b| value == b.name())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "unknown backend '{}' (expected poll, epoll or io_uring); using the default",
                value.to_string_lossy()
            )
        })
}

/// Opens backend `b`; fails when the kernel (or a sandbox) refuses it.
pub(crate) fn new_monitor(b: Backend) -> io::Result<Box<dyn FdMonitor>> {
    Ok(match b {
        Backend::Poll => Box::new(poll::PollMonitor::new()),
        Backend::Epoll => Box::new(epoll::EpollMonitor::new()?),
        Backend::IoUring => Box::new(io_uring::IoUringMonitor::new()?),
    })
}

/// Opens backend `b`, or the next one down (io_uring -> epoll -> poll) when
/// it cannot be opened. Never fails: poll needs no kernel object. The
/// returned monitor's [`FdMonitor::name`] tells which one it is.
pub(crate) fn open_with_fallback(b: Backend) -> Box<dyn FdMonitor> {
    let mut b = b;
    loop {
        match new_monitor(b) {
            Ok(m) => return m,
            Err(_) => match b.fallback() {
                Some(next) => b = next,
                None => unreachable!("the poll backend cannot fail to open"),
            },
        }
    }
}
