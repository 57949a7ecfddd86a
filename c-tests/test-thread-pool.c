/*
 * Thread pools: the per-context AIO pool (thread_pool_submit_aio / _co,
 * completion callbacks in the context's thread, in completion order),
 * cancellation (bdrv_aio_cancel_async, bdrv_aio_cancel), the pool's thread
 * limits (aio_context_set_thread_pool_params, counted through
 * /proc/self/task/<tid>/comm == "worker"), freeing a context with jobs in
 * flight, the generic ThreadPool, and misuse (death tests).
 *
 * Modelled on QEMU's tests/unit/test-thread-pool.c.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude/compat -Iinclude
 * $(pkg-config --cflags glib-2.0) c-tests/test-thread-pool.c
 * target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl
 * -lm -lgcc_s -rdynamic
 */

#include "qemu/osdep.h"
#include "block/block.h"
#include "block/thread-pool.h"
#include "qemu/aiocb.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"

#include <stdatomic.h>

static AioContext *ctx;

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* Threads named "worker" in this process. */
static int count_workers(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *de;
    int n = 0;

    g_assert_nonnull(dir);
    while ((de = readdir(dir)) != NULL) {
        char path[300], comm[64] = "";
        FILE *f;

        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        f = fopen(path, "r");
        if (!f) {
            continue; /* the thread exited meanwhile */
        }
        if (fgets(comm, sizeof(comm), f) && strcmp(comm, "worker\n") == 0) {
            n++;
        }
        fclose(f);
    }
    closedir(dir);
    return n;
}

/* Waits (up to 5 s) until the worker count satisfies lo <= n <= hi. */
static int wait_workers(int lo, int hi)
{
    int n = count_workers();

    for (int i = 0; i < 500 && (n < lo || n > hi); i++) {
        g_usleep(10 * 1000);
        n = count_workers();
    }
    return n;
}

static void set_params(AioContext *c, int64_t min, int64_t max)
{
    aio_context_set_thread_pool_params(c, min, max, &error_abort);
}

/* Polls the main context until *counter reaches n (fails after ~10 s). */
static void poll_until(atomic_int *counter, int n)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (atomic_load(counter) < n) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        aio_poll(ctx, true);
    }
}

/* A gate jobs can block on until the test opens it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;

static void gate_set(bool open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_pass(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_open) {
        pthread_cond_wait(&gate_cond, &gate_lock);
    }
    pthread_mutex_unlock(&gate_lock);
}

/* ------------------------------------------------------------------------ */
/* Jobs                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct {
    atomic_int n;        /* set by the job: 1 started, 2 finished */
    int ret;             /* the completion callback's ret */
    int cb_calls;        /* completion callbacks (main thread only) */
    int order;           /* position among completions */
    BlockAIOCB *aiocb;
    bool gated;          /* wait for the gate before finishing */
    int result;          /* what the job returns */
} WorkerData;

static atomic_int active;   /* jobs started */
static atomic_int done_cbs; /* completion callbacks */
static int completions;     /* order counter (main thread) */

static int worker_cb(void *opaque)
{
    WorkerData *data = opaque;

    atomic_store(&data->n, 1);
    atomic_fetch_add(&active, 1);
    if (data->gated) {
        gate_pass();
    }
    atomic_store(&data->n, 2);
    return data->result;
}

static void done_cb(void *opaque, int ret)
{
    WorkerData *data = opaque;

    data->ret = ret;
    data->cb_calls++;
    data->order = completions++;
    data->aiocb = NULL;
    atomic_fetch_add(&done_cbs, 1);
}

static void reset_counters(void)
{
    atomic_store(&active, 0);
    atomic_store(&done_cbs, 0);
    completions = 0;
}

/* ------------------------------------------------------------------------ */
/* AIO pool                                                                 */
/* ------------------------------------------------------------------------ */

