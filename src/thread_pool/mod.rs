//! Thread pools (QEMU 10's `block/thread-pool.h`): the per-context AIO pool
//! whose completions run in the context's thread ([`aio`]), and the generic
//! pool with no context ([`generic`]), both on the same worker core
//! ([`workers`]).

pub(crate) mod aio;
pub(crate) mod generic;
mod workers;

use std::ffi::{c_int, c_void};

pub(crate) use aio::ContextPool;

/// A C `ThreadPoolFunc`, already checked non-NULL.
pub(crate) type ThreadPoolFn = unsafe extern "C" fn(opaque: *mut c_void) -> c_int;
