/*
 * fd handlers (aio_set_fd_handler): read/write readiness on pipes and
 * socketpairs, read-before-write order, removal from inside handlers
 * (own and other ready handler), changing handlers in place, removal of an
 * fd never added, 1000 fds with one active, adding an invalid fd (death
 * tests), aio_poll's return value, and dispatch order BH -> fd -> timer.
 *
 * Runs once per fd monitoring backend (AIOCTX_FDMON); when the variable is
 * set, the tests check that the backend in use is the forced one.
 *
 * Each test arms a watchdog (alarm) so that a lost wakeup fails the run
 * instead of hanging it.
 */
#define _GNU_SOURCE
#include "aioctx.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define WATCHDOG() alarm(30)

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { ns / 1000000000, ns % 1000000000 };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static const char *forced_backend(void)
{
    const char *forced = getenv("AIOCTX_FDMON");
    return forced && *forced ? forced : NULL;
}

/* The backend a context watching a few fds must use. */
static void assert_backend(AioContext *ctx, const char *dflt)
{
    const char *forced = forced_backend();
    g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, forced ? forced : dflt);
}

static void make_pipe(int p[2])
{
    g_assert_cmpint(pipe2(p, O_NONBLOCK | O_CLOEXEC), ==, 0);
}

static void make_socketpair(int sv[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), ==, 0);
}

static void write_byte(int fd)
{
    char c = 'x';
    g_assert_cmpint(write(fd, &c, 1), ==, 1);
}

static int drain(int fd)
{
    char buf[4096];
    int total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0) {
        total += r;
    }
    return total;
}

/* ---- a recorder: handlers append a letter to a shared log ---- */

typedef struct {
    AioContext *ctx;
    int fd;
    char tag;          /* letter logged by this handler */
    int reads, writes;
    bool drain;        /* io_read drains the fd */
    bool remove_self;  /* io_read removes this fd's handlers */
    int remove_fd;     /* io_read removes this other fd (-1: none) */
    GString *log;
} Rec;

static void rec_read(void *opaque)
{
    Rec *r = opaque;
    r->reads++;
    if (r->log) {
        g_string_append_c(r->log, r->tag);
        g_string_append_c(r->log, 'r');
    }
    if (r->drain) {
        drain(r->fd);
    }
    if (r->remove_self) {
        aio_set_fd_handler(r->ctx, r->fd, NULL, NULL, NULL, NULL, NULL);
    }
    if (r->remove_fd >= 0) {
        aio_set_fd_handler(r->ctx, r->remove_fd, NULL, NULL, NULL, NULL, NULL);
    }
}

static void rec_write(void *opaque)
{
    Rec *r = opaque;
    r->writes++;
    if (r->log) {
        g_string_append_c(r->log, r->tag);
        g_string_append_c(r->log, 'w');
    }
}

static void rec_init(Rec *r, AioContext *ctx, int fd, char tag, GString *log)
{
    memset(r, 0, sizeof(*r));
    r->ctx = ctx;
    r->fd = fd;
    r->tag = tag;
    r->drain = true;
    r->remove_fd = -1;
    r->log = log;
}

/* Watches fd for reading with r (rec_init defaults, no log). */
static void watch_read(Rec *r, AioContext *ctx, int fd, char tag)
{
    rec_init(r, ctx, fd, tag, NULL);
    aio_set_fd_handler(ctx, fd, rec_read, NULL, NULL, NULL, r);
}

static void remove_fd(AioContext *ctx, int fd)
{
    aio_set_fd_handler(ctx, fd, NULL, NULL, NULL, NULL, NULL);
}

