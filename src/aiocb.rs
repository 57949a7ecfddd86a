//! Asynchronous request control blocks (QEMU's `block/aio.h`: `BlockAIOCB`,
//! `AIOCBInfo`, `qemu_aio_get`, `qemu_aio_ref`, `qemu_aio_unref`;
//! `block/block.h`: `bdrv_aio_cancel`, `bdrv_aio_cancel_async`).
//!
//! A `BlockAIOCB` is the caller-visible head of a larger, implementation
//! defined request (`AIOCBInfo::aiocb_size` bytes, allocated zeroed by
//! `qemu_aio_get`). Its reference count is a plain `int`, as in QEMU: it is
//! only touched in the home thread of the context the request completes
//! in (submission, completion and cancellation all happen there).

use std::ffi::{c_int, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;

use crate::context::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::wait;

/// Marker for `typedef void BlockCompletionFunc(void *opaque, int ret);`
/// (written in cbindgen.toml). Only `*mut BlockCompletionFunc` is used.
pub struct BlockCompletionFunc {
    _opaque: [u8; 0],
}

/// QEMU's block device state. aioctx has no block layer: this is only the
/// opaque type of `BlockAIOCB::bs`, which aioctx stores and never reads.
pub struct BlockDriverState {
    _opaque: [u8; 0],
}

/// A completion callback, already checked non-NULL.
pub(crate) type CompletionFn = unsafe extern "C" fn(opaque: *mut c_void, ret: c_int);

/// Describes one kind of request (QEMU's `AIOCBInfo`): how to cancel it and
/// how large it is. Usually a `static const` of the implementation.
#[repr(C)]
pub struct AIOCBInfo {
    /// Starts cancelling the request (may be NULL: not cancellable). Must
    /// not wait; the request's callback reports the outcome.
    pub cancel_async: Option<unsafe extern "C" fn(acb: *mut BlockAIOCB)>,
    /// Bytes `qemu_aio_get` allocates; at least `sizeof(BlockAIOCB)`, which
    /// must be the first member of the implementation's request struct.
    pub aiocb_size: usize,
}

/// The head of an asynchronous request (QEMU's `BlockAIOCB`), embedded as
/// the first member of the implementation's request struct.
#[repr(C)]
pub struct BlockAIOCB {
    /// The kind of request.
    pub aiocb_info: *const AIOCBInfo,
    /// The block device (aioctx stores it and never reads it; may be NULL).
    pub bs: *mut BlockDriverState,
    /// Called once with the request's result (may be NULL).
    pub cb: *mut BlockCompletionFunc,
    /// Passed to `cb`.
    pub opaque: *mut c_void,
    /// References: 1 from `qemu_aio_get`; freed when it drops to 0.
    pub refcnt: c_int,
}

const _: () = assert!(offset_of!(BlockAIOCB, refcnt) == 32 && size_of::<BlockAIOCB>() == 40);

/// `qemu_aio_get`: a zeroed `info.aiocb_size`-byte request with its head
/// filled in and one reference.
///
/// # Safety
/// `info` is null or points to an `AIOCBInfo` that outlives the request.
pub(crate) unsafe fn aio_get(
    info: *const AIOCBInfo,
    bs: *mut BlockDriverState,
    cb: *mut BlockCompletionFunc,
    opaque: *mut c_void,
) -> MisuseResult<*mut BlockAIOCB> {
    // SAFETY: null or valid per the caller.
    let Some(info_ref) = (unsafe { info.as_ref() }) else {
        return Err(Misuse::new("AIOCBInfo is NULL"));
    };
    if info_ref.aiocb_size < size_of::<BlockAIOCB>() {
        return Err(Misuse::new(format!(
            "AIOCBInfo.aiocb_size is {}, smaller than sizeof(BlockAIOCB) ({})",
            info_ref.aiocb_size,
            size_of::<BlockAIOCB>()
        )));
    }
    // SAFETY: plain allocation; calloc's alignment suits any C struct.
    let acb = unsafe { libc::calloc(1, info_ref.aiocb_size) }.cast::<BlockAIOCB>();
    if acb.is_null() {
        // `qemu_aio_get`, or `thread_pool_submit_aio` allocating its request.
        crate::fatal::die_here(&format!("out of memory ({} bytes)", info_ref.aiocb_size));
    }
    // SAFETY: fresh allocation large enough for the head.
    unsafe {
        acb.write(BlockAIOCB {
            aiocb_info: info,
            bs,
            cb,
            opaque,
            refcnt: 1,
        })
    };
    Ok(acb)
}

/// Validates a request handle for `qemu_aio_ref`/`unref`/`bdrv_aio_cancel*`.
///
/// # Safety
/// `acb` is null or a request from [`aio_get`] that is still referenced.
unsafe fn live(acb: *mut BlockAIOCB) -> MisuseResult<*mut BlockAIOCB> {
    if acb.is_null() {
        return Err(Misuse::new("BlockAIOCB is NULL"));
    }
    // SAFETY: a live request per the caller.
    let refcnt = unsafe { ptr::read_volatile(&raw const (*acb).refcnt) };
    if refcnt <= 0 {
        return Err(Misuse::new(format!(
            "BlockAIOCB has no reference left (refcnt {refcnt}): it was already freed"
        )));
    }
    // SAFETY: as above.
    if unsafe { (*acb).aiocb_info }.is_null() {
        return Err(Misuse::new("BlockAIOCB has no AIOCBInfo"));
    }
    Ok(acb)
}

/// `qemu_aio_ref`.
///
/// # Safety
/// `acb` is null or a live request; home thread of its context.
pub(crate) unsafe fn aio_ref(acb: *mut BlockAIOCB) -> MisuseResult<()> {
    // SAFETY: per the caller.
    let acb = unsafe { live(acb) }?;
    // SAFETY: live; the count is only touched in one thread.
    unsafe { (*acb).refcnt += 1 };
    Ok(())
}

/// `qemu_aio_unref`: frees the request with its last reference. Returns the
/// remaining count.
///
/// # Safety
/// `acb` is null or a live request; the caller owns the reference it drops.
pub(crate) unsafe fn aio_unref(acb: *mut BlockAIOCB) -> MisuseResult<c_int> {
    // SAFETY: per the caller.
    let acb = unsafe { live(acb) }?;
    // SAFETY: live; the count is only touched in one thread.
    let left = unsafe {
        (*acb).refcnt -= 1;
        (*acb).refcnt
    };
    if left == 0 {
        // Poison the count so a stale handle is reported while the memory
        // is not reused (best effort).
        // SAFETY: still ours until freed just below.
        unsafe { (*acb).refcnt = -1 };
        // SAFETY: allocated with calloc in `aio_get`; nobody references it.
        unsafe { libc::free(acb.cast()) };
    }
    Ok(left)
}

/// `bdrv_aio_cancel_async`: asks the request's implementation to cancel it.
///
/// # Safety
/// `acb` is null or a live request.
pub(crate) unsafe fn cancel_async(acb: *mut BlockAIOCB) -> MisuseResult<()> {
    // SAFETY: per the caller.
    let acb = unsafe { live(acb) }?;
    // SAFETY: a live request's info outlives it.
    if let Some(cancel) = unsafe { (*(*acb).aiocb_info).cancel_async } {
        // SAFETY: the implementation registered `cancel` for its requests.
        unsafe { cancel(acb) };
    }
    Ok(())
}

/// `bdrv_aio_cancel`: cancel, then poll until the request completed (its
/// completion dropped its reference). `ctx` is the context the request
/// completes in, if known; otherwise the main loop is polled, as in QEMU.
///
/// # Safety
/// `acb` is null or a live request.
pub(crate) unsafe fn cancel(acb: *mut BlockAIOCB, ctx: Option<&Context>) -> MisuseResult<()> {
    // SAFETY: per the caller; our reference keeps it alive below.
    unsafe { aio_ref(acb) }?;
    // SAFETY: live (we hold a reference).
    unsafe { cancel_async(acb) }?;
    wait::wait_while(ctx, || {
        // SAFETY: alive while we hold our reference.
        unsafe { ptr::read_volatile(&raw const (*acb).refcnt) > 1 }
    })?;
    // SAFETY: drops the reference taken above.
    unsafe { aio_unref(acb) }?;
    Ok(())
}
