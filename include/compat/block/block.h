/*
 * aioctx compat: the event-loop part of QEMU's block/block.h: BlockAIOCB
 * and its cancellation (bdrv_aio_cancel, bdrv_aio_cancel_async, in aioctx.h
 * with the thread-pool issue). The block layer itself is not provided.
 */
#ifndef AIOCTX_COMPAT_BLOCK_BLOCK_H
#define AIOCTX_COMPAT_BLOCK_BLOCK_H

#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/aiocb.h"

#endif /* AIOCTX_COMPAT_BLOCK_BLOCK_H */
