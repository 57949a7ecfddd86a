/*
 * IOThreads, written as QEMU code writes them.
 *
 * The first half defines an IOThread by hand, following QEMU's
 * tests/unit/iothread.c: a thread creates a context, gives it its own
 * GMainContext (pushed as the thread default, with the context's GSource
 * attached), binds the context as its current one and loops on
 * aio_poll(ctx, true) until a oneshot BH asks it to stop. The helper
 * defines iothread_new, iothread_join and iothread_get_aio_context as
 * global functions, exactly as QEMU's test helper does: the library must
 * not define these names, and this program linking at all proves it.
 *
 * The second half drives the library's own IOThread (aioctx_iothread_*).
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -Iinclude/compat -Iinclude \
 *        $(pkg-config --cflags glib-2.0) c-tests/test-iothread.c \
 *        target/release/libaioctx.a $(pkg-config --libs glib-2.0) ...
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/aio.h"
#include "qemu/aio-wait.h"
#include "qemu/main-loop.h"
#include "qemu/rcu.h"
#include "qemu/thread.h"
#include "qemu/timer.h"

/* ------------------------------------------------------------------ */
/* A QEMU-style IOThread, by hand (cf. QEMU tests/unit/iothread.[ch]) */

typedef struct IOThread IOThread;

IOThread *iothread_new(void);
void iothread_join(IOThread *iothread);
AioContext *iothread_get_aio_context(IOThread *iothread);

struct IOThread {
    AioContext *ctx;
    GMainContext *worker_context;
    GMainLoop *main_loop;

    QemuThread thread;
    QemuMutex init_done_lock;
    QemuCond init_done_cond;    /* is thread initialization done? */
    bool stopping;
    int thread_id;

    /* Test knob: drive the context with g_main_loop_run, not aio_poll. */
    bool run_gcontext;
};

static void iothread_init_gcontext(IOThread *iothread)
{
    GSource *source;

    iothread->worker_context = g_main_context_new();
    source = aio_get_g_source(iothread->ctx);
    g_source_attach(source, iothread->worker_context);
    g_source_unref(source);
    iothread->main_loop = g_main_loop_new(iothread->worker_context, TRUE);
}

static void *iothread_run(void *opaque)
{
    IOThread *iothread = opaque;

    rcu_register_thread();

    qemu_mutex_lock(&iothread->init_done_lock);
    iothread->ctx = aio_context_new(&error_abort);

    /*
     * Connect the context to a GMainContext, and make that the thread's
     * default before anything in this thread uses GLib.
     */
    iothread_init_gcontext(iothread);
    g_main_context_push_thread_default(iothread->worker_context);
    qemu_set_current_aio_context(iothread->ctx);
    iothread->thread_id = qemu_get_thread_id();

    qemu_cond_signal(&iothread->init_done_cond);
    qemu_mutex_unlock(&iothread->init_done_lock);

    while (!qatomic_read(&iothread->stopping)) {
        if (iothread->run_gcontext) {
            g_main_loop_run(iothread->main_loop);
        } else {
            aio_poll(iothread->ctx, true);
        }
    }

    g_main_context_pop_thread_default(iothread->worker_context);
    g_main_loop_unref(iothread->main_loop);
    g_main_context_unref(iothread->worker_context);
    rcu_unregister_thread();
    return NULL;
}

static void iothread_stop_bh(void *opaque)
{
    IOThread *iothread = opaque;

    iothread->stopping = true;
    g_main_loop_quit(iothread->main_loop);
}

void iothread_join(IOThread *iothread)
{
    aio_bh_schedule_oneshot(iothread->ctx, iothread_stop_bh, iothread);
    qemu_thread_join(&iothread->thread);
    qemu_cond_destroy(&iothread->init_done_cond);
    qemu_mutex_destroy(&iothread->init_done_lock);
    aio_context_unref(iothread->ctx);
    g_free(iothread);
}

static IOThread *iothread_new_mode(bool run_gcontext)
{
    IOThread *iothread = g_new0(IOThread, 1);

    iothread->run_gcontext = run_gcontext;
    qemu_mutex_init(&iothread->init_done_lock);
    qemu_cond_init(&iothread->init_done_cond);
    qemu_thread_create(&iothread->thread, "hand-iothread", iothread_run,
                       iothread, QEMU_THREAD_JOINABLE);

    /* Wait for initialization to complete */
    qemu_mutex_lock(&iothread->init_done_lock);
    while (iothread->ctx == NULL) {
        qemu_cond_wait(&iothread->init_done_cond,
                       &iothread->init_done_lock);
    }
    qemu_mutex_unlock(&iothread->init_done_lock);
    return iothread;
}

IOThread *iothread_new(void)
{
    return iothread_new_mode(false);
}

