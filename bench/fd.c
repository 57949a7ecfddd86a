/*
 * fd handler benchmark: 1000 registered eventfds, one made ready per
 * iteration, wake + dispatch time per event, for each fd monitoring backend,
 * against raw epoll_wait on an identical set (1000 other eventfds) in the
 * same run.
 *
 *   fd/same_thread/<backend>   write one random eventfd, then
 *                                   aio_poll(ctx, true) runs its handler
 *                                   (which reads it): ns per event. Peer:
 *                                   write + epoll_wait + read.
 *   fd/cross_thread/<backend>  another thread writes one random
 *                                   eventfd while the loop sleeps in
 *                                   aio_poll; ns from the write to the
 *                                   handler running (wake-up latency).
 *                                   Peer: a thread blocked in epoll_wait.
 *
 * The backend is chosen with AIOCTX_FDMON, which the library reads once per
 * process: each backend is measured in a forked child (the parent never
 * creates a context), which sends its figures back through a pipe.
 * "default" is the library's own choice (epoll above 64 fds).
 *
 * Output: `name  aioctx_value  peer  peer_value  ratio  unit` (ratio =
 * aioctx / peer); lines starting with `#` are comments. Each figure is the
 * median of 5 repetitions (min/max in a `#` line). same_thread is measured
 * in thread CPU time (the loop never sleeps; on a shared machine wall time
 * would count other processes), cross_thread in wall time.
 *
 * Build: cc -O2 -Iinclude bench/fd.c target/release/libaioctx.a
 *   -lgobject-2.0 -lglib-2.0 -lpthread -ldl -lm -lgcc_s -lutil -lrt
 * With AIOCTX_BENCH_CALLGRIND=1: one repetition, small counts, same-thread
 * only, default backend only, no peer.
 */
#define _GNU_SOURCE
#include "aioctx.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NFDS 1000
#define MAX_REPS 5

static int reps = MAX_REPS;
static int same_iters = 100000;
static int cross_iters = 2000;
static int callgrind;

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static int64_t wall_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n, double *min, double *max)
{
    double s[MAX_REPS];
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    *min = s[0];
    *max = s[n - 1];
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Cheap xorshift: the random fd index must not cost more than it measures. */
static uint32_t rng_state = 2463534242u;
static inline uint32_t rnd(void)
{
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

/* The context's fds, and an identical set for the raw epoll peer (separate,
 * so that neither sees the other's events: an armed io_uring poll would
 * complete on the peer's writes). */
static int efds[NFDS], rfds[NFDS];

static void open_set(int *fds)
{
    for (int i = 0; i < NFDS; i++) {
        fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fds[i] < 0) {
            die("eventfd");
        }
    }
}

static void open_fds(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * NFDS + 64 && rl.rlim_max >= 2 * NFDS + 64) {
        rl.rlim_cur = 2 * NFDS + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    open_set(efds);
    open_set(rfds);
}

static inline void kick(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) != sizeof(one)) {
        die("write");
    }
}

static inline void consume(int fd)
{
    uint64_t v;
    if (read(fd, &v, sizeof(v)) != sizeof(v)) {
        die("read");
    }
}

/* ---- aioctx ---- */

static _Atomic int64_t handled_at;
static atomic_int handled;

static void on_read(void *opaque)
{
    uint64_t v;
    /* Tolerate a spurious report (nothing to read), as QEMU handlers do. */
    if (read((int)(intptr_t)opaque, &v, sizeof(v)) != sizeof(v)) {
        return;
    }
    atomic_store_explicit(&handled_at, wall_ns(), memory_order_relaxed);
    atomic_fetch_add_explicit(&handled, 1, memory_order_release);
}

static AioContext *ctx;

static void register_all(void)
{
    ctx = aio_context_new(&error_abort);
    for (int i = 0; i < NFDS; i++) {
        aio_set_fd_handler(ctx, efds[i], on_read, NULL, NULL, NULL, (void *)(intptr_t)efds[i]);
    }
    aio_poll(ctx, false);
}