/* Closes both ends of a pipe or socket pair. */
static void close_pair(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* Removes the handler of fds[0], then closes both ends of the pair. */
static void unwatch_close(AioContext *ctx, int fds[2])
{
    remove_fd(ctx, fds[0]);
    close_pair(fds);
}

/* ---- readiness ---- */

/* A context that never watched an fd has opened no fd monitor ("none"),
 * except with AIOCTX_FDMON=io_uring: that one is opened with the context,
 * so that aio_has_io_uring() is right before the first fd (io_uring, or
 * what it fell back to). */
static void assert_no_monitor_yet(AioContext *ctx)
{
    const char *forced = getenv("AIOCTX_FDMON");

    if (forced && strcmp(forced, "io_uring") == 0) {
        g_assert_cmpstr(aioctx_context_fdmon_name(ctx), !=, "none");
    } else {
        g_assert_cmpstr(aioctx_context_fdmon_name(ctx), ==, "none");
    }
}

static void test_backend_default(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    assert_no_monitor_yet(ctx);
    int p[2];
    make_pipe(p);
    Rec r;
    watch_read(&r, ctx, p[0], 'a');
    g_assert_false(aio_poll(ctx, false));
    assert_backend(ctx, "poll");
    unwatch_close(ctx, p);
    aio_context_unref(ctx);
}

static void test_pipe_read(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2];
    make_pipe(p);
    Rec r;
    watch_read(&r, ctx, p[0], 'a');
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(r.reads, ==, 0);

    write_byte(p[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r.reads, ==, 1);
    g_assert_false(aio_poll(ctx, false)); /* drained */
    g_assert_cmpint(r.reads, ==, 1);

    /* Level-triggered: not drained -> called on every iteration. */
    r.drain = false;
    write_byte(p[1]);
    g_assert_true(aio_poll(ctx, true));
    g_assert_true(aio_poll(ctx, true));
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r.reads, ==, 4);
    g_assert_cmpint(drain(p[0]), ==, 1);
    g_assert_false(aio_poll(ctx, false));
    assert_backend(ctx, "poll");

    /* The write end closed: io_read runs (HUP) and read returns 0. */
    r.drain = true;
    close(p[1]);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(r.reads, ==, 5);
    g_assert_cmpint(read(p[0], &(char){0}, 1), ==, 0);

    remove_fd(ctx, p[0]);
    close(p[0]);
    aio_context_unref(ctx);
}

static void test_pipe_write(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2];
    make_pipe(p);
    Rec w;
    rec_init(&w, ctx, p[1], 'w', NULL);
    aio_set_fd_handler(ctx, p[1], NULL, rec_write, NULL, NULL, &w);
    /* Writable: called on every iteration. */
    g_assert_true(aio_poll(ctx, true));
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(w.writes, ==, 2);
    g_assert_cmpint(w.reads, ==, 0);

    /* Full: not called. */
    char buf[4096];
    memset(buf, 'z', sizeof(buf));
    while (write(p[1], buf, sizeof(buf)) > 0) {
    }
    g_assert_cmpint(errno, ==, EAGAIN);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(w.writes, ==, 2);

    /* Drained: writable again. */
    drain(p[0]);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(w.writes, ==, 3);
    assert_backend(ctx, "poll");

    remove_fd(ctx, p[1]);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(w.writes, ==, 3);
    close_pair(p);
    aio_context_unref(ctx);
}

