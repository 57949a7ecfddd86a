/*
 * Loop metrics (aioctx_context_get_stats, an aioctx extension): each counter
 * moves by exactly what a scripted workload does (N BHs, M fd events, K
 * timers, notifications with and without a blocked poller, busy-poll hits
 * and misses), the size-versioned struct fills only what the caller knows,
 * any thread may read the counters, and misuse is one line + abort.
 */
#include "aioctx.h"
#include "test-util.h"

#include <glib.h>
#include <pthread.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static AioctxStats get_stats(AioContext *ctx)
{
    AioctxStats s = { .size = sizeof s };
    aioctx_context_get_stats(ctx, &s);
    g_assert_cmpuint(s.size, ==, sizeof s);
    return s;
}

/* Asserts that every counter of `b` equals that of `a` but the ones the
 * test checked itself (up to three field offsets; -1 for none). */
static void assert_others_unchanged(const AioctxStats *a, const AioctxStats *b, int o1, int o2,
                                    int o3)
{
    static const struct { const char *name; int off; } fields[] = {
#define F(x) { #x, (int)offsetof(AioctxStats, x) }
        F(iterations), F(bhs_run), F(fd_callbacks), F(notifier_callbacks), F(timers_fired),
        F(notify_writes), F(notify_elided), F(blocked_ns), F(poll_hits), F(poll_misses),
#undef F
    };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        int off = fields[i].off;
        if (off == o1 || off == o2 || off == o3) {
            continue;
        }
        uint64_t va, vb;
        memcpy(&va, (const char *)a + off, sizeof va);
        memcpy(&vb, (const char *)b + off, sizeof vb);
        if (va != vb) {
            g_error("counter %s moved from %" PRIu64 " to %" PRIu64, fields[i].name, va, vb);
        }
    }
}

#define OFF(x) ((int)offsetof(AioctxStats, x))

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_fresh_context_is_zero(void)
{
    AioContext *ctx = new_context();
    AioctxStats zero = { .size = sizeof zero };
    AioctxStats s = get_stats(ctx);

    g_assert_cmpint(memcmp(&s, &zero, sizeof s), ==, 0);
    aio_context_unref(ctx);
}

static void test_bhs_run(void)
{
    AioContext *ctx = new_context();
    int runs = 0;
    QEMUBH *bh[3];

    for (int i = 0; i < 3; i++) {
        bh[i] = aio_bh_new_full(ctx, count_cb, &runs, "stats-bh", NULL);
    }
    AioctxStats a = get_stats(ctx);
    for (int i = 0; i < 3; i++) {
        qemu_bh_schedule(bh[i]);
    }
    aio_bh_schedule_oneshot_full(ctx, count_cb, &runs, "stats-oneshot");
    g_assert_true(aio_poll(ctx, false));
    AioctxStats b = get_stats(ctx);
    g_assert_cmpint(runs, ==, 4);
    g_assert_cmpuint(b.bhs_run - a.bhs_run, ==, 4);
    g_assert_cmpuint(b.iterations - a.iterations, ==, 1);
    assert_others_unchanged(&a, &b, OFF(bhs_run), OFF(iterations), -1);

    /* An unscheduled BH is not counted; an empty poll is an iteration. */
    g_assert_false(aio_poll(ctx, false));
    AioctxStats c = get_stats(ctx);
    g_assert_cmpuint(c.bhs_run, ==, b.bhs_run);
    g_assert_cmpuint(c.iterations - b.iterations, ==, 1);
    for (int i = 0; i < 3; i++) {
        qemu_bh_delete(bh[i]);
    }
    aio_context_unref(ctx);
}

typedef struct {
    int fd;
    int reads;
} PipeReader;

static void pipe_read_cb(void *opaque)
{
    PipeReader *p = opaque;
    char c;
    g_assert_cmpint(read(p->fd, &c, 1), ==, 1);
    p->reads++;
}

