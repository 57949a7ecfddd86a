/*
 * Stress test: 8 threads x N cross-thread schedules on a mix of bottom
 * halves while the owner thread polls, with BHs deleted and re-created
 * concurrently (by the workers and by the owner).
 *
 * Checks:
 * - every scheduled BH runs at least once after its last schedule: each BH
 *   has a schedule counter that a worker increments *before* calling
 *   qemu_bh_schedule; the callback records the largest counter value it saw.
 *   After the workers stop, a final drain must leave run_seq == sched for
 *   every live BH (a lost schedule or a lost wakeup shows up here, or as a
 *   hang);
 * - no BH runs after its delete (an epoch scheme, see `forbid_from`);
 * - every oneshot runs exactly once;
 * - no hang (a watchdog thread aborts with a message after a deadline);
 * - no leak and no use-after-free (`make sanitize` runs it under ASan; TSan
 *   runs it with a smaller default N).
 *
 * Deletion is coordinated so that no thread schedules a BH after its delete
 * (scheduling a deleted BH is a caller bug that aborts): each slot holds its
 * current BH under a pthread rwlock; schedulers hold it for reading, the
 * deleter for writing while it deletes the BH and installs a new one.
 *
 * Environment:
 *   AIOCTX_STRESS_ITERS    operations per worker thread (default 200000;
 *                          50000 under TSan). `make stress` uses 1000000.
 *   AIOCTX_STRESS_TIMEOUT  watchdog deadline in seconds (default scales
 *                          with the iteration count).
 */

#define _GNU_SOURCE
#include "aioctx.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define STRESS_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_UNDER_TSAN 1
#endif
#endif

#ifdef STRESS_UNDER_TSAN
#define DEFAULT_ITERS 50000
#else
#define DEFAULT_ITERS 200000
#endif

#define N_THREADS 8
#define N_SLOTS 64

/*
 * Per 1000 worker operations: delete+re-create, oneshot, schedule-and-wait
 * (the worker waits until its schedule ran, so that the owner goes to sleep
 * often and the wakeup path is exercised); the rest schedule and go on.
 */
#define WORKER_DELETE_PERMILLE 2
#define WORKER_ONESHOT_PERMILLE 10
#define WORKER_WAIT_PERMILLE 30
/* The owner deletes and re-creates a churn slot every this many polls. */
#define OWNER_DELETE_EVERY 16

/* ------------------------------------------------------------------------ */
/* Watchdog                                                                 */
/* ------------------------------------------------------------------------ */

/* Progress counters, printed by the watchdog when it fires. */
static atomic_uint_fast64_t ops_done;
static atomic_uint_fast64_t poll_epoch; /* top-level aio_poll calls returned */

/* Appended to the watchdog's message (see test-util.h). */
static void report_progress(FILE *out, void *opaque)
{
    (void)opaque;
    fprintf(out,
            "%" PRIuFAST64 " worker operations done, %" PRIuFAST64 " polls returned",
            atomic_load(&ops_done), atomic_load(&poll_epoch));
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long long v;

    if (!s || !*s) {
        return dflt;
    }
    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || *end || v == 0) {
        fprintf(stderr, "test-stress: bad %s='%s' (want a positive integer)\n",
                name, s);
        exit(2);
    }
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* ------------------------------------------------------------------------ */
/* BH state                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * One generation of a slot's BH. Never freed before the context is gone:
 * a callback may still be starting when a cross-thread delete returns.
 */
typedef struct BHState {
    QEMUBH *bh;
    int slot;
    bool idle;                 /* scheduled with qemu_bh_schedule_idle */
    /* Schedules so far; incremented before each qemu_bh_schedule. */
    atomic_uint_fast64_t sched;
    /* Largest `sched` a callback saw (written by the owner thread only). */
    atomic_uint_fast64_t run_seq;
    uint64_t runs;             /* owner thread only */
    /*
     * The first poll epoch in which a run is a bug; UINT64_MAX while live.
     * The owner deletes between polls: the very next poll must not run it
     * (forbid_from = current epoch). A worker's delete can race with a
     * dispatch that already claimed the BH in the poll in progress, so a
     * run is only a bug from the poll after that one (epoch read after
     * qemu_bh_delete returned, plus one).
     */
    atomic_uint_fast64_t forbid_from;
    struct BHState *retired_next;
} BHState;

typedef struct {
    pthread_rwlock_t lock;
    BHState *st;               /* changed only under the write lock */
    bool churn;                /* may be deleted and re-created */
} Slot;