static void test_socketpair_read_before_write(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int sv[2];
    make_socketpair(sv);
    GString *log = g_string_new("");
    Rec r;
    rec_init(&r, ctx, sv[0], 'a', log);
    aio_set_fd_handler(ctx, sv[0], rec_read, rec_write, NULL, NULL, &r);

    /* Writable only. */
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "aw");

    /* Readable and writable in one iteration: read first. */
    g_string_truncate(log, 0);
    write_byte(sv[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "araw");
    assert_backend(ctx, "poll");

    /* Both directions on both ends: per fd read then write, fds in any order. */
    Rec s;
    rec_init(&s, ctx, sv[1], 'b', log);
    aio_set_fd_handler(ctx, sv[1], rec_read, rec_write, NULL, NULL, &s);
    write_byte(sv[0]);
    write_byte(sv[1]);
    g_string_truncate(log, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_true(strcmp(log->str, "arawbrbw") == 0 || strcmp(log->str, "brbwaraw") == 0);

    /* Peer closed: read (EOF) still runs before write. */
    remove_fd(ctx, sv[1]);
    close(sv[1]);
    g_string_truncate(log, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(log->len, >=, 2);
    g_assert_cmpint(log->str[0], ==, 'a');
    g_assert_cmpint(log->str[1], ==, 'r');

    remove_fd(ctx, sv[0]);
    close(sv[0]);
    g_string_free(log, TRUE);
    aio_context_unref(ctx);
}

/* ---- removal from inside handlers ---- */

static void test_remove_self_in_read(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int sv[2];
    make_socketpair(sv);
    GString *log = g_string_new("");
    Rec r;
    rec_init(&r, ctx, sv[0], 'a', log);
    r.drain = false; /* stays readable */
    r.remove_self = true;
    aio_set_fd_handler(ctx, sv[0], rec_read, rec_write, NULL, NULL, &r);
    write_byte(sv[1]);
    /* Readable and writable: read runs, removes, write must not run. */
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpstr(log->str, ==, "ar");
    for (int i = 0; i < 3; i++) {
        g_assert_false(aio_poll(ctx, false));
    }
    g_assert_cmpstr(log->str, ==, "ar");
    g_assert_cmpint(drain(sv[0]), ==, 1);
    close_pair(sv);
    g_string_free(log, TRUE);
    aio_context_unref(ctx);
}

static void test_remove_from_other_handler(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    for (int round = 0; round < 20; round++) {
        int p[2], q[2];
        make_pipe(p);
        make_pipe(q);
        GString *log = g_string_new("");
        Rec a, b;
        rec_init(&a, ctx, p[0], 'a', log);
        rec_init(&b, ctx, q[0], 'b', log);
        a.drain = b.drain = false; /* both stay readable */
        a.remove_fd = q[0];
        b.remove_fd = p[0];
        /* Alternate registration order so that both orders are exercised. */
        if (round & 1) {
            aio_set_fd_handler(ctx, p[0], rec_read, NULL, NULL, NULL, &a);
            aio_set_fd_handler(ctx, q[0], rec_read, NULL, NULL, NULL, &b);
        } else {
            aio_set_fd_handler(ctx, q[0], rec_read, NULL, NULL, NULL, &b);
            aio_set_fd_handler(ctx, p[0], rec_read, NULL, NULL, NULL, &a);
        }
        g_assert_false(aio_poll(ctx, false));
        write_byte(p[1]);
        write_byte(q[1]);
        g_assert_true(aio_poll(ctx, true));
        /* Whichever ran first removed the other, which must not have run. */
        g_assert_cmpint(a.reads + b.reads, ==, 1);
        g_assert_cmpuint(log->len, ==, 2);
        /* The survivor is still registered; it removes the (gone) other again: no-op. */
        Rec *survivor = a.reads ? &a : &b;
        survivor->remove_fd = -1;
        g_assert_true(aio_poll(ctx, false));
        g_assert_cmpint(survivor->reads, ==, 2);
        g_assert_cmpint(a.reads + b.reads, ==, 2);
        remove_fd(ctx, survivor->fd);
        g_assert_false(aio_poll(ctx, false));
        close_pair(p);
        close_pair(q);
        g_string_free(log, TRUE);
    }
    assert_backend(ctx, "poll");
    aio_context_unref(ctx);
}

/* The read handler of one fd removes another fd whose *write* is ready. */
static void test_remove_other_writer(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    GString *log = g_string_new("");
    Rec a, b, c;
    rec_init(&a, ctx, p[0], 'a', log);
    rec_init(&b, ctx, q[1], 'b', log);
    rec_init(&c, ctx, p[1], 'c', log);
    a.remove_fd = q[1];
    c.remove_fd = -1;
    b.remove_fd = -1;
    aio_set_fd_handler(ctx, p[0], rec_read, NULL, NULL, NULL, &a);
    aio_set_fd_handler(ctx, q[1], NULL, rec_write, NULL, NULL, &b);
    g_assert_true(aio_poll(ctx, false)); /* b writable */
    g_assert_cmpstr(log->str, ==, "bw");
    g_string_truncate(log, 0);
    /* Now a is readable and b is writable: if a runs first b must not. */
    write_byte(p[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_true(strcmp(log->str, "ar") == 0 || strcmp(log->str, "bwar") == 0);
    g_string_truncate(log, 0);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "");
    unwatch_close(ctx, p);
    close_pair(q);
    g_string_free(log, TRUE);
    aio_context_unref(ctx);
}

/* ---- changing handlers in place ---- */

static int alt_reads;
static void alt_read(void *opaque)
{
    Rec *r = opaque;
    alt_reads++;
    drain(r->fd);
}

/* io_read that replaces itself with alt_read (same fd, same iteration). */
static void switch_read(void *opaque)
{
    Rec *r = opaque;
    r->reads++;
    aio_set_fd_handler(r->ctx, r->fd, alt_read, NULL, NULL, NULL, r);
}

static void test_change_in_place(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int sv[2];
    make_socketpair(sv);
    Rec r1, r2;
    rec_init(&r1, ctx, sv[0], 'a', NULL);
    rec_init(&r2, ctx, sv[0], 'b', NULL);

    aio_set_fd_handler(ctx, sv[0], rec_read, NULL, NULL, NULL, &r1);
    write_byte(sv[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r1.reads, ==, 1);

    /* Same callbacks, other opaque. */
    aio_set_fd_handler(ctx, sv[0], rec_read, NULL, NULL, NULL, &r2);
    write_byte(sv[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r1.reads, ==, 1);
    g_assert_cmpint(r2.reads, ==, 1);

    /* Changed before the pending event is dispatched: the new one runs. */
    write_byte(sv[1]);
    aio_set_fd_handler(ctx, sv[0], rec_read, NULL, NULL, NULL, &r1);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r1.reads, ==, 2);
    g_assert_cmpint(r2.reads, ==, 1);

    /* Read -> write only: the write handler runs, not the read one. */
    aio_set_fd_handler(ctx, sv[0], NULL, rec_write, NULL, NULL, &r2);
    write_byte(sv[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r2.writes, ==, 1);
    g_assert_cmpint(r1.reads + r2.reads, ==, 3);
    drain(sv[0]);

    /* Write -> read only: a writable, not readable fd runs nothing. */
    aio_set_fd_handler(ctx, sv[0], rec_read, NULL, NULL, NULL, &r2);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(r2.writes, ==, 1);

    /* Replaced from inside its own handler: the old one never runs again;
     * the new one runs from the next iteration on. */
    aio_set_fd_handler(ctx, sv[0], switch_read, NULL, NULL, NULL, &r1);
    alt_reads = 0;
    int before = r1.reads;
    write_byte(sv[1]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r1.reads, ==, before + 1);
    g_assert_cmpint(alt_reads, <=, 1);
    if (alt_reads == 0) {
        g_assert_true(aio_poll(ctx, false));
    }
    g_assert_cmpint(alt_reads, ==, 1);
    g_assert_cmpint(r1.reads, ==, before + 1);
    g_assert_false(aio_poll(ctx, false));
    assert_backend(ctx, "poll");

    unwatch_close(ctx, sv);
    aio_context_unref(ctx);
}

static void test_remove_never_added(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2];
    make_pipe(p);
    write_byte(p[1]);
    remove_fd(ctx, p[0]);          /* open, never added */
    remove_fd(ctx, 1000);          /* not even open */
    g_assert_false(aio_poll(ctx, false));
    assert_no_monitor_yet(ctx);

    /* Added, removed, removed again. */
    Rec r;
    watch_read(&r, ctx, p[0], 'a');
    remove_fd(ctx, p[0]);
    remove_fd(ctx, p[0]);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(r.reads, ==, 0);
    /* Removing after close is fine too (the fd is gone either way). */
    aio_set_fd_handler(ctx, p[0], rec_read, NULL, NULL, NULL, &r);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(r.reads, ==, 1);
    int fd = p[0];
    remove_fd(ctx, fd);
    close(fd);
    remove_fd(ctx, fd);
    g_assert_false(aio_poll(ctx, false));
    close(p[1]);
    aio_context_unref(ctx);
}

/* Remove, close, reuse the fd number for another file: only the new
 * handler runs, for the new file. */
static void test_remove_close_reuse(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2];
    make_pipe(p);
    Rec a, b;
    watch_read(&a, ctx, p[0], 'a');
    g_assert_false(aio_poll(ctx, false));
    int old = p[0];
    remove_fd(ctx, old);
    close_pair(p);

    int q[2];
    make_pipe(q);
    g_assert_cmpint(q[0], ==, old);
    watch_read(&b, ctx, q[0], 'b');
    g_assert_false(aio_poll(ctx, false));
    write_byte(q[1]);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(b.reads, ==, 1);
    g_assert_cmpint(a.reads, ==, 0);

    unwatch_close(ctx, q);
    aio_context_unref(ctx);
}

/* The peer of a socket that was removed and then closed sees it closed at
 * once: the monitor must not keep the file open (an armed io_uring poll
 * holds a reference to it) until the context polls again. */
static void test_remove_close_peer_sees_eof(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int sv[2];
    make_socketpair(sv);
    Rec s;
    watch_read(&s, ctx, sv[0], 's');
    g_assert_false(aio_poll(ctx, false)); /* now watched by the monitor */
    remove_fd(ctx, sv[0]);
    close(sv[0]);
    char c;
    ssize_t r = read(sv[1], &c, 1);
    if (r != 0) {
        /* Not fatal: the other tests of the program still run. */
        g_test_fail_printf("peer read %zd (%s), expected 0 (EOF): the %s monitor "
                           "still holds the removed socket open",
                           r, r < 0 ? g_strerror(errno) : "data",
                           aioctx_context_fdmon_name(ctx));
    }
    close(sv[1]);
    g_assert_false(aio_poll(ctx, false));
    aio_context_unref(ctx);
}

/* ---- many fds ---- */

#define MANY 1000

typedef struct {
    int fd;
    int calls;
} Efd;

static void efd_read(void *opaque)
{
    Efd *e = opaque;
    uint64_t v;
    e->calls++;
    g_assert_cmpint(read(e->fd, &v, sizeof(v)), ==, sizeof(v));
}

static bool raise_nofile(int need)
{
    struct rlimit rl;
    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &rl), ==, 0);
    if (rl.rlim_cur < (rlim_t)need) {
        if (rl.rlim_max < (rlim_t)need) {
            return false;
        }
        rl.rlim_cur = need;
        g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &rl), ==, 0);
    }
    return true;
}

