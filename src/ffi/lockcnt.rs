//! `QemuLockCnt` (`qemu/lockcnt.h`): a visitor count and a lock in one
//! futex word (`src/lockcnt.rs`). Any thread; `qemu_lockcnt_unlock` and
//! `qemu_lockcnt_inc_and_unlock` by the thread holding the lock.

use std::cell::UnsafeCell;
use std::ffi::c_uint;

use super::boundary::{caller_struct, ffi_call};
use crate::fatal::MisuseResult;
use crate::lockcnt::LockCnt;

/// A counter plus a mutex (QEMU's futex-based `QemuLockCnt`, 4 bytes),
/// embedded by value. Initialize with `qemu_lockcnt_init` (or zero it).
#[repr(C)]
pub struct QemuLockCnt {
    /// Bits 0-1: lock state; bits 2-31: the count.
    pub count: UnsafeCell<c_uint>,
}

const _: () = {
    use std::mem::{align_of, size_of};
    assert!(size_of::<QemuLockCnt>() == 4 && align_of::<QemuLockCnt>() == 4);
    assert!(size_of::<QemuLockCnt>() == size_of::<LockCnt>());
};

fn lockcnt<'a>(l: *mut QemuLockCnt) -> MisuseResult<&'a LockCnt> {
    caller_struct(l, "QemuLockCnt")
}

/// Initializes `lockcnt`: count 0, unlocked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_init(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_init", || {
        self::lockcnt(lockcnt)?.init();
        Ok(())
    })
}

/// Destroys `lockcnt` (nothing to free).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_destroy(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_destroy", || {
        self::lockcnt(lockcnt).map(|_| ())
    })
}

/// Adds one visitor. While the count is zero and another thread holds the
/// lock (it may be freeing the structure), waits for the unlock.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_inc(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_inc", || self::lockcnt(lockcnt)?.inc())
}

/// Removes one visitor.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_dec(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_dec", || {
        self::lockcnt(lockcnt)?.dec();
        Ok(())
    })
}

/// Removes one visitor; if none is left, returns true with the lock held
/// (the caller may free, then `qemu_lockcnt_unlock`). Else false, unlocked.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_dec_and_lock(lockcnt: *mut QemuLockCnt) -> bool {
    ffi_call(c"qemu_lockcnt_dec_and_lock", || {
        self::lockcnt(lockcnt)?.dec_and_lock()
    })
}

/// If the caller is the only visitor, removes it and returns true with the
/// lock held; otherwise returns false and changes nothing.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_dec_if_lock(lockcnt: *mut QemuLockCnt) -> bool {
    ffi_call(c"qemu_lockcnt_dec_if_lock", || {
        self::lockcnt(lockcnt)?.dec_if_lock()
    })
}

/// Takes the lock (visitors may still come and go).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_lock(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_lock", || self::lockcnt(lockcnt)?.lock())
}

/// Releases the lock.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_unlock(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_unlock", || self::lockcnt(lockcnt)?.unlock())
}

/// Adds one visitor and releases the lock, in one step.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_inc_and_unlock(lockcnt: *mut QemuLockCnt) {
    ffi_call(c"qemu_lockcnt_inc_and_unlock", || {
        self::lockcnt(lockcnt)?.inc_and_unlock()
    })
}

/// The number of visitors (a snapshot).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_lockcnt_count(lockcnt: *mut QemuLockCnt) -> c_uint {
    ffi_call(
        c"qemu_lockcnt_count",
        || Ok(self::lockcnt(lockcnt)?.count()),
    )
}
