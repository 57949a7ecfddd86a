/*
 * Busy-polling benchmark: cross-thread ping-pong between two contexts on
 * two threads.
 *
 *   pingpong/notifier/poll_on   each side's handler "sends" to the other
 *                               side: it bumps the peer's queue counter and
 *                               sets the peer's event notifier only if the
 *                               peer has notifications enabled (virtio
 *                               style: io_poll_begin disables them,
 *                               io_poll_end re-enables them, io_poll checks
 *                               the counter). Busy polling on, 32 us window.
 *   pingpong/notifier/poll_off  the same with polling off (max_ns 0): every
 *                               message is an eventfd write and a wake-up.
 *   pingpong/bh/poll_on         each side's BH schedules the other side's
 *                               BH (qemu_bh_schedule across threads), 32 us
 *                               window. Peer: the same with polling off.
 * Peer for the notifier lines: raw spin ping-pong (two threads spinning on
 * atomics), the floor for any cross-thread handoff.
 *
 * Output: `name  aioctx_value  peer  peer_value  ratio  unit` (ratio =
 * aioctx / peer), ns per round trip, wall time; lines starting with `#` are
 * comments. Median of 5 runs (min/max in a `#` line). Both threads spin
 * while polling, so on a loaded machine with few CPUs the numbers are noisy.
 *
 * Build: cc -O2 -Iinclude bench/poll.c target/release/libaioctx.a
 *   -lgobject-2.0 -lglib-2.0 -lpthread -ldl -lm -lgcc_s -lutil -lrt
 * With AIOCTX_BENCH_CALLGRIND=1: nothing to do (cross-thread only).
 */
#include "aioctx.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 5
#define WINDOW_NS 32000

static int reps = MAX_REPS;

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n, double *min, double *max)
{
    double s[MAX_REPS];
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    *min = s[0];
    *max = s[n - 1];
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- raw spin ping-pong ---- */

typedef struct {
    _Alignas(64) atomic_long ball; /* odd: at B's side, even: at A's */
    long n;
} Spin;

static void *spin_b(void *opaque)
{
    Spin *s = opaque;
    for (long i = 0; i < s->n; i++) {
        while (atomic_load_explicit(&s->ball, memory_order_acquire) != 2 * i + 1) {
        }
        atomic_store_explicit(&s->ball, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static double raw_spin(long n)
{
    Spin s = { .n = n };
    pthread_t th;
    pthread_create(&th, NULL, spin_b, &s);
    int64_t t0 = wall_ns();
    for (long i = 0; i < n; i++) {
        atomic_store_explicit(&s.ball, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&s.ball, memory_order_acquire) != 2 * i + 2) {
        }
    }
    int64_t t1 = wall_ns();
    pthread_join(th, NULL);
    return (double)(t1 - t0) / n;
}

/* ---- event notifier ping-pong, virtio style ---- */

typedef struct Side Side;
struct Side {
    EventNotifier e; /* first: handlers get &e */
    AioContext *ctx;
    Side *peer;
    _Alignas(64) atomic_long queued;   /* messages sent to this side */
    long seen;                          /* messages consumed (own thread) */
    atomic_bool notify;                 /* peer must set the notifier */
    long received, n;
    bool initiator;
    bool polling;
    pthread_barrier_t *ready;
};

static void send_to(Side *to)
{
    atomic_fetch_add_explicit(&to->queued, 1, memory_order_seq_cst);
    /* Dekker with io_poll_end: the receiver enables notifications, then
     * re-checks the queue (the library polls once more after io_poll_end). */
    if (atomic_load_explicit(&to->notify, memory_order_seq_cst)) {
        event_notifier_set(&to->e);
    }
}

static void consume(Side *s)
{
    long q = atomic_load_explicit(&s->queued, memory_order_acquire);
    while (s->seen < q) {
        s->seen++;
        s->received++;
        if (s->received < s->n || !s->initiator) {
            send_to(s->peer);
        }
    }
}

static void side_read(EventNotifier *e)
{
    Side *s = (Side *)e;
    event_notifier_test_and_clear(e);
    consume(s);
}

static bool side_poll(void *opaque)
{
    Side *s = opaque;
    return atomic_load_explicit(&s->queued, memory_order_acquire) != s->seen;
}

static void side_poll_ready(EventNotifier *e)
{
    consume((Side *)e);
}

static void side_begin(EventNotifier *e)
{
    atomic_store_explicit(&((Side *)e)->notify, false, memory_order_seq_cst);
}

static void side_end(EventNotifier *e)
{
    atomic_store_explicit(&((Side *)e)->notify, true, memory_order_seq_cst);
}

static atomic_bool start_flag;

static void *side_thread(void *opaque)
{
    Side *s = opaque;
    s->ctx = aio_context_new(&error_abort);
    qemu_set_current_aio_context(s->ctx);
    aio_context_set_poll_params(s->ctx, s->polling ? WINDOW_NS : 0, 2, 2, &error_abort);
    aio_set_event_notifier(s->ctx, &s->e, side_read, side_poll, side_poll_ready);
    aio_set_event_notifier_poll(s->ctx, &s->e, side_begin, side_end);
    aio_poll(s->ctx, false);
    pthread_barrier_wait(s->ready);
    if (s->initiator) {
        while (!atomic_load(&start_flag)) {
        }
        send_to(s->peer);
    }
    while (s->received < s->n) {
        aio_poll(s->ctx, true);
    }
    return NULL;
}

static double notifier_run(long n, bool polling)
{
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 3);
    static Side a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    Side *sides[2] = { &a, &b };
    for (int i = 0; i < 2; i++) {
        Side *s = sides[i];
        event_notifier_init(&s->e, 0);
        atomic_store(&s->notify, true);
        s->peer = sides[1 - i];
        s->n = n;
        s->polling = polling;
        s->ready = &ready;
    }
    a.initiator = true;
    atomic_store(&start_flag, false);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, side_thread, &a);
    pthread_create(&tb, NULL, side_thread, &b);
    pthread_barrier_wait(&ready);
    int64_t t0 = wall_ns();
    atomic_store(&start_flag, true);
    pthread_join(ta, NULL);
    int64_t t1 = wall_ns();
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&ready);
    for (int i = 0; i < 2; i++) {
        aio_set_event_notifier(sides[i]->ctx, &sides[i]->e, NULL, NULL, NULL);
        event_notifier_cleanup(&sides[i]->e);
        aio_context_unref(sides[i]->ctx);
    }
    return (double)(t1 - t0) / n;
}

