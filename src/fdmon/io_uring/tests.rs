//! Tests of the io_uring monitor beyond the shared contract
//! (`fdmon/tests.rs`): user-data encoding, stale completions, file release,
//! full rings, fds closed before submission.

use std::os::fd::AsRawFd;

use super::*;
use crate::fdmon::tests::{IN, OUT, drain, eventfd, pipe, poke, ready, wait};

/// The monitor, or `None` (tests skipped, reason printed) where the
/// kernel refuses io_uring.
fn open_ring() -> Option<IoUringMonitor> {
    match IoUringMonitor::new() {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("io_uring unavailable: {e}");
            None
        }
    }
}

crate::fdmon::tests::contract_tests!(
    open_ring().map(|m| Box::new(m) as Box<dyn crate::fdmon::FdMonitor>)
);

#[test]
fn io_uring_is_available_here() {
    // Informational: says in the test output whether the contract
    // tests above really ran.
    match IoUringMonitor::new() {
        Ok(_) => eprintln!("io_uring available"),
        Err(e) => eprintln!("io_uring unavailable: {e}"),
    }
}

#[test]
fn user_data_round_trips() {
    for (fd, generation) in [(0, 1), (7, 2), (i32::MAX, u32::MAX), (1023, 0x8000_0000)] {
        assert_eq!(split_user_data(user_data(fd, generation)), (fd, generation));
    }
    assert_ne!(user_data(0, 1), UD_IGNORED);
}

/// Arms a poll on `r`, makes it complete, and returns once its
/// completion sits unread in the ring.
fn complete_unread(m: &mut IoUringMonitor, r: &std::os::fd::OwnedFd, w: &std::os::fd::OwnedFd) {
    m.set(r.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(m, 0), []); // submitted, not ready
    poke(w);
    // The completion is posted by task work when this thread next
    // returns from a syscall (or at once); a few more syscalls make sure.
    for _ in 0..100 {
        if !m.ring.completion().is_empty() {
            return;
        }
        std::thread::yield_now();
    }
    panic!("poll completion not posted");
}

#[test]
fn stale_completion_after_remove_and_readd_is_not_reported() {
    let Some(mut m) = open_ring() else { return };
    let (r, w) = pipe();
    complete_unread(&mut m, &r, &w);
    m.set(r.as_raw_fd(), 0).unwrap();
    drain(&r);
    m.set(r.as_raw_fd(), IN).unwrap();
    // The POLLIN completion in the ring belongs to the old registration.
    assert_eq!(wait(&mut m, 0), []);
    assert_eq!(wait(&mut m, 2_000_000), []);
    assert!(m.stale_seen >= 1, "the stale completion was not exercised");
    poke(&w);
    assert_eq!(wait(&mut m, 1_000_000_000), [ready(&r, IN)]);
}

#[test]
fn stale_completion_after_interest_change_is_not_reported() {
    let Some(mut m) = open_ring() else { return };
    // An eventfd that becomes readable, then is watched for writing
    // only: the old POLLIN must not leak into the new registration.
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(&mut m, 0), []);
    poke(&e);
    // SAFETY: getpid has no arguments.
    unsafe { libc::getpid() };
    m.set(e.as_raw_fd(), OUT).unwrap();
    assert_eq!(wait(&mut m, 0), [ready(&e, OUT)]);
    assert!(m.stale_seen >= 1);
}

#[test]
fn stale_completion_while_blocking_does_not_end_the_wait_early() {
    let Some(mut m) = open_ring() else { return };
    let (r, w) = pipe();
    complete_unread(&mut m, &r, &w);
    m.set(r.as_raw_fd(), 0).unwrap();
    drain(&r);
    m.set(r.as_raw_fd(), IN).unwrap();
    let start = Instant::now();
    assert_eq!(wait(&mut m, 5_000_000), []);
    assert!(start.elapsed() >= Duration::from_millis(5));
}

#[test]
fn removal_releases_the_file_at_once() {
    let Some(mut m) = open_ring() else { return };
    let (r, w) = pipe();
    m.set(r.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(&mut m, 0), []); // the poll now holds the read end
    m.set(r.as_raw_fd(), 0).unwrap();
    drop(r);
    // No reader left anywhere: writing fails with EPIPE (SIGPIPE is
    // ignored by the Rust runtime).
    let one = 1u8;
    // SAFETY: writes one byte from a live local.
    let n = unsafe { libc::write(w.as_raw_fd(), (&raw const one).cast(), 1) };
    assert_eq!(n, -1);
    assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EPIPE));
}

