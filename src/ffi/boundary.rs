//! The one panic/abort boundary every exported function runs inside, and
//! the conversions from C handles to core objects.

use std::any::Any;
use std::ffi::CStr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use std::mem::size_of;

use super::co_timeout::CleanupFunc;
use super::coroutine::CoroutineEntry;
use super::thread_pool::ThreadPoolFunc;
use super::timer::{QEMUTimerCB, QEMUTimerListNotifyCB};
use super::types::{AioContext, AioPollFn, EventNotifierHandler, IOHandler, QEMUBH, QEMUBHFunc};
use crate::aiocb::{BlockCompletionFunc, CompletionFn};
use crate::bh::{Bh, BhFn};
use crate::context::Context;
use crate::coroutine::EntryFn;
use crate::fatal::{self, Misuse, MisuseResult};
pub(crate) use crate::handle::Handle;
use crate::handlers::{IoFn, PollFn};
use crate::thread_pool::ThreadPoolFn;
use crate::timer::{ClockNotifyFn, TimerFn};

static PANIC_HOOK: Once = Once::new();

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}

/// With `panic = "abort"` a panic never returns to `catch_unwind`, so the
/// hook prints the one-line report before the runtime aborts. Installed with
/// the exit guard ([`fatal::install_exit_guard`]) on the first API call.
fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_else(|| "unknown location".into());
            fatal::die(
                "internal error",
                &format!("{} (at {place})", panic_message(info.payload())),
            );
        }));
        fatal::install_exit_guard();
    });
}

/// Runs the body of the exported function `func`. A [`Misuse`] or a panic
/// becomes `aioctx: <func>: <problem>` on stderr and an abort. While the
/// body runs, `func` is this thread's current API function
/// ([`fatal::ApiCall`]), which core code reporting with
/// [`fatal::die_here`] names; the outer one (a callback's caller) is
/// current again when the body returns. The body must not suspend the
/// calling coroutine: functions that may yield use [`ffi_call_yielding`]
/// (or [`ffi_call_yielding_leaf`]).
#[inline(always)]
pub(crate) fn ffi_call<R>(func: &'static CStr, body: impl FnOnce() -> MisuseResult<R>) -> R {
    install_panic_hook();
    let call = fatal::ApiCall::enter(func);
    let result = catch_unwind(AssertUnwindSafe(body));
    drop(call);
    finish(func, result)
}

/// [`ffi_call`] for the cheapest exported functions (`qemu_bh_schedule`,
/// `aio_notify`, `timer_mod`, `qemu_coroutine_enter`, `qemu_in_coroutine`,
/// ...), whose body reports with [`fatal::die_here`] and calls C callbacks
/// only on rare paths: the body gets the name as a [`fatal::LazyApiCall`]
/// and records it ([`fatal::LazyApiCall::enter`]) around each such path (a
/// failed wakeup write, `timer_mod`'s clock-notify callback), so the fast
/// path does not touch the thread-local. Entering a coroutine is allowed:
/// it runs under its own API name, and the resumer puts the caller's back
/// (see `coroutine::enter`). The reports are the same as with
/// [`ffi_call`]. In debug builds a placeholder is recorded for the whole
/// call, and `die_here` asserts it never reports under it.
#[inline(always)]
pub(crate) fn ffi_call_leaf<R>(
    func: &'static CStr,
    body: impl FnOnce(fatal::LazyApiCall) -> MisuseResult<R>,
) -> R {
    install_panic_hook();
    #[cfg(debug_assertions)]
    let call = fatal::ApiCall::enter(fatal::UNRECORDED_LEAF);
    // No catch_unwind: a panic cannot return here (the hook aborts).
    let result = body(fatal::LazyApiCall::new(func));
    #[cfg(debug_assertions)]
    drop(call);
    or_fail(func, result)
}

/// [`ffi_call_leaf`] for an exported function that may suspend the calling
/// coroutine but whose body never reports with [`fatal::die_here`]
/// (`qemu_coroutine_yield`, `qemu_co_mutex_lock`: their misuse is returned
/// and reported here with `func`). Nothing is recorded: while the
/// coroutine is switched out its resumers keep its API name in the
/// coroutine object (`coroutine::enter`), so the name it had before the
/// call is current again when the call returns, as it would be after an
/// [`ffi_call`]. In debug builds the placeholder of [`ffi_call_leaf`] is
/// recorded for the call, and the name found is put back after it with
/// [`fatal::set_current_api_after_switch`] (not through an address
/// computed before a switch: the coroutine may come back on another
/// thread).
#[inline(always)]
pub(crate) fn ffi_call_yielding_leaf<R>(
    func: &'static CStr,
    body: impl FnOnce() -> MisuseResult<R>,
) -> R {
    install_panic_hook();
    #[cfg(debug_assertions)]
    let outer = fatal::replace_current_api(fatal::ApiName::of(fatal::UNRECORDED_LEAF));
    // No catch_unwind: a panic cannot return here (the hook aborts).
    let result = body();
    #[cfg(debug_assertions)]
    fatal::set_current_api_after_switch(outer);
    or_fail(func, result)
}

