//! Fatal misuse reports: one line `aioctx: <function>: <problem>` on stderr,
//! then `abort()`.
//!
//! Domain code returns [`Misuse`] for contract violations; the FFI boundary
//! (`ffi::boundary`) turns it into a report naming the exported function the
//! C caller used. Warnings use the same prefix and do not abort.
//!
//! Where the core cannot return a `Misuse` (a BH or timer callback of the
//! library, a failed system call deep inside a loop iteration) it reports
//! with [`die_here`], which names the API function this thread is inside:
//! `ffi_call` records it with [`ApiCall`] (a thread-local `&'static str`,
//! set on entry and restored on exit, so a callback that calls back into
//! the API reports its own call and the outer one is named again after it
//! returns; a coroutine switch keeps each side's name). Code that runs on a
//! library-owned thread (thread-pool workers, the `call_rcu` thread, a
//! thread-exit hook), where no API call is active, names its role with
//! [`die`] instead.
//!
//! Only the first fatal report of the process is printed: a thread that
//! detects misuse while another one is already reporting waits for the
//! abort silently, so the output is one line even when several threads fail
//! at once. A report never allocates (the line is formatted on the stack),
//! so it works when memory is exhausted: the global allocator ([`Alloc`])
//! reports a failed allocation as `aioctx: alloc: out of memory (N bytes)`
//! instead of Rust's own message. (Fallible allocations such as
//! `Vec::try_reserve` therefore abort too; the library uses none.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::ffi::{CStr, c_char};
use std::fmt::{self, Write as _};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

/// A contract violation by the C caller, described in a few words.
#[derive(Debug)]
pub(crate) struct Misuse(pub(crate) Cow<'static, str>);

impl Misuse {
    pub(crate) fn new(problem: impl Into<Cow<'static, str>>) -> Self {
        Misuse(problem.into())
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) type MisuseResult<T> = Result<T, Misuse>;

/// Writes the whole line with one `write(2)` so that lines from several
/// threads never interleave, and without taking Rust's stderr lock (a report
/// may be made while another thread holds it).
fn write_stderr_line(line: &str) {
    let mut buf = line.as_bytes();
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid, initialized byte slice for its length.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        buf = &buf[n as usize..];
    }
}

/// A line formatted on the stack: reports must not allocate. Longer text
/// is cut, ending in "..."; the line always ends in a newline.
struct LineBuf {
    buf: [u8; 1024],
    len: usize,
    truncated: bool,
}

impl LineBuf {
    fn new() -> Self {
        LineBuf {
            buf: [0; 1024],
            len: 0,
            truncated: false,
        }
    }

    /// The text and a newline (room for "...\n" is kept in reserve).
    fn finish(&mut self) -> &str {
        let tail: &[u8] = if self.truncated { b"...\n" } else { b"\n" };
        self.buf[self.len..self.len + tail.len()].copy_from_slice(tail);
        self.len += tail.len();
        // Cut at a char boundary by `write_str`, so still UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("aioctx: (unprintable report)\n")
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 4 - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.truncated = true;
        }
        Ok(())
    }
}

/// The kernel thread id of the thread printing the fatal report, or 0.
static DYING: AtomicI32 = AtomicI32::new(0);

/// Registered with `atexit` once (on the first API call): a thread calling
/// `exit()` (returning from `main`) while another one is printing a fatal
/// report waits for that report's `abort()`, so the process does not end
/// with the exit status after the `aioctx:` line was printed (a library
/// thread that ran out of memory while `main` returned).
extern "C" fn wait_for_fatal_report() {
    if DYING.load(Ordering::Acquire) != 0 {
        loop {
            // SAFETY: pause takes no arguments; the dying thread aborts the
            // process, which ends this wait.
            unsafe { libc::pause() };
        }
    }
}

