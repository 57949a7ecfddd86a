/*
 * fork() (issue 15.3; README "fork"): objects created before a fork()
 * belong to the parent. In the child, using a pre-fork context (or its
 * BHs, pools), IOThread or thread pool prints one line
 * `aioctx: <function>: <object> was created before fork(); the child must
 * create its own` and aborts, instead of hanging on workers that do not
 * exist or stealing the parent's wakeups. Objects the child creates work.
 *
 * Each test runs in a GTest subprocess, which creates the objects, forks,
 * lets the grandchild do one thing, and checks with waitpid how the
 * grandchild ended (SIGABRT, or a clean exit); the grandchild's stderr is
 * the subprocess's, which the test checks line for line. The parent keeps
 * using its objects after the fork.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Ic-tests -Iinclude \
 *        $(pkg-config --cflags glib-2.0) c-tests/test-fork.c \
 *        target/release/libaioctx.a $(pkg-config --libs glib-2.0) ...
 */
#include "aioctx.h"
#include "test-util.h"

#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void count_bh(void *opaque)
{
    (*(int *)opaque)++;
}

static int job_ret(void *opaque)
{
    return GPOINTER_TO_INT(opaque);
}

/* Forks; the child runs fn(arg) under a 10 s alarm (a hang is SIGALRM, not
 * SIGABRT) and _exit(0)s if fn returns. Returns the child's wait status. */
static int run_in_child(void (*fn)(void *), void *arg)
{
    int status;
    pid_t pid;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        alarm(10);
        fn(arg);
        _exit(0);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return status;
}

static void assert_aborted(int status)
{
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGABRT);
}

/* The parent's context still works after the fork. */
static void assert_context_works(AioContext *ctx)
{
    int runs = 0;

    aio_bh_schedule_oneshot(ctx, count_bh, &runs);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(runs, ==, 1);
}

/* ---- aio_poll on a pre-fork context ---- */

static void child_poll(void *ctx)
{
    aio_poll(ctx, false);
}

static void fork_poll_pre_fork_context(void)
{
    AioContext *ctx = new_context();

    assert_aborted(run_in_child(child_poll, ctx));
    assert_context_works(ctx);
    aio_context_unref(ctx);
}

/* ---- a pre-fork BH: scheduling it would wake the parent's loop ---- */

static void child_schedule(void *bh)
{
    qemu_bh_schedule(bh);
}

static void fork_schedule_pre_fork_bh(void)
{
    AioContext *ctx = new_context();
    int runs = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_bh, &runs);

    assert_aborted(run_in_child(child_schedule, bh));
    /* Nothing was scheduled on the parent's context. */
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(runs, ==, 0);
    qemu_bh_delete(bh);
    aio_context_unref(ctx);
}

/* ---- the current context (a thread-local the child inherits) ---- */

static void child_submit_aio(void *unused)
{
    (void)unused;
    thread_pool_submit_aio(job_ret, NULL, NULL, NULL);
}

static void fork_submit_aio_pre_fork_current_context(void)
{
    /* main() bound this thread to the main context, before the fork. */
    assert_aborted(run_in_child(child_submit_aio, NULL));
}

/* ---- a context's pool whose workers are the parent's ---- */

static void child_pool_update(void *pool)
{
    /* The child's own context is fine; the pool is not. */
    thread_pool_update_params(pool, new_context());
}

static void fork_pre_fork_context_pool(void)
{
    AioContext *ctx = new_context();
    ThreadPoolAio *pool = aio_get_thread_pool(ctx);

    assert_aborted(run_in_child(child_pool_update, pool));
    aio_context_unref(ctx);
}

/* ---- a generic pool whose workers exist only in the parent ---- */

static void child_pool_submit(void *pool)
{
    thread_pool_submit(pool, job_ret, NULL, NULL);
    thread_pool_wait(pool);
}

static void fork_pre_fork_generic_pool(void)
{
    ThreadPool *pool = thread_pool_new();

    g_assert_true(thread_pool_set_max_threads(pool, 2));
    thread_pool_submit(pool, job_ret, NULL, NULL);
    thread_pool_wait(pool);          /* a worker exists now */
    assert_aborted(run_in_child(child_pool_submit, pool));
    thread_pool_submit(pool, job_ret, NULL, NULL);
    thread_pool_wait(pool);
    thread_pool_free(pool);
}

