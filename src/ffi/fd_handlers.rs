//! fd handlers, event notifier handlers and busy polling (`qemu/aio.h`).

use std::ffi::c_void;
use std::os::raw::c_int;

use super::boundary::{c_fn, context, ffi_call, ffi_call_yielding};
use super::error::propagate;
use super::types::{AioContext, AioPollFn, Error, EventNotifier, EventNotifierHandler, IOHandler};
use crate::fatal::{Misuse, MisuseResult};
use crate::handlers::Callbacks;

fn notifier_fd(e: *mut EventNotifier) -> MisuseResult<c_int> {
    // SAFETY: a non-null EventNotifier pointer from C points to the
    // caller-owned struct.
    let e = unsafe { e.as_ref() }.ok_or_else(|| Misuse::new("EventNotifier is NULL"))?;
    if !e.initialized {
        return Err(Misuse::new("EventNotifier is not initialized"));
    }
    Ok(e.rfd)
}

/// Registers, changes or (all four callbacks NULL) removes the handlers of
/// `fd` on `ctx`. `io_read`/`io_write` run from `aio_poll` when `fd` is
/// readable/writable (read first); `io_poll` is called while busy polling and
/// returns true when there is work, which `io_poll_ready` then handles.
///
/// Any thread, and safe from inside any handler of `ctx`: a removed handler
/// is never called again, even if it was ready in the same iteration.
/// Removing an fd that has no handlers does nothing. Adding a negative or
/// closed fd aborts.
#[unsafe(no_mangle)]
pub extern "C" fn aio_set_fd_handler(
    ctx: *mut AioContext,
    fd: c_int,
    io_read: *mut IOHandler,
    io_write: *mut IOHandler,
    io_poll: *mut AioPollFn,
    io_poll_ready: *mut IOHandler,
    opaque: *mut c_void,
) {
    ffi_call(c"aio_set_fd_handler", || {
        let ctx = context(ctx)?;
        let io_poll_ready = c_fn(io_poll_ready);
        ctx.set_fd_handler(
            fd,
            Callbacks {
                io_read: c_fn(io_read),
                io_write: c_fn(io_write),
                io_poll: c_fn(io_poll),
                io_poll_ready,
                io_poll_begin: None,
                io_poll_end: None,
                opaque,
                notifier: false,
            },
        )
    })
}

/// `aio_set_fd_handler` for an event notifier: `io_read(notifier)` runs when
/// it is set (the handler usually calls `event_notifier_test_and_clear`).
/// All three NULL removes it.
#[unsafe(no_mangle)]
pub extern "C" fn aio_set_event_notifier(
    ctx: *mut AioContext,
    notifier: *mut EventNotifier,
    io_read: *mut EventNotifierHandler,
    io_poll: *mut AioPollFn,
    io_poll_ready: *mut EventNotifierHandler,
) {
    ffi_call(c"aio_set_event_notifier", || {
        let ctx = context(ctx)?;
        let fd = notifier_fd(notifier)?;
        ctx.set_fd_handler(
            fd,
            Callbacks {
                io_read: c_fn(io_read),
                io_write: None,
                io_poll: c_fn(io_poll),
                io_poll_ready: c_fn(io_poll_ready),
                io_poll_begin: None,
                io_poll_end: None,
                opaque: notifier.cast(),
                notifier: true,
            },
        )
    })
}

/// Sets the callbacks run when `ctx` starts (`io_poll_begin`) and stops
/// (`io_poll_end`) busy polling, for a notifier registered with
/// `aio_set_event_notifier`. Does nothing if the notifier is not registered.
#[unsafe(no_mangle)]
pub extern "C" fn aio_set_event_notifier_poll(
    ctx: *mut AioContext,
    notifier: *mut EventNotifier,
    io_poll_begin: *mut EventNotifierHandler,
    io_poll_end: *mut EventNotifierHandler,
) {
    ffi_call(c"aio_set_event_notifier_poll", || {
        let ctx = context(ctx)?;
        let fd = notifier_fd(notifier)?;
        let Some(mut cb) = ctx.handlers().get(fd) else {
            return Ok(());
        };
        cb.io_poll_begin = c_fn(io_poll_begin);
        cb.io_poll_end = c_fn(io_poll_end);
        ctx.set_fd_handler(fd, cb)
    })
}

/// Adaptive busy polling of `ctx`: spin on `io_poll` callbacks before
/// blocking, for a window that starts at 0, grows (to 4 us, then x`grow`,
/// 0 meaning 2) while events arrive within `max_ns`, and shrinks (/`shrink`,
/// 0 meaning to 0) when they do not. `max_ns` 0 disables polling. Negative
/// values are reported through `errp`. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_set_poll_params(
    ctx: *mut AioContext,
    max_ns: i64,
    grow: i64,
    shrink: i64,
    errp: *mut *mut Error,
) {
    ffi_call(c"aio_context_set_poll_params", || {
        let ctx = context(ctx)?;
        match ctx.poll_params().set(max_ns, grow, shrink) {
            Ok(()) => ctx.notify(),
            // SAFETY: errp is an `Error **` per QEMU's contract.
            Err(msg) => unsafe { propagate("aio_context_set_poll_params", errp, &msg) },
        }
        Ok(())
    })
}

