//! The armed timers of one clock of one context: an implicit min-heap
//! keyed by (deadline, arming sequence number).
//!
//! Each timer stores its position in the heap (`heap_index`), so re-arming
//! or deleting an arbitrary timer is O(log n): no search, no sorted-list
//! walk. The deadline and the arming sequence number are copied into the
//! 24-byte heap entry (`QEMUTimer` has QEMU's 48 bytes and no room for the
//! sequence number), so sifting compares contiguous entries and touches a
//! timer only to update its index.
//!
//! The heap is 4-ary rather than binary: half the depth, so half the cache
//! misses and index updates per sift, and a node's four children share one
//! or two cache lines. With 100 000 armed timers, re-arming a random one
//! costs about 20% less than with a binary heap (bench/timer.c). Set
//! [`ARITY`] to 2 for the binary heap; nothing else depends on it.
//!
//! Ties on the deadline go to the timer armed first: every arming (first or
//! re-arm) takes the next sequence number, as QEMU's sorted list inserts a
//! timer after those with the same deadline.
//!
//! Threading: the heap lives behind its list's mutex. The `expire_time`
//! and `heap_index` fields of a timer in the heap are written only
//! with that mutex held.

use std::ptr;
use std::sync::atomic::Ordering;

use super::Timer;
use crate::fatal::{Misuse, MisuseResult};

/// Children per node.
const ARITY: usize = 4;

/// `heap_index` of a timer that is in no heap.
pub(crate) const NOT_IN_HEAP: u32 = u32::MAX;

/// A heap slot: the deadline and sequence number (copied, so that sifting
/// compares entries without touching timers) and the timer.
#[derive(Clone, Copy)]
struct Entry {
    /// Never negative (see [`TimerHeap::arm`]).
    expire: i64,
    seq: u64,
    timer: *const Timer,
}

impl Entry {
    /// The heap order, (deadline, sequence number), as one integer: one
    /// 128-bit compare (two instructions) instead of two compares and
    /// branches. Deadlines are never negative, so the unsigned deadline
    /// orders as the signed one. Keys are unique (so are sequence numbers).
    #[inline(always)]
    fn key(&self) -> u128 {
        (u128::from(self.expire as u64) << 64) | u128::from(self.seq)
    }

    #[inline(always)]
    fn before(&self, other: &Entry) -> bool {
        self.key() < other.key()
    }
}

pub(crate) struct TimerHeap {
    entries: Vec<Entry>,
    next_seq: u64,
}

// SAFETY: the heap holds pointers to caller-owned timers, which must stay
// valid while armed (the C contract); they are dereferenced only by the
// thread holding the list's mutex, whichever thread that is.
unsafe impl Send for TimerHeap {}