/* ---- an IOThread: its thread is not in the child ---- */

static void child_join(void *t)
{
    aioctx_iothread_join(t);
}

static void fork_pre_fork_iothread(void)
{
    AioctxIOThread *t = aioctx_iothread_new("io-fork", &error_abort);

    assert_aborted(run_in_child(child_join, t));
    aioctx_iothread_join(t);
}

/* ---- what the child creates itself works ---- */

typedef struct {
    QemuEvent done;
    int runs;
} Done;

static void done_bh(void *opaque)
{
    Done *d = opaque;

    d->runs++;
    qemu_event_set(&d->done);
}

static void child_own_objects(void *parent_ctx)
{
    AioContext *ctx = new_context();
    AioctxIOThread *t;
    ThreadPool *pool;
    Done d = { .runs = 0 };

    (void)parent_ctx;
    assert_context_works(ctx);
    aio_context_unref(ctx);

    qemu_event_init(&d.done, false);
    t = aioctx_iothread_new("io-child", &error_abort);
    aio_bh_schedule_oneshot(aioctx_iothread_get_aio_context(t), done_bh, &d);
    qemu_event_wait(&d.done);
    g_assert_cmpint(d.runs, ==, 1);
    aioctx_iothread_join(t);
    qemu_event_destroy(&d.done);

    pool = thread_pool_new();
    g_assert_true(thread_pool_set_max_threads(pool, 1));
    thread_pool_submit(pool, job_ret, NULL, NULL);
    thread_pool_wait(pool);
    thread_pool_free(pool);
}

static void fork_child_creates_its_own(void)
{
    AioContext *ctx = new_context();
    int status = run_in_child(child_own_objects, ctx);

    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    assert_context_works(ctx);
    aio_context_unref(ctx);
}

/* ---- the tests ---- */

/*
 * Each test runs `in_subprocess` in a GTest subprocess, which must pass
 * within 20 s; its stderr (the grandchild's refusal) must be exactly
 * `stderr_line`.
 */
typedef struct {
    const char *path;
    void (*in_subprocess)(void);
    const char *stderr_line;
} ForkTest;

/* The one line the grandchild prints: "FUNCTION: OBJECT" was refused. */
#define REFUSED(function_object) \
    "aioctx: " function_object " was created before fork(); the child must create its own\n"

static const ForkTest fork_tests[] = {
    { "/fork/poll-pre-fork-context", fork_poll_pre_fork_context,
      REFUSED("aio_poll: AioContext") },
    { "/fork/schedule-pre-fork-bh", fork_schedule_pre_fork_bh,
      REFUSED("qemu_bh_schedule: AioContext") },
    { "/fork/submit-aio-pre-fork-current-context", fork_submit_aio_pre_fork_current_context,
      REFUSED("thread_pool_submit_aio: the current AioContext (and its thread pool)") },
    { "/fork/pre-fork-context-pool", fork_pre_fork_context_pool,
      REFUSED("thread_pool_update_params: ThreadPoolAio") },
    { "/fork/pre-fork-generic-pool", fork_pre_fork_generic_pool,
      REFUSED("thread_pool_submit: ThreadPool") },
    { "/fork/pre-fork-iothread", fork_pre_fork_iothread,
      REFUSED("aioctx_iothread_join: AioctxIOThread") },
    { "/fork/child-creates-its-own", fork_child_creates_its_own, "" },
};

static void fork_test_run(gconstpointer opaque)
{
    const ForkTest *t = opaque;

    if (g_test_subprocess()) {
        t->in_subprocess();
        return;
    }
    trap_subprocess_expect(20, true, t->stderr_line);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    for (size_t i = 0; i < G_N_ELEMENTS(fork_tests); i++) {
        g_test_add_data_func(fork_tests[i].path, &fork_tests[i], fork_test_run);
    }
    return g_test_run();
}
