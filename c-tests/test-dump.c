/*
 * The live-handle dump (aioctx_context_dump, an aioctx extension): after a
 * known workload (named and unnamed BHs in every state, a oneshot, fd
 * handlers with every kind of callback and an event notifier, timers on two
 * clocks, a scheduled coroutine) the dump has exactly the documented lines;
 * it works from inside BH, fd and timer callbacks and from a coroutine;
 * misuse (NULL, wrong thread) is one line + abort; AIOCTX_DUMP_ON_LEAK=1
 * makes teardown print it when a BH was never deleted.
 *
 * Callbacks whose symbols the dump prints are global (dladdr only sees the
 * dynamic symbol table; the programs link with -rdynamic).
 */
#include "aioctx.h"
#include "test-util.h"

#include <glib.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void dump_unnamed_cb(void *opaque);
void dump_timer_cb(void *opaque);
void dump_co_entry(void *opaque);

void dump_unnamed_cb(void *opaque)
{
    (*(int *)opaque)++;
}

void dump_timer_cb(void *opaque)
{
    (*(int *)opaque)++;
}

void dump_co_entry(void *opaque)
{
    (*(int *)opaque)++;
}

static void count_cb(void *opaque)
{
    (*(int *)opaque)++;
}

static void nop_io(void *opaque)
{
    (void)opaque;
}

static bool nop_poll(void *opaque)
{
    (void)opaque;
    return false;
}

static void nop_notifier(EventNotifier *e)
{
    (void)e;
}

static bool nop_notifier_poll(void *opaque)
{
    (void)opaque;
    return false;
}

/* The dump of `ctx` as a NULL-terminated array of lines (g_strfreev). */
static char **dump_lines(AioContext *ctx)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    g_assert_nonnull(f);
    aioctx_context_dump(ctx, f);
    g_assert_cmpint(ferror(f), ==, 0);
    g_assert_cmpint(fclose(f), ==, 0);
    g_assert_cmpuint(len, >, 0);
    g_assert_cmpint(buf[len - 1], ==, '\n');
    buf[len - 1] = '\0';
    char **lines = g_strsplit(buf, "\n", -1);
    free(buf);
    return lines;
}

static char *header(AioContext *ctx, int bhs, int fds, int timers, int cos)
{
    return g_strdup_printf("context %p other bhs %d fds %d timers %d coroutines %d",
                           (void *)ctx, bhs, fds, timers, cos);
}

static int cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines starting with `prefix`, in dump order (or sorted). */
static GPtrArray *lines_with(char **lines, const char *prefix, bool sorted)
{
    GPtrArray *a = g_ptr_array_new();

    for (char **l = lines; *l; l++) {
        if (g_str_has_prefix(*l, prefix)) {
            g_ptr_array_add(a, *l);
        }
    }
    if (sorted) {
        g_ptr_array_sort(a, cmp_str);
    }
    return a;
}

/* Asserts that the `prefix` lines of `lines` are `want` (n of them,
 * already sorted if `sorted`). */
static void assert_lines(char **lines, const char *prefix, bool sorted, const char *const *want,
                         size_t n)
{
    GPtrArray *got = lines_with(lines, prefix, sorted);

    for (size_t i = 0; i < n && i < got->len; i++) {
        g_assert_cmpstr(g_ptr_array_index(got, i), ==, want[i]);
    }
    g_assert_cmpuint(got->len, ==, n);
    g_ptr_array_free(got, true);
}

/* A pipe whose ends get handlers, and a notifier. */
typedef struct {
    int pipe_fds[2];
    EventNotifier e;
} Fds;

static void fds_add(AioContext *ctx, Fds *f)
{
    g_assert_cmpint(pipe(f->pipe_fds), ==, 0);
    g_assert_cmpint(event_notifier_init(&f->e, 0), ==, 0);
    aio_set_fd_handler(ctx, f->pipe_fds[0], nop_io, NULL, NULL, NULL, NULL);
    aio_set_fd_handler(ctx, f->pipe_fds[1], NULL, nop_io, nop_poll, nop_io, NULL);
    aio_set_event_notifier(ctx, &f->e, nop_notifier, nop_notifier_poll, NULL);
    aio_set_event_notifier_poll(ctx, &f->e, nop_notifier, nop_notifier);
}

