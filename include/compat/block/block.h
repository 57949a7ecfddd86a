/*
 * aioctx compat: the event-loop part of QEMU's block/block.h: request
 * cancellation. bdrv_aio_cancel(acb) cancels and polls until the request's
 * callback ran; bdrv_aio_cancel_async(acb) only asks (both in aioctx.h).
 * The block layer itself is not provided.
 */
#ifndef AIOCTX_COMPAT_BLOCK_BLOCK_H
#define AIOCTX_COMPAT_BLOCK_BLOCK_H

#include "block/aio.h"
#include "block/aio-wait.h"
#include "qemu/aiocb.h"

#endif /* AIOCTX_COMPAT_BLOCK_BLOCK_H */
