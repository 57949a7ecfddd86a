//! Model checks (loom) of the two lock-free pieces every wakeup depends on:
//! the MPSC queue (`aioctx::MpscQueue`, `src/mpsc.rs`: a context's BH
//! queue, the thread pool's completions and `aio_co_schedule`'s scheduled
//! coroutines are all this one type) and the notify handshake
//! (`aioctx::NotifyState`). Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom_notify --target-dir target/loom
//! ```
//!
//! Under `--cfg loom` the crate builds those two modules on loom's atomics,
//! so loom explores the interleavings (and weak-memory outcomes) of the real
//! code. The eventfd is modelled as a counter behind a loom `Mutex` +
//! `Condvar`: a poller that decides to sleep really blocks, and a lost
//! wakeup shows up as a loom deadlock (all threads blocked), in addition to
//! the explicit "slept => the eventfd was written" assertions.
//!
//! The `broken_*` tests run deliberately broken variants (a local copy of
//! the handshake with `Relaxed` orderings; the real types used in the wrong
//! order; a copy of the earlier flag protocol whose `notify` stores the
//! flag instead of swapping it) and
//! expect loom to find the lost wakeup (`#[should_panic]`): the models can
//! fail. Checked by hand: turning the store back into a swap in
//! `broken_notify_store_loses_wakeup` makes loom accept it, so it is that
//! one change that loom catches there.
//!
//! History: a first version of `notify.rs` built both handshakes on
//! `SeqCst` *accesses* only (no fences). The (a) and (b) models failed on
//! it, because loom treats `SeqCst` accesses as `AcqRel` (see loom's README,
//! "Unsupported features") and so cannot prove a Dekker pattern made of
//! them; the protocol now uses `SeqCst` fences, which loom models exactly.
//! That version also had two holes in the C11 model itself, which these
//! tests would catch: the blocking poll scans the queue with `peek`
//! (`Acquire`, outside the `SeqCst` order: `a_bh_push_wakes_poller_peek`),
//! and `notify` stored the flag (`broken_notify_store_loses_wakeup`).
//!
//! Keep the models small: each test explores every interleaving. The
//! preemption bound (3, or `LOOM_MAX_PREEMPTIONS`) keeps the whole file well
//! under a minute in release mode.
#![cfg(loom)]

use std::collections::BTreeSet;

use aioctx::{MpscNode, MpscQueue, NotifyState};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

// ---------------------------------------------------------------------------
// Harness.

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// A queue node whose payload is a loom `UnsafeCell`: loom reports a read
/// that is not ordered after the write (a missing happens-before edge).
struct Node {
    value: UnsafeCell<usize>,
    next: AtomicPtr<Node>,
}

impl MpscNode for Node {
    fn next(&self) -> &AtomicPtr<Node> {
        &self.next
    }
}

/// A raw node pointer that may cross threads (the queue's contract makes the
/// hand-over safe).
#[derive(Clone, Copy)]
struct NodePtr(*mut Node);
// SAFETY: ownership of the node is handed over through the queue.
unsafe impl Send for NodePtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for NodePtr {}

fn new_node() -> NodePtr {
    NodePtr(Box::into_raw(Box::new(Node {
        value: UnsafeCell::new(0),
        next: AtomicPtr::new(std::ptr::null_mut()),
    })))
}

/// Producer side: fill in the node's payload, then publish it.
///
/// # Safety
/// `n` is a fresh node owned by the caller.
/// Returns `push`'s "the queue was empty".
unsafe fn fill_and_push(q: &MpscQueue<Node>, n: NodePtr, value: usize) -> bool {
    // SAFETY: not shared yet.
    unsafe { (*n.0).value.with_mut(|v| *v = value) };
    // SAFETY: fresh node, kept alive until the consumer frees it.
    unsafe { q.push(n.0) }
}

/// Consumer side: take everything, read each payload (loom checks that the
/// producer's write is visible), free the nodes, return the values in order.
fn take_values(q: &MpscQueue<Node>) -> Vec<usize> {
    let mut out = Vec::new();
    let mut n = q.take_all_fifo();
    while !n.is_null() {
        // SAFETY: taken nodes belong to the consumer.
        let node = unsafe { Box::from_raw(n) };
        // SAFETY: no other access to the payload now; loom checks that
        // the producer's write happens-before this read.
        out.push(node.value.with(|v| unsafe { *v }));
        n = node.next.load(Ordering::Relaxed);
    }
    out
}