/// See [`wait_for_fatal_report`]. Call once.
pub(crate) fn install_exit_guard() {
    // SAFETY: registers a function with no arguments that only loads an
    // atomic and pauses; a failed registration only loses the guard.
    unsafe { libc::atexit(wait_for_fatal_report) };
}

thread_local! {
    /// The exported function this thread is inside: a static NUL-terminated
    /// name, or null when none. An atomic only so that a store through a
    /// thread-local address computed before a coroutine moved to another
    /// thread (see [`ApiCall`]) is a wrong name, never a data race; all
    /// accesses are Relaxed, plain moves on the machines we target.
    static CURRENT_API: AtomicPtr<c_char> = const { AtomicPtr::new(ptr::null_mut()) };
}

/// What [`die_here`] names when no API call is active on this thread.
const NO_API_CALL: &str = "(no API call active)";

/// The name recorded for [`die_here`]: which API function (or library
/// role) a thread is inside. A thin pointer so that recording it costs one
/// store on every API call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ApiName(*const c_char);

impl ApiName {
    /// No API call active.
    pub(crate) const NONE: ApiName = ApiName(ptr::null());

    /// `func`'s name.
    #[cfg(debug_assertions)]
    pub(crate) fn of(func: &'static CStr) -> ApiName {
        ApiName(func.as_ptr())
    }

    /// The name as text ("" when none).
    pub(crate) fn as_str(self) -> &'static str {
        if self.0.is_null() {
            return "";
        }
        // SAFETY: only `&'static CStr` pointers are ever recorded.
        unsafe { CStr::from_ptr(self.0) }.to_str().unwrap_or("?")
    }
}

/// Records, for [`die_here`], that this thread is inside the exported
/// function (or C entry point, such as a GSource callback) `func` until the
/// guard drops, which restores the name that was current before (a
/// callback that called back into the API leaves its caller's name).
///
/// The restore is inlined, so it stores through the thread-local address
/// computed on entry: the guarded code must not suspend the calling
/// coroutine, which could resume it on another thread. Exported functions
/// that may yield use [`enter_yielding_api`] instead.
#[must_use]
pub(crate) struct ApiCall {
    outer: *mut c_char,
}

impl ApiCall {
    #[inline(always)]
    pub(crate) fn enter(func: &'static CStr) -> ApiCall {
        CURRENT_API.with(|slot| {
            let outer = slot.load(Ordering::Relaxed);
            slot.store(func.as_ptr().cast_mut(), Ordering::Relaxed);
            ApiCall { outer }
        })
    }
}

impl Drop for ApiCall {
    #[inline(always)]
    fn drop(&mut self) {
        CURRENT_API.with(|slot| slot.store(self.outer, Ordering::Relaxed));
    }
}

