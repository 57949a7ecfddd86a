/*
 * io_uring submission for callers (QEMU 10.2's aio_add_sqe): a caller in a
 * context's thread has its SQE prepared by a callback; the completion is
 * copied into its CqeHandler and the handler's cb runs from aio_poll in
 * that thread.
 *
 * - ops: with AIOCTX_FDMON=io_uring the context's fdmon_ops->add_sqe is
 *   set from the start (aio_has_io_uring() true), and cqe.user_data is the
 *   handler's address;
 * - file: writes, then reads back, a temp file through the ring, one
 *   request and then 300 at once (more than the submission ring holds);
 * - gsource: a context run as a GSource wakes GLib's blocking iteration
 *   when a request completes (GLib watches the ring's fd);
 * - teardown: a read from an empty pipe still in flight when the last
 *   reference goes is cancelled: cb runs once with -ECANCELED before
 *   aio_context_unref returns, and the pipe's later data is still there
 *   (the kernel request is really gone);
 * - unavailable: with another fd monitor, aio_has_io_uring() is false and
 *   aio_add_sqe is the one-line abort, naming the monitor.
 *
 * The program forces AIOCTX_FDMON=io_uring itself (unless set), and skips
 * what needs io_uring where the kernel (or a sandbox) refuses it.
 */
#define _GNU_SOURCE
#include "aioctx.h"
#include "compat/block/aio.h"
#include "test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One request: what to do, and what came back. */
typedef struct {
    CqeHandler handler; /* first: cb gets its address */
    uint8_t opcode;
    int fd;
    void *buf;
    unsigned len;
    uint64_t off;
    int calls;
    int res;
    uint64_t user_data;
    uint32_t flags;
} Req;

static void prep_rw(struct io_uring_sqe *sqe, void *opaque)
{
    Req *r = opaque;

    /* The loop hands over a zeroed SQE. */
    for (size_t i = 0; i < sizeof(*sqe); i++) {
        g_assert_cmpint(((const unsigned char *)sqe)[i], ==, 0);
    }
    sqe->opcode = r->opcode;
    sqe->fd = r->fd;
    sqe->addr = (uint64_t)(uintptr_t)r->buf;
    sqe->len = r->len;
    sqe->off = r->off;
}

static void on_cqe(CqeHandler *h)
{
    Req *r = (Req *)h;

    r->calls++;
    r->res = h->cqe.res;
    r->user_data = h->cqe.user_data;
    r->flags = h->cqe.flags;
}

/* Submits `n` requests from inside the context (a BH: the current context
 * there is the one being polled), then polls until each has completed. */
typedef struct {
    Req *reqs;
    int n;
} Batch;

static void submit_batch(void *opaque)
{
    Batch *b = opaque;

    /* QEMU 10.2's form: the current context's (this one, being polled). */
    g_assert_true(aio_has_io_uring());
    for (int i = 0; i < b->n; i++) {
        b->reqs[i].handler.cb = on_cqe;
        aio_add_sqe(prep_rw, &b->reqs[i], &b->reqs[i].handler);
    }
}

static void run_batch(AioContext *ctx, Req *reqs, int n)
{
    Batch b = { reqs, n };
    int done;

    aio_bh_schedule_oneshot(ctx, submit_batch, &b);
    do {
        aio_poll(ctx, true);
        done = 0;
        for (int i = 0; i < n; i++) {
            g_assert_cmpint(reqs[i].calls, <=, 1);
            done += reqs[i].calls;
        }
    } while (done < n);
}

static bool have_io_uring(AioContext *ctx)
{
    if (strcmp(aioctx_context_fdmon_name(ctx), "io_uring") != 0) {
        g_test_skip("no io_uring here (the kernel or a sandbox refuses it)");
        return false;
    }
    return true;
}

static void test_ops(void)
{
    AioContext *ctx = new_context();

    if (have_io_uring(ctx)) {
        /* Before any fd is registered. */
        g_assert_true(aio_has_io_uring(ctx));
        g_assert_nonnull(((AioctxContextPublic *)ctx)->fdmon_ops->add_sqe);
    }
    aio_context_unref(ctx);
}

static int temp_file(void)
{
    char path[] = "/tmp/aioctx-sqe-XXXXXX";
    int fd = mkstemp(path);

    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    return fd;
}

static void test_file(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    int fd = temp_file();
    char out[4096], in[4096];

    if (!have_io_uring(ctx)) {
        aio_context_unref(ctx);
        close(fd);
        return;
    }
    watchdog_start(&wd, "io_uring file I/O", 30);
    for (size_t i = 0; i < sizeof(out); i++) {
        out[i] = (char)(i * 7 + 1);
    }
    Req w = { .opcode = IORING_OP_WRITE, .fd = fd, .buf = out, .len = sizeof(out) };
    run_batch(ctx, &w, 1);
    g_assert_cmpint(w.res, ==, (int)sizeof(out));
    g_assert_cmpuint(w.user_data, ==, (uint64_t)(uintptr_t)&w.handler);
    g_assert_cmpuint(w.flags & IORING_CQE_F_MORE, ==, 0);

    memset(in, 0, sizeof(in));
    Req r = { .opcode = IORING_OP_READ, .fd = fd, .buf = in, .len = sizeof(in) };
    run_batch(ctx, &r, 1);
    g_assert_cmpint(r.res, ==, (int)sizeof(in));
    g_assert_cmpmem(in, sizeof(in), out, sizeof(out));

    /* 300 one-byte reads at once: more than the submission ring holds. */
    enum { N = 300 };
    Req *many = g_new0(Req, N);
    char *bytes = g_malloc0(N);
    for (int i = 0; i < N; i++) {
        many[i] = (Req){ .opcode = IORING_OP_READ, .fd = fd, .buf = &bytes[i], .len = 1,
                         .off = (uint64_t)i };
    }
    run_batch(ctx, many, N);
    for (int i = 0; i < N; i++) {
        g_assert_cmpint(many[i].res, ==, 1);
        g_assert_cmpint(bytes[i], ==, out[i]);
    }
    g_free(bytes);
    g_free(many);

    /* No request left: a non-blocking poll has nothing to do. */
    g_assert_false(aio_poll(ctx, false));
    watchdog_stop(&wd);
    aio_context_unref(ctx);
    close(fd);
}

