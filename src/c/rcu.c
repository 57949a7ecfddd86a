/*
 * A small, correct RCU for QEMU-style callers (include/compat/qemu/rcu.h).
 *
 * The algorithm is QEMU's (and liburcu's "memory barrier" flavour):
 *
 *  - A global grace-period counter `rcu_gp_ctr`, always odd, advanced by 2
 *    at each synchronize_rcu().
 *  - Each registered reader thread has `ctr`: 0 outside a critical
 *    section, else the value of rcu_gp_ctr when its outermost
 *    rcu_read_lock() ran; and a nesting depth (thread-private).
 *  - rcu_read_lock(): on the outermost call, store ctr = rcu_gp_ctr, then a
 *    full fence, so the protected loads come after the store.
 *    rcu_read_unlock(): store-release ctr = 0, full fence; if a writer
 *    waits for this reader, wake it.
 *  - synchronize_rcu(): advance rcu_gp_ctr (full fences around), then wait
 *    until no registered reader has ctr != 0 && ctr != rcu_gp_ctr: those are
 *    exactly the readers that entered before the grace period began and are
 *    still inside. A reader that enters afterwards stores the new counter
 *    (or, if it read the old one, is ordered after the writer's fence and
 *    so sees the writer's earlier updates) and does not hold us up.
 *
 *  Waking (QEMU's protocol, so that QEMU's inline read side, compiled into
 *  callers, interoperates): the writer resets rcu_gp_event, sets
 *  reader->waiting, full barrier, re-reads ctr and sleeps on rcu_gp_event;
 *  the reader stores ctr = 0, full barrier, reads waiting and, if set,
 *  clears it and sets rcu_gp_event. One of the two always sees the other's
 *  store, so no wakeup is lost.
 *
 *  The read side itself is inline in qemu/rcu.h; this file exports what it
 *  uses: rcu_gp_ctr, rcu_gp_event and get_ptr_rcu_reader().
 *
 * call_rcu1() queues callbacks for a helper thread (started on first use)
 * that waits one grace period per batch and runs the batch with the BQL
 * held, as QEMU does. drain_call_rcu() queues a marker and waits for it.
 *
 * Threads: rcu_register_thread()/rcu_unregister_thread() as QEMU; a thread
 * that reads without registering is registered automatically and
 * unregistered by a pthread key destructor when it exits.
 */
#include "qemu/osdep.h"
#include "qemu/rcu.h"
#include "qemu/main-loop.h"

typedef struct RcuReader {
    struct rcu_reader_data d;   /* QEMU's layout; what inline code sees */
    bool explicit_reg;          /* registered by rcu_register_thread() */
    struct RcuReader *next;     /* registry, under rcu_lock */
} RcuReader;

#define RCU_GP_LOCKED 1UL
#define RCU_GP_CTR    2UL

/* Exported: QEMU's inline rcu_read_lock() reads it. */
unsigned long rcu_gp_ctr = RCU_GP_LOCKED;
/* Exported: QEMU's inline rcu_read_unlock() sets it. */
QemuEvent rcu_gp_event;

/* rcu_lock guards the registry. */
static pthread_mutex_t rcu_lock = PTHREAD_MUTEX_INITIALIZER;
static RcuReader *rcu_registry;
/* Serializes writers (one grace period at a time). */
static pthread_mutex_t rcu_sync_lock = PTHREAD_MUTEX_INITIALIZER;

static __thread RcuReader *rcu_reader;
static pthread_key_t rcu_reader_key;
static pthread_once_t rcu_key_once = PTHREAD_ONCE_INIT;

static void rcu_die(const char *func, const char *problem)
{
    fprintf(stderr, "aioctx: %s: %s\n", func, problem);
    abort();
}

/*
 * rcu_gp_event must be initialized before a reader can set it, i.e. before
 * the first writer sets a reader's `waiting`. A constructor does it before
 * main; gp_event_init_once() covers a writer running in an earlier
 * constructor. QEMU initializes it set.
 */
static pthread_once_t rcu_event_once = PTHREAD_ONCE_INIT;

static void gp_event_init(void)
{
    qemu_event_init(&rcu_gp_event, true);
}

