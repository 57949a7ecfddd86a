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

/// An event loop (declared in the core, `context/mod.rs`, whose block-layer
/// hooks pass it to C).
pub use crate::context::AioContext;

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

pub use crate::fdmon::ops::FDMonOps;

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