static void fds_remove(AioContext *ctx, Fds *f)
{
    aio_set_fd_handler(ctx, f->pipe_fds[0], NULL, NULL, NULL, NULL, NULL);
    aio_set_fd_handler(ctx, f->pipe_fds[1], NULL, NULL, NULL, NULL, NULL);
    aio_set_event_notifier(ctx, &f->e, NULL, NULL, NULL);
    close(f->pipe_fds[0]);
    close(f->pipe_fds[1]);
    event_notifier_cleanup(&f->e);
}

/* The fd lines of fds_add, by fd (the three fds were opened in order). */
static char **fd_lines(Fds *f)
{
    char **want = g_new0(char *, 4);

    want[0] = g_strdup_printf("fd %d read", f->pipe_fds[0]);
    want[1] = g_strdup_printf("fd %d write poll poll_ready", f->pipe_fds[1]);
    want[2] = g_strdup_printf("fd %d read poll poll_begin poll_end notifier",
                              event_notifier_get_fd(&f->e));
    return want;
}

#define FAR_DEADLINE 4000000000000000000LL /* ns: armed, never due */

static void test_workload(void)
{
    AioContext *ctx = new_context();
    int runs = 0, fired = 0, co_runs = 0;
    Fds f;
    QEMUTimer t[3];

    /* BHs: one per state, one unnamed, one oneshot. */
    QEMUBH *a = aio_bh_new_full(ctx, count_cb, &runs, "dump-a", NULL);
    QEMUBH *b = aio_bh_new_full(ctx, count_cb, &runs, "dump b", NULL);
    QEMUBH *c = aio_bh_new_full(ctx, count_cb, &runs, "dump-c", NULL);
    QEMUBH *d = aio_bh_new_full(ctx, count_cb, &runs, "dump-d", NULL);
    QEMUBH *e = aio_bh_new_full(ctx, count_cb, &runs, "dump-e", NULL);
    QEMUBH *u = aio_bh_new(ctx, dump_unnamed_cb, &runs);
    qemu_bh_schedule(a);
    qemu_bh_schedule_idle(c);
    qemu_bh_delete(d); /* deleted, not freed until the loop dispatches it */
    qemu_bh_schedule(e);
    qemu_bh_cancel(e);
    aio_bh_schedule_oneshot_full(ctx, count_cb, &runs, "dump-oneshot");

    fds_add(ctx, &f);

    aio_timer_init(ctx, &t[0], QEMU_CLOCK_REALTIME, SCALE_NS, dump_timer_cb, &fired);
    aio_timer_init(ctx, &t[1], QEMU_CLOCK_REALTIME, SCALE_NS, dump_timer_cb, &fired);
    aio_timer_init(ctx, &t[2], QEMU_CLOCK_VIRTUAL, SCALE_MS, dump_timer_cb, &fired);
    timer_mod_ns(&t[0], FAR_DEADLINE + 2);
    timer_mod_ns(&t[1], FAR_DEADLINE + 1);
    timer_mod(&t[2], FAR_DEADLINE / 1000000); /* ms */

    Coroutine *co = qemu_coroutine_create(dump_co_entry, &co_runs);
    aio_co_schedule(ctx, co);

    char **lines = dump_lines(ctx);
    char *want_header = header(ctx, 8, 3, 3, 1);
    g_assert_cmpstr(lines[0], ==, want_header);
    g_free(want_header);
    /* Sorted (registered BHs come in no particular order). */
    const char *const bhs[] = {
        "bh aio_co_schedule scheduled oneshot",
        "bh dump-a scheduled",
        "bh dump-c scheduled-idle",
        "bh dump-d deleted",
        "bh dump-e idle",
        "bh dump-oneshot scheduled oneshot",
        "bh dump_b idle",
        "bh dump_unnamed_cb idle",
    };
    assert_lines(lines, "bh ", true, bhs, G_N_ELEMENTS(bhs));
    /* The oneshots in dispatch order, after the registered ones. */
    g_assert_cmpstr(lines[7], ==, "bh dump-oneshot scheduled oneshot");
    g_assert_cmpstr(lines[8], ==, "bh aio_co_schedule scheduled oneshot");
    char **want_fds = fd_lines(&f);
    assert_lines(lines, "fd ", false, (const char *const *)want_fds, 3);
    char *want_timers[] = {
        g_strdup_printf("timer realtime expires %lld cb dump_timer_cb", FAR_DEADLINE + 1),
        g_strdup_printf("timer realtime expires %lld cb dump_timer_cb", FAR_DEADLINE + 2),
        g_strdup_printf("timer virtual expires %lld cb dump_timer_cb",
                        FAR_DEADLINE / 1000000 * 1000000),
    };
    assert_lines(lines, "timer ", false, (const char *const *)want_timers, 3);
    const char *const cos[] = { "coroutine dump_co_entry scheduled" };
    assert_lines(lines, "coroutine ", false, cos, 1);
    /* Header, then the kinds in order, nothing else. */
    g_assert_cmpuint(g_strv_length(lines), ==, 1 + 8 + 3 + 3 + 1);
    g_assert_true(g_str_has_prefix(lines[9], "fd "));
    g_assert_true(g_str_has_prefix(lines[12], "timer "));
    g_assert_true(g_str_has_prefix(lines[15], "coroutine "));
    g_strfreev(lines);

    /* Run what is scheduled: ran BHs are idle, oneshots and d are gone. */
    /* (Not "until no progress": the pipe's write end is always writable.) */
    for (int i = 0; i < 3; i++) {
        aio_poll(ctx, false);
    }
    g_assert_cmpint(runs, ==, 3); /* a, c, the oneshot */
    g_assert_cmpint(co_runs, ==, 1);
    g_assert_cmpint(fired, ==, 0);
    lines = dump_lines(ctx);
    want_header = header(ctx, 5, 3, 3, 0);
    g_assert_cmpstr(lines[0], ==, want_header);
    g_free(want_header);
    const char *const bhs_after[] = {
        "bh dump-a idle",
        "bh dump-c idle",
        "bh dump-e idle",
        "bh dump_b idle",
        "bh dump_unnamed_cb idle",
    };
    assert_lines(lines, "bh ", true, bhs_after, G_N_ELEMENTS(bhs_after));
    assert_lines(lines, "timer ", false, (const char *const *)want_timers, 3);
    assert_lines(lines, "coroutine ", false, NULL, 0);
    g_strfreev(lines);

    /* Removed handlers and disarmed timers leave the dump. */
    timer_del(&t[1]);
    fds_remove(ctx, &f);
    lines = dump_lines(ctx);
    assert_lines(lines, "fd ", false, NULL, 0);
    assert_lines(lines, "timer ", false, (const char *const *)&want_timers[1], 2);
    g_strfreev(lines);

    for (size_t i = 0; i < G_N_ELEMENTS(want_timers); i++) {
        g_free(want_timers[i]);
    }
    g_strfreev(want_fds);
    timer_del(&t[0]);
    timer_del(&t[2]);
    qemu_bh_delete(a);
    qemu_bh_delete(b);
    qemu_bh_delete(c);
    qemu_bh_delete(e);
    qemu_bh_delete(u);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* From inside callbacks                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
    AioContext *ctx;
    char **lines; /* the dump taken inside the callback */
    int calls;
} Inside;

