//! Timers and clocks (`qemu/timer.h`).
//!
//! A `QEMUTimer` (QEMU's 48-byte layout) is a callback bound to one timer
//! list: a context's list of one clock, or a standalone one. Callers embed
//! the struct (`aio_timer_init`, `timer_init_*`, `timer_init_full` with any
//! `QEMUTimerListGroup *`: `&ctx->tlg`, `&main_loop_tlg`, NULL, or a group
//! from `timerlistgroup_init`) or allocate it (`aio_timer_new`,
//! `timer_new_*`, freed with `timer_free`, or `g_new0` + `g_free` after
//! `timer_del` as QEMU's inline functions do). The `timer_*` functions
//! without a context bind to the main context (`qemu_init_main_loop`
//! first), like QEMU's main-loop timers. Clocks and lists: `ffi/clock.rs`.
//!
//! Threading: initialize, arm, re-arm and delete from any thread; the
//! callback runs in the thread polling the context, after its bottom halves,
//! with no lock held. `QEMUClockType` is a hand-written enum in the header
//! (cbindgen.toml), because `QEMUTimerListNotifyCB` needs it before any
//! generated type; the Rust side receives it as a plain `int` and validates
//! it, so an out-of-range value is reported instead of being undefined.

use std::ffi::{c_int, c_void};
use std::mem::{align_of, offset_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::boundary::Handle;
use super::boundary::{self, caller_struct, context, ffi_call, ffi_call_leaf, required_c_fn};
use super::types::AioContext;
use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::timer::{CLOCK_COUNT, ClockType, Timer, TimerList};

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

/// QEMU's `QEMUTimerList`: the armed timers of one clock, of a context
/// (`ctx->tlg.tl[type]`) or standalone (`timerlist_new`). Opaque.
pub struct QEMUTimerList {
    _opaque: [u8; 0],
}

/// QEMU's timer list group: one list per clock. Every context has one
/// (`ctx->tlg`, its clocks); `main_loop_tlg` is the main context's;
/// `timerlistgroup_init` fills a caller-owned one with standalone lists.
#[repr(C)]
pub struct QEMUTimerListGroup {
    /// The lists, indexed by `QEMUClockType` (`QEMU_CLOCK_MAX` entries).
    pub tl: [*mut QEMUTimerList; 4],
}

/// A timer: a callback bound to one timer list (a context and a clock, or a
/// standalone list). QEMU's 48-byte layout, so callers can embed it; its
/// fields belong to aioctx and may only be read (`expire_time`, `cb`,
/// `opaque`, `attributes`, `scale` mean what QEMU's fields of the same
/// names mean). Initialize it before any other use; `timer_mod` on a
/// never-initialized timer aborts. Do not copy or move it while it is
/// armed. It may live in `g_new0` memory and be released with `g_free`
/// after `timer_del`, as QEMU's inline `timer_free` does.
#[repr(C)]
pub struct QEMUTimer {
    /// Deadline in nanoseconds of the timer's clock; -1 when not pending.
    pub expire_time: i64,
    /// The list the timer is armed on.
    pub timer_list: *mut QEMUTimerList,
    /// The callback.
    pub cb: *mut QEMUTimerCB,
    /// Its argument.
    pub opaque: *mut c_void,
    /// Position in its list's heap; UINT32_MAX when not armed (QEMU's
    /// `next` pointer slot holds this and `magic`).
    pub heap_index: u32,
    /// Tells initialized timers from other memory.
    pub magic: u32,
    /// `QEMU_TIMER_ATTR_*` bits.
    pub attributes: c_int,
    /// Nanoseconds per unit of `timer_mod` (`SCALE_NS`, `SCALE_US`, ...).
    pub scale: c_int,
}

// The core reads and writes the caller's struct as `Timer` (atomics).
const _: () = {
    assert!(size_of::<QEMUTimer>() == size_of::<Timer>());
    assert!(align_of::<QEMUTimer>() == align_of::<Timer>());
    assert!(offset_of!(QEMUTimer, expire_time) == offset_of!(Timer, expire_time));
    assert!(offset_of!(QEMUTimer, timer_list) == offset_of!(Timer, timer_list));
    assert!(offset_of!(QEMUTimer, cb) == offset_of!(Timer, cb));
    assert!(offset_of!(QEMUTimer, opaque) == offset_of!(Timer, opaque));
    assert!(offset_of!(QEMUTimer, heap_index) == offset_of!(Timer, heap_index));
    assert!(offset_of!(QEMUTimer, magic) == offset_of!(Timer, magic));
    assert!(offset_of!(QEMUTimer, attributes) == offset_of!(Timer, attributes));
    assert!(offset_of!(QEMUTimer, scale) == offset_of!(Timer, scale));
};
// QEMU 10.2's layouts (docs/spec/qemu-abi.md section 1).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<QEMUTimer>() == 48 && align_of::<QEMUTimer>() == 8);
    assert!(offset_of!(QEMUTimer, timer_list) == 8);
    assert!(offset_of!(QEMUTimer, attributes) == 40);
    assert!(offset_of!(QEMUTimer, scale) == 44);
    assert!(size_of::<QEMUTimerListGroup>() == 32);
};
// `tl` is written with a literal for cbindgen.
const _: () = assert!(CLOCK_COUNT == 4);