static AioContext *ctx;
static Slot slots[N_SLOTS];

static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static BHState *retired;
static uint64_t n_retired;     /* under retired_lock */

static atomic_uint_fast64_t late_runs;        /* runs after delete: bugs */
static atomic_uint_fast64_t oneshots_sent;
static atomic_uint_fast64_t oneshots_run;     /* owner thread writes */
static atomic_uint_fast64_t worker_deletes;
static uint64_t owner_deletes;
static uint64_t bh_runs;                      /* owner thread only */
static atomic_bool workers_done;

static void stress_bh_cb(void *opaque)
{
    BHState *st = opaque;
    uint64_t epoch = atomic_load(&poll_epoch);
    uint64_t forbid = atomic_load(&st->forbid_from);
    uint64_t seq;

    if (epoch >= forbid) {
        atomic_fetch_add(&late_runs, 1);
        fprintf(stderr,
                "test-stress: BH of slot %d (%p) ran in poll %" PRIu64
                " after its delete (forbidden from poll %" PRIu64 ")\n",
                st->slot, (void *)st->bh, epoch, forbid);
    }
    seq = atomic_load_explicit(&st->sched, memory_order_acquire);
    if (seq > atomic_load_explicit(&st->run_seq, memory_order_relaxed)) {
        atomic_store_explicit(&st->run_seq, seq, memory_order_release);
    }
    st->runs++;
    bh_runs++;
}

static void oneshot_cb(void *opaque)
{
    (void)opaque;
    atomic_fetch_add_explicit(&oneshots_run, 1, memory_order_relaxed);
}

static void done_cb(void *opaque)
{
    (void)opaque;
}

static BHState *state_new(int slot, bool idle)
{
    BHState *st = g_new0(BHState, 1);

    st->slot = slot;
    st->idle = idle;
    atomic_init(&st->sched, 0);
    atomic_init(&st->run_seq, 0);
    atomic_init(&st->forbid_from, UINT64_MAX);
    st->bh = aio_bh_new_full(ctx, stress_bh_cb, st, "stress-bh", NULL);
    g_assert_nonnull(st->bh);
    return st;
}

static void retire(BHState *st)
{
    pthread_mutex_lock(&retired_lock);
    st->retired_next = retired;
    retired = st;
    n_retired++;
    pthread_mutex_unlock(&retired_lock);
}

/*
 * Deletes the slot's BH and installs a fresh one. `from_owner`: called by
 * the polling thread between two polls.
 */
static void slot_replace(int i, bool from_owner)
{
    Slot *s = &slots[i];
    BHState *old;
    uint64_t epoch;

    g_assert_cmpint(pthread_rwlock_wrlock(&s->lock), ==, 0);
    old = s->st;
    qemu_bh_delete(old->bh);
    atomic_thread_fence(memory_order_seq_cst);
    epoch = atomic_load(&poll_epoch);
    atomic_store(&old->forbid_from, from_owner ? epoch : epoch + 1);
    s->st = state_new(i, old->idle);
    g_assert_cmpint(pthread_rwlock_unlock(&s->lock), ==, 0);
    retire(old);
}