/// The context's wakeup eventfd: `write` adds 1, a blocking `read` waits for
/// a non-zero count and clears it. The kernel's eventfd lock orders a write
/// before the read that consumes it, which the mutex models.
struct EventFd {
    count: Mutex<usize>,
    cv: Condvar,
    writes: AtomicUsize,
}

impl EventFd {
    fn new() -> Self {
        EventFd {
            count: Mutex::new(0),
            cv: Condvar::new(),
            writes: AtomicUsize::new(0),
        }
    }

    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        *self.count.lock().unwrap() += 1;
        self.cv.notify_one();
    }

    /// Blocks until written. A wakeup nobody will send is a loom deadlock.
    fn read_blocking(&self) {
        let mut c = self.count.lock().unwrap();
        while *c == 0 {
            c = self.cv.wait(c).unwrap();
        }
        *c = 0;
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::Relaxed)
    }
}

/// How the poller looks at the queue before sleeping.
#[derive(Clone, Copy)]
enum QueueCheck {
    /// `MpscQueue::is_empty` (the `SeqCst` load that notify.rs describes).
    IsEmpty,
    /// `MpscQueue::peek`, which `aio_compute_timeout` (and so a blocking
    /// `aio_poll`) uses to scan the queue without taking it.
    Peek,
}

fn queue_has_work(q: &MpscQueue<Node>, how: QueueCheck) -> bool {
    match how {
        QueueCheck::IsEmpty => !q.is_empty(),
        QueueCheck::Peek => !q.peek().is_null(),
    }
}

// ---------------------------------------------------------------------------
// (a) BH push vs a blocking poller.

/// One producer schedules one BH (push + `must_kick_after_push`) while the
/// poller runs blocking `aio_poll` iterations until it has dispatched it.
fn bh_push_vs_blocking_poller(how: QueueCheck) {
    model(move || {
        let q = Arc::new(MpscQueue::<Node>::new());
        let ns = Arc::new(NotifyState::new());
        let efd = Arc::new(EventFd::new());

        let producer = {
            let (q, ns, efd) = (q.clone(), ns.clone(), efd.clone());
            let n = new_node();
            thread::spawn(move || {
                // SAFETY: fresh node.
                unsafe { fill_and_push(&q, n, 42) };
                if ns.must_kick_after_push() {
                    efd.write();
                }
            })
        };

        // The poller: blocking aio_poll iterations, as in src/aio_poll.rs.
        let mut slept = 0;
        let mut got = Vec::new();
        loop {
            // Dispatch first (the previous iteration's bh_poll).
            got.extend(take_values(&q));
            if !got.is_empty() {
                break;
            }
            ns.arm();
            if !ns.is_notified() && !queue_has_work(&q, how) {
                slept += 1;
                efd.read_blocking();
            }
            ns.disarm();
            ns.accept();
        }

        producer.join().unwrap();
        assert_eq!(got, vec![42]);
        // Every sleep was ended by a write (a sleep that no write ends is
        // reported by loom as a deadlock before we get here).
        assert!(
            slept <= efd.writes(),
            "slept {slept}x, {} writes",
            efd.writes()
        );
        assert!(take_values(&q).is_empty());
    });
}

#[test]
fn a_bh_push_wakes_poller_is_empty() {
    bh_push_vs_blocking_poller(QueueCheck::IsEmpty);
}

#[test]
fn a_bh_push_wakes_poller_peek() {
    bh_push_vs_blocking_poller(QueueCheck::Peek);
}

/// The same handshake seen from one decision: whenever the poller commits
/// to sleeping, the producer writes the eventfd (checked after joining,
/// without modelling the sleep itself).
#[test]
fn a_sleep_decision_implies_kick() {
    sleep_decision_implies_kick(NotifyState::arm, NotifyState::disarm);
}

/// The same with the GLib loop as the poller (`arm_gsource`, whose flag is
/// a word of its own since issue 14): the producer's check reads it too.
#[test]
fn a_sleep_decision_implies_kick_gsource() {
    sleep_decision_implies_kick(NotifyState::arm_gsource, NotifyState::disarm_gsource);
}

/// The model of the two tests above, for a poller that announces itself
/// with `arm` and withdraws with `disarm`.
fn sleep_decision_implies_kick(arm: fn(&NotifyState), disarm: fn(&NotifyState)) {
    model(move || {
        let q = Arc::new(MpscQueue::<Node>::new());
        let ns = Arc::new(NotifyState::new());
        let kicked = Arc::new(AtomicUsize::new(0));

        let producer = {
            let (q, ns, kicked) = (q.clone(), ns.clone(), kicked.clone());
            let n = new_node();
            thread::spawn(move || {
                // SAFETY: fresh node.
                unsafe { fill_and_push(&q, n, 7) };
                if ns.must_kick_after_push() {
                    kicked.fetch_add(1, Ordering::Relaxed);
                }
            })
        };

        arm(&ns);
        let would_sleep = !ns.is_notified() && q.is_empty();
        producer.join().unwrap();
        if would_sleep {
            assert_eq!(kicked.load(Ordering::Relaxed), 1, "lost wakeup");
        }
        disarm(&ns);
        assert_eq!(take_values(&q), vec![7]);
    });
}

