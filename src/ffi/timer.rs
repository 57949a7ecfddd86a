//! Timers and clocks (`qemu/timer.h`).
//!
//! A `QEMUTimer` is a callback bound to one context and one clock. Callers
//! embed the struct (`aio_timer_init`, `timer_init_*`) or allocate it
//! (`aio_timer_new`, `timer_new_*`, freed with `timer_free`). The `timer_*`
//! functions without a context bind to the main context
//! (`qemu_init_main_loop` first), like QEMU's main-loop timers.
//!
//! Threading: initialize, arm, re-arm and delete from any thread; the
//! callback runs in the thread polling the context, after its bottom halves,
//! with no lock held. `QEMUClockType` is a hand-written enum in the header
//! (cbindgen.toml), because `QEMUTimerListNotifyCB` needs it before any
//! generated type; the Rust side receives it as a plain `int` and validates
//! it, so an out-of-range value is reported instead of being undefined.

use std::ffi::{c_int, c_void};
use std::mem::{align_of, offset_of, size_of};

use super::boundary::{context, ffi_call};
use super::types::AioContext;
use crate::aio_poll::soonest_timeout;
use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread;
use crate::timer::{self, ClockNotifyFn, ClockType, Timer, TimerFn};

/// Scale of a timer counting nanoseconds.
pub const SCALE_NS: c_int = 1;
/// Scale of a timer counting microseconds.
pub const SCALE_US: c_int = 1000;
/// Scale of a timer counting milliseconds.
pub const SCALE_MS: c_int = 1000000;

/// Timer attribute: the timer is for an external event (QEMU's icount
/// accounting uses it; aioctx stores it only).
pub const QEMU_TIMER_ATTR_EXTERNAL: c_int = 1 << 0;
/// Mask of all timer attributes.
pub const QEMU_TIMER_ATTR_ALL: u32 = u32::MAX;

/// `QEMUClockType` as received from C (the enum is declared in
/// cbindgen.toml's `after_includes`, so this type is not exported).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct QEMUClockType(pub c_int);

/// Marker for `typedef void QEMUTimerCB(void *opaque);` (cbindgen.toml).
pub struct QEMUTimerCB {
    _opaque: [u8; 0],
}

/// Marker for `typedef void QEMUTimerListNotifyCB(void *opaque,
/// QEMUClockType type);` (cbindgen.toml).
pub struct QEMUTimerListNotifyCB {
    _opaque: [u8; 0],
}

/// QEMU's timer list group. aioctx keeps timers per context; the only
/// group callers can name is NULL (the main loop's), so this stays opaque.
pub struct QEMUTimerListGroup {
    _opaque: [u8; 0],
}

/// A timer: a callback bound to one context and one clock. A complete
/// struct so that callers can embed it; its fields belong to aioctx and may
/// only be read (`expire_time`, `cb`, `opaque`, `scale`, `attributes` mean
/// what QEMU's fields of the same names mean). Initialize it before any
/// other use; `timer_mod` on a never-initialized timer aborts. Do not copy
/// or move it while it is armed.
#[repr(C)]
pub struct QEMUTimer {
    /// Deadline in nanoseconds of the timer's clock; -1 when not pending.
    pub expire_time: i64,
    /// The context whose loop runs the callback.
    pub ctx: *mut AioContext,
    /// The callback.
    pub cb: *mut QEMUTimerCB,
    /// Its argument.
    pub opaque: *mut c_void,
    /// Arming sequence number (orders timers with equal deadlines).
    pub seq: u64,
    /// The clock.
    pub clock_type: QEMUClockType,
    /// Nanoseconds per unit of `timer_mod` (`SCALE_NS`, `SCALE_US`, ...).
    pub scale: c_int,
    /// `QEMU_TIMER_ATTR_*` bits.
    pub attributes: c_int,
    /// Position in the context's timer heap; UINT32_MAX when not armed.
    pub heap_index: u32,
    /// Tells initialized timers from other memory.
    pub magic: u32,
}