static void test_many_fds_one_active(void)
{
    WATCHDOG();
    if (!raise_nofile(MANY + 64)) {
        g_test_skip("RLIMIT_NOFILE hard limit below 1064");
        return;
    }
    AioContext *ctx = aio_context_new(&error_abort);
    Efd *e = g_new0(Efd, MANY);
    for (int i = 0; i < MANY; i++) {
        e[i].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        g_assert_cmpint(e[i].fd, >=, 0);
        aio_set_fd_handler(ctx, e[i].fd, efd_read, NULL, NULL, NULL, &e[i]);
    }
    g_assert_false(aio_poll(ctx, false));
    assert_backend(ctx, "epoll");

    GRand *rand = g_rand_new_with_seed(42);
    for (int round = 0; round < 200; round++) {
        int k = g_rand_int_range(rand, 0, MANY);
        uint64_t one = 1;
        g_assert_cmpint(write(e[k].fd, &one, sizeof(one)), ==, sizeof(one));
        g_assert_true(aio_poll(ctx, true));
        g_assert_cmpint(e[k].calls, ==, 1);
        e[k].calls = 0;
        for (int i = 0; i < MANY; i += 37) {
            g_assert_cmpint(e[i].calls, ==, 0);
        }
    }
    int total = 0;
    for (int i = 0; i < MANY; i++) {
        total += e[i].calls;
    }
    g_assert_cmpint(total, ==, 0);
    g_assert_false(aio_poll(ctx, false));

    /* Back down to a few fds: still works (whatever the backend now). */
    for (int i = 10; i < MANY; i++) {
        remove_fd(ctx, e[i].fd);
        close(e[i].fd);
    }
    uint64_t one = 1;
    g_assert_cmpint(write(e[3].fd, &one, sizeof(one)), ==, sizeof(one));
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(e[3].calls, ==, 1);
    for (int i = 0; i < 10; i++) {
        remove_fd(ctx, e[i].fd);
        close(e[i].fd);
    }
    g_assert_false(aio_poll(ctx, false));
    g_rand_free(rand);
    g_free(e);
    aio_context_unref(ctx);
}

