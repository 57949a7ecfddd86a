/*
 * Bottom halves: scheduling, cancel, delete (also from callbacks), FIFO
 * order, dispatch slices and nested aio_poll, oneshots, idle BHs, the
 * reentrancy guard, cross-thread scheduling, and misuse (death tests).
 *
 * Modelled on QEMU's tests/unit/test-aio.c, adapted to aioctx's documented
 * differences (BHs of one aio_bh_poll run in scheduling order, FIFO).
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude $(pkg-config --cflags
 * glib-2.0) c-tests/test-bh.c target/release/libaioctx.a $(pkg-config --libs
 * glib-2.0) -lpthread -ldl -lm -lgcc_s -rdynamic
 * (-rdynamic lets the library name plain callbacks in its messages.)
 */

#include "aioctx.h"
#include "test-util.h"

#include <errno.h>
#include <glib.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * See test-util.h for the shared helpers. Synchronization uses pthreads,
 * not GMutex/GCond (invisible to ThreadSanitizer).
 */

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
    int n;
    int max;
} BHTestData;

static void counter_cb(void *opaque)
{
    BHTestData *data = opaque;
    data->n++;
}

static void int_counter_cb(void *opaque)
{
    int *n = opaque;
    (*n)++;
}

/* Reschedules itself until it ran `max` times (QEMU's bh_test_cb). */
static void reschedule_cb(void *opaque)
{
    BHTestData *data = opaque;
    if (++data->n < data->max) {
        qemu_bh_schedule(data->bh);
    }
}

/* Reschedules itself until it ran `max` times, then deletes itself. */
static void delete_at_max_cb(void *opaque)
{
    BHTestData *data = opaque;
    if (++data->n < data->max) {
        qemu_bh_schedule(data->bh);
    } else {
        qemu_bh_delete(data->bh);
        data->bh = NULL;
    }
}

/* Records a one-character tag in a shared log. */
typedef struct {
    GString *log;
    char tag;
} LogItem;

static void log_cb(void *opaque)
{
    LogItem *item = opaque;
    g_string_append_c(item->log, item->tag);
}

/* ------------------------------------------------------------------------ */
/* Scheduling                                                               */
/* ------------------------------------------------------------------------ */

static void test_schedule_once(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    data.bh = aio_bh_new(ctx, counter_cb, &data);
    g_assert_nonnull(data.bh);

    /* Not scheduled yet: nothing to do. */
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 0);

    qemu_bh_schedule(data.bh);
    g_assert_cmpint(data.n, ==, 0);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* Ran once: it is no longer scheduled. */
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* It can be scheduled again, with a blocking poll this time. */
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(data.n, ==, 2);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 2);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

static void test_schedule_twice(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    qemu_bh_schedule(data.bh);
    qemu_bh_schedule(data.bh);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

/* QEMU's test_bh_schedule10: a BH that reschedules itself from its callback. */
static void test_schedule_self_10(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx, .max = 10 };

    data.bh = aio_bh_new(ctx, reschedule_cb, &data);
    qemu_bh_schedule(data.bh);
    g_assert_cmpint(data.n, ==, 0);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(data.n, ==, 2);

    while (data.n < 10) {
        g_assert_true(aio_poll(ctx, true));
    }
    g_assert_cmpint(data.n, ==, 10);

    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 10);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

/* One BH whose callback schedules 10 other BHs. */
typedef struct {
    BHTestData children[10];
    int parent_runs;
} FanOut;

static void fan_out_cb(void *opaque)
{
    FanOut *f = opaque;
    f->parent_runs++;
    for (int i = 0; i < 10; i++) {
        qemu_bh_schedule(f->children[i].bh);
    }
}

static void test_schedule_10_from_callback(void)
{
    AioContext *ctx = new_context();
    FanOut f = { 0 };
    QEMUBH *parent = aio_bh_new(ctx, fan_out_cb, &f);

    for (int i = 0; i < 10; i++) {
        f.children[i].ctx = ctx;
        f.children[i].bh = aio_bh_new(ctx, counter_cb, &f.children[i]);
    }

    qemu_bh_schedule(parent);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(f.parent_runs, ==, 1);
    /* Scheduled during dispatch: they wait for the next call. */
    for (int i = 0; i < 10; i++) {
        g_assert_cmpint(f.children[i].n, ==, 0);
    }

    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(f.parent_runs, ==, 1);
    for (int i = 0; i < 10; i++) {
        g_assert_cmpint(f.children[i].n, ==, 1);
    }
    g_assert_false(aio_poll(ctx, false));

    /* Again, with blocking polls. */
    qemu_bh_schedule(parent);
    g_assert_true(aio_poll(ctx, true));
    g_assert_true(aio_poll(ctx, true));
    for (int i = 0; i < 10; i++) {
        g_assert_cmpint(f.children[i].n, ==, 2);
    }
    g_assert_false(aio_poll(ctx, false));

    for (int i = 0; i < 10; i++) {
        qemu_bh_delete(f.children[i].bh);
    }
    qemu_bh_delete(parent);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* Cancel and delete                                                        */
/* ------------------------------------------------------------------------ */

static void test_cancel(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    data.bh = aio_bh_new(ctx, counter_cb, &data);

    qemu_bh_schedule(data.bh);
    qemu_bh_cancel(data.bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 0);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);

    /* Cancelling an unscheduled BH is harmless. */
    qemu_bh_cancel(data.bh);
    g_assert_false(aio_poll(ctx, false));

    /* It stays allocated and can be scheduled again. */
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* Cancel, reschedule, before any poll: runs once. */
    qemu_bh_schedule(data.bh);
    qemu_bh_cancel(data.bh);
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 2);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 2);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

/* A callback that cancels another BH scheduled later in the same slice. */
typedef struct {
    QEMUBH *victim;
    int runs;
} CancelOther;

static void cancel_other_cb(void *opaque)
{
    CancelOther *c = opaque;
    c->runs++;
    qemu_bh_cancel(c->victim);
}

/*
 * A BH cancelled while still linked, then rescheduled from another thread
 * while the owner is blocked in aio_poll: the reschedule must wake it
 * (nobody pushes the BH again, so the notify must come from the schedule).
 */
static void *reschedule_later(void *opaque)
{
    BHTestData *d = opaque;
    g_usleep(50 * 1000);
    qemu_bh_schedule(d->bh);
    return NULL;
}

