/*
 * bench/loop_count.c: cost of one empty, non-blocking loop iteration.
 *
 *   loop_count  aioctx: aio_poll(ctx, false) on a context with nothing to do
 *               (no BH scheduled, no fd but its own notifier, no timer);
 *               ns per iteration.
 *   peers       uv_nowait: uv_run(loop, UV_RUN_NOWAIT) with one active
 *                 uv_idle handle (whose callback only counts);
 *               uv_idle: libuv's loop_count benchmark: uv_run(UV_RUN_DEFAULT)
 *                 with an idle handle, counting its callbacks (one per
 *                 iteration), stopped after n;
 *               glib_idle: g_main_context_iteration(ctx, FALSE) with an idle
 *                 source (g_idle_add's source) returning G_SOURCE_CONTINUE.
 *
 * The peers run one callback per iteration (an idle loop never blocks, so
 * that is how libuv and GLib measure an iteration); aioctx runs none, which
 * is its empty iteration. bench/bh_reschedule.c measures an iteration with
 * one callback.
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"
#include "bench-peers.h"

static void aioctx_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    for (uint64_t i = 0; i < n; i++) {
        aio_poll(ctx, false);
    }
}

#if AIOCTX_HAVE_LIBUV
static void uv_count_cb(uv_idle_t *h)
{
    BenchUvIdle *s = h->data;
    s->count++;
}

static void uv_nowait_body(void *arg, uint64_t n)
{
    BenchUvIdle *s = arg;
    for (uint64_t i = 0; i < n; i++) {
        uv_run(&s->loop, UV_RUN_NOWAIT);
    }
}
#endif

#if AIOCTX_HAVE_GLIB
static void glib_body(void *arg, uint64_t n)
{
    BenchGIdle *s = arg;
    for (uint64_t i = 0; i < n; i++) {
        g_main_context_iteration(s->ctx, FALSE);
    }
}
#endif

int main(void)
{
    AioContext *ctx;
    bench_fn *fns[4];
    void *args[4];
    const char *names[4];
    bench_stat st[4];
    int k = 0;

    bench_start("loop_count", "one empty non-blocking loop iteration");
    bench_use_cpu_time(true);
    ctx = aio_context_new(NULL);
    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    bench_note("aioctx fd monitor: %s", aioctx_context_fdmon_name(ctx));
    fns[k] = aioctx_body; args[k] = ctx; names[k++] = "aioctx";

#if AIOCTX_HAVE_LIBUV
    static BenchUvIdle uvn, uvi;
    bench_uv_idle_init(&uvn);
    uv_idle_start(&uvn.idle, uv_count_cb);
    fns[k] = uv_nowait_body; args[k] = &uvn; names[k++] = "uv_nowait";
    bench_uv_idle_init(&uvi);
    fns[k] = bench_uv_idle_body; args[k] = &uvi; names[k++] = "uv_idle";
#else
    bench_note("libuv not available: no uv peers");
#endif
#if AIOCTX_HAVE_GLIB
    static BenchGIdle gs;
    gs.ctx = g_main_context_new();
    g_source_unref(bench_g_idle_attach(&gs));
    fns[k] = glib_body; args[k] = &gs; names[k++] = "glib_idle";
#else
    bench_note("GLib not available: no glib peer");
#endif

    bench_compare(k, fns, args, bench_target_ns(200), 100000, st);
    if (k == 1) {
        bench_line("loop_count", st[0], NULL, st[0], "ns/iter");
    }
    for (int i = 1; i < k; i++) {
        bench_line("loop_count", st[0], names[i], st[i], "ns/iter");
    }

#if AIOCTX_HAVE_LIBUV
    uv_idle_stop(&uvn.idle);
    bench_uv_idle_fini(&uvn);
    bench_uv_idle_fini(&uvi);
#endif
#if AIOCTX_HAVE_GLIB
    g_main_context_unref(gs.ctx);
#endif
    aio_context_unref(ctx);
    return 0;
}
