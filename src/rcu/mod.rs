//! RCU (`qemu/rcu.h`): grace periods and deferred callbacks, on QEMU's
//! protocol so that QEMU's inline read side (compiled into callers from the
//! compat header) interoperates with the writers here. (Ported from the
//! former `src/c/rcu.c`; same symbols, same behaviour.)
//!
//! QEMU API: `rcu_read_lock`/`rcu_read_unlock` (inline in the header, using
//! `get_ptr_rcu_reader`, `rcu_gp_ctr`, `rcu_gp_event`), `rcu_read_locked`,
//! `synchronize_rcu`, `call_rcu1` (behind the `call_rcu`/`g_free_rcu`
//! macros), `drain_call_rcu`, `rcu_register_thread`,
//! `rcu_unregister_thread`, `rcu_enable_atfork`/`rcu_disable_atfork`
//! (no-ops).
//!
//! The algorithm is QEMU's (liburcu's "memory barrier" flavour):
//!
//! - A global grace-period counter [`rcu_gp_ctr`], always odd, advanced by
//!   2 at each [`synchronize_rcu`].
//! - Each registered reader thread has a [`RcuReaderData`] record: `ctr` is
//!   0 outside a critical section, else the value of `rcu_gp_ctr` when its
//!   outermost `rcu_read_lock()` ran; `depth` is the (thread-private)
//!   nesting depth.
//! - `rcu_read_lock()`: on the outermost call, store `ctr = rcu_gp_ctr`,
//!   then a full fence. `rcu_read_unlock()`: store-release `ctr = 0`, full
//!   fence; if a writer waits for this reader (`waiting`), clear it and set
//!   [`rcu_gp_event`].
//! - `synchronize_rcu()`: advance `rcu_gp_ctr` (full fences around), then
//!   wait until no registered reader has `ctr != 0 && ctr != rcu_gp_ctr`:
//!   exactly the readers that entered before the grace period began and are
//!   still inside.
//!
//! Waking: the writer resets `rcu_gp_event`, sets every reader's `waiting`,
//! full fence, re-reads each `ctr` and sleeps on the event; the reader
//! stores `ctr = 0`, full fence, reads `waiting` and, if set, sets the
//! event. One of the two always sees the other's store, so no wakeup is
//! lost.
//!
//! Threading rules:
//!
//! - The reader record is a thread-local without a destructor (so it stays
//!   usable during thread exit), registered in a global list on first use
//!   (or by [`register_thread`]) and removed by [`unregister_thread`] or,
//!   at thread exit, by a pthread key destructor (which also wakes a writer
//!   if the thread exits inside a section). Other threads touch only its
//!   atomics `ctr` and `waiting`, and only under the registry lock; `depth`
//!   is owner-only.
//! - Writers are serialized (one grace period at a time); a writer drops
//!   the registry lock while it sleeps, so threads may (un)register during
//!   a grace period.
//! - `synchronize_rcu` inside a read-side section, a second
//!   `rcu_register_thread`, or `rcu_unregister_thread` inside a section or
//!   unregistered are misuse (one-line report, abort).
//! - Readers never block; every full barrier of the protocol is a SeqCst
//!   fence (QEMU's `smp_mb()`).
//!
//! [`call_rcu`] queues callbacks for a helper thread (started on first use)
//! that waits one grace period per batch and runs the batch with the BQL
//! held, as QEMU does. [`drain_call_rcu`] queues a marker and waits for it.
//! Both live in `call.rs`; this file has the reader records and
//! `synchronize_rcu`.
//!
//! The exported functions are in `ffi::rcu`; the data objects QEMU's inline
//! code names (`rcu_gp_ctr`, `rcu_gp_event`) are defined here, since the
//! writer side reads them.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::fatal::{self, Misuse, MisuseResult};
use crate::sync::QemuEvent;

/// `ctr` of a reader inside a section in the first period.
pub(crate) const RCU_GP_LOCKED: u64 = 1;
/// The counter's step per grace period.
const RCU_GP_CTR: u64 = 2;

