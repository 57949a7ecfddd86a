/*
 * aioctx compat: asynchronous I/O control blocks (QEMU declares them in
 * block/aio.h): BlockAIOCB and BlockCompletionFunc.
 *
 * PLACEHOLDER for the thread-pool issue, which brings BlockAIOCB's
 * functions (bdrv_aio_cancel, bdrv_aio_cancel_async, thread_pool_submit_aio)
 * in aioctx.h. Only forward declarations compatible with those live here.
 */
#ifndef AIOCTX_COMPAT_QEMU_AIOCB_H
#define AIOCTX_COMPAT_QEMU_AIOCB_H

#include "aioctx.h"

typedef struct BlockAIOCB BlockAIOCB;
typedef void BlockCompletionFunc(void *opaque, int ret);

#endif /* AIOCTX_COMPAT_QEMU_AIOCB_H */
