/*
 * RCU (qemu/rcu.h, qemu/rcu_queue.h) on QEMU 10.2's protocol: the inline
 * read side of the compat header (what an object compiled against QEMU's
 * own headers does) against the library's synchronize_rcu/call_rcu.
 *
 *  - layout of struct rcu_reader_data and struct rcu_head (QEMU's);
 *  - rcu_gp_ctr starts at 1 and each grace period adds 2; rcu_gp_event is
 *    initialized before main;
 *  - a reader inside a section when synchronize_rcu starts blocks it until
 *    it unlocks (the writer is seen setting the reader's `waiting` flag and
 *    returns only after the unlock);
 *  - readers dereferencing a shared pointer while a writer replaces it and
 *    frees the old copy after synchronize_rcu or with call_rcu (the freed
 *    object is poisoned first; ASan catches a use-after-free);
 *  - call_rcu/drain_call_rcu run every callback;
 *  - a thread that never registers still protects its sections;
 *  - the Q*_RCU macros, single-threaded and with concurrent QLIST readers.
 *
 * The test's own flags between threads are acquire/release atomics, so the
 * program is TSan-clean (it runs under `make sanitize-tsan`).
 */
#include "qemu/osdep.h"
#include "qemu/rcu.h"
#include "qemu/rcu_queue.h"
#include "qemu/main-loop.h"
#include "qemu/thread.h"

#include "test-util.h"

#include <stdalign.h>

/* ------------------------------------------------------------------ layout */

_Static_assert(sizeof(struct rcu_reader_data) == 40, "rcu_reader_data size");
_Static_assert(alignof(struct rcu_reader_data) == 8, "rcu_reader_data align");
_Static_assert(offsetof(struct rcu_reader_data, ctr) == 0, "ctr");
_Static_assert(offsetof(struct rcu_reader_data, waiting) == 8, "waiting");
_Static_assert(offsetof(struct rcu_reader_data, depth) == 12, "depth");
_Static_assert(offsetof(struct rcu_reader_data, node) == 16, "node");
_Static_assert(offsetof(struct rcu_reader_data, force_rcu) == 32, "force_rcu");
_Static_assert(sizeof(((struct rcu_reader_data *)0)->force_rcu) == 8,
               "force_rcu is a NotifierList (8 bytes)");
_Static_assert(sizeof(((struct rcu_reader_data *)0)->ctr) == 8, "ctr type");
_Static_assert(sizeof(struct rcu_head) == 16, "rcu_head size");
_Static_assert(alignof(struct rcu_head) == 8, "rcu_head align");
_Static_assert(offsetof(struct rcu_head, next) == 0, "rcu_head next");
_Static_assert(offsetof(struct rcu_head, func) == 8, "rcu_head func");
_Static_assert(sizeof(rcu_gp_ctr) == 8, "rcu_gp_ctr is unsigned long");
_Static_assert(sizeof(QemuEvent) == 8, "QemuEvent size");

static void test_layout(void)
{
    struct rcu_reader_data *me = get_ptr_rcu_reader();

    /* The same record every time; the inline lock/unlock use it. */
    g_assert_true(me == get_ptr_rcu_reader());
    g_assert_cmpuint(me->depth, ==, 0);
    g_assert_cmpuint(me->ctr, ==, 0);
    rcu_read_lock();
    g_assert_cmpuint(me->depth, ==, 1);
    g_assert_cmpuint(me->ctr, ==, qatomic_read(&rcu_gp_ctr));
    rcu_read_lock();
    g_assert_cmpuint(me->depth, ==, 2);
    g_assert_true(rcu_read_locked());
    rcu_read_unlock();
    g_assert_cmpuint(me->ctr, !=, 0);
    rcu_read_unlock();
    g_assert_cmpuint(me->depth, ==, 0);
    g_assert_cmpuint(me->ctr, ==, 0);
    g_assert_false(rcu_read_locked());
}

