//! The `io_uring` backend: fds watched with `IORING_OP_POLL_ADD` requests,
//! so that one `io_uring_enter` per wait both submits every change made
//! since the last wait and sleeps for the next event (epoll needs one
//! `epoll_ctl` per change on top of its wait).
//!
//! # How it works
//! - `set` only records the change and queues SQEs (`POLL_REMOVE` for the
//!   old request, `POLL_ADD` for the new one); they reach the kernel with
//!   the next wait. The exception is removal, which is submitted at once: an
//!   armed poll holds a reference to the open file, and a caller that
//!   removes an fd and closes it expects the file (a socket, a pipe end) to
//!   be closed for real, not when the context next polls.
//! - Each request carries `user_data = generation << 32 | fd`. Every `set`
//!   of an fd starts a new generation, so a completion of an older request
//!   (one that completed before its `POLL_REMOVE` arrived, or that the
//!   removal cancelled) is recognized as stale and ignored, even when the
//!   same fd number is watched again in the meantime. Generation 0 marks
//!   requests whose completions carry no news (`POLL_REMOVE` itself).
//! - `wait` is one `io_uring_enter` with `IORING_ENTER_EXT_ARG` and a
//!   nanosecond `timespec` (no timeout SQE to cancel afterwards), then reads
//!   the completion ring. If it was woken only by stale completions it waits
//!   again for the rest of the timeout.
//!
//! # Level-triggered, with single-shot polls
//! Polls are single-shot. An fd reported by one wait is re-armed by the
//! next one (after its handler had the chance to drain it; re-arming at
//! once would only complete at once), and a poll armed on an fd that is
//! still ready completes during that very submission. So an fd that stays
//! readable is reported by every wait, as with poll and epoll, for one
//! `POLL_ADD` per report and no extra syscall.
//! Multishot polls (`IORING_POLL_ADD_MULTI`, Linux 5.13) are not used
//! although every kernel this backend accepts has them: they post a
//! completion per *wakeup* (new data), not while data stays unread, i.e.
//! they are edge-triggered. Making them level-triggered needs a re-check of
//! every reported fd at the next wait, which is one SQE per event: exactly
//! what the single-shot re-arm costs, without the second mechanism.
//!
//! One difference from poll and epoll remains: a completion that the kernel
//! posted while nobody waited is reported by the next wait even if the fd
//! was drained in between, so a handler may occasionally run and find
//! nothing to read (`EAGAIN`). QEMU's handlers, like its own io_uring
//! monitor, tolerate that; re-checking every completion with `poll(2)`
//! would cost a syscall per event.
//!
//! # Requirements and fallback
//! [`IoUringMonitor::new`] fails (and the caller falls back to epoll) when
//! `io_uring_setup` fails (seccomp or `kernel.io_uring_disabled`: `EPERM`;
//! no io_uring: `ENOSYS`; `RLIMIT_MEMLOCK` on kernels before 5.12:
//! `ENOMEM`), when the kernel lacks `IORING_FEAT_EXT_ARG` (Linux < 5.11)
//! or `IORING_FEAT_NODROP`, or when the opcode probe says `POLL_ADD` or
//! `POLL_REMOVE` is missing (partial implementations such as gVisor's).
//!
//! # Edge cases
//! - The completion ring can overflow when very many fds become ready at
//!   once; with `IORING_FEAT_NODROP` the kernel keeps the extra completions
//!   and hands them over on the next enter, which [`IoUringMonitor::reap`]
//!   asks for when the overflow flag is set.
//! - An fd closed before its `POLL_ADD` was submitted completes with
//!   `EBADF`: it is not re-armed (a busy loop otherwise) nor reported.
//! - An fd closed while its poll is armed is not noticed at once: the armed
//!   poll keeps the file open until it completes, and that completion is
//!   reported (once) under the old number. The re-arm looks the number up
//!   afresh, so it then fails with `EBADF` (or watches whatever file the
//!   number names by then). Callers must remove before closing, as QEMU
//!   requires: until then a socket stays open for its peer.
//! - Any other error completion is reported once as `POLLERR`, so that the
//!   handler runs and notices, and the fd is not re-armed until the next
//!   `set`.
//! - Regular files complete at once as readable and writable (the kernel's
//!   default poll mask), like poll(2) reports them.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ::io_uring::{IoUring, Probe, opcode, squeue, types};

use super::{FdMap, FdMonitor, Interest, REVENTS_MASK, Ready, check_fd_open, check_set_args};

/// Submission ring size: SQEs queued by `set` beyond this are submitted in
/// chunks.
const SQ_ENTRIES: u32 = 256;
/// Completion ring size; more completions than this at once overflow into
/// the kernel's list (see the module docs).
const CQ_ENTRIES: u32 = 4096;

/// `user_data` of SQEs whose completion is ignored.
const UD_IGNORED: u64 = 0;

