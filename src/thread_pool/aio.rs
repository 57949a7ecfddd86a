//! The per-context AIO pool (QEMU's `ThreadPoolAio`): `thread_pool_submit_aio`,
//! `thread_pool_submit_co`, cancellation, `thread_pool_update_params`,
//! `aio_context_set_thread_pool_params`.
//!
//! A request is a `BlockAIOCB`-headed [`Element`]. Its life:
//! 1. submitted in its context's home thread: queued (intrusive list under
//!    the workers' lock, so cancelling is O(1));
//! 2. a worker takes it (ACTIVE), runs `func` without the lock, stores the
//!    result (DONE) and pushes it onto the lock-free completion queue, then
//!    schedules the pool's completion BH;
//! 3. the BH, in the home thread, reports requests in completion order:
//!    `cb(opaque, ret)`, then drops the pool's reference.
//!
//! Cancelling a QUEUED request unlinks it and completes it with
//! `-ECANCELED` through the same queue and BH; an ACTIVE or DONE one is left
//! alone. So `cb` always runs exactly once, from the BH, never inside
//! `thread_pool_submit_aio` or `bdrv_aio_cancel_async` themselves.
//!
//! Freeing a pool (`thread_pool_free_aio`, or the context's teardown for
//! its own pool) lets the workers run every queued job, waits for them, and
//! then drops the requests without calling their callbacks.
//!
//! Threading: submission, completion and cancellation happen in the
//! context's home thread; workers touch a request only between taking it
//! and pushing it onto the completion queue.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::ThreadPoolFn;
use super::workers::{JobQueue, Workers};
use crate::aiocb::{self, AIOCBInfo, BlockAIOCB, BlockCompletionFunc, CompletionFn};
use crate::bh::Bh;
use crate::context::Context;
use crate::coroutine;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::handle::impl_handle;
use crate::mpsc::{MpscNode, MpscQueue};
use crate::thread;
use crate::wait;

/// QEMU's defaults for `thread-pool-min` / `thread-pool-max`.
pub(crate) const DEFAULT_MIN_THREADS: usize = 0;
pub(crate) const DEFAULT_MAX_THREADS: usize = 64;
/// Workers above `min` exit after this long without work (QEMU: 10 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

const QUEUED: u32 = 0;
const ACTIVE: u32 = 1;
const DONE: u32 = 2;

const POOL_MAGIC_LIVE: u32 = 0x5450_4c41; // "TPLA"
const POOL_MAGIC_DEAD: u32 = 0x5450_4444; // "TPDD"

// A freed pool is detected while its memory is not reused.
impl_handle! { AioPool = "ThreadPoolAio", magic: POOL_MAGIC_LIVE, POOL_MAGIC_DEAD,
    freed: "was already freed", invalid: "is not a valid pool";
    #[inline(always)]
    fn is_usable(&self) -> bool { self.context().is_current_fork() }
    fn unusable(&self) -> Misuse { crate::fork::forked("ThreadPoolAio") }
}

/// A request: QEMU's `ThreadPoolElementAio`. Allocated by `qemu_aio_get`
/// (calloc) with [`AIOCB_INFO`]; the head is C-visible.
#[repr(C)]
struct Element {
    common: BlockAIOCB,
    /// The pool, or null once the pool was freed. Home thread only.
    pool: Cell<*const AioPool>,
    func: ThreadPoolFn,
    arg: *mut c_void,
    state: AtomicU32,
    ret: AtomicI32,
    /// Request-queue links, only touched under the workers' lock.
    prev: Cell<*mut Element>,
    next: Cell<*mut Element>,
    /// Completion-queue link.
    done_next: crate::atomics::AtomicPtr<Element>,
}

impl MpscNode for Element {
    fn next(&self) -> &crate::atomics::AtomicPtr<Element> {
        &self.done_next
    }
}

/// QEMU's `thread_pool_aiocb_info`.
static AIOCB_INFO: AIOCBInfo = AIOCBInfo {
    cancel_async: Some(cancel_async),
    aiocb_size: size_of::<Element>(),
};

/// A request pointer handed between threads.
pub(crate) struct ElemPtr(*mut Element);
// SAFETY: a request is used by one thread at a time: its submitter until it
// is queued, then the worker that took it (under the lock), then the home
// thread again after the completion queue's acquire.
unsafe impl Send for ElemPtr {}