/// `rcu_gp_event`'s type: a [`QemuEvent`] that may live in a static.
#[repr(transparent)]
pub struct GpEvent(pub QemuEvent);

// SAFETY: QemuEvent's fields are only accessed atomically (value) or
// written at init/destroy (initialized), which nobody calls on this one;
// qemu_event_* are thread-safe.
unsafe impl Sync for GpEvent {}

/// The grace-period counter (`unsigned long`, exported for QEMU's inline
/// `rcu_read_lock()`): starts at 1, +2 per grace period.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static rcu_gp_ctr: AtomicU64 = AtomicU64::new(RCU_GP_LOCKED);

/// Set by a reader that leaves a section a writer waits for (exported for
/// QEMU's inline `rcu_read_unlock()`). Statically initialized set, as QEMU
/// initializes it, so it is usable before any constructor runs.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static rcu_gp_event: GpEvent = GpEvent(QemuEvent {
    value: UnsafeCell::new(0), // set (QEMU's EV_SET)
    initialized: UnsafeCell::new(true),
});

/// The per-thread reader record, at QEMU 10.2's layout (40 bytes): QEMU's
/// inline `rcu_read_lock()`/`rcu_read_unlock()` touch `ctr`, `waiting` and
/// `depth` directly.
#[repr(C)]
pub struct RcuReaderData {
    /// 0, or the value of `rcu_gp_ctr` when the outermost lock ran.
    pub ctr: AtomicU64,
    /// Set by a writer waiting for this reader; cleared by the reader.
    pub waiting: AtomicBool,
    /// Nesting depth; only the owner thread uses it (non-atomically).
    pub depth: UnsafeCell<c_uint>,
    /// QEMU's registry link (`QLIST_ENTRY`); unused, kept for the layout.
    pub node: UnsafeCell<[*mut c_void; 2]>,
    /// QEMU's `NotifierList force_rcu`; unused, kept for the layout.
    pub force_rcu: UnsafeCell<*mut c_void>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(RcuReaderData, ctr) == 0);
    assert!(offset_of!(RcuReaderData, waiting) == 8);
    assert!(offset_of!(RcuReaderData, depth) == 12);
    assert!(offset_of!(RcuReaderData, node) == 16);
    assert!(offset_of!(RcuReaderData, force_rcu) == 32);
    assert!(size_of::<RcuReaderData>() == 40 && align_of::<RcuReaderData>() == 8);
};

fn gp_event() -> &'static QemuEvent {
    &rcu_gp_event.0
}

/// A registered reader record (lives in its thread's thread-local storage
/// until the thread unregisters it or exits).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ReaderPtr(*const RcuReaderData);

// SAFETY: other threads only touch the record's atomics (ctr, waiting),
// and only while it is in REGISTRY, i.e. before its owner removes it.
unsafe impl Send for ReaderPtr {}

/// Every registered reader.
static REGISTRY: Mutex<Vec<ReaderPtr>> = Mutex::new(Vec::new());
/// Serializes writers (one grace period at a time).
static SYNC_LOCK: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The thread's record, plus what only its owner needs. No `Drop`: the
/// thread-local stays usable until the thread's storage is freed, so
/// C thread-exit destructors (pthread keys, `qemu_thread_atexit_*`) may
/// still read under RCU; a pthread key destructor unregisters it.
struct LocalReader {
    data: RcuReaderData,
    /// In REGISTRY.
    registered: Cell<bool>,
    /// Registered by rcu_register_thread().
    explicit: Cell<bool>,
}

/// The pthread key whose destructor unregisters an exiting thread's
/// record (its value: the thread's `LocalReader`, while registered).
static EXIT_KEY: OnceLock<libc::pthread_key_t> = OnceLock::new();

fn exit_key() -> libc::pthread_key_t {
    *EXIT_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: key is a valid out-pointer; the destructor is a valid
        // `extern "C" fn(*mut c_void)`.
        let err = unsafe { libc::pthread_key_create(&mut key, Some(reader_exit)) };
        if err != 0 {
            fatal::die_here("pthread_key_create failed");
        }
        key
    })
}

