//! Loop metrics (`aioctx_context_get_stats`): an aioctx extension, not a
//! QEMU API (libuv's `uv_metrics_info` analogue).
//!
//! Cheap enough to stay on. Two kinds of counter, kept apart:
//! - [`LoopCounters`], in the context's loop-local state: written only by
//!   the thread inside the context's loop (the one holding a `LoopGuard`;
//!   `enter_loop` admits one thread at a time, handing an unbound context
//!   over with Acquire/Release). Each is an `AtomicU64` updated with a
//!   Relaxed load and a Relaxed store, never a read-modify-write: on x86-64
//!   and AArch64 that is two plain `mov`s, the cost of a `Cell`, and it lets
//!   any thread read the counters without a data race.
//! - `aio_notify` outcomes: the number of calls is the notify protocol's
//!   own counter (`notify.rs`: each call increments it anyway, so counting
//!   costs nothing); [`NotifyCounters`] counts those that wrote the eventfd
//!   (an RMW, next to the syscall, on a cache line of its own so it never
//!   shares one with the loop's hot fields); the elided ones are the
//!   difference. A call that is about to write counts as elided until it
//!   has written: a reader racing with it may see `notify_elided` drop by
//!   one as `notify_writes` rises.
//!
//! `--cfg aioctx_no_stats` turns every update into a no-op, and drops the
//! two clock reads around each wait that only `blocked_ns` needs
//! ([`blocked_clock`], used by `aio_poll.rs` and the io_uring monitor):
//! only `make bench-stats` builds it, to measure what the counting costs.
//! Those clock reads (the TSC where it is trusted, ~10 ns each, see
//! `tick_clock.rs`; else the vDSO's ~20 ns) were the counters' main cost on
//! a blocking poll whose wait returns at once; a poll whose fds are ready
//! before it waits now skips them (`aio_poll/ready_probe.rs`).
//!
//! A reader gets each counter's value at some recent moment; fields are not
//! a consistent snapshot of each other (a poll in progress may have counted
//! one and not yet the next). All counters wrap at 2^64.

use std::sync::atomic::{AtomicU64, Ordering};

/// The start of a wait that `blocked_ns` measures: the clock (in
/// [`tick_clock`](crate::tick_clock) ticks), or None in the
/// `aioctx_no_stats` build (see the module docs). End it with
/// [`blocked_ns_since`].
#[inline(always)]
pub(crate) fn blocked_clock() -> Option<u64> {
    (!cfg!(aioctx_no_stats)).then(crate::tick_clock::now_ticks)
}

/// Nanoseconds since `t0` from [`blocked_clock`]; None if it read none.
#[inline(always)]
pub(crate) fn blocked_ns_since(t0: Option<u64>) -> Option<u64> {
    t0.map(|t0| crate::tick_clock::ns_between(t0, crate::tick_clock::now_ticks()))
}

/// A counter with a single writer at a time (see the module docs).
#[derive(Default)]
pub(crate) struct OwnedCounter(AtomicU64);

