/*
 * bench/fd_1000.c: one ready fd among 1000 registered.
 *
 * 1000 eventfds are registered for reading; each iteration makes one of
 * them (pseudo-random) readable with write(), runs one loop iteration,
 * and the handler read()s it back. ns per iteration, syscalls included.
 *
 *   fd_1000/<backend>  aioctx: aio_set_fd_handler on the 1000 fds, then
 *                      write + aio_poll(ctx, true) per iteration, for
 *                      each fd-monitoring backend (poll, epoll, io_uring).
 *                      The backend is chosen by the AIOCTX_FDMON
 *                      environment variable, read once per process, so
 *                      each backend runs in a child process (this program
 *                      re-executed with AIOCTX_FDMON set); the line names
 *                      the backend the context reports using.
 *   peers              raw_epoll: epoll_wait(-1) on an epoll set of the
 *                        same kind of 1000 fds, reading the ready ones
 *                        (the floor; target fd_1000 <= 1.5x this);
 *                      uv_poll: 1000 uv_poll_t (UV_READABLE) and
 *                        uv_run(UV_RUN_ONCE);
 *                      raw_poll (poll backend only): poll(2) on a
 *                        prebuilt array of the 1000 fds, scanning revents.
 * poll(2) scans every fd on every call, so the poll backend is expected to
 * be linear in the number of fds; the target is for epoll and io_uring.
 * Each child measures aioctx and the peers interleaved (each on its own
 * set of 1000 eventfds), so every line's ratio comes from one process and
 * one stretch of time.
 *
 *   fd_1000/<backend>/paired  (epoll and io_uring) the ratio to
 *                      raw_epoll once more, as the median of 201 rounds
 *                      of ~2 ms in which aioctx and raw_epoll run back to
 *                      back (bench_paired): this host's speed changes from
 *                      second to second (raw epoll alone moves 560-970 ns
 *                      between runs), which the per-round ratio cancels;
 *                      the `#` line gives its quartiles.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aioctx.h"
#include "bench-util.h"
#include "bench-peers.h"

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif

#define NFDS 1000

typedef struct {
    int fd[NFDS];
} FdSet;

static FdSet aio_set, epoll_set, uv_set; /* poll(2) reuses epoll_set */
static uint64_t handled;

static unsigned next_index(void)
{
    return (unsigned)(bench_rand() % NFDS);
}

static void make_fds(FdSet *s)
{
    for (int i = 0; i < NFDS; i++) {
        s->fd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->fd[i] < 0) {
            bench_die("eventfd #%d: %s", i, strerror(errno));
        }
    }
}

static void fd_read(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        bench_die("eventfd read: %s", strerror(errno));
    }
    handled++;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = rl.rlim_max < 8192 ? rl.rlim_max : 8192;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void check_handled(uint64_t n, const char *what)
{
    if (handled != n) {
        bench_die("%s: %llu events handled, expected %llu", what,
                  (unsigned long long)handled, (unsigned long long)n);
    }
}

/* ---- aioctx ------------------------------------------------------------- */

static void aio_handler(void *opaque)
{
    fd_read(*(int *)opaque);
}

static void aio_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    handled = 0;
    for (uint64_t i = 0; i < n; i++) {
        bench_efd_write(aio_set.fd[next_index()]);
        aio_poll(ctx, true);
    }
    check_handled(n, "aioctx");
}

/* ---- raw epoll ---------------------------------------------------------- */

static void epoll_body(void *arg, uint64_t n)
{
    int ep = *(int *)arg;
    struct epoll_event ev[64];
    handled = 0;
    for (uint64_t i = 0; i < n; i++) {
        int k;
        bench_efd_write(epoll_set.fd[next_index()]);
        k = epoll_wait(ep, ev, 64, -1);
        for (int j = 0; j < k; j++) {
            fd_read(epoll_set.fd[ev[j].data.u32]);
        }
    }
    check_handled(n, "raw epoll");
}

/* ---- raw poll(2), the floor of the poll backend ------------------------- */

static struct pollfd pfds[NFDS];

static void poll_body(void *arg, uint64_t n)
{
    (void)arg;
    handled = 0;
    for (uint64_t i = 0; i < n; i++) {
        int k;
        bench_efd_write(epoll_set.fd[next_index()]);
        k = poll(pfds, NFDS, -1);
        for (int j = 0; j < NFDS && k > 0; j++) {
            if (pfds[j].revents) {
                fd_read(pfds[j].fd);
                k--;
            }
        }
    }
    check_handled(n, "raw poll");
}

/* ---- libuv -------------------------------------------------------------- */

#if AIOCTX_HAVE_LIBUV
static uv_poll_t polls[NFDS];

static void uv_ready(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    fd_read(*(int *)h->data);
}

static void uv_body(void *arg, uint64_t n)
{
    uv_loop_t *loop = arg;
    handled = 0;
    for (uint64_t i = 0; i < n; i++) {
        bench_efd_write(uv_set.fd[next_index()]);
        uv_run(loop, UV_RUN_ONCE);
    }
    check_handled(n, "uv_poll");
}
#endif

