//! Coroutines (`qemu/coroutine.h`, `qemu/coroutine-core.h`, the coroutine
//! part of `qemu/aio.h`): create/enter/yield, scheduling across contexts,
//! `CoMutex`, `CoQueue`, `CoRwlock`, co-sleep.
//!
//! Threading: a coroutine runs in one thread at a time and may move between
//! threads only through the scheduling functions (`aio_co_schedule`,
//! `aio_co_wake`, `aio_co_enter`, `aio_co_reschedule_self`), which may be
//! called from any thread. Functions documented "coroutine only" abort when
//! called outside a coroutine. Misuse (entering a running, terminated or
//! scheduled coroutine, scheduling one twice, yielding outside a coroutine)
//! aborts with one line naming the coroutine's entry point (link with
//! `-rdynamic` to get names of executable functions).

use std::ffi::{c_int, c_uint, c_void};
use std::mem::{align_of, offset_of, size_of};

use super::boundary::{
    caller_struct, context, context_handle, ffi_call, ffi_call_leaf, ffi_call_yielding,
    ffi_call_yielding_leaf, required_c_fn,
};
use super::timer::QEMUClockType;
use super::types::AioContext;
use crate::context::Context;
use crate::coroutine::{
    self, CoBox, CoMutexCore, CoQueueCore, CoRwlockCore, Lockable, QueueWaitFlags, SleepCore,
};
use crate::fatal::MisuseResult;
use crate::thread;
use crate::timer::ClockType;

/// A coroutine (opaque here; `qemu/coroutine_int.h` of the compat headers
/// shows QEMU's fields, `AIOCTX_COROUTINE_SIZE` bytes). Created with
/// `qemu_coroutine_create`, returned to a pool when its entry returns: do
/// not use the pointer after that, until `qemu_coroutine_create` returns it
/// again.
pub struct Coroutine {
    _opaque: [u8; 0],
}

/// Marker for `typedef void CoroutineEntry(void *opaque);` (cbindgen.toml).
pub struct CoroutineEntry {
    _opaque: [u8; 0],
}

/// `struct QemuLockable` (complete in `qemu/lockable.h`): `{ void *object;
/// void (*lock)(void *); void (*unlock)(void *); }`.
pub struct QemuLockable {
    _opaque: [u8; 0],
}

/// `sizeof(struct Coroutine)` as laid out in `qemu/coroutine_int.h`.
pub const AIOCTX_COROUTINE_SIZE: usize = 88;
const _: () = assert!(AIOCTX_COROUTINE_SIZE == coroutine::VISIBLE_SIZE);

/// A mutex for coroutines (complete so callers can embed it; all fields
/// belong to aioctx). All-zero, or `qemu_co_mutex_init`, is unlocked.
/// Lock and unlock from coroutines; the unlock hands the mutex to the
/// oldest waiter, which resumes in its own context (possibly another
/// thread). Not recursive.
#[repr(C)]
pub struct CoMutex {
    /// Holder plus waiters (QEMU's offset 0).
    pub locked: c_uint,
    /// Spinlock over the waiter list.
    pub wait_lock: c_uint,
    /// The holder's context (QEMU's offset 8).
    pub ctx: *mut AioContext,
    /// Oldest waiter.
    pub waiters_head: *mut Coroutine,
    /// Newest waiter.
    pub waiters_tail: *mut Coroutine,
    /// Ownership left for a locker not yet queued.
    pub handoff: c_uint,
    /// Unused (QEMU's `sequence`).
    pub reserved: c_uint,
    /// The coroutine holding the mutex (QEMU's offset 40, read by QEMU's
    /// `qemu_co_mutex_assert_locked` macro).
    pub holder: *mut Coroutine,
}

/// A FIFO of waiting coroutines (QEMU's `CoQueue`). All-zero, or
/// `qemu_co_queue_init`, is empty. Not thread-safe by itself: protect it
/// with the lock passed to `qemu_co_queue_wait`.
#[repr(C)]
pub struct CoQueue {
    /// Oldest waiter.
    pub first: *mut Coroutine,
    /// Newest waiter.
    pub last: *mut Coroutine,
}