/// The API name of an exported function whose body is a leaf
/// (`ffi::boundary::ffi_call_leaf`: no callback, no report with
/// [`die_here`] except on a cold path): it is recorded only on that cold
/// path, by [`LazyApiCall::enter`], so the fast path never touches the
/// thread-local. [`die_here`] names the same function as with [`ApiCall`].
#[derive(Clone, Copy)]
pub(crate) struct LazyApiCall(Option<&'static CStr>);

impl LazyApiCall {
    /// The caller's name is already recorded ([`ApiCall`], or a library
    /// thread's role): nothing to do on the slow path.
    pub(crate) const ACTIVE: LazyApiCall = LazyApiCall(None);

    /// `func`, not recorded yet.
    #[inline(always)]
    pub(crate) fn new(func: &'static CStr) -> LazyApiCall {
        LazyApiCall(Some(func))
    }

    /// On a slow path that may report with [`die_here`]: records the name
    /// until the guard drops (nothing if it is already recorded). The same
    /// rule as for [`ApiCall`]: the guarded code must not yield.
    #[inline(always)]
    pub(crate) fn enter(self) -> Option<ApiCall> {
        self.0.map(ApiCall::enter)
    }
}

/// In debug builds, what a leaf body's thread records instead of a name
/// (see `ffi_call_leaf`): [`die_here`] asserts it never sees it, so a
/// leaf body that reports without [`LazyApiCall::enter`] fails loudly.
#[cfg(debug_assertions)]
pub(crate) const UNRECORDED_LEAF: &CStr = c"(leaf API call: name not recorded)";

/// Records `func` for an exported function that may suspend the calling
/// coroutine (`qemu_co_queue_wait`, `qemu_co_sleep_ns`, ...), with no
/// restore: the coroutine may come back on another thread, where the name
/// current before the call means nothing. The name stays until the
/// coroutine's next API call; while the coroutine is switched out its
/// resumer ([`crate::coroutine`]'s enter) keeps it in the coroutine object
/// and puts its own name back, and the next resumer makes it current again
/// before the coroutine continues.
#[inline(always)]
pub(crate) fn enter_yielding_api(func: &'static CStr) {
    set_current_api(ApiName(func.as_ptr()));
}

/// The API function this thread is inside.
#[inline(always)]
pub(crate) fn current_api() -> ApiName {
    ApiName(CURRENT_API.with(|slot| slot.load(Ordering::Relaxed)))
}

/// Makes `name` the API function this thread is inside, without restore.
#[inline(always)]
pub(crate) fn set_current_api(name: ApiName) {
    CURRENT_API.with(|slot| slot.store(name.0.cast_mut(), Ordering::Relaxed));
}

/// Makes `name` the API function this thread is inside and returns the
/// one that was: the resumer of a coroutine (`coroutine::enter`) gives it
/// its own name for the time it runs, and takes it back when it switches
/// out. Inlined, so the caller must stay on its thread between two calls
/// (a resumer does: the coroutine it entered switches back to it there).
#[inline(always)]
pub(crate) fn replace_current_api(name: ApiName) -> ApiName {
    // A load and a store, not a swap: no one else writes this thread's
    // slot, and an atomic swap would be a locked instruction.
    CURRENT_API.with(|slot| {
        let was = slot.load(Ordering::Relaxed);
        slot.store(name.0.cast_mut(), Ordering::Relaxed);
        ApiName(was)
    })
}

/// [`set_current_api`] in a coroutine that may have been switched out and
/// resumed on another thread since it last touched the name (the debug
/// builds' check of `ffi::boundary::ffi_call_yielding_leaf`). Never
/// inlined: the caller must not reuse a thread-local address the compiler
/// computed before the switch, which would be the previous thread's slot.
#[cfg(debug_assertions)]
#[inline(never)]
pub(crate) fn set_current_api_after_switch(name: ApiName) {
    set_current_api(name);
}

fn here() -> &'static str {
    #[cfg(debug_assertions)]
    assert!(
        current_api() != ApiName::of(UNRECORDED_LEAF),
        "die_here in an ffi_call_leaf body outside LazyApiCall::enter"
    );
    match current_api().as_str() {
        "" => NO_API_CALL,
        func => func,
    }
}

/// Reports `problem` for the API function this thread is inside (see
/// [`ApiCall`]) and aborts.
#[cold]
pub(crate) fn die_here(problem: &str) -> ! {
    die_args(here(), format_args!("{problem}"))
}

/// Reports `problem` for the exported function `func` and aborts.
#[cold]
pub(crate) fn die(func: &str, problem: &str) -> ! {
    die_args(func, format_args!("{problem}"))
}

/// [`die`] with a formatted problem (formatted without allocating).
#[cold]
pub(crate) fn die_args(func: &str, problem: fmt::Arguments<'_>) -> ! {
    // SAFETY: gettid takes no arguments and cannot fail.
    let me = unsafe { libc::gettid() };
    match DYING.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {}
        // A report of this same thread failed midway (e.g. in a Display
        // impl): abort without a second line.
        Err(t) if t == me => std::process::abort(),
        // Another thread is reporting and will abort the process.
        Err(_) => loop {
            // SAFETY: pause takes no arguments; it returns after a signal
            // handler ran, hence the loop.
            unsafe { libc::pause() };
        },
    }
    let mut line = LineBuf::new();
    let _ = write!(line, "aioctx: {func}: {problem}");
    write_stderr_line(line.finish());
    std::process::abort()
}

