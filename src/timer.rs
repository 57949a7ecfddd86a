//! Timers and clocks (`qemu/timer.h`): caller-owned `QEMUTimer`s bound to a
//! context and a clock, and each context's timer lists.
//!
//! Every context has one [`TimerList`] per clock: a min-heap of the armed
//! timers (4-ary; see `timer/heap.rs`) behind a short mutex, plus a lock-free
//! copy of the earliest deadline so that `aio_poll` pays four atomic loads,
//! and no lock, when no timer is due.
//!
//! Semantics follow QEMU 10:
//! - a timer's `expire_time` is in ns of its clock, -1 while not pending;
//!   arming clamps negative deadlines to 0;
//! - timers fire from the context's `aio_poll` (after BHs), in deadline
//!   order, ties in arming order; each list is run against the clock value
//!   read once at its start, so a callback that re-arms its timer at or
//!   before that value runs again in the same pass (as in QEMU);
//! - a disabled clock's timers do not fire and do not count in deadlines;
//!   `qemu_clock_enable(type, false)` returns once no callback of that clock
//!   runs in another thread; re-enabling wakes the contexts that have timers
//!   on that clock.
//!
//! Threading: arming, re-arming and deleting work from any thread (a short
//! lock on the list). Arming wakes the owning context (`aio_notify`) only
//! when the list's earliest deadline moved earlier. Callbacks run in the
//! polling thread with no lock held: they may re-arm, delete or free
//! (`timer_free`) their own timer or any other.
//!
//! Misuse: `timer_mod` on memory that was never initialized as a timer (a
//! magic field), on a deinitialized timer, or on a timer copied while armed,
//! aborts with a message. Timers still armed when their context is freed are
//! disarmed and marked orphaned (their memory stays the caller's).

mod clock;
mod heap;

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

pub(crate) use self::clock::{CLOCK_COUNT, ClockType};
use self::heap::{NOT_IN_HEAP, TimerHeap};
use crate::aio_poll::soonest_timeout;
use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread;

/// A C timer callback (`QEMUTimerCB *`), already checked non-NULL.
pub(crate) type TimerFn = unsafe extern "C" fn(opaque: *mut c_void);

/// A C clock notification callback (`QEMUTimerListNotifyCB *`).
pub(crate) type ClockNotifyFn = unsafe extern "C" fn(opaque: *mut c_void, clock_type: c_int);

const TIMER_MAGIC_LIVE: u32 = 0x544d_524c; // "TMRL"
const TIMER_MAGIC_DEAD: u32 = 0x544d_5244; // "TMRD"
const TIMER_MAGIC_ORPHANED: u32 = 0x544d_524f; // "TMRO"

/// The core's view of a caller-owned `QEMUTimer` (same layout, asserted in
/// `ffi/timer.rs`). Every field is atomic because C owns the memory and
/// several threads may touch it: `expire_time`, `seq` and `heap_index` are
/// written only with the owning list's lock held; the others are written by
/// `init`/`deinit`, before the timer is shared.
#[repr(C)]
pub(crate) struct Timer {
    pub(crate) expire_time: AtomicI64,
    pub(crate) ctx: AtomicPtr<Context>,
    pub(crate) cb: AtomicPtr<c_void>,
    pub(crate) opaque: AtomicPtr<c_void>,
    pub(crate) seq: AtomicU64,
    pub(crate) clock: AtomicI32,
    pub(crate) scale: AtomicI32,
    pub(crate) attributes: AtomicI32,
    pub(crate) heap_index: AtomicU32,
    pub(crate) magic: AtomicU32,
}

