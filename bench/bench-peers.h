/*
 * bench/bench-peers.h: peer implementations (the non-aioctx side of a
 * comparison) used by more than one benchmark program in bench/
 * (header-only, static inline, like bench-util.h).
 *
 *   raw eventfd ping-pong  BenchEfd, bench_efd_*: a round trip between two
 *                          threads doing blocking write/read on two
 *                          eventfds (aio_wait_oneshot, async_pingpong, bh;
 *                          fd_1000 uses bench_efd_write).
 *   libuv idle loop        BenchUvIdle, bench_uv_idle_*: uv_run(loop,
 *                          UV_RUN_DEFAULT) with a uv_idle handle whose
 *                          callback counts and stops the handle after n
 *                          (bh_reschedule, loop_count).
 *   GLib idle source       BenchGIdle, bench_g_idle_*: an idle source whose
 *                          callback counts and returns G_SOURCE_CONTINUE
 *                          (bh_reschedule, loop_count).
 *   floors of a BH         bench_indirect_call_body: cb(opaque) through a
 *                          function pointer the compiler cannot see through;
 *                          BenchFq, bench_fq_*: the least a thread-safe
 *                          bottom half does per run (bh_reschedule).
 *
 * The libuv / GLib parts exist only when AIOCTX_HAVE_LIBUV /
 * AIOCTX_HAVE_GLIB (see bench-util.h) say the library is available.
 */
#ifndef AIOCTX_BENCH_PEERS_H
#define AIOCTX_BENCH_PEERS_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench-util.h"

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif
#if AIOCTX_HAVE_GLIB
#include <glib.h>
#endif

/* ---- raw eventfd ping-pong --------------------------------------------- */

typedef struct {
    int ab, ba; /* eventfds A -> B and B -> A */
    uint64_t n; /* round trips of the current run */
} BenchEfd;

static inline void bench_efd_open(BenchEfd *e)
{
    e->ab = eventfd(0, EFD_CLOEXEC);
    e->ba = eventfd(0, EFD_CLOEXEC);
    if (e->ab < 0 || e->ba < 0) {
        bench_die("eventfd: %s", strerror(errno));
    }
}

static inline void bench_efd_close(BenchEfd *e)
{
    close(e->ab);
    close(e->ba);
}

static inline void bench_efd_write(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof(one)) != sizeof(one)) {
        if (errno != EINTR) {
            bench_die("eventfd write: %s", strerror(errno));
        }
    }
}

static inline void bench_efd_read(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof(v)) != sizeof(v)) {
        if (errno != EINTR) {
            bench_die("eventfd read: %s", strerror(errno));
        }
    }
}

/* Thread B: answers e->n pings. */
static inline void *bench_efd_thread(void *arg)
{
    BenchEfd *e = arg;
    for (uint64_t i = 0; i < e->n; i++) {
        bench_efd_read(e->ab);
        bench_efd_write(e->ba);
    }
    return NULL;
}

/* bench_fn: n round trips, thread B started and joined inside. */
static inline void bench_efd_body(void *arg, uint64_t n)
{
    BenchEfd *e = arg;
    pthread_t t;
    e->n = n;
    if (pthread_create(&t, NULL, bench_efd_thread, e)) {
        bench_die("pthread_create failed");
    }
    for (uint64_t i = 0; i < n; i++) {
        bench_efd_write(e->ab);
        bench_efd_read(e->ba);
    }
    pthread_join(t, NULL);
}

/* ---- libuv idle loop ---------------------------------------------------- */

#if AIOCTX_HAVE_LIBUV
typedef struct {
    uv_loop_t loop;
    uv_idle_t idle;
    uint64_t count, stop_at;
} BenchUvIdle;

/* A loop with one (stopped) idle handle whose data is s. */
static inline void bench_uv_idle_init(BenchUvIdle *s)
{
    uv_loop_init(&s->loop);
    uv_idle_init(&s->loop, &s->idle);
    s->idle.data = s;
}

