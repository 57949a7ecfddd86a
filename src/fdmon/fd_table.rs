//! [`FdTable`]: a map keyed by fd that is an array indexed by the fd, for
//! the maps looked up once per ready fd on every loop iteration: the loop
//! thread's mirror of the handlers (`handlers/local.rs`) and the io_uring
//! monitor's watches.
//!
//! fds are small non-negative integers handed out lowest-first, so the
//! array is about as long as the highest fd in it: one `Option<V>` per
//! number below it (8 bytes for the mirror's `Arc`, with its `None` niche;
//! 24 for an io_uring watch), as libuv's watcher array, and its memory goes
//! back when the highest fds are removed. fds from [`DENSE_LIMIT`] up (a
//! process with a raised `RLIMIT_NOFILE`, or a `dup2` to a high number) go
//! to a hash map instead, so the array never passes 1.5 MB. A lookup in
//! the array is one load from one slot, where a hash map (`fdmon::FdMap`)
//! touches a control group and a bucket: with many fds and one ready per
//! wait, those are cache misses right after the syscall (see
//! `bench/fd_1000.c`).
//!
//! Threading: owned by the thread polling the context, like its users.

use std::os::fd::RawFd;

use super::FdMap;

/// fds below this are array slots; the others go to the overflow map.
pub(crate) const DENSE_LIMIT: usize = 1 << 16;

/// fd -> `V`, for fds >= 0.
pub(crate) struct FdTable<V> {
    slots: Vec<Option<V>>,
    /// Entries for fds >= [`DENSE_LIMIT`].
    overflow: FdMap<V>,
    /// Entries in `slots` and `overflow`.
    len: usize,
}

impl<V> Default for FdTable<V> {
    fn default() -> Self {
        FdTable {
            slots: Vec::new(),
            overflow: FdMap::default(),
            len: 0,
        }
    }
}

/// The slot index of `fd`, if it has one (0 <= fd < [`DENSE_LIMIT`]).
#[inline(always)]
fn dense(fd: RawFd) -> Option<usize> {
    usize::try_from(fd).ok().filter(|&i| i < DENSE_LIMIT)
}

impl<V> FdTable<V> {
    #[inline]
    pub(crate) fn get(&self, fd: RawFd) -> Option<&V> {
        match dense(fd) {
            Some(i) => self.slots.get(i).and_then(Option::as_ref),
            None => self.get_overflow(fd),
        }
    }

    #[cold]
    fn get_overflow(&self, fd: RawFd) -> Option<&V> {
        self.overflow.get(&fd)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, fd: RawFd) -> Option<&mut V> {
        match dense(fd) {
            Some(i) => self.slots.get_mut(i).and_then(Option::as_mut),
            None => self.overflow.get_mut(&fd),
        }
    }

    /// Stores `v` for `fd` (>= 0: callers register only open fds) and
    /// returns the value it replaces.
    pub(crate) fn insert(&mut self, fd: RawFd, v: V) -> Option<V> {
        assert!(fd >= 0, "registered fds are not negative");
        let old = match dense(fd) {
            Some(i) => {
                if i >= self.slots.len() {
                    self.slots.resize_with(i + 1, || None);
                }
                self.slots[i].replace(v)
            }
            None => self.overflow.insert(fd, v),
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub(crate) fn remove(&mut self, fd: RawFd) -> Option<V> {
        let old = match dense(fd) {
            Some(i) => self.slots.get_mut(i).and_then(Option::take),
            None => self.overflow.remove(&fd),
        };
        if old.is_some() {
            self.len -= 1;
            // Give back the tail once the highest fds are gone, and the
            // memory once it is mostly unused.
            while self.slots.last().is_some_and(Option::is_none) {
                self.slots.pop();
            }
            if self.slots.len() < self.slots.capacity() / 4 {
                self.slots.shrink_to(self.slots.len() * 2);
            }
        }
        old
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries: the array's by increasing fd, then the overflow's.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (RawFd, &V)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as RawFd, v.as_ref()?)))
            .chain(self.overflow.iter().map(|(&fd, v)| (fd, v)))
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map() {
        let mut t = FdTable::default();
        assert!(t.is_empty());
        assert_eq!(t.insert(5, "a"), None);
        assert_eq!(t.insert(2, "b"), None);
        assert_eq!(t.insert(5, "c"), Some("a"));
        assert_eq!(
            (t.len(), t.get(5), t.get(2), t.get(3)),
            (2, Some(&"c"), Some(&"b"), None)
        );
        assert_eq!((t.get(-1), t.get(1000)), (None, None));
        *t.get_mut(2).unwrap() = "d";
        assert!(t.get_mut(3).is_none() && t.get_mut(-1).is_none());
        assert_eq!(t.get(2), Some(&"d"));
        *t.get_mut(2).unwrap() = "b";
        assert_eq!(t.iter().collect::<Vec<_>>(), [(2, &"b"), (5, &"c")]);
        assert_eq!(t.remove(3), None);
        assert_eq!(t.remove(-4), None);
        assert_eq!(t.remove(5), Some("c"));
        assert_eq!(t.slots.len(), 3, "tail given back");
        assert_eq!(t.values().collect::<Vec<_>>(), [&"b"]);
        assert_eq!(t.remove(2), Some("b"));
        assert!(t.is_empty() && t.slots.is_empty());
    }

    #[test]
    fn a_high_fd_gone_gives_its_memory_back() {
        let mut t = FdTable::default();
        t.insert(3, 3u64);
        t.insert(60_000, 4);
        assert!(t.slots.capacity() > 60_000);
        t.remove(60_000);
        assert_eq!(t.slots.len(), 4);
        assert!(t.slots.capacity() <= 8, "capacity {}", t.slots.capacity());
        assert_eq!(t.get(3), Some(&3));
    }

    /// fds from DENSE_LIMIT up live in the overflow map: no array grows
    /// to them, and they behave like the others.
    #[test]
    fn fds_past_the_dense_limit_overflow() {
        let mut t = FdTable::default();
        let high = i32::MAX - 1;
        let edge = DENSE_LIMIT as RawFd;
        assert_eq!(t.insert(high, "h"), None);
        assert_eq!(t.insert(edge, "e"), None);
        assert_eq!(t.insert(edge - 1, "d"), None);
        assert_eq!(t.slots.len(), DENSE_LIMIT);
        assert_eq!(
            (t.len(), t.get(high), t.get(edge)),
            (3, Some(&"h"), Some(&"e"))
        );
        *t.get_mut(high).unwrap() = "H";
        assert_eq!(t.insert(high, "h2"), Some("H"));
        let mut all: Vec<_> = t.iter().collect();
        all.sort();
        assert_eq!(all, [(edge - 1, &"d"), (edge, &"e"), (high, &"h2")]);
        assert_eq!(t.remove(edge - 1), Some("d"));
        assert!(t.slots.is_empty(), "the array is given back");
        assert_eq!(
            (t.remove(high), t.remove(edge), t.remove(edge)),
            (Some("h2"), Some("e"), None)
        );
        assert!(t.is_empty() && t.values().next().is_none());
    }
}
