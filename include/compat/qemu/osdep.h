/*
 * aioctx compat: QEMU's qemu/osdep.h — the first header every QEMU .c file
 * includes. Pulls in the standard C/POSIX headers and GLib that QEMU code
 * takes for granted, QEMU's compiler macros, and a few arithmetic helpers.
 *
 * Build with: -Iinclude/compat -Iinclude $(pkg-config --cflags glib-2.0)
 */
#ifndef AIOCTX_COMPAT_QEMU_OSDEP_H
#define AIOCTX_COMPAT_QEMU_OSDEP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

/* The build-time configuration QEMU's config-host.h would provide. */
#ifndef CONFIG_POSIX
#define CONFIG_POSIX 1
#endif
#ifndef CONFIG_LINUX
#ifdef __linux__
#define CONFIG_LINUX 1
#endif
#endif
#ifndef CONFIG_COROUTINE_POOL
#define CONFIG_COROUTINE_POOL 1
#endif
#ifndef CONFIG_EVENTFD
#ifdef __linux__
#define CONFIG_EVENTFD 1
#endif
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <inttypes.h>
#include <sys/types.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <limits.h>
#include <time.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <assert.h>
#include <signal.h>
#include <unistd.h>
#include <pthread.h>
#include <sched.h>
#include <poll.h>
#include <setjmp.h>
#include <dirent.h>
#include <libgen.h>
#include <sys/syscall.h>

#include <glib.h>

#include "qemu/compiler.h"
#include "qemu/atomic.h"
#include "aioctx.h"

/* A few types QEMU's typedefs.h makes available everywhere. */
#include "qemu/typedefs.h"

/*
 * GLib defines MIN/MAX as plain macros; QEMU redefines them to evaluate
 * each argument once. Keep GLib's if some other header already replaced
 * them; otherwise use QEMU's safer definitions.
 */
#undef MIN
#define MIN(a, b)                                       \
    ({                                                  \
        typeof(1 ? (a) : (b)) _a = (a), _b = (b);       \
        _a < _b ? _a : _b;                              \
    })
#undef MAX
#define MAX(a, b)                                       \
    ({                                                  \
        typeof(1 ? (a) : (b)) _a = (a), _b = (b);       \
        _a > _b ? _a : _b;                              \
    })
/* Constant-expression versions, usable in array sizes and initializers. */
#define MIN_CONST(a, b) ((a) < (b) ? (a) : (b))
#define MAX_CONST(a, b) ((a) > (b) ? (a) : (b))

/* MIN of two unsigned values where 0 means "no limit". */
#define MIN_NON_ZERO(a, b)                              \
    ({                                                  \
        typeof(1 ? (a) : (b)) _a = (a), _b = (b);       \
        _a == 0 ? _b : (_b == 0 || _b > _a) ? _a : _b;  \
    })

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(x) ((sizeof(x) / sizeof((x)[0])) + \
                       QEMU_BUILD_BUG_ON_ZERO(!QEMU_IS_ARRAY(x)))
#endif
#define QEMU_IS_ARRAY(x) (!__builtin_types_compatible_p(typeof(x), \
                                                        typeof(&(x)[0])))

/* Round down/up to a multiple of m (any m / a power of two for *_POW2). */
#define QEMU_ALIGN_DOWN(n, m) ((n) / (m) * (m))
#define QEMU_ALIGN_UP(n, m) QEMU_ALIGN_DOWN((n) + (m) - 1, (m))
#define QEMU_IS_ALIGNED(n, m) (((n) % (m)) == 0)
#define QEMU_ALIGN_PTR_DOWN(p, n) \
    ((typeof(p))QEMU_ALIGN_DOWN((uintptr_t)(p), (n)))
#define QEMU_ALIGN_PTR_UP(p, n) \
    ((typeof(p))QEMU_ALIGN_UP((uintptr_t)(p), (n)))
#define QEMU_PTR_IS_ALIGNED(p, n) QEMU_IS_ALIGNED((uintptr_t)(p), (n))
#ifndef ROUND_DOWN
#define ROUND_DOWN(n, d) ((n) & -(0 ? (n) : (d)))
#endif
#ifndef ROUND_UP
#define ROUND_UP(n, d) ROUND_DOWN((n) + (d) - 1, (d))
#endif
#ifndef DIV_ROUND_UP
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))
#endif

#ifndef TIME_MAX
#define TIME_MAX ((time_t)((sizeof(time_t) == 8) ? INT64_MAX : INT32_MAX))
#endif

#ifndef O_BINARY
#define O_BINARY 0
#endif

/* QEMU's thin wrappers around libc. */
#define qemu_dup dup
#define qemu_close close

static inline int qemu_get_thread_id(void)
{
    return (int)syscall(SYS_gettid);
}

/* Size of a host page. */
static inline uintptr_t qemu_real_host_page_size(void)
{
    return (uintptr_t)sysconf(_SC_PAGESIZE);
}

#endif /* AIOCTX_COMPAT_QEMU_OSDEP_H */
