/*
 * Adaptive busy polling (aio_context_set_poll_params): the window grows and
 * shrinks (observed through aioctx_context_get_poll_ns and the io_poll call
 * counts), polling is off while a handler lacks io_poll and when max_ns is
 * 0, io_poll_ready runs when io_poll finds work, io_poll_begin/io_poll_end
 * bracket every polling phase, negative parameters are errors, and a
 * cross-thread qemu_bh_schedule / aio_notify / io_poll event is seen by a
 * busy-polling context while it spins.
 *
 * The events that end a blocking aio_poll are timers (deterministic
 * delays) or another thread. Runs once per fd monitoring backend
 * (AIOCTX_FDMON); when the variable is set, the tests check that the
 * backend in use is the forced one.
 */
#include "aioctx.h"

#include <glib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define US 1000LL
#define MS 1000000LL
#define WATCHDOG() alarm(60)
/* grow factor that jumps from the first window (4 us) straight to max_ns */
#define HUGE_GROW (1LL << 30)

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { ns / 1000000000, ns % 1000000000 };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int64_t now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
}

static void assert_backend(AioContext *ctx)
{
    const char *forced = getenv("AIOCTX_FDMON");
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, forced && *forced ? forced : "poll");
}

/* ---- a notifier with busy-poll callbacks that counts and logs them ---- */

typedef struct {
    EventNotifier e; /* first: the callbacks get &e */
    AioContext *ctx;
    atomic_int polls, readies, reads, begins, ends;
    atomic_bool work;      /* what io_poll reports */
    atomic_bool notify_on; /* outside a polling phase: senders must also set e */
    atomic_int work_by_read; /* work found by io_read (the notifier was set) */
    bool in_phase;         /* between io_poll_begin and io_poll_end */
    int polls_outside;     /* io_poll calls outside a phase (but the last re-check) */
    GString *log;          /* 'b', 'p' (once per run of polls), 'e' */
    /* Times of the first io_poll call since first_poll_ns was zeroed, and
     * of the last one. */
    _Atomic int64_t first_poll_ns, last_poll_ns;
} Poller;

static bool p_poll(void *opaque)
{
    Poller *p = opaque;
    int64_t t = now_ns();
    atomic_fetch_add(&p->polls, 1);
    if (atomic_load(&p->first_poll_ns) == 0) {
        atomic_store(&p->first_poll_ns, t);
    }
    atomic_store(&p->last_poll_ns, t);
    if (p->log && (p->log->len == 0 || p->log->str[p->log->len - 1] != 'p')) {
        g_string_append_c(p->log, 'p');
    }
    return atomic_load(&p->work);
}

static void p_ready(EventNotifier *e)
{
    Poller *p = (Poller *)e;
    atomic_fetch_add(&p->readies, 1);
    atomic_store(&p->work, false);
}

static void p_read(EventNotifier *e)
{
    Poller *p = (Poller *)e;
    atomic_fetch_add(&p->reads, 1);
    event_notifier_test_and_clear(e);
    if (atomic_exchange(&p->work, false)) {
        atomic_fetch_add(&p->work_by_read, 1);
    }
}

static void p_begin(EventNotifier *e)
{
    Poller *p = (Poller *)e;
    g_assert_false(p->in_phase);
    p->in_phase = true;
    atomic_store(&p->notify_on, false);
    atomic_fetch_add(&p->begins, 1);
    if (p->log) {
        g_string_append_c(p->log, 'b');
    }
}

static void p_end(EventNotifier *e)
{
    Poller *p = (Poller *)e;
    g_assert_true(p->in_phase);
    p->in_phase = false;
    atomic_store(&p->notify_on, true);
    atomic_fetch_add(&p->ends, 1);
    if (p->log) {
        g_string_append_c(p->log, 'e');
    }
}

