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

use std::cell::{Cell, RefCell, RefMut};
use std::ffi::{c_char, c_void};
use std::io;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::bh::{
    BH_DELETED, BH_IDLE, BH_ONESHOT, BH_PENDING, BH_SCHEDULED, Bh, BhFn, MemReentrancyGuard,
    NOT_REGISTERED,
};
use crate::bh_queue::{BhQueue, QueueNode};
use crate::busy_poll::PollParams;
use crate::context_layout::AioContextPublic;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::gsource;
use crate::handlers::{Callbacks, Handler, Handlers, HandlersLocal};
use crate::notifier::EventNotifier;
use crate::notify::NotifyState;
use crate::quarantine::Quarantine;
use crate::stats::{AioctxStats, LoopCounters, NotifyCounters};
use crate::thread;
use crate::timer::TimerLists;

/// The block layer's hooks (`block/graph-lock.c`), called for every
/// context. Weak no-op defaults live in `src/c/block_hooks.c`, so a program
/// that links QEMU's block layer gets its own definitions instead.
mod block_hooks {
    use crate::ffi::types::AioContext;

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

/// `poller` value while a non-polling thread applies handler changes
/// (never a thread token: those count up from 1, see `thread::thread_token`).
const TRANSIENT_CLAIM: *mut u8 = ptr::without_provenance_mut(usize::MAX);

/// How long a blocked loop may leave an idle BH waiting (QEMU: 10 ms).
pub(crate) const IDLE_BH_TIMEOUT_NS: i64 = 10_000_000;

/// Dead contexts whose memory is kept (magic = DEAD) so that a stale handle
/// is reported instead of silently reusing freed memory.
static QUARANTINE: Quarantine<Context> = Quarantine::new(Context::release_shell);

/// The BHs allocated with `aio_bh_new*` and not freed yet, so that teardown
/// can report and free the ones never deleted. Each BH knows its slot.
#[derive(Default)]
struct BhRegistry(Vec<*mut Bh>);
// SAFETY: the pointers are only dereferenced by the thread holding the lock
// (to update slots) or by teardown, which owns every BH.
unsafe impl Send for BhRegistry {}

/// State touched only by the thread currently polling the context.
struct LoopLocal {
    /// The BHs taken from the queue and not dispatched yet, in order: the
    /// rest of the current `aio_bh_poll` batch, followed by batches that
    /// nested calls appended. Linked through the BHs' own `next`.
    run_head: Cell<*mut Bh>,
    run_tail: Cell<*mut Bh>,
    /// `HandlersLocal::watches_fds` as of the last sync (read without a
    /// borrow on the hot path).
    watches_fds: Cell<bool>,
    /// Nesting depth of aio_poll / aio_bh_poll on this context.
    depth: Cell<u32>,
    handlers: RefCell<HandlersLocal>,
    /// Reused buffers: ready fd handlers, and busy-poll hits.
    ready_buf: RefCell<Vec<(Arc<Handler>, u32)>>,
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
    pub(crate) notify: NotifyState,
    pub(crate) bh_queue: BhQueue<Bh>,
    bh_registry: Mutex<BhRegistry>,
    wakeup: EventNotifier,
    /// Token of the thread bound to this context, or null.
    home: AtomicPtr<u8>,
    /// For an unbound context: token of the thread polling it, or null.
    poller: AtomicPtr<u8>,
    local: LoopLocal,
    pub(crate) timers: TimerLists,
    /// Coroutines waiting for `aio_co_schedule`'s BH (`src/coroutine/`).
    pub(crate) scheduled_coroutines: crate::coroutine::ScheduledCoroutines,
    pub(crate) handlers: Handlers,
    pub(crate) poll_params: PollParams,
    /// Eventfd writes so far: lets a poller that skipped its wait notice a
    /// wakeup written meanwhile and consume it (no spurious wakeup later).
    kicks: AtomicU32,
    /// The context's thread pool (created on first use) and its limits.
    pub(crate) thread_pool: crate::thread_pool::ContextPool,
    /// `aio_notify` outcomes (`stats.rs`): written by any thread, so on a
    /// cache line of their own.
    notify_counters: NotifyCounters,
}

/// Ready fd handlers (with their `revents`) and busy-poll hits.
pub(crate) type DispatchBuffers<'a> = (
    &'a RefCell<Vec<(Arc<Handler>, u32)>>,
    &'a RefCell<Vec<Arc<Handler>>>,
);