AioContext *iothread_get_aio_context(IOThread *iothread)
{
    return iothread->ctx;
}

/* ------------------------------------------------------------------ */
/* Shared probes                                                       */

static int main_tid;

/* What a callback saw about the thread it ran in. */
typedef struct {
    AioContext *ctx;            /* the context it was scheduled on */
    QemuEvent done;
    int runs;
    int tid;
    AioContext *current;
    bool home;
    bool main_home;
    bool bql;
    GMainContext *thread_default;
    bool owns_thread_default;
} Probe;

static void probe_init(Probe *p, AioContext *ctx)
{
    memset(p, 0, sizeof(*p));
    p->ctx = ctx;
    qemu_event_init(&p->done, false);
}

static void probe_record(Probe *p)
{
    p->runs++;
    p->tid = qemu_get_thread_id();
    p->current = qemu_get_current_aio_context();
    p->home = in_aio_context_home_thread(p->ctx);
    p->main_home = in_aio_context_home_thread(qemu_get_aio_context());
    p->bql = bql_locked();
    p->thread_default = g_main_context_get_thread_default();
    p->owns_thread_default = p->thread_default &&
        g_main_context_is_owner(p->thread_default);
}

static void probe_bh(void *opaque)
{
    Probe *p = opaque;

    probe_record(p);
    qemu_event_set(&p->done);
}

/* Same, without the event: for aio_wait_bh_oneshot. */
static void probe_sync_bh(void *opaque)
{
    probe_record(opaque);
}

static void assert_probe_in_thread(Probe *p, int tid)
{
    g_assert_cmpint(p->runs, ==, 1);
    g_assert_cmpint(p->tid, !=, main_tid);
    if (tid) {
        g_assert_cmpint(p->tid, ==, tid);
    }
    g_assert_true(p->current == p->ctx);
    g_assert_true(p->home);
    g_assert_false(p->main_home);
    g_assert_false(p->bql);
}

/* A run of oneshot BHs that check they run in scheduling order. */
typedef struct {
    int next;                   /* index of the BH expected next */
    int out_of_order;
    int ran_elsewhere;          /* ran outside the context's home thread */
    AioContext *ctx;
    int slow_first;             /* the first BH sleeps this many us */
} Seq;

typedef struct {
    Seq *seq;
    int idx;
} SeqItem;

static void seq_bh(void *opaque)
{
    SeqItem *it = opaque;
    Seq *s = it->seq;

    if (it->idx == 0 && s->slow_first) {
        g_usleep(s->slow_first);
    }
    if (it->idx != s->next) {
        s->out_of_order++;
    }
    if (!in_aio_context_home_thread(s->ctx)) {
        s->ran_elsewhere++;
    }
    s->next = it->idx + 1;
}

static SeqItem *seq_schedule(Seq *s, AioContext *ctx, int n)
{
    SeqItem *items = g_new0(SeqItem, n);

    s->ctx = ctx;
    for (int i = 0; i < n; i++) {
        items[i].seq = s;
        items[i].idx = i;
        aio_bh_schedule_oneshot(ctx, seq_bh, &items[i]);
    }
    return items;
}

/* Checked by the oneshot passed to aio_wait_bh_oneshot. */
typedef struct {
    Seq *seq;
    int seen_next;
    int runs;
    bool home;
} Flush;

static void flush_bh(void *opaque)
{
    Flush *f = opaque;

    f->runs++;
    f->seen_next = f->seq->next;
    f->home = in_aio_context_home_thread(f->seq->ctx);
}

/*
 * aio_wait_bh_oneshot(ctx) from this thread: every BH scheduled on ctx
 * before it has run when it returns, in order, in ctx's thread.
 */
static void check_wait_bh_oneshot_flushes(AioContext *ctx, int n)
{
    Seq s = { .slow_first = 20000 };
    SeqItem *items = seq_schedule(&s, ctx, n);
    Flush f = { .seq = &s };

    aio_wait_bh_oneshot(ctx, flush_bh, &f);
    g_assert_cmpint(f.runs, ==, 1);
    g_assert_true(f.home);
    g_assert_cmpint(f.seen_next, ==, n);
    g_assert_cmpint(s.next, ==, n);
    g_assert_cmpint(s.out_of_order, ==, 0);
    g_assert_cmpint(s.ran_elsewhere, ==, 0);
    g_free(items);
}

/* Timers: a one-shot and a periodic one re-armed from its callback. */
typedef struct {
    AioContext *ctx;
    QEMUTimer *timer;
    QemuEvent done;
    int fired;
    int want;                   /* periodic: stop after this many */
    int period_ms;
    int not_home;
    int tid;
    int64_t armed_at_ns;
    int64_t first_at_ns;
    int64_t last_at_ns;
} TimerProbe;

