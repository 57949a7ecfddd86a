//! The `io_uring` backend: fds watched with multishot `IORING_OP_POLL_ADD`
//! requests, readiness confirmed with one `poll(2)` of the few fds that
//! may be ready; and the ring through which callers submit their own
//! requests (QEMU 10.2's `aio_add_sqe`, see [`IoUringMonitor::queue_user`]).
//!
//! # How it works
//! - `set` records the change and queues SQEs (`POLL_REMOVE` for the old
//!   request, a multishot `POLL_ADD` for the new one); they reach the kernel
//!   with the next wait, batched. The exception is removal, which is
//!   submitted at once: an armed poll holds a reference to the open file,
//!   and a caller that removes an fd and closes it expects the file (a
//!   socket, a pipe end) to be closed for real, not when the context next
//!   polls.
//! - A multishot poll (`IORING_POLL_ADD_MULTI`) stays armed: the kernel
//!   posts a completion each time the fd's wait queue is woken (new data,
//!   space, hang-up), with no SQE and no syscall per event. It ends (no
//!   `IORING_CQE_F_MORE`) only on errors, cancellation or for files that
//!   cannot be waited on; it is then armed again.
//! - Each poll carries `user_data = generation << 32 | fd` (bit 63 clear).
//!   Every `set` of an fd starts a new generation, so a completion of an
//!   older request is recognized as stale and ignored, even when the same
//!   fd number is watched again in the meantime. Generation 0 marks
//!   requests whose completions carry no news (`POLL_REMOVE` itself).
//!   Callers' requests carry `1 << 63 | address of their CqeHandler`.
//!
//! # Level-triggered, never stale
//! A multishot completion is an edge: it says that the fd was woken, and
//! nothing more is posted while it stays ready. Each wait therefore
//! combines two sources:
//! - *Fresh* completions, for fds not reported by the previous wait: the
//!   fd was woken after its handler last ran, so it is reported as is,
//!   with the completion's bits, and no syscall (the completion ring is
//!   read from memory).
//! - One `poll(2)` (timeout 0) of the *level set*, the fds reported by
//!   earlier waits and not yet found idle, which asks the kernel for their
//!   readiness now: what is still ready is reported again
//!   (level-triggered), what is idle leaves the set. This check runs when
//!   a completion arrives for an fd reported by the previous wait (it may
//!   predate the handler's read: it is checked, never trusted, so a handler
//!   never runs for readiness that is gone), when the wait has nothing
//!   fresh to report, and otherwise every [`LEVEL_CHECK_EVERY`] waits.
//!
//! So an fd that stays readable is reported by every wait that has
//! nothing fresher, and under a stream of other events at least every
//! [`LEVEL_CHECK_EVERY`] waits; the common "one fd became ready" wait costs
//! no syscall when its completion is already in the ring (`io_uring_enter`
//! is made only to submit queued SQEs or to sleep), and an amortized share
//! of one `poll(2)`.
//!
//! # Requirements and fallback
//! [`IoUringMonitor::new`] fails (and the caller falls back to epoll) when
//! `io_uring_setup` fails (seccomp or `kernel.io_uring_disabled`: `EPERM`;
//! no io_uring: `ENOSYS`; `RLIMIT_MEMLOCK` on kernels before 5.12:
//! `ENOMEM`), when the kernel lacks `IORING_FEAT_EXT_ARG` (Linux < 5.11)
//! or `IORING_FEAT_NODROP`, or when the opcode probe says `POLL_ADD`,
//! `POLL_REMOVE` or `ASYNC_CANCEL` is missing (partial implementations such
//! as gVisor's). Multishot polls need Linux 5.13; on an older kernel the
//! first completion lacks `IORING_CQE_F_MORE` and the poll is re-armed
//! after each event, which is slower but correct.
//!
//! # Edge cases
//! - The completion ring can overflow when very many fds become ready at
//!   once; with `IORING_FEAT_NODROP` the kernel keeps the extra completions
//!   and hands them over on the next enter, which [`IoUringMonitor::reap`]
//!   asks for when the overflow flag is set.
//! - An fd closed before its `POLL_ADD` was submitted completes with
//!   `EBADF`: it is not re-armed (a busy loop otherwise) nor reported.
//! - An fd closed while its poll is armed: the armed poll keeps the file
//!   open, but the `poll(2)` check sees the closed number (`POLLNVAL`) and
//!   the fd stops being reported; a number reused meanwhile is checked as
//!   whatever file it names then. Callers must remove before closing, as
//!   QEMU requires: until then a socket stays open for its peer.
//! - Any other error completion is reported once as `POLLERR`, so that the
//!   handler runs and notices, and the fd is not re-armed until the next
//!   `set`.
//! - Regular files cannot be waited on: their poll completes at once, once,
//!   and `poll(2)` reports them readable and writable at every wait, like
//!   the poll backend does.
//!
//! # Callers' requests (`aio_add_sqe`)
//! [`IoUringMonitor::queue_user`] takes an SQE the caller prepared and
//! queues it with the monitor's own; it reaches the kernel with the next
//! wait (which a loop with requests in flight always makes: see
//! `HandlersLocal::watches_fds`). Completions are collected by the waits
//! and handed out by [`IoUringMonitor::take_user_completions`]; the
//! context calls each `CqeHandler` in its thread, with no borrow held.
//! [`IoUringMonitor::cancel_user_requests`] (context teardown) asks the
//! kernel to cancel every request still in flight and waits until each
//! has completed, so that no buffer of the caller is written afterwards.