/* ---- invalid fds ---- */

static void noop_read(void *opaque)
{
    (void)opaque;
}

static void test_death_closed_fd(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = aio_context_new(&error_abort);
        int p[2];
        make_pipe(p);
        close(p[0]);
        aio_set_fd_handler(ctx, p[0], noop_read, NULL, NULL, NULL, NULL);
        aio_poll(ctx, false);
        return; /* not reached */
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: aio_set_fd_handler: *");
}

static void test_death_negative_fd(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = aio_context_new(&error_abort);
        aio_set_fd_handler(ctx, -1, noop_read, NULL, NULL, NULL, NULL);
        aio_poll(ctx, false);
        return; /* not reached */
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: aio_set_fd_handler: *");
}

/* ---- return value and wakeups ---- */

typedef struct {
    AioContext *ctx;
    int64_t delay_ns;
} NotifyArg;

static void *notify_after(void *opaque)
{
    NotifyArg *a = opaque;
    sleep_ns(a->delay_ns);
    aio_notify(a->ctx);
    return NULL;
}

static void test_notify_only_returns_false(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    /* Without fds. */
    aio_notify(ctx);
    g_assert_false(aio_poll(ctx, true));
    NotifyArg a = { ctx, 20 * MS };
    pthread_t th;
    pthread_create(&th, NULL, notify_after, &a);
    g_assert_false(aio_poll(ctx, true));
    pthread_join(th, NULL);

    /* With an idle fd registered (the monitor path). */
    int p[2];
    make_pipe(p);
    Rec r;
    watch_read(&r, ctx, p[0], 'a');
    g_assert_false(aio_poll(ctx, false));
    aio_notify(ctx);
    g_assert_false(aio_poll(ctx, true));
    pthread_create(&th, NULL, notify_after, &a);
    g_assert_false(aio_poll(ctx, true));
    pthread_join(th, NULL);
    g_assert_cmpint(r.reads, ==, 0);
    assert_backend(ctx, "poll");

    /* But a ready fd counts. */
    write_byte(p[1]);
    aio_notify(ctx);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(r.reads, ==, 1);

    unwatch_close(ctx, p);
    aio_context_unref(ctx);
}