/// Reports a non-fatal problem with the same prefix as [`die`].
#[cold]
pub(crate) fn warn(func: &str, problem: &str) {
    let mut line = LineBuf::new();
    let _ = write!(line, "aioctx: {func}: warning: {problem}");
    write_stderr_line(line.finish());
}

/// [`warn`] for the API function this thread is inside.
#[cold]
pub(crate) fn warn_here(problem: &str) {
    warn(here(), problem)
}

/// The global allocator: the system allocator, with a failed allocation
/// reported by [`die_args`] (one `aioctx:` line) rather than by Rust's
/// default handler.
pub(crate) struct Alloc;

#[global_allocator]
static GLOBAL: Alloc = Alloc;

#[cold]
fn out_of_memory(size: usize) -> ! {
    die_args("alloc", format_args!("out of memory ({size} bytes)"))
}

// SAFETY: every method forwards to `System` with the same arguments and
// returns its result unchanged (a null result never returns at all).
unsafe impl GlobalAlloc for Alloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is System's.
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from System.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from System with `layout`; the caller's
        // contract for `realloc` is System's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory(new_size);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::sync::Mutex;

    use super::{ApiCall, LazyApiCall, current_api, here};

    #[test]
    fn api_call_nests_and_restores() {
        assert_eq!(here(), "(no API call active)");
        {
            let _outer = ApiCall::enter(c"aio_poll");
            assert_eq!(current_api().as_str(), "aio_poll");
            {
                // A callback calling back into the API.
                let _inner = ApiCall::enter(c"qemu_bh_schedule");
                assert_eq!(here(), "qemu_bh_schedule");
            }
            assert_eq!(here(), "aio_poll");
        }
        assert_eq!(current_api().as_str(), "");
    }

    /// A leaf call's name is current only inside its slow path, and only
    /// if it was not recorded already.
    #[test]
    fn lazy_api_call_records_only_on_enter() {
        let _outer = ApiCall::enter(c"aio_poll");
        let lazy = LazyApiCall::new(c"aio_notify");
        assert_eq!(here(), "aio_poll");
        {
            let _slow = lazy.enter();
            assert_eq!(here(), "aio_notify");
        }
        assert_eq!(here(), "aio_poll");
        assert!(LazyApiCall::ACTIVE.enter().is_none());
        assert_eq!(here(), "aio_poll");
    }

    static SEEN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    unsafe extern "C" fn co_body(_: *mut c_void) {
        super::enter_yielding_api(c"qemu_co_mutex_lock");
        crate::coroutine::yield_now().expect("in a coroutine");
        SEEN.lock().unwrap().push(current_api().as_str());
    }

    /// A coroutine resumed by another call is inside the call it yielded
    /// from again, and each resumer gets its own name back.
    #[test]
    fn coroutine_switch_keeps_each_sides_api_name() {
        let co = crate::coroutine::create(co_body, std::ptr::null_mut());
        // SAFETY: just created; alive until it terminates below.
        let co = unsafe { &*co };
        {
            let _call = ApiCall::enter(c"qemu_coroutine_enter");
            crate::coroutine::enter(std::ptr::null(), co).expect("enterable");
            assert_eq!(current_api().as_str(), "qemu_coroutine_enter");
        }
        {
            let _call = ApiCall::enter(c"aio_co_wake");
            crate::coroutine::enter(std::ptr::null(), co).expect("enterable");
            assert_eq!(current_api().as_str(), "aio_co_wake");
        }
        assert_eq!(*SEEN.lock().unwrap(), ["qemu_co_mutex_lock"]);
    }
}