static void poller_init(Poller *p, AioContext *ctx, bool with_begin_end)
{
    memset(p, 0, sizeof(*p));
    p->ctx = ctx;
    atomic_store(&p->notify_on, true);
    g_assert_cmpint(event_notifier_init(&p->e, 0), ==, 0);
    aio_set_event_notifier(ctx, &p->e, p_read, p_poll, p_ready);
    if (with_begin_end) {
        aio_set_event_notifier_poll(ctx, &p->e, p_begin, p_end);
    }
}

static void poller_destroy(Poller *p)
{
    aio_set_event_notifier(p->ctx, &p->e, NULL, NULL, NULL);
    event_notifier_cleanup(&p->e);
}

/* ---- timer-driven blocking polls ---- */

typedef struct {
    QEMUTimer *t;
    int fired;
} Tick;

static void tick_cb(void *opaque)
{
    ((Tick *)opaque)->fired++;
}

static void tick_init(Tick *k, AioContext *ctx)
{
    k->fired = 0;
    k->t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, tick_cb, k);
}

/* One blocking aio_poll ended by a timer `delay_ns` from now. */
static void poll_for_tick(AioContext *ctx, Tick *k, int64_t delay_ns)
{
    for (int tries = 0;; tries++) {
        g_assert_cmpint(tries, <, 50);
        int before = k->fired;
        timer_mod_ns(k->t, now_ns() + delay_ns);
        /* Arming notifies the (unbound) context, as in QEMU: consume that
         * wakeup without blocking (a non-blocking poll does not adapt the
         * window), so that the blocking poll below ends with the timer. */
        aio_poll(ctx, false);
        if (k->fired != before) {
            continue; /* slow machine (sanitizers): the timer already fired */
        }
        g_assert_true(aio_poll(ctx, true));
        g_assert_cmpint(k->fired, ==, before + 1);
        return;
    }
}

/* Sets the parameters and consumes the wakeup that setting them causes, so
 * that the next blocking poll measures a real event. */
static void set_params(AioContext *ctx, int64_t max, int64_t grow, int64_t shrink)
{
    aio_context_set_poll_params(ctx, max, grow, shrink, &error_abort);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 0);
}

/* Window at max_ns after two 1 ms events (0 -> 4 us -> max), or a few more
 * when the machine is busy. */
static void warm_up(AioContext *ctx, int64_t max)
{
    Tick k;
    tick_init(&k, ctx);
    set_params(ctx, max, HUGE_GROW, 2);
    /* A wait longer than max_ns (the machine is busy) shrinks: retry. */
    for (int i = 0; i < 20 && aioctx_context_get_poll_ns(ctx) != max; i++) {
        poll_for_tick(ctx, &k, 1 * MS);
    }
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, max);
    timer_free(k.t);
}

/* ---- tests ---- */

/* Starts a test: a new context with Poller `p` (with_begin_end: with the
 * io_poll_begin/end callbacks) and Tick `k` on it. End it with finish(). */
static AioContext *start(Poller *p, bool with_begin_end, Tick *k)
{
    AioContext *ctx = aio_context_new(&error_abort);

    poller_init(p, ctx, with_begin_end);
    tick_init(k, ctx);
    return ctx;
}

/* Ends a test that used a Poller and a Tick: frees them and the context. */
static void finish(AioContext *ctx, Poller *p, Tick *k)
{
    timer_free(k->t);
    poller_destroy(p);
    aio_context_unref(ctx);
}

