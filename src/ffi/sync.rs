//! Threads and synchronization for QEMU-style callers (`qemu/thread.h`,
//! `qemu/futex.h`): `QemuMutex`, `QemuRecMutex`, `QemuCond`,
//! `QemuSemaphore`, `QemuEvent` and the futex helpers (`QemuThread` is in
//! `ffi/qemu_thread.rs`).
//!
//! The objects are caller-owned structs, embedded by value; `*_init`
//! accepts uninitialized memory, every other function aborts on an object
//! that is not initialized (or was destroyed). Any thread may use any
//! object, except that a mutex is unlocked by the thread that locked it.
//! None of these functions is tied to an AioContext or the BQL.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::atomic::AtomicU32;

use super::boundary::{caller_struct, check_ptr, ffi_call, ffi_call_leaf};
use crate::fatal::MisuseResult;
use crate::sync as core;

pub use crate::thread_exit::{Notifier, NotifierLink, NotifierList, NotifyFn};

pub use crate::qemu_thread::{QEMU_THREAD_DETACHED, QEMU_THREAD_JOINABLE, QemuThread};
pub use crate::sync::{QemuCond, QemuEvent, QemuMutex, QemuRecMutex, QemuSemaphore};

/// Validates a caller-owned object pointer (every field of these structs
/// is an `UnsafeCell`, see [`caller_struct`]).
pub(super) fn object<'a, T>(p: *const T, what: &'static str) -> MisuseResult<&'a T> {
    caller_struct::<T, T>(p.cast_mut(), what)
}

fn mutex<'a>(m: *mut QemuMutex) -> MisuseResult<&'a QemuMutex> {
    object(m, "QemuMutex")
}

fn rec_mutex<'a>(m: *mut QemuRecMutex) -> MisuseResult<&'a QemuRecMutex> {
    object(m, "QemuRecMutex")
}

fn cond<'a>(c: *mut QemuCond) -> MisuseResult<&'a QemuCond> {
    object(c, "QemuCond")
}

/// Checks a `Notifier *` argument: non-null and aligned.
pub(crate) fn notifier_object(n: *mut Notifier) -> MisuseResult<()> {
    check_ptr(n, "Notifier")
}

/// Validates a `QemuCond *` argument (for `qemu_cond_wait_bql` & co.).
pub(crate) fn cond_object<'a>(c: *mut QemuCond) -> MisuseResult<&'a QemuCond> {
    cond(c)
}

fn sem<'a>(s: *mut QemuSemaphore) -> MisuseResult<&'a QemuSemaphore> {
    object(s, "QemuSemaphore")
}

fn event<'a>(e: *mut QemuEvent) -> MisuseResult<&'a QemuEvent> {
    object(e, "QemuEvent")
}

/// A C string argument that may be NULL.
pub(super) fn optional_str<'a>(s: *const c_char) -> Option<&'a CStr> {
    // SAFETY: a non-null string argument is NUL-terminated (C contract) and
    // outlives the call, which copies what it keeps.
    (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) })
}

/// Validates a futex address: non-null and 4-byte aligned.
fn futex_word<'a>(f: *mut c_void) -> MisuseResult<&'a AtomicU32> {
    let word = f.cast::<u32>();
    check_ptr(word, "futex address")?;
    // SAFETY: a live, aligned 32-bit word (C contract) that is only accessed
    // atomically while futex operations are under way.
    Ok(unsafe { AtomicU32::from_ptr(word) })
}

// ---------------------------------------------------------------------------
// QemuMutex

/// Initializes a (non-recursive) mutex in caller-owned memory, unlocked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_init(mutex: *mut QemuMutex) {
    ffi_call(c"qemu_mutex_init", || self::mutex(mutex)?.init(false))
}

/// Destroys an unlocked mutex; it may be initialized again. Aborts if the
/// mutex is locked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_destroy(mutex: *mut QemuMutex) {
    ffi_call(c"qemu_mutex_destroy", || self::mutex(mutex)?.destroy())
}

/// Locks the mutex, blocking until it is free. Any thread; aborts if the
/// calling thread already holds it (it is not recursive).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_lock(mutex: *mut QemuMutex) {
    ffi_call_leaf(c"qemu_mutex_lock", |_| self::mutex(mutex)?.lock())
}

/// Locks the mutex if it is free: returns 0, or -EBUSY (without blocking)
/// if any thread, the caller included, holds it.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_trylock(mutex: *mut QemuMutex) -> c_int {
    ffi_call(c"qemu_mutex_trylock", || self::mutex(mutex)?.trylock())
}