// SAFETY: shared state is atomic or behind a mutex; `local` is only touched
// by the single thread allowed to poll (enforced by `enter_loop`), except
// its metrics (`local.stats`), atomics that other threads only load; and
// `wakeup`'s fd is only read by that thread, written (eventfd write) by any.
unsafe impl Sync for Context {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Context {}

/// Marks the calling thread as inside a poll of the context; undone on drop.
/// Live guards are also counted per thread (`thread::loop_entered`): a
/// thread that ends inside a callback (`pthread_exit` unwinds past the
/// guard without dropping it) is reported by the thread-exit hook.
pub(crate) struct LoopGuard<'a> {
    ctx: &'a Context,
    /// Set when this guard claimed an unbound context for the thread: the
    /// thread's previous polling context, restored on drop.
    claimed_poller: Option<*const Context>,
}

impl Drop for LoopGuard<'_> {
    fn drop(&mut self) {
        let depth = self.ctx.local.depth.get() - 1;
        self.ctx.local.depth.set(depth);
        thread::loop_left();
        if let Some(prev) = self.claimed_poller {
            thread::leave_polling(prev);
            self.ctx.poller.store(ptr::null_mut(), Ordering::Release);
        }
    }
}

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
            bh_queue: BhQueue::new(),
            bh_registry: Mutex::new(BhRegistry::default()),
            wakeup,
            home: AtomicPtr::new(ptr::null_mut()),
            poller: AtomicPtr::new(ptr::null_mut()),
            local: LoopLocal {
                run_head: Cell::new(ptr::null_mut()),
                run_tail: Cell::new(ptr::null_mut()),
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
        }
        // SAFETY: the hook gets a fully set-up context, as QEMU's does; the
        // default is a no-op, a block layer's stores into `bdrv_graph`.
        unsafe { block_hooks::register_aiocontext(ctx.cast()) };
        Ok(ctx)
    }

    /// Validates a C handle.
    ///
    /// # Safety
    /// `ctx` is null or was returned by [`Context::new`] (a freed one is
    /// detected while it sits in the quarantine).
    pub(crate) unsafe fn from_handle<'a>(ctx: *const Context) -> MisuseResult<&'a Context> {
        if ctx.is_null() {
            return Err(Misuse::new("AioContext is NULL"));
        }
        // SAFETY: non-null; the caller vouches it was a context; dead ones
        // stay allocated in the quarantine for a while.
        let r = unsafe { &*ctx };
        match r.magic.load(Ordering::Acquire) {
            CTX_MAGIC_LIVE => r.check_fork().map(|()| r),
            CTX_MAGIC_DEAD => Err(Misuse::new(
                "AioContext was already freed (its last reference is gone)",
            )),
            _ => Err(Misuse::new("AioContext is not a valid context")),
        }
    }

    /// Fails in a child process if the context was created before its
    /// `fork()` (`fork.rs`).
    #[inline]
    pub(crate) fn check_fork(&self) -> MisuseResult<()> {
        self.check_fork_as("AioContext")
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
    #[inline]
    pub(crate) fn sync_handlers(&self, guard: &LoopGuard<'_>) -> bool {
        if self.handlers.has_pending() {
            let mut local = self.local_handlers(guard);
            local.sync(&self.handlers, self.wakeup_fd());
            self.local.watches_fds.set(local.watches_fds());
            local.take_backend_changed();
            self.publish_fdmon_ops(&local);
        }
        self.local.watches_fds.get()
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

    /// The context's GSource: the context's own first bytes.
    fn source_ptr(&self) -> *mut glib_sys::GSource {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// Moves a new context into memory from `g_source_new` (its first 96
    /// bytes, QEMU's `ctx->source`, stay GLib's GSource).
    fn move_into_gsource(value: Context) -> *mut Context {
        const GSOURCE: usize = std::mem::size_of::<glib_sys::GSource>();
        let block = gsource::alloc_context(std::mem::size_of::<Context>());
        assert!(block.cast::<Context>().is_aligned());
        let value = std::mem::ManuallyDrop::new(value);
        // SAFETY: `block` has room for a Context and is aligned for it; a
        // Rust move is a byte copy, so copying every byte but the GSource
        // (which `value` holds as unused zeroes) moves `value` there, and
        // `value` is not dropped.
        unsafe {
            ptr::copy_nonoverlapping(
                ptr::from_ref(&*value).cast::<u8>().add(GSOURCE),
                block.add(GSOURCE),
                std::mem::size_of::<Context>() - GSOURCE,
            );
        }
        block.cast()
    }

    /// Frees a dead context evicted from the quarantine: drops its Rust
    /// state and releases the library's GSource reference (GLib frees the
    /// memory when the caller's references are gone too).
    ///
    /// # Safety
    /// `ctx` is a dead context (torn down by [`Context::destroy`]) that
    /// nothing but GLib references.
    unsafe fn release_shell(ctx: *mut Context) {
        // SAFETY: per the contract; the GSource bytes are plain bytes to
        // Rust, so dropping leaves them to GLib.
        unsafe {
            ptr::drop_in_place(ctx);
            gsource::release(ctx.cast());
        }
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

    /// Binds the context to the thread `token` (`qemu_set_current_aio_context`).
    /// The calling thread must be `token`: the binding is cleared when it
    /// exits (`thread::register_home`).
    pub(crate) fn claim_home_thread(&self, token: *mut u8) -> MisuseResult<()> {
        self.home
            .compare_exchange(ptr::null_mut(), token, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| Misuse::new("this context is already bound to another thread"))?;
        thread::register_home(self);
        Ok(())
    }

    /// Unbinds the context from the thread `token`, which is exiting: the
    /// context is bound to no thread again.
    pub(crate) fn release_home_thread(&self, token: *mut u8) {
        let _ =
            self.home
                .compare_exchange(token, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Enters loop-thread-only code (`aio_poll`, `aio_bh_poll`, ...), after
    /// checking that the calling thread may: it is the home thread, or the
    /// context is unbound and no other thread is polling it.
    #[inline]
    pub(crate) fn enter_loop(&self) -> MisuseResult<LoopGuard<'_>> {
        // Also here, not only in `from_handle`: the current context (a
        // thread-local copied by fork) reaches the loop without a handle.
        self.check_fork()?;
        let mut claimed_poller = None;
        if !thread::in_home_thread(self) {
            let home = self.home.load(Ordering::Acquire);
            let me = thread::thread_token();
            if home.is_null() {
                loop {
                    match self.poller.compare_exchange(
                        ptr::null_mut(),
                        me,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            claimed_poller = Some(thread::enter_polling(self));
                            break;
                        }
                        // Re-entered from a nested poll of another context.
                        Err(other) if other == me => break,
                        // Another thread is applying a handler removal
                        // (`sync_handlers_if_idle`): a few instructions.
                        Err(other) if other == TRANSIENT_CLAIM => std::thread::yield_now(),
                        Err(_) => {
                            return Err(Misuse::new(
                                "context bound to no thread is already being polled by another thread",
                            ));
                        }
                    }
                }
            } else if home != me {
                // `home == me` without being in_home_thread: a context bound
                // to this thread that is not its current one (the main
                // loop's iohandler context).
                return Err(Misuse::new(
                    "called outside the context's home thread (the thread bound to it with \
                     qemu_set_current_aio_context, or a BQL holder for the main context)",
                ));
            }
        }
        self.local.depth.set(self.local.depth.get() + 1);
        thread::loop_entered();
        Ok(LoopGuard {
            ctx: self,
            claimed_poller,
        })
    }

    /// `aio_notify`: make a blocked (or about to block) poll return.
    #[inline]
    pub(crate) fn notify(&self) {
        let wrote = self.notify.notify();
        self.notify_counters.record(wrote);
        if wrote {
            self.kick();
        }
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
            self.poll_params.window_ns(),
        )
    }

    /// Writes the wakeup eventfd.
    #[cold]
    pub(crate) fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.wakeup.set() {
            fatal::die(
                "aio_notify",
                &format!("cannot write the wakeup eventfd: {e}"),
            );
        }
    }

    /// Links a BH whose PENDING flag the caller just set, and wakes the
    /// poller if it sleeps (see `notify.rs` for why this cannot be lost).
    #[inline]
    /// Applies pending handler changes of an unbound context from a thread
    /// that is not polling it, if no thread is: claims the poller slot with
    /// a marker that a concurrent `enter_loop` waits out. If a thread is
    /// polling, that poll applies them instead (it is woken).
    fn sync_handlers_if_idle(&self) {
        if self
            .poller
            .compare_exchange(
                ptr::null_mut(),
                TRANSIENT_CLAIM,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.notify();
            return;
        }
        self.local.depth.set(self.local.depth.get() + 1);
        thread::loop_entered();
        let guard = LoopGuard {
            ctx: self,
            claimed_poller: None,
        };
        self.sync_handlers(&guard);
        drop(guard);
        self.poller.store(ptr::null_mut(), Ordering::Release);
    }

    /// Whether no thread is bound to the context and none is polling it.
    pub(crate) fn is_unbound_and_idle(&self) -> bool {
        self.home.load(Ordering::Acquire).is_null() && self.poller.load(Ordering::Acquire).is_null()
    }

    pub(crate) fn enqueue(&self, bh: &Bh) {
        // SAFETY: the caller flipped PENDING 0 -> 1, so the BH is in no queue,
        // and it stays alive until the loop dequeues it (only the loop frees).
        unsafe { self.bh_queue.push(ptr::from_ref(bh).cast_mut()) };
        if self.notify.must_kick_after_push() {
            self.kick();
        }
    }

    /// Links a BH without waking the poller (used for deletions).
    pub(crate) fn enqueue_quietly(&self, bh: &Bh) {
        // SAFETY: as in `enqueue`.
        unsafe { self.bh_queue.push(ptr::from_ref(bh).cast_mut()) };
    }

    /// `aio_bh_new_full`: a registered, unscheduled BH.
    pub(crate) fn bh_new(
        &self,
        cb: BhFn,
        opaque: *mut c_void,
        name: *const c_char,
        guard: *mut MemReentrancyGuard,
    ) -> *mut Bh {
        let bh = Bh::alloc(self, cb, opaque, name, guard, 0);
        let mut reg = self.bh_registry.lock();
        // SAFETY: `bh` is fresh; its slot is only touched under this lock.
        unsafe { (*bh).registry_slot.store(reg.0.len(), Ordering::Relaxed) };
        reg.0.push(bh);
        bh
    }

    /// `aio_bh_schedule_oneshot_full`: allocate, schedule, free after running.
    pub(crate) fn schedule_oneshot(&self, cb: BhFn, opaque: *mut c_void, name: *const c_char) {
        let bh = Bh::alloc(
            self,
            cb,
            opaque,
            name,
            ptr::null_mut(),
            BH_PENDING | BH_SCHEDULED | BH_ONESHOT,
        );
        // SAFETY: just allocated, so alive and in no queue.
        self.enqueue(unsafe { &*bh });
    }

    /// Unregisters (if registered) and frees a BH the loop has unlinked.
    ///
    /// # Safety
    /// `bh` belongs to this context, is unlinked, and is not used again.
    unsafe fn free_bh(&self, bh: *mut Bh) {
        // SAFETY: alive until freed below.
        let slot = unsafe { (*bh).registry_slot.load(Ordering::Relaxed) };
        if slot != NOT_REGISTERED {
            let mut reg = self.bh_registry.lock();
            // Re-read under the lock (the slot only changes under it).
            // SAFETY: as above.
            let slot = unsafe { (*bh).registry_slot.load(Ordering::Relaxed) };
            reg.0.swap_remove(slot);
            if let Some(&moved) = reg.0.get(slot) {
                // SAFETY: registered BHs are alive; the lock is held.
                unsafe { (*moved).registry_slot.store(slot, Ordering::Relaxed) };
            }
        }
        // SAFETY: unlinked and unregistered now; the caller gives it up.
        unsafe { Bh::free(bh) };
    }

    /// Unlinks the next BH to dispatch, or None when all are done.
    #[inline]
    fn next_run_bh(&self) -> Option<*mut Bh> {
        let bh = self.local.run_head.get();
        if bh.is_null() {
            return None;
        }
        // Read the link before PENDING is cleared: after that a producer may
        // push the BH again and rewrite it.
        // SAFETY: a linked BH is alive (only the loop frees, after unlinking).
        let next = unsafe { (*bh).next().load(crate::atomics::Ordering::Relaxed) };
        self.local.run_head.set(next);
        if next.is_null() {
            self.local.run_tail.set(ptr::null_mut());
        }
        Some(bh)
    }

    /// `aio_bh_poll`: runs the BHs scheduled before this call, in scheduling
    /// order, after what outer (nesting) calls have not run yet. Returns
    /// whether a non-idle BH ran. The caller holds a [`LoopGuard`].
    pub(crate) fn bh_poll(&self, guard: &LoopGuard<'_>) -> bool {
        let (batch, batch_tail) = self.bh_queue.take_all_fifo_with_tail();
        if !batch.is_null() {
            let tail = self.local.run_tail.get();
            if tail.is_null() {
                self.local.run_head.set(batch);
            } else {
                // SAFETY: the tail is linked (PENDING), so only the loop
                // thread touches its link.
                unsafe {
                    (*tail)
                        .next()
                        .store(batch, crate::atomics::Ordering::Relaxed)
                };
            }
            self.local.run_tail.set(batch_tail);
        } else if self.local.run_head.get().is_null() {
            return false;
        }
        let mut progress = false;
        while let Some(bh) = self.next_run_bh() {
            // SAFETY: unlinked just now, still alive.
            let flags = unsafe { &*bh }
                .flags
                .fetch_and(!(BH_PENDING | BH_SCHEDULED | BH_IDLE), Ordering::AcqRel);
            if flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED {
                if flags & BH_IDLE == 0 {
                    progress = true;
                }
                self.loop_stats(guard).bhs_run.incr();
                // SAFETY: alive; no borrow of loop state is held here.
                unsafe { Bh::call(bh) };
            }
            if flags & (BH_DELETED | BH_ONESHOT) != 0 {
                // SAFETY: unlinked, and deleted or oneshot: nobody may use it.
                unsafe { self.free_bh(bh) };
            }
        }
        progress
    }

    /// The BH part of `aio_compute_timeout`: 0 if a BH is scheduled, 10 ms
    /// if only idle BHs are, -1 if none. Walks the queue without taking it.
    pub(crate) fn bh_timeout(&self, _guard: &LoopGuard<'_>) -> i64 {
        let mut timeout = -1;
        let mut scan = |mut bh: *mut Bh| -> bool {
            while !bh.is_null() {
                // SAFETY: linked BHs are alive; links of queued BHs were
                // published by the push CAS that `peek` acquired.
                let b = unsafe { &*bh };
                let flags = b.flags.load(Ordering::Acquire);
                if flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED {
                    if flags & BH_IDLE == 0 {
                        return true;
                    }
                    timeout = IDLE_BH_TIMEOUT_NS;
                }
                bh = b.next().load(crate::atomics::Ordering::Relaxed);
            }
            false
        };
        if scan(self.local.run_head.get()) {
            return 0;
        }
        if scan(self.bh_queue.peek()) {
            return 0;
        }
        timeout
    }

    /// The number of eventfd writes so far (see `kicks`).
    #[inline]
    pub(crate) fn kick_count(&self) -> u32 {
        self.kicks.load(Ordering::Relaxed)
    }

    /// Whether any BH (idle ones included) is scheduled.
    pub(crate) fn bh_any_scheduled(&self, guard: &LoopGuard<'_>) -> bool {
        self.bh_timeout(guard) >= 0
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

    /// Tears the context down (last reference gone).
    ///
    /// # Safety
    /// `ctx` is live and nobody else holds a reference.
    unsafe fn destroy(ctx: *mut Context) {
        const FUNC: &str = "aio_context_unref";
        // SAFETY: live, and ours alone now.
        let r = unsafe { &mut *ctx };
        if r.local.depth.get() != 0 {
            fatal::die(
                FUNC,
                "last reference dropped while the context is being polled (from one of its own callbacks)",
            );
        }
        if ptr::eq(thread::main_context(), ctx) {
            fatal::die(FUNC, "the main context cannot be freed");
        }
        // Before any memory goes: a bound thread exiting now must not see it.
        thread::forget_home(r);
        // SAFETY: the context is still whole; the hook (a no-op unless the
        // program has a block layer) unlinks it before it goes away.
        unsafe { block_hooks::unregister_aiocontext(ctx.cast()) };

        // The pool first: it waits for its jobs and deletes its BH.
        r.thread_pool.teardown();

        // Queued BHs: scheduled ones are a bug in the caller (QEMU aborts
        // too); deleted and oneshot ones are ours to free.
        let mut bh = r.bh_queue.take_all_fifo();
        while !bh.is_null() {
            // SAFETY: linked BHs are alive and now ours.
            let b = unsafe { &*bh };
            let next = b.next().load(crate::atomics::Ordering::Relaxed);
            let flags = b.flags.swap(0, Ordering::AcqRel);
            if flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED {
                fatal::die(
                    FUNC,
                    &format!(
                        "BH '{}' is still scheduled; delete or cancel it before freeing its context",
                        b.describe()
                    ),
                );
            }
            if flags & (BH_DELETED | BH_ONESHOT) != 0 {
                // SAFETY: unlinked; deleted or oneshot, so nobody uses it.
                unsafe { r.free_bh(bh) };
            }
            bh = next;
        }

        // BHs allocated and never deleted: QEMU leaks them silently; we say
        // so once each and free them.
        let leaked = std::mem::take(&mut r.bh_registry.get_mut().0);
        for bh in leaked {
            // SAFETY: registered BHs are alive; the registry is emptied, so
            // free them directly.
            let name = unsafe { &*bh }.describe();
            fatal::warn(
                FUNC,
                &format!("BH '{name}' was never deleted with qemu_bh_delete; freeing it"),
            );
            // SAFETY: unlinked (queue drained) and no longer registered.
            unsafe { Bh::free(bh) };
        }

        for fd in r.handlers.clear() {
            fatal::warn(
                FUNC,
                &format!(
                    "fd {fd} still has handlers; removing them (call aio_set_fd_handler with NULLs first)"
                ),
            );
        }
        *r.local.handlers.get_mut() = HandlersLocal::default();
        r.local.watches_fds.set(false);
        gsource::detach(r.source_ptr());
        r.timers.teardown();
        thread::unbind_if_current(r);
        r.wakeup.cleanup();
        r.magic.store(CTX_MAGIC_DEAD, Ordering::Release);

        // Keep the dead shell for a while so stale handles are reported.
        // SAFETY: `ctx` is dead and given up here; `release_shell` frees it.
        unsafe { QUARANTINE.keep(ctx) };
    }
}