static void test_fd_callbacks(void)
{
    AioContext *ctx = new_context();
    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    PipeReader p = { .fd = fds[0] };

    aio_set_fd_handler(ctx, fds[0], pipe_read_cb, NULL, NULL, NULL, &p);
    g_assert_false(aio_poll(ctx, false)); /* nothing ready yet */
    AioctxStats a = get_stats(ctx);
    for (int i = 0; i < 2; i++) {
        g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
        g_assert_true(aio_poll(ctx, false));
    }
    AioctxStats b = get_stats(ctx);
    g_assert_cmpint(p.reads, ==, 2);
    g_assert_cmpuint(b.fd_callbacks - a.fd_callbacks, ==, 2);
    g_assert_cmpuint(b.iterations - a.iterations, ==, 2);
    assert_others_unchanged(&a, &b, OFF(fd_callbacks), OFF(iterations), -1);

    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL);
    close(fds[0]);
    close(fds[1]);
    aio_context_unref(ctx);
}

/* Blocking polls of a context watching an fd. Once a few in a row found
 * their fd ready at once, the poll and epoll monitors look at the fds
 * without waiting first, so such polls count no blocked time (no clock is
 * read): 10 polls in a row with none must come within the first 200 (all of
 * them, io_uring, which times its own sleeps, only a little). A poll that
 * waits for a timer while the fd stays quiet is timed. */
static void test_blocked_time_with_fds(void)
{
    AioContext *ctx = new_context();
    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    PipeReader p = { .fd = fds[0] };
    QEMUTimer t;
    int fired = 0;
    const char *forced = getenv("AIOCTX_FDMON");
    bool io_uring = forced && strcmp(forced, "io_uring") == 0;

    aio_set_fd_handler(ctx, fds[0], pipe_read_cb, NULL, NULL, NULL, &p);
    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_NS, count_cb, &fired);
    AioctxStats a = get_stats(ctx), run = a, b;
    int polls = 0, untimed_run = 0;
    while (untimed_run < 10 && polls < 200) {
        g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
        g_assert_true(aio_poll(ctx, true));
        polls++;
        b = get_stats(ctx);
        untimed_run = b.blocked_ns == run.blocked_ns ? untimed_run + 1 : 0;
        run = b;
    }
    g_assert_cmpint(p.reads, ==, polls);
    g_assert_cmpuint(b.fd_callbacks - a.fd_callbacks, ==, polls);
    if (io_uring) {
        g_assert_cmpuint(b.blocked_ns - a.blocked_ns, <, 10 * 1000000);
    } else {
        g_assert_cmpint(untimed_run, ==, 10);
    }

    int64_t before = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod(&t, before + 20000000);
    while (!fired) {
        aio_poll(ctx, true);
    }
    int64_t took = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - before;
    AioctxStats c = get_stats(ctx);
    g_assert_cmpint(p.reads, ==, polls);
    g_assert_cmpuint(c.blocked_ns - b.blocked_ns, >=, 10000000);
    g_assert_cmpuint(c.blocked_ns - b.blocked_ns, <=, (uint64_t)took + 200000);

    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL);
    close(fds[0]);
    close(fds[1]);
    aio_context_unref(ctx);
}

static int notifier_reads;

static void notifier_read_cb(EventNotifier *e)
{
    g_assert_cmpint(event_notifier_test_and_clear(e), ==, 1);
    notifier_reads++;
}

static void test_notifier_callbacks(void)
{
    AioContext *ctx = new_context();
    EventNotifier e;
    g_assert_cmpint(event_notifier_init(&e, 0), ==, 0);

    notifier_reads = 0;
    aio_set_event_notifier(ctx, &e, notifier_read_cb, NULL, NULL);
    g_assert_false(aio_poll(ctx, false));
    AioctxStats a = get_stats(ctx);
    g_assert_cmpint(event_notifier_set(&e), ==, 0);
    g_assert_true(aio_poll(ctx, false));
    AioctxStats b = get_stats(ctx);
    g_assert_cmpint(notifier_reads, ==, 1);
    g_assert_cmpuint(b.notifier_callbacks - a.notifier_callbacks, ==, 1);
    assert_others_unchanged(&a, &b, OFF(notifier_callbacks), OFF(iterations), -1);

    aio_set_event_notifier(ctx, &e, NULL, NULL, NULL);
    event_notifier_cleanup(&e);
    aio_context_unref(ctx);
}

