/*
 * qemu_cond_wait_bql / qemu_cond_timedwait_bql (waiting on a QemuCond
 * with the BQL, released while asleep and held again on return) and the
 * main-loop poll notifiers (main_loop_poll_add/remove_notifier, a
 * MainLoopPoll in state FILL before main_loop_wait polls, OK or ERR after).
 * Death tests: waiting without the BQL, notifier misuse.
 */
#include "aioctx.h"
#include "qemu/main-loop.h"
#include "qemu/notify.h"
#include "qemu/thread.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- qemu_cond_wait_bql ------------------------------------------------ */

typedef struct {
    QemuCond cond;
    bool timed;           /* the waiter uses qemu_cond_timedwait_bql */
    bool go;              /* protected by the BQL */
    atomic_int started;   /* the waiter holds the BQL and is about to wait */
    atomic_int main_holds;/* the main thread holds the BQL */
    atomic_int returned;  /* the waiter's wait returned */
    bool locked_after;    /* bql_locked() in the waiter after the wait */
    bool main_held_at_return;
    bool timed_result;
    int waits;
} CondBqlTest;

static void *bql_waiter(void *opaque)
{
    CondBqlTest *t = opaque;

    bql_lock();
    atomic_store(&t->started, 1);
    while (!t->go) {
        t->waits++;
        if (t->timed) {
            t->timed_result = qemu_cond_timedwait_bql(&t->cond, 20000);
        } else {
            qemu_cond_wait_bql(&t->cond);
        }
        /* the wait returns holding the BQL, so the main thread cannot */
        t->main_held_at_return = t->main_held_at_return || atomic_load(&t->main_holds);
    }
    t->locked_after = bql_locked();
    atomic_store(&t->returned, 1);
    bql_unlock();
    return NULL;
}

static void run_cond_bql(bool timed)
{
    CondBqlTest t;
    Watchdog wd;
    pthread_t th;

    memset(&t, 0, sizeof(t));
    t.timed = timed;
    qemu_cond_init(&t.cond);
    watchdog_start(&wd, timed ? "qemu_cond_timedwait_bql" : "qemu_cond_wait_bql", 30);
    g_assert_cmpint(pthread_create(&th, NULL, bql_waiter, &t), ==, 0);
    while (!atomic_load(&t.started)) {
        g_usleep(1000);
    }
    /* The waiter took the BQL first: this succeeds only once it sleeps. */
    bql_lock();
    atomic_store(&t.main_holds, 1);
    g_assert_true(bql_locked());
    g_assert_cmpint(t.waits, >=, 1);
    t.go = true;
    qemu_cond_signal(&t.cond);
    /* Signalled, but the waiter cannot return before it has the BQL. */
    g_usleep(50 * 1000);
    g_assert_cmpint(atomic_load(&t.returned), ==, 0);
    atomic_store(&t.main_holds, 0);
    bql_unlock();
    pthread_join(th, NULL);
    watchdog_stop(&wd);

    g_assert_cmpint(atomic_load(&t.returned), ==, 1);
    g_assert_true(t.locked_after);
    g_assert_false(t.main_held_at_return);
    if (timed) {
        g_assert_true(t.timed_result);
    }
    g_assert_false(bql_locked());
    qemu_cond_destroy(&t.cond);
}

static void test_cond_wait_bql(void)
{
    run_cond_bql(false);
}

static void test_cond_timedwait_bql_signalled(void)
{
    run_cond_bql(true);
}

static void test_cond_timedwait_bql_timeout(void)
{
    QemuCond cond;
    int64_t t0, elapsed;

    qemu_cond_init(&cond);
    bql_lock();
    t0 = now_ms();
    g_assert_false(qemu_cond_timedwait_bql(&cond, 60));
    elapsed = now_ms() - t0;
    g_assert_true(bql_locked());
    g_assert_cmpint(elapsed, >=, 55);
    g_assert_cmpint(elapsed, <, 10000);
    /* still usable: a zero timeout times out at once */
    g_assert_false(qemu_cond_timedwait_bql(&cond, 0));
    g_assert_true(bql_locked());
    bql_unlock();
    g_assert_false(bql_locked());
    qemu_cond_destroy(&cond);
}

