//! fd handlers (`qemu/aio.h`: `aio_set_fd_handler`, `aio_set_event_notifier`,
//! `aio_set_event_notifier_poll`, `aio_poll_disabled`) and their dispatch.
//!
//! Two halves:
//! - [`Handlers`], shared: the registry by fd, behind a short mutex, plus the
//!   list of changes the poller has not applied yet. `aio_set_fd_handler` may
//!   be called from any thread and from inside any handler of the context.
//! - [`HandlersLocal`], loop-thread only: the fd monitor backend, a mirror of
//!   the registry used for dispatch without locking, and the busy-poll list.
//!   The poller applies pending changes at the start of each iteration.
//!
//! A registration is an `Arc<Handler>`. Replacing or removing it sets its
//! `removed` flag at once, so a handler that is ready in the same iteration
//! (or is being dispatched) is never called after its removal, whichever
//! thread removed it.
//!
//! The list of ready handlers a dispatch walks ([`ReadyHandler`]) holds
//! plain pointers, not `Arc` clones (two locked instructions per ready fd
//! saved). They stay valid because the loop-local mirror owns each
//! registration until no dispatch can be in progress: a registration that
//! leaves the mirror during a nested sync (loop depth > 1: a callback of the
//! dispatch changed handlers or polled again) is kept in
//! `HandlersLocal::retired` until the next sync at depth 1, the start of an
//! outermost iteration, when no ready list is live.
//!
//! Lookup is by fd, never a list scan: the shared registry is a hash map
//! (`fdmon::FdMap`); the loop thread's mirror, looked up once per ready fd,
//! an array indexed by the fd (`fdmon::FdTable`).
//!
//! Layout: this file holds the registration, the shared registry and the
//! dispatch of ready handlers; `local.rs` the loop-thread half (the monitor,
//! its fallback, callers' io_uring requests, the GSource's fds).

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::fatal::{Misuse, MisuseResult};
use crate::fdmon::{self, FdMap};
use crate::stats::LoopCounters;

mod local;

pub(crate) use local::HandlersLocal;

/// A C `IOHandler` (or `EventNotifierHandler`, called with the notifier as
/// its opaque), checked non-NULL.
pub(crate) type IoFn = unsafe extern "C" fn(opaque: *mut c_void);
/// A C `AioPollFn`, checked non-NULL.
pub(crate) type PollFn = unsafe extern "C" fn(opaque: *mut c_void) -> bool;

const POLLIN: u32 = libc::POLLIN as u32;
const POLLOUT: u32 = libc::POLLOUT as u32;
const POLLHUP: u32 = libc::POLLHUP as u32;
const POLLERR: u32 = libc::POLLERR as u32;

/// The callbacks of one fd.
#[derive(Clone, Copy)]
pub(crate) struct Callbacks {
    pub(crate) io_read: Option<IoFn>,
    pub(crate) io_write: Option<IoFn>,
    pub(crate) io_poll: Option<PollFn>,
    pub(crate) io_poll_ready: Option<IoFn>,
    pub(crate) io_poll_begin: Option<IoFn>,
    pub(crate) io_poll_end: Option<IoFn>,
    pub(crate) opaque: *mut c_void,
    /// Registered with `aio_set_event_notifier` (counted apart in the
    /// loop metrics).
    pub(crate) notifier: bool,
}

impl Callbacks {
    pub(crate) fn is_empty(&self) -> bool {
        self.io_read.is_none() && self.io_write.is_none() && self.io_poll.is_none()
    }

    fn interest(&self) -> fdmon::Interest {
        (if self.io_read.is_some() { POLLIN } else { 0 })
            | (if self.io_write.is_some() { POLLOUT } else { 0 })
    }
}

/// One registration of one fd.
pub(crate) struct Handler {
    pub(crate) cb: Callbacks,
    /// Set when the registration is replaced or removed: never call it again.
    removed: AtomicBool,
}

// SAFETY: the callbacks and opaque are C data the caller registered for use
// by the context's thread; the handler itself is immutable but for the
// atomic `removed` flag.
unsafe impl Send for Handler {}
// SAFETY: as above.
unsafe impl Sync for Handler {}

impl Handler {
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        !self.removed.load(Ordering::Acquire)
    }
}

#[derive(Default)]
struct Registry {
    by_fd: FdMap<Arc<Handler>>,
    /// Changes not yet applied by the poller, in order.
    pending: Vec<(RawFd, Option<Arc<Handler>>)>,
}

/// The shared half: any thread.
#[derive(Default)]
pub(crate) struct Handlers {
    registry: Mutex<Registry>,
    has_pending: AtomicBool,
    /// Registered fds (the context's own notifier excluded).
    count: AtomicUsize,
    /// Registered handlers without `io_poll` (QEMU's `poll_disable_cnt`).
    poll_disable_cnt: AtomicUsize,
}

fn check_fd_open(fd: RawFd) -> MisuseResult<()> {
    if fd < 0 {
        return Err(Misuse::new(format!("invalid fd {fd}")));
    }
    fdmon::check_fd_open(fd)
        .map_err(|e| Misuse::new(format!("fd {fd} is not an open file descriptor ({e})")))
}