/// A readers-writer lock for coroutines (QEMU's algorithm, FIFO fair: a
/// waiting writer blocks later readers). Initialize with
/// `qemu_co_rwlock_init`.
#[repr(C)]
pub struct CoRwlock {
    /// Protects the fields below.
    pub mutex: CoMutex,
    /// Readers holding it, or -1 for a writer.
    pub owners: c_int,
    /// Waiting tickets (in the waiters' frames).
    pub tickets_first: *mut c_void,
    /// Last waiting ticket.
    pub tickets_last: *mut c_void,
}

/// A wakeable sleep (`qemu_co_sleep_ns_wakeable`): `to_wake` is the
/// sleeping coroutine, NULL when none. Zero-initialize it.
#[repr(C)]
pub struct QemuCoSleep {
    /// The sleeping coroutine, or NULL.
    pub to_wake: *mut Coroutine,
}

const _: () = {
    assert!(size_of::<CoMutex>() == size_of::<CoMutexCore>());
    assert!(offset_of!(CoMutex, locked) == 0 && offset_of!(CoMutex, ctx) == 8);
    assert!(offset_of!(CoMutex, handoff) == 32 && offset_of!(CoMutex, holder) == 40);
    assert!(align_of::<CoMutex>() == align_of::<CoMutexCore>());
    assert!(size_of::<CoQueue>() == size_of::<CoQueueCore>());
    assert!(align_of::<CoQueue>() == align_of::<CoQueueCore>());
    assert!(size_of::<CoRwlock>() == size_of::<CoRwlockCore>());
    assert!(align_of::<CoRwlock>() == align_of::<CoRwlockCore>());
    assert!(offset_of!(CoRwlock, mutex) == 0);
    assert!(size_of::<QemuCoSleep>() == size_of::<SleepCore>());
};

// ---- conversions ----

fn co<'a>(co: *mut Coroutine) -> MisuseResult<&'a CoBox> {
    // SAFETY: Coroutine handles are `CoBox` pointers (or NULL, rejected).
    unsafe { CoBox::from_handle(co.cast()) }
}

fn co_handle(co: *mut CoBox) -> *mut Coroutine {
    CoBox::handle(co).cast()
}

fn mutex<'a>(m: *mut CoMutex) -> MisuseResult<&'a CoMutexCore> {
    caller_struct(m, "CoMutex")
}

fn queue<'a>(q: *mut CoQueue) -> MisuseResult<&'a CoQueueCore> {
    caller_struct(q, "CoQueue")
}

fn rwlock<'a>(l: *mut CoRwlock) -> MisuseResult<&'a CoRwlockCore> {
    caller_struct(l, "CoRwlock")
}

fn sleep<'a>(w: *mut QemuCoSleep) -> MisuseResult<&'a SleepCore> {
    caller_struct(w, "QemuCoSleep")
}

fn lockable<'a>(l: *mut QemuLockable) -> MisuseResult<Option<&'a Lockable>> {
    // SAFETY: a non-NULL `QemuLockable *` is the struct of qemu/lockable.h.
    unsafe { Lockable::from_ptr(l.cast()) }
}

// ---- coroutines ----

/// Creates a coroutine that runs `entry(opaque)` when first entered. Takes
/// a terminated coroutine from a pool when there is one (no allocation).
/// Any thread. Aborts if `entry` is NULL.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_create(
    entry: *mut CoroutineEntry,
    opaque: *mut c_void,
) -> *mut Coroutine {
    ffi_call(c"qemu_coroutine_create", || {
        Ok(co_handle(coroutine::create(required_c_fn(entry)?, opaque)))
    })
}