static void dump_inside_cb(void *opaque)
{
    Inside *in = opaque;

    in->calls++;
    g_strfreev(in->lines);
    in->lines = dump_lines(in->ctx);
}

static void test_from_bh_callback(void)
{
    AioContext *ctx = new_context();
    Inside in = { .ctx = ctx };
    int runs = 0;
    QEMUBH *self = aio_bh_new_full(ctx, dump_inside_cb, &in, "dump-self", NULL);
    QEMUBH *next = aio_bh_new_full(ctx, count_cb, &runs, "dump-next", NULL);

    qemu_bh_schedule(self);
    qemu_bh_schedule(next);
    aio_bh_schedule_oneshot_full(ctx, count_cb, &runs, "dump-later-oneshot");
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(in.calls, ==, 1);
    g_assert_cmpint(runs, ==, 2);

    /* Inside: its own BH is running (not scheduled any more); the rest of
     * the batch is still to run. */
    char *want_header = header(ctx, 3, 0, 0, 0);
    g_assert_cmpstr(in.lines[0], ==, want_header);
    g_free(want_header);
    const char *const bhs[] = {
        "bh dump-later-oneshot scheduled oneshot",
        "bh dump-next scheduled",
        "bh dump-self idle",
    };
    assert_lines(in.lines, "bh ", true, bhs, G_N_ELEMENTS(bhs));
    g_strfreev(in.lines);
    in.lines = NULL;

    /* A oneshot's own line is gone while it runs. */
    aio_bh_schedule_oneshot_full(ctx, dump_inside_cb, &in, "dump-self-oneshot");
    g_assert_true(aio_poll(ctx, false));
    const char *const bhs2[] = { "bh dump-next idle", "bh dump-self idle" };
    assert_lines(in.lines, "bh ", true, bhs2, G_N_ELEMENTS(bhs2));
    g_strfreev(in.lines);
    in.lines = NULL;

    qemu_bh_delete(self);
    qemu_bh_delete(next);
    aio_context_unref(ctx);
}

