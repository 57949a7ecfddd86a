/*
 * Event notifiers (qemu/event_notifier.h) and aio_set_event_notifier:
 * init / set / test_and_clear / accessors / cleanup, waiting for a notifier
 * set from another thread, flushing (many sets, one callback), removal while
 * pending and removal from inside the notifier's own handler.
 *
 * Runs once per fd monitoring backend (AIOCTX_FDMON); when the variable is
 * set, the tests check that the backend in use is the forced one.
 *
 * Each test arms a watchdog (alarm) so that a lost wakeup fails the run
 * instead of hanging it.
 */
#include "aioctx.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define WATCHDOG() alarm(30)

_Static_assert(offsetof(EventNotifier, rfd) == 0, "EventNotifier layout");
_Static_assert(offsetof(EventNotifier, wfd) == sizeof(int), "EventNotifier layout");
_Static_assert(offsetof(EventNotifier, initialized) == 2 * sizeof(int), "EventNotifier layout");

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { ns / 1000000000, ns % 1000000000 };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* The backend the context must use once it watches a few fds. */
static const char *expected_backend(void)
{
    const char *forced = getenv("AIOCTX_FDMON");
    return forced && *forced ? forced : "poll";
}

static void assert_backend(AioContext *ctx)
{
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, expected_backend());
}

/* ---- the notifier itself ---- */

static void test_init_inactive(void)
{
    EventNotifier e;
    memset(&e, 0xab, sizeof(e));
    g_assert_cmpint(event_notifier_init(&e, 0), ==, 0);
    g_assert_true(e.initialized);
    g_assert_cmpint(e.rfd, >=, 0);
    g_assert_cmpint(event_notifier_get_fd(&e), ==, e.rfd);
    g_assert_cmpint(event_notifier_get_wfd(&e), ==, e.wfd);
    /* One eventfd on Linux: both ends are the same fd. */
    g_assert_cmpint(event_notifier_get_fd(&e), ==, event_notifier_get_wfd(&e));
    int fd = event_notifier_get_fd(&e);
    g_assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    g_assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);
    event_notifier_cleanup(&e);
    g_assert_false(e.initialized);
    g_assert_false(fd_is_open(fd));
}

static void test_init_active(void)
{
    EventNotifier e;
    g_assert_cmpint(event_notifier_init(&e, 1), ==, 0);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);
    event_notifier_cleanup(&e);
}

static void test_set_and_clear(void)
{
    EventNotifier e;
    g_assert_cmpint(event_notifier_init(&e, 0), ==, 0);
    g_assert_cmpint(event_notifier_set(&e), ==, 0);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);

    /* Many sets collapse into one "set" state. */
    for (int i = 0; i < 1000; i++) {
        g_assert_cmpint(event_notifier_set(&e), ==, 0);
    }
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);

    /* The fd really is readable when set, and not when clear. */
    uint64_t v;
    g_assert_cmpint(read(event_notifier_get_fd(&e), &v, sizeof(v)), ==, -1);
    g_assert_cmpint(errno, ==, EAGAIN);
    event_notifier_set(&e);
    g_assert_cmpint(read(event_notifier_get_fd(&e), &v, sizeof(v)), ==, sizeof(v));
    g_assert_cmpuint(v, >=, 1);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);
    event_notifier_cleanup(&e);
}

static void test_cleanup_idempotent(void)
{
    EventNotifier e;
    g_assert_cmpint(event_notifier_init(&e, 1), ==, 0);
    int fd = e.rfd;
    event_notifier_cleanup(&e);
    g_assert_false(e.initialized);
    g_assert_false(fd_is_open(fd));

    /* A second cleanup must not close an fd that now means something else. */
    int other = eventfd(0, EFD_CLOEXEC);
    g_assert_cmpint(other, >=, 0);
    event_notifier_cleanup(&e);
    event_notifier_cleanup(&e);
    g_assert_false(e.initialized);
    if (other == fd) {
        g_assert_true(fd_is_open(other));
    }
    g_assert_true(fd_is_open(other));
    close(other);

    /* Re-initializing after cleanup works. */
    g_assert_cmpint(event_notifier_init(&e, 0), ==, 0);
    g_assert_cmpint(event_notifier_set(&e), ==, 0);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    event_notifier_cleanup(&e);
}