/// Thread exit of a registered reader (auto-registered, or never
/// unregistered). glibc reruns key destructors (up to
/// PTHREAD_DESTRUCTOR_ITERATIONS times) if a later one re-registers the
/// thread by reading under RCU.
extern "C" fn reader_exit(reader: *mut c_void) {
    // SAFETY: the key's value is the exiting thread's own LocalReader
    // (set by `register`); its thread-local storage lives until after the
    // key destructors have run.
    let r = unsafe { &*reader.cast_const().cast::<LocalReader>() };
    r.unregister();
}

impl LocalReader {
    const fn new() -> Self {
        LocalReader {
            data: RcuReaderData {
                ctr: AtomicU64::new(0),
                waiting: AtomicBool::new(false),
                depth: UnsafeCell::new(0),
                node: UnsafeCell::new([ptr::null_mut(); 2]),
                force_rcu: UnsafeCell::new(ptr::null_mut()),
            },
            registered: Cell::new(false),
            explicit: Cell::new(false),
        }
    }

    fn ptr(&self) -> ReaderPtr {
        ReaderPtr(ptr::from_ref(&self.data))
    }

    fn register(&self) {
        if self.registered.get() {
            return;
        }
        let key = exit_key();
        // SAFETY: key was created by exit_key(); the value is this
        // thread's LocalReader, which reader_exit expects.
        if unsafe { libc::pthread_setspecific(key, ptr::from_ref(self).cast()) } != 0 {
            fatal::die_here("pthread_setspecific failed");
        }
        lock(&REGISTRY).push(self.ptr());
        self.registered.set(true);
    }

    fn unregister(&self) {
        if !self.registered.get() {
            return;
        }
        let me = self.ptr();
        lock(&REGISTRY).retain(|&r| r != me);
        self.registered.set(false);
        self.explicit.set(false);
        // SAFETY: the key exists (register created it); clearing our own
        // value cannot fail in a way that matters (at worst reader_exit
        // runs on an unregistered record, which returns at once).
        unsafe {
            libc::pthread_setspecific(exit_key(), ptr::null());
        }
        // A writer may be waiting for a reader that exited inside a section.
        let inside = self.data.ctr.swap(0, Ordering::SeqCst) != 0;
        if self.data.waiting.swap(false, Ordering::SeqCst) || inside {
            // Cannot fail: the event is statically initialized.
            let _ = gp_event().set();
        }
    }

    fn depth(&self) -> c_uint {
        // SAFETY: depth is only accessed by the owner thread, which is us.
        unsafe { *self.data.depth.get() }
    }
}

thread_local! {
    static READER: LocalReader = const { LocalReader::new() };
}

fn with_reader<R>(f: impl FnOnce(&LocalReader) -> R) -> R {
    READER.with(f)
}

/// `get_ptr_rcu_reader`: the calling thread's record, registering the
/// thread on first use.
pub(crate) fn reader_ptr() -> *mut RcuReaderData {
    with_reader(|r| {
        r.register();
        r.ptr().0.cast_mut()
    })
}

/// `rcu_register_thread`.
pub(crate) fn register_thread() -> MisuseResult<()> {
    with_reader(|r| {
        if r.registered.get() && r.explicit.get() {
            return Err(Misuse::new("thread is already registered"));
        }
        r.register();
        r.explicit.set(true);
        Ok(())
    })
}

/// `rcu_unregister_thread`.
pub(crate) fn unregister_thread() -> MisuseResult<()> {
    with_reader(|r| {
        if !r.registered.get() {
            return Err(Misuse::new("thread is not registered"));
        }
        if r.depth() != 0 {
            return Err(Misuse::new("inside an RCU read-side section"));
        }
        r.unregister();
        Ok(())
    })
}

/// `rcu_read_locked`: true while this thread is inside a section.
pub(crate) fn read_locked() -> bool {
    with_reader(|r| r.registered.get() && r.depth() > 0)
}