impl Handlers {
    /// `aio_set_fd_handler`: add, change or (all callbacks None) remove.
    /// Returns whether the poller must be woken to pick the change up.
    pub(crate) fn set(&self, fd: RawFd, cb: Callbacks) -> MisuseResult<()> {
        let adding = !cb.is_empty();
        if adding {
            check_fd_open(fd)?;
        } else if fd < 0 {
            return Err(Misuse::new(format!("invalid fd {fd}")));
        }
        let mut reg = self.registry.lock();
        let new = adding.then(|| {
            Arc::new(Handler {
                cb,
                removed: AtomicBool::new(false),
            })
        });
        let old = match &new {
            Some(h) => reg.by_fd.insert(fd, Arc::clone(h)),
            None => reg.by_fd.remove(&fd),
        };
        if old.is_none() && new.is_none() {
            return Ok(()); // removing an fd that was never added: no-op
        }
        if let Some(old) = &old {
            old.removed.store(true, Ordering::Release);
            self.count.fetch_sub(1, Ordering::Relaxed);
            if old.cb.io_poll.is_none() {
                self.poll_disable_cnt.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if let Some(new) = &new {
            self.count.fetch_add(1, Ordering::Relaxed);
            if new.cb.io_poll.is_none() {
                self.poll_disable_cnt.fetch_add(1, Ordering::Relaxed);
            }
        }
        reg.pending.push((fd, new));
        self.has_pending.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether changes wait for the poller's `HandlersLocal::sync`.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.has_pending.load(Ordering::Acquire)
    }

    /// The callbacks currently registered for `fd`.
    pub(crate) fn get(&self, fd: RawFd) -> Option<Callbacks> {
        self.registry.lock().by_fd.get(&fd).map(|h| h.cb)
    }

    /// Every registered fd with its callbacks, by fd (pending changes
    /// included: what the registry says now). For `aioctx_context_dump`.
    pub(crate) fn snapshot(&self) -> Vec<(RawFd, Callbacks)> {
        let mut all: Vec<(RawFd, Callbacks)> = self
            .registry
            .lock()
            .by_fd
            .iter()
            .map(|(&fd, h)| (fd, h.cb))
            .collect();
        all.sort_unstable_by_key(|&(fd, _)| fd);
        all
    }

    /// `aio_poll_disabled`: some handler lacks `io_poll`.
    pub(crate) fn poll_disabled(&self) -> bool {
        self.poll_disable_cnt.load(Ordering::Relaxed) != 0
    }

    /// Teardown: drops every registration, returning the fds still
    /// registered (for a warning).
    pub(crate) fn clear(&self) -> Vec<RawFd> {
        let mut reg = self.registry.lock();
        reg.pending.clear();
        let fds: Vec<RawFd> = reg.by_fd.keys().copied().collect();
        for (_, h) in reg.by_fd.drain() {
            h.removed.store(true, Ordering::Release);
        }
        self.count.store(0, Ordering::Relaxed);
        self.poll_disable_cnt.store(0, Ordering::Relaxed);
        fds
    }
}

/// A ready fd's registration and its `revents`, for dispatch. The pointer
/// is valid until the end of the outermost loop iteration (module docs).
pub(crate) type ReadyHandler = (*const Handler, u32);

/// Runs the callbacks of ready fds: read before write for one fd; a
/// handler removed meanwhile (by another handler, or by its own read
/// callback) is not called. Returns whether any callback ran.
///
/// # Safety
/// `ready` came from [`HandlersLocal::take_ready`] or
/// [`HandlersLocal::wait_and_take`] in the current outermost
/// loop iteration (so every pointer is still owned by the mirror or the
/// retired list, see the module docs).
pub(crate) unsafe fn dispatch_ready(ready: &[ReadyHandler], stats: &LoopCounters) -> bool {
    let mut progress = false;
    for &(h, revents) in ready {
        // SAFETY: per the caller, the registration outlives this iteration.
        let h = unsafe { &*h };
        if revents & (POLLIN | POLLHUP | POLLERR) != 0
            && h.is_live()
            && let Some(read) = h.cb.io_read
        {
            count_callback(h, stats);
            // SAFETY: registered by the C caller for `opaque`; no lock
            // or borrow is held.
            unsafe { read(h.cb.opaque) };
            progress = true;
        }
        if revents & (POLLOUT | POLLHUP | POLLERR) != 0
            && h.is_live()
            && let Some(write) = h.cb.io_write
        {
            count_callback(h, stats);
            // SAFETY: as above.
            unsafe { write(h.cb.opaque) };
            progress = true;
        }
    }
    progress
}

/// Counts one callback of `h` in the loop metrics, by handler kind.
#[inline(always)]
pub(crate) fn count_callback(h: &Handler, stats: &LoopCounters) {
    if h.cb.notifier {
        stats.notifier_callbacks.incr();
    } else {
        stats.fd_callbacks.incr();
    }
}
