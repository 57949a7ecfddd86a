/*
 * aioctx compat: QEMU's qemu/atomic.h — the qatomic_* family and memory
 * barriers, on GCC's __atomic builtins exactly as QEMU builds them.
 *
 * Conventions (as QEMU): qatomic_read/set are relaxed; the read-modify-write
 * operations (inc, dec, add, fetch_*, xchg, cmpxchg, ...) are sequentially
 * consistent; qatomic_load_acquire/store_release and qatomic_rcu_read/set
 * are the acquire/release pairs. Accesses are limited to the host word size
 * (checked at build time).
 */
#ifndef AIOCTX_COMPAT_QEMU_ATOMIC_H
#define AIOCTX_COMPAT_QEMU_ATOMIC_H

#include "qemu/compiler.h"

/* Compiler barrier. */
#define barrier()   ({ asm volatile("" ::: "memory"); (void)0; })

/* A barrier against a signal handler running in this thread. */
#define signal_barrier()    __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* Full, release and acquire memory barriers. */
#define smp_mb()            ({ barrier(); __atomic_thread_fence(__ATOMIC_SEQ_CST); })
#define smp_mb_release()    ({ barrier(); __atomic_thread_fence(__ATOMIC_RELEASE); })
#define smp_mb_acquire()    ({ barrier(); __atomic_thread_fence(__ATOMIC_ACQUIRE); })

/*
 * Around a sequentially consistent read-modify-write, a full barrier is
 * implied on x86 and s390x (locked instructions) but not elsewhere.
 */
#if defined(__i386__) || defined(__x86_64__) || defined(__s390x__)
# define smp_mb__before_rmw() signal_barrier()
# define smp_mb__after_rmw() signal_barrier()
#else
# define smp_mb__before_rmw() smp_mb()
# define smp_mb__after_rmw() smp_mb()
#endif

#define smp_wmb()   smp_mb_release()
#define smp_rmb()   smp_mb_acquire()

/* Only Alpha needs a barrier between dependent loads. */
#if defined(__alpha__)
#define smp_read_barrier_depends()   asm volatile("mb":::"memory")
#else
#define smp_read_barrier_depends()   barrier()
#endif

/* The largest access size that is atomic on the host. */
#define ATOMIC_REG_SIZE  sizeof(void *)

#define qatomic_read__nocheck(ptr) \
    __atomic_load_n(ptr, __ATOMIC_RELAXED)

#define qatomic_read(ptr)                              \
    ({                                                 \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    qatomic_read__nocheck(ptr);                        \
    })

#define qatomic_set__nocheck(ptr, i) \
    __atomic_store_n(ptr, i, __ATOMIC_RELAXED)

#define qatomic_set(ptr, i)  do {                      \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    qatomic_set__nocheck(ptr, i);                      \
} while (0)

/*
 * qatomic_rcu_read: read an RCU-protected pointer (or value) so that
 * dependent loads see what the writer published with qatomic_rcu_set.
 */
#ifdef __SANITIZE_THREAD__
#define qatomic_rcu_read__nocheck(ptr, valptr)         \
    __atomic_load(ptr, valptr, __ATOMIC_CONSUME);
#else
#define qatomic_rcu_read__nocheck(ptr, valptr)         \
    __atomic_load(ptr, valptr, __ATOMIC_RELAXED);      \
    smp_read_barrier_depends();
#endif

#define qatomic_rcu_read(ptr)                          \
    ({                                                 \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    typeof_strip_qual(*ptr) _val;                      \
    qatomic_rcu_read__nocheck(ptr, &_val);             \
    _val;                                              \
    })

#define qatomic_rcu_set(ptr, i) do {                   \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    __atomic_store_n(ptr, i, __ATOMIC_RELEASE);        \
} while (0)

#define qatomic_load_acquire(ptr)                       \
    ({                                                  \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    typeof_strip_qual(*ptr) _val;                       \
    __atomic_load(ptr, &_val, __ATOMIC_ACQUIRE);        \
    _val;                                               \
    })

#define qatomic_store_release(ptr, i)  do {             \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE); \
    __atomic_store_n(ptr, i, __ATOMIC_RELEASE);         \
} while (0)

/* Sequentially consistent read-modify-write operations. */
#define qatomic_xchg__nocheck(ptr, i)    ({                 \
    __atomic_exchange_n(ptr, (i), __ATOMIC_SEQ_CST);        \
})

#define qatomic_xchg(ptr, i)    ({                          \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE);     \
    qatomic_xchg__nocheck(ptr, i);                          \
})

/* Returns the old value of *ptr; the store happened iff it equals old. */
#define qatomic_cmpxchg__nocheck(ptr, old, new)    ({                   \
    typeof_strip_qual(*ptr) _old = (old);                               \
    (void)__atomic_compare_exchange_n(ptr, &_old, new, false,           \
                              __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);      \
    _old;                                                               \
})

