/*
 * GLib integration: aio_get_g_source, aio_prepare/aio_pending/aio_dispatch,
 * the main loop (qemu_init_main_loop attaches the main and iohandler
 * contexts to GLib's default main context), main_loop_wait,
 * qemu_notify_event, qemu_set_fd_handler.
 */
#include "aioctx.h"

#include <glib.h>
#include <pthread.h>
#include <unistd.h>

static void count_cb(void *opaque)
{
    int *n = opaque;
    (*n)++;
}

/* A fresh GMainContext with ctx's source attached. */
static GMainContext *attach(AioContext *ctx)
{
    GMainContext *gctx = g_main_context_new();
    GSource *src = aio_get_g_source(ctx);
    g_assert_nonnull(src);
    g_source_attach(src, gctx);
    g_source_unref(src);
    return gctx;
}

static void test_bh_runs_from_glib(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = attach(ctx);
    int n = 0;
    QEMUBH *bh = aio_bh_new(ctx, count_cb, &n);

    /* Nothing ready: the iteration reports no work. */
    g_assert_false(g_main_context_iteration(gctx, FALSE));

    qemu_bh_schedule(bh);
    g_assert_true(g_main_context_iteration(gctx, FALSE));
    g_assert_cmpint(n, ==, 1);
    g_assert_false(g_main_context_iteration(gctx, FALSE));
    g_assert_cmpint(n, ==, 1);

    qemu_bh_delete(bh);
    g_main_context_unref(gctx);
    aio_context_unref(ctx);
}

static void test_same_source_each_time(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GSource *a = aio_get_g_source(ctx);
    GSource *b = aio_get_g_source(ctx);
    g_assert_true(a == b);
    g_source_unref(a);
    g_source_unref(b);
    aio_context_unref(ctx);
}

static void notify_only(void *opaque)
{
    aio_notify(opaque);
}

static void test_notify_alone_is_not_work(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = attach(ctx);

    aio_notify(ctx);
    g_assert_false(g_main_context_iteration(gctx, FALSE));
    /* A BH that only notifies counts once (it ran), then nothing. */
    aio_bh_schedule_oneshot(ctx, notify_only, ctx);
    g_assert_true(g_main_context_iteration(gctx, FALSE));
    g_assert_false(g_main_context_iteration(gctx, FALSE));

    g_main_context_unref(gctx);
    aio_context_unref(ctx);
}

typedef struct {
    int n;
    int stop_after;
    QEMUBH *bh;
} Chain;

static void chain_cb(void *opaque)
{
    Chain *c = opaque;
    if (++c->n < c->stop_after) {
        qemu_bh_schedule(c->bh);
    }
}

static void test_drain_loop(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = attach(ctx);
    Chain c = { .stop_after = 10 };
    c.bh = aio_bh_new(ctx, chain_cb, &c);

    qemu_bh_schedule(c.bh);
    while (g_main_context_iteration(gctx, FALSE)) {
    }
    g_assert_cmpint(c.n, ==, 10);

    qemu_bh_delete(c.bh);
    g_main_context_unref(gctx);
    aio_context_unref(ctx);
}

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
} Remote;

static void *schedule_later(void *opaque)
{
    Remote *r = opaque;
    g_usleep(20 * 1000);
    qemu_bh_schedule(r->bh);
    return NULL;
}

static void test_cross_thread_wakes_blocking_iteration(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = attach(ctx);
    int n = 0;
    Remote r = { ctx, aio_bh_new(ctx, count_cb, &n) };
    pthread_t t;

    pthread_create(&t, NULL, schedule_later, &r);
    while (n == 0) {
        g_main_context_iteration(gctx, TRUE);
    }
    pthread_join(t, NULL);
    g_assert_cmpint(n, ==, 1);

    qemu_bh_delete(r.bh);
    g_main_context_unref(gctx);
    aio_context_unref(ctx);
}

typedef struct {
    int fds[2];
    int reads;
} PipeData;

static void pipe_read(void *opaque)
{
    PipeData *p = opaque;
    char buf[16];
    g_assert_cmpint(read(p->fds[0], buf, sizeof(buf)), >, 0);
    p->reads++;
}

static void test_fd_handler_from_glib(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = attach(ctx);
    PipeData p = { .reads = 0 };
    g_assert_cmpint(pipe(p.fds), ==, 0);

    aio_set_fd_handler(ctx, p.fds[0], pipe_read, NULL, NULL, NULL, &p);
    g_assert_false(g_main_context_iteration(gctx, FALSE));
    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    g_assert_true(g_main_context_iteration(gctx, TRUE));
    g_assert_cmpint(p.reads, ==, 1);
    g_assert_false(g_main_context_iteration(gctx, FALSE));

    /* Removal is picked up too. */
    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL, NULL, NULL);
    g_assert_cmpint(write(p.fds[1], "y", 1), ==, 1);
    g_assert_false(g_main_context_iteration(gctx, FALSE));
    g_assert_cmpint(p.reads, ==, 1);

    close(p.fds[0]);
    close(p.fds[1]);
    g_main_context_unref(gctx);
    aio_context_unref(ctx);
}

