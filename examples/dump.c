/*
 * dump: what a context is doing and what it holds (aioctx extensions).
 *
 * Runs a small workload on a context (BHs, a pipe with a read handler, a
 * timer), prints a few loop metrics from aioctx_context_get_stats(), then
 * lists the context's live handles with aioctx_context_dump(ctx, stdout):
 * one line per BH, fd handler, armed timer and scheduled coroutine.
 *
 * Build and run:  make run-examples   (or build/examples/dump)
 * Link with -rdynamic so that the dump names callbacks by their symbols.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "aioctx.h"

static int bh_runs, reads, timer_fired;

void count_bh(void *opaque);
void on_readable(void *opaque);
void on_timer(void *opaque);

void count_bh(void *opaque)
{
    (void)opaque;
    bh_runs++;
}

void on_readable(void *opaque)
{
    char c;

    if (read(*(int *)opaque, &c, 1) == 1) {
        reads++;
    }
}

void on_timer(void *opaque)
{
    (void)opaque;
    timer_fired++;
}

int main(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUBH *worker = aio_bh_new_full(ctx, count_bh, NULL, "worker", NULL);
    QEMUBH *quiet = aio_bh_new(ctx, count_bh, NULL);
    QEMUTimer soon, later;
    int fds[2];

    if (pipe(fds) != 0) {
        perror("pipe");
        return EXIT_FAILURE;
    }
    aio_set_fd_handler(ctx, fds[0], on_readable, NULL, NULL, NULL, &fds[0]);
    aio_timer_init(ctx, &soon, QEMU_CLOCK_REALTIME, SCALE_MS, on_timer, NULL);
    aio_timer_init(ctx, &later, QEMU_CLOCK_REALTIME, SCALE_MS, on_timer, NULL);

    /* The workload: 3 BH runs, 2 fd events, 1 timer. */
    for (int i = 0; i < 3; i++) {
        qemu_bh_schedule(worker);
        aio_poll(ctx, false);
    }
    for (int i = 0; i < 2; i++) {
        if (write(fds[1], "x", 1) != 1) {
            perror("write");
            return EXIT_FAILURE;
        }
        aio_poll(ctx, false);
    }
    timer_mod(&soon, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    while (!timer_fired) {
        aio_poll(ctx, true);
    }

    AioctxStats s = { .size = sizeof s };
    aioctx_context_get_stats(ctx, &s);
    printf("stats: %" PRIu64 " iterations, %" PRIu64 " BHs run, %" PRIu64
           " fd callbacks, %" PRIu64 " timers fired, blocked %" PRIu64 " ns\n",
           s.iterations, s.bhs_run, s.fd_callbacks, s.timers_fired, s.blocked_ns);

    /* Something left to see: a scheduled BH and an armed timer. */
    qemu_bh_schedule(worker);
    timer_mod(&later, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 60 * 1000);
    printf("dump:\n");
    aioctx_context_dump(ctx, stdout);

    timer_del(&later);
    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL);
    close(fds[0]);
    close(fds[1]);
    qemu_bh_delete(worker);
    qemu_bh_delete(quiet);
    aio_context_unref(ctx);
    return EXIT_SUCCESS;
}