static void test_init_fd(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    EventNotifier e;
    memset(&e, 0, sizeof(e));
    event_notifier_init_fd(&e, fd);
    g_assert_true(e.initialized);
    g_assert_cmpint(event_notifier_get_fd(&e), ==, fd);
    g_assert_cmpint(event_notifier_get_wfd(&e), ==, fd);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 0);

    uint64_t one = 1;
    g_assert_cmpint(write(fd, &one, sizeof(one)), ==, sizeof(one));
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    g_assert_cmpint(event_notifier_set(&e), ==, 0);
    uint64_t v = 0;
    g_assert_cmpint(read(fd, &v, sizeof(v)), ==, sizeof(v));
    g_assert_cmpuint(v, ==, 1);

    event_notifier_cleanup(&e);
    g_assert_false(fd_is_open(fd));
}

/* ---- aio_set_event_notifier ---- */

typedef struct {
    EventNotifier e;
    AioContext *ctx;
    int calls;
    bool clear;      /* test_and_clear in the handler */
    bool remove_self;
    int cleared;     /* how many test_and_clear calls found it set */
} Notif;

static void notif_read(EventNotifier *e)
{
    Notif *n = (Notif *)e; /* e is the first member */
    n->calls++;
    if (n->clear) {
        n->cleared += event_notifier_test_and_clear(e);
    }
    if (n->remove_self) {
        aio_set_event_notifier(n->ctx, e, NULL, NULL, NULL);
    }
}

static void notif_init(Notif *n, AioContext *ctx)
{
    memset(n, 0, sizeof(*n));
    n->ctx = ctx;
    n->clear = true;
    g_assert_cmpint(event_notifier_init(&n->e, 0), ==, 0);
}

static void *set_after_delay(void *opaque)
{
    EventNotifier *e = opaque;
    sleep_ns(20 * MS);
    g_assert_cmpint(event_notifier_set(e), ==, 0);
    return NULL;
}

static void test_wait_cross_thread(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif n;
    notif_init(&n, ctx);
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    g_assert_false(aio_poll(ctx, false)); /* not set: nothing to do */
    assert_backend(ctx);
    g_assert_cmpint(n.calls, ==, 0);

    for (int round = 0; round < 3; round++) {
        pthread_t th;
        int before = n.calls;
        pthread_create(&th, NULL, set_after_delay, &n.e);
        /* Blocking polls until the other thread's set arrives. */
        bool progress = false;
        while (n.calls == before) {
            progress = aio_poll(ctx, true);
        }
        g_assert_true(progress);
        g_assert_cmpint(n.calls, ==, before + 1);
        pthread_join(th, NULL);
    }
    g_assert_cmpint(n.cleared, ==, 3);
    g_assert_false(aio_poll(ctx, false));

    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    event_notifier_cleanup(&n.e);
    aio_context_unref(ctx);
}

static void test_flush(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif n;
    notif_init(&n, ctx);
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);

    for (int i = 0; i < 100; i++) {
        event_notifier_set(&n.e);
    }
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 1);
    g_assert_cmpint(n.cleared, ==, 1);
    /* Flushed: nothing more, blocking or not. */
    g_assert_false(aio_poll(ctx, false));
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 1);

    /* Set from another thread many times while nobody polls: still one. */
    pthread_t th;
    pthread_create(&th, NULL, set_after_delay, &n.e);
    pthread_join(th, NULL);
    for (int i = 0; i < 10; i++) {
        event_notifier_set(&n.e);
    }
    while (aio_poll(ctx, false)) {
    }
    g_assert_cmpint(n.calls, ==, 2);
    assert_backend(ctx);

    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    event_notifier_cleanup(&n.e);
    aio_context_unref(ctx);
}

/* A handler that does not clear keeps being called (level-triggered). */
static void test_level_triggered(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif n;
    notif_init(&n, ctx);
    n.clear = false;
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    event_notifier_set(&n.e);
    for (int i = 1; i <= 3; i++) {
        g_assert_true(aio_poll(ctx, true));
        g_assert_cmpint(n.calls, ==, i);
    }
    g_assert_cmpint(event_notifier_test_and_clear(&n.e), ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 3);

    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    event_notifier_cleanup(&n.e);
    aio_context_unref(ctx);
}

