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

//!
//! Files: `object.rs` the coroutine object and `qemu_coroutine_create`,
//! `switch.rs` the per-thread current coroutine, enter and yield,
//! `pool.rs` the per-thread pools of terminated objects, `schedule.rs`
//! `aio_co_*` (coroutines and contexts), `mutex.rs`, `queue.rs`,
//! `rwlock.rs` and `sleep.rs` the coroutine locks and sleeps
//! (`comutex_handoff.rs` the `CoMutex` hand-off protocol, generic so that
//! loom checks it), `tsan.rs` the TSan fiber announcements.

pub mod comutex_handoff;
mod mutex;
mod object;
mod pool;
mod queue;
mod rwlock;
mod schedule;
mod sleep;
mod switch;
mod tsan;

use std::ffi::c_void;

use corosensei::Coroutine as Coro;
use corosensei::stack::DefaultStack;

pub(crate) use self::mutex::CoMutexCore;
pub(crate) use self::object::{CoBox, Scheduler, VISIBLE_SIZE, create};
pub(crate) use self::pool::{dec_pool_size, inc_pool_size};
pub(crate) use self::queue::{CoQueueCore, Lockable, QueueWaitFlags};
pub(crate) use self::rwlock::CoRwlockCore;
pub(crate) use self::schedule::{
    ScheduledCoroutines, aio_co_enter, aio_co_reschedule_self, aio_co_schedule, aio_co_wake,
    describe_scheduled,
};
pub(crate) use self::sleep::{SleepCore, co_sleep, co_sleep_ns_wakeable, co_sleep_wake};
pub(crate) use self::switch::{
    current, enter, require_current, self_or_leader, wait_switched_out, yield_now,
};

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
