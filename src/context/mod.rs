//! `AioContext`: the event loop object (`qemu/aio.h`: `aio_context_new`,
//! `aio_context_ref`, `aio_context_unref`, `aio_notify`,
//! `aio_notify_accept`, `aio_compute_timeout`).
//!
//! A context owns its wakeup eventfd, the BH queue, a registry of the BHs
//! allocated on it, and loop-local dispatch state. It is reference counted
//! by C callers; the last `aio_context_unref` tears it down.
//!
//! Threading: `ref`/`unref`, `aio_notify` and BH scheduling work from any
//! thread. Polling and dispatch (`aio_poll`, `aio_bh_poll`,
//! `aio_compute_timeout`) belong to the context's home thread: the thread
//! bound to it with `qemu_set_current_aio_context` (for the main context,
//! also any thread holding the BQL). A context bound to no thread may be
//! polled by any one thread at a time. When the bound thread exits, the
//! context is bound to no thread again (`thread.rs`).
//!
//! Teardown follows QEMU: a BH still scheduled is a fatal error naming the
//! BH; a BH allocated but never deleted is reported with one warning line and
//! freed.
//!
//! Layout: this file holds the object, its creation, handle check,
//! refcount, wakeup and notify; `home.rs` the home-thread binding and the
//! [`LoopGuard`]; `memory.rs` its memory (inside its GSource) and the
//! quarantine; `teardown.rs` the last unref. BH dispatch on a context is in
//! `bh/dispatch.rs`.

mod home;
mod memory;
mod sqe;
mod teardown;

pub(crate) use sqe::{CqeHandlerView, PrepSqeFn, fdmon_io_uring_add_sqe};

pub(crate) use home::LoopGuard;

use std::cell::{Cell, RefCell, RefMut};
use std::io;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use crate::bh::{Bh, BhDispatch};
use crate::busy_poll::PollParams;
use crate::context_layout::AioContextPublic;
use crate::fatal::{self, LazyApiCall, Misuse, MisuseResult};
use crate::gsource;
use crate::handle::impl_handle;
use crate::handlers::{Callbacks, Handler, Handlers, HandlersLocal, ReadyHandler};
use crate::mpsc::MpscQueue;
use crate::notifier::EventNotifier;
use crate::notify::NotifyState;
use crate::stats::{AioctxStats, LoopCounters, NotifyCounters};
use crate::thread;
use crate::timer::TimerLists;

// The opaque type C sees (cbindgen prints `typedef struct AioContext
// AioContext;`); a pointer to it is a `Context`. Declared here, not in
// `ffi::types` (which re-exports it), because the block-layer hooks below
// pass it to C and the core does not import `ffi`. Its doc comment is the
// header's.
/// An event loop (`AioContext`). Reference counted; see `aio_context_new`.
pub struct AioContext {
    _opaque: [u8; 0],
}

/// The block layer's hooks (`block/graph-lock.c`), called for every
/// context. Weak no-op defaults live in `src/c/block_hooks.c`, so a program
/// that links QEMU's block layer gets its own definitions instead.
mod block_hooks {
    use super::AioContext;

    // The opaque handle type is only ever passed by pointer.
    #[allow(improper_ctypes)]
    unsafe extern "C" {
        /// Block-layer hook called once for every new context, fully set
        /// up (weak no-op default; QEMU's `block/graph-lock.c` defines it
        /// and stores the context's graph lock in `ctx->bdrv_graph`).
        pub(super) fn register_aiocontext(ctx: *mut AioContext);
        /// Block-layer hook called for every context before it is freed
        /// (weak no-op default).
        pub(super) fn unregister_aiocontext(ctx: *mut AioContext);
    }
}

const CTX_MAGIC_LIVE: u32 = 0x4143_5458; // "ACTX"
const CTX_MAGIC_DEAD: u32 = 0x4445_4144; // "DEAD"