static double aio_same_thread(int iters)
{
    atomic_store(&handled, 0);
    int64_t t0 = cpu_ns();
    for (int i = 0; i < iters; i++) {
        kick(efds[rnd() % NFDS]);
        while (atomic_load_explicit(&handled, memory_order_relaxed) <= i) {
            aio_poll(ctx, true);
        }
    }
    int64_t t1 = cpu_ns();
    if (atomic_load(&handled) < iters) {
        fprintf(stderr, "bench/fd: %d events handled, expected %d\n", atomic_load(&handled), iters);
        exit(1);
    }
    atomic_store(&handled, 0);
    return (double)(t1 - t0) / iters;
}

/* Cross-thread: a writer thread; the loop thread (here, the caller) sleeps. */
typedef struct {
    int iters;
    const int *fds;
    int (*count)(void);
    double total_ns;
    atomic_bool stop;
} Writer;

static int aio_count(void)
{
    return atomic_load_explicit(&handled, memory_order_acquire);
}

static void *writer_thread(void *opaque)
{
    Writer *w = opaque;
    double total = 0;
    for (int i = 0; i < w->iters; i++) {
        /* Let the loop thread go back to sleep first. */
        struct timespec ts = { 0, 20000 };
        nanosleep(&ts, NULL);
        int64_t t0 = wall_ns();
        kick(w->fds[rnd() % NFDS]);
        while (w->count() <= i) {
            /* spin until handled */
        }
        total += atomic_load_explicit(&handled_at, memory_order_relaxed) - t0;
    }
    w->total_ns = total;
    atomic_store(&w->stop, true);
    return NULL;
}

static double aio_cross_thread(int iters)
{
    atomic_store(&handled, 0);
    Writer w = { .iters = iters, .fds = efds, .count = aio_count };
    pthread_t th;
    pthread_create(&th, NULL, writer_thread, &w);
    while (!atomic_load(&w.stop)) {
        aio_poll(ctx, true);
        /* the writer ends with a handled event: no lost wakeup here */
        if (atomic_load(&handled) >= iters) {
            break;
        }
    }
    pthread_join(th, NULL);
    atomic_store(&handled, 0);
    return w.total_ns / iters;
}

/* ---- raw epoll ---- */

static int ep;
static atomic_int raw_handled;

static void epoll_setup(void)
{
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        die("epoll_create1");
    }
    for (int i = 0; i < NFDS; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = rfds[i] };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, rfds[i], &ev) < 0) {
            die("epoll_ctl");
        }
    }
}

static inline void epoll_once(void)
{
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, -1);
    for (int k = 0; k < n; k++) {
        consume(evs[k].data.fd);
        atomic_store_explicit(&handled_at, wall_ns(), memory_order_relaxed);
        atomic_fetch_add_explicit(&raw_handled, 1, memory_order_release);
    }
}

static double raw_same_thread(int iters)
{
    int64_t t0 = cpu_ns();
    for (int i = 0; i < iters; i++) {
        kick(rfds[rnd() % NFDS]);
        epoll_once();
    }
    int64_t t1 = cpu_ns();
    atomic_store(&raw_handled, 0);
    return (double)(t1 - t0) / iters;
}

static int raw_count(void)
{
    return atomic_load_explicit(&raw_handled, memory_order_acquire);
}

static double raw_cross_thread(int iters)
{
    atomic_store(&raw_handled, 0);
    Writer w = { .iters = iters, .fds = rfds, .count = raw_count };
    pthread_t th;
    pthread_create(&th, NULL, writer_thread, &w);
    while (atomic_load(&raw_handled) < iters) {
        epoll_once();
    }
    pthread_join(th, NULL);
    atomic_store(&raw_handled, 0);
    return w.total_ns / iters;
}

/* ---- one backend, in a child process ---- */

typedef struct {
    char backend[16];    /* what the context reports */
    double same[MAX_REPS], raw_same[MAX_REPS];
    double cross[MAX_REPS], raw_cross[MAX_REPS];
} Result;

