//! Clocks, timer lists and timer list groups (`qemu/timer.h`): the
//! `qemu_clock_*` functions, `timerlist_*` and `timerlistgroup_*`.
//!
//! A `QEMUTimerList *` is a context's list of one clock (the entries of
//! `ctx->tlg`, of `main_loop_tlg`) or a standalone one (`timerlist_new`,
//! `timerlistgroup_init`), which no loop runs: its owner calls
//! `timerlist_run_timers` and is told through its notify callback when an
//! arming makes a timer the earliest.
//!
//! Threading: every function works from any thread; callbacks run in the
//! thread that runs the list (a context's loop, or the caller of
//! `timerlist_run_timers`/`timerlistgroup_run_timers`), with no lock held.

use std::ffi::{c_int, c_void};
use std::ptr;

use super::boundary::Handle;
use super::boundary::{c_fn, ffi_call, ffi_call_leaf, main_context_if_any};
use super::timer::{
    QEMUClockType, QEMUTimerList, QEMUTimerListGroup, QEMUTimerListNotifyCB, SCALE_MS, SCALE_US,
};
use crate::aio_poll::soonest_timeout;
use crate::fatal::{LazyApiCall, Misuse, MisuseResult};
use crate::timer::{self, CLOCK_COUNT, ClockType, TimerList};

#[inline(always)]
fn clock(clock_type: QEMUClockType) -> MisuseResult<ClockType> {
    ClockType::from_raw(clock_type.0)
}

/// Validates a C `QEMUTimerList *`.
fn list<'a>(timer_list: *mut QEMUTimerList) -> MisuseResult<&'a TimerList> {
    // SAFETY: a `QEMUTimerList *` comes from this library (the C
    // contract); `from_handle` rejects NULL and memory without its magic.
    unsafe { TimerList::from_handle(timer_list.cast()) }
}

/// Checks a caller's `QEMUTimerListGroup *` is non-NULL and aligned (the
/// one check of group pointers, also used by `ffi/timer.rs`).
pub(super) fn group_ptr(tlg: *mut QEMUTimerListGroup) -> MisuseResult<*mut QEMUTimerListGroup> {
    if tlg.is_null() {
        return Err(Misuse::new("QEMUTimerListGroup is NULL"));
    }
    if !tlg.is_aligned() {
        return Err(Misuse::new("QEMUTimerListGroup pointer is misaligned"));
    }
    Ok(tlg)
}

/// Validates a caller's `QEMUTimerListGroup *` (non-NULL, aligned).
fn group<'a>(tlg: *mut QEMUTimerListGroup) -> MisuseResult<&'a mut QEMUTimerListGroup> {
    let tlg = group_ptr(tlg)?;
    // SAFETY: non-null and aligned; the caller passes its group's memory.
    Ok(unsafe { &mut *tlg })
}

/// The lists of a group, each validated (all must be set).
fn group_lists<'a>(tlg: *mut QEMUTimerListGroup) -> MisuseResult<[&'a TimerList; CLOCK_COUNT]> {
    let g = group(tlg)?;
    let mut lists = [const { None }; CLOCK_COUNT];
    for (slot, &tl) in lists.iter_mut().zip(g.tl.iter()) {
        if tl.is_null() {
            return Err(Misuse::new(
                "QEMUTimerListGroup has a NULL list (timerlistgroup_init it first)",
            ));
        }
        *slot = Some(list(tl)?);
    }
    Ok(lists.map(|l| l.expect("filled above")))
}

// ---- clocks ----

/// The current time of `type` in nanoseconds. REALTIME: `CLOCK_MONOTONIC`;
/// HOST: `CLOCK_REALTIME` (wall clock); VIRTUAL and VIRTUAL_RT: monotonic,
/// frozen while disabled with `qemu_clock_enable` and resuming without a
/// jump. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_ns(clock_type: QEMUClockType) -> i64 {
    ffi_call_leaf(c"qemu_clock_get_ns", |_| Ok(clock(clock_type)?.now_ns()))
}

/// `qemu_clock_get_ns(type) / SCALE_MS`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_ms(clock_type: QEMUClockType) -> i64 {
    ffi_call_leaf(c"qemu_clock_get_ms", |_| {
        Ok(clock(clock_type)?.now_ns() / i64::from(SCALE_MS))
    })
}

/// `qemu_clock_get_ns(type) / SCALE_US`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_us(clock_type: QEMUClockType) -> i64 {
    ffi_call_leaf(c"qemu_clock_get_us", |_| {
        Ok(clock(clock_type)?.now_ns() / i64::from(SCALE_US))
    })
}