static void timer_cb(void *opaque)
{
    TimerProbe *t = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

    if (!in_aio_context_home_thread(t->ctx) ||
        qemu_get_current_aio_context() != t->ctx) {
        t->not_home++;
    }
    t->tid = qemu_get_thread_id();
    if (t->fired++ == 0) {
        t->first_at_ns = now;
    }
    t->last_at_ns = now;
    if (t->fired < t->want) {
        timer_mod(t->timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                  t->period_ms);
    } else {
        qemu_event_set(&t->done);
    }
}

static void timer_free_bh(void *opaque)
{
    timer_free(opaque);
}

/* Arms a timer of ctx from this (main) thread; it must fire in ctx's. */
static void check_timer_fires_in(AioContext *ctx, int want, int period_ms)
{
    TimerProbe t = { .ctx = ctx, .want = want, .period_ms = period_ms };

    qemu_event_init(&t.done, false);
    t.timer = aio_timer_new(ctx, QEMU_CLOCK_REALTIME, SCALE_MS, timer_cb, &t);
    t.armed_at_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod(t.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + period_ms);
    g_assert_true(timer_pending(t.timer));

    qemu_event_wait(&t.done);
    /* Free it in its own thread: the callback may still be returning. */
    aio_wait_bh_oneshot(ctx, timer_free_bh, t.timer);

    g_assert_cmpint(t.fired, ==, want);
    g_assert_cmpint(t.not_home, ==, 0);
    g_assert_cmpint(t.tid, !=, main_tid);
    /* A deadline in ms is never early (ns clock vs ms deadline: -1 ms). */
    g_assert_cmpint(t.first_at_ns - t.armed_at_ns, >=,
                    (int64_t)(period_ms - 1) * SCALE_MS);
    g_assert_cmpint(t.last_at_ns - t.armed_at_ns, >=,
                    (int64_t)(want * period_ms - want) * SCALE_MS);
    g_assert_cmpint(t.last_at_ns - t.armed_at_ns, <, 5 * NANOSECONDS_PER_SECOND);
    qemu_event_destroy(&t.done);
}

/* ------------------------------------------------------------------ */
/* Tests of the hand-written IOThread                                  */

static void test_hand_bh_runs_in_iothread(void)
{
    IOThread *iothread = iothread_new();
    AioContext *ctx = iothread_get_aio_context(iothread);
    Probe p;
    QEMUBH *bh;

    g_assert_nonnull(ctx);
    g_assert_true(ctx != qemu_get_aio_context());
    /* The main thread is not the iothread's home thread. */
    g_assert_false(in_aio_context_home_thread(ctx));
    g_assert_true(qemu_get_current_aio_context() == qemu_get_aio_context());

    /* A oneshot BH. */
    probe_init(&p, ctx);
    aio_bh_schedule_oneshot(ctx, probe_bh, &p);
    qemu_event_wait(&p.done);
    assert_probe_in_thread(&p, qatomic_read(&iothread->thread_id));
    g_assert_true(p.thread_default == iothread->worker_context);
    qemu_event_destroy(&p.done);

    /* A BH object, scheduled twice (it runs each time). */
    probe_init(&p, ctx);
    bh = aio_bh_new(ctx, probe_bh, &p);
    qemu_bh_schedule(bh);
    qemu_event_wait(&p.done);
    assert_probe_in_thread(&p, iothread->thread_id);
    qemu_event_reset(&p.done);
    qemu_bh_schedule(bh);
    qemu_event_wait(&p.done);
    g_assert_cmpint(p.runs, ==, 2);
    qemu_bh_delete(bh);
    qemu_event_destroy(&p.done);

    iothread_join(iothread);
}

static void test_hand_wait_bh_oneshot(void)
{
    IOThread *iothread = iothread_new();
    AioContext *ctx = iothread_get_aio_context(iothread);
    Probe p;

    /* The callback itself runs in the iothread, before the call returns. */
    probe_init(&p, ctx);
    aio_wait_bh_oneshot(ctx, probe_sync_bh, &p);
    assert_probe_in_thread(&p, iothread->thread_id);
    qemu_event_destroy(&p.done);

    /* FIFO flush: everything scheduled before has run. */
    check_wait_bh_oneshot_flushes(ctx, 1);
    check_wait_bh_oneshot_flushes(ctx, 1000);

    /* Many round trips in a row. */
    for (int i = 0; i < 200; i++) {
        check_wait_bh_oneshot_flushes(ctx, i % 7);
    }

    iothread_join(iothread);
}

