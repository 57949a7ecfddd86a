/*
 * hello-bh: the smallest useful aioctx program.
 *
 * The main thread blocks in aio_poll() on its own context. Another thread
 * schedules a bottom half (BH) on that context; the blocked aio_poll wakes up
 * and runs the BH callback in the main thread. The callback then schedules a
 * oneshot BH, which runs (and is freed) on the next iteration.
 *
 * Build and run:  make            (builds every example and runs this one)
 * By hand:        cc -std=gnu11 -pthread examples/hello-bh.c $(make -s print-link-flags)
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "aioctx.h"

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
    bool bh_ran;
    bool oneshot_ran;
} Demo;

static void oneshot_cb(void *opaque)
{
    Demo *demo = opaque;

    printf("main thread: oneshot BH runs (and is freed afterwards)\n");
    demo->oneshot_ran = true;
}

static void hello_cb(void *opaque)
{
    Demo *demo = opaque;

    printf("main thread: BH runs: hello from the event loop\n");
    demo->bh_ran = true;
    /* Callbacks may schedule more work; it runs on a later aio_poll. */
    aio_bh_schedule_oneshot(demo->ctx, oneshot_cb, demo);
}

static void *scheduler_thread(void *opaque)
{
    Demo *demo = opaque;
    struct timespec pause = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };

    /* Give the main thread time to block in aio_poll first. */
    nanosleep(&pause, NULL);
    printf("other thread: qemu_bh_schedule() (any thread may do this)\n");
    qemu_bh_schedule(demo->bh);
    return NULL;
}

int main(void)
{
    Demo demo = { 0 };
    pthread_t thread;

    /* &error_abort: print the message and abort if creation fails. */
    demo.ctx = aio_context_new(&error_abort);
    demo.bh = aio_bh_new(demo.ctx, hello_cb, &demo);

    if (pthread_create(&thread, NULL, scheduler_thread, &demo) != 0) {
        perror("pthread_create");
        return EXIT_FAILURE;
    }

    printf("main thread: aio_poll(ctx, true) blocks until there is work\n");
    while (!demo.bh_ran) {
        aio_poll(demo.ctx, true);
    }
    printf("main thread: aio_poll returned\n");

    /* The oneshot was scheduled by hello_cb; it is already pending. */
    while (!demo.oneshot_ran) {
        aio_poll(demo.ctx, true);
    }

    pthread_join(thread, NULL);

    /* BHs from aio_bh_new are deleted explicitly; oneshots free themselves. */
    qemu_bh_delete(demo.bh);
    aio_context_unref(demo.ctx);
    printf("done\n");
    return EXIT_SUCCESS;
}
