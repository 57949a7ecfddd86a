//! aioctx: QEMU's AioContext event loop, re-built in Rust and shipped as a C
//! library.
//!
//! C programs written against QEMU's event-loop API (`qemu/aio.h`,
//! `qemu/aio-wait.h`, `qemu/main-loop.h`) include `include/aioctx.h` (or the
//! QEMU-layout shims in `include/compat/`) and link `libaioctx.a`.
//!
//! Layout: [`ffi`] holds every `extern "C"` function (thin wrappers around one
//! panic/abort boundary); the other modules are the safe core. See
//! `docs/architecture.md` for the module map and the decisions behind it.

pub mod ffi;

mod aio_poll;
mod aiocb;
mod atomics;
mod bh;
mod busy_poll;
mod context;
mod context_layout;
mod coroutine;
mod dump;
mod error;
mod fatal;
mod fdmon;
mod fork;
mod gsource;
mod handle;
mod handlers;
mod iothread;
mod lockcnt;
mod main_loop;
mod mpsc;
mod notifier;
mod notify;
mod qemu_thread;
mod quarantine;
mod rcu;
mod stats;
mod sync;
mod thread;
mod thread_exit;
mod thread_pool;
mod tick_clock;
mod timer;
mod wait;

#[doc(hidden)]
pub use coroutine::comutex_handoff;
#[doc(hidden)]
pub use mpsc::{MpscNode, MpscQueue};
#[doc(hidden)]
pub use notify::NotifyState;
