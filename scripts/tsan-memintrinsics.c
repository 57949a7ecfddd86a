/*
 * Compatibility shim for TSan builds (make sanitize): the TSan-instrumented
 * Rust library is compiled by rustc's LLVM, which turns memcpy/memmove/memset
 * into calls to __tsan_memcpy/__tsan_memmove/__tsan_memset. GCC 12's libtsan
 * (Debian 12) predates those entry points. Forward them to the plain libc
 * functions, which libtsan intercepts and checks, so no access goes unchecked.
 * Linked into TSan test programs only; never part of the library.
 */
#include <stddef.h>
#include <string.h>

void *__tsan_memcpy(void *dst, const void *src, size_t n);
void *__tsan_memmove(void *dst, const void *src, size_t n);
void *__tsan_memset(void *dst, int c, size_t n);

void *__tsan_memcpy(void *dst, const void *src, size_t n)
{
    return memcpy(dst, src, n);
}

void *__tsan_memmove(void *dst, const void *src, size_t n)
{
    return memmove(dst, src, n);
}

void *__tsan_memset(void *dst, int c, size_t n)
{
    return memset(dst, c, n);
}