impl Timer {
    /// `aio_timer_init_with_attrs`: binds the timer to `ctx` and `clock`,
    /// not pending. Refuses to re-initialize a timer that is armed.
    pub(crate) fn init(
        &self,
        ctx: &Context,
        clock: ClockType,
        scale: c_int,
        attributes: c_int,
        cb: TimerFn,
        opaque: *mut c_void,
    ) -> MisuseResult<()> {
        if scale <= 0 {
            return Err(Misuse::new(format!(
                "invalid scale {scale} (use SCALE_NS, SCALE_US or SCALE_MS)"
            )));
        }
        if self.magic.load(Ordering::Acquire) == TIMER_MAGIC_LIVE
            && self.heap_index.load(Ordering::Relaxed) != NOT_IN_HEAP
            && self.is_in_its_heap()
        {
            return Err(Misuse::new(
                "QEMUTimer is armed; timer_del it before initializing it again",
            ));
        }
        ctx.timers.register(ctx);
        self.expire_time.store(-1, Ordering::Relaxed);
        self.ctx
            .store(ptr::from_ref(ctx).cast_mut(), Ordering::Relaxed);
        self.cb.store(cb as *mut c_void, Ordering::Relaxed);
        self.opaque.store(opaque, Ordering::Relaxed);
        self.seq.store(0, Ordering::Relaxed);
        self.clock.store(clock.index() as c_int, Ordering::Relaxed);
        self.scale.store(scale, Ordering::Relaxed);
        self.attributes.store(attributes, Ordering::Relaxed);
        self.heap_index.store(NOT_IN_HEAP, Ordering::Relaxed);
        self.magic.store(TIMER_MAGIC_LIVE, Ordering::Release);
        Ok(())
    }

    /// Best effort, for `init`: is this live-looking timer really armed?
    fn is_in_its_heap(&self) -> bool {
        let Ok((ctx, clock)) = self.owner() else {
            return false;
        };
        matches!(
            ctx.timers.list(clock).heap.lock().position(self),
            Ok(Some(_))
        )
    }

    /// The context and clock of an initialized timer.
    #[inline]
    fn owner(&self) -> MisuseResult<(&Context, ClockType)> {
        match self.magic.load(Ordering::Acquire) {
            TIMER_MAGIC_LIVE => {}
            TIMER_MAGIC_DEAD => {
                return Err(Misuse::new(
                    "QEMUTimer was deinitialized (timer_deinit or timer_free); initialize it again before use",
                ));
            }
            TIMER_MAGIC_ORPHANED => {
                return Err(Misuse::new(
                    "QEMUTimer's AioContext was freed while the timer was armed",
                ));
            }
            _ => {
                return Err(Misuse::new(
                    "QEMUTimer was never initialized (timer_init_*, timer_new_* or aio_timer_init* first)",
                ));
            }
        }
        // SAFETY: a live timer's `ctx` was a validated context at init;
        // `from_handle` reports one freed since (while it is quarantined).
        let ctx = unsafe { Context::from_handle(self.ctx.load(Ordering::Relaxed)) }?;
        let clock = ClockType::from_raw(self.clock.load(Ordering::Relaxed))?;
        Ok((ctx, clock))
    }

    /// `timer_mod` (`scaled`: `expire` is in the timer's scale) or
    /// `timer_mod_ns`; with `only_earlier`, `timer_mod_anticipate(_ns)`.
    #[inline]
    pub(crate) fn arm(&self, expire: i64, scaled: bool, only_earlier: bool) -> MisuseResult<()> {
        let (ctx, clock) = self.owner()?;
        let mut expire_ns = expire;
        if scaled {
            expire_ns = expire.saturating_mul(i64::from(self.scale.load(Ordering::Relaxed)));
        }
        let expire_ns = expire_ns.max(0);
        let list = ctx.timers.list(clock);
        let moved_earlier = {
            let mut heap = list.heap.lock();
            let pos = heap.position(self)?;
            if only_earlier
                && pos.is_some()
                && self.expire_time.load(Ordering::Relaxed) <= expire_ns
            {
                return Ok(());
            }
            let before = heap.earliest();
            // SAFETY: the C contract keeps an armed timer alive until it is
            // deleted; `pos` was computed under this lock.
            unsafe { heap.arm(self, pos, expire_ns) };
            list.publish(&heap);
            expire_ns < before
        };
        if moved_earlier {
            wake_owner(ctx, clock);
        }
        Ok(())
    }

    /// `timer_del`: disarm if pending. A timer that is not initialized (or
    /// deinitialized, or orphaned) is not pending: nothing to do, as QEMU
    /// does for a timer with no timer list.
    #[inline]
    pub(crate) fn del(&self) -> MisuseResult<()> {
        if self.magic.load(Ordering::Acquire) != TIMER_MAGIC_LIVE
            || self.expire_time.load(Ordering::Relaxed) < 0
        {
            return Ok(());
        }
        let (ctx, clock) = self.owner()?;
        let list = ctx.timers.list(clock);
        let mut heap = list.heap.lock();
        if let Some(pos) = heap.position(self)? {
            heap.remove_at(pos);
            list.publish(&heap);
        }
        Ok(())
    }