static void test_submit_no_cb(void)
{
    WorkerData data = { .result = 0 };
    ThreadPoolFunc *fn = worker_cb;

    thread_pool_submit_aio(fn, &data, NULL, NULL);
    while (atomic_load(&data.n) != 2) {
        aio_poll(ctx, false);
        g_usleep(1000);
    }
    /* Let the completion BH free the request. */
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(atomic_load(&data.n), ==, 2);
}

static void test_submit_aio(void)
{
    WorkerData data[100];

    reset_counters();
    memset(data, 0, sizeof(data));
    for (int i = 0; i < 100; i++) {
        data[i].result = i;
        data[i].aiocb = thread_pool_submit_aio(worker_cb, &data[i], done_cb, &data[i]);
        g_assert_nonnull(data[i].aiocb);
    }
    poll_until(&done_cbs, 100);
    for (int i = 0; i < 100; i++) {
        g_assert_cmpint(data[i].cb_calls, ==, 1);
        g_assert_cmpint(data[i].ret, ==, i);
        g_assert_cmpint(atomic_load(&data[i].n), ==, 2);
    }
}

/* The callback never runs inside the submit call, only from a later poll. */
static void test_cb_deferred(void)
{
    WorkerData data = { .result = 7 };

    reset_counters();
    thread_pool_submit_aio(worker_cb, &data, done_cb, &data);
    while (atomic_load(&data.n) != 2) {
        g_usleep(1000); /* the job finished; nobody polled yet */
    }
    g_usleep(10 * 1000);
    g_assert_cmpint(data.cb_calls, ==, 0);
    poll_until(&done_cbs, 1);
    g_assert_cmpint(data.cb_calls, ==, 1);
    g_assert_cmpint(data.ret, ==, 7);
}

/* With one worker, jobs complete, and are reported, in submission order. */
static void test_completion_order(void)
{
    WorkerData data[20];

    reset_counters();
    memset(data, 0, sizeof(data));
    set_params(ctx, 0, 1);
    for (int i = 0; i < 20; i++) {
        thread_pool_submit_aio(worker_cb, &data[i], done_cb, &data[i]);
    }
    poll_until(&done_cbs, 20);
    for (int i = 0; i < 20; i++) {
        g_assert_cmpint(data[i].order, ==, i);
    }
    set_params(ctx, 0, 64);
}

typedef struct {
    WorkerData data;
    int co_ret;
    bool co_done;
} CoData;

static atomic_int co_finished;

static void coroutine_fn co_submit(void *opaque)
{
    CoData *c = opaque;

    c->co_ret = thread_pool_submit_co(worker_cb, &c->data);
    c->co_done = true;
    atomic_fetch_add(&co_finished, 1);
}

static void test_submit_co(void)
{
    CoData c = { .data.result = 42 };
    Coroutine *co = qemu_coroutine_create(co_submit, &c);

    atomic_store(&co_finished, 0);
    qemu_coroutine_enter(co);
    g_assert_false(c.co_done); /* yielded while the job runs */
    poll_until(&co_finished, 1);
    g_assert_true(c.co_done);
    g_assert_cmpint(c.co_ret, ==, 42);
    g_assert_cmpint(atomic_load(&c.data.n), ==, 2);
}

static void test_submit_co_many(void)
{
    CoData c[100];

    memset(c, 0, sizeof(c));
    atomic_store(&co_finished, 0);
    for (int i = 0; i < 100; i++) {
        c[i].data.result = 1000 + i;
        qemu_coroutine_enter(qemu_coroutine_create(co_submit, &c[i]));
    }
    poll_until(&co_finished, 100);
    for (int i = 0; i < 100; i++) {
        g_assert_true(c[i].co_done);
        g_assert_cmpint(c[i].co_ret, ==, 1000 + i);
    }
}

/*
 * Cancel: with 4 workers blocked on the gate, 4 jobs run and 96 wait.
 * Cancelling all of them removes the 96 (-ECANCELED, never run); the 4
 * running ones complete normally. Every callback runs exactly once.
 */
