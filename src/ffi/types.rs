//! The types C sees by name.
//!
//! Opaque handles are zero-sized, non-`repr(C)` structs, which cbindgen
//! prints as `typedef struct X X;`. Pointers to them are the core objects
//! themselves, cast in [`super::boundary`] and nowhere else.
//!
//! QEMU's callback types are *function types* (`typedef void
//! QEMUBHFunc(void *opaque);`, used as `QEMUBHFunc *cb`). cbindgen would
//! print pointer typedefs, so each is an unexported marker struct here and
//! its real typedef is written in `cbindgen.toml`.

/// An event loop (`AioContext`). Reference counted; see `aio_context_new`.
pub struct AioContext {
    _opaque: [u8; 0],
}

/// A bottom half: a callback bound to one context (`aio_bh_new`).
pub struct QEMUBH {
    _opaque: [u8; 0],
}

/// Marker for `typedef void QEMUBHFunc(void *opaque);` (written in
/// cbindgen.toml). Only `*mut QEMUBHFunc` is used.
pub struct QEMUBHFunc {
    _opaque: [u8; 0],
}

/// Marker for `typedef void IOHandler(void *opaque);`.
pub struct IOHandler {
    _opaque: [u8; 0],
}

/// Marker for `typedef bool AioPollFn(void *opaque);`.
pub struct AioPollFn {
    _opaque: [u8; 0],
}

/// Marker for `typedef void EventNotifierHandler(EventNotifier *e);`.
pub struct EventNotifierHandler {
    _opaque: [u8; 0],
}

/// Marker for GLib's `GSource` (declared in the header's preamble).
pub struct GSource {
    _opaque: [u8; 0],
}

pub use crate::bh::MemReentrancyGuard;
pub use crate::error::Error;
pub use crate::notifier::EventNotifier;
pub use crate::stats::AioctxStats;

/// QEMU's fd-monitor operations table (`FDMonOps`, 64 bytes). Only its size
/// and `add_sqe` (offset 56) matter to callers: inline `aio_has_io_uring()`
/// tests `ctx->fdmon_ops->add_sqe`, and QEMU code compares `ctx->fdmon_ops`
/// with `&fdmon_poll_ops`. aioctx's monitors are Rust objects, so the other
/// slots are NULL.
#[repr(C)]
pub struct FDMonOps {
    /// `update`, `wait`, `need_wait`, `dispatch`, `gsource_prepare`,
    /// `gsource_check`, `gsource_dispatch`: not used through this table.
    pub internal: [Option<unsafe extern "C" fn()>; 7],
    /// `aio_add_sqe` support: NULL, since aioctx does not submit io_uring
    /// requests for callers (see `aio_add_sqe`).
    pub add_sqe: Option<unsafe extern "C" fn()>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<FDMonOps>() == 64 && align_of::<FDMonOps>() == 8);
    assert!(offset_of!(FDMonOps, add_sqe) == 56);
};

/// An io_uring completion as `CqeHandler` carries it (the first 16 bytes
/// of the kernel's `struct io_uring_cqe`).
#[repr(C)]
pub struct AioctxCqe {
    /// The submission's `user_data`.
    pub user_data: u64,
    /// The result (`-errno` on failure).
    pub res: i32,
    /// `IORING_CQE_F_*` flags.
    pub flags: u32,
}

/// `QSIMPLEQ_ENTRY(CqeHandler)`.
#[repr(C)]
pub struct CqeHandlerEntry {
    /// The next handler in the event loop's queue.
    pub sqe_next: *mut CqeHandler,
}

/// QEMU's completion handler for `aio_add_sqe` (32 bytes), embedded in the
/// caller's request: the event loop fills `cqe`, queues it through `next`,
/// then calls `cb` in the context's thread.
#[repr(C)]
pub struct CqeHandler {
    /// Called with the handler once `cqe` is filled.
    pub cb: Option<unsafe extern "C" fn(*mut CqeHandler)>,
    /// The event loop's queue link.
    pub next: CqeHandlerEntry,
    /// The completion.
    pub cqe: AioctxCqe,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<CqeHandler>() == 32 && align_of::<CqeHandler>() == 8);
    assert!(offset_of!(CqeHandler, next) == 8 && offset_of!(CqeHandler, cqe) == 16);
};

/// The kernel's `struct io_uring_sqe` (opaque here: only pointers to it).
#[allow(non_camel_case_types)]
pub struct io_uring_sqe {
    _opaque: [u8; 0],
}
