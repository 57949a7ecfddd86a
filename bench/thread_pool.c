/*
 * Thread pool benchmarks.
 *
 *   tp_roundtrip_us   thread_pool_submit_aio of an empty job, then
 *                     aio_poll(ctx, true) until its completion callback
 *                     ran: one submit + complete round trip (µs).
 *                     Peer: a pthread mutex/cond-var hand-off to a worker
 *                     thread and back, in the same run.
 *   tp_throughput     1M empty jobs through the pool with 4 workers
 *                     (min = max = 4), at most 4096 in flight, completions
 *                     reported by aio_poll (jobs/s). Peer: the same number
 *                     of empty jobs through a mutex + cond-var queue with 4
 *                     pthread workers (no completion reporting).
 *
 * Output: `name  aioctx_value  peer  peer_value  ratio  unit`; ratio is
 * aioctx / peer (lower is better for µs, higher for jobs/s). Median of 5.
 *
 * Build: cc -std=gnu11 -O2 -Iinclude/compat -Iinclude $(pkg-config --cflags
 * glib-2.0) bench/thread_pool.c target/release/libaioctx.a $(pkg-config
 * --libs glib-2.0) -lpthread -ldl -lm -lgcc_s
 */

#include "qemu/osdep.h"
#include "block/thread-pool.h"
#include "qemu/main-loop.h"
#include "qapi/error.h"

enum { RUNS = 5, RT_ITERS = 20000, TP_JOBS = 1000000, TP_WINDOW = 4096, TP_WORKERS = 4 };

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, RUNS, sizeof(double), cmp_double);
    return v[RUNS / 2];
}

/* ---- aioctx ---- */

static AioContext *ctx;
static long completed;

static int empty_job(void *opaque)
{
    (void)opaque;
    return 0;
}

static void count_cb(void *opaque, int ret)
{
    (void)opaque;
    (void)ret;
    completed++;
}

static double aioctx_roundtrip_us(void)
{
    double t0;

    completed = 0;
    t0 = now_s();
    for (long i = 0; i < RT_ITERS; i++) {
        thread_pool_submit_aio(empty_job, NULL, count_cb, NULL);
        while (completed <= i) {
            aio_poll(ctx, true);
        }
    }
    return (now_s() - t0) / RT_ITERS * 1e6;
}

static double aioctx_throughput(void)
{
    long submitted = 0;
    double t0;

    completed = 0;
    t0 = now_s();
    while (completed < TP_JOBS) {
        while (submitted < TP_JOBS && submitted - completed < TP_WINDOW) {
            thread_pool_submit_aio(empty_job, NULL, count_cb, NULL);
            submitted++;
        }
        aio_poll(ctx, true);
    }
    return TP_JOBS / (now_s() - t0);
}

/* ---- pthread peers ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t req_cond, done_cond;
    long requests, done;
    bool stop;
} PingPong;

static void *pingpong_worker(void *opaque)
{
    PingPong *p = opaque;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->requests == p->done && !p->stop) {
            pthread_cond_wait(&p->req_cond, &p->lock);
        }
        if (p->stop) {
            break;
        }
        empty_job(NULL);
        p->done++;
        pthread_cond_signal(&p->done_cond);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static double pthread_roundtrip_us(void)
{
    PingPong p = { .lock = PTHREAD_MUTEX_INITIALIZER,
                   .req_cond = PTHREAD_COND_INITIALIZER,
                   .done_cond = PTHREAD_COND_INITIALIZER };
    pthread_t t;
    double t0, res;

    pthread_create(&t, NULL, pingpong_worker, &p);
    t0 = now_s();
    for (long i = 0; i < RT_ITERS; i++) {
        pthread_mutex_lock(&p.lock);
        p.requests++;
        pthread_cond_signal(&p.req_cond);
        while (p.done < p.requests) {
            pthread_cond_wait(&p.done_cond, &p.lock);
        }
        pthread_mutex_unlock(&p.lock);
    }
    res = (now_s() - t0) / RT_ITERS * 1e6;
    pthread_mutex_lock(&p.lock);
    p.stop = true;
    pthread_cond_signal(&p.req_cond);
    pthread_mutex_unlock(&p.lock);
    pthread_join(t, NULL);
    return res;
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    long queued, taken;
    bool stop;
} JobQueue;

static void *queue_worker(void *opaque)
{
    JobQueue *q = opaque;

    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->taken == q->queued && !q->stop) {
            pthread_cond_wait(&q->cond, &q->lock);
        }
        if (q->taken == q->queued) {
            break;
        }
        q->taken++;
        pthread_mutex_unlock(&q->lock);
        empty_job(NULL);
        pthread_mutex_lock(&q->lock);
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static double pthread_throughput(void)
{
    JobQueue q = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    pthread_t t[TP_WORKERS];
    double t0, elapsed;

    for (int i = 0; i < TP_WORKERS; i++) {
        pthread_create(&t[i], NULL, queue_worker, &q);
    }
    t0 = now_s();
    for (long i = 0; i < TP_JOBS; i++) {
        pthread_mutex_lock(&q.lock);
        q.queued++;
        pthread_cond_signal(&q.cond);
        pthread_mutex_unlock(&q.lock);
    }
    pthread_mutex_lock(&q.lock);
    q.stop = true;
    pthread_cond_broadcast(&q.cond);
    pthread_mutex_unlock(&q.lock);
    for (int i = 0; i < TP_WORKERS; i++) {
        pthread_join(t[i], NULL);
    }
    elapsed = now_s() - t0;
    return TP_JOBS / elapsed;
}

int main(void)
{
    double a[RUNS], p[RUNS], ma, mp;

    qemu_init_main_loop(&error_abort);
    ctx = qemu_get_aio_context();

    printf("# thread pool: median of %d runs\n", RUNS);
    printf("# name  aioctx_value  peer  peer_value  ratio  unit\n");

    /* Round trip: one warm worker, like the peer's single thread. */
    aio_context_set_thread_pool_params(ctx, 1, 1, &error_abort);
    aioctx_roundtrip_us(); /* warm-up */
    for (int i = 0; i < RUNS; i++) {
        a[i] = aioctx_roundtrip_us();
        p[i] = pthread_roundtrip_us();
    }
    ma = median(a);
    mp = median(p);
    printf("tp_roundtrip_us  %.2f  pthread_condvar  %.2f  %.2f  us\n", ma, mp, ma / mp);

    aio_context_set_thread_pool_params(ctx, TP_WORKERS, TP_WORKERS, &error_abort);
    for (int i = 0; i < RUNS; i++) {
        a[i] = aioctx_throughput();
        p[i] = pthread_throughput();
    }
    ma = median(a);
    mp = median(p);
    printf("tp_throughput_1M_4w  %.0f  pthread_condvar_queue  %.0f  %.2f  jobs/s\n", ma, mp,
           ma / mp);
    fflush(stdout);
    return 0;
}
