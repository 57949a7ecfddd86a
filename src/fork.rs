//! `fork()` (docs/spec/api.md has no rule; this is the library's, see README "fork"):
//! objects created before a `fork()` belong to the parent. In the child,
//! the threads behind them (IOThreads, pool workers) do not exist, and the
//! wakeup eventfds and fd monitors are shared with the parent, so using
//! them would hang or steal the parent's wakeups. The child may create and
//! use new objects; any use of a pre-fork context (or of its BHs, timers
//! and pools), IOThread or thread pool is a fatal error:
//! `aioctx: <function>: AioContext was created before fork(); the child
//! must create its own`.
//!
//! Detection: a `pthread_atfork` child handler, registered when the first
//! object is created, bumps a process-wide fork generation; every object
//! records the generation it was created in and compares it on use (one
//! relaxed load).

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fatal::{Misuse, MisuseResult};

/// Forks this process has gone through since the handler was registered
/// (the child's count is one more than its parent's).
static GENERATION: AtomicU32 = AtomicU32::new(0);
static REGISTER: Once = Once::new();

/// Runs in the child right after `fork()`: async-signal-safe (one atomic).
extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The current fork generation, to record in a new object (registers the
/// `pthread_atfork` handler the first time).
pub(crate) fn generation() -> u32 {
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that lives for the whole process.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            // Any API call creating a context, IOThread or pool.
            crate::fatal::die_here(&format!("pthread_atfork failed (error {rc})"));
        }
    });
    GENERATION.load(Ordering::Relaxed)
}

/// Fails if an object of kind `what` created in generation `created` is
/// used after a `fork()` (in a child).
#[inline(always)]
pub(crate) fn check(created: u32, what: &'static str) -> MisuseResult<()> {
    if is_current(created) {
        Ok(())
    } else {
        Err(forked(what))
    }
}

/// [`check`] as a yes/no (for `Handle::is_usable`).
#[inline(always)]
pub(crate) fn is_current(created: u32) -> bool {
    GENERATION.load(Ordering::Relaxed) == created
}

/// The problem [`check`] reports.
#[cold]
#[inline(never)]
pub(crate) fn forked(what: &'static str) -> Misuse {
    Misuse::new(format!(
        "{what} was created before fork(); the child must create its own"
    ))
}
