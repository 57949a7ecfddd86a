/*
 * aioctx compat: QEMU's qemu/compiler.h — attribute and token-pasting
 * macros. Included by qemu/osdep.h; QEMU code does not include it directly.
 */
#ifndef AIOCTX_COMPAT_QEMU_COMPILER_H
#define AIOCTX_COMPAT_QEMU_COMPILER_H

#define QEMU_NORETURN __attribute__((__noreturn__))
#define QEMU_WARN_UNUSED_RESULT __attribute__((warn_unused_result))
#define QEMU_SENTINEL __attribute__((sentinel))
#define QEMU_PACKED __attribute__((packed))
#define QEMU_ALIGNED(X) __attribute__((aligned(X)))
#define QEMU_ALWAYS_INLINE __attribute__((always_inline))
#define QEMU_FLATTEN __attribute__((flatten))
#define QEMU_NONSTRING __attribute__((nonstring))
#define QEMU_USED __attribute__((used))
#define QEMU_ERROR(X) __attribute__((error(X)))

#ifndef likely
#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif

#ifndef glue
#define xglue(x, y) x ## y
#define glue(x, y) xglue(x, y)
#define stringify(s) tostring(s)
#define tostring(s) #s
#endif

#ifndef container_of
#define container_of(ptr, type, member) ({                      \
        const typeof(((type *) 0)->member) *__mptr = (ptr);     \
        (type *) ((char *) __mptr - offsetof(type, member));})
#endif

#define sizeof_field(type, field) sizeof(((type *)0)->field)

/* The type of @expr with qualifiers (const, volatile) removed: the value
 * of a comma expression is not an lvalue, so it has the unqualified type. */
#define typeof_strip_qual(expr) typeof(((void)0, (expr)))

/*
 * Compile-time assertions. QEMU_BUILD_BUG_ON(x) fails the build when x is
 * a true constant expression; it is usable at file and block scope.
 */
#if defined(__cplusplus)
#define QEMU_BUILD_BUG_MSG(x, msg) static_assert(!(x), msg)
#else
#define QEMU_BUILD_BUG_MSG(x, msg) _Static_assert(!(x), msg)
#endif
#define QEMU_BUILD_BUG_ON(x) QEMU_BUILD_BUG_MSG(x, "not expecting: " #x)
#define QEMU_BUILD_BUG_ON_STRUCT(x) \
    struct { int:(x) ? -1 : 1; }
#define QEMU_BUILD_BUG_ON_ZERO(x) \
    (sizeof(QEMU_BUILD_BUG_ON_STRUCT(x)) - sizeof(QEMU_BUILD_BUG_ON_STRUCT(x)))

/*
 * qemu_build_assert(test): a compile-time check for expressions that are
 * constant only once optimized; without optimization, a run-time assert.
 * qemu_build_not_reached(): code the compiler must prove unreachable.
 */
#if defined(__OPTIMIZE__) && !defined(__NO_INLINE__)
extern void QEMU_NORETURN QEMU_ERROR("code path is reachable")
    qemu_build_not_reached_always(void);
#define qemu_build_not_reached()  qemu_build_not_reached_always()
#else
#define qemu_build_not_reached()  g_assert_not_reached()
#endif
#define qemu_build_assert(test)  while (!(test)) qemu_build_not_reached()

/* IS_ENABLED(CONFIG_FOO): 1 if CONFIG_FOO is defined to 1, else 0. */
#define IS_ENABLED(option) config_enabled(option)
#define config_enabled(cfg) config_enabled_(cfg)
#define config_enabled_(value) config_enabled__(__take_second_arg__##value)
#define __take_second_arg__1 0,
#define config_enabled__(arg1_or_junk) ___config_enabled(arg1_or_junk 1, 0)
#define ___config_enabled(__ignored, val, ...) val

/*
 * Coroutine annotations. Empty markers (QEMU's clang-only static analysis
 * annotations have no effect on the generated code).
 */
#ifndef coroutine_fn
#define coroutine_fn
#endif
#ifndef coroutine_mixed_fn
#define coroutine_mixed_fn
#endif
#ifndef no_coroutine_fn
#define no_coroutine_fn
#endif

#define QEMU_ANNOTATE(x)
#define TSA_CAPABILITY(x)
#define TSA_NO_TSA
#define TSA_REQUIRES(...)
#define TSA_REQUIRES_SHARED(...)
#define TSA_EXCLUDES(...)
#define TSA_ACQUIRE(...)
#define TSA_ACQUIRE_SHARED(...)
#define TSA_RELEASE(...)
#define TSA_RELEASE_SHARED(...)
#define TSA_ASSERT(...)
#define TSA_ASSERT_SHARED(...)
#define TSA_GUARDED_BY(x)
#define TSA_PT_GUARDED_BY(x)

#define QEMU_FALLTHROUGH __attribute__((fallthrough))

#endif /* AIOCTX_COMPAT_QEMU_COMPILER_H */