/* aio_wait_bh_oneshot from a thread bound to no context (no BQL). */
static gpointer unbound_waiter(gpointer opaque)
{
    AioContext *ctx = opaque;
    Seq s = { 0 };
    SeqItem *items;
    Flush f = { .seq = &s };
    bool ok;

    g_assert_null(qemu_get_current_aio_context());
    items = seq_schedule(&s, ctx, 100);
    aio_wait_bh_oneshot(ctx, flush_bh, &f);
    ok = f.runs == 1 && f.home && f.seen_next == 100 && s.out_of_order == 0;
    g_free(items);
    return GINT_TO_POINTER(ok);
}

static void test_hand_wait_bh_oneshot_unbound_thread(void)
{
    IOThread *iothread = iothread_new();
    GThread *t = g_thread_new("unbound", unbound_waiter,
                              iothread_get_aio_context(iothread));

    g_assert_true(GPOINTER_TO_INT(g_thread_join(t)));
    iothread_join(iothread);
}

/* GLib code in the iothread finds the iothread's GMainContext. */
typedef struct {
    IOThread *iothread;
    GMainContext *thread_default;
    GMainContext *ref_default;
    bool is_owner;
    bool default_is_global;
} GlibProbe;

static void glib_probe_bh(void *opaque)
{
    GlibProbe *g = opaque;

    g->thread_default = g_main_context_get_thread_default();
    g->ref_default = g_main_context_ref_thread_default();
    g->is_owner = g_main_context_is_owner(g->thread_default);
    g->default_is_global = g->ref_default == g_main_context_default();
    g_main_context_unref(g->ref_default);
}

static void test_hand_glib_thread_default(void)
{
    IOThread *iothread = iothread_new();
    GlibProbe g = { .iothread = iothread };

    aio_wait_bh_oneshot(iothread->ctx, glib_probe_bh, &g);
    g_assert_true(g.thread_default == iothread->worker_context);
    g_assert_true(g.ref_default == iothread->worker_context);
    g_assert_true(g.is_owner);
    g_assert_false(g.default_is_global);
    /* The main thread still sees the global default. */
    g_assert_null(g_main_context_get_thread_default());

    iothread_join(iothread);
}

/*
 * g_main_context_iteration on the worker context, from inside the
 * iothread (in a BH), runs the context's BHs, timers and plain GLib
 * sources attached to the thread-default context.
 */
typedef struct {
    IOThread *iothread;
    int inner_ran;
    int inner_not_home;
    int idle_ran;
    bool first_progress;
    int drain_iterations;
    bool after_drain;
    int timer_fired;
    int64_t timer_wait_ns;
    int blocking_iterations;
} IterProbe;

static void inner_bh(void *opaque)
{
    IterProbe *it = opaque;

    it->inner_ran++;
    if (!in_aio_context_home_thread(it->iothread->ctx)) {
        it->inner_not_home++;
    }
}

static gboolean idle_cb(gpointer opaque)
{
    IterProbe *it = opaque;

    it->idle_ran++;
    return G_SOURCE_REMOVE;
}

static void iter_timer_cb(void *opaque)
{
    IterProbe *it = opaque;

    it->timer_fired++;
}

static void iterate_bh(void *opaque)
{
    IterProbe *it = opaque;
    GMainContext *worker = g_main_context_get_thread_default();
    GSource *idle;
    QEMUTimer *timer;
    int64_t start;

    /* A BH scheduled now runs from the GLib iteration. */
    aio_bh_schedule_oneshot(it->iothread->ctx, inner_bh, it);
    /* Plain GLib code: an idle source on the thread-default context. */
    idle = g_idle_source_new();
    g_source_set_callback(idle, idle_cb, it, NULL);
    g_source_attach(idle, worker);
    g_source_unref(idle);

    it->first_progress = g_main_context_iteration(worker, FALSE);
    while (g_main_context_iteration(worker, FALSE)) {
        it->drain_iterations++;
    }
    it->after_drain = g_main_context_iteration(worker, FALSE);

    /* A timer of the context wakes a blocking GLib iteration. */
    timer = aio_timer_new(it->iothread->ctx, QEMU_CLOCK_REALTIME, SCALE_MS,
                          iter_timer_cb, it);
    start = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    timer_mod(timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + 10);
    while (!it->timer_fired && it->blocking_iterations < 1000) {
        g_main_context_iteration(worker, TRUE);
        it->blocking_iterations++;
    }
    it->timer_wait_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - start;
    timer_free(timer);
}

static void test_hand_gcontext_iteration(void)
{
    IOThread *iothread = iothread_new();
    IterProbe it = { .iothread = iothread };

    aio_wait_bh_oneshot(iothread->ctx, iterate_bh, &it);
    g_assert_cmpint(it.inner_ran, ==, 1);
    g_assert_cmpint(it.inner_not_home, ==, 0);
    g_assert_cmpint(it.idle_ran, ==, 1);
    g_assert_true(it.first_progress);
    g_assert_false(it.after_drain);
    g_assert_cmpint(it.timer_fired, ==, 1);
    g_assert_cmpint(it.timer_wait_ns, >=, 9 * SCALE_MS);
    g_assert_cmpint(it.timer_wait_ns, <, 2 * NANOSECONDS_PER_SECOND);

    iothread_join(iothread);
}