/* ----------------------------------------------------------------- counter */

/* Runs first (before any call_rcu thread exists): exact values. */
static void test_gp_ctr(void)
{
    g_assert_true(rcu_gp_event.initialized);
    g_assert_cmpuint(qatomic_read(&rcu_gp_ctr), ==, 1);
    synchronize_rcu();
    g_assert_cmpuint(qatomic_read(&rcu_gp_ctr), ==, 3);
    synchronize_rcu();
    g_assert_cmpuint(qatomic_read(&rcu_gp_ctr), ==, 5);
    /* A section entered now holds the new (odd) value. */
    rcu_read_lock();
    g_assert_cmpuint(get_ptr_rcu_reader()->ctr, ==, 5);
    rcu_read_unlock();
}

/* ------------------------------------------------------ reader blocks writer */

typedef struct {
    struct rcu_reader_data *reader;   /* the reader's record, published */
    int entered;
    int release;
    int released;                     /* set just before rcu_read_unlock */
    int writer_started;
    int writer_done;
    int released_seen_by_writer;
} BlockState;

static void *blocking_reader(void *opaque)
{
    BlockState *s = opaque;

    rcu_register_thread();
    rcu_read_lock();
    qatomic_store_release(&s->reader, get_ptr_rcu_reader());
    qatomic_store_release(&s->entered, 1);
    while (!qatomic_load_acquire(&s->release)) {
        g_usleep(1000);
    }
    qatomic_store_release(&s->released, 1);
    rcu_read_unlock();
    rcu_unregister_thread();
    return NULL;
}

static void *blocked_writer(void *opaque)
{
    BlockState *s = opaque;

    qatomic_store_release(&s->writer_started, 1);
    synchronize_rcu();
    qatomic_store_release(&s->released_seen_by_writer,
                          qatomic_load_acquire(&s->released));
    qatomic_store_release(&s->writer_done, 1);
    return NULL;
}

static bool wait_flag(int *flag, int seconds)
{
    for (int i = 0; i < seconds * 1000; i++) {
        if (qatomic_load_acquire(flag)) {
            return true;
        }
        g_usleep(1000);
    }
    return false;
}

static void test_reader_blocks_writer(void)
{
    BlockState s = { 0 };
    QemuThread r, w;
    Watchdog wd;

    watchdog_start(&wd, "reader blocks writer", 30);
    qemu_thread_create(&r, "reader", blocking_reader, &s, QEMU_THREAD_JOINABLE);
    g_assert_true(wait_flag(&s.entered, 10));
    struct rcu_reader_data *rd = qatomic_load_acquire(&s.reader);
    unsigned long reader_ctr = qatomic_read(&rd->ctr);
    g_assert_cmpuint(reader_ctr, ==, qatomic_read(&rcu_gp_ctr));

    qemu_thread_create(&w, "writer", blocked_writer, &s, QEMU_THREAD_JOINABLE);
    g_assert_true(wait_flag(&s.writer_started, 10));
    /*
     * The writer flips the counter, finds the reader old and sets its
     * `waiting` flag before sleeping on rcu_gp_event: wait for that flag.
     */
    bool waiting = false;
    for (int i = 0; i < 10000 && !waiting; i++) {
        waiting = qatomic_read(&rd->waiting);
        if (!waiting) {
            g_usleep(1000);
        }
    }
    g_assert_true(waiting);
    g_assert_cmpuint(qatomic_read(&rcu_gp_ctr), ==, reader_ctr + 2);
    g_usleep(20 * 1000);
    g_assert_cmpint(qatomic_load_acquire(&s.writer_done), ==, 0);

    qatomic_store_release(&s.release, 1);
    qemu_thread_join(&w);
    g_assert_cmpint(qatomic_load_acquire(&s.writer_done), ==, 1);
    /* The writer returned only after the reader's unlock. */
    g_assert_cmpint(qatomic_load_acquire(&s.released_seen_by_writer), ==, 1);
    qemu_thread_join(&r);
    watchdog_stop(&wd);
}

