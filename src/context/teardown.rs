//! Context teardown (`aio_context_unref` dropping the last reference):
//! callers' io_uring requests (cancelled, completed: `sqe.rs`), the thread pool, the BHs (`bh/dispatch.rs`), fd handlers, the GSource,
//! the timers and the thread binding go, then the dead shell is
//! quarantined (`memory.rs`).

use std::ptr;
use std::sync::atomic::Ordering;

use super::memory::QUARANTINE;
use super::{CTX_MAGIC_DEAD, Context, block_hooks};
use crate::fatal;
use crate::gsource;
use crate::handlers::HandlersLocal;
use crate::thread;

impl Context {
    /// Tears the context down (last reference gone).
    ///
    /// # Safety
    /// `ctx` is live and nobody else holds a reference.
    pub(super) unsafe fn destroy(ctx: *mut Context) {
        // Reports name the API call that dropped the last reference
        // (`aio_context_unref`, or e.g. `aioctx_iothread_join`).
        {
            // Shared: callbacks below reach the context through its handle.
            // SAFETY: live until the end of this function.
            let shared = unsafe { &*ctx };
            if shared.local.depth.get() != 0 {
                fatal::die_here(
                    "last reference dropped while the context is being polled (from one of its own callbacks)",
                );
            }
            if ptr::eq(thread::main_context(), ctx) {
                fatal::die_here("the main context cannot be freed");
            }
            // While the context is whole: the handlers may still use it.
            shared.cancel_user_requests();
        }
        // SAFETY: live, and ours alone now.
        let r = unsafe { &mut *ctx };
        // Before any memory goes: a bound thread exiting now must not see it.
        thread::forget_home(r);
        // SAFETY: the context is still whole; the hook (a no-op unless the
        // program has a block layer) unlinks it before it goes away.
        unsafe { block_hooks::unregister_aiocontext(ctx.cast()) };

        // The pool first: it waits for its jobs and deletes its BH.
        r.thread_pool.teardown();

        // With AIOCTX_DUMP_ON_LEAK=1 and a BH never deleted: the dump first.
        // SAFETY: the context is ours alone.
        unsafe { crate::dump::report_leak(r) };
        // Queued BHs (a scheduled one is fatal) and BHs never deleted.
        // SAFETY: the context is ours alone, so are its BHs.
        unsafe { r.bhs.teardown(&r.bh_queue) };

        for fd in r.handlers.clear() {
            fatal::warn_here(&format!(
                "fd {fd} still has handlers; removing them (call aio_set_fd_handler with NULLs first)"
            ));
        }
        *r.local.handlers.get_mut() = HandlersLocal::default();
        r.local.watches_fds.set(false);
        gsource::detach(r.source_ptr());
        r.timers.teardown();
        thread::unbind_if_current(r);
        r.wakeup.cleanup();
        r.magic.store(CTX_MAGIC_DEAD, Ordering::Release);

        // Keep the dead shell for a while so stale handles are reported.
        // SAFETY: `ctx` is dead and given up here; `release_shell` frees it.
        unsafe { QUARANTINE.keep(ctx) };
    }
}
