/*
 * aioctx compat: QEMU's qemu/timer.h. QEMUTimer, QEMUClockType, SCALE_*,
 * qemu_clock_get_*, timer_* and aio_timer_* are the library's (aioctx.h);
 * added here: QEMU's host clock helpers.
 */
#ifndef AIOCTX_COMPAT_QEMU_TIMER_H
#define AIOCTX_COMPAT_QEMU_TIMER_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>
#include "aioctx.h"

#ifndef NANOSECONDS_PER_SECOND
#define NANOSECONDS_PER_SECOND 1000000000LL
#endif

#ifndef SCALE_MS
#define SCALE_MS 1000000
#define SCALE_US 1000
#define SCALE_NS 1
#endif

/* Wall-clock time in ns (CLOCK_REALTIME). */
static inline int64_t get_clock_realtime(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000000000LL + (tv.tv_usec * 1000);
}

/* Monotonic time in ns. */
static inline int64_t get_clock(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#endif /* AIOCTX_COMPAT_QEMU_TIMER_H */