/// Runs `co` in the current context until it yields or terminates (then
/// the coroutines it woke with `aio_co_enter`). Aborts if `co` is running,
/// terminated or scheduled.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_enter(co: *mut Coroutine) {
    // A leaf call: its name is never recorded. `fatal::die_here` must name
    // the API function the thread is inside, and nothing here reports
    // with it: `coroutine::enter` returns its misuse (reported below with
    // this function's name) and calls no library callback. The coroutines
    // it enters run under their own names (the resumer swaps them in and
    // out, `coroutine::enter`), so their API calls name themselves and
    // nothing they do is reported under the caller's name; when the last
    // one switches back, the resumer puts back the name it found, which is
    // the caller's: the same one `ffi_call` would restore on return.
    ffi_call_leaf(c"qemu_coroutine_enter", |_| {
        let co = self::co(co)?;
        coroutine::enter(thread::current_context(), co)
    })
}

/// `qemu_coroutine_enter(co)` unless `co` is already entered (running or
/// waiting for a coroutine it entered).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_enter_if_inactive(co: *mut Coroutine) {
    // A leaf call, as `qemu_coroutine_enter`.
    ffi_call_leaf(c"qemu_coroutine_enter_if_inactive", |_| {
        let co = self::co(co)?;
        if co.entered() {
            return Ok(());
        }
        coroutine::enter(thread::current_context(), co)
    })
}

/// Like `qemu_coroutine_enter`, recording `ctx` as the coroutine's context
/// (call in ctx's home thread; NULL records "no context", as in QEMU).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_aio_coroutine_enter(ctx: *mut AioContext, co: *mut Coroutine) {
    // A leaf call, as `qemu_coroutine_enter` (`opt_context` returns its
    // misuse too).
    ffi_call_leaf(c"qemu_aio_coroutine_enter", |_| {
        coroutine::enter(opt_context(ctx)?, self::co(co)?)
    })
}

/// Coroutine only: switches back to whoever entered the running coroutine;
/// returns when it is entered again (maybe in another thread).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_yield() {
    // Records no name: the only report is the misuse `yield_now` returns.
    ffi_call_yielding_leaf(c"qemu_coroutine_yield", coroutine::yield_now)
}

/// The running coroutine; outside a coroutine, the thread's "leader"
/// object (never NULL, not enterable).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_self() -> *mut Coroutine {
    ffi_call(c"qemu_coroutine_self", || {
        Ok(co_handle(coroutine::self_or_leader()))
    })
}

/// Whether the calling code runs in a coroutine.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_in_coroutine() -> bool {
    ffi_call_leaf(
        c"qemu_in_coroutine",
        |_| Ok(!coroutine::current().is_null()),
    )
}

/// Whether `co` is entered: running, or waiting for a coroutine it entered
/// (false once it yielded, before it first runs, and after it terminated).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_entered(co: *mut Coroutine) -> bool {
    ffi_call(c"qemu_coroutine_entered", || Ok(self::co(co)?.entered()))
}

/// The context `co` last ran in (NULL before it first ran).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_get_aio_context(co: *mut Coroutine) -> *mut AioContext {
    ffi_call(c"qemu_coroutine_get_aio_context", || {
        Ok(context_handle(self::co(co)?.context()))
    })
}

/// Lets the shared pool of terminated coroutines keep `additional` more.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_inc_pool_size(additional_pool_size: c_uint) {
    ffi_call(c"qemu_coroutine_inc_pool_size", || {
        coroutine::inc_pool_size(additional_pool_size as usize);
        Ok(())
    })
}

/// Undoes `qemu_coroutine_inc_pool_size` (pooled excess is unmapped).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_coroutine_dec_pool_size(removing_pool_size: c_uint) {
    ffi_call(c"qemu_coroutine_dec_pool_size", || {
        coroutine::dec_pool_size(removing_pool_size as usize);
        Ok(())
    })
}

// ---- scheduling ----