static void measure(Result *r)
{
    open_fds();
    register_all();
    snprintf(r->backend, sizeof(r->backend), "%s", aioctx_context_fdmon_name(ctx));
    if (!callgrind) {
        epoll_setup();
    }
    /* Warm-up. */
    aio_same_thread(same_iters / 20 + 1);
    if (!callgrind) {
        raw_same_thread(same_iters / 20);
    }
    /* poll(2) on 1000 fds is ~100x slower per event: fewer iterations. */
    int scale = strcmp(r->backend, "poll") == 0 ? 20 : 1;
    for (int i = 0; i < reps; i++) {
        r->same[i] = aio_same_thread(same_iters / scale);
        if (callgrind) {
            continue;
        }
        r->raw_same[i] = raw_same_thread(same_iters / scale);
        r->cross[i] = aio_cross_thread(cross_iters / scale);
        r->raw_cross[i] = raw_cross_thread(cross_iters / scale);
    }
}

static bool run_child(const char *backend, Result *r)
{
    int p[2];
    if (pipe(p) < 0) {
        die("pipe");
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (pid == 0) {
        close(p[0]);
        if (backend) {
            setenv("AIOCTX_FDMON", backend, 1);
        } else {
            unsetenv("AIOCTX_FDMON");
        }
        Result res;
        memset(&res, 0, sizeof(res));
        measure(&res);
        if (write(p[1], &res, sizeof(res)) != sizeof(res)) {
            _exit(1);
        }
        _exit(0);
    }
    close(p[1]);
    size_t got = 0;
    while (got < sizeof(*r)) {
        ssize_t n = read(p[0], (char *)r + got, sizeof(*r) - got);
        if (n <= 0) {
            break;
        }
        got += n;
    }
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return got == sizeof(*r) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void report(const char *name, double *ours, const char *peer, double *theirs,
                   const char *unit)
{
    double omin, omax, pmin, pmax;
    double m = median(ours, reps, &omin, &omax);
    if (theirs) {
        double pm = median(theirs, reps, &pmin, &pmax);
        printf("%-34s %10.1f  %-10s %10.1f  %7.3f  %s\n", name, m, peer, pm, m / pm, unit);
        printf("#   %s: aioctx min %.1f max %.1f; %s min %.1f max %.1f\n", name, omin, omax, peer,
               pmin, pmax);
    } else {
        printf("%-34s %10.1f  %-10s %10s  %7s  %s\n", name, m, "-", "-", "-", unit);
        printf("#   %s: aioctx min %.1f max %.1f\n", name, omin, omax);
    }
}

int main(void)
{
    callgrind = getenv("AIOCTX_BENCH_CALLGRIND") != NULL;
    if (callgrind) {
        reps = 1;
        same_iters = 2000;
    }
    const char *backends[] = { NULL, "poll", "epoll", "io_uring" };
    const char *labels[] = { "default", "poll", "epoll", "io_uring" };
    int nb = callgrind ? 1 : 4;

    printf("# aioctx fd benchmark: %d eventfds registered, one random one ready per event;\n", NFDS);
    printf("# median of %d runs; ratio = aioctx / peer (raw epoll_wait on another 1000 eventfds)\n", reps);
    printf("# same_thread: write + aio_poll + handler read, thread CPU ns per event\n");
    printf("# cross_thread: another thread writes, wall ns until the handler runs\n");
    printf("# each backend runs in a forked child with AIOCTX_FDMON set\n");
    printf("# %-32s %10s  %-10s %10s  %7s  %s\n", "name", "aioctx", "peer", "peer_value", "ratio",
           "unit");
    for (int b = 0; b < nb; b++) {
        Result r;
        if (!run_child(backends[b], &r)) {
            printf("# %s: the child failed\n", labels[b]);
            continue;
        }
        if (backends[b] && strcmp(r.backend, backends[b]) != 0) {
            printf("# %s: forced backend not available, the context uses %s\n", labels[b],
                   r.backend);
        } else if (!backends[b]) {
            printf("# default: the context uses %s\n", r.backend);
        }
        char name[64];
        snprintf(name, sizeof(name), "fd/same_thread/%s", labels[b]);
        report(name, r.same, "epoll_wait", callgrind ? NULL : r.raw_same, "ns/event");
        if (!callgrind) {
            snprintf(name, sizeof(name), "fd/cross_thread/%s", labels[b]);
            report(name, r.cross, "epoll_wait", r.raw_cross, "ns/event");
        }
        fflush(stdout);
    }
    return 0;
}