#define qatomic_cmpxchg(ptr, old, new)    ({                            \
    qemu_build_assert(sizeof(*ptr) <= ATOMIC_REG_SIZE);                 \
    qatomic_cmpxchg__nocheck(ptr, old, new);                            \
})

/* Provide shorter names for GCC atomic builtins, return old value */
#define qatomic_fetch_inc(ptr)  __atomic_fetch_add(ptr, 1, __ATOMIC_SEQ_CST)
#define qatomic_fetch_dec(ptr)  __atomic_fetch_sub(ptr, 1, __ATOMIC_SEQ_CST)

#define qatomic_fetch_add(ptr, n) __atomic_fetch_add(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_sub(ptr, n) __atomic_fetch_sub(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_and(ptr, n) __atomic_fetch_and(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_or(ptr, n)  __atomic_fetch_or(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_fetch_xor(ptr, n) __atomic_fetch_xor(ptr, n, __ATOMIC_SEQ_CST)

/* ... and the new value */
#define qatomic_inc_fetch(ptr)    __atomic_add_fetch(ptr, 1, __ATOMIC_SEQ_CST)
#define qatomic_dec_fetch(ptr)    __atomic_sub_fetch(ptr, 1, __ATOMIC_SEQ_CST)
#define qatomic_add_fetch(ptr, n) __atomic_add_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_sub_fetch(ptr, n) __atomic_sub_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_and_fetch(ptr, n) __atomic_and_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_or_fetch(ptr, n)  __atomic_or_fetch(ptr, n, __ATOMIC_SEQ_CST)
#define qatomic_xor_fetch(ptr, n) __atomic_xor_fetch(ptr, n, __ATOMIC_SEQ_CST)

/* And even shorter names that return void. */
#define qatomic_inc(ptr) \
    ((void) __atomic_fetch_add(ptr, 1, __ATOMIC_SEQ_CST))
#define qatomic_dec(ptr) \
    ((void) __atomic_fetch_sub(ptr, 1, __ATOMIC_SEQ_CST))
#define qatomic_add(ptr, n) \
    ((void) __atomic_fetch_add(ptr, n, __ATOMIC_SEQ_CST))
#define qatomic_sub(ptr, n) \
    ((void) __atomic_fetch_sub(ptr, n, __ATOMIC_SEQ_CST))
#define qatomic_and(ptr, n) \
    ((void) __atomic_fetch_and(ptr, n, __ATOMIC_SEQ_CST))
#define qatomic_or(ptr, n) \
    ((void) __atomic_fetch_or(ptr, n, __ATOMIC_SEQ_CST))
#define qatomic_xor(ptr, n) \
    ((void) __atomic_fetch_xor(ptr, n, __ATOMIC_SEQ_CST))

/* Store, then a full barrier (the store is ordered before later loads). */
#define qatomic_set_mb(ptr, i) \
    ({ (void)qatomic_xchg(ptr, i); smp_mb__after_rmw(); })

/*
 * Older QEMU names (removed upstream in 8.1, kept here so that older code
 * builds): a load-acquire, and a store followed by a full barrier.
 */
#define qatomic_mb_read(ptr)    qatomic_load_acquire(ptr)
#define qatomic_mb_set(ptr, i)  qatomic_set_mb(ptr, i)

/* 64-bit accesses (the host is 64-bit, or the builtins handle it). */
#define qatomic_read_i64(ptr)       __atomic_load_n(ptr, __ATOMIC_RELAXED)
#define qatomic_read_u64(ptr)       __atomic_load_n(ptr, __ATOMIC_RELAXED)
#define qatomic_set_i64(ptr, val)   __atomic_store_n(ptr, val, __ATOMIC_RELAXED)
#define qatomic_set_u64(ptr, val)   __atomic_store_n(ptr, val, __ATOMIC_RELAXED)

static inline void qatomic64_init(void)
{
}

/* Atomic max/min (return the old value). */
#define qatomic_fetch_max(ptr, n) ({                                    \
    typeof_strip_qual(*ptr) _o = qatomic_read(ptr), _n = (n);           \
    while (_o < _n &&                                                   \
           !__atomic_compare_exchange_n(ptr, &_o, _n, false,            \
                                        __ATOMIC_SEQ_CST,               \
                                        __ATOMIC_SEQ_CST)) {            \
    }                                                                   \
    _o;                                                                 \
})
#define qatomic_fetch_min(ptr, n) ({                                    \
    typeof_strip_qual(*ptr) _o = qatomic_read(ptr), _n = (n);           \
    while (_o > _n &&                                                   \
           !__atomic_compare_exchange_n(ptr, &_o, _n, false,            \
                                        __ATOMIC_SEQ_CST,               \
                                        __ATOMIC_SEQ_CST)) {            \
    }                                                                   \
    _o;                                                                 \
})
#define qatomic_fetch_umax qatomic_fetch_max
#define qatomic_fetch_umin qatomic_fetch_min
#define qatomic_fetch_smax qatomic_fetch_max
#define qatomic_fetch_smin qatomic_fetch_min

#endif /* AIOCTX_COMPAT_QEMU_ATOMIC_H */
