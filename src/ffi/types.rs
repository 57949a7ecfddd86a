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