/* ---- BH ping-pong ---- */

typedef struct BSide BSide;
struct BSide {
    AioContext *ctx;
    QEMUBH *bh;
    BSide *peer;
    _Atomic(QEMUBH *) peer_bh;
    atomic_long received;
    long n;
    bool initiator, polling;
    pthread_barrier_t *ready;
};

static void bside_bh(void *opaque)
{
    BSide *s = opaque;
    long r = atomic_fetch_add_explicit(&s->received, 1, memory_order_relaxed) + 1;
    if (r < s->n || !s->initiator) {
        qemu_bh_schedule(s->peer->bh);
    }
}

static void *bside_thread(void *opaque)
{
    BSide *s = opaque;
    s->ctx = aio_context_new(&error_abort);
    qemu_set_current_aio_context(s->ctx);
    aio_context_set_poll_params(s->ctx, s->polling ? WINDOW_NS : 0, 2, 2, &error_abort);
    s->bh = aio_bh_new(s->ctx, bside_bh, s);
    aio_poll(s->ctx, false);
    pthread_barrier_wait(s->ready); /* both BHs exist */
    if (s->initiator) {
        while (!atomic_load(&start_flag)) {
        }
        qemu_bh_schedule(s->peer->bh);
    }
    while (atomic_load_explicit(&s->received, memory_order_relaxed) < s->n) {
        aio_poll(s->ctx, true);
    }
    return NULL;
}

static double bh_run(long n, bool polling)
{
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, 3);
    static BSide a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.peer = &b;
    b.peer = &a;
    a.n = b.n = n;
    a.polling = b.polling = polling;
    a.ready = b.ready = &ready;
    a.initiator = true;
    atomic_store(&start_flag, false);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, bside_thread, &a);
    pthread_create(&tb, NULL, bside_thread, &b);
    pthread_barrier_wait(&ready);
    int64_t t0 = wall_ns();
    atomic_store(&start_flag, true);
    pthread_join(ta, NULL);
    int64_t t1 = wall_ns();
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&ready);
    qemu_bh_delete(a.bh);
    qemu_bh_delete(b.bh);
    aio_context_unref(a.ctx);
    aio_context_unref(b.ctx);
    return (double)(t1 - t0) / n;
}

/* ---- driver ---- */

static void report(const char *name, const double *ours, const char *peer, const double *theirs)
{
    double omin, omax, pmin, pmax;
    double m = median(ours, reps, &omin, &omax);
    double pm = median(theirs, reps, &pmin, &pmax);
    printf("%-30s %10.1f  %-12s %10.1f  %7.3f  %s\n", name, m, peer, pm, m / pm, "ns/roundtrip");
    printf("#   %s: aioctx min %.1f max %.1f; %s min %.1f max %.1f\n", name, omin, omax, peer, pmin,
           pmax);
    fflush(stdout);
}

int main(void)
{
    if (getenv("AIOCTX_BENCH_CALLGRIND")) {
        printf("# bench/poll: cross-thread only; nothing to measure under callgrind\n");
        return 0;
    }
    const long n_fast = 100000, n_slow = 5000;
    double spin[MAX_REPS], on[MAX_REPS], off[MAX_REPS], bh_on[MAX_REPS], bh_off[MAX_REPS];

    /* Warm-up. */
    raw_spin(n_fast / 10);
    notifier_run(n_fast / 10, true);

    for (int i = 0; i < reps; i++) {
        spin[i] = raw_spin(n_fast);
        on[i] = notifier_run(n_fast, true);
        off[i] = notifier_run(n_slow, false);
        bh_on[i] = bh_run(n_fast, true);
        bh_off[i] = bh_run(n_slow, false);
    }
    printf("# aioctx busy-poll benchmark: cross-thread ping-pong between two contexts;\n");
    printf("# median of %d runs, wall ns per round trip; ratio = aioctx / peer\n", reps);
    printf("# poll_on: aio_context_set_poll_params(32 us, 2, 2); poll_off: max_ns 0\n");
    printf("# raw_spin: two threads spinning on one atomic (no library)\n");
    printf("# %-28s %10s  %-12s %10s  %7s  %s\n", "name", "aioctx", "peer", "peer_value", "ratio",
           "unit");
    report("pingpong/notifier/poll_on", on, "raw_spin", spin);
    report("pingpong/notifier/poll_off", off, "raw_spin", spin);
    report("pingpong/bh/poll_on", bh_on, "raw_spin", spin);
    report("pingpong/bh/poll_off", bh_off, "bh_poll_on", bh_on);
    return 0;
}
