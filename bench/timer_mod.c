/*
 * bench/timer_mod.c: arming, re-arming and deleting a timer while 10,000
 * other timers are armed.
 *
 * A batch of 1024 timers is armed (each at a random deadline 1-2 hours
 * away, so none fires and the position in the queue is random), then
 * re-armed to new random deadlines, then deleted; ns per operation of each
 * phase. Background timers are armed at random deadlines in the same range.
 *
 *   timer_mod/arm     aioctx: timer_mod on an unarmed timer (QEMUTimer set
 *                     up with aio_timer_init, QEMU_CLOCK_REALTIME, SCALE_NS);
 *   timer_mod/rearm   timer_mod on an armed timer;
 *   timer_mod/del     timer_del on an armed timer.
 *   peers             uv_timer: uv_timer_start on an inactive / active
 *                       handle, uv_timer_stop (10k other active handles);
 *                     glib_timeout: g_timeout_add / g_source_remove + 
 *                       g_timeout_add (GLib cannot re-arm a timeout) /
 *                       g_source_remove (10k other timeouts attached).
 *   timer_mod/<op>/100k_armed  aioctx with 100,000 background timers,
 *                     peer aioctx with 100: the ratio is the growth from
 *                     100 to 100k armed (1.0 = flat; O(log n) allows some).
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

#if AIOCTX_HAVE_LIBUV
#include <uv.h>
#endif
#if AIOCTX_HAVE_GLIB
#include <glib.h>
#endif

#define M 1024
#define NMAX 100000
#define HOUR_NS 3600000000000ll

typedef struct {
    double arm, rearm, del; /* ns per op */
} Phases;

static void never_cb(void *opaque)
{
    (void)opaque;
    bench_die("a timer fired");
}

/* ---- aioctx ------------------------------------------------------------ */

static AioContext *ctx;
static QEMUTimer *bg, *work;
static int bg_armed;

static void aio_set_background(int n)
{
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    while (bg_armed > n) {
        timer_del(&bg[--bg_armed]);
    }
    while (bg_armed < n) {
        timer_mod(&bg[bg_armed++], now + HOUR_NS + (int64_t)(bench_rand() % HOUR_NS));
    }
}

static Phases aio_run(int batches)
{
    uint64_t t_arm = 0, t_rearm = 0, t_del = 0;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t d[M];
    Phases p;
    for (int b = 0; b < batches; b++) {
        uint64_t t0, t1, t2, t3;
        for (int i = 0; i < M; i++) {
            d[i] = now + HOUR_NS + (int64_t)(bench_rand() % HOUR_NS);
        }
        t0 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            timer_mod(&work[i], d[i]);
        }
        t1 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            timer_mod(&work[i], d[M - 1 - i] + 1);
        }
        t2 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            timer_del(&work[i]);
        }
        t3 = bench_cpu_ns();
        t_arm += t1 - t0;
        t_rearm += t2 - t1;
        t_del += t3 - t2;
    }
    p.arm = (double)t_arm / ((double)batches * M);
    p.rearm = (double)t_rearm / ((double)batches * M);
    p.del = (double)t_del / ((double)batches * M);
    return p;
}

/* ---- libuv -------------------------------------------------------------- */

#if AIOCTX_HAVE_LIBUV
static uv_loop_t loop;
static uv_timer_t *uv_bg, *uv_work;

static void uv_never_cb(uv_timer_t *h)
{
    (void)h;
    bench_die("a uv timer fired");
}

static Phases uv_run_batches(int batches)
{
    uint64_t t_arm = 0, t_rearm = 0, t_del = 0;
    uint64_t d[M];
    Phases p;
    for (int b = 0; b < batches; b++) {
        uint64_t t0, t1, t2, t3;
        for (int i = 0; i < M; i++) {
            d[i] = 3600000 + bench_rand() % 3600000;
        }
        t0 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            uv_timer_start(&uv_work[i], uv_never_cb, d[i], 0);
        }
        t1 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            uv_timer_start(&uv_work[i], uv_never_cb, d[M - 1 - i] + 1, 0);
        }
        t2 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            uv_timer_stop(&uv_work[i]);
        }
        t3 = bench_cpu_ns();
        t_arm += t1 - t0;
        t_rearm += t2 - t1;
        t_del += t3 - t2;
    }
    p.arm = (double)t_arm / ((double)batches * M);
    p.rearm = (double)t_rearm / ((double)batches * M);
    p.del = (double)t_del / ((double)batches * M);
    return p;
}
#endif

/* ---- GLib --------------------------------------------------------------- */

#if AIOCTX_HAVE_GLIB
static gboolean g_never_cb(gpointer data)
{
    (void)data;
    bench_die("a GLib timeout fired");
}

