//! Timer lists (QEMU's `QEMUTimerList`) and the per-clock registry behind
//! the `qemu_clock_*` functions.
//!
//! A [`TimerList`] holds the armed timers of one clock: a min-heap behind a
//! short mutex plus a lock-free copy of the earliest deadline. Every context
//! embeds four of them ([`TimerLists`], one per clock) and its public `tlg`
//! member points at them, so QEMU's inline `aio_timer_init(ctx, ...)`, which
//! passes `&ctx->tlg` to `timer_init_full`, lands on the context's lists.
//! A list may also stand alone (`timerlist_new`, `timerlistgroup_init`):
//! then it has no context, its owner runs it (`timerlist_run_timers`) and is
//! told about earlier deadlines through its notify callback.
//!
//! Every list that has (had) timers is in a global registry, so that
//! `qemu_clock_enable`, `qemu_clock_notify` and `qemu_clock_deadline_ns_all`
//! reach all lists of a clock. A list leaves the registry before its memory
//! goes (context teardown, `timerlist_free`).

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::heap::TimerHeap;
use super::{ClockNotifyFn, ClockType, TIMER_MAGIC_ORPHANED, clock};
use crate::aio_poll::soonest_timeout;
use crate::context::Context;
use crate::fatal::{LazyApiCall, Misuse, MisuseResult};
use crate::handle::impl_handle;
use crate::quarantine::{Quarantine, release_box};
use crate::thread;

/// The armed timers of one clock, of a context or standalone.
pub(crate) struct TimerList {
    pub(super) heap: Mutex<TimerHeap>,
    /// The heap's earliest deadline (`i64::MAX` when empty), readable
    /// without the lock; updated with the lock held.
    pub(super) earliest: AtomicI64,
    /// Token of the thread running this list's callbacks, or null (see
    /// [`TimerList::run`]).
    running: AtomicPtr<u8>,
    clock: ClockType,
    /// The context whose loop runs these timers; null for a standalone list
    /// (and for a context's list until its first timer is initialized).
    pub(super) owner: AtomicPtr<Context>,
    /// A standalone list's `QEMUTimerListNotifyCB` and its argument.
    notify: Option<(ClockNotifyFn, *mut c_void)>,
    registered: AtomicBool,
    /// Tells lists from other memory behind a C `QEMUTimerList *`.
    magic: AtomicU32,
    /// Created by `timerlist_new` (so `timerlist_free` may free it).
    standalone: bool,
}

const LIST_MAGIC_LIVE: u32 = 0x544c_5354; // "TLST"
const LIST_MAGIC_DEAD: u32 = 0x544c_4444; // "TLDD"

// A `QEMUTimerList *`: a list this module made, or garbage the magic
// rejects.
impl_handle! { TimerList = "QEMUTimerList", magic: LIST_MAGIC_LIVE, LIST_MAGIC_DEAD,
    freed: "was freed (timerlist_free)", invalid: "is not a valid timer list", aligned: true;

    /// A context's list is valid only while its context is.
    #[inline(always)]
    fn is_usable(&self) -> bool {
        let owner = self.owner.load(Ordering::Acquire);
        // SAFETY: a context's list lives inside the context, which is
        // quarantined a while after it is freed.
        owner.is_null() || unsafe { Context::is_handle(owner) }
    }

    fn unusable(&self) -> Misuse {
        let owner = self.owner.load(Ordering::Acquire);
        // SAFETY: as in `is_usable`.
        match unsafe { Context::from_handle(owner) } {
            Err(m) => m,
            // Not reached: a context never gets usable again.
            Ok(_) => Misuse::new(format!("{} {}", Self::NAME, Self::INVALID)),
        }
    }
}

// SAFETY: the raw pointers are a context (shared across threads by design)
// and a C callback argument the caller promised is usable from the threads
// that arm timers; everything mutable is behind the mutex or atomic.
unsafe impl Send for TimerList {}
// SAFETY: as above.
unsafe impl Sync for TimerList {}

/// Registered lists, for the clock-wide functions (see the module doc).
struct Registered(*const TimerList);
// SAFETY: dereferenced only with the registry lock held; lists unregister
// before they are freed.
unsafe impl Send for Registered {}
static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Freed standalone lists, kept (dead) for a while; see `free_standalone`.
static QUARANTINE: Quarantine<TimerList> = Quarantine::new(release_box);

