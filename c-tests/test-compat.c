/*
 * The compat header tree (include/compat/): every header included together,
 * as QEMU code does (qemu/osdep.h first), and each macro family exercised:
 * osdep helpers, qatomic_*, the queue families, lockable guards, the Error
 * API and error reports, RCU, AIO_WAIT_WHILE, the BH naming macros, sockets.
 *
 * Build: cc -std=gnu11 -Wall -Wextra -Werror -g -Iinclude/compat -Iinclude
 * $(pkg-config --cflags glib-2.0) c-tests/test-compat.c -o /tmp/test-compat
 * target/release/libaioctx.a $(pkg-config --libs glib-2.0) -lpthread -ldl
 * -lm -lgcc_s -rdynamic
 */
#include "qemu/osdep.h"
#include "qemu/aio.h"
#include "qemu/aio-wait.h"
#include "qemu/aiocb.h"
#include "qemu/atomic.h"
#include "qemu/compiler.h"
#include "qemu/coroutine.h"
#include "qemu/coroutine-core.h"
#include "qemu/coroutine_int.h"
#include "qemu/error-report.h"
#include "qemu/event_notifier.h"
#include "qemu/futex.h"
#include "qemu/lockable.h"
#include "qemu/main-loop.h"
#include "qemu/processor.h"
#include "qemu/queue.h"
#include "qemu/rcu.h"
#include "qemu/sockets.h"
#include "qemu/thread.h"
#include "qemu/thread-posix.h"
#include "qemu/timer.h"
#include "qemu/typedefs.h"
#include "qapi/error.h"
#include "block/aio.h"
#include "block/aio-wait.h"
#include "block/block.h"
#include "block/thread-pool.h"

#include <sys/wait.h>

/* File-scope build assertions. */
QEMU_BUILD_BUG_ON(sizeof(int) < 4);
QEMU_BUILD_BUG_MSG(sizeof(char) != 1, "char is one byte");

/* ------------------------------------------------------------------ helpers */

/*
 * Runs fn in a forked child with stderr captured; returns the wait status
 * and the child's stderr (caller frees). For exact exit codes, which
 * g_test_trap_subprocess does not expose.
 */
static int run_child(void (*fn)(void), char **err_out)
{
    int pipefd[2];
    g_assert_cmpint(pipe(pipefd), ==, 0);
    fflush(NULL);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        fn();
        _exit(0);
    }
    close(pipefd[1]);
    GString *s = g_string_new(NULL);
    char buf[512];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) {
        g_string_append_len(s, buf, n);
    }
    close(pipefd[0]);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    *err_out = g_string_free(s, false);
    return status;
}

/* ------------------------------------------------------------------- osdep */

typedef struct Outer {
    int a;
    char pad[3];
    long member;
} Outer;

typedef struct QEMU_PACKED Packed {
    char c;
    int i;
} Packed;

static int side_effects;
static int next_value(int v)
{
    side_effects++;
    return v;
}

static void test_osdep(void)
{
    Outer o;
    long *mp = &o.member;
    int arr[7];
    QEMU_ALIGNED(64) char aligned[3];

    QEMU_BUILD_BUG_ON(ARRAY_SIZE(arr) != 7);
    g_assert(container_of(mp, Outer, member) == &o);
    g_assert_cmpuint(ARRAY_SIZE(arr), ==, 7);
    g_assert_cmpuint(sizeof(Packed), ==, 5);
    g_assert_cmpuint((uintptr_t)aligned % 64, ==, 0);
    g_assert_cmpint(IS_ENABLED(CONFIG_COROUTINE_POOL), ==, 1);
    g_assert_cmpint(IS_ENABLED(CONFIG_AIOCTX_NOT_DEFINED), ==, 0);

    side_effects = 0;
    g_assert_cmpint(MIN(next_value(3), next_value(5)), ==, 3);
    g_assert_cmpint(MAX(next_value(3), next_value(5)), ==, 5);
    g_assert_cmpint(side_effects, ==, 4);
    g_assert_cmpint(MIN_CONST(2, 9), ==, 2);
    g_assert_cmpint(MIN_NON_ZERO(0, 7), ==, 7);
    g_assert_cmpint(MIN_NON_ZERO(4, 7), ==, 4);

    g_assert_cmpint(ROUND_UP(13, 8), ==, 16);
    g_assert_cmpint(ROUND_DOWN(13, 8), ==, 8);
    g_assert_cmpint(DIV_ROUND_UP(13, 4), ==, 4);
    g_assert_cmpint(QEMU_ALIGN_UP(13, 5), ==, 15);
    g_assert_cmpint(QEMU_ALIGN_DOWN(13, 5), ==, 10);
    g_assert_true(QEMU_IS_ALIGNED(4096, 512));
    g_assert_false(QEMU_IS_ALIGNED(4097, 512));
    g_assert_true(QEMU_PTR_IS_ALIGNED(aligned, 64));

    g_assert_cmpstr(stringify(SCALE_MS), ==, "1000000");
    g_assert_cmpstr(tostring(SCALE_MS), ==, "SCALE_MS");
    int glue(var, 1) = 11;
    g_assert_cmpint(xglue(var, 1), ==, 11);
    g_assert_true(likely(1));
    g_assert_false(unlikely(0));
    qemu_build_assert(sizeof(long) >= 4);
    g_assert_cmpint(qemu_get_thread_id(), >, 0);
}

