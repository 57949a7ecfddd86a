//! The coroutine object (`Coroutine *`): QEMU's visible `struct Coroutine`
//! bytes followed by the library's private state ([`CoBox`]), its
//! allocation with a stack and trampoline, freeing into the quarantine, the
//! handle check, the scheduling marks (`scheduled_by`, so a second schedule
//! is reported with the first scheduler), the wakeup queue, and
//! `qemu_coroutine_create`.
//!
//! Threading: see the module docs of `coroutine/mod.rs`; fields other
//! threads touch are atomics, the `Cell`s belong to the coroutine's current
//! owner.

use std::cell::{Cell, UnsafeCell};
use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use corosensei::Yielder;
use corosensei::stack::DefaultStack;

use super::{Action, EntryFn, STACK_SIZE, Stackful, current, pool, tsan};
use crate::bh::describe_fn;
use crate::context::Context;
use crate::fatal::{self, ApiName, Misuse, MisuseResult};
use crate::quarantine::{Quarantine, release_box};

/// The bytes C sees as `struct Coroutine` (QEMU's field order; the size is
/// exported as `AIOCTX_COROUTINE_SIZE` and checked by `qemu/coroutine_int.h`).
/// The library writes `entry`, `entry_arg`, `caller`, `ctx`, `scheduled` and
/// `locks_held` while the coroutine is live, as mirrors of its private
/// state, and never reads them.
#[repr(C)]
pub(crate) struct Visible {
    entry: *mut c_void,
    entry_arg: *mut c_void,
    pub(super) caller: *mut c_void,
    pool_next: *mut c_void,
    locks_held: usize,
    pub(super) ctx: *mut c_void,
    scheduled: *const c_char,
    co_queue_next: *mut c_void,
    co_queue_wakeup: [*mut c_void; 2],
    co_scheduled_next: *mut c_void,
}

/// `sizeof(struct Coroutine)` in `qemu/coroutine_int.h`.
pub(crate) const VISIBLE_SIZE: usize = 88;
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Visible>() == VISIBLE_SIZE);

/// `CoPrivate::magic` of every coroutine object (created, pooled or a
/// thread's leader): what tells a coroutine from garbage.
const CO_MAGIC_LIVE: u32 = 0x434f_524f; // "CORO"
/// `CoPrivate::magic` of a freed object (its stack unmapped when a pool was
/// trimmed), kept in [`QUARANTINE`] for a while.
const CO_MAGIC_DEAD: u32 = 0x4445_4144; // "DEAD"

/// Freed coroutine objects (without their stacks), so that a stale handle
/// is reported as freed rather than read from reused memory.
static QUARANTINE: Quarantine<CoBox> = Quarantine::new(release_box);

/// Life-cycle states of a coroutine object (`CoPrivate::state`).
pub(super) const STATE_FREE: u32 = 0; // in a pool (terminated), or the leader
const STATE_CREATED: u32 = 1; // created, not terminated

/// Who asked for a coroutine to be entered later (`CoPrivate::scheduled_by`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum Scheduler {
    AioCoSchedule = 1,
    QemuCoSleep = 2,
}

impl Scheduler {
    fn c_name(self) -> &'static CStr {
        match self {
            Scheduler::AioCoSchedule => c"aio_co_schedule",
            Scheduler::QemuCoSleep => c"qemu_co_sleep_ns",
        }
    }
}

