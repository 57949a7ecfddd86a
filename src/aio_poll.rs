//! One loop iteration (`aio_poll`) and the timeout computation
//! (`aio_compute_timeout`).
//!
//! Order inside one `aio_poll`, as in QEMU: apply handler changes; if
//! blocking and nothing is ready, busy-poll (see `busy_poll.rs`) and then
//! wait; accept the notification; run bottom halves, then ready fd handlers
//! (read before write), then completed io_uring requests of callers
//! (`context/sqe.rs`), then expired timers.
//!
//! A blocking poll arms `notify_me`, then checks for work (`notified`, the
//! BH queue, timers); only if there is none does it sleep. See `notify.rs`
//! for the handshake that makes this race-free. A context that watches no fd
//! sleeps in one `read(2)` of its eventfd (or `ppoll` with a timeout); a
//! non-blocking poll of such a context makes no syscall at all. A signal
//! whose handler was installed without `SA_RESTART` ends the wait on every
//! path (eventfd read, `ppoll`, each fd monitor): the poll then returns,
//! false if nothing ran, so `while (!quit) aio_poll(ctx, true)` sees `quit`.
//!
//! Threading: home thread only (`Context::enter_loop`). Callbacks run with
//! no lock and no `RefCell` borrow held: they may schedule, delete, add or
//! remove handlers, call `aio_poll` recursively, or drop references.

pub(crate) mod ready_probe;

use std::sync::Arc;

use crate::busy_poll::{now_ns, poll_handlers_once};
use crate::context::{Context, LoopGuard};
use crate::fatal::MisuseResult;
use crate::handlers::{Handler, HandlersLocal, ReadyHandler, count_callback, dispatch_ready};
use crate::stats::{self, LoopCounters};

impl Context {
    /// `aio_poll`: one iteration; returns whether a callback made progress.
    /// Inline up to the common cases without fds, so that they cost no call
    /// and no stack frame of their own beyond the BH and timer work.
    #[inline(always)]
    pub(crate) fn poll(&self, blocking: bool) -> MisuseResult<bool> {
        let guard = self.enter_loop()?;
        self.loop_stats(&guard).iterations.incr();
        let watches_fds = self.sync_handlers(&guard);
        // Non-blocking, or blocking with a BH ready (QEMU's iothread loop
        // running BH after BH): nothing to wait for, no syscall, no
        // `notify_me` announcement and no clock read.
        if !watches_fds && (!blocking || self.bh_ready(&guard)) {
            if blocking {
                self.poll_params().adapt_ready_at_once();
            }
            self.notify_state().accept();
            let progress = self.bh_poll(&guard);
            return Ok(progress | self.run_timers(&guard));
        }
        Ok(self.poll_fds_or_wait(&guard, blocking, watches_fds))
    }

    /// The rest of [`Context::poll`]: an iteration that waits (`blocking`)
    /// or looks at the watched fds.
    #[inline(never)]
    fn poll_fds_or_wait(&self, guard: &LoopGuard<'_>, blocking: bool, watches_fds: bool) -> bool {
        let (ready_cell, hits_cell) = self.dispatch_buffers(guard);
        let mut ready = std::mem::take(&mut *ready_cell.borrow_mut());
        // The hits buffer only when this poll may spin, or holds hits of a
        // GSource prepare; else an empty Vec, which allocates nothing.
        let hits_buffer = self.poll_params().enabled() || !hits_cell.borrow().is_empty();
        let mut hits = if hits_buffer {
            std::mem::take(&mut *hits_cell.borrow_mut())
        } else {
            Vec::new()
        };

        if blocking {
            if self.bh_ready(guard) {
                // Work is ready: look at the fds without waiting, and
                // announce nothing (there is no sleep to wake).
                self.poll_params().adapt_ready_at_once();
                if watches_fds {
                    self.wait_fds(guard, 0, &mut ready);
                }
            } else {
                self.wait_for_work(guard, watches_fds, &mut ready, &mut hits);
            }
        } else if watches_fds {
            self.wait_fds(guard, 0, &mut ready);
        }
        self.notify_state().accept();
        let progress = self.dispatch_phase(guard, &mut ready, &mut hits);
        *ready_cell.borrow_mut() = ready;
        if hits_buffer {
            *hits_cell.borrow_mut() = hits;
        }
        progress
    }

