/*
 * Adaptive busy polling that converges (issue 14): a context whose events
 * never come within max_ns of a blocked wait (QEMU's rule alone keeps the
 * window at 0) but that an io_poll spin would find at once probes the
 * window and opens it; when traffic stops the window (stat
 * poll_window_ns) drops to 0 within a few iterations and io_poll is no
 * longer called. Behaviour only: io_poll is deterministic (reports work on
 * every second call while the "device" is busy), and the only timing
 * assumptions are "eventually within N iterations".
 */
#include "aioctx.h"

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MS 1000000LL

typedef struct {
    EventNotifier e; /* first: the callbacks get &e; never set */
    bool busy;       /* a polled-only device with work */
    int polls, readies;
} Dev;

static bool dev_poll(void *opaque)
{
    Dev *d = opaque;
    d->polls++;
    return d->busy && d->polls % 2 == 0;
}

static void dev_ready(EventNotifier *e)
{
    ((Dev *)e)->readies++;
}

static void dev_read(EventNotifier *e)
{
    event_notifier_test_and_clear(e);
}

static void tick_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static int64_t window(AioContext *ctx)
{
    AioctxStats st = { .size = sizeof(st) };
    aioctx_context_get_stats(ctx, &st);
    return st.poll_window_ns;
}

/* One blocking aio_poll that ends with the device (found by a spin) or
 * with a timer `delay_ns` from now. Returns whether the device ran. */
static bool poll_once(AioContext *ctx, Dev *d, QEMUTimer *t, int *fired, int64_t delay_ns)
{
    int readies = d->readies, before = *fired;
    timer_mod_ns(t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + delay_ns);
    aio_poll(ctx, false); /* consume the wakeup that arming causes */
    while (d->readies == readies && *fired == before) {
        aio_poll(ctx, true);
    }
    timer_del(t);
    return d->readies != readies;
}

static void test_probe_opens_and_idle_closes(void)
{
    alarm(60);
    AioContext *ctx = aio_context_new(&error_abort);
    Dev d;
    memset(&d, 0, sizeof(d));
    g_assert_cmpint(event_notifier_init(&d.e, 0), ==, 0);
    aio_set_event_notifier(ctx, &d.e, dev_read, dev_poll, dev_ready);
    int fired = 0;
    QEMUTimer *t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, tick_cb, &fired);
    const int64_t max = 1 * MS;
    aio_context_set_poll_params(ctx, max, 2, 2, &error_abort);
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(window(ctx), ==, 0);

    /* Busy device, but only a spin sees it; the waits end with timers
     * 3 ms away (> max: QEMU's rule keeps the window at 0). A probe spins
     * max_ns, finds the device, and the window opens at max_ns. */
    d.busy = true;
    int i;
    for (i = 0; i < 40 && window(ctx) != max; i++) {
        poll_once(ctx, &d, t, &fired, 3 * MS);
    }
    g_assert_cmpint(window(ctx), ==, max);
    g_assert_cmpint(d.readies, >, 0);

    /* While the device stays busy, every poll finds it by spinning and
     * the window stays open (the timer never has to fire). */
    int hits = 0;
    for (i = 0; i < 20; i++) {
        hits += poll_once(ctx, &d, t, &fired, 3 * MS);
    }
    g_assert_cmpint(hits, >=, 15); /* a preempted spin may miss a few */
    g_assert_cmpint(window(ctx), >, 0);

    /* Traffic stops: idle wake-ups (100 ms > 64 x max_ns) close the window
     * within a few iterations, and then io_poll is not called at all. */
    d.busy = false;
    for (i = 0; i < 5 && window(ctx) != 0; i++) {
        poll_once(ctx, &d, t, &fired, 100 * MS);
    }
    g_assert_cmpint(window(ctx), ==, 0);
    int polls = d.polls;
    for (i = 0; i < 3; i++) {
        poll_once(ctx, &d, t, &fired, 100 * MS);
        g_assert_cmpint(window(ctx), ==, 0);
    }
    g_assert_cmpint(d.polls, ==, polls);

    timer_free(t);
    aio_set_event_notifier(ctx, &d.e, NULL, NULL, NULL);
    event_notifier_cleanup(&d.e);
    aio_context_unref(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/poll-converge/probe-opens-idle-closes", test_probe_opens_and_idle_closes);
    return g_test_run();
}