/// True while some handler of `ctx` has no `io_poll` (busy polling is then
/// skipped).
#[unsafe(no_mangle)]
pub extern "C" fn aio_poll_disabled(ctx: *mut AioContext) -> bool {
    ffi_call(c"aio_poll_disabled", || {
        Ok(context(ctx)?.handlers().poll_disabled())
    })
}

/// The current busy-poll window of `ctx` in ns (0: not polling). For tests
/// and tuning.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_context_get_poll_ns(ctx: *mut AioContext) -> i64 {
    ffi_call(c"aioctx_context_get_poll_ns", || {
        Ok(context(ctx)?.poll_params().window_ns())
    })
}

/// The fd monitoring backend `ctx` uses: "none" until an fd handler is
/// registered and polled, then "poll", "epoll" or "io_uring". The string is
/// static. Home thread (or an unbound context).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_context_fdmon_name(ctx: *mut AioContext) -> *const std::ffi::c_char {
    ffi_call(c"aioctx_context_fdmon_name", || {
        Ok(match context(ctx)?.fdmon_name()? {
            "poll" => c"poll".as_ptr(),
            "epoll" => c"epoll".as_ptr(),
            "io_uring" => c"io_uring".as_ptr(),
            _ => c"none".as_ptr(),
        })
    })
}

/// QEMU's main-loop shorthand: `aio_set_event_notifier` on the iohandler
/// context (`iohandler_get_aio_context`), with no polling callbacks; NULL
/// `handler` removes it. Main loop thread (or a BQL holder).
#[unsafe(no_mangle)]
pub extern "C" fn event_notifier_set_handler(
    e: *mut EventNotifier,
    handler: *mut EventNotifierHandler,
) {
    aio_set_event_notifier(
        super::main_loop::iohandler_get_aio_context(),
        e,
        handler,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
}

/// What `yield_until_fd_readable` registers: the coroutine to wake.
struct FdReadableWait {
    co: *mut super::coroutine::Coroutine,
    fd: c_int,
    ctx: *mut AioContext,
}

unsafe extern "C" fn fd_became_readable(opaque: *mut c_void) {
    let w = opaque.cast::<FdReadableWait>();
    // SAFETY: `w` lives on the waiting coroutine's stack until it is woken;
    // the handler is removed before the wake, so it runs at most once.
    let (ctx, fd, co) = unsafe { ((*w).ctx, (*w).fd, (*w).co) };
    aio_set_fd_handler(
        ctx,
        fd,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    super::coroutine::aio_co_wake(co);
}

/// Coroutine only: yields until `fd` is readable (a read handler on the
/// current context, removed before the coroutine resumes).
#[unsafe(no_mangle)]
pub extern "C" fn yield_until_fd_readable(fd: c_int) {
    ffi_call_yielding(c"yield_until_fd_readable", || -> MisuseResult<()> {
        if !super::coroutine::qemu_in_coroutine() {
            return Err(Misuse::new("called outside a coroutine"));
        }
        Ok(())
    });
    let mut w = FdReadableWait {
        co: super::coroutine::qemu_coroutine_self(),
        fd,
        ctx: super::main_loop::qemu_get_current_aio_context(),
    };
    let read: unsafe extern "C" fn(*mut c_void) = fd_became_readable;
    aio_set_fd_handler(
        w.ctx,
        fd,
        read as *mut IOHandler,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        (&raw mut w).cast(),
    );
    super::coroutine::qemu_coroutine_yield();
}

/// Marker for GLib's `GPollFD` (declared in the header's preamble): the
/// layout of `struct pollfd` (`int fd; unsigned short events, revents`).
pub struct GPollFD {
    _opaque: [u8; 0],
}

/// QEMU's `qemu_poll_ns` (`qemu/timer.h`): `poll(2)` with a timeout in
/// nanoseconds (negative: forever, 0: don't block). Returns what `ppoll`
/// returns (-1 with `errno` set on error). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_poll_ns(fds: *mut GPollFD, nfds: std::ffi::c_uint, timeout: i64) -> c_int {
    let ts = (timeout >= 0).then(|| crate::fdmon::timespec_from_ns(timeout));
    let tsp = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `GPollFD` has `struct pollfd`'s layout; the caller passes
    // `nfds` of them (or NULL with 0); `tsp` is NULL or a valid timespec.
    unsafe { libc::ppoll(fds.cast(), libc::nfds_t::from(nfds), tsp, std::ptr::null()) }
}
