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
//! Ownership: as in QEMU, the context *is* its source: the context's memory
//! is a block from `g_source_new` (`alloc_context`), so `aio_get_g_source`
//! returns the context's own address (QEMU's `&ctx->source`, offset 0) with
//! a new reference each time. The library holds one reference; on context
//! teardown the source is destroyed (detached, GLib calls it no more), and
//! when the dead context leaves the quarantine its Rust state is dropped
//! and that reference released: GLib frees the memory once a caller's
//! references are gone too. A callback reaching a dead context (a caller
//! re-attached a source it kept) is the usual "already freed" line.
//! Destroying a context while its source is being dispatched is a caller
//! bug, as in QEMU.
//!
//! Threading: prepare/check/dispatch run in whichever thread iterates the
//! `GMainContext`; that must be the context's home thread (or any one thread
//! for an unbound context), exactly like `aio_poll`.

use std::ffi::{c_int, c_uint};

use glib_sys::{GSource, GSourceFunc, GSourceFuncs, gboolean, gpointer};

use crate::context::Context;
use crate::fatal;
use crate::handle::Handle;

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

/// The context a source callback was invoked for: the source *is* the
/// context (its first 96 bytes, QEMU's `ctx->source`).
///
/// # Safety
/// `source` is a context's GSource ([`alloc_context`]).
unsafe fn source_context<'a>(source: *mut GSource) -> &'a Context {
    // SAFETY: per the caller; a torn-down context stays allocated (dead) in
    // the quarantine while GLib may still hold a reference, and its magic
    // says so.
    unsafe { Context::from_handle(source.cast()) }.unwrap_or_else(|m| fatal::die_here(&m.0))
}

fn enter_or_die(ctx: &Context) -> crate::context::LoopGuard<'_> {
    ctx.enter_loop().unwrap_or_else(|m| fatal::die_here(&m.0))
}

// GLib calls these, not the program: each names itself for the reports of
// the core (`fatal::die_here`) as `ffi_call` does for an exported function.

unsafe extern "C" fn aio_source_prepare(source: *mut GSource, timeout: *mut c_int) -> gboolean {
    let _call = fatal::ApiCall::enter(c"aio_ctx_prepare");
    // SAFETY: GLib calls this only for contexts' sources.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx);
    ctx.notify_state().arm_gsource();
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
    let _call = fatal::ApiCall::enter(c"aio_ctx_check");
    // SAFETY: as in prepare.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx);
    ctx.notify_state().disarm_gsource();
    gboolean::from(ctx.gsource_check(&guard))
}

unsafe extern "C" fn aio_source_dispatch(
    source: *mut GSource,
    _callback: GSourceFunc,
    _user_data: gpointer,
) -> gboolean {
    let _call = fatal::ApiCall::enter(c"aio_ctx_dispatch");
    // SAFETY: as in prepare.
    let ctx = unsafe { source_context(source) };
    let guard = enter_or_die(ctx);
    // prepare may have found work and GLib then skips check.
    ctx.notify_state().disarm_gsource();
    ctx.dispatch(&guard);
    glib_sys::GTRUE
}

/// A zeroed block of `size` bytes whose first bytes are a new GSource (one
/// reference, owned by the caller): the memory of a context, so that
/// `aio_get_g_source(ctx) == &ctx->source` as in QEMU (docs/spec/qemu-abi.md §2).
/// GLib frees it when the last reference goes ([`release`]).
pub(crate) fn alloc_context(size: usize) -> *mut u8 {
    assert!(size >= std::mem::size_of::<GSource>());
    let size = c_uint::try_from(size).expect("a context is smaller than 4 GiB");
    // SAFETY: the funcs table is static and never written after init; the
    // size covers the context, whose first bytes are the GSource.
    let source = unsafe { glib_sys::g_source_new(&raw mut AIO_SOURCE_FUNCS, size) };
    // SAFETY: valid source and NUL-terminated name.
    unsafe { glib_sys::g_source_set_name(source, c"aioctx AioContext".as_ptr()) };
    source.cast()
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

/// Detaches the context's source from its `GMainContext`, if attached
/// (teardown): GLib calls it no more.
pub(crate) fn detach(source: *mut GSource) {
    // SAFETY: valid source (the dying context's).
    unsafe { glib_sys::g_source_destroy(source) };
}

/// Drops the context's own reference to its source; GLib frees the
/// context's memory when no other reference is left.
///
/// # Safety
/// `source` is a context's source whose Rust state was dropped; nothing
/// but GLib's references touch it from now on.
pub(crate) unsafe fn release(source: *mut GSource) {
    // SAFETY: per the contract; the reference was the context's.
    unsafe { glib_sys::g_source_unref(source) };
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
