//! IOThreads (aioctx extension, docs/spec/api.md §7): a thread running its own
//! context, as QEMU's `IOThread` objects do.
//!
//! The thread binds the context as its current context, attaches the
//! context's GSource to its own `GMainContext` (pushed as the thread
//! default, so GLib code running there finds it), and loops on
//! `aio_poll(ctx, true)` until stopped. Busy polling starts with QEMU's
//! iothread defaults (`IOTHREAD_POLL_MAX_NS_DEFAULT`): 32768 ns max, grow 2,
//! shrink 2.
//!
//! `join` (from any other thread) schedules a stop BH; since BHs run in
//! scheduling order, everything scheduled before it runs first, and the
//! thread drains whatever is still scheduled before it exits.
//!
//! The thread's `GMainContext` is created by the thread calling `spawn`,
//! not by the new thread: GLib aborts the process (`Creating pipes for
//! GWakeup`) when `g_main_context_new` finds no free fd, so `spawn` first
//! checks that one is free (an eventfd it closes again) and reports
//! "out of fds" as an error instead. (Another thread taking the last fd
//! between the check and GLib's own eventfd would still hit GLib's abort;
//! fd exhaustion is checked, not reserved.)
//!
//! The library deliberately does not define `iothread_new` & co.: QEMU-style
//! programs define their own.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::qemu_thread::{LibThread, spawn_lib_thread};
use crate::thread;

const IOTHREAD_POLL_MAX_NS: i64 = 32_768;
const IOTHREAD_POLL_GROW: i64 = 2;
const IOTHREAD_POLL_SHRINK: i64 = 2;

pub(crate) struct IoThread {
    ctx: *const Context,
    /// The fork generation it was created in (`fork.rs`): in a child the
    /// thread does not exist.
    fork_gen: u32,
    stop: AtomicBool,
    handle: Option<LibThread>,
}

/// How the new thread tells `spawn` that it is bound and polling (or why
/// it could not be). A mutex and a condition variable rather than
/// `std::sync::mpsc`, whose blocking receive asks for
/// `std::thread::current()`: std would allocate the spawning thread's handle
/// with the `System` allocator (see [`LibThread`]).
#[derive(Default)]
struct Ready {
    result: Mutex<Option<Result<(), String>>>,
    cond: Condvar,
}

