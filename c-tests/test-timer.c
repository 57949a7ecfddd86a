/*
 * Timers and clocks (qemu/timer.h): firing, ordering, re-arming and
 * deleting from callbacks, cross-thread arming, clock enable/disable, the
 * timeout helpers, and misuse reports.
 *
 * Each test arms a watchdog (alarm) so that a lost wakeup fails the run
 * instead of hanging it.
 */
#include "aioctx.h"

#include <glib.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define WATCHDOG() alarm(30)
/* Lateness: the median must be small (no systematic oversleeping); single
 * samples may suffer scheduling noise on a loaded machine. */
#define MEDIAN_LATE_NS (2 * MS)
#define WORST_LATE_NS (250 * MS)

_Static_assert(QEMU_CLOCK_REALTIME == 0, "QEMU numbering");
_Static_assert(QEMU_CLOCK_VIRTUAL == 1, "QEMU numbering");
_Static_assert(QEMU_CLOCK_HOST == 2, "QEMU numbering");
_Static_assert(QEMU_CLOCK_VIRTUAL_RT == 3, "QEMU numbering");
_Static_assert(QEMU_CLOCK_MAX == 4, "QEMU numbering");
_Static_assert(SCALE_NS == 1 && SCALE_US == 1000 && SCALE_MS == 1000000, "scales");
_Static_assert(QEMU_TIMER_ATTR_EXTERNAL == 1, "attributes");
_Static_assert(sizeof(QEMUTimer) == 48, "QEMUTimer layout (QEMU's)");
_Static_assert(_Alignof(QEMUTimer) == 8, "QEMUTimer layout");
_Static_assert(offsetof(QEMUTimer, expire_time) == 0, "QEMUTimer layout");

static void sleep_ns(int64_t ns)
{
    struct timespec ts = { ns / 1000000000, ns % 1000000000 };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* ---- a callback that records when it ran ---- */

typedef struct {
    QEMUTimer timer;
    QEMUClockType type;
    int fired;
    int64_t fired_at; /* ns of the timer's clock */
} Probe;

static void probe_cb(void *opaque)
{
    Probe *p = opaque;
    p->fired++;
    p->fired_at = qemu_clock_get_ns(p->type);
}

static void poll_until_fired(AioContext *ctx, Probe *p)
{
    while (!p->fired) {
        aio_poll(ctx, true);
    }
}

static void test_fire_once(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Probe p = { .type = QEMU_CLOCK_REALTIME };
    QEMUTimerCB *cb = probe_cb; /* the function type works as QEMU's */

    aio_timer_init(ctx, &p.timer, QEMU_CLOCK_REALTIME, SCALE_NS, cb, &p);
    g_assert_false(timer_pending(&p.timer));
    int64_t deadline = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 1 * MS;
    timer_mod(&p.timer, deadline);
    g_assert_true(timer_pending(&p.timer));
    g_assert_cmpuint(timer_expire_time_ns(&p.timer), ==, (uint64_t)deadline);

    poll_until_fired(ctx, &p);
    g_assert_cmpint(p.fired, ==, 1);
    g_assert_cmpint(p.fired_at, >=, deadline);
    g_assert_false(timer_pending(&p.timer));
    /* It does not fire again. */
    sleep_ns(2 * MS);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(p.fired, ==, 1);
    aio_context_unref(ctx);
}

static int cmp_int64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A deadline must never be early, on any clock and scale, and a blocking
 * aio_poll must not oversleep it by more than noise. */
static void test_never_early(void)
{
    static const struct {
        QEMUClockType type;
        int scale;
        int64_t delay_ns;
    } cases[] = {
        { QEMU_CLOCK_REALTIME, SCALE_NS, 1 * MS },
        { QEMU_CLOCK_REALTIME, SCALE_NS, 100 * 1000 },
        { QEMU_CLOCK_REALTIME, SCALE_US, 3300 * 1000 },
        { QEMU_CLOCK_REALTIME, SCALE_MS, 2 * MS },
        { QEMU_CLOCK_VIRTUAL, SCALE_NS, 1 * MS },
        { QEMU_CLOCK_VIRTUAL_RT, SCALE_US, 1 * MS },
        { QEMU_CLOCK_HOST, SCALE_NS, 1 * MS },
    };
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    enum { REPS = 20 };
    int64_t lateness[G_N_ELEMENTS(cases) * REPS];
    size_t samples = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        for (int rep = 0; rep < REPS; rep++) {
            Probe p = { .type = cases[i].type };
            aio_timer_init(ctx, &p.timer, p.type, cases[i].scale, probe_cb, &p);
            int64_t now = qemu_clock_get_ns(p.type);
            /* In the timer's scale, rounded up so the ns deadline is >=. */
            int64_t expire = (now + cases[i].delay_ns + cases[i].scale - 1) / cases[i].scale;
            int64_t deadline_ns = expire * cases[i].scale;
            timer_mod(&p.timer, expire);
            poll_until_fired(ctx, &p);
            g_assert_cmpint(p.fired_at, >=, deadline_ns);
            g_assert_cmpint(p.fired_at - deadline_ns, <, WORST_LATE_NS);
            lateness[samples++] = p.fired_at - deadline_ns;
        }
    }
    qsort(lateness, samples, sizeof(lateness[0]), cmp_int64);
    g_test_message("lateness: median %" G_GINT64_FORMAT " ns, worst %" G_GINT64_FORMAT " ns",
                   lateness[samples / 2], lateness[samples - 1]);
    g_assert_cmpint(lateness[samples / 2], <, MEDIAN_LATE_NS);
    aio_context_unref(ctx);
}

