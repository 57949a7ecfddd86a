//! The live-handle dump (`aioctx_context_dump`): an aioctx extension, not a
//! QEMU API. See `src/dump.rs` for the format.

use super::boundary::{context, ffi_call};
use super::types::AioContext;
use crate::fatal::Misuse;

/// Writes a list of what `ctx` holds to `out` (an aioctx extension, not a
/// QEMU API; libuv's `uv_print_all_handles` analogue): one line per live
/// BH, fd handler, armed timer and coroutine scheduled with
/// `aio_co_schedule`, after a header line naming the context. Words are
/// separated by one space; names have whitespace replaced by `_`:
///
/// - `context ADDR ROLE bhs N fds N timers N coroutines N` (ROLE: `main`,
///   `iohandler` or `other`; the counts are those of the lines below),
/// - `bh NAME STATE` plus ` oneshot` for `aio_bh_schedule_oneshot*` BHs:
///   NAME is the debug name, else the callback's symbol (dladdr; link with
///   `-rdynamic`), else its address; STATE is `scheduled`, `scheduled-idle`
///   (`qemu_bh_schedule_idle`), `idle` (not scheduled) or `deleted`
///   (`qemu_bh_delete` called, not freed by the loop yet),
/// - `fd FD` then, for each callback set, `read`, `write`, `poll`,
///   `poll_ready`, `poll_begin`, `poll_end` in that order, then `notifier`
///   for an `aio_set_event_notifier` handler (by fd),
/// - `timer CLOCK expires NS cb SYMBOL` (CLOCK: `realtime`, `virtual`,
///   `host`, `virtual_rt`; NS the absolute deadline on that clock; by
///   clock, then in firing order),
/// - `coroutine SYMBOL scheduled` (the entry function; oldest first).
///
/// `aio_co_schedule` runs its coroutines from a oneshot BH, listed as
/// `bh aio_co_schedule scheduled oneshot`. The lines are written with
/// `fwrite` and the stream is flushed; a write error is left in the
/// stream's error indicator (`ferror`).
///
/// Threading: only from `ctx`'s home thread (the thread that may run
/// `aio_poll(ctx)`), at any time, also from inside a callback of `ctx`. From
/// another thread it is a fatal error, as are a NULL `ctx` or `out`. With
/// `AIOCTX_DUMP_ON_LEAK=1` in the environment (read once), the last
/// `aio_context_unref` writes this dump to stderr when it finds a BH that
/// was never deleted, before its warnings.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_context_dump(ctx: *mut AioContext, out: *mut libc::FILE) {
    ffi_call(c"aioctx_context_dump", || {
        let ctx = context(ctx)?;
        if out.is_null() {
            return Err(Misuse::new("out (FILE *) is NULL"));
        }
        // Built first, so nothing of the context is borrowed while the
        // stream (possibly a cookie stream running C code) is written.
        let text = ctx.dump()?;
        // SAFETY: `out` is a non-null `FILE *` the caller owns, per the
        // contract above; `text` is valid for `text.len()` bytes.
        unsafe {
            libc::fwrite(text.as_ptr().cast(), 1, text.len(), out);
            libc::fflush(out);
        }
        Ok(())
    })
}