/* ------------------------------------------------------------------------ */
/* Worker                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    int id;
    uint64_t iters;
    pthread_barrier_t *start;
    QEMUBH *done_bh;
    atomic_int *running;
} Worker;

static void *worker_thread(void *opaque)
{
    Worker *w = opaque;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);

    pthread_barrier_wait(w->start);
    for (uint64_t n = 0; n < w->iters; n++) {
        uint64_t r = xorshift64(&rng);
        unsigned op = r % 1000;
        int i = (int)((r >> 16) % N_SLOTS);

        if (op < WORKER_DELETE_PERMILLE) {
            /* Pick a churn slot (every 4th). */
            slot_replace(i & ~3, false);
            atomic_fetch_add_explicit(&worker_deletes, 1, memory_order_relaxed);
        } else if (op < WORKER_DELETE_PERMILLE + WORKER_ONESHOT_PERMILLE) {
            atomic_fetch_add_explicit(&oneshots_sent, 1, memory_order_relaxed);
            aio_bh_schedule_oneshot(ctx, oneshot_cb, NULL);
        } else {
            bool wait = op < WORKER_DELETE_PERMILLE + WORKER_ONESHOT_PERMILLE +
                             WORKER_WAIT_PERMILLE;
            Slot *s;
            BHState *st;
            uint64_t seq;

            if (wait) {
                i = i & ~7; /* slots 0, 8, ...: churn, not idle */
            }
            s = &slots[i];
            g_assert_cmpint(pthread_rwlock_rdlock(&s->lock), ==, 0);
            st = s->st;
            seq = atomic_fetch_add_explicit(&st->sched, 1,
                                            memory_order_release) + 1;
            if (st->idle) {
                qemu_bh_schedule_idle(st->bh);
            } else {
                qemu_bh_schedule(st->bh);
            }
            g_assert_cmpint(pthread_rwlock_unlock(&s->lock), ==, 0);
            /*
             * `st` stays allocated (retired states are freed at the end);
             * stop waiting if someone deleted the BH meanwhile.
             */
            while (wait &&
                   atomic_load_explicit(&st->run_seq, memory_order_acquire) < seq &&
                   atomic_load(&st->forbid_from) == UINT64_MAX) {
                sched_yield();
            }
        }
        atomic_fetch_add_explicit(&ops_done, 1, memory_order_relaxed);
    }
    /* The last worker out wakes the owner. */
    if (atomic_fetch_sub(w->running, 1) == 1) {
        atomic_store(&workers_done, true);
        qemu_bh_schedule(w->done_bh);
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The test                                                                 */
/* ------------------------------------------------------------------------ */

static void test_cross_thread_schedule_delete(void)
{
    uint64_t iters = env_u64("AIOCTX_STRESS_ITERS", DEFAULT_ITERS);
    /* ~3 s per 100k per thread is far more than needed; 60 s minimum. */
    uint64_t timeout = env_u64("AIOCTX_STRESS_TIMEOUT",
                               60 + iters * 30 / 100000
#ifdef STRESS_UNDER_TSAN
                               * 10
#endif
                               );
    pthread_t threads[N_THREADS];
    Worker workers[N_THREADS];
    pthread_barrier_t start;
    atomic_int running = N_THREADS;
    pthread_rwlockattr_t rwattr;
    Watchdog wd;
    QEMUBH *done_bh;
    uint64_t rng = 0x243f6a8885a308d3ull;
    uint64_t polls = 0, sched_total = 0, bad = 0, drain_polls = 0;
    double t0, t_workers, t_end;

    atomic_store(&ops_done, 0);
    atomic_store(&poll_epoch, 0);
    atomic_store(&late_runs, 0);
    atomic_store(&oneshots_sent, 0);
    atomic_store(&oneshots_run, 0);
    atomic_store(&worker_deletes, 0);
    atomic_store(&workers_done, false);
    owner_deletes = 0;
    bh_runs = 0;

    printf("# %d threads x %" PRIu64 " operations (AIOCTX_STRESS_ITERS), "
           "%d BH slots, watchdog %" PRIu64 " s%s\n",
           N_THREADS, iters, N_SLOTS, timeout,
#ifdef STRESS_UNDER_TSAN
           " (TSan build)"
#else
           ""
#endif
           );
    fflush(stdout);
    watchdog_start_report(&wd, "stress: cross-thread schedule/delete", (int)timeout,
                          report_progress, NULL);

    ctx = aio_context_new(&error_abort);
    g_assert_nonnull(ctx);
    done_bh = aio_bh_new_full(ctx, done_cb, NULL, "stress-done", NULL);

    /*
     * Writers first, so that a deleter is not starved by the readers (glibc's
     * default rwlock prefers readers).
     */
    pthread_rwlockattr_init(&rwattr);
    pthread_rwlockattr_setkind_np(&rwattr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    /* Slot kinds: every 4th is a churn slot; every 8th (offset 3) is idle. */
    for (int i = 0; i < N_SLOTS; i++) {
        g_assert_cmpint(pthread_rwlock_init(&slots[i].lock, &rwattr), ==, 0);
        slots[i].churn = (i % 4) == 0;
        slots[i].st = state_new(i, (i % 8) == 3 || (i % 16) == 4);
    }
    pthread_rwlockattr_destroy(&rwattr);

    g_assert_cmpint(pthread_barrier_init(&start, NULL, N_THREADS + 1), ==, 0);
    for (int t = 0; t < N_THREADS; t++) {
        workers[t] = (Worker){
            .id = t, .iters = iters, .start = &start, .done_bh = done_bh,
            .running = &running,
        };
        g_assert_cmpint(pthread_create(&threads[t], NULL, worker_thread,
                                       &workers[t]), ==, 0);
    }

    pthread_barrier_wait(&start);
    t0 = now_s();
    while (!atomic_load(&workers_done)) {
        aio_poll(ctx, true);
        atomic_fetch_add(&poll_epoch, 1);
        atomic_thread_fence(memory_order_seq_cst);
        if (++polls % OWNER_DELETE_EVERY == 0) {
            slot_replace((int)(xorshift64(&rng) % N_SLOTS) & ~3, true);
            owner_deletes++;
        }
    }
    for (int t = 0; t < N_THREADS; t++) {
        g_assert_cmpint(pthread_join(threads[t], NULL), ==, 0);
    }
    t_workers = now_s();
    pthread_barrier_destroy(&start);

    /*
     * Final drain: every schedule happened before the joins, so one
     * non-blocking poll takes the whole queue. Poll until nothing makes
     * progress, then once more (idle BHs do not count as progress).
     */
    do {
        drain_polls++;
        g_assert_cmpuint(drain_polls, <, 1000);
    } while (aio_poll(ctx, false));
    aio_poll(ctx, false);
    atomic_fetch_add(&poll_epoch, 1);

    for (int i = 0; i < N_SLOTS; i++) {
        BHState *st = slots[i].st;
        uint64_t sched = atomic_load(&st->sched);

        sched_total += sched;
        if (atomic_load(&st->run_seq) != sched) {
            bad++;
            fprintf(stderr,
                    "test-stress: slot %d (%s%s BH %p): last schedule #%" PRIu64
                    " never ran (the latest run saw #%" PRIu64 ", %" PRIu64
                    " runs)\n",
                    i, st->idle ? "idle" : "normal",
                    slots[i].churn ? " churn" : "", (void *)st->bh, sched,
                    (uint64_t)atomic_load(&st->run_seq), st->runs);
        }
    }
    pthread_mutex_lock(&retired_lock);
    for (BHState *st = retired; st; st = st->retired_next) {
        sched_total += atomic_load(&st->sched);
    }
    pthread_mutex_unlock(&retired_lock);

    t_end = now_s();
    printf("# elapsed %.3f s (workers %.3f s, %.0f ops/s); %" PRIu64
           " worker ops, %" PRIu64 " BH schedules, %" PRIu64 " BH runs, %"
           PRIu64 " oneshots (%" PRIu64 " ran), %" PRIu64 " worker deletes, %"
           PRIu64 " owner deletes, %" PRIu64 " polls (+%" PRIu64 " drain), %"
           PRIu64 " lost schedules, %" PRIu64 " runs after delete\n",
           t_end - t0, t_workers - t0,
           (double)(iters * N_THREADS) / (t_workers - t0),
           (uint64_t)atomic_load(&ops_done), sched_total, bh_runs,
           (uint64_t)atomic_load(&oneshots_sent),
           (uint64_t)atomic_load(&oneshots_run),
           (uint64_t)atomic_load(&worker_deletes), owner_deletes, polls,
           drain_polls, bad, (uint64_t)atomic_load(&late_runs));
    fflush(stdout);

    g_assert_cmpuint(atomic_load(&ops_done), ==, iters * N_THREADS);
    g_assert_cmpuint(bad, ==, 0);
    g_assert_cmpuint(atomic_load(&late_runs), ==, 0);
    g_assert_cmpuint(atomic_load(&oneshots_run), ==, atomic_load(&oneshots_sent));
    /* Coalescing: never more runs than schedules. */
    g_assert_cmpuint(bh_runs, <=, sched_total);

    /* Teardown: delete everything, let the loop free it, drop the context. */
    for (int i = 0; i < N_SLOTS; i++) {
        qemu_bh_delete(slots[i].st->bh);
        atomic_store(&slots[i].st->forbid_from, 0);
        retire(slots[i].st);
        slots[i].st = NULL;
        g_assert_cmpint(pthread_rwlock_destroy(&slots[i].lock), ==, 0);
    }
    qemu_bh_delete(done_bh);
    aio_poll(ctx, false);
    g_assert_cmpuint(atomic_load(&late_runs), ==, 0);
    aio_context_unref(ctx);
    ctx = NULL;

    pthread_mutex_lock(&retired_lock);
    while (retired) {
        BHState *st = retired;
        retired = st->retired_next;
        g_free(st);
    }
    n_retired = 0;
    pthread_mutex_unlock(&retired_lock);

    watchdog_stop(&wd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/stress/bh/cross-thread-schedule-delete",
                    test_cross_thread_schedule_delete);
    return g_test_run();
}
