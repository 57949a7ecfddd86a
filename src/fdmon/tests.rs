//! The behaviour every backend must share, run against each of them by
//! [`contract_tests!`]; plus the fd helpers the backends' own tests use.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::*;

pub(crate) const IN: u32 = libc::POLLIN as u32;
pub(crate) const OUT: u32 = libc::POLLOUT as u32;
pub(crate) const HUP: u32 = libc::POLLHUP as u32;
pub(crate) const ERR: u32 = libc::POLLERR as u32;
pub(crate) const PRI: u32 = libc::POLLPRI as u32;

/// A non-blocking pipe: `(read end, write end)`.
pub(crate) fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A non-blocking eventfd with counter 0.
pub(crate) fn eventfd() -> OwnedFd {
    // SAFETY: eventfd takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(fd >= 0, "eventfd: {}", io::Error::last_os_error());
    // SAFETY: the fd was just opened and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A connected non-blocking AF_UNIX stream socket pair.
pub(crate) fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    let ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: socketpair succeeded, so both fds are open and unowned.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Writes 8 bytes (one eventfd increment, or 8 bytes into a pipe).
pub(crate) fn poke(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
    assert_eq!(n, 8, "write: {}", io::Error::last_os_error());
}

/// Reads everything readable now (non-blocking fd).
pub(crate) fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reads into a live local buffer of the given length.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// Fills a non-blocking pipe or socket until it would block.
pub(crate) fn fill(fd: &OwnedFd) {
    let buf = [0u8; 65536];
    // SAFETY: writes from a live local buffer of the given length.
    while unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) } > 0 {}
}

/// One wait; returns what it reported, sorted by fd.
pub(crate) fn wait(m: &mut dyn FdMonitor, timeout_ns: i64) -> Vec<Ready> {
    let mut ready = Vec::new();
    m.wait(timeout_ns, &mut ready).expect("wait");
    ready.sort_by_key(|r| r.fd);
    ready
}

pub(crate) fn ready(fd: &OwnedFd, revents: u32) -> Ready {
    Ready {
        fd: fd.as_raw_fd(),
        revents,
    }
}

/// How long one wait with `timeout_ns` and no ready fd took.
pub(crate) fn time_wait(m: &mut dyn FdMonitor, timeout_ns: i64) -> Duration {
    let start = Instant::now();
    assert_eq!(wait(m, timeout_ns), []);
    start.elapsed()
}

/// Generates the shared contract tests for one backend, in a module
/// `contract` beside the call. `$open` evaluates to
/// `Option<Box<dyn FdMonitor>>`; `None` skips the tests (io_uring where
/// the kernel refuses it).
macro_rules! contract_tests {
    ($open:expr) => {
        mod contract {
            #[allow(unused_imports)]
            use super::*;

            fn open() -> Option<Box<dyn $crate::fdmon::FdMonitor>> {
                $open
            }

            $crate::fdmon::tests::contract_test_fns! {
                read_readiness write_readiness level_triggered_until_drained
                removal_stops_reports readd_with_other_interest
                change_interest_in_place hup_on_closed_pipe_write_end
                socketpair_read_write_and_peer_close
                zero_timeout_returns_at_once timeout_5ms_is_honoured
                sub_ms_timeout_is_not_rounded_down forever_is_woken_by_other_thread
                huge_timeout_is_accepted signal_ends_the_wait thousand_fds_one_ready bad_fd_is_ebadf bad_interest_is_einval
                removing_unwatched_or_closed_fd_is_ok closed_while_watched_does_not_spin
            }
        }
    };
}

/// One `#[test]` per shared check, each on a fresh monitor from `open()`.
macro_rules! contract_test_fns {
    ($($name:ident)*) => {$(
        #[test]
        fn $name() {
            match open() {
                Some(mut m) => $crate::fdmon::tests::$name(&mut *m),
                None => eprintln!("backend unavailable here: skipped"),
            }
        }
    )*};
}
pub(crate) use {contract_test_fns, contract_tests};

pub(crate) fn read_readiness(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []);
    poke(&e);
    assert_eq!(wait(m, 1_000_000_000), [ready(&e, IN)]);
}

pub(crate) fn write_readiness(m: &mut dyn FdMonitor) {
    let (r, w) = pipe();
    m.set(w.as_raw_fd(), OUT).unwrap();
    assert_eq!(wait(m, 0), [ready(&w, OUT)]);
    fill(&w);
    assert_eq!(wait(m, 0), []);
    drain(&r);
    assert_eq!(wait(m, 1_000_000_000), [ready(&w, OUT)]);
}

