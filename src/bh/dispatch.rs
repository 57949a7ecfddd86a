//! BH dispatch on a context (`aio_bh_poll`), BH allocation and scheduling
//! onto the context's queue, the BH part of `aio_compute_timeout`, and the
//! BHs' share of context teardown.
//!
//! A context keeps one [`BhDispatch`]: the registry of the BHs allocated
//! with `aio_bh_new*` and not freed yet (so teardown can report and free
//! the ones never deleted), the run list (the BHs taken from the queue
//! and not dispatched yet) and the local list. See `bh/mod.rs` for the
//! flags and the dispatch order.
//!
//! The local list: a BH scheduled by the thread that is in the context's
//! loop right now (`thread::in_loop_of`: a callback rescheduling its own BH,
//! a handler scheduling one) is linked there with plain loads and stores
//! instead of the atomic queue: no CAS, no fence, no wakeup check (the only
//! thread that could sleep on the context is the caller, which looks at
//! this list before it waits: `bh_timeout`). Its PENDING edge is still
//! the flags word's RMW, so it races correctly with other threads'
//! `qemu_bh_schedule`. If another thread has announced that it may sleep on
//! the context (`NotifyState::is_armed`: a GLib loop of another thread in
//! its poll), the BH takes the queue and the wakeup check as before.
//! `aio_bh_poll` appends the queue's batch and then the local list to the
//! run list; leaving the loop (the last `LoopGuard`) moves the local list
//! onto the run list, so a BH the thread schedules after that, through the
//! queue, still runs after it (FIFO per thread).

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::{
    BH_DELETED, BH_IDLE, BH_ONESHOT, BH_PENDING, BH_SCHEDULED, Bh, BhFn, MemReentrancyGuard,
    NOT_REGISTERED,
};
use crate::context::{Context, LoopGuard};
use crate::fatal::{self, LazyApiCall};
use crate::mpsc::{MpscNode, MpscQueue};

/// How long a blocked loop may leave an idle BH waiting (QEMU: 10 ms).
const IDLE_BH_TIMEOUT_NS: i64 = 10_000_000;

/// The BHs allocated with `aio_bh_new*` and not freed yet, so that teardown
/// can report and free the ones never deleted. Each BH knows its slot.
#[derive(Default)]
struct BhRegistry(Vec<*mut Bh>);
// SAFETY: the pointers are only dereferenced by the thread holding the lock
// (to update slots) or by teardown, which owns every BH.
unsafe impl Send for BhRegistry {}

/// A context's BH bookkeeping besides its queue.
pub(crate) struct BhDispatch {
    registry: Mutex<BhRegistry>,
    /// The BHs taken from the queue and not dispatched yet, in order: the
    /// rest of the current `aio_bh_poll` batch, followed by batches that
    /// nested calls appended. Linked through the BHs' own `next`. Only
    /// touched by the thread polling the context (a [`LoopGuard`] holder)
    /// or by teardown.
    run_head: Cell<*mut Bh>,
    run_tail: Cell<*mut Bh>,
    /// BHs scheduled from inside the loop and not taken by `aio_bh_poll`
    /// yet, in order (module docs). Same rule as the run list.
    local_head: Cell<*mut Bh>,
    local_tail: Cell<*mut Bh>,
}

impl BhDispatch {
    pub(crate) fn new() -> Self {
        BhDispatch {
            registry: Mutex::new(BhRegistry::default()),
            run_head: Cell::new(ptr::null_mut()),
            run_tail: Cell::new(ptr::null_mut()),
            local_head: Cell::new(ptr::null_mut()),
            local_tail: Cell::new(ptr::null_mut()),
        }
    }

    /// Appends the chain `head..=tail` (linked through `next`) to the run
    /// list. The caller is the loop thread (or teardown).
    #[inline(always)]
    fn append_run(&self, head: *mut Bh, tail: *mut Bh) {
        if head.is_null() {
            return;
        }
        let run_tail = self.run_tail.get();
        if run_tail.is_null() {
            self.run_head.set(head);
        } else {
            // SAFETY: the tail is linked (PENDING), so only the loop thread
            // touches its link.
            unsafe {
                (*run_tail)
                    .next()
                    .store(head, crate::atomics::Ordering::Relaxed)
            };
        }
        self.run_tail.set(tail);
    }

    /// Links a BH whose PENDING flag the caller just set at the end of the
    /// local list. The caller is in the context's loop (module docs).
    #[inline(always)]
    fn push_local(&self, bh: *mut Bh) {
        // SAFETY: PENDING went 0 -> 1 for the caller, so the BH is in no
        // list and nobody else touches its link.
        unsafe {
            (*bh)
                .next()
                .store(ptr::null_mut(), crate::atomics::Ordering::Relaxed)
        };
        let tail = self.local_tail.get();
        if tail.is_null() {
            self.local_head.set(bh);
        } else {
            // SAFETY: the tail is linked, so only the loop thread touches
            // its link.
            unsafe { (*tail).next().store(bh, crate::atomics::Ordering::Relaxed) };
        }
        self.local_tail.set(bh);
    }

