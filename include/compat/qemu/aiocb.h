/*
 * aioctx compat: asynchronous request control blocks, which QEMU declares
 * in block/aio.h: BlockAIOCB, AIOCBInfo, BlockCompletionFunc,
 * qemu_aio_get(), qemu_aio_ref(), qemu_aio_unref().
 *
 * All of them are in aioctx.h (complete structs with QEMU's layout); this
 * header gathers them under one name and adds nothing else.
 */
#ifndef AIOCTX_COMPAT_QEMU_AIOCB_H
#define AIOCTX_COMPAT_QEMU_AIOCB_H

#include "aioctx.h"
#include "qemu/typedefs.h"

#endif /* AIOCTX_COMPAT_QEMU_AIOCB_H */
