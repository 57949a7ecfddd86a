//! Threads and contexts: the current context of each thread, the main
//! context, the big QEMU lock (BQL) and the home-thread rule
//! (`qemu/main-loop.h`: `qemu_get_current_aio_context`,
//! `qemu_set_current_aio_context`, `qemu_get_aio_context`, `bql_*`,
//! `in_aio_context_home_thread`).
//!
//! Rules (docs/spec/api.md §2):
//! - A thread is bound to at most one context, once
//!   (`qemu_set_current_aio_context`); `qemu_init_main_loop` binds the main
//!   context to the calling thread.
//! - `qemu_get_current_aio_context()` is the bound context, else the main
//!   context while this thread holds the BQL, else NULL.
//! - `in_aio_context_home_thread(ctx)`: ctx is the current context, or ctx is
//!   the main context and this thread holds the BQL.
//! - A context bound to no thread may be polled by any one thread at a time;
//!   while that thread polls it, it is that thread's current context.
//! - The BQL is one process-wide, non-recursive pthread mutex;
//!   `bql_locked()` says whether *this* thread holds it.
//!   `qemu_cond_wait_bql`/`qemu_cond_timedwait_bql` wait on a `QemuCond`
//!   with it (`pthread_cond_wait`), releasing it atomically. A thread that exits holding it is a
//!   fatal error (`aioctx: bql_lock: thread ... exited holding the BQL`),
//!   not a silent deadlock of the next `bql_lock`; `exit()` with the BQL
//!   held is fine.
//! - When a thread bound to contexts exits (`pthread_exit` or returning from
//!   its start routine), its bindings are cleared: each such context is
//!   bound to no thread again, so any one thread may poll it or bind to it
//!   with `qemu_set_current_aio_context`. While the bound thread lives,
//!   polling from another thread is still fatal. (Thread tokens are never
//!   reused, so a new thread is never mistaken for the dead one.)
//! - A thread that ends (`pthread_exit`, `qemu_thread_exit`) inside a
//!   callback of `aio_poll` (or `aio_bh_poll` & co.) is a fatal error
//!   (`aioctx: aio_poll: thread ... exited (pthread_exit/qemu_thread_exit)
//!   inside a callback of aio_poll`): the forced unwind skips the loop's
//!   cleanup, so the context would stay marked as being polled. The exit
//!   hook sees the thread's count of live loop guards. (A coroutine that
//!   yields from inside a nested `aio_poll` and resumes in another thread
//!   would confuse the count; that is unsupported anyway.)

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_int, c_void};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::sync::QemuCond;

thread_local! {
    static CURRENT: Cell<*const Context> = const { Cell::new(ptr::null()) };
    static HOLDS_BQL: Cell<bool> = const { Cell::new(false) };
    /// An unbound context this thread is polling right now: for the time of
    /// that poll it is the thread's current context (see `enter_polling`).
    static POLLING: Cell<*const Context> = const { Cell::new(ptr::null()) };
    /// This thread's token (see [`thread_token`]); 0 until first asked.
    static TOKEN: Cell<usize> = const { Cell::new(0) };
    /// `(live LoopGuards << 1) | exit hook armed`: the number of polls of
    /// any context in progress in this thread (see [`loop_entered`]) and
    /// whether its exit hook is armed (see [`arm_exit_hook`]), in one word
    /// so that entering a loop is one thread-local load and store.
    static LOOP_STATE: Cell<u32> = const { Cell::new(0) };
    /// The context of this thread's innermost live `LoopGuard` (null when
    /// none): the context whose loop this thread is in right now, so that
    /// a BH it schedules there needs no atomic queue (see
    /// [`in_loop_of`]).
    static IN_LOOP: Cell<*const Context> = const { Cell::new(ptr::null()) };
}

static MAIN_CONTEXT: AtomicPtr<Context> = AtomicPtr::new(ptr::null_mut());
/// The BQL: a plain (non-recursive, default-kind) pthread mutex, so that
/// `qemu_cond_wait_bql` can hand it to `pthread_cond_wait` and release it
/// atomically with going to sleep, as QEMU's `qemu_cond_wait(cond, &bql)`.
static BQL: BqlMutex = BqlMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));