static void test_grow_and_shrink(void)
{
    WATCHDOG();
    Poller p;
    Tick k;
    AioContext *ctx = start(&p, false, &k);
    /* max_ns well above the scheduling noise of a busy machine, so that
     * only the deliberately late events below count as "later than max". */
    const int64_t max = 50 * MS;
    set_params(ctx, max, 2, 4);
    g_assert_false(aio_poll_disabled(ctx));

    /* Window 0: the first blocking poll does not busy-poll at all. */
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(atomic_load(&p.polls), ==, 0);
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 4 * US);

    /* Events 1 ms apart (within max): 4 us, x2, ... until the window
     * covers the wait, then it stays (a late wakeup may double it once more). */
    int64_t w = 4 * US;
    for (int i = 0; i < 16; i++) {
        int before = atomic_load(&p.polls);
        poll_for_tick(ctx, &k, 1 * MS);
        int calls = atomic_load(&p.polls) - before;
        g_assert_cmpint(calls, >, 0); /* window > 0: io_poll is called */
        int64_t nw = aioctx_context_get_poll_ns(ctx);
        g_assert_true(nw == w || nw == 2 * w);
        w = nw;
    }
    g_assert_cmpint(w, >=, 1 * MS);
    g_assert_cmpint(w, <=, max);
    /*
     * A window that covers the wait really spins: io_poll is called over
     * most of the 1 ms before the timer. Checked on one of a few polls: a
     * preemption on a loaded machine can make any single one look short
     * (it only ever lengthens the calls' span otherwise); a spin that
     * stops early fails every time.
     */
    bool spun = false;
    for (int i = 0; i < 5 && !spun; i++) {
        atomic_store(&p.first_poll_ns, 0);
        poll_for_tick(ctx, &k, 1 * MS);
        spun = atomic_load(&p.last_poll_ns) - atomic_load(&p.first_poll_ns) >= 500 * US;
    }
    g_assert_true(spun);
    w = aioctx_context_get_poll_ns(ctx);
    g_assert_cmpint(w, >=, 1 * MS);
    g_assert_cmpint(w, <=, max);
    assert_backend(ctx);

    /* Events later than max_ns: divide by shrink each time, down to 0. */
    for (int i = 0; w > 0; i++) {
        g_assert_cmpint(i, <, 40);
        poll_for_tick(ctx, &k, max + 5 * MS);
        int64_t nw = aioctx_context_get_poll_ns(ctx);
        g_assert_cmpint(nw, ==, w / 4);
        w = nw;
    }
    /* Window 0 again: io_poll is no longer called. */
    int before = atomic_load(&p.polls);
    poll_for_tick(ctx, &k, 2 * MS);
    g_assert_cmpint(atomic_load(&p.polls), ==, before);
    /* ... and an event within max_ns starts it growing again. */
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 4 * US);
    g_assert_cmpint(atomic_load(&p.readies), ==, 0);
    g_assert_cmpint(atomic_load(&p.reads), ==, 0);

    finish(ctx, &p, &k);
}

/* grow 0 means 2; shrink 0 means straight back to 0. */
static void test_grow_zero_shrink_zero(void)
{
#if defined(__SANITIZE_THREAD__)
    /* Its 4-5 us timers fire before TSan's slowed-down non-blocking poll
     * returns, so the blocking poll it needs never happens. The test runs
     * in the plain and ASan builds. */
    g_test_skip("microsecond timer windows are out of reach under TSan");
    return;
#endif
    WATCHDOG();
    Poller p;
    Tick k;
    AioContext *ctx = start(&p, false, &k);
    set_params(ctx, 50 * MS, 0, 0);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 4 * US);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 8 * US);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 16 * US);
    poll_for_tick(ctx, &k, 60 * MS);
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 0);

    /* Capped at max_ns. */
    set_params(ctx, 6 * US, 0, 0);
    poll_for_tick(ctx, &k, 4 * US); /* within max (fires after >= 4 us) */
    int64_t w = aioctx_context_get_poll_ns(ctx);
    g_assert_true(w == 0 || w == 4 * US); /* 0 if the loop was late (> max) */
    for (int i = 0; i < 20; i++) {
        w = aioctx_context_get_poll_ns(ctx);
        g_assert_cmpint(w, <=, 6 * US);
        poll_for_tick(ctx, &k, 5 * US);
    }
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), <=, 6 * US);

    finish(ctx, &p, &k);
}

static void noop_read(void *opaque)
{
    (void)opaque;
}

