/*
 * aioctx compat: QEMU's qemu/lockcnt.h. QemuLockCnt (4 bytes, QEMU's
 * futex-based layout) and its functions are the library's (aioctx.h).
 */
#ifndef AIOCTX_COMPAT_QEMU_LOCKCNT_H
#define AIOCTX_COMPAT_QEMU_LOCKCNT_H

#include "aioctx.h"

#endif /* AIOCTX_COMPAT_QEMU_LOCKCNT_H */