impl TimerHeap {
    pub(crate) const fn new() -> Self {
        TimerHeap {
            entries: Vec::new(),
            next_seq: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The earliest deadline, or `i64::MAX` when empty.
    #[inline]
    pub(crate) fn earliest(&self) -> i64 {
        self.entries.first().map_or(i64::MAX, |e| e.expire)
    }

    /// Where `timer` is: `Ok(None)` if in no heap, `Ok(Some(i))` if it is
    /// entry `i` of this one. A timer whose index points at another timer was
    /// copied or moved while armed (or belongs to another heap): refused.
    #[inline]
    pub(crate) fn position(&self, timer: &Timer) -> MisuseResult<Option<usize>> {
        let index = timer.heap_index.load(Ordering::Relaxed);
        if index == NOT_IN_HEAP {
            return Ok(None);
        }
        match self.entries.get(index as usize) {
            Some(e) if ptr::eq(e.timer, timer) => Ok(Some(index as usize)),
            _ => Err(Misuse::new(
                "QEMUTimer is armed but not where its timer list has it (was the struct copied or moved while armed?)",
            )),
        }
    }

    /// Arms `timer` at `expire` (ns, not negative: `timer_mod` clamps
    /// negative deadlines to 0), or re-arms it if `pos` (from
    /// [`Self::position`]) says it is already here; it then takes the next
    /// sequence number, so it goes after timers with the same deadline.
    ///
    /// # Safety
    /// `timer` stays valid while it is in the heap, and `pos` is what
    /// `position(timer)` returned under the same lock.
    #[inline]
    pub(crate) unsafe fn arm(&mut self, timer: &Timer, pos: Option<usize>, expire: i64) {
        debug_assert!(expire >= 0, "negative deadline {expire}");
        let seq = self.next_seq;
        self.next_seq += 1;
        // The timer's copy of its old deadline equals its entry's; reading
        // it from the timer (already in cache) keeps the entry's cache miss
        // off the path that picks the sift direction.
        let old_expire = timer.expire_time.load(Ordering::Relaxed);
        timer.expire_time.store(expire, Ordering::Relaxed);
        let entry = Entry {
            expire,
            seq,
            timer: ptr::from_ref(timer),
        };
        match pos {
            None => {
                assert!(
                    self.entries.len() < NOT_IN_HEAP as usize,
                    "too many armed timers"
                );
                let last = self.entries.len();
                self.entries.push(entry);
                Self::sift_up(&mut self.entries, last, entry);
            }
            Some(i) => {
                // The new sequence number is the largest, so on an equal
                // deadline the timer moves down, after its ties.
                if expire < old_expire {
                    Self::sift_up(&mut self.entries, i, entry);
                } else {
                    Self::sift_down(&mut self.entries, i, entry);
                }
            }
        }
    }

    /// Every armed timer with its deadline (ns) and sequence number, in
    /// heap order (for `aioctx_context_dump`; sort by `(expire, seq)` for
    /// firing order).
    pub(crate) fn armed(&self) -> impl Iterator<Item = (i64, u64, *const Timer)> + '_ {
        self.entries.iter().map(|e| (e.expire, e.seq, e.timer))
    }

    /// Removes the timer at `pos` and marks it not pending.
    pub(crate) fn remove_at(&mut self, pos: usize) {
        let removed = self.entries[pos];
        let last = self.entries.pop().expect("pos is a valid index");
        if pos < self.entries.len() {
            if last.before(&removed) {
                Self::sift_up(&mut self.entries, pos, last);
            } else {
                Self::sift_down(&mut self.entries, pos, last);
            }
        }
        // SAFETY: entries point to live timers (see `arm`).
        unsafe { Self::mark_disarmed(removed.timer) };
    }

    /// Removes and returns the earliest timer if its deadline is `<= now`.
    #[inline]
    pub(crate) fn pop_expired(&mut self, now: i64) -> Option<*const Timer> {
        let first = self.entries.first()?;
        if first.expire > now {
            return None;
        }
        let timer = first.timer;
        self.remove_at(0);
        Some(timer)
    }

    /// Empties the heap, marking every timer not pending; calls `f` on each.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(*const Timer)) {
        for e in self.entries.drain(..) {
            // SAFETY: entries point to live timers (see `arm`).
            unsafe { Self::mark_disarmed(e.timer) };
            f(e.timer);
        }
    }

    /// # Safety
    /// `timer` is live.
    #[inline(always)]
    unsafe fn mark_disarmed(timer: *const Timer) {
        // SAFETY: per the caller.
        let t = unsafe { &*timer };
        t.heap_index.store(NOT_IN_HEAP, Ordering::Relaxed);
        t.expire_time.store(-1, Ordering::Relaxed);
    }

    /// Stores `e` at `pos` and tells its timer.
    #[inline(always)]
    fn place(entries: &mut [Entry], pos: usize, e: Entry) {
        entries[pos] = e;
        // SAFETY: entries point to live timers (see `arm`).
        unsafe { &*e.timer }
            .heap_index
            .store(pos as u32, Ordering::Relaxed);
    }

