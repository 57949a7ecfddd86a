//! `QemuThread` (`qemu/thread.h`): `qemu_thread_create/join/exit`, names,
//! affinity. QEMU's 8-byte layout (the pthread handle); the joinable or
//! detached mode is kept in a side table keyed by handle so that joining a
//! detached thread or joining twice is reported. The exported functions are
//! in `ffi/qemu_thread.rs`.
//!
//! Threading: any thread may create; only one thread may join a joinable
//! thread, once.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{CStr, CString, c_int, c_ulong, c_void};
use std::mem::MaybeUninit;
use std::ptr;

use crate::fatal::{Misuse, MisuseResult};
use crate::sync::pthread_result;

// ---------------------------------------------------------------------------
// QemuThread

/// `qemu_thread_create` mode: the thread must be joined with
/// `qemu_thread_join`, which returns its result.
pub const QEMU_THREAD_JOINABLE: c_int = 0;
/// `qemu_thread_create` mode: the thread's resources are freed when it
/// exits; it cannot be joined.
pub const QEMU_THREAD_DETACHED: c_int = 1;
/// The longest name Linux keeps for a thread (`comm`, without the NUL).
const THREAD_NAME_MAX: usize = 15;

/// A thread handle (`qemu_thread_*`), filled in by `qemu_thread_create` or
/// `qemu_thread_get_self`. QEMU's layout: only the pthread handle. Whether
/// the thread is joinable is kept out of line (a table in the library).
#[repr(C)]
pub struct QemuThread {
    /// The pthread handle.
    pub thread: UnsafeCell<libc::pthread_t>,
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(offset_of!(QemuThread, thread) == 0);
    assert!(size_of::<QemuThread>() == size_of::<libc::pthread_t>());
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    assert!(size_of::<QemuThread>() == 8 && align_of::<QemuThread>() == 8);
};

/// The mode of every live thread `qemu_thread_create` started, by pthread
/// handle, so that joining a detached thread or joining twice aborts
/// instead of being undefined. A joinable thread's entry is removed when it
/// is joined (its handle cannot be reused before); a detached thread's entry
/// is inserted by its creator under this lock and removed by the thread
/// itself at exit (TLS destructor), before its handle can be reused. A
/// handle not in the table was already joined, or belongs to a thread
/// `qemu_thread_create` did not start.
static THREAD_MODES: std::sync::Mutex<Vec<(libc::pthread_t, c_int)>> =
    std::sync::Mutex::new(Vec::new());

fn thread_modes() -> std::sync::MutexGuard<'static, Vec<(libc::pthread_t, c_int)>> {
    THREAD_MODES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes `handle`'s entry; returns its mode if there was one.
fn take_thread_mode(
    modes: &mut Vec<(libc::pthread_t, c_int)>,
    handle: libc::pthread_t,
) -> Option<c_int> {
    let i = modes.iter().position(|&(h, _)| h == handle)?;
    Some(modes.swap_remove(i).1)
}

/// Owned by a detached thread: its drop (at thread exit, also after
/// `qemu_thread_exit`) removes the thread's entry from [`THREAD_MODES`].
struct DetachedEntry(libc::pthread_t);

impl Drop for DetachedEntry {
    fn drop(&mut self) {
        take_thread_mode(&mut thread_modes(), self.0);
    }
}

thread_local! {
    /// Whether `qemu_thread_create` started this thread (only those run
    /// their thread-exit notifiers, as in QEMU).
    static CREATED: Cell<bool> = const { Cell::new(false) };
    static DETACHED_ENTRY: Cell<Option<DetachedEntry>> = const { Cell::new(None) };
}

/// A thread's start routine, as C declares it: `void *(*)(void *)`.
pub(crate) type StartRoutine = unsafe extern "C" fn(*mut c_void) -> *mut c_void;

/// What a new thread needs; owned by the new thread once it runs.
struct StartArgs {
    routine: StartRoutine,
    arg: *mut c_void,
    name: Option<CString>,
    detached: bool,
}

