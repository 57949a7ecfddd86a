//! Thread pools and asynchronous requests (`block/thread-pool.h`,
//! `block/aio.h`'s `BlockAIOCB` part, `block/block.h`'s cancellation).
//!
//! Per-context AIO pool: `thread_pool_submit_aio` runs a function on a
//! worker thread ("worker") of the current context's pool and calls the
//! completion callback later in that context's thread, from a bottom half.
//! Generic pool (`ThreadPool`): plain work queue with no context.

use std::ffi::{c_int, c_void};
use std::ptr;

use super::boundary::Handle;
use super::boundary::{c_fn, context, ffi_call, ffi_call_yielding, required_c_fn};
use super::error::propagate;
use super::types::{AioContext, Error};
use crate::aiocb;
use crate::fatal::{Misuse, MisuseResult};
use crate::thread_pool::aio::{self, AioPool};
use crate::thread_pool::generic::{DestroyFn, GenericPool};

pub use crate::aiocb::{AIOCBInfo, BlockAIOCB, BlockCompletionFunc, BlockDriverState};

/// A per-context pool of worker threads (QEMU's `ThreadPoolAio`). Each
/// context has one, created on first use and freed with the context.
pub struct ThreadPoolAio {
    _opaque: [u8; 0],
}

/// A generic pool of worker threads with no AioContext (QEMU's
/// `ThreadPool`).
pub struct ThreadPool {
    _opaque: [u8; 0],
}

/// Marker for `typedef int ThreadPoolFunc(void *opaque);` (cbindgen.toml).
pub struct ThreadPoolFunc {
    _opaque: [u8; 0],
}

fn aio_pool<'a>(pool: *mut ThreadPoolAio) -> MisuseResult<&'a AioPool> {
    // SAFETY: handles given to C are `AioPool` pointers.
    unsafe { AioPool::from_handle(pool.cast_const().cast()) }
}

fn generic_pool<'a>(pool: *mut ThreadPool) -> MisuseResult<&'a GenericPool> {
    // SAFETY: handles given to C are `GenericPool` pointers.
    unsafe { GenericPool::from_handle(pool.cast_const().cast()) }
}

// ---- requests ----

/// Allocates a request of `aiocb_info->aiocb_size` bytes (zeroed), fills in
/// its `BlockAIOCB` head (`refcnt` 1) and returns it. Free it with
/// `qemu_aio_unref`. `aiocb_info` must outlive the request.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_aio_get(
    aiocb_info: *const AIOCBInfo,
    bs: *mut BlockDriverState,
    cb: *mut BlockCompletionFunc,
    opaque: *mut c_void,
) -> *mut c_void {
    ffi_call(c"qemu_aio_get", || {
        // SAFETY: `aiocb_info` is NULL (rejected) or valid per the contract.
        Ok(unsafe { aiocb::aio_get(aiocb_info, bs, cb, opaque) }?.cast())
    })
}

/// Takes a reference to the request `p` (a `BlockAIOCB *`). Home thread of
/// the context the request completes in (the count is a plain `int`).
#[unsafe(no_mangle)]
pub extern "C" fn qemu_aio_ref(p: *mut c_void) {
    // SAFETY: `p` is NULL (rejected) or a live request per the contract.
    ffi_call(c"qemu_aio_ref", || unsafe { aiocb::aio_ref(p.cast()) })
}

/// Drops a reference to the request `p`; the last one frees it. Same
/// thread rule as `qemu_aio_ref`.
#[unsafe(no_mangle)]
pub extern "C" fn qemu_aio_unref(p: *mut c_void) {
    ffi_call(c"qemu_aio_unref", || {
        // SAFETY: `p` is NULL (rejected) or a live request per the contract.
        unsafe { aiocb::aio_unref(p.cast()) }.map(|_| ())
    })
}

/// Asks for `acb` to be cancelled, without waiting. For thread-pool
/// requests: one not yet picked by a worker is removed and its callback
/// later gets `-ECANCELED`; a running or finished one completes normally.
/// Either way the callback runs exactly once, later, from the context's
/// loop. Home thread of the request's context.
///
/// C callers call `bdrv_aio_cancel_async`, a weak definition
/// (`src/c/block_hooks.c`) that forwards here, so that a program linking
/// QEMU's block layer (which defines it) uses its own.
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_bdrv_aio_cancel_async(acb: *mut BlockAIOCB) {
    // SAFETY: `acb` is NULL (rejected) or a live request per the contract.
    ffi_call(c"bdrv_aio_cancel_async", || unsafe {
        aiocb::cancel_async(acb)
    })
}