use rustc_hash::FxHashSet as HashSet;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ::io_uring::{IoUring, Probe, opcode, squeue, types};

use super::{FdMonitor, FdTable, Interest, Ready, check_fd_open, check_set_args};

/// Always reported, whatever the interest (as poll(2) does).
const ERR_HUP: u32 = (libc::POLLERR | libc::POLLHUP) as u32;

/// Submission ring size: SQEs queued beyond this are submitted in chunks.
const SQ_ENTRIES: u32 = 256;
/// Completion ring size; more completions than this at once overflow into
/// the kernel's list (see the module docs).
const CQ_ENTRIES: u32 = 4096;

/// A wait with fresh completions to report still checks the level set at
/// least this often (see the module docs).
const LEVEL_CHECK_EVERY: u32 = 8;

/// `user_data` of SQEs whose completion is ignored.
const UD_IGNORED: u64 = 0;
/// `user_data` bit of callers' requests (`aio_add_sqe`); the other bits
/// are the address of their `CqeHandler`. User-space addresses never have
/// bit 63 set, and poll tokens keep it clear (31-bit generations).
const UD_USER: u64 = 1 << 63;
/// Generations wrap below this, so that poll tokens never look like
/// callers' requests.
const GENERATION_LIMIT: u32 = 1 << 31;

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
    /// A multishot `POLL_ADD` of this generation is queued or in the kernel.
    armed: bool,
    /// Events of fresh completions not yet reported (0: none); the fd is
    /// in `IoUringMonitor::fresh` while non-zero.
    fresh: u32,
    /// In `IoUringMonitor::level`.
    in_level: bool,
    /// The number of the wait that last reported the fd (0: none).
    reported: u64,
    /// Not watched any more until the next `set`: the poll failed in an
    /// unexpected way (reported once as `POLLERR`), or the fd was closed.
    broken: bool,
}