static void do_test_cancel(bool sync)
{
    enum { N = 100, WORKERS = 4 };
    WorkerData data[N];
    int num_canceled = 0;

    reset_counters();
    memset(data, 0, sizeof(data));
    set_params(ctx, WORKERS, WORKERS);
    (void)aio_get_thread_pool(ctx); /* starts the min workers */
    g_assert_cmpint(wait_workers(WORKERS, WORKERS), ==, WORKERS);
    gate_set(false);
    for (int i = 0; i < N; i++) {
        data[i].gated = true;
        data[i].aiocb = thread_pool_submit_aio(worker_cb, &data[i], done_cb, &data[i]);
    }
    while (atomic_load(&active) < WORKERS) {
        g_usleep(1000);
    }
    g_usleep(20 * 1000);
    g_assert_cmpint(atomic_load(&active), ==, WORKERS);

    for (int i = 0; i < N; i++) {
        if (atomic_load(&data[i].n) == 0) {
            if (sync) {
                /* Waits for the callback: it must have run on return. */
                bdrv_aio_cancel(data[i].aiocb);
                g_assert_cmpint(data[i].cb_calls, ==, 1);
                g_assert_cmpint(data[i].ret, ==, -ECANCELED);
            } else {
                bdrv_aio_cancel_async(data[i].aiocb);
                g_assert_cmpint(data[i].cb_calls, ==, 0); /* later, from a BH */
            }
            num_canceled++;
        }
    }
    g_assert_cmpint(num_canceled, ==, N - WORKERS);

    gate_set(true);
    if (sync) {
        /* A running job: bdrv_aio_cancel waits for its normal completion. */
        for (int i = 0; i < N; i++) {
            if (data[i].cb_calls == 0) {
                bdrv_aio_cancel(data[i].aiocb);
                g_assert_cmpint(data[i].cb_calls, ==, 1);
            }
        }
    }
    poll_until(&done_cbs, N);

    for (int i = 0; i < N; i++) {
        g_assert_cmpint(data[i].cb_calls, ==, 1);
        if (atomic_load(&data[i].n) == 0) {
            g_assert_cmpint(data[i].ret, ==, -ECANCELED);
        } else {
            g_assert_cmpint(atomic_load(&data[i].n), ==, 2);
            g_assert_cmpint(data[i].ret, ==, 0);
        }
    }
    g_assert_cmpint(atomic_load(&active), ==, WORKERS);
    set_params(ctx, 0, 64);
}

static void test_cancel_async(void)
{
    do_test_cancel(false);
}

static void test_cancel(void)
{
    do_test_cancel(true);
}

/* A request outlives its completion while someone holds a reference. */
static void test_aiocb_ref(void)
{
    WorkerData data = { .result = 3 };
    BlockAIOCB *acb;

    reset_counters();
    acb = thread_pool_submit_aio(worker_cb, &data, done_cb, &data);
    qemu_aio_ref(acb);
    poll_until(&done_cbs, 1);
    g_assert_cmpint(acb->refcnt, ==, 1);
    g_assert_true(acb->opaque == &data);
    bdrv_aio_cancel_async(acb); /* finished: nothing happens */
    g_assert_cmpint(data.cb_calls, ==, 1);
    qemu_aio_unref(acb);
}

/*
 * Submits n jobs held at the (closed) gate, waits until `running` of them
 * are active, and checks that no more start within 20 ms.
 */
static void submit_gated(WorkerData *data, int n, int running)
{
    reset_counters();
    memset(data, 0, n * sizeof(*data));
    gate_set(false);
    for (int i = 0; i < n; i++) {
        data[i].gated = true;
        thread_pool_submit_aio(worker_cb, &data[i], done_cb, &data[i]);
    }
    while (atomic_load(&active) < running) {
        g_usleep(1000);
    }
    g_usleep(20 * 1000);
    g_assert_cmpint(atomic_load(&active), ==, running);
}