/* ---- a periodic timer re-arming itself ---- */

typedef struct {
    QEMUTimer timer;
    int count;
    int limit;
    int64_t period;
    int64_t last_deadline;
} Periodic;

static void periodic_cb(void *opaque)
{
    Periodic *p = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert_cmpint(now, >=, p->last_deadline);
    g_assert_false(timer_pending(&p->timer));
    if (++p->count < p->limit) {
        p->last_deadline += p->period;
        timer_mod_ns(&p->timer, p->last_deadline);
        g_assert_true(timer_pending(&p->timer));
    }
}

static void test_rearm_from_callback(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Periodic p = { .limit = 10, .period = 1 * MS };

    aio_timer_init(ctx, &p.timer, QEMU_CLOCK_REALTIME, SCALE_NS, periodic_cb, &p);
    p.last_deadline = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + p.period;
    timer_mod_ns(&p.timer, p.last_deadline);
    while (p.count < p.limit) {
        aio_poll(ctx, true);
    }
    g_assert_false(timer_pending(&p.timer));
    sleep_ns(3 * MS);
    aio_poll(ctx, false);
    g_assert_cmpint(p.count, ==, p.limit);
    aio_context_unref(ctx);
}

/* ---- one callback deleting or re-arming other timers ---- */

typedef struct {
    QEMUTimer a, b, c;
    int a_fired, b_fired, c_fired;
} Trio;

static void trio_a_cb(void *opaque)
{
    Trio *t = opaque;
    t->a_fired++;
    timer_del(&t->b);                  /* b was due after a: never runs */
    timer_mod_ns(&t->c, 0);            /* c moved from far away to now */
}

static void trio_b_cb(void *opaque)
{
    ((Trio *)opaque)->b_fired++;
}

static void trio_c_cb(void *opaque)
{
    ((Trio *)opaque)->c_fired++;
}

static void test_delete_from_other_callback(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Trio t = { 0 };
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    aio_timer_init(ctx, &t.a, QEMU_CLOCK_REALTIME, SCALE_NS, trio_a_cb, &t);
    aio_timer_init(ctx, &t.b, QEMU_CLOCK_REALTIME, SCALE_NS, trio_b_cb, &t);
    aio_timer_init(ctx, &t.c, QEMU_CLOCK_REALTIME, SCALE_NS, trio_c_cb, &t);
    timer_mod_ns(&t.a, now + 1 * MS);
    timer_mod_ns(&t.b, now + 1 * MS);   /* same deadline, armed after a */
    timer_mod_ns(&t.c, now + 3600LL * 1000 * MS);
    while (!t.c_fired) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(t.a_fired, ==, 1);
    g_assert_cmpint(t.b_fired, ==, 0);
    g_assert_false(timer_pending(&t.b));
    sleep_ns(2 * MS);
    aio_poll(ctx, false);
    g_assert_cmpint(t.b_fired, ==, 0);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    aio_context_unref(ctx);
}

