//! The `poll(2)` backend: the default for small sets, and the one that works
//! everywhere (no kernel object to create, any fd type including regular
//! files, which epoll refuses).
//!
//! The watched set lives in a map (fd -> interest); the `pollfd` array handed
//! to the kernel is rebuilt from it only when the set changed since the last
//! wait, so a steady loop copies nothing. The cost of one wait is linear in
//! the number of fds, which is why contexts switch to epoll above
//! [`EPOLL_THRESHOLD`](super::EPOLL_THRESHOLD) fds.
//!
//! Edge cases:
//! - The timeout goes to `ppoll` as a nanosecond `timespec` (NULL for
//!   "forever"), so it is never rounded.
//! - An fd closed while watched comes back as `POLLNVAL` on every call;
//!   reporting it would turn the loop into a busy loop, so it is dropped
//!   from the set instead (what epoll does in the kernel) and not reported.
//!   A later `set` on the same number watches whatever is open there then.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::RawFd;
use std::ptr;

use super::{FdMonitor, Interest, REVENTS_MASK, Ready, check_fd_open, check_set_args, cvt};

/// Watches fds with `ppoll(2)`.
pub(crate) struct PollMonitor {
    /// fd -> interest; ordered so that reports come in fd order.
    watched: BTreeMap<RawFd, Interest>,
    /// What `ppoll` gets; mirrors `watched` unless `dirty`.
    pollfds: Vec<libc::pollfd>,
    dirty: bool,
}

impl PollMonitor {
    pub(crate) fn new() -> Self {
        PollMonitor {
            watched: BTreeMap::new(),
            pollfds: Vec::new(),
            dirty: false,
        }
    }

    fn rebuild(&mut self) {
        self.pollfds.clear();
        self.pollfds
            .extend(self.watched.iter().map(|(&fd, &interest)| libc::pollfd {
                fd,
                events: interest as libc::c_short,
                revents: 0,
            }));
        self.dirty = false;
    }
}

impl FdMonitor for PollMonitor {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn set(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        check_set_args(fd, interest)?;
        if interest == 0 {
            self.dirty |= self.watched.remove(&fd).is_some();
            return Ok(());
        }
        if self.watched.get(&fd) == Some(&interest) {
            return Ok(());
        }
        check_fd_open(fd)?;
        self.watched.insert(fd, interest);
        self.dirty = true;
        Ok(())
    }

    fn wait(&mut self, timeout_ns: i64, ready: &mut Vec<Ready>) -> io::Result<()> {
        if self.dirty {
            self.rebuild();
        }
        let ts;
        let ts_ptr = if timeout_ns < 0 {
            ptr::null()
        } else {
            ts = super::timespec_from_ns(timeout_ns);
            &raw const ts
        };
        // SAFETY: `pollfds` is a valid array of `len` pollfds that the kernel
        // may write `revents` into; `ts_ptr` is NULL or points to `ts`, live
        // for the call; a NULL sigmask leaves the mask alone.
        let res = unsafe {
            libc::ppoll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                ts_ptr,
                ptr::null(),
            )
        };
        let n = match cvt(res) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        for pfd in &self.pollfds {
            let revents = pfd.revents as u32;
            if revents & libc::POLLNVAL as u32 != 0 {
                // Closed behind our back: stop asking (see the module docs).
                self.watched.remove(&pfd.fd);
                self.dirty = true;
            } else if revents != 0 {
                ready.push(Ready {
                    fd: pfd.fd,
                    revents: revents & REVENTS_MASK,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;
    use crate::fdmon::tests::{IN, OUT, eventfd, poke, ready, wait};

    crate::fdmon::tests::contract_tests!(Some(Box::new(PollMonitor::new())));

    #[test]
    fn pollfds_rebuilt_only_when_the_set_changes() {
        let mut m = PollMonitor::new();
        let a = eventfd();
        let b = eventfd();
        m.set(a.as_raw_fd(), IN).unwrap();
        m.set(b.as_raw_fd(), IN).unwrap();
        assert!(m.dirty);
        assert_eq!(wait(&mut m, 0), []);
        assert!(!m.dirty);
        let array = m.pollfds.as_ptr();
        // Same interest again: no change, no rebuild.
        m.set(a.as_raw_fd(), IN).unwrap();
        assert!(!m.dirty);
        // Removing an fd that is not watched: no change either.
        m.set(999_999, 0).unwrap();
        assert!(!m.dirty);
        poke(&a);
        assert_eq!(wait(&mut m, 0), [ready(&a, IN)]);
        assert_eq!(m.pollfds.as_ptr(), array);
        m.set(b.as_raw_fd(), IN | OUT).unwrap();
        assert!(m.dirty);
        assert_eq!(wait(&mut m, 0), [ready(&a, IN), ready(&b, OUT)]);
        assert_eq!(m.pollfds.len(), 2);
        m.set(a.as_raw_fd(), 0).unwrap();
        assert_eq!(wait(&mut m, 0), [ready(&b, OUT)]);
        assert_eq!(m.pollfds.len(), 1);
    }

    #[test]
    fn closed_fd_is_dropped_after_pollnval() {
        let mut m = PollMonitor::new();
        let e = eventfd();
        let fd = e.as_raw_fd();
        m.set(fd, IN).unwrap();
        drop(e);
        assert_eq!(wait(&mut m, 0), []);
        assert!(!m.watched.contains_key(&fd));
        // Removing it afterwards is still fine.
        m.set(fd, 0).unwrap();
    }

    #[test]
    fn regular_files_are_always_ready() {
        // The reason a context falls back to poll when epoll says EPERM.
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let mut m = PollMonitor::new();
        m.set(f.as_raw_fd(), IN).unwrap();
        let got = wait(&mut m, -1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].revents & IN, IN);
    }
}