/// Watches fds with io_uring poll requests.
pub(crate) struct IoUringMonitor {
    /// Dropped by hand: see `Drop`.
    ring: ManuallyDrop<IoUring>,
    watched: FdTable<Watch>,
    /// SQEs not yet copied into the submission ring.
    backlog: Vec<squeue::Entry>,
    /// fds (with their generation) with fresh completions.
    fresh: Vec<(RawFd, u32)>,
    /// The level set: fds reported and not yet found idle (module docs).
    level: Vec<(RawFd, u32)>,
    /// The level set must be checked by this wait.
    level_due: bool,
    /// Waits since the level set was last checked.
    level_age: u32,
    /// Waits so far; numbers `Watch::reported`.
    waits: u64,
    /// The `poll(2)` array for the check; reused.
    pollfds: Vec<libc::pollfd>,
    /// Completions copied out of the ring by `reap`; reused.
    cqe_buf: Vec<(u64, i32, u32)>,
    /// Time spent in blocking `io_uring_enter`s, for the loop's
    /// blocked-time counter ([`FdMonitor::take_slept_ns`]).
    slept_ns: u64,
    /// Error reports found by `reap` (`POLLERR`), handed out by the next wait.
    errors: Vec<Ready>,
    last_generation: u32,
    /// Callers' requests queued or in the kernel, by `user_data`.
    user_in_flight: HashSet<u64>,
    /// Callers' requests copied into the submission ring since the last
    /// successful `io_uring_enter`: the kernel has not seen them yet.
    user_unsubmitted: Vec<u64>,
    /// Completions of callers' requests not yet handed out.
    user_done: Vec<UserCompletion>,
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
            || !probe.is_supported(opcode::AsyncCancel::CODE)
        {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without POLL_ADD, POLL_REMOVE or ASYNC_CANCEL",
            ));
        }
        Ok(IoUringMonitor {
            ring: ManuallyDrop::new(ring),
            watched: FdTable::default(),
            backlog: Vec::new(),
            fresh: Vec::new(),
            level: Vec::new(),
            level_due: false,
            level_age: 0,
            waits: 0,
            pollfds: Vec::new(),
            cqe_buf: Vec::new(),
            slept_ns: 0,
            errors: Vec::new(),
            last_generation: 0,
            user_in_flight: HashSet::default(),
            user_unsubmitted: Vec::new(),
            user_done: Vec::new(),
            #[cfg(test)]
            stale_seen: 0,
        })
    }

    fn next_generation(&mut self) -> u32 {
        self.last_generation = (self.last_generation + 1) % GENERATION_LIMIT;
        if self.last_generation == 0 {
            self.last_generation = 1; // 0 is UD_IGNORED's
        }
        self.last_generation
    }

    /// Stops watching `fd`: cancels its armed poll (if any). Returns whether
    /// a cancellation was queued.
    fn forget(&mut self, fd: RawFd) -> bool {
        let Some(w) = self.watched.remove(fd) else {
            return false;
        };
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
                // SAFETY: our POLL_ADD, POLL_REMOVE and ASYNC_CANCEL SQEs
                // carry no pointers. Callers' SQEs point at buffers the
                // caller keeps alive until their CqeHandler is called (the
                // `aio_add_sqe` contract); `cancel_user_requests` waits for
                // every one before the ring goes.
                unsafe { sq.push_multiple(&self.backlog[done..done + n]) }
                    .expect("room was checked");
                done += n;
            }
            if done < self.backlog.len() {
                match self.submit() {
                    Ok(()) => {}
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

    /// Submits what the submission ring holds, without waiting.
    fn submit(&mut self) -> io::Result<()> {
        let res = self.ring.submit();
        self.note_enter(&res);
        res.map(drop)
    }

    /// After an `io_uring_enter` that returned `res`: on success the kernel
    /// has taken every SQE in the ring (we never set `IOSQE_IO_DRAIN`-like
    /// limits, and a bad SQE completes with an error instead of stopping
    /// the submission once the kernel has any).
    fn note_enter(&mut self, res: &io::Result<usize>) {
        let taken = match res {
            Ok(_) => true,
            Err(e) => e.raw_os_error() == Some(libc::ETIME),
        };
        if taken && self.ring.submission().is_empty() {
            self.user_unsubmitted.clear();
        }
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
        self.note_enter(&res);
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            // The caller reaps next, which is what the kernel asks for.
            Err(e) if is_transient(&e) => Ok(()),
            // EINTR included: `wait` returns at once with what it has.
            Err(e) => Err(e),
        }
    }

    /// Reads every completion (no syscall unless the kernel kept
    /// overflowed ones): polls' become fresh, due checks or error reports, stale
    /// ones are dropped, callers' are kept for their handlers.
    fn reap(&mut self) {
        loop {
            let cqes = self.copy_cqes();
            for &(ud, res, flags) in &cqes {
                if ud & UD_USER != 0 {
                    self.user_completed(ud, res, flags);
                    continue;
                }
                let stale = self.complete(ud, res, flags);
                #[cfg(test)]
                {
                    self.stale_seen += usize::from(stale);
                }
                #[cfg(not(test))]
                let _ = stale;
            }
            self.cqe_buf_back(cqes);
            // Completions that did not fit wait in the kernel (NODROP); an
            // enter with GETEVENTS (which `submit` adds when the flag is
            // set) moves them into the ring.
            if !self.ring.submission().cq_overflow() || self.submit().is_err() {
                break;
            }
        }
    }

    /// Copies the completions out of the ring (handling one needs `self`,
    /// which the ring's iterator borrows), into the reused buffer; give it
    /// back with [`IoUringMonitor::cqe_buf_back`].
    fn copy_cqes(&mut self) -> Vec<(u64, i32, u32)> {
        let mut cqes = std::mem::take(&mut self.cqe_buf);
        cqes.extend(
            self.ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        cqes
    }

    fn cqe_buf_back(&mut self, mut cqes: Vec<(u64, i32, u32)>) {
        cqes.clear();
        self.cqe_buf = cqes;
    }
}

/// Completion ring full, or no memory for the kernel's overflow list: the
/// cure is to reap and retry.
fn is_transient(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN))
}

