//! Pools of terminated coroutines (`CONFIG_COROUTINE_POOL`,
//! `qemu_coroutine_inc_pool_size`, `qemu_coroutine_dec_pool_size`).
//!
//! Each thread keeps up to [`LOCAL_MAX`] terminated coroutines in a plain
//! `Vec` (no lock, no allocation in steady state). When it overflows (a
//! thread that terminates coroutines other threads created), a batch moves
//! to the shared pool; a thread whose own pool is empty takes a batch from
//! the shared pool before mapping a new stack. At thread exit the local
//! pool moves to the shared one.
//!
//! Bound: every pooled stack is two memory mappings, so the shared pool
//! holds at most a quarter of `vm.max_map_count` by default (16 k stacks
//! on a stock kernel: enough for 10 000 nested coroutines to be recycled
//! instead of re-mapped), plus what `qemu_coroutine_inc_pool_size` added.
//! Beyond that, terminated coroutines are unmapped.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::CoBox;

/// Terminated coroutines a thread keeps for itself.
const LOCAL_MAX: usize = 256;
/// Coroutines moved to or from the shared pool at once.
const BATCH: usize = 128;
/// Default bound of the shared pool when `vm.max_map_count` is unknown.
const DEFAULT_SHARED_MAX: usize = 16_384;

struct Pooled(Vec<*mut CoBox>);
// SAFETY: pooled objects are terminated and owned by the pool alone.
unsafe impl Send for Pooled {}

static SHARED: Mutex<Pooled> = Mutex::new(Pooled(Vec::new()));
/// 0 until first computed; see [`shared_max`].
static SHARED_MAX: AtomicUsize = AtomicUsize::new(0);

struct Local(Vec<*mut CoBox>);

impl Drop for Local {
    fn drop(&mut self) {
        let rest = put_shared(std::mem::take(&mut self.0));
        for co in rest {
            // SAFETY: pooled: terminated, switched out, unreferenced.
            unsafe { CoBox::free(co) };
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = const { RefCell::new(Local(Vec::new())) };
}

fn shared_max() -> usize {
    let max = SHARED_MAX.load(Ordering::Relaxed);
    if max != 0 {
        return max;
    }
    let computed = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(DEFAULT_SHARED_MAX, |n| (n / 4).max(BATCH));
    // Another thread may have computed it, or inc/dec changed it: keep theirs.
    match SHARED_MAX.compare_exchange(0, computed, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => computed,
        Err(v) => v,
    }
}

/// Moves `cos` into the shared pool as far as its bound allows; returns
/// the ones that did not fit.
fn put_shared(mut cos: Vec<*mut CoBox>) -> Vec<*mut CoBox> {
    if cos.is_empty() {
        return cos;
    }
    let max = shared_max();
    let mut shared = SHARED.lock();
    let room = max.saturating_sub(shared.0.len()).min(cos.len());
    let keep = cos.len() - room;
    shared.0.extend(cos.drain(keep..));
    cos
}

/// A terminated coroutine to reuse, if any pool has one.
#[inline]
pub(super) fn take() -> Option<*mut CoBox> {
    LOCAL.with(|l| {
        let mut local = l.borrow_mut();
        if let Some(co) = local.0.pop() {
            return Some(co);
        }
        refill(&mut local)
    })
}

/// [`take`] with an empty local pool: a batch from the shared pool.
#[cold]
#[inline(never)]
fn refill(local: &mut Local) -> Option<*mut CoBox> {
    let mut shared = SHARED.lock();
    let n = shared.0.len().min(BATCH);
    let start = shared.0.len() - n;
    local.0.extend(shared.0.drain(start..));
    drop(shared);
    local.0.pop()
}

/// Pools (or frees) a coroutine that just terminated.
///
/// # Safety
/// `co` terminated and is switched out; the caller gives it up.
/// Not inlined (the enter loop stays small); the overflow is out of line.
#[inline(never)]
pub(super) unsafe fn give_back(co: *mut CoBox) {
    let pooled = LOCAL.try_with(|l| {
        let mut local = l.borrow_mut();
        if local.0.len() < LOCAL_MAX {
            local.0.push(co);
            return true;
        }
        false
    });
    if pooled != Ok(true) {
        // SAFETY: per the caller.
        unsafe { give_back_slow(co) };
    }
}

/// [`give_back`] with a full local pool, or during thread exit.
///
/// # Safety
/// As for [`give_back`].
#[cold]
#[inline(never)]
unsafe fn give_back_slow(co: *mut CoBox) {
    let overflow = LOCAL.try_with(|l| {
        let mut local = l.borrow_mut();
        if local.0.len() < LOCAL_MAX {
            local.0.push(co);
            return Vec::new();
        }
        let start = local.0.len() - BATCH;
        let mut batch: Vec<*mut CoBox> = local.0.drain(start..).collect();
        local.0.push(co);
        batch = put_shared(batch);
        batch
    });
    // During thread exit the local pool is gone: free directly.
    let rest = overflow.unwrap_or_else(|_| vec![co]);
    for co in rest {
        // SAFETY: terminated, switched out and unreferenced.
        unsafe { CoBox::free(co) };
    }
}

/// `qemu_coroutine_inc_pool_size`: the shared pool may hold `n` more.
pub(crate) fn inc_pool_size(n: usize) {
    let max = shared_max();
    SHARED_MAX.store(max.saturating_add(n), Ordering::Relaxed);
}

/// `qemu_coroutine_dec_pool_size`: the shared pool may hold `n` fewer
/// (never below one batch); excess pooled coroutines are unmapped.
pub(crate) fn dec_pool_size(n: usize) {
    let max = shared_max().saturating_sub(n).max(BATCH);
    SHARED_MAX.store(max, Ordering::Relaxed);
    let excess: Vec<*mut CoBox> = {
        let mut shared = SHARED.lock();
        let keep = shared.0.len().min(max);
        shared.0.drain(keep..).collect()
    };
    for co in excess {
        // SAFETY: pooled: terminated, switched out, unreferenced.
        unsafe { CoBox::free(co) };
    }
}
