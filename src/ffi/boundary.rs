//! The one panic/abort boundary every exported function runs inside, and
//! the conversions from C handles to core objects.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use super::types::{AioContext, QEMUBH, QEMUBHFunc};
use crate::bh::{Bh, BhFn};
use crate::context::Context;
use crate::fatal::{self, Misuse, MisuseResult};

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
/// hook prints the one-line report before the runtime aborts.
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
    });
}

/// Runs the body of the exported function `func`. A [`Misuse`] or a panic
/// becomes `aioctx: <func>: <problem>` on stderr and an abort. While the
/// body runs, `func` is this thread's current API function
/// ([`fatal::ApiCall`]), which core code reporting with
/// [`fatal::die_here`] names; the outer one (a callback's caller) is
/// current again when the body returns.
#[inline(always)]
pub(crate) fn ffi_call<R>(func: &'static str, body: impl FnOnce() -> MisuseResult<R>) -> R {
    install_panic_hook();
    let call = fatal::ApiCall::enter(func);
    let result = catch_unwind(AssertUnwindSafe(body));
    drop(call);
    match result {
        Ok(Ok(value)) => value,
        Ok(Err(misuse)) => fatal::die(func, &misuse.0),
        Err(payload) => fatal::die(func, panic_message(&*payload)),
    }
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

/// Validates a C BH handle.
#[inline(always)]
pub(crate) fn live_bh<'a>(bh: *mut QEMUBH) -> MisuseResult<&'a Bh> {
    // SAFETY: handles given to C are `Bh` pointers (see `context`).
    unsafe { Bh::from_handle(bh.cast_const().cast()) }
}

/// The C handle for a BH.
#[inline(always)]
pub(crate) fn bh_handle(bh: *mut Bh) -> *mut QEMUBH {
    bh.cast()
}

/// Turns a C `QEMUBHFunc *` into a callable, rejecting NULL.
#[inline(always)]
pub(crate) fn bh_func(cb: *mut QEMUBHFunc) -> MisuseResult<BhFn> {
    if cb.is_null() {
        return Err(Misuse::new("callback is NULL"));
    }
    // SAFETY: a non-null `QEMUBHFunc *` is a C function `void (void *)`,
    // which has the same ABI as `unsafe extern "C" fn(*mut c_void)`.
    Ok(unsafe { std::mem::transmute::<*mut QEMUBHFunc, BhFn>(cb) })
}
