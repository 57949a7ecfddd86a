//! QEMU's `FDMonOps` table as C sees it (`ctx->fdmon_ops`, docs/spec/qemu-abi.md
//! §2): one static object per backend, so that QEMU code comparing
//! `ctx->fdmon_ops` with `&fdmon_poll_ops` and inline `aio_has_io_uring()`
//! (which reads `->add_sqe`) work. The monitors themselves are Rust objects
//! (`fdmon/`); these tables only stand for them.
//!
//! `fdmon_poll_ops` is an exported data object; it lives here, with the
//! other tables, because the core stores their addresses.
//!
//! Threading: immutable statics; any thread.

use std::ffi::c_void;

use crate::context::fdmon_io_uring_add_sqe;

/// QEMU's fd-monitor operations table (`FDMonOps`, 64 bytes). Only its size
/// and `add_sqe` (offset 56) matter to callers: inline `aio_has_io_uring()`
/// tests `ctx->fdmon_ops->add_sqe`, and QEMU code compares `ctx->fdmon_ops`
/// with `&fdmon_poll_ops`. aioctx's monitors are Rust objects, so the other
/// slots are NULL; `add_sqe` is set in the io_uring monitor's table.
#[repr(C)]
pub struct FDMonOps {
    /// `update`, `wait`, `need_wait`, `dispatch`, `gsource_prepare`,
    /// `gsource_check`, `gsource_dispatch`: not used through this table.
    pub internal: [Option<unsafe extern "C" fn()>; 7],
    /// `aio_add_sqe` support: non-NULL only in the io_uring monitor's
    /// table (`context/sqe.rs`); NULL for poll and epoll. QEMU's
    /// `void (*add_sqe)(AioContext *, void (*prep_sqe)(struct io_uring_sqe *,
    /// void *), void *opaque, CqeHandler *)`, with `void *` for the pointer
    /// types (the same ABI).
    pub add_sqe: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            prep_sqe: Option<unsafe extern "C" fn(sqe: *mut c_void, opaque: *mut c_void)>,
            opaque: *mut c_void,
            cqe_handler: *mut c_void,
        ),
    >,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<FDMonOps>() == 64 && align_of::<FDMonOps>() == 8);
    assert!(offset_of!(FDMonOps, add_sqe) == 56);
};

/// `ctx->fdmon_ops` while the context uses the poll backend (or no fd yet).
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals)]
pub static fdmon_poll_ops: FDMonOps = FDMonOps {
    internal: [None; 7],
    add_sqe: None,
};

/// `ctx->fdmon_ops` while the context uses epoll.
static FDMON_EPOLL_OPS: FDMonOps = FDMonOps {
    internal: [None; 7],
    add_sqe: None,
};

/// `ctx->fdmon_ops` while the context uses io_uring: callers may submit
/// their own requests (`aio_add_sqe`).
static FDMON_IO_URING_OPS: FDMonOps = FDMonOps {
    internal: [None; 7],
    add_sqe: Some(fdmon_io_uring_add_sqe),
};

/// The operations table that stands for the monitor called `backend`.
pub(crate) fn fdmon_ops_for(backend: &str) -> *const FDMonOps {
    match backend {
        "epoll" => &FDMON_EPOLL_OPS,
        "io_uring" => &FDMON_IO_URING_OPS,
        _ => &fdmon_poll_ops,
    }
}
