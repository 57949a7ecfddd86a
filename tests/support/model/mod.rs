//! Model-based checking of the public C API, driven through the rlib: the
//! operations, their generator, the reference model and the driver, shared
//! by the seeded test (tests/model.rs, included with `#[path]`) and the
//! coverage-guided fuzz target (fuzz/fuzz_targets/api_sequence.rs), which
//! feeds the generator the fuzzer's bytes instead of a seed (`Rng::Bytes`).
//! Layout: this file (choices, operations, generator, trace events, the
//! case loop), `reference.rs` (the model), `driver.rs` (the real library).
//!
//!
//! Each case creates a context (`aio_context_new(NULL)`, polled from the
//! test thread) and applies a random sequence of operations to it: BH new /
//! schedule / schedule_idle / cancel / delete / oneshot, `aio_poll(false)`
//! (and `aio_poll(true)` when something is ready), `aio_bh_poll`, fd handler
//! add / remove on eventfds that are set or not, timer new / arm (a deadline
//! already past, or an hour away) / del / free. Callbacks carry small scripts
//! of the same operations plus nested `aio_poll` / `aio_bh_poll`, which they
//! run when called. Every callback records into a thread-local trace.
//!
//! After each operation the trace is compared with the one a simple
//! reference model (`Model`) expects:
//! - one `aio_poll`: fd readiness is sampled first, then the BHs, then the
//!   fd handlers that were ready (read before write; a handler removed or
//!   replaced meanwhile is not called), then expired timers in (deadline,
//!   arming order);
//! - `aio_bh_poll` runs the BHs linked before the call in FIFO order of
//!   their first schedule (a cancelled BH stays linked: re-scheduling it
//!   keeps its place); one scheduled during dispatch waits for the next call
//!   unless it is still linked in the list being run; a nested call first
//!   finishes the outer call's remaining BHs;
//! - cancel and delete keep a BH from running; idle BHs and BHs that only
//!   sat in the list do not count as progress; the return values of
//!   `aio_poll` / `aio_bh_poll`, nested ones included, are in the trace.
//!
//! The only choice the model leaves open is the order in which ready fd
//! handlers are dispatched (it is the fd monitor's): the model follows the
//! order the library used, checking that each one was ready and live.
//!
//! Environment:
//! - `AIOCTX_MODEL_CASES`: number of cases (default 5000);
//! - `AIOCTX_MODEL_STEPS`: operations per case (default 200);
//! - `AIOCTX_MODEL_SEED`: replay one case (the seed a failure prints);
//! - `AIOCTX_MODEL_BASE_SEED`: derive the cases' seeds from this instead of
//!   the clock (printed at the start);
//! - `AIOCTX_FDMON`: the library's fd monitor backend (poll, epoll, io_uring;
//!   the model is relaxed for io_uring's stale poll results, see
//!   `Model::relaxed_fds`);
//! - `AIOCTX_MODEL_VERBOSE`: print each case's seed; `AIOCTX_MODEL_TRACE_OPS`:
//!   print each operation before it runs (to see where a hang or abort is).
//!
//! A seeded xorshift generator (not proptest): the model drives generation
//! (it knows which slots are live), and a failure is replayed exactly from
//! one number. On a mismatch the test prints the seed, the operations of the
//! case so far and both traces; if the library aborts instead, a SIGABRT
//! handler prints the seed.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::fmt::Write as _;
use std::ptr;

use aioctx::ffi::bh::{
    aio_bh_new, aio_bh_schedule_oneshot, qemu_bh_cancel, qemu_bh_delete, qemu_bh_schedule,
    qemu_bh_schedule_idle,
};
use aioctx::ffi::clock::qemu_clock_get_ns;
use aioctx::ffi::context::{aio_bh_poll, aio_context_new, aio_context_unref, aio_poll};
use aioctx::ffi::fd_handlers::aio_set_fd_handler;
use aioctx::ffi::timer::{
    QEMUClockType, QEMUTimer, QEMUTimerCB, SCALE_NS, aio_timer_new, timer_del, timer_free,
    timer_mod_ns,
};
use aioctx::ffi::types::{AioContext, IOHandler, QEMUBH, QEMUBHFunc};

