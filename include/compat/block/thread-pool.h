/*
 * aioctx compat: QEMU's block/thread-pool.h.
 *
 * PLACEHOLDER: ThreadPoolFunc, thread_pool_submit_aio, thread_pool_submit_co
 * and aio_context_set_thread_pool_params land in aioctx.h with the
 * thread-pool issue (api.md §8).
 */
#ifndef AIOCTX_COMPAT_BLOCK_THREAD_POOL_H
#define AIOCTX_COMPAT_BLOCK_THREAD_POOL_H

#include "block/aio.h"

#endif /* AIOCTX_COMPAT_BLOCK_THREAD_POOL_H */