static void test_disabled_without_io_poll(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    g_assert_false(aio_poll_disabled(ctx)); /* no handler at all */
    Poller p;
    poller_init(&p, ctx, true);
    g_assert_false(aio_poll_disabled(ctx));

    int fds[2];
    g_assert_cmpint(pipe(fds), ==, 0);
    aio_set_fd_handler(ctx, fds[0], noop_read, NULL, NULL, NULL, NULL);
    g_assert_true(aio_poll_disabled(ctx));

    Tick k;
    tick_init(&k, ctx);
    set_params(ctx, 8 * MS, HUGE_GROW, 2);
    for (int i = 0; i < 5; i++) {
        poll_for_tick(ctx, &k, 1 * MS);
    }
    g_assert_cmpint(atomic_load(&p.polls), ==, 0);
    g_assert_cmpint(atomic_load(&p.begins), ==, 0);
    g_assert_cmpint(atomic_load(&p.ends), ==, 0);
    assert_backend(ctx);

    /* Changing the fd's handlers to include io_poll re-enables polling. */
    aio_set_fd_handler(ctx, fds[0], noop_read, NULL, (AioPollFn *)p_poll, NULL, &p);
    g_assert_false(aio_poll_disabled(ctx));
    aio_set_fd_handler(ctx, fds[0], noop_read, NULL, NULL, NULL, NULL);
    g_assert_true(aio_poll_disabled(ctx));

    /* Removing the handler without io_poll re-enables polling. */
    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL);
    g_assert_false(aio_poll_disabled(ctx));
    warm_up(ctx, 8 * MS);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(atomic_load(&p.polls), >, 0);
    g_assert_cmpint(atomic_load(&p.begins), >, 0);

    close(fds[0]);
    close(fds[1]);
    finish(ctx, &p, &k);
}

static void test_max_zero_disables(void)
{
    WATCHDOG();
    Poller p;
    Tick k;
    AioContext *ctx = start(&p, true, &k);

    /* The default: no polling. */
    for (int i = 0; i < 3; i++) {
        poll_for_tick(ctx, &k, 1 * MS);
    }
    g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 0);
    g_assert_cmpint(atomic_load(&p.polls), ==, 0);

    /* Polling on, then max_ns 0: window back to 0 and no more polling. */
    warm_up(ctx, 8 * MS);
    set_params(ctx, 0, 2, 2);
    int before = atomic_load(&p.polls);
    int begins = atomic_load(&p.begins);
    for (int i = 0; i < 5; i++) {
        poll_for_tick(ctx, &k, 1 * MS);
        g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 0);
    }
    g_assert_cmpint(atomic_load(&p.polls), ==, before);
    g_assert_cmpint(atomic_load(&p.begins), ==, begins);

    finish(ctx, &p, &k);
}

static void test_negative_params(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    const int64_t bad[][3] = { { -1, 2, 2 }, { 1000, -1, 2 }, { 1000, 2, -1 }, { INT64_MIN, 0, 0 } };
    warm_up(ctx, 8 * MS);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        Error *err = NULL;
        aio_context_set_poll_params(ctx, bad[i][0], bad[i][1], bad[i][2], &err);
        g_assert_nonnull(err);
        g_assert_nonnull(error_get_pretty(err));
        g_assert_cmpuint(strlen(error_get_pretty(err)), >, 0);
        error_free(err);
        /* Rejected: the parameters and the window are unchanged. */
        g_assert_cmpint(aioctx_context_get_poll_ns(ctx), ==, 8 * MS);
        /* errp NULL: ignored, no crash. */
        aio_context_set_poll_params(ctx, bad[i][0], bad[i][1], bad[i][2], NULL);
    }
    Error *err = NULL;
    aio_context_set_poll_params(ctx, 32 * US, 2, 2, &err);
    g_assert_null(err);
    aio_context_set_poll_params(ctx, 0, 0, 0, &err);
    g_assert_null(err);
    aio_context_unref(ctx);
}

static void test_negative_params_error_abort(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = aio_context_new(&error_abort);
        aio_context_set_poll_params(ctx, -5, 0, 0, &error_abort);
        return; /* not reached */
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
}

/* io_poll reports work -> io_poll_ready runs (not io_read), in the same
 * aio_poll, which counts as progress. */
