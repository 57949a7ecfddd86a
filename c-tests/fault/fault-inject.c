/*
 * Fault injection for the library's resource calls, as an LD_PRELOAD
 * shared object (built and driven by scripts/fault-walk.sh):
 *
 *   AIOCTX_FAULT=FUNC:N       the Nth call of FUNC (1-based) fails, the
 *                             others succeed. FUNC: eventfd, epoll_create1,
 *                             pipe (pipe and pipe2), pthread_create, mmap
 *                             (mappings of 1 MiB or more: coroutine
 *                             stacks; smaller ones are malloc's and GLib's),
 *                             io_uring_setup, io_uring_enter, malloc
 *                             (the library's allocations only, see below).
 *   AIOCTX_FAULT_REPORT=PATH  at a normal exit, writes "FUNC COUNT" lines
 *                             (calls made) to PATH, so a walker knows
 *                             which N exist.
 *
 * A failed call fails the way the kernel or glibc would: eventfd,
 * epoll_create1 and pipe with EMFILE, mmap with ENOMEM, pthread_create by
 * returning EAGAIN; io_uring_setup with EMFILE, io_uring_enter with EPERM
 * (what a seccomp sandbox answers). Each failed call is announced on
 * stderr as "fault-inject: FUNC:N failed", so the walker can tell a run
 * whose fault was never reached.
 *
 * io_uring_setup/io_uring_enter: the io-uring crate (0.7, without its
 * `direct-syscall` feature) issues them through libc's variadic syscall(),
 * so this object interposes syscall() and forwards every other number to
 * libc's (six long arguments, as x86-64/aarch64 pass them in registers).
 * futex waits go through it too, hence no work beyond two compares.
 *
 * malloc: only the allocations made by code in the executable's text are
 * counted and failed: the library is linked statically into it, so these
 * are its Rust global allocator's (src/fatal.rs `Alloc` -> `System` ->
 * malloc, calloc, realloc or posix_memalign, which this object interposes;
 * the workload itself allocates nothing). GLib's and libc's own
 * allocations (from their shared objects) are neither counted nor failed:
 * GLib aborts with its own message when g_malloc fails, which is not the
 * library's to fix, and counting them would make thousands of runs. A
 * failed allocation returns NULL (posix_memalign: ENOMEM), as glibc does.
 *
 * Built with -DFAULT_INJECT_NO_MALLOC (the walk's ASan pass), the object
 * leaves malloc and co. alone, so that ASan's allocator, which must see
 * every allocation to find leaks, is not bypassed; "malloc" then counts 0.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum {
    F_EVENTFD,
    F_EPOLL_CREATE1,
    F_PIPE,
    F_PTHREAD_CREATE,
    F_MMAP,
    F_IO_URING_SETUP,
    F_IO_URING_ENTER,
    F_MALLOC,
    F_COUNT
};

static const char *const names[F_COUNT] = {
    "eventfd", "epoll_create1",  "pipe",           "pthread_create",
    "mmap",    "io_uring_setup", "io_uring_enter", "malloc",
};

static atomic_long calls[F_COUNT];
static int fault_fn = -1;
static long fault_nth;

#define BIG_MAPPING (1024 * 1024)

/* The executable's code: [exe_text_start, exe_text_end). */
static uintptr_t exe_text_start, exe_text_end;

/* dl_iterate_phdr reports the executable first: its executable segments. */
static int find_exe_text(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;

        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) {
            continue;
        }
        if (!exe_text_start || start < exe_text_start) {
            exe_text_start = start;
        }
        if (start + ph->p_memsz > exe_text_end) {
            exe_text_end = start + ph->p_memsz;
        }
    }
    return 1;
}

__attribute__((constructor)) static void fault_init(void)
{
    /* Before any code of the executable runs (preloaded objects are
     * initialised first), so no allocation of the library goes uncounted. */
    dl_iterate_phdr(find_exe_text, NULL);

    const char *spec = getenv("AIOCTX_FAULT");
    const char *colon = spec ? strchr(spec, ':') : NULL;

    if (!colon) {
        return;
    }
    for (int i = 0; i < F_COUNT; i++) {
        if (strlen(names[i]) == (size_t)(colon - spec) &&
            strncmp(spec, names[i], colon - spec) == 0) {
            fault_fn = i;
            fault_nth = atol(colon + 1);
        }
    }
    if (fault_fn < 0) {
        fprintf(stderr, "fault-inject: unknown AIOCTX_FAULT '%s'\n", spec);
        _exit(99);
    }
}

