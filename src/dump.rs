//! The live-handle dump (`aioctx_context_dump`): an aioctx extension, not a
//! QEMU API (libuv's `uv_print_all_handles` analogue), and the
//! `AIOCTX_DUMP_ON_LEAK=1` report at context teardown.
//!
//! The dump is text, one line per object, words separated by one space, so
//! that tests and people can grep it:
//!
//! ```text
//! context 0x55d0c0a0b000 other bhs 3 fds 2 timers 1 coroutines 1
//! bh my-bh scheduled
//! bh retry_cb idle
//! bh aio_co_schedule scheduled oneshot
//! fd 5 read write poll poll_ready notifier
//! timer realtime expires 1234567890 cb my_timer_cb
//! coroutine worker_entry scheduled
//! ```
//!
//! - `context ADDR ROLE bhs N fds N timers N coroutines N`: first line.
//!   ROLE is `main` (`qemu_get_aio_context`), `iohandler`
//!   (`iohandler_get_aio_context`) or `other`; the counts are those of the
//!   lines that follow.
//! - `bh NAME STATE [oneshot]`: every BH allocated on the context and not
//!   freed yet. NAME is the debug name (`aio_bh_new_full`,
//!   `aio_bh_schedule_oneshot_full`), else the callback's symbol (dladdr:
//!   link with `-rdynamic` to name functions of the executable), else its
//!   address. STATE: `scheduled` (`qemu_bh_schedule`), `scheduled-idle`
//!   (`qemu_bh_schedule_idle`), `idle` (allocated, not scheduled: never,
//!   cancelled, or already run) or `deleted` (`qemu_bh_delete` was called;
//!   the loop frees it at its next dispatch). `oneshot`: from
//!   `aio_bh_schedule_oneshot*` (or `aio_co_schedule`'s BH, named
//!   `aio_co_schedule`). Registered BHs first, in no particular order, then
//!   oneshot ones in dispatch order. A oneshot BH whose callback is running
//!   is no longer listed.
//! - `fd FD WORD...`: every fd handler, by fd, as registered now (a change
//!   the poller has not applied yet included). WORDs, in this order, for
//!   each callback set: `read`, `write`, `poll` (`io_poll`), `poll_ready`,
//!   `poll_begin`, `poll_end`; then `notifier` if it was registered with
//!   `aio_set_event_notifier`. The context's own wakeup eventfd is not
//!   listed.
//! - `timer CLOCK expires NS cb SYMBOL`: every armed timer of the context's
//!   clocks (`realtime`, `virtual`, `host`, `virtual_rt`), by clock, then in
//!   firing order; NS is the absolute deadline on that clock
//!   (`timer_expire_time_ns`), SYMBOL the callback as for BHs.
//! - `coroutine SYMBOL scheduled`: every coroutine waiting for the context
//!   through `aio_co_schedule` (or `aio_co_enter`/`aio_co_wake` from another
//!   thread), oldest first; SYMBOL is its entry function. Coroutines that
//!   the scheduling BH is already entering one by one are not listed.
//!
//! NAME and SYMBOL have whitespace and control characters replaced by `_`,
//! so a line always splits into its words.
//!
//! Threading: the home thread (as for `aio_poll`), at any time, including
//! from inside a callback of the context. The dump is built in memory first
//! (no lock or borrow is held while it is written, and none is taken that a
//! callback could hold), then written. Teardown (any thread: the last
//! reference is gone) owns the context and builds it the same way.

use std::fmt::Write as _;
use std::ptr;
use std::sync::OnceLock;

use crate::bh::{BH_DELETED, BH_IDLE, BH_ONESHOT, BH_SCHEDULED, describe_fn};
use crate::context::Context;
use crate::fatal::MisuseResult;
use crate::handlers::Callbacks;
use crate::timer::ClockType;
use crate::{main_loop, thread};

impl Context {
    /// `aioctx_context_dump`: the dump as text (see the module docs). Home
    /// thread only.
    pub(crate) fn dump(&self) -> MisuseResult<String> {
        let guard = self.enter_loop()?;
        // SAFETY: the guard makes this thread the one in the context's loop.
        let text = unsafe { self.dump_text() };
        drop(guard);
        Ok(text)
    }

