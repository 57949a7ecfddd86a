/*
 * Fatal reports (src/fatal.rs): exactly one line `aioctx: <function>:
 * <problem>` on stderr, then abort, even when several threads detect
 * misuse at the same moment; and a failed allocation inside the library is
 * reported the same way (`aioctx: alloc: out of memory (N bytes)`), not
 * with Rust's "memory allocation of N bytes failed"; a worker thread that
 * cannot be started names the API function that wanted it; the reports of
 * the library's C code (src/c/variadic.c) share the once-guard.
 */
#include "aioctx.h"
#include "test-util.h"

#include "qapi/error.h"

#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- several threads misuse the library at once ---- */

#define RACERS 8

static pthread_barrier_t start_line;

static void *misuse_thread(void *opaque)
{
    (void)opaque;
    pthread_barrier_wait(&start_line);
    bql_unlock(); /* not held: fatal */
    return NULL;
}

static void concurrent_misuse_child(void)
{
    pthread_t tids[RACERS];

    pthread_barrier_init(&start_line, NULL, RACERS + 1);
    for (int i = 0; i < RACERS; i++) {
        g_assert_cmpint(pthread_create(&tids[i], NULL, misuse_thread, NULL), ==, 0);
    }
    pthread_barrier_wait(&start_line);
    bql_unlock();
    for (int i = 0; i < RACERS; i++) {
        pthread_join(tids[i], NULL);
    }
}

static void test_concurrent_misuse_one_line(void)
{
    if (g_test_subprocess()) {
        concurrent_misuse_child();
        return; /* not reached: the parent then fails */
    }
    /* A race: without the once-guard most runs print several lines. */
    for (int run = 0; run < 20; run++) {
        g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
        g_assert_false(g_test_trap_reached_timeout());
        g_test_trap_assert_failed();
        g_test_trap_assert_stderr("*aioctx: bql_unlock: *BQL*\n");
        g_test_trap_assert_stderr_unmatched("*aioctx:*aioctx:*");
    }
}

/* The C side's reports (error_free_or_abort with no error) racing with
 * Rust's (bql_unlock without the BQL): still one line. */
static void *c_misuse_thread(void *opaque)
{
    Error *none = NULL;

    (void)opaque;
    pthread_barrier_wait(&start_line);
    error_free_or_abort(&none); /* fatal: no error */
    return NULL;
}

static void mixed_misuse_child(void)
{
    pthread_t tids[RACERS];

    pthread_barrier_init(&start_line, NULL, RACERS + 1);
    for (int i = 0; i < RACERS; i++) {
        void *(*fn)(void *) = i % 2 ? misuse_thread : c_misuse_thread;
        g_assert_cmpint(pthread_create(&tids[i], NULL, fn, NULL), ==, 0);
    }
    pthread_barrier_wait(&start_line);
    for (int i = 0; i < RACERS; i++) {
        pthread_join(tids[i], NULL);
    }
}

static void test_c_and_rust_misuse_one_line(void)
{
    if (g_test_subprocess()) {
        mixed_misuse_child();
        return; /* not reached: the parent then fails */
    }
    for (int run = 0; run < 20; run++) {
        g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
        g_assert_false(g_test_trap_reached_timeout());
        g_test_trap_assert_failed();
        g_test_trap_assert_stderr("*aioctx: *\n");
        g_test_trap_assert_stderr_unmatched("*aioctx:*aioctx:*");
    }
}

/* A C-side report alone: the line of the Rust path. */
static void test_c_report_format(void)
{
    if (g_test_subprocess()) {
        Error *none = NULL;
        error_free_or_abort(&none);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("aioctx: error_free_or_abort: no error\n");
}

/* ---- out of memory ---- */

static void noop_cb(void *opaque)
{
    (void)opaque;
}

/* Address space in use by this process, in bytes (/proc/self/statm). */
static unsigned long address_space_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    g_assert_nonnull(f);
    g_assert_cmpint(fscanf(f, "%lu", &pages), ==, 1);
    fclose(f);
    return pages * (unsigned long)sysconf(_SC_PAGESIZE);
}

static void out_of_memory_child(void)
{
    AioContext *ctx = new_context();
    struct rlimit rl;

    /* A little room, then every allocation fails: aio_bh_new allocates
     * in Rust (the BH, and the context's registry of BHs). */
    rl.rlim_cur = rl.rlim_max = address_space_bytes() + 32 * 1024 * 1024;
    g_assert_cmpint(setrlimit(RLIMIT_AS, &rl), ==, 0);
    for (;;) {
        aio_bh_new(ctx, noop_cb, NULL);
    }
}

static void test_out_of_memory(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* The sanitizers' allocators and shadow memory do not run under a
     * small RLIMIT_AS (they report their own failure). */
    g_test_skip("not under a sanitizer");
    return;
#endif
    if (g_test_subprocess()) {
        out_of_memory_child();
        return;
    }
    g_test_trap_subprocess(NULL, 30 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_assert_false(g_test_trap_reached_timeout());
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: alloc: out of memory (* bytes)\n");
    g_test_trap_assert_stderr_unmatched("*memory allocation of*");
    g_test_trap_assert_stderr_unmatched("*aioctx:*aioctx:*");
}

/* ---- a worker thread cannot be started ---- */

static int noop_job(void *opaque)
{
    (void)opaque;
    return 0;
}

/* Leaves too little address space for a thread stack (2 MiB), enough for
 * small allocations. */
static void limit_address_space(void)
{
    struct rlimit rl;

    rl.rlim_cur = rl.rlim_max = address_space_bytes() + 1024 * 1024;
    g_assert_cmpint(setrlimit(RLIMIT_AS, &rl), ==, 0);
}

static void test_worker_spawn_failure(gconstpointer which)
{
    bool aio = GPOINTER_TO_INT(which);

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    g_test_skip("not under a sanitizer (RLIMIT_AS)");
    return;
#endif
    if (g_test_subprocess()) {
        if (aio) {
            qemu_init_main_loop(&error_abort);
            limit_address_space();
            thread_pool_submit_aio(noop_job, NULL, NULL, NULL);
        } else {
            ThreadPool *pool = thread_pool_new();
            thread_pool_set_max_threads(pool, 4);
            limit_address_space();
            thread_pool_submit(pool, noop_job, NULL, NULL);
        }
        return; /* not reached: the parent then fails */
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_assert_false(g_test_trap_reached_timeout());
    g_test_trap_assert_failed();
    if (aio) {
        g_test_trap_assert_stderr(
            "aioctx: thread_pool_submit_aio: cannot start a worker thread: *\n");
    } else {
        g_test_trap_assert_stderr(
            "aioctx: thread_pool_submit: cannot start a worker thread: *\n");
    }
    g_test_trap_assert_stderr_unmatched("*aioctx:*aioctx:*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fatal/concurrent-misuse-one-line", test_concurrent_misuse_one_line);
    g_test_add_func("/fatal/out-of-memory", test_out_of_memory);
    g_test_add_func("/fatal/c-and-rust-misuse-one-line", test_c_and_rust_misuse_one_line);
    g_test_add_func("/fatal/c-report-format", test_c_report_format);
    g_test_add_data_func("/fatal/worker-spawn-failure/generic", GINT_TO_POINTER(0),
                         test_worker_spawn_failure);
    g_test_add_data_func("/fatal/worker-spawn-failure/aio", GINT_TO_POINTER(1),
                         test_worker_spawn_failure);
    return g_test_run();
}
