//! The main loop, threads' current contexts and the BQL (`qemu/main-loop.h`).

use std::ffi::c_void;

use super::boundary::{
    c_fn, context, context_handle, ffi_call, ffi_call_leaf, main_context, main_context_if_any,
};
use super::error::propagate;
use super::types::{AioContext, Error, QEMUBH, QEMUBHFunc};
use crate::fatal::Misuse;
use crate::{main_loop, thread};

/// Creates the main context and binds it to the calling thread, which
/// becomes the main loop thread. Returns 0, or -1 with an error through
/// `errp` (for example when called twice).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_init_main_loop(errp: *mut *mut Error) -> i32 {
    ffi_call(c"qemu_init_main_loop", || match main_loop::init() {
        Ok(()) => {
            // SAFETY: just created; the main context is never freed.
            super::timer::fill_main_loop_tlg(unsafe { &*thread::main_context() });
            Ok(0)
        }
        Err(msg) => {
            // SAFETY: errp is an `Error **` per QEMU's contract.
            unsafe { propagate("qemu_init_main_loop", errp, &msg) };
            Ok(-1)
        }
    })
}

/// The main context, or NULL before `qemu_init_main_loop`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_get_aio_context() -> *mut AioContext {
    ffi_call(c"qemu_get_aio_context", || {
        Ok(context_handle(thread::main_context()))
    })
}

/// The context bound to this thread; else the main context if this thread
/// holds the BQL; else NULL.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_get_current_aio_context() -> *mut AioContext {
    ffi_call_leaf(c"qemu_get_current_aio_context", |_| {
        Ok(context_handle(thread::current_context()))
    })
}

/// Binds the calling thread to `ctx`, making it `ctx`'s home thread. Once
/// per thread, and once per context: a second call aborts.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_set_current_aio_context(ctx: *mut AioContext) {
    ffi_call(c"qemu_set_current_aio_context", || {
        thread::bind_current(context(ctx)?)
    })
}

/// True if `ctx` is this thread's current context, or `ctx` is the main
/// context and this thread holds the BQL.
#[unsafe(no_mangle)]
pub extern "C" fn in_aio_context_home_thread(ctx: *mut AioContext) -> bool {
    ffi_call(c"in_aio_context_home_thread", || {
        Ok(thread::in_home_thread(context(ctx)?))
    })
}

/// Takes the big QEMU lock. Not recursive: taking it twice in one thread
/// aborts.
#[unsafe(no_mangle)]
pub extern "C" fn bql_lock() {
    ffi_call(c"bql_lock", thread::bql_lock)
}

/// `bql_lock` with the caller's location (unused), what QEMU's `bql_lock()`
/// macro calls.
#[unsafe(no_mangle)]
pub extern "C" fn bql_lock_impl(file: *const std::ffi::c_char, line: std::ffi::c_int) {
    let _ = (file, line);
    ffi_call(c"bql_lock_impl", thread::bql_lock)
}

/// QEMU's lock-profiler hook for the BQL, typed as in QEMU's
/// `qemu/thread.h` (`QemuMutexLockFunc`) and starting at
/// `qemu_mutex_lock_impl`. The library's BQL is not a `QemuMutex`, so
/// `bql_lock_impl` does not call through it.
#[unsafe(no_mangle)]
pub static mut bql_mutex_lock_func: super::sync::QemuMutexLockFunc =
    Some(super::sync::qemu_mutex_lock_impl);

/// Releases the big QEMU lock, which this thread must hold.
#[unsafe(no_mangle)]
pub extern "C" fn bql_unlock() {
    ffi_call(c"bql_unlock", thread::bql_unlock)
}

/// Whether *this* thread holds the big QEMU lock.
#[unsafe(no_mangle)]
pub extern "C" fn bql_locked() -> bool {
    ffi_call(c"bql_locked", || Ok(thread::holds_bql()))
}

/// Older name of `bql_lock`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_lock_iothread() {
    ffi_call(c"qemu_mutex_lock_iothread", thread::bql_lock)
}

/// Older name of `bql_unlock`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_unlock_iothread() {
    ffi_call(c"qemu_mutex_unlock_iothread", thread::bql_unlock)
}

/// Older name of `bql_locked`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_iothread_locked() -> bool {
    ffi_call(c"qemu_mutex_iothread_locked", || Ok(thread::holds_bql()))
}

const NO_MAIN_LOOP: &str = "the main loop is not initialized (call qemu_init_main_loop)";

fn main_context_or_misuse() -> Result<&'static crate::context::Context, Misuse> {
    main_context(NO_MAIN_LOOP)
}

/// A bottom half of the main context (see `aio_bh_new`).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_new(cb: *mut QEMUBHFunc, opaque: *mut c_void) -> *mut QEMUBH {
    ffi_call(c"qemu_bh_new", || {
        let ctx = main_context_or_misuse()?;
        super::bh::new_bh(ctx, cb, opaque, std::ptr::null(), std::ptr::null_mut())
    })
}

