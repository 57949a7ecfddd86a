//! aioctx: QEMU's AioContext event loop, re-built in Rust and shipped as a C
//! library.
//!
//! C programs written against QEMU's event-loop API (`qemu/aio.h`,
//! `qemu/aio-wait.h`, `qemu/main-loop.h`) include `include/aioctx.h` (or the
//! QEMU-layout shims in `include/compat/`) and link `libaioctx.a`.
//!
//! Layout: [`ffi`] holds every `extern "C"` function (thin wrappers around one
//! panic/abort boundary); the other modules are the safe core. See
//! `../shared/spec/architecture.md` for the decisions behind the layout.

pub mod ffi;

mod aio_poll;
mod atomics;
mod bh;
mod bh_queue;
mod context;
mod error;
mod fatal;
mod notifier;
mod notify;
mod thread;
mod wait;

#[doc(hidden)]
pub use bh_queue::{BhQueue, QueueNode};
#[doc(hidden)]
pub use notify::NotifyState;