/* A reader that enters after the grace period began does not block it. */
static void test_new_reader_does_not_block(void)
{
    rcu_read_lock();
    g_assert_cmpuint(get_ptr_rcu_reader()->ctr, ==, qatomic_read(&rcu_gp_ctr));
    rcu_read_unlock();
    synchronize_rcu();
}

/* --------------------------------------------------- readers and a writer */

#define MAGIC 0x5a5a1234u
#define N_READERS 4

typedef struct Obj {
    struct rcu_head rcu;
    unsigned magic;
    unsigned gen;
} Obj;

static Obj *shared_obj;
static int stress_stop;
static int freed_by_cb;

static void obj_free_cb(Obj *o)
{
    g_assert_cmpuint(o->magic, ==, MAGIC);
    o->magic = 0;
    qatomic_inc(&freed_by_cb);
    g_free(o);
}

typedef struct {
    bool registered;
    unsigned long reads;
} ReaderArg;

static void *stress_reader(void *opaque)
{
    ReaderArg *a = opaque;
    unsigned last_gen = 0;

    if (a->registered) {
        rcu_register_thread();
    }
    while (!qatomic_load_acquire(&stress_stop)) {
        rcu_read_lock();
        Obj *o = qatomic_rcu_read(&shared_obj);
        g_assert_cmpuint(o->magic, ==, MAGIC);
        rcu_read_lock();           /* nested */
        g_assert_cmpuint(qatomic_rcu_read(&shared_obj)->magic, ==, MAGIC);
        rcu_read_unlock();
        unsigned gen = o->gen;
        g_assert_cmpuint(gen, >=, last_gen);
        last_gen = gen;
        /* Still valid after a pause inside the section. */
        sched_yield();
        g_assert_cmpuint(o->magic, ==, MAGIC);
        rcu_read_unlock();
        qatomic_store_release(&a->reads, qatomic_read(&a->reads) + 1);
    }
    if (a->registered) {
        rcu_unregister_thread();
    }
    return NULL;
}

static void test_readers_and_writer(void)
{
    QemuThread t[N_READERS];
    ReaderArg args[N_READERS];
    Watchdog wd;
    int iters = 400, by_cb = 0;

    watchdog_start(&wd, "readers and writer", 120);
    Obj *first = g_new0(Obj, 1);
    first->magic = MAGIC;
    qatomic_rcu_set(&shared_obj, first);
    qatomic_store_release(&stress_stop, 0);
    for (int i = 0; i < N_READERS; i++) {
        /* One reader never registers: auto-registration protects it. */
        args[i] = (ReaderArg){ .registered = i != 0 };
        qemu_thread_create(&t[i], "reader", stress_reader, &args[i],
                           QEMU_THREAD_JOINABLE);
    }
    for (int i = 1; i <= iters; i++) {
        Obj *n = g_new0(Obj, 1);
        n->magic = MAGIC;
        n->gen = i;
        Obj *old = qatomic_xchg(&shared_obj, n);
        if (i % 2) {
            synchronize_rcu();
            old->magic = 0;    /* poison: a reader still on it would see it */
            g_free(old);
        } else {
            call_rcu(old, obj_free_cb, rcu);
            by_cb++;
        }
    }
    for (int i = 0; i < N_READERS; i++) {
        while (!qatomic_load_acquire(&args[i].reads)) {
            g_usleep(1000);        /* every reader reads at least once */
        }
    }
    qatomic_store_release(&stress_stop, 1);
    for (int i = 0; i < N_READERS; i++) {
        qemu_thread_join(&t[i]);
        g_assert_cmpuint(args[i].reads, >, 0);
    }
    drain_call_rcu();
    g_assert_cmpint(qatomic_read(&freed_by_cb), ==, by_cb);
    Obj *last = qatomic_xchg(&shared_obj, NULL);
    synchronize_rcu();
    g_free(last);
    watchdog_stop(&wd);
}

