/*
 * bench/co_multithread.c: cross-thread synchronisation of coroutines,
 * modelled on QEMU's tests/unit/test-aio-multithread.c (issue 13).
 *
 * Five IOThreads (aioctx_iothread_new). Each workload starts one coroutine
 * per IOThread used (aio_co_schedule), lets them run for the run time, then
 * stops them; every coroutine loops "lock; counter++; unlock;
 * atomic_inc(&check)" and the two counters must agree (a lost hand-off or
 * wakeup would show). Iterations/s, Mops/s:
 *
 *   co_mutex/handoff    CoMutex, coroutines on 2 IOThreads (QEMU's
 *                       /aio/multi/mutex/handoff): the lock passes between
 *                       threads, waiters are woken with aio_co_wake in the
 *                       other context;
 *   co_mutex/contended  the same on all 5 IOThreads (QEMU's
 *                       /aio/multi/mutex/contended);
 *   mcs                 a hand-written MCS queue lock, waiters sleeping in
 *                       qemu_futex_wait on their own node, woken with
 *                       qemu_futex_wake_single (QEMU's /aio/multi/mutex/mcs),
 *                       5 IOThreads;
 *   qemu_mutex          QemuMutex lock/unlock by coroutines on 4 IOThreads.
 *
 * Peer, for each: raw_pthread, the same loop on a plain pthread_mutex_t in
 * the same number of plain threads, measured in the same run (interleaved).
 * Targets (issue 13): qemu_mutex >= 0.95x, co_mutex/handoff >= 0.6x,
 * mcs >= 0.8x raw_pthread.
 *
 * mcs has a second peer, futex_mcs: the same MCS lock in plain threads on
 * raw futex(2) system calls (what QEMU's inline qemu_futex_wait/wake
 * compile to), no aioctx at all. It is the algorithm's own limit on this
 * machine: with more threads than CPUs every hand-off of a FIFO lock waits
 * for a sleeping thread to be scheduled, whatever the library.
 *
 * Wall clock. AIOCTX_BENCH_TIME_MS (default 700) is the length of one run,
 * AIOCTX_BENCH_RUNS (default capped at 3) the number of runs,
 * AIOCTX_BENCH_ONLY=WORD runs only the workloads whose name contains WORD
 * (for profiling one). With more
 * threads than CPUs, every figure depends on the scheduler: on a loaded
 * 2-CPU machine spreads of 2x between runs are normal.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aioctx.h"
#include "bench-util.h"

#define NUM_CONTEXTS 5

static AioctxIOThread *iothreads[NUM_CONTEXTS];
static AioContext *ctxs[NUM_CONTEXTS];

/* Shared by every workload; each on its own cache line. */
static _Alignas(64) atomic_bool now_stopping;
static _Alignas(64) atomic_int running;
static _Alignas(64) atomic_int next_id;
static _Alignas(64) uint64_t counter;       /* under the lock being measured */
static _Alignas(64) atomic_ulong atomic_counter; /* after the unlock */

/* ---- aioctx workloads ------------------------------------------------------ */

static CoMutex comutex;
static QemuMutex qmutex;

