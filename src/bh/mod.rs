//! Bottom halves (`qemu/aio.h`: `aio_bh_new*`, `aio_bh_schedule_oneshot*`,
//! `qemu_bh_schedule*`, `qemu_bh_cancel`, `qemu_bh_delete`, `aio_bh_call`,
//! `aio_bh_poll`).
//!
//! A BH is a callback bound to one context. Its state is one atomic flags
//! word; scheduling is a fetch-or plus, only on the 0 -> PENDING edge, one
//! push onto the context's [`MpscQueue`] and a wakeup check: wait-free with
//! respect to the loop, no lock, no allocation, callable from any thread.
//! From inside the context's loop (a callback scheduling a BH of its own
//! context) the push is onto the loop-local list instead, with plain stores
//! and no wakeup check (`dispatch.rs`).
//!
//! Flags:
//! - PENDING: the BH is linked in the queue or in a slice being dispatched.
//!   Whoever sets it pushes the BH; only the loop thread clears it, after
//!   unlinking the BH.
//! - SCHEDULED: the callback should run when the BH is dispatched.
//!   `qemu_bh_cancel` clears it and leaves the BH linked; dispatch skips it.
//! - IDLE: scheduled with `qemu_bh_schedule_idle` (no progress, ~10 ms).
//! - ONESHOT: freed after dispatch (`aio_bh_schedule_oneshot`).
//! - DELETED: `qemu_bh_delete` was called; the loop frees the BH when it
//!   next dispatches it, never running its callback again.
//!
//! Dispatch (loop thread only): each `aio_bh_poll` takes the whole queue as
//! one batch (FIFO) and appends it, then the local list, to the context's
//! run list, then runs the run list from its head. A BH that calls `aio_poll` therefore makes the
//! nested call finish the outer call's remaining BHs first: none is stranded
//! or run twice, and a BH scheduled during dispatch waits for the next call.
//!
//! Memory: a BH is freed only by the loop thread (or by context teardown),
//! never by `qemu_bh_delete` directly, so a callback may delete its own BH
//! and a deleted BH stays valid until the loop has dequeued it.
//!
//! This file holds the BH object and its flag operations; the context's
//! side (allocation, the run list, `aio_bh_poll`, teardown) is in
//! `dispatch.rs`.

mod dispatch;

pub(crate) use dispatch::BhDispatch;

use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::atomics::AtomicPtr;
use crate::context::Context;
use crate::fatal::{LazyApiCall, Misuse, MisuseResult};
use crate::handle::impl_handle;
use crate::mpsc::MpscNode;

pub(crate) const BH_PENDING: u32 = 1 << 0;
pub(crate) const BH_SCHEDULED: u32 = 1 << 1;
pub(crate) const BH_ONESHOT: u32 = 1 << 2;
pub(crate) const BH_DELETED: u32 = 1 << 3;
pub(crate) const BH_IDLE: u32 = 1 << 4;

const BH_MAGIC_LIVE: u32 = 0x4248_4c56; // "BHLV"
const BH_MAGIC_DEAD: u32 = 0x4248_4444; // "BHDD"

// A freed BH is detected only while its memory is not reused.
impl_handle! { Bh = "QEMUBH", magic: BH_MAGIC_LIVE, BH_MAGIC_DEAD,
    freed: "was already deleted and freed", invalid: "is not a valid bottom half";
    #[inline(always)]
    fn is_usable(&self) -> bool { self.context().is_current_fork() }
    fn unusable(&self) -> Misuse { self.context().forked() }
}

/// Registry slot of a BH that is not in the context's registry (oneshot).
pub(crate) const NOT_REGISTERED: usize = usize::MAX;

/// A C bottom-half callback, already checked non-NULL.
pub(crate) type BhFn = unsafe extern "C" fn(opaque: *mut c_void);

/// QEMU's reentrancy guard (`struct MemReentrancyGuard`): a caller-owned
/// flag that is true while a BH created with it runs.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MemReentrancyGuard {
    /// True while a callback guarded by this struct runs.
    pub engaged_in_io: bool,
}

pub(crate) struct Bh {
    magic: AtomicU32,
    pub(crate) flags: AtomicU32,
    next: AtomicPtr<Bh>,
    ctx: *const Context,
    cb: BhFn,
    opaque: *mut c_void,
    /// Debug name; must outlive the BH (QEMU passes string literals).
    name: *const c_char,
    guard: *mut MemReentrancyGuard,
    /// Index in the context's registry, or [`NOT_REGISTERED`]. Only read or
    /// written with the registry lock held.
    pub(crate) registry_slot: AtomicUsize,
}

// SAFETY: the fields shared between threads are atomics; `cb`, `opaque`,
// `name`, `guard` and `ctx` are written once at creation and only used by
// the loop thread afterwards (the C caller vouches for what they point to).
unsafe impl Send for Bh {}
// SAFETY: as above.
unsafe impl Sync for Bh {}

impl MpscNode for Bh {
    fn next(&self) -> &AtomicPtr<Bh> {
        &self.next
    }
}

impl Bh {
    pub(crate) fn alloc(
        ctx: &Context,
        cb: BhFn,
        opaque: *mut c_void,
        name: *const c_char,
        guard: *mut MemReentrancyGuard,
        flags: u32,
    ) -> *mut Bh {
        Box::into_raw(Box::new(Bh {
            magic: AtomicU32::new(BH_MAGIC_LIVE),
            flags: AtomicU32::new(flags),
            next: AtomicPtr::new(ptr::null_mut()),
            ctx: ptr::from_ref(ctx),
            cb,
            opaque,
            name,
            guard,
            registry_slot: AtomicUsize::new(NOT_REGISTERED),
        }))
    }