/// Enables or disables a clock. Timers of a disabled clock do not fire and
/// do not shorten `aio_poll`'s sleep; VIRTUAL and VIRTUAL_RT also stop
/// counting. Disabling returns once no callback of that clock is running in
/// another thread (a callback may disable its own clock). Enabling wakes
/// every context that has timers on the clock. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_enable(clock_type: QEMUClockType, enabled: bool) {
    ffi_call(c"qemu_clock_enable", || {
        timer::clock_enable(clock(clock_type)?, enabled);
        Ok(())
    })
}

/// Sets up the clocks (they also work without this call) and registers
/// `notify_cb` (may be NULL), called as `notify_cb(NULL, type)` when a timer
/// of the main context becomes the earliest of its clock, or its clock is
/// re-enabled; it may run in any thread that arms such a timer. Idempotent;
/// a later call replaces the callback.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_init_clocks(notify_cb: *mut QEMUTimerListNotifyCB) {
    ffi_call(c"qemu_init_clocks", || {
        timer::init_clocks(c_fn(notify_cb));
        Ok(())
    })
}

/// QEMU's name for `qemu_init_clocks`.
#[unsafe(no_mangle)]
pub extern "C" fn init_clocks(notify_cb: *mut QEMUTimerListNotifyCB) {
    ffi_call(c"init_clocks", || {
        timer::init_clocks(c_fn(notify_cb));
        Ok(())
    })
}

// ---- timer lists (`timerlist_*`) ----

/// A standalone timer list of `type` (no context runs it): call
/// `timerlist_run_timers` to run it; `cb(opaque, type)` (may be NULL) is
/// called, in the arming thread, when an arming makes a timer the earliest
/// of the list. Free it with `timerlist_free`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_new(
    r#type: QEMUClockType,
    cb: *mut QEMUTimerListNotifyCB,
    opaque: *mut c_void,
) -> *mut QEMUTimerList {
    ffi_call(c"timerlist_new", || {
        Ok(TimerList::new_standalone(clock(r#type)?, c_fn(cb), opaque).cast())
    })
}

/// Frees a list from `timerlist_new`. Timers still armed on it are
/// disarmed and must be initialized again before reuse. A context's list
/// (from `ctx->tlg`) cannot be freed.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_free(timer_list: *mut QEMUTimerList) {
    ffi_call(c"timerlist_free", || {
        let l = list(timer_list)?;
        // SAFETY: validated above; the caller gives the list up.
        unsafe { TimerList::free_standalone(ptr::from_ref(l).cast_mut()) }
    })
}

/// Whether a timer is armed on the list. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_has_timers(timer_list: *mut QEMUTimerList) -> bool {
    ffi_call(c"timerlist_has_timers", || {
        Ok(list(timer_list)?.has_timers())
    })
}

/// Whether the list's earliest timer has expired. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_expired(timer_list: *mut QEMUTimerList) -> bool {
    ffi_call(c"timerlist_expired", || Ok(list(timer_list)?.expired()))
}

/// Nanoseconds until the list's earliest timer (0 if expired), -1 if none
/// is armed or its clock is disabled. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_deadline_ns(timer_list: *mut QEMUTimerList) -> i64 {
    ffi_call(c"timerlist_deadline_ns", || {
        Ok(list(timer_list)?.deadline_ns())
    })
}

/// The list's clock.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_get_clock(timer_list: *mut QEMUTimerList) -> QEMUClockType {
    ffi_call(c"timerlist_get_clock", || {
        Ok(QEMUClockType(list(timer_list)?.clock().index() as c_int))
    })
}

/// Runs the list's expired timers in the calling thread; returns whether
/// any ran. For a context's list, prefer letting its loop run it.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_run_timers(timer_list: *mut QEMUTimerList) -> bool {
    ffi_call(c"timerlist_run_timers", || {
        Ok(list(timer_list)?.run_expired())
    })
}

/// Tells whoever runs the list to recompute its deadline: the context's
/// loop is woken, or the list's notify callback is called. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timerlist_notify(timer_list: *mut QEMUTimerList) {
    ffi_call(c"timerlist_notify", || {
        list(timer_list)?.wake(LazyApiCall::ACTIVE);
        Ok(())
    })
}

// ---- timer list groups (`timerlistgroup_*`) ----

