//! `QemuThread` for QEMU-style callers (`qemu/thread.h`): create, join,
//! exit, self, per-thread exit notifiers and CPU affinity. Thin wrappers
//! over `crate::qemu_thread` and `crate::thread_exit`.

use std::ffi::{c_char, c_int, c_ulong, c_void};

use super::boundary::check_ptr;
use super::boundary::ffi_call;
use super::sync::{Notifier, QemuThread, object, optional_str};
use crate::fatal::{Misuse, MisuseResult};
use crate::qemu_thread::{self, StartRoutine};

fn thread<'a>(t: *const QemuThread) -> MisuseResult<&'a QemuThread> {
    object(t, "QemuThread")
}

/// Starts a thread running `start_routine(arg)` and fills in `thread`.
/// `name` (may be NULL; copied) names the thread, truncated to 15 bytes.
/// `mode` is `QEMU_THREAD_JOINABLE` (join it with `qemu_thread_join`) or
/// `QEMU_THREAD_DETACHED`. As in QEMU, the new thread starts with all
/// signals blocked except SIGSEGV, SIGFPE and SIGILL. Failure to create the
/// thread aborts.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_create(
    thread: *mut QemuThread,
    name: *const c_char,
    start_routine: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
    arg: *mut c_void,
    mode: c_int,
) {
    ffi_call(c"qemu_thread_create", || {
        let thread = self::thread(thread)?;
        let routine: StartRoutine =
            start_routine.ok_or_else(|| Misuse::new("start_routine is NULL"))?;
        thread.create(optional_str(name), routine, arg, mode)
    })
}

/// Waits for a joinable thread to end and returns its result (the start
/// routine's return value or `qemu_thread_exit`'s argument). Aborts for a
/// detached thread, a thread already joined, or the calling thread itself.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_join(thread: *mut QemuThread) -> *mut c_void {
    ffi_call(c"qemu_thread_join", || self::thread(thread)?.join())
}

/// Fills in `thread` for the calling thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_get_self(thread: *mut QemuThread) {
    ffi_call(c"qemu_thread_get_self", || {
        self::thread(thread)?.get_self();
        Ok(())
    })
}

/// Whether `thread` is the calling thread.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_is_self(thread: *mut QemuThread) -> bool {
    ffi_call(c"qemu_thread_is_self", || {
        Ok(self::thread(thread)?.is_self())
    })
}

/// Ends the calling thread with result `retval` (what `qemu_thread_join`
/// returns). Does not return.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_exit(retval: *mut c_void) -> ! {
    ffi_call(c"qemu_thread_exit", || Ok(()));
    // Outside `ffi_call`: the forced unwind must not meet a panic boundary.
    qemu_thread::exit_thread(retval)
}

/// Adds `notifier` to the calling thread's exit list: when this thread ends
/// (a thread of `qemu_thread_create` whose routine returns or that calls
/// `qemu_thread_exit`), it calls `notifier->notify(notifier, NULL)`, newest
/// notifier first. The notifier stays the caller's and must stay alive
/// until it ran or was removed. Other threads never run their list.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_atexit_add(notifier: *mut Notifier) {
    ffi_call(c"qemu_thread_atexit_add", || {
        check_ptr(notifier, "Notifier")?;
        // SAFETY: checked non-null and aligned; the caller keeps it alive
        // while listed (contract above).
        unsafe { crate::thread_exit::add(notifier) }
    })
}

/// Takes `notifier` off the calling thread's exit list (it must be on it;
/// a callback may remove its own notifier).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_atexit_remove(notifier: *mut Notifier) {
    ffi_call(c"qemu_thread_atexit_remove", || {
        check_ptr(notifier, "Notifier")?;
        // SAFETY: checked non-null and aligned; C's contract: it was added
        // by this thread, or its links are NULL (refused).
        unsafe { crate::thread_exit::remove(notifier) }
    })
}

/// Restricts `thread` to the CPUs set among the first `nbits` bits of the
/// bitmap `host_cpus`. 0, or an errno value, positive
/// as QEMU returns pthread's (`EINVAL` when no usable CPU is set).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_set_affinity(
    thread: *mut QemuThread,
    host_cpus: *mut c_ulong,
    nbits: c_ulong,
) -> c_int {
    ffi_call(c"qemu_thread_set_affinity", || {
        let thread = self::thread(thread)?;
        let nbits = nbits as usize;
        if nbits > qemu_thread::AFFINITY_MAX_BITS {
            // Before making a slice of it: no such bitmap is valid.
            return Ok(libc::EINVAL);
        }
        let words = qemu_thread::bitmap_words(nbits);
        let cpus: &[c_ulong] = if words == 0 {
            &[]
        } else {
            check_ptr(host_cpus, "host_cpus")?;
            // SAFETY: non-null and aligned; C's contract: a bitmap of
            // `nbits` bits, i.e. `words` readable words.
            unsafe { std::slice::from_raw_parts(host_cpus, words) }
        };
        thread.set_affinity(cpus, nbits)
    })
}

/// Stores `thread`'s CPU set in `*host_cpus` (a bitmap allocated with
/// `g_new0`; the caller frees it with `g_free`) and its size in bits in
/// `*nbits`. 0, or a positive errno value as in QEMU (then the
/// out-parameters are untouched).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_thread_get_affinity(
    thread: *mut QemuThread,
    host_cpus: *mut *mut c_ulong,
    nbits: *mut c_ulong,
) -> c_int {
    ffi_call(c"qemu_thread_get_affinity", || {
        let thread = self::thread(thread)?;
        check_ptr(host_cpus, "host_cpus")?;
        check_ptr(nbits, "nbits")?;
        let (set, bits) = match thread.get_affinity()? {
            Ok(got) => got,
            Err(errno) => return Ok(errno),
        };
        // SAFETY: g_malloc0_n returns a zeroed block of `set.len()` words
        // (it aborts rather than return NULL); it is filled from `set`,
        // which does not overlap it. The out-pointers were checked.
        unsafe {
            let bitmap =
                glib_sys::g_malloc0_n(set.len(), std::mem::size_of::<c_ulong>()).cast::<c_ulong>();
            bitmap.copy_from_nonoverlapping(set.as_ptr(), set.len());
            *host_cpus = bitmap;
            *nbits = bits as c_ulong;
        }
        Ok(0)
    })
}