/* ------------------------------------------------------------------ atomic */

static void test_atomic(void)
{
    int i = 0;
    unsigned u = 0xf0;
    uint64_t q = 0;
    bool b = false;
    int *p = NULL;
    const int *cp;

    qatomic_set(&i, 5);
    g_assert_cmpint(qatomic_read(&i), ==, 5);
    qatomic_inc(&i);
    qatomic_dec(&i);
    qatomic_add(&i, 10);
    qatomic_sub(&i, 3);
    g_assert_cmpint(i, ==, 12);
    g_assert_cmpint(qatomic_fetch_inc(&i), ==, 12);
    g_assert_cmpint(qatomic_fetch_dec(&i), ==, 13);
    g_assert_cmpint(qatomic_fetch_add(&i, 8), ==, 12);
    g_assert_cmpint(qatomic_fetch_sub(&i, 10), ==, 20);
    g_assert_cmpint(qatomic_inc_fetch(&i), ==, 11);
    g_assert_cmpint(qatomic_dec_fetch(&i), ==, 10);
    g_assert_cmpint(qatomic_add_fetch(&i, 5), ==, 15);
    g_assert_cmpint(qatomic_sub_fetch(&i, 5), ==, 10);

    g_assert_cmphex(qatomic_fetch_and(&u, 0x3c), ==, 0xf0);
    g_assert_cmphex(qatomic_fetch_or(&u, 0x01), ==, 0x30);
    g_assert_cmphex(qatomic_fetch_xor(&u, 0x31), ==, 0x31);
    g_assert_cmphex(u, ==, 0x00);
    qatomic_or(&u, 0x81);
    qatomic_and(&u, 0x80);
    qatomic_xor(&u, 0x08);
    g_assert_cmphex(u, ==, 0x88);
    g_assert_cmphex(qatomic_or_fetch(&u, 1), ==, 0x89);
    g_assert_cmphex(qatomic_and_fetch(&u, 0xf), ==, 0x9);
    g_assert_cmphex(qatomic_xor_fetch(&u, 0x9), ==, 0);

    g_assert_cmpint(qatomic_xchg(&i, 3), ==, 10);
    g_assert_cmpint(qatomic_cmpxchg(&i, 3, 4), ==, 3);
    g_assert_cmpint(i, ==, 4);
    g_assert_cmpint(qatomic_cmpxchg(&i, 3, 9), ==, 4); /* fails */
    g_assert_cmpint(i, ==, 4);
    g_assert_cmpint(qatomic_cmpxchg__nocheck(&i, 4, 6), ==, 4);
    g_assert_cmpint(qatomic_read__nocheck(&i), ==, 6);
    qatomic_set__nocheck(&i, 7);
    g_assert_false(qatomic_cmpxchg(&b, false, true));
    g_assert_true(b);
    g_assert_true(qatomic_xchg(&b, false));

    qatomic_set_mb(&i, 8);
    g_assert_cmpint(qatomic_mb_read(&i), ==, 8);
    qatomic_mb_set(&i, 9);
    g_assert_cmpint(qatomic_load_acquire(&i), ==, 9);
    qatomic_store_release(&i, 10);
    g_assert_cmpint(i, ==, 10);

    qatomic_rcu_set(&p, &i);
    cp = qatomic_rcu_read(&p);
    g_assert(cp == &i);
    qatomic_set_u64(&q, UINT64_C(1) << 40);
    g_assert_cmpuint(qatomic_read_u64(&q), ==, UINT64_C(1) << 40);
    g_assert_cmpint(qatomic_fetch_max(&i, 20), ==, 10);
    g_assert_cmpint(qatomic_fetch_min(&i, 2), ==, 20);
    g_assert_cmpint(i, ==, 2);

    smp_mb();
    smp_rmb();
    smp_wmb();
    smp_mb__before_rmw();
    smp_mb__after_rmw();
    smp_read_barrier_depends();
    barrier();
    signal_barrier();
}

/* ------------------------------------------------------------------- queue */

typedef struct Node {
    int v;
    QLIST_ENTRY(Node) l;
    QSLIST_ENTRY(Node) sl;
    QSIMPLEQ_ENTRY(Node) sq;
    QTAILQ_ENTRY(Node) tq;
} Node;

#define NNODES 6