static void test_add_remove_while_pending(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif n;
    notif_init(&n, ctx);

    /* Set before registration, removed before any poll. */
    event_notifier_set(&n.e);
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 0);

    /* Registered and polled (so the monitor watches it), then set, then removed. */
    event_notifier_test_and_clear(&n.e);
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    g_assert_false(aio_poll(ctx, false));
    event_notifier_set(&n.e);
    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    g_assert_false(aio_poll(ctx, false));
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 0);
    /* Still set: removal does not consume the notification. */
    g_assert_cmpint(event_notifier_test_and_clear(&n.e), ==, 1);

    /* Re-adding a pending notifier dispatches it. */
    event_notifier_set(&n.e);
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n.calls, ==, 1);

    aio_set_event_notifier(ctx, &n.e, NULL, NULL, NULL);
    event_notifier_cleanup(&n.e);
    aio_context_unref(ctx);
}

/* A removed notifier can be closed and its fd number reused by a new one. */
static void test_remove_close_reuse(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif a, b;
    notif_init(&a, ctx);
    aio_set_event_notifier(ctx, &a.e, notif_read, NULL, NULL);
    event_notifier_set(&a.e);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(a.calls, ==, 1);
    int old_fd = a.e.rfd;
    aio_set_event_notifier(ctx, &a.e, NULL, NULL, NULL);
    event_notifier_cleanup(&a.e);

    notif_init(&b, ctx);
    g_assert_cmpint(b.e.rfd, ==, old_fd); /* lowest free number */
    aio_set_event_notifier(ctx, &b.e, notif_read, NULL, NULL);
    g_assert_false(aio_poll(ctx, false));
    event_notifier_set(&b.e);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(b.calls, ==, 1);
    g_assert_cmpint(a.calls, ==, 1);

    aio_set_event_notifier(ctx, &b.e, NULL, NULL, NULL);
    event_notifier_cleanup(&b.e);
    aio_context_unref(ctx);
}

static void test_remove_in_own_handler(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Notif n;
    notif_init(&n, ctx);
    n.clear = false; /* stays set: would run again if still registered */
    n.remove_self = true;
    aio_set_event_notifier(ctx, &n.e, notif_read, NULL, NULL);
    event_notifier_set(&n.e);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(n.calls, ==, 1);
    for (int i = 0; i < 3; i++) {
        g_assert_false(aio_poll(ctx, false));
    }
    g_assert_cmpint(n.calls, ==, 1);
    g_assert_cmpint(event_notifier_test_and_clear(&n.e), ==, 1);
    event_notifier_cleanup(&n.e);
    aio_context_unref(ctx);
}

/* Two notifiers set together: the first to run removes both. */
typedef struct {
    EventNotifier e;
    AioContext *ctx;
    EventNotifier *other;
    int *calls;
} Pair;

static void pair_read(EventNotifier *e)
{
    Pair *p = (Pair *)e;
    (*p->calls)++;
    aio_set_event_notifier(p->ctx, p->other, NULL, NULL, NULL);
    aio_set_event_notifier(p->ctx, e, NULL, NULL, NULL);
}

static void test_remove_other_pending(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int calls = 0;
    Pair a = { .ctx = ctx, .calls = &calls }, b = { .ctx = ctx, .calls = &calls };
    g_assert_cmpint(event_notifier_init(&a.e, 1), ==, 0);
    g_assert_cmpint(event_notifier_init(&b.e, 1), ==, 0);
    a.other = &b.e;
    b.other = &a.e;
    aio_set_event_notifier(ctx, &a.e, pair_read, NULL, NULL);
    aio_set_event_notifier(ctx, &b.e, pair_read, NULL, NULL);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(calls, ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(calls, ==, 1);
    event_notifier_cleanup(&a.e);
    event_notifier_cleanup(&b.e);
    aio_context_unref(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/event/notifier/init-inactive", test_init_inactive);
    g_test_add_func("/event/notifier/init-active", test_init_active);
    g_test_add_func("/event/notifier/set-and-clear", test_set_and_clear);
    g_test_add_func("/event/notifier/cleanup-idempotent", test_cleanup_idempotent);
    g_test_add_func("/event/notifier/init-fd", test_init_fd);
    g_test_add_func("/event/aio/wait-cross-thread", test_wait_cross_thread);
    g_test_add_func("/event/aio/flush", test_flush);
    g_test_add_func("/event/aio/level-triggered", test_level_triggered);
    g_test_add_func("/event/aio/add-remove-while-pending", test_add_remove_while_pending);
    g_test_add_func("/event/aio/remove-close-reuse", test_remove_close_reuse);
    g_test_add_func("/event/aio/remove-in-own-handler", test_remove_in_own_handler);
    g_test_add_func("/event/aio/remove-other-pending", test_remove_other_pending);
    return g_test_run();
}