/// `qemu_init_clocks`' callback, as a pointer (null: none).
static CLOCK_NOTIFY_CB: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

impl TimerList {
    fn new(
        clock: ClockType,
        notify: Option<(ClockNotifyFn, *mut c_void)>,
        standalone: bool,
    ) -> Self {
        TimerList {
            magic: AtomicU32::new(LIST_MAGIC_LIVE),
            standalone,
            heap: Mutex::new(TimerHeap::new()),
            earliest: AtomicI64::new(i64::MAX),
            running: AtomicPtr::new(ptr::null_mut()),
            clock,
            owner: AtomicPtr::new(ptr::null_mut()),
            notify,
            registered: AtomicBool::new(false),
        }
    }

    /// `timerlist_new`: a standalone list, registered. Free it with
    /// [`TimerList::free_standalone`].
    pub(crate) fn new_standalone(
        clock: ClockType,
        notify: Option<ClockNotifyFn>,
        opaque: *mut c_void,
    ) -> *mut TimerList {
        let list = Box::into_raw(Box::new(TimerList::new(
            clock,
            notify.map(|f| (f, opaque)),
            true,
        )));
        // SAFETY: just allocated; it stays put until `free_standalone`.
        unsafe { &*list }.register();
        list
    }

    /// `timerlist_free`: disarms what is armed (marking it orphaned) and
    /// frees the list.
    ///
    /// # Safety
    /// `list` came from [`TimerList::new_standalone`] and is not used after.
    pub(crate) unsafe fn free_standalone(list: *mut TimerList) -> MisuseResult<()> {
        // SAFETY: per the caller.
        let l = unsafe { &*list };
        if !l.standalone {
            return Err(Misuse::new(
                "QEMUTimerList belongs to an AioContext (only timerlist_new's lists may be freed)",
            ));
        }
        l.teardown();
        l.magic.store(LIST_MAGIC_DEAD, Ordering::Release);
        // Timers initialized on the list still point at it: keep the dead
        // shell a while so that using one is reported, not a use after free.
        // SAFETY: `list` is a dead, unregistered box (`new_standalone`)
        // given up here.
        unsafe { QUARANTINE.keep(list) };
        Ok(())
    }

    pub(crate) fn clock(&self) -> ClockType {
        self.clock
    }

    /// Enters the registry the clock-wide functions walk (once).
    #[inline]
    pub(crate) fn register(&self) {
        if self.registered.load(Ordering::Acquire) {
            return;
        }
        let mut registry = REGISTRY.lock();
        if !self.registered.load(Ordering::Relaxed) {
            registry.push(Registered(ptr::from_ref(self)));
            self.registered.store(true, Ordering::Release);
        }
    }

    /// Publishes the heap's earliest deadline; the caller holds the lock.
    #[inline]
    pub(super) fn publish(&self, heap: &TimerHeap) {
        self.earliest.store(heap.earliest(), Ordering::Release);
    }

    /// After an arming moved the earliest deadline earlier: make whoever
    /// runs this list recompute its timeout (QEMU's `timerlist_notify`).
    /// `api`: the calling API function's name if it is not recorded yet
    /// (a leaf call, see `ffi_call_leaf`); it is recorded before anything
    /// that may report with `die_here` or call back into C.
    #[inline(always)]
    pub(crate) fn wake(&self, api: LazyApiCall) {
        let owner = self.owner.load(Ordering::Acquire);
        if !owner.is_null() {
            // SAFETY: a context outlives its lists' use (validated by the
            // arming timer's `list()`).
            wake_owner(unsafe { &*owner }, self.clock, api);
        } else if let Some((cb, opaque)) = self.notify {
            let _call = api.enter();
            // SAFETY: the C caller registered it; no lock is held.
            unsafe { cb(opaque, self.clock.index() as c_int) };
        } else {
            notify_clock_listener(self.clock, api);
        }
    }

    /// Whether a timer is armed (`timerlist_has_timers`).
    pub(crate) fn has_timers(&self) -> bool {
        self.earliest.load(Ordering::Acquire) != i64::MAX
    }