    /// Moves the hole at `pos` up until `e` fits, then fills it with `e`.
    /// (The sifts take the entries as a slice, not `&mut self`: then the
    /// compiler knows that storing a timer's index does not change the
    /// vector's buffer pointer, and keeps it in a register.)
    #[inline]
    fn sift_up(entries: &mut [Entry], mut pos: usize, e: Entry) {
        assert!(pos < entries.len(), "hole outside the heap");
        let key = e.key();
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            // SAFETY: `parent < pos < entries.len()`: checked on entry, and
            // `pos` only moves to parents. (The compiler cannot elide these
            // two bounds checks: they cost ~20 of the ~250 instructions of
            // an insertion among 1000 timers.)
            let p = unsafe { *entries.get_unchecked(parent) };
            if key >= p.key() {
                break;
            }
            // SAFETY: as above.
            unsafe { *entries.get_unchecked_mut(pos) = p };
            // SAFETY: entries point to live timers (see `arm`).
            unsafe { &*p.timer }
                .heap_index
                .store(pos as u32, Ordering::Relaxed);
            pos = parent;
        }
        Self::place(entries, pos, e);
    }

    /// Moves the hole at `pos` down until `e` fits, then fills it with `e`.
    /// Inlined: re-arming a timer to a later deadline is the common case
    /// (a timeout pushed back), and a call costs as much as a level.
    #[inline(always)]
    fn sift_down(entries: &mut [Entry], mut pos: usize, e: Entry) {
        let len = entries.len();
        assert!(pos < len, "hole outside the heap");
        let key = e.key();
        loop {
            let first = ARITY * pos + 1;
            let best = if let Some(children) = entries.get(first..first + ARITY) {
                // A full set of children, compared without a loop.
                let children: &[Entry; ARITY] = children.try_into().expect("ARITY entries");
                first + min_index(children)
            } else if first < len {
                first + min_index(&entries[first..])
            } else {
                break;
            };
            let b = entries[best];
            if b.key() >= key {
                break;
            }
            // SAFETY: `pos < len`: checked on entry, and `pos` only moves
            // to a child that exists (`best`, just read).
            unsafe { *entries.get_unchecked_mut(pos) = b };
            // SAFETY: entries point to live timers (see `arm`).
            unsafe { &*b.timer }
                .heap_index
                .store(pos as u32, Ordering::Relaxed);
            pos = best;
        }
        Self::place(entries, pos, e);
    }

    /// Checks the heap property and every timer's index (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            // SAFETY: test timers outlive the heap.
            let t = unsafe { &*e.timer };
            assert_eq!(t.heap_index.load(Ordering::Relaxed) as usize, i);
            assert_eq!(t.expire_time.load(Ordering::Relaxed), e.expire);
            if i > 0 {
                assert!(
                    !e.before(&self.entries[(i - 1) / ARITY]),
                    "heap order at {i}"
                );
            }
        }
    }
}

