//! Callers' io_uring requests on the monitor's ring (`aio_add_sqe`; see
//! the "Callers' requests" section of `fdmon/io_uring.rs`): queueing,
//! collecting completions, the failed-ring cases and cancellation at
//! context teardown.
//!
//! Threading: as the monitor (the thread polling the context).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use ::io_uring::{cqueue, opcode, squeue};

use super::{IoUringMonitor, UD_IGNORED, UD_USER};

/// One completion of a caller's request, for its `CqeHandler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserCompletion {
    /// The handler's address (what the caller's `cqe.user_data` reads).
    pub(crate) handler: u64,
    pub(crate) res: i32,
    pub(crate) flags: u32,
}

impl IoUringMonitor {
    /// Queues a caller's SQE (`aio_add_sqe`), whose completion goes to the
    /// `CqeHandler` at `handler`; it reaches the kernel with the next wait.
    ///
    /// # Safety
    /// Whatever the SQE points at (buffers, iovecs, paths) stays valid
    /// until the handler's completion has been handed out by
    /// [`IoUringMonitor::take_user_completions`]; `handler` is the address
    /// of a `CqeHandler` that lives as long.
    pub(crate) unsafe fn queue_user(&mut self, sqe: squeue::Entry, handler: u64) {
        let ud = UD_USER | handler;
        self.user_in_flight.insert(ud);
        self.user_unsubmitted.push(ud);
        self.backlog.push(sqe.user_data(ud));
    }

    /// The ring's fd: readable while completions wait in the ring (a
    /// context run as a GSource has GLib watch it).
    pub(crate) fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    /// Moves the completions of callers' requests found so far to `out`.
    pub(crate) fn take_user_completions(&mut self, out: &mut Vec<UserCompletion>) {
        out.append(&mut self.user_done);
    }

    /// The monitor is being dropped after `io_uring_enter` failed (see
    /// `HandlersLocal::demote_after_failed_wait`): callers' requests the
    /// kernel never saw complete now with `-errno`. Returns whether others
    /// are still in the kernel (then the ring must stay until they finish:
    /// [`IoUringMonitor::drain_user_requests`]).
    pub(crate) fn fail_unsubmitted(&mut self, errno: i32) -> bool {
        for ud in std::mem::take(&mut self.user_unsubmitted) {
            if self.user_in_flight.remove(&ud) {
                self.user_done.push(UserCompletion {
                    handler: ud & !UD_USER,
                    res: -errno,
                    flags: 0,
                });
            }
        }
        self.backlog.clear();
        !self.user_in_flight.is_empty()
    }

    /// Reaps completions of callers' requests without entering the kernel
    /// (for a ring that can no longer be entered); returns whether some
    /// are still in flight.
    pub(crate) fn drain_user_requests(&mut self) -> bool {
        let cqes = self.copy_cqes();
        for &(ud, res, flags) in &cqes {
            if ud & UD_USER != 0 {
                self.user_completed(ud, res, flags);
            }
        }
        self.cqe_buf_back(cqes);
        !self.user_in_flight.is_empty()
    }

    /// Keeps the completion of a caller's request for its handler; the
    /// request is done unless more completions follow (multishot).
    pub(super) fn user_completed(&mut self, ud: u64, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.user_in_flight.remove(&ud);
        }
        self.user_done.push(UserCompletion {
            handler: ud & !UD_USER,
            res,
            flags,
        });
    }

    /// Context teardown: asks the kernel to cancel every caller's request
    /// still in flight (queued ones are submitted and cancelled alike) and
    /// waits until each has completed (`-ECANCELED`, or its result if it
    /// finished first). The completions are then handed out as usual.
    pub(crate) fn cancel_user_requests(&mut self) {
        const ROUND: Duration = Duration::from_millis(10);
        while !self.user_in_flight.is_empty() {
            // Queued after the requests themselves: the kernel sees each
            // request before its cancellation. Asked again every round, for
            // a request that was running (`-EALREADY`) and is not done yet.
            for &ud in &self.user_in_flight {
                self.backlog
                    .push(opcode::AsyncCancel::new(ud).build().user_data(UD_IGNORED));
            }
            let until = Instant::now() + ROUND;
            let mut res = self.enter(Some(Duration::ZERO));
            loop {
                if let Err(e) = &res
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    // The ring cannot be entered: what the kernel never saw
                    // completes with the error; the rest is looked for
                    // without entering.
                    self.fail_unsubmitted(e.raw_os_error().unwrap_or(libc::EIO));
                    let give_up = Instant::now() + Duration::from_secs(1);
                    while self.drain_user_requests() && Instant::now() < give_up {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    return; // what is left keeps the ring alive (see Drop)
                }
                self.reap();
                let left = until.saturating_duration_since(Instant::now());
                if self.user_in_flight.is_empty() || left.is_zero() {
                    break;
                }
                res = self.enter(Some(left));
            }
        }
    }
}
