/*
 * aioctx compat: QEMU's qemu/futex.h. qemu_futex_wait(f, val),
 * qemu_futex_wake_single(f) and qemu_futex_wake_all(f) are library
 * functions (aioctx.h).
 */
#ifndef AIOCTX_COMPAT_QEMU_FUTEX_H
#define AIOCTX_COMPAT_QEMU_FUTEX_H

#include "aioctx.h"

#ifdef __linux__
#define HAVE_FUTEX
#endif

#endif /* AIOCTX_COMPAT_QEMU_FUTEX_H */