static void co_mutex_entry(void *opaque)
{
    (void)opaque;
    while (!atomic_load_explicit(&now_stopping, memory_order_relaxed)) {
        qemu_co_mutex_lock(&comutex);
        counter++;
        qemu_co_mutex_unlock(&comutex);
        atomic_fetch_add_explicit(&atomic_counter, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&running, 1);
}

static void qemu_mutex_entry(void *opaque)
{
    (void)opaque;
    while (!atomic_load_explicit(&now_stopping, memory_order_relaxed)) {
        qemu_mutex_lock(&qmutex);
        counter++;
        qemu_mutex_unlock(&qmutex);
        atomic_fetch_add_explicit(&atomic_counter, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&running, 1);
}

/*
 * MCS lock: a queue of per-thread nodes; the tail is `mcs_head` (-1 =
 * unlocked). A locker appends its node and sleeps on its own `locked`
 * word until its predecessor hands over.
 */
typedef struct {
    _Alignas(64) atomic_int next;
    atomic_uint locked;
} McsNode;

static McsNode mcs_nodes[NUM_CONTEXTS];
static _Alignas(64) atomic_int mcs_head = -1;
static __thread int mcs_id; /* the coroutine never leaves its thread */

typedef void McsWait(atomic_uint *word, unsigned val);
typedef void McsWake(atomic_uint *word);

static inline void mcs_lock(McsWait *wait)
{
    int prev;
    atomic_store_explicit(&mcs_nodes[mcs_id].next, -1, memory_order_relaxed);
    atomic_store_explicit(&mcs_nodes[mcs_id].locked, 1, memory_order_relaxed);
    prev = atomic_exchange(&mcs_head, mcs_id);
    if (prev != -1) {
        atomic_store(&mcs_nodes[prev].next, mcs_id);
        while (atomic_load(&mcs_nodes[mcs_id].locked) == 1) {
            wait(&mcs_nodes[mcs_id].locked, 1);
        }
    }
}

static inline void mcs_unlock(McsWake *wake)
{
    int next;
    if (atomic_load(&mcs_nodes[mcs_id].next) == -1) {
        int me = mcs_id;
        if (atomic_compare_exchange_strong(&mcs_head, &me, -1)) {
            return; /* nobody queued */
        }
        /* A locker swapped mcs_head but has not linked itself yet. */
        while (atomic_load(&mcs_nodes[mcs_id].next) == -1) {
            bench_cpu_relax();
        }
    }
    next = atomic_load(&mcs_nodes[mcs_id].next);
    atomic_store(&mcs_nodes[next].locked, 0);
    wake(&mcs_nodes[next].locked);
}

static void aioctx_futex_wait(atomic_uint *word, unsigned val)
{
    qemu_futex_wait(word, val);
}

static void aioctx_futex_wake(atomic_uint *word)
{
    qemu_futex_wake_single(word);
}

/* The loop of both MCS variants. */
static inline void mcs_loop(McsWait *wait, McsWake *wake)
{
    mcs_id = atomic_fetch_add(&next_id, 1);
    while (!atomic_load_explicit(&now_stopping, memory_order_relaxed)) {
        mcs_lock(wait);
        counter++;
        mcs_unlock(wake);
        atomic_fetch_add_explicit(&atomic_counter, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&running, 1);
}

static void mcs_entry(void *opaque)
{
    (void)opaque;
    mcs_loop(aioctx_futex_wait, aioctx_futex_wake);
}

/* ---- the raw peer ------------------------------------------------------------ */

static pthread_mutex_t raw_mutex = PTHREAD_MUTEX_INITIALIZER;

static void *raw_thread(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&now_stopping, memory_order_relaxed)) {
        pthread_mutex_lock(&raw_mutex);
        counter++;
        pthread_mutex_unlock(&raw_mutex);
        atomic_fetch_add_explicit(&atomic_counter, 1, memory_order_relaxed);
    }
    atomic_fetch_sub(&running, 1);
    return NULL;
}

/* The futex_mcs peer: QEMU's inline futex calls, on plain threads. */
static void raw_futex_wait(atomic_uint *word, unsigned val)
{
    syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0);
}

static void raw_futex_wake(atomic_uint *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void *futex_mcs_thread(void *arg)
{
    (void)arg;
    mcs_loop(raw_futex_wait, raw_futex_wake);
    return NULL;
}

/* ---- running --------------------------------------------------------------- */

static void reset(int nthreads)
{
    counter = 0;
    atomic_store(&atomic_counter, 0);
    atomic_store(&next_id, 0);
    atomic_store(&now_stopping, false);
    atomic_store(&running, nthreads);
}

/* Stops the workload after `ns` and returns Mops/s over the measured time. */
static double stop_after(uint64_t t0, double ns, const char *what)
{
    uint64_t t1, deadline;
    usleep((useconds_t)(ns / 1000));
    atomic_store(&now_stopping, true);
    t1 = bench_now_ns();
    deadline = t1 + 20000000000ull;
    while (atomic_load(&running) > 0) {
        if (bench_now_ns() > deadline) {
            bench_die("%s: %d workers still running 20 s after the stop", what,
                      atomic_load(&running));
        }
        usleep(1000);
    }
    if (counter != atomic_load(&atomic_counter)) {
        bench_die("%s: counter %llu != %llu iterations: the lock let two holders in", what,
                  (unsigned long long)counter, (unsigned long long)atomic_load(&atomic_counter));
    }
    /* Iterations finished by the workers after the stop flag are few
     * (each one checks it every iteration) and counted over [t0, t1]. */
    return (double)counter / (double)(t1 - t0) * 1e3;
}

static double run_coroutines(CoroutineEntry *entry, int nthreads, double ns, const char *what)
{
    uint64_t t0;
    reset(nthreads);
    t0 = bench_now_ns();
    for (int i = 0; i < nthreads; i++) {
        aio_co_schedule(ctxs[i], qemu_coroutine_create(entry, NULL));
    }
    return stop_after(t0, ns, what);
}

/* Runs `thread` in `nthreads` plain threads (a peer). */
static double run_threads(void *(*thread)(void *), int nthreads, double ns, const char *what)
{
    pthread_t t[NUM_CONTEXTS];
    uint64_t t0;
    double r;
    reset(nthreads);
    t0 = bench_now_ns();
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&t[i], NULL, thread, NULL)) {
            bench_die("pthread_create failed");
        }
    }
    r = stop_after(t0, ns, what);
    for (int i = 0; i < nthreads; i++) {
        pthread_join(t[i], NULL);
    }
    return r;
}