pub(crate) fn level_triggered_until_drained(m: &mut dyn FdMonitor) {
    let (r, w) = pipe();
    m.set(r.as_raw_fd(), IN).unwrap();
    poke(&w);
    for round in 0..5 {
        assert_eq!(wait(m, 1_000_000_000), [ready(&r, IN)], "round {round}");
    }
    drain(&r);
    assert_eq!(wait(m, 0), []);
    assert_eq!(wait(m, 2_000_000), []);
    poke(&w);
    assert_eq!(wait(m, 1_000_000_000), [ready(&r, IN)]);
}

pub(crate) fn removal_stops_reports(m: &mut dyn FdMonitor) {
    let a = eventfd();
    let b = eventfd();
    m.set(a.as_raw_fd(), IN).unwrap();
    m.set(b.as_raw_fd(), IN).unwrap();
    poke(&a);
    poke(&b);
    assert_eq!(wait(m, 0).len(), 2);
    m.set(a.as_raw_fd(), 0).unwrap();
    assert_eq!(wait(m, 0), [ready(&b, IN)]);
    m.set(b.as_raw_fd(), 0).unwrap();
    assert_eq!(wait(m, 2_000_000), []);
}

pub(crate) fn readd_with_other_interest(m: &mut dyn FdMonitor) {
    // An eventfd that is readable and writable: only the watched half
    // may be reported, before and after the re-add.
    let e = eventfd();
    poke(&e);
    m.set(e.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), [ready(&e, IN)]);
    m.set(e.as_raw_fd(), 0).unwrap();
    m.set(e.as_raw_fd(), OUT).unwrap();
    assert_eq!(wait(m, 0), [ready(&e, OUT)]);
    m.set(e.as_raw_fd(), 0).unwrap();
    m.set(e.as_raw_fd(), IN | OUT).unwrap();
    assert_eq!(wait(m, 0), [ready(&e, IN | OUT)]);
}

pub(crate) fn change_interest_in_place(m: &mut dyn FdMonitor) {
    let (r, w) = pipe();
    m.set(w.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []);
    m.set(w.as_raw_fd(), OUT).unwrap();
    assert_eq!(wait(m, 0), [ready(&w, OUT)]);
    m.set(w.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []);
    drop(r);
}

pub(crate) fn hup_on_closed_pipe_write_end(m: &mut dyn FdMonitor) {
    let (r, w) = pipe();
    m.set(r.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []);
    drop(w);
    let got = wait(m, 1_000_000_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fd, r.as_raw_fd());
    assert_ne!(got[0].revents & HUP, 0, "{got:?}");
    // Level-triggered: the hang-up stays reported.
    assert_eq!(wait(m, 0), got);
}

pub(crate) fn socketpair_read_write_and_peer_close(m: &mut dyn FdMonitor) {
    let (a, b) = socketpair();
    m.set(a.as_raw_fd(), IN | OUT).unwrap();
    assert_eq!(wait(m, 0), [ready(&a, OUT)]);
    poke(&b);
    assert_eq!(wait(m, 0), [ready(&a, IN | OUT)]);
    drain(&a);
    drop(b);
    let got = wait(m, 1_000_000_000);
    assert_eq!(got.len(), 1);
    assert_ne!(got[0].revents & (HUP | IN), 0, "{got:?}");
}

pub(crate) fn zero_timeout_returns_at_once(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    let took = time_wait(m, 0);
    assert!(took < Duration::from_millis(50), "{took:?}");
}

pub(crate) fn timeout_5ms_is_honoured(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    let took = time_wait(m, 5_000_000);
    assert!(took >= Duration::from_millis(5), "{took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

pub(crate) fn sub_ms_timeout_is_not_rounded_down(m: &mut dyn FdMonitor) {
    // 20 waits of 50 µs: with rounding down to 0 they would take a few
    // µs in all (a busy loop); each must wait at least its timeout.
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    for _ in 0..20 {
        let took = time_wait(m, 50_000);
        assert!(took >= Duration::from_micros(50), "{took:?}");
    }
}

pub(crate) fn forever_is_woken_by_other_thread(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    let fd = e.as_raw_fd();
    let poker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let one: u64 = 1;
        // SAFETY: `fd` stays open until the thread is joined below.
        unsafe { libc::write(fd, (&raw const one).cast(), 8) };
    });
    let start = Instant::now();
    assert_eq!(wait(m, -1), [ready(&e, IN)]);
    assert!(start.elapsed() >= Duration::from_millis(15));
    poker.join().unwrap();
}

pub(crate) fn huge_timeout_is_accepted(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    poke(&e);
    assert_eq!(wait(m, i64::MAX), [ready(&e, IN)]);
    assert_eq!(wait(m, i64::MAX - 1), [ready(&e, IN)]);
}