static void test_cancel_then_cross_thread_reschedule(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };
    pthread_t t;

    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    qemu_bh_cancel(data.bh);
    g_assert_cmpint(pthread_create(&t, NULL, reschedule_later, &data), ==, 0);
    while (data.n == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(pthread_join(t, NULL), ==, 0);
    g_assert_cmpint(data.n, ==, 1);
    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

static void test_cancel_from_callback(void)
{
    AioContext *ctx = new_context();
    BHTestData victim = { .ctx = ctx };
    CancelOther c = { 0 };
    QEMUBH *canceller = aio_bh_new(ctx, cancel_other_cb, &c);

    victim.bh = aio_bh_new(ctx, counter_cb, &victim);
    c.victim = victim.bh;

    /* FIFO: the canceller runs first and the victim then must not run. */
    qemu_bh_schedule(canceller);
    qemu_bh_schedule(victim.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(c.runs, ==, 1);
    g_assert_cmpint(victim.n, ==, 0);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(victim.n, ==, 0);

    qemu_bh_delete(canceller);
    qemu_bh_delete(victim.bh);
    aio_context_unref(ctx);
}

static void test_delete(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    /* Scheduled, then deleted: never runs. */
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    qemu_bh_delete(data.bh);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 0);

    /* Deleted without ever being scheduled. */
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_delete(data.bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 0);

    /* Deleted after it ran. */
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);
    qemu_bh_delete(data.bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* Deleted, never polled again: the context's teardown frees it. */
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    qemu_bh_delete(data.bh);

    aio_context_unref(ctx);
    g_assert_cmpint(data.n, ==, 1);
}

/* Deleted BHs are freed silently: teardown prints nothing about them. */
static void test_delete_no_warning(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = new_context();
        BHTestData data = { .ctx = ctx };
        QEMUBH *a = aio_bh_new_full(ctx, counter_cb, &data, "deleted-a", NULL);
        QEMUBH *b = aio_bh_new_full(ctx, counter_cb, &data, "deleted-b", NULL);
        QEMUBH *c = aio_bh_new_full(ctx, counter_cb, &data, "deleted-c", NULL);

        qemu_bh_schedule(a);
        qemu_bh_delete(a);               /* scheduled, deleted, polled */
        g_assert_false(aio_poll(ctx, false));
        qemu_bh_schedule(b);
        qemu_bh_delete(b);               /* scheduled, deleted, not polled */
        qemu_bh_delete(c);               /* never scheduled */
        aio_context_unref(ctx);
        g_assert_cmpint(data.n, ==, 0);
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr_unmatched("*deleted-*");
    g_test_trap_assert_stderr_unmatched("*aioctx:*");
}

static void test_delete_from_own_callback(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx, .max = 1 };

    data.bh = aio_bh_new(ctx, delete_at_max_cb, &data);
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);
    g_assert_null(data.bh);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* After rescheduling itself a few times. */
    data.n = 0;
    data.max = 5;
    data.bh = aio_bh_new(ctx, delete_at_max_cb, &data);
    qemu_bh_schedule(data.bh);
    while (data.bh) {
        g_assert_true(aio_poll(ctx, true));
    }
    g_assert_cmpint(data.n, ==, 5);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 5);

    aio_context_unref(ctx);
}

/* QEMU's test_bh_delete_from_cb_many. */
static void test_callback_delete_reschedule_many(void)
{
    AioContext *ctx = new_context();
    BHTestData data1 = { .ctx = ctx, .max = 1 };
    BHTestData data2 = { .ctx = ctx, .max = 3 };
    BHTestData data3 = { .ctx = ctx, .max = 2 };
    BHTestData data4 = { .ctx = ctx, .max = 4 };

    data1.bh = aio_bh_new(ctx, delete_at_max_cb, &data1);
    data2.bh = aio_bh_new(ctx, delete_at_max_cb, &data2);
    data3.bh = aio_bh_new(ctx, delete_at_max_cb, &data3);
    data4.bh = aio_bh_new(ctx, delete_at_max_cb, &data4);

    qemu_bh_schedule(data1.bh);
    qemu_bh_schedule(data2.bh);
    qemu_bh_schedule(data3.bh);
    qemu_bh_schedule(data4.bh);
    g_assert_cmpint(data2.n, ==, 0);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data1.n, ==, 1);
    g_assert_cmpint(data2.n, ==, 1);
    g_assert_cmpint(data3.n, ==, 1);
    g_assert_cmpint(data4.n, ==, 1);
    g_assert_null(data1.bh);

    while (data1.n < data1.max || data2.n < data2.max ||
           data3.n < data3.max || data4.n < data4.max) {
        g_assert_true(aio_poll(ctx, false));
    }
    g_assert_cmpint(data1.n, ==, data1.max);
    g_assert_cmpint(data2.n, ==, data2.max);
    g_assert_cmpint(data3.n, ==, data3.max);
    g_assert_cmpint(data4.n, ==, data4.max);
    g_assert_null(data1.bh);
    g_assert_null(data2.bh);
    g_assert_null(data3.bh);
    g_assert_null(data4.bh);
    g_assert_false(aio_poll(ctx, false));

    aio_context_unref(ctx);
}

/*
 * Many BHs, all scheduled, whose callbacks delete random others (and
 * sometimes themselves). A BH runs at most once and never after it was
 * deleted; every BH not deleted before its turn runs in that same poll.
 */
#define MANY 64

typedef struct ManySet ManySet;

typedef struct {
    ManySet *set;
    int index;
} ManyItem;

struct ManySet {
    QEMUBH *bh[MANY];
    ManyItem item[MANY];
    bool deleted[MANY];
    bool deleted_before_run[MANY];
    int runs[MANY];
    int run_order[MANY];
    int nruns;
    GRand *rand;
};

static void many_delete(ManySet *s, int j)
{
    if (!s->deleted[j]) {
        s->deleted[j] = true;
        if (s->runs[j] == 0) {
            s->deleted_before_run[j] = true;
        }
        qemu_bh_delete(s->bh[j]);
    }
}

static void many_cb(void *opaque)
{
    ManyItem *item = opaque;
    ManySet *s = item->set;
    int i = item->index;

    g_assert_false(s->deleted[i]);
    g_assert_cmpint(s->runs[i], ==, 0);
    s->runs[i]++;
    s->run_order[s->nruns++] = i;

    int victims = g_rand_int_range(s->rand, 0, 4);
    for (int k = 0; k < victims; k++) {
        many_delete(s, g_rand_int_range(s->rand, 0, MANY));
    }
    if (g_rand_int_range(s->rand, 0, 4) == 0) {
        many_delete(s, i);              /* delete itself */
    }
}

static void test_callback_delete_many(void)
{
    for (guint32 seed = 1; seed <= 50; seed++) {
        AioContext *ctx = new_context();
        ManySet *s = g_new0(ManySet, 1);

        s->rand = g_rand_new_with_seed(seed);
        for (int i = 0; i < MANY; i++) {
            s->item[i] = (ManyItem){ .set = s, .index = i };
            s->bh[i] = aio_bh_new(ctx, many_cb, &s->item[i]);
        }
        for (int i = 0; i < MANY; i++) {
            qemu_bh_schedule(s->bh[i]);
        }

        g_assert_true(aio_poll(ctx, false));

        int prev = -1;
        for (int r = 0; r < s->nruns; r++) {
            /* FIFO: the survivors ran in scheduling order. */
            g_assert_cmpint(s->run_order[r], >, prev);
            prev = s->run_order[r];
        }
        for (int i = 0; i < MANY; i++) {
            /* Ran exactly once unless deleted before its turn. */
            g_assert_cmpint(s->runs[i], ==, s->deleted_before_run[i] ? 0 : 1);
        }

        /* Nothing runs any more, deleted or not. */
        g_assert_false(aio_poll(ctx, false));
        for (int i = 0; i < MANY; i++) {
            g_assert_cmpint(s->runs[i], <=, 1);
            many_delete(s, i);
        }
        g_assert_false(aio_poll(ctx, false));

        aio_context_unref(ctx);
        g_rand_free(s->rand);
        g_free(s);
    }
}