/// The request queue: an intrusive FIFO, so cancelling unlinks in O(1).
pub(crate) struct AioQueue {
    head: *mut Element,
    tail: *mut Element,
    len: usize,
}
// SAFETY: only used under the workers' lock.
unsafe impl Send for AioQueue {}

impl AioQueue {
    /// # Safety
    /// `e` is a live request in no queue.
    unsafe fn push_back(&mut self, e: *mut Element) {
        // SAFETY: live per the caller; links are ours under the lock.
        let er = unsafe { &*e };
        er.prev.set(self.tail);
        er.next.set(ptr::null_mut());
        if self.tail.is_null() {
            self.head = e;
        } else {
            // SAFETY: queued requests are alive.
            unsafe { &*self.tail }.next.set(e);
        }
        self.tail = e;
        self.len += 1;
    }

    /// # Safety
    /// `e` is a live request in this queue.
    unsafe fn unlink(&mut self, e: *mut Element) {
        // SAFETY: live per the caller; links are ours under the lock.
        let er = unsafe { &*e };
        let (prev, next) = (er.prev.get(), er.next.get());
        if prev.is_null() {
            self.head = next;
        } else {
            // SAFETY: queued requests are alive.
            unsafe { &*prev }.next.set(next);
        }
        if next.is_null() {
            self.tail = prev;
        } else {
            // SAFETY: as above.
            unsafe { &*next }.prev.set(prev);
        }
        self.len -= 1;
    }
}

/// What the workers share with the home thread outside the lock.
pub(crate) struct AioShared {
    done: MpscQueue<Element>,
    bh: AtomicPtr<Bh>,
}

impl AioShared {
    /// Hands a DONE request to the completion BH.
    fn complete(&self, e: *mut Element) {
        // SAFETY: the request stays alive (the pool's reference) until the
        // completion BH has taken it; it is in no completion queue yet.
        unsafe { self.done.push(e) };
        // SAFETY: the BH is deleted only after every worker exited.
        let bh = unsafe { &*self.bh.load(Ordering::Acquire) };
        if let Err(m) = bh.schedule(false, fatal::LazyApiCall::ACTIVE) {
            // A worker thread, inside no API call: name the function whose
            // request it is completing.
            fatal::die("thread_pool_submit_aio", &m.0);
        }
    }
}

impl JobQueue for AioQueue {
    type Job = ElemPtr;
    type Shared = AioShared;

    fn pop(&mut self) -> Option<ElemPtr> {
        let e = self.head;
        if e.is_null() {
            return None;
        }
        // SAFETY: the head is a queued, live request.
        unsafe { self.unlink(e) };
        // SAFETY: as above.
        unsafe { &*e }.state.store(ACTIVE, Ordering::Relaxed);
        Some(ElemPtr(e))
    }

    fn queued(&self) -> usize {
        self.len
    }

    fn run(shared: &AioShared, job: ElemPtr) {
        let e = job.0;
        // SAFETY: ACTIVE requests are alive and not touched by the home
        // thread (cancel leaves them alone).
        let er = unsafe { &*e };
        // SAFETY: the C caller submitted `func` for `arg`.
        let ret = unsafe { (er.func)(er.arg) };
        er.ret.store(ret, Ordering::Relaxed);
        er.state.store(DONE, Ordering::Release);
        shared.complete(e);
    }
}

/// `ThreadPoolAio`.
pub(crate) struct AioPool {
    magic: AtomicU32,
    ctx: *const Context,
    workers: Arc<Workers<AioQueue>>,
    /// Completed requests taken off the completion queue and not reported
    /// yet. Only touched by the completion BH (the polling thread) and by
    /// `free`.
    pending: RefCell<VecDeque<*mut Element>>,
}

// SAFETY: `ctx` outlives the pool (freed by its teardown, or by the user
// before it); `pending` is touched only by the context's single polling
// thread and by `free`, which owns the pool; the rest is thread-safe.
unsafe impl Send for AioPool {}
// SAFETY: as above.
unsafe impl Sync for AioPool {}

unsafe extern "C" fn completion_bh(opaque: *mut c_void) {
    // SAFETY: the BH's opaque is its pool, alive until the BH is deleted.
    let pool = unsafe { &*opaque.cast::<AioPool>() };
    pool.run_completions();
}