/// `rcu_read_lock`, as QEMU's inline one (for the tests).
#[cfg(test)]
pub(crate) fn read_lock() -> MisuseResult<()> {
    let p = reader_ptr();
    // SAFETY: p is this thread's live record; depth is owner-only.
    let r = unsafe { &*p };
    // SAFETY: as above.
    let depth = unsafe { &mut *r.depth.get() };
    *depth += 1;
    if *depth > 1 {
        return Ok(());
    }
    r.ctr
        .store(rcu_gp_ctr.load(Ordering::Relaxed), Ordering::Relaxed);
    fence(Ordering::SeqCst);
    Ok(())
}

/// `rcu_read_unlock`, as QEMU's inline one (for the tests).
#[cfg(test)]
pub(crate) fn read_unlock() -> MisuseResult<()> {
    let p = reader_ptr();
    // SAFETY: p is this thread's live record; depth is owner-only.
    let r = unsafe { &*p };
    // SAFETY: as above.
    let depth = unsafe { &mut *r.depth.get() };
    if *depth == 0 {
        return Err(Misuse::new("not inside an RCU read-side section"));
    }
    *depth -= 1;
    if *depth > 0 {
        return Ok(());
    }
    r.ctr.store(0, Ordering::Release);
    fence(Ordering::SeqCst);
    if r.waiting.load(Ordering::Relaxed) {
        r.waiting.store(false, Ordering::Relaxed);
        gp_event().set()?;
    }
    Ok(())
}

/// Is the reader inside a section that began before period `gp`?
fn reader_is_old(r: ReaderPtr, gp: u64) -> bool {
    // SAFETY: r is in REGISTRY (we hold its lock), so its record is live.
    let v = unsafe { &*r.0 }.ctr.load(Ordering::SeqCst);
    v != 0 && v != gp
}

/// QEMU's `wait_for_readers`: until no registered reader is in the old
/// period. Drops the registry lock while sleeping, so every pass rescans
/// the whole registry; a reader, once not old, stays so in this period.
fn wait_for_readers(mut reg: MutexGuard<'static, Vec<ReaderPtr>>, gp: u64) -> MisuseResult<()> {
    loop {
        gp_event().reset()?;
        for &r in reg.iter() {
            // SAFETY: r is in REGISTRY, whose lock we hold.
            unsafe { &*r.0 }.waiting.store(true, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        let mut busy = false;
        for &r in reg.iter() {
            if reader_is_old(r, gp) {
                busy = true;
            } else {
                // At worst a reader sees it late: an extra event set.
                // SAFETY: as above.
                unsafe { &*r.0 }.waiting.store(false, Ordering::Relaxed);
            }
        }
        if !busy {
            return Ok(());
        }
        drop(reg);
        gp_event().wait()?;
        reg = lock(&REGISTRY);
    }
}

/// `synchronize_rcu`: returns once every reader that was inside a section
/// when it was called has left it.
pub(crate) fn synchronize_rcu() -> MisuseResult<()> {
    if read_locked() {
        return Err(Misuse::new(
            "called inside an RCU read-side section (would deadlock)",
        ));
    }
    let _sync = lock(&SYNC_LOCK);
    let reg = lock(&REGISTRY);
    if reg.is_empty() {
        return Ok(());
    }
    // Updates made before this call precede the counter change.
    fence(Ordering::SeqCst);
    // Single-phase: one flip of +2 (only writers, serialized, write it).
    let gp = rcu_gp_ctr.load(Ordering::Relaxed) + RCU_GP_CTR;
    rcu_gp_ctr.store(gp, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    wait_for_readers(reg, gp)?;
    // Reclamation after this call happens after the readers left.
    fence(Ordering::SeqCst);
    Ok(())
}

mod call;

pub use call::{RcuFunc, RcuHead};
pub(crate) use call::{call_rcu, drain_call_rcu};

#[cfg(test)]
mod tests;
