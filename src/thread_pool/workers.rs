//! The worker threads shared by both pools: a job queue behind one short
//! lock, a condition variable idle workers sleep on (never spinning), and
//! the thread-count policy.
//!
//! Policy (QEMU's `util/thread-pool.c`): a submission wakes one idle worker,
//! and starts a new one when more jobs are queued than workers are idle,
//! up to `max`. With an idle timeout, a worker that found nothing to do for
//! that long exits if more than `min` are left. Lowering `max` makes the
//! surplus exit once they finished their current job. `shutdown` lets the
//! workers run every queued job, then waits until all have exited.
//!
//! Workers are named "worker" (as QEMU's) and start with every signal
//! blocked (as `qemu_thread_create` does), so signals go to the
//! application's threads.
//!
//! A worker that cannot be started (thread limit, memory) is not counted
//! and the operation that wanted it returns a [`Misuse`] ("cannot start a
//! worker thread: ..."), so that the report names the API function the C
//! caller used (e.g. `aioctx: thread_pool_submit_aio: ...`).

use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::fatal::{Misuse, MisuseResult};

/// The queue a pool keeps under the workers' lock, and what a worker does
/// with a job.
pub(crate) trait JobQueue: Send + Sized + 'static {
    type Job: Send;
    /// State shared with the workers outside the lock.
    type Shared: Send + Sync + 'static;
    /// Takes the oldest job (under the lock).
    fn pop(&mut self) -> Option<Self::Job>;
    /// Jobs waiting for a worker.
    fn queued(&self) -> usize;
    /// Runs a job (without the lock).
    fn run(shared: &Self::Shared, job: Self::Job);
    /// Bookkeeping after `run`, under the lock again; true wakes the
    /// pool's waiters on [`Workers::aux`].
    fn finished(&mut self, _shared: &Self::Shared) -> bool {
        false
    }
}

/// Mutable pool state, behind the lock.
pub(crate) struct State<Q> {
    pub(crate) queue: Q,
    /// Worker threads alive (or being started).
    cur: usize,
    /// Workers waiting for a job (woken ones count until they re-lock).
    idle: usize,
    min: usize,
    max: usize,
    /// Set by `shutdown`: run what is queued, then exit.
    draining: bool,
}