static void test_from_fd_and_timer_callbacks(void)
{
    AioContext *ctx = new_context();
    Inside in = { .ctx = ctx };
    int fds[2];
    QEMUTimer t;

    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    aio_set_fd_handler(ctx, fds[0], dump_inside_cb, NULL, NULL, NULL, &in);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(in.calls, ==, 1);
    char *want_fd = g_strdup_printf("fd %d read", fds[0]);
    const char *const fd_want[] = { want_fd };
    assert_lines(in.lines, "fd ", false, fd_want, 1);
    g_free(want_fd);
    aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL, NULL);

    /* The firing timer is off its list; the other one is still armed. */
    QEMUTimer later;
    int fired = 0;
    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_NS, dump_inside_cb, &in);
    aio_timer_init(ctx, &later, QEMU_CLOCK_HOST, SCALE_NS, dump_timer_cb, &fired);
    timer_mod_ns(&t, qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - 1);
    timer_mod_ns(&later, FAR_DEADLINE);
    g_assert_true(aio_poll(ctx, false));
    g_assert_cmpint(in.calls, ==, 2);
    char *want_timer = g_strdup_printf("timer host expires %lld cb dump_timer_cb", FAR_DEADLINE);
    const char *const timer_want[] = { want_timer };
    assert_lines(in.lines, "timer ", false, timer_want, 1);
    g_free(want_timer);
    g_strfreev(in.lines);
    timer_del(&later);

    close(fds[0]);
    close(fds[1]);
    aio_context_unref(ctx);
}

typedef struct {
    AioContext *ctx;
    char **lines;
} CoDump;

static void co_dump_entry(void *opaque)
{
    CoDump *d = opaque;
    d->lines = dump_lines(d->ctx);
}

static void test_from_coroutine(void)
{
    AioContext *ctx = new_context();
    CoDump d = { .ctx = ctx };
    int co_runs = 0;

    /* Two scheduled: while the first runs, the second is being entered by
     * the same BH, so neither is listed (documented). */
    aio_co_schedule(ctx, qemu_coroutine_create(co_dump_entry, &d));
    aio_co_schedule(ctx, qemu_coroutine_create(dump_co_entry, &co_runs));
    g_assert_true(aio_poll(ctx, false));
    g_assert_nonnull(d.lines);
    g_assert_cmpint(co_runs, ==, 1);
    char *want_header = header(ctx, 0, 0, 0, 0);
    g_assert_cmpstr(d.lines[0], ==, want_header);
    g_free(want_header);
    g_strfreev(d.lines);
    aio_context_unref(ctx);
}

/* ------------------------------------------------------------------------ */
/* AIOCTX_DUMP_ON_LEAK                                                      */
/* ------------------------------------------------------------------------ */

/* A context with one BH never deleted, one deleted, and a timer. */
static void leak_one_bh(void)
{
    AioContext *ctx = new_context();
    int fired = 0;
    QEMUTimer t;

    aio_bh_new_full(ctx, count_cb, NULL, "leaky-bh", NULL);
    qemu_bh_delete(aio_bh_new_full(ctx, count_cb, NULL, "deleted-bh", NULL));
    aio_timer_init(ctx, &t, QEMU_CLOCK_REALTIME, SCALE_NS, dump_timer_cb, &fired);
    timer_mod_ns(&t, FAR_DEADLINE);
    fprintf(stderr, "ctx=%p\n", (void *)ctx);
    aio_context_unref(ctx);
    fprintf(stderr, "survived-unref\n");
}

