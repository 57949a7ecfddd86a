/*
 * aioctx compat: QEMU's qemu/event_notifier.h. EventNotifier (a complete
 * struct) and event_notifier_* are the library's (aioctx.h).
 */
#ifndef AIOCTX_COMPAT_QEMU_EVENT_NOTIFIER_H
#define AIOCTX_COMPAT_QEMU_EVENT_NOTIFIER_H

#include "aioctx.h"

#endif /* AIOCTX_COMPAT_QEMU_EVENT_NOTIFIER_H */
