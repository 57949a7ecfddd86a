/* aioctx compat: qemu/aio.h, an alias of QEMU's block/aio.h (docs/spec/api.md's name). */
#ifndef AIOCTX_COMPAT_QEMU_AIO_H
#define AIOCTX_COMPAT_QEMU_AIO_H

#include "block/aio.h"

#endif /* AIOCTX_COMPAT_QEMU_AIO_H */