static void test_io_poll_ready(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Poller p;
    poller_init(&p, ctx, true);
    warm_up(ctx, 10 * MS);
    g_assert_cmpint(atomic_load(&p.readies), ==, 0);

    for (int i = 1; i <= 3; i++) {
        atomic_store(&p.work, true);
        g_assert_true(aio_poll(ctx, true));
        g_assert_cmpint(atomic_load(&p.readies), ==, i);
        g_assert_false(atomic_load(&p.work));
    }
    g_assert_cmpint(atomic_load(&p.reads), ==, 0);
    g_assert_cmpint(atomic_load(&p.begins), ==, atomic_load(&p.ends));
    g_assert_false(p.in_phase);

    /* io_poll returning false: no io_poll_ready. */
    int readies = atomic_load(&p.readies);
    Tick k;
    tick_init(&k, ctx);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpint(atomic_load(&p.readies), ==, readies);
    timer_free(k.t);

    poller_destroy(&p);
    aio_context_unref(ctx);
}

static void *set_work_after(void *opaque)
{
    Poller *p = opaque;
    sleep_ns(1 * MS);
    atomic_store(&p->work, true);
    /* virtio style: the notifier is only needed when the loop is not
     * polling (io_poll_end re-enables it, then the loop polls once more). */
    if (atomic_load(&p->notify_on)) {
        event_notifier_set(&p->e);
    }
    return NULL;
}

/* Work appearing in another thread while the context spins is found by
 * io_poll (no eventfd involved at all). */
static void test_io_poll_ready_cross_thread(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Poller p;
    poller_init(&p, ctx, true);
    warm_up(ctx, 50 * MS);
    for (int i = 1; i <= 5; i++) {
        pthread_t th;
        pthread_create(&th, NULL, set_work_after, &p);
        while (atomic_load(&p.readies) + atomic_load(&p.work_by_read) < i) {
            aio_poll(ctx, true);
        }
        pthread_join(th, NULL);
    }
    g_assert_cmpint(atomic_load(&p.readies) + atomic_load(&p.work_by_read), ==, 5);
    /* With a 50 ms window and work 1 ms away, io_poll finds it (only a
     * badly preempted round falls back to the notifier). */
    g_assert_cmpint(atomic_load(&p.readies), >=, 1);
    poller_destroy(&p);
    aio_context_unref(ctx);
}

/* io_poll_begin / io_poll_end bracket every polling phase. */
static void test_begin_end(void)
{
    WATCHDOG();
    Poller p;
    Tick k;
    AioContext *ctx = start(&p, true, &k);
    p.log = g_string_new("");
    set_params(ctx, 50 * MS, 2, 2);

    /* Window 0: no phase at all. */
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpstr(p.log->str, ==, "");

    for (int i = 0; i < 6; i++) {
        g_string_truncate(p.log, 0);
        poll_for_tick(ctx, &k, 1 * MS);
        /* begin, polls, end, and possibly one last poll after end. */
        g_assert_true(strcmp(p.log->str, "bpe") == 0 || strcmp(p.log->str, "bpep") == 0);
        g_assert_false(p.in_phase);
    }
    g_assert_cmpint(atomic_load(&p.begins), ==, 6);
    g_assert_cmpint(atomic_load(&p.ends), ==, 6);

    /* Removing the begin/end callbacks: polling goes on without them. */
    aio_set_event_notifier_poll(ctx, &p.e, NULL, NULL);
    g_string_truncate(p.log, 0);
    poll_for_tick(ctx, &k, 1 * MS);
    g_assert_cmpstr(p.log->str, ==, "p");
    g_assert_cmpint(atomic_load(&p.begins), ==, 6);

    finish(ctx, &p, &k);
    g_string_free(p.log, TRUE);
}

/* ---- cross-thread BH / notify while the context spins ---- */

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
    bool notify_only;
    _Atomic int64_t sent_at;
    _Atomic int64_t ran_at;
} Kick;

static void kick_bh(void *opaque)
{
    Kick *k = opaque;
    k->ran_at = now_ns();
}

