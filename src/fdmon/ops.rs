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

/// QEMU's fd-monitor operations table (`FDMonOps`, 64 bytes). Only its size
/// and `add_sqe` (offset 56) matter to callers: inline `aio_has_io_uring()`
/// tests `ctx->fdmon_ops->add_sqe`, and QEMU code compares `ctx->fdmon_ops`
/// with `&fdmon_poll_ops`. aioctx's monitors are Rust objects, so the other
/// slots are NULL.
#[repr(C)]
pub struct FDMonOps {
    /// `update`, `wait`, `need_wait`, `dispatch`, `gsource_prepare`,
    /// `gsource_check`, `gsource_dispatch`: not used through this table.
    pub internal: [Option<unsafe extern "C" fn()>; 7],
    /// `aio_add_sqe` support: NULL, since aioctx does not submit io_uring
    /// requests for callers (see `aio_add_sqe`).
    pub add_sqe: Option<unsafe extern "C" fn()>,
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

/// `ctx->fdmon_ops` while the context uses io_uring.
static FDMON_IO_URING_OPS: FDMonOps = FDMonOps {
    internal: [None; 7],
    add_sqe: None,
};

/// The operations table that stands for the monitor called `backend`.
pub(crate) fn fdmon_ops_for(backend: &str) -> *const FDMonOps {
    match backend {
        "epoll" => &FDMON_EPOLL_OPS,
        "io_uring" => &FDMON_IO_URING_OPS,
        _ => &fdmon_poll_ops,
    }
}