/* While one thread sleeps in the wait, the main context is not "current"
 * for it any more, but another thread holding the BQL sees it. */
static void *bql_probe(void *opaque)
{
    bool *saw = opaque;

    bql_lock();
    *saw = bql_locked() && qemu_get_current_aio_context() == qemu_get_aio_context();
    bql_unlock();
    return NULL;
}

static void test_cond_timedwait_bql_lets_others_in(void)
{
    QemuCond cond;
    pthread_t th;
    bool saw = false;
    Watchdog wd;

    qemu_cond_init(&cond);
    watchdog_start(&wd, "timedwait lets others in", 30);
    bql_lock();
    g_assert_cmpint(pthread_create(&th, NULL, bql_probe, &saw), ==, 0);
    /* the probe can only finish while we sleep without the BQL */
    while (!saw) {
        qemu_cond_timedwait_bql(&cond, 10);
        g_assert_true(bql_locked());
    }
    bql_unlock();
    pthread_join(th, NULL);
    watchdog_stop(&wd);
    qemu_cond_destroy(&cond);
}

/* ---- main-loop poll notifiers ------------------------------------------ */

typedef struct PollRec {
    Notifier n;
    int fd;            /* polled for G_IO_IN if >= 0 */
    int set_timeout;   /* if >= 0, FILL lowers the timeout to this */
    int index;         /* where its GPollFD went in pollfds */
    int states[8];
    int nstates;
    int fill_timeout;  /* the timeout FILL saw */
    gushort revents;
    int *order;        /* appended its id on FILL */
    int *norder;
    int id;
    bool remove_self_on_ok;
    struct PollRec *remove_other_on_fill;
} PollRec;

static void poll_notify(Notifier *n, void *data)
{
    PollRec *r = container_of(n, PollRec, n);
    MainLoopPoll *p = data;

    if (r->nstates < 8) {
        r->states[r->nstates++] = p->state;
    }
    if (p->state == MAIN_LOOP_POLL_FILL) {
        r->fill_timeout = p->timeout;
        if (r->order) {
            r->order[(*r->norder)++] = r->id;
        }
        if (r->fd >= 0) {
            GPollFD pfd = { .fd = r->fd, .events = G_IO_IN, .revents = 0 };

            r->index = p->pollfds->len;
            g_array_append_val(p->pollfds, pfd);
        }
        if (r->set_timeout >= 0 && (unsigned)r->set_timeout < (unsigned)p->timeout) {
            p->timeout = r->set_timeout;
        }
        if (r->remove_other_on_fill) {
            main_loop_poll_remove_notifier(&r->remove_other_on_fill->n);
        }
    } else if (r->fd >= 0) {
        r->revents = g_array_index(p->pollfds, GPollFD, r->index).revents;
    }
    if (p->state != MAIN_LOOP_POLL_FILL && r->remove_self_on_ok) {
        main_loop_poll_remove_notifier(n);
    }
}

static void poll_rec_init(PollRec *r, int fd)
{
    memset(r, 0, sizeof(*r));
    r->n.notify = poll_notify;
    r->fd = fd;
    r->set_timeout = -1;
    r->index = -1;
}

static void test_poll_layout(void)
{
    g_assert_cmpuint(sizeof(MainLoopPoll), ==, 24);
    g_assert_cmpuint(offsetof(MainLoopPoll, state), ==, 0);
    g_assert_cmpuint(offsetof(MainLoopPoll, pollfds), ==, 8);
    g_assert_cmpuint(offsetof(MainLoopPoll, timeout), ==, 16);
    g_assert_cmpint(MAIN_LOOP_POLL_FILL, ==, 0);
    g_assert_cmpint(MAIN_LOOP_POLL_ERR, ==, 1);
    g_assert_cmpint(MAIN_LOOP_POLL_OK, ==, 2);
}