// The core reads and writes the caller's struct as `Timer` (atomics).
const _: () = {
    assert!(size_of::<QEMUTimer>() == size_of::<Timer>());
    assert!(align_of::<QEMUTimer>() == align_of::<Timer>());
    assert!(offset_of!(QEMUTimer, expire_time) == offset_of!(Timer, expire_time));
    assert!(offset_of!(QEMUTimer, ctx) == offset_of!(Timer, ctx));
    assert!(offset_of!(QEMUTimer, cb) == offset_of!(Timer, cb));
    assert!(offset_of!(QEMUTimer, opaque) == offset_of!(Timer, opaque));
    assert!(offset_of!(QEMUTimer, seq) == offset_of!(Timer, seq));
    assert!(offset_of!(QEMUTimer, clock_type) == offset_of!(Timer, clock));
    assert!(offset_of!(QEMUTimer, scale) == offset_of!(Timer, scale));
    assert!(offset_of!(QEMUTimer, attributes) == offset_of!(Timer, attributes));
    assert!(offset_of!(QEMUTimer, heap_index) == offset_of!(Timer, heap_index));
    assert!(offset_of!(QEMUTimer, magic) == offset_of!(Timer, magic));
};
#[cfg(target_pointer_width = "64")]
const _: () = assert!(size_of::<QEMUTimer>() == 64 && align_of::<QEMUTimer>() == 8);

// ---- conversions (the only casts from C timer arguments) ----

/// Validates a `QEMUTimer *` (non-NULL, aligned) as the core's view.
#[inline(always)]
fn timer<'a>(ts: *mut QEMUTimer) -> MisuseResult<&'a Timer> {
    if ts.is_null() {
        return Err(Misuse::new("QEMUTimer is NULL"));
    }
    if !ts.is_aligned() {
        return Err(Misuse::new("QEMUTimer pointer is misaligned"));
    }
    // SAFETY: a non-null, aligned `QEMUTimer *` points to caller memory of
    // `QEMUTimer`'s size, whose layout `Timer` mirrors (asserted above);
    // all of `Timer`'s fields are atomics, so sharing it is sound.
    Ok(unsafe { &*ts.cast::<Timer>() })
}

/// Turns a C `QEMUTimerCB *` into a callable, rejecting NULL.
#[inline(always)]
fn timer_func(cb: *mut QEMUTimerCB) -> MisuseResult<TimerFn> {
    if cb.is_null() {
        return Err(Misuse::new("callback is NULL"));
    }
    // SAFETY: a non-null `QEMUTimerCB *` is a C function `void (void *)`,
    // which has the ABI of `unsafe extern "C" fn(*mut c_void)`.
    Ok(unsafe { std::mem::transmute::<*mut QEMUTimerCB, TimerFn>(cb) })
}

/// Turns a C `QEMUTimerListNotifyCB *` (NULL allowed) into a callable.
fn notify_func(cb: *mut QEMUTimerListNotifyCB) -> Option<ClockNotifyFn> {
    if cb.is_null() {
        return None;
    }
    // SAFETY: a non-null `QEMUTimerListNotifyCB *` is a C function
    // `void (void *, QEMUClockType)`; the enum is passed as an `int`.
    Some(unsafe { std::mem::transmute::<*mut QEMUTimerListNotifyCB, ClockNotifyFn>(cb) })
}

#[inline(always)]
fn clock(clock_type: QEMUClockType) -> MisuseResult<ClockType> {
    ClockType::from_raw(clock_type.0)
}

/// The main context, for the `timer_*` functions that have no context.
fn main_context<'a>() -> MisuseResult<&'a Context> {
    let ctx = thread::main_context();
    if ctx.is_null() {
        return Err(Misuse::new(
            "no main context: call qemu_init_main_loop first (timer_new_*/timer_init_* use the main loop's context)",
        ));
    }
    // SAFETY: the main context lives for the rest of the process.
    Ok(unsafe { &*ctx })
}

/// A timer list group other than NULL cannot be named through this API.
fn group_context<'a>(group: *mut QEMUTimerListGroup) -> MisuseResult<&'a Context> {
    if !group.is_null() {
        return Err(Misuse::new(
            "only the main loop's timer list group (NULL) is supported; use aio_timer_init for a context",
        ));
    }
    main_context()
}