/// Fills the caller's `tlg` with one standalone list per clock (see
/// `timerlist_new`; `cb` and `opaque` go to each). Timers join it through
/// `timer_init_full`/`timer_new_full`. Release with `timerlistgroup_deinit`.
#[unsafe(no_mangle)]
pub extern "C" fn timerlistgroup_init(
    tlg: *mut QEMUTimerListGroup,
    cb: *mut QEMUTimerListNotifyCB,
    opaque: *mut c_void,
) {
    ffi_call(c"timerlistgroup_init", || {
        let g = group(tlg)?;
        let notify = c_fn(cb);
        for (clock, slot) in ClockType::ALL.into_iter().zip(g.tl.iter_mut()) {
            *slot = TimerList::new_standalone(clock, notify, opaque).cast();
        }
        Ok(())
    })
}

/// Frees the lists of a group from `timerlistgroup_init` and sets them to
/// NULL (see `timerlist_free`).
#[unsafe(no_mangle)]
pub extern "C" fn timerlistgroup_deinit(tlg: *mut QEMUTimerListGroup) {
    ffi_call(c"timerlistgroup_deinit", || {
        let lists = group_lists(tlg)?;
        for l in lists {
            // SAFETY: validated; the group gives its lists up.
            unsafe { TimerList::free_standalone(ptr::from_ref(l).cast_mut()) }?;
        }
        group(tlg)?.tl = [ptr::null_mut(); CLOCK_COUNT];
        Ok(())
    })
}

/// Runs the expired timers of every list of the group in the calling
/// thread; returns whether any ran.
#[unsafe(no_mangle)]
pub extern "C" fn timerlistgroup_run_timers(tlg: *mut QEMUTimerListGroup) -> bool {
    ffi_call(c"timerlistgroup_run_timers", || {
        Ok(group_lists(tlg)?
            .into_iter()
            .fold(false, |ran, l| l.run_expired() | ran))
    })
}

/// Nanoseconds until the group's earliest timer of an enabled clock (0 if
/// one expired), -1 if none.
#[unsafe(no_mangle)]
pub extern "C" fn timerlistgroup_deadline_ns(tlg: *mut QEMUTimerListGroup) -> i64 {
    ffi_call(c"timerlistgroup_deadline_ns", || {
        Ok(group_lists(tlg)?
            .into_iter()
            .fold(-1, |d, l| soonest_timeout(d, l.deadline_ns())))
    })
}

// ---- helpers ----

/// The sooner of two timeouts in ns, -1 meaning infinite.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_soonest_timeout(timeout1: i64, timeout2: i64) -> i64 {
    ffi_call(c"qemu_soonest_timeout", || {
        Ok(soonest_timeout(timeout1, timeout2))
    })
}

/// A timeout in ns as poll(2) milliseconds: negative gives -1 (infinite),
/// 0 stays 0, anything else rounds *up* to the next millisecond (so a short
/// timeout never becomes a busy loop), capped at INT32_MAX.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_timeout_ns_to_ms(ns: i64) -> c_int {
    ffi_call(c"qemu_timeout_ns_to_ms", || {
        // The same rounding GLib's poll timeout gets from the GSource.
        Ok(crate::gsource::timeout_ns_to_ms(ns))
    })
}

// ---- per-clock queries on the main loop's timers (`qemu/timer.h`) ----

/// The main loop's list of `clock`, if the main loop exists.
fn main_list<'a>(clock: ClockType) -> Option<&'a TimerList> {
    main_context_if_any().map(|main| main.timers().list(clock))
}

/// Whether a main-loop timer of `type` is armed. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_has_timers(r#type: QEMUClockType) -> bool {
    ffi_call(c"qemu_clock_has_timers", || {
        let clock = clock(r#type)?;
        Ok(main_list(clock).is_some_and(TimerList::has_timers))
    })
}

/// Whether a main-loop timer of `type` has expired. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_expired(r#type: QEMUClockType) -> bool {
    ffi_call(c"qemu_clock_expired", || {
        let clock = clock(r#type)?;
        Ok(main_list(clock).is_some_and(TimerList::expired))
    })
}