/// `AIOCBInfo::cancel_async` of pool requests (`bdrv_aio_cancel_async`).
unsafe extern "C" fn cancel_async(acb: *mut BlockAIOCB) {
    let e = acb.cast::<Element>();
    // SAFETY: validated by bdrv_aio_cancel_async: a live pool request.
    let pool = unsafe { &*e }.pool.get();
    if pool.is_null() {
        return; // orphaned by thread_pool_free_aio: nothing will run
    }
    // SAFETY: a request's pool is alive while the pointer is set.
    let pool = unsafe { &*pool };
    let mut st = pool.workers.lock();
    // SAFETY: live, see above.
    let er = unsafe { &*e };
    if er.state.load(Ordering::Relaxed) != QUEUED {
        return;
    }
    // SAFETY: QUEUED requests are in the queue; we hold the lock.
    unsafe { st.queue.unlink(e) };
    er.ret.store(-libc::ECANCELED, Ordering::Relaxed);
    er.state.store(DONE, Ordering::Release);
    drop(st);
    pool.workers.shared.complete(e);
}

/// Converts a stored completion callback.
fn completion_fn(cb: *mut BlockCompletionFunc) -> Option<CompletionFn> {
    if cb.is_null() {
        None
    } else {
        // SAFETY: non-null `BlockCompletionFunc *` is a C function
        // `void (void *, int)`, ABI-identical to `CompletionFn`.
        Some(unsafe { std::mem::transmute::<*mut BlockCompletionFunc, CompletionFn>(cb) })
    }
}

impl AioPool {
    /// A pool for `ctx` with the given thread limits, and its completion BH.
    /// Fails if one of the `min` workers cannot be started.
    pub(crate) fn new(ctx: &Context, min: usize, max: usize) -> MisuseResult<*mut AioPool> {
        let shared = AioShared {
            done: MpscQueue::new(),
            bh: AtomicPtr::new(ptr::null_mut()),
        };
        let queue = AioQueue {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        };
        // Idle workers started here never look at `shared.bh` (only a
        // finished job does, and none can be queued before `new` returns).
        let workers = Workers::new(queue, shared, min, max, Some(IDLE_TIMEOUT))?;
        let pool = Box::into_raw(Box::new(AioPool {
            magic: AtomicU32::new(POOL_MAGIC_LIVE),
            ctx: ptr::from_ref(ctx),
            workers,
            pending: RefCell::new(VecDeque::new()),
        }));
        let bh = ctx.bh_new(
            completion_bh,
            pool.cast(),
            c"thread_pool_completion_bh".as_ptr(),
            ptr::null_mut(),
        );
        // SAFETY: just allocated.
        unsafe { &*pool }
            .workers
            .shared
            .bh
            .store(bh, Ordering::Release);
        Ok(pool)
    }

    pub(crate) fn context(&self) -> &Context {
        // SAFETY: the context outlives its pools (see `Sync` above).
        unsafe { &*self.ctx }
    }

    /// `thread_pool_update_params`.
    pub(crate) fn set_limits(&self, min: usize, max: usize) -> MisuseResult<()> {
        self.workers.set_limits(min, max)
    }

    /// Queues `func(arg)`; `cb(opaque, ret)` runs later from the BH.
    pub(crate) fn submit(
        &self,
        func: ThreadPoolFn,
        arg: *mut c_void,
        cb: Option<CompletionFn>,
        opaque: *mut c_void,
    ) -> MisuseResult<*mut BlockAIOCB> {
        let cb = cb.map_or(ptr::null_mut(), |f| f as *mut BlockCompletionFunc);
        // SAFETY: a static info.
        let acb = unsafe { aiocb::aio_get(&AIOCB_INFO, ptr::null_mut(), cb, opaque) }?;
        let e = acb.cast::<Element>();
        // SAFETY: `aio_get` allocated `size_of::<Element>()` bytes for us.
        unsafe {
            e.write(Element {
                common: acb.read(),
                pool: Cell::new(ptr::from_ref(self)),
                func,
                arg,
                state: AtomicU32::new(QUEUED),
                ret: AtomicI32::new(0),
                prev: Cell::new(ptr::null_mut()),
                next: Cell::new(ptr::null_mut()),
                done_next: crate::atomics::AtomicPtr::new(ptr::null_mut()),
            })
        };
        // SAFETY: a fresh request in no queue.
        self.workers.submit(|q| unsafe { q.push_back(e) })?;
        Ok(acb)
    }

    /// Moves the completion queue into `pending` (completion order).
    fn take_done(&self, pending: &mut VecDeque<*mut Element>) {
        let mut e = self.workers.shared.done.take_all_fifo();
        while !e.is_null() {
            pending.push_back(e);
            // SAFETY: taken requests are alive; read the link before
            // anything may reuse it (nothing can: they are DONE).
            e = unsafe { &*e }
                .done_next
                .load(crate::atomics::Ordering::Relaxed);
        }
    }

