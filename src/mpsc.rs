//! The wait-free-to-enqueue MPSC queue ([`MpscQueue`]): an intrusive
//! multi-producer stack that its single consumer empties with one swap.
//! Three users: a context's BH queue (`bh/`), the thread pool's completion
//! queue (`thread_pool/aio.rs`) and a context's scheduled coroutines
//! (`coroutine/schedule.rs`, `aio_co_schedule`). `tests/loom_notify.rs`
//! model-checks this code (under `--cfg loom` it is built on loom's
//! atomics, see `atomics.rs`), so the model covers all three.
//!
//! Producers (any thread, even a signal handler) push with a CAS loop on the
//! head; nothing is allocated and no lock is taken: the link is a field of
//! the node ([`MpscNode`]). The users make sure a node is in the queue at
//! most once (a BH is pushed only by whoever flipped its PENDING flag from 0
//! to 1, see `bh/mod.rs`; a coroutine only by whoever marked it scheduled).
//! `push` reports whether the queue was empty, so a user can wake its
//! consumer once per batch (`aio_co_schedule` schedules one BH on that
//! edge). The consumer (the context's polling thread) takes the whole stack
//! with one `swap(null)` and reverses it, which yields the nodes in push
//! order: BHs run, and scheduled coroutines are entered, FIFO.
//!
//! Push-only plus take-all is immune to ABA: a producer's CAS only ever
//! installs its own node on top of whatever head it read, and the consumer
//! never pops single nodes with a CAS.
//!
//! Across CPUs, the head's line and a node's line are each written by the
//! other side last; both sides load before they write them (the push its
//! head before the CAS, the consumer a node's link before rewriting it), so
//! each first asks for the line writable (`atomics::prefetch_for_write`),
//! which makes it cross once instead of twice (shared, then exclusive).
//!
//! Memory ordering: the push CAS releases the node's fields and link; the
//! consumer's `swap` (and `peek`) acquire them. The handshake with
//! `notify_me` that makes a push wake a sleeping poller is a pair of
//! `SeqCst` fences in `notify.rs`, around (not inside) these operations.

use std::ptr;

use crate::atomics::{AtomicPtr, Ordering, prefetch_for_write};

/// A node that can sit in a [`MpscQueue`]: it embeds its own `next` link.
pub trait MpscNode: Sized {
    /// The node's intrusive link. Only the queue reads or writes it.
    fn next(&self) -> &AtomicPtr<Self>;
}

/// Intrusive MPSC stack of `N`s, drained in FIFO order (module docs).
pub struct MpscQueue<N: MpscNode> {
    head: AtomicPtr<N>,
}

// SAFETY: the queue only stores pointers; the nodes' owners guarantee that a
// pushed node stays alive until the consumer has taken it (documented on
// `push`), and all accesses to `head` are atomic.
unsafe impl<N: MpscNode> Send for MpscQueue<N> {}
// SAFETY: as above; `push` is designed for concurrent callers.
unsafe impl<N: MpscNode> Sync for MpscQueue<N> {}