    /// The dump, without the home-thread check.
    ///
    /// # Safety
    /// The caller is the thread in the context's loop (holds a `LoopGuard`)
    /// or owns the context (teardown).
    unsafe fn dump_text(&self) -> String {
        // SAFETY: per the caller (the same rule).
        let bhs = unsafe { self.bh_snapshot() };
        let fds = self.handlers().snapshot();
        let timers = self.timers().armed();
        // SAFETY: per the caller (the same rule).
        let coroutines =
            unsafe { crate::coroutine::describe_scheduled(self.scheduled_coroutines()) };

        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "context {:p} {} bhs {} fds {} timers {} coroutines {}",
            self.as_ptr(),
            role(self),
            bhs.len(),
            fds.len(),
            timers.len(),
            coroutines.len()
        );
        for (name, flags) in &bhs {
            let oneshot = if flags & BH_ONESHOT != 0 {
                " oneshot"
            } else {
                ""
            };
            let _ = writeln!(out, "bh {} {}{oneshot}", word(name), bh_state(*flags));
        }
        for (fd, cb) in &fds {
            let _ = writeln!(out, "fd {fd}{}", fd_words(cb));
        }
        for (clock, expire, cb) in &timers {
            let _ = writeln!(
                out,
                "timer {} expires {expire} cb {}",
                clock_name(*clock),
                word(&describe_fn(cb.cast_const()))
            );
        }
        for name in &coroutines {
            let _ = writeln!(out, "coroutine {} scheduled", word(name));
        }
        out
    }
}

fn role(ctx: &Context) -> &'static str {
    if ptr::eq(thread::main_context(), ctx) {
        "main"
    } else if ptr::eq(main_loop::iohandler_context(), ctx) {
        "iohandler"
    } else {
        "other"
    }
}

fn bh_state(flags: u32) -> &'static str {
    if flags & BH_DELETED != 0 {
        "deleted"
    } else if flags & BH_SCHEDULED == 0 {
        "idle"
    } else if flags & BH_IDLE != 0 {
        "scheduled-idle"
    } else {
        "scheduled"
    }
}

fn fd_words(cb: &Callbacks) -> String {
    let set = [
        (cb.io_read.is_some(), " read"),
        (cb.io_write.is_some(), " write"),
        (cb.io_poll.is_some(), " poll"),
        (cb.io_poll_ready.is_some(), " poll_ready"),
        (cb.io_poll_begin.is_some(), " poll_begin"),
        (cb.io_poll_end.is_some(), " poll_end"),
        (cb.notifier, " notifier"),
    ];
    set.iter().filter(|(on, _)| *on).map(|(_, w)| *w).collect()
}

fn clock_name(clock: ClockType) -> &'static str {
    match clock {
        ClockType::Realtime => "realtime",
        ClockType::Virtual => "virtual",
        ClockType::Host => "host",
        ClockType::VirtualRt => "virtual_rt",
    }
}

/// `s` as one word: whitespace and control characters become `_` (an empty
/// name is `_`).
fn word(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Whether `AIOCTX_DUMP_ON_LEAK=1` is set (read once, at the first
/// teardown that finds a BH never deleted).
fn dump_on_leak() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("AIOCTX_DUMP_ON_LEAK").is_some_and(|v| v == "1"))
}

/// Teardown's hook: with `AIOCTX_DUMP_ON_LEAK=1`, if a BH of `ctx` was
/// never deleted, writes the dump to stderr (before teardown's warnings or
/// fatal report about it).
///
/// # Safety
/// `ctx` is being torn down by the caller, who owns it.
pub(crate) unsafe fn report_leak(ctx: &Context) {
    if !ctx.bh_dispatch().any_undeleted() || !dump_on_leak() {
        return;
    }
    // SAFETY: the caller owns the context.
    let text = unsafe { ctx.dump_text() };
    write_stderr(text.as_bytes());
}

/// Writes to fd 2 directly (as `fatal` does: no Rust stderr lock, which
/// another thread may hold while this one tears a context down).
fn write_stderr(mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid, initialized byte slice for its length.
        let n = unsafe { libc::write(2, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        buf = &buf[n as usize..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bh::BH_PENDING;

    #[test]
    fn bh_states_from_flags() {
        assert_eq!(bh_state(0), "idle");
        assert_eq!(bh_state(BH_PENDING), "idle"); // cancelled, still linked
        assert_eq!(bh_state(BH_PENDING | BH_SCHEDULED), "scheduled");
        assert_eq!(
            bh_state(BH_PENDING | BH_SCHEDULED | BH_IDLE),
            "scheduled-idle"
        );
        assert_eq!(bh_state(BH_PENDING | BH_SCHEDULED | BH_DELETED), "deleted");
    }

    #[test]
    fn names_become_one_word() {
        assert_eq!(word("my bh\n\tx"), "my_bh__x");
        assert_eq!(word(""), "_");
        assert_eq!(word("plain-name"), "plain-name");
    }

    #[test]
    fn dump_of_a_fresh_context_is_its_header() {
        let ctx = Context::new().expect("context");
        // SAFETY: just created, live.
        let c = unsafe { &*ctx };
        let text = c.dump().expect("home thread");
        assert_eq!(
            text,
            format!("context {ctx:p} other bhs 0 fds 0 timers 0 coroutines 0\n")
        );
        // SAFETY: our reference.
        unsafe { Context::unref(ctx) };
    }
}
