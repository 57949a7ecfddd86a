//! The loop-thread half of the fd handlers ([`HandlersLocal`], see
//! `handlers/mod.rs`): the fd monitor and its replacement when a backend
//! fails, the mirror of the registry that dispatch reads without locking,
//! callers' io_uring requests (`aio_add_sqe`) on the io_uring monitor, and
//! the fds a context run as a GSource has GLib watch.
//!
//! Threading: only the thread polling the context (`LoopGuard`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Handler, Handlers, POLLIN, ReadyHandler};
use crate::aio_poll::ready_probe::ReadyProbe;
use crate::fatal;
use crate::fdmon::io_uring::UserCompletion;
use crate::fdmon::{self, Backend, EPOLL_THRESHOLD, FdMap, FdMonitor, FdTable, Ready};
use crate::gsource;

/// The loop-thread half.
pub(crate) struct HandlersLocal {
    monitor: Option<Box<dyn FdMonitor>>,
    forced: Option<Backend>,
    /// fd -> registration, as of the last sync.
    mirror: FdTable<Arc<Handler>>,
    /// Registrations with `io_poll`, as of the last sync.
    pollers: Vec<Arc<Handler>>,
    /// Registrations that left the mirror while a dispatch may still point
    /// at them (module docs); dropped by the next sync at depth 1.
    retired: Vec<Arc<Handler>>,
    /// Reused buffer for ready fds.
    ready: Vec<Ready>,
    /// Whether `ready` holds the result of a wait not yet dispatched.
    ready_fresh: bool,
    /// The GLib source's unix-fd tags, when the context runs as a GSource.
    gsource: Option<GSourceFds>,
    /// The monitor was replaced since `take_backend_changed` last looked.
    backend_changed: bool,
    /// A failed io_uring monitor kept (after `demote_after_failed_wait`)
    /// until callers' requests still in its kernel ring have completed.
    draining: Option<Box<dyn FdMonitor>>,
    /// Completions of callers' io_uring requests (`aio_add_sqe`) not yet
    /// handed to their `CqeHandler`s.
    user_done: Vec<UserCompletion>,
    /// Whether `aio_poll`'s next blocking wait first looks without waiting.
    ready_probe: ReadyProbe,
}

/// The fds a context's GSource watches, mirroring the registry.
struct GSourceFds {
    source: *mut glib_sys::GSource,
    wakeup_tag: glib_sys::gpointer,
    tags: FdMap<glib_sys::gpointer>,
    /// The io_uring monitor's ring fd, readable while completions wait:
    /// callers' io_uring completions (`aio_add_sqe`) must wake GLib too.
    ring: Option<(RawFd, glib_sys::gpointer)>,
}

// SAFETY: only used by the thread polling the context (like the rest of
// HandlersLocal); the source is reference counted by the context.
unsafe impl Send for GSourceFds {}

impl GSourceFds {
    fn set(&mut self, fd: RawFd, interest: fdmon::Interest) {
        if let Some(tag) = self.tags.remove(&fd) {
            gsource::remove_unix_fd(self.source, tag);
        }
        if interest != 0 {
            self.tags
                .insert(fd, gsource::add_unix_fd(self.source, fd, interest));
        }
    }
}

impl Default for HandlersLocal {
    fn default() -> Self {
        HandlersLocal {
            monitor: None,
            forced: fdmon::forced_backend(),
            mirror: FdTable::default(),
            pollers: Vec::new(),
            retired: Vec::new(),
            ready: Vec::new(),
            ready_fresh: false,
            gsource: None,
            backend_changed: false,
            draining: None,
            user_done: Vec::new(),
            ready_probe: ReadyProbe::default(),
        }
    }
}

/// The change is applied by the API call that made it (`aio_set_fd_handler`
/// in the home thread) or by the next loop iteration (`aio_poll`, ...).
fn die_monitor(op: &str, fd: RawFd, e: &std::io::Error) -> ! {
    fatal::die_here(&format!("fd monitor: cannot {op} fd {fd}: {e}"))
}