/// Unlocks the mutex. Only the thread holding it may call this; unlocking
/// a mutex that is not locked, or that another thread holds, aborts.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_unlock(mutex: *mut QemuMutex) {
    ffi_call_leaf(c"qemu_mutex_unlock", |_| self::mutex(mutex)?.unlock())
}

// ---------------------------------------------------------------------------
// QemuRecMutex

/// Initializes a recursive mutex in caller-owned memory, unlocked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_init(mutex: *mut QemuRecMutex) {
    ffi_call(c"qemu_rec_mutex_init", || rec_mutex(mutex)?.init())
}

/// Destroys an unlocked recursive mutex. Aborts if it is locked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_destroy(mutex: *mut QemuRecMutex) {
    ffi_call(c"qemu_rec_mutex_destroy", || rec_mutex(mutex)?.destroy())
}

/// Locks the recursive mutex; the thread holding it may lock it again
/// (each lock needs its own unlock).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_lock(mutex: *mut QemuRecMutex) {
    ffi_call(c"qemu_rec_mutex_lock", || rec_mutex(mutex)?.lock())
}

/// Locks the recursive mutex if it is free or held by the caller: returns
/// 0, or -EBUSY (without blocking) if another thread holds it.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_trylock(mutex: *mut QemuRecMutex) -> c_int {
    ffi_call(c"qemu_rec_mutex_trylock", || rec_mutex(mutex)?.trylock())
}

/// Undoes one lock of the recursive mutex. Aborts unless the calling
/// thread holds it.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_unlock(mutex: *mut QemuRecMutex) {
    ffi_call(c"qemu_rec_mutex_unlock", || rec_mutex(mutex)?.unlock())
}

// ---------------------------------------------------------------------------
// QemuCond

/// Initializes a condition variable in caller-owned memory. Timed waits
/// use `CLOCK_MONOTONIC`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_init(cond: *mut QemuCond) {
    ffi_call(c"qemu_cond_init", || self::cond(cond)?.init())
}

/// Destroys a condition variable nobody waits on.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_destroy(cond: *mut QemuCond) {
    ffi_call(c"qemu_cond_destroy", || self::cond(cond)?.destroy())
}

/// Wakes one thread waiting on `cond`, if any. Any thread, with or without
/// the mutex.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_signal(cond: *mut QemuCond) {
    ffi_call(c"qemu_cond_signal", || self::cond(cond)?.signal())
}

/// Wakes every thread waiting on `cond`. Any thread, with or without the
/// mutex.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_broadcast(cond: *mut QemuCond) {
    ffi_call(c"qemu_cond_broadcast", || self::cond(cond)?.broadcast())
}

/// Atomically unlocks `mutex`, waits for a signal on `cond`, and locks
/// `mutex` again before returning. The calling thread must hold `mutex`
/// (aborts otherwise). Wakeups may be spurious: re-check the condition.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_wait(cond: *mut QemuCond, mutex: *mut QemuMutex) {
    ffi_call(c"qemu_cond_wait", || {
        self::cond(cond)?.wait(self::mutex(mutex)?, None).map(drop)
    })
}

/// Like `qemu_cond_wait`, but waits at most `ms` milliseconds. Returns
/// false if the time ran out, true otherwise; `mutex` is held again either
/// way.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_timedwait(
    cond: *mut QemuCond,
    mutex: *mut QemuMutex,
    ms: c_int,
) -> bool {
    ffi_call(c"qemu_cond_timedwait", || {
        self::cond(cond)?.wait_ms(self::mutex(mutex)?, ms)
    })
}

// ---------------------------------------------------------------------------
// QEMU's `*_impl` entry points and the lock-profiler hook pointers
//
// QEMU's `qemu_mutex_lock()` & co. macros call through the `*_func`
// pointers with the caller's `__FILE__`/`__LINE__`; the pointers start out
// at the `*_impl` functions, which behave like the plain functions above
// (the location is not used). A program may store its own function in a
// pointer (QEMU's lock profiler does) and call the `*_impl` from it.

/// `void (*)(QemuMutex *, const char *file, int line)`.
pub type QemuMutexLockFunc = Option<extern "C" fn(*mut QemuMutex, *const c_char, c_int)>;
/// `int (*)(QemuMutex *, const char *file, int line)`.
pub type QemuMutexTrylockFunc =
    Option<extern "C" fn(*mut QemuMutex, *const c_char, c_int) -> c_int>;