    /// `timer_deinit`: disarm, then forget the context. The timer must be
    /// initialized again before it is armed.
    pub(crate) fn deinit(&self) -> MisuseResult<()> {
        self.del()?;
        self.magic.store(TIMER_MAGIC_DEAD, Ordering::Release);
        self.ctx.store(ptr::null_mut(), Ordering::Relaxed);
        Ok(())
    }

    /// `timer_pending`.
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.magic.load(Ordering::Acquire) == TIMER_MAGIC_LIVE
            && self.expire_time.load(Ordering::Relaxed) >= 0
    }

    /// `timer_expire_time_ns`: the deadline in ns, or -1 if not pending.
    #[inline]
    pub(crate) fn expire_time_ns(&self) -> i64 {
        if self.pending() {
            self.expire_time.load(Ordering::Relaxed)
        } else {
            -1
        }
    }

    /// `timer_expired`, exactly as QEMU computes it: `expire_time <=
    /// current_time * scale`. A timer that is not pending has `expire_time`
    /// -1, so it counts as expired.
    #[inline]
    pub(crate) fn expired(&self, current_time: i64) -> bool {
        let scale = i64::from(self.scale.load(Ordering::Relaxed));
        self.expire_time.load(Ordering::Relaxed) <= current_time.saturating_mul(scale)
    }

    /// The callback and its argument.
    #[inline]
    fn callback(&self) -> (TimerFn, *mut c_void) {
        let cb = self.cb.load(Ordering::Relaxed);
        // SAFETY: `cb` was stored by `init` from a `TimerFn` (non-null,
        // `unsafe extern "C" fn(*mut c_void)`); this is the inverse cast.
        let cb = unsafe { std::mem::transmute::<*mut c_void, TimerFn>(cb) };
        (cb, self.opaque.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    pub(crate) fn zeroed_for_test() -> Timer {
        Timer {
            expire_time: AtomicI64::new(-1),
            ctx: AtomicPtr::new(ptr::null_mut()),
            cb: AtomicPtr::new(ptr::null_mut()),
            opaque: AtomicPtr::new(ptr::null_mut()),
            seq: AtomicU64::new(0),
            clock: AtomicI32::new(0),
            scale: AtomicI32::new(1),
            attributes: AtomicI32::new(0),
            heap_index: AtomicU32::new(NOT_IN_HEAP),
            magic: AtomicU32::new(0),
        }
    }
}

/// The armed timers of one clock of one context.
struct TimerList {
    heap: Mutex<TimerHeap>,
    /// The heap's earliest deadline (`i64::MAX` when empty), readable
    /// without the lock; updated with the lock held.
    earliest: AtomicI64,
    /// Token of the thread running this list's callbacks, or null (see
    /// [`TimerList::run`]).
    running: AtomicPtr<u8>,
}

impl TimerList {
    const fn new() -> Self {
        TimerList {
            heap: Mutex::new(TimerHeap::new()),
            earliest: AtomicI64::new(i64::MAX),
            running: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Publishes the heap's earliest deadline; the caller holds the lock.
    #[inline]
    fn publish(&self, heap: &TimerHeap) {
        self.earliest.store(heap.earliest(), Ordering::Release);
    }

    /// Runs the timers due at `now`, one at a time, with the lock released
    /// around each callback.
    ///
    /// `running` and the clock's `enabled` flag form a Dekker pair with
    /// `qemu_clock_enable(false)`: this thread stores `running` and then
    /// loads `enabled` before each callback; the disabler stores `enabled`
    /// and then loads `running` (all `SeqCst`). So either no further
    /// callback starts here, or the disabler sees us and waits.
    fn run(&self, clock: ClockType, now: i64) -> bool {
        // A callback may poll this context again (nested run): restore the
        // outer value rather than clearing it.
        let outer = self.running.swap(thread::thread_token(), Ordering::SeqCst);
        let mut ran = false;
        while clock.is_enabled() {
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
            ran = true;
        }
        self.running.store(outer, Ordering::SeqCst);
        ran
    }
}

/// A context's timers, one list per clock.
pub(crate) struct TimerLists {
    lists: [TimerList; CLOCK_COUNT],
    /// The owning context, set when the first timer is initialized on it
    /// (which also registers these lists for `qemu_clock_enable`).
    owner: AtomicPtr<Context>,
}

impl Default for TimerLists {
    fn default() -> Self {
        Self::new()
    }
}

/// Lists of live contexts that have (had) timers, for `qemu_clock_enable`.
/// An entry is removed by the context's teardown before it is freed.
struct Registered(*const TimerLists);
// SAFETY: the pointers are only dereferenced with the registry lock held,
// and teardown unregisters before the lists go away.
unsafe impl Send for Registered {}
static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// `qemu_init_clocks`' callback, as a pointer (null: none).
static CLOCK_NOTIFY_CB: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

impl TimerLists {
    pub(crate) fn new() -> Self {
        TimerLists {
            lists: [const { TimerList::new() }; CLOCK_COUNT],
            owner: AtomicPtr::new(ptr::null_mut()),
        }
    }

    #[inline]
    fn list(&self, clock: ClockType) -> &TimerList {
        &self.lists[clock.index()]
    }

    /// Whether any clock has an armed timer: the loop's per-iteration fast
    /// path (four loads, no clock read).
    #[inline]
    fn any_armed(&self) -> bool {
        self.lists
            .iter()
            .any(|l| l.earliest.load(Ordering::Relaxed) != i64::MAX)
    }

    /// Registers these lists (of `ctx`, which contains them) once.
    #[inline]
    fn register(&self, ctx: &Context) {
        if !self.owner.load(Ordering::Acquire).is_null() {
            return;
        }
        let mut registry = REGISTRY.lock();
        if self.owner.load(Ordering::Relaxed).is_null() {
            registry.push(Registered(ptr::from_ref(self)));
            self.owner
                .store(ptr::from_ref(ctx).cast_mut(), Ordering::Release);
        }
    }

    /// Nanoseconds until the earliest deadline of an enabled clock (0 if one
    /// has expired), or -1 when no timer is armed.
    pub(crate) fn deadline_ns(&self) -> i64 {
        if !self.any_armed() {
            return -1;
        }
        let mut deadline = -1;
        for clock in ClockType::ALL {
            let earliest = self.list(clock).earliest.load(Ordering::Acquire);
            if earliest == i64::MAX || !clock.is_enabled() {
                continue;
            }
            let ns = earliest.saturating_sub(clock.now_ns()).max(0);
            deadline = soonest_timeout(deadline, ns);
        }
        deadline
    }

    /// Runs the expired timers of every enabled clock, in deadline order,
    /// with no lock held during callbacks. Returns whether any ran.
    pub(crate) fn run_expired(&self, _ctx: &Context) -> bool {
        if !self.any_armed() {
            return false;
        }
        let mut progress = false;
        for clock in ClockType::ALL {
            let list = self.list(clock);
            let earliest = list.earliest.load(Ordering::Acquire);
            if earliest == i64::MAX || !clock.is_enabled() {
                continue;
            }
            let now = clock.now_ns();
            if earliest <= now {
                progress |= list.run(clock, now);
            }
        }
        progress
    }

    /// Whether `clock` has an armed timer here (`qemu_clock_has_timers`).
    pub(crate) fn clock_has_timers(&self, clock: ClockType) -> bool {
        self.list(clock).earliest.load(Ordering::Acquire) != i64::MAX
    }

    /// Whether a timer of `clock` has expired (`qemu_clock_expired`).
    pub(crate) fn clock_expired(&self, clock: ClockType) -> bool {
        let earliest = self.list(clock).earliest.load(Ordering::Acquire);
        earliest != i64::MAX && earliest <= clock.now_ns()
    }

    /// Nanoseconds until `clock`'s earliest deadline here (0 if expired),
    /// -1 if none is armed or the clock is disabled.
    pub(crate) fn clock_deadline_ns(&self, clock: ClockType) -> i64 {
        let earliest = self.list(clock).earliest.load(Ordering::Acquire);
        if earliest == i64::MAX || !clock.is_enabled() {
            return -1;
        }
        earliest.saturating_sub(clock.now_ns()).max(0)
    }

    /// Runs the expired timers of `clock` (`qemu_clock_run_timers`).
    /// Returns whether any ran. The caller is the lists' loop thread.
    pub(crate) fn clock_run(&self, clock: ClockType) -> bool {
        let list = self.list(clock);
        let earliest = list.earliest.load(Ordering::Acquire);
        if earliest == i64::MAX || !clock.is_enabled() {
            return false;
        }
        let now = clock.now_ns();
        earliest <= now && list.run(clock, now)
    }

    /// Context teardown: disarm whatever is still armed (marking those
    /// timers orphaned) and unregister.
    pub(crate) fn teardown(&self) {
        for list in &self.lists {
            let mut heap = list.heap.lock();
            heap.drain(|timer| {
                // SAFETY: armed timers are alive (C contract).
                unsafe { &*timer }
                    .magic
                    .store(TIMER_MAGIC_ORPHANED, Ordering::Release);
            });
            list.publish(&heap);
        }
        if !self.owner.load(Ordering::Acquire).is_null() {
            let mut registry = REGISTRY.lock();
            registry.retain(|r| !ptr::eq(r.0, self));
            self.owner.store(ptr::null_mut(), Ordering::Release);
        }
    }
}

/// After an arming moved `ctx`'s earliest deadline of `clock` earlier: make
/// its poller recompute its timeout.
#[inline]
fn wake_owner(ctx: &Context, clock: ClockType) {
    // The thread bound to ctx, when not armed to sleep, is running and will
    // compute a fresh timeout before it next blocks: nothing to do.
    let own_running_loop = ptr::eq(thread::bound_context(), ctx) && !ctx.notify.is_armed();
    if !own_running_loop {
        ctx.notify();
    }
    // Timers of the main context are QEMU's main-loop timers, whose lists
    // call `init_clocks`' callback.
    if ptr::eq(thread::main_context(), ctx) {
        notify_clock_listener(clock);
    }
}

fn notify_clock_listener(clock: ClockType) {
    let cb = CLOCK_NOTIFY_CB.load(Ordering::Acquire);
    if cb.is_null() {
        return;
    }
    // SAFETY: stored by `init_clocks` from a `ClockNotifyFn`.
    let cb = unsafe { std::mem::transmute::<*mut c_void, ClockNotifyFn>(cb) };
    // SAFETY: the C caller registered it; no lock is held.
    unsafe { cb(ptr::null_mut(), clock.index() as c_int) };
}

/// `qemu_init_clocks` / `init_clocks`: the clocks need no setup; remembers
/// the callback (NULL: none). Idempotent; a later call replaces it.
pub(crate) fn init_clocks(notify: Option<ClockNotifyFn>) {
    let cb = notify.map_or(ptr::null_mut(), |f| f as *mut c_void);
    CLOCK_NOTIFY_CB.store(cb, Ordering::Release);
}

/// `qemu_clock_deadline_ns_all`: the soonest deadline of `clock` over
/// every context's timers (-1: none).
pub(crate) fn clock_deadline_ns_all(clock: ClockType) -> i64 {
    let registry = REGISTRY.lock();
    registry.iter().fold(-1, |deadline, r| {
        // SAFETY: registered lists are alive (see `Registered`).
        soonest_timeout(deadline, unsafe { &*r.0 }.clock_deadline_ns(clock))
    })
}

/// `qemu_clock_notify`: wakes every context with timers on `clock`, and
/// the `qemu_init_clocks` listener, so they recompute their deadlines.
pub(crate) fn clock_notify(clock: ClockType) {
    {
        let registry = REGISTRY.lock();
        for r in registry.iter() {
            // SAFETY: registered lists are alive (see `Registered`).
            let lists = unsafe { &*r.0 };
            if lists.clock_has_timers(clock) {
                // SAFETY: the owner outlives its registration.
                unsafe { &*lists.owner.load(Ordering::Acquire) }.notify();
            }
        }
    }
    notify_clock_listener(clock);
}

/// `qemu_clock_enable`.
pub(crate) fn clock_enable(clock: ClockType, enabled: bool) {
    if !clock::set_enabled(clock, enabled) {
        return;
    }
    if enabled {
        {
            let registry = REGISTRY.lock();
            for r in registry.iter() {
                // SAFETY: registered lists are alive (see `Registered`).
                let lists = unsafe { &*r.0 };
                if lists.list(clock).earliest.load(Ordering::Acquire) != i64::MAX {
                    // SAFETY: the owner outlives its registration.
                    unsafe { &*lists.owner.load(Ordering::Acquire) }.notify();
                }
            }
        }
        notify_clock_listener(clock);
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
        let busy = REGISTRY.lock().iter().any(|r| {
            // SAFETY: registered lists are alive (see `Registered`).
            let running = unsafe { &*r.0 }.list(clock).running.load(Ordering::SeqCst);
            !running.is_null() && running != me
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        static FIRED: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    }

    unsafe extern "C" fn record(opaque: *mut c_void) {
        FIRED.with(|f| f.borrow_mut().push(opaque as usize));
    }

    struct Ctx(*const Context);
    impl Ctx {
        fn new() -> Ctx {
            Ctx(Context::new().unwrap())
        }
        fn get(&self) -> &Context {
            // SAFETY: alive until drop.
            unsafe { &*self.0 }
        }
    }
    impl Drop for Ctx {
        fn drop(&mut self) {
            // SAFETY: we own the only reference.
            unsafe { Context::unref(self.0) };
        }
    }

    fn timer_on(ctx: &Context, tag: usize) -> Box<Timer> {
        let t = Box::new(Timer::zeroed_for_test());
        t.init(ctx, ClockType::Realtime, 1, 0, record, tag as *mut c_void)
            .unwrap();
        t
    }

    #[test]
    fn due_timers_run_in_deadline_order_and_deadline_follows() {
        let ctx = Ctx::new();
        let c = ctx.get();
        assert_eq!(c.timers.deadline_ns(), -1);
        let now = ClockType::Realtime.now_ns();
        let ts: Vec<_> = (0..4).map(|i| timer_on(c, i)).collect();
        ts[0].arm(now - 10, false, false).unwrap();
        ts[1].arm(now - 30, false, false).unwrap();
        ts[2].arm(now - 20, false, false).unwrap();
        ts[3].arm(now + 60_000_000_000, false, false).unwrap();
        assert_eq!(c.timers.deadline_ns(), 0);
        FIRED.with(|f| f.borrow_mut().clear());
        assert!(c.timers.run_expired(c));
        assert_eq!(FIRED.with(|f| f.borrow().clone()), vec![1, 2, 0]);
        let d = c.timers.deadline_ns();
        assert!(d > 59_000_000_000 && d <= 60_000_000_000, "{d}");
        assert!(!c.timers.run_expired(c));
        ts[3].del().unwrap();
        assert!(!ts[3].pending());
        assert_eq!(c.timers.deadline_ns(), -1);
    }

    #[test]
    fn anticipate_only_moves_earlier() {
        let ctx = Ctx::new();
        let t = timer_on(ctx.get(), 0);
        t.arm(1000, false, true).unwrap(); // not pending: arms
        assert_eq!(t.expire_time_ns(), 1000);
        t.arm(2000, false, true).unwrap();
        assert_eq!(t.expire_time_ns(), 1000);
        t.arm(500, false, true).unwrap();
        assert_eq!(t.expire_time_ns(), 500);
        t.arm(-5, false, false).unwrap(); // clamped like QEMU
        assert_eq!(t.expire_time_ns(), 0);
        t.del().unwrap();
    }

    #[test]
    fn misuse_is_reported() {
        let ctx = Ctx::new();
        let raw = Timer::zeroed_for_test();
        assert!(raw.arm(1, false, false).is_err());
        assert!(raw.del().is_ok()); // not pending: nothing to do
        let t = timer_on(ctx.get(), 0);
        t.arm(1, false, false).unwrap();
        assert!(
            t.init(
                ctx.get(),
                ClockType::Realtime,
                1,
                0,
                record,
                ptr::null_mut()
            )
            .is_err()
        );
        t.deinit().unwrap();
        assert!(!t.pending());
        assert!(t.arm(1, false, false).is_err());
    }

    #[test]
    fn teardown_orphans_armed_timers() {
        let ctx = Ctx::new();
        let t = timer_on(ctx.get(), 0);
        t.arm(i64::MAX / 2, false, false).unwrap();
        drop(ctx);
        assert!(!t.pending());
        assert_eq!(t.expire_time_ns(), -1);
        assert!(t.del().is_ok());
        assert!(t.arm(1, false, false).is_err());
    }
}
