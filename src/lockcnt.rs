//! `QemuLockCnt` (`qemu/lockcnt.h`): a counter of visitors plus a mutex in
//! one 32-bit futex word, QEMU's size (4 bytes). Visitors of a data
//! structure `inc` and `dec` the count without the lock; a thread that
//! wants to free the structure takes the lock once the count drops to zero
//! (`dec_and_lock`, `dec_if_lock`, or `lock` and then checking `count`).
//!
//! Word layout: bits 0-1 are the lock state (0 free, 1 locked, 2 locked
//! with sleepers), bits 2-31 the count (in steps of [`COUNT_ONE`]).
//! `inc` waits while the count is zero and the lock is held: the holder may
//! be freeing what the visitor is about to visit (QEMU's rule).
//!
//! Threading: every function may be called from any thread; `unlock` and
//! `inc_and_unlock` by the thread that holds the lock.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::fatal::MisuseResult;
use crate::sync::{futex_wait, futex_wake};

const LOCK_MASK: u32 = 3;
const LOCKED: u32 = 1;
const LOCKED_WAITERS: u32 = 2;
const COUNT_ONE: u32 = 4;

/// The core's view of a caller's `QemuLockCnt` word.
#[repr(transparent)]
pub(crate) struct LockCnt(AtomicU32);

impl LockCnt {
    pub(crate) fn init(&self) {
        self.0.store(0, Ordering::Release);
    }

    pub(crate) fn count(&self) -> u32 {
        self.0.load(Ordering::Acquire) / COUNT_ONE
    }

    /// Marks a locked word as having sleepers and sleeps until it changes.
    fn wait_locked(&self, seen: u32) -> MisuseResult<()> {
        let target = (seen & !LOCK_MASK) | LOCKED_WAITERS;
        if seen & LOCK_MASK == LOCKED
            && self
                .0
                .compare_exchange(seen, target, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(()); // changed meanwhile: look again
        }
        futex_wait(&self.0, target)
    }

    /// Takes the lock, whatever the count.
    pub(crate) fn lock(&self) -> MisuseResult<()> {
        loop {
            let v = self.0.load(Ordering::Relaxed);
            if v & LOCK_MASK == 0 {
                // Take it as LOCKED_WAITERS after having slept: other
                // sleepers may remain, and unlock must wake them.
                if self
                    .0
                    .compare_exchange_weak(v, v | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
            } else {
                self.wait_locked(v)?;
                // Once we slept, keep the waiters mark when we take it.
                loop {
                    let v = self.0.load(Ordering::Relaxed);
                    if v & LOCK_MASK != 0 {
                        self.wait_locked(v)?;
                        continue;
                    }
                    if self
                        .0
                        .compare_exchange_weak(
                            v,
                            v | LOCKED_WAITERS,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Releases the lock, adding `add` to the count in the same step.
    fn release(&self, add: u32) -> MisuseResult<()> {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            let new = (v & !LOCK_MASK).wrapping_add(add);
            match self
                .0
                .compare_exchange_weak(v, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => v = cur,
            }
        }
        if v & LOCK_MASK == LOCKED_WAITERS {
            futex_wake(&self.0, i32::MAX)?;
        }
        Ok(())
    }

    pub(crate) fn unlock(&self) -> MisuseResult<()> {
        self.release(0)
    }

    pub(crate) fn inc_and_unlock(&self) -> MisuseResult<()> {
        self.release(COUNT_ONE)
    }

    pub(crate) fn inc(&self) -> MisuseResult<()> {
        loop {
            let v = self.0.load(Ordering::Relaxed);
            if v >= COUNT_ONE || v & LOCK_MASK == 0 {
                if self
                    .0
                    .compare_exchange_weak(v, v + COUNT_ONE, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(());
                }
            } else {
                self.wait_locked(v)?;
            }
        }
    }

    pub(crate) fn dec(&self) {
        self.0.fetch_sub(COUNT_ONE, Ordering::Release);
    }

    /// Decrements; if that makes the count zero, returns true with the lock
    /// held. Otherwise returns false without it.
    pub(crate) fn dec_and_lock(&self) -> MisuseResult<bool> {
        loop {
            let v = self.0.load(Ordering::Relaxed);
            if v >= 2 * COUNT_ONE {
                if self
                    .0
                    .compare_exchange_weak(v, v - COUNT_ONE, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(false);
                }
                continue;
            }
            // The count is 1 (or 0 by misuse): decrement under the lock.
            self.lock()?;
            let after = self.0.fetch_sub(COUNT_ONE, Ordering::AcqRel) - COUNT_ONE;
            if after < COUNT_ONE {
                return Ok(true);
            }
            self.unlock()?;
            return Ok(false);
        }
    }

    /// If the count is 1, makes it 0 and returns true with the lock held;
    /// otherwise returns false and changes nothing.
    pub(crate) fn dec_if_lock(&self) -> MisuseResult<bool> {
        if self.count() != 1 {
            return Ok(false);
        }
        self.lock()?;
        if self.count() == 1 {
            self.0.fetch_sub(COUNT_ONE, Ordering::AcqRel);
            return Ok(true);
        }
        self.unlock()?;
        Ok(false)
    }
}