/// Any thread: enters `co` from a bottom half of `ctx`, in ctx's home
/// thread. `co` may still be running in another thread, about to yield: it
/// is entered only after it yielded. Scheduling it again before it ran
/// aborts, naming the first scheduler.
#[unsafe(no_mangle)]
pub extern "C" fn aio_co_schedule(ctx: *mut AioContext, co: *mut Coroutine) {
    ffi_call(c"aio_co_schedule", || {
        coroutine::aio_co_schedule(context(ctx)?, self::co(co)?)
    })
}

/// `aio_co_enter` in the context `co` last ran in (NULL if it ran in a
/// thread without a current context: then it is entered directly from such
/// a thread, and waking it from a thread that has a context aborts).
#[unsafe(no_mangle)]
pub extern "C" fn aio_co_wake(co: *mut Coroutine) {
    ffi_call(c"aio_co_wake", || coroutine::aio_co_wake(self::co(co)?))
}

/// Enters `co` in `ctx`: if `ctx` is the calling thread's current context,
/// immediately when called outside a coroutine, or once the running
/// coroutine yields or terminates when called from one (no stack growth);
/// otherwise `aio_co_schedule`. `ctx` may be NULL, as in QEMU: it then
/// matches a thread without a current context (a program that uses
/// coroutines without any event loop); NULL from a thread that has a
/// current context aborts (nowhere to schedule `co`).
#[unsafe(no_mangle)]
pub extern "C" fn aio_co_enter(ctx: *mut AioContext, co: *mut Coroutine) {
    ffi_call(c"aio_co_enter", || {
        coroutine::aio_co_enter(opt_context(ctx)?, self::co(co)?)
    })
}

/// NULL, or a validated context handle.
fn opt_context(ctx: *mut AioContext) -> MisuseResult<*const Context> {
    if ctx.is_null() {
        Ok(std::ptr::null())
    } else {
        Ok(context(ctx)?.as_ptr())
    }
}

/// Coroutine only: moves the running coroutine to `new_ctx` (returns
/// running in new_ctx's home thread). No-op if already there.
#[unsafe(no_mangle)]
pub extern "C" fn aio_co_reschedule_self(new_ctx: *mut AioContext) {
    ffi_call_yielding(c"aio_co_reschedule_self", || {
        coroutine::aio_co_reschedule_self(context(new_ctx)?)
    })
}

/// Coroutine only: sleeps `ns` nanoseconds of `type`'s clock (a timer on
/// the thread's current context).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_sleep_ns(r#type: QEMUClockType, ns: i64) {
    ffi_call_yielding(c"qemu_co_sleep_ns", || {
        let w = SleepCore::new();
        coroutine::co_sleep_ns_wakeable(&w, ClockType::from_raw(r#type.0)?, ns)
    })
}

/// Coroutine only: like `qemu_co_sleep_ns`, and `qemu_co_sleep_wake(w)`
/// ends the sleep early. `w` must be zeroed and stay valid meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_sleep_ns_wakeable(w: *mut QemuCoSleep, r#type: QEMUClockType, ns: i64) {
    ffi_call_yielding(c"qemu_co_sleep_ns_wakeable", || {
        coroutine::co_sleep_ns_wakeable(sleep(w)?, ClockType::from_raw(r#type.0)?, ns)
    })
}

/// Coroutine only: sleeps until `qemu_co_sleep_wake(w)` (no time limit).
/// `w` must be zeroed and stay valid meanwhile.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_sleep(w: *mut QemuCoSleep) {
    ffi_call_yielding(c"qemu_co_sleep", || coroutine::co_sleep(sleep(w)?))
}

/// Wakes the coroutine sleeping on `w`, if any (any thread).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_sleep_wake(w: *mut QemuCoSleep) {
    ffi_call(c"qemu_co_sleep_wake", || {
        coroutine::co_sleep_wake(sleep(w)?)
    })
}

// ---- CoMutex ----

