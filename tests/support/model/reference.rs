//! The reference model: what the library's trace must be after each
//! operation (the rules are in the parent module's documentation).

use super::*;

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

pub(super) struct Model {
    next_id: u64,
    pub(super) bh_slots: [Option<u64>; BH_SLOTS],
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
    pub(super) fn new() -> Self {
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
    pub(super) fn blocking_poll_is_quick(&self) -> bool {
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
    pub(super) fn apply(&mut self, op: &Op, actual: Vec<Ev>) -> Vec<Ev> {
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