/* A chain of BHs each deleting the next one, which has not run yet. */
typedef struct {
    QEMUBH *bh[8];
    int runs[8];
} Chain;

typedef struct {
    Chain *chain;
    int index;
} ChainItem;

static void chain_cb(void *opaque)
{
    ChainItem *item = opaque;
    Chain *c = item->chain;
    int i = item->index;

    c->runs[i]++;
    if (i + 1 < 8) {
        qemu_bh_delete(c->bh[i + 1]);
        c->bh[i + 1] = NULL;
    }
    if (i + 2 < 8) {
        qemu_bh_schedule(c->bh[i + 2]);   /* already scheduled: no-op */
    }
    qemu_bh_delete(c->bh[i]);
    c->bh[i] = NULL;
}

static void test_callback_delete_next(void)
{
    AioContext *ctx = new_context();
    Chain c = { 0 };
    ChainItem items[8];

    for (int i = 0; i < 8; i++) {
        items[i] = (ChainItem){ .chain = &c, .index = i };
        c.bh[i] = aio_bh_new(ctx, chain_cb, &items[i]);
    }
    for (int i = 0; i < 8; i++) {
        qemu_bh_schedule(c.bh[i]);
    }
    g_assert_true(aio_poll(ctx, false));
    /* 0 deletes 1, 2 deletes 3, ... */
    for (int i = 0; i < 8; i++) {
        g_assert_cmpint(c.runs[i], ==, i % 2 == 0 ? 1 : 0);
        g_assert_null(c.bh[i]);
    }
    g_assert_false(aio_poll(ctx, false));
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* Order, slices, nesting                                                   */
/* ------------------------------------------------------------------------ */

static void test_order_fifo(void)
{
    AioContext *ctx = new_context();
    GString *log = g_string_new("");
    LogItem items[5];
    QEMUBH *bh[5];

    for (int i = 0; i < 5; i++) {
        items[i] = (LogItem){ .log = log, .tag = (char)('A' + i) };
        bh[i] = aio_bh_new(ctx, log_cb, &items[i]);
    }

    qemu_bh_schedule(bh[0]);
    qemu_bh_schedule(bh[1]);
    qemu_bh_schedule(bh[2]);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "ABC");

    g_string_truncate(log, 0);
    qemu_bh_schedule(bh[2]);
    qemu_bh_schedule(bh[0]);
    qemu_bh_schedule(bh[4]);
    qemu_bh_schedule(bh[1]);
    qemu_bh_schedule(bh[3]);
    g_assert_true(aio_bh_poll(ctx));
    g_assert_cmpstr(log->str, ==, "CAEBD");

    /* Oneshots and regular BHs share one order. */
    LogItem one = { .log = log, .tag = '1' };
    LogItem two = { .log = log, .tag = '2' };
    g_string_truncate(log, 0);
    qemu_bh_schedule(bh[1]);
    aio_bh_schedule_oneshot(ctx, log_cb, &one);
    qemu_bh_schedule(bh[0]);
    aio_bh_schedule_oneshot_full(ctx, log_cb, &two, "order-two");
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpstr(log->str, ==, "B1A2");

    g_assert_false(aio_poll(ctx, false));
    for (int i = 0; i < 5; i++) {
        qemu_bh_delete(bh[i]);
    }
    aio_context_unref(ctx);
    g_string_free(log, TRUE);
}

/*
 * A BH scheduled from inside the loop (a callback) and one scheduled later
 * from outside it run in that order: the library links the first on a
 * loop-local list and the second on the atomic queue, and must not let
 * the second overtake the first.
 */
typedef struct {
    GString *log;
    QEMUBH *next;
} LogThen;

static void log_then_cb(void *opaque)
{
    LogThen *t = opaque;
    g_string_append_c(t->log, 'X');
    qemu_bh_schedule(t->next);
}

static void test_order_fifo_across_loop_exit(void)
{
    AioContext *ctx = new_context();
    GString *log = g_string_new("");
    LogItem b = { .log = log, .tag = 'B' };
    LogItem c = { .log = log, .tag = 'C' };
    LogThen x = { .log = log };
    QEMUBH *bh_x = aio_bh_new(ctx, log_then_cb, &x);
    QEMUBH *bh_c = aio_bh_new(ctx, log_cb, &c);

    x.next = aio_bh_new(ctx, log_cb, &b);
    qemu_bh_schedule(bh_x);
    g_assert_true(aio_poll(ctx, false));    /* X runs and schedules B */
    g_assert_cmpstr(log->str, ==, "X");
    qemu_bh_schedule(bh_c);                 /* from outside the loop */
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "XBC");

    /* The same through aio_bh_poll and a blocking aio_poll. */
    g_string_truncate(log, 0);
    qemu_bh_schedule(bh_x);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    qemu_bh_schedule(bh_c);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpstr(log->str, ==, "XBC");
    g_assert_false(aio_poll(ctx, false));

    qemu_bh_delete(bh_x);
    qemu_bh_delete(bh_c);
    qemu_bh_delete(x.next);
    aio_context_unref(ctx);
    g_string_free(log, TRUE);
}

/*
 * clock_gettime, interposed for /aio/bh/no-clock-read: the library (linked
 * statically into this program) binds to this definition, which counts
 * the calls while `count_clock` is set and asks the kernel directly.
 */
static volatile int count_clock;
static volatile unsigned long clock_reads;

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (count_clock) {
        clock_reads++;
    }
    return (int)syscall(SYS_clock_gettime, id, ts);
}

/*
 * No timer armed: running BHs reads no clock, in a non-blocking and in a
 * blocking aio_poll (which finds the BH ready and so has nothing to wait
 * for), even with adaptive polling on (whose window the blocking poll
 * still adapts).
 */
