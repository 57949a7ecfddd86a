/* aioctx compat: qemu/aio-wait.h, an alias of QEMU's block/aio-wait.h. */
#ifndef AIOCTX_COMPAT_QEMU_AIO_WAIT_H
#define AIOCTX_COMPAT_QEMU_AIO_WAIT_H

#include "block/aio-wait.h"

#endif /* AIOCTX_COMPAT_QEMU_AIO_WAIT_H */
