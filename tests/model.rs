//! Randomised model-based test of the public C API, driven through the rlib.
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
use std::io::Write as _;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

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

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(splitmix(seed) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn splitmix(mut z: u64) -> u64 {
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

// ---------------------------------------------------------------------------
// The reference model

#[derive(Clone, Copy)]
struct MBh {
    linked: bool,
    scheduled: bool,
    idle: bool,
    oneshot: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Readiness {
    Yes,
    Maybe,
    No,
}

#[derive(Clone, Copy)]
struct MFd {
    id: u64,
    consume: bool,
    write: bool,
}

#[derive(Clone, Copy)]
struct MTimer {
    id: u64,
    /// (deadline, arming sequence number) while armed.
    armed: Option<(i64, u64)>,
}

struct Model {
    next_id: u64,
    bh_slots: [Option<u64>; BH_SLOTS],
    bhs: HashMap<u64, MBh>,
    /// BHs scheduled since the last `aio_bh_poll` took the queue.
    queue: Vec<u64>,
    /// BHs taken by an `aio_bh_poll` and not dispatched yet.
    run_list: VecDeque<u64>,
    fds: [Option<MFd>; FD_SLOTS],
    fd_set: [bool; FD_SLOTS],
    /// io_uring only (`relaxed_fds`): the eventfd was set at some moment
    /// since the last readiness sample. The io_uring monitor reports a poll
    /// completion posted meanwhile even if the fd was drained since
    /// (documented in src/fdmon/io_uring.rs), so such a handler may run.
    fd_set_since: [bool; FD_SLOTS],
    /// Under io_uring the model is relaxed in two ways: a handler whose fd
    /// was set since the last sample may run (above), and the read handler
    /// of a handler that also watches writes may be skipped although its fd
    /// is readable. The latter is not documented: a POLL_ADD for POLLIN |
    /// POLLOUT that an fd removal submitted early completes at once with
    /// POLLOUT only, and the next wait reports that stale mask; the read is
    /// dispatched one iteration late.
    relaxed_fds: bool,
    timers: [Option<MTimer>; TIMER_SLOTS],
    timer_seq: u64,
    acts: HashMap<u64, Vec<Act>>,
    depth: u32,
    /// Timer callbacks on the stack (see `Act::TimerArm`).
    in_timer: u32,
    trace: Vec<Ev>,
    /// The library's trace of the current step: the model follows its
    /// choice of fd dispatch order.
    actual: Vec<Ev>,
}

impl Model {
    fn new() -> Self {
        Model {
            next_id: 1,
            bh_slots: [None; BH_SLOTS],
            bhs: HashMap::new(),
            queue: Vec::new(),
            run_list: VecDeque::new(),
            fds: [None; FD_SLOTS],
            fd_set: [false; FD_SLOTS],
            fd_set_since: [false; FD_SLOTS],
            timers: [None; TIMER_SLOTS],
            timer_seq: 0,
            acts: HashMap::new(),
            relaxed_fds: std::env::var("AIOCTX_FDMON").is_ok_and(|v| v == "io_uring"),
            depth: 0,
            in_timer: 0,
            trace: Vec::new(),
            actual: Vec::new(),
        }
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Whether `aio_poll(ctx, true)` returns at once: a non-idle BH is
    /// scheduled, an fd handler is ready or a timer has expired.
    fn blocking_poll_is_quick(&self) -> bool {
        self.bhs
            .values()
            .any(|b| b.linked && b.scheduled && !b.idle)
            || (0..FD_SLOTS).any(|s| self.fds[s].is_some_and(|f| f.write || self.fd_set[s]))
            || self
                .timers
                .iter()
                .flatten()
                .any(|t| t.armed.is_some_and(|(d, _)| d != FUTURE))
    }

    fn schedule_id(&mut self, id: u64, idle: bool) {
        let b = self.bhs.get_mut(&id).expect("live BH");
        if !b.linked {
            b.linked = true;
            self.queue.push(id);
        }
        b.scheduled = true;
        b.idle |= idle;
    }

    fn schedule(&mut self, slot: usize, idle: bool) {
        if let Some(id) = self.bh_slots[slot] {
            self.schedule_id(id, idle);
        }
    }

    fn cancel(&mut self, slot: usize) {
        if let Some(id) = self.bh_slots[slot] {
            self.bhs.get_mut(&id).expect("live BH").scheduled = false;
        }
    }

    /// A deleted BH never runs again; the library keeps it linked until the
    /// loop frees it, which nothing can observe.
    fn delete(&mut self, slot: usize) {
        if let Some(id) = self.bh_slots[slot].take() {
            self.bhs.remove(&id);
            self.queue.retain(|&x| x != id);
            self.run_list.retain(|&x| x != id);
            self.acts.remove(&id);
        }
    }

    fn oneshot(&mut self, acts: &[Act]) {
        let id = self.alloc_id();
        self.bhs.insert(
            id,
            MBh {
                linked: false,
                scheduled: false,
                idle: false,
                oneshot: true,
            },
        );
        self.acts.insert(id, acts.to_vec());
        self.schedule_id(id, false);
    }

    fn fd_set_(&mut self, slot: usize) {
        self.fd_set[slot] = true;
        self.fd_set_since[slot] |= self.relaxed_fds;
    }

    fn fd_remove(&mut self, slot: usize) {
        if let Some(f) = self.fds[slot].take() {
            self.acts.remove(&f.id);
        }
    }

    fn timer_arm(&mut self, slot: usize, d: Deadline) {
        if let Some(t) = &mut self.timers[slot] {
            self.timer_seq += 1;
            let deadline = match d {
                Deadline::Past(ns) => ns,
                Deadline::Future => FUTURE,
            };
            t.armed = Some((deadline, self.timer_seq));
        }
    }

    fn timer_del(&mut self, slot: usize) {
        if let Some(t) = &mut self.timers[slot] {
            t.armed = None;
        }
    }

    fn bh_poll(&mut self) -> bool {
        self.run_list.extend(self.queue.drain(..));
        let mut progress = false;
        while let Some(id) = self.run_list.pop_front() {
            let b = self.bhs.get_mut(&id).expect("linked BH is live");
            let before = *b;
            b.linked = false;
            b.scheduled = false;
            b.idle = false;
            if before.oneshot {
                self.bhs.remove(&id);
            }
            if before.scheduled {
                progress |= !before.idle;
                self.trace.push(Ev::Bh(id));
                let acts = if before.oneshot {
                    self.acts.remove(&id)
                } else {
                    self.acts.get(&id).cloned()
                };
                self.run_acts(&acts.unwrap_or_default());
            }
        }
        progress
    }

    fn poll(&mut self) -> bool {
        self.depth += 1;
        // Readiness is sampled before anything runs.
        let mut ready: Vec<(usize, MFd, Readiness)> = (0..FD_SLOTS)
            .filter_map(|s| {
                let f = self.fds[s]?;
                let r = if self.fd_set[s] {
                    if self.relaxed_fds && f.write {
                        Readiness::Maybe
                    } else {
                        Readiness::Yes
                    }
                } else if self.fd_set_since[s] {
                    Readiness::Maybe
                } else {
                    Readiness::No
                };
                (r != Readiness::No || f.write).then_some((s, f, r))
            })
            .collect();
        for s in 0..FD_SLOTS {
            self.fd_set_since[s] = self.relaxed_fds && self.fd_set[s];
        }
        let mut progress = self.bh_poll();
        while !ready.is_empty() {
            // Dispatch in the library's order when it is one of the ready
            // handlers; otherwise in slot order (the traces then differ). A
            // handler that is only maybe ready runs if the library ran it.
            let peek = self.actual.get(self.trace.len()).copied();
            let chosen = peek.and_then(|ev| match ev {
                Ev::FdRead(id) | Ev::FdWrite(id) => ready.iter().position(|r| r.1.id == id),
                _ => None,
            });
            let Some(idx) = chosen.or_else(|| {
                ready
                    .iter()
                    .position(|r| r.2 == Readiness::Yes || r.1.write)
            }) else {
                break;
            };
            let (slot, f, r) = ready.remove(idx);
            let readable = match r {
                Readiness::Yes => true,
                Readiness::Maybe => peek == Some(Ev::FdRead(f.id)),
                Readiness::No => false,
            };
            let live = |m: &Model| m.fds[slot].is_some_and(|g| g.id == f.id);
            if readable && live(self) {
                self.trace.push(Ev::FdRead(f.id));
                progress = true;
                if f.consume {
                    self.fd_set[slot] = false;
                }
                let acts = self.acts.get(&f.id).cloned().unwrap_or_default();
                self.run_acts(&acts);
            }
            if f.write && live(self) {
                self.trace.push(Ev::FdWrite(f.id));
                progress = true;
            }
        }
        progress |= self.run_timers();
        self.trace.push(Ev::PollRet(self.depth, progress));
        self.depth -= 1;
        progress
    }

    fn run_timers(&mut self) -> bool {
        let mut ran = false;
        loop {
            let next = (0..TIMER_SLOTS)
                .filter_map(|s| {
                    let t = self.timers[s]?;
                    let (d, seq) = t.armed?;
                    (d != FUTURE).then_some((d, seq, s))
                })
                .min();
            let Some((_, _, slot)) = next else { break };
            let t = self.timers[slot].as_mut().expect("armed timer");
            t.armed = None;
            let id = t.id;
            self.trace.push(Ev::Timer(id));
            ran = true;
            let acts = self.acts.get(&id).cloned().unwrap_or_default();
            self.in_timer += 1;
            self.run_acts(&acts);
            self.in_timer -= 1;
        }
        ran
    }

    fn run_acts(&mut self, acts: &[Act]) {
        for a in acts {
            match a {
                Act::Schedule(s) => self.schedule(*s, false),
                Act::ScheduleIdle(s) => self.schedule(*s, true),
                Act::Cancel(s) => self.cancel(*s),
                Act::Delete(s) => self.delete(*s),
                Act::Oneshot(acts) => self.oneshot(acts),
                Act::NestedPoll => {
                    if self.depth < MAX_DEPTH {
                        self.poll();
                    }
                }
                Act::NestedBhPoll => {
                    if self.depth < MAX_DEPTH {
                        self.depth += 1;
                        let r = self.bh_poll();
                        self.trace.push(Ev::BhPollRet(self.depth, i32::from(r)));
                        self.depth -= 1;
                    }
                }
                Act::FdSet(s) => self.fd_set_(*s),
                Act::FdClear(s) => self.fd_set[*s] = false,
                Act::FdRemove(s) => self.fd_remove(*s),
                Act::TimerArm(s, d) => {
                    if !skip_arm(*d, self.in_timer) {
                        self.timer_arm(*s, *d);
                    }
                }
                Act::TimerDel(s) => self.timer_del(*s),
            }
        }
    }

    /// Applies `op`; `actual` is what the library did for it.
    fn apply(&mut self, op: &Op, actual: Vec<Ev>) -> Vec<Ev> {
        self.actual = actual;
        self.apply_op(op);
        self.actual.clear();
        std::mem::take(&mut self.trace)
    }

    fn apply_op(&mut self, op: &Op) {
        match op {
            Op::NewBh(slot, acts) => {
                if self.bh_slots[*slot].is_none() {
                    let id = self.alloc_id();
                    self.bh_slots[*slot] = Some(id);
                    self.bhs.insert(
                        id,
                        MBh {
                            linked: false,
                            scheduled: false,
                            idle: false,
                            oneshot: false,
                        },
                    );
                    self.acts.insert(id, acts.clone());
                }
            }
            Op::SetBhActs(slot, acts) => {
                if let Some(id) = self.bh_slots[*slot] {
                    self.acts.insert(id, acts.clone());
                }
            }
            Op::Schedule(s) => self.schedule(*s, false),
            Op::ScheduleIdle(s) => self.schedule(*s, true),
            Op::Cancel(s) => self.cancel(*s),
            Op::Delete(s) => self.delete(*s),
            Op::Oneshot(acts) => self.oneshot(acts),
            Op::Poll { .. } => {
                self.poll();
            }
            Op::BhPoll => {
                self.depth += 1;
                let r = self.bh_poll();
                self.trace.push(Ev::BhPollRet(self.depth, i32::from(r)));
                self.depth -= 1;
            }
            Op::FdAdd {
                slot,
                consume,
                write,
                acts,
            } => {
                self.fd_remove(*slot);
                let id = self.alloc_id();
                self.fds[*slot] = Some(MFd {
                    id,
                    consume: *consume,
                    write: *write,
                });
                self.acts.insert(id, acts.clone());
            }
            Op::FdRemove(s) => self.fd_remove(*s),
            Op::FdSet(s) => self.fd_set_(*s),
            Op::FdClear(s) => self.fd_set[*s] = false,
            Op::TimerNew(slot, acts) => {
                if self.timers[*slot].is_none() {
                    let id = self.alloc_id();
                    self.timers[*slot] = Some(MTimer { id, armed: None });
                    self.acts.insert(id, acts.clone());
                }
            }
            Op::TimerArm(s, d) => self.timer_arm(*s, *d),
            Op::TimerDel(s) => self.timer_del(*s),
            Op::TimerFree(s) => {
                if let Some(t) = self.timers[*s].take() {
                    self.acts.remove(&t.id);
                }
            }
        }
    }
}

/// Arming a timer in the past is skipped while a timer callback runs: the
/// loop that runs expired timers would otherwise run it again, forever if a
/// nested poll under that callback re-armed it every time.
fn skip_arm(d: Deadline, in_timer: u32) -> bool {
    in_timer > 0 && matches!(d, Deadline::Past(_))
}

// ---------------------------------------------------------------------------
// The driver: the same operations on the real library

struct Driver {
    ctx: *mut AioContext,
    next_id: u64,
    bh_slots: [Option<(u64, *mut QEMUBH)>; BH_SLOTS],
    /// Eventfds, one per fd slot, for the whole case.
    efds: [c_int; FD_SLOTS],
    /// Registered handler id per fd slot.
    fds: [Option<(u64, bool)>; FD_SLOTS],
    timers: [Option<(u64, *mut QEMUTimer)>; TIMER_SLOTS],
    acts: HashMap<u64, Vec<Act>>,
    /// Registration id of an fd handler -> (slot, consumes).
    fd_of: HashMap<u64, (usize, bool)>,
    depth: u32,
    /// Timer callbacks on the stack (see `skip_arm`).
    in_timer: u32,
    trace: Vec<Ev>,
    /// Teardown: callbacks record nothing and run no script.
    quiet: bool,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Runs `f` on the driver with a short borrow (never across a call that may
/// run callbacks).
fn drv<R>(f: impl FnOnce(&mut Driver) -> R) -> R {
    DRIVER.with(|d| f(d.borrow_mut().as_mut().expect("driver installed")))
}

/// More events than this in one step means a callback loop: stop with the
/// seed rather than run out of memory.
const MAX_STEP_EVENTS: usize = 100_000;

impl Driver {
    fn record(&mut self, ev: Ev) {
        if self.trace.len() >= MAX_STEP_EVENTS {
            eprintln!(
                "model: more than {MAX_STEP_EVENTS} callbacks in one step (endless loop?); last: {:?}",
                &self.trace[self.trace.len() - 10..]
            );
            std::process::abort();
        }
        self.trace.push(ev);
    }
}

fn id_of(opaque: *mut c_void) -> u64 {
    opaque as usize as u64
}

fn opaque_of(id: u64) -> *mut c_void {
    id as usize as *mut c_void
}

extern "C" fn bh_cb(opaque: *mut c_void) {
    let id = id_of(opaque);
    let acts = drv(|d| {
        if d.quiet {
            return None;
        }
        d.record(Ev::Bh(id));
        d.acts.get(&id).cloned()
    });
    if let Some(acts) = acts {
        run_acts(&acts);
    }
}

extern "C" fn oneshot_cb(opaque: *mut c_void) {
    let id = id_of(opaque);
    let acts = drv(|d| {
        let acts = d.acts.remove(&id);
        if d.quiet {
            return None;
        }
        d.record(Ev::Bh(id));
        acts
    });
    if let Some(acts) = acts {
        run_acts(&acts);
    }
}

extern "C" fn fd_read_cb(opaque: *mut c_void) {
    let id = id_of(opaque);
    let (efd, acts) = drv(|d| {
        // A handler the test removed has no entry: the trace shows the call.
        let efd = match d.fd_of.get(&id) {
            Some(&(slot, true)) => Some(d.efds[slot]),
            _ => None,
        };
        if d.quiet {
            return (efd, None);
        }
        d.record(Ev::FdRead(id));
        (efd, d.acts.get(&id).cloned())
    });
    if let Some(efd) = efd {
        eventfd_clear(efd);
    }
    if let Some(acts) = acts {
        run_acts(&acts);
    }
}

extern "C" fn fd_write_cb(opaque: *mut c_void) {
    let id = id_of(opaque);
    drv(|d| {
        if !d.quiet {
            d.record(Ev::FdWrite(id));
        }
    });
}

extern "C" fn timer_cb(opaque: *mut c_void) {
    let id = id_of(opaque);
    let acts = drv(|d| {
        if d.quiet {
            return None;
        }
        d.record(Ev::Timer(id));
        d.acts.get(&id).cloned()
    });
    if let Some(acts) = acts {
        drv(|d| d.in_timer += 1);
        run_acts(&acts);
        drv(|d| d.in_timer -= 1);
    }
}

fn bh_func(f: extern "C" fn(*mut c_void)) -> *mut QEMUBHFunc {
    f as *mut QEMUBHFunc
}

fn io_handler(f: extern "C" fn(*mut c_void)) -> *mut IOHandler {
    f as *mut IOHandler
}

fn timer_func(f: extern "C" fn(*mut c_void)) -> *mut QEMUTimerCB {
    f as *mut QEMUTimerCB
}

fn eventfd_set(fd: c_int) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd this test owns.
    let n = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
    assert_eq!(n, 8, "eventfd write");
}

fn eventfd_clear(fd: c_int) {
    let mut v: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64 from a non-blocking
    // eventfd this test owns (EAGAIN when it is not set).
    unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

fn schedule_slot(slot: usize, idle: bool) {
    if let Some((_, bh)) = drv(|d| d.bh_slots[slot]) {
        if idle {
            qemu_bh_schedule_idle(bh);
        } else {
            qemu_bh_schedule(bh);
        }
    }
}

fn cancel_slot(slot: usize) {
    if let Some((_, bh)) = drv(|d| d.bh_slots[slot]) {
        qemu_bh_cancel(bh);
    }
}

fn delete_slot(slot: usize) {
    if let Some((id, bh)) = drv(|d| d.bh_slots[slot].take()) {
        drv(|d| d.acts.remove(&id));
        qemu_bh_delete(bh);
    }
}

fn oneshot(acts: &[Act]) {
    let (ctx, id) = drv(|d| {
        let id = d.next_id;
        d.next_id += 1;
        d.acts.insert(id, acts.to_vec());
        (d.ctx, id)
    });
    aio_bh_schedule_oneshot(ctx, bh_func(oneshot_cb), opaque_of(id));
}

fn fd_remove(slot: usize) {
    let (ctx, efd, old) = drv(|d| (d.ctx, d.efds[slot], d.fds[slot].take()));
    if let Some((id, _)) = old {
        aio_set_fd_handler(
            ctx,
            efd,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        );
        drv(|d| {
            d.acts.remove(&id);
            d.fd_of.remove(&id);
        });
    }
}

fn timer_arm(slot: usize, deadline: Deadline) {
    if let Some((_, t)) = drv(|d| d.timers[slot]) {
        let ns = match deadline {
            Deadline::Past(ns) => ns,
            Deadline::Future => qemu_clock_get_ns(REALTIME) + FUTURE_NS,
        };
        timer_mod_ns(t, ns);
    }
}

fn timer_del_slot(slot: usize) {
    if let Some((_, t)) = drv(|d| d.timers[slot]) {
        timer_del(t);
    }
}

fn nested_poll() {
    let (ctx, depth) = drv(|d| {
        d.depth += 1;
        (d.ctx, d.depth)
    });
    let r = aio_poll(ctx, false);
    drv(|d| {
        d.record(Ev::PollRet(depth, r));
        d.depth -= 1;
    });
}

fn nested_bh_poll() {
    let (ctx, depth) = drv(|d| {
        d.depth += 1;
        (d.ctx, d.depth)
    });
    let r = aio_bh_poll(ctx);
    drv(|d| {
        d.record(Ev::BhPollRet(depth, r));
        d.depth -= 1;
    });
}

fn run_acts(acts: &[Act]) {
    for a in acts {
        match a {
            Act::Schedule(s) => schedule_slot(*s, false),
            Act::ScheduleIdle(s) => schedule_slot(*s, true),
            Act::Cancel(s) => cancel_slot(*s),
            Act::Delete(s) => delete_slot(*s),
            Act::Oneshot(acts) => oneshot(acts),
            Act::NestedPoll => {
                if drv(|d| d.depth) < MAX_DEPTH {
                    nested_poll();
                }
            }
            Act::NestedBhPoll => {
                if drv(|d| d.depth) < MAX_DEPTH {
                    nested_bh_poll();
                }
            }
            Act::FdSet(s) => eventfd_set(drv(|d| d.efds[*s])),
            Act::FdClear(s) => eventfd_clear(drv(|d| d.efds[*s])),
            Act::FdRemove(s) => fd_remove(*s),
            Act::TimerArm(s, dl) => {
                if !skip_arm(*dl, drv(|d| d.in_timer)) {
                    timer_arm(*s, *dl);
                }
            }
            Act::TimerDel(s) => timer_del_slot(*s),
        }
    }
}

/// Applies `op` to the library; returns the trace it produced.
fn drive(op: &Op) -> Vec<Ev> {
    let ctx = drv(|d| d.ctx);
    match op {
        Op::NewBh(slot, acts) => {
            if drv(|d| d.bh_slots[*slot].is_none()) {
                let id = drv(|d| {
                    let id = d.next_id;
                    d.next_id += 1;
                    d.acts.insert(id, acts.clone());
                    id
                });
                let bh = aio_bh_new(ctx, bh_func(bh_cb), opaque_of(id));
                assert!(!bh.is_null());
                drv(|d| d.bh_slots[*slot] = Some((id, bh)));
            }
        }
        Op::SetBhActs(slot, acts) => drv(|d| {
            if let Some((id, _)) = d.bh_slots[*slot] {
                d.acts.insert(id, acts.clone());
            }
        }),
        Op::Schedule(s) => schedule_slot(*s, false),
        Op::ScheduleIdle(s) => schedule_slot(*s, true),
        Op::Cancel(s) => cancel_slot(*s),
        Op::Delete(s) => delete_slot(*s),
        Op::Oneshot(acts) => oneshot(acts),
        Op::Poll { blocking } => {
            drv(|d| d.depth = 1);
            let r = aio_poll(ctx, *blocking);
            drv(|d| {
                d.record(Ev::PollRet(1, r));
                d.depth = 0;
            });
        }
        Op::BhPoll => {
            drv(|d| d.depth = 1);
            let r = aio_bh_poll(ctx);
            drv(|d| {
                d.record(Ev::BhPollRet(1, r));
                d.depth = 0;
            });
        }
        Op::FdAdd {
            slot,
            consume,
            write,
            acts,
        } => {
            let (id, efd, old) = drv(|d| {
                let id = d.next_id;
                d.next_id += 1;
                d.acts.insert(id, acts.clone());
                d.fd_of.insert(id, (*slot, *consume));
                (id, d.efds[*slot], d.fds[*slot].replace((id, *consume)))
            });
            // Replacing: the old registration is forgotten by the library.
            if let Some((old_id, _)) = old {
                drv(|d| {
                    d.acts.remove(&old_id);
                });
            }
            let w = if *write {
                io_handler(fd_write_cb)
            } else {
                ptr::null_mut()
            };
            aio_set_fd_handler(
                ctx,
                efd,
                io_handler(fd_read_cb),
                w,
                ptr::null_mut(),
                ptr::null_mut(),
                opaque_of(id),
            );
        }
        Op::FdRemove(s) => fd_remove(*s),
        Op::FdSet(s) => eventfd_set(drv(|d| d.efds[*s])),
        Op::FdClear(s) => eventfd_clear(drv(|d| d.efds[*s])),
        Op::TimerNew(slot, acts) => {
            if drv(|d| d.timers[*slot].is_none()) {
                let id = drv(|d| {
                    let id = d.next_id;
                    d.next_id += 1;
                    d.acts.insert(id, acts.clone());
                    id
                });
                let t = aio_timer_new(ctx, REALTIME, SCALE_NS, timer_func(timer_cb), opaque_of(id));
                assert!(!t.is_null());
                drv(|d| d.timers[*slot] = Some((id, t)));
            }
        }
        Op::TimerArm(s, dl) => timer_arm(*s, *dl),
        Op::TimerDel(s) => timer_del_slot(*s),
        Op::TimerFree(s) => {
            if let Some((id, t)) = drv(|d| d.timers[*s].take()) {
                timer_free(t);
                drv(|d| d.acts.remove(&id));
            }
        }
    }
    drv(|d| std::mem::take(&mut d.trace))
}

fn setup() {
    let ctx = aio_context_new(ptr::null_mut());
    assert!(!ctx.is_null(), "aio_context_new failed");
    let mut efds = [-1; FD_SLOTS];
    for e in &mut efds {
        // SAFETY: plain syscall; the fd is closed in teardown().
        *e = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(*e >= 0, "eventfd");
    }
    DRIVER.with(|d| {
        *d.borrow_mut() = Some(Driver {
            ctx,
            next_id: 1,
            bh_slots: [None; BH_SLOTS],
            efds,
            fds: [None; FD_SLOTS],
            timers: [None; TIMER_SLOTS],
            acts: HashMap::new(),
            fd_of: HashMap::new(),
            depth: 0,
            in_timer: 0,
            trace: Vec::new(),
            quiet: false,
        })
    });
}

/// Frees everything: fd handlers, timers, BHs (deleted, then the loop frees
/// them and runs the pending oneshots, which do nothing now), the eventfds
/// and the context.
fn teardown() {
    drv(|d| d.quiet = true);
    for s in 0..FD_SLOTS {
        fd_remove(s);
    }
    for s in 0..TIMER_SLOTS {
        if let Some((_, t)) = drv(|d| d.timers[s].take()) {
            timer_free(t);
        }
    }
    for s in 0..BH_SLOTS {
        delete_slot(s);
    }
    let ctx = drv(|d| d.ctx);
    // Oneshots still queued run (quietly) here, and deleted BHs are freed.
    while aio_poll(ctx, false) {}
    aio_poll(ctx, false);
    aio_context_unref(ctx);
    let d = DRIVER
        .with(|d| d.borrow_mut().take())
        .expect("driver installed");
    for e in d.efds {
        // SAFETY: closes an eventfd this test opened and no longer uses.
        unsafe { libc::close(e) };
    }
}

// ---------------------------------------------------------------------------
// Running cases

/// The seed of the case in progress, for the SIGABRT handler.
static CURRENT_SEED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_abort(sig: c_int) {
    let seed = CURRENT_SEED.load(Ordering::Relaxed);
    let mut buf = [0u8; 128];
    let msg = format_seed_line(&mut buf, seed);
    // SAFETY: write(2) and signal(2)/raise(3) are async-signal-safe; `msg`
    // points into a live stack buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// "model: the library aborted in case AIOCTX_MODEL_SEED=0x...\n", without
/// allocating (signal handler).
fn format_seed_line(buf: &mut [u8; 128], seed: u64) -> &[u8] {
    let prefix = b"\nmodel: aborted during the case with AIOCTX_MODEL_SEED=0x";
    let mut n = prefix.len();
    buf[..n].copy_from_slice(prefix);
    for i in (0..16).rev() {
        let nib = ((seed >> (i * 4)) & 0xf) as u8;
        buf[n] = if nib < 10 {
            b'0' + nib
        } else {
            b'a' + nib - 10
        };
        n += 1;
    }
    buf[n] = b'\n';
    &buf[..=n]
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// Runs one case; returns a description of the first mismatch.
fn run_case(seed: u64, steps: usize) -> Result<(usize, usize), String> {
    CURRENT_SEED.store(seed, Ordering::Relaxed);
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut log = String::new();
    let mut events = 0;
    setup();
    for step in 0..steps {
        let op = gen_op(&mut rng, &model);
        let _ = writeln!(log, "  {step:4}: {op:?}");
        if std::env::var_os("AIOCTX_MODEL_TRACE_OPS").is_some() {
            eprintln!("  {step:4}: {op:?}");
        }
        let actual = drive(&op);
        let expected = model.apply(&op, actual.clone());
        if expected != actual {
            // The context is leaked on purpose: it may be in any state.
            DRIVER.with(|d| d.borrow_mut().take());
            return Err(format!(
                "step {step}: trace mismatch\n  op:       {op:?}\n  expected: {expected:?}\n  \
                 actual:   {actual:?}\n  operations of the case:\n{log}"
            ));
        }
        events += actual.len();
    }
    teardown();
    Ok((steps, events))
}

#[test]
fn model_random_api_sequences() {
    // SAFETY: installs a handler that only uses async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t);
    }
    let steps = env_u64("AIOCTX_MODEL_STEPS").unwrap_or(200) as usize;
    let (seeds, what): (Vec<u64>, String) = if let Some(seed) = env_u64("AIOCTX_MODEL_SEED") {
        (vec![seed], format!("replaying AIOCTX_MODEL_SEED={seed:#x}"))
    } else {
        let cases = env_u64("AIOCTX_MODEL_CASES").unwrap_or(5000);
        let base = env_u64("AIOCTX_MODEL_BASE_SEED").unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            splitmix(t.as_nanos() as u64 ^ u64::from(std::process::id()))
        });
        (
            (0..cases).map(|i| splitmix(base.wrapping_add(i))).collect(),
            format!("{cases} cases from AIOCTX_MODEL_BASE_SEED={base:#x}"),
        )
    };
    let _ = writeln!(
        std::io::stderr(),
        "model: {what}, {steps} steps each (fd monitor: AIOCTX_FDMON={})",
        std::env::var("AIOCTX_FDMON").unwrap_or_else(|_| "default".into())
    );
    let start = std::time::Instant::now();
    let mut total_events = 0;
    let verbose = std::env::var_os("AIOCTX_MODEL_VERBOSE").is_some();
    for (i, &seed) in seeds.iter().enumerate() {
        if verbose {
            let _ = writeln!(
                std::io::stderr(),
                "model: case {i}: AIOCTX_MODEL_SEED={seed:#x}"
            );
        }
        match run_case(seed, steps) {
            Ok((_, events)) => total_events += events,
            Err(msg) => {
                // Not a panic: the library's panic hook would abort with
                // "aioctx: internal error". Written past the test harness's
                // output capture, then the process fails.
                let _ = writeln!(
                    std::io::stderr(),
                    "model: case {i} FAILED; replay with AIOCTX_MODEL_SEED={seed:#x} \
                     AIOCTX_MODEL_STEPS={steps}\n{msg}"
                );
                std::process::exit(1);
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "model: {} cases, {} operations, {} callback/return events checked in {:.2?}",
        seeds.len(),
        seeds.len() * steps,
        total_events,
        start.elapsed()
    );
}