const BH_SLOTS: usize = 6;
const FD_SLOTS: usize = 3;
const TIMER_SLOTS: usize = 4;
/// Top-level poll is depth 1; callbacks poll recursively up to this depth.
const MAX_DEPTH: u32 = 3;
const REALTIME: QEMUClockType = QEMUClockType(0);
/// "Far in the future": an hour from now.
const FUTURE_NS: i64 = 3600 * 1_000_000_000;
/// Model deadline of a timer armed an hour away.
const FUTURE: i64 = i64::MAX;

// ---------------------------------------------------------------------------
// Random numbers

/// Where the generator's choices come from: a seeded xorshift generator
/// (tests/model.rs) or the bytes of a fuzzer input (fuzz/), one byte per
/// choice. Once the bytes run out every choice is 0 and `exhausted` is true:
/// the case ends before the next operation.
#[derive(Clone)]
pub enum Rng {
    Xorshift(u64),
    Bytes { data: Vec<u8>, pos: usize },
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng::Xorshift(splitmix(seed) | 1)
    }
    pub fn from_bytes(data: &[u8]) -> Self {
        Rng::Bytes {
            data: data.to_vec(),
            pos: 0,
        }
    }
    fn next(&mut self) -> u64 {
        match self {
            Rng::Xorshift(state) => {
                let mut x = *state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *state = x;
                x
            }
            Rng::Bytes { data, pos } => {
                let b = data.get(*pos).copied().unwrap_or(0);
                *pos += 1;
                u64::from(b)
            }
        }
    }
    /// A byte source has been read past its end.
    fn exhausted(&self) -> bool {
        matches!(self, Rng::Bytes { data, pos } if *pos >= data.len())
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Picks by weight; `weights` pairs a weight with a value.
fn pick<T: Copy>(rng: &mut Rng, weights: &[(u32, T)]) -> T {
    let total: u32 = weights.iter().map(|w| w.0).sum();
    let mut r = (rng.next() % u64::from(total)) as u32;
    for &(w, v) in weights {
        if r < w {
            return v;
        }
        r -= w;
    }
    unreachable!()
}

// ---------------------------------------------------------------------------
// Operations and scripts

/// A timer deadline: `Past(d)` is `d` ns after the clock's epoch (long
/// expired; equal values test the arming-order tie-break), `Future` an hour
/// from now.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Deadline {
    Past(i64),
    Future,
}

/// What a callback does when it runs (slots name whatever occupies them at
/// that moment; an empty slot makes the action a no-op).
#[derive(Clone, Debug)]
enum Act {
    Schedule(usize),
    ScheduleIdle(usize),
    Cancel(usize),
    Delete(usize),
    Oneshot(Vec<Act>),
    NestedPoll,
    NestedBhPoll,
    FdSet(usize),
    FdClear(usize),
    FdRemove(usize),
    TimerArm(usize, Deadline),
    TimerDel(usize),
}

#[derive(Clone, Debug)]
enum Op {
    NewBh(usize, Vec<Act>),
    SetBhActs(usize, Vec<Act>),
    Schedule(usize),
    ScheduleIdle(usize),
    Cancel(usize),
    Delete(usize),
    Oneshot(Vec<Act>),
    Poll {
        blocking: bool,
    },
    BhPoll,
    /// Register (or replace) the handlers of an fd slot's eventfd: a read
    /// handler that consumes the event or leaves it set, optionally a write
    /// handler (an eventfd is always writable).
    FdAdd {
        slot: usize,
        consume: bool,
        write: bool,
        acts: Vec<Act>,
    },
    FdRemove(usize),
    FdSet(usize),
    FdClear(usize),
    TimerNew(usize, Vec<Act>),
    TimerArm(usize, Deadline),
    TimerDel(usize),
    TimerFree(usize),
}

/// Who runs a script: timer callbacks may not arm expired timers (a timer
/// re-arming itself in the past would run forever within one poll).
#[derive(Clone, Copy, PartialEq)]
enum Origin {
    Bh,
    Fd,
    Timer,
}

