/*
 * bench/bh_oneshot.c: a one-shot deferred call on the same thread.
 *
 *   bh_oneshot  aioctx: aio_bh_schedule_oneshot(ctx, cb, opaque) then
 *               aio_poll(ctx, false), which runs and frees it; ns per
 *               call (includes the allocation and the free).
 *   bh_oneshot/batch64  64 aio_bh_schedule_oneshot, then one aio_poll;
 *               ns per call.
 *   peers       glib_idle: g_idle_add (a one-shot idle source on the default
 *                 context, callback returning G_SOURCE_REMOVE) then
 *                 g_main_context_iteration(NULL, FALSE);
 *               indirect_call: calling cb(opaque) through a function
 *                 pointer the compiler cannot see through (the floor).
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

#if AIOCTX_HAVE_GLIB
#include <glib.h>
#endif

static uint64_t count;

static void oneshot_cb(void *opaque)
{
    (void)opaque;
    count++;
}

static void aioctx_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    count = 0;
    for (uint64_t i = 0; i < n; i++) {
        aio_bh_schedule_oneshot(ctx, oneshot_cb, NULL);
        aio_poll(ctx, false);
    }
    if (count != n) {
        bench_die("oneshot ran %llu of %llu", (unsigned long long)count, (unsigned long long)n);
    }
}

static void aioctx_batch_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    uint64_t done = 0;
    count = 0;
    while (done < n) {
        uint64_t b = n - done < 64 ? n - done : 64;
        for (uint64_t i = 0; i < b; i++) {
            aio_bh_schedule_oneshot(ctx, oneshot_cb, NULL);
        }
        aio_poll(ctx, false);
        done += b;
    }
    if (count != n) {
        bench_die("batched oneshot ran %llu of %llu", (unsigned long long)count,
                  (unsigned long long)n);
    }
}

#if AIOCTX_HAVE_GLIB
static gboolean g_cb(gpointer data)
{
    (void)data;
    count++;
    return G_SOURCE_REMOVE;
}

static void glib_body(void *arg, uint64_t n)
{
    (void)arg;
    count = 0;
    for (uint64_t i = 0; i < n; i++) {
        g_idle_add(g_cb, NULL);
        g_main_context_iteration(NULL, FALSE);
    }
    if (count != n) {
        bench_die("g_idle_add ran %llu of %llu", (unsigned long long)count,
                  (unsigned long long)n);
    }
}
#endif

static QEMUBHFunc *volatile indirect = oneshot_cb;

static void call_body(void *arg, uint64_t n)
{
    (void)arg;
    count = 0;
    for (uint64_t i = 0; i < n; i++) {
        QEMUBHFunc *f = indirect;
        f(NULL);
    }
}

int main(void)
{
    AioContext *ctx;
    bench_fn *fns[4];
    void *args[4];
    const char *names[4];
    bench_stat st[4];
    int k = 0;

    bench_start("bh_oneshot", "aio_bh_schedule_oneshot + dispatch, same thread");
    bench_use_cpu_time(true);
    ctx = aio_context_new(NULL);
    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    fns[k] = aioctx_body; args[k] = ctx; names[k++] = "aioctx";
    fns[k] = aioctx_batch_body; args[k] = ctx; names[k++] = "aioctx_batch";
    fns[k] = call_body; args[k] = NULL; names[k++] = "indirect_call";
#if AIOCTX_HAVE_GLIB
    fns[k] = glib_body; args[k] = NULL; names[k++] = "glib_idle";
#else
    bench_note("GLib not available: no glib peer");
#endif

    bench_compare(k, fns, args, bench_target_ns(200), 100000, st);
    for (int i = k - 1; i >= 2; i--) {
        bench_line("bh_oneshot", st[0], names[i], st[i], "ns/call");
    }
    for (int i = k - 1; i >= 2; i--) {
        bench_line("bh_oneshot/batch64", st[1], names[i], st[i], "ns/call");
    }
    aio_context_unref(ctx);
    return 0;
}