/// The library's state of a coroutine. Fields that other threads touch are
/// atomics; the `Cell`s belong to whoever runs or owns the coroutine at the
/// time (its resumer, or the holder of the lock of the list it is on).
pub(crate) struct CoPrivate {
    /// [`CO_MAGIC_LIVE`] or [`CO_MAGIC_DEAD`]. Never in the visible bytes:
    /// QEMU's `struct Coroutine` has no such field, and its inline code and
    /// macros read only the first [`VISIBLE_SIZE`] bytes.
    magic: AtomicU32,
    pub(super) coro: UnsafeCell<Option<Stackful>>,
    /// The trampoline's yielder, set when the stack first runs.
    pub(super) yielder: Cell<*const Yielder<(), Action>>,
    entry: Cell<Option<EntryFn>>,
    arg: Cell<*mut c_void>,
    pub(super) state: AtomicU32,
    /// The coroutine that entered this one (null while not entered).
    pub(super) caller: Cell<*mut CoBox>,
    /// Token of the thread running it, null when switched out.
    pub(super) running_on: AtomicPtr<u8>,
    /// The context it last ran in (`qemu_coroutine_get_aio_context`).
    pub(super) ctx: AtomicPtr<Context>,
    /// 0, or the [`Scheduler`] that will enter it.
    pub(super) scheduled_by: AtomicU32,
    /// Entry point of the coroutine that scheduled it (null: not a coroutine).
    scheduler_entry: AtomicPtr<c_void>,
    /// Link in the wakeup queue, the enter loop's pending list, a CoQueue.
    pub(crate) queue_next: Cell<*mut CoBox>,
    /// Link in a context's scheduled list.
    pub(crate) sched_next: crate::atomics::AtomicPtr<CoBox>,
    /// Link in a CoMutex's waiter list.
    pub(crate) mutex_next: Cell<*mut CoBox>,
    /// Coroutines to enter once this one yields or terminates.
    pub(super) wakeup_head: Cell<*mut CoBox>,
    pub(super) wakeup_tail: Cell<*mut CoBox>,
    pub(super) locks_held: Cell<usize>,
    /// The API function the coroutine is inside ([`fatal::die_here`])
    /// while it is switched out: its resumer saves the thread's name here
    /// when the coroutine switches back, and makes it the thread's name
    /// again before it resumes the coroutine (see `switch::enter`). None
    /// for a coroutine that has not run yet.
    pub(super) api: Cell<ApiName>,
    /// TSan builds: this object's fiber (see `tsan.rs`); null otherwise.
    pub(super) tsan_fiber: Cell<*mut c_void>,
}

/// One coroutine object; C's `Coroutine *` points at `visible`, which is at
/// offset 0, so the handle and the allocation are the same address.
#[repr(C)]
pub(crate) struct CoBox {
    visible: UnsafeCell<Visible>,
    pub(crate) p: CoPrivate,
}

// SAFETY: the coroutine is handed between threads by the scheduling
// protocol (module docs); non-atomic state is only touched by the thread
// currently owning the coroutine. The C entry and argument are the C
// caller's responsibility, as in QEMU.
unsafe impl Send for CoBox {}
// SAFETY: as above.
unsafe impl Sync for CoBox {}

impl CoBox {
    pub(super) fn blank() -> CoBox {
        CoBox {
            // SAFETY: `Visible` is pointers and integers: all-zero is valid.
            visible: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            p: CoPrivate {
                magic: AtomicU32::new(CO_MAGIC_LIVE),
                coro: UnsafeCell::new(None),
                yielder: Cell::new(ptr::null()),
                entry: Cell::new(None),
                arg: Cell::new(ptr::null_mut()),
                state: AtomicU32::new(STATE_FREE),
                caller: Cell::new(ptr::null_mut()),
                running_on: AtomicPtr::new(ptr::null_mut()),
                ctx: AtomicPtr::new(ptr::null_mut()),
                scheduled_by: AtomicU32::new(0),
                scheduler_entry: AtomicPtr::new(ptr::null_mut()),
                queue_next: Cell::new(ptr::null_mut()),
                sched_next: crate::atomics::AtomicPtr::new(ptr::null_mut()),
                mutex_next: Cell::new(ptr::null_mut()),
                wakeup_head: Cell::new(ptr::null_mut()),
                wakeup_tail: Cell::new(ptr::null_mut()),
                locks_held: Cell::new(0),
                api: Cell::new(ApiName::NONE),
                tsan_fiber: Cell::new(ptr::null_mut()),
            },
        }
    }

    /// A new object with its own stack and trampoline (not yet run). Out
    /// of line: the pools serve most creations.
    #[cold]
    #[inline(never)]
    fn allocate() -> *mut CoBox {
        let co = Box::into_raw(Box::new(CoBox::blank()));
        let stack = DefaultStack::new(STACK_SIZE).unwrap_or_else(|e| {
            fatal::die_here(&format!(
                "cannot map a {STACK_SIZE}-byte coroutine stack: {e}"
            ))
        });
        let handle = CoPtr(co);
        let coro = Stackful::with_stack(stack, move |yielder, ()| {
            let co = handle;
            // SAFETY: the object outlives its stack (freed together).
            let p = unsafe { &(*co.0).p };
            p.yielder.set(ptr::from_ref(yielder));
            loop {
                let entry = p.entry.get().expect("coroutine entered without an entry");
                // SAFETY: the C caller gave this entry point for this argument.
                unsafe { entry(p.arg.get()) };
                yielder.suspend(Action::Terminate);
            }
        });
        // SAFETY: fresh object, not shared yet.
        unsafe {
            *(*co).p.coro.get() = Some(coro);
            (*co).p.tsan_fiber.set(tsan::create_fiber());
        }
        co
    }