// A freed context is detected while it sits in the quarantine.
impl_handle! { Context = "AioContext", magic: CTX_MAGIC_LIVE, CTX_MAGIC_DEAD,
    freed: "was already freed (its last reference is gone)", invalid: "is not a valid context";
    #[inline(always)]
    fn is_usable(&self) -> bool { self.is_current_fork() }
    fn unusable(&self) -> Misuse { self.forked() }
}

/// State touched only by the thread currently polling the context.
struct LoopLocal {
    /// `HandlersLocal::watches_fds` as of the last sync (read without a
    /// borrow on the hot path).
    watches_fds: Cell<bool>,
    /// Nesting depth of aio_poll / aio_bh_poll on this context.
    depth: Cell<u32>,
    handlers: RefCell<HandlersLocal>,
    /// Reused buffers: ready fd handlers, and busy-poll hits.
    ready_buf: RefCell<Vec<ReadyHandler>>,
    poll_buf: RefCell<Vec<Arc<Handler>>>,
    /// Loop metrics (`stats.rs`): single-writer, readable from any thread.
    stats: LoopCounters,
}

/// The context itself. Handles given to C are `*mut Context` cast to the
/// opaque `AioContext`; `repr(C)` puts QEMU's public members first, at
/// QEMU's offsets (`context_layout.rs`).
#[repr(C)]
pub(crate) struct Context {
    public: AioContextPublic,
    magic: AtomicU32,
    /// The fork generation it was created in (`fork.rs`).
    fork_gen: u32,
    refcount: AtomicUsize,
    notify: NotifyState,
    bh_queue: MpscQueue<Bh>,
    /// The BH registry and run list (`bh/dispatch.rs`).
    bhs: BhDispatch,
    wakeup: EventNotifier,
    /// Token of the thread bound to this context, or null.
    home: AtomicPtr<u8>,
    /// For an unbound context: token of the thread polling it, or null.
    poller: AtomicPtr<u8>,
    local: LoopLocal,
    timers: TimerLists,
    /// Coroutines waiting for `aio_co_schedule`'s BH (`src/coroutine/`).
    scheduled_coroutines: crate::coroutine::ScheduledCoroutines,
    handlers: Handlers,
    poll_params: PollParams,
    /// Eventfd writes so far: lets a poller that skipped its wait notice a
    /// wakeup written meanwhile and consume it (no spurious wakeup later).
    kicks: AtomicU32,
    /// The context's thread pool (created on first use) and its limits.
    thread_pool: crate::thread_pool::ContextPool,
    /// `aio_notify` outcomes (`stats.rs`): written by any thread, so on a
    /// cache line of their own.
    notify_counters: NotifyCounters,
}

/// Accessors of the parts other modules work on; the fields stay private so
/// that what `Context` exposes is this list and its methods.
impl Context {
    /// The `aio_notify` handshake words (`notify.rs`).
    #[inline(always)]
    pub(crate) fn notify_state(&self) -> &NotifyState {
        &self.notify
    }

    /// The queue scheduled BHs are pushed onto (`bh/`).
    #[inline(always)]
    pub(crate) fn bh_queue(&self) -> &MpscQueue<Bh> {
        &self.bh_queue
    }

    /// The context's four timer lists (`timer/list.rs`).
    #[inline(always)]
    pub(crate) fn timers(&self) -> &TimerLists {
        &self.timers
    }

    /// Coroutines waiting for `aio_co_schedule`'s BH (`coroutine/`).
    #[inline(always)]
    pub(crate) fn scheduled_coroutines(&self) -> &crate::coroutine::ScheduledCoroutines {
        &self.scheduled_coroutines
    }

    /// The fd handlers (`handlers/`).
    #[inline(always)]
    pub(crate) fn handlers(&self) -> &Handlers {
        &self.handlers
    }

    /// The adaptive busy-poll parameters (`busy_poll.rs`).
    #[inline(always)]
    pub(crate) fn poll_params(&self) -> &PollParams {
        &self.poll_params
    }

    /// The context's thread pool and its limits (`thread_pool/`).
    #[inline(always)]
    pub(crate) fn thread_pool(&self) -> &crate::thread_pool::ContextPool {
        &self.thread_pool
    }
}

