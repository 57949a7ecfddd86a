//! Stack switches announced to ThreadSanitizer (TSan builds only).
//!
//! TSan tracks one shadow stack and one vector clock per "fiber"; a
//! coroutine switch it is not told about looks like one thread's stack
//! jumping around (false races, crashes). Under `--cfg aioctx_tsan` (set
//! by the Makefile's `tsan-lib` target together with `-Zsanitizer=thread`)
//! each coroutine object owns a TSan fiber (created with the object,
//! destroyed when the pool frees it), and `enter` announces both switches
//! of one resume itself: `__tsan_switch_to_fiber(coroutine)` just before
//! `resume`, `__tsan_switch_to_fiber(own fiber)` just after it returns
//! (the coroutine side announces nothing). Announcing from both sides, as
//! QEMU's ucontext backend does around `swapcontext`, does not work with
//! corosensei: the instrumented frames between an announcement and the
//! actual switch (`resume` and `suspend` internals, of different depths)
//! are pushed on one fiber's TSan shadow stack and popped from another's,
//! so the shadow stacks drift by the difference on every switch and TSan
//! crashes. Announced from the resumer only, each fiber gets back exactly
//! the frames it pushed. Flag 0 makes each switch a synchronization.
//! In other builds every function here is an empty inline no-op.

use std::ffi::c_void;

#[cfg(aioctx_tsan)]
mod imp {
    use std::ffi::{c_uint, c_void};

    unsafe extern "C" {
        fn __tsan_get_current_fiber() -> *mut c_void;
        fn __tsan_create_fiber(flags: c_uint) -> *mut c_void;
        fn __tsan_destroy_fiber(fiber: *mut c_void);
        fn __tsan_switch_to_fiber(fiber: *mut c_void, flags: c_uint);
    }

    pub(crate) fn current() -> *mut c_void {
        // SAFETY: no preconditions (returns the running fiber).
        unsafe { __tsan_get_current_fiber() }
    }

    pub(crate) fn create() -> *mut c_void {
        // SAFETY: no preconditions.
        unsafe { __tsan_create_fiber(0) }
    }

    /// # Safety
    /// `fiber` came from [`create`], is not running, and is not used again.
    pub(crate) unsafe fn destroy(fiber: *mut c_void) {
        // SAFETY: per the caller.
        unsafe { __tsan_destroy_fiber(fiber) }
    }

    /// # Safety
    /// `fiber` is live, and the caller switches stacks to it right after.
    pub(crate) unsafe fn switch_to(fiber: *mut c_void) {
        // SAFETY: per the caller.
        unsafe { __tsan_switch_to_fiber(fiber, 0) }
    }
}

#[cfg(not(aioctx_tsan))]
mod imp {
    use std::ffi::c_void;

    #[inline(always)]
    pub(crate) fn current() -> *mut c_void {
        std::ptr::null_mut()
    }

    #[inline(always)]
    pub(crate) fn create() -> *mut c_void {
        std::ptr::null_mut()
    }

    /// # Safety
    /// None (no-op); the TSan build's contract applies.
    #[inline(always)]
    pub(crate) unsafe fn destroy(_fiber: *mut c_void) {}

    /// # Safety
    /// None (no-op); the TSan build's contract applies.
    #[inline(always)]
    pub(crate) unsafe fn switch_to(_fiber: *mut c_void) {}
}

/// The fiber running now (this thread's, or the running coroutine's).
#[inline(always)]
pub(crate) fn current_fiber() -> *mut c_void {
    imp::current()
}

/// A new fiber for a new coroutine object.
#[inline(always)]
pub(crate) fn create_fiber() -> *mut c_void {
    imp::create()
}

/// Destroys a coroutine object's fiber.
///
/// # Safety
/// `fiber` came from [`create_fiber`], is not running, and is not used again.
#[inline(always)]
pub(crate) unsafe fn destroy_fiber(fiber: *mut c_void) {
    // SAFETY: per the caller.
    unsafe { imp::destroy(fiber) }
}

/// Announces the switch the caller makes next.
///
/// # Safety
/// `fiber` is live and the caller switches to its stack right after.
#[inline(always)]
pub(crate) unsafe fn switch_to_fiber(fiber: *mut c_void) {
    // SAFETY: per the caller.
    unsafe { imp::switch_to(fiber) }
}