    /// The completion BH: report every completed request, oldest first.
    fn run_completions(&self) {
        loop {
            let next = {
                let mut pending = self.pending.borrow_mut();
                if pending.is_empty() {
                    self.take_done(&mut pending);
                }
                pending.pop_front().map(|e| (e, !pending.is_empty()))
            };
            let Some((e, more)) = next else { break };
            // SAFETY: a DONE request, alive until the unref below.
            let er = unsafe { &*e };
            if let Some(cb) = completion_fn(er.common.cb) {
                let ret = er.ret.load(Ordering::Relaxed);
                // SAFETY: the BH lives as long as the pool.
                let bh = unsafe { &*self.workers.shared.bh.load(Ordering::Relaxed) };
                if more {
                    // If cb waits in aio_poll for a request reported after
                    // it, the nested BH run reports that one.
                    let _ = bh.schedule(false, fatal::LazyApiCall::ACTIVE);
                }
                // SAFETY: the C caller registered `cb` for `opaque`; no
                // borrow or lock is held.
                unsafe { cb(er.common.opaque, ret) };
                // The BH is deliberately not cancelled afterwards (QEMU
                // does): a worker may reschedule it from another thread
                // while it is still linked, and only the unlinked -> linked
                // edge wakes a sleeping loop. An extra run finds nothing.
            }
            // SAFETY: drops the pool's reference (taken by qemu_aio_get).
            match unsafe { aiocb::aio_unref(e.cast()) } {
                // Someone (bdrv_aio_cancel) may wait for the count to drop.
                Ok(left) if left > 0 => wait::kick(),
                Ok(_) => {}
                Err(m) => fatal::die_here(&m.0),
            }
        }
    }

    /// `thread_pool_free_aio`: runs what is queued, waits for the workers,
    /// drops the unreported requests without calling back, frees the pool.
    ///
    /// # Safety
    /// `pool` came from [`AioPool::new`], is not used again, and is not
    /// running its completion BH.
    pub(crate) unsafe fn free(pool: *mut AioPool) {
        // SAFETY: live and ours per the caller.
        let p = unsafe { &*pool };
        if let Err(m) = p.workers.shutdown() {
            fatal::die_here(&m.0);
        }
        // SAFETY: no worker is left to schedule it.
        let bh = unsafe { &*p.workers.shared.bh.load(Ordering::Acquire) };
        if let Err(m) = bh.delete() {
            fatal::die_here(&m.0);
        }
        let mut pending = p.pending.take();
        p.take_done(&mut pending);
        for e in pending {
            // SAFETY: DONE requests holding the pool's reference.
            unsafe { &*e }.pool.set(ptr::null());
            // SAFETY: drops that reference.
            if let Err(m) = unsafe { aiocb::aio_unref(e.cast()) } {
                fatal::die_here(&m.0);
            }
        }
        p.magic.store(POOL_MAGIC_DEAD, Ordering::Relaxed);
        // SAFETY: ours per the caller; nothing references it any more.
        drop(unsafe { Box::from_raw(pool) });
    }
}

/// A context's own pool and its `thread-pool-min/max` (one field of
/// [`Context`]). The pool is created on first use and freed with the
/// context.
pub(crate) struct ContextPool {
    /// (min, max); also held while the pool is created, so that a
    /// concurrent `aio_context_set_thread_pool_params` is not lost.
    params: Mutex<(usize, usize)>,
    pool: AtomicPtr<AioPool>,
}

