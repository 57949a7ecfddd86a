/*
 * The workload scripts/fault-walk.sh runs under the fault-injection shim
 * (c-tests/fault/fault-inject.c): main loop, a new context, an IOThread,
 * timers, fd handlers, coroutines and the thread pool, each used once.
 *
 * Exit status: 0 when everything worked, 2 when the library reported a
 * failure through an Error (printed, without the "aioctx:" prefix); any
 * other failure is the library's single "aioctx:" line and abort().
 */
#define _GNU_SOURCE
#include "qemu/osdep.h"
#include "qemu/coroutine.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "qapi/error.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int fired;

static void count_cb(void *opaque)
{
    (void)opaque;
    fired++;
}

static void drain_cb(void *opaque)
{
    int *fd = opaque;
    char buf[16];

    while (read(*fd, buf, sizeof(buf)) > 0) {
    }
    fired++;
}

static void coroutine_fn co_body(void *opaque)
{
    (void)opaque;
    fired++;
    qemu_coroutine_yield();
    fired++;
}

static int pool_job(void *opaque)
{
    (void)opaque;
    return 7;
}

static void pool_done(void *opaque, int ret)
{
    (void)opaque;
    if (ret == 7) {
        fired++;
    }
}

static void post_cb(void *opaque)
{
    qemu_sem_post(opaque);
}

static int failed(const char *what, Error *err)
{
    fprintf(stderr, "workload: %s failed: %s\n", what, error_get_pretty(err));
    error_free(err);
    return 2;
}

static void poll_until(AioContext *ctx, int want)
{
    while (fired < want) {
        aio_poll(ctx, true);
    }
}

int main(void)
{
    Error *err = NULL;
    int p[2];

    if (qemu_init_main_loop(&err) < 0) {
        return failed("qemu_init_main_loop", err);
    }
    AioContext *ctx = aio_context_new(&err);
    if (!ctx) {
        return failed("aio_context_new", err);
    }
    AioctxIOThread *io = aioctx_iothread_new("walk", &err);
    if (!io) {
        aio_context_unref(ctx);
        return failed("aioctx_iothread_new", err);
    }

    /* A BH on the IOThread. */
    QemuSemaphore sem;
    qemu_sem_init(&sem, 0);
    aio_bh_schedule_oneshot(aioctx_iothread_get_aio_context(io), post_cb, &sem);
    qemu_sem_wait(&sem);
    qemu_sem_destroy(&sem);

    /* Timers. */
    QEMUTimer *t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, count_cb, NULL);
    timer_mod(t, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    poll_until(ctx, 1);
    timer_free(t);

    /*
     * An fd handler: two events (the second one re-arms the fd's poll with
     * the io_uring backend), then its removal, applied by one more
     * non-blocking poll (io_uring submits the cancellation at once).
     */
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("workload: pipe2");
        return 2;
    }
    aio_set_fd_handler(ctx, p[0], drain_cb, NULL, NULL, NULL, &p[0]);
    for (int want = 2; want <= 3; want++) {
        if (write(p[1], "x", 1) != 1) {
            return 2;
        }
        poll_until(ctx, want);
    }
    aio_set_fd_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    aio_poll(ctx, false);
    close(p[0]);
    close(p[1]);

    /* Coroutines. */
    Coroutine *co[4];
    for (int i = 0; i < 4; i++) {
        co[i] = qemu_coroutine_create(co_body, NULL);
        qemu_coroutine_enter(co[i]);
    }
    for (int i = 0; i < 4; i++) {
        qemu_coroutine_enter(co[i]);
    }
    if (fired != 11) {
        return 3;
    }

    /* The main context's thread pool. */
    thread_pool_submit_aio(pool_job, NULL, pool_done, NULL);
    poll_until(qemu_get_aio_context(), 12);

    aioctx_iothread_join(io);
    aio_context_unref(ctx);
    return 0;
}