    /// Moves the local list to the end of the run list. The loop thread,
    /// when it leaves the loop (see the module docs), and `aio_bh_poll`.
    #[inline(always)]
    pub(crate) fn flush_local(&self) {
        let head = self.local_head.get();
        if !head.is_null() {
            self.append_run(head, self.local_tail.get());
            self.local_head.set(ptr::null_mut());
            self.local_tail.set(ptr::null_mut());
        }
    }

    /// Unregisters (if registered) and frees a BH the loop has unlinked.
    ///
    /// # Safety
    /// `bh` belongs to this dispatch state's context, is unlinked, and is
    /// not used again.
    unsafe fn free_bh(&self, bh: *mut Bh) {
        // SAFETY: alive until freed below.
        let slot = unsafe { (*bh).registry_slot.load(Ordering::Relaxed) };
        if slot != NOT_REGISTERED {
            let mut reg = self.registry.lock();
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

    /// Context teardown's BH part: drains the queue (a BH still scheduled
    /// is fatal, reported for `func`; deleted and oneshot ones are freed),
    /// then warns about and frees every BH never deleted.
    ///
    /// # Safety
    /// The context (owner of `self` and `queue`) is being torn down: nobody
    /// else uses it or its BHs.
    pub(crate) unsafe fn teardown(&mut self, queue: &MpscQueue<Bh>) {
        // Linked BHs (the run list, the local list, then the queue): scheduled
        // ones are a bug in the caller (QEMU aborts too); deleted and oneshot
        // ones are ours to free.
        self.flush_local();
        let (batch, batch_tail) = queue.take_all_fifo_with_tail();
        self.append_run(batch, batch_tail);
        let mut bh = self.run_head.replace(ptr::null_mut());
        self.run_tail.set(ptr::null_mut());
        while !bh.is_null() {
            // SAFETY: linked BHs are alive and now ours.
            let b = unsafe { &*bh };
            let next = b.next().load(crate::atomics::Ordering::Relaxed);
            let flags = b.flags.swap(0, Ordering::AcqRel);
            if flags & (BH_SCHEDULED | BH_DELETED) == BH_SCHEDULED {
                fatal::die_here(&format!(
                    "BH '{}' is still scheduled; delete or cancel it before freeing its context",
                    b.describe()
                ));
            }
            if flags & (BH_DELETED | BH_ONESHOT) != 0 {
                // SAFETY: unlinked; deleted or oneshot, so nobody uses it.
                unsafe { self.free_bh(bh) };
            }
            bh = next;
        }

        // BHs allocated and never deleted: QEMU leaks them silently; we say
        // so once each and free them.
        let leaked = std::mem::take(&mut self.registry.get_mut().0);
        for bh in leaked {
            // SAFETY: registered BHs are alive; the registry is emptied, so
            // free them directly.
            let name = unsafe { &*bh }.describe();
            fatal::warn_here(&format!(
                "BH '{name}' was never deleted with qemu_bh_delete; freeing it"
            ));
            // SAFETY: unlinked (queue drained) and no longer registered.
            unsafe { Bh::free(bh) };
        }
    }
}

impl BhDispatch {
    /// Whether a registered BH was never passed to `qemu_bh_delete` (what
    /// teardown warns about; `AIOCTX_DUMP_ON_LEAK` dumps the context first).
    pub(crate) fn any_undeleted(&self) -> bool {
        self.registry.lock().0.iter().any(|&bh| {
            // SAFETY: registered BHs are alive; the lock is held.
            unsafe { &*bh }.flags.load(Ordering::Acquire) & BH_DELETED == 0
        })
    }
}

impl Context {
    /// Links a BH whose PENDING flag the caller just set, and wakes the
    /// poller if it sleeps (see `notify.rs` for why this cannot be lost).
    /// `api`: see [`Context::notify_from`].
    #[inline]
    pub(crate) fn enqueue(&self, bh: &Bh, api: LazyApiCall) {
        if crate::thread::in_loop_of(self) && !self.notify_state().is_armed() {
            // The caller is in this context's loop and no other thread said
            // it may sleep on it: the local list (module docs).
            self.bh_dispatch().push_local(ptr::from_ref(bh).cast_mut());
            return;
        }
        // SAFETY: the caller flipped PENDING 0 -> 1, so the BH is in no queue,
        // and it stays alive until the loop dequeues it (only the loop frees).
        unsafe { self.bh_queue().push(ptr::from_ref(bh).cast_mut()) };
        if self.notify_state().must_kick_after_push() {
            self.kick_from(api);
        }
    }

    /// Links a BH without waking the poller (used for deletions).
    pub(crate) fn enqueue_quietly(&self, bh: &Bh) {
        // SAFETY: as in `enqueue`.
        unsafe { self.bh_queue().push(ptr::from_ref(bh).cast_mut()) };
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
        let mut reg = self.bh_dispatch().registry.lock();
        // SAFETY: `bh` is fresh; its slot is only touched under this lock.
        unsafe { (*bh).registry_slot.store(reg.0.len(), Ordering::Relaxed) };
        reg.0.push(bh);
        bh
    }

    /// `aio_bh_schedule_oneshot_full`: allocate, schedule, free after running.
    #[inline]
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
        self.enqueue(unsafe { &*bh }, LazyApiCall::ACTIVE);
    }

    /// Unlinks the next BH to dispatch, or None when all are done.
    #[inline]
    fn next_run_bh(&self) -> Option<*mut Bh> {
        let bh = self.bh_dispatch().run_head.get();
        if bh.is_null() {
            return None;
        }
        // Read the link before PENDING is cleared: after that a producer may
        // push the BH again and rewrite it.
        // SAFETY: a linked BH is alive (only the loop frees, after unlinking).
        let next = unsafe { (*bh).next().load(crate::atomics::Ordering::Relaxed) };
        self.bh_dispatch().run_head.set(next);
        if next.is_null() {
            self.bh_dispatch().run_tail.set(ptr::null_mut());
        }
        Some(bh)
    }

    /// `aio_bh_poll`: runs the BHs scheduled before this call, in scheduling
    /// order, after what outer (nesting) calls have not run yet. Returns
    /// whether a non-idle BH ran. The caller holds a [`LoopGuard`].
    ///
    /// Inline up to the check that some BH is linked (three loads), so that
    /// an iteration without BHs (an fd event, a timer) makes no call here.
    #[inline(always)]
    pub(crate) fn bh_poll(&self, guard: &LoopGuard<'_>) -> bool {
        let dispatch = self.bh_dispatch();
        if dispatch.run_head.get().is_null()
            && dispatch.local_head.get().is_null()
            && self.bh_queue().is_empty_relaxed()
        {
            return false;
        }
        self.bh_poll_linked(guard)
    }

    /// [`Context::bh_poll`] once a BH was seen linked.
    #[inline(never)]
    fn bh_poll_linked(&self, guard: &LoopGuard<'_>) -> bool {
        let (batch, batch_tail) = self.bh_queue().take_all_fifo_with_tail();
        let dispatch = self.bh_dispatch();
        dispatch.append_run(batch, batch_tail);
        dispatch.flush_local();
        if dispatch.run_head.get().is_null() {
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
                unsafe { self.bh_dispatch().free_bh(bh) };
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
        if scan(self.bh_dispatch().run_head.get()) {
            return 0;
        }
        if scan(self.bh_dispatch().local_head.get()) {
            return 0;
        }
        if scan(self.bh_queue().peek()) {
            return 0;
        }
        timeout
    }

    /// Every live BH with its flags, for `aioctx_context_dump`: those of the
    /// registry (`aio_bh_new*`, deleted ones not freed yet included), then
    /// the oneshot ones waiting in the run list and the queue, in dispatch
    /// order. A oneshot BH whose callback is running is in neither.
    ///
    /// # Safety
    /// The caller is the thread in the context's loop (holds a
    /// [`LoopGuard`]) or owns the context (teardown): the only thread that
    /// frees BHs or touches the run list.
    pub(crate) unsafe fn bh_snapshot(&self) -> Vec<(String, u32)> {
        // Copied out so that no lock is held while naming them (dladdr).
        let registered: Vec<*mut Bh> = self.bh_dispatch().registry.lock().0.clone();
        let mut out = Vec::with_capacity(registered.len());
        for bh in registered {
            // SAFETY: registered BHs are freed only by the caller's thread.
            let b = unsafe { &*bh };
            out.push((b.describe(), b.flags.load(Ordering::Acquire)));
        }
        let oneshots = |mut bh: *mut Bh, out: &mut Vec<(String, u32)>| {
            while !bh.is_null() {
                // SAFETY: linked BHs are alive until the caller's thread
                // unlinks them; queued links were published by the push CAS
                // that `peek` acquired.
                let b = unsafe { &*bh };
                let flags = b.flags.load(Ordering::Acquire);
                if flags & BH_ONESHOT != 0 {
                    out.push((b.describe(), flags));
                }
                bh = b.next().load(crate::atomics::Ordering::Relaxed);
            }
        };
        oneshots(self.bh_dispatch().run_head.get(), &mut out);
        // The queue is newest first: reverse its part for dispatch order.
        let queued_from = out.len();
        oneshots(self.bh_queue().peek(), &mut out);
        out[queued_from..].reverse();
        oneshots(self.bh_dispatch().local_head.get(), &mut out);
        out
    }

    /// Whether a non-idle BH is scheduled: a blocking poll would not wait.
    #[inline]
    pub(crate) fn bh_ready(&self, guard: &LoopGuard<'_>) -> bool {
        self.bh_timeout(guard) == 0
    }

    /// Whether a BH is linked and not taken by `aio_bh_poll` yet (in the
    /// queue or the local list), scheduled or not: the busy-poll loop's
    /// cheap "something came".
    #[inline]
    pub(crate) fn bh_linked(&self, _guard: &LoopGuard<'_>) -> bool {
        !self.bh_queue().is_empty() || !self.bh_dispatch().local_head.get().is_null()
    }

    /// Whether any BH (idle ones included) is scheduled.
    pub(crate) fn bh_any_scheduled(&self, guard: &LoopGuard<'_>) -> bool {
        self.bh_timeout(guard) >= 0
    }
}
