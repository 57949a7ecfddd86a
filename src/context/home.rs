//! A context's home thread and its loop claim: binding to a thread
//! (`qemu_set_current_aio_context`), the poller claim of an unbound context,
//! and the [`LoopGuard`] that loop-thread-only code (`aio_poll`,
//! `aio_bh_poll`, ...) holds.

use std::ptr;
use std::sync::atomic::Ordering;

use super::Context;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread;

/// `poller` value while a non-polling thread applies handler changes
/// (never a thread token: those count up from 1, see `thread::thread_token`).
const TRANSIENT_CLAIM: *mut u8 = ptr::without_provenance_mut(usize::MAX);

/// Marks the calling thread as inside a poll of the context; undone on drop.
/// Live guards are also counted per thread (`thread::loop_entered`): a
/// thread that ends inside a callback (`pthread_exit` unwinds past the
/// guard without dropping it) is reported by the thread-exit hook.
pub(crate) struct LoopGuard<'a> {
    ctx: &'a Context,
    /// Set when this guard claimed an unbound context for the thread: the
    /// thread's previous polling context, restored on drop.
    claimed_poller: Option<*const Context>,
    /// The thread's previous innermost loop context (`thread::loop_entered`).
    prev_loop: *const Context,
}

impl Drop for LoopGuard<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let depth = self.ctx.local.depth.get() - 1;
        self.ctx.local.depth.set(depth);
        if depth == 0 {
            // Leaving the loop: BHs scheduled from inside it go before any
            // the thread schedules from outside (`bh/dispatch.rs`).
            self.ctx.bh_dispatch().flush_local();
        }
        thread::loop_left(self.prev_loop);
        if let Some(prev) = self.claimed_poller {
            self.ctx.release_poller(prev);
        }
    }
}

impl Context {
    /// Binds the context to the thread `token` (`qemu_set_current_aio_context`).
    /// The calling thread must be `token`: the binding is cleared when it
    /// exits (`thread::register_home`).
    pub(crate) fn claim_home_thread(&self, token: *mut u8) -> MisuseResult<()> {
        self.home
            .compare_exchange(ptr::null_mut(), token, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| Misuse::new("this context is already bound to another thread"))?;
        thread::register_home(self);
        Ok(())
    }

    /// Unbinds the context from the thread `token`, which is exiting: the
    /// context is bound to no thread again.
    pub(crate) fn release_home_thread(&self, token: *mut u8) {
        let _ =
            self.home
                .compare_exchange(token, ptr::null_mut(), Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Enters loop-thread-only code (`aio_poll`, `aio_bh_poll`, ...), after
    /// checking that the calling thread may: it is the home thread, or the
    /// context is unbound and no other thread is polling it.
    ///
    /// Inline, with everything but the home-thread case out of line: this
    /// runs on every `aio_poll`.
    #[inline(always)]
    pub(crate) fn enter_loop(&self) -> MisuseResult<LoopGuard<'_>> {
        // Also here, not only in `from_handle`: the current context (a
        // thread-local copied by fork) reaches the loop without a handle.
        self.check_fork()?;
        let claimed_poller = if thread::in_home_thread(self) {
            None
        } else {
            self.enter_loop_away_from_home()?
        };
        self.local.depth.set(self.local.depth.get() + 1);
        let prev_loop = thread::loop_entered(self);
        Ok(LoopGuard {
            ctx: self,
            claimed_poller,
            prev_loop,
        })
    }

    /// [`Context::enter_loop`] from a thread for which the context is not
    /// the current one: claims an unbound context for the thread (returns
    /// the thread's previous polling context, for the guard to restore), or
    /// accepts a nested poll or a context bound to this thread.
    #[inline(never)]
    fn enter_loop_away_from_home(&self) -> MisuseResult<Option<*const Context>> {
        let home = self.home.load(Ordering::Acquire);
        let me = thread::thread_token();
        if home.is_null() {
            loop {
                match self.poller.compare_exchange(
                    ptr::null_mut(),
                    me,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(Some(thread::enter_polling(self))),
                    // Re-entered from a nested poll of another context.
                    Err(other) if other == me => return Ok(None),
                    // Another thread is applying a handler removal
                    // (`sync_handlers_if_idle`): a few instructions.
                    Err(other) if other == TRANSIENT_CLAIM => std::thread::yield_now(),
                    Err(_) => {
                        return Err(Misuse::new(
                            "context bound to no thread is already being polled by another thread",
                        ));
                    }
                }
            }
        } else if home != me {
            // `home == me` without being in_home_thread: a context bound
            // to this thread that is not its current one (the main
            // loop's iohandler context).
            return Err(Misuse::new(
                "called outside the context's home thread (the thread bound to it with \
                 qemu_set_current_aio_context, or a BQL holder for the main context)",
            ));
        }
        Ok(None)
    }

    /// Drop of a [`LoopGuard`] that claimed the unbound context: gives the
    /// poller slot back and restores the thread's previous polling context.
    #[inline(never)]
    fn release_poller(&self, prev: *const Context) {
        thread::leave_polling(prev);
        self.poller.store(ptr::null_mut(), Ordering::Release);
    }

    /// Applies pending handler changes of an unbound context from a thread
    /// that is not polling it, if no thread is: claims the poller slot with
    /// a marker that a concurrent `enter_loop` waits out. If a thread is
    /// polling, that poll applies them instead (it is woken).
    pub(super) fn sync_handlers_if_idle(&self) {
        if self
            .poller
            .compare_exchange(
                ptr::null_mut(),
                TRANSIENT_CLAIM,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            self.notify();
            return;
        }
        self.local.depth.set(self.local.depth.get() + 1);
        let prev_loop = thread::loop_entered(self);
        let guard = LoopGuard {
            ctx: self,
            claimed_poller: None,
            prev_loop,
        };
        self.sync_handlers(&guard);
        drop(guard);
        self.poller.store(ptr::null_mut(), Ordering::Release);
    }

    /// Whether no thread is bound to the context and none is polling it.
    pub(crate) fn is_unbound_and_idle(&self) -> bool {
        self.home.load(Ordering::Acquire).is_null() && self.poller.load(Ordering::Acquire).is_null()
    }
}
