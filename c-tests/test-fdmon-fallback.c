/*
 * A sandbox that lets io_uring_setup through but denies io_uring_enter
 * (seccomp, EPERM or ENOSYS) must not kill aio_poll: the context falls back
 * to epoll (or, if epoll is denied too, to poll), prints one warning line
 * per step, and keeps every fd handler registered before the failure; the
 * wait during which the failure happened still sees the events.
 *
 * Each case runs in a g_test_trap_subprocess child, which installs a raw
 * seccomp BPF filter (no libseccomp) on itself after the context has set up
 * its io_uring monitor. The program forces AIOCTX_FDMON=io_uring itself and
 * is skipped where io_uring (or seccomp filtering) is unavailable.
 */
#define _GNU_SOURCE
#include "aioctx.h"
#include "test-util.h"
#include "compat/block/aio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <glib.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__x86_64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif

/* The epoll wait syscalls of this architecture (-1: none). */
static const long epoll_wait_nrs[] = {
#ifdef __NR_epoll_wait
    __NR_epoll_wait,
#endif
    __NR_epoll_pwait, __NR_epoll_pwait2, -1,
};

static const long epoll_create_nrs[] = {
#ifdef __NR_epoll_create
    __NR_epoll_create,
#endif
    __NR_epoll_create1, -1,
};

/*
 * Makes the syscalls `nrs` (-1 terminated, at most 8) and, when not NULL,
 * `more` fail with `err` in this thread and the threads it creates from
 * now on. Returns false when the kernel refuses the filter.
 */
static bool deny_syscalls(const long *nrs, const long *more, int err)
{
#ifdef TEST_AUDIT_ARCH
    struct sock_filter f[64];
    size_t n = 0;
    const long *lists[2] = { nrs, more };

    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                          offsetof(struct seccomp_data, arch));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TEST_AUDIT_ARCH, 1, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                          offsetof(struct seccomp_data, nr));
    for (int l = 0; l < 2; l++) {
        for (const long *nr = lists[l]; nr && *nr >= 0; nr++) {
            g_assert_cmpuint(n + 3, <, G_N_ELEMENTS(f));
            f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (__u32)*nr, 0, 1);
            f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                                  SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA));
        }
    }
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

    struct sock_fprog prog = { .len = (unsigned short)n, .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return false;
    }
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
    (void)nrs;
    (void)more;
    (void)err;
    return false;
#endif
}