/* ---- a callback freeing its own timer ---- */

typedef struct {
    QEMUTimer *timer;
    int fired;
} SelfFree;

static void self_free_cb(void *opaque)
{
    SelfFree *s = opaque;
    s->fired++;
    timer_free(s->timer);
    s->timer = NULL;
}

static void test_free_self_in_callback(void)
{
    WATCHDOG();
    /* On the main context, with timer_new_* ... */
    AioContext *main_ctx = qemu_get_aio_context();
    SelfFree a = { 0 };
    a.timer = timer_new_us(QEMU_CLOCK_REALTIME, self_free_cb, &a);
    timer_mod(a.timer, qemu_clock_get_us(QEMU_CLOCK_REALTIME) + 500);
    while (!a.fired) {
        aio_poll(main_ctx, true);
    }
    g_assert_null(a.timer);

    /* ... and on a private context, with aio_timer_new. */
    AioContext *ctx = aio_context_new(&error_abort);
    SelfFree b[3] = { { 0 } };
    for (int i = 0; i < 3; i++) {
        b[i].timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, self_free_cb, &b[i]);
        timer_mod(b[i].timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 1);
    }
    while (!b[0].fired || !b[1].fired || !b[2].fired) {
        aio_poll(ctx, true);
    }
    /* timer_free of an armed timer disarms it first; NULL is a no-op. */
    QEMUTimer *armed = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_NS, probe_cb, NULL);
    timer_mod_ns(armed, 0);
    timer_free(armed);
    timer_free(NULL);
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    aio_context_unref(ctx);
}

/* ---- 10 000 timers with random deadlines ---- */

#define MANY 10000

typedef struct {
    QEMUTimer timer;
    int index;
    int64_t deadline;
} Numbered;

static Numbered many[MANY];
static int many_order[MANY];
static int many_fired;

static void numbered_cb(void *opaque)
{
    Numbered *n = opaque;
    g_assert_cmpint(qemu_clock_get_ns(QEMU_CLOCK_REALTIME), >=, n->deadline);
    many_order[many_fired++] = n->index;
}

static void test_many_in_deadline_order(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    GRand *rand = g_rand_new_with_seed(20250601);
    int64_t base = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 2 * MS;

    many_fired = 0;
    for (int i = 0; i < MANY; i++) {
        many[i].index = i;
        /* 200 distinct deadlines, 100 us apart: many ties. */
        many[i].deadline = base + g_rand_int_range(rand, 0, 200) * 100000LL;
        aio_timer_init(ctx, &many[i].timer, QEMU_CLOCK_REALTIME, SCALE_NS,
                       numbered_cb, &many[i]);
    }
    /* Arm in a shuffled order; ties must then fire in that arming order. */
    int arming[MANY];
    int armed_rank[MANY];
    for (int i = 0; i < MANY; i++) {
        arming[i] = i;
    }
    for (int i = MANY - 1; i > 0; i--) {
        int j = g_rand_int_range(rand, 0, i + 1);
        int tmp = arming[i];
        arming[i] = arming[j];
        arming[j] = tmp;
    }
    for (int k = 0; k < MANY; k++) {
        armed_rank[arming[k]] = k;
        timer_mod_ns(&many[arming[k]].timer, many[arming[k]].deadline);
    }
    g_rand_free(rand);

    while (many_fired < MANY) {
        aio_poll(ctx, true);
    }
    for (int k = 1; k < MANY; k++) {
        Numbered *prev = &many[many_order[k - 1]];
        Numbered *cur = &many[many_order[k]];
        g_assert_cmpint(prev->deadline, <=, cur->deadline);
        if (prev->deadline == cur->deadline) {
            g_assert_cmpint(armed_rank[prev->index], <, armed_rank[cur->index]);
        }
    }
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    aio_context_unref(ctx);
}

/* Re-arming a timer at the same deadline puts it after the others. */
static int tie_order[3];
static int tie_count;

static void tie_cb(void *opaque)
{
    tie_order[tie_count++] = GPOINTER_TO_INT(opaque);
}