/// `void (*)(QemuRecMutex *, const char *file, int line)`.
pub type QemuRecMutexLockFunc = Option<extern "C" fn(*mut QemuRecMutex, *const c_char, c_int)>;
/// `int (*)(QemuRecMutex *, const char *file, int line)`.
pub type QemuRecMutexTrylockFunc =
    Option<extern "C" fn(*mut QemuRecMutex, *const c_char, c_int) -> c_int>;
/// `void (*)(QemuCond *, QemuMutex *, const char *file, int line)`.
pub type QemuCondWaitFunc =
    Option<extern "C" fn(*mut QemuCond, *mut QemuMutex, *const c_char, c_int)>;
/// `bool (*)(QemuCond *, QemuMutex *, int ms, const char *file, int line)`.
pub type QemuCondTimedWaitFunc =
    Option<extern "C" fn(*mut QemuCond, *mut QemuMutex, c_int, *const c_char, c_int) -> bool>;

/// What `qemu_mutex_lock()` calls; starts at `qemu_mutex_lock_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_mutex_lock_func: QemuMutexLockFunc = Some(qemu_mutex_lock_impl);
/// What `qemu_mutex_trylock()` calls; starts at `qemu_mutex_trylock_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_mutex_trylock_func: QemuMutexTrylockFunc = Some(qemu_mutex_trylock_impl);
/// What `qemu_rec_mutex_lock()` calls; starts at `qemu_rec_mutex_lock_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_rec_mutex_lock_func: QemuRecMutexLockFunc = Some(qemu_rec_mutex_lock_impl);
/// What `qemu_rec_mutex_trylock()` calls; starts at `qemu_rec_mutex_trylock_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_rec_mutex_trylock_func: QemuRecMutexTrylockFunc =
    Some(qemu_rec_mutex_trylock_impl);
/// What `qemu_cond_wait()` calls; starts at `qemu_cond_wait_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_cond_wait_func: QemuCondWaitFunc = Some(qemu_cond_wait_impl);
/// What `qemu_cond_timedwait()` calls; starts at `qemu_cond_timedwait_impl`.
#[unsafe(no_mangle)]
pub static mut qemu_cond_timedwait_func: QemuCondTimedWaitFunc = Some(qemu_cond_timedwait_impl);

/// `qemu_mutex_lock` with the caller's location (unused).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_lock_impl(mutex: *mut QemuMutex, file: *const c_char, line: c_int) {
    let _ = (file, line);
    ffi_call_leaf(c"qemu_mutex_lock_impl", |_| self::mutex(mutex)?.lock())
}

/// `qemu_mutex_trylock` with the caller's location (unused): 0 or -EBUSY.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_trylock_impl(
    mutex: *mut QemuMutex,
    file: *const c_char,
    line: c_int,
) -> c_int {
    let _ = (file, line);
    ffi_call(c"qemu_mutex_trylock_impl", || self::mutex(mutex)?.trylock())
}

/// `qemu_mutex_unlock` with the caller's location (unused).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_mutex_unlock_impl(mutex: *mut QemuMutex, file: *const c_char, line: c_int) {
    let _ = (file, line);
    ffi_call_leaf(c"qemu_mutex_unlock_impl", |_| self::mutex(mutex)?.unlock())
}

/// `qemu_rec_mutex_lock` with the caller's location (unused).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_lock_impl(
    mutex: *mut QemuRecMutex,
    file: *const c_char,
    line: c_int,
) {
    let _ = (file, line);
    ffi_call(c"qemu_rec_mutex_lock_impl", || rec_mutex(mutex)?.lock())
}

/// `qemu_rec_mutex_trylock` with the caller's location (unused): 0 or
/// -EBUSY.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_trylock_impl(
    mutex: *mut QemuRecMutex,
    file: *const c_char,
    line: c_int,
) -> c_int {
    let _ = (file, line);
    ffi_call(c"qemu_rec_mutex_trylock_impl", || {
        rec_mutex(mutex)?.trylock()
    })
}

/// `qemu_rec_mutex_unlock` with the caller's location (unused).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_rec_mutex_unlock_impl(
    mutex: *mut QemuRecMutex,
    file: *const c_char,
    line: c_int,
) {
    let _ = (file, line);
    ffi_call(c"qemu_rec_mutex_unlock_impl", || rec_mutex(mutex)?.unlock())
}

