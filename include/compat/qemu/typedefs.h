/*
 * aioctx compat: QEMU's qemu/typedefs.h — forward declarations of the
 * types the event-loop headers mention. Only names whose complete
 * definition (if any) uses the same struct tag are declared here, so they
 * stay compatible with include/aioctx.h as it grows.
 */
#ifndef AIOCTX_COMPAT_QEMU_TYPEDEFS_H
#define AIOCTX_COMPAT_QEMU_TYPEDEFS_H

typedef struct AioContext AioContext;
typedef struct Error Error;
typedef struct EventNotifier EventNotifier;
typedef struct QEMUBH QEMUBH;
typedef struct BlockAIOCB BlockAIOCB;
typedef struct BlockDriverState BlockDriverState;
typedef struct Coroutine Coroutine;
typedef struct CoMutex CoMutex;
typedef struct IOThread IOThread;
typedef struct Notifier Notifier;

#endif /* AIOCTX_COMPAT_QEMU_TYPEDEFS_H */