/* Stopping runs what was scheduled before the stop BH. */
static void count_bh(void *opaque)
{
    qatomic_inc((int *)opaque);
}

static void test_hand_join_runs_scheduled(void)
{
    for (int round = 0; round < 20; round++) {
        IOThread *iothread = iothread_new();
        int n = 0;

        for (int i = 0; i < 100; i++) {
            aio_bh_schedule_oneshot(iothread->ctx, count_bh, &n);
        }
        iothread_join(iothread);
        g_assert_cmpint(n, ==, 100);
    }
}

static void test_hand_timer(void)
{
    IOThread *iothread = iothread_new();

    check_timer_fires_in(iothread->ctx, 1, 10);
    check_timer_fires_in(iothread->ctx, 5, 3);
    iothread_join(iothread);
}

/* The same IOThread driven by g_main_loop_run instead of aio_poll. */
static void test_hand_glib_loop_mode(void)
{
    IOThread *iothread = iothread_new_mode(true);
    AioContext *ctx = iothread->ctx;
    Probe p;
    int n = 0;

    probe_init(&p, ctx);
    aio_bh_schedule_oneshot(ctx, probe_bh, &p);
    qemu_event_wait(&p.done);
    assert_probe_in_thread(&p, iothread->thread_id);
    g_assert_true(p.thread_default == iothread->worker_context);
    g_assert_true(p.owns_thread_default);
    qemu_event_destroy(&p.done);

    check_wait_bh_oneshot_flushes(ctx, 500);
    check_timer_fires_in(ctx, 3, 5);

    for (int i = 0; i < 100; i++) {
        aio_bh_schedule_oneshot(ctx, count_bh, &n);
    }
    iothread_join(iothread);
    g_assert_cmpint(n, ==, 100);
}

/* Several threads schedule on one iothread; each one's BHs stay in order. */
#define PRODUCERS 4
#define PER_PRODUCER 5000

typedef struct {
    AioContext *ctx;
    int producer;
    int next[PRODUCERS];        /* touched in the iothread only */
    int out_of_order;
} Fifo;

typedef struct {
    Fifo *fifo;
    int producer;
    int idx;
} FifoItem;

static void fifo_bh(void *opaque)
{
    FifoItem *it = opaque;
    Fifo *f = it->fifo;

    if (f->next[it->producer] != it->idx) {
        f->out_of_order++;
    }
    f->next[it->producer] = it->idx + 1;
    g_free(it);
}

typedef struct {
    Fifo *fifo;
    int producer;
} ProducerArg;

static gpointer producer_thread(gpointer opaque)
{
    ProducerArg *a = opaque;

    for (int i = 0; i < PER_PRODUCER; i++) {
        FifoItem *it = g_new(FifoItem, 1);

        it->fifo = a->fifo;
        it->producer = a->producer;
        it->idx = i;
        aio_bh_schedule_oneshot(a->fifo->ctx, fifo_bh, it);
    }
    return NULL;
}

static void test_hand_many_producers(void)
{
    IOThread *iothread = iothread_new();
    Fifo f = { .ctx = iothread->ctx };
    ProducerArg args[PRODUCERS];
    GThread *threads[PRODUCERS];
    Seq s = { 0 };
    Flush fl = { .seq = &s };

    for (int i = 0; i < PRODUCERS; i++) {
        args[i].fifo = &f;
        args[i].producer = i;
        threads[i] = g_thread_new("producer", producer_thread, &args[i]);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        g_thread_join(threads[i]);
    }
    s.ctx = iothread->ctx;
    aio_wait_bh_oneshot(iothread->ctx, flush_bh, &fl);
    for (int i = 0; i < PRODUCERS; i++) {
        g_assert_cmpint(f.next[i], ==, PER_PRODUCER);
    }
    g_assert_cmpint(f.out_of_order, ==, 0);
    iothread_join(iothread);
}

/* ------------------------------------------------------------------ */
/* The library's IOThread                                              */

/* The task's name in /proc, or NULL if the thread is gone. */
static char *task_comm(int tid)
{
    g_autofree char *path = g_strdup_printf("/proc/self/task/%d/comm", tid);
    char *comm = NULL;

    if (!g_file_get_contents(path, &comm, NULL, NULL)) {
        return NULL;
    }
    g_strchomp(comm);
    return comm;
}

static int count_tasks_named(const char *name)
{
    GDir *dir = g_dir_open("/proc/self/task", 0, NULL);
    const char *entry;
    int n = 0;

    g_assert_nonnull(dir);
    while ((entry = g_dir_read_name(dir))) {
        g_autofree char *comm = task_comm(atoi(entry));

        if (comm && strcmp(comm, name) == 0) {
            n++;
        }
    }
    g_dir_close(dir);
    return n;
}