/// Cancels `acb` like `bdrv_aio_cancel_async`, then runs `aio_poll` until
/// its callback has run and released it. Call it from the home thread of
/// the request's context (or the main loop thread, which then polls the
/// main context, as QEMU does).
///
/// C callers call `bdrv_aio_cancel`, a weak definition forwarding here (see
/// `aioctx_bdrv_aio_cancel_async`).
#[unsafe(no_mangle)]
pub extern "C" fn aioctx_bdrv_aio_cancel(acb: *mut BlockAIOCB) {
    ffi_call(c"bdrv_aio_cancel", || {
        if acb.is_null() {
            return Err(Misuse::new("BlockAIOCB is NULL"));
        }
        // SAFETY: a live request per the contract.
        let ctx = unsafe { aio::request_context(acb) };
        // SAFETY: as above.
        unsafe { aiocb::cancel(acb, ctx) }
    })
}

// ---- per-context AIO pool ----

/// Creates a standalone pool for `ctx` (NULL: the main context) with the
/// context's thread limits. Free it with `thread_pool_free_aio` before the
/// context goes away. Requests go to the context's own pool
/// (`aio_get_thread_pool`), not to standalone ones.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_new_aio(ctx: *mut AioContext) -> *mut ThreadPoolAio {
    ffi_call(c"thread_pool_new_aio", || {
        let ctx = if ctx.is_null() {
            context(super::boundary::context_handle(
                crate::thread::main_context(),
            ))?
        } else {
            context(ctx)?
        };
        let (min, max) = ctx.thread_pool().params();
        Ok(AioPool::new(ctx, min, max)?.cast())
    })
}

/// Frees a pool from `thread_pool_new_aio` (NULL: nothing): runs the jobs
/// still queued, waits for all of them, and drops their requests without
/// calling their callbacks. A context's own pool is freed with the context
/// and must not be passed here. Not from a completion callback of `pool`.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_free_aio(pool: *mut ThreadPoolAio) {
    ffi_call(c"thread_pool_free_aio", || {
        if pool.is_null() {
            return Ok(());
        }
        let p = aio_pool(pool)?;
        if p.context().thread_pool().owns(p) {
            return Err(Misuse::new(
                "this is a context's own pool (aio_get_thread_pool); it is freed with the context",
            ));
        }
        // SAFETY: a live standalone pool, given up by the caller.
        unsafe { AioPool::free(pool.cast()) };
        Ok(())
    })
}

/// Applies `ctx`'s thread limits (`aio_context_set_thread_pool_params`) to
/// `pool`: starts workers up to the minimum, and lets those above the
/// maximum exit. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_update_params(pool: *mut ThreadPoolAio, ctx: *mut AioContext) {
    ffi_call(c"thread_pool_update_params", || {
        let (min, max) = context(ctx)?.thread_pool().params();
        aio_pool(pool)?.set_limits(min, max)
    })
}

/// `ctx`'s own pool, created on first use; owned by the context (freed with
/// it). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_get_thread_pool(ctx: *mut AioContext) -> *mut ThreadPoolAio {
    ffi_call(c"aio_get_thread_pool", || {
        let ctx = context(ctx)?;
        Ok(ptr::from_ref(ctx.thread_pool().get_or_create(ctx)?)
            .cast_mut()
            .cast())
    })
}

/// Sets the worker-thread limits of `ctx`'s pool (QEMU's
/// `thread-pool-min`/`thread-pool-max`; defaults 0 and 64): at least `min`
/// workers are kept, at most `max` run; workers above `min` exit after 10 s
/// without work. Needs 0 <= min <= max, 1 <= max <= INT_MAX; otherwise
/// reports through `errp` and changes nothing. A worker of a raised
/// minimum that cannot be started is also reported through `errp` (the
/// limits are set; fewer workers run). Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn aio_context_set_thread_pool_params(
    ctx: *mut AioContext,
    min: i64,
    max: i64,
    errp: *mut *mut Error,
) {
    ffi_call(c"aio_context_set_thread_pool_params", || {
        if let Err(msg) = context(ctx)?.thread_pool().set_params(min, max) {
            // SAFETY: errp is an `Error **` per the contract.
            unsafe { propagate("aio_context_set_thread_pool_params", errp, &msg) };
        }
        Ok(())
    })
}

