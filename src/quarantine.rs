//! A bounded graveyard for dead C-visible objects (contexts, standalone
//! timer lists): their memory is kept, marked dead by its owner, for a
//! while after they are freed, so that a stale handle is reported ("was
//! already freed") instead of silently reading reused memory.
//!
//! Threading: any thread; a short lock. The evicted shell is freed outside
//! the lock.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// How many dead shells each quarantine keeps.
const QUARANTINE_LEN: usize = 64;

struct Shell<T>(*mut T);
// SAFETY: a quarantined shell is dead: only its atomic magic is ever read
// through stale handles, and it is freed by whichever thread evicts it.
unsafe impl<T> Send for Shell<T> {}

pub(crate) struct Quarantine<T> {
    shells: Mutex<VecDeque<Shell<T>>>,
    /// Frees an evicted shell (it came from the owner's allocator).
    release: unsafe fn(*mut T),
}

/// Releases a shell that came from `Box::into_raw`.
///
/// # Safety
/// `shell` is a dead box owned by the caller.
pub(crate) unsafe fn release_box<T>(shell: *mut T) {
    // SAFETY: per the contract.
    drop(unsafe { Box::from_raw(shell) });
}

impl<T> Quarantine<T> {
    /// A quarantine whose evicted shells are freed by `release`.
    pub(crate) const fn new(release: unsafe fn(*mut T)) -> Self {
        Quarantine {
            shells: Mutex::new(VecDeque::new()),
            release,
        }
    }

    /// Keeps `shell`, freeing the oldest one once more than the bound are
    /// kept.
    ///
    /// # Safety
    /// `shell` can be freed by this quarantine's `release`, is dead (its
    /// owner marked it so and tore it down) and from now on belongs to the
    /// quarantine.
    pub(crate) unsafe fn keep(&self, shell: *mut T) {
        let evicted = {
            let mut q = self.shells.lock();
            q.push_back(Shell(shell));
            if q.len() > QUARANTINE_LEN {
                q.pop_front()
            } else {
                None
            }
        };
        if let Some(Shell(old)) = evicted {
            // SAFETY: per `keep`'s contract, evicted shells are dead, owned
            // by the quarantine alone and freed by `release`.
            unsafe { (self.release)(old) };
        }
    }
}