fn gen_acts(rng: &mut Rng, origin: Origin, allow_oneshot: bool) -> Vec<Act> {
    #[derive(Clone, Copy)]
    enum K {
        Sched,
        Idle,
        Cancel,
        Delete,
        Oneshot,
        Nested,
        NestedBh,
        FdSet,
        FdClear,
        FdRemove,
        ArmPast,
        ArmFuture,
        TDel,
    }
    let n = pick(rng, &[(30, 0), (35, 1), (25, 2), (10, 3)]);
    let mut acts = Vec::with_capacity(n);
    while acts.len() < n {
        let k = pick(
            rng,
            &[
                (30, K::Sched),
                (5, K::Idle),
                (10, K::Cancel),
                (6, K::Delete),
                (if allow_oneshot { 5 } else { 0 }, K::Oneshot),
                (8, K::Nested),
                (5, K::NestedBh),
                (5, K::FdSet),
                (3, K::FdClear),
                (3, K::FdRemove),
                (if origin == Origin::Timer { 0 } else { 6 }, K::ArmPast),
                (3, K::ArmFuture),
                (5, K::TDel),
            ],
        );
        acts.push(match k {
            K::Sched => Act::Schedule(rng.below(BH_SLOTS)),
            K::Idle => Act::ScheduleIdle(rng.below(BH_SLOTS)),
            K::Cancel => Act::Cancel(rng.below(BH_SLOTS)),
            K::Delete => Act::Delete(rng.below(BH_SLOTS)),
            K::Oneshot => Act::Oneshot(gen_acts(rng, Origin::Bh, false)),
            K::Nested => Act::NestedPoll,
            K::NestedBh => Act::NestedBhPoll,
            K::FdSet => Act::FdSet(rng.below(FD_SLOTS)),
            K::FdClear => Act::FdClear(rng.below(FD_SLOTS)),
            K::FdRemove => Act::FdRemove(rng.below(FD_SLOTS)),
            K::ArmPast => Act::TimerArm(rng.below(TIMER_SLOTS), gen_past(rng)),
            K::ArmFuture => Act::TimerArm(rng.below(TIMER_SLOTS), Deadline::Future),
            K::TDel => Act::TimerDel(rng.below(TIMER_SLOTS)),
        });
    }
    acts
}

fn gen_past(rng: &mut Rng) -> Deadline {
    Deadline::Past(rng.below(4) as i64 * 100)
}