#[allow(clippy::too_many_arguments)]
fn init(
    ts: *mut QEMUTimer,
    ctx: &Context,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> MisuseResult<()> {
    timer(ts)?.init(
        ctx,
        clock(clock_type)?,
        scale,
        attributes,
        timer_func(cb)?,
        opaque,
    )
}

/// `calloc`s a timer and initializes it. `malloc` memory, so `timer_free`
/// and `g_free` (after `timer_del`) both release it, as with QEMU.
fn new_timer(
    ctx: &Context,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> MisuseResult<*mut QEMUTimer> {
    // Validate before allocating, so a misuse report leaks nothing.
    let clock = clock(clock_type)?;
    let cb = timer_func(cb)?;
    // SAFETY: calloc has no preconditions.
    let ts = unsafe { libc::calloc(1, size_of::<QEMUTimer>()) }.cast::<QEMUTimer>();
    if ts.is_null() {
        return Err(Misuse::new("out of memory"));
    }
    timer(ts)?.init(ctx, clock, scale, attributes, cb, opaque)?;
    Ok(ts)
}

// ---- clocks ----

/// The current time of `type` in nanoseconds. REALTIME: `CLOCK_MONOTONIC`;
/// HOST: `CLOCK_REALTIME` (wall clock); VIRTUAL and VIRTUAL_RT: monotonic,
/// frozen while disabled with `qemu_clock_enable` and resuming without a
/// jump. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_ns(clock_type: QEMUClockType) -> i64 {
    ffi_call("qemu_clock_get_ns", || Ok(clock(clock_type)?.now_ns()))
}

/// `qemu_clock_get_ns(type) / SCALE_MS`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_ms(clock_type: QEMUClockType) -> i64 {
    ffi_call("qemu_clock_get_ms", || {
        Ok(clock(clock_type)?.now_ns() / i64::from(SCALE_MS))
    })
}

/// `qemu_clock_get_ns(type) / SCALE_US`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_get_us(clock_type: QEMUClockType) -> i64 {
    ffi_call("qemu_clock_get_us", || {
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
    ffi_call("qemu_clock_enable", || {
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
    ffi_call("qemu_init_clocks", || {
        timer::init_clocks(notify_func(notify_cb));
        Ok(())
    })
}

/// QEMU's name for `qemu_init_clocks`.
#[unsafe(no_mangle)]
pub extern "C" fn init_clocks(notify_cb: *mut QEMUTimerListNotifyCB) {
    ffi_call("init_clocks", || {
        timer::init_clocks(notify_func(notify_cb));
        Ok(())
    })
}

// ---- timers bound to a context ----

/// Initializes the caller-owned `ts` (not pending) to call `cb(opaque)` from
/// `ctx`'s loop when `type` reaches its deadline; `timer_mod` deadlines are
/// in units of `scale` ns. Any thread. `ts` must not be armed.
#[unsafe(no_mangle)]
pub extern "C" fn aio_timer_init(
    ctx: *mut AioContext,
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    scale: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("aio_timer_init", || {
        init(ts, context(ctx)?, clock_type, scale, 0, cb, opaque)
    })
}

/// Like `aio_timer_init`, with `QEMU_TIMER_ATTR_*` attributes.
#[unsafe(no_mangle)]
pub extern "C" fn aio_timer_init_with_attrs(
    ctx: *mut AioContext,
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("aio_timer_init_with_attrs", || {
        init(ts, context(ctx)?, clock_type, scale, attributes, cb, opaque)
    })
}

/// Allocates and initializes a timer of `ctx` (see `aio_timer_init`).
/// Release it with `timer_free`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_timer_new(
    ctx: *mut AioContext,
    clock_type: QEMUClockType,
    scale: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("aio_timer_new", || {
        new_timer(context(ctx)?, clock_type, scale, 0, cb, opaque)
    })
}

/// Like `aio_timer_new`, with `QEMU_TIMER_ATTR_*` attributes.
#[unsafe(no_mangle)]
pub extern "C" fn aio_timer_new_with_attrs(
    ctx: *mut AioContext,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("aio_timer_new_with_attrs", || {
        new_timer(context(ctx)?, clock_type, scale, attributes, cb, opaque)
    })
}

// ---- timers of the main context ----

/// Initializes `ts` as a timer of the main context, or of the timer list
/// group `timer_list_group`, which must be NULL (the main loop's).
#[unsafe(no_mangle)]
pub extern "C" fn timer_init_full(
    ts: *mut QEMUTimer,
    timer_list_group: *mut QEMUTimerListGroup,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("timer_init_full", || {
        let ctx = group_context(timer_list_group)?;
        init(ts, ctx, clock_type, scale, attributes, cb, opaque)
    })
}

/// `aio_timer_init` on the main context (`qemu_init_main_loop` first).
#[unsafe(no_mangle)]
pub extern "C" fn timer_init(
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    scale: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("timer_init", || {
        init(ts, main_context()?, clock_type, scale, 0, cb, opaque)
    })
}

/// `timer_init(ts, type, SCALE_NS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_init_ns(
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("timer_init_ns", || {
        init(ts, main_context()?, clock_type, SCALE_NS, 0, cb, opaque)
    })
}

/// `timer_init(ts, type, SCALE_US, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_init_us(
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("timer_init_us", || {
        init(ts, main_context()?, clock_type, SCALE_US, 0, cb, opaque)
    })
}

