/*
 * QEMU 10.2 binary interface (docs/spec/qemu-abi.md): the sizes and
 * offsets callers compile in, and the block layer's hooks and names.
 *
 * - layouts that already match QEMU's, asserted at compile time;
 * - AioContext's public members at QEMU's offsets: aio_max_batch written by
 *   aio_context_set_aio_params, fdmon_ops pointing at an FDMonOps whose
 *   add_sqe is NULL except on the io_uring monitor (so aio_has_io_uring()
 *   is false by default; test-io-uring-sqe covers io_uring), bdrv_graph a slot
 *   the library never touches;
 * - strong register_aiocontext/unregister_aiocontext defined here override
 *   the library's weak defaults and are called for every kind of context;
 * - this program defines its own bdrv_aio_cancel/bdrv_aio_cancel_async, as
 *   QEMU's block layer does: linking it proves there is no "multiple
 *   definition", and the library's default stays reachable;
 * - aio_add_sqe with a NULL prep_sqe aborts with one line;
 * - qemu_co_timeout: in time, timed out (clean runs after the entry), 0;
 * - QEMU's qemu_poll_ns, event_notifier_set_handler, yield_until_fd_readable
 *   and qemu_make_lockable (typed NULL gives NULL).
 */
#include "qemu/osdep.h"
#include "block/aio.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"
#include "qemu/coroutine.h"
#include "qemu/event_notifier.h"
#include "qemu/lockable.h"
#include "qemu/notify.h"

#include "test-util.h"

#include <stddef.h>

/* ---- layouts (docs/spec/qemu-abi.md section 1, 2, 5) ---- */