static void test_qlist(void)
{
    QLIST_HEAD(, Node) head = QLIST_HEAD_INITIALIZER(head);
    QLIST_HEAD(, Node) other;
    Node n[NNODES] = { 0 };
    Node *it, *next;
    int order[NNODES], k = 0;

    QLIST_INIT(&other);
    g_assert_true(QLIST_EMPTY(&head));
    for (int i = 0; i < NNODES; i++) {
        n[i].v = i;
        g_assert_false(QLIST_IS_INSERTED(&n[i], l));
    }
    QLIST_INSERT_HEAD(&head, &n[2], l);            /* 2 */
    QLIST_INSERT_HEAD(&head, &n[0], l);            /* 0 2 */
    QLIST_INSERT_AFTER(&n[0], &n[1], l);           /* 0 1 2 */
    QLIST_INSERT_AFTER(&n[2], &n[4], l);           /* 0 1 2 4 */
    QLIST_INSERT_BEFORE(&n[4], &n[3], l);          /* 0 1 2 3 4 */
    QLIST_INSERT_AFTER(&n[4], &n[5], l);           /* 0..5 */
    QLIST_FOREACH(it, &head, l) {
        order[k++] = it->v;
    }
    g_assert_cmpint(k, ==, NNODES);
    for (int i = 0; i < NNODES; i++) {
        g_assert_cmpint(order[i], ==, i);
        g_assert_true(QLIST_IS_INSERTED(&n[i], l));
    }
    g_assert(QLIST_FIRST(&head) == &n[0]);
    g_assert(QLIST_NEXT(&n[0], l) == &n[1]);

    /* Remove the odd ones while iterating. */
    QLIST_FOREACH_SAFE(it, &head, l, next) {
        if (it->v % 2) {
            QLIST_REMOVE(it, l);
        }
    }
    g_assert_false(QLIST_IS_INSERTED(&n[1], l));
    QLIST_SAFE_REMOVE(&n[1], l);                   /* not inserted: no-op */
    QLIST_SAFE_REMOVE(&n[4], l);                   /* 0 2 */
    k = 0;
    QLIST_FOREACH(it, &head, l) {
        order[k++] = it->v;
    }
    g_assert_cmpint(k, ==, 2);
    g_assert_cmpint(order[0], ==, 0);
    g_assert_cmpint(order[1], ==, 2);

    QLIST_SWAP(&other, &head, l);
    g_assert_true(QLIST_EMPTY(&head));
    g_assert(QLIST_FIRST(&other) == &n[0]);
    QLIST_REMOVE(&n[0], l);                        /* le_prev fixed by SWAP */
    g_assert(QLIST_FIRST(&other) == &n[2]);
    QLIST_REMOVE(&n[2], l);
    g_assert_true(QLIST_EMPTY(&other));
}

QSLIST_HEAD(NodeSList, Node);

typedef struct {
    struct NodeSList *head;     /* shared by all pushers */
    Node *nodes;
    int count;
} AtomicPush;

static void *push_thread(void *opaque)
{
    AtomicPush *ap = opaque;

    for (int i = 0; i < ap->count; i++) {
        QSLIST_INSERT_HEAD_ATOMIC(ap->head, &ap->nodes[i], sl);
    }
    return NULL;
}

static void test_qslist(void)
{
    QSLIST_HEAD(, Node) head = QSLIST_HEAD_INITIALIZER(head);
    Node n[NNODES] = { 0 };
    Node *it, *next;
    int k = 0;

    QSLIST_INIT(&head);
    for (int i = NNODES - 1; i >= 0; i--) {
        n[i].v = i;
        if (i != 3) {
            QSLIST_INSERT_HEAD(&head, &n[i], sl);  /* 0 1 2 4 5 */
        }
    }
    QSLIST_INSERT_AFTER(&n[2], &n[3], sl);         /* 0..5 */
    QSLIST_FOREACH(it, &head, sl) {
        g_assert_cmpint(it->v, ==, k++);
    }
    g_assert_cmpint(k, ==, NNODES);
    QSLIST_REMOVE_HEAD(&head, sl);                 /* 1..5 */
    QSLIST_REMOVE_AFTER(&n[1], sl);                /* 1 3 4 5 */
    QSLIST_REMOVE(&head, &n[4], Node, sl);         /* 1 3 5 */
    QSLIST_FOREACH_SAFE(it, &head, sl, next) {
        if (it->v == 3) {
            QSLIST_REMOVE(&head, it, Node, sl);    /* 1 5 */
        }
    }
    g_assert(QSLIST_FIRST(&head) == &n[1]);
    g_assert(QSLIST_NEXT(&n[1], sl) == &n[5]);
    g_assert(QSLIST_NEXT(&n[5], sl) == NULL);

    /* Concurrent lock-free pushes, then an atomic move of the whole list. */
    enum { PER_THREAD = 5000, THREADS = 4 };
    struct NodeSList shared = QSLIST_HEAD_INITIALIZER(shared);
    struct NodeSList taken;
    Node *all = g_new0(Node, PER_THREAD * THREADS);
    AtomicPush per[THREADS];
    QemuThread th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        per[t] = (AtomicPush) { &shared, all + t * PER_THREAD, PER_THREAD };
        qemu_thread_create(&th[t], "pusher", push_thread, &per[t],
                           QEMU_THREAD_JOINABLE);
    }
    for (int t = 0; t < THREADS; t++) {
        qemu_thread_join(&th[t]);
    }
    QSLIST_MOVE_ATOMIC(&taken, &shared);
    g_assert_true(QSLIST_EMPTY(&shared));
    int total = 0;
    QSLIST_FOREACH(it, &taken, sl) {
        it->v = -1;
        total++;
    }
    g_assert_cmpint(total, ==, PER_THREAD * THREADS);
    for (int i = 0; i < PER_THREAD * THREADS; i++) {
        g_assert_cmpint(all[i].v, ==, -1);   /* each node exactly once */
    }
    g_free(all);
}