static void test_rearm_tie_goes_last(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimer t[3];

    tie_count = 0;
    for (int i = 0; i < 3; i++) {
        aio_timer_init(ctx, &t[i], QEMU_CLOCK_REALTIME, SCALE_NS, tie_cb, GINT_TO_POINTER(i));
        timer_mod_ns(&t[i], 1000);
    }
    timer_mod_ns(&t[0], 1000);
    aio_poll(ctx, false);
    g_assert_cmpint(tie_count, ==, 3);
    g_assert_cmpint(tie_order[0], ==, 1);
    g_assert_cmpint(tie_order[1], ==, 2);
    g_assert_cmpint(tie_order[2], ==, 0);
    aio_context_unref(ctx);
}

/* ---- timer_mod_anticipate ---- */

static void test_mod_anticipate(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimer t;
    int64_t far = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 3600LL * 1000 * MS;

    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_MS, probe_cb, NULL);
    timer_mod_anticipate_ns(&t, far);       /* not pending: arms */
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)far);
    timer_mod_anticipate_ns(&t, far + 1);   /* later: ignored */
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)far);
    timer_mod_anticipate_ns(&t, far - 5);   /* earlier: moves */
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)(far - 5));
    /* In the timer's scale (ms). */
    int64_t far_ms = far / SCALE_MS;
    timer_mod_anticipate(&t, far_ms + 10);
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)(far - 5));
    timer_mod_anticipate(&t, far_ms - 10);
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)((far_ms - 10) * SCALE_MS));
    /* Plain timer_mod moves either way. */
    timer_mod(&t, far_ms + 10);
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)((far_ms + 10) * SCALE_MS));
    timer_del(&t);
    g_assert_false(timer_pending(&t));
    timer_deinit(&t);
    aio_context_unref(ctx);
}

/* ---- cross-thread arming wakes a blocked aio_poll ---- */

typedef struct {
    Probe *probe;
    int64_t delay_before_ns;
    int64_t armed_deadline;
} ArmLater;

static void *arm_later_thread(void *opaque)
{
    ArmLater *a = opaque;
    sleep_ns(a->delay_before_ns);
    a->armed_deadline = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 1 * MS;
    timer_mod_ns(&a->probe->timer, a->armed_deadline);
    return NULL;
}

static void cross_thread_case(bool pre_armed_far)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Probe p = { .type = QEMU_CLOCK_REALTIME };
    ArmLater a = { .probe = &p, .delay_before_ns = 30 * MS };
    pthread_t thread;

    aio_timer_init(ctx, &p.timer, QEMU_CLOCK_REALTIME, SCALE_NS, probe_cb, &p);
    if (pre_armed_far) {
        /* The poller sleeps with a 20 s timeout; re-arming must cut it. */
        timer_mod_ns(&p.timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 20000 * MS);
    }
    int64_t start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert_cmpint(pthread_create(&thread, NULL, arm_later_thread, &a), ==, 0);
    poll_until_fired(ctx, &p);
    int64_t end = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    g_assert_cmpint(pthread_join(thread, NULL), ==, 0);
    g_assert_cmpint(p.fired, ==, 1);
    g_assert_cmpint(p.fired_at, >=, a.armed_deadline);
    g_assert_cmpint(end - start, <, 5000 * MS);
    aio_context_unref(ctx);
}

static void test_cross_thread_arm_wakes_poller(void)
{
    cross_thread_case(false);
}

static void test_cross_thread_earlier_wakes_poller(void)
{
    cross_thread_case(true);
}

/* ---- clock enable/disable ---- */