/* Whether this process may install a seccomp filter (tried in a child). */
static bool seccomp_available(void)
{
    static const long getppid_nr[] = { __NR_getppid, -1 };
    int status;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        _exit(deny_syscalls(getppid_nr, NULL, EPERM) && getppid() == -1 ? 0 : 1);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

typedef struct {
    int rfd;
    int calls;
} Reader;

static void on_readable(void *opaque)
{
    Reader *r = opaque;
    char buf[64];

    r->calls++;
    while (read(r->rfd, buf, sizeof(buf)) > 0) {
    }
}

static void make_pipe(int p[2])
{
    g_assert_cmpint(pipe2(p, O_NONBLOCK | O_CLOEXEC), ==, 0);
}

static void write_byte(int fd)
{
    char c = 'x';
    g_assert_cmpint(write(fd, &c, 1), ==, 1);
}

/* A context watching `r`'s pipe, set up (first poll done) with io_uring. */
static AioContext *io_uring_context(Reader *r, int p[2])
{
    AioContext *ctx = new_context();

    make_pipe(p);
    r->rfd = p[0];
    r->calls = 0;
    aio_set_fd_handler(ctx, p[0], on_readable, NULL, NULL, NULL, r);
    aio_poll(ctx, false);
    return ctx;
}

/* Whether this machine gives a context the io_uring monitor. */
static bool io_uring_available(void)
{
    Reader r;
    int p[2];
    AioContext *ctx = io_uring_context(&r, p);
    bool ok = strcmp(aioctx_context_fdmon_name(ctx), "io_uring") == 0;

    aio_set_fd_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    aio_context_unref(ctx);
    close(p[0]);
    close(p[1]);
    return ok;
}

typedef struct {
    int wfd;
    pthread_t thread;
} DelayedWrite;

static void *delayed_write_thread(void *opaque)
{
    DelayedWrite *d = opaque;

    usleep(50 * 1000);
    write_byte(d->wfd);
    return NULL;
}

/*
 * One case: denies `more` syscalls besides io_uring_enter with `err`, then
 * checks that a blocking poll started with nothing ready sees a write made
 * later by another thread, and that the context then works on `expected`.
 */
typedef struct {
    const char *name;
    int err;
    const long *more;
    const char *expected;
    const char *stderr_pattern;
    int warnings;
} Case;

static void run_case_child(const Case *c)
{
    static const long io_uring_enter_nr[] = { __NR_io_uring_enter, -1 };
    Watchdog wd;
    Reader r, r2;
    int p[2], p2[2];
    AioContext *ctx = io_uring_context(&r, p);
    DelayedWrite d = { .wfd = p[1] };

    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, "io_uring");
    g_assert_true(deny_syscalls(io_uring_enter_nr, c->more, c->err));
    watchdog_start(&wd, c->name, 10);

    /* The wait in which io_uring_enter fails must still see the write. */
    g_assert_cmpint(pthread_create(&d.thread, NULL, delayed_write_thread, &d), ==, 0);
    while (r.calls == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(pthread_join(d.thread, NULL), ==, 0);
    g_assert_cmpint(r.calls, ==, 1);
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, c->expected);

    /* Level-triggered and still registered on the new monitor. */
    write_byte(p[1]);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(r.calls, ==, 2);
    g_assert_false(aio_poll(ctx, false));

    /* A handler added after the fallback works, and so does removal. */
    make_pipe(p2);
    r2.rfd = p2[0];
    r2.calls = 0;
    aio_set_fd_handler(ctx, p2[0], on_readable, NULL, NULL, NULL, &r2);
    write_byte(p2[1]);
    while (r2.calls == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(r.calls, ==, 2);
    aio_set_fd_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    write_byte(p[1]);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(r.calls, ==, 2);

    /* aio_notify still wakes a blocking poll on the new monitor. */
    aio_notify(ctx);
    aio_poll(ctx, true);
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, c->expected);

    watchdog_stop(&wd);
    aio_set_fd_handler(ctx, p2[0], NULL, NULL, NULL, NULL, NULL);
    aio_context_unref(ctx);
    close(p[0]);
    close(p[1]);
    close(p2[0]);
    close(p2[1]);
    exit(0);
}

static void test_case(gconstpointer opaque)
{
    const Case *c = opaque;

    if (!io_uring_available()) {
        g_test_skip("io_uring is unavailable here");
        return;
    }
    if (g_test_subprocess()) {
        run_case_child(c);
        return;
    }
    if (!seccomp_available()) {
        g_test_skip("seccomp filters are unavailable here");
        return;
    }
    trap_subprocess_expect(20, true, c->stderr_pattern);
    /* Exactly the expected number of aioctx lines. */
    GString *more = g_string_new("*");
    for (int i = 0; i <= c->warnings; i++) {
        g_string_append(more, "aioctx:*");
    }
    g_test_trap_assert_stderr_unmatched(more->str);
    g_string_free(more, TRUE);
}

/* ---- callers' io_uring requests (aio_add_sqe) across the fallback ---- */

typedef struct {
    CqeHandler handler; /* first: cb gets its address */
    int fd;
    char buf[8];
    int calls;
    int res;
} PipeRead;

static void prep_read(struct io_uring_sqe *sqe, void *opaque)
{
    PipeRead *r = opaque;

    sqe->opcode = IORING_OP_READ;
    sqe->fd = r->fd;
    sqe->addr = (uint64_t)(uintptr_t)r->buf;
    sqe->len = sizeof(r->buf);
}

static void on_read_cqe(CqeHandler *h)
{
    PipeRead *r = (PipeRead *)h;

    r->calls++;
    r->res = h->cqe.res;
}

static void submit_read(void *opaque)
{
    PipeRead *r = opaque;

    r->handler.cb = on_read_cqe;
    aio_add_sqe(prep_read, r, &r->handler);
}