static inline void bench_uv_idle_fini(BenchUvIdle *s)
{
    uv_close((uv_handle_t *)&s->idle, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
}

static inline void bench_uv_idle_stop_cb(uv_idle_t *h)
{
    BenchUvIdle *s = h->data;
    if (++s->count == s->stop_at) {
        uv_idle_stop(h);
    }
}

/* bench_fn: n idle callbacks (= n loop iterations) in uv_run(UV_RUN_DEFAULT). */
static inline void bench_uv_idle_body(void *arg, uint64_t n)
{
    BenchUvIdle *s = arg;
    s->count = 0;
    s->stop_at = n;
    uv_idle_start(&s->idle, bench_uv_idle_stop_cb);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (s->count != n) {
        bench_die("uv_idle ran %llu of %llu", (unsigned long long)s->count,
                  (unsigned long long)n);
    }
}
#endif

/* ---- GLib idle source --------------------------------------------------- */

#if AIOCTX_HAVE_GLIB
typedef struct {
    GMainContext *ctx;
    uint64_t count;
} BenchGIdle;

static inline gboolean bench_g_idle_cb(gpointer data)
{
    ((BenchGIdle *)data)->count++;
    return G_SOURCE_CONTINUE;
}

/* Attaches a new idle source running bench_g_idle_cb(s) to s->ctx; the
 * caller owns the returned reference. */
static inline GSource *bench_g_idle_attach(BenchGIdle *s)
{
    GSource *src = g_idle_source_new();
    g_source_set_callback(src, bench_g_idle_cb, s, NULL);
    g_source_attach(src, s->ctx);
    return src;
}
#endif

/* ---- floors of a bottom half ------------------------------------------- */

/* n calls cb(opaque) through a function pointer the compiler cannot see
 * through (a volatile load each time): the floor of any deferred call. */
typedef struct {
    void (*volatile cb)(void *);
    void *opaque;
} BenchIndirect;

static inline void bench_indirect_call_body(void *arg, uint64_t n)
{
    BenchIndirect *s = arg;
    for (uint64_t i = 0; i < n; i++) {
        void (*f)(void *) = s->cb;
        f(s->opaque);
    }
}

/*
 * flag_queue_call: what a bottom half that other threads may schedule
 * needs at least, per run of a callback that reschedules itself:
 *   schedule  one atomic RMW on the node's flag (so that of several
 *             concurrent schedulers exactly one links it) and, on the
 *             0 -> 1 edge, a push onto an intrusive queue;
 *   dispatch  pop, clear the flag (a release store: the flag has no other
 *             bit a concurrent RMW could set), call through the pointer.
 * The queue itself is the same-thread case (plain head/tail pointers): a
 * schedule from another thread would add a CAS and a wakeup check.
 */
typedef struct BenchFqNode {
    struct BenchFqNode *next;
    unsigned flag;
    void (*volatile cb)(void *);
    void *opaque;
} BenchFqNode;

typedef struct {
    BenchFqNode *head, *tail;
} BenchFq;

static inline void bench_fq_schedule(BenchFq *q, BenchFqNode *node)
{
    if (__atomic_fetch_or(&node->flag, 1, __ATOMIC_ACQ_REL) == 0) {
        node->next = NULL;
        if (q->tail) {
            q->tail->next = node;
        } else {
            q->head = node;
        }
        q->tail = node;
    }
}

/* One loop iteration: runs what is queued now (callbacks may schedule
 * again; those run in the next iteration). */
static inline void bench_fq_run(BenchFq *q)
{
    BenchFqNode *node = q->head;
    q->head = q->tail = NULL;
    while (node) {
        BenchFqNode *next = node->next;
        void (*f)(void *) = node->cb;
        __atomic_store_n(&node->flag, 0, __ATOMIC_RELEASE);
        f(node->opaque);
        node = next;
    }
}

#endif /* AIOCTX_BENCH_PEERS_H */