/* ----------------------------------------------------------------- call_rcu */

typedef struct CbObj {
    struct rcu_head rcu;
    int *counter;
} CbObj;

static void cb_obj_free(CbObj *o)
{
    g_assert_true(bql_locked());
    qatomic_inc(o->counter);
    g_free(o);
}

static void test_call_rcu(void)
{
    int counter = 0;

    for (int i = 0; i < 100; i++) {
        CbObj *o = g_new0(CbObj, 1);
        o->counter = &counter;
        call_rcu(o, cb_obj_free, rcu);
    }
    drain_call_rcu();
    g_assert_cmpint(qatomic_read(&counter), ==, 100);

    /* g_free_rcu */
    CbObj *o = g_new0(CbObj, 1);
    g_free_rcu(o, rcu);
    drain_call_rcu();
}

/* ---------------------------------------------------------------- rcu_queue */

typedef struct Elem {
    int v;
    unsigned magic;
    QLIST_ENTRY(Elem) le;
    QSIMPLEQ_ENTRY(Elem) sqe;
    QTAILQ_ENTRY(Elem) tqe;
    QSLIST_ENTRY(Elem) sle;
} Elem;

static Elem *elem_new(int v)
{
    Elem *e = g_new0(Elem, 1);
    e->v = v;
    e->magic = MAGIC;
    return e;
}

#define COLLECT(FOREACH, head, field, out, n) do {   \
        Elem *e_;                                    \
        (n) = 0;                                     \
        RCU_READ_LOCK_GUARD();                       \
        FOREACH(e_, head, field) {                   \
            (out)[(n)++] = e_->v;                    \
        }                                            \
    } while (0)

static void assert_seq(const int *got, int n, const int *want, int wn)
{
    g_assert_cmpint(n, ==, wn);
    for (int i = 0; i < n; i++) {
        g_assert_cmpint(got[i], ==, want[i]);
    }
}

