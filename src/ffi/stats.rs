//! Loop metrics (`aioctx_context_get_stats`): an aioctx extension, not a
//! QEMU API. See `src/stats.rs`.

use std::ptr;

use super::boundary::{context, ffi_call};
use super::types::{AioContext, AioctxStats};
use crate::fatal::Misuse;
use crate::stats::STATS_HEADER_BYTES;

/// Fills `*out` with `ctx`'s loop metrics (an aioctx extension, not a QEMU
/// API; libuv's `uv_metrics_info` analogue): loop iterations, BHs run, fd
/// and event-notifier callbacks, timers fired, `aio_notify` eventfd writes
/// made and elided, time blocked, busy-poll hits and misses, and the current
/// adaptive poll window. See `AioctxStats` for each member.
///
/// Set `out->size = sizeof(AioctxStats)` first
/// (`AioctxStats s = { .size = sizeof s };`): the library fills the members
/// that fit in `out->size` bytes and stores the number of bytes it filled
/// there. A `size` smaller than the `size` member plus one counter is a
/// fatal error (the struct was not initialized).
///
/// Any thread, at any time (also from inside a callback of `ctx`). The
/// counters are updated by the loop with plain stores, so each member is a
/// recent value but the members are not one consistent snapshot while
/// another thread polls `ctx`; read from the home thread between polls,
/// they are exact. Counting is always on and costs no locked instruction on
/// the loop's paths.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_context_get_stats(ctx: *mut AioContext, out: *mut AioctxStats) {
    ffi_call(c"aioctx_context_get_stats", || {
        let ctx = context(ctx)?;
        if out.is_null() {
            return Err(Misuse::new("out (AioctxStats *) is NULL"));
        }
        // SAFETY: non-null and, per the contract above, a caller-owned
        // (aligned) object that starts with its `size_t size` member.
        let want = unsafe { ptr::addr_of!((*out).size).read() };
        if want < STATS_HEADER_BYTES + 8 {
            return Err(Misuse::new(format!(
                "out->size is {want}; set it to sizeof(AioctxStats) before the call"
            )));
        }
        let stats = ctx.stats();
        let n = want.min(size_of::<AioctxStats>());
        // SAFETY: the caller's object has `want >= n` bytes; `stats` has
        // `size_of::<AioctxStats>() >= n` initialized bytes (no padding,
        // asserted in stats.rs); they do not overlap.
        unsafe {
            ptr::copy_nonoverlapping(ptr::from_ref(&stats).cast::<u8>(), out.cast::<u8>(), n);
            ptr::addr_of_mut!((*out).size).write(n);
        }
        Ok(())
    })
}