fn gen_op(rng: &mut Rng, m: &Model) -> Op {
    #[derive(Clone, Copy)]
    enum K {
        NewBh,
        SetActs,
        Sched,
        Idle,
        Cancel,
        Delete,
        Oneshot,
        Poll,
        PollBlocking,
        BhPoll,
        FdAdd,
        FdRemove,
        FdSet,
        FdClear,
        TNew,
        TArmPast,
        TArmFuture,
        TDel,
        TFree,
    }
    let free_bh = (0..BH_SLOTS).filter(|&s| m.bh_slots[s].is_none()).count();
    let ready = m.blocking_poll_is_quick();
    let k = pick(
        rng,
        &[
            (if free_bh > 0 { 10 } else { 1 }, K::NewBh),
            (4, K::SetActs),
            (22, K::Sched),
            (5, K::Idle),
            (8, K::Cancel),
            (4, K::Delete),
            (5, K::Oneshot),
            (14, K::Poll),
            (if ready { 3 } else { 0 }, K::PollBlocking),
            (6, K::BhPoll),
            (4, K::FdAdd),
            (2, K::FdRemove),
            (5, K::FdSet),
            (3, K::FdClear),
            (3, K::TNew),
            (6, K::TArmPast),
            (3, K::TArmFuture),
            (4, K::TDel),
            (1, K::TFree),
        ],
    );
    // Slots are mostly chosen among live ones; an empty one makes a no-op.
    let bh = |rng: &mut Rng| -> usize {
        let live: Vec<usize> = (0..BH_SLOTS).filter(|&s| m.bh_slots[s].is_some()).collect();
        if live.is_empty() || rng.chance(10) {
            rng.below(BH_SLOTS)
        } else {
            live[rng.below(live.len())]
        }
    };
    match k {
        K::NewBh => {
            let empty: Vec<usize> = (0..BH_SLOTS).filter(|&s| m.bh_slots[s].is_none()).collect();
            let slot = if empty.is_empty() {
                rng.below(BH_SLOTS)
            } else {
                empty[rng.below(empty.len())]
            };
            Op::NewBh(slot, gen_acts(rng, Origin::Bh, true))
        }
        K::SetActs => Op::SetBhActs(bh(rng), gen_acts(rng, Origin::Bh, true)),
        K::Sched => Op::Schedule(bh(rng)),
        K::Idle => Op::ScheduleIdle(bh(rng)),
        K::Cancel => Op::Cancel(bh(rng)),
        K::Delete => Op::Delete(bh(rng)),
        K::Oneshot => Op::Oneshot(gen_acts(rng, Origin::Bh, false)),
        K::Poll => Op::Poll { blocking: false },
        K::PollBlocking => Op::Poll { blocking: true },
        K::BhPoll => Op::BhPoll,
        K::FdAdd => Op::FdAdd {
            slot: rng.below(FD_SLOTS),
            consume: rng.chance(50),
            write: rng.chance(15),
            acts: gen_acts(rng, Origin::Fd, true),
        },
        K::FdRemove => Op::FdRemove(rng.below(FD_SLOTS)),
        K::FdSet => Op::FdSet(rng.below(FD_SLOTS)),
        K::FdClear => Op::FdClear(rng.below(FD_SLOTS)),
        K::TNew => Op::TimerNew(rng.below(TIMER_SLOTS), gen_acts(rng, Origin::Timer, true)),
        K::TArmPast => Op::TimerArm(rng.below(TIMER_SLOTS), gen_past(rng)),
        K::TArmFuture => Op::TimerArm(rng.below(TIMER_SLOTS), Deadline::Future),
        K::TDel => Op::TimerDel(rng.below(TIMER_SLOTS)),
        K::TFree => Op::TimerFree(rng.below(TIMER_SLOTS)),
    }
}

// ---------------------------------------------------------------------------
// Trace

/// Entity ids are allocated in creation order by both sides, starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Bh(u64),
    FdRead(u64),
    FdWrite(u64),
    Timer(u64),
    /// `aio_poll` returned (depth, value).
    PollRet(u32, bool),
    /// `aio_bh_poll` returned (depth, value).
    BhPollRet(u32, i32),
}

/// Arming a timer in the past is skipped while a timer callback runs: the
/// loop that runs expired timers would otherwise run it again, forever if a
/// nested poll under that callback re-armed it every time.
fn skip_arm(d: Deadline, in_timer: u32) -> bool {
    in_timer > 0 && matches!(d, Deadline::Past(_))
}

mod driver;
mod reference;

use driver::{abandon, drive, setup, teardown};
use reference::Model;

/// Runs one case: up to `max_steps` operations drawn from `rng` (fewer if a
/// byte source runs out), each checked against the model. Returns (steps,
/// events checked), or a description of the first mismatch. With
/// `trace_ops`, prints each operation before it runs.
pub fn run_case_with(
    rng: &mut Rng,
    max_steps: usize,
    trace_ops: bool,
) -> Result<(usize, usize), String> {
    let mut model = Model::new();
    let mut log = String::new();
    let mut events = 0;
    let mut steps = 0;
    setup();
    for step in 0..max_steps {
        if rng.exhausted() {
            break;
        }
        let op = gen_op(rng, &model);
        let _ = writeln!(log, "  {step:4}: {op:?}");
        if trace_ops {
            eprintln!("  {step:4}: {op:?}");
        }
        let actual = drive(&op);
        let expected = model.apply(&op, actual.clone());
        if expected != actual {
            // The context is leaked on purpose: it may be in any state.
            abandon();
            return Err(format!(
                "step {step}: trace mismatch\n  op:       {op:?}\n  expected: {expected:?}\n  \
                 actual:   {actual:?}\n  operations of the case:\n{log}"
            ));
        }
        events += actual.len();
        steps += 1;
    }
    teardown();
    Ok((steps, events))
}