static void gp_event_init_once(void)
{
    pthread_once(&rcu_event_once, gp_event_init);
}

static void __attribute__((constructor)) rcu_init(void)
{
    gp_event_init_once();
}

static void registry_remove_locked(RcuReader *r)
{
    for (RcuReader **p = &rcu_registry; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            return;
        }
    }
}

/* Thread exit of an auto-registered (or never unregistered) reader. */
static void rcu_reader_destructor(void *opaque)
{
    RcuReader *r = opaque;

    pthread_mutex_lock(&rcu_lock);
    registry_remove_locked(r);
    pthread_mutex_unlock(&rcu_lock);
    /*
     * A writer may be waiting for a reader that exited inside a section.
     * (Only then: at thread exit the library's own thread-locals may be
     * gone already.)
     */
    if (__atomic_load_n(&r->d.ctr, __ATOMIC_SEQ_CST) != 0 ||
        __atomic_load_n(&r->d.waiting, __ATOMIC_SEQ_CST)) {
        gp_event_init_once();
        qemu_event_set(&rcu_gp_event);
    }
    free(r);
}

static void rcu_key_init(void)
{
    if (pthread_key_create(&rcu_reader_key, rcu_reader_destructor) != 0) {
        rcu_die("rcu_register_thread", "pthread_key_create failed");
    }
}

static RcuReader *rcu_reader_register(void)
{
    RcuReader *r = calloc(1, sizeof(*r));

    if (!r) {
        rcu_die("rcu_register_thread", "out of memory");
    }
    pthread_once(&rcu_key_once, rcu_key_init);
    pthread_setspecific(rcu_reader_key, r);
    pthread_mutex_lock(&rcu_lock);
    r->next = rcu_registry;
    rcu_registry = r;
    pthread_mutex_unlock(&rcu_lock);
    rcu_reader = r;
    return r;
}

struct rcu_reader_data *get_ptr_rcu_reader(void)
{
    RcuReader *r = rcu_reader;

    if (__builtin_expect(!r, 0)) {
        r = rcu_reader_register();
    }
    return &r->d;
}

void rcu_register_thread(void)
{
    RcuReader *r = rcu_reader;

    if (r && r->explicit_reg) {
        rcu_die("rcu_register_thread", "thread is already registered");
    }
    if (!r) {
        r = rcu_reader_register();
    }
    r->explicit_reg = true;
}

void rcu_unregister_thread(void)
{
    RcuReader *r = rcu_reader;

    if (!r) {
        rcu_die("rcu_unregister_thread", "thread is not registered");
    }
    if (r->d.depth) {
        rcu_die("rcu_unregister_thread", "inside an RCU read-side section");
    }
    pthread_setspecific(rcu_reader_key, NULL);
    rcu_reader = NULL;
    rcu_reader_destructor(r);
}

bool rcu_read_locked(void)
{
    return rcu_reader && rcu_reader->d.depth > 0;
}

/* Is r inside a critical section that began before the current period? */
static bool reader_is_old(RcuReader *r, unsigned long gp)
{
    unsigned long v = __atomic_load_n(&r->d.ctr, __ATOMIC_SEQ_CST);

    return v != 0 && v != gp;
}

/*
 * Wait until no registered reader is in the old period (QEMU's
 * wait_for_readers). Called with rcu_lock held; drops it while sleeping.
 *
 * Each pass: reset rcu_gp_event, set `waiting` on every reader, full
 * barrier, then read every reader's ctr. A reader that leaves stores
 * ctr = 0, full barrier, reads `waiting`: either we see its 0, or it sees
 * our `waiting` (set after the reset) and sets the event, so the wait
 * below cannot miss it. Sleeping releases rcu_lock (threads may
 * (un)register meanwhile), so every pass rescans the whole registry; a
 * reader, once not old, stays so in this period.
 */