    /// Whether a timer has expired (`timerlist_expired`).
    pub(crate) fn expired(&self) -> bool {
        let earliest = self.earliest.load(Ordering::Acquire);
        earliest != i64::MAX && earliest <= self.clock.now_ns()
    }

    /// Nanoseconds until the earliest deadline (0 if expired), -1 if none
    /// is armed or the clock is disabled (`timerlist_deadline_ns`).
    pub(crate) fn deadline_ns(&self) -> i64 {
        let earliest = self.earliest.load(Ordering::Acquire);
        if earliest == i64::MAX || !self.clock.is_enabled() {
            return -1;
        }
        earliest.saturating_sub(self.clock.now_ns()).max(0)
    }

    /// Runs the expired timers (`timerlist_run_timers`). Returns whether any
    /// ran. The caller is the thread that runs this list.
    pub(crate) fn run_expired(&self) -> bool {
        self.run_expired_count() > 0
    }

    /// [`TimerList::run_expired`], returning how many timers ran.
    pub(crate) fn run_expired_count(&self) -> u64 {
        let earliest = self.earliest.load(Ordering::Acquire);
        if earliest == i64::MAX {
            return 0;
        }
        self.run_if_due(self.clock, earliest)
    }

    /// The part of [`TimerList::run_expired_count`] after the list was seen
    /// armed with `earliest` as its first deadline. `clock` is the list's
    /// own clock, passed so that a caller that knows it reads it directly.
    #[inline(always)]
    fn run_if_due(&self, clock: ClockType, earliest: i64) -> u64 {
        debug_assert_eq!(clock, self.clock);
        if !clock.is_enabled() {
            return 0;
        }
        let now = clock.now_ns();
        if earliest <= now { self.run(now) } else { 0 }
    }

    /// Runs the timers due at `now`, one at a time, with the lock released
    /// around each callback.
    ///
    /// `running` and the clock's `enabled` flag form a Dekker pair with
    /// `qemu_clock_enable(false)`: this thread stores `running` and then
    /// loads `enabled` before each callback; the disabler stores `enabled`
    /// and then loads `running` (all `SeqCst`). So either no further
    /// callback starts here, or the disabler sees us and waits.
    #[inline(never)]
    fn run(&self, now: i64) -> u64 {
        // A callback may poll this context again (nested run): restore the
        // outer value rather than clearing it.
        let outer = self.running.swap(thread::thread_token(), Ordering::SeqCst);
        let mut ran = 0;
        while self.clock.is_enabled() {
            let timer = {
                let mut heap = self.heap.lock();
                let Some(timer) = heap.pop_expired(now) else {
                    break;
                };
                self.publish(&heap);
                timer
            };
            // SAFETY: it was armed, so it is alive (C contract) at least
            // until its callback may free it; nothing of it is used after.
            let (cb, opaque) = unsafe { &*timer }.callback();
            // SAFETY: the C caller registered `cb` for `opaque`; no lock or
            // borrow is held.
            unsafe { cb(opaque) };
            ran += 1;
        }
        self.running.store(outer, Ordering::SeqCst);
        ran
    }

    /// The armed timers, in firing order: deadline (ns) and callback
    /// address (for `aioctx_context_dump`). Any thread; only the lock is
    /// held, no callback runs.
    pub(crate) fn armed(&self) -> Vec<(i64, *mut c_void)> {
        let heap = self.heap.lock();
        let mut armed: Vec<(i64, u64, *mut c_void)> = heap
            .armed()
            // SAFETY: armed timers are alive (C contract) and the list's
            // lock, which keeps them armed, is held.
            .map(|(expire, seq, t)| (expire, seq, unsafe { &*t }.cb.load(Ordering::Relaxed)))
            .collect();
        drop(heap);
        armed.sort_unstable_by_key(|&(expire, seq, _)| (expire, seq));
        armed
            .into_iter()
            .map(|(expire, _, cb)| (expire, cb))
            .collect()
    }