/// Runs `func(arg)` on a worker of the current context's pool (created on
/// first use); `cb(opaque, ret)` (cb may be NULL) later runs in this
/// context's thread with func's result, from a bottom half, never inside
/// this call. Callbacks run in completion order. The returned request is
/// owned by the pool and freed after `cb` returns; take a reference
/// (`qemu_aio_ref`) to use it longer. Aborts if this thread has no current
/// context.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_submit_aio(
    func: *mut ThreadPoolFunc,
    arg: *mut c_void,
    cb: *mut BlockCompletionFunc,
    opaque: *mut c_void,
) -> *mut BlockAIOCB {
    ffi_call(c"thread_pool_submit_aio", || {
        aio::submit_aio(required_c_fn(func)?, arg, c_fn(cb), opaque)
    })
}

/// Coroutine only: runs `func(arg)` on a worker of the current context's
/// pool, yields until it finished, and returns its result.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_submit_co(func: *mut ThreadPoolFunc, arg: *mut c_void) -> c_int {
    ffi_call_yielding(c"thread_pool_submit_co", || {
        aio::submit_co(required_c_fn(func)?, arg)
    })
}

// ---- generic pool ----

/// Creates a generic pool (never NULL). As in QEMU, its maximum starts at
/// 0 threads: jobs run once `thread_pool_set_max_threads` or
/// `thread_pool_submit_immediate` raised it. Free with `thread_pool_free`.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_new() -> *mut ThreadPool {
    ffi_call(c"thread_pool_new", || Ok(GenericPool::new()?.cast()))
}

/// Runs every job still queued, waits for all of them, then frees `pool`
/// (NULL: nothing). No other call on `pool` may run concurrently.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_free(pool: *mut ThreadPool) {
    ffi_call(c"thread_pool_free", || {
        if pool.is_null() {
            return Ok(());
        }
        generic_pool(pool)?;
        // SAFETY: validated, and given up by the caller.
        unsafe { GenericPool::free(pool.cast()) };
        Ok(())
    })
}

/// Queues `func(opaque)` on `pool`; after it ran, `opaque_destroy(opaque)`
/// (a `GDestroyNotify`, may be NULL) runs on the same worker. func's return
/// value is ignored. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_submit(
    pool: *mut ThreadPool,
    func: *mut ThreadPoolFunc,
    opaque: *mut c_void,
    opaque_destroy: Option<unsafe extern "C" fn(data: *mut c_void)>,
) {
    ffi_call(c"thread_pool_submit", || {
        let destroy: Option<DestroyFn> = opaque_destroy;
        generic_pool(pool)?.submit(required_c_fn(func)?, opaque, destroy)
    })
}

/// Like `thread_pool_submit`, then raises the maximum to the number of
/// unfinished jobs so that this one starts right away.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_submit_immediate(
    pool: *mut ThreadPool,
    func: *mut ThreadPoolFunc,
    opaque: *mut c_void,
    opaque_destroy: Option<unsafe extern "C" fn(data: *mut c_void)>,
) {
    ffi_call(c"thread_pool_submit_immediate", || {
        generic_pool(pool)?.submit_immediate(required_c_fn(func)?, opaque, opaque_destroy)
    })
}

/// Waits until every job submitted so far has finished (QEMU returns
/// nothing; job results are ignored). Aborts instead of hanging when work
/// is queued but the maximum is still 0 threads. Any thread but a worker.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_wait(pool: *mut ThreadPool) {
    ffi_call(c"thread_pool_wait", || generic_pool(pool)?.wait())
}

/// Sets the maximum number of workers (`max_threads` >= 1, else abort);
/// surplus workers stop after their current job. Returns true.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_set_max_threads(pool: *mut ThreadPool, max_threads: c_int) -> bool {
    ffi_call(c"thread_pool_set_max_threads", || {
        generic_pool(pool)?.set_max_threads(max_threads)
    })
}

/// Sets the maximum to the number of unfinished jobs (one thread each).
/// Aborts when there are none (QEMU asserts). Returns true.
#[unsafe(no_mangle)]
pub extern "C" fn thread_pool_adjust_max_threads_to_work(pool: *mut ThreadPool) -> bool {
    ffi_call(c"thread_pool_adjust_max_threads_to_work", || {
        generic_pool(pool)?.adjust_max_threads_to_work()
    })
}