impl Ready {
    fn send(&self, r: Result<(), String>) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        self.cond.notify_one();
    }

    fn recv(&self) -> Result<(), String> {
        let mut g = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(r) = g.take() {
                return r;
            }
            g = self.cond.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

struct SendPtr<T>(*const T);
// SAFETY: used to hand the context and the IoThread to the new thread; both
// outlive it (join waits for the thread before freeing either).
unsafe impl<T> Send for SendPtr<T> {}

unsafe extern "C" fn stop_bh(opaque: *mut c_void) {
    // SAFETY: `opaque` is the IoThread, alive until the thread is joined.
    let io = unsafe { &*opaque.cast::<IoThread>() };
    io.stop.store(true, Ordering::Release);
}

/// A new `GMainContext`, or an error if there is no fd for its wakeup
/// (where GLib itself would abort the process).
fn new_gmain_context() -> Result<*mut glib_sys::GMainContext, String> {
    // GLib's GWakeup is an eventfd (a pipe if that fails): check that one
    // can be had, then give it back for GLib to take.
    // SAFETY: eventfd has no memory arguments.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(format!(
            "cannot create the thread's GMainContext (no fd for its wakeup): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just opened here and is not used elsewhere.
    unsafe { libc::close(fd) };
    // SAFETY: creating a GMainContext has no preconditions.
    Ok(unsafe { glib_sys::g_main_context_new() })
}

struct SendGCtx(*mut glib_sys::GMainContext);
// SAFETY: a GMainContext is thread-safe (GLib locks it); the reference is
// handed to the new thread, which owns it from then on.
unsafe impl Send for SendGCtx {}

fn run(ctx: &Context, io: &IoThread, gctx: *mut glib_sys::GMainContext, ready: &Ready) {
    // The IOThread is the library's: no API call is active in it, so the
    // reports of the core (`fatal::die_here`) name it.
    let _role = crate::fatal::ApiCall::enter(c"aioctx_iothread");
    // SAFETY: valid context, whose reference this thread owns.
    unsafe { glib_sys::g_main_context_push_thread_default(gctx) };
    let source = ctx.g_source();
    // SAFETY: valid source and context; the context keeps a reference.
    unsafe {
        glib_sys::g_source_attach(source, gctx);
        glib_sys::g_source_unref(source);
    }
    if let Err(m) = thread::bind_current(ctx) {
        ready.send(Err(m.to_string()));
        return;
    }
    ready.send(Ok(()));
    while !io.stop.load(Ordering::Acquire) {
        if let Err(m) = ctx.poll(true) {
            crate::fatal::die("aioctx_iothread", &m.0);
        }
    }
    // Run whatever was scheduled after the stop BH, then leave.
    while ctx.poll(false).unwrap_or(false) {}
    // SAFETY: pushed above in this thread; the last unref destroys the
    // GMainContext and detaches the source from it.
    unsafe {
        glib_sys::g_main_context_pop_thread_default(gctx);
        glib_sys::g_main_context_unref(gctx);
    }
}

impl IoThread {
    /// Starts an IOThread named `name`; returns once it is bound and polling.
    pub(crate) fn spawn(name: &str) -> Result<*mut IoThread, String> {
        let ctx = Context::new().map_err(|e| format!("cannot create the context: {e}"))?;
        // SAFETY: just created, we own its reference.
        let ctx_ref = unsafe { &*ctx };
        ctx_ref
            .poll_params()
            .set(
                IOTHREAD_POLL_MAX_NS,
                IOTHREAD_POLL_GROW,
                IOTHREAD_POLL_SHRINK,
            )
            .expect("constants are non-negative");
        let io = Box::into_raw(Box::new(IoThread {
            ctx,
            fork_gen: crate::fork::generation(),
            stop: AtomicBool::new(false),
            handle: None,
        }));
        let gctx = match new_gmain_context() {
            Ok(g) => SendGCtx(g),
            Err(e) => {
                // SAFETY: nothing else has seen either; we own both.
                unsafe {
                    drop(Box::from_raw(io));
                    Context::unref(ctx);
                }
                return Err(e);
            }
        };
        let gctx_raw = gctx.0;
        let ready = Arc::new(Ready::default());
        let tx = Arc::clone(&ready);
        let (ctx_p, io_p) = (SendPtr(ctx), SendPtr(io.cast_const()));
        let name: String = name.chars().take(15).collect();
        let spawned = spawn_lib_thread(
            &name,
            Box::new(move || {
                let (ctx_p, io_p, gctx) = (ctx_p, io_p, gctx);
                // SAFETY: both outlive the thread (see SendPtr).
                let (ctx, io) = unsafe { (&*ctx_p.0, &*io_p.0) };
                run(ctx, io, gctx.0, &tx);
            }),
        );
        let handle = match spawned {
            Ok(h) => h,
            Err(e) => {
                // SAFETY: the thread never started; we own all three.
                unsafe {
                    glib_sys::g_main_context_unref(gctx_raw);
                    drop(Box::from_raw(io));
                    Context::unref(ctx);
                }
                return Err(format!("cannot start the thread: {e}"));
            }
        };
        // The thread always reports before it can end (a panic aborts the
        // process).
        let started = ready.recv();
        // SAFETY: `io` is ours; the thread only reads `stop` and `ctx`.
        unsafe { (*io).handle = Some(handle) };
        if let Err(e) = started {
            // SAFETY: as above.
            unsafe { Self::join(io) };
            return Err(e);
        }
        Ok(io)
    }

    /// # Safety
    /// `io` is null or was returned by [`IoThread::spawn`] and not joined.
    pub(crate) unsafe fn from_handle<'a>(io: *mut IoThread) -> MisuseResult<&'a IoThread> {
        // SAFETY: per the caller.
        let io = unsafe { io.as_ref() }.ok_or_else(|| Misuse::new("AioctxIOThread is NULL"))?;
        crate::fork::check(io.fork_gen, "AioctxIOThread")?;
        Ok(io)
    }

    pub(crate) fn context(&self) -> *const Context {
        self.ctx
    }

    pub(crate) fn is_current_thread(&self) -> bool {
        self.handle.as_ref().is_some_and(LibThread::is_current)
    }

    /// Stops the thread after the BHs already scheduled, joins it, drops the
    /// context reference and frees `io`.
    ///
    /// # Safety
    /// `io` was returned by [`IoThread::spawn`] and is not used again.
    pub(crate) unsafe fn join(io: *mut IoThread) {
        // SAFETY: per the caller.
        let this = unsafe { &mut *io };
        // SAFETY: the context is alive until we unref it below.
        let ctx = unsafe { &*this.ctx };
        ctx.schedule_oneshot(stop_bh, io.cast(), c"aioctx_iothread_stop".as_ptr());
        if let Some(h) = this.handle.take() {
            h.join();
        }
        // SAFETY: we own one reference; the thread is gone.
        unsafe {
            Context::unref(this.ctx);
            drop(Box::from_raw(io));
        }
    }
}