struct BqlMutex(UnsafeCell<libc::pthread_mutex_t>);
// SAFETY: a pthread mutex is made to be shared between threads; it is only
// ever touched through pthread_mutex_* / pthread_cond_*wait, never moved.
unsafe impl Sync for BqlMutex {}

/// The next thread token. Starts at 1 (0 is "none"); never reaches
/// `usize::MAX`, which `context/home.rs` uses as a marker.
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(1);

/// A cheap identity for the calling thread, as an opaque non-null pointer:
/// a number taken from a global counter the first time the thread asks, so
/// it is never reused by another thread, even after this one exits.
#[inline]
pub(crate) fn thread_token() -> *mut u8 {
    TOKEN.with(|t| {
        let mut token = t.get();
        if token == 0 {
            token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
            t.set(token);
        }
        ptr::without_provenance_mut(token)
    })
}

/// Contexts bound to a live thread, with the thread's token: the thread's
/// exit hook unbinds them. A context leaves the list when it is destroyed
/// ([`forget_home`]), under the same lock, so every context in it is alive.
static HOMES: parking_lot::Mutex<Vec<Home>> = parking_lot::Mutex::new(Vec::new());

struct Home {
    token: *mut u8,
    ctx: *const Context,
}
// SAFETY: `ctx` is only dereferenced with the HOMES lock held, while the
// context is alive (see `HOMES`); `token` is never dereferenced.
unsafe impl Send for Home {}

/// Records that `ctx` was just bound to the calling thread, and arms the
/// thread's exit hook.
pub(crate) fn register_home(ctx: &Context) {
    HOMES.lock().push(Home {
        token: thread_token(),
        ctx: ptr::from_ref(ctx),
    });
    arm_exit_hook();
}

/// Drops `ctx` from the bindings list (it is being destroyed).
pub(crate) fn forget_home(ctx: &Context) {
    HOMES.lock().retain(|h| !ptr::eq(h.ctx, ctx));
}

/// The pthread key whose destructor is the exit hook. A pthread key rather
/// than a Rust thread-local with `Drop`: its destructor runs when a thread
/// exits, but not when the process exits (glibc's `exit()` runs Rust's TLS
/// destructors of the calling thread).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(0);
static EXIT_KEY_INIT: Once = Once::new();

/// [`LOOP_STATE`]: the exit hook is armed.
const HOOK_ARMED: u32 = 1;
/// [`LOOP_STATE`]: one live `LoopGuard`.
const ONE_LOOP: u32 = 2;

/// Makes sure [`thread_exit_hook`] runs when the calling thread exits.
fn arm_exit_hook() {
    if LOOP_STATE.with(Cell::get) & HOOK_ARMED != 0 {
        return;
    }
    EXIT_KEY_INIT.call_once(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is a valid out-pointer; the destructor is an
        // `extern "C" fn(*mut c_void)` that lives for the whole process.
        let rc = unsafe { libc::pthread_key_create(&raw mut key, Some(thread_exit_hook)) };
        if rc != 0 {
            crate::fatal::die_here(&format!("pthread_key_create failed (error {rc})"));
        }
        EXIT_KEY.store(key as usize, Ordering::Release);
    });
    let key = EXIT_KEY.load(Ordering::Acquire) as libc::pthread_key_t;
    // The value only has to be non-null for the destructor to run.
    // SAFETY: `key` was created above; the value is never dereferenced.
    unsafe { libc::pthread_setspecific(key, ptr::dangling::<u8>().cast()) };
    LOOP_STATE.with(|s| s.set(s.get() | HOOK_ARMED));
}

/// A `LoopGuard` of `ctx` was created in this thread (a poll of `ctx`
/// starts); arms the exit hook the first time. Returns the thread's
/// previous innermost loop context, which [`loop_left`] restores.
#[inline(always)]
pub(crate) fn loop_entered(ctx: *const Context) -> *const Context {
    LOOP_STATE.with(|s| {
        let state = s.get();
        if state == 0 {
            // Never armed (so no guard is live either).
            first_loop_entered();
        } else {
            s.set(state + ONE_LOOP);
        }
    });
    IN_LOOP.with(|c| c.replace(ctx))
}