fn poll_add(fd: RawFd, interest: Interest, generation: u32) -> squeue::Entry {
    opcode::PollAdd::new(types::Fd(fd), interest)
        .multi(true)
        .build()
        .user_data(user_data(fd, generation))
}

impl Drop for IoUringMonitor {
    /// Unmaps the ring, unless callers' requests are still in the kernel
    /// (teardown could not cancel them: the ring could not be entered).
    /// Then the ring is leaked, with one warning line: the kernel may
    /// still write their buffers and completions, and their handlers are
    /// never called, so their owners never free what the kernel writes.
    fn drop(&mut self) {
        if self.user_in_flight.is_empty() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.ring) };
        } else {
            crate::fatal::warn_here(&format!(
                "{} io_uring request(s) could not be cancelled; keeping their ring",
                self.user_in_flight.len()
            ));
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
                    let _ = self.submit();
                }
            }
            return Ok(());
        }
        // Checked on every call: the poll is armed on whatever file the
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
                fresh: 0,
                in_level: false,
                reported: 0,
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
        let first = ready.len();
        // New polls and callers' requests go in first: a poll armed on an
        // fd that is ready completes during the submission.
        if !self.backlog.is_empty() {
            match self.enter(Some(Duration::ZERO)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.waits += 1;
        self.reap();
        loop {
            self.collect(ready, first)?;
            let done = !self.user_done.is_empty();
            if ready.len() > first || done || timeout_ns == 0 {
                // Re-arms found by the check go with the next enter.
                return Ok(());
            }
            let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if wait == Some(Duration::ZERO) {
                // Re-arms the check queued must reach the kernel before
                // the caller can rely on this monitor to wake it.
                return self.enter(Some(Duration::ZERO)).or_else(interrupted_ok);
            }
            let t0 = crate::stats::blocked_clock();
            let res = self.enter(wait);
            if let Some(slept) = crate::stats::blocked_ns_since(t0) {
                self.slept_ns += slept;
            }
            self.reap();
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    return self.collect(ready, first);
                }
                Err(e) => return Err(e),
            }
            // Woken by stale or idle completions only: wait for the rest.
        }
    }

    fn as_io_uring(&mut self) -> Option<&mut IoUringMonitor> {
        Some(self)
    }

    fn has_user_requests(&self) -> bool {
        !self.user_in_flight.is_empty()
    }

    /// A wait whose completions are already in the ring does not sleep:
    /// only the blocking `io_uring_enter` is timed.
    fn times_its_sleep(&self) -> bool {
        true
    }

    fn take_slept_ns(&mut self) -> u64 {
        std::mem::take(&mut self.slept_ns)
    }
}

fn interrupted_ok(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}

mod readiness;
mod user;

pub(crate) use user::UserCompletion;

#[cfg(test)]
mod tests;