static void test_no_clock_read(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };
    int n = 0;
    const int iters = 1000;

    aio_context_set_poll_params(ctx, 32768, 2, 2, &error_abort);
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));    /* warm up */

    clock_reads = 0;
    count_clock = 1;
    for (int i = 0; i < iters; i++) {
        qemu_bh_schedule(data.bh);
        g_assert_true(aio_poll(ctx, false));
        qemu_bh_schedule(data.bh);
        g_assert_true(aio_poll(ctx, true));
        aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
        g_assert_true(aio_poll(ctx, true));
    }
    /* A BH rescheduling itself from its callback. */
    BHTestData re = { .ctx = ctx, .max = iters };
    re.bh = aio_bh_new(ctx, reschedule_cb, &re);
    qemu_bh_schedule(re.bh);
    while (re.n < re.max) {
        aio_poll(ctx, re.n & 1);
    }
    count_clock = 0;
    g_assert_cmpint(re.n, ==, iters);
    qemu_bh_delete(re.bh);
    g_assert_cmpint(data.n, ==, 2 * iters + 1);
    g_assert_cmpint(n, ==, iters);
    g_assert_cmpuint(clock_reads, ==, 0);

    /* The interposition works: a blocking poll with nothing ready but a
     * timer reads the clock. */
    QEMUTimer *t = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, int_counter_cb, &n);
    timer_mod(t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 1000);
    count_clock = 1;
    while (n == iters) {
        aio_poll(ctx, true);
    }
    count_clock = 0;
    g_assert_cmpuint(clock_reads, >, 0);
    timer_free(t);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

/* A BH scheduled while the list runs waits for the next aio_bh_poll/aio_poll. */
typedef struct {
    GString *log;
    QEMUBH *self;
    QEMUBH *other;
} SchedDuring;

static void sched_during_cb(void *opaque)
{
    SchedDuring *s = opaque;
    g_string_append_c(s->log, 'A');
    qemu_bh_schedule(s->other);
    qemu_bh_schedule(s->self);
}

static void test_schedule_during_dispatch(void)
{
    AioContext *ctx = new_context();
    GString *log = g_string_new("");
    LogItem b = { .log = log, .tag = 'B' };
    SchedDuring s = { .log = log };

    s.self = aio_bh_new(ctx, sched_during_cb, &s);
    s.other = aio_bh_new(ctx, log_cb, &b);

    qemu_bh_schedule(s.self);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    g_assert_cmpstr(log->str, ==, "A");
    /* Both were scheduled during dispatch: pending, not run. */
    g_assert_cmpint(aio_compute_timeout(ctx), ==, 0);

    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    g_assert_cmpstr(log->str, ==, "ABA");

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "ABABA");

    qemu_bh_cancel(s.self);
    qemu_bh_cancel(s.other);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "ABABA");

    qemu_bh_delete(s.self);
    qemu_bh_delete(s.other);
    aio_context_unref(ctx);
    g_string_free(log, TRUE);
}

/*
 * A BH calling aio_poll: the nested call continues the outer call's
 * remaining BHs first (none stranded, none run twice), then the BHs
 * scheduled meanwhile.
 */
typedef struct {
    AioContext *ctx;
    GString *log;
    QEMUBH *to_schedule;
    int nested_calls;
    bool nested_ret;
} Nest;

static void nest_schedule_cb(void *opaque)
{
    Nest *n = opaque;
    g_string_append_c(n->log, 'A');
    qemu_bh_schedule(n->to_schedule);
}

static void nest_poll_cb(void *opaque)
{
    Nest *n = opaque;
    g_string_append(n->log, "B[");
    n->nested_calls++;
    n->nested_ret = aio_poll(n->ctx, false);
    g_string_append_c(n->log, ']');
}

static void test_nested_poll(void)
{
    AioContext *ctx = new_context();
    GString *log = g_string_new("");
    Nest n = { .ctx = ctx, .log = log };
    LogItem c = { .log = log, .tag = 'C' };
    LogItem d = { .log = log, .tag = 'D' };
    LogItem e = { .log = log, .tag = 'E' };
    QEMUBH *bh_a = aio_bh_new(ctx, nest_schedule_cb, &n);
    QEMUBH *bh_b = aio_bh_new(ctx, nest_poll_cb, &n);
    QEMUBH *bh_c = aio_bh_new(ctx, log_cb, &c);
    QEMUBH *bh_d = aio_bh_new(ctx, log_cb, &d);
    QEMUBH *bh_e = aio_bh_new(ctx, log_cb, &e);

    n.to_schedule = bh_e;
    qemu_bh_schedule(bh_a);
    qemu_bh_schedule(bh_b);
    qemu_bh_schedule(bh_c);
    qemu_bh_schedule(bh_d);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n.nested_calls, ==, 1);
    g_assert_true(n.nested_ret);
    /* C and D (outer slice) first, then E (scheduled by A meanwhile). */
    g_assert_cmpstr(log->str, ==, "AB[CDE]");

    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpstr(log->str, ==, "AB[CDE]");

    /* The same through aio_bh_poll as the outer call. */
    g_string_truncate(log, 0);
    qemu_bh_schedule(bh_a);
    qemu_bh_schedule(bh_b);
    qemu_bh_schedule(bh_c);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    g_assert_cmpstr(log->str, ==, "AB[CE]");
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);
    g_assert_cmpstr(log->str, ==, "AB[CE]");

    qemu_bh_delete(bh_a);
    qemu_bh_delete(bh_b);
    qemu_bh_delete(bh_c);
    qemu_bh_delete(bh_d);
    qemu_bh_delete(bh_e);
    aio_context_unref(ctx);
    g_string_free(log, TRUE);
}

/* Every BH of a slice polls recursively: a chain of nested calls. */
#define DEPTH 10

typedef struct {
    AioContext *ctx;
    GString *log;
    int runs[DEPTH];
    bool ret[DEPTH];
} DeepNest;

typedef struct {
    DeepNest *d;
    int index;
} DeepItem;

static void deep_cb(void *opaque)
{
    DeepItem *it = opaque;
    DeepNest *d = it->d;

    d->runs[it->index]++;
    g_string_append_printf(d->log, "%d[", it->index);
    d->ret[it->index] = aio_poll(d->ctx, false);
    g_string_append_c(d->log, ']');
}

static void test_nested_poll_deep(void)
{
    AioContext *ctx = new_context();
    DeepNest d = { .ctx = ctx, .log = g_string_new("") };
    DeepItem items[DEPTH];
    QEMUBH *bh[DEPTH];
    GString *expect = g_string_new("");

    for (int i = 0; i < DEPTH; i++) {
        items[i] = (DeepItem){ .d = &d, .index = i };
        bh[i] = aio_bh_new(ctx, deep_cb, &items[i]);
        qemu_bh_schedule(bh[i]);
        g_string_append_printf(expect, "%d[", i);
    }
    for (int i = 0; i < DEPTH; i++) {
        g_string_append_c(expect, ']');
    }

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpstr(d.log->str, ==, expect->str);
    for (int i = 0; i < DEPTH; i++) {
        g_assert_cmpint(d.runs[i], ==, 1);
        /* The innermost call found nothing left to run. */
        g_assert_true(d.ret[i] == (i < DEPTH - 1));
    }
    g_assert_false(aio_poll(ctx, false));

    for (int i = 0; i < DEPTH; i++) {
        qemu_bh_delete(bh[i]);
    }
    aio_context_unref(ctx);
    g_string_free(d.log, TRUE);
    g_string_free(expect, TRUE);
}

