/*
 * aioctx compat: QEMU's block/thread-pool.h.
 *
 * Per-context AIO pool: ThreadPoolFunc, ThreadPoolAio, thread_pool_new_aio,
 * thread_pool_free_aio, thread_pool_submit_aio, thread_pool_submit_co,
 * thread_pool_update_params (and aio_context_set_thread_pool_params,
 * aio_get_thread_pool from block/aio.h). Generic pool: ThreadPool,
 * thread_pool_new, thread_pool_free, thread_pool_submit,
 * thread_pool_submit_immediate, thread_pool_wait,
 * thread_pool_set_max_threads, thread_pool_adjust_max_threads_to_work.
 * All are functions in aioctx.h.
 */
#ifndef AIOCTX_COMPAT_BLOCK_THREAD_POOL_H
#define AIOCTX_COMPAT_BLOCK_THREAD_POOL_H

#include "block/aio.h"
#include "qemu/aiocb.h"
#include "qemu/coroutine.h"

#endif /* AIOCTX_COMPAT_BLOCK_THREAD_POOL_H */
