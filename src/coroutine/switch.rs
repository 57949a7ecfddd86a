//! Stack switches: the running coroutine of each thread (`CURRENT`, and
//! the thread's leader for `qemu_coroutine_self` outside coroutines),
//! `qemu_aio_coroutine_enter` with its wakeup-queue loop,
//! `qemu_coroutine_yield`, and the wait for a coroutine scheduled from
//! another thread to be switched out there.
//!
//! Threading: a coroutine runs in one thread at a time; `running_on` (set
//! by the resumer, cleared with Release once the stack is switched out)
//! hands it over, see `coroutine/mod.rs`.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::Ordering;

use corosensei::CoroutineResult;

use super::object::{STATE_FREE, scheduler_name};
use super::{Action, CoBox, pool, tsan};
use crate::context::Context;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::thread;

thread_local! {
    /// The running coroutine of this thread, null outside coroutines.
    static CURRENT: Cell<*mut CoBox> = const { Cell::new(ptr::null_mut()) };
    /// The thread's "leader": what `qemu_coroutine_self` returns outside a
    /// coroutine. Never entered.
    static LEADER: Box<CoBox> = Box::new(CoBox::blank());
}

/// The running coroutine, or null. Not inlined: a coroutine may switch
/// threads between two calls, and the thread-local's address must be
/// recomputed each time.
#[inline(never)]
pub(crate) fn current() -> *mut CoBox {
    CURRENT.with(Cell::get)
}

#[inline(never)]
fn set_current(co: *mut CoBox) {
    CURRENT.with(|c| c.set(co));
}

/// `qemu_coroutine_self`: the running coroutine, or this thread's leader.
pub(crate) fn self_or_leader() -> *mut CoBox {
    let co = current();
    if co.is_null() {
        LEADER.with(|l| ptr::from_ref::<CoBox>(l).cast_mut())
    } else {
        co
    }
}

/// The running coroutine, or a misuse naming what needs one.
#[inline]
pub(crate) fn require_current(what: &str) -> MisuseResult<&'static CoBox> {
    let co = current();
    if co.is_null() {
        return Err(not_in_coroutine(what));
    }
    // SAFETY: the running coroutine is alive while it runs.
    Ok(unsafe { &*co })
}

#[cold]
#[inline(never)]
fn not_in_coroutine(what: &str) -> Misuse {
    Misuse::new(format!(
        "{what} must be called from a coroutine (this thread is not running one)"
    ))
}

/// Checks that `to` may be entered now. Inlined into the enter loop; the
/// reports are built out of line.
#[inline(always)]
fn check_enterable(to: &CoBox) -> MisuseResult<()> {
    if to.is_leader() {
        return Err(enter_leader());
    }
    if to.p.state.load(Ordering::Relaxed) == STATE_FREE {
        return Err(enter_terminated(to));
    }
    let by = to.p.scheduled_by.load(Ordering::Acquire);
    if by != 0 {
        return Err(enter_scheduled(to, by));
    }
    if !to.p.caller.get().is_null() || !to.p.running_on.load(Ordering::Acquire).is_null() {
        return Err(enter_running(to));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn enter_leader() -> Misuse {
    Misuse::new(
        "this Coroutine is a thread's leader (qemu_coroutine_self outside a coroutine), not a coroutine",
    )
}

#[cold]
#[inline(never)]
fn enter_terminated(to: &CoBox) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' has terminated (its object was returned to the pool)",
        to.describe()
    ))
}

#[cold]
#[inline(never)]
fn enter_scheduled(to: &CoBox, by: u32) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' is scheduled by {}{}; entering it now would enter it twice",
        to.describe(),
        scheduler_name(by),
        to.scheduler_text()
    ))
}

#[cold]
#[inline(never)]
fn enter_running(to: &CoBox) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' is already running (entered and not yielded); re-entering it is not allowed",
        to.describe()
    ))
}

#[cold]
#[inline(never)]
fn terminated_holding_locks(to: &CoBox) -> Misuse {
    Misuse::new(format!(
        "coroutine '{}' terminated while holding {} CoMutex/CoRwlock lock(s)",
        to.describe(),
        to.p.locks_held.get()
    ))
}