static void test_queue_macros(void)
{
    Elem *e[5];
    int got[8], n;

    for (int i = 0; i < 5; i++) {
        e[i] = elem_new(i);
    }

    /* QLIST */
    QLIST_HEAD(, Elem) l = QLIST_HEAD_INITIALIZER(l);
    g_assert_true(QLIST_EMPTY_RCU(&l));
    QLIST_INSERT_HEAD_RCU(&l, e[2], le);
    QLIST_INSERT_HEAD_RCU(&l, e[0], le);
    QLIST_INSERT_AFTER_RCU(e[0], e[1], le);
    QLIST_INSERT_BEFORE_RCU(e[0], e[4], le);
    COLLECT(QLIST_FOREACH_RCU, &l, le, got, n);
    assert_seq(got, n, (int[]){ 4, 0, 1, 2 }, 4);
    QLIST_REMOVE_RCU(e[1], le);
    QLIST_REMOVE_RCU(e[4], le);
    COLLECT(QLIST_FOREACH_RCU, &l, le, got, n);
    assert_seq(got, n, (int[]){ 0, 2 }, 2);
    g_assert_true(QLIST_FIRST_RCU(&l) == e[0]);
    g_assert_true(QLIST_NEXT_RCU(e[0], le) == e[2]);

    /* QSIMPLEQ */
    QSIMPLEQ_HEAD(, Elem) sq = QSIMPLEQ_HEAD_INITIALIZER(sq);
    g_assert_true(QSIMPLEQ_EMPTY_RCU(&sq));
    QSIMPLEQ_INSERT_TAIL_RCU(&sq, e[1], sqe);
    QSIMPLEQ_INSERT_TAIL_RCU(&sq, e[3], sqe);
    QSIMPLEQ_INSERT_HEAD_RCU(&sq, e[0], sqe);
    QSIMPLEQ_INSERT_AFTER_RCU(&sq, e[1], e[2], sqe);
    COLLECT(QSIMPLEQ_FOREACH_RCU, &sq, sqe, got, n);
    assert_seq(got, n, (int[]){ 0, 1, 2, 3 }, 4);
    QSIMPLEQ_REMOVE_RCU(&sq, e[3], Elem, sqe);
    QSIMPLEQ_INSERT_TAIL_RCU(&sq, e[4], sqe);   /* tail fixed by remove */
    QSIMPLEQ_REMOVE_HEAD_RCU(&sq, sqe);
    QSIMPLEQ_REMOVE_RCU(&sq, e[2], Elem, sqe);
    COLLECT(QSIMPLEQ_FOREACH_RCU, &sq, sqe, got, n);
    assert_seq(got, n, (int[]){ 1, 4 }, 2);
    g_assert_true(QSIMPLEQ_FIRST_RCU(&sq) == e[1]);
    g_assert_true(QSIMPLEQ_NEXT_RCU(e[1], sqe) == e[4]);

    /* QTAILQ */
    QTAILQ_HEAD(, Elem) tq = QTAILQ_HEAD_INITIALIZER(tq);
    g_assert_true(QTAILQ_EMPTY_RCU(&tq));
    QTAILQ_INSERT_TAIL_RCU(&tq, e[2], tqe);
    QTAILQ_INSERT_HEAD_RCU(&tq, e[0], tqe);
    QTAILQ_INSERT_AFTER_RCU(&tq, e[2], e[4], tqe);
    QTAILQ_INSERT_BEFORE_RCU(e[2], e[1], tqe);
    QTAILQ_INSERT_AFTER_RCU(&tq, e[2], e[3], tqe);
    COLLECT(QTAILQ_FOREACH_RCU, &tq, tqe, got, n);
    assert_seq(got, n, (int[]){ 0, 1, 2, 3, 4 }, 5);
    g_assert_true(QTAILQ_LAST(&tq) == e[4]);    /* writer-side links intact */
    QTAILQ_REMOVE_RCU(&tq, e[4], tqe);
    QTAILQ_REMOVE_RCU(&tq, e[0], tqe);
    QTAILQ_REMOVE_RCU(&tq, e[2], tqe);
    COLLECT(QTAILQ_FOREACH_RCU, &tq, tqe, got, n);
    assert_seq(got, n, (int[]){ 1, 3 }, 2);
    g_assert_true(QTAILQ_LAST(&tq) == e[3]);
    g_assert_true(QTAILQ_PREV(e[3], tqe) == e[1]);
    g_assert_true(QTAILQ_FIRST_RCU(&tq) == e[1]);
    g_assert_true(QTAILQ_NEXT_RCU(e[1], tqe) == e[3]);

    /* QSLIST */
    QSLIST_HEAD(, Elem) sl = QSLIST_HEAD_INITIALIZER(sl);
    g_assert_true(QSLIST_EMPTY_RCU(&sl));
    QSLIST_INSERT_HEAD_RCU(&sl, e[3], sle);
    QSLIST_INSERT_HEAD_RCU(&sl, e[0], sle);
    QSLIST_INSERT_AFTER_RCU(&sl, e[0], e[1], sle);
    QSLIST_INSERT_AFTER_RCU(&sl, e[1], e[2], sle);
    COLLECT(QSLIST_FOREACH_RCU, &sl, sle, got, n);
    assert_seq(got, n, (int[]){ 0, 1, 2, 3 }, 4);
    QSLIST_REMOVE_RCU(&sl, e[2], Elem, sle);
    QSLIST_REMOVE_HEAD_RCU(&sl, sle);
    COLLECT(QSLIST_FOREACH_RCU, &sl, sle, got, n);
    assert_seq(got, n, (int[]){ 1, 3 }, 2);
    g_assert_true(QSLIST_FIRST_RCU(&sl) == e[1]);
    g_assert_true(QSLIST_NEXT_RCU(e[1], sle) == e[3]);

    /* FOREACH_SAFE: remove while walking (writer side). */
    Elem *it, *next;
    QLIST_FOREACH_SAFE_RCU(it, &l, le, next) {
        QLIST_REMOVE_RCU(it, le);
    }
    g_assert_true(QLIST_EMPTY_RCU(&l));

    synchronize_rcu();
    for (int i = 0; i < 5; i++) {
        g_free(e[i]);
    }
}