/* A BH deletes a later BH of the outer slice, then polls recursively. */
typedef struct {
    AioContext *ctx;
    QEMUBH *victim;
    int runs;
} NestDelete;

static void nest_delete_cb(void *opaque)
{
    NestDelete *n = opaque;
    n->runs++;
    qemu_bh_delete(n->victim);
    n->victim = NULL;
    aio_poll(n->ctx, false);
}

static void test_nested_poll_delete(void)
{
    AioContext *ctx = new_context();
    BHTestData victim = { .ctx = ctx };
    BHTestData after = { .ctx = ctx };
    NestDelete n = { .ctx = ctx };
    QEMUBH *bh = aio_bh_new(ctx, nest_delete_cb, &n);

    victim.bh = aio_bh_new(ctx, counter_cb, &victim);
    after.bh = aio_bh_new(ctx, counter_cb, &after);
    n.victim = victim.bh;

    qemu_bh_schedule(bh);
    qemu_bh_schedule(victim.bh);
    qemu_bh_schedule(after.bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n.runs, ==, 1);
    g_assert_cmpint(victim.n, ==, 0);
    g_assert_cmpint(after.n, ==, 1);
    g_assert_false(aio_poll(ctx, false));

    qemu_bh_delete(bh);
    qemu_bh_delete(after.bh);
    aio_context_unref(ctx);
}

/* A blocking nested aio_poll with outer BHs still to run does not block. */
typedef struct {
    AioContext *ctx;
    bool ret;
    int calls;
} NestBlock;

static void nest_block_cb(void *opaque)
{
    NestBlock *n = opaque;
    n->calls++;
    n->ret = aio_poll(n->ctx, true);
}

static void test_nested_poll_blocking(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    NestBlock n = { .ctx = ctx };
    BHTestData after = { .ctx = ctx };
    QEMUBH *bh = aio_bh_new(ctx, nest_block_cb, &n);

    watchdog_start(&wd, "/aio/bh/nested-poll/blocking", 10);
    after.bh = aio_bh_new(ctx, counter_cb, &after);
    qemu_bh_schedule(bh);
    qemu_bh_schedule(after.bh);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(n.calls, ==, 1);
    g_assert_true(n.ret);
    g_assert_cmpint(after.n, ==, 1);
    g_assert_false(aio_poll(ctx, false));

    qemu_bh_delete(bh);
    qemu_bh_delete(after.bh);
    aio_context_unref(ctx);
    watchdog_stop(&wd);
}

/* ------------------------------------------------------------------------ */
/* No syscall when nobody sleeps                                            */
/* ------------------------------------------------------------------------ */

/*
 * A same-thread BH reschedule loop, oneshots, and polls with work ready
 * make no eventfd write or read: nobody is blocked, so aio_notify is free.
 */
static void test_no_syscall(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };
    guint64 r0, w0, r1, w1;
    int n = 0;
    const int iters = 100000;

    data.bh = aio_bh_new(ctx, counter_cb, &data);
    /* Warm up (first-use allocations, lazy initialization). */
    qemu_bh_schedule(data.bh);
    g_assert_true(aio_poll(ctx, false));

    if (!thread_syscalls(&r0, &w0)) {
        qemu_bh_delete(data.bh);
        aio_context_unref(ctx);
        g_test_skip("/proc/thread-self/io is not available");
        return;
    }
    for (int i = 0; i < iters; i++) {
        qemu_bh_schedule(data.bh);
        g_assert_true(aio_poll(ctx, false));
        aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
        g_assert_true(aio_poll(ctx, true));   /* work ready: no wait */
        g_assert_false(aio_poll(ctx, false));
    }
    g_assert_true(thread_syscalls(&r1, &w1));

    g_assert_cmpint(data.n, ==, iters + 1);
    g_assert_cmpint(n, ==, iters);
    /* A few reads are the /proc file itself; one per iteration would be
     * an eventfd round trip. */
    g_assert_cmpuint(w1 - w0, ==, 0);
    g_assert_cmpuint(r1 - r0, <, 16);

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* Oneshot, idle, poll return values, aio_bh_call, reentrancy guard         */
/* ------------------------------------------------------------------------ */

static void test_oneshot(void)
{
    AioContext *ctx = new_context();
    int n = 0;

    aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    g_assert_cmpint(n, ==, 0);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, 0);
    g_assert_true(aio_poll(ctx, true));
    g_assert_cmpint(n, ==, 1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(n, ==, 1);

    /* Many at once, each runs exactly once. */
    for (int i = 0; i < 1000; i++) {
        aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    }
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(n, ==, 1001);
    g_assert_false(aio_poll(ctx, false));

    /* Freed after running: unref neither aborts nor warns (and ASan/LSan
     * would report a leak). */
    aio_context_unref(ctx);
}

/* A oneshot that schedules a oneshot: the second waits for the next call. */
typedef struct {
    AioContext *ctx;
    int outer;
    int inner;
} OneshotChain;

static void oneshot_inner_cb(void *opaque)
{
    OneshotChain *o = opaque;
    o->inner++;
}

static void oneshot_outer_cb(void *opaque)
{
    OneshotChain *o = opaque;
    o->outer++;
    aio_bh_schedule_oneshot_full(o->ctx, oneshot_inner_cb, o, "oneshot-inner");
}

static void test_oneshot_full(void)
{
    AioContext *ctx = new_context();
    OneshotChain o = { .ctx = ctx };

    aio_bh_schedule_oneshot_full(ctx, oneshot_outer_cb, &o, "oneshot-outer");
    /* NULL name is allowed. */
    aio_bh_schedule_oneshot_full(ctx, oneshot_inner_cb, &o, NULL);

    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(o.outer, ==, 1);
    g_assert_cmpint(o.inner, ==, 1);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(o.outer, ==, 1);
    g_assert_cmpint(o.inner, ==, 2);
    g_assert_false(aio_poll(ctx, false));

    aio_context_unref(ctx);
}

static void test_idle(void)
{
    AioContext *ctx = new_context();
    BHTestData idle = { .ctx = ctx };
    BHTestData normal = { .ctx = ctx };

    idle.bh = aio_bh_new(ctx, counter_cb, &idle);
    normal.bh = aio_bh_new(ctx, counter_cb, &normal);

    /* Nothing scheduled. */
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);

    /* Only an idle BH: 10 ms. */
    qemu_bh_schedule_idle(idle.bh);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, 10000000);

    /* It runs, but does not count as progress. */
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(idle.n, ==, 1);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(idle.n, ==, 1);

    /* Idle plus normal: 0, and progress. */
    qemu_bh_schedule_idle(idle.bh);
    qemu_bh_schedule(normal.bh);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, 0);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(idle.n, ==, 2);
    g_assert_cmpint(normal.n, ==, 1);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);

    /* A blocking poll with only an idle BH runs it within ~10 ms. */
    qemu_bh_schedule_idle(idle.bh);
    gint64 start = g_get_monotonic_time();
    g_assert_false(aio_poll(ctx, true));
    gint64 elapsed = g_get_monotonic_time() - start;
    g_assert_cmpint(idle.n, ==, 3);
    g_assert_cmpint(elapsed, <, 2 * G_USEC_PER_SEC);

    /* A cancelled idle BH does not shorten the timeout. */
    qemu_bh_schedule_idle(idle.bh);
    qemu_bh_cancel(idle.bh);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(idle.n, ==, 3);

    qemu_bh_delete(idle.bh);
    qemu_bh_delete(normal.bh);
    aio_context_unref(ctx);
}

