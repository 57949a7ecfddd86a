/*
 * iothread: ship work to a thread that runs its own event loop.
 *
 * aioctx_iothread_new() starts a thread with its own AioContext. Any thread
 * may hand it work as bottom halves (BHs): they run in the IOThread, in
 * the order they were scheduled. aio_wait_bh_oneshot() runs a callback
 * there and returns once it ran; because BHs run in order, every BH
 * scheduled before it has run too, so it doubles as a "flush".
 * aioctx_iothread_join() runs what is still scheduled, then stops the
 * thread.
 *
 * This main thread has no context of its own (no qemu_init_main_loop), so
 * aio_wait_bh_oneshot simply sleeps until the callback ran. A QEMU-style
 * main loop thread would keep polling its main context meanwhile.
 *
 * Build and run:  make            (builds every example)
 * By hand:        cc -std=gnu11 -pthread examples/iothread.c $(make -s print-link-flags)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aioctx.h"

#define JOBS 4

static long thread_id(void)
{
    return (long)syscall(SYS_gettid);
}

/* One piece of work: sum the integers in [from, to). */
typedef struct {
    int index;
    uint64_t from, to;
    uint64_t sum;
    long ran_in;
} Job;

static void job_bh(void *opaque)
{
    Job *job = opaque;

    for (uint64_t i = job->from; i < job->to; i++) {
        job->sum += i;
    }
    job->ran_in = thread_id();
}

/* Collects the jobs' results, in the IOThread, after all of them ran. */
typedef struct {
    Job *jobs;
    uint64_t total;
    long ran_in;
    bool is_current;            /* the IOThread's context is current there */
    AioContext *ctx;
} Collect;

static void collect_cb(void *opaque)
{
    Collect *c = opaque;

    for (int i = 0; i < JOBS; i++) {
        c->total += c->jobs[i].sum;
    }
    c->ran_in = thread_id();
    c->is_current = qemu_get_current_aio_context() == c->ctx &&
                    in_aio_context_home_thread(c->ctx);
}

/* A reusable BH: counts how often it ran. */
static void counter_cb(void *opaque)
{
    int *count = opaque;

    (*count)++;
}

/* Does nothing: aio_wait_bh_oneshot with it waits for earlier BHs. */
static void flush_cb(void *opaque)
{
    (void)opaque;
}

static void late_cb(void *opaque)
{
    int *late = opaque;

    (*late)++;
}

int main(void)
{
    AioctxIOThread *iothread;
    AioContext *ctx;
    Job jobs[JOBS];
    Collect collect = { .jobs = jobs };
    QEMUBH *bh;
    int count = 0;
    int late = 0;
    uint64_t n = 1000000, expected = n * (n - 1) / 2;

    iothread = aioctx_iothread_new("worker", &error_abort);
    ctx = aioctx_iothread_get_aio_context(iothread);
    collect.ctx = ctx;
    printf("main thread %ld: started IOThread \"worker\"\n", thread_id());

    /* Ship the jobs as oneshot BHs (freed after they ran). */
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (Job) { .index = i, .from = n / JOBS * i,
                          .to = n / JOBS * (i + 1) };
        aio_bh_schedule_oneshot(ctx, job_bh, &jobs[i]);
    }
    printf("main thread: scheduled %d jobs\n", JOBS);

    /* Wait for a callback in the IOThread: all jobs ran before it. */
    aio_wait_bh_oneshot(ctx, collect_cb, &collect);
    for (int i = 0; i < JOBS; i++) {
        printf("  job %d ran in thread %ld: sum [%llu, %llu) = %llu\n",
               jobs[i].index, jobs[i].ran_in, (unsigned long long)jobs[i].from,
               (unsigned long long)jobs[i].to, (unsigned long long)jobs[i].sum);
    }
    printf("main thread: collected in thread %ld (its context current: %s): "
           "total %llu (expected %llu)\n", collect.ran_in,
           collect.is_current ? "yes" : "no",
           (unsigned long long)collect.total, (unsigned long long)expected);

    /* A BH object can be scheduled again and again (once it has run). */
    bh = aio_bh_new(ctx, counter_cb, &count);
    for (int i = 0; i < 3; i++) {
        qemu_bh_schedule(bh);
        aio_wait_bh_oneshot(ctx, flush_cb, NULL);   /* wait until it ran */
    }
    printf("main thread: the reusable BH ran %d times\n", count);
    qemu_bh_delete(bh);

    /* join runs what is still scheduled before stopping the thread. */
    for (int i = 0; i < 100; i++) {
        aio_bh_schedule_oneshot(ctx, late_cb, &late);
    }
    aioctx_iothread_join(iothread);
    printf("main thread: joined; the %d BHs scheduled just before ran too\n",
           late);

    if (collect.total != expected || !collect.is_current || count != 3 ||
        late != 100) {
        return EXIT_FAILURE;
    }
    printf("done\n");
    return EXIT_SUCCESS;
}