/// The index of the smallest of `entries` (1 to [`ARITY`] of them: a
/// node's children; the first one on a tie, though keys are unique).
/// Only the keys are carried along: the caller loads the winner.
#[inline(always)]
fn min_index(entries: &[Entry]) -> usize {
    let mut best = 0;
    let mut best_key = entries[0].key();
    for (i, c) in entries.iter().enumerate().skip(1) {
        let k = c.key();
        if k < best_key {
            best = i;
            best_key = k;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers(n: usize) -> Vec<Timer> {
        (0..n).map(|_| Timer::zeroed_for_test()).collect()
    }

    /// Pops everything (now = MAX), returning indices into `ts`.
    fn pop_all(heap: &mut TimerHeap, ts: &[Timer]) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some(t) = heap.pop_expired(i64::MAX) {
            heap.check();
            out.push(ts.iter().position(|x| ptr::eq(x, t)).unwrap());
        }
        out
    }

    fn arm(heap: &mut TimerHeap, t: &Timer, expire: i64) {
        let pos = heap.position(t).unwrap();
        // SAFETY: test timers outlive the heap.
        unsafe { heap.arm(t, pos, expire) };
        heap.check();
    }

    #[test]
    fn insert_pops_in_deadline_order() {
        let ts = timers(6);
        let mut heap = TimerHeap::new();
        for (t, d) in ts.iter().zip([50, 10, 40, 20, 60, 30]) {
            arm(&mut heap, t, d);
        }
        assert_eq!(heap.earliest(), 10);
        assert_eq!(pop_all(&mut heap, &ts), vec![1, 3, 5, 2, 0, 4]);
        for t in &ts {
            assert_eq!(t.heap_index.load(Ordering::Relaxed), NOT_IN_HEAP);
            assert_eq!(t.expire_time.load(Ordering::Relaxed), -1);
        }
        assert_eq!(heap.earliest(), i64::MAX);
    }

    #[test]
    fn ties_pop_in_arming_order_and_rearm_goes_last() {
        let ts = timers(4);
        let mut heap = TimerHeap::new();
        for t in &ts {
            arm(&mut heap, t, 7);
        }
        // Re-arming timer 0 at the same deadline puts it after the others.
        arm(&mut heap, &ts[0], 7);
        assert_eq!(pop_all(&mut heap, &ts), vec![1, 2, 3, 0]);
    }

    #[test]
    fn pop_expired_respects_now() {
        let ts = timers(3);
        let mut heap = TimerHeap::new();
        arm(&mut heap, &ts[0], 100);
        arm(&mut heap, &ts[1], 200);
        arm(&mut heap, &ts[2], 300);
        assert!(heap.pop_expired(99).is_none());
        assert!(ptr::eq(heap.pop_expired(200).unwrap(), &ts[0]));
        assert!(ptr::eq(heap.pop_expired(200).unwrap(), &ts[1]));
        assert!(heap.pop_expired(200).is_none());
        assert_eq!(heap.earliest(), 300);
    }

    #[test]
    fn rearm_moves_both_ways() {
        let ts = timers(5);
        let mut heap = TimerHeap::new();
        for (i, t) in ts.iter().enumerate() {
            arm(&mut heap, t, 10 * (i as i64 + 1));
        }
        arm(&mut heap, &ts[0], 100); // earliest becomes latest
        assert_eq!(heap.earliest(), 20);
        arm(&mut heap, &ts[4], 1); // latest becomes earliest
        assert_eq!(heap.earliest(), 1);
        assert_eq!(pop_all(&mut heap, &ts), vec![4, 1, 2, 3, 0]);
    }

    #[test]
    fn remove_anywhere_keeps_indices() {
        let ts = timers(9);
        let mut heap = TimerHeap::new();
        for (t, d) in ts.iter().zip([5, 3, 8, 1, 9, 2, 7, 4, 6]) {
            arm(&mut heap, t, d);
        }
        for victim in [3, 8, 0] {
            let pos = heap.position(&ts[victim]).unwrap().unwrap();
            heap.remove_at(pos);
            heap.check();
            assert_eq!(heap.position(&ts[victim]).unwrap(), None);
        }
        assert_eq!(heap.len(), 6);
        assert_eq!(pop_all(&mut heap, &ts), vec![5, 1, 7, 6, 2, 4]);
    }

    #[test]
    fn a_copied_timer_is_refused() {
        let ts = timers(2);
        let mut heap = TimerHeap::new();
        arm(&mut heap, &ts[0], 1);
        // ts[1] claims index 0, which belongs to ts[0] (as a byte copy would).
        ts[1].heap_index.store(0, Ordering::Relaxed);
        assert!(heap.position(&ts[1]).is_err());
        ts[1].heap_index.store(5, Ordering::Relaxed);
        assert!(heap.position(&ts[1]).is_err());
    }

    #[test]
    fn random_operations_match_a_model() {
        // xorshift, so the test needs no RNG crate and is reproducible.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ts = timers(200);
        let mut heap = TimerHeap::new();
        // model[i] = Some((expire, seq)) while ts[i] is armed.
        let mut model: Vec<Option<(i64, u64)>> = vec![None; ts.len()];
        let mut armings = 0u64;
        let ops = if cfg!(miri) { 600 } else { 20_000 };
        for _ in 0..ops {
            let i = (rand() % ts.len() as u64) as usize;
            match rand() % 4 {
                0 => {
                    if let Some(pos) = heap.position(&ts[i]).unwrap() {
                        heap.remove_at(pos);
                        model[i] = None;
                    }
                }
                1 => {
                    let now = (rand() % 1000) as i64;
                    let expected = model
                        .iter()
                        .enumerate()
                        .filter_map(|(j, m)| m.map(|k| (k, j)))
                        .min()
                        .filter(|((e, _), _)| *e <= now)
                        .map(|(_, j)| j);
                    let got = heap
                        .pop_expired(now)
                        .map(|t| ts.iter().position(|x| ptr::eq(x, t)).unwrap());
                    assert_eq!(got, expected);
                    if let Some(j) = got {
                        model[j] = None;
                    }
                }
                _ => {
                    let expire = (rand() % 1000) as i64;
                    arm(&mut heap, &ts[i], expire);
                    // Every arming takes the next sequence number.
                    model[i] = Some((expire, armings));
                    armings += 1;
                }
            }
            heap.check();
            assert_eq!(heap.len(), model.iter().flatten().count());
        }
    }
}
