/*
 * The program every build-system consumer in tests/consumers/ builds
 * against an installed aioctx (scripts/test-consumers.sh): it includes the
 * compat tree's "qemu/aio.h" (so the compat include dir and GLib's cflags
 * must be there) and the generated "aioctx.h", creates a context,
 * schedules a BH and a oneshot, runs aio_poll and exits non-zero unless
 * both ran exactly once.
 */
#include "qemu/osdep.h"
#include "qemu/aio.h"
#include "aioctx.h"

#include <stdio.h>

static void count(void *opaque)
{
    (*(int *)opaque)++;
}

int main(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    int bh_runs = 0, oneshot_runs = 0;
    QEMUBH *bh = aio_bh_new(ctx, count, &bh_runs);

    qemu_bh_schedule(bh);
    aio_bh_schedule_oneshot(ctx, count, &oneshot_runs);
    while (aio_poll(ctx, false)) {
        /* until nothing makes progress */
    }
    qemu_bh_delete(bh);
    aio_context_unref(ctx);

    if (bh_runs != 1 || oneshot_runs != 1) {
        fprintf(stderr, "consumer: BH ran %d times, oneshot %d times (want 1, 1)\n",
                bh_runs, oneshot_runs);
        return 1;
    }
    printf("consumer: ok\n");
    return 0;
}