/* A blocking main_loop_wait returns because the notifier's own fd became
 * readable: it is polled together with GLib's. */
static void test_poll_notifier_fd(void)
{
    int fds[2];
    PollRec r;
    Watchdog wd;
    char c = 'x';

    g_assert_cmpint(pipe(fds), ==, 0);
    poll_rec_init(&r, fds[0]);
    main_loop_poll_add_notifier(&r.n);
    g_assert_cmpint(write(fds[1], &c, 1), ==, 1);
    watchdog_start(&wd, "main_loop_wait on a notifier fd", 30);
    main_loop_wait(false);
    watchdog_stop(&wd);
    g_assert_cmpint(r.nstates, ==, 2);
    g_assert_cmpint(r.states[0], ==, MAIN_LOOP_POLL_FILL);
    g_assert_cmpint(r.states[1], ==, MAIN_LOOP_POLL_OK);
    g_assert_cmpint(r.fill_timeout, ==, -1); /* UINT32_MAX: infinite */
    g_assert_cmpint(r.index, ==, 0);         /* the notifiers' fds come first */
    g_assert_true(r.revents & G_IO_IN);

    /* nonblocking: FILL sees 0; nothing readable any more after the read */
    g_assert_cmpint(read(fds[0], &c, 1), ==, 1);
    r.nstates = 0;
    main_loop_wait(true);
    g_assert_cmpint(r.nstates, ==, 2);
    g_assert_cmpint(r.fill_timeout, ==, 0);
    g_assert_cmpint(r.states[1], ==, MAIN_LOOP_POLL_OK);
    g_assert_false(r.revents & G_IO_IN);

    main_loop_poll_remove_notifier(&r.n);
    r.nstates = 0;
    main_loop_wait(true);
    g_assert_cmpint(r.nstates, ==, 0);
    close(fds[0]);
    close(fds[1]);
}

/* A notifier lowering the timeout bounds a blocking main_loop_wait. */
static void test_poll_notifier_timeout(void)
{
    PollRec r;
    Watchdog wd;
    int64_t t0, elapsed;

    poll_rec_init(&r, -1);
    r.set_timeout = 40;
    main_loop_poll_add_notifier(&r.n);
    watchdog_start(&wd, "main_loop_wait with a notifier timeout", 30);
    t0 = now_ms();
    main_loop_wait(false);
    elapsed = now_ms() - t0;
    watchdog_stop(&wd);
    main_loop_poll_remove_notifier(&r.n);
    g_assert_cmpint(r.nstates, ==, 2);
    g_assert_cmpint(r.states[1], ==, MAIN_LOOP_POLL_OK);
    g_assert_cmpint(elapsed, >=, 30);
    g_assert_cmpint(elapsed, <, 10000);
}

/* Newest first; removing itself or a later one from a callback. */
static void test_poll_notifier_order_and_removal(void)
{
    PollRec a, b, c;
    int order[8], norder = 0;

    poll_rec_init(&a, -1);
    poll_rec_init(&b, -1);
    poll_rec_init(&c, -1);
    a.id = 1, b.id = 2, c.id = 3;
    a.order = b.order = c.order = order;
    a.norder = b.norder = c.norder = &norder;
    main_loop_poll_add_notifier(&a.n);
    main_loop_poll_add_notifier(&b.n);
    main_loop_poll_add_notifier(&c.n);
    main_loop_wait(true);
    g_assert_cmpint(norder, ==, 3);
    g_assert_cmpint(order[0], ==, 3);
    g_assert_cmpint(order[1], ==, 2);
    g_assert_cmpint(order[2], ==, 1);

    /* c (first) removes a (last) during FILL: a runs no more; b removes
     * itself after the poll */
    c.remove_other_on_fill = &a;
    b.remove_self_on_ok = true;
    a.nstates = b.nstates = c.nstates = 0;
    main_loop_wait(true);
    g_assert_cmpint(a.nstates, ==, 0);
    g_assert_cmpint(b.nstates, ==, 2);
    g_assert_cmpint(c.nstates, ==, 2);
    c.remove_other_on_fill = NULL;
    a.nstates = b.nstates = c.nstates = 0;
    main_loop_wait(true);
    g_assert_cmpint(a.nstates, ==, 0);
    g_assert_cmpint(b.nstates, ==, 0);
    g_assert_cmpint(c.nstates, ==, 2);
    main_loop_poll_remove_notifier(&c.n);
}

