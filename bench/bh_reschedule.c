/*
 * bench/bh_reschedule.c: same-thread bottom half that reschedules itself.
 *
 *   bh_reschedule           aioctx: a BH whose callback calls
 *                           qemu_bh_schedule on itself, the thread looping
 *                           aio_poll(ctx, false); ns per callback.
 *   bh_reschedule/blocking  the same with aio_poll(ctx, true) (QEMU's
 *                           iothread loop; it must not block with a BH
 *                           scheduled).
 *   peers                   indirect_call: the callback called through a
 *                             function pointer, n times (the floor);
 *                           flag_queue_call: the least a thread-safe BH
 *                             does (bench-peers.h): a callback that
 *                             reschedules itself with one atomic RMW on
 *                             its flag and a push on an intrusive queue,
 *                             run by a loop that pops, clears the flag and
 *                             calls it through the pointer;
 *                           uv_idle: a uv_idle callback (runs every
 *                             iteration of uv_run(UV_RUN_DEFAULT));
 *                           glib_idle: an idle source returning
 *                             G_SOURCE_CONTINUE, iterated with
 *                             g_main_context_iteration(ctx, FALSE).
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"
#include "bench-peers.h"

typedef struct {
    AioContext *ctx;
    QEMUBH *bh;
    uint64_t count;
    bool blocking;
} BhState;

static void resched_cb(void *opaque)
{
    BhState *s = opaque;
    s->count++;
    qemu_bh_schedule(s->bh);
}

static void aioctx_body(void *arg, uint64_t n)
{
    BhState *s = arg;
    s->count = 0;
    qemu_bh_schedule(s->bh);
    while (s->count < n) {
        aio_poll(s->ctx, s->blocking);
    }
    qemu_bh_cancel(s->bh);
}

/* ---- the floors --------------------------------------------------------- */

static uint64_t floor_count;

static void count_cb(void *opaque)
{
    (void)opaque;
    floor_count++;
}

static BenchFq fq;
static BenchFqNode fq_node;

static void fq_resched_cb(void *opaque)
{
    floor_count++;
    bench_fq_schedule(&fq, opaque);
}

static void indirect_body(void *arg, uint64_t n)
{
    floor_count = 0;
    bench_indirect_call_body(arg, n);
    if (floor_count != n) {
        bench_die("indirect_call ran %llu of %llu", (unsigned long long)floor_count,
                  (unsigned long long)n);
    }
}

static void fq_body(void *arg, uint64_t n)
{
    BenchFqNode *node = arg;
    floor_count = 0;
    bench_fq_schedule(&fq, node);
    while (floor_count < n) {
        bench_fq_run(&fq);
    }
    /* Cancel: drop the last reschedule. */
    fq.head = fq.tail = NULL;
    __atomic_store_n(&node->flag, 0, __ATOMIC_RELEASE);
}

#if AIOCTX_HAVE_GLIB
static void glib_body(void *arg, uint64_t n)
{
    BenchGIdle *s = arg;
    GSource *src;
    s->count = 0;
    src = bench_g_idle_attach(s);
    while (s->count < n) {
        g_main_context_iteration(s->ctx, FALSE);
    }
    g_source_destroy(src);
    g_source_unref(src);
}
#endif

int main(void)
{
    static BhState nb, bl;
    static BenchIndirect ind = { count_cb, NULL };
    bench_fn *fns[6];
    void *args[6];
    const char *names[6];
    bench_stat st[6];
    int k = 0;

    bench_start("bh_reschedule", "same-thread BH rescheduling itself");
    bench_use_cpu_time(true);
    nb.ctx = aio_context_new(NULL);
    if (!nb.ctx) {
        bench_die("aio_context_new failed");
    }
    nb.bh = aio_bh_new(nb.ctx, resched_cb, &nb);
    bl = nb;
    bl.bh = aio_bh_new(bl.ctx, resched_cb, &bl);
    bl.blocking = true;
    fns[k] = aioctx_body; args[k] = &nb; names[k++] = "aioctx";
    fns[k] = aioctx_body; args[k] = &bl; names[k++] = "aioctx_blocking";
    fns[k] = indirect_body; args[k] = &ind; names[k++] = "indirect_call";
    fq_node.cb = fq_resched_cb;
    fq_node.opaque = &fq_node;
    fns[k] = fq_body; args[k] = &fq_node; names[k++] = "flag_queue_call";
#if AIOCTX_HAVE_LIBUV
    static BenchUvIdle uvs;
    bench_uv_idle_init(&uvs);
    fns[k] = bench_uv_idle_body; args[k] = &uvs; names[k++] = "uv_idle";
#else
    bench_note("libuv not available: no uv peer");
#endif
#if AIOCTX_HAVE_GLIB
    static BenchGIdle gs;
    gs.ctx = g_main_context_new();
    fns[k] = glib_body; args[k] = &gs; names[k++] = "glib_idle";
#else
    bench_note("GLib not available: no glib peer");
#endif

    bench_compare(k, fns, args, bench_target_ns(200), 100000, st);
    for (int i = 2; i < k; i++) {
        bench_line("bh_reschedule", st[0], names[i], st[i], "ns/cb");
    }
    for (int i = 2; i < k; i++) {
        bench_line("bh_reschedule/blocking", st[1], names[i], st[i], "ns/cb");
    }

#if AIOCTX_HAVE_LIBUV
    bench_uv_idle_fini(&uvs);
#endif
#if AIOCTX_HAVE_GLIB
    g_main_context_unref(gs.ctx);
#endif
    qemu_bh_delete(nb.bh);
    qemu_bh_delete(bl.bh);
    aio_poll(nb.ctx, false);
    aio_context_unref(nb.ctx);
    return 0;
}
