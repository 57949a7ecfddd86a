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
//!
//! `main_loop_wait` is QEMU's (util/main-loop.c): the main-loop poll
//! notifiers (`main_loop_poll_add_notifier`) run with a [`MainLoopPoll`] in
//! state `MAIN_LOOP_POLL_FILL` (empty `pollfds`, `timeout` 0 if
//! nonblocking, else `UINT32_MAX` = infinite; they may append `GPollFD`s
//! and lower `timeout`), then GLib's default context is prepared and
//! queried, its fds appended after theirs, and all of them are polled
//! together with the smaller timeout (the context's poll function, `g_poll`
//! by default); GLib checks and dispatches its sources, and the notifiers
//! run again in state `MAIN_LOOP_POLL_OK` (or `_ERR` if the poll failed)
//! with every `revents` filled in. A caller holding the BQL releases it for
//! the poll only (QEMU's `os_host_main_loop_wait`). Notifiers run newest first; one may
//! remove itself or others (those no longer run in this pass) or add new
//! ones (which first run in the next pass). No lock is held while they run.

use std::cell::Cell;
use std::ffi::{c_int, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread;
use crate::thread_exit::Notifier;

/// `MainLoopPoll.state` before the poll: notifiers add fds.
pub(crate) const MAIN_LOOP_POLL_FILL: c_int = 0;
/// `MainLoopPoll.state` after a failed poll.
pub(crate) const MAIN_LOOP_POLL_ERR: c_int = 1;
/// `MainLoopPoll.state` after a successful poll (`revents` are valid).
pub(crate) const MAIN_LOOP_POLL_OK: c_int = 2;

/// QEMU's `MainLoopPoll` (qemu/main-loop.h, declared in the compat
/// header): what main-loop poll notifiers receive as `data`.
#[repr(C)]
pub(crate) struct MainLoopPoll {
    /// `MAIN_LOOP_POLL_FILL`, `_ERR` or `_OK`.
    pub state: c_int,
    /// A `GArray` of `GPollFD`.
    pub pollfds: *mut glib_sys::GArray,
    /// Milliseconds, read as unsigned; `UINT32_MAX` (-1) is infinite.
    pub timeout: c_int,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<MainLoopPoll>() == 24 && align_of::<MainLoopPoll>() == 8);
    assert!(offset_of!(MainLoopPoll, state) == 0);
    assert!(offset_of!(MainLoopPoll, pollfds) == 8);
    assert!(offset_of!(MainLoopPoll, timeout) == 16);
};

/// The registered main-loop poll notifiers, oldest first (run newest
/// first, like QEMU's `notifier_list_add` at the head), as addresses.
static POLL_NOTIFIERS: parking_lot::Mutex<Vec<usize>> = parking_lot::Mutex::new(Vec::new());

thread_local! {
    /// A spare `GArray` of `GPollFD` for `main_loop_wait` (null while a
    /// call uses it, so a nested call makes its own).
    static POLLFDS: Cell<*mut glib_sys::GArray> = const { Cell::new(ptr::null_mut()) };
}

/// `main_loop_poll_add_notifier`.
///
/// # Safety
/// `n` is a valid, aligned `Notifier` that stays alive (and in place) until
/// it is removed.
pub(crate) unsafe fn poll_add_notifier(n: *mut Notifier) -> MisuseResult<()> {
    // SAFETY: valid per the contract.
    if unsafe { (*n).notify }.is_none() {
        return Err(Misuse::new("notifier's notify function is NULL"));
    }
    let mut list = POLL_NOTIFIERS.lock();
    if list.contains(&n.addr()) {
        return Err(Misuse::new(format!(
            "notifier {n:p} is already a main-loop poll notifier"
        )));
    }
    list.push(n.expose_provenance());
    Ok(())
}

/// `main_loop_poll_remove_notifier`.
pub(crate) fn poll_remove_notifier(n: *mut Notifier) -> MisuseResult<()> {
    let mut list = POLL_NOTIFIERS.lock();
    let Some(i) = list.iter().position(|&a| a == n.addr()) else {
        return Err(Misuse::new(format!(
            "notifier {n:p} is not a main-loop poll notifier"
        )));
    };
    list.remove(i);
    Ok(())
}

/// Runs every poll notifier, newest first, with `mlpoll` as data; skips
/// one removed meanwhile. The list lock is not held during a call.
fn notify_poll(mlpoll: &mut MainLoopPoll) {
    let snapshot: Vec<usize> = POLL_NOTIFIERS.lock().iter().rev().copied().collect();
    for addr in snapshot {
        if !POLL_NOTIFIERS.lock().contains(&addr) {
            continue;
        }
        let n = ptr::with_exposed_provenance_mut::<Notifier>(addr);
        // SAFETY: still registered, so alive (the add contract).
        let Some(notify) = (unsafe { (*n).notify }) else {
            continue;
        };
        // SAFETY: QEMU's notifier contract: `notify(notifier, data)`, here
        // with a `MainLoopPoll *` that lives for the call.
        unsafe { notify(n, ptr::from_mut(mlpoll).cast::<c_void>()) };
    }
}

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