/* Readers walk a QLIST while a writer inserts and removes (freeing after a
 * grace period). */
static QLIST_HEAD(, Elem) live_list = QLIST_HEAD_INITIALIZER(live_list);
static int list_stop;

static void *list_reader(void *opaque)
{
    unsigned long *walks = opaque;

    rcu_register_thread();
    while (!qatomic_load_acquire(&list_stop)) {
        Elem *e;
        WITH_RCU_READ_LOCK_GUARD() {
            QLIST_FOREACH_RCU(e, &live_list, le) {
                g_assert_cmpuint(e->magic, ==, MAGIC);
            }
        }
        qatomic_store_release(walks, qatomic_read(walks) + 1);
    }
    rcu_unregister_thread();
    return NULL;
}

static void test_queue_concurrent(void)
{
    QemuThread t[N_READERS];
    unsigned long walks[N_READERS] = { 0 };
    Elem *mine[8] = { 0 };
    Watchdog wd;

    watchdog_start(&wd, "rcu_queue concurrent", 120);
    qatomic_store_release(&list_stop, 0);
    for (int i = 0; i < N_READERS; i++) {
        qemu_thread_create(&t[i], "list-reader", list_reader, &walks[i],
                           QEMU_THREAD_JOINABLE);
    }
    for (int i = 0; i < 400; i++) {
        int slot = i % 8;
        if (mine[slot]) {
            QLIST_REMOVE_RCU(mine[slot], le);
            synchronize_rcu();
            mine[slot]->magic = 0;
            g_free(mine[slot]);
        }
        mine[slot] = elem_new(i);
        if (i % 3 == 0 || QLIST_EMPTY(&live_list)) {
            QLIST_INSERT_HEAD_RCU(&live_list, mine[slot], le);
        } else {
            QLIST_INSERT_AFTER_RCU(QLIST_FIRST(&live_list), mine[slot], le);
        }
    }
    for (int i = 0; i < N_READERS; i++) {
        while (!qatomic_load_acquire(&walks[i])) {
            g_usleep(1000);        /* every reader walks at least once */
        }
    }
    qatomic_store_release(&list_stop, 1);
    for (int i = 0; i < N_READERS; i++) {
        qemu_thread_join(&t[i]);
        g_assert_cmpuint(walks[i], >, 0);
    }
    for (int i = 0; i < 8; i++) {
        QLIST_REMOVE_RCU(mine[i], le);
    }
    g_assert_true(QLIST_EMPTY(&live_list));
    synchronize_rcu();
    for (int i = 0; i < 8; i++) {
        g_free(mine[i]);
    }
    watchdog_stop(&wd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qemu_init_main_loop(&error_abort);
    rcu_register_thread();

    /* First: exact counter values need no call_rcu thread running. */
    g_test_add_func("/rcu/gp-ctr", test_gp_ctr);
    g_test_add_func("/rcu/layout", test_layout);
    g_test_add_func("/rcu/reader-blocks-writer", test_reader_blocks_writer);
    g_test_add_func("/rcu/new-reader-does-not-block",
                    test_new_reader_does_not_block);
    g_test_add_func("/rcu/readers-and-writer", test_readers_and_writer);
    g_test_add_func("/rcu/call-rcu", test_call_rcu);
    g_test_add_func("/rcu/queue/macros", test_queue_macros);
    g_test_add_func("/rcu/queue/concurrent", test_queue_concurrent);
    int ret = g_test_run();
    rcu_unregister_thread();
    return ret;
}
