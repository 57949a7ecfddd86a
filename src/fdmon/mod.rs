//! fd monitoring backends: the small contract every backend implements, and
//! the choice between them (`select.rs`).
//!
//! Backends: `poll(2)` ([`poll::PollMonitor`], small sets), `epoll`
//! ([`epoll::EpollMonitor`], once a context watches more than
//! [`EPOLL_THRESHOLD`] fds) and `io_uring` ([`io_uring::IoUringMonitor`],
//! where the kernel allows it). `AIOCTX_FDMON=poll|epoll|io_uring` forces one
//! for every context ([`forced_backend`]); an invalid value is reported once
//! and ignored. [`open_with_fallback`] opens the wanted backend, or the next
//! one down (io_uring -> epoll -> poll) when the kernel refuses it.
//!
//! # The contract
//! - A monitor is owned by one context and used only by the thread polling
//!   that context: no internal locking.
//! - [`FdMonitor::set`] starts, changes or (with empty interest) stops
//!   watching an fd. Level-triggered semantics: an fd that stays readable is
//!   reported by every `wait` until it is drained (io_uring: by every wait
//!   with nothing fresher to report, and at least every 8 waits under a
//!   stream of other events; see its module docs).
//! - [`FdMonitor::wait`] blocks for at most `timeout_ns` nanoseconds (-1:
//!   forever, 0: do not block) and appends one [`Ready`] per ready fd.
//!   Timeouts are never rounded *down*: a backend with millisecond resolution
//!   rounds up, so a short timer never becomes a busy loop. `EINTR` returns
//!   with no events.
//!
//! # Edge cases every backend handles the same way
//! - Interest is `POLLIN`, `POLLOUT` and `POLLPRI`; any other bit is
//!   `EINVAL`. `POLLERR` and `POLLHUP` are always reported, as with poll(2).
//! - `set(fd, interest)` with a closed or negative fd fails with `EBADF`;
//!   `set(fd, 0)` succeeds even when the fd is already closed, and removing
//!   an fd that is not watched is a no-op.
//! - An fd closed while still watched stops being reported, after at most
//!   one more report (epoll drops it in the kernel, poll stops asking on
//!   `POLLNVAL`, io_uring stops re-arming on `EBADF`): a caller bug never
//!   turns into a busy loop. Callers should still remove an fd *before*
//!   closing it: io_uring and epoll can hold on to the open file (see the
//!   backends' docs).
//! - A blocking wait may return early with no events (a signal); callers
//!   treat that like a timeout.

use std::io;
use std::os::fd::RawFd;

/// Turns a libc return value of `-1` into the `errno` error (mio's
/// `syscall!` habit, as a function so that every call site keeps its own
/// `unsafe` block and `SAFETY` comment).
fn cvt<T: Copy + PartialEq + From<i8>>(res: T) -> io::Result<T> {
    if res == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

pub(crate) mod epoll;
mod fd_table;
pub(crate) mod io_uring;
pub(crate) mod ops;
pub(crate) mod poll;
mod select;

pub(crate) use fd_table::FdTable;
pub(crate) use select::{forced_backend, open_with_fallback};
#[cfg(test)]
use select::{new_monitor, parse_backend};

/// A map keyed by fd, for maps not read on every loop iteration (those
/// are [`FdTable`]s). fds are small integers that no attacker picks, so
/// the key is hashed with FxHash (`rustc-hash`: one rotate, xor and
/// multiply for an `i32`) instead of SipHash.
pub(crate) type FdMap<V> = rustc_hash::FxHashMap<RawFd, V>;

/// A non-negative nanosecond duration (or absolute time) as a `timespec`.
pub(crate) fn timespec_from_ns(ns: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

/// A context switches from `poll` to `epoll` above this many fds.
pub(crate) const EPOLL_THRESHOLD: usize = 64;

/// What to watch an fd for, in `poll(2)` bits (`POLLIN`, `POLLOUT`).
pub(crate) type Interest = u32;

/// One ready fd, with `poll(2)` result bits (`POLLIN`, `POLLOUT`, `POLLHUP`,
/// `POLLERR`, `POLLPRI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) fd: RawFd,
    pub(crate) revents: u32,
}

pub(crate) trait FdMonitor: Send {
    /// "poll", "epoll" or "io_uring".
    fn name(&self) -> &'static str;
    /// Starts, changes or (interest 0) stops watching `fd`.
    fn set(&mut self, fd: RawFd, interest: Interest) -> io::Result<()>;
    /// Waits up to `timeout_ns` (-1 forever, 0 no blocking); appends ready fds.
    fn wait(&mut self, timeout_ns: i64, ready: &mut Vec<Ready>) -> io::Result<()>;
    /// The io_uring monitor, which also carries callers' requests
    /// (`aio_add_sqe`); `None` for the others.
    fn as_io_uring(&mut self) -> Option<&mut io_uring::IoUringMonitor> {
        None
    }
    /// Whether callers' io_uring requests are queued or in the kernel.
    fn has_user_requests(&self) -> bool {
        false
    }
    /// Whether the monitor measures the time it sleeps itself
    /// ([`FdMonitor::take_slept_ns`]), so that the loop need not read the
    /// clock around a wait that may not sleep at all.
    fn times_its_sleep(&self) -> bool {
        false
    }
    /// Nanoseconds spent sleeping in waits since the last call (monitors
    /// that [`FdMonitor::times_its_sleep`]).
    fn take_slept_ns(&mut self) -> u64 {
        0
    }
}

/// The backends, for `AIOCTX_FDMON` and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Poll,
    Epoll,
    IoUring,
}

impl Backend {
    /// The name used by `AIOCTX_FDMON` and [`FdMonitor::name`].
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Poll => "poll",
            Backend::Epoll => "epoll",
            Backend::IoUring => "io_uring",
        }
    }

    /// The backend tried when this one cannot be opened.
    fn fallback(self) -> Option<Backend> {
        match self {
            Backend::IoUring => Some(Backend::Epoll),
            Backend::Epoll => Some(Backend::Poll),
            Backend::Poll => None,
        }
    }
}

/// The interest bits a backend accepts.
const INTEREST_MASK: Interest = (libc::POLLIN | libc::POLLOUT | libc::POLLPRI) as Interest;

/// The result bits a backend reports.
const REVENTS_MASK: u32 =
    (libc::POLLIN | libc::POLLOUT | libc::POLLPRI | libc::POLLERR | libc::POLLHUP) as u32;

/// The argument checks shared by every backend's `set`.
fn check_set_args(fd: RawFd, interest: Interest) -> io::Result<()> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if interest & !INTEREST_MASK != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// `EBADF` unless `fd` is open. poll(2) and io_uring only notice a bad fd
/// when they wait; checking at `set` time gives every backend epoll's
/// behaviour (the caller learns about it where it made the mistake).
pub(crate) fn check_fd_open(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD takes no pointer and only reads the fd's flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }).map(drop)
}

/// The behaviour every backend must share, run against each of them by
/// `contract_tests!`; plus the fd helpers the backends' own tests use.
#[cfg(test)]
pub(crate) mod tests;