static void test_params(void)
{
    enum { N = 20 };
    WorkerData data[N];
    Error *err = NULL;

    /* min threads are started eagerly; the surplus above max exits. */
    set_params(ctx, 4, 4);
    (void)aio_get_thread_pool(ctx);
    g_assert_cmpint(wait_workers(4, 4), ==, 4);
    set_params(ctx, 1, 2);
    g_assert_cmpint(wait_workers(2, 2), ==, 2);

    /* Never more than max workers, however many jobs wait. */
    submit_gated(data, N, 2);
    g_assert_cmpint(count_workers(), ==, 2);
    gate_set(true);
    poll_until(&done_cbs, N);

    /* Raising max lets more run at once. */
    set_params(ctx, 0, 8);
    submit_gated(data, N, 8);
    g_assert_cmpint(wait_workers(8, 8), ==, 8);
    gate_set(true);
    poll_until(&done_cbs, N);

    /* Invalid limits are reported and change nothing. */
    aio_context_set_thread_pool_params(ctx, 3, 2, &err);
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    aio_context_set_thread_pool_params(ctx, 0, 0, &err);
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    aio_context_set_thread_pool_params(ctx, -1, 4, &err);
    g_assert_nonnull(err);
    error_free(err);

    set_params(ctx, 0, 64);
}

/* A standalone pool: min threads on creation, freed with its workers. */
static void test_new_free_aio(void)
{
    AioContext *c = aio_context_new(&error_abort);
    ThreadPoolAio *pool;
    int before = count_workers();

    set_params(c, 3, 5);
    pool = thread_pool_new_aio(c);
    g_assert_cmpint(wait_workers(before + 3, before + 3), ==, before + 3);
    set_params(c, 0, 64);
    thread_pool_update_params(pool, c);
    thread_pool_free_aio(pool);
    g_assert_cmpint(wait_workers(before, before), ==, before);
    aio_context_unref(c);
}

/*
 * Freeing a context with jobs in flight: the jobs all run, the unref waits
 * for them, and no completion callback runs (then or later).
 */
typedef struct {
    atomic_int jobs_done;
    atomic_int cbs;
} InFlight;

static int slow_job(void *opaque)
{
    InFlight *f = opaque;

    g_usleep(20 * 1000);
    atomic_fetch_add(&f->jobs_done, 1);
    return 0;
}

static void in_flight_cb(void *opaque, int ret)
{
    InFlight *f = opaque;

    (void)ret;
    atomic_fetch_add(&f->cbs, 1);
}

static void *in_flight_thread(void *opaque)
{
    InFlight *f = opaque;
    AioContext *c = aio_context_new(&error_abort);

    qemu_set_current_aio_context(c);
    set_params(c, 0, 2);
    for (int i = 0; i < 10; i++) {
        thread_pool_submit_aio(slow_job, f, in_flight_cb, f);
    }
    aio_context_unref(c); /* waits for the 10 jobs */
    g_assert_cmpint(atomic_load(&f->jobs_done), ==, 10);
    g_assert_cmpint(atomic_load(&f->cbs), ==, 0);
    return NULL;
}

static void test_unref_in_flight(void)
{
    InFlight f = { 0 };
    pthread_t t;

    g_assert_cmpint(pthread_create(&t, NULL, in_flight_thread, &f), ==, 0);
    pthread_join(t, NULL);
    g_usleep(20 * 1000);
    g_assert_cmpint(atomic_load(&f.jobs_done), ==, 10);
    g_assert_cmpint(atomic_load(&f.cbs), ==, 0);
}

/* ------------------------------------------------------------------------ */
/* Generic pool                                                             */
/* ------------------------------------------------------------------------ */

static atomic_int generic_runs, generic_destroyed, generic_concurrent, generic_peak;

static int generic_job(void *opaque)
{
    int now = atomic_fetch_add(&generic_concurrent, 1) + 1;
    int peak = atomic_load(&generic_peak);

    while (now > peak && !atomic_compare_exchange_weak(&generic_peak, &peak, now)) {
    }
    g_usleep(1000);
    atomic_fetch_add((atomic_int *)opaque, 1);
    atomic_fetch_sub(&generic_concurrent, 1);
    return 0;
}