typedef struct {
    AioContext *ctx;
    int fd;
    Rec *rec;
} AddArg;

static void *add_after(void *opaque)
{
    AddArg *a = opaque;
    sleep_ns(20 * MS);
    aio_set_fd_handler(a->ctx, a->fd, rec_read, NULL, NULL, NULL, a->rec);
    return NULL;
}

/* A handler added from another thread while the loop blocks is picked up. */
static void test_add_from_other_thread(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    int p[2], q[2];
    make_pipe(p);
    make_pipe(q);
    Rec idle, r;
    rec_init(&idle, ctx, q[0], 'i', NULL);
    rec_init(&r, ctx, p[0], 'a', NULL);
    /* An idle fd so that the loop blocks in the fd monitor. */
    aio_set_fd_handler(ctx, q[0], rec_read, NULL, NULL, NULL, &idle);
    write_byte(p[1]); /* already readable when added */
    AddArg a = { ctx, p[0], &r };
    pthread_t th;
    pthread_create(&th, NULL, add_after, &a);
    while (r.reads == 0) {
        aio_poll(ctx, true);
    }
    pthread_join(th, NULL);
    g_assert_cmpint(r.reads, ==, 1);
    assert_backend(ctx, "poll");
    remove_fd(ctx, p[0]);
    remove_fd(ctx, q[0]);
    close_pair(p);
    close_pair(q);
    aio_context_unref(ctx);
}

