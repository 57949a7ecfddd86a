//! One loop iteration (`aio_poll`) and the timeout computation
//! (`aio_compute_timeout`).
//!
//! Order inside one `aio_poll`, as in QEMU: wait (if blocking and nothing is
//! ready), accept the notification, then run bottom halves.
//!
//! A blocking poll arms `notify_me`, then checks for work (`notified`, the
//! BH queue); only if there is none does it sleep. See `notify.rs` for the
//! handshake that makes this race-free. A non-blocking poll never makes a
//! syscall when there is nothing to do.
//!
//! Threading: home thread only (`Context::enter_loop`). Callbacks run with
//! no lock and no `RefCell` borrow held: they may schedule, delete, call
//! `aio_poll` recursively, or drop references.

use crate::context::{Context, LoopGuard};
use crate::fatal::MisuseResult;

impl Context {
    /// `aio_poll`: one iteration; returns whether a callback made progress.
    pub(crate) fn poll(&self, blocking: bool) -> MisuseResult<bool> {
        let guard = self.enter_loop()?;
        if blocking {
            self.notify.arm();
            let timeout = if self.notify.is_notified() {
                0
            } else {
                self.compute_timeout(&guard)
            };
            if timeout != 0 {
                self.wait_for_wakeup(timeout);
            }
            self.notify.disarm();
        }
        self.notify.accept();
        Ok(self.bh_poll(&guard))
    }

    /// `aio_compute_timeout`: ns until the next event; 0 when something is
    /// ready now, -1 when nothing is pending.
    pub(crate) fn compute_timeout(&self, guard: &LoopGuard<'_>) -> i64 {
        self.bh_timeout(guard)
    }
}