static Phases glib_run(int batches)
{
    uint64_t t_arm = 0, t_rearm = 0, t_del = 0;
    guint d[M], id[M];
    Phases p;
    for (int b = 0; b < batches; b++) {
        uint64_t t0, t1, t2, t3;
        for (int i = 0; i < M; i++) {
            d[i] = 3600000 + (guint)(bench_rand() % 3600000);
        }
        t0 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            id[i] = g_timeout_add(d[i], g_never_cb, NULL);
        }
        t1 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            g_source_remove(id[i]);
            id[i] = g_timeout_add(d[M - 1 - i] + 1, g_never_cb, NULL);
        }
        t2 = bench_cpu_ns();
        for (int i = 0; i < M; i++) {
            g_source_remove(id[i]);
        }
        t3 = bench_cpu_ns();
        t_arm += t1 - t0;
        t_rearm += t2 - t1;
        t_del += t3 - t2;
    }
    p.arm = (double)t_arm / ((double)batches * M);
    p.rearm = (double)t_rearm / ((double)batches * M);
    p.del = (double)t_del / ((double)batches * M);
    return p;
}
#endif

static void report(const char *op, const double *a, const char *peer, const double *pv,
                   int runs)
{
    char name[64];
    snprintf(name, sizeof(name), "timer_mod/%s", op);
    bench_line(name, bench_stat_of(a, runs), peer, bench_stat_of(pv, runs), "ns/op");
}

int main(void)
{
    int runs = bench_runs();
    int batches = bench_callgrind() ? 4 : 150;
    /* [config][op][run]: config 0 = aioctx 10k, 1 = aioctx 100, 2 = aioctx
     * 100k, 3 = uv 10k, 4 = glib 10k */
    static double v[5][3][BENCH_MAX_RUNS];
    const char *ops[3] = { "arm", "rearm", "del" };

    bench_start("timer_mod", "timer arm / re-arm / delete with 10k other timers armed");
    bench_note("times: CPU time of the measuring thread; batches of %d timers", M);
    ctx = aio_context_new(NULL);
    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    bg = calloc(NMAX, sizeof(*bg));
    work = calloc(M, sizeof(*work));
    if (!bg || !work) {
        bench_die("out of memory");
    }
    for (int i = 0; i < NMAX; i++) {
        aio_timer_init(ctx, &bg[i], QEMU_CLOCK_REALTIME, SCALE_NS, never_cb, NULL);
    }
    for (int i = 0; i < M; i++) {
        aio_timer_init(ctx, &work[i], QEMU_CLOCK_REALTIME, SCALE_NS, never_cb, NULL);
    }
#if AIOCTX_HAVE_LIBUV
    uv_loop_init(&loop);
    uv_bg = calloc(10000, sizeof(*uv_bg));
    uv_work = calloc(M, sizeof(*uv_work));
    for (int i = 0; i < 10000; i++) {
        uv_timer_init(&loop, &uv_bg[i]);
        uv_timer_start(&uv_bg[i], uv_never_cb, 3600000 + bench_rand() % 3600000, 0);
    }
    for (int i = 0; i < M; i++) {
        uv_timer_init(&loop, &uv_work[i]);
    }
#endif
#if AIOCTX_HAVE_GLIB
    static guint g_bg[10000];
    for (int i = 0; i < 10000; i++) {
        g_bg[i] = g_timeout_add(3600000 + (guint)(bench_rand() % 3600000), g_never_cb, NULL);
    }
#endif

    for (int r = 0; r < runs; r++) {
        static const int conf_n[3] = { 10000, 100, NMAX };
        for (int c = 0; c < 3; c++) {
            Phases p;
            aio_set_background(conf_n[c]);
            aio_run(batches / 10 + 1); /* warm up */
            p = aio_run(batches);
            v[c][0][r] = p.arm;
            v[c][1][r] = p.rearm;
            v[c][2][r] = p.del;
        }
#if AIOCTX_HAVE_LIBUV
        {
            Phases p = uv_run_batches(batches);
            v[3][0][r] = p.arm;
            v[3][1][r] = p.rearm;
            v[3][2][r] = p.del;
        }
#endif
#if AIOCTX_HAVE_GLIB
        {
            Phases p = glib_run(batches);
            v[4][0][r] = p.arm;
            v[4][1][r] = p.rearm;
            v[4][2][r] = p.del;
        }
#endif
    }

    for (int o = 0; o < 3; o++) {
#if AIOCTX_HAVE_LIBUV
        report(ops[o], v[0][o], "uv_timer", v[3][o], runs);
#endif
#if AIOCTX_HAVE_GLIB
        report(ops[o], v[0][o], "glib_timeout", v[4][o], runs);
#endif
#if !AIOCTX_HAVE_LIBUV && !AIOCTX_HAVE_GLIB
        report(ops[o], v[0][o], NULL, v[0][o], runs);
#endif
    }
    for (int o = 0; o < 3; o++) {
        char op[32];
        snprintf(op, sizeof(op), "%s/100k_armed", ops[o]);
        report(op, v[2][o], "100_armed", v[1][o], runs);
    }

    aio_set_background(0);
#if AIOCTX_HAVE_GLIB
    for (int i = 0; i < 10000; i++) {
        g_source_remove(g_bg[i]);
    }
#endif
    aio_context_unref(ctx);
    return 0;
}