pub(crate) fn signal_ends_the_wait(m: &mut dyn FdMonitor) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    extern "C" fn ignore(_: libc::c_int) {}
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler is a plain
        // extern "C" fn that does nothing (async-signal-safe). No
        // SA_RESTART, so the interrupted wait fails with EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&raw mut sa.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &raw const sa, std::ptr::null_mut()),
                0
            );
        }
    });
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            // Until the wait has returned: a signal sent before the
            // waiter blocked is simply lost.
            while !done.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
                // SAFETY: the waiting thread outlives this loop (it
                // joins this thread below).
                unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            }
        })
    };
    let start = Instant::now();
    let got = wait(m, 10_000_000_000);
    done.store(true, Ordering::Release);
    killer.join().unwrap();
    assert_eq!(got, []);
    assert!(start.elapsed() < Duration::from_secs(5));
}

pub(crate) fn thousand_fds_one_ready(m: &mut dyn FdMonitor) {
    let fds: Vec<OwnedFd> = (0..1000).map(|_| eventfd()).collect();
    for fd in &fds {
        m.set(fd.as_raw_fd(), IN).unwrap();
    }
    assert_eq!(wait(m, 0), []);
    for i in [0, 499, 999] {
        poke(&fds[i]);
        assert_eq!(wait(m, 1_000_000_000), [ready(&fds[i], IN)]);
        drain(&fds[i]);
        assert_eq!(wait(m, 0), []);
    }
    for fd in &fds {
        poke(fd);
    }
    let all = wait(m, 0);
    let mut seen = 0;
    // A backend may spread many ready fds over several waits (epoll's
    // event buffer); level-triggered, none is lost.
    let mut got = all;
    while !got.is_empty() {
        for r in &got {
            assert_eq!(r.revents, IN);
            drain(fds.iter().find(|f| f.as_raw_fd() == r.fd).unwrap());
            seen += 1;
        }
        got = wait(m, 0);
    }
    assert_eq!(seen, 1000);
    for fd in &fds {
        m.set(fd.as_raw_fd(), 0).unwrap();
    }
    poke(&fds[7]);
    assert_eq!(wait(m, 0), []);
}

pub(crate) fn bad_fd_is_ebadf(m: &mut dyn FdMonitor) {
    // Far above any descriptor this process opens: a closed one could be
    // reused at once by a test running in parallel.
    let fd = 999_999;
    let err = m.set(fd, IN).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    let err = m.set(-1, IN).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert_eq!(wait(m, 0), []);
}

pub(crate) fn bad_interest_is_einval(m: &mut dyn FdMonitor) {
    let e = eventfd();
    let err = m.set(e.as_raw_fd(), IN | HUP).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    m.set(e.as_raw_fd(), IN | PRI).unwrap();
}

pub(crate) fn removing_unwatched_or_closed_fd_is_ok(m: &mut dyn FdMonitor) {
    let e = eventfd();
    m.set(e.as_raw_fd(), 0).unwrap();
    m.set(e.as_raw_fd(), IN).unwrap();
    let fd = e.as_raw_fd();
    drop(e);
    m.set(fd, 0).unwrap();
    m.set(fd, 0).unwrap();
    assert_eq!(wait(m, 0), []);
}

pub(crate) fn closed_while_watched_does_not_spin(m: &mut dyn FdMonitor) {
    let keep = eventfd();
    m.set(keep.as_raw_fd(), IN).unwrap();
    let (r, w) = pipe();
    m.set(r.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []);
    drop(r); // caller bug: closed without set(fd, 0)
    drop(w);
    // Reports about the dead fd are allowed at most once; then the
    // monitor must block again instead of returning at once forever.
    let _ = wait(m, 0);
    let took = time_wait(m, 5_000_000);
    assert!(took >= Duration::from_millis(5), "{took:?}");
}

#[test]
fn parse_backend_values() {
    assert_eq!(parse_backend(OsStr::new("poll")), Ok(Some(Backend::Poll)));
    assert_eq!(parse_backend(OsStr::new("epoll")), Ok(Some(Backend::Epoll)));
    assert_eq!(
        parse_backend(OsStr::new("io_uring")),
        Ok(Some(Backend::IoUring))
    );
    assert_eq!(parse_backend(OsStr::new("")), Ok(None));
    assert_eq!(
        parse_backend(OsStr::new("kqueue")),
        Err(
            "unknown backend 'kqueue' (expected poll, epoll or io_uring); \
             using the default"
                .to_string()
        )
    );
    assert!(parse_backend(OsStr::new("EPOLL")).is_err());
}

#[test]
fn backend_names_match_monitor_names() {
    for b in [Backend::Poll, Backend::Epoll, Backend::IoUring] {
        let m = open_with_fallback(b);
        if let Ok(direct) = new_monitor(b) {
            assert_eq!(direct.name(), b.name());
            assert_eq!(m.name(), b.name());
        } else {
            assert_ne!(m.name(), b.name());
        }
    }
    assert_eq!(open_with_fallback(Backend::Poll).name(), "poll");
}

#[test]
fn forced_backend_is_stable() {
    // Whatever the environment says, the answer is read once.
    assert_eq!(forced_backend(), forced_backend());
}