#define ASSERT_LAYOUT(type, size, align)                                      \
    _Static_assert(sizeof(type) == (size), "sizeof(" #type ")");             \
    _Static_assert(_Alignof(type) == (align), "_Alignof(" #type ")")

ASSERT_LAYOUT(EventNotifier, 12, 4);
_Static_assert(offsetof(EventNotifier, rfd) == 0, "EventNotifier.rfd");
_Static_assert(offsetof(EventNotifier, wfd) == 4, "EventNotifier.wfd");
_Static_assert(offsetof(EventNotifier, initialized) == 8, "EventNotifier.initialized");
ASSERT_LAYOUT(QEMUTimer, 48, 8);
_Static_assert(offsetof(QEMUTimer, expire_time) == 0, "QEMUTimer.expire_time");
_Static_assert(offsetof(QEMUTimer, timer_list) == 8, "QEMUTimer.timer_list");
_Static_assert(offsetof(QEMUTimer, cb) == 16, "QEMUTimer.cb");
_Static_assert(offsetof(QEMUTimer, opaque) == 24, "QEMUTimer.opaque");
_Static_assert(offsetof(QEMUTimer, attributes) == 40, "QEMUTimer.attributes");
_Static_assert(offsetof(QEMUTimer, scale) == 44, "QEMUTimer.scale");
ASSERT_LAYOUT(QEMUTimerListGroup, 32, 8);
_Static_assert(offsetof(QEMUTimerListGroup, tl) == 0, "QEMUTimerListGroup.tl");
ASSERT_LAYOUT(QemuMutex, 48, 8);
ASSERT_LAYOUT(QemuRecMutex, 48, 8);
ASSERT_LAYOUT(QemuThread, 8, 8);
ASSERT_LAYOUT(Notifier, 24, 8);
_Static_assert(offsetof(Notifier, notify) == 0, "Notifier.notify");
_Static_assert(offsetof(Notifier, node.le_next) == 8, "Notifier.node.le_next");
_Static_assert(offsetof(Notifier, node.le_prev) == 16, "Notifier.node.le_prev");
_Static_assert(sizeof(MainLoopPoll) == 24, "sizeof(MainLoopPoll)");
_Static_assert(offsetof(MainLoopPoll, state) == 0, "MainLoopPoll.state");
_Static_assert(offsetof(MainLoopPoll, pollfds) == 8, "MainLoopPoll.pollfds");
_Static_assert(offsetof(MainLoopPoll, timeout) == 16, "MainLoopPoll.timeout");
_Static_assert(MAIN_LOOP_POLL_FILL == 0 && MAIN_LOOP_POLL_ERR == 1 && MAIN_LOOP_POLL_OK == 2,
               "MAIN_LOOP_POLL_*");
ASSERT_LAYOUT(NotifierList, 8, 8);
ASSERT_LAYOUT(QemuCond, 56, 8);
ASSERT_LAYOUT(QemuSemaphore, 112, 8);
ASSERT_LAYOUT(QemuEvent, 8, 4);
ASSERT_LAYOUT(CoMutex, 48, 8);
/* qemu_co_mutex_assert_locked() reads locked and holder. */
_Static_assert(offsetof(CoMutex, locked) == 0, "CoMutex.locked");
_Static_assert(offsetof(CoMutex, ctx) == 8, "CoMutex.ctx");
_Static_assert(offsetof(CoMutex, holder) == 40, "CoMutex.holder");
ASSERT_LAYOUT(CoQueue, 16, 8);
ASSERT_LAYOUT(CoRwlock, 72, 8);
_Static_assert(offsetof(CoRwlock, mutex) == 0, "CoRwlock.mutex");
_Static_assert(offsetof(CoRwlock, owners) == 48, "CoRwlock.owners");
ASSERT_LAYOUT(QemuCoSleep, 8, 8);
_Static_assert(offsetof(QemuSemaphore, mutex) == 0, "QemuSemaphore.mutex");
_Static_assert(offsetof(QemuSemaphore, cond) == 48, "QemuSemaphore.cond");
_Static_assert(offsetof(QemuSemaphore, count) == 104, "QemuSemaphore.count");
_Static_assert(offsetof(QemuMutex, initialized) == 40, "QemuMutex.initialized");
_Static_assert(offsetof(QemuCond, initialized) == 48, "QemuCond.initialized");
_Static_assert(offsetof(QemuEvent, value) == 0, "QemuEvent.value");
_Static_assert(offsetof(QemuEvent, initialized) == 4, "QemuEvent.initialized");
ASSERT_LAYOUT(BlockAIOCB, 40, 8);
_Static_assert(offsetof(BlockAIOCB, aiocb_info) == 0, "BlockAIOCB.aiocb_info");
_Static_assert(offsetof(BlockAIOCB, bs) == 8, "BlockAIOCB.bs");
_Static_assert(offsetof(BlockAIOCB, cb) == 16, "BlockAIOCB.cb");
_Static_assert(offsetof(BlockAIOCB, opaque) == 24, "BlockAIOCB.opaque");
_Static_assert(offsetof(BlockAIOCB, refcnt) == 32, "BlockAIOCB.refcnt");
ASSERT_LAYOUT(AIOCBInfo, 16, 8);
_Static_assert(offsetof(AIOCBInfo, aiocb_size) == 8, "AIOCBInfo.aiocb_size");
ASSERT_LAYOUT(MemReentrancyGuard, 1, 1);
ASSERT_LAYOUT(AioWait, 4, 4);
ASSERT_LAYOUT(FDMonOps, 64, 8);
_Static_assert(offsetof(FDMonOps, add_sqe) == 56, "FDMonOps.add_sqe");
ASSERT_LAYOUT(CqeHandler, 32, 8);
_Static_assert(offsetof(CqeHandler, cb) == 0, "CqeHandler.cb");
_Static_assert(offsetof(CqeHandler, next) == 8, "CqeHandler.next");
_Static_assert(offsetof(CqeHandler, cqe.user_data) == 16, "CqeHandler.cqe.user_data");
_Static_assert(offsetof(CqeHandler, cqe.res) == 24, "CqeHandler.cqe.res");
_Static_assert(offsetof(CqeHandler, cqe.flags) == 28, "CqeHandler.cqe.flags");
ASSERT_LAYOUT(AioctxContextPublic, 608, 8);
_Static_assert(offsetof(AioctxContextPublic, source) == 0, "AioContext.source");
_Static_assert(sizeof(GSource) == 96, "GSource");
_Static_assert(offsetof(AioctxContextPublic, bdrv_graph) == 144, "AioContext.bdrv_graph");
_Static_assert(offsetof(AioctxContextPublic, tlg) == 496, "AioContext.tlg");
_Static_assert(offsetof(AioctxContextPublic, aio_max_batch) == 560, "AioContext.aio_max_batch");
_Static_assert(offsetof(AioctxContextPublic, fdmon_ops) == 592, "AioContext.fdmon_ops");

/* QEMU's prototypes, repeated: each must be compatible with aioctx.h's. */
bool timer_pending(const QEMUTimer *ts);
bool timer_expired(const QEMUTimer *timer_head, int64_t current_time);
uint64_t timer_expire_time_ns(const QEMUTimer *ts);
void coroutine_fn qemu_co_queue_wait_impl(CoQueue *queue, QemuLockable *lock,
                                          CoQueueWaitFlags flags);
void register_aiocontext(AioContext *ctx);
void unregister_aiocontext(AioContext *ctx);
void bdrv_aio_cancel(BlockAIOCB *acb);
void bdrv_aio_cancel_async(BlockAIOCB *acb);
void aio_add_sqe(void (*prep_sqe)(struct io_uring_sqe *sqe, void *opaque),
                 void *opaque, CqeHandler *cqe_handler);
typedef void CleanupFunc(void *opaque);
int coroutine_fn qemu_co_timeout(CoroutineEntry *entry, void *opaque,
                                 uint64_t timeout_ns, CleanupFunc clean);
void qemu_thread_atexit_add(struct Notifier *notifier);
void qemu_thread_atexit_remove(struct Notifier *notifier);
void qemu_cond_wait_bql(QemuCond *cond);
bool qemu_cond_timedwait_bql(QemuCond *cond, int ms);
void main_loop_poll_add_notifier(Notifier *notify);
void main_loop_poll_remove_notifier(Notifier *notify);
int qemu_thread_set_affinity(QemuThread *thread, unsigned long *host_cpus,
                             unsigned long nbits);
int qemu_thread_get_affinity(QemuThread *thread, unsigned long **host_cpus,
                             unsigned long *nbits);

static AioctxContextPublic *pub(AioContext *ctx)
{
    return (AioctxContextPublic *)ctx;
}

/* ---- the block layer's hooks, defined strongly here ---- */

enum { MAX_CTX = 16 };
static struct {
    AioContext *ctx;
    void *graph;
    bool registered, unregistered, graph_intact;
} hooked[MAX_CTX];
static int n_hooked;
static int graph_tokens[MAX_CTX];

void register_aiocontext(AioContext *ctx)
{
    g_assert_cmpint(n_hooked, <, MAX_CTX);
    /* The library never stores anything there. */
    g_assert_null(pub(ctx)->bdrv_graph);
    hooked[n_hooked].ctx = ctx;
    hooked[n_hooked].graph = &graph_tokens[n_hooked];
    hooked[n_hooked].registered = true;
    pub(ctx)->bdrv_graph = &graph_tokens[n_hooked];
    n_hooked++;
}

void unregister_aiocontext(AioContext *ctx)
{
    for (int i = 0; i < n_hooked; i++) {
        if (hooked[i].ctx == ctx && !hooked[i].unregistered) {
            hooked[i].unregistered = true;
            hooked[i].graph_intact = pub(ctx)->bdrv_graph == hooked[i].graph;
            return;
        }
    }
    g_assert_not_reached();
}

static int hook_index(AioContext *ctx)
{
    for (int i = n_hooked - 1; i >= 0; i--) {
        if (hooked[i].ctx == ctx) {
            return i;
        }
    }
    return -1;
}

static void test_hooks_aio_context_new(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    int i = hook_index(ctx);

    g_assert_cmpint(i, >=, 0);
    g_assert_true(hooked[i].registered);
    g_assert_false(hooked[i].unregistered);
    g_assert_true(pub(ctx)->bdrv_graph == hooked[i].graph);
    /* A BH and a poll do not disturb the slot. */
    aio_poll(ctx, false);
    g_assert_true(pub(ctx)->bdrv_graph == hooked[i].graph);
    aio_context_unref(ctx);
    g_assert_true(hooked[i].unregistered);
    g_assert_true(hooked[i].graph_intact);
}

static void test_hooks_main_and_iothread(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    int i = hook_index(main_ctx);

    g_assert_cmpint(i, >=, 0);
    g_assert_true(pub(main_ctx)->bdrv_graph == hooked[i].graph);

    AioctxIOThread *iot = aioctx_iothread_new("abi-iothread", &error_abort);
    AioContext *ictx = aioctx_iothread_get_aio_context(iot);
    int j = hook_index(ictx);

    g_assert_cmpint(j, >=, 0);
    g_assert_true(pub(ictx)->bdrv_graph == hooked[j].graph);
    aioctx_iothread_join(iot);
    g_assert_true(hooked[j].unregistered);
    g_assert_true(hooked[j].graph_intact);
}

/* ---- public members ---- */

static void test_aio_max_batch(void)
{
    AioContext *ctx = aio_context_new(&error_abort);

    g_assert_cmpint(pub(ctx)->aio_max_batch, ==, 0);
    aio_context_set_aio_params(ctx, 42);
    g_assert_cmpint(pub(ctx)->aio_max_batch, ==, 42);
    g_assert_cmpint(aioctx_context_get_aio_max_batch(ctx), ==, 42);
    aio_context_unref(ctx);
}

static void noop_read(void *opaque)
{
    (void)opaque;
}

static void test_fdmon_ops(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    EventNotifier e;

    g_assert_true(pub(ctx)->fdmon_ops == &fdmon_poll_ops);
    g_assert_null(fdmon_poll_ops.add_sqe);
    g_assert_false(aio_has_io_uring(ctx));

    /* With an fd registered the table follows the backend; add_sqe is
     * NULL on every backend but io_uring. */
    g_assert_cmpint(event_notifier_init(&e, false), ==, 0);
    aio_set_fd_handler(ctx, event_notifier_get_fd(&e), noop_read, NULL, NULL,
                       NULL, NULL);
    aio_poll(ctx, false);
    g_assert_nonnull(pub(ctx)->fdmon_ops);
    g_assert_true((pub(ctx)->fdmon_ops->add_sqe != NULL) ==
                  (strcmp(aioctx_context_fdmon_name(ctx), "io_uring") == 0));
    g_assert_true(aio_has_io_uring(ctx) ==
                  (strcmp(aioctx_context_fdmon_name(ctx), "io_uring") == 0));
    g_assert_true((pub(ctx)->fdmon_ops == &fdmon_poll_ops) ==
                  (strcmp(aioctx_context_fdmon_name(ctx), "poll") == 0));
    aio_set_fd_handler(ctx, event_notifier_get_fd(&e), NULL, NULL, NULL, NULL,
                       NULL);
    event_notifier_cleanup(&e);
    aio_context_unref(ctx);
}

/* ---- bdrv_aio_cancel owned by the program ---- */

static int own_cancel_calls, own_cancel_async_calls;

void bdrv_aio_cancel(BlockAIOCB *acb)
{
    own_cancel_calls++;
    aioctx_bdrv_aio_cancel(acb);
}

void bdrv_aio_cancel_async(BlockAIOCB *acb)
{
    own_cancel_async_calls++;
    aioctx_bdrv_aio_cancel_async(acb);
}

static int slow_job(void *opaque)
{
    (void)opaque;
    g_usleep(1000);
    return 7;
}

static void job_done(void *opaque, int ret)
{
    int *result = opaque;

    *result = ret;
}

static void test_own_bdrv_aio_cancel(void)
{
    int result = INT_MIN;

    /* The main thread's current context is the main one. */
    BlockAIOCB *acb = thread_pool_submit_aio(slow_job, NULL, job_done, &result);

    bdrv_aio_cancel(acb);
    g_assert_cmpint(own_cancel_calls, ==, 1);
    g_assert_true(result == 7 || result == -ECANCELED);
}

/* ---- qemu_co_timeout ---- */

typedef struct {
    int64_t sleep_ns;  /* how long the timed entry sleeps (0: no yield) */
    uint64_t timeout_ns;
    int ret;
    bool entry_done, body_done;
    int cleaned;       /* clean() calls */
    bool entry_done_at_clean;
} TimeoutCase;

static void coroutine_fn timed_entry(void *opaque)
{
    TimeoutCase *c = opaque;

    if (c->sleep_ns) {
        qemu_co_sleep_ns(QEMU_CLOCK_REALTIME, c->sleep_ns);
    }
    c->entry_done = true;
}

static void timed_clean(void *opaque)
{
    TimeoutCase *c = opaque;

    c->cleaned++;
    c->entry_done_at_clean = c->entry_done;
}

static void coroutine_fn timeout_body(void *opaque)
{
    TimeoutCase *c = opaque;

    c->ret = qemu_co_timeout(timed_entry, c, c->timeout_ns, timed_clean);
    c->body_done = true;
}

static void run_timeout_case(TimeoutCase *c)
{
    AioContext *ctx = qemu_get_aio_context();

    qemu_coroutine_enter(qemu_coroutine_create(timeout_body, c));
    while (!c->body_done || (c->ret == -ETIMEDOUT && !c->cleaned)) {
        aio_poll(ctx, true);
    }
}

static void test_co_timeout_in_time(void)
{
    TimeoutCase c = { .sleep_ns = 1000000, .timeout_ns = 10 * NANOSECONDS_PER_SECOND };

    run_timeout_case(&c);
    g_assert_cmpint(c.ret, ==, 0);
    g_assert_true(c.entry_done);
    g_assert_cmpint(c.cleaned, ==, 0);
}

static void test_co_timeout_no_yield(void)
{
    TimeoutCase c = { .sleep_ns = 0, .timeout_ns = NANOSECONDS_PER_SECOND };

    run_timeout_case(&c);
    g_assert_cmpint(c.ret, ==, 0);
    g_assert_true(c.entry_done);
    g_assert_cmpint(c.cleaned, ==, 0);
}

static void test_co_timeout_zero_means_no_limit(void)
{
    TimeoutCase c = { .sleep_ns = 5000000, .timeout_ns = 0 };

    run_timeout_case(&c);
    g_assert_cmpint(c.ret, ==, 0);
    g_assert_true(c.entry_done);
    g_assert_cmpint(c.cleaned, ==, 0);
}

static void test_co_timeout_expires(void)
{
    TimeoutCase c = { .sleep_ns = 50000000, .timeout_ns = 1000000 };

    run_timeout_case(&c);
    g_assert_cmpint(c.ret, ==, -ETIMEDOUT);
    /* clean() ran once, after the entry finished. */
    g_assert_cmpint(c.cleaned, ==, 1);
    g_assert_true(c.entry_done_at_clean);
}

/* ---- qemu_clock_* on the main loop's timers ---- */

static int clock_timer_runs;

static void clock_timer_cb(void *opaque)
{
    (void)opaque;
    clock_timer_runs++;
}

static void test_qemu_clock_queries(void)
{
    QEMUTimer *t = timer_new_ns(QEMU_CLOCK_REALTIME, clock_timer_cb, NULL);
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t d;

    g_assert_false(qemu_clock_has_timers(QEMU_CLOCK_REALTIME));
    g_assert_cmpint(qemu_clock_deadline_ns_all(QEMU_CLOCK_REALTIME, QEMU_TIMER_ATTR_ALL), ==, -1);
    g_assert_true(qemu_clock_use_for_deadline(QEMU_CLOCK_VIRTUAL));

    timer_mod_ns(t, now + NANOSECONDS_PER_SECOND);
    g_assert_true(qemu_clock_has_timers(QEMU_CLOCK_REALTIME));
    g_assert_false(qemu_clock_has_timers(QEMU_CLOCK_HOST));
    g_assert_false(qemu_clock_expired(QEMU_CLOCK_REALTIME));
    d = qemu_clock_deadline_ns_all(QEMU_CLOCK_REALTIME, QEMU_TIMER_ATTR_ALL);
    g_assert_cmpint(d, >, 0);
    g_assert_cmpint(d, <=, NANOSECONDS_PER_SECOND);
    g_assert_false(qemu_clock_run_timers(QEMU_CLOCK_REALTIME));
    qemu_clock_notify(QEMU_CLOCK_REALTIME);

    timer_mod_ns(t, now - 1);
    g_assert_true(qemu_clock_expired(QEMU_CLOCK_REALTIME));
    g_assert_cmpint(qemu_clock_deadline_ns_all(QEMU_CLOCK_REALTIME, QEMU_TIMER_ATTR_ALL), ==, 0);
    g_assert_true(qemu_clock_run_timers(QEMU_CLOCK_REALTIME));
    g_assert_cmpint(clock_timer_runs, ==, 1);
    g_assert_false(qemu_clock_has_timers(QEMU_CLOCK_REALTIME));
    g_assert_false(qemu_clock_run_timers(QEMU_CLOCK_REALTIME));

    timer_mod_ns(t, now - 1);
    g_assert_true(qemu_clock_run_all_timers());
    g_assert_cmpint(clock_timer_runs, ==, 2);
    g_assert_false(qemu_clock_run_all_timers());
    timer_free(t);
}

/* ---- qemu_co_sleep ---- */

typedef struct {
    QemuCoSleep w;
    bool resumed;
} UntimedSleep;

static void coroutine_fn untimed_sleeper(void *opaque)
{
    UntimedSleep *s = opaque;

    qemu_co_sleep(&s->w);
    s->resumed = true;
}

static void test_co_sleep_until_woken(void)
{
    AioContext *ctx = qemu_get_aio_context();
    UntimedSleep s = { .resumed = false };

    qemu_coroutine_enter(qemu_coroutine_create(untimed_sleeper, &s));
    g_assert_false(s.resumed);
    g_assert_nonnull(s.w.to_wake);
    while (aio_poll(ctx, false)) {
    }
    g_assert_false(s.resumed);
    qemu_co_sleep_wake(&s.w);
    g_assert_null(s.w.to_wake);
    while (!s.resumed) {
        aio_poll(ctx, true);
    }
    /* A second wake finds nobody. */
    qemu_co_sleep_wake(&s.w);
}

/* ---- QemuLockable ---- */

static void test_make_lockable_typed_null(void)
{
    QemuMutex *none = NULL;
    QemuMutex m;

    g_assert_null(QEMU_MAKE_LOCKABLE(none));
    g_assert_null(qemu_make_lockable(NULL, (QemuLockable *)&m));
    qemu_mutex_init(&m);
    QemuLockable *l = QEMU_MAKE_LOCKABLE(&m);
    g_assert_nonnull(l);
    g_assert_true(l->object == &m);
    qemu_lockable_lock(l);
    qemu_lockable_unlock(l);
    qemu_mutex_destroy(&m);
}

/* ---- qemu_poll_ns, event_notifier_set_handler, yield_until_fd_readable ---- */

static void test_qemu_poll_ns(void)
{
    int p[2];
    GPollFD pfd;
    int64_t start;

    g_assert_cmpint(pipe(p), ==, 0);
    pfd = (GPollFD){ .fd = p[0], .events = G_IO_IN };
    g_assert_cmpint(qemu_poll_ns(&pfd, 1, 0), ==, 0);
    start = g_get_monotonic_time();
    g_assert_cmpint(qemu_poll_ns(&pfd, 1, 2000000), ==, 0);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 2000);
    g_assert_cmpint(write(p[1], "x", 1), ==, 1);
    g_assert_cmpint(qemu_poll_ns(&pfd, 1, -1), ==, 1);
    g_assert_true(pfd.revents & G_IO_IN);
    close(p[0]);
    close(p[1]);
}

static int notifier_calls;

static void count_notifier(EventNotifier *e)
{
    event_notifier_test_and_clear(e);
    notifier_calls++;
}

static void test_event_notifier_set_handler(void)
{
    EventNotifier e;

    g_assert_cmpint(event_notifier_init(&e, false), ==, 0);
    event_notifier_set_handler(&e, count_notifier);
    event_notifier_set(&e);
    for (int i = 0; i < 100 && notifier_calls == 0; i++) {
        main_loop_wait(false);
    }
    g_assert_cmpint(notifier_calls, ==, 1);
    event_notifier_set_handler(&e, NULL);
    event_notifier_set(&e);
    for (int i = 0; i < 10; i++) {
        main_loop_wait(true);
    }
    g_assert_cmpint(notifier_calls, ==, 1);
    event_notifier_cleanup(&e);
}

typedef struct {
    int fd;
    bool resumed;
} FdWait;

static void coroutine_fn wait_readable(void *opaque)
{
    FdWait *w = opaque;

    yield_until_fd_readable(w->fd);
    w->resumed = true;
}

static void test_yield_until_fd_readable(void)
{
    AioContext *ctx = qemu_get_aio_context();
    FdWait w;
    int p[2];

    g_assert_cmpint(pipe(p), ==, 0);
    w = (FdWait){ .fd = p[0] };
    qemu_coroutine_enter(qemu_coroutine_create(wait_readable, &w));
    g_assert_false(w.resumed);
    while (aio_poll(ctx, false)) {
    }
    g_assert_false(w.resumed);
    g_assert_cmpint(write(p[1], "x", 1), ==, 1);
    while (!w.resumed) {
        aio_poll(ctx, true);
    }
    /* The handler is gone: the still-readable fd wakes nothing. */
    g_assert_false(aio_poll(ctx, false));
    close(p[0]);
    close(p[1]);
}

/* ---- timers through QEMU's inline paths (ctx->tlg, g_new0/g_free) ---- */

/* QEMU's inline aio_timer_new/aio_timer_init and timer_new_full/timer_free,
 * as QEMU 10.2's qemu/timer.h and block/aio.h compile them into a caller. */
static QEMUTimer *inline_timer_new_full(QEMUTimerListGroup *tlg, QEMUClockType type,
                                        int scale, QEMUTimerCB *cb, void *opaque)
{
    QEMUTimer *ts = g_new0(QEMUTimer, 1);

    timer_init_full(ts, tlg, type, scale, 0, cb, opaque);
    return ts;
}

static void inline_timer_free(QEMUTimer *ts)
{
    timer_del(ts);
    g_free(ts);
}

typedef struct {
    int runs;
    GThread *ran_in;
} TimerRun;

static void timer_run_cb(void *opaque)
{
    TimerRun *r = opaque;

    r->runs++;
    r->ran_in = g_thread_self();
}

static void test_timer_on_ctx_tlg(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    QEMUTimerListGroup *tlg = &pub(ctx)->tlg;
    TimerRun embedded = { 0 }, allocated = { 0 };
    QEMUTimer ts;
    QEMUTimer *heap_ts;

    for (int i = 0; i < QEMU_CLOCK_MAX; i++) {
        g_assert_nonnull(tlg->tl[i]);
        g_assert_cmpint(timerlist_get_clock(tlg->tl[i]), ==, i);
    }
    timer_init_full(&ts, tlg, QEMU_CLOCK_REALTIME, SCALE_NS, 0, timer_run_cb, &embedded);
    g_assert_true(ts.timer_list == tlg->tl[QEMU_CLOCK_REALTIME]);
    heap_ts = inline_timer_new_full(tlg, QEMU_CLOCK_VIRTUAL, SCALE_MS, timer_run_cb, &allocated);
    g_assert_cmpint(heap_ts->scale, ==, SCALE_MS);

    timer_mod_ns(&ts, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 2 * 1000 * 1000);
    timer_mod(heap_ts, qemu_clock_get_ms(QEMU_CLOCK_VIRTUAL) - 1);
    g_assert_true(timerlist_has_timers(tlg->tl[QEMU_CLOCK_REALTIME]));
    g_assert_cmpint(timerlistgroup_deadline_ns(tlg), ==, 0);
    /* The main loop does not run them: they are ctx's. */
    while (aio_poll(qemu_get_aio_context(), false)) {
    }
    g_assert_cmpint(embedded.runs + allocated.runs, ==, 0);
    while (embedded.runs == 0 || allocated.runs == 0) {
        aio_poll(ctx, true);
    }
    g_assert_cmpint(embedded.runs, ==, 1);
    g_assert_cmpint(allocated.runs, ==, 1);

    /* Armed again, then freed the inline way: nothing fires later. */
    timer_mod_ns(heap_ts, 0);
    inline_timer_free(heap_ts);
    g_assert_false(timerlist_has_timers(tlg->tl[QEMU_CLOCK_VIRTUAL]));
    g_assert_false(aio_poll(ctx, false));
    g_assert_cmpint(allocated.runs, ==, 1);
    timer_deinit(&ts);
    aio_context_unref(ctx);
}

static void test_timer_on_main_loop_tlg(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    TimerRun a = { 0 }, b = { 0 };
    QEMUTimer *by_null, *by_name;

    for (int i = 0; i < QEMU_CLOCK_MAX; i++) {
        g_assert_true(main_loop_tlg.tl[i] == pub(main_ctx)->tlg.tl[i]);
    }
    by_null = inline_timer_new_full(NULL, QEMU_CLOCK_REALTIME, SCALE_NS, timer_run_cb, &a);
    by_name = inline_timer_new_full(&main_loop_tlg, QEMU_CLOCK_REALTIME, SCALE_NS,
                                    timer_run_cb, &b);
    g_assert_true(by_null->timer_list == main_loop_tlg.tl[QEMU_CLOCK_REALTIME]);
    timer_mod_ns(by_null, 0);
    timer_mod_ns(by_name, 0);
    while (a.runs == 0 || b.runs == 0) {
        aio_poll(main_ctx, true);
    }
    inline_timer_free(by_null);
    inline_timer_free(by_name);
}

static void count_list_notify(void *opaque, QEMUClockType type)
{
    int *notified = opaque;

    g_assert_cmpint(type, ==, QEMU_CLOCK_HOST);
    (*notified)++;
}

static void test_timerlistgroup_standalone(void)
{
    QEMUTimerListGroup tlg;
    TimerRun r = { 0 };
    int notified = 0;
    QEMUTimer ts;

    timerlistgroup_init(&tlg, count_list_notify, &notified);
    timer_init_full(&ts, &tlg, QEMU_CLOCK_HOST, SCALE_NS, 0, timer_run_cb, &r);
    g_assert_cmpint(timerlistgroup_deadline_ns(&tlg), ==, -1);
    timer_mod_ns(&ts, qemu_clock_get_ns(QEMU_CLOCK_HOST) + NANOSECONDS_PER_SECOND);
    g_assert_cmpint(notified, ==, 1); /* it became the earliest */
    timer_mod_ns(&ts, qemu_clock_get_ns(QEMU_CLOCK_HOST) + 2 * NANOSECONDS_PER_SECOND);
    g_assert_cmpint(notified, ==, 1); /* later: no notification */
    g_assert_cmpint(timerlistgroup_deadline_ns(&tlg), >, NANOSECONDS_PER_SECOND);
    g_assert_false(timerlistgroup_run_timers(&tlg));
    timer_mod_ns(&ts, 1);
    g_assert_cmpint(notified, ==, 2);
    g_assert_true(timerlist_expired(tlg.tl[QEMU_CLOCK_HOST]));
    /* No loop runs a standalone group: its owner does, in its thread. */
    g_assert_false(aio_poll(qemu_get_aio_context(), false));
    g_assert_cmpint(r.runs, ==, 0);
    g_assert_true(timerlistgroup_run_timers(&tlg));
    g_assert_cmpint(r.runs, ==, 1);
    g_assert_true(r.ran_in == g_thread_self());
    g_assert_false(timerlist_has_timers(tlg.tl[QEMU_CLOCK_HOST]));
    timerlist_notify(tlg.tl[QEMU_CLOCK_HOST]);
    g_assert_cmpint(notified, ==, 3);
    timerlistgroup_deinit(&tlg);
    for (int i = 0; i < QEMU_CLOCK_MAX; i++) {
        g_assert_null(tlg.tl[i]);
    }
}

static void test_timerlist_standalone(void)
{
    QEMUTimerList *tl = timerlist_new(QEMU_CLOCK_REALTIME, NULL, NULL);
    QEMUTimerListGroup tlg = { .tl = { tl, tl, tl, tl } };
    TimerRun r = { 0 };
    QEMUTimer ts;

    g_assert_cmpint(timerlist_get_clock(tl), ==, QEMU_CLOCK_REALTIME);
    timer_init_full(&ts, &tlg, QEMU_CLOCK_REALTIME, SCALE_US, 0, timer_run_cb, &r);
    timer_mod(&ts, qemu_clock_get_us(QEMU_CLOCK_REALTIME) + 1000 * 1000);
    g_assert_true(timerlist_has_timers(tl));
    g_assert_false(timerlist_expired(tl));
    g_assert_cmpint(timerlist_deadline_ns(tl), >, 0);
    g_assert_false(timerlist_run_timers(tl));
    /* Freed with a timer armed: the timer is disarmed, not run. */
    timerlist_free(tl);
    g_assert_false(timer_pending(&ts));
    g_assert_cmpint(r.runs, ==, 0);
}

/* ---- ctx->source ---- */

static void count_bh(void *opaque)
{
    (*(int *)opaque)++;
}

/*
 * QEMU's context is its GSource: aio_get_g_source returns &ctx->source
 * (a new reference). Attached to a GMainContext it runs the context; the
 * caller's reference may outlive the context.
 */
static void test_gsource_is_ctx_source(void)
{
    AioContext *ctx = aio_context_new(&error_abort);
    GMainContext *gctx = g_main_context_new();
    GSource *src = aio_get_g_source(ctx);
    GSource *again = aio_get_g_source(ctx);
    int runs = 0;

    g_assert_true(src == &pub(ctx)->source);
    g_assert_true(again == src);
    g_source_unref(again);
    g_source_attach(src, gctx);
    aio_bh_schedule_oneshot(ctx, count_bh, &runs);
    while (g_main_context_iteration(gctx, false)) {
    }
    g_assert_cmpint(runs, ==, 1);

    /* The context goes first: the source is detached, the memory kept. */
    aio_context_unref(ctx);
    g_assert_true(g_source_is_destroyed(src));
    g_assert_false(g_main_context_iteration(gctx, false));
    g_source_unref(src);
    g_main_context_unref(gctx);
}

/* ---- misuse ---- */

static void run_death_case(int which)
{
    switch (which) {
    case 0:
        aio_add_sqe(NULL, NULL, NULL);
        break;
    case 1:
        qemu_co_timeout(timed_entry, NULL, 1, NULL);
        break;
    case 2:
        yield_until_fd_readable(0);
        break;
    case 3: {
        QEMUTimerListGroup empty = { 0 };
        QEMUTimer ts;
        timer_init_full(&ts, &empty, QEMU_CLOCK_REALTIME, SCALE_NS, 0, timer_run_cb, NULL);
        break;
    }
    case 4:
        timerlistgroup_init(NULL, NULL, NULL);
        break;
    case 5:
        timerlist_free(pub(qemu_get_aio_context())->tlg.tl[0]);
        break;
    case 6: {
        QEMUTimerListGroup tlg;
        QEMUTimer ts;
        timerlistgroup_init(&tlg, NULL, NULL);
        timer_init_full(&ts, &tlg, QEMU_CLOCK_REALTIME, SCALE_NS, 0, timer_run_cb, NULL);
        timerlistgroup_deinit(&tlg);
        timer_mod(&ts, 1);
        break;
    }
    case 7:
        timerlist_has_timers(NULL);
        break;
    }
}

static const DeathTest death_tests[] = {
    { "/abi/aio-add-sqe/null-prep", 0,
      "*aioctx: aio_add_sqe: prep_sqe is NULL*" },
    { "/abi/co-timeout/outside-coroutine", 1,
      "*aioctx: qemu_co_timeout: called outside a coroutine*" },
    { "/abi/yield-until-fd-readable/outside-coroutine", 2,
      "*aioctx: yield_until_fd_readable: called outside a coroutine*" },
    { "/abi/timer/death/empty-group", 3,
      "*aioctx: timer_init_full: QEMUTimerListGroup has no list for this clock*" },
    { "/abi/timer/death/null-group-init", 4,
      "*aioctx: timerlistgroup_init: QEMUTimerListGroup is NULL*" },
    { "/abi/timer/death/free-context-list", 5,
      "*aioctx: timerlist_free: QEMUTimerList belongs to an AioContext*" },
    { "/abi/timer/death/mod-after-group-deinit", 6,
      "*aioctx: timer_mod: QEMUTimer*" },
    { "/abi/timer/death/null-list", 7,
      "*aioctx: timerlist_has_timers: QEMUTimerList is NULL*" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);
    g_test_add_func("/abi/hooks/aio-context-new", test_hooks_aio_context_new);
    g_test_add_func("/abi/hooks/main-and-iothread", test_hooks_main_and_iothread);
    g_test_add_func("/abi/context/aio-max-batch", test_aio_max_batch);
    g_test_add_func("/abi/context/fdmon-ops", test_fdmon_ops);
    g_test_add_func("/abi/bdrv-aio-cancel/own-definition", test_own_bdrv_aio_cancel);
    g_test_add_func("/abi/co-timeout/in-time", test_co_timeout_in_time);
    g_test_add_func("/abi/co-timeout/no-yield", test_co_timeout_no_yield);
    g_test_add_func("/abi/co-timeout/zero-means-no-limit", test_co_timeout_zero_means_no_limit);
    g_test_add_func("/abi/co-timeout/expires", test_co_timeout_expires);
    g_test_add_func("/abi/qemu-clock/queries", test_qemu_clock_queries);
    g_test_add_func("/abi/timer/ctx-tlg", test_timer_on_ctx_tlg);
    g_test_add_func("/abi/gsource/is-ctx-source", test_gsource_is_ctx_source);
    g_test_add_func("/abi/timer/main-loop-tlg", test_timer_on_main_loop_tlg);
    g_test_add_func("/abi/timer/timerlistgroup-standalone", test_timerlistgroup_standalone);
    g_test_add_func("/abi/timer/timerlist-standalone", test_timerlist_standalone);
    g_test_add_func("/abi/co-sleep/until-woken", test_co_sleep_until_woken);
    g_test_add_func("/abi/lockable/typed-null", test_make_lockable_typed_null);
    g_test_add_func("/abi/qemu-poll-ns", test_qemu_poll_ns);
    g_test_add_func("/abi/event-notifier-set-handler", test_event_notifier_set_handler);
    g_test_add_func("/abi/yield-until-fd-readable", test_yield_until_fd_readable);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
    return g_test_run();
}
