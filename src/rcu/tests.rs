//! RCU tests: grace periods with and without readers, registration misuse,
//! a reader thread exiting inside its section, `call_rcu` and
//! `drain_call_rcu`.

use super::*;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The RCU state is process-global: a test that holds a section while
/// it waits for a writer would deadlock with another test's writer, so
/// the tests run one at a time.
static TEST_LOCK: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    lock(&TEST_LOCK)
}

/// A reader inside its section blocks synchronize_rcu until it leaves;
/// a reader entering after the grace period began does not.
#[test]
fn rcu_grace_period_waits_for_old_reader() {
    let _serial = serial();
    // 0: start, 1: reader inside, 2: reader may leave, 3: reader left.
    let stage = Arc::new(AtomicU32::new(0));
    let writer_done = Arc::new(AtomicBool::new(false));

    let s = Arc::clone(&stage);
    let reader = std::thread::spawn(move || {
        read_lock().unwrap();
        read_lock().unwrap(); // nesting
        s.store(1, Ordering::SeqCst);
        while s.load(Ordering::SeqCst) != 2 {
            std::thread::yield_now();
        }
        read_unlock().unwrap();
        assert!(read_locked());
        s.store(3, Ordering::SeqCst);
        read_unlock().unwrap();
        assert!(!read_locked());
    });
    while stage.load(Ordering::SeqCst) != 1 {
        std::thread::yield_now();
    }
    let before = rcu_gp_ctr.load(Ordering::SeqCst);
    let (s, d) = (Arc::clone(&stage), Arc::clone(&writer_done));
    let writer = std::thread::spawn(move || {
        synchronize_rcu().unwrap();
        // The reader's outermost unlock (after stage 3) preceded this.
        assert_eq!(s.load(Ordering::SeqCst), 3);
        d.store(true, Ordering::SeqCst);
    });
    // The writer is blocked while the reader is inside.
    while rcu_gp_ctr.load(Ordering::SeqCst) == before {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    assert!(!writer_done.load(Ordering::SeqCst));
    // A new section, entered during the grace period, does not block it.
    read_lock().unwrap();
    stage.store(2, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(writer_done.load(Ordering::SeqCst));
    read_unlock().unwrap();
    reader.join().unwrap();
    assert_eq!(rcu_gp_ctr.load(Ordering::SeqCst) % 2, 1);
}

/// No reader inside: synchronize_rcu returns at once, and a thread that
/// exited is no longer waited for.
#[test]
fn rcu_synchronize_without_readers() {
    let _serial = serial();
    std::thread::spawn(|| {
        read_lock().unwrap();
        read_unlock().unwrap();
    })
    .join()
    .unwrap();
    synchronize_rcu().unwrap();
    read_lock().unwrap();
    assert!(synchronize_rcu().is_err());
    read_unlock().unwrap();
    synchronize_rcu().unwrap();
}

#[test]
fn rcu_register_misuse() {
    let _serial = serial();
    std::thread::spawn(|| {
        assert!(unregister_thread().is_err());
        register_thread().unwrap();
        assert!(register_thread().is_err());
        read_lock().unwrap();
        assert!(unregister_thread().is_err());
        read_unlock().unwrap();
        unregister_thread().unwrap();
        assert!(read_unlock().is_err());
    })
    .join()
    .unwrap();
}

/// A reader that exits inside its section (no unlock) is unregistered
/// by the key destructor, which wakes a writer waiting for it.
#[test]
fn rcu_reader_exit_inside_section_releases_writer() {
    let _serial = serial();
    let inside = Arc::new(AtomicBool::new(false));
    let leave = Arc::new(AtomicBool::new(false));
    let (i, l) = (Arc::clone(&inside), Arc::clone(&leave));
    let reader = std::thread::spawn(move || {
        read_lock().unwrap();
        i.store(true, Ordering::SeqCst);
        while !l.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Exits still inside the section.
    });
    while !inside.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let writer = std::thread::spawn(synchronize_rcu);
    std::thread::sleep(Duration::from_millis(10));
    leave.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    writer.join().unwrap().unwrap();
}

static CALLED: AtomicU32 = AtomicU32::new(0);

unsafe extern "C" fn count_cb(head: *mut RcuHead) {
    CALLED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the test leaked the head for us; we own it now.
    drop(unsafe { Box::from_raw(head) });
}

/// call_rcu callbacks run after a grace period, in order, with the BQL
/// held; drain_call_rcu waits for those queued before it.
#[test]
#[cfg_attr(miri, ignore = "signal masks and the BQL thread")]
fn rcu_call_and_drain() {
    let _serial = serial();
    for _ in 0..3 {
        let head = Box::into_raw(Box::new(RcuHead {
            next: ptr::null_mut(),
            func: None,
        }));
        // SAFETY: head is a fresh allocation the callback frees.
        unsafe { call_rcu(head, count_cb) }.unwrap();
    }
    drain_call_rcu().unwrap();
    assert!(CALLED.load(Ordering::SeqCst) >= 3);
}