/* A poll interrupted by a signal: state MAIN_LOOP_POLL_ERR. */
static void on_sigusr1(int sig)
{
    (void)sig;
}

typedef struct {
    pthread_t target;
    atomic_int stop;
} Kicker;

static void *kicker(void *opaque)
{
    Kicker *k = opaque;

    /* keep kicking until the main loop noticed (the first kick may come
     * before it is in poll) */
    while (!atomic_load(&k->stop)) {
        g_usleep(20 * 1000);
        pthread_kill(k->target, SIGUSR1);
    }
    return NULL;
}

static void test_poll_notifier_err(void)
{
    struct sigaction sa, old;
    PollRec r;
    Kicker k = { .target = pthread_self() };
    pthread_t th;
    Watchdog wd;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigusr1; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    g_assert_cmpint(sigaction(SIGUSR1, &sa, &old), ==, 0);
    poll_rec_init(&r, -1);
    main_loop_poll_add_notifier(&r.n);
    watchdog_start(&wd, "main_loop_wait interrupted by a signal", 30);
    g_assert_cmpint(pthread_create(&th, NULL, kicker, &k), ==, 0);
    main_loop_wait(false); /* nothing else would end this wait */
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    watchdog_stop(&wd);
    main_loop_poll_remove_notifier(&r.n);
    sigaction(SIGUSR1, &old, NULL);
    g_assert_cmpint(r.nstates, ==, 2);
    g_assert_cmpint(r.states[0], ==, MAIN_LOOP_POLL_FILL);
    g_assert_cmpint(r.states[1], ==, MAIN_LOOP_POLL_ERR);
}

/* GLib sources still run: a BH of the main context, with a notifier. */
static void count_bh(void *opaque)
{
    (*(int *)opaque)++;
}

static void test_poll_notifier_with_glib_sources(void)
{
    PollRec r;
    int n = 0;
    QEMUBH *bh = qemu_bh_new(count_bh, &n);
    Watchdog wd;

    poll_rec_init(&r, -1);
    main_loop_poll_add_notifier(&r.n);
    qemu_bh_schedule(bh);
    watchdog_start(&wd, "main_loop_wait runs a BH", 30);
    main_loop_wait(false);
    watchdog_stop(&wd);
    g_assert_cmpint(n, ==, 1);
    g_assert_cmpint(r.nstates, ==, 2);
    g_assert_cmpint(r.states[1], ==, MAIN_LOOP_POLL_OK);
    main_loop_poll_remove_notifier(&r.n);
    qemu_bh_delete(bh);
}

/* A caller holding the BQL releases it while main_loop_wait sleeps, and
 * has it again on return (QEMU's os_host_main_loop_wait). */
static void *take_bql_and_notify(void *opaque)
{
    atomic_int *took = opaque;

    bql_lock();
    atomic_store(took, 1);
    bql_unlock();
    qemu_notify_event();
    return NULL;
}

static void test_main_loop_wait_releases_bql(void)
{
    atomic_int took = 0;
    pthread_t th;
    Watchdog wd;

    watchdog_start(&wd, "main_loop_wait releases the BQL", 30);
    bql_lock();
    g_assert_cmpint(pthread_create(&th, NULL, take_bql_and_notify, &took), ==, 0);
    while (!atomic_load(&took)) {
        main_loop_wait(false);
        g_assert_true(bql_locked());
    }
    bql_unlock();
    pthread_join(th, NULL);
    watchdog_stop(&wd);
}

/* ---- death tests -------------------------------------------------------- */