static void test_virtual_clock_disabled(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Probe v = { .type = QEMU_CLOCK_VIRTUAL };
    Probe tick = { .type = QEMU_CLOCK_REALTIME };

    aio_timer_init(ctx, &v.timer, QEMU_CLOCK_VIRTUAL, SCALE_NS, probe_cb, &v);
    aio_timer_init(ctx, &tick.timer, QEMU_CLOCK_REALTIME, SCALE_NS, probe_cb, &tick);

    qemu_clock_enable(QEMU_CLOCK_VIRTUAL, false);
    int64_t frozen = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    timer_mod_ns(&v.timer, frozen + 1 * MS);
    /* A disabled clock's timers do not count in the timeout. */
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    timer_mod_ns(&tick.timer, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 20 * MS);
    poll_until_fired(ctx, &tick);
    g_assert_cmpint(v.fired, ==, 0);
    g_assert_true(timer_pending(&v.timer));
    g_assert_cmpint(qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL), ==, frozen);

    /* Re-enabled: resumes from the frozen value, without a jump. */
    qemu_clock_enable(QEMU_CLOCK_VIRTUAL, true);
    int64_t resumed = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    g_assert_cmpint(resumed, >=, frozen);
    g_assert_cmpint(resumed - frozen, <, 10 * MS);
    poll_until_fired(ctx, &v);
    g_assert_cmpint(v.fired_at, >=, frozen + 1 * MS);
    aio_context_unref(ctx);
}

static void *enable_virtual_later(void *opaque)
{
    (void)opaque;
    sleep_ns(30 * MS);
    qemu_clock_enable(QEMU_CLOCK_VIRTUAL, true);
    return NULL;
}

/* The poller sleeps with no timeout (its only timer's clock is disabled);
 * another thread re-enabling the clock must wake it. */
static void test_virtual_enable_wakes_poller(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    Probe v = { .type = QEMU_CLOCK_VIRTUAL };
    pthread_t thread;

    aio_timer_init(ctx, &v.timer, QEMU_CLOCK_VIRTUAL, SCALE_NS, probe_cb, &v);
    qemu_clock_enable(QEMU_CLOCK_VIRTUAL, false);
    timer_mod_ns(&v.timer, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + 1 * MS);
    g_assert_cmpint(pthread_create(&thread, NULL, enable_virtual_later, NULL), ==, 0);
    poll_until_fired(ctx, &v);
    g_assert_cmpint(pthread_join(thread, NULL), ==, 0);
    aio_context_unref(ctx);
}

/* ---- state queries ---- */

static void test_pending_expired_expire_time(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimer t;

    aio_timer_init_with_attrs(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_US,
                              QEMU_TIMER_ATTR_EXTERNAL, probe_cb, NULL);
    g_assert_cmpint(t.attributes, ==, QEMU_TIMER_ATTR_EXTERNAL);
    g_assert_false(timer_pending(&t));
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, UINT64_MAX);
    /* As QEMU: a timer that is not pending has expire_time -1, "expired". */
    g_assert_true(timer_expired(&t, 0));

    int64_t far_us = qemu_clock_get_us(QEMU_CLOCK_REALTIME) + 3600LL * 1000000;
    timer_mod(&t, far_us);
    g_assert_true(timer_pending(&t));
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, (uint64_t)far_us * SCALE_US);
    g_assert_cmpint(t.expire_time, ==, far_us * SCALE_US);
    g_assert_false(timer_expired(&t, far_us - 1));
    g_assert_true(timer_expired(&t, far_us));
    g_assert_true(timer_expired(&t, far_us + 1));

    /* Negative deadlines are clamped to 0, as QEMU does. */
    timer_mod_ns(&t, -42);
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, 0);

    timer_del(&t);
    timer_del(&t);  /* idempotent */
    g_assert_false(timer_pending(&t));
    g_assert_cmpuint(timer_expire_time_ns(&t), ==, UINT64_MAX);
    aio_context_unref(ctx);
}

static void test_compute_timeout(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimer a, b;

    aio_timer_init(ctx, &a, QEMU_CLOCK_REALTIME, SCALE_NS, probe_cb, NULL);
    aio_timer_init(ctx, &b, QEMU_CLOCK_HOST, SCALE_NS, probe_cb, NULL);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);

    timer_mod_ns(&a, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 500 * MS);
    int64_t t = aio_compute_timeout(ctx);
    g_assert_cmpint(t, >, 250 * MS); /* generous: the thread may be descheduled */
    g_assert_cmpint(t, <=, 500 * MS);

    /* The earliest over all clocks counts. */
    timer_mod_ns(&b, qemu_clock_get_ns(QEMU_CLOCK_HOST) + 100 * MS);
    t = aio_compute_timeout(ctx);
    g_assert_cmpint(t, >, 0);
    g_assert_cmpint(t, <=, 100 * MS);

    timer_mod_ns(&a, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - 1);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, 0);

    timer_del(&a);
    timer_del(&b);
    g_assert_cmpint(aio_compute_timeout(ctx), ==, -1);
    aio_context_unref(ctx);
}

