//! `EventNotifier`: QEMU's one-eventfd wakeup object (`qemu/event_notifier.h`).
//!
//! The struct is caller-owned and embedded in C structs, so it is `#[repr(C)]`
//! with QEMU's fields (`rfd`, `wfd`, `initialized`); on Linux `rfd == wfd`.
//! Every context also owns one for its own wakeups (`context/`).
//!
//! Threading: `set` may be called from any thread (it is one `write(2)`);
//! `test_and_clear` is meant for the thread that polls the fd.

use std::io;
use std::os::raw::c_int;

/// An eventfd-based notifier, embedded by value in caller structs.
///
/// `rfd` and `wfd` are the same eventfd on Linux. `initialized` is false
/// before `event_notifier_init` and after `event_notifier_cleanup`.
#[repr(C)]
#[derive(Debug)]
pub struct EventNotifier {
    /// The fd to poll and read (the eventfd).
    pub rfd: c_int,
    /// The fd `event_notifier_set` writes (the same eventfd as `rfd`).
    pub wfd: c_int,
    /// True between `event_notifier_init` and `event_notifier_cleanup`.
    pub initialized: bool,
}

const _: () = assert!(std::mem::size_of::<EventNotifier>() == 12);
const _: () = assert!(std::mem::align_of::<EventNotifier>() == 4);

impl EventNotifier {
    /// A notifier that owns no fd yet (`initialized == false`).
    pub(crate) const fn uninit() -> Self {
        EventNotifier {
            rfd: -1,
            wfd: -1,
            initialized: false,
        }
    }

    /// Opens the eventfd, set if `active`. `nonblocking` is QEMU's mode;
    /// the context's own notifier is blocking so that a thread with nothing
    /// else to watch can sleep in a single `read(2)`.
    pub(crate) fn init(&mut self, active: bool, nonblocking: bool) -> io::Result<()> {
        let mut flags = libc::EFD_CLOEXEC;
        if nonblocking {
            flags |= libc::EFD_NONBLOCK;
        }
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(u32::from(active), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.init_fd(fd);
        Ok(())
    }

    /// Wraps an fd the caller opened (`event_notifier_init_fd`).
    pub(crate) fn init_fd(&mut self, fd: c_int) {
        self.rfd = fd;
        self.wfd = fd;
        self.initialized = true;
    }

    /// Closes the fd; harmless on a notifier that is not initialized.
    pub(crate) fn cleanup(&mut self) {
        if !self.initialized {
            return;
        }
        // SAFETY: the fd is owned by this notifier and closed once, here.
        unsafe { libc::close(self.rfd) };
        if self.wfd != self.rfd {
            // SAFETY: as above, for a distinct write end.
            unsafe { libc::close(self.wfd) };
        }
        *self = Self::uninit();
    }

    /// Adds one to the counter. A full counter (EAGAIN) is already "set".
    pub(crate) fn set(&self) -> io::Result<()> {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64.
            let n = unsafe { libc::write(self.wfd, (&raw const one).cast(), 8) };
            if n == 8 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(()),
                _ => return Err(err),
            }
        }
    }

    /// Blocks until the counter is set (blocking eventfd) and resets it, or
    /// until a signal interrupts the wait; returns whether it was set. Not
    /// retried on `EINTR`: a blocking `aio_poll` must return to its caller
    /// when a signal arrives (QEMU's `while (!quit) aio_poll(ctx, true)`).
    pub(crate) fn wait_and_clear(&self) -> bool {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64.
        let n = unsafe { libc::read(self.rfd, (&raw mut value).cast(), 8) };
        n == 8 && value != 0
    }

    /// Reads and resets the counter; returns whether it was set. On a
    /// blocking eventfd this blocks until it is set (retrying `EINTR`: use
    /// it when the counter is known to be set or about to be).
    pub(crate) fn test_and_clear(&self) -> bool {
        let mut value: u64 = 0;
        loop {
            // SAFETY: reads at most 8 bytes into a live u64.
            let n = unsafe { libc::read(self.rfd, (&raw mut value).cast(), 8) };
            if n == 8 {
                return value != 0;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
    }
}