    /// Disarms whatever is still armed (marking those timers orphaned) and
    /// unregisters.
    fn teardown(&self) {
        {
            let mut heap = self.heap.lock();
            heap.drain(|timer| {
                // SAFETY: armed timers are alive (C contract).
                unsafe { &*timer }
                    .magic
                    .store(TIMER_MAGIC_ORPHANED, Ordering::Release);
            });
            self.publish(&heap);
        }
        if self.registered.load(Ordering::Acquire) {
            let mut registry = REGISTRY.lock();
            registry.retain(|r| !ptr::eq(r.0, self));
            self.registered.store(false, Ordering::Release);
        }
    }
}

/// A context's timers, one list per clock.
pub(crate) struct TimerLists {
    lists: [TimerList; super::CLOCK_COUNT],
}

impl Default for TimerLists {
    fn default() -> Self {
        Self::new()
    }
}

impl TimerLists {
    pub(crate) fn new() -> Self {
        TimerLists {
            lists: ClockType::ALL.map(|clock| TimerList::new(clock, None, false)),
        }
    }

    #[inline]
    pub(crate) fn list(&self, clock: ClockType) -> &TimerList {
        &self.lists[clock.index()]
    }

    /// The four lists as `QEMUTimerListGroup` pointers, in clock order.
    pub(crate) fn group_pointers(&self) -> [*mut c_void; super::CLOCK_COUNT] {
        ClockType::ALL.map(|clock| ptr::from_ref(self.list(clock)).cast_mut().cast())
    }

    /// Binds the lists to `ctx`, which contains them: their timers run in
    /// its loop. Called once, when the context is created.
    pub(crate) fn bind(&self, ctx: *const Context) {
        for list in &self.lists {
            list.owner.store(ctx.cast_mut(), Ordering::Release);
        }
    }

    /// Whether any clock has an armed timer: the loop's per-iteration fast
    /// path (four loads, no clock read).
    #[inline(always)]
    fn any_armed(&self) -> bool {
        self.lists
            .iter()
            .any(|l| l.earliest.load(Ordering::Relaxed) != i64::MAX)
    }

    /// Nanoseconds until the earliest deadline of an enabled clock (0 if one
    /// has expired), or -1 when no timer is armed.
    pub(crate) fn deadline_ns(&self) -> i64 {
        if !self.any_armed() {
            return -1;
        }
        self.lists.iter().fold(-1, |deadline, list| {
            soonest_timeout(deadline, list.deadline_ns())
        })
    }

    /// Runs the expired timers of every enabled clock, in deadline order,
    /// with no lock held during callbacks. Returns whether any ran.
    #[cfg(test)]
    pub(crate) fn run_expired(&self, _ctx: &Context) -> bool {
        self.run_expired_count() > 0
    }

    /// [`TimerLists::run_expired`], returning how many timers ran.
    ///
    /// Runs on every loop iteration, so inline up to the check that some
    /// timer is armed (four loads and compares).
    #[inline(always)]
    pub(crate) fn run_expired_count(&self) -> u64 {
        if !self.any_armed() {
            return 0;
        }
        self.run_armed()
    }

    /// [`TimerLists::run_expired_count`] once a timer was seen armed: a
    /// clock with no armed timer costs a load and a compare, and an armed
    /// one reads its clock directly (the clock is a constant here, not the
    /// list's field).
    #[inline(never)]
    fn run_armed(&self) -> u64 {
        let mut ran = 0;
        for (list, clock) in self.lists.iter().zip(ClockType::ALL) {
            let earliest = list.earliest.load(Ordering::Acquire);
            if earliest != i64::MAX {
                ran += list.run_if_due(clock, earliest);
            }
        }
        ran
    }

    /// The armed timers of every clock, by clock then firing order (see
    /// [`TimerList::armed`]).
    pub(crate) fn armed(&self) -> Vec<(ClockType, i64, *mut c_void)> {
        ClockType::ALL
            .iter()
            .flat_map(|&clock| {
                self.list(clock)
                    .armed()
                    .into_iter()
                    .map(move |(expire, cb)| (clock, expire, cb))
            })
            .collect()
    }

    /// Context teardown: disarm whatever is still armed (marking those
    /// timers orphaned) and unregister.
    pub(crate) fn teardown(&self) {
        for list in &self.lists {
            list.teardown();
        }
    }
}