/// Initializes `mutex` unlocked (same as zero-filling it).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_mutex_init(mutex: *mut CoMutex) {
    ffi_call(c"qemu_co_mutex_init", || {
        self::mutex(mutex)?.init();
        Ok(())
    })
}

/// Coroutine only: takes `mutex`, yielding while another coroutine holds
/// it. Waiters get it in FIFO order.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_mutex_lock(mutex: *mut CoMutex) {
    // Records no name: the lock reports only the misuse it returns (the
    // hand-off protocol and the yield of a queued locker report nothing).
    ffi_call_yielding_leaf(c"qemu_co_mutex_lock", || self::mutex(mutex)?.lock())
}

/// Coroutine only (the holder): releases `mutex`, handing it to the oldest
/// waiter, which is woken in its own context.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_mutex_unlock(mutex: *mut CoMutex) {
    // A leaf call: the name is recorded only to wake the waiter the mutex
    // is handed to (`aio_co_wake` may schedule it, and the context's
    // notification reports a failed eventfd write with `die_here`).
    ffi_call_leaf(c"qemu_co_mutex_unlock", |api| {
        self::mutex(mutex)?.unlock_as(api)
    })
}

/// Aborts unless the running coroutine holds `mutex`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_mutex_assert_locked(mutex: *mut CoMutex) {
    ffi_call(c"qemu_co_mutex_assert_locked", || {
        self::mutex(mutex)?.assert_locked()
    })
}

// ---- CoQueue ----

/// Initializes `queue` empty.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_queue_init(queue: *mut CoQueue) {
    ffi_call(c"qemu_co_queue_init", || {
        self::queue(queue)?.init();
        Ok(())
    })
}

/// Coroutine only: queues the running coroutine (at the head with
/// `CO_QUEUE_WAIT_FRONT` = 1 in `flags`), releases `lock` (may be NULL), yields until
/// woken, then takes `lock` again. Behind the `qemu_co_queue_wait(queue,
/// lock)` macro of the compat headers.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_queue_wait_impl(
    queue: *mut CoQueue,
    lock: *mut QemuLockable,
    flags: c_uint,
) {
    ffi_call_yielding(c"qemu_co_queue_wait", || {
        self::queue(queue)?.wait(lockable(lock)?, QueueWaitFlags(flags))
    })
}

/// Wakes the oldest waiter of `queue` (`aio_co_wake`); false if empty.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_queue_next(queue: *mut CoQueue) -> bool {
    ffi_call(c"qemu_co_queue_next", || self::queue(queue)?.next())
}

/// Wakes every waiter of `queue`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_queue_restart_all(queue: *mut CoQueue) {
    ffi_call(c"qemu_co_queue_restart_all", || {
        self::queue(queue)?.restart_all()
    })
}

/// Wakes the oldest waiter with `lock` (may be NULL) released meanwhile;
/// false if empty. Behind the `qemu_co_enter_next(queue, lock)` macro.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_enter_next_impl(queue: *mut CoQueue, lock: *mut QemuLockable) -> bool {
    ffi_call_yielding(c"qemu_co_enter_next", || {
        self::queue(queue)?.enter_next(lockable(lock)?)
    })
}

/// Wakes every waiter, `lock` released meanwhile. Behind the
/// `qemu_co_enter_all(queue, lock)` macro.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_enter_all_impl(queue: *mut CoQueue, lock: *mut QemuLockable) {
    ffi_call_yielding(c"qemu_co_enter_all", || {
        self::queue(queue)?.enter_all(lockable(lock)?)
    })
}

/// Whether `queue` has no waiter.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_queue_empty(queue: *mut CoQueue) -> bool {
    ffi_call(
        c"qemu_co_queue_empty",
        || Ok(self::queue(queue)?.is_empty()),
    )
}

// ---- CoRwlock ----

/// Initializes `lock` unlocked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_init(lock: *mut CoRwlock) {
    ffi_call(c"qemu_co_rwlock_init", || {
        rwlock(lock)?.init();
        Ok(())
    })
}

