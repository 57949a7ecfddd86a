//! Stackful coroutines (`qemu/coroutine.h`, `qemu/coroutine-core.h`:
//! `qemu_coroutine_create`, `qemu_coroutine_enter`,
//! `qemu_aio_coroutine_enter`, `qemu_coroutine_yield`,
//! `qemu_coroutine_self`, `qemu_in_coroutine`, `qemu_coroutine_entered`).
//!
//! A coroutine is a C entry function running on its own stack: 1 MiB of
//! address space mapped lazily (only touched pages cost memory) with a guard
//! page below it, so an overflow faults instead of corrupting memory. The
//! switch is corosensei's; each stack runs one persistent trampoline
//! (`loop { entry(arg); suspend(Terminate) }`, as QEMU's
//! coroutine-ucontext does), so a pooled coroutine is reused without
//! touching its stack setup: create+enter+terminate is two switches.
//!
//! Objects: a coroutine is one allocation, [`CoBox`]: first the bytes C sees
//! as `struct Coroutine` (`qemu/coroutine_int.h`, QEMU's fields), then the
//! library's private state. The visible bytes are written only while the
//! coroutine is live (create, enter, yield, lock counts) and never after it
//! terminated, until `qemu_coroutine_create` hands the same object out
//! again: a caller may copy a dead coroutine away, scribble on it and copy
//! it back.
//!
//! Entering follows QEMU's `qemu_aio_coroutine_enter`: the entered
//! coroutine runs until it yields or terminates, then the coroutines it
//! woke with `aio_co_enter` (its wakeup queue) run from the same loop, so
//! hand-offs never nest stacks.
//!
//! Threading: a coroutine runs in one thread at a time; it may yield in one
//! thread and be entered in another (`aio_co_schedule`). While it runs, its
//! `running_on` word holds the thread's token; the thread that resumed it
//! clears it (Release) only once the coroutine's stack is fully switched
//! out, and a scheduled entry in another thread waits for that (Acquire).
//! The per-thread "current coroutine" is a thread-local that is read
//! through non-inlined accessors, so no code caches it across a switch.

mod mutex;
mod pool;
mod queue;
mod rwlock;
mod schedule;
mod sleep;
mod tsan;

use std::cell::{Cell, UnsafeCell};
use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine as Coro, CoroutineResult, Yielder};

pub(crate) use self::mutex::CoMutexCore;
pub(crate) use self::pool::{dec_pool_size, inc_pool_size};
pub(crate) use self::queue::{CoQueueCore, Lockable, QueueWaitFlags};
pub(crate) use self::rwlock::CoRwlockCore;
pub(crate) use self::schedule::{
    ScheduledCoroutines, aio_co_enter, aio_co_reschedule_self, aio_co_schedule, aio_co_wake,
};
pub(crate) use self::sleep::{SleepCore, co_sleep, co_sleep_ns_wakeable, co_sleep_wake};
use crate::bh::describe_fn;
use crate::context::Context;
use crate::fatal::{self, Misuse, MisuseResult};
use crate::quarantine::{Quarantine, release_box};
use crate::thread;

/// Usable stack of each coroutine (QEMU's default, `COROUTINE_STACK_SIZE`).
pub(crate) const STACK_SIZE: usize = 1 << 20;

/// A C coroutine entry point (`CoroutineEntry *`), already checked non-NULL.
pub(crate) type EntryFn = unsafe extern "C" fn(opaque: *mut c_void);

/// What a coroutine tells its resumer when it switches back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Action {
    Yield,
    Terminate,
}

type Stackful = Coro<(), Action, (), DefaultStack>;