fn user_data(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

fn split_user_data(ud: u64) -> (RawFd, u32) {
    (ud as u32 as RawFd, (ud >> 32) as u32)
}

/// One watched fd.
struct Watch {
    interest: Interest,
    /// Generation of the current `POLL_ADD`; completions of others are stale.
    generation: u32,
    /// A `POLL_ADD` of this generation is queued or in the kernel.
    armed: bool,
    /// Index in `IoUringMonitor::reports` while a report is pending.
    report: Option<usize>,
    /// The poll failed in an unexpected way and was reported as `POLLERR`:
    /// not re-armed until the next `set`.
    broken: bool,
}

/// Watches fds with io_uring poll requests.
pub(crate) struct IoUringMonitor {
    ring: IoUring,
    watched: FdMap<Watch>,
    /// SQEs not yet copied into the submission ring.
    backlog: Vec<squeue::Entry>,
    /// Readiness found by `reap`, handed out by the next `wait`; at most one
    /// entry per fd.
    reports: Vec<Ready>,
    /// fds (with their generation) reported by the last `wait`, re-armed
    /// by the next one.
    rearm: Vec<(RawFd, u32)>,
    last_generation: u32,
    /// Completions ignored as stale (for tests).
    #[cfg(test)]
    stale_seen: usize,
}

impl IoUringMonitor {
    /// Sets up a ring, or fails when this kernel or sandbox cannot provide
    /// what the backend needs (see the module docs).
    pub(crate) fn new() -> io::Result<Self> {
        Self::with_ring_sizes(SQ_ENTRIES, CQ_ENTRIES)
    }

    /// [`IoUringMonitor::new`] with other ring sizes (tests use tiny rings
    /// to make them fill up).
    fn with_ring_sizes(sq_entries: u32, cq_entries: u32) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries)
            .build(sq_entries)?;
        let params = ring.params();
        if !params.is_feature_ext_arg() || !params.is_feature_nodrop() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without EXT_ARG or NODROP (Linux < 5.11)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::PollAdd::CODE)
            || !probe.is_supported(opcode::PollRemove::CODE)
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without POLL_ADD/POLL_REMOVE",
            ));
        }
        Ok(IoUringMonitor {
            ring,
            watched: FdMap::default(),
            backlog: Vec::new(),
            reports: Vec::new(),
            rearm: Vec::new(),
            last_generation: 0,
            #[cfg(test)]
            stale_seen: 0,
        })
    }

    fn next_generation(&mut self) -> u32 {
        self.last_generation = self.last_generation.wrapping_add(1);
        if self.last_generation == 0 {
            self.last_generation = 1; // 0 is UD_IGNORED's
        }
        self.last_generation
    }

    /// Stops watching `fd`: cancels its armed poll (if any) and drops a
    /// pending report. Returns whether a cancellation was queued.
    fn forget(&mut self, fd: RawFd) -> bool {
        let Some(w) = self.watched.remove(&fd) else {
            return false;
        };
        if let Some(i) = w.report {
            drop_report(&mut self.reports, &mut self.watched, i);
        }
        if w.armed {
            let cancel = opcode::PollRemove::new(user_data(fd, w.generation))
                .build()
                .user_data(UD_IGNORED);
            self.backlog.push(cancel);
        }
        w.armed
    }

    /// Copies the backlog into the submission ring, submitting whenever the
    /// ring is full.
    fn flush_backlog(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.backlog.len() {
            {
                let mut sq = self.ring.submission();
                let n = (sq.capacity() - sq.len()).min(self.backlog.len() - done);
                // SAFETY: POLL_ADD and POLL_REMOVE SQEs carry no pointers,
                // so there is no buffer to keep alive until completion.
                unsafe { sq.push_multiple(&self.backlog[done..done + n]) }
                    .expect("room was checked");
                done += n;
            }
            if done < self.backlog.len() {
                match self.ring.submit() {
                    Ok(_) => {}
                    Err(e) if is_transient(&e) => self.reap(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.backlog.drain(..done);
                        return Err(e);
                    }
                }
            }
        }
        self.backlog.clear();
        Ok(())
    }

    /// One `io_uring_enter`: submits everything queued and, unless `wait` is
    /// `Some(Duration::ZERO)`, waits for one completion (`None`: forever).
    fn enter(&mut self, wait: Option<Duration>) -> io::Result<()> {
        self.flush_backlog()?;
        let res = match wait {
            Some(Duration::ZERO) => self.ring.submit(),
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            // The caller reaps next, which is what the kernel asks for.
            Err(e) if is_transient(&e) => Ok(()),
            // EINTR included: `wait` returns at once with what it has.
            Err(e) => Err(e),
        }
    }

    /// Reads every completion: current ones become reports (or, if they
    /// report nothing, re-arms); stale ones are dropped.
    fn reap(&mut self) {
        loop {
            for cqe in self.ring.completion() {
                let stale = complete(
                    &mut self.watched,
                    &mut self.backlog,
                    &mut self.reports,
                    cqe.user_data(),
                    cqe.result(),
                );
                #[cfg(test)]
                {
                    self.stale_seen += usize::from(stale);
                }
                #[cfg(not(test))]
                let _ = stale;
            }
            // Completions that did not fit wait in the kernel (NODROP); an
            // enter with GETEVENTS (which `submit` adds when the flag is
            // set) moves them into the ring.
            if !self.ring.submission().cq_overflow() || self.ring.submit().is_err() {
                break;
            }
        }
    }
}

