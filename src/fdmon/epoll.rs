//! The `epoll` backend: for contexts watching more than
//! [`EPOLL_THRESHOLD`](super::EPOLL_THRESHOLD) fds, where poll(2)'s linear
//! scan starts to cost more than the events.
//!
//! `set` is one `epoll_ctl` (ADD, MOD or DEL; registrations are
//! level-triggered, with the fd number as the event data); `wait` is one
//! `epoll_pwait2`/`epoll_wait`, whose cost depends on the ready fds only.
//!
//! Edge cases:
//! - Timeouts: `epoll_pwait2` (Linux 5.11) takes a nanosecond `timespec`.
//!   Where it is missing (`ENOSYS`, or `EPERM` from a seccomp filter that
//!   predates it), which is probed once per process, `epoll_wait` gets the
//!   timeout in milliseconds rounded *up*: a 10 µs timer waits 1 ms rather
//!   than 0 ms, which would spin until the timer expires.
//! - The kernel drops a registration when the last fd referring to the open
//!   file is closed. So a DEL for an fd the user closed before removing it
//!   fails with `EBADF` (or `ENOENT` if the number was reused); both mean
//!   "already gone" and are ignored. A MOD on a number whose old file was
//!   closed and that now names another file fails with `ENOENT`: the new
//!   file is ADDed instead.
//! - If the closed fd had been `dup`ed (or inherited by a child), its file
//!   stays open and registered and keeps reporting under the old number
//!   until `set(fd, 0)`: callers must remove before closing, as in QEMU.
//! - epoll refuses regular files and directories with `EPERM`; the caller
//!   then falls back to the poll backend, which reports them always ready.
//! - At most [`EVENT_BATCH`] fds are returned per wait; the rest stay ready
//!   (level-triggered) and come with the next wait, and the kernel rotates
//!   its ready list so none starves.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{FdMap, FdMonitor, Interest, Ready, check_set_args, cvt};

/// Events fetched per wait.
const EVENT_BATCH: usize = 256;

/// False once `epoll_pwait2` turned out to be missing (process-wide: the
/// kernel does not change under us).
static HAVE_PWAIT2: AtomicBool = AtomicBool::new(true);

/// `poll(2)` bit <-> `epoll` bit; the values happen to match on Linux, but
/// nothing promises it.
const BITS: [(u32, u32); 5] = [
    (libc::POLLIN as u32, libc::EPOLLIN as u32),
    (libc::POLLPRI as u32, libc::EPOLLPRI as u32),
    (libc::POLLOUT as u32, libc::EPOLLOUT as u32),
    (libc::POLLERR as u32, libc::EPOLLERR as u32),
    (libc::POLLHUP as u32, libc::EPOLLHUP as u32),
];

/// Whether each pair of [`BITS`] is one bit value (so on Linux): the
/// translation of each wait's events is then a mask.
const SAME_BITS: bool = {
    let (mut i, mut same) = (0, true);
    while i < BITS.len() {
        same &= BITS[i].0 == BITS[i].1;
        i += 1;
    }
    same
};

/// The `poll(2)` bits of [`BITS`].
const POLL_BITS: u32 = {
    let (mut i, mut all) = (0, 0);
    while i < BITS.len() {
        all |= BITS[i].0;
        i += 1;
    }
    all
};

fn to_epoll(interest: Interest) -> u32 {
    BITS.iter()
        .filter(|(p, _)| interest & p != 0)
        .fold(0, |acc, (_, e)| acc | e)
}

#[inline(always)]
fn to_poll(events: u32) -> u32 {
    if SAME_BITS {
        return events & POLL_BITS;
    }
    BITS.iter()
        .filter(|(_, e)| events & e != 0)
        .fold(0, |acc, (p, _)| acc | p)
}

/// `epoll_wait`'s timeout: milliseconds, rounded up, -1 for forever.
fn timeout_ms_rounded_up(timeout_ns: i64) -> libc::c_int {
    if timeout_ns < 0 {
        return -1;
    }
    let ms = (timeout_ns as u64).div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u64) as libc::c_int
}