static void generic_destroy(void *opaque)
{
    g_assert_true(opaque == &generic_runs);
    atomic_fetch_add(&generic_destroyed, 1);
}

static void test_generic(void)
{
    ThreadPool *pool = thread_pool_new();
    int before = count_workers();

    atomic_store(&generic_runs, 0);
    atomic_store(&generic_destroyed, 0);
    atomic_store(&generic_peak, 0);
    g_assert_true(thread_pool_set_max_threads(pool, 4));
    for (int i = 0; i < 100; i++) {
        thread_pool_submit(pool, generic_job, &generic_runs, generic_destroy);
    }
    thread_pool_wait(pool);
    g_assert_cmpint(atomic_load(&generic_runs), ==, 100);
    g_assert_cmpint(atomic_load(&generic_destroyed), ==, 100);
    g_assert_cmpint(atomic_load(&generic_peak), <=, 4);
    g_assert_cmpint(atomic_load(&generic_peak), >=, 2);
    g_assert_cmpint(count_workers(), <=, before + 4);

    /* A second batch after wait (a barrier, not the end). */
    for (int i = 0; i < 10; i++) {
        thread_pool_submit(pool, generic_job, &generic_runs, NULL);
    }
    thread_pool_wait(pool);
    g_assert_cmpint(atomic_load(&generic_runs), ==, 110);

    /* Submitted work is finished by free. */
    for (int i = 0; i < 10; i++) {
        thread_pool_submit(pool, generic_job, &generic_runs, NULL);
    }
    thread_pool_free(pool);
    g_assert_cmpint(atomic_load(&generic_runs), ==, 120);
    g_assert_cmpint(wait_workers(before, before), ==, before);
}

static void test_generic_immediate(void)
{
    ThreadPool *pool = thread_pool_new();

    atomic_store(&generic_runs, 0);
    atomic_store(&generic_peak, 0);
    /* The maximum starts at 0; submit_immediate raises it to the work. */
    for (int i = 0; i < 8; i++) {
        thread_pool_submit_immediate(pool, generic_job, &generic_runs, NULL);
    }
    thread_pool_wait(pool);
    g_assert_cmpint(atomic_load(&generic_runs), ==, 8);
    for (int i = 0; i < 6; i++) {
        thread_pool_submit(pool, generic_job, &generic_runs, NULL);
    }
    g_assert_true(thread_pool_adjust_max_threads_to_work(pool));
    thread_pool_wait(pool);
    g_assert_cmpint(atomic_load(&generic_runs), ==, 14);
    thread_pool_free(pool);
}

/* ------------------------------------------------------------------------ */
/* Death tests                                                              */
/* ------------------------------------------------------------------------ */

static int noop_job(void *opaque)
{
    (void)opaque;
    return 0;
}

static void *no_context_thread(void *opaque)
{
    (void)opaque;
    thread_pool_submit_aio(noop_job, NULL, NULL, NULL);
    return NULL;
}

static void death_no_context(void)
{
    pthread_t t;

    pthread_create(&t, NULL, no_context_thread, NULL);
    pthread_join(t, NULL);
}

static void death_null_func(void)
{
    thread_pool_submit_aio(NULL, NULL, NULL, NULL);
}

static void death_co_outside(void)
{
    thread_pool_submit_co(noop_job, NULL);
}

static void death_bad_params(void)
{
    aio_context_set_thread_pool_params(ctx, 5, 2, &error_abort);
}

static void death_free_own_pool(void)
{
    thread_pool_free_aio(aio_get_thread_pool(ctx));
}

static void death_cancel_null(void)
{
    bdrv_aio_cancel(NULL);
}