impl<Q> State<Q> {
    /// The current maximum number of workers.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

pub(crate) struct Workers<Q: JobQueue> {
    state: Mutex<State<Q>>,
    /// Idle workers wait here for a job.
    work: Condvar,
    /// `shutdown` waits here for the workers to exit.
    stopped: Condvar,
    /// For the pool's own waiters (the generic pool's `thread_pool_wait`).
    pub(crate) aux: Condvar,
    pub(crate) shared: Q::Shared,
    idle_timeout: Option<Duration>,
}

impl<Q: JobQueue> Workers<Q> {
    pub(crate) fn new(
        queue: Q,
        shared: Q::Shared,
        min: usize,
        max: usize,
        idle_timeout: Option<Duration>,
    ) -> MisuseResult<Arc<Self>> {
        let w = Arc::new(Workers {
            state: Mutex::new(State {
                queue,
                cur: 0,
                idle: 0,
                min: 0,
                max: 0,
                draining: false,
            }),
            work: Condvar::new(),
            stopped: Condvar::new(),
            aux: Condvar::new(),
            shared,
            idle_timeout,
        });
        w.set_limits(min, max)?;
        Ok(w)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<Q>> {
        self.state.lock()
    }

    /// Adds a job with `push` (under the lock), then wakes or starts a
    /// worker for it. Fails (the job stays queued) if a worker was needed
    /// and could not be started.
    #[inline]
    pub(crate) fn submit(self: &Arc<Self>, push: impl FnOnce(&mut Q)) -> MisuseResult<()> {
        let mut st = self.state.lock();
        push(&mut st.queue);
        let wake = st.idle > 0;
        let spawn = st.queue.queued() > st.idle && st.cur < st.max;
        if spawn {
            st.cur += 1;
        }
        drop(st);
        if wake {
            self.work.notify_one();
        }
        if spawn {
            self.spawn(1)?;
        }
        Ok(())
    }

    /// Makes enough workers available for what is queued now (the generic
    /// pool's "give each job its own thread").
    pub(crate) fn start_for_queued(self: &Arc<Self>) -> MisuseResult<()> {
        let mut st = self.state.lock();
        let want = st.queue.queued().saturating_sub(st.idle);
        let n = want.min(st.max.saturating_sub(st.cur));
        st.cur += n;
        drop(st);
        self.spawn(n)
    }

    /// New thread limits: starts workers up to `min`, and wakes idle ones
    /// so that the surplus above `max` exits.
    pub(crate) fn set_limits(self: &Arc<Self>, min: usize, max: usize) -> MisuseResult<()> {
        let mut st = self.state.lock();
        st.min = min;
        st.max = max;
        let n = min.saturating_sub(st.cur);
        st.cur += n;
        let surplus = st.cur > st.max;
        drop(st);
        if surplus {
            self.work.notify_all();
        }
        self.spawn(n)?;
        self.start_for_queued()
    }

    /// Runs every queued job, then stops all workers and waits for them.
    /// Fails if jobs are queued, no worker is left and none can be started.
    pub(crate) fn shutdown(self: &Arc<Self>) -> MisuseResult<()> {
        let mut st = self.state.lock();
        st.draining = true;
        // A pool allowed no thread (the generic pool before
        // thread_pool_set_max_threads) still owes its queued jobs a run.
        let spawn = st.cur == 0 && st.queue.queued() > 0;
        if spawn {
            st.cur += 1;
        }
        self.work.notify_all();
        drop(st);
        if spawn {
            self.spawn(1)?;
        }
        let mut st = self.state.lock();
        while st.cur > 0 {
            self.stopped.wait(&mut st);
        }
        Ok(())
    }

    /// Starts `n` workers already counted in `cur`. If one cannot be
    /// started, those not started are uncounted again and the error says
    /// why.
    fn spawn(self: &Arc<Self>, n: usize) -> MisuseResult<()> {
        if n == 0 {
            return Ok(());
        }
        // Block every signal while the threads are created so that they
        // start with all signals blocked (as qemu_thread_create does).
        // SAFETY: sigset_t is plain data, initialized by sigfillset.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigset pointers.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        let mut failed = None;
        for started in 0..n {
            let w = Arc::clone(self);
            // Detached: a worker ends on its own (`cur` counts it until
            // then); dropping the handle detaches it.
            let res =
                crate::qemu_thread::spawn_lib_thread("worker", Box::new(move || w.worker_main()));
            if let Err(e) = res {
                failed = Some((n - started, e));
                break;
            }
        }
        // SAFETY: restores the caller's mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
        match failed {
            None => Ok(()),
            Some((missing, e)) => {
                self.state.lock().cur -= missing;
                // Whoever waits for the count to drop (shutdown) re-checks.
                self.stopped.notify_all();
                Err(Misuse::new(format!("cannot start a worker thread: {e}")))
            }
        }
    }

    fn worker_main(&self) {
        // A library-owned thread: no API call names what it does, so a
        // report from the core here (`fatal::die_here`, e.g. a failed
        // wakeup write) names its role instead.
        let _role = crate::fatal::ApiCall::enter(c"thread pool worker");
        let mut st = self.state.lock();
        loop {
            let max = if st.draining { st.max.max(1) } else { st.max };
            if st.cur > max {
                break;
            }
            if let Some(job) = st.queue.pop() {
                MutexGuard::unlocked(&mut st, || Q::run(&self.shared, job));
                if st.queue.finished(&self.shared) {
                    self.aux.notify_all();
                }
                continue;
            }
            if st.draining {
                break;
            }
            st.idle += 1;
            let timed_out = match self.idle_timeout {
                Some(t) => self.work.wait_for(&mut st, t).timed_out(),
                None => {
                    self.work.wait(&mut st);
                    false
                }
            };
            st.idle -= 1;
            if timed_out && st.queue.queued() == 0 && st.cur > st.min {
                break;
            }
        }
        st.cur -= 1;
        if st.queue.queued() > 0 {
            // The wakeup that brought this worker here may have been meant
            // for a queued job: pass it on.
            self.work.notify_one();
        }
        self.stopped.notify_all();
    }
}