static void wait_for_readers_locked(unsigned long gp)
{
    for (;;) {
        bool busy = false;

        qemu_event_reset(&rcu_gp_event);
        for (RcuReader *r = rcu_registry; r; r = r->next) {
            __atomic_store_n(&r->d.waiting, true, __ATOMIC_SEQ_CST);
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        for (RcuReader *r = rcu_registry; r; r = r->next) {
            if (reader_is_old(r, gp)) {
                busy = true;
            } else {
                /* At worst a reader sees it late: an extra event_set. */
                __atomic_store_n(&r->d.waiting, false, __ATOMIC_RELAXED);
            }
        }
        if (!busy) {
            return;
        }
        pthread_mutex_unlock(&rcu_lock);
        qemu_event_wait(&rcu_gp_event);
        pthread_mutex_lock(&rcu_lock);
    }
}

void synchronize_rcu(void)
{
    if (rcu_read_locked()) {
        rcu_die("synchronize_rcu", "called inside an RCU read-side section "
                "(would deadlock)");
    }
    gp_event_init_once();
    pthread_mutex_lock(&rcu_sync_lock);
    pthread_mutex_lock(&rcu_lock);
    if (rcu_registry) {
        /* Updates made before this call precede the counter change. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* Single-phase: one flip of +2 (only writers, serialized, write). */
        unsigned long gp = __atomic_load_n(&rcu_gp_ctr, __ATOMIC_RELAXED)
                           + RCU_GP_CTR;
        __atomic_store_n(&rcu_gp_ctr, gp, __ATOMIC_SEQ_CST);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        wait_for_readers_locked(gp);
        /* Reclamation after this call happens after the readers left. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&rcu_lock);
    pthread_mutex_unlock(&rcu_sync_lock);
}

void rcu_enable_atfork(void)
{
}

void rcu_disable_atfork(void)
{
}

/* ---------------------------------------------------------------- call_rcu */

static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cb_cond = PTHREAD_COND_INITIALIZER;
static struct rcu_head *cb_head;        /* FIFO of pending callbacks */
static struct rcu_head **cb_tail = &cb_head;
static bool cb_thread_started;

static void *call_rcu_thread(void *opaque)
{
    (void)opaque;
    rcu_register_thread();
    for (;;) {
        pthread_mutex_lock(&cb_lock);
        while (!cb_head) {
            pthread_cond_wait(&cb_cond, &cb_lock);
        }
        struct rcu_head *batch = cb_head;
        cb_head = NULL;
        cb_tail = &cb_head;
        pthread_mutex_unlock(&cb_lock);

        synchronize_rcu();

        bql_lock();
        while (batch) {
            struct rcu_head *node = batch;
            batch = node->next;
            node->func(node);
        }
        bql_unlock();
    }
    return NULL;
}

void call_rcu1(struct rcu_head *node, RCUCBFunc *func)
{
    if (!node || !func) {
        rcu_die("call_rcu1", node ? "callback is NULL" : "rcu_head is NULL");
    }
    node->func = func;
    node->next = NULL;
    pthread_mutex_lock(&cb_lock);
    if (!cb_thread_started) {
        pthread_t thread;
        pthread_attr_t attr;
        sigset_t all, old;

        /* The helper thread must not take the program's signals. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&thread, &attr, call_rcu_thread, NULL);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err) {
            rcu_die("call_rcu1", "cannot start the RCU thread");
        }
        pthread_setname_np(thread, "call_rcu");
        cb_thread_started = true;
    }
    *cb_tail = node;
    cb_tail = &node->next;
    pthread_cond_signal(&cb_cond);
    pthread_mutex_unlock(&cb_lock);
}

typedef struct DrainMarker {
    struct rcu_head rcu;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} DrainMarker;

static void drain_marker_cb(struct rcu_head *head)
{
    DrainMarker *m = container_of(head, DrainMarker, rcu);

    pthread_mutex_lock(&m->lock);
    m->done = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

void drain_call_rcu(void)
{
    DrainMarker m = { .done = false };
    bool had_bql = bql_locked();

    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.cond, NULL);
    /* Callbacks run with the BQL held: let them run. */
    if (had_bql) {
        bql_unlock();
    }
    call_rcu1(&m.rcu, drain_marker_cb);
    pthread_mutex_lock(&m.lock);
    while (!m.done) {
        pthread_cond_wait(&m.cond, &m.lock);
    }
    pthread_mutex_unlock(&m.lock);
    if (had_bql) {
        bql_lock();
    }
    pthread_cond_destroy(&m.cond);
    pthread_mutex_destroy(&m.lock);
}