static void death_wait_no_threads(void)
{
    ThreadPool *pool = thread_pool_new();

    thread_pool_submit(pool, noop_job, NULL, NULL);
    thread_pool_wait(pool);
}

static void death_max_zero(void)
{
    thread_pool_set_max_threads(thread_pool_new(), 0);
}

static void death_aio_get_small(void)
{
    static const AIOCBInfo small = { .cancel_async = NULL, .aiocb_size = 8 };

    qemu_aio_get(&small, NULL, NULL, NULL);
}

static void death_generic_null(void)
{
    thread_pool_submit(NULL, noop_job, NULL, NULL);
}

typedef struct {
    const char *path;
    void (*fn)(void);
    const char *stderr_pattern;
} DeathTest;

static const DeathTest death_tests[] = {
    { "/thread-pool/death/submit-no-context", death_no_context,
      "*aioctx: thread_pool_submit_aio: *no current AioContext*" },
    { "/thread-pool/death/submit-null-func", death_null_func,
      "*aioctx: thread_pool_submit_aio: ThreadPoolFunc is NULL*" },
    { "/thread-pool/death/submit-co-outside-coroutine", death_co_outside,
      "*aioctx: thread_pool_submit_co: *coroutine*" },
    { "/thread-pool/death/bad-params-error-abort", death_bad_params,
      "*aioctx: aio_context_set_thread_pool_params: bad thread-pool-min/thread-pool-max*" },
    { "/thread-pool/death/free-context-pool", death_free_own_pool,
      "*aioctx: thread_pool_free_aio: *freed with the context*" },
    { "/thread-pool/death/cancel-null", death_cancel_null,
      "*aioctx: bdrv_aio_cancel: BlockAIOCB is NULL*" },
    { "/thread-pool/death/generic-wait-max-0", death_wait_no_threads,
      "*aioctx: thread_pool_wait: *maximum is 0 threads*" },
    { "/thread-pool/death/generic-max-0", death_max_zero,
      "*aioctx: thread_pool_set_max_threads: max_threads must be at least 1*" },
    { "/thread-pool/death/generic-null", death_generic_null,
      "*aioctx: thread_pool_submit: ThreadPool is NULL*" },
    { "/thread-pool/death/aio-get-too-small", death_aio_get_small,
      "*aioctx: qemu_aio_get: AIOCBInfo.aiocb_size is 8*" },
};

static void run_death_test(gconstpointer opaque)
{
    const DeathTest *t = opaque;

    if (g_test_subprocess()) {
        t->fn();
        fprintf(stderr, "survived\n");
        exit(0);
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(t->stderr_pattern);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);
    ctx = qemu_get_aio_context();

    g_test_add_func("/thread-pool/submit/no-callback", test_submit_no_cb);
    g_test_add_func("/thread-pool/submit/aio-100", test_submit_aio);
    g_test_add_func("/thread-pool/submit/callback-deferred", test_cb_deferred);
    g_test_add_func("/thread-pool/submit/completion-order", test_completion_order);
    g_test_add_func("/thread-pool/submit/co", test_submit_co);
    g_test_add_func("/thread-pool/submit/co-100", test_submit_co_many);
    g_test_add_func("/thread-pool/cancel/async", test_cancel_async);
    g_test_add_func("/thread-pool/cancel/sync", test_cancel);
    g_test_add_func("/thread-pool/aiocb/ref", test_aiocb_ref);
    g_test_add_func("/thread-pool/params/min-max", test_params);
    g_test_add_func("/thread-pool/params/new-free-aio", test_new_free_aio);
    g_test_add_func("/thread-pool/context/unref-in-flight", test_unref_in_flight);
    g_test_add_func("/thread-pool/generic/submit-wait-4", test_generic);
    g_test_add_func("/thread-pool/generic/immediate", test_generic_immediate);
    for (size_t i = 0; i < G_N_ELEMENTS(death_tests); i++) {
        g_test_add_data_func(death_tests[i].path, &death_tests[i], run_death_test);
    }
    return g_test_run();
}