/// Completion ring full, or no memory for the kernel's overflow list: the
/// cure is to reap and retry.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}

/// Removes report `i`, keeping the moved report's index right.
fn drop_report(reports: &mut Vec<Ready>, watched: &mut FdMap<Watch>, i: usize) {
    reports.swap_remove(i);
    if let Some(moved) = reports.get(i)
        && let Some(w) = watched.get_mut(&moved.fd)
    {
        w.report = Some(i);
    }
}

/// Handles one completion; returns whether it was stale.
fn complete(
    watched: &mut FdMap<Watch>,
    backlog: &mut Vec<squeue::Entry>,
    reports: &mut Vec<Ready>,
    ud: u64,
    res: i32,
) -> bool {
    if ud == UD_IGNORED {
        return false;
    }
    let (fd, generation) = split_user_data(ud);
    let Some(w) = watched.get_mut(&fd) else {
        return true; // removed since
    };
    if w.generation != generation || !w.armed {
        return true; // re-added or changed since
    }
    w.armed = false;
    let revents = match res {
        r if r >= 0 => r as u32 & REVENTS_MASK,
        // Cancelled by something other than our POLL_REMOVE (those carry
        // old generations), e.g. the submitting thread exited: re-arm.
        r if r == -libc::ECANCELED => 0,
        // Closed before the poll was submitted: stop, don't spin.
        r if r == -libc::EBADF => return false,
        // Unexpected: let the handler see an error once; no re-arm.
        _ => {
            w.broken = true;
            report(reports, w, fd, libc::POLLERR as u32);
            return false;
        }
    };
    if revents != 0 {
        // Re-armed by the next wait, once the handler had its chance to
        // drain the fd: re-arming now would complete at once, for nothing.
        report(reports, w, fd, revents);
    } else {
        backlog.push(poll_add(fd, w.interest, generation));
        w.armed = true;
    }
    false
}

fn poll_add(fd: RawFd, interest: Interest, generation: u32) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), interest)
        .build()
        .user_data(user_data(fd, generation))
}

/// Adds (or merges into) the pending report of `fd`.
fn report(reports: &mut Vec<Ready>, w: &mut Watch, fd: RawFd, revents: u32) {
    match w.report {
        Some(i) => reports[i].revents |= revents,
        None => {
            w.report = Some(reports.len());
            reports.push(Ready { fd, revents });
        }
    }
}

impl FdMonitor for IoUringMonitor {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    fn set(&mut self, fd: RawFd, interest: Interest) -> io::Result<()> {
        check_set_args(fd, interest)?;
        if interest == 0 {
            if self.forget(fd) {
                // Let go of the file now (see the module docs). Errors are
                // transient here; the next wait submits what is left.
                if self.flush_backlog().is_ok() {
                    let _ = self.ring.submit();
                }
            }
            return Ok(());
        }
        // Checked on every call: the poll is re-armed on whatever file the
        // number names now, which must be open.
        if let Err(e) = check_fd_open(fd) {
            self.forget(fd);
            return Err(e);
        }
        self.forget(fd);
        let generation = self.next_generation();
        self.backlog.push(poll_add(fd, interest, generation));
        self.watched.insert(
            fd,
            Watch {
                interest,
                generation,
                armed: true,
                report: None,
                broken: false,
            },
        );
        Ok(())
    }

    fn wait(&mut self, timeout_ns: i64, ready: &mut Vec<Ready>) -> io::Result<()> {
        // `None`: forever (also for a timeout too large for an Instant).
        let deadline = if timeout_ns > 0 {
            Instant::now().checked_add(Duration::from_nanos(timeout_ns as u64))
        } else {
            None
        };
        // Level-triggered: what the last wait reported is watched again; a
        // poll armed on an fd that is still ready completes during the
        // submission below.
        for (fd, generation) in self.rearm.drain(..) {
            if let Some(w) = self.watched.get_mut(&fd)
                && w.generation == generation
                && !w.armed
                && !w.broken
            {
                self.backlog.push(poll_add(fd, w.interest, generation));
                w.armed = true;
            }
        }
        self.reap();
        loop {
            let wait = if !self.reports.is_empty() || timeout_ns == 0 {
                Some(Duration::ZERO)
            } else {
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            };
            let res = self.enter(wait);
            self.reap();
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => return Err(e),
            }
            if !self.reports.is_empty() || wait == Some(Duration::ZERO) {
                break;
            }
            // Woken by stale completions only: wait for the rest.
        }
        for r in self.reports.drain(..) {
            if let Some(w) = self.watched.get_mut(&r.fd) {
                w.report = None;
                self.rearm.push((r.fd, w.generation));
            }
            ready.push(r);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