/// Ready fd handlers (with their `revents`) and busy-poll hits.
pub(crate) type DispatchBuffers<'a> = (
    &'a RefCell<Vec<ReadyHandler>>,
    &'a RefCell<Vec<Arc<Handler>>>,
);

// SAFETY: shared state is atomic or behind a mutex; `local` is only touched
// by the single thread allowed to poll (enforced by `enter_loop`), except
// its metrics (`local.stats`), atomics that other threads only load; the
// BH run list in `bhs` follows the same rule (`bh/dispatch.rs`); and
// `wakeup`'s fd is only read by that thread, written (eventfd write) by any.
unsafe impl Sync for Context {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Context {}

impl Context {
    /// A new context with one reference, owned by the caller.
    pub(crate) fn new() -> io::Result<*const Context> {
        let mut wakeup = EventNotifier::uninit();
        wakeup.init(false, false)?;
        let value = Context {
            public: AioContextPublic::new(),
            magic: AtomicU32::new(CTX_MAGIC_LIVE),
            fork_gen: crate::fork::generation(),
            refcount: AtomicUsize::new(1),
            notify: NotifyState::new(),
            bh_queue: MpscQueue::new(),
            bhs: BhDispatch::new(),
            wakeup,
            home: AtomicPtr::new(ptr::null_mut()),
            poller: AtomicPtr::new(ptr::null_mut()),
            local: LoopLocal {
                watches_fds: Cell::new(false),
                depth: Cell::new(0),
                handlers: RefCell::new(HandlersLocal::default()),
                ready_buf: RefCell::new(Vec::new()),
                poll_buf: RefCell::new(Vec::new()),
                stats: LoopCounters::default(),
            },
            timers: TimerLists::new(),
            scheduled_coroutines: crate::coroutine::ScheduledCoroutines::new(),
            handlers: Handlers::default(),
            poll_params: PollParams::default(),
            kicks: AtomicU32::new(0),
            thread_pool: crate::thread_pool::ContextPool::default(),
            notify_counters: NotifyCounters::default(),
        };
        let ctx = Self::move_into_gsource(value);
        {
            // SAFETY: just allocated; not shared yet.
            let c = unsafe { &*ctx };
            c.public.set_tlg(c.timers.group_pointers());
            c.timers.bind(ctx);
            if crate::fdmon::forced_backend() == Some(crate::fdmon::Backend::IoUring) {
                // So that `fdmon_ops->add_sqe` (`aio_has_io_uring()`) is
                // right before the first fd is registered.
                let mut local = c.local.handlers.borrow_mut();
                local.open_eagerly(c.wakeup_fd());
                c.publish_fdmon_ops(&local);
            }
        }
        // SAFETY: the hook gets a fully set-up context, as QEMU's does; the
        // default is a no-op, a block layer's stores into `bdrv_graph`.
        unsafe { block_hooks::register_aiocontext(ctx.cast()) };
        Ok(ctx)
    }

    /// Fails in a child process if the context was created before its
    /// `fork()` (`fork.rs`).
    #[inline]
    pub(crate) fn check_fork(&self) -> MisuseResult<()> {
        self.check_fork_as("AioContext")
    }

    /// [`Context::check_fork`] as a yes/no.
    #[inline(always)]
    pub(crate) fn is_current_fork(&self) -> bool {
        crate::fork::is_current(self.fork_gen)
    }

    /// The problem [`Context::check_fork`] reports.
    pub(crate) fn forked(&self) -> Misuse {
        crate::fork::forked("AioContext")
    }

    /// [`Context::check_fork`] for an object of the context (`what`, e.g.
    /// its thread pool) named in the message.
    #[inline]
    pub(crate) fn check_fork_as(&self, what: &'static str) -> MisuseResult<()> {
        crate::fork::check(self.fork_gen, what)
    }

    pub(crate) fn wakeup_fd(&self) -> i32 {
        self.wakeup.rfd
    }

