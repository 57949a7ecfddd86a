/*
 * glib-mainloop: aioctx inside a GLib program.
 *
 * qemu_init_main_loop() creates the main AioContext (and the "iohandler"
 * context used by qemu_set_fd_handler) and attaches their GSources to
 * GLib's default main context. From then on an ordinary GMainLoop runs
 * aioctx's bottom halves, fd handlers and timers next to plain GLib
 * sources, as in QEMU. The chain of events here:
 *
 *   BH (qemu_bh_new)  ->  writes to a pipe
 *   fd handler on the pipe (qemu_set_fd_handler)  ->  arms a 20 ms timer
 *   timer (timer_new_ms on the main context)  ->  g_main_loop_quit
 *
 * plus a GLib idle source, and a GLib watchdog that fails the program if
 * the chain stalls.
 *
 * Build and run:  make            (builds every example)
 * By hand:        cc -std=gnu11 -pthread examples/glib-mainloop.c \
 *                    $(pkg-config --cflags glib-2.0) $(make -s print-link-flags)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "aioctx.h"

typedef struct {
    GMainLoop *loop;
    int pipe_fds[2];            /* [0] read end, [1] write end */
    QEMUBH *bh;
    QEMUTimer *timer;
    int64_t start_ms;
    bool bh_ran, fd_ran, timer_ran, idle_ran, timed_out;
} Demo;

static long long elapsed_ms(Demo *demo)
{
    return (long long)(qemu_clock_get_ms(QEMU_CLOCK_REALTIME) -
                       demo->start_ms);
}

/* 3. The timer fires from the GMainLoop: stop the loop. */
static void timer_cb(void *opaque)
{
    Demo *demo = opaque;

    printf("%3lld ms: timer fires, quitting the GMainLoop\n",
           elapsed_ms(demo));
    demo->timer_ran = true;
    g_main_loop_quit(demo->loop);
}

/* 2. The pipe became readable. */
static void pipe_read_cb(void *opaque)
{
    Demo *demo = opaque;
    char buf[64];
    ssize_t len = read(demo->pipe_fds[0], buf, sizeof(buf) - 1);

    if (len <= 0) {
        return;
    }
    buf[len] = '\0';
    printf("%3lld ms: fd handler reads \"%s\" from the pipe, arms a 20 ms "
           "timer\n", elapsed_ms(demo), buf);
    demo->fd_ran = true;
    /* One message is enough: stop watching the fd. */
    qemu_set_fd_handler(demo->pipe_fds[0], NULL, NULL, NULL);
    timer_mod(demo->timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 20);
}

/* 1. The BH runs from the GMainLoop. */
static void hello_bh(void *opaque)
{
    Demo *demo = opaque;
    static const char msg[] = "ping";

    printf("%3lld ms: BH runs, writes \"%s\" into the pipe\n",
           elapsed_ms(demo), msg);
    demo->bh_ran = true;
    if (write(demo->pipe_fds[1], msg, strlen(msg)) < 0) {
        perror("write");
    }
}

/* Plain GLib sources share the same loop. */
static gboolean idle_cb(gpointer opaque)
{
    Demo *demo = opaque;

    printf("%3lld ms: a GLib idle source runs in the same loop\n",
           elapsed_ms(demo));
    demo->idle_ran = true;
    return G_SOURCE_REMOVE;
}

static gboolean watchdog_cb(gpointer opaque)
{
    Demo *demo = opaque;

    fprintf(stderr, "watchdog: the chain did not finish in time\n");
    demo->timed_out = true;
    g_main_loop_quit(demo->loop);
    return G_SOURCE_REMOVE;
}

int main(void)
{
    Demo demo = { 0 };
    guint watchdog;

    /* Main context + iohandler context, attached to GLib's default one. */
    qemu_init_main_loop(&error_abort);
    demo.start_ms = qemu_clock_get_ms(QEMU_CLOCK_REALTIME);
    demo.loop = g_main_loop_new(NULL, FALSE);

    if (pipe(demo.pipe_fds) < 0) {
        perror("pipe");
        return EXIT_FAILURE;
    }
    qemu_set_fd_handler(demo.pipe_fds[0], pipe_read_cb, NULL, &demo);
    demo.timer = timer_new_ms(QEMU_CLOCK_REALTIME, timer_cb, &demo);
    demo.bh = qemu_bh_new(hello_bh, &demo);
    qemu_bh_schedule(demo.bh);
    g_idle_add(idle_cb, &demo);
    watchdog = g_timeout_add_seconds(2, watchdog_cb, &demo);

    printf("  0 ms: g_main_loop_run on GLib's default main context\n");
    g_main_loop_run(demo.loop);

    if (!demo.timed_out) {
        g_source_remove(watchdog);
    }
    timer_free(demo.timer);
    qemu_bh_delete(demo.bh);
    close(demo.pipe_fds[0]);
    close(demo.pipe_fds[1]);
    g_main_loop_unref(demo.loop);

    if (demo.timed_out || !demo.bh_ran || !demo.fd_ran || !demo.timer_ran ||
        !demo.idle_ran) {
        return EXIT_FAILURE;
    }
    printf("done\n");
    return EXIT_SUCCESS;
}