static void test_qsimpleq(void)
{
    QSIMPLEQ_HEAD(NodeQ, Node) head = QSIMPLEQ_HEAD_INITIALIZER(head);
    struct NodeQ other, removed;
    Node n[NNODES] = { 0 };
    Node *it, *next;
    int k = 0;

    for (int i = 0; i < NNODES; i++) {
        n[i].v = i;
    }
    g_assert_true(QSIMPLEQ_EMPTY(&head));
    g_assert(QSIMPLEQ_LAST(&head, Node, sq) == NULL);
    QSIMPLEQ_INSERT_TAIL(&head, &n[1], sq);        /* 1 */
    QSIMPLEQ_INSERT_HEAD(&head, &n[0], sq);        /* 0 1 */
    QSIMPLEQ_INSERT_TAIL(&head, &n[3], sq);        /* 0 1 3 */
    QSIMPLEQ_INSERT_AFTER(&head, &n[1], &n[2], sq);/* 0 1 2 3 */
    g_assert(QSIMPLEQ_LAST(&head, Node, sq) == &n[3]);
    QSIMPLEQ_FOREACH(it, &head, sq) {
        g_assert_cmpint(it->v, ==, k++);
    }
    g_assert_cmpint(k, ==, 4);

    QSIMPLEQ_INIT(&other);
    QSIMPLEQ_INSERT_TAIL(&other, &n[4], sq);
    QSIMPLEQ_INSERT_TAIL(&other, &n[5], sq);
    QSIMPLEQ_CONCAT(&head, &other);                /* 0..5 */
    g_assert_true(QSIMPLEQ_EMPTY(&other));
    g_assert(QSIMPLEQ_LAST(&head, Node, sq) == &n[5]);

    QSIMPLEQ_REMOVE_HEAD(&head, sq);               /* 1..5 */
    QSIMPLEQ_REMOVE(&head, &n[5], Node, sq);       /* 1..4 */
    g_assert(QSIMPLEQ_LAST(&head, Node, sq) == &n[4]);
    QSIMPLEQ_FOREACH_SAFE(it, &head, sq, next) {
        if (it->v == 2) {
            QSIMPLEQ_REMOVE(&head, it, Node, sq);  /* 1 3 4 */
        }
    }
    QSIMPLEQ_SPLIT_AFTER(&head, &n[3], sq, &removed); /* head 4; removed 1 3 */
    g_assert(QSIMPLEQ_FIRST(&head) == &n[4]);
    g_assert(QSIMPLEQ_FIRST(&removed) == &n[1]);
    g_assert(QSIMPLEQ_NEXT(&n[1], sq) == &n[3]);
    g_assert(QSIMPLEQ_LAST(&removed, Node, sq) == &n[3]);

    QSIMPLEQ_PREPEND(&head, &removed);             /* 1 3 4 */
    k = 0;
    int want[] = { 1, 3, 4 };
    QSIMPLEQ_FOREACH(it, &head, sq) {
        g_assert_cmpint(it->v, ==, want[k++]);
    }
    g_assert_cmpint(k, ==, 3);
    /* PREPEND into an empty queue keeps the tail pointer right. */
    QSIMPLEQ_INIT(&other);
    QSIMPLEQ_PREPEND(&other, &head);
    QSIMPLEQ_INSERT_TAIL(&other, &n[5], sq);
    g_assert(QSIMPLEQ_LAST(&other, Node, sq) == &n[5]);
    g_assert_false(QSIMPLEQ_EMPTY_ATOMIC(&other));
}