/// Nanoseconds until the soonest timer of `type` in any context (0 if one
/// expired), -1 if none is armed or the clock is disabled. `attr_mask` is
/// accepted for QEMU's prototype; aioctx's per-clock heaps do not index
/// timers by attribute, so every timer counts whatever the mask (for
/// `QEMU_TIMER_ATTR_ALL`, QEMU's common case, this is QEMU's answer).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_deadline_ns_all(r#type: QEMUClockType, attr_mask: c_int) -> i64 {
    let _ = attr_mask;
    ffi_call(c"qemu_clock_deadline_ns_all", || {
        Ok(timer::clock_deadline_ns_all(clock(r#type)?))
    })
}

/// Runs the main loop's expired timers of `type`; returns whether any ran.
/// Main loop thread (or a BQL holder).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_run_timers(r#type: QEMUClockType) -> bool {
    ffi_call(c"qemu_clock_run_timers", || {
        let clock = clock(r#type)?;
        Ok(main_list(clock).is_some_and(TimerList::run_expired))
    })
}

/// `qemu_clock_run_timers` for every clock; returns whether any timer ran.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_run_all_timers() -> bool {
    ffi_call(c"qemu_clock_run_all_timers", || {
        Ok(ClockType::ALL.into_iter().fold(false, |ran, c| {
            main_list(c).is_some_and(TimerList::run_expired) | ran
        }))
    })
}

/// Wakes every loop with timers on `type` (and the `qemu_init_clocks`
/// listener) so it recomputes its deadline. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_notify(r#type: QEMUClockType) {
    ffi_call(c"qemu_clock_notify", || {
        timer::clock_notify(clock(r#type)?);
        Ok(())
    })
}

/// Whether `type` counts for the main loop's deadline: always true (aioctx
/// has no icount mode, where QEMU excludes VIRTUAL).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_use_for_deadline(r#type: QEMUClockType) -> bool {
    ffi_call(c"qemu_clock_use_for_deadline", || {
        clock(r#type).map(|_| true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_declares_the_clock_enum_as_qemu() {
        let header = include_str!("../../include/aioctx.h");
        for (name, value) in [
            ("QEMU_CLOCK_REALTIME", 0),
            ("QEMU_CLOCK_VIRTUAL", 1),
            ("QEMU_CLOCK_HOST", 2),
            ("QEMU_CLOCK_VIRTUAL_RT", 3),
        ] {
            assert!(
                header.contains(&format!("{name} = {value},")),
                "{name} = {value}"
            );
            assert_eq!(ClockType::from_raw(value).unwrap().index(), value as usize);
        }
        assert!(header.contains("QEMU_CLOCK_MAX\n} QEMUClockType;"));
    }

    #[test]
    fn timeout_helpers_match_qemu() {
        assert_eq!(qemu_timeout_ns_to_ms(-1), -1);
        assert_eq!(qemu_timeout_ns_to_ms(-5), -1);
        assert_eq!(qemu_timeout_ns_to_ms(0), 0);
        assert_eq!(qemu_timeout_ns_to_ms(1), 1);
        assert_eq!(qemu_timeout_ns_to_ms(1_000_000), 1);
        assert_eq!(qemu_timeout_ns_to_ms(1_000_001), 2);
        assert_eq!(qemu_timeout_ns_to_ms(i64::MAX), i32::MAX);
        assert_eq!(qemu_soonest_timeout(-1, 5), 5);
        assert_eq!(qemu_soonest_timeout(7, -1), 7);
        assert_eq!(qemu_soonest_timeout(-1, -1), -1);
        assert_eq!(qemu_soonest_timeout(3, 2), 2);
    }

    unsafe extern "C" fn count_notify(opaque: *mut c_void, _clock: c_int) {
        // SAFETY: the tests pass a live `Cell<u32>`.
        let n = unsafe { &*opaque.cast::<std::cell::Cell<u32>>() };
        n.set(n.get() + 1);
    }

    #[test]
    fn standalone_group_lifecycle() {
        let notified = std::cell::Cell::new(0u32);
        let mut tlg = QEMUTimerListGroup {
            tl: [ptr::null_mut(); CLOCK_COUNT],
        };
        let cb = count_notify as *mut QEMUTimerListNotifyCB;
        timerlistgroup_init(&raw mut tlg, cb, (&raw const notified).cast_mut().cast());
        for (i, &tl) in tlg.tl.iter().enumerate() {
            assert_eq!(timerlist_get_clock(tl).0, i as c_int);
            assert!(!timerlist_has_timers(tl));
            assert_eq!(timerlist_deadline_ns(tl), -1);
        }
        assert_eq!(timerlistgroup_deadline_ns(&raw mut tlg), -1);
        assert!(!timerlistgroup_run_timers(&raw mut tlg));
        timerlist_notify(tlg.tl[0]);
        assert_eq!(notified.get(), 1);
        timerlistgroup_deinit(&raw mut tlg);
        assert!(tlg.tl.iter().all(|tl| tl.is_null()));
        assert!(group_lists(&raw mut tlg).is_err());
    }
}