/// `timer_init(ts, type, SCALE_MS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_init_ms(
    ts: *mut QEMUTimer,
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) {
    ffi_call("timer_init_ms", || {
        init(ts, main_context()?, clock_type, SCALE_MS, 0, cb, opaque)
    })
}

/// Allocates a timer of the main context, or of the timer list group
/// `timer_list_group`, which must be NULL (the main loop's).
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_full(
    timer_list_group: *mut QEMUTimerListGroup,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("timer_new_full", || {
        let ctx = group_context(timer_list_group)?;
        new_timer(ctx, clock_type, scale, attributes, cb, opaque)
    })
}

/// `aio_timer_new` on the main context (`qemu_init_main_loop` first).
#[unsafe(no_mangle)]
pub extern "C" fn timer_new(
    clock_type: QEMUClockType,
    scale: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("timer_new", || {
        new_timer(main_context()?, clock_type, scale, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_NS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_ns(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("timer_new_ns", || {
        new_timer(main_context()?, clock_type, SCALE_NS, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_US, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_us(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("timer_new_us", || {
        new_timer(main_context()?, clock_type, SCALE_US, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_MS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_ms(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call("timer_new_ms", || {
        new_timer(main_context()?, clock_type, SCALE_MS, 0, cb, opaque)
    })
}

// ---- arming and state ----

/// Arms (or re-arms) `ts` to fire when its clock reaches `expire_time`, in
/// units of the timer's scale. A negative deadline means 0 (already due).
/// Any thread; wakes the owning context if this is now its earliest timer.
/// O(log n) in the context's armed timers. Aborts if `ts` was never
/// initialized.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call("timer_mod", || timer(ts)?.arm(expire_time, true, false))
}

/// Like `timer_mod`, with `expire_time` in nanoseconds.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_ns(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call("timer_mod_ns", || timer(ts)?.arm(expire_time, false, false))
}

/// Like `timer_mod`, but a pending timer is only moved earlier, never
/// later.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_anticipate(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call("timer_mod_anticipate", || {
        timer(ts)?.arm(expire_time, true, true)
    })
}

/// Like `timer_mod_anticipate`, with `expire_time` in nanoseconds.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_anticipate_ns(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call("timer_mod_anticipate_ns", || {
        timer(ts)?.arm(expire_time, false, true)
    })
}

/// Disarms `ts` if pending. Any thread, including from a callback; a
/// callback already running is not waited for. Nothing happens for a timer
/// that is not initialized or was deinitialized (as in QEMU).
#[unsafe(no_mangle)]
pub extern "C" fn timer_del(ts: *mut QEMUTimer) {
    ffi_call("timer_del", || timer(ts)?.del())
}

/// Disarms `ts` (if armed) and detaches it from its context; initialize it
/// again before reuse. The memory stays the caller's.
#[unsafe(no_mangle)]
pub extern "C" fn timer_deinit(ts: *mut QEMUTimer) {
    ffi_call("timer_deinit", || timer(ts)?.deinit())
}

/// Disarms `ts` (if armed) and frees it (`free`, so it must come from
/// `timer_new*`/`aio_timer_new*`, `malloc` or `g_malloc`). NULL: nothing.
/// Allowed from the timer's own callback.
#[unsafe(no_mangle)]
pub extern "C" fn timer_free(ts: *mut QEMUTimer) {
    ffi_call("timer_free", || {
        if ts.is_null() {
            return Ok(());
        }
        timer(ts)?.deinit()?;
        // SAFETY: per the contract above the memory is malloc'ed and the
        // caller gives it up; the timer is in no heap any more.
        unsafe { libc::free(ts.cast()) };
        Ok(())
    })
}

/// Whether `ts` is armed and has not fired yet. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn timer_pending(ts: *const QEMUTimer) -> bool {
    ffi_call("timer_pending", || Ok(timer(ts.cast_mut())?.pending()))
}

/// QEMU's `timer_head->expire_time <= current_time * scale`, with
/// `current_time` in the timer's scale. A timer that is not pending counts
/// as expired (its `expire_time` is -1), as in QEMU.
#[unsafe(no_mangle)]
pub extern "C" fn timer_expired(timer_head: *const QEMUTimer, current_time: i64) -> bool {
    ffi_call("timer_expired", || {
        Ok(timer(timer_head.cast_mut())?.expired(current_time))
    })
}

/// The deadline of `ts` in nanoseconds, or -1 (UINT64_MAX) if not pending.
#[unsafe(no_mangle)]
pub extern "C" fn timer_expire_time_ns(ts: *const QEMUTimer) -> u64 {
    ffi_call("timer_expire_time_ns", || {
        Ok(timer(ts.cast_mut())?.expire_time_ns() as u64)
    })
}

// ---- helpers ----

/// The sooner of two timeouts in ns, -1 meaning infinite.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_soonest_timeout(timeout1: i64, timeout2: i64) -> i64 {
    ffi_call("qemu_soonest_timeout", || {
        Ok(soonest_timeout(timeout1, timeout2))
    })
}

/// A timeout in ns as poll(2) milliseconds: negative gives -1 (infinite),
/// 0 stays 0, anything else rounds *up* to the next millisecond (so a short
/// timeout never becomes a busy loop), capped at INT32_MAX.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_timeout_ns_to_ms(ns: i64) -> c_int {
    ffi_call("qemu_timeout_ns_to_ms", || {
        // The same rounding GLib's poll timeout gets from the GSource.
        Ok(crate::gsource::timeout_ns_to_ms(ns))
    })
}

// ---- per-clock queries on the main loop's timers (`qemu/timer.h`) ----

/// The main context's timer lists, if the main loop exists.
fn main_timers<'a>() -> Option<&'a timer::TimerLists> {
    let main = thread::main_context();
    // SAFETY: the main context, once created, is never freed.
    (!main.is_null()).then(|| &unsafe { &*main }.timers)
}

/// Whether a main-loop timer of `type` is armed. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_has_timers(r#type: QEMUClockType) -> bool {
    ffi_call("qemu_clock_has_timers", || {
        let clock = clock(r#type)?;
        Ok(main_timers().is_some_and(|t| t.clock_has_timers(clock)))
    })
}

/// Whether a main-loop timer of `type` has expired. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_expired(r#type: QEMUClockType) -> bool {
    ffi_call("qemu_clock_expired", || {
        let clock = clock(r#type)?;
        Ok(main_timers().is_some_and(|t| t.clock_expired(clock)))
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
    ffi_call("qemu_clock_deadline_ns_all", || {
        Ok(timer::clock_deadline_ns_all(clock(r#type)?))
    })
}

/// Runs the main loop's expired timers of `type`; returns whether any ran.
/// Main loop thread (or a BQL holder).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_run_timers(r#type: QEMUClockType) -> bool {
    ffi_call("qemu_clock_run_timers", || {
        let clock = clock(r#type)?;
        Ok(main_timers().is_some_and(|t| t.clock_run(clock)))
    })
}

/// `qemu_clock_run_timers` for every clock; returns whether any timer ran.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_run_all_timers() -> bool {
    ffi_call("qemu_clock_run_all_timers", || {
        Ok(main_timers().is_some_and(|t| {
            ClockType::ALL
                .into_iter()
                .fold(false, |ran, c| t.clock_run(c) | ran)
        }))
    })
}

/// Wakes every loop with timers on `type` (and the `qemu_init_clocks`
/// listener) so it recomputes its deadline. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_notify(r#type: QEMUClockType) {
    ffi_call("qemu_clock_notify", || {
        timer::clock_notify(clock(r#type)?);
        Ok(())
    })
}

/// Whether `type` counts for the main loop's deadline: always true (aioctx
/// has no icount mode, where QEMU excludes VIRTUAL).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_clock_use_for_deadline(r#type: QEMUClockType) -> bool {
    ffi_call("qemu_clock_use_for_deadline", || {
        clock(r#type).map(|_| true)
    })
}

#[cfg(test)]
mod tests {
    use std::ptr;

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

    #[test]
    fn only_the_null_group_is_accepted() {
        let fake = ptr::dangling_mut::<QEMUTimerListGroup>();
        assert!(group_context(fake).is_err());
    }
}