static void test_timeout_helpers(void)
{
    g_assert_cmpint(qemu_timeout_ns_to_ms(-1), ==, -1);
    g_assert_cmpint(qemu_timeout_ns_to_ms(-100), ==, -1);
    g_assert_cmpint(qemu_timeout_ns_to_ms(0), ==, 0);
    g_assert_cmpint(qemu_timeout_ns_to_ms(1), ==, 1);
    g_assert_cmpint(qemu_timeout_ns_to_ms(999999), ==, 1);
    g_assert_cmpint(qemu_timeout_ns_to_ms(1000000), ==, 1);
    g_assert_cmpint(qemu_timeout_ns_to_ms(1000001), ==, 2);
    g_assert_cmpint(qemu_timeout_ns_to_ms(INT64_MAX), ==, INT32_MAX);

    g_assert_cmpint(qemu_soonest_timeout(-1, -1), ==, -1);
    g_assert_cmpint(qemu_soonest_timeout(-1, 5), ==, 5);
    g_assert_cmpint(qemu_soonest_timeout(5, -1), ==, 5);
    g_assert_cmpint(qemu_soonest_timeout(3, 7), ==, 3);
    g_assert_cmpint(qemu_soonest_timeout(0, -1), ==, 0);
}

static void test_clock_values(void)
{
    int64_t rt = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    struct timespec mono, wall;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t mono_ns = mono.tv_sec * 1000000000LL + mono.tv_nsec;
    int64_t wall_ns = wall.tv_sec * 1000000000LL + wall.tv_nsec;
    g_assert_cmpint(mono_ns - rt, >=, 0);
    g_assert_cmpint(mono_ns - rt, <, 100 * MS);
    g_assert_cmpint(llabs(wall_ns - qemu_clock_get_ns(QEMU_CLOCK_HOST)), <, 100 * MS);
    g_assert_cmpint(qemu_clock_get_ms(QEMU_CLOCK_REALTIME), >=, rt / SCALE_MS);
    g_assert_cmpint(qemu_clock_get_us(QEMU_CLOCK_REALTIME), >=, rt / SCALE_US);
    /* Monotonic across reads. */
    int64_t v = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    for (int i = 0; i < 1000; i++) {
        int64_t w = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
        g_assert_cmpint(w, >=, v);
        v = w;
    }
}

/* ---- qemu_init_clocks' callback ---- */

static int clock_notifications;
static QEMUClockType clock_notified_type;

static void clock_notify_cb(void *opaque, QEMUClockType type)
{
    g_assert_null(opaque);
    clock_notifications++;
    clock_notified_type = type;
}

static void test_init_clocks_notify(void)
{
    WATCHDOG();
    QEMUTimerListNotifyCB *cb = clock_notify_cb;
    qemu_init_clocks(cb);
    qemu_init_clocks(cb); /* idempotent */
    clock_notifications = 0;

    QEMUTimer t;
    timer_init_ms(&t, QEMU_CLOCK_HOST, probe_cb, NULL);
    timer_mod(&t, qemu_clock_get_ms(QEMU_CLOCK_HOST) + 3600 * 1000);
    g_assert_cmpint(clock_notifications, ==, 1);
    g_assert_cmpint(clock_notified_type, ==, QEMU_CLOCK_HOST);
    /* Later: not the earliest any more than before, no notification. */
    timer_mod(&t, qemu_clock_get_ms(QEMU_CLOCK_HOST) + 7200 * 1000);
    g_assert_cmpint(clock_notifications, ==, 1);
    timer_deinit(&t);

    qemu_init_clocks(NULL);
    QEMUTimer u;
    timer_init(&u, QEMU_CLOCK_HOST, SCALE_NS, probe_cb, NULL);
    timer_mod_ns(&u, qemu_clock_get_ns(QEMU_CLOCK_HOST) + 3600 * 1000 * MS);
    g_assert_cmpint(clock_notifications, ==, 1);
    timer_deinit(&u);
    init_clocks(NULL); /* QEMU's name */
}