/// The first function of every thread `create` starts: names the thread,
/// then runs the caller's routine. Nothing with a destructor lives across
/// that call, so `qemu_thread_exit` (a forced unwind) may end the thread.
extern "C" fn thread_start(opaque: *mut c_void) -> *mut c_void {
    // SAFETY: `opaque` is the box `create` leaked for this thread, handed
    // over exactly once.
    let args = unsafe { Box::from_raw(opaque.cast::<StartArgs>()) };
    if let Some(name) = &args.name {
        // Best effort, as in QEMU: a thread without a name still runs.
        // SAFETY: `name` is a NUL-terminated string of at most 15 bytes.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    }
    if args.detached {
        // SAFETY: pthread_self always succeeds.
        let me = unsafe { libc::pthread_self() };
        DETACHED_ENTRY.with(|e| e.set(Some(DetachedEntry(me))));
    }
    CREATED.with(|c| c.set(true));
    let (routine, arg) = (args.routine, args.arg);
    drop(args);
    // SAFETY: the caller of `qemu_thread_create` passed `routine` for `arg`.
    let result = unsafe { routine(arg) };
    // QEMU's pthread_cleanup_pop(1) of qemu_thread_atexit_notify.
    crate::thread_exit::notify_all();
    result
}

/// The first 15 bytes of `name` (what Linux keeps), if any.
fn thread_name(name: Option<&CStr>) -> Option<CString> {
    let bytes = name?.to_bytes();
    let bytes = &bytes[..bytes.len().min(THREAD_NAME_MAX)];
    Some(CString::new(bytes).expect("a CStr has no interior NUL"))
}

impl QemuThread {
    fn handle(&self) -> libc::pthread_t {
        // SAFETY: plain read of the caller's handle; the contract forbids
        // writing it concurrently.
        unsafe { *self.thread.get() }
    }

    /// `qemu_thread_create`: starts `routine(arg)` in a new thread named
    /// `name` (truncated to 15 bytes). As in QEMU the new thread starts with
    /// every signal blocked except SIGSEGV, SIGFPE and SIGILL (signal
    /// handling is left to the main thread); the caller's mask is unchanged.
    pub(crate) fn create(
        &self,
        name: Option<&CStr>,
        routine: StartRoutine,
        arg: *mut c_void,
        mode: c_int,
    ) -> MisuseResult<()> {
        let detached = match mode {
            QEMU_THREAD_JOINABLE => false,
            QEMU_THREAD_DETACHED => true,
            other => {
                return Err(Misuse::new(format!(
                    "mode {other} is neither QEMU_THREAD_JOINABLE nor QEMU_THREAD_DETACHED"
                )));
            }
        };
        let args = Box::new(StartArgs {
            routine,
            arg,
            name: thread_name(name),
            detached,
        });

        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        let mut blocked = MaybeUninit::<libc::sigset_t>::uninit();
        let mut old_mask = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `attr` and the signal sets are initialized by their init
        // calls before use; `attr` is destroyed once. pthread_create writes
        // the handle straight into the caller's struct (as QEMU does), so it
        // is there before the new thread can look at it. On success the new
        // thread owns `args`; on failure it is reclaimed here.
        unsafe {
            pthread_result(
                "pthread_attr_init",
                libc::pthread_attr_init(attr.as_mut_ptr()),
            )?;
            if detached {
                libc::pthread_attr_setdetachstate(attr.as_mut_ptr(), libc::PTHREAD_CREATE_DETACHED);
            }
            libc::sigfillset(blocked.as_mut_ptr());
            for sig in [libc::SIGSEGV, libc::SIGFPE, libc::SIGILL] {
                libc::sigdelset(blocked.as_mut_ptr(), sig);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, blocked.as_ptr(), old_mask.as_mut_ptr());
            let args = Box::into_raw(args);
            // Held across pthread_create so that a detached thread's exit
            // cannot remove its entry before it is inserted.
            let mut modes = thread_modes();
            let rc =
                libc::pthread_create(self.thread.get(), attr.as_ptr(), thread_start, args.cast());
            if rc == 0 {
                let handle = *self.thread.get();
                take_thread_mode(&mut modes, handle);
                modes.push((handle, mode));
            }
            drop(modes);
            libc::pthread_sigmask(libc::SIG_SETMASK, old_mask.as_ptr(), ptr::null_mut());
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            if rc != 0 {
                drop(Box::from_raw(args));
            }
            pthread_result("pthread_create", rc)
        }
    }

    /// `qemu_thread_join`: waits for a joinable thread to end and returns
    /// its result.
    pub(crate) fn join(&self) -> MisuseResult<*mut c_void> {
        let handle = self.handle();
        if handle == 0 {
            return Err(Misuse::new(
                "QemuThread was not filled in by qemu_thread_create",
            ));
        }
        // SAFETY: pthread_equal compares two handles.
        if unsafe { libc::pthread_equal(handle, libc::pthread_self()) } != 0 {
            return Err(Misuse::new("a thread cannot join itself"));
        }
        {
            let mut modes = thread_modes();
            match modes.iter().find(|&&(h, _)| h == handle).map(|&(_, m)| m) {
                Some(QEMU_THREAD_JOINABLE) => {
                    // Taken now: a second join (even a concurrent one) aborts.
                    take_thread_mode(&mut modes, handle);
                }
                Some(_) => {
                    return Err(Misuse::new(
                        "thread was created with QEMU_THREAD_DETACHED and cannot be joined",
                    ));
                }
                None => {
                    return Err(Misuse::new(
                        "thread is not joinable: not started by qemu_thread_create, already joined, or a QEMU_THREAD_DETACHED thread that has ended",
                    ));
                }
            }
        }
        let mut result = ptr::null_mut();
        // SAFETY: `handle` is a joinable thread that nobody joined before
        // (its entry was in the table and is now taken); `result` is a live
        // out-parameter.
        let rc = unsafe { libc::pthread_join(handle, &mut result) };
        pthread_result("pthread_join", rc)?;
        Ok(result)
    }

    /// `qemu_thread_get_self`: a handle for the calling thread.
    pub(crate) fn get_self(&self) {
        // SAFETY: writes the caller's struct, which no other thread may use
        // meanwhile.
        unsafe { *self.thread.get() = libc::pthread_self() };
    }

    /// `qemu_thread_is_self`.
    pub(crate) fn is_self(&self) -> bool {
        // SAFETY: pthread_equal compares two handles.
        unsafe { libc::pthread_equal(self.handle(), libc::pthread_self()) != 0 }
    }

    /// The handle, which must have been filled in (by `create` or
    /// `get_self`).
    fn filled_handle(&self) -> MisuseResult<libc::pthread_t> {
        match self.handle() {
            0 => Err(Misuse::new(
                "QemuThread was not filled in by qemu_thread_create or qemu_thread_get_self",
            )),
            handle => Ok(handle),
        }
    }

    /// `qemu_thread_set_affinity`: restricts the thread to the CPUs whose
    /// bits are set among the first `nbits` bits of `host_cpus` (QEMU's
    /// bitmap: bit `i` is bit `i % BITS` of word `i / BITS`, which is also
    /// `cpu_set_t`'s layout). 0 or an errno value, positive as pthread's (QEMU's convention;
    /// `EINVAL`: no usable CPU set).
    pub(crate) fn set_affinity(&self, host_cpus: &[c_ulong], nbits: usize) -> MisuseResult<c_int> {
        let handle = self.filled_handle()?;
        if nbits > AFFINITY_MAX_BITS || host_cpus.len() != bitmap_words(nbits) {
            return Ok(libc::EINVAL);
        }
        // At least one word, so that an empty set is passed as one (EINVAL).
        let mut set = vec![0 as c_ulong; bitmap_words(nbits).max(1)];
        set[..host_cpus.len()].copy_from_slice(host_cpus);
        if !nbits.is_multiple_of(ULONG_BITS) {
            // Bits past `nbits` are not the caller's.
            set[nbits / ULONG_BITS] &= (1 << (nbits % ULONG_BITS)) - 1;
        }
        // SAFETY: `set` is an initialized buffer of the size passed; the
        // kernel reads it as a cpu_set_t of that size. `handle` is a thread
        // the caller vouches for (filled in, not yet joined).
        let rc = unsafe {
            libc::pthread_setaffinity_np(
                handle,
                std::mem::size_of_val(set.as_slice()),
                set.as_ptr().cast(),
            )
        };
        Ok(rc)
    }

    /// `qemu_thread_get_affinity`: the thread's CPU set as a bitmap of
    /// `nbits` bits (a multiple of the word size, at least `CPU_SETSIZE`),
    /// or the (positive) errno value.
    pub(crate) fn get_affinity(&self) -> MisuseResult<Result<(Vec<c_ulong>, usize), c_int>> {
        let handle = self.filled_handle()?;
        let mut nbits = libc::CPU_SETSIZE as usize;
        loop {
            let mut set = vec![0 as c_ulong; bitmap_words(nbits)];
            // SAFETY: `set` is a writable buffer of the size passed; as in
            // `set_affinity` for `handle`.
            let rc = unsafe {
                libc::pthread_getaffinity_np(
                    handle,
                    std::mem::size_of_val(set.as_slice()),
                    set.as_mut_ptr().cast(),
                )
            };
            match rc {
                0 => return Ok(Ok((set, nbits))),
                // The kernel has more CPUs than the buffer holds.
                libc::EINVAL if nbits < AFFINITY_MAX_BITS => nbits *= 2,
                rc => return Ok(Err(rc)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The library's own threads

/// A thread the library starts for itself (an IOThread, a thread-pool
/// worker, the `call_rcu` thread), started by [`spawn_lib_thread`].
///
/// These are plain pthreads, not `std::thread`s: std allocates every thread
/// handle it makes (at each `std::thread` spawn, and at the first
/// `std::thread::current()` of a thread it did not start) with the `System`
/// allocator, bypassing the library's global allocator, so an out-of-memory
/// there was reported by std ("memory allocation of N bytes failed" and a
/// backtrace) instead of the library's one line (issue 15). Here every
/// allocation goes through the global allocator (`fatal::Alloc`). Nothing
/// in these threads may call `std::thread::current()`, park or `ThreadId`.
///
/// Dropping the value detaches the thread (as dropping a `JoinHandle`
/// does); [`LibThread::join`] waits for it instead.
pub(crate) struct LibThread {
    handle: libc::pthread_t,
}

// SAFETY: a pthread handle may be used (joined, compared) from any thread.
unsafe impl Send for LibThread {}
// SAFETY: `&LibThread` only compares the handle (`is_current`).
unsafe impl Sync for LibThread {}

/// What a [`spawn_lib_thread`] thread runs; owned by it once it runs.
struct LibStart {
    name: CString,
    body: Box<dyn FnOnce() + Send>,
}

extern "C" fn lib_thread_start(opaque: *mut c_void) -> *mut c_void {
    // SAFETY: `opaque` is the box `spawn_lib_thread` leaked for this
    // thread, handed over exactly once.
    let start = unsafe { Box::from_raw(opaque.cast::<LibStart>()) };
    // Best effort, as std's Builder::name: a thread without a name runs.
    // SAFETY: `name` is a NUL-terminated string of at most 15 bytes.
    unsafe { libc::pthread_setname_np(libc::pthread_self(), start.name.as_ptr()) };
    let LibStart { name, body } = *start;
    drop(name);
    body();
    ptr::null_mut()
}

/// Starts `body` on a new joinable pthread named `name` (the first 15
/// bytes), with the pthread default attributes and the caller's signal
/// mask (block signals around the call to start it with them blocked).
/// A failed pthread_create is returned as the `std::io::Error` of its errno,
/// the error (and text) `std::thread::Builder::spawn` gave.
pub(crate) fn spawn_lib_thread(
    name: &str,
    body: Box<dyn FnOnce() + Send>,
) -> std::io::Result<LibThread> {
    let name = name.as_bytes();
    let name = &name[..name.len().min(THREAD_NAME_MAX)];
    let name = CString::new(
        name.iter()
            .copied()
            .filter(|&b| b != 0)
            .collect::<Vec<u8>>(),
    )
    .expect("NUL bytes were filtered out");
    let start = Box::into_raw(Box::new(LibStart { name, body }));
    let mut handle = MaybeUninit::<libc::pthread_t>::uninit();
    // SAFETY: `handle` is a writable out-parameter; default attributes. On
    // success the new thread owns `start`.
    let rc = unsafe {
        libc::pthread_create(
            handle.as_mut_ptr(),
            ptr::null(),
            lib_thread_start,
            start.cast(),
        )
    };
    if rc != 0 {
        // SAFETY: the thread was not created: `start` is still ours.
        drop(unsafe { Box::from_raw(start) });
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(LibThread {
        // SAFETY: pthread_create succeeded and filled it in.
        handle: unsafe { handle.assume_init() },
    })
}

impl LibThread {
    /// Whether the calling thread is this one.
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: pthread_equal compares two handles.
        unsafe { libc::pthread_equal(self.handle, libc::pthread_self()) != 0 }
    }

    /// Waits for the thread to end. Must not be called by the thread itself.
    pub(crate) fn join(self) {
        let handle = self.handle;
        std::mem::forget(self);
        // SAFETY: a joinable thread, joined once (`self` is consumed and
        // its detaching drop skipped).
        let rc = unsafe { libc::pthread_join(handle, ptr::null_mut()) };
        if rc != 0 {
            crate::fatal::die_here(&format!(
                "pthread_join failed: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
    }
}

impl Drop for LibThread {
    fn drop(&mut self) {
        // SAFETY: a joinable thread nobody joined or detached before.
        unsafe { libc::pthread_detach(self.handle) };
    }
}

/// Bits in a bitmap word (`unsigned long`).
const ULONG_BITS: usize = c_ulong::BITS as usize;
/// The largest CPU bitmap the affinity functions handle (far above Linux's
/// `NR_CPUS` limit of 8192).
pub(crate) const AFFINITY_MAX_BITS: usize = 1 << 20;

/// Words of a bitmap of `nbits` bits (QEMU's `BITS_TO_LONGS`).
pub(crate) fn bitmap_words(nbits: usize) -> usize {
    nbits.div_ceil(ULONG_BITS)
}

/// `qemu_thread_exit`: ends the calling thread with result `retval`.
///
/// pthread_exit unwinds the thread's stack (a forced unwind): the caller
/// must not hold a panic boundary or values with destructors.
pub(crate) fn exit_thread(retval: *mut c_void) -> ! {
    // QEMU runs the thread-exit notifiers from a cleanup handler of the
    // threads it creates; here, before the unwind starts.
    if CREATED.with(Cell::get) {
        crate::thread_exit::notify_all();
    }
    // SAFETY: ends only the calling thread; `retval` is handed to the joiner
    // untouched.
    unsafe { libc::pthread_exit(retval) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    extern "C" fn return_arg(arg: *mut c_void) -> *mut c_void {
        arg
    }

    fn in_table(handle: libc::pthread_t) -> bool {
        thread_modes().iter().any(|&(h, _)| h == handle)
    }

    fn new_thread() -> QemuThread {
        QemuThread {
            thread: UnsafeCell::new(0),
        }
    }

    #[test]
    fn lib_thread_runs_named_and_is_joined() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let seen = Arc::new(std::sync::Mutex::new(None::<(Vec<u8>, bool)>));
        let gate = Arc::new(AtomicBool::new(false));
        let (s, g) = (Arc::clone(&seen), Arc::clone(&gate));
        let t = Arc::new(std::sync::Mutex::new(None::<LibThread>));
        let t2 = Arc::clone(&t);
        let handle = spawn_lib_thread(
            "a-rather-long-thread-name",
            Box::new(move || {
                while !g.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                let mut buf = [0 as libc::c_char; 16];
                // SAFETY: `buf` is a writable 16-byte buffer.
                let rc = unsafe {
                    libc::pthread_getname_np(libc::pthread_self(), buf.as_mut_ptr(), buf.len())
                };
                assert_eq!(rc, 0);
                // SAFETY: pthread_getname_np wrote a NUL-terminated string.
                let name = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_bytes().to_vec();
                let current = t2.lock().unwrap().as_ref().unwrap().is_current();
                *s.lock().unwrap() = Some((name, current));
            }),
        )
        .unwrap();
        assert!(!handle.is_current());
        *t.lock().unwrap() = Some(handle);
        gate.store(true, Ordering::Release);
        let handle = loop {
            if seen.lock().unwrap().is_some() {
                break t.lock().unwrap().take().unwrap();
            }
            std::thread::yield_now();
        };
        handle.join();
        let (name, current) = seen.lock().unwrap().take().unwrap();
        assert_eq!(name, b"a-rather-long-t");
        assert!(current, "is_current must hold in the thread itself");
    }

    #[test]
    fn joined_thread_leaves_the_mode_table() {
        let t = new_thread();
        t.create(None, return_arg, 7 as *mut c_void, QEMU_THREAD_JOINABLE)
            .unwrap();
        assert!(in_table(t.handle()));
        assert_eq!(t.join().unwrap(), 7 as *mut c_void);
        assert!(!in_table(t.handle()));
        assert!(t.join().is_err(), "a second join must be refused");
    }

    #[test]
    fn detached_thread_leaves_the_mode_table_at_exit() {
        let threads: Vec<QemuThread> = (0..8).map(|_| new_thread()).collect();
        for t in &threads {
            t.create(None, return_arg, ptr::null_mut(), QEMU_THREAD_DETACHED)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // A handle may be reused by a later thread of another test, which
        // would put it back: wait until each one was seen absent once.
        let mut gone = vec![false; threads.len()];
        while !gone.iter().all(|&g| g) {
            for (t, g) in threads.iter().zip(gone.iter_mut()) {
                *g |= !in_table(t.handle());
            }
            assert!(
                Instant::now() < deadline,
                "detached entries were not removed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