    /// The waiting part of a blocking poll that found no BH ready:
    /// busy-poll if the window is open (and nothing else is due), else
    /// raise `notify_me`, compute the timeout (0 if a timer expired or a
    /// notification came meanwhile) and wait.
    fn wait_for_work(
        &self,
        guard: &LoopGuard<'_>,
        watches_fds: bool,
        ready: &mut Vec<ReadyHandler>,
        hits: &mut Vec<Arc<Handler>>,
    ) {
        let start = self.poll_params().enabled().then(now_ns);
        let found_at = start.and_then(|start| {
            let timeout = self.compute_timeout(guard);
            if timeout == 0 {
                None
            } else {
                self.busy_poll(guard, timeout, start, hits)
            }
        });
        let polled = found_at.is_some();
        if !polled {
            let kicks_before = self.kick_count();
            if start.is_some() {
                self.poll_params().expect_kick();
            }
            self.notify_state().arm();
            let timeout = if self.notify_state().is_notified() {
                0
            } else {
                self.compute_timeout(guard)
            };
            if watches_fds {
                let mut local = self.local_handlers(guard);
                let blocked_ns = self.wait_fds_timed(&mut local, timeout, ready);
                self.notify_state().disarm();
                drop(local);
                self.add_blocked(guard, blocked_ns);
            } else if timeout != 0 {
                let t0 = blocked_clock(timeout);
                self.wait_for_wakeup(timeout);
                self.notify_state().disarm();
                self.add_blocked(guard, stats::blocked_ns_since(t0));
            } else {
                self.notify_state().disarm();
                // Work arrived meanwhile, but a notifier that saw us armed
                // may have written the eventfd: consume it now rather than
                // return early from the next blocking poll. (It may still
                // be writing: this read then waits for it.)
                if self.kick_count() != kicks_before {
                    self.clear_wakeup();
                }
            }
        }
        if let Some(start) = start {
            let event_ns = found_at.unwrap_or_else(|| self.poll_params().blocked_event_ns(start));
            self.poll_params().adapt(event_ns, polled);
        }
    }

    /// The blocking wait of [`Context::wait_for_work`] on the fds, up to
    /// `timeout` ns; returns the time it blocked, for the statistic (None:
    /// not measured, or it could not block).
    #[inline(always)]
    fn wait_fds_timed(
        &self,
        local: &mut HandlersLocal,
        timeout: i64,
        ready: &mut Vec<ReadyHandler>,
    ) -> Option<u64> {
        // io_uring times its own sleep: a wait answered from ring memory
        // then reads no clock.
        if local.monitor_times_its_sleep() {
            self.wait_fds_in(local, timeout, ready);
            return Some(local.take_slept_ns());
        }
        if timeout == 0 {
            // Cannot block: nothing to time, nothing to learn from.
            self.wait_fds_in(local, 0, ready);
            return None;
        }
        // Fds ready already: a wait that cannot block, and no clock read
        // (`aio_poll/ready_probe.rs`).
        if local.ready_probe().should_probe() {
            let found = self.wait_fds_in(local, 0, ready);
            local.ready_probe().record_probe(found);
            if found {
                return None;
            }
        }
        let t0 = stats::blocked_clock();
        self.wait_fds_in(local, timeout, ready);
        let blocked_ns = stats::blocked_ns_since(t0);
        local.ready_probe().record_wait(blocked_ns);
        blocked_ns
    }