    /// Applies pending fd handler changes; returns whether any fd is
    /// watched. Cheap (one atomic load) when nothing changed.
    #[inline(always)]
    pub(crate) fn sync_handlers(&self, guard: &LoopGuard<'_>) -> bool {
        if self.handlers.has_pending() {
            self.apply_handler_changes(guard);
        }
        self.local.watches_fds.get()
    }

    /// [`Context::sync_handlers`] when there are changes.
    #[inline(never)]
    fn apply_handler_changes(&self, guard: &LoopGuard<'_>) {
        let mut local = self.local_handlers(guard);
        let nested = self.local.depth.get() > 1;
        local.sync(&self.handlers, self.wakeup_fd(), nested);
        self.refresh_watches_fds(&local);
        local.take_backend_changed();
        self.publish_fdmon_ops(&local);
    }

    /// Re-reads whether the loop must ask the monitor (callers' io_uring
    /// requests in flight count, and they end with a wait).
    #[inline]
    pub(crate) fn refresh_watches_fds(&self, local: &HandlersLocal) {
        self.local.watches_fds.set(local.watches_fds());
    }

    /// Points `ctx->fdmon_ops` at the table of the backend `local` uses.
    pub(crate) fn publish_fdmon_ops(&self, local: &HandlersLocal) {
        let ops = crate::fdmon::ops::fdmon_ops_for(local.backend_name());
        self.public
            .fdmon_ops
            .store(ops.cast_mut(), Ordering::Release);
    }

    /// Consumes a wakeup the fd monitor reported (the eventfd is readable).
    pub(crate) fn clear_wakeup(&self) {
        self.wakeup.test_and_clear();
    }

    /// The loop-thread half of the fd handlers. Never hold the borrow across
    /// a user callback.
    pub(crate) fn local_handlers(&self, _guard: &LoopGuard<'_>) -> RefMut<'_, HandlersLocal> {
        self.local.handlers.borrow_mut()
    }

    /// Reused buffers for ready handlers and busy-poll hits. Take the Vec
    /// out (`mem::take`) before calling user code, put it back after.
    pub(crate) fn dispatch_buffers(&self, _guard: &LoopGuard<'_>) -> DispatchBuffers<'_> {
        (&self.local.ready_buf, &self.local.poll_buf)
    }

    /// `aio_set_fd_handler`: any thread. A poller blocked in another thread
    /// is woken to pick the change up.
    pub(crate) fn set_fd_handler(&self, fd: i32, cb: Callbacks) -> MisuseResult<()> {
        let removing = cb.is_empty();
        self.handlers.set(fd, cb)?;
        // A removal is applied to the monitor now, not at the next poll: the
        // caller may close the fd next and expects its peer to see that (the
        // io_uring monitor holds a reference to a polled file).
        if thread::in_home_thread(self) {
            if removing {
                let guard = self.enter_loop()?;
                self.sync_handlers(&guard);
            }
        } else if removing && self.home.load(Ordering::Acquire).is_null() {
            self.sync_handlers_if_idle();
        } else {
            self.notify();
        }
        Ok(())
    }

    /// The fd monitor in use: "none" until an fd is registered, then
    /// "poll", "epoll" or "io_uring". Home thread (or unbound).
    pub(crate) fn fdmon_name(&self) -> MisuseResult<&'static str> {
        let guard = self.enter_loop()?;
        Ok(self.local_handlers(&guard).backend_name())
    }

    /// `aio_get_g_source`: a new reference to the context's GSource. Any
    /// thread.
    pub(crate) fn g_source(&self) -> *mut glib_sys::GSource {
        gsource::source_ref(self.source_ptr())
    }

    /// The BH registry and run list, for BH dispatch (`bh/dispatch.rs`).
    #[inline(always)]
    pub(crate) fn bh_dispatch(&self) -> &BhDispatch {
        &self.bhs
    }

    pub(crate) fn as_ptr(&self) -> *const Context {
        ptr::from_ref(self)
    }

    pub(crate) fn ref_(&self) {
        self.refcount.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a reference; the last one tears the context down.
    ///
    /// # Safety
    /// `ctx` is a live context and the caller owns one reference to it.
    pub(crate) unsafe fn unref(ctx: *const Context) {
        // SAFETY: live per the caller.
        let r = unsafe { &*ctx };
        if r.refcount.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: that was the last reference.
            unsafe { Self::destroy(ctx.cast_mut()) };
        }
    }

    /// `aio_notify`: make a blocked (or about to block) poll return.
    #[inline]
    pub(crate) fn notify(&self) {
        self.notify_from(LazyApiCall::ACTIVE);
    }

    /// [`Context::notify`] for a leaf API call, whose name `api` records
    /// only if the eventfd is written (a failure reports with `die_here`).
    #[inline(always)]
    pub(crate) fn notify_from(&self, api: LazyApiCall) {
        // The call is counted by the protocol itself (`stats.rs`).
        if self.notify.notify() {
            self.notify_kick(api);
        }
    }

    /// The eventfd write of [`Context::notify_from`], counted for the stats.
    #[cold]
    #[inline(never)]
    fn notify_kick(&self, api: LazyApiCall) {
        self.notify_counters.record_write();
        self.kick_from(api);
    }

    /// The loop-thread counters (`stats.rs`); only the guard holder adds.
    #[inline(always)]
    pub(crate) fn loop_stats(&self, _guard: &LoopGuard<'_>) -> &LoopCounters {
        &self.local.stats
    }

    /// `aioctx_context_get_stats`: any thread (see `stats.rs`).
    pub(crate) fn stats(&self) -> AioctxStats {
        crate::stats::collect(
            &self.local.stats,
            &self.notify_counters,
            || self.notify.notify_count(),
            self.poll_params.window_ns(),
        )
    }

    /// Writes the wakeup eventfd.
    #[cold]
    pub(crate) fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        self.poll_params.note_kick();
        if let Err(e) = self.wakeup.set() {
            // `aio_notify`, or whatever woke the context (`qemu_bh_schedule`,
            // `timer_mod`, `aio_co_schedule`, a thread-pool worker, ...).
            fatal::die_here(&format!("cannot write the wakeup eventfd: {e}"));
        }
    }