/* ---- dispatch order ---- */

static void log_bh(void *opaque)
{
    g_string_append((GString *)opaque, "B");
}

static void log_timer(void *opaque)
{
    g_string_append((GString *)opaque, "T");
}

typedef struct {
    int fd;
    GString *log;
} LogFd;

static void log_fd_read(void *opaque)
{
    LogFd *l = opaque;
    drain(l->fd);
    g_string_append(l->log, "F");
}

static void test_order_bh_fd_timer(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    GString *log = g_string_new("");
    int p[2];
    make_pipe(p);
    LogFd l = { p[0], log };
    aio_set_fd_handler(ctx, p[0], log_fd_read, NULL, NULL, NULL, &l);
    g_assert_false(aio_poll(ctx, false));
    QEMUTimer *t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, log_timer, log);

    for (int blocking = 0; blocking < 2; blocking++) {
        g_string_truncate(log, 0);
        /* Armed first, then fd, then BH: the order must not follow arming. */
        timer_mod_ns(t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME));
        write_byte(p[1]);
        aio_bh_schedule_oneshot(ctx, log_bh, log);
        sleep_ns(1 * MS); /* the timer is surely expired */
        g_assert_true(aio_poll(ctx, blocking));
        g_assert_cmpstr(log->str, ==, "BFT");
    }
    g_string_truncate(log, 0);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "");
    assert_backend(ctx, "poll");

    timer_free(t);
    unwatch_close(ctx, p);
    g_string_free(log, TRUE);
    aio_context_unref(ctx);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/aio/fd/backend-default", test_backend_default);
    g_test_add_func("/aio/fd/pipe/read", test_pipe_read);
    g_test_add_func("/aio/fd/pipe/write", test_pipe_write);
    g_test_add_func("/aio/fd/socketpair/read-before-write", test_socketpair_read_before_write);
    g_test_add_func("/aio/fd/remove-self-in-read", test_remove_self_in_read);
    g_test_add_func("/aio/fd/remove-from-other-handler", test_remove_from_other_handler);
    g_test_add_func("/aio/fd/remove-other-writer", test_remove_other_writer);
    g_test_add_func("/aio/fd/change-in-place", test_change_in_place);
    g_test_add_func("/aio/fd/remove-never-added", test_remove_never_added);
    g_test_add_func("/aio/fd/remove-close-reuse", test_remove_close_reuse);
    g_test_add_func("/aio/fd/remove-close-peer-sees-eof", test_remove_close_peer_sees_eof);
    g_test_add_func("/aio/fd/many-fds-one-active", test_many_fds_one_active);
    g_test_add_func("/aio/fd/death/closed-fd", test_death_closed_fd);
    g_test_add_func("/aio/fd/death/negative-fd", test_death_negative_fd);
    g_test_add_func("/aio/fd/notify-only-returns-false", test_notify_only_returns_false);
    g_test_add_func("/aio/fd/add-from-other-thread", test_add_from_other_thread);
    g_test_add_func("/aio/fd/order/bh-fd-timer", test_order_bh_fd_timer);
    return g_test_run();
}