typedef enum {
    DEATH_WAIT_NO_BQL,
    DEATH_TIMEDWAIT_NO_BQL,
    DEATH_WAIT_UNINITIALIZED,
    DEATH_WAIT_NULL,
    DEATH_REMOVE_UNREGISTERED,
    DEATH_ADD_TWICE,
    DEATH_ADD_NULL_NOTIFY,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/bql-cond/death/wait-without-bql", DEATH_WAIT_NO_BQL,
      "*aioctx: qemu_cond_wait_bql: this thread does not hold the BQL*" },
    { "/bql-cond/death/timedwait-without-bql", DEATH_TIMEDWAIT_NO_BQL,
      "*aioctx: qemu_cond_timedwait_bql: this thread does not hold the BQL*" },
    { "/bql-cond/death/wait-uninitialized", DEATH_WAIT_UNINITIALIZED,
      "*aioctx: qemu_cond_wait_bql: *not initialized*" },
    { "/bql-cond/death/wait-null", DEATH_WAIT_NULL,
      "*aioctx: qemu_cond_wait_bql: *NULL*" },
    { "/main-loop/poll-notifier/death/remove-unregistered", DEATH_REMOVE_UNREGISTERED,
      "*aioctx: main_loop_poll_remove_notifier: *not a main-loop poll notifier*" },
    { "/main-loop/poll-notifier/death/add-twice", DEATH_ADD_TWICE,
      "*aioctx: main_loop_poll_add_notifier: *already a main-loop poll notifier*" },
    { "/main-loop/poll-notifier/death/add-null-notify", DEATH_ADD_NULL_NOTIFY,
      "*aioctx: main_loop_poll_add_notifier: *NULL*" },
};

static void run_death_case(int which)
{
    static QemuCond cond;
    static PollRec r;

    poll_rec_init(&r, -1); /* for the notifier cases */
    switch ((DeathCase)which) {
    case DEATH_WAIT_NO_BQL:
        qemu_cond_init(&cond);
        qemu_cond_wait_bql(&cond);
        break;
    case DEATH_TIMEDWAIT_NO_BQL:
        qemu_cond_init(&cond);
        qemu_cond_timedwait_bql(&cond, 10);
        break;
    case DEATH_WAIT_UNINITIALIZED:
        memset(&cond, 0, sizeof(cond));
        bql_lock();
        qemu_cond_wait_bql(&cond);
        break;
    case DEATH_WAIT_NULL:
        bql_lock();
        qemu_cond_wait_bql(NULL);
        break;
    case DEATH_REMOVE_UNREGISTERED:
        main_loop_poll_remove_notifier(&r.n);
        break;
    case DEATH_ADD_TWICE:
        main_loop_poll_add_notifier(&r.n);
        main_loop_poll_add_notifier(&r.n);
        break;
    case DEATH_ADD_NULL_NOTIFY:
        r.n.notify = NULL;
        main_loop_poll_add_notifier(&r.n);
        break;
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/bql-cond/wait", test_cond_wait_bql);
    g_test_add_func("/bql-cond/timedwait/signalled", test_cond_timedwait_bql_signalled);
    g_test_add_func("/bql-cond/timedwait/timeout", test_cond_timedwait_bql_timeout);
    g_test_add_func("/bql-cond/timedwait/lets-others-in", test_cond_timedwait_bql_lets_others_in);
    g_test_add_func("/main-loop/poll-notifier/layout", test_poll_layout);
    g_test_add_func("/main-loop/poll-notifier/fd", test_poll_notifier_fd);
    g_test_add_func("/main-loop/poll-notifier/timeout", test_poll_notifier_timeout);
    g_test_add_func("/main-loop/poll-notifier/order-and-removal",
                    test_poll_notifier_order_and_removal);
    g_test_add_func("/main-loop/poll-notifier/err", test_poll_notifier_err);
    g_test_add_func("/main-loop/poll-notifier/glib-sources", test_poll_notifier_with_glib_sources);
    g_test_add_func("/main-loop/wait-releases-bql", test_main_loop_wait_releases_bql);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
    return g_test_run();
}