// ---------------------------------------------------------------------------
// (b) Explicit aio_notify after changing a condition.

fn notify_vs_blocking_poller(cond_store: Ordering) {
    model(move || {
        let ns = Arc::new(NotifyState::new());
        let efd = Arc::new(EventFd::new());
        let cond = Arc::new(AtomicBool::new(false));

        let notifier = {
            let (ns, efd, cond) = (ns.clone(), efd.clone(), cond.clone());
            thread::spawn(move || {
                cond.store(true, cond_store);
                if ns.notify() {
                    efd.write();
                }
            })
        };

        // AIO_WAIT_WHILE(!cond): check the condition, then one blocking
        // aio_poll iteration (arm, check notified, sleep or not, disarm,
        // accept), until the condition is seen.
        let mut slept = 0;
        let mut iterations = 0;
        while !cond.load(Ordering::Acquire) {
            iterations += 1;
            assert!(iterations <= 3, "the poller keeps missing the condition");
            ns.arm();
            if !ns.is_notified() {
                slept += 1;
                efd.read_blocking();
            }
            ns.disarm();
            ns.accept();
        }

        notifier.join().unwrap();
        assert!(
            slept <= efd.writes(),
            "slept {slept}x, {} writes",
            efd.writes()
        );
    });
}

#[test]
fn b_notify_wakes_poller_release_condition() {
    notify_vs_blocking_poller(Ordering::Release);
}

#[test]
fn b_notify_wakes_poller_relaxed_condition() {
    // `notify()` itself publishes the condition (its increment of
    // `notified` releases, `accept`'s load acquires).
    notify_vs_blocking_poller(Ordering::Relaxed);
}

/// A notification that arrives before the poller arms is not lost either:
/// `notified` stays ahead of `accepted` until `accept`, so the next poll
/// does not sleep.
#[test]
fn b_early_notify_skips_sleep() {
    model(|| {
        let ns = Arc::new(NotifyState::new());
        let efd = Arc::new(EventFd::new());
        {
            let ns = ns.clone();
            let efd = efd.clone();
            thread::spawn(move || {
                if ns.notify() {
                    efd.write();
                }
            })
            .join()
            .unwrap();
        }
        ns.arm();
        assert!(ns.is_notified());
        ns.disarm();
        assert!(ns.accept());
        assert!(!ns.accept());
        assert_eq!(efd.writes(), 0, "nobody was armed: no syscall");
    });
}

// ---------------------------------------------------------------------------
// (c) Several producers, one consumer.

#[test]
fn c_every_node_taken_once_in_per_producer_order() {
    model(|| {
        let q = Arc::new(MpscQueue::<Node>::new());
        // Producer 0 pushes values 0 and 1 (in that order), producer 1
        // pushes 10.
        let plan: [&[usize]; 2] = [&[0, 1], &[10]];
        let producers: Vec<_> = plan
            .iter()
            .map(|values| {
                let q = q.clone();
                let nodes: Vec<_> = values.iter().map(|&v| (new_node(), v)).collect();
                thread::spawn(move || {
                    for (n, v) in nodes {
                        // SAFETY: fresh node.
                        unsafe { fill_and_push(&q, n, v) };
                    }
                })
            })
            .collect();

        // The consumer takes concurrently with the producers, then once more.
        let mut seen = take_values(&q);
        for p in producers {
            p.join().unwrap();
        }
        seen.extend(take_values(&q));

        let unique: BTreeSet<_> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a node was taken twice: {seen:?}");
        assert_eq!(unique, BTreeSet::from([0, 1, 10]), "lost a node: {seen:?}");
        let pos = |v| seen.iter().position(|&x| x == v).unwrap();
        assert!(pos(0) < pos(1), "producer order not kept: {seen:?}");
        assert!(q.is_empty());
    });
}