static void test_qtailq(void)
{
    QTAILQ_HEAD(NodeTQ, Node) head = QTAILQ_HEAD_INITIALIZER(head);
    Node n[NNODES] = { 0 };
    Node *it, *tmp;
    int k;

    for (int i = 0; i < NNODES; i++) {
        n[i].v = i;
        g_assert_false(QTAILQ_IN_USE(&n[i], tq));
    }
    g_assert_true(QTAILQ_EMPTY(&head));
    g_assert(QTAILQ_LAST(&head) == NULL);
    QTAILQ_INSERT_TAIL(&head, &n[2], tq);          /* 2 */
    QTAILQ_INSERT_HEAD(&head, &n[0], tq);          /* 0 2 */
    QTAILQ_INSERT_AFTER(&head, &n[0], &n[1], tq);  /* 0 1 2 */
    QTAILQ_INSERT_TAIL(&head, &n[5], tq);          /* 0 1 2 5 */
    QTAILQ_INSERT_BEFORE(&n[5], &n[3], tq);        /* 0 1 2 3 5 */
    QTAILQ_INSERT_AFTER(&head, &n[3], &n[4], tq);  /* 0..5 */
    k = 0;
    QTAILQ_FOREACH(it, &head, tq) {
        g_assert_cmpint(it->v, ==, k++);
        g_assert_true(QTAILQ_IN_USE(it, tq));
    }
    g_assert_cmpint(k, ==, NNODES);
    k = NNODES;
    QTAILQ_FOREACH_REVERSE(it, &head, tq) {
        g_assert_cmpint(it->v, ==, --k);
    }
    g_assert_cmpint(k, ==, 0);
    g_assert(QTAILQ_FIRST(&head) == &n[0]);
    g_assert(QTAILQ_LAST(&head) == &n[5]);
    g_assert(QTAILQ_PREV(&n[3], tq) == &n[2]);
    g_assert(QTAILQ_PREV(&n[0], tq) == NULL);
    g_assert(QTAILQ_NEXT(&n[3], tq) == &n[4]);

    QTAILQ_FOREACH_SAFE(it, &head, tq, tmp) {
        if (it->v % 2 == 0) {
            QTAILQ_REMOVE(&head, it, tq);          /* 1 3 5 */
        }
    }
    g_assert_false(QTAILQ_IN_USE(&n[0], tq));
    g_assert(QTAILQ_LAST(&head) == &n[5]);
    QTAILQ_FOREACH_REVERSE_SAFE(it, &head, tq, tmp) {
        if (it->v == 5) {
            QTAILQ_REMOVE(&head, it, tq);          /* 1 3 */
        }
    }
    g_assert(QTAILQ_LAST(&head) == &n[3]);
    QTAILQ_REMOVE(&head, &n[1], tq);
    QTAILQ_REMOVE(&head, &n[3], tq);
    g_assert_true(QTAILQ_EMPTY(&head));
    QTAILQ_INSERT_TAIL(&head, &n[4], tq);
    g_assert(QTAILQ_FIRST(&head) == &n[4] && QTAILQ_LAST(&head) == &n[4]);
}

/* ---------------------------------------------------------------- lockable */

static void *trylock_thread(void *opaque)
{
    QemuMutex *m = opaque;
    int r = qemu_mutex_trylock(m);

    if (r == 0) {
        qemu_mutex_unlock(m);
    }
    return GINT_TO_POINTER(r == 0);   /* 1: the mutex was free */
}

static bool mutex_free_from_other_thread(QemuMutex *m)
{
    QemuThread t;

    qemu_thread_create(&t, "trylock", trylock_thread, m, QEMU_THREAD_JOINABLE);
    return GPOINTER_TO_INT(qemu_thread_join(&t));
}

static int guarded_early_return(QemuMutex *m, bool *was_locked)
{
    QEMU_LOCK_GUARD(m);
    *was_locked = !mutex_free_from_other_thread(m);
    return 42;                        /* the guard unlocks on return */
}

static void test_lockable(void)
{
    QemuMutex m;
    QemuRecMutex rm;
    QemuSpin spin;
    bool locked = false;
    int iterations = 0;

    qemu_mutex_init(&m);
    g_assert_true(mutex_free_from_other_thread(&m));
    {
        QEMU_LOCK_GUARD(&m);
        g_assert_false(mutex_free_from_other_thread(&m));
    }
    g_assert_true(mutex_free_from_other_thread(&m));

    WITH_QEMU_LOCK_GUARD(&m) {
        iterations++;
        g_assert_false(mutex_free_from_other_thread(&m));
    }
    g_assert_cmpint(iterations, ==, 1);
    g_assert_true(mutex_free_from_other_thread(&m));

    WITH_QEMU_LOCK_GUARD(&m) {
        break;                        /* leaving early unlocks too */
    }
    g_assert_true(mutex_free_from_other_thread(&m));

    g_assert_cmpint(guarded_early_return(&m, &locked), ==, 42);
    g_assert_true(locked);
    g_assert_true(mutex_free_from_other_thread(&m));

    QemuLockable *lk = QEMU_MAKE_LOCKABLE(&m);
    g_assert(lk->object == &m);
    qemu_lockable_lock(lk);
    g_assert_false(mutex_free_from_other_thread(&m));
    qemu_lockable_unlock(lk);
    g_assert(QEMU_MAKE_LOCKABLE(lk) == lk);
    g_assert(QEMU_MAKE_LOCKABLE((void *)NULL) == NULL);
    {
        QEMU_LOCK_GUARD(lk);          /* a QemuLockable * works too */
        g_assert_false(mutex_free_from_other_thread(&m));
    }
    g_assert_true(mutex_free_from_other_thread(&m));
    qemu_mutex_destroy(&m);

    qemu_rec_mutex_init(&rm);
    WITH_QEMU_LOCK_GUARD(&rm) {
        QEMU_LOCK_GUARD(&rm);         /* recursive */
        iterations++;
    }
    g_assert_cmpint(qemu_rec_mutex_trylock(&rm), ==, 0);
    qemu_rec_mutex_unlock(&rm);
    qemu_rec_mutex_destroy(&rm);

    qemu_spin_init(&spin);
    g_assert_false(qemu_spin_locked(&spin));
    WITH_QEMU_LOCK_GUARD(&spin) {
        g_assert_true(qemu_spin_locked(&spin));
        g_assert_true(qemu_spin_trylock(&spin));   /* true: busy */
    }
    g_assert_false(qemu_spin_locked(&spin));
    g_assert_false(qemu_spin_trylock(&spin));      /* false: taken */
    qemu_spin_unlock(&spin);
    qemu_spin_destroy(&spin);
}