/* The raw_epoll ratio again, as the median of PAIRED_ROUNDS paired rounds
 * of ~2 ms (bench_paired): the row `fd_1000/<backend>/paired`, whose ratio
 * column is that median (values: each side's median ns per iteration). */
#define PAIRED_ROUNDS 201

static void paired_row(const char *backend, AioContext *ctx, int *ep)
{
    double q25, q75, aio_ns, raw_ns;
    char name[64], b1[32], b2[32], b3[32], b4[32];
    uint64_t n = bench_calibrate(aio_body, ctx, 2e6, 0);
    bench_stat q = bench_paired(aio_body, ctx, epoll_body, ep, n, PAIRED_ROUNDS, &q25, &q75,
                                &aio_ns, &raw_ns);

    snprintf(name, sizeof(name), "fd_1000/%s/paired", backend);
    bench_row(name, aio_ns, "raw_epoll", raw_ns, q.median, "ns/iter");
    printf("#   %s: per-round ratio quartiles %s %s, min %s max %s (%d rounds of %llu "
           "iterations each)\n",
           name, bench_fmt_ratio(b1, sizeof b1, q25), bench_fmt_ratio(b2, sizeof b2, q75),
           bench_fmt_ratio(b3, sizeof b3, q.min), bench_fmt_ratio(b4, sizeof b4, q.max), q.n,
           (unsigned long long)n);
    fflush(stdout);
}

/* A child: aioctx with the backend AIOCTX_FDMON forces, and the peers. */
static int child_main(void)
{
    AioContext *ctx = aio_context_new(NULL);
    bench_fn *fns[4];
    void *args[4];
    const char *names[4];
    bench_stat st[4];
    int k = 0, ep;
    const char *backend, *forced = getenv("AIOCTX_FDMON");
    char name[64];
#if AIOCTX_HAVE_LIBUV
    static uv_loop_t loop;
#endif

    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    make_fds(&aio_set);
    for (int i = 0; i < NFDS; i++) {
        aio_set_fd_handler(ctx, aio_set.fd[i], aio_handler, NULL, NULL, NULL, &aio_set.fd[i]);
    }
    aio_poll(ctx, false); /* the backend is set up by the first poll */
    backend = aioctx_context_fdmon_name(ctx);
    if (forced && strcmp(forced, backend) != 0) {
        bench_note("AIOCTX_FDMON=%s: backend not available here, the context uses %s", forced,
                   backend);
    }
    fns[k] = aio_body; args[k] = ctx; names[k++] = "aioctx";

    make_fds(&epoll_set);
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < NFDS; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, epoll_set.fd[i], &ev) != 0) {
            bench_die("epoll_ctl: %s", strerror(errno));
        }
        pfds[i].fd = epoll_set.fd[i];
        pfds[i].events = POLLIN;
    }
    fns[k] = epoll_body; args[k] = &ep; names[k++] = "raw_epoll";
#if AIOCTX_HAVE_LIBUV
    make_fds(&uv_set);
    uv_loop_init(&loop);
    for (int i = 0; i < NFDS; i++) {
        uv_poll_init(&loop, &polls[i], uv_set.fd[i]);
        polls[i].data = &uv_set.fd[i];
        uv_poll_start(&polls[i], UV_READABLE, uv_ready);
    }
    fns[k] = uv_body; args[k] = &loop; names[k++] = "uv_poll";
#endif
    if (strcmp(backend, "poll") == 0) {
        fns[k] = poll_body; args[k] = NULL; names[k++] = "raw_poll";
    }

    bench_compare(k, fns, args, bench_target_ns(120), 2000, st);
    snprintf(name, sizeof(name), "fd_1000/%s", backend);
    for (int i = 1; i < k; i++) {
        bench_line(name, st[0], names[i], st[i], "ns/iter");
    }
    if (!bench_callgrind() && strcmp(backend, "poll") != 0) {
        paired_row(backend, ctx, &ep); /* the targets are for epoll and io_uring */
    }
    return 0; /* the fds and handlers go with the process */
}

/* Runs this program with AIOCTX_FDMON=backend, its output going to ours. */
static bool run_child(const char *self, const char *backend)
{
    int status;
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        char *argv[] = { (char *)self, "--child", NULL };
        setenv("AIOCTX_FDMON", backend, 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
    static const char *backends[] = { "poll", "epoll", "io_uring" };

    raise_nofile();
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        bench_prog = "fd_1000 (child)";
        setvbuf(stdout, NULL, _IOLBF, 0);
        return child_main();
    }
    bench_start("fd_1000", "1000 eventfds registered, 1 ready per iteration");
    bench_note("ns per iteration: write() + one loop iteration + the handler's read()");
    bench_note("one child process per backend (AIOCTX_FDMON), peers measured in each child");
    if (bench_callgrind()) {
        bench_note("callgrind: the default backend only, in this process");
        return child_main();
    }
    for (size_t b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
        if (!run_child(argv[0], backends[b])) {
            bench_note("AIOCTX_FDMON=%s: the child failed", backends[b]);
        }
    }
    return 0;
}