/// A named, optionally guarded bottom half of the main context (see
/// `aio_bh_new_full`).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_bh_new_full(
    cb: *mut QEMUBHFunc,
    opaque: *mut c_void,
    name: *const std::ffi::c_char,
    reentrancy_guard: *mut super::types::MemReentrancyGuard,
) -> *mut QEMUBH {
    ffi_call(c"qemu_bh_new_full", || {
        let ctx = main_context_or_misuse()?;
        super::bh::new_bh(ctx, cb, opaque, name, reentrancy_guard)
    })
}

/// Runs one iteration of the main loop (GLib's default main context, to
/// which `qemu_init_main_loop` attached the main and iohandler contexts):
/// waits for an event unless `nonblocking`. Main loop thread.
#[unsafe(no_mangle)]
pub extern "C" fn main_loop_wait(nonblocking: i32) {
    ffi_call(c"main_loop_wait", || {
        main_context_or_misuse()?;
        main_loop::wait(nonblocking != 0);
        Ok(())
    })
}

/// The main loop's second context, for the fd handlers of
/// `qemu_set_fd_handler` (NULL before `qemu_init_main_loop`).
#[unsafe(no_mangle)]
pub extern "C" fn iohandler_get_aio_context() -> *mut AioContext {
    ffi_call(c"iohandler_get_aio_context", || {
        Ok(context_handle(main_loop::iohandler_context()))
    })
}

/// A new reference to the iohandler context's GSource.
#[unsafe(no_mangle)]
pub extern "C" fn iohandler_get_g_source() -> *mut super::types::GSource {
    ffi_call(c"iohandler_get_g_source", || {
        Ok(iohandler_or_misuse()?.g_source().cast())
    })
}

/// Registers (or, with both NULL, removes) read/write handlers for `fd` on
/// the main loop's iohandler context.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_set_fd_handler(
    fd: i32,
    fd_read: *mut super::types::IOHandler,
    fd_write: *mut super::types::IOHandler,
    opaque: *mut c_void,
) {
    ffi_call(c"qemu_set_fd_handler", || {
        let io = iohandler_or_misuse()?;
        io.set_fd_handler(
            fd,
            crate::handlers::Callbacks {
                io_read: c_fn(fd_read),
                io_write: c_fn(fd_write),
                io_poll: None,
                io_poll_ready: None,
                io_poll_begin: None,
                io_poll_end: None,
                opaque,
                notifier: false,
            },
        )
    })
}

fn iohandler_or_misuse() -> Result<&'static crate::context::Context, Misuse> {
    // SAFETY: the iohandler context, once created, is never freed.
    unsafe { main_loop::iohandler_context().as_ref() }.ok_or_else(|| Misuse::new(NO_MAIN_LOOP))
}

/// Wakes the main loop.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_notify_event() {
    ffi_call(c"qemu_notify_event", || {
        if let Some(main) = main_context_if_any() {
            main.notify();
        }
        Ok(())
    })
}

/// Waits on `cond` with the big QEMU lock (QEMU's
/// `qemu_cond_wait(cond, &bql)`): atomically releases the BQL, which the
/// calling thread must hold (aborts otherwise), sleeps until `cond` is
/// signalled, and takes the BQL again before returning. Wakeups may be
/// spurious: re-check the condition.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_wait_bql(cond: *mut super::sync::QemuCond) {
    ffi_call(c"qemu_cond_wait_bql", || {
        thread::cond_wait_bql(super::sync::cond_object(cond)?, None).map(drop)
    })
}

/// Like `qemu_cond_wait_bql`, but waits at most `ms` milliseconds. Returns
/// false if the time ran out, true otherwise; the BQL is held again either
/// way.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_timedwait_bql(
    cond: *mut super::sync::QemuCond,
    ms: std::ffi::c_int,
) -> bool {
    ffi_call(c"qemu_cond_timedwait_bql", || {
        thread::cond_wait_bql(super::sync::cond_object(cond)?, Some(ms))
    })
}

/// Registers `notify` to be called around every poll of `main_loop_wait`
/// with a `MainLoopPoll *` (QEMU's `qemu/main-loop.h`): in state
/// `MAIN_LOOP_POLL_FILL` before the poll (it may append `GPollFD`s to
/// `pollfds` and lower `timeout`), then `MAIN_LOOP_POLL_OK` or `_ERR` with
/// the `revents` filled in. Newest first. `notify` stays registered, alive
/// and in place until `main_loop_poll_remove_notifier`; adding it twice, or
/// one whose `notify` is NULL, aborts.
#[unsafe(no_mangle)]
pub extern "C" fn main_loop_poll_add_notifier(notify: *mut super::sync::Notifier) {
    ffi_call(c"main_loop_poll_add_notifier", || {
        super::sync::notifier_object(notify)?;
        // SAFETY: a valid, aligned notifier (checked above) that the caller
        // keeps alive until it removes it (the documented contract).
        unsafe { main_loop::poll_add_notifier(notify) }
    })
}

/// Unregisters a notifier of `main_loop_poll_add_notifier` (aborts if it is
/// not registered). It may be called from the notifier itself.
#[unsafe(no_mangle)]
pub extern "C" fn main_loop_poll_remove_notifier(notify: *mut super::sync::Notifier) {
    ffi_call(c"main_loop_poll_remove_notifier", || {
        super::sync::notifier_object(notify)?;
        main_loop::poll_remove_notifier(notify)
    })
}