/// The main loop's timer list group: the main context's lists, filled by
/// `qemu_init_main_loop` (all NULL before). `timer_new_*`/`timer_init_*`,
/// and `timer_init_full` with a NULL group, use it. Read-only for callers.
#[unsafe(no_mangle)]
pub static mut main_loop_tlg: QEMUTimerListGroup = QEMUTimerListGroup {
    tl: [ptr::null_mut(); CLOCK_COUNT],
};

/// Points `main_loop_tlg` at the main context's lists.
pub(crate) fn fill_main_loop_tlg(main: &Context) {
    let lists = main.timers().group_pointers();
    for (i, list) in lists.into_iter().enumerate() {
        // SAFETY: the slot is inside the static; written atomically, as C
        // readers may load it from any thread.
        unsafe { group_slot(&raw mut main_loop_tlg, i) }.store(list.cast(), Ordering::Release);
    }
}

/// Slot `index` of a group, as an atomic.
///
/// # Safety
/// `group` points to a live, aligned `QEMUTimerListGroup`; `index <
/// CLOCK_COUNT`.
unsafe fn group_slot<'a>(
    group: *mut QEMUTimerListGroup,
    index: usize,
) -> &'a AtomicPtr<QEMUTimerList> {
    // SAFETY: per the caller; `AtomicPtr` has the layout of a pointer.
    unsafe { AtomicPtr::from_ptr(ptr::addr_of_mut!((*group).tl[index])) }
}

// ---- conversions (the only casts from C timer arguments) ----

/// Validates a `QEMUTimer *` (non-NULL, aligned) as the core's view.
#[inline(always)]
fn timer<'a>(ts: *mut QEMUTimer) -> MisuseResult<&'a Timer> {
    // `Timer`'s fields are all atomics.
    caller_struct(ts, "QEMUTimer")
}

#[inline(always)]
fn clock(clock_type: QEMUClockType) -> MisuseResult<ClockType> {
    ClockType::from_raw(clock_type.0)
}

/// The main context, for the `timer_*` functions that have no context.
fn main_context<'a>() -> MisuseResult<&'a Context> {
    boundary::main_context(
        "no main context: call qemu_init_main_loop first (timer_new_*/timer_init_* use the main loop's context)",
    )
}

/// The list of `clock` in `group`; NULL means the main loop's group.
fn group_list<'a>(group: *mut QEMUTimerListGroup, clock: ClockType) -> MisuseResult<&'a TimerList> {
    if group.is_null() || ptr::eq(group, &raw mut main_loop_tlg) {
        return Ok(main_context()?.timers().list(clock));
    }
    let group = super::clock::group_ptr(group)?;
    // SAFETY: a non-null, aligned group pointer is caller memory of the
    // group's size (the C contract); `clock.index() < CLOCK_COUNT`.
    let list = unsafe { group_slot(group, clock.index()) }.load(Ordering::Acquire);
    if list.is_null() {
        return Err(Misuse::new(
            "QEMUTimerListGroup has no list for this clock (timerlistgroup_init it first)",
        ));
    }
    // SAFETY: a group's lists are made by this library (a context's, or
    // `timerlistgroup_init`'s); `from_handle` rejects other memory it can
    // recognise.
    unsafe { TimerList::from_handle(list.cast()) }
}