/// Watches fds with an epoll instance.
pub(crate) struct EpollMonitor {
    epfd: OwnedFd,
    /// fd -> interest of the fds registered with the kernel.
    registered: FdMap<Interest>,
    /// Where the kernel writes events; always `EVENT_BATCH` long.
    events: Vec<libc::epoll_event>,
    /// Try `epoll_pwait2` for finite timeouts (tests clear it to exercise
    /// the millisecond fallback).
    use_pwait2: bool,
}

impl EpollMonitor {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(EpollMonitor {
            // SAFETY: the fd was just created and is owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            registered: FdMap::default(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENT_BATCH],
            use_pwait2: HAVE_PWAIT2.load(Ordering::Relaxed),
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, interest: Interest) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: to_epoll(interest),
            u64: fd as u64,
        };
        // SAFETY: `ev` is a live, initialized epoll_event (ignored for DEL).
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &raw mut ev) }).map(drop)
    }

    /// `epoll_pwait2` with a nanosecond timeout; `None` when the kernel (or
    /// seccomp) does not have it.
    fn pwait2(&mut self, timeout_ns: i64) -> Option<io::Result<usize>> {
        let ts = super::timespec_from_ns(timeout_ns);
        // SAFETY: `events` has room for `len` events the kernel may write;
        // `ts` lives across the call; a NULL sigmask (size 0) means none.
        let res = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                &raw const ts,
                ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        match cvt(res) {
            Ok(n) => Some(Ok(n as usize)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                HAVE_PWAIT2.store(false, Ordering::Relaxed);
                self.use_pwait2 = false;
                None
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn epoll_wait(&mut self, timeout_ns: i64) -> io::Result<usize> {
        // SAFETY: `events` has room for `len` events the kernel may write.
        let res = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                timeout_ms_rounded_up(timeout_ns),
            )
        };
        cvt(res).map(|n| n as usize)
    }
}