static void test_dump_on_leak(void)
{
    if (g_test_subprocess()) {
        g_assert_cmpint(setenv("AIOCTX_DUMP_ON_LEAK", "1", 1), ==, 0);
        /* No BH left: no dump. */
        aio_context_unref(new_context());
        leak_one_bh();
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    /* The dump (header, the two BHs, the timer), then the warning. */
    g_test_trap_assert_stderr("*ctx=0x*\ncontext 0x* other bhs 2 fds 0 timers 1 coroutines 0\n"
                              "*bh leaky-bh idle\n*"
                              "timer realtime expires 4000000000000000000 cb dump_timer_cb\n"
                              "aioctx: aio_context_unref: warning*leaky-bh*survived-unref*");
    g_test_trap_assert_stderr("*\nbh deleted-bh deleted\n*");
    /* Only the leaking context is dumped, once. */
    g_test_trap_assert_stderr_unmatched("*context 0x*context 0x*");
}

static void test_no_dump_without_env(void)
{
    if (g_test_subprocess()) {
        unsetenv("AIOCTX_DUMP_ON_LEAK");
        leak_one_bh();
        return;
    }
    g_test_trap_subprocess(NULL, 10 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("*aioctx: aio_context_unref: warning*leaky-bh*survived-unref*");
    g_test_trap_assert_stderr_unmatched("*context 0x*");
}

/* ------------------------------------------------------------------------ */
/* Misuse                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum {
    DEATH_NULL_CTX,
    DEATH_NULL_OUT,
    DEATH_WRONG_THREAD,
    DEATH_UNBOUND_POLLED_ELSEWHERE,
} DeathCase;

static void *dump_thread(void *opaque)
{
    aioctx_context_dump(opaque, stdout);
    return NULL;
}

/* Dumps the context (polled by this thread) from another thread. */
static void other_thread_dump_cb(void *opaque)
{
    pthread_t th;
    g_assert_cmpint(pthread_create(&th, NULL, dump_thread, opaque), ==, 0);
    pthread_join(th, NULL);
}

static void run_death_case(int which)
{
    AioContext *ctx;
    pthread_t th;

    switch ((DeathCase)which) {
    case DEATH_NULL_CTX:
        aioctx_context_dump(NULL, stdout);
        break;
    case DEATH_NULL_OUT:
        aioctx_context_dump(new_context(), NULL);
        break;
    case DEATH_WRONG_THREAD:
        ctx = new_context();
        qemu_set_current_aio_context(ctx);
        g_assert_cmpint(pthread_create(&th, NULL, dump_thread, ctx), ==, 0);
        pthread_join(th, NULL);
        break;
    case DEATH_UNBOUND_POLLED_ELSEWHERE:
        ctx = new_context();
        aio_bh_schedule_oneshot(ctx, other_thread_dump_cb, ctx);
        aio_poll(ctx, false);
        break;
    }
}

static const DeathTest death_tests[] = {
    { "/aio/dump/death/null-ctx", DEATH_NULL_CTX,
      "*aioctx: aioctx_context_dump: AioContext is NULL*" },
    { "/aio/dump/death/null-out", DEATH_NULL_OUT,
      "*aioctx: aioctx_context_dump: out (FILE *) is NULL*" },
    { "/aio/dump/death/wrong-thread", DEATH_WRONG_THREAD,
      "*aioctx: aioctx_context_dump: called outside the context's home thread*" },
    { "/aio/dump/death/unbound-polled-elsewhere", DEATH_UNBOUND_POLLED_ELSEWHERE,
      "*aioctx: aioctx_context_dump: context bound to no thread is already being polled by "
      "another thread*" },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/aio/dump/workload", test_workload);
    g_test_add_func("/aio/dump/from-bh-callback", test_from_bh_callback);
    g_test_add_func("/aio/dump/from-fd-and-timer-callbacks", test_from_fd_and_timer_callbacks);
    g_test_add_func("/aio/dump/from-coroutine", test_from_coroutine);
    g_test_add_func("/aio/dump/on-leak", test_dump_on_leak);
    g_test_add_func("/aio/dump/no-leak-dump-without-env", test_no_dump_without_env);
    add_death_tests(death_tests, G_N_ELEMENTS(death_tests), run_death_case);
    return g_test_run();
}
