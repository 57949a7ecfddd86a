/*
 * bench/thread_pool_roundtrip.c: an empty job through the thread pool.
 *
 *   thread_pool_roundtrip  aioctx: the calling thread, bound to a context,
 *                          calls thread_pool_submit_aio(empty_job, ...) and
 *                          loops aio_poll(ctx, true) until the completion
 *                          callback ran; ns per job (one at a time).
 *   thread_pool_batch64    64 jobs submitted at once, then polled until
 *                          all completed; ns per job (no peer).
 *   peer                   pthread_cond: the same hand-off done by hand:
 *                          one worker thread waiting on a condition
 *                          variable for a job, running it and signalling
 *                          a second condition variable back.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

static uint64_t completed;

static int empty_job(void *arg)
{
    (void)arg;
    return 0;
}

static void done_cb(void *opaque, int ret)
{
    (void)opaque;
    (void)ret;
    completed++;
}

static void pool_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    completed = 0;
    for (uint64_t i = 0; i < n; i++) {
        thread_pool_submit_aio(empty_job, NULL, done_cb, NULL);
        while (completed <= i) {
            aio_poll(ctx, true);
        }
    }
}

static void pool_batch_body(void *arg, uint64_t n)
{
    AioContext *ctx = arg;
    uint64_t submitted = 0;
    completed = 0;
    while (submitted < n) {
        uint64_t b = n - submitted < 64 ? n - submitted : 64;
        for (uint64_t i = 0; i < b; i++) {
            thread_pool_submit_aio(empty_job, NULL, done_cb, NULL);
        }
        submitted += b;
        while (completed < submitted) {
            aio_poll(ctx, true);
        }
    }
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t job_cv, done_cv;
    uint64_t jobs, done;
    bool quit;
} Cond;

static void *cond_worker(void *arg)
{
    Cond *c = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (c->jobs == seen && !c->quit) {
            pthread_cond_wait(&c->job_cv, &c->lock);
        }
        if (c->quit) {
            break;
        }
        seen = c->jobs;
        pthread_mutex_unlock(&c->lock);
        empty_job(NULL);
        pthread_mutex_lock(&c->lock);
        c->done = seen;
        pthread_cond_signal(&c->done_cv);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void cond_body(void *arg, uint64_t n)
{
    Cond *c = arg;
    for (uint64_t i = 0; i < n; i++) {
        pthread_mutex_lock(&c->lock);
        c->jobs++;
        pthread_cond_signal(&c->job_cv);
        while (c->done != c->jobs) {
            pthread_cond_wait(&c->done_cv, &c->lock);
        }
        pthread_mutex_unlock(&c->lock);
    }
}

int main(void)
{
    AioContext *ctx;
    static Cond c = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                      PTHREAD_COND_INITIALIZER, 0, 0, false };
    pthread_t worker;
    bench_fn *fns[3] = { pool_body, pool_batch_body, cond_body };
    void *args[3];
    bench_stat st[3];

    bench_start("thread_pool_roundtrip", "thread_pool_submit_aio empty job round trip");
    if (bench_callgrind()) {
        bench_note("skipped under callgrind (cross-thread)");
        return 0;
    }
    ctx = aio_context_new(NULL);
    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    qemu_set_current_aio_context(ctx);
    if (pthread_create(&worker, NULL, cond_worker, &c)) {
        bench_die("pthread_create failed");
    }
    args[0] = ctx;
    args[1] = ctx;
    args[2] = &c;
    bench_compare(3, fns, args, bench_target_ns(250), 1000, st);
    bench_line("thread_pool_roundtrip", st[0], "pthread_cond", st[2], "ns/job");
    bench_line("thread_pool_batch64", st[1], NULL, st[1], "ns/job");

    pthread_mutex_lock(&c.lock);
    c.quit = true;
    pthread_cond_signal(&c.job_cv);
    pthread_mutex_unlock(&c.lock);
    pthread_join(worker, NULL);
    return 0;
}