/* ------------------------------------------------------------------- errors */

static bool fails_with(Error **errp, int code)
{
    error_setg(errp, "failure %d", code);
    return false;
}

static void guarded_caller(Error **errp, bool *saw_error)
{
    ERRP_GUARD();
    fails_with(errp, 7);
    *saw_error = *errp != NULL;       /* deref is safe even for NULL errp */
    if (*errp) {
        error_prepend(errp, "in guarded_caller: ");
    }
}

static void test_error_api(void)
{
    Error *err = NULL, *local = NULL;
    bool saw = false;

    g_assert_false(fails_with(&err, 1));
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "failure 1");
    error_prepend(&err, "outer %s: ", "ctx");
    g_assert_cmpstr(error_get_pretty(err), ==, "outer ctx: failure 1");
    error_free(err);
    err = NULL;

    fails_with(NULL, 2);              /* ignored */

    errno = EBADF;
    error_setg_errno(&err, ENOENT, "open %s", "x");
    g_assert_cmpint(errno, ==, EBADF); /* preserved */
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "open x: No such file or directory");
    error_free_or_abort(&err);
    g_assert_null(err);

    /* error_propagate: the first error wins. */
    fails_with(&local, 3);
    error_propagate(&err, local);
    local = NULL;
    g_assert_cmpstr(error_get_pretty(err), ==, "failure 3");
    fails_with(&local, 4);
    error_propagate(&err, local);     /* dropped */
    local = NULL;
    g_assert_cmpstr(error_get_pretty(err), ==, "failure 3");
    error_propagate(&err, NULL);      /* nothing */
    fails_with(&local, 5);
    error_propagate(NULL, local);     /* freed */
    local = NULL;
    Error *copy = error_copy(err);
    g_assert_cmpstr(error_get_pretty(copy), ==, "failure 3");
    g_assert(error_get_class(copy) == ERROR_CLASS_GENERIC_ERROR);
    error_free(copy);
    error_free(err);
    err = NULL;

    fails_with(&local, 6);
    error_propagate_prepend(&err, local, "pp%d: ", 1);
    g_assert_cmpstr(error_get_pretty(err), ==, "pp1: failure 6");
    error_free(err);
    err = NULL;

    guarded_caller(NULL, &saw);
    g_assert_true(saw);
    guarded_caller(&err, &saw);
    g_assert_true(saw);
    g_assert_cmpstr(error_get_pretty(err), ==, "in guarded_caller: failure 7");
    error_free(err);
    err = NULL;

    error_setg_file_open(&err, EACCES, "/nope");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Could not open '/nope': Permission denied");
    error_free(err);
}

static void report_lines(void)
{
    error_init("/some/dir/myprog");
    error_report("hello %d", 42);
    warn_report("careful");
    info_report("fyi");
    for (int i = 0; i < 3; i++) {
        warn_report_once("only once %d", i);
        error_report_once("err once");
    }
    error_printf("raw%s", "\n");
}