impl HandlersLocal {
    /// True when the loop must ask the monitor: some fd is registered, or
    /// callers' io_uring requests are in flight (their completions come
    /// from the monitor's waits).
    #[inline]
    pub(crate) fn watches_fds(&self) -> bool {
        !self.mirror.is_empty() || self.has_user_requests()
    }

    /// Whether callers' io_uring requests are queued or in the kernel.
    fn has_user_requests(&self) -> bool {
        self.draining.is_some() || self.monitor.as_ref().is_some_and(|m| m.has_user_requests())
    }

    /// Opens the monitor now rather than at the first registration: with
    /// `AIOCTX_FDMON=io_uring`, so that `ctx->fdmon_ops` says from the
    /// start whether `aio_add_sqe` works.
    pub(crate) fn open_eagerly(&mut self, wakeup_fd: RawFd) {
        if self.monitor.is_none() {
            let m = self.open_monitor(self.forced.unwrap_or(Backend::Poll), wakeup_fd);
            self.monitor = Some(m);
        }
    }

    /// Queues a caller's io_uring request (`aio_add_sqe`); fails when the
    /// context's monitor is not io_uring.
    ///
    /// # Safety
    /// As [`fdmon::io_uring::IoUringMonitor::queue_user`].
    pub(crate) unsafe fn queue_user_sqe(
        &mut self,
        sqe: ::io_uring::squeue::Entry,
        handler: u64,
    ) -> Result<(), &'static str> {
        let monitor = self.monitor.as_mut().map(|m| m.as_io_uring());
        match monitor {
            Some(Some(m)) => {
                // SAFETY: forwarded from the caller.
                unsafe { m.queue_user(sqe, handler) };
                Ok(())
            }
            _ => Err(self.backend_name()),
        }
    }

    /// `Err(backend name)` unless the monitor takes callers' io_uring
    /// requests.
    pub(crate) fn can_queue_user_sqe(&mut self) -> Result<(), &'static str> {
        match self.monitor.as_mut().map(|m| m.as_io_uring().is_some()) {
            Some(true) => Ok(()),
            _ => Err(self.backend_name()),
        }
    }

    /// Whether teardown has callers' io_uring requests to cancel or
    /// completions to deliver.
    pub(crate) fn has_user_requests_or_completions(&self) -> bool {
        self.has_user_requests() || self.has_user_completions()
    }

    /// Whether the monitor times its own sleeps (see
    /// [`FdMonitor::times_its_sleep`]).
    #[inline]
    pub(crate) fn monitor_times_its_sleep(&self) -> bool {
        self.monitor.as_ref().is_some_and(|m| m.times_its_sleep())
    }

    /// The streak that decides whether `aio_poll` probes for fds ready
    /// before a wait.
    #[inline(always)]
    pub(crate) fn ready_probe(&mut self) -> &mut ReadyProbe {
        &mut self.ready_probe
    }

    /// The time the monitor slept since the last call.
    #[inline]
    pub(crate) fn take_slept_ns(&mut self) -> u64 {
        self.monitor.as_mut().map_or(0, |m| m.take_slept_ns())
    }

    /// Whether completions of callers' io_uring requests wait for their
    /// handlers.
    #[inline]
    pub(crate) fn has_user_completions(&self) -> bool {
        !self.user_done.is_empty()
    }

    /// The completions of callers' io_uring requests found so far; the
    /// caller calls their handlers with no borrow of `self` held.
    pub(crate) fn take_user_completions(&mut self) -> Vec<UserCompletion> {
        std::mem::take(&mut self.user_done)
    }

    /// Context teardown: cancels callers' io_uring requests still in
    /// flight and waits for each (see
    /// [`fdmon::io_uring::IoUringMonitor::cancel_user_requests`]); their completions are
    /// then in [`HandlersLocal::take_user_completions`].
    pub(crate) fn cancel_user_requests(&mut self) {
        for m in self.monitor.iter_mut().chain(self.draining.iter_mut()) {
            if let Some(u) = m.as_io_uring() {
                u.cancel_user_requests();
                u.take_user_completions(&mut self.user_done);
            }
        }
        self.draining = None;
    }

    pub(crate) fn pollers(&self) -> &[Arc<Handler>] {
        &self.pollers
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        self.monitor.as_ref().map_or("none", |m| m.name())
    }

    fn open_monitor(&self, backend: Backend, wakeup_fd: RawFd) -> Box<dyn FdMonitor> {
        let mut m = fdmon::open_with_fallback(backend);
        if let Err(e) = m.set(wakeup_fd, POLLIN) {
            die_monitor("watch the wakeup", wakeup_fd, &e);
        }
        m
    }

    /// Re-creates the monitor with `backend` (or the next one down, see
    /// [`fdmon::open_with_fallback`]) and re-adds every fd. A registered fd
    /// that epoll or io_uring refuses (a regular file: `EPERM`) makes it
    /// poll, which takes any fd.
    fn switch_monitor(&mut self, backend: Backend, wakeup_fd: RawFd) {
        let mut m = self.open_monitor(backend, wakeup_fd);
        let refused = self.mirror.iter().any(|(fd, h)| {
            let interest = h.cb.interest();
            if interest != 0
                && let Err(e) = m.set(fd, interest)
            {
                if m.name() != "poll" && e.raw_os_error() == Some(libc::EPERM) {
                    return true;
                }
                die_monitor("watch", fd, &e);
            }
            false
        });
        if refused {
            return self.switch_monitor(Backend::Poll, wakeup_fd);
        }
        self.monitor = Some(m);
        self.backend_changed = true;
    }

    /// Whether the backend changed since the last call (so that
    /// `ctx->fdmon_ops` is updated).
    pub(crate) fn take_backend_changed(&mut self) -> bool {
        std::mem::take(&mut self.backend_changed)
    }

    /// A wait of the current monitor failed with `e` (not `EINTR`, which
    /// backends turn into an empty result): io_uring goes down to epoll,
    /// epoll to poll, for this context and for good, with one warning line
    /// per step; every registered fd is watched by the new monitor, so no
    /// handler is lost. A failed wait of poll itself is fatal.
    ///
    /// This is how a sandbox that lets `io_uring_setup` through but denies
    /// `io_uring_enter` (seccomp: `EPERM` or `ENOSYS`) is survived.
    #[cold]
    fn demote_after_failed_wait(&mut self, e: &std::io::Error, wakeup_fd: RawFd) {
        let (syscall, next) = match self.backend_name() {
            "io_uring" => ("io_uring_enter", Backend::Epoll),
            "epoll" => ("epoll_wait", Backend::Poll),
            _ => fatal::die_here(&format!("fd monitor wait failed: {e}")),
        };
        if let Some(mut old) = self.monitor.take()
            && let Some(u) = old.as_io_uring()
        {
            // Requests the kernel never saw complete with the error; the
            // others keep the old ring until they are done.
            let in_kernel = u.fail_unsubmitted(e.raw_os_error().unwrap_or(libc::EIO));
            u.take_user_completions(&mut self.user_done);
            if in_kernel {
                self.draining = Some(old);
            }
        }
        self.switch_monitor(next, wakeup_fd);
        let now = self.backend_name();
        // Never back up again: no automatic poll -> epoll switch either.
        self.forced = [Backend::Poll, Backend::Epoll]
            .into_iter()
            .find(|b| b.name() == now);
        fatal::warn(
            "aio_poll",
            &format!("{syscall} failed ({e}); falling back to {now}"),
        );
    }

    /// Applies the changes made since the last sync. `nested`: the loop
    /// depth is above 1, so a dispatch may be walking a ready list: replaced
    /// and removed registrations are retired, not dropped (module docs).
    pub(crate) fn sync(&mut self, shared: &Handlers, wakeup_fd: RawFd, nested: bool) {
        if !shared.has_pending.load(Ordering::Acquire) {
            return;
        }
        if !nested {
            self.retired.clear();
        }
        let pending = {
            let mut reg = shared.registry.lock();
            shared.has_pending.store(false, Ordering::Relaxed);
            std::mem::take(&mut reg.pending)
        };
        if self.monitor.is_none() {
            let m = self.open_monitor(self.forced.unwrap_or(Backend::Poll), wakeup_fd);
            self.monitor = Some(m);
        }
        for (fd, new) in pending {
            let interest = new.as_ref().map_or(0, |h| h.cb.interest());
            let had_interest = self.mirror.get(fd).map_or(0, |h| h.cb.interest());
            let old = match new {
                Some(h) => self.mirror.insert(fd, h),
                None => self.mirror.remove(fd),
            };
            if let Some(old) = old
                && nested
            {
                self.retired.push(old);
            }
            if interest == had_interest && interest == 0 {
                continue;
            }
            if let Some(g) = &mut self.gsource {
                g.set(fd, interest);
            }
            let monitor = self.monitor.as_mut().expect("opened above");
            if let Err(e) = monitor.set(fd, interest) {
                if interest == 0 {
                    continue; // the fd may already be closed; it is gone either way
                }
                if monitor.name() != "poll" && e.raw_os_error() == Some(libc::EPERM) {
                    // epoll and io_uring refuse regular files; poll(2) takes
                    // them (always ready, as QEMU's poll backend reports).
                    self.switch_monitor(Backend::Poll, wakeup_fd);
                    continue;
                }
                die_monitor("watch", fd, &e);
            }
        }
        if self.forced.is_none()
            && self.mirror.len() > EPOLL_THRESHOLD
            && self.monitor.as_ref().is_some_and(|m| m.name() == "poll")
        {
            self.switch_monitor(Backend::Epoll, wakeup_fd);
        }
        self.pollers = self
            .mirror
            .values()
            .filter(|h| h.cb.io_poll.is_some())
            .cloned()
            .collect();
    }

    /// Makes `source` watch the wakeup fd and every registered fd (once;
    /// later changes follow through `sync`).
    pub(crate) fn attach_gsource(&mut self, source: *mut glib_sys::GSource, wakeup_fd: RawFd) {
        if self.gsource.as_ref().is_none_or(|g| g.source != source) {
            let mut g = GSourceFds {
                source,
                wakeup_tag: gsource::add_unix_fd(source, wakeup_fd, POLLIN),
                tags: FdMap::default(),
                ring: None,
            };
            for (fd, h) in self.mirror.iter() {
                g.set(fd, h.cb.interest());
            }
            self.gsource = Some(g);
        }
        self.watch_ring_in_gsource();
    }

    /// Keeps the GSource watching the io_uring monitor's ring fd (if the
    /// monitor is io_uring), following monitor switches.
    fn watch_ring_in_gsource(&mut self) {
        let want = self
            .monitor
            .as_mut()
            .and_then(|m| m.as_io_uring())
            .map(|u| u.ring_fd());
        let Some(g) = &mut self.gsource else { return };
        if g.ring.map(|(fd, _)| fd) == want {
            return;
        }
        if let Some((_, tag)) = g.ring.take() {
            gsource::remove_unix_fd(g.source, tag);
        }
        if let Some(fd) = want {
            g.ring = Some((fd, gsource::add_unix_fd(g.source, fd, POLLIN)));
        }
    }

    /// Whether GLib's last poll saw the context's wakeup fd readable.
    pub(crate) fn gsource_woken(&self) -> bool {
        self.gsource
            .as_ref()
            .is_some_and(|g| gsource::is_readable(g.source, g.wakeup_tag))
    }

    /// Whether the last wait found ready fds not yet dispatched.
    pub(crate) fn has_fresh_ready(&self) -> bool {
        self.ready_fresh && !self.ready.is_empty()
    }

    pub(crate) fn ready_is_fresh(&self) -> bool {
        self.ready_fresh
    }

    /// Waits for fds (and the wakeup fd) up to `timeout_ns`; returns
    /// whether the wakeup fd was among the ready ones. The ready list is
    /// kept for [`HandlersLocal::take_ready`] (GSource check, then
    /// dispatch).
    pub(crate) fn wait(&mut self, timeout_ns: i64, wakeup_fd: RawFd) -> bool {
        self.wait_monitor(timeout_ns, wakeup_fd);
        self.ready_fresh = true;
        let before = self.ready.len();
        self.ready.retain(|r| r.fd != wakeup_fd);
        self.ready.len() != before
    }

    /// [`HandlersLocal::wait`] and [`HandlersLocal::take_ready`] in one
    /// pass over the monitor's events, for `aio_poll`, which dispatches
    /// right after waiting.
    #[inline(always)]
    pub(crate) fn wait_and_take(
        &mut self,
        timeout_ns: i64,
        wakeup_fd: RawFd,
        out: &mut Vec<ReadyHandler>,
    ) -> bool {
        self.wait_monitor(timeout_ns, wakeup_fd);
        self.ready_fresh = false;
        let mut woken = false;
        for r in self.ready.drain(..) {
            if r.fd == wakeup_fd {
                woken = true;
            } else {
                out.extend(ready_entry(&self.mirror, r));
            }
        }
        woken
    }

    /// The monitor's wait into `self.ready` (emptied first), falling back
    /// to the next backend when it fails; collects callers' io_uring
    /// completions.
    #[inline(always)]
    fn wait_monitor(&mut self, timeout_ns: i64, wakeup_fd: RawFd) {
        // A ring that can no longer be entered is looked at every 1 ms.
        let timeout_ns = match self.draining {
            Some(_) if !(0..=1_000_000).contains(&timeout_ns) => 1_000_000,
            _ => timeout_ns,
        };
        loop {
            self.ready.clear();
            let monitor = self
                .monitor
                .as_mut()
                .expect("watches_fds implies a monitor");
            match monitor.wait(timeout_ns, &mut self.ready) {
                Ok(()) => break,
                // Then the same wait on the new monitor: the failed one
                // returned at once, so the timeout is (nearly) whole still.
                Err(e) => self.demote_after_failed_wait(&e, wakeup_fd),
            }
        }
        if let Some(u) = self.monitor.as_mut().and_then(|m| m.as_io_uring()) {
            u.take_user_completions(&mut self.user_done);
        }
        if self.draining.is_some() {
            self.drain_failed_ring();
        }
    }

    /// Delivers completions of the failed ring kept for callers' requests
    /// still in it; drops it once they are all done.
    #[cold]
    fn drain_failed_ring(&mut self) {
        if let Some(u) = self.draining.as_mut().and_then(|m| m.as_io_uring()) {
            let left = u.drain_user_requests();
            u.take_user_completions(&mut self.user_done);
            if !left {
                self.draining = None;
            }
        }
    }

    /// The fds found ready by the last wait, with their registrations.
    /// The caller dispatches them with no borrow of `self` held.
    pub(crate) fn take_ready(&mut self, out: &mut Vec<ReadyHandler>) {
        self.ready_fresh = false;
        out.extend(
            self.ready
                .drain(..)
                .filter_map(|r| ready_entry(&self.mirror, r)),
        );
    }
}

/// The dispatch entry of the ready fd `r`: its registration in `mirror`
/// (none for an fd removed since the wait) and its events.
#[inline(always)]
fn ready_entry(mirror: &FdTable<Arc<Handler>>, r: Ready) -> Option<ReadyHandler> {
    mirror.get(r.fd).map(|h| (Arc::as_ptr(h), r.revents))
}

#[cfg(all(test, not(loom)))]
mod tests;