/* ---- context teardown ---- */

static void test_teardown_disarms(void)
{
    WATCHDOG();
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimer t;

    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_NS, probe_cb, NULL);
    timer_mod_ns(&t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 3600 * 1000 * MS);
    aio_context_unref(ctx);
    g_assert_false(timer_pending(&t));
    timer_del(&t);     /* harmless */
    timer_deinit(&t);  /* harmless */
}

/* ---- misuse ---- */

static void test_death_mod_zeroed(void)
{
    if (g_test_subprocess()) {
        QEMUTimer t;
        memset(&t, 0, sizeof(t));
        timer_mod(&t, 1);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: timer_mod: QEMUTimer was never initialized*");
}

static void test_death_mod_garbage(void)
{
    if (g_test_subprocess()) {
        QEMUTimer t;
        memset(&t, 0xa5, sizeof(t));
        timer_mod_ns(&t, 1);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: timer_mod_ns: QEMUTimer was never initialized*");
}

static void test_death_mod_deinitialized(void)
{
    if (g_test_subprocess()) {
        QEMUTimer t;
        timer_init_ns(&t, QEMU_CLOCK_REALTIME, probe_cb, NULL);
        timer_deinit(&t);
        timer_mod(&t, 1);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: timer_mod: QEMUTimer was deinitialized*");
}

static void test_death_invalid_clock(void)
{
    if (g_test_subprocess()) {
        qemu_clock_get_ns(QEMU_CLOCK_MAX);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: qemu_clock_get_ns: invalid QEMUClockType 4*");
}

static void test_death_null_callback(void)
{
    if (g_test_subprocess()) {
        QEMUTimer t;
        timer_init_ns(&t, QEMU_CLOCK_REALTIME, NULL, NULL);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: timer_init_ns: callback is NULL*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* timer_new_* / timer_init_* bind to the main context. */
    g_assert_cmpint(qemu_init_main_loop(&error_abort), ==, 0);

    g_test_add_func("/timer/fire-once", test_fire_once);
    g_test_add_func("/timer/never-early", test_never_early);
    g_test_add_func("/timer/rearm-from-callback", test_rearm_from_callback);
    g_test_add_func("/timer/delete-from-other-callback", test_delete_from_other_callback);
    g_test_add_func("/timer/free-self-in-callback", test_free_self_in_callback);
    g_test_add_func("/timer/order/many-random", test_many_in_deadline_order);
    g_test_add_func("/timer/order/rearm-tie-goes-last", test_rearm_tie_goes_last);
    g_test_add_func("/timer/mod-anticipate", test_mod_anticipate);
    g_test_add_func("/timer/cross-thread/arm-wakes-poller", test_cross_thread_arm_wakes_poller);
    g_test_add_func("/timer/cross-thread/earlier-wakes-poller",
                    test_cross_thread_earlier_wakes_poller);
    g_test_add_func("/timer/clock/virtual-disabled", test_virtual_clock_disabled);
    g_test_add_func("/timer/clock/virtual-enable-wakes-poller", test_virtual_enable_wakes_poller);
    g_test_add_func("/timer/clock/values", test_clock_values);
    g_test_add_func("/timer/clock/init-clocks-notify", test_init_clocks_notify);
    g_test_add_func("/timer/state/pending-expired-expire-time", test_pending_expired_expire_time);
    g_test_add_func("/timer/compute-timeout", test_compute_timeout);
    g_test_add_func("/timer/helpers/timeouts", test_timeout_helpers);
    g_test_add_func("/timer/teardown-disarms", test_teardown_disarms);
    g_test_add_func("/timer/death/mod-zeroed", test_death_mod_zeroed);
    g_test_add_func("/timer/death/mod-garbage", test_death_mod_garbage);
    g_test_add_func("/timer/death/mod-deinitialized", test_death_mod_deinitialized);
    g_test_add_func("/timer/death/invalid-clock", test_death_invalid_clock);
    g_test_add_func("/timer/death/null-callback", test_death_null_callback);
    return g_test_run();
}