/// The bytes C sees as `struct Coroutine` (QEMU's field order; the size is
/// exported as `AIOCTX_COROUTINE_SIZE` and checked by `qemu/coroutine_int.h`).
/// The library writes `entry`, `entry_arg`, `caller`, `ctx`, `scheduled` and
/// `locks_held` while the coroutine is live, as mirrors of its private
/// state, and never reads them.
#[repr(C)]
pub(crate) struct Visible {
    entry: *mut c_void,
    entry_arg: *mut c_void,
    caller: *mut c_void,
    pool_next: *mut c_void,
    locks_held: usize,
    ctx: *mut c_void,
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
const STATE_FREE: u32 = 0; // in a pool (terminated), or the leader
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
    coro: UnsafeCell<Option<Stackful>>,
    /// The trampoline's yielder, set when the stack first runs.
    yielder: Cell<*const Yielder<(), Action>>,
    entry: Cell<Option<EntryFn>>,
    arg: Cell<*mut c_void>,
    state: AtomicU32,
    /// The coroutine that entered this one (null while not entered).
    caller: Cell<*mut CoBox>,
    /// Token of the thread running it, null when switched out.
    running_on: AtomicPtr<u8>,
    /// The context it last ran in (`qemu_coroutine_get_aio_context`).
    ctx: AtomicPtr<Context>,
    /// 0, or the [`Scheduler`] that will enter it.
    scheduled_by: AtomicU32,
    /// Entry point of the coroutine that scheduled it (null: not a coroutine).
    scheduler_entry: AtomicPtr<c_void>,
    /// Link in the wakeup queue, the enter loop's pending list, a CoQueue.
    pub(crate) queue_next: Cell<*mut CoBox>,
    /// Link in a context's scheduled list.
    pub(crate) sched_next: AtomicPtr<CoBox>,
    /// Link in a CoMutex's waiter list.
    pub(crate) mutex_next: Cell<*mut CoBox>,
    /// Coroutines to enter once this one yields or terminates.
    wakeup_head: Cell<*mut CoBox>,
    wakeup_tail: Cell<*mut CoBox>,
    locks_held: Cell<usize>,
    /// TSan builds: this object's fiber (see `tsan.rs`); null otherwise.
    tsan_fiber: Cell<*mut c_void>,
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

thread_local! {
    /// The running coroutine of this thread, null outside coroutines.
    static CURRENT: Cell<*mut CoBox> = const { Cell::new(ptr::null_mut()) };
    /// The thread's "leader": what `qemu_coroutine_self` returns outside a
    /// coroutine. Never entered.
    static LEADER: Box<CoBox> = Box::new(CoBox::blank());
}

/// The running coroutine, or null. Not inlined: a coroutine may switch
/// threads between two calls, and the thread-local's address must be
/// recomputed each time.
#[inline(never)]
pub(crate) fn current() -> *mut CoBox {
    CURRENT.with(Cell::get)
}

#[inline(never)]
fn set_current(co: *mut CoBox) {
    CURRENT.with(|c| c.set(co));
}

/// `qemu_coroutine_self`: the running coroutine, or this thread's leader.
pub(crate) fn self_or_leader() -> *mut CoBox {
    let co = current();
    if co.is_null() {
        LEADER.with(|l| ptr::from_ref::<CoBox>(l).cast_mut())
    } else {
        co
    }
}

/// The running coroutine, or a misuse naming what needs one.
pub(crate) fn require_current(what: &str) -> MisuseResult<&'static CoBox> {
    let co = current();
    if co.is_null() {
        return Err(Misuse::new(format!(
            "{what} must be called from a coroutine (this thread is not running one)"
        )));
    }
    // SAFETY: the running coroutine is alive while it runs.
    Ok(unsafe { &*co })
}

