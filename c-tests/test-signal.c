/*
 * Signals end a blocking aio_poll: `while (!quit) aio_poll(ctx, true)` with
 * a handler installed without SA_RESTART that sets `quit` must return, on
 * every wait path: a context with nothing to watch (one blocking read of
 * its eventfd), with only a timer (ppoll with a timeout), with an fd (the fd
 * monitor, forever or with a timeout), a context bound to another thread,
 * and the main context. An interrupted poll that ran nothing returns false,
 * and the context keeps working afterwards (aio_notify still wakes it).
 *
 * Runs once per fd monitoring backend (AIOCTX_FDMON, see FDMON_TESTS in the
 * Makefile). A poll that retries EINTR hangs: the watchdog then aborts.
 */
#include "aioctx.h"
#include "test-util.h"

#include <glib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t quit;
static volatile sig_atomic_t signals_seen;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
    signals_seen++;
}

static void install_handler(int sig)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: an interrupted wait fails with EINTR */
    g_assert_cmpint(sigaction(sig, &sa, NULL), ==, 0);
}

/*
 * Sends `sig` to `target` every 20 ms until `done`: a signal that lands
 * before the poller blocks only sets `quit` early, the next one then
 * interrupts the wait itself (if the loop did not end already).
 */
typedef struct {
    pthread_t target;
    int sig;
    atomic_bool done;
    pthread_t thread;
} Killer;

static void *killer_thread(void *opaque)
{
    Killer *k = opaque;

    while (!atomic_load(&k->done)) {
        usleep(20 * 1000);
        if (!atomic_load(&k->done)) {
            pthread_kill(k->target, k->sig);
        }
    }
    return NULL;
}

/* The loop of the report, in the calling thread; checks what it returned. */
static void poll_until_signal(AioContext *ctx, int sig)
{
    Watchdog wd;
    Killer k = { .target = pthread_self(), .sig = sig };
    bool progress = false;
    int calls = 0;

    watchdog_start(&wd, "blocking aio_poll interrupted by a signal", 10);
    quit = 0;
    signals_seen = 0;
    atomic_init(&k.done, false);
    g_assert_cmpint(pthread_create(&k.thread, NULL, killer_thread, &k), ==, 0);
    while (!quit) {
        progress |= aio_poll(ctx, true);
        calls++;
    }
    atomic_store(&k.done, true);
    g_assert_cmpint(pthread_join(k.thread, NULL), ==, 0);
    watchdog_stop(&wd);

    g_assert_cmpint(signals_seen, >=, 1);
    g_assert_cmpint(calls, >=, 1);
    /* Nothing was scheduled, no fd became ready, no timer expired. */
    g_assert_false(progress);

    /* Still a working context: a notification ends the next blocking poll. */
    watchdog_start(&wd, "aio_poll after the signal", 10);
    aio_notify(ctx);
    g_assert_false(aio_poll(ctx, true));
    g_assert_false(aio_poll(ctx, false));
    watchdog_stop(&wd);
}

static void never_cb(void *opaque)
{
    (void)opaque;
    g_assert_not_reached();
}

static void never_fd_cb(void *opaque)
{
    (void)opaque;
    g_assert_not_reached();
}

/* The backend a context uses once it watches an fd. */
static void assert_backend(AioContext *ctx)
{
    const char *forced = getenv("AIOCTX_FDMON");
    const char *want = forced && *forced ? forced : "poll";
    const char *name = aioctx_context_fdmon_name(ctx);

    /* io_uring falls back to epoll where the kernel refuses it. */
    if (strcmp(want, "io_uring") == 0 && strcmp(name, "epoll") == 0) {
        g_test_message("io_uring unavailable here, epoll used");
        return;
    }
    g_assert_cmpstr(name, ==, want);
}

/* ---- the wait paths ---- */

static void test_no_fds_no_timers(void)
{
    AioContext *ctx = new_context();

    poll_until_signal(ctx, SIGALRM);
    aio_context_unref(ctx);
}

static void test_sigint(void)
{
    AioContext *ctx = new_context();

    poll_until_signal(ctx, SIGINT);
    aio_context_unref(ctx);
}

static QEMUTimer *far_timer(AioContext *ctx)
{
    QEMUTimer *t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, never_cb, NULL);

    timer_mod(t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 3600 * 1000000000LL);
    return t;
}

static void test_timer_only(void)
{
    AioContext *ctx = new_context();
    QEMUTimer *t = far_timer(ctx);

    poll_until_signal(ctx, SIGALRM);
    timer_free(t);
    aio_context_unref(ctx);
}

static void with_fd(bool timer)
{
    AioContext *ctx = new_context();
    QEMUTimer *t = timer ? far_timer(ctx) : NULL;
    int p[2];

    g_assert_cmpint(pipe(p), ==, 0);
    /* Never written: never readable. */
    aio_set_fd_handler(ctx, p[0], never_fd_cb, NULL, NULL, NULL, NULL);
    g_assert_false(aio_poll(ctx, false)); /* picks the fd monitor */
    assert_backend(ctx);
    poll_until_signal(ctx, SIGALRM);
    aio_set_fd_handler(ctx, p[0], NULL, NULL, NULL, NULL, NULL);
    close(p[0]);
    close(p[1]);
    if (t) {
        timer_free(t);
    }
    aio_context_unref(ctx);
}

static void test_fd(void)
{
    with_fd(false);
}

static void test_fd_and_timer(void)
{
    with_fd(true);
}

static void *bound_thread(void *opaque)
{
    AioContext *ctx = opaque;

    qemu_set_current_aio_context(ctx);
    poll_until_signal(ctx, SIGALRM);
    return NULL;
}

static void test_bound_thread(void)
{
    AioContext *ctx = new_context();
    pthread_t tid;

    g_assert_cmpint(pthread_create(&tid, NULL, bound_thread, ctx), ==, 0);
    g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
    aio_context_unref(ctx);
}

static void test_main_context(void)
{
    poll_until_signal(qemu_get_aio_context(), SIGINT);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    install_handler(SIGALRM);
    install_handler(SIGINT);
    g_assert_cmpint(qemu_init_main_loop(&error_abort), ==, 0);

    g_test_add_func("/signal/no-fds-no-timers", test_no_fds_no_timers);
    g_test_add_func("/signal/sigint", test_sigint);
    g_test_add_func("/signal/timer-only", test_timer_only);
    g_test_add_func("/signal/fd", test_fd);
    g_test_add_func("/signal/fd-and-timer", test_fd_and_timer);
    g_test_add_func("/signal/bound-thread", test_bound_thread);
    g_test_add_func("/signal/main-context", test_main_context);
    return g_test_run();
}
