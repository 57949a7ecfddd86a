/*
 * aioctx compat: QEMU's qemu/lockable.h — a generic handle over the
 * different lock types, and scope-bound lock guards.
 *
 *   QEMU_LOCK_GUARD(&mutex);          // locked until the end of the scope
 *   WITH_QEMU_LOCK_GUARD(&mutex) { }  // locked for the block; break/return ok
 *
 * Works with QemuMutex *, QemuRecMutex *, QemuSpin * and CoMutex *, and with
 * a QemuLockable * (QEMU_MAKE_LOCKABLE passes it through). QEMU_MAKE_LOCKABLE
 * also accepts NULL (giving NULL); QEMU_MAKE_LOCKABLE_NONNULL does not.
 */
#ifndef AIOCTX_COMPAT_QEMU_LOCKABLE_H
#define AIOCTX_COMPAT_QEMU_LOCKABLE_H

#include <glib.h>
#include "qemu/compiler.h"
#include "qemu/thread.h"
#include "qemu/coroutine-core.h"

typedef void QemuLockUnlockFunc(void *);

typedef struct QemuLockable {
    void *object;
    QemuLockUnlockFunc *lock;
    QemuLockUnlockFunc *unlock;
} QemuLockable;

static inline __attribute__((__always_inline__)) QemuLockable *
qemu_null_lockable(void *x)
{
    if (x != NULL) {
        qemu_build_not_reached();
    }
    return NULL;
}

/* QEMU's helper: the lockable for x, or NULL when x (typed) is NULL. */
static inline __attribute__((__always_inline__)) QemuLockable *
qemu_make_lockable(void *x, QemuLockable *lockable)
{
    return x ? lockable : NULL;
}

#define QML_FUNC_(name)                                                 \
    (QemuLockUnlockFunc *)(void (*)(void)) name

#define QML_OBJ_(x, name) (&(QemuLockable) {                            \
        .object = (x),                                                  \
        .lock = QML_FUNC_(qemu_ ## name ## _lock),                      \
        .unlock = QML_FUNC_(qemu_ ## name ## _unlock)                   \
    })

/*
 * QEMU_MAKE_LOCKABLE(x): a QemuLockable * for x (a compound literal, valid
 * in the enclosing block). x NULL (as void *, or typed) gives NULL.
 */
#define QEMU_MAKE_LOCKABLE(x)                                           \
    _Generic((x), QemuLockable *: (x),                                  \
             void *: qemu_null_lockable(x),                             \
             QemuMutex *: qemu_make_lockable((x), QML_OBJ_(x, mutex)),  \
             QemuRecMutex *: qemu_make_lockable((x), QML_OBJ_(x, rec_mutex)), \
             CoMutex *: qemu_make_lockable((x), QML_OBJ_(x, co_mutex)), \
             QemuSpin *: qemu_make_lockable((x), QML_OBJ_(x, spin)))

/* The same, for an x that is never NULL. */
#define QEMU_MAKE_LOCKABLE_NONNULL(x)                                   \
    _Generic((x), QemuLockable *: (x),                                  \
                  QemuMutex *: QML_OBJ_(x, mutex),                      \
                  QemuRecMutex *: QML_OBJ_(x, rec_mutex),               \
                  CoMutex *: QML_OBJ_(x, co_mutex),                     \
                  QemuSpin *: QML_OBJ_(x, spin))

static inline void qemu_lockable_lock(QemuLockable *x)
{
    x->lock(x->object);
}

static inline void qemu_lockable_unlock(QemuLockable *x)
{
    x->unlock(x->object);
}

static inline QemuLockable *qemu_lockable_auto_lock(QemuLockable *x)
{
    qemu_lockable_lock(x);
    return x;
}

static inline void qemu_lockable_auto_unlock(QemuLockable *x)
{
    if (x) {
        qemu_lockable_unlock(x);
    }
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(QemuLockable, qemu_lockable_auto_unlock)

#define WITH_QEMU_LOCK_GUARD_(x, var)                                   \
    for (g_autoptr(QemuLockable) var =                                  \
                qemu_lockable_auto_lock(QEMU_MAKE_LOCKABLE_NONNULL((x))); \
         var;                                                           \
         qemu_lockable_auto_unlock(var), var = NULL)

/* WITH_QEMU_LOCK_GUARD(lock) { ... }: lock held for the block. */
#define WITH_QEMU_LOCK_GUARD(x) \
    WITH_QEMU_LOCK_GUARD_((x), glue(qemu_lockable_auto, __COUNTER__))

/* QEMU_LOCK_GUARD(lock): lock held until the end of the scope. */
#define QEMU_LOCK_GUARD(x)                                       \
    g_autoptr(QemuLockable)                                      \
    glue(qemu_lockable_auto, __COUNTER__) G_GNUC_UNUSED =        \
            qemu_lockable_auto_lock(QEMU_MAKE_LOCKABLE((x)))

#endif /* AIOCTX_COMPAT_QEMU_LOCKABLE_H */
