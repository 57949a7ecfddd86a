/*
 * timer: timers on an AioContext.
 *
 * A timer is a callback bound to a context and a clock. It fires from
 * aio_poll() once its clock reaches the deadline, and a blocking aio_poll
 * sleeps no longer than the earliest deadline. This program arms:
 *   - a one-shot timer (embedded in a struct, aio_timer_init) at +50 ms;
 *   - a periodic timer (allocated, aio_timer_new) that re-arms itself from
 *     its callback every 10 ms, five times;
 *   - a timer at +30 ms that is cancelled with timer_del before it fires.
 * The main thread just loops on aio_poll(ctx, true) until all is done.
 *
 * Build and run:  make            (builds every example)
 * By hand:        cc -std=gnu11 -pthread examples/timer.c $(make -s print-link-flags)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "aioctx.h"

#define PERIOD_MS 10
#define TICKS 5

typedef struct {
    AioContext *ctx;
    int64_t start_ms;           /* QEMU_CLOCK_REALTIME when we started */
    QEMUTimer oneshot;          /* embedded: aio_timer_init / timer_deinit */
    QEMUTimer *tick;            /* allocated: aio_timer_new / timer_free */
    QEMUTimer *cancelled;
    int64_t next_deadline_ms;   /* the periodic timer's next deadline */
    int ticks;
    bool oneshot_fired;
    bool cancelled_fired;
} Demo;

static int64_t elapsed_ms(Demo *demo)
{
    return qemu_clock_get_ms(QEMU_CLOCK_REALTIME) - demo->start_ms;
}

static void oneshot_cb(void *opaque)
{
    Demo *demo = opaque;

    printf("%3lld ms: one-shot timer fires (it is not re-armed)\n",
           (long long)elapsed_ms(demo));
    demo->oneshot_fired = true;
}

static void tick_cb(void *opaque)
{
    Demo *demo = opaque;

    demo->ticks++;
    printf("%3lld ms: periodic timer, tick %d of %d\n",
           (long long)elapsed_ms(demo), demo->ticks, TICKS);
    if (demo->ticks < TICKS) {
        /*
         * Re-arm from the callback. Adding the period to the previous
         * deadline (rather than to "now") keeps the ticks from drifting.
         */
        demo->next_deadline_ms += PERIOD_MS;
        timer_mod(demo->tick, demo->next_deadline_ms);
    }
}

static void cancelled_cb(void *opaque)
{
    Demo *demo = opaque;

    printf("%3lld ms: the cancelled timer fired (it should not have)\n",
           (long long)elapsed_ms(demo));
    demo->cancelled_fired = true;
}

int main(void)
{
    Demo demo = { 0 };
    int64_t now_ms;

    demo.ctx = aio_context_new(&error_abort);
    demo.start_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    now_ms = demo.start_ms;

    /* Deadlines are in units of the timer's scale: here milliseconds. */
    aio_timer_init(demo.ctx, &demo.oneshot, QEMU_CLOCK_REALTIME, SCALE_MS,
                   oneshot_cb, &demo);
    timer_mod(&demo.oneshot, now_ms + 50);

    demo.tick = aio_timer_new(demo.ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                              tick_cb, &demo);
    demo.next_deadline_ms = now_ms + PERIOD_MS;
    timer_mod(demo.tick, demo.next_deadline_ms);

    demo.cancelled = aio_timer_new(demo.ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                                   cancelled_cb, &demo);
    timer_mod(demo.cancelled, now_ms + 30);
    printf("  0 ms: armed a one-shot (+50 ms), a periodic (every %d ms) "
           "and one more (+30 ms)\n", PERIOD_MS);

    /* Cancel the last one; timer_pending tells whether a timer is armed. */
    timer_del(demo.cancelled);
    printf("  0 ms: timer_del on the +30 ms timer; pending now: %s\n",
           timer_pending(demo.cancelled) ? "yes" : "no");

    /* Each blocking aio_poll sleeps until the earliest deadline. */
    while (!demo.oneshot_fired || demo.ticks < TICKS) {
        aio_poll(demo.ctx, true);
    }

    /* Clean up: disarm and detach the embedded timer, free the others. */
    timer_deinit(&demo.oneshot);
    timer_free(demo.tick);
    timer_free(demo.cancelled);
    aio_context_unref(demo.ctx);

    if (demo.cancelled_fired) {
        return EXIT_FAILURE;
    }
    printf("done after %lld ms\n", (long long)elapsed_ms(&demo));
    return EXIT_SUCCESS;
}
