//! The driver: the same operations on the real library.

use super::*;

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
pub(super) fn drive(op: &Op) -> Vec<Ev> {
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

pub(super) fn setup() {
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
pub(super) fn teardown() {
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

/// After a mismatch: forgets the driver (the context is leaked, it may be in
/// any state) so that the next case starts afresh.
pub(super) fn abandon() {
    DRIVER.with(|d| d.borrow_mut().take());
}