impl Default for ContextPool {
    fn default() -> Self {
        ContextPool {
            params: Mutex::new((DEFAULT_MIN_THREADS, DEFAULT_MAX_THREADS)),
            pool: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

impl ContextPool {
    /// `aio_get_thread_pool`: the context's pool, created on first use.
    /// Fails if the pool's minimum of workers cannot be started.
    pub(crate) fn get_or_create(&self, ctx: &Context) -> MisuseResult<&AioPool> {
        let mut pool = self.pool.load(Ordering::Acquire);
        if pool.is_null() {
            let params = self.params.lock();
            pool = self.pool.load(Ordering::Acquire);
            if pool.is_null() {
                pool = AioPool::new(ctx, params.0, params.1)?;
                self.pool.store(pool, Ordering::Release);
            }
        }
        // SAFETY: published pools live until the context's teardown.
        Ok(unsafe { &*pool })
    }

    /// Whether `pool` is this context's own pool.
    pub(crate) fn owns(&self, pool: &AioPool) -> bool {
        ptr::eq(self.pool.load(Ordering::Acquire), pool)
    }

    /// The limits `thread_pool_update_params` applies.
    pub(crate) fn params(&self) -> (usize, usize) {
        *self.params.lock()
    }

    /// `aio_context_set_thread_pool_params`: Err(message) if invalid.
    pub(crate) fn set_params(&self, min: i64, max: i64) -> Result<(), String> {
        if min < 0
            || max <= 0
            || min > max
            || min > i64::from(c_int::MAX)
            || max > i64::from(c_int::MAX)
        {
            return Err(format!(
                "bad thread-pool-min/thread-pool-max values: min {min}, max {max} \
                 (need 0 <= min <= max, 1 <= max <= INT_MAX)"
            ));
        }
        let mut params = self.params.lock();
        *params = (min as usize, max as usize);
        let pool = self.pool.load(Ordering::Acquire);
        if !pool.is_null() {
            // SAFETY: published pools live until the context's teardown.
            if let Err(m) = unsafe { &*pool }.set_limits(min as usize, max as usize) {
                return Err(m.0.into_owned());
            }
        }
        Ok(())
    }

    /// Context teardown: frees the pool (waiting for its jobs; no callback
    /// runs afterwards).
    pub(crate) fn teardown(&self) {
        let pool = self.pool.swap(ptr::null_mut(), Ordering::AcqRel);
        if !pool.is_null() {
            // SAFETY: the context is being destroyed, so nothing polls it
            // (no completion BH is running) and nobody submits any more.
            unsafe { AioPool::free(pool) };
        }
    }
}

/// `thread_pool_submit_aio`: on the current context's pool.
pub(crate) fn submit_aio(
    func: ThreadPoolFn,
    arg: *mut c_void,
    cb: Option<CompletionFn>,
    opaque: *mut c_void,
) -> MisuseResult<*mut BlockAIOCB> {
    // SAFETY: a non-null current context is alive while bound/main.
    let Some(ctx) = (unsafe { thread::current_context().as_ref() }) else {
        return Err(Misuse::new(
            "this thread has no current AioContext (bind one with qemu_set_current_aio_context, \
             run qemu_init_main_loop, or hold the BQL)",
        ));
    };
    ctx.check_fork_as("the current AioContext (and its thread pool)")?;
    ctx.thread_pool()
        .get_or_create(ctx)?
        .submit(func, arg, cb, opaque)
}

/// Where `thread_pool_submit_co` waits.
struct CoWait {
    co: *const coroutine::CoBox,
    ret: c_int,
}

unsafe extern "C" fn co_done(opaque: *mut c_void, ret: c_int) {
    let w = opaque.cast::<CoWait>();
    // SAFETY: the CoWait on the yielded coroutine's stack, alive until the
    // coroutine resumes (which may happen inside `aio_co_wake`, so no
    // reference to it is kept across that call).
    let co = unsafe {
        (*w).ret = ret;
        (*w).co
    };
    // SAFETY: the coroutine is alive: it is waiting for this.
    if let Err(m) = coroutine::aio_co_wake(unsafe { &*co }) {
        fatal::die_here(&m.0);
    }
}

/// `thread_pool_submit_co`: yields until `func` ran; returns its result.
pub(crate) fn submit_co(func: ThreadPoolFn, arg: *mut c_void) -> MisuseResult<c_int> {
    let co = coroutine::require_current("thread_pool_submit_co")?;
    let mut w = CoWait {
        co: ptr::from_ref(co),
        ret: -libc::EINPROGRESS,
    };
    submit_aio(func, arg, Some(co_done), ptr::from_mut(&mut w).cast())?;
    coroutine::yield_now()?;
    Ok(w.ret)
}

/// The context a request completes in, if it is one of ours.
///
/// # Safety
/// `acb` is a live request.
pub(crate) unsafe fn request_context<'a>(acb: *mut BlockAIOCB) -> Option<&'a Context> {
    // SAFETY: live per the caller.
    if !ptr::eq(unsafe { (*acb).aiocb_info }, &AIOCB_INFO) {
        return None;
    }
    // SAFETY: one of ours, so an Element.
    let pool = unsafe { &*acb.cast::<Element>() }.pool.get();
    // SAFETY: set only while the pool is alive.
    unsafe { pool.as_ref() }.map(|p| {
        // SAFETY: the context outlives its pool.
        unsafe { &*p.ctx }
    })
}