static void test_timers_fired(void)
{
    AioContext *ctx = new_context();
    QEMUTimer t[3];
    int fired = 0;

    for (int i = 0; i < 3; i++) {
        aio_timer_init(ctx, &t[i], QEMU_CLOCK_REALTIME, SCALE_NS, count_cb, &fired);
    }
    AioctxStats a = get_stats(ctx);
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod(&t[0], now - 1);
    timer_mod(&t[1], now - 1);
    timer_mod(&t[2], now + 3600 * 1000000000LL); /* armed, never due here */
    g_assert_true(aio_poll(ctx, false));
    AioctxStats b = get_stats(ctx);
    g_assert_cmpint(fired, ==, 2);
    g_assert_cmpuint(b.timers_fired - a.timers_fired, ==, 2);
    /* timer_mod from a thread the context is not bound to notifies it. */
    assert_others_unchanged(&a, &b, OFF(timers_fired), OFF(iterations), OFF(notify_elided));

    /* A blocking poll that waits for a timer: fired, and blocked time:
     * most of the 20 ms the timer was away (a preemption before the wait
     * may eat into it, not by half), and no more than the wall time the
     * polls took (the clock's calibration must not be off). */
    int64_t before = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod(&t[0], before + 20000000);
    while (fired < 3) {
        aio_poll(ctx, true);
    }
    int64_t took = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - before;
    AioctxStats c = get_stats(ctx);
    g_assert_cmpuint(c.timers_fired - b.timers_fired, ==, 1);
    g_assert_cmpuint(c.blocked_ns - b.blocked_ns, >=, 10000000);
    g_assert_cmpuint(c.blocked_ns - b.blocked_ns, <=, (uint64_t)took + 200000);
    timer_del(&t[2]);
    aio_context_unref(ctx);
}

static void test_notify_elided_without_poller(void)
{
    AioContext *ctx = new_context();
    AioctxStats a = get_stats(ctx);

    aio_notify(ctx);
    aio_notify(ctx); /* already notified */
    AioctxStats b = get_stats(ctx);
    g_assert_cmpuint(b.notify_elided - a.notify_elided, ==, 2);
    g_assert_cmpuint(b.notify_writes, ==, a.notify_writes);
    assert_others_unchanged(&a, &b, OFF(notify_elided), -1, -1);

    /* The pending notification ends the next blocking poll at once. */
    g_assert_false(aio_poll(ctx, true));
    AioctxStats c = get_stats(ctx);
    g_assert_cmpuint(c.blocked_ns, ==, b.blocked_ns);
    aio_context_unref(ctx);
}

typedef struct {
    AioContext *ctx;
    pthread_mutex_t lock;
    bool stop;
} Notifier_;

static void *notify_thread(void *opaque)
{
    Notifier_ *n = opaque;
    for (;;) {
        pthread_mutex_lock(&n->lock);
        bool stop = n->stop;
        pthread_mutex_unlock(&n->lock);
        if (stop) {
            return NULL;
        }
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
        aio_notify(n->ctx);
    }
}