static void submit_one(void *opaque);

static void test_gsource(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    GMainContext *mctx;
    GSource *src;
    int p[2];
    char buf[8] = "";

    if (!have_io_uring(ctx)) {
        aio_context_unref(ctx);
        return;
    }
    watchdog_start(&wd, "io_uring completion through GLib", 30);
    mctx = g_main_context_new();
    src = aio_get_g_source(ctx);
    g_source_attach(src, mctx);
    g_source_unref(src);
    g_assert_cmpint(pipe(p), ==, 0);

    /* A read that completes only once the pipe has data. */
    Req r = { .opcode = IORING_OP_READ, .fd = p[0], .buf = buf, .len = 4 };
    aio_bh_schedule_oneshot(ctx, submit_one, &r);
    while (!g_main_context_iteration(mctx, FALSE)) {
    }
    g_main_context_iteration(mctx, FALSE); /* submitted */
    g_assert_cmpint(r.calls, ==, 0);
    g_assert_cmpint(write(p[1], "data", 4), ==, 4);
    /* Blocking: only the ring's fd can wake GLib here. */
    while (r.calls == 0) {
        g_main_context_iteration(mctx, TRUE);
    }
    g_assert_cmpint(r.res, ==, 4);
    g_assert_cmpmem(buf, 4, "data", 4);

    g_source_destroy(src);
    g_main_context_unref(mctx);
    aio_context_unref(ctx);
    close(p[0]);
    close(p[1]);
    watchdog_stop(&wd);
}

static void submit_one(void *opaque)
{
    Req *r = opaque;

    r->handler.cb = on_cqe;
    aio_add_sqe(prep_rw, r, &r->handler);
}

static void test_teardown(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    int p[2];
    char buf[8] = "unset!!";
    char got[8];

    if (!have_io_uring(ctx)) {
        aio_context_unref(ctx);
        return;
    }
    watchdog_start(&wd, "io_uring teardown", 30);
    g_assert_cmpint(pipe(p), ==, 0);
    Req r = { .opcode = IORING_OP_READ, .fd = p[0], .buf = buf, .len = sizeof(buf) };
    aio_bh_schedule_oneshot(ctx, submit_one, &r);
    aio_poll(ctx, false); /* runs the BH: queued */
    aio_poll(ctx, false); /* submitted: the read waits for data */
    g_assert_cmpint(r.calls, ==, 0);

    aio_context_unref(ctx);
    g_assert_cmpint(r.calls, ==, 1);
    g_assert_cmpint(r.res, ==, -ECANCELED);
    g_assert_cmpstr(buf, ==, "unset!!");

    /* The cancelled read took nothing that arrives later. */
    g_assert_cmpint(write(p[1], "payload", 8), ==, 8);
    g_assert_cmpint(read(p[0], got, sizeof(got)), ==, 8);
    g_assert_cmpstr(got, ==, "payload");
    g_assert_cmpstr(buf, ==, "unset!!");
    close(p[0]);
    close(p[1]);
    watchdog_stop(&wd);
}

/* With the epoll monitor: no submission, a one-line abort. */
static void test_unavailable(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = new_context();
        Req r = { .opcode = IORING_OP_NOP };

        g_assert_false(aio_has_io_uring(ctx));
        g_assert_false(aio_has_io_uring()); /* no current context here */
        aio_bh_schedule_oneshot(ctx, submit_one, &r);
        aio_poll(ctx, false);
        return;
    }
    if (strcmp(getenv("AIOCTX_FDMON"), "io_uring") != 0) {
        g_test_skip("AIOCTX_FDMON set by the caller");
        return;
    }
    setenv("AIOCTX_FDMON", "epoll", 1);
    trap_subprocess_expect(10, false, "*aioctx: aio_add_sqe: io_uring submission is not available*");
    setenv("AIOCTX_FDMON", "io_uring", 1);
}

int main(int argc, char **argv)
{
    /* Before the first context: read once per process. */
    setenv("AIOCTX_FDMON", "io_uring", 0);
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sqe/ops", test_ops);
    g_test_add_func("/sqe/file", test_file);
    g_test_add_func("/sqe/gsource", test_gsource);
    g_test_add_func("/sqe/teardown", test_teardown);
    g_test_add_func("/sqe/unavailable", test_unavailable);
    return g_test_run();
}