/// `aio_co_schedule`'s use of the queue: only the push that finds it empty
/// asks for a consumer run (schedules the oneshot BH that enters the
/// coroutines), so every node must be taken by a run that some such push
/// asked for, whatever the interleaving with a consumer taking concurrently.
#[test]
fn c_empty_edge_push_asks_for_a_run_that_takes_every_node() {
    model(|| {
        let q = Arc::new(MpscQueue::<Node>::new());
        // Consumer runs asked for (oneshot BHs scheduled) so far.
        let asked = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = [1usize, 2]
            .iter()
            .map(|&v| {
                let (q, asked) = (q.clone(), asked.clone());
                let n = new_node();
                thread::spawn(move || {
                    // SAFETY: fresh node.
                    if unsafe { fill_and_push(&q, n, v) } {
                        asked.fetch_add(1, Ordering::Release);
                    }
                })
            })
            .collect();
        let mut runs = 0;
        let mut seen = Vec::new();
        // One run may happen while the producers still push...
        if asked.load(Ordering::Acquire) > runs {
            runs += 1;
            seen.extend(take_values(&q));
        }
        for p in producers {
            p.join().unwrap();
        }
        // ...the others once they are done; no run without a request.
        while asked.load(Ordering::Acquire) > runs {
            runs += 1;
            seen.extend(take_values(&q));
        }
        seen.sort_unstable();
        assert_eq!(seen, [1, 2], "a node was left without a consumer run");
        assert!(q.is_empty());
    });
}

/// A producer that re-pushes a node after the consumer took it (what
/// `qemu_bh_schedule` does after dispatch cleared PENDING): the link is
/// rewritten safely and nothing is lost.
#[test]
fn c_node_reused_after_take() {
    model(|| {
        let q = Arc::new(MpscQueue::<Node>::new());
        let n = new_node();
        // Hand-over flag standing in for the BH's PENDING bit.
        let pending = Arc::new(AtomicBool::new(true));
        // SAFETY: fresh node.
        unsafe { fill_and_push(&q, n, 1) };

        let producer = {
            let (q, pending) = (q.clone(), pending.clone());
            thread::spawn(move || {
                // Re-schedule once the consumer has unlinked it.
                if pending
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // SAFETY: PENDING 0 -> 1: ours to push; alive (freed below
                    // only after join).
                    unsafe { (*n.0).value.with_mut(|v| *v = 2) };
                    // SAFETY: as above.
                    unsafe { q.push(n.0) };
                }
            })
        };

        let mut seen = Vec::new();
        let mut m = q.take_all_fifo();
        while !m.is_null() {
            // SAFETY: taken, so ours until PENDING is cleared; read the link
            // and the payload before clearing it.
            let (next, value) =
                unsafe { ((*m).next.load(Ordering::Relaxed), (*m).value.with(|v| *v)) };
            seen.push(value);
            pending.store(false, Ordering::Release);
            m = next;
        }
        producer.join().unwrap();
        let mut m = q.take_all_fifo();
        while !m.is_null() {
            // SAFETY: taken (the producer is done); the node stays alive
            // until the `Box::from_raw` below.
            let (next, value) =
                unsafe { ((*m).next.load(Ordering::Relaxed), (*m).value.with(|v| *v)) };
            seen.push(value);
            m = next;
        }
        assert!(seen == [1] || seen == [1, 2], "{seen:?}");
        // SAFETY: not linked any more; sole owner.
        drop(unsafe { Box::from_raw(n.0) });
    });
}

// ---------------------------------------------------------------------------
// The models can fail: a broken copy of the protocol.

/// The handshake of notify.rs with every ordering weakened to `Relaxed`
/// (and the queue head reduced to a flag). Without the store->load ordering
/// on both sides, each side may read the other's old value: the producer
/// sees `notify_me == 0`, the poller sees an empty queue, and nobody wakes
/// the sleeping poller.
struct BrokenHandshake {
    notify_me: AtomicU32,
    work: AtomicBool,
}

#[test]
#[should_panic(expected = "lost wakeup")]
fn broken_relaxed_protocol_loses_wakeup() {
    model(|| {
        let h = Arc::new(BrokenHandshake {
            notify_me: AtomicU32::new(0),
            work: AtomicBool::new(false),
        });
        let efd = Arc::new(EventFd::new());
        let producer = {
            let (h, efd) = (h.clone(), efd.clone());
            thread::spawn(move || {
                h.work.store(true, Ordering::Relaxed);
                if h.notify_me.load(Ordering::Relaxed) != 0 {
                    efd.write();
                }
            })
        };
        h.notify_me.fetch_add(2, Ordering::Relaxed);
        let would_sleep = !h.work.load(Ordering::Relaxed);
        producer.join().unwrap();
        if would_sleep {
            assert_eq!(efd.writes(), 1, "lost wakeup");
        }
    });
}