static void test_error_report(void)
{
    if (g_test_subprocess()) {
        report_lines();
        Error *err = NULL;
        error_setg(&err, "broken");
        error_append_hint(&err, "try %s\n", "harder");
        error_report_err(err);
        err = NULL;
        error_setg(&err, "minor");
        warn_reportf_err(err, "pre: ");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("myprog: hello 42\n"
                              "myprog: warning: careful\n"
                              "myprog: info: fyi\n"
                              "myprog: warning: only once 0\n"
                              "myprog: err once\n"
                              "raw\n"
                              "myprog: broken\n"
                              "try harder\n"
                              "myprog: warning: pre: minor\n");
}

static void error_fatal_child(void)
{
    error_init("fatalprog");
    error_setg(&error_fatal, "cannot go on: %s", "reason");
    fprintf(stderr, "not reached\n");
}

static void error_abort_child(void)
{
    error_init("abortprog");
    error_setg(&error_abort, "assertion-like");
}

static void double_set_child(void)
{
    Error *err = NULL;

    error_setg(&err, "first");
    error_setg(&err, "second");
}

static void test_error_death(void)
{
    char *out;
    int status;

    status = run_child(error_fatal_child, &out);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 1);
    g_assert_cmpstr(out, ==, "fatalprog: cannot go on: reason\n");
    g_free(out);

    status = run_child(error_abort_child, &out);
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGABRT);
    g_assert_nonnull(strstr(out, "Unexpected error in error_abort_child() at "));
    g_assert_nonnull(strstr(out, "abortprog: assertion-like\n"));
    g_free(out);

    status = run_child(double_set_child, &out);
    g_assert_true(WIFSIGNALED(status));
    g_assert_cmpint(WTERMSIG(status), ==, SIGABRT);
    g_assert_nonnull(strstr(out, "already holds an error"));
    g_assert_nonnull(strstr(out, "first"));
    g_assert_nonnull(strstr(out, "second"));
    g_free(out);

    /* The same through GLib's trap, as the other C tests do. */
    if (g_test_subprocess()) {
        double_set_child();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*errp already holds an error*");
}

/* ---------------------------------------------------------------------- RCU */

typedef struct {
    QemuSemaphore entered;
    int reader_done;
} RcuReaderState;

static void *slow_reader(void *opaque)
{
    RcuReaderState *s = opaque;

    rcu_register_thread();
    rcu_read_lock();
    qemu_sem_post(&s->entered);
    g_usleep(200 * 1000);
    qatomic_set(&s->reader_done, 1);
    rcu_read_unlock();
    rcu_unregister_thread();
    return NULL;
}

typedef struct Foo {
    struct rcu_head rcu;
    int value;
} Foo;

static int freed_value;

static void foo_reclaim(Foo *foo)
{
    qatomic_set(&freed_value, foo->value);
    g_free(foo);
}

static Foo *global_foo;

static void test_rcu(void)
{
    RcuReaderState s = { .reader_done = 0 };
    QemuThread t;

    /* synchronize_rcu waits for a reader that was inside when it started. */
    qemu_sem_init(&s.entered, 0);
    qemu_thread_create(&t, "reader", slow_reader, &s, QEMU_THREAD_JOINABLE);
    qemu_sem_wait(&s.entered);
    gint64 start = g_get_monotonic_time();
    synchronize_rcu();
    g_assert_cmpint(qatomic_read(&s.reader_done), ==, 1);
    g_assert_cmpint(g_get_monotonic_time() - start, >=, 100 * 1000);
    qemu_thread_join(&t);
    qemu_sem_destroy(&s.entered);

    /* With no reader inside, it returns promptly. */
    synchronize_rcu();

    /* Guards, nesting. */
    g_assert_false(rcu_read_locked());
    WITH_RCU_READ_LOCK_GUARD() {
        g_assert_true(rcu_read_locked());
        RCU_READ_LOCK_GUARD();
        g_assert_true(rcu_read_locked());
    }
    g_assert_false(rcu_read_locked());
    {
        RCU_READ_LOCK_GUARD();
        g_assert_true(rcu_read_locked());
    }
    g_assert_false(rcu_read_locked());

    /* Publish, replace, reclaim with call_rcu. */
    Foo *a = g_new0(Foo, 1), *b = g_new0(Foo, 1);
    a->value = 1;
    b->value = 2;
    qatomic_rcu_set(&global_foo, a);
    WITH_RCU_READ_LOCK_GUARD() {
        g_assert_cmpint(qatomic_rcu_read(&global_foo)->value, ==, 1);
    }
    Foo *old = qatomic_xchg(&global_foo, b);
    call_rcu(old, foo_reclaim, rcu);
    drain_call_rcu();
    g_assert_cmpint(qatomic_read(&freed_value), ==, 1);
    g_free_rcu(qatomic_xchg(&global_foo, NULL), rcu);
    drain_call_rcu();
}

/* ------------------------------------------------------- AIO_WAIT_WHILE, BH */

static void set_flag_bh(void *opaque)
{
    qatomic_set((bool *)opaque, true);
}

static void *kick_later(void *opaque)
{
    g_usleep(50 * 1000);
    qatomic_set((bool *)opaque, true);
    aio_wait_kick();
    return NULL;
}

