/*
 * aioctx compat: QEMU's qemu/thread-posix.h. The POSIX layouts of
 * QemuMutex, QemuCond, QemuSemaphore, QemuEvent and QemuThread are the
 * library's (complete structs in aioctx.h); nothing to add.
 */
#ifndef AIOCTX_COMPAT_QEMU_THREAD_POSIX_H
#define AIOCTX_COMPAT_QEMU_THREAD_POSIX_H

#include <pthread.h>
#include <semaphore.h>
#include "aioctx.h"

#endif /* AIOCTX_COMPAT_QEMU_THREAD_POSIX_H */
