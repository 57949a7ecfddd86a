//! IOThreads (aioctx extension): `aioctx_iothread_new`,
//! `aioctx_iothread_get_aio_context`, `aioctx_iothread_join`.

use std::ffi::{CStr, c_char};
use std::ptr;

use super::boundary::{context_handle, ffi_call};
use super::error::propagate;
use super::types::{AioContext, Error};
use crate::iothread::IoThread;

/// A thread running its own context (opaque).
pub struct AioctxIOThread {
    _opaque: [u8; 0],
}

/// Starts a thread named `name` (NULL: "iothread") that binds a new context
/// as its current context, attaches the context's GSource to its own
/// `GMainContext`, and loops on `aio_poll(ctx, true)`, with busy polling at
/// QEMU's iothread defaults (32768 ns max, grow 2, shrink 2). Returns once the thread
/// runs; NULL with an error through `errp` on failure (e.g. no free fd for
/// the context's or the thread's `GMainContext` wakeup). Stop it with
/// `aioctx_iothread_join`.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_iothread_new(
    name: *const c_char,
    errp: *mut *mut Error,
) -> *mut AioctxIOThread {
    ffi_call(c"aioctx_iothread_new", || {
        let name = if name.is_null() {
            "iothread".to_owned()
        } else {
            // SAFETY: a non-null name is a NUL-terminated C string.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        };
        match IoThread::spawn(&name) {
            Ok(io) => Ok(io.cast()),
            Err(msg) => {
                // SAFETY: errp is an `Error **` per QEMU's contract.
                unsafe { propagate("aioctx_iothread_new", errp, &msg) };
                Ok(ptr::null_mut())
            }
        }
    })
}

/// The context the IOThread runs (owned by the IOThread; take a reference
/// with `aio_context_ref` to keep it past `aioctx_iothread_join`).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_iothread_get_aio_context(
    iothread: *mut AioctxIOThread,
) -> *mut AioContext {
    ffi_call(c"aioctx_iothread_get_aio_context", || {
        // SAFETY: handles given to C are IoThread pointers.
        let io = unsafe { IoThread::from_handle(iothread.cast()) }?;
        Ok(context_handle(io.context()))
    })
}

/// Stops the IOThread after running the BHs already scheduled on its
/// context, joins it, and frees it. Call from another thread (typically the
/// main thread); the handle is invalid afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_iothread_join(iothread: *mut AioctxIOThread) {
    ffi_call(c"aioctx_iothread_join", || {
        // SAFETY: handles given to C are IoThread pointers.
        let io = unsafe { IoThread::from_handle(iothread.cast()) }?;
        if io.is_current_thread() {
            return Err(crate::fatal::Misuse::new("an IOThread cannot join itself"));
        }
        // SAFETY: validated above; the caller gives the handle up.
        unsafe { IoThread::join(iothread.cast()) };
        Ok(())
    })
}
