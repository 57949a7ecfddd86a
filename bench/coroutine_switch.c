/*
 * bench/coroutine_switch.c: coroutine switch cost.
 *
 *   coroutine_switch         aioctx: qemu_coroutine_enter of a coroutine
 *                            whose body loops on qemu_coroutine_yield;
 *                            ns per enter + yield pair (two switches).
 *   coroutine_create_enter   qemu_coroutine_create + qemu_coroutine_enter
 *                            of a coroutine that returns at once (taken
 *                            from and returned to the pool); ns per
 *                            coroutine.
 *   peer                     indirect_call: a call through a function
 *                            pointer the compiler cannot see through.
 * The calling thread is bound to a context (qemu_set_current_aio_context),
 * as in QEMU.
 */
#include <stdint.h>

#include "aioctx.h"
#include "bench-util.h"

static uint64_t count;
static bool finish;

static void loop_entry(void *opaque)
{
    (void)opaque;
    while (!finish) {
        count++;
        qemu_coroutine_yield();
    }
}

static void empty_entry(void *opaque)
{
    (void)opaque;
    count++;
}

static void switch_body(void *arg, uint64_t n)
{
    Coroutine *co = arg;
    for (uint64_t i = 0; i < n; i++) {
        qemu_coroutine_enter(co);
    }
}

static void create_body(void *arg, uint64_t n)
{
    (void)arg;
    for (uint64_t i = 0; i < n; i++) {
        qemu_coroutine_enter(qemu_coroutine_create(empty_entry, NULL));
    }
}

static void callee(void *opaque)
{
    (void)opaque;
    count++;
}

static void (*volatile indirect)(void *) = callee;

static void call_body(void *arg, uint64_t n)
{
    (void)arg;
    for (uint64_t i = 0; i < n; i++) {
        void (*f)(void *) = indirect;
        f(NULL);
    }
}

int main(void)
{
    AioContext *ctx;
    Coroutine *co;
    bench_fn *fns[3] = { switch_body, create_body, call_body };
    void *args[3];
    bench_stat st[3];

    bench_start("coroutine_switch", "qemu_coroutine_enter + qemu_coroutine_yield pair");
    bench_use_cpu_time(true);
    ctx = aio_context_new(NULL);
    if (!ctx) {
        bench_die("aio_context_new failed");
    }
    qemu_set_current_aio_context(ctx);
    co = qemu_coroutine_create(loop_entry, NULL);
    args[0] = co;
    args[1] = NULL;
    args[2] = NULL;
    bench_compare(3, fns, args, bench_target_ns(200), 100000, st);
    bench_line("coroutine_switch", st[0], "indirect_call", st[2], "ns/pair");
    bench_line("coroutine_create_enter", st[1], "indirect_call", st[2], "ns/coroutine");
    finish = true;
    qemu_coroutine_enter(co); /* returns: terminated */
    return 0;
}