/// `qemu_aio_coroutine_enter`: runs `co` (in `ctx`) until it yields or
/// terminates, then the coroutines it woke, depth first, from this loop.
pub(crate) fn enter(ctx: *const Context, co: &CoBox) -> MisuseResult<()> {
    check_enterable(co)?;
    let from = current();
    // `caller` is never null while entered: outside coroutines it is the
    // thread's leader.
    let caller = if from.is_null() {
        self_or_leader()
    } else {
        from
    };
    let me = thread::thread_token();
    co.p.queue_next.set(ptr::null_mut());
    let mut pending: *mut CoBox = co.as_ptr();
    while !pending.is_null() {
        // SAFETY: coroutines on the pending list are alive and ours to run.
        let to = unsafe { &*pending };
        pending = to.p.queue_next.get();
        if !ptr::eq(to, co) {
            check_enterable(to)?;
        }
        to.p.caller.set(caller);
        to.p.ctx.store(ctx.cast_mut(), Ordering::Release);
        to.p.running_on.store(me, Ordering::Relaxed);
        // SAFETY: live; C-visible mirrors.
        unsafe {
            (*to.vis()).caller = caller.cast();
            (*to.vis()).ctx = ctx.cast_mut().cast();
        }
        set_current(to.as_ptr());
        // Each side keeps its own API function (`fatal::die_here`): the
        // coroutine continues inside the call it switched out from (kept
        // in `api` meanwhile, maybe by a resumer in another thread), and
        // the resumer's is current again after the switch back. Done here
        // rather than in the coroutine: the resumer stays on this thread
        // across the switch, so one thread-local address serves all four
        // accesses, and a yield touches no thread-local after its switch.
        let resumer_api = fatal::replace_current_api(to.p.api.get());
        let resumer_fiber = tsan::current_fiber();
        // SAFETY: the coroutine's fiber is live; the resume below switches.
        unsafe { tsan::switch_to_fiber(to.p.tsan_fiber.get()) };
        // SAFETY: `running_on` makes this thread the coroutine's only
        // resumer; the Option is Some for non-leaders (checked above).
        let result = unsafe { (*to.p.coro.get()).as_mut().unwrap_unchecked() }.resume(());
        // SAFETY: our own fiber is live (it is running this code).
        unsafe { tsan::switch_to_fiber(resumer_fiber) };
        to.p.api.set(fatal::replace_current_api(resumer_api));
        set_current(from);
        let action = match result {
            CoroutineResult::Yield(a) => a,
            CoroutineResult::Return(()) => unreachable!("the trampoline never returns"),
        };
        // Coroutines it woke run next, before older pending ones.
        let head = to.p.wakeup_head.replace(ptr::null_mut());
        if !head.is_null() {
            let tail = to.p.wakeup_tail.replace(ptr::null_mut());
            // SAFETY: queued coroutines are alive.
            unsafe { (*tail).p.queue_next.set(pending) };
            pending = head;
        }
        to.p.caller.set(ptr::null_mut());
        if action == Action::Terminate {
            if to.p.locks_held.get() != 0 {
                return Err(terminated_holding_locks(to));
            }
            to.p.state.store(STATE_FREE, Ordering::Relaxed);
            to.p.running_on.store(ptr::null_mut(), Ordering::Release);
            // SAFETY: terminated: the object is ours again.
            unsafe { pool::give_back(to.as_ptr()) };
        } else {
            // SAFETY: live (it only yielded); C-visible mirror.
            unsafe { (*to.vis()).caller = ptr::null_mut() };
            // From here another thread may enter it.
            to.p.running_on.store(ptr::null_mut(), Ordering::Release);
        }
    }
    Ok(())
}

/// `qemu_coroutine_yield`: back to whoever entered the running coroutine.
/// Resumed (maybe by another API call, or in another thread), the
/// coroutine is inside the call it yielded from again for `die_here`: its
/// resumers keep its API name across the switch (see [`enter`]). Touches
/// no thread-local itself (`current` is a call), so it may be inlined.
#[inline]
pub(crate) fn yield_now() -> MisuseResult<()> {
    let co = require_current("qemu_coroutine_yield")?;
    // SAFETY: set by the trampoline before any C code ran on this stack;
    // the yielder lives at the base of the coroutine's stack.
    let yielder = unsafe { &*co.p.yielder.get() };
    yielder.suspend(Action::Yield);
    Ok(())
}

/// Spins until `co` is switched out of the thread running it (it was
/// scheduled while "about to yield"). Fails if that thread is this one.
pub(crate) fn wait_switched_out(co: &CoBox) -> MisuseResult<()> {
    let me = thread::thread_token();
    let mut spins = 0u32;
    loop {
        let on = co.p.running_on.load(Ordering::Acquire);
        if on.is_null() {
            return Ok(());
        }
        if on == me {
            return Err(Misuse::new(format!(
                "coroutine '{}' was scheduled and is entered from its own thread while it still runs",
                co.describe()
            )));
        }
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