/// [`ffi_call`] for an exported function that may suspend the calling
/// coroutine and resume it on another thread (`qemu_co_queue_wait`,
/// `qemu_co_sleep_ns`, ...): the name is recorded with
/// [`fatal::enter_yielding_api`], which does not restore the caller's.
#[inline(always)]
pub(crate) fn ffi_call_yielding<R>(
    func: &'static CStr,
    body: impl FnOnce() -> MisuseResult<R>,
) -> R {
    install_panic_hook();
    fatal::enter_yielding_api(func);
    finish(func, catch_unwind(AssertUnwindSafe(body)))
}

/// The value of a caught body (see [`or_fail`]), or the panic reported.
#[inline(always)]
fn finish<R>(func: &'static CStr, result: std::thread::Result<MisuseResult<R>>) -> R {
    match result {
        Ok(result) => or_fail(func, result),
        Err(payload) => fail(func, panic_message(&*payload)),
    }
}

/// The body's value, or its misuse reported for `func`.
#[inline(always)]
fn or_fail<R>(func: &'static CStr, result: MisuseResult<R>) -> R {
    match result {
        Ok(value) => value,
        Err(misuse) => fail(func, &misuse.0),
    }
}

#[cold]
#[inline(never)]
fn fail(func: &'static CStr, problem: &str) -> ! {
    fatal::die(func.to_str().unwrap_or("?"), problem)
}

/// Validates a C context handle.
#[inline(always)]
pub(crate) fn context<'a>(ctx: *mut AioContext) -> MisuseResult<&'a Context> {
    // SAFETY: handles given to C are `Context` pointers (or garbage, which
    // `from_handle` rejects on a best-effort basis).
    unsafe { Context::from_handle(ctx.cast_const().cast()) }
}

/// The C handle for a context.
#[inline(always)]
pub(crate) fn context_handle(ctx: *const Context) -> *mut AioContext {
    ctx.cast_mut().cast()
}

/// The main context, if `qemu_init_main_loop` created it.
#[inline(always)]
pub(crate) fn main_context_if_any() -> Option<&'static Context> {
    // SAFETY: the main context, once created, is never freed.
    unsafe { crate::thread::main_context().as_ref() }
}

/// The main context, or `missing` (what to call first) as the misuse.
#[inline(always)]
pub(crate) fn main_context(missing: &'static str) -> MisuseResult<&'static Context> {
    main_context_if_any().ok_or_else(|| Misuse::new(missing))
}

/// Validates a C BH handle.
#[inline(always)]
pub(crate) fn live_bh<'a>(bh: *mut QEMUBH) -> MisuseResult<&'a Bh> {
    // Schedule, cancel and delete RMW the flags next to the magic read
    // first: one writable fetch instead of a shared one and an upgrade
    // (aio_bh_call, which writes nothing, gets a useless hint).
    crate::atomics::prefetch_for_write(bh);
    // SAFETY: handles given to C are `Bh` pointers (see `context`).
    unsafe { Bh::from_handle(bh.cast_const().cast()) }
}

/// The C handle for a BH.
#[inline(always)]
pub(crate) fn bh_handle(bh: *mut Bh) -> *mut QEMUBH {
    bh.cast()
}

// ---- caller-owned structs ----

/// Checks a pointer to caller memory (`what`: its C type, for the report):
/// non-NULL and aligned.
#[inline(always)]
pub(crate) fn check_ptr<T>(p: *const T, what: &'static str) -> MisuseResult<()> {
    if p.is_null() || !p.is_aligned() {
        return Err(bad_ptr(p.cast(), what));
    }
    Ok(())
}

/// The report of [`check_ptr`], built out of line.
#[cold]
#[inline(never)]
fn bad_ptr(p: *const u8, what: &'static str) -> Misuse {
    if p.is_null() {
        Misuse::new(format!("{what} is NULL"))
    } else {
        Misuse::new(format!("{what} pointer {p:p} is misaligned"))
    }
}

/// Validates a caller-owned C struct (`QemuMutex`, `CoMutex`, `QEMUTimer`,
/// ...) as the core type `T` that mirrors its layout (the layouts are
/// asserted equal where the C type is declared; `T` may be `C` itself).
///
/// The C caller promises `p` points to its object for the duration of the
/// call; every field the core writes is an atomic or a cell, so a shared
/// reference is sound while other threads use the object too.
#[inline(always)]
pub(crate) fn caller_struct<'a, C, T>(p: *mut C, what: &'static str) -> MisuseResult<&'a T> {
    check_ptr(p, what)?;
    // SAFETY: non-null and aligned caller memory of `C`, whose layout `T`
    // mirrors (see above).
    Ok(unsafe { &*p.cast::<T>() })
}