    /// Adds a wait's blocked time (None: not measured) to the counter.
    #[inline]
    fn add_blocked(&self, guard: &LoopGuard<'_>, ns: Option<u64>) {
        if let Some(ns) = ns {
            self.loop_stats(guard).blocked_ns.add(ns);
        }
    }

    /// Runs the expired timers of the context's lists, counting them.
    #[inline(always)]
    fn run_timers(&self, guard: &LoopGuard<'_>) -> bool {
        let n = self.timers().run_expired_count();
        if n == 0 {
            return false;
        }
        self.loop_stats(guard).timers_fired.add(n);
        true
    }

    /// Asks the fd monitor (and so the wakeup eventfd, consumed if set) for
    /// ready fds, waiting up to `timeout_ns`; appends their handlers.
    #[inline(always)]
    fn wait_fds(&self, guard: &LoopGuard<'_>, timeout_ns: i64, ready: &mut Vec<ReadyHandler>) {
        self.wait_fds_in(&mut self.local_handlers(guard), timeout_ns, ready);
    }

    /// [`Context::wait_fds`] with the loop-thread handlers already borrowed;
    /// returns whether the wait found anything (a ready handler, the
    /// wakeup, a completion of a caller's io_uring request).
    #[inline(always)]
    fn wait_fds_in(
        &self,
        local: &mut HandlersLocal,
        timeout_ns: i64,
        ready: &mut Vec<ReadyHandler>,
    ) -> bool {
        let had = ready.len();
        let woken = local.wait_and_take(timeout_ns, self.wakeup_fd(), ready);
        if woken {
            self.clear_wakeup();
        }
        if local.take_backend_changed() {
            self.publish_fdmon_ops(local); // fell back after a failed wait
        }
        self.refresh_watches_fds(local);
        woken || ready.len() != had || local.has_user_completions()
    }

    /// The dispatch half of an iteration, in QEMU's order: BHs, busy-poll
    /// hits, ready fd handlers, timers. Empties both lists.
    #[inline(always)]
    fn dispatch_phase(
        &self,
        guard: &LoopGuard<'_>,
        ready: &mut Vec<ReadyHandler>,
        hits: &mut Vec<Arc<Handler>>,
    ) -> bool {
        let stats = self.loop_stats(guard);
        let mut progress = self.bh_poll(guard);
        progress |= dispatch_poll_ready(hits, stats);
        // SAFETY: `ready` was filled by `wait_fds` (`wait_and_take`) or
        // `take_ready` in this iteration (the caller's), and is cleared
        // below.
        progress |= unsafe { dispatch_ready(ready, stats) };
        progress |= self.dispatch_user_completions(guard);
        progress |= self.run_timers(guard);
        ready.clear();
        hits.clear();
        progress
    }

    /// GSource prepare: applies handler changes to the monitor and to the
    /// source's unix fds.
    pub(crate) fn sync_gsource(&self, guard: &LoopGuard<'_>, source: *mut glib_sys::GSource) {
        self.sync_handlers(guard);
        self.local_handlers(guard)
            .attach_gsource(source, self.wakeup_fd());
    }

    /// `aio_prepare`: runs each `io_poll` once (when every handler has one);
    /// returns whether one found work, which the next dispatch handles.
    pub(crate) fn gsource_prepare(&self, guard: &LoopGuard<'_>) -> bool {
        if self.handlers().poll_disabled() {
            return false;
        }
        // Handlers added since the last loop iteration poll too (a direct
        // `aio_prepare` call has no GSource prepare before it that syncs).
        self.sync_handlers(guard);
        let pollers: Vec<Arc<Handler>> = self.local_handlers(guard).pollers().to_vec();
        if pollers.is_empty() {
            return false;
        }
        let (_, hits_cell) = self.dispatch_buffers(guard);
        let mut hits = std::mem::take(&mut *hits_cell.borrow_mut());
        poll_handlers_once(&pollers, &mut hits);
        let found = !hits.is_empty();
        *hits_cell.borrow_mut() = hits;
        found
    }