    /// Frees a BH that no queue, slice or registry references any more.
    ///
    /// # Safety
    /// `bh` came from [`Bh::alloc`], is unlinked and unregistered, and is
    /// not used again.
    pub(crate) unsafe fn free(bh: *mut Bh) {
        // SAFETY: the caller guarantees exclusive ownership.
        let bh = unsafe { Box::from_raw(bh) };
        // Best-effort use-after-free detection for a stale handle whose
        // memory has not been reused yet (see `from_handle`).
        bh.magic.store(BH_MAGIC_DEAD, Ordering::Relaxed);
        drop(bh);
    }

    pub(crate) fn context(&self) -> &Context {
        // SAFETY: a BH never outlives its context: teardown frees every BH.
        unsafe { &*self.ctx }
    }

    /// `qemu_bh_schedule` / `qemu_bh_schedule_idle`. Inlined into the
    /// exported functions: the fast path (already pending) is one RMW.
    /// `api`: see [`Context::notify_from`].
    #[inline(always)]
    pub(crate) fn schedule(&self, idle: bool, api: LazyApiCall) -> MisuseResult<()> {
        let new = BH_PENDING | BH_SCHEDULED | if idle { BH_IDLE } else { 0 };
        let old = self.flags.fetch_or(new, Ordering::AcqRel);
        if old & BH_DELETED != 0 {
            return Err(self.scheduled_after_delete());
        }
        if old & BH_PENDING == 0 {
            self.context().enqueue(self, api);
        } else if old & BH_SCHEDULED == 0 {
            // Still linked after a cancel: nobody is going to wake the
            // poller for it (its queue check may already have skipped it).
            self.context().notify_from(api);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn scheduled_after_delete(&self) -> Misuse {
        Misuse::new(format!(
            "BH '{}' was deleted with qemu_bh_delete",
            self.describe()
        ))
    }

    /// `qemu_bh_cancel`: the BH stays linked (if it was) but will not run.
    #[inline]
    pub(crate) fn cancel(&self) {
        self.flags.fetch_and(!BH_SCHEDULED, Ordering::AcqRel);
    }

    /// `qemu_bh_delete`: mark deleted and make sure the loop sees it so that
    /// it frees it. No wakeup: a sleeping loop does not need to wake just to
    /// free memory; the next dispatch or the teardown frees it.
    pub(crate) fn delete(&self) -> MisuseResult<()> {
        let old = self
            .flags
            .fetch_or(BH_PENDING | BH_DELETED, Ordering::AcqRel);
        if old & BH_DELETED != 0 {
            return Err(Misuse::new(format!(
                "BH '{}' was deleted twice",
                self.describe()
            )));
        }
        if old & BH_PENDING == 0 {
            self.context().enqueue_quietly(self);
        }
        Ok(())
    }

    /// `aio_bh_call`: runs the callback, with the reentrancy guard engaged.
    ///
    /// # Safety
    /// `bh` is live. The callback may free it (by deleting it and polling),
    /// so nothing of `*bh` is read after the call.
    pub(crate) unsafe fn call(bh: *const Bh) {
        // SAFETY: live per the caller; copy out what is needed first.
        let (cb, opaque, guard) = unsafe { ((*bh).cb, (*bh).opaque, (*bh).guard) };
        if guard.is_null() {
            // SAFETY: the C caller registered `cb` for `opaque`.
            unsafe { cb(opaque) };
            return;
        }
        // SAFETY: the guard is caller-owned and outlives the BH (QEMU's rule).
        let was_engaged = unsafe { ptr::read_volatile(&raw const (*guard).engaged_in_io) };
        // SAFETY: as above.
        unsafe { ptr::write_volatile(&raw mut (*guard).engaged_in_io, true) };
        // SAFETY: the C caller registered `cb` for `opaque`.
        unsafe { cb(opaque) };
        // SAFETY: as above.
        unsafe { ptr::write_volatile(&raw mut (*guard).engaged_in_io, was_engaged) };
    }

    /// The BH's name for messages: its debug name, else the callback's
    /// symbol (via `dladdr`), else the callback's address.
    pub(crate) fn describe(&self) -> String {
        if !self.name.is_null() {
            // SAFETY: the name is a NUL-terminated string that outlives the BH
            // (documented on aio_bh_new_full).
            return unsafe { CStr::from_ptr(self.name) }
                .to_string_lossy()
                .into_owned();
        }
        describe_fn(self.cb as *const c_void)
    }
}

/// Names a C function by its address: its symbol if the dynamic linker
/// knows it (link with `-rdynamic` to name functions of the executable).
pub(crate) fn describe_fn(f: *const c_void) -> String {
    // SAFETY: Dl_info is plain data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`.
    let found = unsafe { libc::dladdr(f, &mut info) } != 0;
    if found && !info.dli_sname.is_null() {
        // SAFETY: dladdr returns a NUL-terminated symbol name.
        return unsafe { CStr::from_ptr(info.dli_sname) }
            .to_string_lossy()
            .into_owned();
    }
    format!("{f:p}")
}