/// Coroutine only: takes `lock` for reading; waits while a writer holds it
/// or is waiting.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_rdlock(lock: *mut CoRwlock) {
    ffi_call_yielding(c"qemu_co_rwlock_rdlock", || rwlock(lock)?.rdlock())
}

/// Coroutine only: takes `lock` for writing.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_wrlock(lock: *mut CoRwlock) {
    ffi_call_yielding(c"qemu_co_rwlock_wrlock", || rwlock(lock)?.wrlock())
}

/// Coroutine only, holding a read lock: turns it into a write lock,
/// waiting for the other readers (and writers already waiting).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_upgrade(lock: *mut CoRwlock) {
    ffi_call_yielding(c"qemu_co_rwlock_upgrade", || rwlock(lock)?.upgrade())
}

/// Coroutine only, holding the write lock: turns it into a read lock and
/// lets waiting readers in.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_downgrade(lock: *mut CoRwlock) {
    ffi_call(c"qemu_co_rwlock_downgrade", || rwlock(lock)?.downgrade())
}

/// Coroutine only: releases a read or write lock.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_co_rwlock_unlock(lock: *mut CoRwlock) {
    ffi_call(c"qemu_co_rwlock_unlock", || rwlock(lock)?.unlock())
}

/// The API names the leaf wrappers of the enter/yield/CoMutex path leave
/// on each side of a coroutine switch (`fatal.rs` holds the name; the
/// wrappers are here).
#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::sync::Mutex;

    use crate::fatal::{self, ApiCall, current_api};

    static SEEN_LEAF: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    unsafe extern "C" fn leaf_co_body(m: *mut c_void) {
        use super::{CoMutex, qemu_co_mutex_lock, qemu_co_mutex_unlock, qemu_coroutine_yield};
        let m = m.cast::<CoMutex>();
        let seen = |n| SEEN_LEAF.lock().unwrap().push(n);
        // A new coroutine is inside no API call, whoever entered it.
        seen(current_api().as_str());
        qemu_co_mutex_lock(m);
        seen(current_api().as_str());
        qemu_coroutine_yield();
        seen(current_api().as_str());
        // A yielding call that records its name leaves it, across a
        // yield that records none.
        fatal::enter_yielding_api(c"qemu_co_sleep_ns");
        qemu_coroutine_yield();
        seen(current_api().as_str());
        qemu_co_mutex_unlock(m);
        seen(current_api().as_str());
    }

    /// The leaf calls of the enter/yield/CoMutex path record no name: each
    /// side of a switch keeps the name it had (in debug builds, the
    /// placeholder of the leaf calls is put back to what it replaced).
    #[test]
    fn leaf_coroutine_calls_keep_each_sides_api_name() {
        use super::{
            CoMutex, CoroutineEntry, qemu_co_mutex_init, qemu_coroutine_create,
            qemu_coroutine_enter,
        };
        // SAFETY: all-zero is a valid (unlocked) CoMutex.
        let mut m: CoMutex = unsafe { std::mem::zeroed() };
        qemu_co_mutex_init(&raw mut m);
        let entry = leaf_co_body as unsafe extern "C" fn(*mut c_void);
        let co = qemu_coroutine_create(entry as *mut CoroutineEntry, (&raw mut m).cast::<c_void>());
        {
            let _call = ApiCall::enter(c"aio_poll");
            qemu_coroutine_enter(co);
            assert_eq!(current_api().as_str(), "aio_poll");
        }
        qemu_coroutine_enter(co);
        assert_eq!(current_api().as_str(), "");
        {
            let _call = ApiCall::enter(c"aio_co_wake");
            qemu_coroutine_enter(co);
            assert_eq!(current_api().as_str(), "aio_co_wake");
        }
        assert_eq!(
            *SEEN_LEAF.lock().unwrap(),
            ["", "", "", "qemu_co_sleep_ns", "qemu_co_sleep_ns"]
        );
    }
}