    /// `aio_pending`: whether an fd handler (or busy-poll hit) is ready;
    /// looks at the fds without blocking.
    pub(crate) fn pending(&self, guard: &LoopGuard<'_>) -> bool {
        let wakeup_fd = self.wakeup_fd();
        let watches_fds = self.sync_handlers(guard);
        let mut local = self.local_handlers(guard);
        if watches_fds && !local.has_fresh_ready() && local.wait(0, wakeup_fd) {
            drop(local);
            self.clear_wakeup();
            local = self.local_handlers(guard);
        }
        if local.take_backend_changed() {
            self.publish_fdmon_ops(&local); // fell back after a failed wait
        }
        local.has_fresh_ready()
            || local.has_user_completions()
            || !self.dispatch_buffers(guard).1.borrow().is_empty()
    }

    /// GSource check: consumes the wakeup and says whether anything of the
    /// context is ready (the wakeup alone is not).
    pub(crate) fn gsource_check(&self, guard: &LoopGuard<'_>) -> bool {
        let woken = self.local_handlers(guard).gsource_woken();
        if woken {
            self.clear_wakeup();
        }
        self.notify_state().accept();
        self.pending(guard) || self.bh_any_scheduled(guard) || self.timers().deadline_ns() == 0
    }

    /// `aio_dispatch` (and GSource dispatch): runs whatever is ready now.
    pub(crate) fn dispatch(&self, guard: &LoopGuard<'_>) -> bool {
        self.loop_stats(guard).iterations.incr();
        let (ready_cell, hits_cell) = self.dispatch_buffers(guard);
        let mut ready = std::mem::take(&mut *ready_cell.borrow_mut());
        let mut hits = std::mem::take(&mut *hits_cell.borrow_mut());
        // Use what GSource check found; otherwise look now.
        if self.sync_handlers(guard) && !self.local_handlers(guard).ready_is_fresh() {
            self.wait_fds(guard, 0, &mut ready);
        } else {
            self.local_handlers(guard).take_ready(&mut ready);
        }
        let progress = self.dispatch_phase(guard, &mut ready, &mut hits);
        *ready_cell.borrow_mut() = ready;
        *hits_cell.borrow_mut() = hits;
        progress
    }

    /// `aio_compute_timeout`: ns until the next event; 0 when something is
    /// ready now, -1 when nothing is pending.
    pub(crate) fn compute_timeout(&self, guard: &LoopGuard<'_>) -> i64 {
        let bh = self.bh_timeout(guard);
        if bh == 0 {
            return 0;
        }
        soonest_timeout(bh, self.timers().deadline_ns())
    }
}

/// The start of a wait of `timeout` ns for the blocked-time counter: the
/// clock ([`stats::blocked_clock`]) if the wait may block (`timeout` not 0).
#[inline(always)]
fn blocked_clock(timeout: i64) -> Option<u64> {
    if timeout == 0 {
        None
    } else {
        stats::blocked_clock()
    }
}

/// Calls `io_poll_ready` of the handlers whose `io_poll` found work.
fn dispatch_poll_ready(hits: &[Arc<Handler>], stats: &LoopCounters) -> bool {
    let mut progress = false;
    for h in hits {
        if let (Some(ready), true) = (h.cb.io_poll_ready, h.is_live()) {
            count_callback(h, stats);
            // SAFETY: registered by the C caller for `opaque`; no borrow held.
            unsafe { ready(h.cb.opaque) };
            progress = true;
        }
    }
    progress
}

/// `qemu_soonest_timeout`: the smaller of two timeouts, -1 meaning infinite.
pub(crate) fn soonest_timeout(a: i64, b: i64) -> i64 {
    // As unsigned, -1 is the largest value.
    (a as u64).min(b as u64) as i64
}