impl<N: MpscNode> Default for MpscQueue<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<N: MpscNode> MpscQueue<N> {
    pub fn new() -> Self {
        MpscQueue {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Pushes `node`; true if the queue was empty (this push starts a new
    /// batch for the consumer). Lock-free, allocation-free, callable from
    /// any thread.
    ///
    /// # Safety
    /// `node` must be valid, must not be in this (or any) queue already, and
    /// must stay valid until the consumer has taken it out again.
    #[inline]
    pub unsafe fn push(&self, node: *mut N) -> bool {
        // The load below and the CAS need the head's line; the consumer on
        // another CPU wrote it last. Asked for writable at once, it crosses
        // once instead of twice (shared for the load, then exclusive).
        prefetch_for_write(&self.head);
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the caller guarantees `node` is valid and not shared
            // through the queue yet, so nobody else reads its link.
            unsafe { (*node).next().store(head, Ordering::Relaxed) };
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return head.is_null(),
                Err(actual) => head = actual,
            }
        }
    }

    /// True if a producer has pushed something the consumer has not taken.
    /// (After `NotifyState::arm`, whose fence orders this load.)
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Acquire).is_null()
    }

    /// [`MpscQueue::is_empty`] for the consumer's "anything to take?" before
    /// [`MpscQueue::take_all_fifo`], whose swap acquires what it takes: a
    /// Relaxed load (a stale "empty" only defers the nodes to the next take;
    /// the wakeup handshake does not rely on this load).
    #[inline]
    pub fn is_empty_relaxed(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    /// The most recently pushed node, for a read-only walk by the consumer
    /// (nodes stay linked and alive until the consumer itself takes them).
    #[inline]
    pub fn peek(&self) -> *mut N {
        self.head.load(Ordering::Acquire)
    }

    /// Takes every queued node and returns the first-pushed one; the rest
    /// follow through `next()` in push order. Null when empty.
    ///
    /// Only the single consumer may call this.
    #[inline]
    pub fn take_all_fifo(&self) -> *mut N {
        self.take_all_fifo_with_tail().0
    }

    /// Like [`MpscQueue::take_all_fifo`], also returning the last node (null
    /// when empty), so that the batch can be appended to another list.
    #[inline]
    pub fn take_all_fifo_with_tail(&self) -> (*mut N, *mut N) {
        let newest = self.head.load(Ordering::Relaxed);
        if newest.is_null() {
            return (ptr::null_mut(), ptr::null_mut());
        }
        // The newest node's line (its link is rewritten below; a producer
        // on another CPU wrote it last) comes while the swap waits for the
        // head's. A stale pointer is harmless: this only hints the cache.
        prefetch_for_write(newest);
        let mut node = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        // The most recent push ends up last.
        let tail = node;
        let mut reversed: *mut N = ptr::null_mut();
        while !node.is_null() {
            // SAFETY: every node reachable from the head we swapped out was
            // pushed (and so kept alive) by a producer, and now belongs to the
            // consumer alone.
            let next = unsafe { (*node).next().load(Ordering::Relaxed) };
            // SAFETY: as above.
            unsafe { (*node).next().store(reversed, Ordering::Relaxed) };
            reversed = node;
            node = next;
        }
        (reversed, tail)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Node {
        value: usize,
        next: AtomicPtr<Node>,
    }

    impl MpscNode for Node {
        fn next(&self) -> &AtomicPtr<Node> {
            &self.next
        }
    }

    fn node(value: usize) -> *mut Node {
        Box::into_raw(Box::new(Node {
            value,
            next: AtomicPtr::new(ptr::null_mut()),
        }))
    }

    /// Drains a FIFO chain into values, freeing the nodes.
    fn drain(mut n: *mut Node) -> Vec<usize> {
        let mut out = Vec::new();
        while !n.is_null() {
            // SAFETY: the chain came from take_all_fifo and is ours.
            let b = unsafe { Box::from_raw(n) };
            out.push(b.value);
            n = b.next.load(Ordering::Relaxed);
        }
        out
    }

    #[test]
    fn empty_queue_takes_nothing() {
        let q: MpscQueue<Node> = MpscQueue::new();
        assert!(q.is_empty());
        assert!(q.take_all_fifo().is_null());
    }

    #[test]
    fn takes_in_push_order() {
        let q = MpscQueue::new();
        for i in 0..5 {
            // SAFETY: fresh node, freed by drain.
            let was_empty = unsafe { q.push(node(i)) };
            assert_eq!(was_empty, i == 0, "only the first push finds it empty");
        }
        assert!(!q.is_empty());
        assert_eq!(drain(q.take_all_fifo()), vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn pushes_after_take_form_a_new_batch() {
        let q = MpscQueue::new();
        // SAFETY: fresh nodes, freed by drain.
        unsafe { q.push(node(1)) };
        let first = q.take_all_fifo();
        // SAFETY: as above.
        let was_empty = unsafe { q.push(node(2)) };
        assert!(was_empty, "a push after take starts a batch");
        assert_eq!(drain(first), vec![1]);
        assert_eq!(drain(q.take_all_fifo()), vec![2]);
    }

    #[test]
    fn concurrent_producers_lose_nothing_and_keep_per_thread_order() {
        const THREADS: usize = 4;
        let per_thread = if cfg!(miri) { 50 } else { 10_000 };
        let q = Arc::new(MpscQueue::new());
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let q = Arc::clone(&q);
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        // SAFETY: fresh node, freed by drain below.
                        unsafe { q.push(node(t * 1_000_000 + i)) };
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        loop {
            let done = handles.iter().all(|h| h.is_finished());
            seen.extend(drain(q.take_all_fifo()));
            if done && q.is_empty() {
                break;
            }
            std::thread::yield_now();
        }
        for h in handles {
            h.join().unwrap();
        }
        seen.extend(drain(q.take_all_fifo()));
        assert_eq!(seen.len(), THREADS * per_thread);
        for t in 0..THREADS {
            let mine: Vec<_> = seen
                .iter()
                .copied()
                .filter(|v| v / 1_000_000 == t)
                .map(|v| v % 1_000_000)
                .collect();
            assert_eq!(mine, (0..per_thread).collect::<Vec<_>>());
        }
    }
}