/// A broken variant closer to a plausible mistake, on the real types: the
/// poller checks for work *before* arming. Fails whatever the orderings.
///
/// (It asserts after joining rather than blocking on the eventfd: a loom
/// deadlock inside a `#[should_panic]` test panics again while unwinding
/// and aborts the test binary.)
#[test]
#[should_panic(expected = "lost wakeup")]
fn broken_check_before_arm_loses_wakeup() {
    model(|| {
        let q = Arc::new(MpscQueue::<Node>::new());
        let ns = Arc::new(NotifyState::new());
        let kicked = Arc::new(AtomicUsize::new(0));
        let producer = {
            let (q, ns, kicked) = (q.clone(), ns.clone(), kicked.clone());
            let n = new_node();
            thread::spawn(move || {
                // SAFETY: fresh node.
                unsafe { fill_and_push(&q, n, 1) };
                if ns.must_kick_after_push() {
                    kicked.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let empty = q.is_empty();
        ns.arm();
        let would_sleep = empty && !ns.is_notified();
        producer.join().unwrap();
        if would_sleep {
            assert_eq!(kicked.load(Ordering::Relaxed), 1, "lost wakeup");
        }
        ns.disarm();
        take_values(&q);
    });
}

/// Two notifiers, one poller: `accept` must acquire *both* conditions.
#[test]
fn b_two_notifiers_both_conditions_seen() {
    model(|| {
        let ns = Arc::new(NotifyState::new());
        let efd = Arc::new(EventFd::new());
        let conds = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let notifiers: Vec<_> = (0..2)
            .map(|i| {
                let (ns, efd, conds) = (ns.clone(), efd.clone(), conds.clone());
                thread::spawn(move || {
                    conds[i].store(true, Ordering::Relaxed);
                    if ns.notify() {
                        efd.write();
                    }
                })
            })
            .collect();
        let mut iterations = 0;
        while !conds.iter().all(|c| c.load(Ordering::Relaxed)) {
            iterations += 1;
            assert!(iterations <= 4, "the poller keeps missing a condition");
            ns.arm();
            if !ns.is_notified() {
                efd.read_blocking();
            }
            ns.disarm();
            ns.accept();
        }
        for n in notifiers {
            n.join().unwrap();
        }
    });
}

/// A local copy of the explicit-notify handshake, in its earlier form (a
/// flag, cleared by `accept`; notify.rs now counts with `fetch_add`, an RMW
/// too) with one change: `notify` *stores* the flag instead of swapping it. With two notifiers, the
/// poller's clear may read the second notifier's store, which does not
/// carry the first notifier's condition (a plain store ends the release
/// sequence), while the first notifier saw nobody armed: a lost wakeup.
struct StoreNotify {
    notify_me: AtomicU32,
    notified: AtomicBool,
}

#[test]
#[should_panic(expected = "lost wakeup")]
fn broken_notify_store_loses_wakeup() {
    model(|| {
        let ns = Arc::new(StoreNotify {
            notify_me: AtomicU32::new(0),
            notified: AtomicBool::new(false),
        });
        let writes = Arc::new(AtomicUsize::new(0));
        let conds = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let mut notifiers: Vec<_> = (0..2)
            .map(|i| {
                let (ns, writes, conds) = (ns.clone(), writes.clone(), conds.clone());
                thread::spawn(move || {
                    conds[i].store(true, Ordering::Relaxed);
                    ns.notified.store(true, Ordering::Release);
                    loom::sync::atomic::fence(Ordering::SeqCst);
                    if ns.notify_me.load(Ordering::Relaxed) != 0 {
                        writes.fetch_add(1, Ordering::Release);
                    }
                })
            })
            .collect();
        let mut consumed = 0;
        while !conds.iter().all(|c| c.load(Ordering::Relaxed)) {
            ns.notify_me.fetch_add(2, Ordering::Relaxed);
            loom::sync::atomic::fence(Ordering::SeqCst);
            if !ns.notified.load(Ordering::Acquire) {
                // Sleep: only a write can end it; once every notifier is
                // done, none will come.
                for n in notifiers.drain(..) {
                    n.join().unwrap();
                }
                assert!(writes.load(Ordering::Acquire) > consumed, "lost wakeup");
                consumed += 1;
            }
            ns.notify_me.fetch_sub(2, Ordering::Release);
            if ns.notified.load(Ordering::Relaxed) {
                ns.notified.swap(false, Ordering::AcqRel);
            }
        }
        for n in notifiers {
            n.join().unwrap();
        }
    });
}