impl OwnedCounter {
    /// Adds `n`. Only the thread in the context's loop calls this.
    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        // The benchmark build that measures what counting costs.
        if cfg!(aioctx_no_stats) {
            return;
        }
        // Load + store, not fetch_add: one writer at a time, so no update is
        // lost, and no locked instruction on the hot path.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline(always)]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters the loop thread keeps (in `LoopLocal`).
#[derive(Default)]
pub(crate) struct LoopCounters {
    /// `aio_poll` calls, plus GSource / `aio_dispatch` dispatches.
    pub(crate) iterations: OwnedCounter,
    pub(crate) bhs_run: OwnedCounter,
    /// `io_read`, `io_write` and `io_poll_ready` calls of fd handlers.
    pub(crate) fd_callbacks: OwnedCounter,
    /// The same for event-notifier handlers (`aio_set_event_notifier`).
    pub(crate) notifier_callbacks: OwnedCounter,
    pub(crate) timers_fired: OwnedCounter,
    /// Nanoseconds `aio_poll` spent blocked waiting (not busy-polling).
    pub(crate) blocked_ns: OwnedCounter,
    /// Busy-poll windows that found work, and those that ran out.
    pub(crate) poll_hits: OwnedCounter,
    pub(crate) poll_misses: OwnedCounter,
}

/// `aio_notify` calls that wrote the eventfd, counted by any thread, so
/// padded to share no cache line with the context's other fields. Padding,
/// not `repr(align(64))`: a context lives in memory from `g_source_new`,
/// which is only 16-byte aligned.
#[derive(Default)]
#[repr(C)]
pub(crate) struct NotifyCounters {
    _before: CacheLinePad,
    writes: AtomicU64,
    _after: CacheLinePad,
}

/// A cache line of padding.
struct CacheLinePad {
    _bytes: [u8; 64],
}

impl Default for CacheLinePad {
    fn default() -> Self {
        CacheLinePad { _bytes: [0; 64] }
    }
}

impl NotifyCounters {
    /// An `aio_notify`, already counted by the notify protocol, that writes
    /// the wakeup eventfd.
    #[inline]
    pub(crate) fn record_write(&self) {
        if cfg!(aioctx_no_stats) {
            return;
        }
        // Release: a reader that sees this write also sees the call counted
        // (`collect`).
        self.writes.fetch_add(1, Ordering::Release);
    }
}

/// `AioctxStats`: loop metrics of one context, filled by
/// `aioctx_context_get_stats` (an aioctx extension, not a QEMU API).
///
/// Versioned by its first member: set `size` to `sizeof(AioctxStats)`
/// before the call (`AioctxStats s = { .size = sizeof s };`). The library
/// fills the members that fit in `size` bytes and sets `size` to the number
/// of bytes it filled, so a program built against an older, shorter struct
/// keeps working when members are added (only ever at the end; none is ever
/// removed or moved). All counters count from the context's creation and
/// wrap at 2^64.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AioctxStats {
    /// In: `sizeof(AioctxStats)` as the caller knows it. Out: bytes filled.
    pub size: usize,
    /// Loop iterations: `aio_poll` calls (nested ones included) and
    /// dispatches driven by the context's GSource or `aio_dispatch`.
    pub iterations: u64,
    /// Bottom-half callbacks run (oneshot and `aio_co_schedule` BHs too).
    pub bhs_run: u64,
    /// fd-handler callbacks run (`io_read`, `io_write`, `io_poll_ready` of
    /// handlers set with `aio_set_fd_handler` / `qemu_set_fd_handler`).
    pub fd_callbacks: u64,
    /// Event-notifier callbacks run (`aio_set_event_notifier` handlers).
    pub notifier_callbacks: u64,
    /// Timer callbacks the context's loop ran (its own timer lists; timers
    /// run with `timerlist_run_timers` or `qemu_clock_run_timers` directly
    /// are not counted).
    pub timers_fired: u64,
    /// `aio_notify` calls that wrote the wakeup eventfd (a poller was, or
    /// was about to be, blocked).
    pub notify_writes: u64,
    /// `aio_notify` calls that made no syscall (nobody blocked).
    pub notify_elided: u64,
    /// Nanoseconds `aio_poll` spent blocked in the fd monitor or the wakeup
    /// eventfd with a non-zero timeout (busy polling is not blocked time, nor
    /// is a wait that found an fd ready at once; waits inside a GLib main
    /// loop are GLib's and are not counted).
    pub blocked_ns: u64,
    /// Busy-poll windows that found work before running out.
    pub poll_hits: u64,
    /// Busy-poll windows that ran out, so the loop went on to block.
    pub poll_misses: u64,
    /// The current adaptive busy-poll window, in ns (0: not polling; the
    /// same value as `aioctx_context_get_poll_ns`).
    pub poll_window_ns: i64,
}

/// The bytes of [`AioctxStats`] before its first counter.
pub(crate) const STATS_HEADER_BYTES: usize = std::mem::size_of::<usize>();

// No padding anywhere (so a byte-wise partial copy copies only initialized
// bytes): a 64-bit `size` followed by 8-byte members.
const _: () = assert!(std::mem::size_of::<AioctxStats>() == 8 + 11 * 8);

/// Reads the counters (any thread; see the module docs). `notify_calls`:
/// the notify protocol's count, read after `notify` (then it counts at
/// least every call `notify` counted as a write, so the difference never
/// underflows).
pub(crate) fn collect(
    local: &LoopCounters,
    notify: &NotifyCounters,
    notify_calls: impl FnOnce() -> u64,
    window_ns: i64,
) -> AioctxStats {
    // Acquire, paired with `record_write`'s Release: every write read here
    // was counted as a call before it.
    let writes = notify.writes.load(Ordering::Acquire);
    let calls = notify_calls();
    AioctxStats {
        size: std::mem::size_of::<AioctxStats>(),
        iterations: local.iterations.get(),
        bhs_run: local.bhs_run.get(),
        fd_callbacks: local.fd_callbacks.get(),
        notifier_callbacks: local.notifier_callbacks.get(),
        timers_fired: local.timers_fired.get(),
        notify_writes: writes,
        notify_elided: calls.wrapping_sub(writes),
        blocked_ns: local.blocked_ns.get(),
        poll_hits: local.poll_hits.get(),
        poll_misses: local.poll_misses.get(),
        poll_window_ns: window_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_counter_adds_and_wraps() {
        let c = OwnedCounter::default();
        c.incr();
        c.add(2);
        assert_eq!(c.get(), 3);
        c.add(u64::MAX);
        assert_eq!(c.get(), 2);
    }

    #[test]
    fn notify_counters_sit_on_their_own_cache_line() {
        let n = NotifyCounters::default();
        let base = std::ptr::from_ref(&n) as usize;
        let size = std::mem::size_of::<NotifyCounters>();
        let field = std::ptr::from_ref(&n.writes) as usize;
        assert!(field - base >= 64 && base + size - field >= 64 + 8);
        // Three calls, one of which wrote.
        n.record_write();
        let s = collect(&LoopCounters::default(), &n, || 3, 7);
        assert_eq!(
            (s.notify_writes, s.notify_elided, s.poll_window_ns),
            (1, 2, 7)
        );
        assert_eq!(s.size, std::mem::size_of::<AioctxStats>());
    }
}
