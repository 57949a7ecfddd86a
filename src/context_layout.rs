//! The bytes of an `AioContext` that code compiled against QEMU 10.2's own
//! headers reaches into (`docs/spec/qemu-abi.md` §2), and the
//! pointer to the `FDMonOps` object (`fdmon/ops.rs`) `ctx->fdmon_ops` holds.
//!
//! A context handle is the address of a [`crate::context::Context`], whose
//! first field is an [`AioContextPublic`]: 608 bytes with QEMU's members at
//! QEMU's offsets. `tlg` holds the context's four timer lists (so QEMU's
//! inline `aio_timer_init`, which passes `&ctx->tlg` to `timer_init_full`,
//! binds timers to this context); the library also uses `aio_max_batch`
//! and `fdmon_ops`; `bdrv_graph` is a slot owned by the program's block
//! layer (its `register_aiocontext` hook stores a pointer there), and the
//! first 96 bytes are the context's `GSource` (the context is allocated by
//! `g_source_new`, `gsource.rs`).
//!
//! Threading: the GSource bytes are GLib's (its own locking); `bdrv_graph` belongs to the hooks' caller; `tlg` is written
//! once, before the context is shared; `aio_max_batch` and `fdmon_ops` are
//! atomics (any thread reads them; the context writes them).

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering};

use crate::fdmon::ops::{FDMonOps, fdmon_poll_ops};

/// The first 608 bytes of every context, at QEMU's offsets.
#[repr(C)]
pub(crate) struct AioContextPublic {
    /// QEMU's `GSource source` (offset 0, 96 bytes): the context's memory
    /// comes from `g_source_new` (`gsource::alloc_context`), so these bytes
    /// are GLib's, written by GLib from any thread; Rust never reads them.
    source: UnsafeCell<[u8; 96]>,
    /// QEMU's private members up to `bdrv_graph`.
    _private0: [u8; 144 - 96],
    /// `BdrvGraphRWlock *bdrv_graph` (offset 144): never touched by aioctx.
    bdrv_graph: AtomicPtr<c_void>,
    _private1: [u8; 496 - 152],
    /// `QEMUTimerListGroup tlg` (offset 496): the context's timer lists,
    /// one per clock.
    tlg: [AtomicPtr<c_void>; 4],
    _private2: [u8; 560 - 528],
    /// `int64_t aio_max_batch` (offset 560), read by `block/linux-aio.c`.
    pub(crate) aio_max_batch: AtomicI64,
    _private3: [u8; 592 - 568],
    /// `const FDMonOps *fdmon_ops` (offset 592).
    pub(crate) fdmon_ops: AtomicPtr<FDMonOps>,
    _private4: [u8; 608 - 600],
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<AioContextPublic>() == 608);
    assert!(size_of::<glib_sys::GSource>() == 96);
    assert!(offset_of!(AioContextPublic, source) == 0);
    assert!(align_of::<AioContextPublic>() == 8);
    assert!(offset_of!(AioContextPublic, bdrv_graph) == 144);
    assert!(offset_of!(AioContextPublic, tlg) == 496);
    assert!(offset_of!(AioContextPublic, aio_max_batch) == 560);
    assert!(offset_of!(AioContextPublic, fdmon_ops) == 592);
};

impl AioContextPublic {
    pub(crate) fn new() -> Self {
        AioContextPublic {
            source: UnsafeCell::new([0; 96]),
            _private0: [0; 144 - 96],
            bdrv_graph: AtomicPtr::new(ptr::null_mut()),
            _private1: [0; 496 - 152],
            tlg: [const { AtomicPtr::new(ptr::null_mut()) }; 4],
            _private2: [0; 560 - 528],
            aio_max_batch: AtomicI64::new(0),
            _private3: [0; 592 - 568],
            fdmon_ops: AtomicPtr::new(ptr::from_ref(&fdmon_poll_ops).cast_mut()),
            _private4: [0; 608 - 600],
        }
    }

    /// Fills `tlg` with the context's timer lists (at creation).
    pub(crate) fn set_tlg(&self, lists: [*mut c_void; 4]) {
        for (slot, list) in self.tlg.iter().zip(lists) {
            slot.store(list, Ordering::Release);
        }
    }
}