static void *kick_after(void *opaque)
{
    Kick *k = opaque;
    sleep_ns(1 * MS);
    k->sent_at = now_ns();
    if (k->notify_only) {
        aio_notify(k->ctx);
    } else {
        qemu_bh_schedule(k->bh);
    }
    return NULL;
}

/*
 * One cross-thread kick per round while the context spins with a 10 ms
 * window. A kick sent early in the window (the sender may be scheduled late
 * on a busy machine: such rounds do not count) must be seen while spinning:
 * the poll then ends within the window, which is kept. Had the loop missed
 * it until the window ended, block_ns > max_ns would shrink the window.
 */
static void run_kicks(AioContext *ctx, const int64_t window, bool notify_only)
{
    Kick k = { .ctx = ctx, .notify_only = notify_only };
    k.bh = aio_bh_new(ctx, kick_bh, &k);
    int early = 0, kept = 0;
    for (int round = 0; round < 60 && early < 6; round++) {
        if (aioctx_context_get_poll_ns(ctx) != window) {
            warm_up(ctx, window);
        }
        k.ran_at = 0;
        k.sent_at = 0;
        pthread_t th;
        pthread_create(&th, NULL, kick_after, &k);
        int64_t start = now_ns();
        if (notify_only) {
            /* The wakeup alone is no progress. (A blocking aio_poll may
             * also return early for a stale wakeup, as in QEMU.) */
            do {
                g_assert_false(aio_poll(ctx, true));
            } while (k.sent_at == 0);
            k.ran_at = now_ns();
        } else {
            while (k.ran_at == 0) {
                aio_poll(ctx, true);
            }
        }
        pthread_join(th, NULL);
        g_assert_cmpint(k.ran_at, >=, k.sent_at);
        /* Sent in the first quarter: 7.5 ms of slack for the poller being
         * preempted (a loaded machine with few CPUs). */
        if (k.sent_at - start < window / 4) {
            early++;
            kept += aioctx_context_get_poll_ns(ctx) == window;
        }
    }
    if (early < 3) {
        g_test_incomplete("machine too busy: the kicking thread was never on time");
    } else {
        /* A loop that missed the kick while spinning would shrink the
         * window every time (kept == 0); preemption only makes some
         * rounds late. */
        g_assert_cmpint(kept * 3, >=, early);
    }
    qemu_bh_delete(k.bh);
}

static void test_cross_thread_bh_while_polling(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    /* No handler at all: the context spins on its own queue and flag. */
    run_kicks(ctx, 10 * MS, false);
    run_kicks(ctx, 10 * MS, true);

    /* With a poller registered (and an fd monitor in use). */
    Poller p;
    poller_init(&p, ctx, true);
    run_kicks(ctx, 10 * MS, false);
    run_kicks(ctx, 10 * MS, true);
    assert_backend(ctx);
    g_assert_cmpint(atomic_load(&p.begins), ==, atomic_load(&p.ends));
    g_assert_cmpint(atomic_load(&p.polls), >, 0);
    poller_destroy(&p);
    aio_context_unref(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/aio/poll/grow-and-shrink", test_grow_and_shrink);
    g_test_add_func("/aio/poll/grow-zero-shrink-zero", test_grow_zero_shrink_zero);
    g_test_add_func("/aio/poll/disabled-without-io-poll", test_disabled_without_io_poll);
    g_test_add_func("/aio/poll/max-zero-disables", test_max_zero_disables);
    g_test_add_func("/aio/poll/negative-params", test_negative_params);
    g_test_add_func("/aio/poll/negative-params-error-abort", test_negative_params_error_abort);
    g_test_add_func("/aio/poll/io-poll-ready", test_io_poll_ready);
    g_test_add_func("/aio/poll/io-poll-ready-cross-thread", test_io_poll_ready_cross_thread);
    g_test_add_func("/aio/poll/begin-end", test_begin_end);
    g_test_add_func("/aio/poll/cross-thread-bh-while-polling", test_cross_thread_bh_while_polling);
    return g_test_run();
}