    /// [`Context::kick`] inside the leaf API call `api` (see
    /// [`Context::notify_from`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn kick_from(&self, api: LazyApiCall) {
        let _call = api.enter();
        self.kick();
    }

    /// The number of eventfd writes so far (see `kicks`).
    #[inline]
    pub(crate) fn kick_count(&self) -> u32 {
        self.kicks.load(Ordering::Relaxed)
    }

    /// Blocks until the wakeup eventfd is written, `timeout_ns` (-1:
    /// forever) passes or a signal arrives, and consumes the wakeup.
    pub(crate) fn wait_for_wakeup(&self, timeout_ns: i64) {
        if timeout_ns < 0 {
            // The only fd to watch: one blocking read() both waits and
            // clears (as cheap as a raw eventfd hand-off). A signal ends
            // the wait (EINTR is not retried), as it ends ppoll below.
            self.wakeup.wait_and_clear();
            return;
        }
        let mut pfd = libc::pollfd {
            fd: self.wakeup.rfd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = crate::fdmon::timespec_from_ns(timeout_ns);
        // SAFETY: one valid pollfd, a valid timespec, no signal mask.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, ptr::null()) };
        if n > 0 && pfd.revents & libc::POLLIN != 0 {
            // Readable, so this read of the blocking eventfd cannot block
            // (this thread is its only reader).
            self.wakeup.test_and_clear();
        }
    }

    pub(crate) fn set_aio_max_batch(&self, max_batch: i64) {
        self.public
            .aio_max_batch
            .store(max_batch, Ordering::Relaxed);
    }

    pub(crate) fn aio_max_batch(&self) -> i64 {
        self.public.aio_max_batch.load(Ordering::Relaxed)
    }
}
