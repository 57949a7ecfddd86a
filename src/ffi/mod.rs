//! The C API: every `extern "C"` function of the library, and nothing else.
//!
//! Each exported function is a few lines: validate the C arguments, call the
//! safe core, all inside [`boundary::ffi_call`], which turns a contract
//! violation into one line `aioctx: <function>: <problem>` on stderr and an
//! abort (and does the same for a Rust panic, which never unwinds into C).
//!
//! The opaque handle types C sees are declared in [`types`] and mapped to the
//! core's types in one place ([`boundary`]).
//!
//! `clippy::not_unsafe_ptr_arg_deref` is allowed here: these functions are
//! called from C, which has no `unsafe`; each documents what its pointers
//! must be, and validates what can be validated (NULL, magic numbers).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub(crate) mod boundary;
pub mod types;

pub mod bh;
pub mod c_exports;
pub mod clock;
pub mod co_timeout;
pub mod context;
pub mod coroutine;
pub mod dump;
pub mod error;
pub mod error_c;
pub mod event_notifier;
pub mod fd_handlers;
pub mod gsource;
pub mod iothread;
pub mod location;
pub mod lockcnt;
pub mod main_loop;
pub mod qemu_thread;
pub mod rcu;
pub mod report;
pub mod stats;
pub mod sync;
pub mod thread_pool;
pub mod timer;
pub mod wait;