static void test_notify_wakes_blocked_poll(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    Notifier_ n = { .ctx = ctx, .lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t th;

    watchdog_start(&wd, "notify wakes a blocked poll", 30);
    AioctxStats a = get_stats(ctx);
    g_assert_cmpint(pthread_create(&th, NULL, notify_thread, &n), ==, 0);
    /*
     * Each blocking poll either sleeps until a notification writes the
     * eventfd, or returns at once for one that came before it armed
     * (elided). Polls until the first write woke one.
     */
    AioctxStats b;
    int polls = 0;
    do {
        g_assert_false(aio_poll(ctx, true));
        polls++;
        b = get_stats(ctx);
    } while (b.notify_writes == a.notify_writes);
    pthread_mutex_lock(&n.lock);
    n.stop = true;
    pthread_mutex_unlock(&n.lock);
    pthread_join(th, NULL);
    watchdog_stop(&wd);

    g_assert_cmpuint(b.notify_writes - a.notify_writes, >=, 1);
    g_assert_cmpuint(b.blocked_ns, >, a.blocked_ns);
    g_assert_cmpuint(b.iterations - a.iterations, ==, (guint64)polls);
    /* Every notification is either a write or elided. */
    AioctxStats c = get_stats(ctx);
    g_assert_cmpuint(c.notify_writes + c.notify_elided, >=, (guint64)polls);
    aio_poll(ctx, false);
    aio_context_unref(ctx);
}

static bool poll_finds_work;
static int poll_ready_calls;

static bool notifier_poll_cb(void *opaque)
{
    (void)opaque;
    return poll_finds_work;
}

static void notifier_poll_ready_cb(EventNotifier *e)
{
    (void)e;
    poll_ready_calls++;
}

static void test_busy_poll_hits_and_misses(void)
{
    AioContext *ctx = new_context();
    EventNotifier e;
    QEMUTimer t;
    int fired = 0;

    g_assert_cmpint(event_notifier_init(&e, 0), ==, 0);
    aio_set_event_notifier(ctx, &e, notifier_read_cb, notifier_poll_cb, notifier_poll_ready_cb);
    aio_context_set_poll_params(ctx, 50 * 1000000LL, 2, 2, &error_abort);
    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_NS, count_cb, &fired);
    poll_finds_work = false;
    poll_ready_calls = 0;

    /*
     * The window starts at 0: a blocking poll blocks (no busy poll) and
     * then opens the window. (timer_mod notifies the context, which is
     * bound to no thread; the non-blocking poll accepts that, so that the
     * notification is not what a busy poll finds.) The timers are 20 ms
     * away, not less: the steps below need them not due yet when the
     * blocking poll starts, even on a loaded machine.
     */
    AioctxStats a = get_stats(ctx);
    g_assert_cmpint(a.poll_window_ns, ==, 0);
    timer_mod(&t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 20000000);
    aio_poll(ctx, false);
    while (fired < 1) {
        aio_poll(ctx, true);
    }
    AioctxStats b = get_stats(ctx);
    g_assert_cmpuint(b.poll_hits, ==, a.poll_hits);
    g_assert_cmpint(b.poll_window_ns, >, 0);
    g_assert_cmpint(b.poll_window_ns, ==, aioctx_context_get_poll_ns(ctx));

    /*
     * A window that runs out: a miss, then the poll blocks for the timer.
     * On a loaded machine the spin's sched_yield calls can outlast the
     * timer, which is then due before the poll would block: retry a few
     * times (a loop that never counts blocked time still fails).
     */
    AioctxStats c;
    for (int attempt = 0; attempt < 5; attempt++) {
        int target = fired + 1;
        timer_mod(&t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 20000000);
        aio_poll(ctx, false);
        while (fired < target) {
            aio_poll(ctx, true);
        }
        c = get_stats(ctx);
        if (c.blocked_ns > b.blocked_ns) {
            break;
        }
    }
    g_assert_cmpuint(c.poll_misses - b.poll_misses, >=, 1);
    g_assert_cmpuint(c.poll_hits, ==, b.poll_hits);
    g_assert_cmpuint(c.blocked_ns, >, b.blocked_ns);

    /* io_poll finds work: one hit, io_poll_ready runs, nothing blocks. */
    poll_finds_work = true;
    g_assert_true(aio_poll(ctx, true));
    AioctxStats d = get_stats(ctx);
    g_assert_cmpuint(d.poll_hits - c.poll_hits, ==, 1);
    g_assert_cmpuint(d.poll_misses, ==, c.poll_misses);
    g_assert_cmpint(poll_ready_calls, ==, 1);
    g_assert_cmpuint(d.notifier_callbacks - c.notifier_callbacks, ==, 1);
    g_assert_cmpuint(d.blocked_ns, ==, c.blocked_ns);

    poll_finds_work = false;
    aio_set_event_notifier(ctx, &e, NULL, NULL, NULL);
    event_notifier_cleanup(&e);
    aio_context_unref(ctx);
}