impl CoBox {
    fn blank() -> CoBox {
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
                sched_next: AtomicPtr::new(ptr::null_mut()),
                mutex_next: Cell::new(ptr::null_mut()),
                wakeup_head: Cell::new(ptr::null_mut()),
                wakeup_tail: Cell::new(ptr::null_mut()),
                locks_held: Cell::new(0),
                tsan_fiber: Cell::new(ptr::null_mut()),
            },
        }
    }

    /// A new object with its own stack and trampoline (not yet run).
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
    unsafe fn free(co: *mut CoBox) {
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
    pub(crate) unsafe fn from_handle<'a>(co: *mut c_void) -> MisuseResult<&'a CoBox> {
        if co.is_null() {
            return Err(Misuse::new("Coroutine is NULL"));
        }
        if !co.cast::<CoBox>().is_aligned() {
            return Err(Misuse::new(format!(
                "Coroutine {co:p} is not a valid coroutine (misaligned pointer)"
            )));
        }
        // SAFETY: per the caller; pooled and freed objects stay allocated
        // (the latter in the quarantine for a while).
        let b = unsafe { &*co.cast::<CoBox>() };
        match b.p.magic.load(Ordering::Acquire) {
            CO_MAGIC_LIVE => Ok(b),
            CO_MAGIC_DEAD => Err(Misuse::new(format!(
                "Coroutine {co:p} was already freed (it terminated and its pool was trimmed)"
            ))),
            _ => Err(Misuse::new(format!(
                "Coroutine {co:p} is not a valid coroutine (no coroutine magic: garbage or freed memory)"
            ))),
        }
    }

    pub(crate) fn as_ptr(&self) -> *mut CoBox {
        ptr::from_ref(self).cast_mut()
    }

    fn vis(&self) -> *mut Visible {
        self.visible.get()
    }

    fn is_leader(&self) -> bool {
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

    fn scheduler_text(&self) -> String {
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

fn scheduler_name(raw: u32) -> &'static str {
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
pub(crate) fn create(entry: EntryFn, arg: *mut c_void) -> *mut CoBox {
    let co = pool::take().unwrap_or_else(CoBox::allocate);
    // SAFETY: ours until returned; nobody else references a pooled object.
    let b = unsafe { &*co };
    b.p.entry.set(Some(entry));
    b.p.arg.set(arg);
    b.p.caller.set(ptr::null_mut());
    b.p.ctx.store(ptr::null_mut(), Ordering::Relaxed);
    b.p.locks_held.set(0);
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

/// Checks that `to` may be entered now.
fn check_enterable(to: &CoBox) -> MisuseResult<()> {
    if to.is_leader() {
        return Err(Misuse::new(
            "this Coroutine is a thread's leader (qemu_coroutine_self outside a coroutine), not a coroutine",
        ));
    }
    if to.p.state.load(Ordering::Relaxed) == STATE_FREE {
        return Err(Misuse::new(format!(
            "coroutine '{}' has terminated (its object was returned to the pool)",
            to.describe()
        )));
    }
    let by = to.p.scheduled_by.load(Ordering::Acquire);
    if by != 0 {
        return Err(Misuse::new(format!(
            "coroutine '{}' is scheduled by {}{}; entering it now would enter it twice",
            to.describe(),
            scheduler_name(by),
            to.scheduler_text()
        )));
    }
    if !to.p.caller.get().is_null() || !to.p.running_on.load(Ordering::Acquire).is_null() {
        return Err(Misuse::new(format!(
            "coroutine '{}' is already running (entered and not yielded); re-entering it is not allowed",
            to.describe()
        )));
    }
    Ok(())
}

/// `qemu_aio_coroutine_enter`: runs `co` (in `ctx`) until it yields or
/// terminates, then the coroutines it woke, depth first, from this loop.
pub(crate) fn enter(ctx: *const Context, co: &CoBox) -> MisuseResult<()> {
    check_enterable(co)?;
    let from = current();
    // `caller` is never null while entered: outside coroutines it is the
    // thread's leader.
    let caller = if from.is_null() {
        self_or_leader()
    } else {
        from
    };
    let me = thread::thread_token();
    co.p.queue_next.set(ptr::null_mut());
    let mut pending: *mut CoBox = co.as_ptr();
    while !pending.is_null() {
        // SAFETY: coroutines on the pending list are alive and ours to run.
        let to = unsafe { &*pending };
        pending = to.p.queue_next.get();
        if !ptr::eq(to, co) {
            check_enterable(to)?;
        }
        to.p.caller.set(caller);
        to.p.ctx.store(ctx.cast_mut(), Ordering::Release);
        to.p.running_on.store(me, Ordering::Relaxed);
        // SAFETY: live; C-visible mirrors.
        unsafe {
            (*to.vis()).caller = caller.cast();
            (*to.vis()).ctx = ctx.cast_mut().cast();
        }
        set_current(to.as_ptr());
        // The resumer's API function (`fatal::die_here`) is its own again
        // after the switch back, whatever the coroutine entered meanwhile.
        let resumer_api = fatal::current_api();
        let resumer_fiber = tsan::current_fiber();
        // SAFETY: the coroutine's fiber is live; the resume below switches.
        unsafe { tsan::switch_to_fiber(to.p.tsan_fiber.get()) };
        // SAFETY: `running_on` makes this thread the coroutine's only
        // resumer; the Option is Some for non-leaders (checked above).
        let result = unsafe { (*to.p.coro.get()).as_mut().unwrap_unchecked() }.resume(());
        // SAFETY: our own fiber is live (it is running this code).
        unsafe { tsan::switch_to_fiber(resumer_fiber) };
        fatal::set_current_api(resumer_api);
        set_current(from);
        let action = match result {
            CoroutineResult::Yield(a) => a,
            CoroutineResult::Return(()) => unreachable!("the trampoline never returns"),
        };
        // Coroutines it woke run next, before older pending ones.
        let head = to.p.wakeup_head.replace(ptr::null_mut());
        if !head.is_null() {
            let tail = to.p.wakeup_tail.replace(ptr::null_mut());
            // SAFETY: queued coroutines are alive.
            unsafe { (*tail).p.queue_next.set(pending) };
            pending = head;
        }
        to.p.caller.set(ptr::null_mut());
        if action == Action::Terminate {
            if to.p.locks_held.get() != 0 {
                return Err(Misuse::new(format!(
                    "coroutine '{}' terminated while holding {} CoMutex/CoRwlock lock(s)",
                    to.describe(),
                    to.p.locks_held.get()
                )));
            }
            to.p.state.store(STATE_FREE, Ordering::Relaxed);
            to.p.running_on.store(ptr::null_mut(), Ordering::Release);
            // SAFETY: terminated: the object is ours again.
            unsafe { pool::give_back(to.as_ptr()) };
        } else {
            // SAFETY: live (it only yielded); C-visible mirror.
            unsafe { (*to.vis()).caller = ptr::null_mut() };
            // From here another thread may enter it.
            to.p.running_on.store(ptr::null_mut(), Ordering::Release);
        }
    }
    Ok(())
}

/// `qemu_coroutine_yield`: back to whoever entered the running coroutine.
pub(crate) fn yield_now() -> MisuseResult<()> {
    let co = require_current("qemu_coroutine_yield")?;
    // SAFETY: set by the trampoline before any C code ran on this stack;
    // the yielder lives at the base of the coroutine's stack.
    let yielder = unsafe { &*co.p.yielder.get() };
    // Resumed (maybe by another API call, or in another thread), the
    // coroutine is inside the call it yielded from again (`die_here`).
    let api = fatal::current_api();
    yielder.suspend(Action::Yield);
    fatal::set_current_api(api);
    Ok(())
}

/// Spins until `co` is switched out of the thread running it (it was
/// scheduled while "about to yield"). Fails if that thread is this one.
pub(crate) fn wait_switched_out(co: &CoBox) -> MisuseResult<()> {
    let me = thread::thread_token();
    let mut spins = 0u32;
    loop {
        let on = co.p.running_on.load(Ordering::Acquire);
        if on.is_null() {
            return Ok(());
        }
        if on == me {
            return Err(Misuse::new(format!(
                "coroutine '{}' was scheduled and is entered from its own thread while it still runs",
                co.describe()
            )));
        }
        spins += 1;
        if spins < 100 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}