static void test_aio_wait_while(void)
{
    AioContext *main_ctx = qemu_get_aio_context();
    bool flag = false;
    QEMUBHFunc *f = set_flag_bh;

    g_assert_nonnull(main_ctx);
    g_assert_false(in_iothread());
    g_assert_false(AIO_WAIT_WHILE(main_ctx, false));

    aio_bh_schedule_oneshot(main_ctx, set_flag_bh, &flag);
    g_assert_true(AIO_WAIT_WHILE(NULL, !qatomic_read(&flag)));
    g_assert_true(flag);

    flag = false;
    QEMUBH *bh = aio_bh_new(main_ctx, f, &flag);
    qemu_bh_schedule(bh);
    g_assert_true(AIO_WAIT_WHILE_UNLOCKED(main_ctx, !qatomic_read(&flag)));
    qemu_bh_delete(bh);

    flag = false;
    bh = qemu_bh_new(set_flag_bh, &flag);
    qemu_bh_schedule(bh);
    g_assert_true(AIO_WAIT_WHILE(main_ctx, !qatomic_read(&flag)));
    qemu_bh_delete(bh);

    /* A condition changed by another thread, which kicks. */
    flag = false;
    QemuThread t;
    qemu_thread_create(&t, "kicker", kick_later, &flag, QEMU_THREAD_JOINABLE);
    g_assert_true(AIO_WAIT_WHILE(main_ctx, !qatomic_read(&flag)));
    qemu_thread_join(&t);
    g_assert_cmpuint(qatomic_read(&global_aio_wait.num_waiters), ==, 0);

    /* A private context polled by its (unbound) user thread. */
    AioContext *ctx = aio_context_new(&error_abort);
    flag = false;
    aio_bh_schedule_oneshot(ctx, set_flag_bh, &flag);
    while (!flag) {
        aio_poll(ctx, true);
    }
    aio_context_unref(ctx);
}

/* static: invisible to dladdr, so only the macro can have named it. */
static void compat_static_named_cb(void *opaque)
{
    (void)opaque;
}

static void test_bh_macro_naming(void)
{
    if (g_test_subprocess()) {
        AioContext *ctx = aio_context_new(&error_abort);
        QEMUBH *bh = aio_bh_new(ctx, compat_static_named_cb, NULL);
        qemu_bh_schedule(bh);
        aio_context_unref(ctx);       /* a scheduled BH: fatal, named */
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*compat_static_named_cb*");
}

/* ------------------------------------------------------------ sockets, misc */

static void test_sockets(void)
{
    int fds[2];
    Error *err = NULL;

    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_true(qemu_set_blocking(fds[0], false, &error_abort));
    g_assert_true(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    g_assert_true(qemu_set_blocking(fds[0], true, NULL));
    g_assert_false(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    qemu_socket_set_nonblock(fds[1]);
    g_assert_true(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
    qemu_socket_set_block(fds[1]);
    g_assert_false(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
    close(fds[0]);
    close(fds[1]);

    g_assert_false(qemu_set_blocking(fds[0], false, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "Bad file descriptor"));
    error_free(err);
}

static void test_timer_and_misc(void)
{
    int64_t a = get_clock(), b = get_clock();
    EventNotifier e;

    g_assert_cmpint(b, >=, a);
    g_assert_cmpint(get_clock_realtime(), >, 0);
    g_assert_cmpint(SCALE_MS, ==, 1000 * SCALE_US);
    g_assert_cmpint(NANOSECONDS_PER_SECOND, ==, 1000000000LL);
    g_assert_cmpint(event_notifier_init(&e, 1), ==, 0);
    g_assert_cmpint(event_notifier_test_and_clear(&e), ==, 1);
    event_notifier_cleanup(&e);

    unsigned futex_word = 1;
    qemu_futex_wake_all(&futex_word);  /* nobody waits: returns at once */
    qemu_futex_wake_single(&futex_word);
    qemu_futex_wait(&futex_word, 0);   /* value differs: returns at once */
    cpu_relax();

    /* Placeholders compile: coroutine and thread-pool types exist. */
    Coroutine *co = NULL;
    CoMutex *com = NULL;
    BlockAIOCB *acb = NULL;
    BlockCompletionFunc *cb = NULL;
    g_assert_null(co);
    g_assert_null(com);
    g_assert_null(acb);
    g_assert_null(cb);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);

    g_test_add_func("/compat/osdep", test_osdep);
    g_test_add_func("/compat/atomic", test_atomic);
    g_test_add_func("/compat/queue/qlist", test_qlist);
    g_test_add_func("/compat/queue/qslist", test_qslist);
    g_test_add_func("/compat/queue/qsimpleq", test_qsimpleq);
    g_test_add_func("/compat/queue/qtailq", test_qtailq);
    g_test_add_func("/compat/lockable", test_lockable);
    g_test_add_func("/compat/error/api", test_error_api);
    g_test_add_func("/compat/error/report", test_error_report);
    g_test_add_func("/compat/error/death", test_error_death);
    g_test_add_func("/compat/rcu", test_rcu);
    g_test_add_func("/compat/aio-wait-while", test_aio_wait_while);
    g_test_add_func("/compat/bh-macro-naming", test_bh_macro_naming);
    g_test_add_func("/compat/sockets", test_sockets);
    g_test_add_func("/compat/timer-misc", test_timer_and_misc);
    return g_test_run();
}