/// The main loop's list of `clock_type`.
fn main_list<'a>(clock_type: QEMUClockType) -> MisuseResult<&'a TimerList> {
    Ok(main_context()?.timers().list(clock(clock_type)?))
}

/// The list of `clock_type` of `ctx`.
fn context_list<'a>(
    ctx: *mut AioContext,
    clock_type: QEMUClockType,
) -> MisuseResult<&'a TimerList> {
    Ok(context(ctx)?.timers().list(clock(clock_type)?))
}

fn init(
    ts: *mut QEMUTimer,
    list: MisuseResult<&TimerList>,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> MisuseResult<()> {
    let ts = timer(ts)?;
    ts.init_on(list?, scale, attributes, required_c_fn(cb)?, opaque)
}

/// `calloc`s a timer and initializes it. `malloc` memory, so `timer_free`
/// and `g_free` (after `timer_del`) both release it, as with QEMU.
fn new_timer(
    list: MisuseResult<&TimerList>,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> MisuseResult<*mut QEMUTimer> {
    // Validate before allocating, so a misuse report leaks nothing.
    let list = list?;
    let cb = required_c_fn(cb)?;
    // SAFETY: calloc has no preconditions.
    let ts = unsafe { libc::calloc(1, size_of::<QEMUTimer>()) }.cast::<QEMUTimer>();
    if ts.is_null() {
        return Err(Misuse::new("out of memory"));
    }
    timer(ts)?.init_on(list, scale, attributes, cb, opaque)?;
    Ok(ts)
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
    ffi_call(c"aio_timer_init", || {
        init(ts, context_list(ctx, clock_type), scale, 0, cb, opaque)
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
    ffi_call(c"aio_timer_init_with_attrs", || {
        init(
            ts,
            context_list(ctx, clock_type),
            scale,
            attributes,
            cb,
            opaque,
        )
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
    ffi_call(c"aio_timer_new", || {
        new_timer(context_list(ctx, clock_type), scale, 0, cb, opaque)
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
    ffi_call(c"aio_timer_new_with_attrs", || {
        new_timer(context_list(ctx, clock_type), scale, attributes, cb, opaque)
    })
}

// ---- timers of the main context ----

/// Initializes `ts` (not pending) as a timer of the `type` list of
/// `timer_list_group`: a context's `&ctx->tlg` (QEMU's inline
/// `aio_timer_init` passes it), `&main_loop_tlg` or NULL (the main loop's,
/// `qemu_init_main_loop` first), or a group set up with
/// `timerlistgroup_init`. Any thread. `ts` must not be armed.
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
    ffi_call(c"timer_init_full", || {
        let list = clock(clock_type).and_then(|c| group_list(timer_list_group, c));
        init(ts, list, scale, attributes, cb, opaque)
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
    ffi_call(c"timer_init", || {
        init(ts, main_list(clock_type), scale, 0, cb, opaque)
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
    ffi_call(c"timer_init_ns", || {
        init(ts, main_list(clock_type), SCALE_NS, 0, cb, opaque)
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
    ffi_call(c"timer_init_us", || {
        init(ts, main_list(clock_type), SCALE_US, 0, cb, opaque)
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
    ffi_call(c"timer_init_ms", || {
        init(ts, main_list(clock_type), SCALE_MS, 0, cb, opaque)
    })
}

/// Allocates and initializes a timer of `timer_list_group` (see
/// `timer_init_full`). Release it with `timer_free`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_full(
    timer_list_group: *mut QEMUTimerListGroup,
    clock_type: QEMUClockType,
    scale: c_int,
    attributes: c_int,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call(c"timer_new_full", || {
        let list = clock(clock_type).and_then(|c| group_list(timer_list_group, c));
        new_timer(list, scale, attributes, cb, opaque)
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
    ffi_call(c"timer_new", || {
        new_timer(main_list(clock_type), scale, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_NS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_ns(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call(c"timer_new_ns", || {
        new_timer(main_list(clock_type), SCALE_NS, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_US, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_us(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call(c"timer_new_us", || {
        new_timer(main_list(clock_type), SCALE_US, 0, cb, opaque)
    })
}

/// `timer_new(type, SCALE_MS, cb, opaque)`.
#[unsafe(no_mangle)]
pub extern "C" fn timer_new_ms(
    clock_type: QEMUClockType,
    cb: *mut QEMUTimerCB,
    opaque: *mut c_void,
) -> *mut QEMUTimer {
    ffi_call(c"timer_new_ms", || {
        new_timer(main_list(clock_type), SCALE_MS, 0, cb, opaque)
    })
}

// ---- arming and state ----
//
// The arming functions and `timer_del` are leaf calls (`ffi_call_leaf`):
// the name is recorded only when an arming wakes the list's runner
// (`TimerList::wake` enters it before the eventfd write, which may report
// with `die_here`, and before calling a notify callback).

/// Arms (or re-arms) `ts` to fire when its clock reaches `expire_time`, in
/// units of the timer's scale. A negative deadline means 0 (already due).
/// Any thread; wakes the owning context if this is now its earliest timer.
/// O(log n) in the context's armed timers. Aborts if `ts` was never
/// initialized.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call_leaf(c"timer_mod", |api| {
        timer(ts)?.arm_from(expire_time, true, false, api)
    })
}

/// Like `timer_mod`, with `expire_time` in nanoseconds.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_ns(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call_leaf(c"timer_mod_ns", |api| {
        timer(ts)?.arm_from(expire_time, false, false, api)
    })
}

/// Like `timer_mod`, but a pending timer is only moved earlier, never
/// later.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_anticipate(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call_leaf(c"timer_mod_anticipate", |api| {
        timer(ts)?.arm_from(expire_time, true, true, api)
    })
}

/// Like `timer_mod_anticipate`, with `expire_time` in nanoseconds.
#[unsafe(no_mangle)]
pub extern "C" fn timer_mod_anticipate_ns(ts: *mut QEMUTimer, expire_time: i64) {
    ffi_call_leaf(c"timer_mod_anticipate_ns", |api| {
        timer(ts)?.arm_from(expire_time, false, true, api)
    })
}

/// Disarms `ts` if pending. Any thread, including from a callback; a
/// callback already running is not waited for. Nothing happens for a timer
/// that is not initialized or was deinitialized (as in QEMU).
#[unsafe(no_mangle)]
pub extern "C" fn timer_del(ts: *mut QEMUTimer) {
    ffi_call_leaf(c"timer_del", |_| timer(ts)?.del())
}

/// Disarms `ts` (if armed) and detaches it from its context; initialize it
/// again before reuse. The memory stays the caller's.
#[unsafe(no_mangle)]
pub extern "C" fn timer_deinit(ts: *mut QEMUTimer) {
    ffi_call(c"timer_deinit", || timer(ts)?.deinit())
}

/// Disarms `ts` (if armed) and frees it (`free`, so it must come from
/// `timer_new*`/`aio_timer_new*`, `malloc` or `g_malloc`). NULL: nothing.
/// Allowed from the timer's own callback.
#[unsafe(no_mangle)]
pub extern "C" fn timer_free(ts: *mut QEMUTimer) {
    ffi_call(c"timer_free", || {
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
    ffi_call_leaf(c"timer_pending", |_| Ok(timer(ts.cast_mut())?.pending()))
}

/// QEMU's `timer_head->expire_time <= current_time * scale`, with
/// `current_time` in the timer's scale. A timer that is not pending counts
/// as expired (its `expire_time` is -1), as in QEMU.
#[unsafe(no_mangle)]
pub extern "C" fn timer_expired(timer_head: *const QEMUTimer, current_time: i64) -> bool {
    ffi_call_leaf(c"timer_expired", |_| {
        Ok(timer(timer_head.cast_mut())?.expired(current_time))
    })
}

/// The deadline of `ts` in nanoseconds, or -1 (UINT64_MAX) if not pending.
#[unsafe(no_mangle)]
pub extern "C" fn timer_expire_time_ns(ts: *const QEMUTimer) -> u64 {
    ffi_call_leaf(c"timer_expire_time_ns", |_| {
        Ok(timer(ts.cast_mut())?.expire_time_ns() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_without_lists_is_refused() {
        let mut empty = QEMUTimerListGroup {
            tl: [ptr::null_mut(); CLOCK_COUNT],
        };
        let err = group_list(&raw mut empty, ClockType::Realtime)
            .err()
            .unwrap();
        assert!(err.to_string().contains("timerlistgroup_init"), "{err}");
        let misaligned = ptr::without_provenance_mut::<QEMUTimerListGroup>(4);
        assert!(group_list(misaligned, ClockType::Realtime).is_err());
    }
}