__attribute__((destructor)) static void fault_report(void)
{
    const char *path = getenv("AIOCTX_FAULT_REPORT");
    FILE *f;

    if (!path || !(f = fopen(path, "w"))) {
        return;
    }
    for (int i = 0; i < F_COUNT; i++) {
        fprintf(f, "%s %ld\n", names[i], atomic_load(&calls[i]));
    }
    fclose(f);
}

/* Writes "fault-inject: FUNC:N failed" with one write(2): no stdio, no
 * allocation (this may run inside malloc). */
static void announce(int fn, long n)
{
    char buf[96], digits[24];
    size_t len = 0, d = 0;

#define PUT(str)                                                             \
    for (const char *c_ = (str); *c_ && len < sizeof(buf) - 1; c_++) {       \
        buf[len++] = *c_;                                                    \
    }
    PUT("fault-inject: ");
    PUT(names[fn]);
    PUT(":");
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0 && d < sizeof(digits));
    while (d > 0 && len < sizeof(buf) - 1) {
        buf[len++] = digits[--d];
    }
    PUT(" failed\n");
#undef PUT
    if (write(2, buf, len) < 0) {
        /* nothing to do: the walker then reports the fault as not reached */
    }
}

/* Counts a call of `fn`; true when this one must fail. */
static bool fail_now(int fn)
{
    long n = atomic_fetch_add(&calls[fn], 1) + 1;

    if (fn == fault_fn && n == fault_nth) {
        announce(fn, n);
        return true;
    }
    return false;
}

#define REAL(ret, name, ...)                                                 \
    static ret (*real_##name)(__VA_ARGS__);                                  \
    if (!real_##name) {                                                      \
        real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name);          \
    }

int eventfd(unsigned int initval, int flags)
{
    REAL(int, eventfd, unsigned int, int);
    if (fail_now(F_EVENTFD)) {
        errno = EMFILE;
        return -1;
    }
    return real_eventfd(initval, flags);
}

int epoll_create1(int flags)
{
    REAL(int, epoll_create1, int);
    if (fail_now(F_EPOLL_CREATE1)) {
        errno = EMFILE;
        return -1;
    }
    return real_epoll_create1(flags);
}

int pipe(int fds[2])
{
    REAL(int, pipe, int *);
    if (fail_now(F_PIPE)) {
        errno = EMFILE;
        return -1;
    }
    return real_pipe(fds);
}

int pipe2(int fds[2], int flags)
{
    REAL(int, pipe2, int *, int);
    if (fail_now(F_PIPE)) {
        errno = EMFILE;
        return -1;
    }
    return real_pipe2(fds, flags);
}

int pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                   void *(*start)(void *), void *arg)
{
    REAL(int, pthread_create, pthread_t *, const pthread_attr_t *,
         void *(*)(void *), void *);
    if (fail_now(F_PTHREAD_CREATE)) {
        return EAGAIN;
    }
    return real_pthread_create(thread, attr, start, arg);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    REAL(void *, mmap, void *, size_t, int, int, int, off_t);
    if (len >= BIG_MAPPING && fail_now(F_MMAP)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return real_mmap(addr, len, prot, flags, fd, off);
}

long syscall(long number, ...)
{
    REAL(long, syscall, long, ...);
    va_list ap;
    long a[6];

    va_start(ap, number);
    for (int i = 0; i < 6; i++) {
        a[i] = va_arg(ap, long);
    }
    va_end(ap);
    if (number == SYS_io_uring_setup && fail_now(F_IO_URING_SETUP)) {
        errno = EMFILE;
        return -1;
    }
    if (number == SYS_io_uring_enter && fail_now(F_IO_URING_ENTER)) {
        errno = EPERM;
        return -1;
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

#ifndef FAULT_INJECT_NO_MALLOC
/*
 * malloc and co.: glibc's implementations under their exported internal
 * names, so no dlsym (which may itself allocate) is needed.
 */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);

/* A call from the library (the executable's code) that must fail. */
static inline bool fail_alloc(void *caller)
{
    uintptr_t pc = (uintptr_t)caller;

    return pc >= exe_text_start && pc < exe_text_end && fail_now(F_MALLOC);
}

void *malloc(size_t size)
{
    if (fail_alloc(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    if (fail_alloc(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    if (fail_alloc(__builtin_return_address(0))) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    int saved = errno;
    void *p;

    if (align == 0 || align % sizeof(void *) != 0 || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    if (fail_alloc(__builtin_return_address(0))) {
        return ENOMEM;
    }
    p = __libc_memalign(align, size);
    errno = saved;
    if (!p) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}
#endif /* FAULT_INJECT_NO_MALLOC */