static void test_lib_iothread_basic(void)
{
    AioctxIOThread *t;
    AioContext *ctx;
    Probe p;
    g_autofree char *comm = NULL;
    g_autofree char *comm_after = NULL;

    g_assert_cmpint(count_tasks_named("io1"), ==, 0);
    t = aioctx_iothread_new("io1", &error_abort);
    g_assert_nonnull(t);
    ctx = aioctx_iothread_get_aio_context(t);
    g_assert_nonnull(ctx);
    g_assert_true(ctx != qemu_get_aio_context());
    g_assert_true(aioctx_iothread_get_aio_context(t) == ctx);
    g_assert_false(in_aio_context_home_thread(ctx));

    /* A BH runs in the iothread, which has ctx as its current context. */
    probe_init(&p, ctx);
    aio_bh_schedule_oneshot(ctx, probe_bh, &p);
    qemu_event_wait(&p.done);
    assert_probe_in_thread(&p, 0);
    /* Like QEMU's IOThread: its own GMainContext is the thread default. */
    g_assert_nonnull(p.thread_default);
    g_assert_true(p.thread_default != g_main_context_default());
    qemu_event_destroy(&p.done);

    /* The thread is named. */
    comm = task_comm(p.tid);
    g_assert_cmpstr(comm, ==, "io1");
    g_assert_cmpint(count_tasks_named("io1"), ==, 1);

    /* aio_wait_bh_oneshot, with the FIFO flush property. */
    check_wait_bh_oneshot_flushes(ctx, 1000);
    {
        Probe q;

        probe_init(&q, ctx);
        aio_wait_bh_oneshot(ctx, probe_sync_bh, &q);
        assert_probe_in_thread(&q, p.tid);
        qemu_event_destroy(&q.done);
    }

    aioctx_iothread_join(t);

    /* The thread is gone. */
    comm_after = task_comm(p.tid);
    g_assert_null(comm_after);
    g_assert_cmpint(count_tasks_named("io1"), ==, 0);
}

static void test_lib_iothread_default_name(void)
{
    AioctxIOThread *t = aioctx_iothread_new(NULL, &error_abort);
    Probe p;
    g_autofree char *comm = NULL;

    probe_init(&p, aioctx_iothread_get_aio_context(t));
    aio_wait_bh_oneshot(p.ctx, probe_sync_bh, &p);
    comm = task_comm(p.tid);
    g_assert_cmpstr(comm, ==, "iothread");
    qemu_event_destroy(&p.done);
    aioctx_iothread_join(t);
}

static void test_lib_iothread_join_runs_remaining(void)
{
    for (int round = 0; round < 20; round++) {
        AioctxIOThread *t = aioctx_iothread_new("io-join", &error_abort);
        AioContext *ctx = aioctx_iothread_get_aio_context(t);
        Seq s = { 0 };
        SeqItem *items;
        int n = 0;

        for (int i = 0; i < 100; i++) {
            aio_bh_schedule_oneshot(ctx, count_bh, &n);
        }
        items = seq_schedule(&s, ctx, 100);
        aioctx_iothread_join(t);
        g_assert_cmpint(n, ==, 100);
        g_assert_cmpint(s.next, ==, 100);
        g_assert_cmpint(s.out_of_order, ==, 0);
        g_assert_cmpint(s.ran_elsewhere, ==, 0);
        g_free(items);
    }
}

/* A reference taken before the join keeps the context alive after it. */
static void test_lib_iothread_ctx_ref_outlives_join(void)
{
    AioctxIOThread *t = aioctx_iothread_new("io-ref", &error_abort);
    AioContext *ctx = aioctx_iothread_get_aio_context(t);

    aio_context_ref(ctx);
    aioctx_iothread_join(t);
    aio_context_unref(ctx);
}

/* Busy polling: window within QEMU's iothread defaults, params settable. */
typedef struct {
    AioContext *ctx;
    QemuEvent done;
    int64_t max_poll_ns;
    int64_t min_poll_ns;
    bool poll_disabled;
} PollProbe;

static void poll_probe_bh(void *opaque)
{
    PollProbe *pp = opaque;
    int64_t ns = aioctx_context_get_poll_ns(pp->ctx);

    pp->max_poll_ns = MAX(pp->max_poll_ns, ns);
    pp->min_poll_ns = MIN(pp->min_poll_ns, ns);
    pp->poll_disabled = aio_poll_disabled(pp->ctx);
    qemu_event_set(&pp->done);
}

