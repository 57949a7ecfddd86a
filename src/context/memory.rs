//! A context's memory: it lives inside its GSource (QEMU's `ctx->source`
//! is the first member, so `aio_get_g_source(ctx)` is the context itself),
//! and dead contexts are kept a while in a quarantine so stale handles are
//! reported.

use std::ptr;

use super::Context;
use crate::gsource;
use crate::quarantine::Quarantine;

/// Dead contexts whose memory is kept (magic = DEAD) so that a stale handle
/// is reported instead of silently reusing freed memory.
pub(super) static QUARANTINE: Quarantine<Context> = Quarantine::new(Context::release_shell);

impl Context {
    /// The context's GSource: the context's own first bytes.
    pub(super) fn source_ptr(&self) -> *mut glib_sys::GSource {
        ptr::from_ref(self).cast_mut().cast()
    }

    /// Moves a new context into memory from `g_source_new` (its first 96
    /// bytes, QEMU's `ctx->source`, stay GLib's GSource).
    pub(super) fn move_into_gsource(value: Context) -> *mut Context {
        const GSOURCE: usize = std::mem::size_of::<glib_sys::GSource>();
        let block = gsource::alloc_context(std::mem::size_of::<Context>());
        assert!(block.cast::<Context>().is_aligned());
        let value = std::mem::ManuallyDrop::new(value);
        // SAFETY: `block` has room for a Context and is aligned for it; a
        // Rust move is a byte copy, so copying every byte but the GSource
        // (which `value` holds as unused zeroes) moves `value` there, and
        // `value` is not dropped.
        unsafe {
            ptr::copy_nonoverlapping(
                ptr::from_ref(&*value).cast::<u8>().add(GSOURCE),
                block.add(GSOURCE),
                std::mem::size_of::<Context>() - GSOURCE,
            );
        }
        block.cast()
    }

    /// Frees a dead context evicted from the quarantine: drops its Rust
    /// state and releases the library's GSource reference (GLib frees the
    /// memory when the caller's references are gone too).
    ///
    /// # Safety
    /// `ctx` is a dead context (torn down by [`Context::destroy`]) that
    /// nothing but GLib references.
    unsafe fn release_shell(ctx: *mut Context) {
        // SAFETY: per the contract; the GSource bytes are plain bytes to
        // Rust, so dropping leaves them to GLib.
        unsafe {
            ptr::drop_in_place(ctx);
            gsource::release(ctx.cast());
        }
    }
}