/*
 * io_uring_enter starts failing with one read in the kernel and one only
 * queued: the queued one completes with -EPERM, the one in the kernel
 * still completes with its data (from the old ring), and the context,
 * now on epoll, no longer offers aio_add_sqe.
 */
static void run_requests_child(void)
{
    static const long io_uring_enter_nr[] = { __NR_io_uring_enter, -1 };
    Watchdog wd;
    Reader r;
    int p[2], in_kernel[2], queued[2];
    AioContext *ctx = io_uring_context(&r, p);
    PipeRead a = { .fd = -1 }, b = { .fd = -1 };

    g_assert_cmpint(pipe(in_kernel), ==, 0);
    g_assert_cmpint(pipe(queued), ==, 0);
    a.fd = in_kernel[0];
    b.fd = queued[0];
    watchdog_start(&wd, "requests across the fallback", 10);
    aio_bh_schedule_oneshot(ctx, submit_read, &a);
    aio_poll(ctx, false); /* the BH queues a */
    aio_poll(ctx, false); /* a is submitted: waits for data */
    aio_bh_schedule_oneshot(ctx, submit_read, &b);
    aio_poll(ctx, false); /* the BH queues b */
    g_assert_true(aio_has_io_uring(ctx));

    g_assert_true(deny_syscalls(io_uring_enter_nr, NULL, EPERM));
    aio_poll(ctx, false); /* submitting b fails: epoll from now on */
    while (b.calls == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(b.res, ==, -EPERM);
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, "epoll");
    g_assert_false(aio_has_io_uring(ctx));

    g_assert_cmpint(a.calls, ==, 0);
    g_assert_cmpint(write(in_kernel[1], "data", 4), ==, 4);
    while (a.calls == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(a.res, ==, 4);
    g_assert_cmpmem(a.buf, 4, "data", 4);
    g_assert_cmpint(b.calls, ==, 1);

    watchdog_stop(&wd);
    aio_set_fd_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    aio_context_unref(ctx);
    exit(0);
}

static void test_requests(void)
{
    if (!io_uring_available()) {
        g_test_skip("io_uring is unavailable here");
        return;
    }
    if (g_test_subprocess()) {
        run_requests_child();
        return;
    }
    if (!seccomp_available()) {
        g_test_skip("seccomp filters are unavailable here");
        return;
    }
    trap_subprocess_expect(20, true,
                           "aioctx: aio_poll: warning: io_uring_enter failed (*); "
                           "falling back to epoll\n");
}

static const Case cases[] = {
    {
        "/fdmon-fallback/io_uring_enter-eperm-to-epoll",
        EPERM, NULL, "epoll",
        "aioctx: aio_poll: warning: io_uring_enter failed (*); falling back to epoll\n",
        1,
    },
    {
        "/fdmon-fallback/io_uring_enter-enosys-to-epoll",
        ENOSYS, NULL, "epoll",
        "aioctx: aio_poll: warning: io_uring_enter failed (*); falling back to epoll\n",
        1,
    },
    {
        /* epoll cannot even be opened: straight to poll, one line. */
        "/fdmon-fallback/epoll-create-denied-to-poll",
        EPERM, epoll_create_nrs, "poll",
        "aioctx: aio_poll: warning: io_uring_enter failed (*); falling back to poll\n",
        1,
    },
    {
        /* epoll opens but cannot wait: a second step, a second line. */
        "/fdmon-fallback/epoll-wait-denied-then-poll",
        EPERM, epoll_wait_nrs, "poll",
        "aioctx: aio_poll: warning: io_uring_enter failed (*); falling back to epoll\n"
        "aioctx: aio_poll: warning: epoll_wait failed (*); falling back to poll\n",
        2,
    },
};

int main(int argc, char **argv)
{
    /* Before any context exists: the variable is read once per process. */
    setenv("AIOCTX_FDMON", "io_uring", 1);
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_test_add_data_func(cases[i].name, &cases[i], test_case);
    }
    g_test_add_func("/fdmon-fallback/io_uring-requests-survive", test_requests);
    return g_test_run();
}
