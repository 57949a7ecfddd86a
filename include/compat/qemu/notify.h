/*
 * aioctx compat: QEMU's qemu/notify.h, the types only.
 *
 * Notifier and NotifierList have QEMU's layout (24 and 8 bytes): a Notifier
 * is what qemu_thread_atexit_add/remove (aioctx.h) take, linked through its
 * own node. The library does not define QEMU's notifier_list_* functions
 * (QEMU's util/notify.c does; defining them here too would clash at link
 * time), so this header declares no functions.
 */
#ifndef AIOCTX_COMPAT_QEMU_NOTIFY_H
#define AIOCTX_COMPAT_QEMU_NOTIFY_H

#include "aioctx.h"
#include "qemu/queue.h"

struct Notifier {
    void (*notify)(Notifier *notifier, void *data);
    QLIST_ENTRY(Notifier) node;
};

typedef struct NotifierList {
    QLIST_HEAD(, Notifier) notifiers;
} NotifierList;

#define NOTIFIER_LIST_INITIALIZER(head) \
    { QLIST_HEAD_INITIALIZER((head).notifiers) }

#endif /* AIOCTX_COMPAT_QEMU_NOTIFY_H */
