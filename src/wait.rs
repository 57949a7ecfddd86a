//! Waiting for conditions across contexts (`qemu/aio-wait.h`):
//! `global_aio_wait`, `aio_wait_kick`, `AIO_WAIT_WHILE` as the function
//! `aioctx_wait_while`, and `aio_wait_bh_oneshot`.
//!
//! A waiter counts itself in `global_aio_wait.num_waiters`, then polls until
//! its condition is false: the context it waits on if this is its home
//! thread (or if it is bound to no thread and nobody polls it), else the
//! main context (it must then be the main context's home
//! thread). Whoever changes a condition that someone may wait on calls
//! `aio_wait_kick`, which schedules a no-op BH on the main context when
//! anyone waits, so that a main-context waiter re-checks.
//!
//! `aio_wait_bh_oneshot(ctx, cb, opaque)` runs `cb` in ctx's home thread and
//! returns once it ran. Because BHs run in scheduling order (FIFO), every BH
//! scheduled on ctx before the call has also run by then. Callers that can
//! poll neither ctx nor the main context (an unbound thread without the
//! BQL) sleep on a futex instead.

use std::ffi::{c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use crate::bh::BhFn;
use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread;

/// The number of threads inside `AIO_WAIT_WHILE` (or `aioctx_wait_while`).
/// Updated atomically only.
#[repr(C)]
#[derive(Debug)]
pub struct AioWait {
    /// Threads currently waiting; `aio_wait_kick` does nothing when 0.
    pub num_waiters: c_uint,
}

/// The process-wide wait counter used by `AIO_WAIT_WHILE` and
/// `aio_wait_kick`.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static mut global_aio_wait: AioWait = AioWait { num_waiters: 0 };

/// `global_aio_wait.num_waiters` as an atomic.
fn num_waiters() -> &'static AtomicU32 {
    // SAFETY: the exported static lives forever, is suitably aligned for a
    // u32, and is only accessed atomically (by us and by the C macros, which
    // use qatomic_* on it).
    unsafe { AtomicU32::from_ptr(&raw mut global_aio_wait.num_waiters) }
}

/// Counts the caller as a waiter for as long as it lives.
struct WaiterCount;

impl WaiterCount {
    fn new() -> Self {
        // SeqCst: the increment must be visible before the condition is
        // evaluated (pairs with the fence in `kick`).
        num_waiters().fetch_add(1, Ordering::SeqCst);
        WaiterCount
    }
}

impl Drop for WaiterCount {
    fn drop(&mut self) {
        num_waiters().fetch_sub(1, Ordering::SeqCst);
    }
}

unsafe extern "C" fn noop_bh(_opaque: *mut c_void) {}

/// `aio_wait_kick`: wake waiters polling the main context.
pub(crate) fn kick() {
    // Order the caller's condition change before reading num_waiters.
    fence(Ordering::SeqCst);
    if num_waiters().load(Ordering::Relaxed) == 0 {
        return;
    }
    let main = thread::main_context();
    if !main.is_null() {
        // SAFETY: the main context lives for the rest of the process.
        unsafe { &*main }.schedule_oneshot(noop_bh, ptr::null_mut(), c"aio_wait_kick".as_ptr());
    }
}

/// Which context a waiter in this thread polls for `ctx`.
fn context_to_poll(ctx: Option<&Context>) -> MisuseResult<&Context> {
    if let Some(ctx) = ctx {
        // An unbound context nobody polls: the waiter polls it itself.
        if thread::in_home_thread(ctx) || ctx.is_unbound_and_idle() {
            return Ok(ctx);
        }
    }
    let main = thread::main_context();
    // SAFETY: the main context lives for the rest of the process.
    match unsafe { main.as_ref() } {
        Some(main) if thread::in_home_thread(main) => Ok(main),
        _ => Err(Misuse::new(
            "must be called from the context's home thread or the main loop thread",
        )),
    }
}

/// `AIO_WAIT_WHILE(ctx, cond)` as a function; returns whether it waited.
pub(crate) fn wait_while(
    ctx: Option<&Context>,
    mut cond: impl FnMut() -> bool,
) -> MisuseResult<bool> {
    let _count = WaiterCount::new();
    let target = context_to_poll(ctx)?;
    let mut waited = false;
    while cond() {
        target.poll(true)?;
        waited = true;
    }
    Ok(waited)
}

/// Shared by `aio_wait_bh_oneshot` and the BH it schedules.
struct OneshotWait {
    cb: BhFn,
    opaque: *mut c_void,
    /// 0 until the callback ran, then 1 (also the futex word).
    done: AtomicU32,
}

unsafe extern "C" fn oneshot_trampoline(opaque: *mut c_void) {
    // SAFETY: `opaque` is the OneshotWait on the waiter's stack, which stays
    // alive until `done` is set.
    let w = unsafe { &*opaque.cast::<OneshotWait>() };
    // SAFETY: the C caller passed `cb` for `opaque`.
    unsafe { (w.cb)(w.opaque) };
    // The waiter may return and free `w` as soon as it sees done == 1, so
    // take the address first and touch nothing of `w` after the store.
    let word = w.done.as_ptr();
    w.done.store(1, Ordering::Release);
    // SAFETY: FUTEX_WAKE on an address is harmless even if the waiter has
    // already returned: it only wakes sleepers on that address, if any.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word,
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        )
    };
    kick();
}

/// `aio_wait_bh_oneshot`.
pub(crate) fn bh_oneshot(ctx: &Context, cb: BhFn, opaque: *mut c_void) -> MisuseResult<()> {
    let w = OneshotWait {
        cb,
        opaque,
        done: AtomicU32::new(0),
    };
    let _count = WaiterCount::new();
    let target = context_to_poll(Some(ctx));
    ctx.schedule_oneshot(
        oneshot_trampoline,
        ptr::from_ref(&w).cast_mut().cast(),
        c"aio_wait_bh_oneshot".as_ptr(),
    );
    match target {
        Ok(target) => {
            while w.done.load(Ordering::Acquire) == 0 {
                target.poll(true)?;
            }
        }
        Err(_) => {
            // Neither ctx nor the main context can be polled here: sleep.
            while w.done.load(Ordering::Acquire) == 0 {
                // SAFETY: waits on a live u32 while it still reads 0.
                unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        w.done.as_ptr(),
                        libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                        0u32,
                        ptr::null::<libc::timespec>(),
                    )
                };
            }
        }
    }
    Ok(())
}
