//! `call_rcu1` and `drain_call_rcu`: callbacks queued for a helper thread
//! (started on first use) that waits one grace period per batch
//! ([`super::synchronize_rcu`]) and runs the batch with the BQL held, as
//! QEMU does. A drain queues a marker and waits for the thread to reach it.

use std::collections::VecDeque;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};

use super::{lock, register_thread, synchronize_rcu};
use crate::fatal::{self, Misuse, MisuseResult};
use crate::thread;

/// QEMU's `struct rcu_head`.
#[repr(C)]
pub struct RcuHead {
    pub next: *mut RcuHead,
    pub func: Option<RcuFunc>,
}

/// QEMU's `RCUCBFunc`: `void func(struct rcu_head *head)`.
pub type RcuFunc = unsafe extern "C" fn(head: *mut RcuHead);

/// A drain_call_rcu() waiter: done flag and its condition variable.
type Marker = Arc<(Mutex<bool>, Condvar)>;

enum Entry {
    /// A caller's callback: `(*head).func(head)`.
    Callback(*mut RcuHead),
    /// drain_call_rcu(): set the flag.
    Marker(Marker),
}

// SAFETY: the caller of call_rcu hands the rcu_head over to the RCU thread
// until its callback runs.
unsafe impl Send for Entry {}

struct Queue {
    entries: VecDeque<Entry>,
    started: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    entries: VecDeque::new(),
    started: false,
});
static QUEUE_COND: Condvar = Condvar::new();

/// The `call_rcu` thread is the library's: no API call is active in it.
fn rcu_thread_fail(e: Misuse) -> ! {
    fatal::die("call_rcu thread", &e.0)
}

fn call_rcu_thread() {
    // Reports of the core from this thread name it (`fatal::die_here`).
    let _role = fatal::ApiCall::enter(c"call_rcu thread");
    register_thread().unwrap_or_else(|e| rcu_thread_fail(e));
    loop {
        let batch: Vec<Entry> = {
            let mut q = lock(&QUEUE);
            while q.entries.is_empty() {
                q = QUEUE_COND.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            q.entries.drain(..).collect()
        };
        synchronize_rcu().unwrap_or_else(|e| rcu_thread_fail(e));
        thread::bql_lock().unwrap_or_else(|e| rcu_thread_fail(e));
        for entry in batch {
            match entry {
                Entry::Callback(head) => {
                    // SAFETY: call_rcu stored a valid func in the live head,
                    // which its owner gave us until the callback runs.
                    unsafe {
                        if let Some(func) = (*head).func {
                            func(head);
                        }
                    }
                }
                Entry::Marker(m) => {
                    *lock(&m.0) = true;
                    m.1.notify_all();
                }
            }
        }
        thread::bql_unlock().unwrap_or_else(|e| rcu_thread_fail(e));
    }
}

/// Starts the RCU thread with every signal blocked (it must not take the
/// program's signals).
fn start_thread() -> MisuseResult<()> {
    // SAFETY: sigset_t is plain data; sigfillset initializes it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // Never joined: the thread lives as long as the process; dropping the
    // handle detaches it.
    let spawned = crate::qemu_thread::spawn_lib_thread("call_rcu", Box::new(call_rcu_thread));
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
    }
    spawned
        .map(drop)
        .map_err(|_| Misuse::new("cannot start the RCU thread"))
}

fn enqueue(entry: Entry) -> MisuseResult<()> {
    let mut q = lock(&QUEUE);
    if !q.started {
        start_thread()?;
        q.started = true;
    }
    q.entries.push_back(entry);
    QUEUE_COND.notify_one();
    Ok(())
}

/// `call_rcu1`: run `func(head)` on the RCU thread, with the BQL held,
/// after a grace period.
///
/// # Safety
///
/// `head` must stay valid (and untouched by the caller) until `func` runs.
pub(crate) unsafe fn call_rcu(head: *mut RcuHead, func: RcuFunc) -> MisuseResult<()> {
    // SAFETY: the caller guarantees head is valid.
    unsafe {
        (*head).func = Some(func);
        (*head).next = ptr::null_mut();
    }
    enqueue(Entry::Callback(head))
}

/// `drain_call_rcu`: returns once every callback queued before the call has
/// run. Releases the BQL meanwhile if this thread holds it.
pub(crate) fn drain_call_rcu() -> MisuseResult<()> {
    let had_bql = thread::holds_bql();
    if had_bql {
        thread::bql_unlock()?;
    }
    let marker: Marker = Arc::new((Mutex::new(false), Condvar::new()));
    enqueue(Entry::Marker(Arc::clone(&marker)))?;
    let mut done = lock(&marker.0);
    while !*done {
        done = marker.1.wait(done).unwrap_or_else(|e| e.into_inner());
    }
    drop(done);
    if had_bql {
        thread::bql_lock()?;
    }
    Ok(())
}