/// `qemu_cond_wait` with the caller's location (unused).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_wait_impl(
    cond: *mut QemuCond,
    mutex: *mut QemuMutex,
    file: *const c_char,
    line: c_int,
) {
    let _ = (file, line);
    ffi_call(c"qemu_cond_wait_impl", || {
        self::cond(cond)?.wait(self::mutex(mutex)?, None).map(drop)
    })
}

/// `qemu_cond_timedwait` with the caller's location (unused): false if the
/// `ms` milliseconds ran out.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_cond_timedwait_impl(
    cond: *mut QemuCond,
    mutex: *mut QemuMutex,
    ms: c_int,
    file: *const c_char,
    line: c_int,
) -> bool {
    let _ = (file, line);
    ffi_call(c"qemu_cond_timedwait_impl", || {
        self::cond(cond)?.wait_ms(self::mutex(mutex)?, ms)
    })
}

// ---------------------------------------------------------------------------
// QemuSemaphore

/// Initializes a semaphore in caller-owned memory with `init` (>= 0)
/// posts.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_sem_init(sem: *mut QemuSemaphore, init: c_int) {
    ffi_call(c"qemu_sem_init", || self::sem(sem)?.init(init))
}

/// Destroys a semaphore nobody waits on.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_sem_destroy(sem: *mut QemuSemaphore) {
    ffi_call(c"qemu_sem_destroy", || self::sem(sem)?.destroy())
}

/// Adds one post and wakes one waiter. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_sem_post(sem: *mut QemuSemaphore) {
    ffi_call(c"qemu_sem_post", || self::sem(sem)?.post())
}

/// Takes one post, waiting as long as it takes. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_sem_wait(sem: *mut QemuSemaphore) {
    ffi_call(c"qemu_sem_wait", || self::sem(sem)?.wait(None).map(drop))
}

/// Takes one post, waiting at most `ms` milliseconds (0: do not wait).
/// Returns 0 if a post was taken, -1 on timeout.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_sem_timedwait(sem: *mut QemuSemaphore, ms: c_int) -> c_int {
    ffi_call(c"qemu_sem_timedwait", || {
        Ok(if self::sem(sem)?.wait(Some(ms))? {
            0
        } else {
            -1
        })
    })
}

// ---------------------------------------------------------------------------
// QemuEvent

/// Initializes an event in caller-owned memory, set if `init` is true.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_event_init(ev: *mut QemuEvent, init: bool) {
    ffi_call(c"qemu_event_init", || {
        event(ev)?.init(init);
        Ok(())
    })
}

/// Destroys an event nobody waits on.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_event_destroy(ev: *mut QemuEvent) {
    ffi_call(c"qemu_event_destroy", || event(ev)?.destroy())
}

/// Sets the event and wakes every waiter. Any thread. Writes made before
/// it are visible to a thread whose `qemu_event_wait` returns because of it.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_event_set(ev: *mut QemuEvent) {
    ffi_call(c"qemu_event_set", || event(ev)?.set())
}

/// Resets the event if it is set. Any thread. The usual pattern is reset,
/// check the condition, then wait.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_event_reset(ev: *mut QemuEvent) {
    ffi_call(c"qemu_event_reset", || event(ev)?.reset())
}

/// Returns once the event is set (at once if it already is). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_event_wait(ev: *mut QemuEvent) {
    ffi_call(c"qemu_event_wait", || event(ev)?.wait())
}

// ---------------------------------------------------------------------------
// Futexes

/// Sleeps while the 32-bit word at `f` equals `val`: returns at once if it
/// does not, else when `qemu_futex_wake_*` is called on `f` (or
/// spuriously: re-check). Process-private futex. Aborts if `f` is NULL or
/// not 4-byte aligned.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_futex_wait(f: *mut c_void, val: c_uint) {
    ffi_call_leaf(c"qemu_futex_wait", |_| {
        core::futex_wait(futex_word(f)?, val)
    })
}

/// Wakes one thread sleeping in `qemu_futex_wait` on `f`, if any.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_futex_wake_single(f: *mut c_void) {
    ffi_call_leaf(c"qemu_futex_wake_single", |_| {
        core::futex_wake(futex_word(f)?, 1)
    })
}

/// Wakes every thread sleeping in `qemu_futex_wait` on `f`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_futex_wake_all(f: *mut c_void) {
    ffi_call_leaf(c"qemu_futex_wake_all", |_| {
        core::futex_wake(futex_word(f)?, c_int::MAX)
    })
}