#[test]
fn full_rings_lose_nothing() {
    // Tiny rings: 8 SQEs, 16 CQEs. 200 ready fds need 25 submissions to
    // arm and overflow the completion ring 12 times over.
    let Ok(mut m) = IoUringMonitor::with_ring_sizes(8, 16) else {
        return;
    };
    let fds: Vec<_> = (0..200).map(|_| eventfd()).collect();
    for e in &fds {
        poke(e);
        m.set(e.as_raw_fd(), IN).unwrap();
    }
    for round in 0..3 {
        let got = wait(&mut m, 0);
        assert_eq!(got.len(), fds.len(), "round {round}");
        assert!(got.iter().all(|r| r.revents == IN));
    }
    for e in &fds[1..] {
        drain(e);
    }
    // The re-arms of the drained ones stay pending; the last fd is
    // still reported, alone, every time.
    assert_eq!(wait(&mut m, 0), [ready(&fds[0], IN)]);
    assert_eq!(wait(&mut m, 0), [ready(&fds[0], IN)]);
}

#[test]
fn closed_before_submission_is_dropped_silently() {
    let Some(mut m) = open_ring() else { return };
    let e = eventfd();
    let fd = e.as_raw_fd();
    m.set(fd, IN).unwrap(); // queued, not yet submitted
    drop(e);
    assert_eq!(wait(&mut m, 0), []);
    assert!(!m.watched.get(fd).unwrap().armed);
    m.set(fd, 0).unwrap();
    assert!(m.watched.is_empty());
}

#[test]
fn one_report_per_fd_per_wait() {
    let Some(mut m) = open_ring() else { return };
    let (r, w) = pipe();
    m.set(r.as_raw_fd(), IN).unwrap();
    poke(&w);
    for _ in 0..5 {
        assert_eq!(wait(&mut m, 0), [ready(&r, IN)]);
    }
}

#[test]
fn completion_from_before_the_handlers_read_is_not_reported() {
    let Some(mut m) = open_ring() else { return };
    let e = eventfd();
    m.set(e.as_raw_fd(), IN).unwrap();
    assert_eq!(wait(&mut m, 0), []);
    poke(&e);
    assert_eq!(wait(&mut m, 1_000_000_000), [ready(&e, IN)]);
    // The "handler": more data arrives (its completion is posted by task
    // work at the next syscall's return), then it reads everything.
    poke(&e);
    // SAFETY: getpid has no arguments.
    unsafe { libc::getpid() };
    assert!(!m.ring.completion().is_empty(), "completion not posted");
    drain(&e);
    // The completion predates the read: checked, not trusted.
    assert_eq!(wait(&mut m, 0), []);
    assert_eq!(wait(&mut m, 0), []);
    poke(&e);
    assert_eq!(wait(&mut m, 1_000_000_000), [ready(&e, IN)]);
}

#[test]
fn undrained_fd_is_reported_again_under_a_stream_of_other_events() {
    let Some(mut m) = open_ring() else { return };
    let stuck = eventfd();
    let others: Vec<_> = (0..4).map(|_| eventfd()).collect();
    m.set(stuck.as_raw_fd(), IN).unwrap();
    for o in &others {
        m.set(o.as_raw_fd(), IN).unwrap();
    }
    assert_eq!(wait(&mut m, 0), []);
    poke(&stuck);
    let mut last_seen = 0;
    for i in 1..=(4 * LEVEL_CHECK_EVERY as usize) {
        // Something fresh every wait; `stuck` is never drained.
        let o = &others[i % others.len()];
        poke(o);
        let got = wait(&mut m, 1_000_000_000);
        assert!(got.contains(&ready(o, IN)), "wait {i}: {got:?}");
        drain(o);
        if got.contains(&ready(&stuck, IN)) {
            last_seen = i;
        }
        assert!(
            i - last_seen <= LEVEL_CHECK_EVERY as usize + 1,
            "wait {i}: the undrained fd was last reported by wait {last_seen}"
        );
    }
    // With nothing fresh, it is reported by every wait.
    for _ in 0..3 {
        assert_eq!(wait(&mut m, 0), [ready(&stuck, IN)]);
    }
}

/// `fdmon::FdTable` keeps one `Option<Watch>` per fd number below the
/// highest watched: its docs count 24 bytes each.
#[test]
fn a_watch_slot_is_24_bytes() {
    assert_eq!(std::mem::size_of::<Option<Watch>>(), 24);
}