static void test_bh_poll_return(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    data.bh = aio_bh_new(ctx, counter_cb, &data);

    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);

    qemu_bh_schedule(data.bh);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    g_assert_cmpint(data.n, ==, 1);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);

    qemu_bh_schedule_idle(data.bh);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);
    g_assert_cmpint(data.n, ==, 2);

    qemu_bh_schedule(data.bh);
    qemu_bh_cancel(data.bh);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);
    g_assert_cmpint(data.n, ==, 2);

    int n = 0;
    aio_bh_schedule_oneshot(ctx, int_counter_cb, &n);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 1);
    g_assert_cmpint(n, ==, 1);

    qemu_bh_schedule(data.bh);
    qemu_bh_delete(data.bh);
    g_assert_cmpint(aio_bh_poll(ctx), ==, 0);
    g_assert_cmpint(data.n, ==, 2);

    aio_context_unref(ctx);
}

static void test_bh_call(void)
{
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };

    data.bh = aio_bh_new(ctx, counter_cb, &data);

    /* Calls the callback without scheduling anything. */
    aio_bh_call(data.bh);
    g_assert_cmpint(data.n, ==, 1);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 1);

    /* Does not consume a pending schedule either. */
    qemu_bh_schedule(data.bh);
    aio_bh_call(data.bh);
    g_assert_cmpint(data.n, ==, 2);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(data.n, ==, 3);
    g_assert_false(aio_poll(ctx, false));

    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
}

typedef struct {
    MemReentrancyGuard *guard;
    int runs;
    bool engaged_seen;
} GuardData;

static void guard_cb(void *opaque)
{
    GuardData *g = opaque;
    g->runs++;
    g->engaged_seen = g->guard->engaged_in_io;
}