/* Quick round trips: each wakeup comes within a few us of blocking. */
static void ping_pong(PollProbe *pp, int rounds)
{
    pp->max_poll_ns = 0;
    pp->min_poll_ns = INT64_MAX;
    for (int i = 0; i < rounds; i++) {
        qemu_event_reset(&pp->done);
        aio_bh_schedule_oneshot(pp->ctx, poll_probe_bh, pp);
        qemu_event_wait(&pp->done);
    }
}

static void test_lib_iothread_poll_params(void)
{
    AioctxIOThread *t = aioctx_iothread_new("io-poll", &error_abort);
    PollProbe pp = { .ctx = aioctx_iothread_get_aio_context(t) };
    Error *err = NULL;

    qemu_event_init(&pp.done, false);

    /* Default: QEMU's IOTHREAD_POLL_MAX_NS_DEFAULT, 32768 ns. */
    ping_pong(&pp, 2000);
    g_test_message("default params: poll_ns in [%" PRId64 ", %" PRId64 "]",
                   pp.min_poll_ns, pp.max_poll_ns);
    g_assert_false(pp.poll_disabled);
    g_assert_cmpint(pp.min_poll_ns, >=, 0);
    g_assert_cmpint(pp.max_poll_ns, <=, 32768);

    /* max_ns 0 disables busy polling. */
    aio_context_set_poll_params(pp.ctx, 0, 0, 0, &error_abort);
    ping_pong(&pp, 200);
    g_assert_cmpint(pp.max_poll_ns, ==, 0);

    /* Other values are accepted, and bound the window. */
    aio_context_set_poll_params(pp.ctx, 64000, 4, 4, &error_abort);
    ping_pong(&pp, 2000);
    g_test_message("64 us/4/4: poll_ns in [%" PRId64 ", %" PRId64 "]",
                   pp.min_poll_ns, pp.max_poll_ns);
    g_assert_cmpint(pp.max_poll_ns, <=, 64000);

    /* Negative values are reported and change nothing. */
    aio_context_set_poll_params(pp.ctx, -1, 2, 2, &err);
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    aio_context_set_poll_params(pp.ctx, 1000, -2, 2, &err);
    g_assert_nonnull(err);
    error_free(err);
    err = NULL;
    aio_context_set_poll_params(pp.ctx, 1000, 2, -2, &err);
    g_assert_nonnull(err);
    error_free(err);
    ping_pong(&pp, 200);
    g_assert_cmpint(pp.max_poll_ns, <=, 64000);

    qemu_event_destroy(&pp.done);
    aioctx_iothread_join(t);
}

static void test_lib_iothread_timer(void)
{
    AioctxIOThread *t = aioctx_iothread_new("io-timer", &error_abort);
    AioContext *ctx = aioctx_iothread_get_aio_context(t);

    check_timer_fires_in(ctx, 1, 10);
    check_timer_fires_in(ctx, 5, 3);
    aioctx_iothread_join(t);
}

/* Two library IOThreads and a hand-written one side by side. */
/*
 * Issue 15.1: an IOThread started with almost no free fd reports an Error
 * through errp instead of killing the process (GLib aborts with "Creating
 * pipes for GWakeup" when g_main_context_new() meets EMFILE). Run in a
 * subprocess: it lowers RLIMIT_NOFILE and fills every fd below it but
 * `free_fds`, so the attempt sees exactly that many free fds.
 */
#include <dirent.h>
#include <sys/resource.h>

typedef struct {
    struct rlimit saved;
    int fills[256];
    int n_fills;
} FdSqueeze;

static int highest_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int max = 2;

    g_assert_nonnull(d);
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        max = MAX(max, fd);
    }
    closedir(d);
    return max;
}

/* Leaves exactly `free_fds` fd numbers usable. */
static void fd_squeeze(FdSqueeze *s, int free_fds)
{
    struct rlimit lim;
    int fd;

    g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &s->saved), ==, 0);
    lim = s->saved;
    lim.rlim_cur = highest_open_fd() + 1 + 8;
    g_assert_cmpuint(lim.rlim_cur, <=, s->saved.rlim_cur);
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &lim), ==, 0);
    s->n_fills = 0;
    while ((fd = dup(2)) >= 0) {
        g_assert_cmpint(s->n_fills, <, (int)G_N_ELEMENTS(s->fills));
        s->fills[s->n_fills++] = fd;
    }
    g_assert_cmpint(errno, ==, EMFILE);
    g_assert_cmpint(s->n_fills, >=, free_fds);
    for (int i = 0; i < free_fds; i++) {
        close(s->fills[--s->n_fills]);
    }
}

static void fd_unsqueeze(FdSqueeze *s)
{
    while (s->n_fills > 0) {
        close(s->fills[--s->n_fills]);
    }
    g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &s->saved), ==, 0);
}