/// [`loop_entered`] in a thread whose exit hook is not armed yet.
#[inline(never)]
fn first_loop_entered() {
    arm_exit_hook();
    LOOP_STATE.with(|s| s.set(s.get() + ONE_LOOP));
}

/// A `LoopGuard` of this thread was dropped; `prev` is what its
/// [`loop_entered`] returned.
#[inline(always)]
pub(crate) fn loop_left(prev: *const Context) {
    LOOP_STATE.with(|s| {
        let state = s.get();
        // Never below zero guards (a guard dropped by another thread than
        // the one that made it: a coroutine that moved, unsupported).
        if state >= ONE_LOOP {
            s.set(state - ONE_LOOP);
        }
    });
    IN_LOOP.with(|c| c.set(prev));
}

/// Whether the calling thread's innermost live `LoopGuard` is one of `ctx`:
/// it runs a callback (or other loop code) of `ctx` right now, so no other
/// thread is in `ctx`'s loop and the caller looks at the loop-local state
/// before it next waits. One thread-local load.
#[inline(always)]
pub(crate) fn in_loop_of(ctx: &Context) -> bool {
    IN_LOOP.with(Cell::get) == ptr::from_ref(ctx)
}

/// Runs when a thread that armed it exits: a thread that ends inside a
/// callback of a poll (a live loop guard) is fatal (the context would stay
/// "being polled"), and so is one that still holds the BQL (the next
/// `bql_lock` would deadlock); otherwise clears the home binding of every
/// context still bound to it.
///
/// A pthread key destructor: no API call is active (the thread's routine
/// has returned, or `pthread_exit` is unwinding it), so the reports name
/// the API function whose rule the thread broke.
extern "C" fn thread_exit_hook(_: *mut c_void) {
    if LOOP_STATE.with(Cell::get) >= ONE_LOOP {
        crate::fatal::die(
            "aio_poll",
            &format!(
                "thread {} exited (pthread_exit/qemu_thread_exit) inside a callback of aio_poll",
                thread_name()
            ),
        );
    }
    if holds_bql() {
        crate::fatal::die(
            "bql_lock",
            &format!("thread {} exited holding the BQL", thread_name()),
        );
    }
    let me = thread_token();
    HOMES.lock().retain(|h| {
        if h.token != me {
            return true;
        }
        // SAFETY: contexts in HOMES are alive (see `HOMES`); the lock is
        // held, so destroy's `forget_home` cannot free it meanwhile.
        unsafe { &*h.ctx }.release_home_thread(me);
        false
    });
}

/// The context bound to this thread, or null.
#[inline]
pub(crate) fn bound_context() -> *const Context {
    CURRENT.with(Cell::get)
}

/// The main context, or null before `qemu_init_main_loop`.
#[inline]
pub(crate) fn main_context() -> *const Context {
    MAIN_CONTEXT.load(Ordering::Acquire)
}

#[inline]
pub(crate) fn holds_bql() -> bool {
    HOLDS_BQL.with(Cell::get)
}

/// Makes `ctx`, an unbound context this thread starts polling, the current
/// context until [`leave_polling`] restores the returned previous value. So
/// inside its callbacks `qemu_get_current_aio_context()` is the context that
/// runs them, as QEMU code expects.
pub(crate) fn enter_polling(ctx: *const Context) -> *const Context {
    POLLING.with(|p| p.replace(ctx))
}

pub(crate) fn leave_polling(prev: *const Context) {
    POLLING.with(|p| p.set(prev));
}

/// `qemu_get_current_aio_context`: the unbound context being polled, else
/// the bound context, else the main context while holding the BQL.
#[inline]
pub(crate) fn current_context() -> *const Context {
    let polling = POLLING.with(Cell::get);
    if !polling.is_null() {
        return polling;
    }
    let bound = bound_context();
    if !bound.is_null() {
        bound
    } else if holds_bql() {
        main_context()
    } else {
        ptr::null()
    }
}

/// `in_aio_context_home_thread`.
#[inline]
pub(crate) fn in_home_thread(ctx: &Context) -> bool {
    let ctx = ptr::from_ref(ctx);
    ctx == bound_context()
        || ctx == POLLING.with(Cell::get)
        || (ctx == main_context() && holds_bql())
}

