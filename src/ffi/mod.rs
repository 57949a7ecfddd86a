//! The C API: every `extern "C"` function of the library, and nothing else.
//!
//! Each exported function is a few lines: validate the C arguments, call the
//! safe core, all inside [`boundary::ffi_call`], which turns a contract
//! violation into one line `aioctx: <function>: <problem>` on stderr and an
//! abort (and does the same for a Rust panic, which never unwinds into C).
//!
//! The opaque handle types C sees are declared in [`types`] and mapped to the
//! core's types in one place ([`boundary`]).

pub(crate) mod boundary;
pub mod types;

pub mod bh;
pub mod context;
pub mod error;
pub mod event_notifier;
pub mod main_loop;
pub mod wait;