/// After an arming moved `ctx`'s earliest deadline of `clock` earlier: make
/// its poller recompute its timeout. `api`: see [`TimerList::wake`].
#[inline]
fn wake_owner(ctx: &Context, clock: ClockType, api: LazyApiCall) {
    // The thread bound to ctx, when not armed to sleep, is running and will
    // compute a fresh timeout before it next blocks: nothing to do.
    let own_running_loop = ptr::eq(thread::bound_context(), ctx) && !ctx.notify_state().is_armed();
    if !own_running_loop {
        ctx.notify_from(api);
    }
    // Timers of the main context are QEMU's main-loop timers, whose lists
    // call `init_clocks`' callback.
    if ptr::eq(thread::main_context(), ctx) {
        notify_clock_listener(clock, api);
    }
}

/// Calls `init_clocks`' callback, if any. `api`: see [`TimerList::wake`].
fn notify_clock_listener(clock: ClockType, api: LazyApiCall) {
    let cb = CLOCK_NOTIFY_CB.load(Ordering::Acquire);
    if cb.is_null() {
        return;
    }
    // SAFETY: stored by `init_clocks` from a `ClockNotifyFn`.
    let cb = unsafe { std::mem::transmute::<*mut c_void, ClockNotifyFn>(cb) };
    let _call = api.enter();
    // SAFETY: the C caller registered it; no lock is held.
    unsafe { cb(ptr::null_mut(), clock.index() as c_int) };
}

/// `qemu_init_clocks` / `init_clocks`: the clocks need no setup; remembers
/// the callback (NULL: none). Idempotent; a later call replaces it.
pub(crate) fn init_clocks(notify: Option<ClockNotifyFn>) {
    let cb = notify.map_or(ptr::null_mut(), |f| f as *mut c_void);
    CLOCK_NOTIFY_CB.store(cb, Ordering::Release);
}

/// Calls `f` on every registered list of `clock`, registry lock held (so
/// `f` must not call back into C).
fn for_each_list(clock: ClockType, mut f: impl FnMut(&TimerList)) {
    let registry = REGISTRY.lock();
    for r in registry.iter() {
        // SAFETY: registered lists are alive (see `Registered`).
        let list = unsafe { &*r.0 };
        if list.clock == clock {
            f(list);
        }
    }
}

/// `qemu_clock_deadline_ns_all`: the soonest deadline of `clock` over
/// every list (-1: none).
pub(crate) fn clock_deadline_ns_all(clock: ClockType) -> i64 {
    let mut deadline = -1;
    for_each_list(clock, |list| {
        deadline = soonest_timeout(deadline, list.deadline_ns())
    });
    deadline
}

/// Wakes the contexts that have armed timers on `clock`, then the
/// `qemu_init_clocks` listener. Standalone lists' callbacks are not called
/// (they are told about earlier deadlines only, as in QEMU's
/// `timerlist_notify` from arming).
fn wake_all(clock: ClockType) {
    for_each_list(clock, |list| {
        let owner = list.owner.load(Ordering::Acquire);
        if !owner.is_null() && list.has_timers() {
            // SAFETY: the owner outlives its lists' registration.
            unsafe { &*owner }.notify();
        }
    });
    notify_clock_listener(clock, LazyApiCall::ACTIVE);
}

/// `qemu_clock_notify`: every context with timers on `clock` and the
/// `qemu_init_clocks` listener recompute their deadlines.
pub(crate) fn clock_notify(clock: ClockType) {
    wake_all(clock);
}

/// `qemu_clock_enable`.
pub(crate) fn clock_enable(clock: ClockType, enabled: bool) {
    if !clock::set_enabled(clock, enabled) {
        return;
    }
    if enabled {
        wake_all(clock);
    } else {
        wait_for_callbacks(clock);
    }
}

/// Returns once no other thread runs callbacks of `clock` (QEMU waits on
/// each list's `timers_done_ev`). The calling thread's own running
/// callbacks (this may be called from one) are not waited for.
fn wait_for_callbacks(clock: ClockType) {
    let me = thread::thread_token();
    let mut spins = 0u32;
    loop {
        let mut busy = false;
        for_each_list(clock, |list| {
            let running = list.running.load(Ordering::SeqCst);
            busy |= !running.is_null() && running != me;
        });
        if !busy {
            return;
        }
        spins += 1;
        if spins < 100 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