typedef struct {
    const char *name;
    CoroutineEntry *entry;
    int nthreads;
    /* A second peer (plain threads), or NULL, and its name. */
    void *(*peer2_thread)(void *);
    const char *peer2_name;
    double v[BENCH_MAX_RUNS], peer[BENCH_MAX_RUNS], peer2[BENCH_MAX_RUNS];
} Workload;

static Workload workloads[] = {
    { "co_mutex/handoff", co_mutex_entry, 2, NULL, NULL, { 0 }, { 0 }, { 0 } },
    { "co_mutex/contended", co_mutex_entry, NUM_CONTEXTS, NULL, NULL, { 0 }, { 0 }, { 0 } },
    { "mcs", mcs_entry, NUM_CONTEXTS, futex_mcs_thread, "futex_mcs", { 0 }, { 0 }, { 0 } },
    { "qemu_mutex", qemu_mutex_entry, 4, NULL, NULL, { 0 }, { 0 }, { 0 } },
};

/* Prints the same-run ratios of `v` to `peer`, one per run. */
static void note_same_run_ratios(const char *name, const char *peer_name, const double *v,
                                 const double *peer, int runs)
{
    char ratios[BENCH_MAX_RUNS * 8 + 1] = "";
    size_t len = 0;
    for (int r = 0; r < runs && r < BENCH_MAX_RUNS; r++) {
        len += (size_t)snprintf(ratios + len, sizeof ratios - len, " %.2f",
                                peer[r] != 0 ? v[r] / peer[r] : 0);
        if (len >= sizeof ratios) {
            break;
        }
    }
    bench_note("  %s: same-run ratios to %s:%s", name, peer_name, ratios);
}

#define NUM_WORKLOADS ((int)(sizeof(workloads) / sizeof(workloads[0])))

int main(void)
{
    double ns = bench_target_ns(700);
    int runs = bench_runs_capped(3);
    const char *only = getenv("AIOCTX_BENCH_ONLY");
    char name[64];

    bench_start("co_multithread",
                "coroutines on IOThreads contending on one lock, iterations/s");
    if (bench_callgrind()) {
        bench_note("cross-thread only: skipped under callgrind");
        return 0;
    }
    bench_note("%d IOThreads, %ld CPUs, %.0f ms per run; peer: the same loop on a "
               "pthread_mutex_t in as many plain threads", NUM_CONTEXTS,
               sysconf(_SC_NPROCESSORS_ONLN), ns / 1e6);
    bench_note("%d runs (AIOCTX_BENCH_RUNS; default 3 here); AIOCTX_BENCH_ONLY=WORD runs only "
               "the workloads whose name contains WORD", runs);
    for (int i = 0; i < NUM_CONTEXTS; i++) {
        iothreads[i] = aioctx_iothread_new("co-mt-bench", &error_abort);
        ctxs[i] = aioctx_iothread_get_aio_context(iothreads[i]);
    }
    qemu_co_mutex_init(&comutex);
    qemu_mutex_init(&qmutex);

    for (int r = 0; r < runs; r++) {
        for (int w = 0; w < NUM_WORKLOADS; w++) {
            Workload *wl = &workloads[w];
            if (only && !strstr(wl->name, only)) {
                continue;
            }
            wl->v[r] = run_coroutines(wl->entry, wl->nthreads, ns, wl->name);
            wl->peer[r] = run_threads(raw_thread, wl->nthreads, ns, "raw_pthread");
            if (wl->peer2_thread) {
                wl->peer2[r] = run_threads(wl->peer2_thread, wl->nthreads, ns, wl->peer2_name);
            }
        }
    }
    for (int w = 0; w < NUM_WORKLOADS; w++) {
        Workload *wl = &workloads[w];
        if (only && !strstr(wl->name, only)) {
            continue;
        }
        snprintf(name, sizeof name, "%s/%dthr", wl->name, wl->nthreads);
        bench_line(name, bench_stat_of(wl->v, runs), "raw_pthread",
                   bench_stat_of(wl->peer, runs), "Mops/s");
        /* The same-run ratios: the peers ran right after, under the same load. */
        note_same_run_ratios(name, "raw_pthread", wl->v, wl->peer, runs);
        if (wl->peer2_thread) {
            bench_line(name, bench_stat_of(wl->v, runs), wl->peer2_name,
                       bench_stat_of(wl->peer2, runs), "Mops/s");
            note_same_run_ratios(name, wl->peer2_name, wl->v, wl->peer2, runs);
        }
    }

    for (int i = 0; i < NUM_CONTEXTS; i++) {
        aioctx_iothread_join(iothreads[i]);
    }
    qemu_mutex_destroy(&qmutex);
    return 0;
}
