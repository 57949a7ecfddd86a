/*
 * Fault injection for the library's resource calls, as an LD_PRELOAD
 * shared object (built and driven by scripts/fault-walk.sh):
 *
 *   AIOCTX_FAULT=FUNC:N       the Nth call of FUNC (1-based) fails, the
 *                             others succeed. FUNC: eventfd, epoll_create1,
 *                             pipe (pipe and pipe2), pthread_create, mmap
 *                             (mappings of 1 MiB or more: coroutine
 *                             stacks; smaller ones are malloc's and GLib's).
 *   AIOCTX_FAULT_REPORT=PATH  at a normal exit, writes "FUNC COUNT" lines
 *                             (calls made) to PATH, so a walker knows
 *                             which N exist.
 *
 * A failed call fails the way the kernel or glibc would: eventfd,
 * epoll_create1 and pipe with EMFILE, mmap with ENOMEM, pthread_create by
 * returning EAGAIN. io_uring_setup/io_uring_enter cannot be interposed
 * (the io-uring crate issues them with inline syscalls); the seccomp test
 * c-tests/test-fdmon-fallback.c covers io_uring_enter.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

enum { F_EVENTFD, F_EPOLL_CREATE1, F_PIPE, F_PTHREAD_CREATE, F_MMAP, F_COUNT };

static const char *const names[F_COUNT] = {
    "eventfd", "epoll_create1", "pipe", "pthread_create", "mmap",
};

static atomic_long calls[F_COUNT];
static int fault_fn = -1;
static long fault_nth;

#define BIG_MAPPING (1024 * 1024)

__attribute__((constructor)) static void fault_init(void)
{
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

/* Counts a call of `fn`; true when this one must fail. */
static bool fail_now(int fn)
{
    long n = atomic_fetch_add(&calls[fn], 1) + 1;

    return fn == fault_fn && n == fault_nth;
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