impl FdMonitor for EpollMonitor {
    fn name(&self) -> &'static str {
        "epoll"
    }

    fn set(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        check_set_args(fd, interest)?;
        if interest == 0 {
            if self.registered.remove(&fd).is_some() {
                match self.ctl(libc::EPOLL_CTL_DEL, fd, 0) {
                    // Closed before removal: the kernel already forgot it.
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::ENOENT)) => {}
                    other => other?,
                }
            }
            return Ok(());
        }
        // MOD even when the interest is unchanged: the number may name a
        // different file since the last call (see the module docs).
        let res = if self.registered.contains_key(&fd) {
            match self.ctl(libc::EPOLL_CTL_MOD, fd, interest) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.ctl(libc::EPOLL_CTL_ADD, fd, interest)
                }
                other => other,
            }
        } else {
            match self.ctl(libc::EPOLL_CTL_ADD, fd, interest) {
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.ctl(libc::EPOLL_CTL_MOD, fd, interest)
                }
                other => other,
            }
        };
        match res {
            Ok(()) => {
                self.registered.insert(fd, interest);
                Ok(())
            }
            Err(e) => {
                // Whatever was registered under this number is gone or stale.
                if self.registered.remove(&fd).is_some() {
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0);
                }
                Err(e)
            }
        }
    }

    fn wait(&mut self, timeout_ns: i64, ready: &mut Vec<Ready>) -> io::Result<()> {
        let res = if timeout_ns > 0 && self.use_pwait2 {
            match self.pwait2(timeout_ns) {
                Some(res) => res,
                None => self.epoll_wait(timeout_ns),
            }
        } else {
            // 0 and forever need no sub-millisecond precision.
            self.epoll_wait(timeout_ns)
        };
        let n = match res {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        for ev in &self.events[..n] {
            // Copies out of the packed struct, never a reference into it.
            let (events, data) = (ev.events, ev.u64);
            ready.push(Ready {
                fd: data as RawFd,
                revents: to_poll(events),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;
    use std::time::Duration;

    use super::*;
    use crate::fdmon::tests::{
        ERR, HUP, IN, OUT, PRI, eventfd, pipe, poke, ready, time_wait, wait,
    };

    crate::fdmon::tests::contract_tests!(Some(Box::new(EpollMonitor::new().unwrap())));

    /// The same contract with `epoll_pwait2` switched off.
    mod ms_fallback {
        use super::*;

        crate::fdmon::tests::contract_tests!({
            let mut m = EpollMonitor::new().unwrap();
            m.use_pwait2 = false;
            Some(Box::new(m))
        });
    }

    #[test]
    fn bits_translate_both_ways() {
        for (p, e) in BITS {
            assert_eq!(to_epoll(p), e);
            assert_eq!(to_poll(e), p);
        }
        assert_eq!(to_poll(libc::EPOLLRDHUP as u32), 0);
        assert_eq!(
            to_poll((libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLHUP) as u32),
            IN | OUT | HUP
        );
        assert_eq!(to_epoll(IN | PRI), (libc::EPOLLIN | libc::EPOLLPRI) as u32);
        assert_eq!(to_poll(libc::EPOLLERR as u32), ERR);
    }

    #[test]
    fn millisecond_timeouts_round_up() {
        assert_eq!(timeout_ms_rounded_up(-1), -1);
        assert_eq!(timeout_ms_rounded_up(0), 0);
        assert_eq!(timeout_ms_rounded_up(1), 1);
        assert_eq!(timeout_ms_rounded_up(10_000), 1);
        assert_eq!(timeout_ms_rounded_up(1_000_000), 1);
        assert_eq!(timeout_ms_rounded_up(1_000_001), 2);
        assert_eq!(timeout_ms_rounded_up(i64::MAX), libc::c_int::MAX);
    }

    #[test]
    fn sub_ms_timeout_waits_a_whole_ms_on_fallback() {
        let mut m = EpollMonitor::new().unwrap();
        m.use_pwait2 = false;
        let e = eventfd();
        m.set(e.as_raw_fd(), IN).unwrap();
        for _ in 0..5 {
            let took = time_wait(&mut m, 10_000);
            assert!(took >= Duration::from_millis(1), "{took:?}");
        }
    }

    #[test]
    fn pwait2_is_used_here_when_the_kernel_has_it() {
        // Informational on old kernels; on this project's machines (6.x) the
        // nanosecond path must be the one taken.
        let mut m = EpollMonitor::new().unwrap();
        let e = eventfd();
        m.set(e.as_raw_fd(), IN).unwrap();
        let took = time_wait(&mut m, 10_000);
        if m.use_pwait2 {
            assert!(took >= Duration::from_micros(10), "{took:?}");
        } else {
            eprintln!("epoll_pwait2 unavailable: millisecond fallback in use");
        }
    }

    #[test]
    fn reused_number_is_re_added() {
        // Caller bug tolerated: closed without removal, the number reused
        // by a new file, then set again with the same interest.
        let mut m = EpollMonitor::new().unwrap();
        let old = eventfd();
        let fd = old.into_raw_fd();
        m.set(fd, IN).unwrap();
        // dup2 closes the old file and reuses its number in one step, so a
        // test running in parallel cannot take the number in between.
        let other = eventfd();
        // SAFETY: both numbers are open and owned by this test.
        let got = unsafe { libc::dup2(other.as_raw_fd(), fd) };
        assert_eq!(got, fd, "dup2: {}", io::Error::last_os_error());
        // SAFETY: `fd` now names a file this test owns and nobody else closes.
        let new = unsafe { OwnedFd::from_raw_fd(fd) };
        m.set(fd, IN).unwrap();
        poke(&new);
        assert_eq!(wait(&mut m, 0), [ready(&new, IN)]);
    }

    #[test]
    fn regular_files_are_eperm() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let mut m = EpollMonitor::new().unwrap();
        let err = m.set(f.as_raw_fd(), IN).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert!(m.registered.is_empty());
    }

    #[test]
    fn more_ready_fds_than_one_batch() {
        let mut m = EpollMonitor::new().unwrap();
        let fds: Vec<_> = (0..EVENT_BATCH + 10).map(|_| pipe()).collect();
        for (r, w) in &fds {
            m.set(r.as_raw_fd(), IN).unwrap();
            poke(w);
        }
        let first = wait(&mut m, 0);
        assert_eq!(first.len(), EVENT_BATCH);
        // Nothing drained: the next wait still sees all of them, starting
        // with the ones the first batch left out.
        let second = wait(&mut m, 0);
        assert_eq!(second.len(), EVENT_BATCH);
        let mut union: Vec<RawFd> = first.iter().chain(&second).map(|r| r.fd).collect();
        union.sort();
        union.dedup();
        assert_eq!(union.len(), fds.len());
    }
}