static void test_lib_iothread_out_of_fds(void)
{
    if (g_test_subprocess()) {
        for (int free_fds = 0; free_fds <= 3; free_fds++) {
            FdSqueeze s;
            Error *err = NULL;
            AioctxIOThread *t;

            fd_squeeze(&s, free_fds);
            t = aioctx_iothread_new("io-nofd", &err);
            fd_unsqueeze(&s);
            if (t) {
                g_assert_null(err);
                printf("free %d: started\n", free_fds);
                Probe p;

                probe_init(&p, aioctx_iothread_get_aio_context(t));
                aio_wait_bh_oneshot(p.ctx, probe_sync_bh, &p);
                assert_probe_in_thread(&p, 0);
                qemu_event_destroy(&p.done);
                aioctx_iothread_join(t);
            } else {
                g_assert_nonnull(err);
                printf("free %d: error: %s\n", free_fds, error_get_pretty(err));
                error_free(err);
            }
            fflush(stdout);
        }
        return;
    }
    g_test_trap_subprocess(NULL, 20 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_assert_false(g_test_trap_reached_timeout());
    g_test_trap_assert_passed();
    /* No fd at all: the context's own eventfd fails. One fd: the context
     * gets it, the thread's GMainContext cannot have its wakeup fd. */
    g_test_trap_assert_stdout("*free 0: error: *free 1: error: *GMainContext*"
                              "free 2: *free 3: started*");
    g_test_trap_assert_stderr_unmatched("*GLib-ERROR*");
}

static void test_mixed_iothreads(void)
{
    AioctxIOThread *a = aioctx_iothread_new("io-a", &error_abort);
    AioctxIOThread *b = aioctx_iothread_new("io-b", &error_abort);
    IOThread *c = iothread_new();
    AioContext *ctxs[3] = {
        aioctx_iothread_get_aio_context(a),
        aioctx_iothread_get_aio_context(b),
        iothread_get_aio_context(c),
    };
    Probe p[3];

    g_assert_true(ctxs[0] != ctxs[1] && ctxs[1] != ctxs[2] &&
                  ctxs[0] != ctxs[2]);
    for (int i = 0; i < 3; i++) {
        probe_init(&p[i], ctxs[i]);
        aio_wait_bh_oneshot(ctxs[i], probe_sync_bh, &p[i]);
        assert_probe_in_thread(&p[i], 0);
    }
    g_assert_cmpint(p[0].tid, !=, p[1].tid);
    g_assert_cmpint(p[1].tid, !=, p[2].tid);
    g_assert_cmpint(p[2].tid, ==, c->thread_id);
    for (int i = 0; i < 3; i++) {
        check_wait_bh_oneshot_flushes(ctxs[i], 300);
        qemu_event_destroy(&p[i].done);
    }
    iothread_join(c);
    aioctx_iothread_join(b);
    aioctx_iothread_join(a);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    main_tid = qemu_get_thread_id();
    /* As in QEMU: the main thread runs the main loop (aio_wait_bh_oneshot
     * polls the main context while it waits). */
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/iothread/hand/bh-runs-in-iothread",
                    test_hand_bh_runs_in_iothread);
    g_test_add_func("/iothread/hand/wait-bh-oneshot",
                    test_hand_wait_bh_oneshot);
    g_test_add_func("/iothread/hand/wait-bh-oneshot-unbound-thread",
                    test_hand_wait_bh_oneshot_unbound_thread);
    g_test_add_func("/iothread/hand/glib-thread-default",
                    test_hand_glib_thread_default);
    g_test_add_func("/iothread/hand/gcontext-iteration",
                    test_hand_gcontext_iteration);
    g_test_add_func("/iothread/hand/join-runs-scheduled",
                    test_hand_join_runs_scheduled);
    g_test_add_func("/iothread/hand/timer", test_hand_timer);
    g_test_add_func("/iothread/hand/glib-loop-mode",
                    test_hand_glib_loop_mode);
    g_test_add_func("/iothread/hand/many-producers",
                    test_hand_many_producers);
    g_test_add_func("/iothread/lib/basic", test_lib_iothread_basic);
    g_test_add_func("/iothread/lib/default-name",
                    test_lib_iothread_default_name);
    g_test_add_func("/iothread/lib/join-runs-remaining",
                    test_lib_iothread_join_runs_remaining);
    g_test_add_func("/iothread/lib/ctx-ref-outlives-join",
                    test_lib_iothread_ctx_ref_outlives_join);
    g_test_add_func("/iothread/lib/poll-params",
                    test_lib_iothread_poll_params);
    g_test_add_func("/iothread/lib/timer", test_lib_iothread_timer);
    g_test_add_func("/iothread/lib/out-of-fds", test_lib_iothread_out_of_fds);
    g_test_add_func("/iothread/mixed", test_mixed_iothreads);

    return g_test_run();
}