/// The smaller of two poll timeouts in ms, -1 being infinite.
fn min_timeout(a: c_int, b: c_int) -> c_int {
    match (a, b) {
        (-1, t) | (t, -1) => t,
        (a, b) => a.min(b),
    }
}

/// `main_loop_wait`: the poll notifiers (FILL), one iteration of GLib's
/// default main context polling the notifiers' fds too, the notifiers again
/// (OK or ERR). See the module documentation.
pub(crate) fn wait(nonblocking: bool) {
    let pollfds = match POLLFDS.with(|p| p.replace(ptr::null_mut())) {
        p if !p.is_null() => p,
        // SAFETY: a new, empty array of GPollFD-sized elements.
        _ => unsafe {
            glib_sys::g_array_sized_new(
                glib_sys::GFALSE,
                glib_sys::GFALSE,
                size_of::<glib_sys::GPollFD>() as c_uint,
                16,
            )
        },
    };
    // SAFETY: a valid array of GPollFD.
    unsafe { glib_sys::g_array_set_size(pollfds, 0) };
    let mut mlpoll = MainLoopPoll {
        state: MAIN_LOOP_POLL_FILL,
        pollfds,
        timeout: if nonblocking { 0 } else { u32::MAX as c_int },
    };
    notify_poll(&mut mlpoll);
    // The notifiers' timeout is unsigned (QEMU: UINT32_MAX is infinite).
    let timeout = match mlpoll.timeout as u32 {
        u32::MAX => -1,
        ms => c_int::try_from(ms).unwrap_or(c_int::MAX),
    };
    // SAFETY: `pollfds` is the array the notifiers filled (they may not
    // replace it, only append to it).
    let ok = unsafe { poll_glib(pollfds, timeout, nonblocking) };
    mlpoll.state = if ok {
        MAIN_LOOP_POLL_OK
    } else {
        MAIN_LOOP_POLL_ERR
    };
    notify_poll(&mut mlpoll);
    POLLFDS.with(|p| {
        if p.get().is_null() {
            p.set(pollfds);
        } else {
            // SAFETY: ours, and no longer used.
            unsafe { glib_sys::g_array_free(pollfds, glib_sys::GTRUE) };
        }
    });
}

/// One iteration of GLib's default main context that also polls the fds
/// already in `pollfds` (a `GArray` of `GPollFD`), with at most `timeout`
/// ms (-1: infinite). Returns false if the poll failed.
///
/// If another thread owns the default context, this falls back to
/// `g_main_context_iteration` (which waits for it) and the fds in
/// `pollfds` are not polled (their `revents` are left 0).
///
/// # Safety
/// `pollfds` is a valid `GArray` of `GPollFD`.
unsafe fn poll_glib(pollfds: *mut glib_sys::GArray, timeout: c_int, nonblocking: bool) -> bool {
    // SAFETY: no precondition; GLib's default main context (not NULL: the
    // prepare/query/check functions do not take NULL for it).
    let ctx = unsafe { glib_sys::g_main_context_default() };
    // SAFETY: `ctx` is the default context, owned by this thread
    // between acquire and release; `pollfds` is valid and its elements are
    // GPollFDs; `data` is re-read after every resize.
    unsafe {
        let extra = (*pollfds).len;
        let fds = |a: *mut glib_sys::GArray| (*a).data.cast::<glib_sys::GPollFD>();
        for i in 0..extra as usize {
            (*fds(pollfds).add(i)).revents = 0;
        }
        if glib_sys::g_main_context_acquire(ctx) == glib_sys::GFALSE {
            glib_sys::g_main_context_iteration(ctx, glib_sys::gboolean::from(!nonblocking));
            return true;
        }
        let mut max_priority: c_int = 0;
        glib_sys::g_main_context_prepare(ctx, &raw mut max_priority);
        let mut room: c_int = 16;
        let mut glib_timeout: c_int = -1;
        let n = loop {
            glib_sys::g_array_set_size(pollfds, extra + room as c_uint);
            let n = glib_sys::g_main_context_query(
                ctx,
                max_priority,
                &raw mut glib_timeout,
                fds(pollfds).add(extra as usize),
                room,
            );
            if n <= room {
                break n;
            }
            room = n;
        };
        glib_sys::g_array_set_size(pollfds, extra + n as c_uint);
        let timeout = min_timeout(timeout, glib_timeout);
        let poll = glib_sys::g_main_context_get_poll_func(ctx).unwrap_or(glib_sys::g_poll);
        // As QEMU: a caller holding the BQL lets others have it while the
        // loop sleeps, and has it again for dispatch and the notifiers.
        let had_bql = thread::holds_bql();
        if had_bql {
            thread::bql_unlock().expect("held: checked just before");
        }
        let ret = poll(fds(pollfds), (*pollfds).len, timeout);
        if had_bql {
            thread::bql_lock().expect("not held: released just before");
        }
        let glib_fds = fds(pollfds).add(extra as usize);
        if glib_sys::g_main_context_check(ctx, max_priority, glib_fds, n) != glib_sys::GFALSE {
            glib_sys::g_main_context_dispatch(ctx);
        }
        glib_sys::g_main_context_release(ctx);
        ret >= 0
    }
}
