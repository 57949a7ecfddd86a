//! GLib integration (`aio_get_g_source`, `aio_prepare`, `aio_pending`,
//! `aio_dispatch`): a `GSource` that runs a context from a GLib main loop
//! with the same semantics as `aio_poll`.
//!
//! - prepare: raises `notify_me` (bit 0, as QEMU: the GSource is a sleeper
//!   that `aio_notify` must wake through the eventfd), applies handler
//!   changes (also to the source's unix fds), runs `io_poll` once, and
//!   returns the context's timeout rounded up to milliseconds.
//! - check: lowers `notify_me`, consumes the wakeup, and says whether a BH,
//!   fd handler, busy-poll hit or timer is ready. The wakeup alone is not
//!   "ready", so `g_main_context_iteration` returns TRUE exactly when the
//!   context had work, and `while (g_main_context_iteration(NULL, false));`
//!   drains it as with QEMU.
//! - dispatch: BHs, then `io_poll_ready` hits, fd handlers, timers.
//!
//! Ownership: the context owns one strong reference to its source, created on
//! the first `aio_get_g_source`, which returns a new reference each time. On
//! context teardown the source is destroyed (detached) and released. The
//! source does not own the context: destroying a context while its source is
//! being dispatched is a caller bug, as in QEMU.
//!
//! Threading: prepare/check/dispatch run in whichever thread iterates the
//! `GMainContext`; that must be the context's home thread (or any one thread
//! for an unbound context), exactly like `aio_poll`.

use std::ffi::{c_int, c_uint};
use std::ptr;

use glib_sys::{GSource, GSourceFunc, GSourceFuncs, gboolean, gpointer};

use crate::context::Context;
use crate::fatal;

#[repr(C)]
struct AioSource {
    source: GSource,
    ctx: *const Context,
}

static mut AIO_SOURCE_FUNCS: GSourceFuncs = GSourceFuncs {
    prepare: Some(aio_source_prepare),
    check: Some(aio_source_check),
    dispatch: Some(aio_source_dispatch),
    finalize: None,
    closure_callback: None,
    closure_marshal: None,
};

/// Rounds a nanosecond timeout up to GLib's milliseconds (-1 stays -1).
pub(crate) fn timeout_ns_to_ms(ns: i64) -> c_int {
    if ns < 0 {
        return -1;
    }
    let ms = ns / 1_000_000 + i64::from(ns % 1_000_000 != 0);
    ms.min(i64::from(c_int::MAX)) as c_int
}

/// The context a source callback was invoked for.
///
/// # Safety
/// `source` is an [`AioSource`] made by [`new_source`].
unsafe fn source_context<'a>(source: *mut GSource) -> &'a Context {
    // SAFETY: per the caller; the context outlives its attached source.
    unsafe { &*(*source.cast::<AioSource>()).ctx }
}

fn enter_or_die<'a>(ctx: &'a Context, func: &str) -> crate::context::LoopGuard<'a> {
    ctx.enter_loop()
        .unwrap_or_else(|m| fatal::die(func, &m.to_string()))
}

unsafe extern "C" fn aio_source_prepare(source: *mut GSource, timeout: *mut c_int) -> gboolean {
    // SAFETY: GLib calls this only for sources made by `new_source`.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx, "aio_ctx_prepare");
    ctx.notify.arm_gsource();
    ctx.sync_gsource(&guard, source);
    let ns = if ctx.gsource_prepare(&guard) {
        0
    } else {
        ctx.compute_timeout(&guard)
    };
    let ms = timeout_ns_to_ms(ns);
    // SAFETY: GLib passes a valid out-pointer.
    unsafe { *timeout = ms };
    gboolean::from(ms == 0)
}

unsafe extern "C" fn aio_source_check(source: *mut GSource) -> gboolean {
    // SAFETY: as in prepare.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx, "aio_ctx_check");
    ctx.notify.disarm_gsource();
    gboolean::from(ctx.gsource_check(&guard))
}

unsafe extern "C" fn aio_source_dispatch(
    source: *mut GSource,
    _callback: GSourceFunc,
    _user_data: gpointer,
) -> gboolean {
    // SAFETY: as in prepare.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx, "aio_ctx_dispatch");
    // prepare may have found work and GLib then skips check.
    ctx.notify.disarm_gsource();
    ctx.dispatch(&guard);
    glib_sys::GTRUE
}

/// A new source for `ctx` (one reference, owned by the caller).
pub(crate) fn new_source(ctx: &Context) -> *mut GSource {
    let size = std::mem::size_of::<AioSource>() as c_uint;
    // SAFETY: the funcs table is static and never written after init; the
    // struct size covers our extension of GSource.
    let source = unsafe { glib_sys::g_source_new(&raw mut AIO_SOURCE_FUNCS, size) };
    // SAFETY: g_source_new returned a zeroed AioSource-sized block.
    unsafe { (*source.cast::<AioSource>()).ctx = ptr::from_ref(ctx) };
    // SAFETY: valid source and NUL-terminated name.
    unsafe { glib_sys::g_source_set_name(source, c"aioctx AioContext".as_ptr()) };
    source
}

/// Watches `fd` for `interest` (poll bits) on `source`; returns the tag.
pub(crate) fn add_unix_fd(source: *mut GSource, fd: c_int, interest: u32) -> gpointer {
    let mut cond = 0;
    if interest & libc::POLLIN as u32 != 0 {
        cond |= glib_sys::G_IO_IN | glib_sys::G_IO_HUP | glib_sys::G_IO_ERR;
    }
    if interest & libc::POLLOUT as u32 != 0 {
        cond |= glib_sys::G_IO_OUT | glib_sys::G_IO_ERR;
    }
    // SAFETY: valid source; GLib copies what it needs.
    unsafe { glib_sys::g_source_add_unix_fd(source, fd, cond) }
}

pub(crate) fn remove_unix_fd(source: *mut GSource, tag: gpointer) {
    // SAFETY: `tag` came from add_unix_fd on this source.
    unsafe { glib_sys::g_source_remove_unix_fd(source, tag) };
}

/// Whether GLib saw the fd behind `tag` readable in the last poll.
pub(crate) fn is_readable(source: *mut GSource, tag: gpointer) -> bool {
    // SAFETY: `tag` came from add_unix_fd on this source.
    let revents = unsafe { glib_sys::g_source_query_unix_fd(source, tag) };
    revents & (glib_sys::G_IO_IN | glib_sys::G_IO_HUP | glib_sys::G_IO_ERR) != 0
}

pub(crate) fn source_ref(source: *mut GSource) -> *mut GSource {
    // SAFETY: valid source.
    unsafe { glib_sys::g_source_ref(source) }
}

/// Detaches and releases the context's own reference (teardown).
pub(crate) fn destroy_and_unref(source: *mut GSource) {
    // SAFETY: valid source owned (one reference) by the dying context.
    unsafe {
        glib_sys::g_source_destroy(source);
        glib_sys::g_source_unref(source);
    }
}

#[cfg(test)]
mod tests {
    use super::timeout_ns_to_ms;

    #[test]
    fn timeouts_round_up_to_milliseconds() {
        assert_eq!(timeout_ns_to_ms(-1), -1);
        assert_eq!(timeout_ns_to_ms(0), 0);
        assert_eq!(timeout_ns_to_ms(1), 1);
        assert_eq!(timeout_ns_to_ms(1_000_000), 1);
        assert_eq!(timeout_ns_to_ms(1_000_001), 2);
        assert_eq!(timeout_ns_to_ms(i64::MAX), i32::MAX);
    }
}
