//! Timers and clocks (`qemu/timer.h`): caller-owned `QEMUTimer`s (QEMU's
//! 48 bytes) bound to a timer list, and the lists (`timer/list.rs`).
//!
//! Every context has one [`TimerList`] per clock (its `tlg`): a min-heap of
//! the armed timers (4-ary; see `timer/heap.rs`) behind a short mutex, plus
//! a lock-free copy of the earliest deadline so that `aio_poll` pays four
//! atomic loads, and no lock, when no timer is due. Standalone lists
//! (`timerlist_new`, `timerlistgroup_init`) are run by their owner.
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
//! magic field), on a deinitialized timer, on a timer copied while armed,
//! or on one whose context or standalone list was freed, aborts with a
//! message. Timers still armed when their list goes (context freed,
//! `timerlist_free`) are disarmed and marked orphaned (their memory stays
//! the caller's, and may be `g_free`d without a library call).

mod clock;
mod heap;
mod list;

use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU32, Ordering};

pub(crate) use self::clock::{CLOCK_COUNT, ClockType};
use self::heap::NOT_IN_HEAP;
pub(crate) use self::list::{
    TimerList, TimerLists, clock_deadline_ns_all, clock_enable, clock_notify, init_clocks,
};
use crate::context::Context;
use crate::fatal::{LazyApiCall, Misuse, MisuseResult};
use crate::handle::Handle;

/// A C timer callback (`QEMUTimerCB *`), already checked non-NULL.
pub(crate) type TimerFn = unsafe extern "C" fn(opaque: *mut c_void);

/// A C clock notification callback (`QEMUTimerListNotifyCB *`).
pub(crate) type ClockNotifyFn = unsafe extern "C" fn(opaque: *mut c_void, clock_type: c_int);

const TIMER_MAGIC_LIVE: u32 = 0x544d_524c; // "TMRL"
const TIMER_MAGIC_DEAD: u32 = 0x544d_5244; // "TMRD"
const TIMER_MAGIC_ORPHANED: u32 = 0x544d_524f; // "TMRO"