static void test_prepare_pending_dispatch(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    PipeData p = { .reads = 0 };
    int n = 0;
    g_assert_cmpint(pipe(p.fds), ==, 0);
    aio_set_fd_handler(ctx, p.fds[0], pipe_read, NULL, NULL, NULL, &p);

    g_assert_false(aio_prepare(ctx)); /* no io_poll handlers */
    g_assert_false(aio_pending(ctx));
    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    g_assert_true(aio_pending(ctx));
    aio_bh_schedule_oneshot(ctx, count_cb, &n);
    aio_dispatch(ctx);
    g_assert_cmpint(p.reads, ==, 1);
    g_assert_cmpint(n, ==, 1);
    g_assert_false(aio_pending(ctx));

    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL, NULL, NULL);
    close(p.fds[0]);
    close(p.fds[1]);
    aio_context_unref(ctx);
}

/* An io_poll hit found by aio_prepare (GLib's prepare) is dispatched by
 * the next loop iteration even when the context never busy-polls. */
typedef struct {
    bool work;       /* what io_poll finds */
    int poll_ready;  /* io_poll_ready calls */
} PollData;

static bool poll_finds_work(void *opaque)
{
    return ((PollData *)opaque)->work;
}

static void poll_ready_cb(void *opaque)
{
    PollData *d = opaque;
    d->work = false;
    d->poll_ready++;
}

static void test_prepare_hit_runs_in_next_poll(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    PollData d = { .work = true, .poll_ready = 0 };
    PipeData p = { .reads = 0 };
    g_assert_cmpint(pipe(p.fds), ==, 0);

    aio_context_set_poll_params(ctx, 0, 0, 0, &error_abort); /* no spinning */
    aio_set_fd_handler(ctx, p.fds[0], pipe_read, NULL, poll_finds_work, poll_ready_cb, &d);
    g_assert_true(aio_prepare(ctx));
    g_assert_cmpint(d.poll_ready, ==, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(d.poll_ready, ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(d.poll_ready, ==, 1);
    g_assert_cmpint(p.reads, ==, 0);

    aio_set_fd_handler(ctx, p.fds[0], NULL, NULL, NULL, NULL, NULL);
    close(p.fds[0]);
    close(p.fds[1]);
    aio_context_unref(ctx);
}

/* ---- the main loop (qemu_init_main_loop ran in main()) ---- */

static void test_main_context_on_default_glib_context(void)
{
    int n = 0;
    QEMUBH *bh = qemu_bh_new(count_cb, &n);

    qemu_bh_schedule(bh);
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpint(n, ==, 1);
    while (g_main_context_iteration(NULL, FALSE)) {
    }

    qemu_bh_schedule(bh);
    main_loop_wait(false);
    g_assert_cmpint(n, ==, 2);
    qemu_bh_delete(bh);
}

static int notified_flag; /* accessed with __atomic builtins */

static void *notify_later(void *opaque)
{
    (void)opaque;
    g_usleep(20 * 1000);
    __atomic_store_n(&notified_flag, 1, __ATOMIC_RELEASE);
    qemu_notify_event();
    return NULL;
}

static void test_qemu_notify_event_wakes_main_loop(void)
{
    pthread_t t;
    __atomic_store_n(&notified_flag, 0, __ATOMIC_RELAXED);
    pthread_create(&t, NULL, notify_later, NULL);
    while (!__atomic_load_n(&notified_flag, __ATOMIC_ACQUIRE)) {
        main_loop_wait(false); /* blocking */
    }
    pthread_join(t, NULL);
}

static void test_qemu_set_fd_handler(void)
{
    PipeData p = { .reads = 0 };
    g_assert_cmpint(pipe(p.fds), ==, 0);
    g_assert_nonnull(iohandler_get_aio_context());
    g_assert_true(iohandler_get_aio_context() != qemu_get_aio_context());

    qemu_set_fd_handler(p.fds[0], pipe_read, NULL, &p);
    g_assert_cmpint(write(p.fds[1], "x", 1), ==, 1);
    while (p.reads == 0) {
        main_loop_wait(false);
    }
    g_assert_cmpint(p.reads, ==, 1);
    qemu_set_fd_handler(p.fds[0], NULL, NULL, NULL);
    close(p.fds[0]);
    close(p.fds[1]);

    GSource *src = iohandler_get_g_source();
    g_assert_nonnull(src);
    g_source_unref(src);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/gsource/bh/runs", test_bh_runs_from_glib);
    g_test_add_func("/gsource/same-source", test_same_source_each_time);
    g_test_add_func("/gsource/notify-alone-is-not-work", test_notify_alone_is_not_work);
    g_test_add_func("/gsource/drain-loop", test_drain_loop);
    g_test_add_func("/gsource/cross-thread-wakeup", test_cross_thread_wakes_blocking_iteration);
    g_test_add_func("/gsource/fd-handler", test_fd_handler_from_glib);
    g_test_add_func("/gsource/prepare-pending-dispatch", test_prepare_pending_dispatch);
    g_test_add_func("/gsource/prepare-hit-runs-in-next-poll", test_prepare_hit_runs_in_next_poll);
    g_test_add_func("/main-loop/default-glib-context", test_main_context_on_default_glib_context);
    g_test_add_func("/main-loop/notify-event", test_qemu_notify_event_wakes_main_loop);
    g_test_add_func("/main-loop/set-fd-handler", test_qemu_set_fd_handler);
    return g_test_run();
}
