/*
 * aioctx compat: QEMU's qemu/coroutine-core.h — the coroutine core API.
 *
 * Everything (Coroutine, CoroutineEntry, qemu_coroutine_create/enter/
 * yield/self, qemu_in_coroutine, CoMutex, ...) is declared by aioctx.h;
 * this header adds QEMU's annotation macros (coroutine_fn, from
 * qemu/compiler.h) and the pool-size names QEMU uses.
 */
#ifndef AIOCTX_COMPAT_QEMU_COROUTINE_CORE_H
#define AIOCTX_COMPAT_QEMU_COROUTINE_CORE_H

#include <stdbool.h>
#include "qemu/compiler.h"
#include "aioctx.h"

/* QEMU's coroutine stack size (aioctx maps this much, lazily). */
#ifndef COROUTINE_STACK_SIZE
#define COROUTINE_STACK_SIZE (1 << 20)
#endif

#endif /* AIOCTX_COMPAT_QEMU_COROUTINE_CORE_H */