// ---- C function types ----

/// A C *function type* (`typedef void QEMUBHFunc(void *opaque);`, received
/// as `QEMUBHFunc *`), declared on the Rust side as an unexported marker
/// struct, and the Rust function pointer type with its ABI.
///
/// # Safety
/// A non-null `*mut Self` from C is a function whose C signature has the
/// ABI of [`CFnType::Fn`] (implement it only through [`c_fn_types!`]).
pub(crate) unsafe trait CFnType {
    /// The Rust function pointer type.
    type Fn: Copy;
    /// The problem reported for NULL where a function is required.
    const NULL: &'static str;
}

/// The one table of C function types: each entry names the marker, the
/// Rust function pointer type with its ABI, the problem for a NULL where one
/// is required, and the C typedef (with its doc comment). The macro emits
/// the [`CFnType`] impl and a compile-time check that the two are pointers
/// of the same size; `build.rs` reads the same lines to write the typedefs
/// into `include/aioctx.h` and to keep cbindgen from emitting the markers,
/// and `tests/header_abi.rs` checks the Rust signatures against them. Keep
/// one entry per line (build.rs parses lines, not Rust).
macro_rules! c_fn_types {
    ($($(#[doc = $doc:literal])* $marker:ty => $rust:ty, $null:literal, $c:literal;)*) => {$(
        // SAFETY: the C typedef (`$c`) and the Rust type have the same
        // parameters and result, so the same ABI.
        unsafe impl CFnType for $marker {
            type Fn = $rust;
            const NULL: &'static str = $null;
        }
        const _: () = assert!(size_of::<$rust>() == size_of::<*mut $marker>());
    )*};
}

#[rustfmt::skip]
c_fn_types! {
    // void (void *)
    /// A bottom-half or oneshot callback: `void cb(void *opaque)`.
    QEMUBHFunc => BhFn, "callback is NULL", "void QEMUBHFunc(void *opaque)";
    /// An fd read/write handler: `void handler(void *opaque)`.
    IOHandler => IoFn, "IOHandler is NULL", "void IOHandler(void *opaque)";
    /// A timer callback: `void cb(void *opaque)`.
    QEMUTimerCB => TimerFn, "callback is NULL", "void QEMUTimerCB(void *opaque)";
    /// A coroutine's entry point: `void entry(void *opaque)` (`qemu_coroutine_create`).
    CoroutineEntry => EntryFn, "entry function is NULL", "void CoroutineEntry(void *opaque)";
    /// What `qemu_co_timeout` calls after a timed-out entry returns: `void clean(void *opaque)`.
    CleanupFunc => EntryFn, "CleanupFunc is NULL", "void CleanupFunc(void *opaque)";
    // void (EventNotifier *): a data pointer has the ABI of `void *`, and
    // the opaque the loop passes is always the notifier.
    /// An event notifier handler: `void handler(EventNotifier *e)`.
    EventNotifierHandler => IoFn, "EventNotifierHandler is NULL", "void EventNotifierHandler(struct EventNotifier *e)";
    // bool (void *)
    /// A busy-poll callback: returns true when there is work for `io_poll_ready`.
    AioPollFn => PollFn, "AioPollFn is NULL", "bool AioPollFn(void *opaque)";
    // void (void *, QEMUClockType): the enum is passed as an `int`.
    /// Called when a main-loop timer becomes the earliest of its clock (`qemu_init_clocks`).
    QEMUTimerListNotifyCB => ClockNotifyFn, "QEMUTimerListNotifyCB is NULL", "void QEMUTimerListNotifyCB(void *opaque, QEMUClockType type)";
    // int (void *)
    /// A thread-pool job, run on a worker thread: `int func(void *opaque)`.
    ThreadPoolFunc => ThreadPoolFn, "ThreadPoolFunc is NULL", "int ThreadPoolFunc(void *opaque)";
    // void (void *, int)
    /// An asynchronous request's completion callback: `void cb(void *opaque, int ret)`.
    BlockCompletionFunc => CompletionFn, "BlockCompletionFunc is NULL", "void BlockCompletionFunc(void *opaque, int ret)";
}

/// A C function pointer that may be NULL, as a callable.
#[inline(always)]
pub(crate) fn c_fn<M: CFnType>(f: *mut M) -> Option<M::Fn> {
    // SAFETY: non-null, so a C function of `M`'s type, whose ABI is
    // `M::Fn`'s (the `CFnType` contract); the sizes are asserted equal.
    (!f.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut M, M::Fn>(&f) })
}

/// A C function pointer that must not be NULL, as a callable.
#[inline(always)]
pub(crate) fn required_c_fn<M: CFnType>(f: *mut M) -> MisuseResult<M::Fn> {
    c_fn(f).ok_or_else(|| Misuse::new(M::NULL))
}