/* A caller built against a shorter struct gets only what it knows. */
static void test_short_struct_is_filled_partly(void)
{
    AioContext *ctx = new_context();
    int runs = 0;
    unsigned char buf[sizeof(AioctxStats)];
    AioctxStats *s = (AioctxStats *)(void *)buf;
    size_t known = offsetof(AioctxStats, fd_callbacks);

    aio_bh_schedule_oneshot_full(ctx, count_cb, &runs, "stats-short");
    aio_poll(ctx, false);
    memset(buf, 0xa5, sizeof buf);
    s->size = known;
    aioctx_context_get_stats(ctx, s);
    g_assert_cmpuint(s->size, ==, known);
    g_assert_cmpuint(s->iterations, ==, 1);
    g_assert_cmpuint(s->bhs_run, ==, 1);
    for (size_t i = known; i < sizeof buf; i++) {
        g_assert_cmpuint(buf[i], ==, 0xa5);
    }

    /* A newer, longer struct: filled up to what the library knows. */
    unsigned char big[sizeof(AioctxStats) + 16];
    AioctxStats *l = (AioctxStats *)(void *)big;
    memset(big, 0x5a, sizeof big);
    l->size = sizeof big;
    aioctx_context_get_stats(ctx, l);
    g_assert_cmpuint(l->size, ==, sizeof(AioctxStats));
    g_assert_cmpuint(big[sizeof(AioctxStats)], ==, 0x5a);
    aio_context_unref(ctx);
}

/* Any thread may read the counters while the home thread polls. */
typedef struct {
    AioContext *ctx;
    volatile bool stop;
    uint64_t reads;
} Reader;

static void *reader_thread(void *opaque)
{
    Reader *r = opaque;
    uint64_t last = 0;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        AioctxStats s = get_stats(r->ctx);
        g_assert_cmpuint(s.bhs_run, >=, last);
        last = s.bhs_run;
        r->reads++;
    }
    return NULL;
}

static void test_read_from_another_thread(void)
{
    AioContext *ctx = new_context();
    Reader r = { .ctx = ctx };
    pthread_t th;
    int runs = 0;

    g_assert_cmpint(pthread_create(&th, NULL, reader_thread, &r), ==, 0);
    for (int i = 0; i < 2000; i++) {
        aio_bh_schedule_oneshot_full(ctx, count_cb, &runs, "stats-reader");
        aio_poll(ctx, false);
    }
    __atomic_store_n(&r.stop, true, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    g_assert_cmpint(runs, ==, 2000);
    g_assert_cmpuint(get_stats(ctx).bhs_run, ==, 2000);
    aio_context_unref(ctx);
}

typedef enum {
    DEATH_NULL_CTX,
    DEATH_NULL_OUT,
    DEATH_SIZE_ZERO,
} DeathCase;

static void run_death_case(int which)
{
    AioctxStats s = { .size = sizeof s };
    switch ((DeathCase)which) {
    case DEATH_NULL_CTX:
        aioctx_context_get_stats(NULL, &s);
        break;
    case DEATH_NULL_OUT:
        aioctx_context_get_stats(new_context(), NULL);
        break;
    case DEATH_SIZE_ZERO:
        s.size = 0;
        aioctx_context_get_stats(new_context(), &s);
        break;
    }
}

static const DeathTest death_tests[] = {
    { "/aio/stats/death/null-ctx", DEATH_NULL_CTX,
      "*aioctx: aioctx_context_get_stats: AioContext is NULL*" },
    { "/aio/stats/death/null-out", DEATH_NULL_OUT,
      "*aioctx: aioctx_context_get_stats: out (AioctxStats *) is NULL*" },
    { "/aio/stats/death/size-zero", DEATH_SIZE_ZERO,
      "*aioctx: aioctx_context_get_stats: out->size is 0; set it to sizeof(AioctxStats)*" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/aio/stats/fresh-context-is-zero", test_fresh_context_is_zero);
    g_test_add_func("/aio/stats/bhs-run", test_bhs_run);
    g_test_add_func("/aio/stats/fd-callbacks", test_fd_callbacks);
    g_test_add_func("/aio/stats/blocked-time-with-fds", test_blocked_time_with_fds);
    g_test_add_func("/aio/stats/notifier-callbacks", test_notifier_callbacks);
    g_test_add_func("/aio/stats/timers-fired", test_timers_fired);
    g_test_add_func("/aio/stats/notify-elided-without-poller",
                    test_notify_elided_without_poller);
    g_test_add_func("/aio/stats/notify-wakes-blocked-poll", test_notify_wakes_blocked_poll);
    g_test_add_func("/aio/stats/busy-poll-hits-and-misses", test_busy_poll_hits_and_misses);
    g_test_add_func("/aio/stats/short-struct-is-filled-partly",
                    test_short_struct_is_filled_partly);
    g_test_add_func("/aio/stats/read-from-another-thread", test_read_from_another_thread);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
    return g_test_run();
}
