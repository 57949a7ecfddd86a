/*
 * aioctx compat: the fd-blocking helpers of QEMU's qemu/sockets.h (POSIX).
 */
#ifndef AIOCTX_COMPAT_QEMU_SOCKETS_H
#define AIOCTX_COMPAT_QEMU_SOCKETS_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "qapi/error.h"

/*
 * Make fd blocking (block) or non-blocking; on failure report through errp
 * and return false.
 */
static inline bool qemu_set_blocking(int fd, bool block, Error **errp)
{
    int f = fcntl(fd, F_GETFL);

    if (f == -1) {
        error_setg_errno(errp, errno, "Failed to get FD %d flags", fd);
        return false;
    }
    int nf = block ? (f & ~O_NONBLOCK) : (f | O_NONBLOCK);
    if (nf != f && fcntl(fd, F_SETFL, nf) == -1) {
        error_setg_errno(errp, errno, "Failed to set FD %d to %sblocking",
                         fd, block ? "" : "non-");
        return false;
    }
    return true;
}

/* Returns 0 or -errno. */
static inline int qemu_socket_try_set_nonblock(int fd)
{
    int f = fcntl(fd, F_GETFL);

    if (f == -1 || fcntl(fd, F_SETFL, f | O_NONBLOCK) == -1) {
        return -errno;
    }
    return 0;
}

/* Aborts on failure (QEMU asserts). */
static inline void qemu_socket_set_nonblock(int fd)
{
    int ret = qemu_socket_try_set_nonblock(fd);

    if (ret != 0) {
        fprintf(stderr, "aioctx: qemu_socket_set_nonblock: fd %d: %s\n",
                fd, strerror(-ret));
        abort();
    }
}

static inline void qemu_socket_set_block(int fd)
{
    int f = fcntl(fd, F_GETFL);

    if (f == -1 || fcntl(fd, F_SETFL, f & ~O_NONBLOCK) == -1) {
        fprintf(stderr, "aioctx: qemu_socket_set_block: fd %d: %s\n",
                fd, strerror(errno));
        abort();
    }
}

/* Older name of qemu_socket_set_nonblock. */
#define qemu_set_nonblock(fd) qemu_socket_set_nonblock(fd)

#endif /* AIOCTX_COMPAT_QEMU_SOCKETS_H */
