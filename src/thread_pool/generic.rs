//! The generic pool (QEMU 10's `ThreadPool`, no AioContext):
//! `thread_pool_new`, `thread_pool_free`, `thread_pool_submit`,
//! `thread_pool_submit_immediate`, `thread_pool_wait`,
//! `thread_pool_set_max_threads`, `thread_pool_adjust_max_threads_to_work`.
//!
//! As in QEMU (a GLib exclusive thread pool created with a maximum of 0),
//! a new pool runs nothing until its maximum is raised, either explicitly
//! or by `thread_pool_submit_immediate`. The job's return value is ignored
//! (QEMU ignores it too); `opaque_destroy(opaque)` runs on the worker right
//! after the job. Workers never time out; lowering the maximum stops the
//! surplus after their current job.
//!
//! Threading: every function may be called from any thread, except that
//! `thread_pool_free` must not race with other calls on the same pool.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ThreadPoolFn;
use super::workers::{JobQueue, Workers};
use crate::fatal::{Misuse, MisuseResult};
use crate::handle::impl_handle;

/// `GDestroyNotify`.
pub(crate) type DestroyFn = unsafe extern "C" fn(data: *mut c_void);

const MAGIC_LIVE: u32 = 0x5450_4c47; // "TPLG"
const MAGIC_DEAD: u32 = 0x5450_4744; // "TPGD"

// A freed pool is detected while its memory is not reused.
impl_handle! { GenericPool = "ThreadPool", magic: MAGIC_LIVE, MAGIC_DEAD,
    freed: "was already freed", invalid: "is not a valid pool";
    #[inline(always)]
    fn is_usable(&self) -> bool { crate::fork::is_current(self.fork_gen) }
    fn unusable(&self) -> Misuse { crate::fork::forked("ThreadPool") }
}

pub(crate) struct Job {
    func: ThreadPoolFn,
    opaque: *mut c_void,
    destroy: Option<DestroyFn>,
}
// SAFETY: the C caller hands `opaque` to a worker thread by submitting it.
unsafe impl Send for Job {}

#[derive(Default)]
pub(crate) struct GenericQueue {
    jobs: VecDeque<Job>,
    /// Submitted and not finished (QEMU's `cur_work`).
    cur_work: usize,
}

impl JobQueue for GenericQueue {
    type Job = Job;
    type Shared = ();

    fn pop(&mut self) -> Option<Job> {
        self.jobs.pop_front()
    }

    fn queued(&self) -> usize {
        self.jobs.len()
    }

    fn run(_shared: &(), job: Job) {
        // SAFETY: the C caller submitted `func` for `opaque`.
        unsafe { (job.func)(job.opaque) };
        if let Some(destroy) = job.destroy {
            // SAFETY: the caller's destructor for `opaque`.
            unsafe { destroy(job.opaque) };
        }
    }

    fn finished(&mut self, _shared: &()) -> bool {
        self.cur_work -= 1;
        self.cur_work == 0
    }
}

/// `ThreadPool`.
pub(crate) struct GenericPool {
    magic: AtomicU32,
    /// The fork generation it was created in (`fork.rs`).
    fork_gen: u32,
    workers: Arc<Workers<GenericQueue>>,
}

impl GenericPool {
    pub(crate) fn new() -> MisuseResult<*mut GenericPool> {
        // No thread is started with the limits 0..0: this cannot fail.
        let workers = Workers::new(GenericQueue::default(), (), 0, 0, None)?;
        Ok(Box::into_raw(Box::new(GenericPool {
            magic: AtomicU32::new(MAGIC_LIVE),
            fork_gen: crate::fork::generation(),
            workers,
        })))
    }

    pub(crate) fn submit(
        &self,
        func: ThreadPoolFn,
        opaque: *mut c_void,
        destroy: Option<DestroyFn>,
    ) -> MisuseResult<()> {
        self.workers.submit(|q| {
            q.cur_work += 1;
            q.jobs.push_back(Job {
                func,
                opaque,
                destroy,
            });
        })
    }

    pub(crate) fn submit_immediate(
        &self,
        func: ThreadPoolFn,
        opaque: *mut c_void,
        destroy: Option<DestroyFn>,
    ) -> MisuseResult<()> {
        self.submit(func, opaque, destroy)?;
        self.adjust_max_threads_to_work().map(|_| ())
    }

    /// Waits until every submitted job finished.
    pub(crate) fn wait(&self) -> MisuseResult<()> {
        let mut st = self.workers.lock();
        while st.queue.cur_work > 0 {
            if st.max() == 0 {
                return Err(Misuse::new(
                    "work is queued but the pool's maximum is 0 threads, so it would never \
                     run (call thread_pool_set_max_threads or use thread_pool_submit_immediate)",
                ));
            }
            self.workers.aux.wait(&mut st);
        }
        Ok(())
    }

    pub(crate) fn set_max_threads(&self, max: i32) -> MisuseResult<bool> {
        if max <= 0 {
            return Err(Misuse::new(format!(
                "max_threads must be at least 1 (got {max})"
            )));
        }
        self.workers.set_limits(0, max as usize)?;
        Ok(true)
    }

    /// One thread per job not finished yet.
    pub(crate) fn adjust_max_threads_to_work(&self) -> MisuseResult<bool> {
        let work = self.workers.lock().queue.cur_work;
        if work == 0 {
            return Err(Misuse::new(
                "no work is pending, so the maximum would be 0 threads (QEMU asserts this)",
            ));
        }
        self.set_max_threads(i32::try_from(work).unwrap_or(i32::MAX))
    }

    /// Runs what is queued, waits for it, frees the pool.
    ///
    /// # Safety
    /// `pool` came from [`GenericPool::new`] and is not used again.
    pub(crate) unsafe fn free(pool: *mut GenericPool) {
        // SAFETY: live and ours per the caller.
        let p = unsafe { &*pool };
        if let Err(m) = p.workers.shutdown() {
            crate::fatal::die_here(&m.0);
        }
        p.magic.store(MAGIC_DEAD, Ordering::Relaxed);
        // SAFETY: ours; the workers have exited.
        drop(unsafe { Box::from_raw(pool) });
    }
}