/// The core's view of a caller-owned `QEMUTimer`: QEMU's 48 bytes (layout
/// asserted in `ffi/timer.rs`). QEMU's `next` pointer slot (offset 32)
/// holds the heap position and the magic number instead, as no QEMU code
/// outside the timer list reads it. Every field is atomic because C owns
/// the memory and several threads may touch it: `expire_time` and
/// `heap_index` are written only with the owning list's lock held; the
/// others are written by `init`/`deinit`, before the timer is shared.
#[repr(C)]
pub(crate) struct Timer {
    pub(crate) expire_time: AtomicI64,
    pub(crate) timer_list: AtomicPtr<TimerList>,
    pub(crate) cb: AtomicPtr<c_void>,
    pub(crate) opaque: AtomicPtr<c_void>,
    pub(crate) heap_index: AtomicU32,
    pub(crate) magic: AtomicU32,
    pub(crate) attributes: AtomicI32,
    pub(crate) scale: AtomicI32,
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
        self.init_on(ctx.timers().list(clock), scale, attributes, cb, opaque)
    }

    /// `timer_init_full`: binds the timer to `list` (a context's, the main
    /// loop's or a standalone one), not pending.
    pub(crate) fn init_on(
        &self,
        list: &TimerList,
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
        list.register();
        self.expire_time.store(-1, Ordering::Relaxed);
        self.timer_list
            .store(ptr::from_ref(list).cast_mut(), Ordering::Relaxed);
        self.cb.store(cb as *mut c_void, Ordering::Relaxed);
        self.opaque.store(opaque, Ordering::Relaxed);
        self.scale.store(scale, Ordering::Relaxed);
        self.attributes.store(attributes, Ordering::Relaxed);
        self.heap_index.store(NOT_IN_HEAP, Ordering::Relaxed);
        self.magic.store(TIMER_MAGIC_LIVE, Ordering::Release);
        Ok(())
    }

    /// Best effort, for `init`: is this live-looking timer really armed?
    fn is_in_its_heap(&self) -> bool {
        let Ok(list) = self.list() else {
            return false;
        };
        matches!(list.heap.lock().position(self), Ok(Some(_)))
    }

    /// The timer list of an initialized timer.
    #[inline]
    fn list(&self) -> MisuseResult<&TimerList> {
        let magic = self.magic.load(Ordering::Acquire);
        if magic != TIMER_MAGIC_LIVE {
            return Err(not_live(magic));
        }
        self.live_list()
    }

    /// The timer list of a timer whose magic was just seen live.
    #[inline(always)]
    fn live_list(&self) -> MisuseResult<&TimerList> {
        // SAFETY: a live timer's list was valid at init: a context's lists
        // live inside the context (whose memory is quarantined a while after
        // it is freed), a standalone list until `timerlist_free`, which
        // orphans its armed timers; `from_handle` reports a list or context
        // freed since.
        unsafe { TimerList::from_handle(self.timer_list.load(Ordering::Relaxed)) }
    }

    /// `timer_mod` (`scaled`: `expire` is in the timer's scale) or
    /// `timer_mod_ns`; with `only_earlier`, `timer_mod_anticipate(_ns)`.
    /// For callers whose API name is recorded (see [`Timer::arm_from`]).
    #[inline]
    pub(crate) fn arm(&self, expire: i64, scaled: bool, only_earlier: bool) -> MisuseResult<()> {
        self.arm_from(expire, scaled, only_earlier, LazyApiCall::ACTIVE)
    }

    /// [`Timer::arm`] for a leaf API call: `api` is the exported function's
    /// name, recorded only if the arming wakes someone (see
    /// [`TimerList::wake`]).
    #[inline]
    pub(crate) fn arm_from(
        &self,
        expire: i64,
        scaled: bool,
        only_earlier: bool,
        api: LazyApiCall,
    ) -> MisuseResult<()> {
        let list = self.list()?;
        let mut expire_ns = expire;
        if scaled {
            expire_ns = expire.saturating_mul(i64::from(self.scale.load(Ordering::Relaxed)));
        }
        let expire_ns = expire_ns.max(0);
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
            list.wake(api);
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
        let list = self.live_list()?;
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
        self.timer_list.store(ptr::null_mut(), Ordering::Relaxed);
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
            timer_list: AtomicPtr::new(ptr::null_mut()),
            cb: AtomicPtr::new(ptr::null_mut()),
            opaque: AtomicPtr::new(ptr::null_mut()),
            heap_index: AtomicU32::new(NOT_IN_HEAP),
            magic: AtomicU32::new(0),
            attributes: AtomicI32::new(0),
            scale: AtomicI32::new(1),
        }
    }
}

/// Why a timer whose magic is `magic` (not live) cannot be used.
#[cold]
#[inline(never)]
fn not_live(magic: u32) -> Misuse {
    Misuse::new(match magic {
        TIMER_MAGIC_DEAD => {
            "QEMUTimer was deinitialized (timer_deinit or timer_free); initialize it again before use"
        }
        TIMER_MAGIC_ORPHANED => "QEMUTimer's AioContext was freed while the timer was armed",
        _ => "QEMUTimer was never initialized (timer_init_*, timer_new_* or aio_timer_init* first)",
    })
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
        assert_eq!(c.timers().deadline_ns(), -1);
        let now = ClockType::Realtime.now_ns();
        let ts: Vec<_> = (0..4).map(|i| timer_on(c, i)).collect();
        ts[0].arm(now - 10, false, false).unwrap();
        ts[1].arm(now - 30, false, false).unwrap();
        ts[2].arm(now - 20, false, false).unwrap();
        ts[3].arm(now + 60_000_000_000, false, false).unwrap();
        assert_eq!(c.timers().deadline_ns(), 0);
        FIRED.with(|f| f.borrow_mut().clear());
        assert!(c.timers().run_expired(c));
        assert_eq!(FIRED.with(|f| f.borrow().clone()), vec![1, 2, 0]);
        let d = c.timers().deadline_ns();
        assert!(d > 59_000_000_000 && d <= 60_000_000_000, "{d}");
        assert!(!c.timers().run_expired(c));
        ts[3].del().unwrap();
        assert!(!ts[3].pending());
        assert_eq!(c.timers().deadline_ns(), -1);
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
