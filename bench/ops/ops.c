/*
 * bench/ops/ops.c: instructions per API operation, for `make bench-ops`
 * (scripts/bench-ops.sh), which runs it under
 *     valgrind --tool=callgrind --toggle-collect=run_op ./ops NAME
 * against two libraries. Counting instructions is deterministic: unlike a
 * wall-clock A/B on a shared 2-CPU machine, the answer does not move with
 * load, so it can tell a 5% regression of one call from noise.
 *
 * Each operation runs N times inside run_op() on the main context, with
 * 1000 timers armed half an hour ahead (so every poll sees an armed timer
 * list; the timer the timer_* operations use is armed earlier, at the top);
 * the count per operation is the collected total divided by N. The
 * *_notimer operations run on a second context, made with aio_context_new,
 * with no timer armed (the loop of bench/bh_reschedule.c): what a BH costs
 * without the clock read an armed timer list needs. fd_ready_epoll: a
 * third context watching 1000 eventfds (so the epoll monitor), one made
 * ready before each aio_poll(ctx, true) (bench/fd_1000.c; the system calls
 * are not counted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "qemu/aio.h"
#include "qemu/timer.h"
#include "qemu/coroutine.h"
#include "qemu/thread.h"
#include "qemu/main-loop.h"
#define N 10000
static AioContext *ctx, *ctx2, *ctx3;
static int efd[1000];
static QEMUBH *bh, *bh2;
static QEMUTimer tm, bg[1000];
static Coroutine *co;
static QemuMutex mu;
static CoMutex cm;
static int cnt;
static void bh_cb(void *o) { (void)o; cnt++; }
static void resched_cb(void *o) { (void)o; cnt++; qemu_bh_schedule(bh); }
static void resched2_cb(void *o) { (void)o; cnt++; qemu_bh_schedule(bh2); }
static void tcb(void *o) { (void)o; }
static void fd_cb(void *o) { uint64_t v; if (read(*(int *)o, &v, sizeof(v)) == sizeof(v)) cnt++; }
static void coroutine_fn co_loop(void *o) { (void)o; for (;;) qemu_coroutine_yield(); }
static void coroutine_fn co_ret(void *o) { (void)o; cnt++; }
static void coroutine_fn co_lock(void *o) { (void)o; for (;;) { qemu_co_mutex_lock(&cm); qemu_co_mutex_unlock(&cm); qemu_coroutine_yield(); } }
static const char *op;
__attribute__((noinline)) void run_op(void)
{
    int i;
    if (!strcmp(op, "bh_schedule_pending")) for (i = 0; i < N; i++) qemu_bh_schedule(bh);
    else if (!strcmp(op, "bh_schedule_cancel")) for (i = 0; i < N; i++) { qemu_bh_schedule(bh); qemu_bh_cancel(bh); }
    else if (!strcmp(op, "aio_poll_empty")) for (i = 0; i < N; i++) aio_poll(ctx, false);
    else if (!strcmp(op, "aio_poll_bh")) for (i = 0; i < N; i++) { qemu_bh_schedule(bh); aio_poll(ctx, false); }
    else if (!strcmp(op, "bh_resched")) { qemu_bh_schedule(bh); while (cnt < N) aio_poll(ctx, false); qemu_bh_cancel(bh); }
    else if (!strcmp(op, "bh_resched_blocking")) { qemu_bh_schedule(bh); while (cnt < N) aio_poll(ctx, true); qemu_bh_cancel(bh); }
    else if (!strcmp(op, "bh_resched_notimer")) { qemu_bh_schedule(bh2); while (cnt < N) aio_poll(ctx2, false); qemu_bh_cancel(bh2); }
    else if (!strcmp(op, "bh_resched_blocking_notimer")) { qemu_bh_schedule(bh2); while (cnt < N) aio_poll(ctx2, true); qemu_bh_cancel(bh2); }
    else if (!strcmp(op, "fd_ready_epoll")) for (i = 0; i < N; i++) { uint64_t one = 1; if (write(efd[i * 7919 % 1000], &one, sizeof(one)) != sizeof(one)) exit(3); aio_poll(ctx3, true); }
    else if (!strcmp(op, "oneshot")) for (i = 0; i < N; i++) { aio_bh_schedule_oneshot(ctx, bh_cb, NULL); aio_poll(ctx, false); }
    else if (!strcmp(op, "timer_mod_del")) for (i = 0; i < N; i++) { timer_mod(&tm, 1000000000LL + i * 1000); timer_del(&tm); }
    else if (!strcmp(op, "timer_rearm")) for (i = 0; i < N; i++) timer_mod(&tm, 1000000000LL + (i % 7) * 1000);
    else if (!strcmp(op, "timer_pending")) for (i = 0; i < N; i++) cnt += timer_pending(&tm);
    else if (!strcmp(op, "clock_get")) for (i = 0; i < N; i++) cnt += qemu_clock_get_ns(QEMU_CLOCK_REALTIME) & 1;
    else if (!strcmp(op, "co_switch")) for (i = 0; i < N; i++) qemu_coroutine_enter(co);
    else if (!strcmp(op, "co_create")) for (i = 0; i < N; i++) qemu_coroutine_enter(qemu_coroutine_create(co_ret, NULL));
    else if (!strcmp(op, "co_mutex")) for (i = 0; i < N; i++) qemu_coroutine_enter(co);
    else if (!strcmp(op, "qemu_mutex")) for (i = 0; i < N; i++) { qemu_mutex_lock(&mu); qemu_mutex_unlock(&mu); }
    else if (!strcmp(op, "aio_notify")) for (i = 0; i < N; i++) aio_notify(ctx);
    else if (!strcmp(op, "in_coroutine")) for (i = 0; i < N; i++) cnt += qemu_in_coroutine();
    else if (!strcmp(op, "get_ctx")) for (i = 0; i < N; i++) cnt += qemu_get_current_aio_context() != NULL;
    else { fprintf(stderr, "unknown op %s\n", op); exit(2); }
}
int main(int argc, char **argv)
{
    int i;
    op = argc > 1 ? argv[1] : "aio_poll_empty";
    qemu_init_main_loop(NULL);
    ctx = qemu_get_aio_context();
    bh = aio_bh_new(ctx, (!strcmp(op, "bh_resched") || !strcmp(op, "bh_resched_blocking")) ? resched_cb : bh_cb, NULL);
    ctx2 = aio_context_new(NULL);
    bh2 = aio_bh_new(ctx2, resched2_cb, NULL);
    if (!strcmp(op, "fd_ready_epoll")) {
        ctx3 = aio_context_new(NULL);
        for (i = 0; i < 1000; i++) {
            efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            aio_set_fd_handler(ctx3, efd[i], fd_cb, NULL, NULL, NULL, &efd[i]);
        }
        aio_poll(ctx3, false);
    }
    timer_init_ns(&tm, QEMU_CLOCK_REALTIME, tcb, NULL);
    for (i = 0; i < 1000; i++) { timer_init_ns(&bg[i], QEMU_CLOCK_REALTIME, tcb, NULL); timer_mod(&bg[i], qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + 2000000000000LL + i * 7919LL % 1000 * 1000000); }
    qemu_mutex_init(&mu);
    qemu_co_mutex_init(&cm);
    co = qemu_coroutine_create(!strcmp(op, "co_mutex") ? co_lock : co_loop, NULL);
    if (!strcmp(op, "bh_schedule_pending")) qemu_bh_schedule(bh);
    if (!strcmp(op, "timer_rearm")) timer_mod(&tm, 1000000000LL);
    run_op();
    printf("%d\n", cnt);
    return 0;
}