/// `qemu_set_current_aio_context`: binds this thread to `ctx`, once.
pub(crate) fn bind_current(ctx: &Context) -> MisuseResult<()> {
    if !bound_context().is_null() {
        return Err(Misuse::new(
            "this thread is already bound to a context (the binding is once per thread)",
        ));
    }
    ctx.claim_home_thread(thread_token())?;
    CURRENT.with(|c| c.set(ptr::from_ref(ctx)));
    Ok(())
}

/// Forgets this thread's binding if it is `ctx` (the context is going away).
pub(crate) fn unbind_if_current(ctx: &Context) {
    CURRENT.with(|c| {
        if c.get() == ptr::from_ref(ctx) {
            c.set(ptr::null());
        }
    });
}

/// Publishes the main context (once); false if one was already set.
pub(crate) fn set_main_context(ctx: *const Context) -> bool {
    MAIN_CONTEXT
        .compare_exchange(
            ptr::null_mut(),
            ctx.cast_mut(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
}

/// The calling thread for messages: `"name" (tid N)`, or `tid N` unnamed.
fn thread_name() -> String {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: pthread_self is always valid; the buffer is writable for its
    // length, and glibc NUL-terminates what it writes on success.
    let rc = unsafe { libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr(), buf.len()) };
    // SAFETY: gettid takes no arguments.
    let tid = unsafe { libc::gettid() };
    if rc == 0 && buf[0] != 0 {
        // SAFETY: NUL-terminated by pthread_getname_np (rc == 0).
        let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        format!("\"{}\" (tid {tid})", name.to_string_lossy())
    } else {
        format!("tid {tid}")
    }
}

/// Locks the BQL. A thread that exits while holding it is reported (and
/// the process aborted) by its exit hook rather than leaving the next
/// `bql_lock` to deadlock; a thread that ends the process (`exit()`) while
/// holding it is fine.
pub(crate) fn bql_lock() -> MisuseResult<()> {
    if holds_bql() {
        return Err(Misuse::new(
            "this thread already holds the BQL (it is not recursive)",
        ));
    }
    arm_exit_hook();
    // SAFETY: the static mutex is initialized (PTHREAD_MUTEX_INITIALIZER)
    // and never moved; this thread does not hold it (checked above).
    let rc = unsafe { libc::pthread_mutex_lock(BQL.0.get()) };
    if rc != 0 {
        return Err(Misuse::new(format!(
            "pthread_mutex_lock failed (error {rc})"
        )));
    }
    HOLDS_BQL.with(|h| h.set(true));
    Ok(())
}

pub(crate) fn bql_unlock() -> MisuseResult<()> {
    if !holds_bql() {
        return Err(Misuse::new("this thread does not hold the BQL"));
    }
    HOLDS_BQL.with(|h| h.set(false));
    // SAFETY: this thread holds the lock (checked above via HOLDS_BQL, which
    // is set only after pthread_mutex_lock returned in this same thread).
    let rc = unsafe { libc::pthread_mutex_unlock(BQL.0.get()) };
    if rc != 0 {
        return Err(Misuse::new(format!(
            "pthread_mutex_unlock failed (error {rc})"
        )));
    }
    Ok(())
}

/// `qemu_cond_wait_bql` (`ms` None) and `qemu_cond_timedwait_bql`:
/// atomically releases the BQL, which the calling thread must hold, sleeps
/// on `cond`, and takes the BQL again before returning. Returns false if
/// `ms` milliseconds passed without a signal, true otherwise (signalled, or
/// woken spuriously). While the thread sleeps, `bql_locked()` is false in
/// it; it is true again on return, whatever the outcome.
pub(crate) fn cond_wait_bql(cond: &QemuCond, ms: Option<c_int>) -> MisuseResult<bool> {
    if !holds_bql() {
        return Err(Misuse::new("this thread does not hold the BQL"));
    }
    HOLDS_BQL.with(|h| h.set(false));
    // SAFETY: this thread holds the BQL (checked above), the static mutex
    // lives and stays in place for the whole process.
    let woken = unsafe { cond.wait_raw(BQL.0.get(), ms) };
    // pthread_cond_*wait returns with the mutex held, whatever it returns.
    HOLDS_BQL.with(|h| h.set(true));
    woken
}