static void test_reentrancy_guard(void)
{
    AioContext *ctx = new_context();
    MemReentrancyGuard guard = { .engaged_in_io = false };
    GuardData g = { .guard = &guard };
    QEMUBH *bh = aio_bh_new_full(ctx, guard_cb, &g, "guarded-bh", &guard);

    /* Through dispatch. */
    qemu_bh_schedule(bh);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(g.runs, ==, 1);
    g_assert_true(g.engaged_seen);
    g_assert_false(guard.engaged_in_io);

    /* Through aio_bh_call. */
    g.engaged_seen = false;
    aio_bh_call(bh);
    g_assert_cmpint(g.runs, ==, 2);
    g_assert_true(g.engaged_seen);
    g_assert_false(guard.engaged_in_io);

    /* As in QEMU, the previous value is restored afterwards. */
    guard.engaged_in_io = true;
    g.engaged_seen = false;
    aio_bh_call(bh);
    g_assert_true(g.engaged_seen);
    g_assert_true(guard.engaged_in_io);
    guard.engaged_in_io = false;

    /* Without a guard nothing is touched. */
    GuardData g2 = { .guard = &guard };
    QEMUBH *plain = aio_bh_new_full(ctx, guard_cb, &g2, "unguarded-bh", NULL);
    qemu_bh_schedule(plain);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(g2.runs, ==, 1);
    g_assert_false(g2.engaged_seen);
    g_assert_false(guard.engaged_in_io);

    qemu_bh_delete(bh);
    qemu_bh_delete(plain);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* Cross-thread scheduling                                                  */
/* ------------------------------------------------------------------------ */

/* A single schedule from another thread wakes a blocked aio_poll. */
typedef struct {
    QEMUBH *bh;
    gulong delay_us;
} DelayedSchedule;

static void *delayed_schedule_thread(void *opaque)
{
    DelayedSchedule *d = opaque;
    g_usleep(d->delay_us);
    qemu_bh_schedule(d->bh);
    return NULL;
}

static void test_cross_thread_wakeup(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    BHTestData data = { .ctx = ctx };
    pthread_t tid;

    watchdog_start(&wd, "/aio/bh/cross-thread/wakeup", 10);
    data.bh = aio_bh_new(ctx, counter_cb, &data);
    for (int round = 1; round <= 20; round++) {
        /* Alternate: the schedule lands before or while the poller blocks. */
        DelayedSchedule d = { .bh = data.bh, .delay_us = round % 2 ? 0 : 5000 };
        g_assert_cmpint(pthread_create(&tid, NULL, delayed_schedule_thread, &d), ==, 0);
        while (data.n < round) {
            aio_poll(ctx, true);
        }
        g_assert_cmpint(pthread_join(tid, NULL), ==, 0);
        g_assert_cmpint(data.n, ==, round);
    }
    g_assert_false(aio_poll(ctx, false));
    qemu_bh_delete(data.bh);
    aio_context_unref(ctx);
    watchdog_stop(&wd);
}

#define XT_THREADS 8
#define XT_ITERS 100000

/*
 * Producers store a sequence number, then schedule one shared BH; the BH
 * reads all sequence numbers. After each producer's last schedule the BH
 * must run again, so the owner eventually sees every final value; a lost
 * wakeup leaves it blocked forever (the watchdog catches that).
 */
typedef struct {
    QEMUBH *bh;
    unsigned seq[XT_THREADS];            /* written by producers (atomic) */
    unsigned seen[XT_THREADS];           /* owner only */
    unsigned long runs;                  /* owner only */
    bool monotonic;
} XTCounter;

typedef struct {
    XTCounter *c;
    int index;
} XTProducer;

static void *xt_counter_producer(void *opaque)
{
    XTProducer *p = opaque;
    for (unsigned n = 1; n <= XT_ITERS; n++) {
        __atomic_store_n(&p->c->seq[p->index], n, __ATOMIC_RELAXED);
        qemu_bh_schedule(p->c->bh);
    }
    return NULL;
}

static void xt_counter_cb(void *opaque)
{
    XTCounter *c = opaque;
    c->runs++;
    for (int t = 0; t < XT_THREADS; t++) {
        unsigned v = __atomic_load_n(&c->seq[t], __ATOMIC_RELAXED);
        if (v < c->seen[t]) {
            c->monotonic = false;
        }
        c->seen[t] = v;
    }
}

static bool xt_all_seen(XTCounter *c)
{
    for (int t = 0; t < XT_THREADS; t++) {
        if (c->seen[t] != XT_ITERS) {
            return false;
        }
    }
    return true;
}

static void test_cross_thread_schedule(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    XTCounter *c = g_new0(XTCounter, 1);
    XTProducer prod[XT_THREADS];
    pthread_t tid[XT_THREADS];

    watchdog_start(&wd, "/aio/bh/cross-thread/schedule", 15);
    c->monotonic = true;
    c->bh = aio_bh_new(ctx, xt_counter_cb, c);
    for (int t = 0; t < XT_THREADS; t++) {
        prod[t] = (XTProducer){ .c = c, .index = t };
        g_assert_cmpint(pthread_create(&tid[t], NULL, xt_counter_producer, &prod[t]), ==, 0);
    }
    while (!xt_all_seen(c)) {
        aio_poll(ctx, true);
    }
    for (int t = 0; t < XT_THREADS; t++) {
        g_assert_cmpint(pthread_join(tid[t], NULL), ==, 0);
    }
    g_assert_true(c->monotonic);
    g_assert_cmpuint(c->runs, >=, 1);
    g_assert_cmpuint(c->runs, <=, (unsigned long)XT_THREADS * XT_ITERS);

    /* At most one more run is pending (scheduled after the last read). */
    aio_poll(ctx, false);
    g_assert_false(aio_poll(ctx, false));

    qemu_bh_delete(c->bh);
    aio_context_unref(ctx);
    g_free(c);
    watchdog_stop(&wd);
}

/* Oneshots from 8 threads: every one runs exactly once, each thread's in
 * the order it scheduled them. */
typedef struct {
    unsigned long total;                 /* owner only */
    unsigned next[XT_THREADS];           /* owner only */
    bool in_order;
} XTOneshot;

typedef struct {
    AioContext *ctx;
    int index;
} XTOneshotProducer;

static XTOneshot *xt_oneshot_state;

static void xt_oneshot_cb(void *opaque)
{
    uintptr_t v = (uintptr_t)opaque;
    unsigned t = (unsigned)(v / (XT_ITERS + 1));
    unsigned n = (unsigned)(v % (XT_ITERS + 1));
    XTOneshot *o = xt_oneshot_state;

    g_assert_cmpuint(t, <, XT_THREADS);
    if (n != o->next[t] + 1) {
        o->in_order = false;
    }
    o->next[t] = n;
    o->total++;
}

static void *xt_oneshot_producer(void *opaque)
{
    XTOneshotProducer *p = opaque;
    for (unsigned n = 1; n <= XT_ITERS; n++) {
        uintptr_t v = (uintptr_t)p->index * (XT_ITERS + 1) + n;
        aio_bh_schedule_oneshot(p->ctx, xt_oneshot_cb, (void *)v);
    }
    return NULL;
}

static void test_cross_thread_oneshot(void)
{
    Watchdog wd;
    AioContext *ctx = new_context();
    XTOneshot *o = g_new0(XTOneshot, 1);
    XTOneshotProducer prod[XT_THREADS];
    pthread_t tid[XT_THREADS];

    watchdog_start(&wd, "/aio/bh/cross-thread/oneshot", 15);
    o->in_order = true;
    xt_oneshot_state = o;
    for (int t = 0; t < XT_THREADS; t++) {
        prod[t] = (XTOneshotProducer){ .ctx = ctx, .index = t };
        g_assert_cmpint(pthread_create(&tid[t], NULL, xt_oneshot_producer, &prod[t]), ==, 0);
    }
    while (o->total < (unsigned long)XT_THREADS * XT_ITERS) {
        aio_poll(ctx, true);
    }
    for (int t = 0; t < XT_THREADS; t++) {
        g_assert_cmpint(pthread_join(tid[t], NULL), ==, 0);
    }
    g_assert_cmpuint(o->total, ==, (unsigned long)XT_THREADS * XT_ITERS);
    for (int t = 0; t < XT_THREADS; t++) {
        g_assert_cmpuint(o->next[t], ==, XT_ITERS);
    }
    g_assert_true(o->in_order);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpuint(o->total, ==, (unsigned long)XT_THREADS * XT_ITERS);

    xt_oneshot_state = NULL;
    aio_context_unref(ctx);
    g_free(o);
    watchdog_stop(&wd);
}

/* ------------------------------------------------------------------------ */
/* Misuse: one stderr line naming the function, then abort                  */
/* ------------------------------------------------------------------------ */

/* Non-static with a prototype so that -rdynamic exports it and the library
 * can name it (dladdr) when a BH without a debug name is leaked. */
void aioctx_test_unnamed_bh_cb(void *opaque);
void aioctx_test_unnamed_bh_cb(void *opaque)
{
    (void)opaque;
}

typedef enum {
    DEATH_SCHEDULE_NULL,
    DEATH_SCHEDULE_IDLE_NULL,
    DEATH_CANCEL_NULL,
    DEATH_DELETE_NULL,
    DEATH_CALL_NULL,
    DEATH_BH_NEW_NULL_CTX,
    DEATH_BH_NEW_NULL_CB,
    DEATH_ONESHOT_NULL_CTX,
    DEATH_BH_POLL_NULL,
    DEATH_SCHEDULE_DELETED,
    DEATH_DELETE_TWICE,
    DEATH_UNREF_SCHEDULED_NAMED,
    DEATH_UNREF_SCHEDULED_UNNAMED,
    DEATH_UNREF_SCHEDULED_ONESHOT,
    DEATH_UNREF_SCHEDULED_IDLE,
} DeathCase;

static const DeathTest death_tests[] = {
    { "/aio/bh/death/schedule-null", DEATH_SCHEDULE_NULL,
      "*aioctx: qemu_bh_schedule: *NULL*" },
    { "/aio/bh/death/schedule-idle-null", DEATH_SCHEDULE_IDLE_NULL,
      "*aioctx: qemu_bh_schedule_idle: *NULL*" },
    { "/aio/bh/death/cancel-null", DEATH_CANCEL_NULL,
      "*aioctx: qemu_bh_cancel: *NULL*" },
    { "/aio/bh/death/delete-null", DEATH_DELETE_NULL,
      "*aioctx: qemu_bh_delete: *NULL*" },
    { "/aio/bh/death/call-null", DEATH_CALL_NULL,
      "*aioctx: aio_bh_call: *NULL*" },
    { "/aio/bh/death/new-null-ctx", DEATH_BH_NEW_NULL_CTX,
      "*aioctx: aio_bh_new: *NULL*" },
    { "/aio/bh/death/new-null-cb", DEATH_BH_NEW_NULL_CB,
      "*aioctx: aio_bh_new_full: *NULL*" },
    { "/aio/bh/death/oneshot-null-ctx", DEATH_ONESHOT_NULL_CTX,
      "*aioctx: aio_bh_schedule_oneshot: *NULL*" },
    { "/aio/bh/death/bh-poll-null", DEATH_BH_POLL_NULL,
      "*aioctx: aio_bh_poll: *NULL*" },
    { "/aio/bh/death/schedule-deleted", DEATH_SCHEDULE_DELETED,
      "*aioctx: qemu_bh_schedule: *deleted-bh*deleted*" },
    { "/aio/bh/death/delete-twice", DEATH_DELETE_TWICE,
      "*aioctx: qemu_bh_delete: *twice-bh*" },
    { "/aio/bh/death/unref-scheduled/named", DEATH_UNREF_SCHEDULED_NAMED,
      "*aioctx: aio_context_unref: *my-scheduled-bh*" },
    { "/aio/bh/death/unref-scheduled/unnamed", DEATH_UNREF_SCHEDULED_UNNAMED,
      "*aioctx: aio_context_unref: *aioctx_test_unnamed_bh_cb*" },
    { "/aio/bh/death/unref-scheduled/oneshot", DEATH_UNREF_SCHEDULED_ONESHOT,
      "*aioctx: aio_context_unref: *my-oneshot*" },
    { "/aio/bh/death/unref-scheduled/idle", DEATH_UNREF_SCHEDULED_IDLE,
      "*aioctx: aio_context_unref: *my-idle-bh*" },
};

static void run_death_case(int which)
{
    AioContext *ctx = new_context();
    QEMUBH *bh;

    switch ((DeathCase)which) {
    case DEATH_SCHEDULE_NULL:
        qemu_bh_schedule(NULL);
        break;
    case DEATH_SCHEDULE_IDLE_NULL:
        qemu_bh_schedule_idle(NULL);
        break;
    case DEATH_CANCEL_NULL:
        qemu_bh_cancel(NULL);
        break;
    case DEATH_DELETE_NULL:
        qemu_bh_delete(NULL);
        break;
    case DEATH_CALL_NULL:
        aio_bh_call(NULL);
        break;
    case DEATH_BH_NEW_NULL_CTX:
        aio_bh_new(NULL, aioctx_test_unnamed_bh_cb, NULL);
        break;
    case DEATH_BH_NEW_NULL_CB:
        aio_bh_new_full(ctx, NULL, NULL, "null-cb", NULL);
        break;
    case DEATH_ONESHOT_NULL_CTX:
        aio_bh_schedule_oneshot(NULL, aioctx_test_unnamed_bh_cb, NULL);
        break;
    case DEATH_BH_POLL_NULL:
        aio_bh_poll(NULL);
        break;
    case DEATH_SCHEDULE_DELETED:
        /* Deleted but not yet freed (the loop has not run): detectable. */
        bh = aio_bh_new_full(ctx, aioctx_test_unnamed_bh_cb, NULL, "deleted-bh", NULL);
        qemu_bh_delete(bh);
        qemu_bh_schedule(bh);
        break;
    case DEATH_DELETE_TWICE:
        bh = aio_bh_new_full(ctx, aioctx_test_unnamed_bh_cb, NULL, "twice-bh", NULL);
        qemu_bh_delete(bh);
        qemu_bh_delete(bh);
        break;
    case DEATH_UNREF_SCHEDULED_NAMED:
        bh = aio_bh_new_full(ctx, aioctx_test_unnamed_bh_cb, NULL, "my-scheduled-bh", NULL);
        qemu_bh_schedule(bh);
        aio_context_unref(ctx);
        break;
    case DEATH_UNREF_SCHEDULED_UNNAMED:
        bh = aio_bh_new(ctx, aioctx_test_unnamed_bh_cb, NULL);
        qemu_bh_schedule(bh);
        aio_context_unref(ctx);
        break;
    case DEATH_UNREF_SCHEDULED_ONESHOT:
        aio_bh_schedule_oneshot_full(ctx, aioctx_test_unnamed_bh_cb, NULL, "my-oneshot");
        aio_context_unref(ctx);
        break;
    case DEATH_UNREF_SCHEDULED_IDLE:
        bh = aio_bh_new_full(ctx, aioctx_test_unnamed_bh_cb, NULL, "my-idle-bh", NULL);
        qemu_bh_schedule_idle(bh);
        aio_context_unref(ctx);
        break;
    }
    /* Only reached if the library did not abort: the parent then fails. */
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/aio/bh/schedule/once", test_schedule_once);
    g_test_add_func("/aio/bh/schedule/twice", test_schedule_twice);
    g_test_add_func("/aio/bh/schedule/self-10", test_schedule_self_10);
    g_test_add_func("/aio/bh/schedule/10-from-callback", test_schedule_10_from_callback);
    g_test_add_func("/aio/bh/schedule/during-dispatch", test_schedule_during_dispatch);
    g_test_add_func("/aio/bh/cancel/basic", test_cancel);
    g_test_add_func("/aio/bh/cancel/from-callback", test_cancel_from_callback);
    g_test_add_func("/aio/bh/delete/basic", test_delete);
    g_test_add_func("/aio/bh/delete/no-warning", test_delete_no_warning);
    g_test_add_func("/aio/bh/callback-delete/one", test_delete_from_own_callback);
    g_test_add_func("/aio/bh/callback-delete/reschedule-many",
                    test_callback_delete_reschedule_many);
    g_test_add_func("/aio/bh/callback-delete/many", test_callback_delete_many);
    g_test_add_func("/aio/bh/callback-delete/next", test_callback_delete_next);
    g_test_add_func("/aio/bh/order/fifo", test_order_fifo);
    g_test_add_func("/aio/bh/order/fifo-across-loop-exit", test_order_fifo_across_loop_exit);
    g_test_add_func("/aio/bh/no-clock-read", test_no_clock_read);
    g_test_add_func("/aio/bh/nested-poll/basic", test_nested_poll);
    g_test_add_func("/aio/bh/nested-poll/deep", test_nested_poll_deep);
    g_test_add_func("/aio/bh/nested-poll/delete", test_nested_poll_delete);
    g_test_add_func("/aio/bh/nested-poll/blocking", test_nested_poll_blocking);
    g_test_add_func("/aio/bh/no-syscall", test_no_syscall);
    g_test_add_func("/aio/bh/oneshot/basic", test_oneshot);
    g_test_add_func("/aio/bh/oneshot/full", test_oneshot_full);
    g_test_add_func("/aio/bh/idle", test_idle);
    g_test_add_func("/aio/bh/bh-poll/return", test_bh_poll_return);
    g_test_add_func("/aio/bh/call", test_bh_call);
    g_test_add_func("/aio/bh/reentrancy-guard", test_reentrancy_guard);
    g_test_add_func("/aio/bh/cross-thread/wakeup", test_cross_thread_wakeup);
    g_test_add_func("/aio/bh/cross-thread/cancel-reschedule",
                    test_cancel_then_cross_thread_reschedule);
    g_test_add_func("/aio/bh/cross-thread/schedule", test_cross_thread_schedule);
    g_test_add_func("/aio/bh/cross-thread/oneshot", test_cross_thread_oneshot);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);

    return g_test_run();
}