    /// Frees an object that is not running (pool trimming): its stack is
    /// unmapped now, the object itself is marked dead and quarantined.
    ///
    /// # Safety
    /// `co` came from [`CoBox::allocate`], is switched out, and no one uses
    /// it again.
    pub(super) unsafe fn free(co: *mut CoBox) {
        // SAFETY: exclusive per the caller.
        let b = unsafe { &mut *co };
        if let Some(mut coro) = b.p.coro.get_mut().take() {
            // SAFETY: the trampoline is suspended at `suspend` with only
            // `Copy` values live on its stack: nothing needs dropping, so
            // the stack may be discarded without unwinding.
            unsafe { coro.force_reset() };
            drop(coro);
        }
        // SAFETY: switched out (per the caller) and never used again.
        unsafe { tsan::destroy_fiber(b.p.tsan_fiber.get()) };
        b.p.magic.store(CO_MAGIC_DEAD, Ordering::Release);
        // SAFETY: a box (from `allocate`), dead, owned by nobody else now.
        unsafe { QUARANTINE.keep(co) };
    }

    /// The C handle.
    pub(crate) fn handle(co: *mut CoBox) -> *mut c_void {
        co.cast()
    }

    /// Validates a C handle: NULL, a misaligned pointer, memory without
    /// the coroutine magic (garbage) and a freed object are each reported
    /// as such.
    ///
    /// # Safety
    /// `co` is null or points at readable memory of at least a `CoBox`
    /// (any handle `qemu_coroutine_create` or `qemu_coroutine_self`
    /// returned, even a stale one while its object is quarantined). A wild
    /// pointer into unmapped memory still faults: no cheap check exists.
    #[inline(always)]
    pub(crate) unsafe fn from_handle<'a>(co: *mut c_void) -> MisuseResult<&'a CoBox> {
        if co.is_null() || !co.cast::<CoBox>().is_aligned() {
            return Err(bad_handle(co, 0));
        }
        // SAFETY: per the caller; pooled and freed objects stay allocated
        // (the latter in the quarantine for a while).
        let b = unsafe { &*co.cast::<CoBox>() };
        match b.p.magic.load(Ordering::Acquire) {
            CO_MAGIC_LIVE => Ok(b),
            magic => Err(bad_handle(co, magic)),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut CoBox {
        ptr::from_ref(self).cast_mut()
    }

    pub(super) fn vis(&self) -> *mut Visible {
        self.visible.get()
    }

    pub(super) fn is_leader(&self) -> bool {
        // SAFETY: only reads whether the Option is Some; the object is live.
        unsafe { (*self.p.coro.get()).is_none() }
    }

    /// The coroutine's name for messages: its entry point's symbol.
    pub(crate) fn describe(&self) -> String {
        if self.is_leader() {
            return "(thread leader, not a coroutine)".into();
        }
        match self.p.entry.get() {
            Some(f) => describe_fn(f as *const c_void),
            None => "(unknown entry)".into(),
        }
    }

    /// `qemu_coroutine_entered`: entered and not yielded (running, or
    /// waiting for a coroutine it entered).
    pub(crate) fn entered(&self) -> bool {
        !self.p.caller.get().is_null()
    }

    /// `qemu_coroutine_get_aio_context`.
    pub(crate) fn context(&self) -> *const Context {
        self.p.ctx.load(Ordering::Acquire)
    }

    pub(crate) fn locks_held_add(&self, delta: isize) {
        let n = self.p.locks_held.get().wrapping_add_signed(delta);
        self.p.locks_held.set(n);
        // SAFETY: live coroutine; a plain store into the C-visible mirror.
        unsafe { (*self.vis()).locks_held = n };
    }

    /// Marks the coroutine as to be entered by `by` (a BH or a timer).
    /// Fails, naming the first scheduler, if it already is.
    pub(crate) fn mark_scheduled(&self, by: Scheduler) -> MisuseResult<()> {
        if let Err(first) =
            self.p
                .scheduled_by
                .compare_exchange(0, by as u32, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(Misuse::new(format!(
                "coroutine '{}' was already scheduled by {}{}; it must run before it is scheduled again",
                self.describe(),
                scheduler_name(first),
                self.scheduler_text()
            )));
        }
        let me = current();
        let entry = if me.is_null() {
            ptr::null_mut()
        } else {
            // SAFETY: the running coroutine is alive.
            unsafe { &*me }
                .p
                .entry
                .get()
                .map_or(ptr::null_mut(), |f| f as *mut c_void)
        };
        self.p.scheduler_entry.store(entry, Ordering::Relaxed);
        self.vis_scheduled()
            .store(by.c_name().as_ptr().cast_mut(), Ordering::Relaxed);
        Ok(())
    }

    /// Undoes [`CoBox::mark_scheduled`] just before the entry it announced.
    pub(crate) fn clear_scheduled(&self) {
        self.vis_scheduled()
            .store(ptr::null_mut(), Ordering::Relaxed);
        self.p.scheduled_by.store(0, Ordering::Release);
    }

    /// The C-visible `scheduled` mirror, written atomically: any thread may
    /// schedule a coroutine it got through a relaxed store (no
    /// happens-before with `create`'s writes; TSan found this).
    fn vis_scheduled(&self) -> &AtomicPtr<c_char> {
        // SAFETY: the field is an aligned pointer inside the live object,
        // only ever accessed atomically by the library.
        unsafe { AtomicPtr::from_ptr(ptr::addr_of_mut!((*self.vis()).scheduled).cast()) }
    }

    pub(super) fn scheduler_text(&self) -> String {
        let f = self.p.scheduler_entry.load(Ordering::Relaxed);
        if f.is_null() {
            " (called outside any coroutine)".into()
        } else {
            format!(" (called from coroutine '{}')", describe_fn(f))
        }
    }

    /// Appends `co` to this coroutine's wakeup queue (`aio_co_enter` from
    /// a coroutine): it is entered once this one yields or terminates.
    pub(crate) fn push_wakeup(&self, co: &CoBox) {
        co.p.queue_next.set(ptr::null_mut());
        let tail = self.p.wakeup_tail.get();
        if tail.is_null() {
            self.p.wakeup_head.set(co.as_ptr());
        } else {
            // SAFETY: queued coroutines are alive and owned by this queue.
            unsafe { (*tail).p.queue_next.set(co.as_ptr()) };
        }
        self.p.wakeup_tail.set(co.as_ptr());
    }
}

/// The report for a handle [`CoBox::from_handle`] rejected (`magic`: what
/// it read there, 0 if it could not read).
#[cold]
#[inline(never)]
fn bad_handle(co: *mut c_void, magic: u32) -> Misuse {
    if co.is_null() {
        Misuse::new("Coroutine is NULL")
    } else if !co.cast::<CoBox>().is_aligned() {
        Misuse::new(format!(
            "Coroutine {co:p} is not a valid coroutine (misaligned pointer)"
        ))
    } else if magic == CO_MAGIC_DEAD {
        Misuse::new(format!(
            "Coroutine {co:p} was already freed (it terminated and its pool was trimmed)"
        ))
    } else {
        Misuse::new(format!(
            "Coroutine {co:p} is not a valid coroutine (no coroutine magic: garbage or freed memory)"
        ))
    }
}

pub(super) fn scheduler_name(raw: u32) -> &'static str {
    match raw {
        1 => "aio_co_schedule",
        2 => "qemu_co_sleep_ns (it is sleeping)",
        _ => "an unknown scheduler",
    }
}

/// A raw object pointer the trampoline closure may capture.
#[derive(Clone, Copy)]
struct CoPtr(*mut CoBox);
// SAFETY: the trampoline only dereferences it on the coroutine's stack,
// while the coroutine runs (see `CoBox`'s Send/Sync).
unsafe impl Send for CoPtr {}

/// `qemu_coroutine_create`: a coroutine that will run `entry(arg)` when
/// first entered. Taken from a pool when possible.
#[inline]
pub(crate) fn create(entry: EntryFn, arg: *mut c_void) -> *mut CoBox {
    let co = pool::take().unwrap_or_else(CoBox::allocate);
    // SAFETY: ours until returned; nobody else references a pooled object.
    let b = unsafe { &*co };
    b.p.entry.set(Some(entry));
    b.p.arg.set(arg);
    b.p.caller.set(ptr::null_mut());
    b.p.ctx.store(ptr::null_mut(), Ordering::Relaxed);
    b.p.locks_held.set(0);
    b.p.api.set(ApiName::NONE);
    b.p.state.store(STATE_CREATED, Ordering::Relaxed);
    // SAFETY: handing the object out: the visible bytes are (re)initialized,
    // each field on its own (`scheduled` atomically, see `vis_scheduled`).
    unsafe {
        let v = b.vis();
        (*v).entry = entry as *mut c_void;
        (*v).entry_arg = arg;
        (*v).caller = ptr::null_mut();
        (*v).pool_next = ptr::null_mut();
        (*v).locks_held = 0;
        (*v).ctx = ptr::null_mut();
        (*v).co_queue_next = ptr::null_mut();
        (*v).co_queue_wakeup = [ptr::null_mut(); 2];
        (*v).co_scheduled_next = ptr::null_mut();
    }
    b.vis_scheduled().store(ptr::null_mut(), Ordering::Relaxed);
    co
}
