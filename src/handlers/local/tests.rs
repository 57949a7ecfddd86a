//! Tests of the loop-thread half: the mirror's retirement of registrations
//! a nested sync replaces, and `wait_and_take`.

use std::ffi::c_void;
use std::os::fd::AsRawFd;
use std::sync::Weak;

use super::super::Callbacks;
use super::*;

unsafe extern "C" fn nop(_: *mut c_void) {}

fn reader() -> Callbacks {
    Callbacks {
        io_read: Some(nop),
        io_write: None,
        io_poll: None,
        io_poll_ready: None,
        io_poll_begin: None,
        io_poll_end: None,
        opaque: std::ptr::null_mut(),
        notifier: false,
    }
}

/// The mirror's registration of `fd`, as a weak reference.
fn mirrored(local: &HandlersLocal, fd: RawFd) -> Weak<Handler> {
    Arc::downgrade(local.mirror.get(fd).expect("fd is mirrored"))
}

/// `wait_and_take` hands out each ready registered fd with its
/// registration, says (without listing it) that the wakeup fd was
/// ready, and leaves nothing fresh for a GSource dispatch.
#[test]
fn wait_and_take_keeps_the_wakeup_fd_apart() {
    use crate::fdmon::tests::{drain, eventfd, poke};
    let (a, b, wakeup) = (eventfd(), eventfd(), eventfd());
    let shared = Handlers::default();
    let mut local = HandlersLocal::default();
    shared.set(a.as_raw_fd(), reader()).unwrap();
    shared.set(b.as_raw_fd(), reader()).unwrap();
    local.sync(&shared, wakeup.as_raw_fd(), false);
    let handler_a = Arc::as_ptr(local.mirror.get(a.as_raw_fd()).unwrap());

    poke(&a);
    poke(&wakeup);
    let mut out = Vec::new();
    assert!(local.wait_and_take(0, wakeup.as_raw_fd(), &mut out));
    assert_eq!(out.len(), 1);
    assert!(std::ptr::eq(out[0].0, handler_a));
    assert_ne!(out[0].1 & POLLIN, 0);
    assert!(!local.has_fresh_ready() && !local.ready_is_fresh());

    // Level-triggered: `a` again, and the wakeup no more once drained.
    drain(&wakeup);
    out.clear();
    assert!(!local.wait_and_take(0, wakeup.as_raw_fd(), &mut out));
    assert_eq!(out.len(), 1);
    drain(&a);
    out.clear();
    assert!(!local.wait_and_take(0, wakeup.as_raw_fd(), &mut out));
    assert!(out.is_empty());
}

/// A ready list holds plain pointers (`ReadyHandler`): a registration
/// removed or replaced by a nested sync (a callback of the dispatch)
/// must stay allocated until a sync at depth 1.
#[test]
fn nested_sync_retires_instead_of_dropping() {
    let (a, b) = (
        crate::fdmon::tests::eventfd(),
        crate::fdmon::tests::eventfd(),
    );
    let wakeup = crate::fdmon::tests::eventfd();
    let shared = Handlers::default();
    let mut local = HandlersLocal::default();
    shared.set(a.as_raw_fd(), reader()).unwrap();
    shared.set(b.as_raw_fd(), reader()).unwrap();
    local.sync(&shared, wakeup.as_raw_fd(), false);
    let (old_a, old_b) = (
        mirrored(&local, a.as_raw_fd()),
        mirrored(&local, b.as_raw_fd()),
    );

    // Nested: a removal and a replacement keep the old registrations.
    shared
        .set(
            a.as_raw_fd(),
            Callbacks {
                io_read: None,
                ..reader()
            },
        )
        .unwrap();
    shared.set(b.as_raw_fd(), reader()).unwrap();
    local.sync(&shared, wakeup.as_raw_fd(), true);
    assert!(old_a.upgrade().is_some_and(|h| !h.is_live()));
    assert!(old_b.upgrade().is_some_and(|h| !h.is_live()));
    let new_b = mirrored(&local, b.as_raw_fd());

    // The next sync at depth 1 drops them; a change at depth 1 drops at
    // once.
    shared
        .set(
            b.as_raw_fd(),
            Callbacks {
                io_read: None,
                ..reader()
            },
        )
        .unwrap();
    local.sync(&shared, wakeup.as_raw_fd(), false);
    assert!(old_a.upgrade().is_none());
    assert!(old_b.upgrade().is_none());
    assert!(new_b.upgrade().is_none());
}
