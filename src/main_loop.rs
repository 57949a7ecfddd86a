//! The main loop (`qemu/main-loop.h`): `qemu_init_main_loop`,
//! `main_loop_wait`, `qemu_notify_event`, and the iohandler context behind
//! `qemu_set_fd_handler`.
//!
//! As in QEMU, `qemu_init_main_loop` creates two contexts, the main context
//! (BHs, block-layer fd handlers, timers) and the iohandler context (fd
//! handlers of `qemu_set_fd_handler`), binds the main context to the calling
//! thread, makes that thread the iohandler context's home too, and attaches
//! both contexts' GSources to GLib's default `GMainContext`, so that
//! `main_loop_wait` or `g_main_context_iteration(NULL, ...)` runs them. Both
//! live for the rest of the process.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::context::Context;
use crate::thread;

static IOHANDLER_CONTEXT: AtomicPtr<Context> = AtomicPtr::new(ptr::null_mut());

/// The iohandler context, or null before `qemu_init_main_loop`.
pub(crate) fn iohandler_context() -> *const Context {
    IOHANDLER_CONTEXT.load(Ordering::Acquire)
}

fn attach_to_default_main_context(ctx: &Context) {
    let source = ctx.g_source();
    // SAFETY: a valid source; NULL means GLib's default main context.
    unsafe {
        glib_sys::g_source_attach(source, ptr::null_mut());
        glib_sys::g_source_unref(source);
    }
}

/// `qemu_init_main_loop`.
pub(crate) fn init() -> Result<(), String> {
    if !thread::main_context().is_null() {
        return Err("the main loop is already initialized".into());
    }
    if !thread::bound_context().is_null() {
        return Err("this thread is already bound to another context".into());
    }
    let main = Context::new().map_err(|e| format!("failed to create the main context: {e}"))?;
    if !thread::set_main_context(main) {
        // SAFETY: we own the only reference to `main`.
        unsafe { Context::unref(main) };
        return Err("the main loop is already initialized".into());
    }
    // SAFETY: the main context lives for the rest of the process.
    let main = unsafe { &*main };
    thread::bind_current(main).map_err(|m| m.to_string())?;

    let io = Context::new().map_err(|e| format!("failed to create the iohandler context: {e}"))?;
    // SAFETY: never freed: the library keeps this reference forever.
    let io_ref = unsafe { &*io };
    io_ref
        .claim_home_thread(thread::thread_token())
        .map_err(|m| m.to_string())?;
    IOHANDLER_CONTEXT.store(io.cast_mut(), Ordering::Release);

    attach_to_default_main_context(main);
    attach_to_default_main_context(io_ref);
    Ok(())
}

/// `main_loop_wait`: one iteration of GLib's default main context.
pub(crate) fn wait(nonblocking: bool) {
    // SAFETY: NULL is GLib's default main context.
    unsafe {
        glib_sys::g_main_context_iteration(ptr::null_mut(), glib_sys::gboolean::from(!nonblocking))
    };
}
