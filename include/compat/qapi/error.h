/*
 * aioctx compat: QEMU's qapi/error.h — Error objects reported through
 * `Error **errp` out-parameters.
 *
 * `Error` (opaque, with its message, class, hint and creation site),
 * `error_abort`, `error_fatal` and the non-variadic functions come from
 * aioctx.h (src/ffi/error.rs); the variadic ones below are C shims
 * (src/c/variadic.c) that format their text and call into the library.
 * Semantics follow QEMU:
 *  - errp == NULL: the error is discarded;
 *  - errp == &error_abort: "Unexpected error in FUNC() at FILE:LINE:" (where
 *    the error was created), the message and its hint are printed, then
 *    abort(); an error the library made itself prints one line
 *    "aioctx: FUNCTION: message" instead;
 *  - errp == &error_fatal: the message and hint are printed (as
 *    error_report_err; a library error as "aioctx: FUNCTION: message"),
 *    then exit(1);
 *  - error_setg() into an errp that already holds an error is a bug and
 *    aborts (QEMU asserts), while error_propagate() keeps the first error.
 *
 * Hints (error_append_hint) belong to the Error: they follow it through
 * error_propagate / error_prepend / error_copy, are printed by
 * error_report_err() after the message and are freed with it. As in QEMU,
 * a hint to a NULL errp is dropped and one to &error_fatal aborts (use
 * ERRP_GUARD() to keep it).
 */
#ifndef AIOCTX_COMPAT_QAPI_ERROR_H
#define AIOCTX_COMPAT_QAPI_ERROR_H

#include <glib.h>
#include <stdarg.h>
#include <stdbool.h>
#include "aioctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* QEMU's QAPI error classes (values 0..4 as QEMU's). error_set() gives
 * an error its class, error_setg() & co. GENERIC_ERROR; error_get_class()
 * returns it, and error_prepend() / error_copy() keep it. */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
    ERROR_CLASS_KVM_MISSING_CAP,
    ERROR_CLASS__MAX,
} ErrorClass;

/* The class err was created with. */
ErrorClass error_get_class(const Error *err);

void error_setg_internal(Error **errp, const char *src, int line,
                         const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void error_setg_errno_internal(Error **errp, const char *src, int line,
                               const char *func, int os_errno,
                               const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void error_setg_file_open_internal(Error **errp, const char *src, int line,
                                   const char *func, int os_errno,
                                   const char *filename);
void error_set_internal(Error **errp, const char *src, int line,
                        const char *func, ErrorClass err_class,
                        const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Create a new error object and assign it to *errp (see the header). */
#define error_setg(errp, fmt, ...)                              \
    error_setg_internal((errp), __FILE__, __LINE__, __func__,   \
                        (fmt), ## __VA_ARGS__)
/* Like error_setg, with ": strerror(os_errno)" appended. */
#define error_setg_errno(errp, os_errno, fmt, ...)                      \
    error_setg_errno_internal((errp), __FILE__, __LINE__, __func__,     \
                              (os_errno), (fmt), ## __VA_ARGS__)
#define error_setg_file_open(errp, os_errno, filename)                  \
    error_setg_file_open_internal((errp), __FILE__, __LINE__, __func__, \
                                  (os_errno), (filename))
#define error_set(errp, err_class, fmt, ...)                            \
    error_set_internal((errp), __FILE__, __LINE__, __func__,            \
                       (err_class), (fmt), ## __VA_ARGS__)

/* A copy of err. */
Error *error_copy(const Error *err);

/*
 * Moves local_err into *dst_errp: NULL local_err does nothing; NULL
 * dst_errp frees it; &error_abort / &error_fatal report it and abort /
 * exit(1); if *dst_errp already holds an error, local_err is freed (the
 * first error wins).
 */
void error_propagate(Error **dst_errp, Error *local_err);
/* Like error_propagate, prefixing the message of local_err with fmt. */
void error_propagate_prepend(Error **dst_errp, Error *local_err,
                             const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the message of *errp (if errp and *errp are set) with fmt. */
void error_prepend(Error *const *errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void error_vprepend(Error *const *errp, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Append a hint, printed after the message by error_report_err. */
void error_append_hint(Error *const *errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Report err with error_report (warn_report) plus its hint, then free it. */
void error_report_err(Error *err);
void warn_report_err(Error *err);
/*
 * warn_report_err(err) if *printed is false, then sets it; else just frees
 * err. Returns true if it printed. warn_report_err_once(err) uses one flag
 * per call site.
 */
bool warn_report_err_once_cond(bool *printed, Error *err);
#define warn_report_err_once(err)                       \
    ({                                                  \
        static bool print_once_;                        \
        warn_report_err_once_cond(&print_once_, err);   \
    })
/* The same with the message prefixed by fmt. */
void error_reportf_err(Error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void warn_reportf_err(Error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Free *errp and set it to NULL; abort if there is no error there. */
void error_free_or_abort(Error **errp);

#ifdef __cplusplus
}
#endif

/*
 * ERRP_GUARD(): at the start of a function taking `Error **errp`, makes
 * errp safe to dereference (and hints survive &error_fatal): if errp is
 * NULL or &error_fatal, it is redirected to a local Error * that is
 * propagated to the original errp when the function returns.
 */
typedef struct ErrorPropagator {
    Error *local_err;
    Error **errp;
} ErrorPropagator;

static inline void error_propagator_cleanup(ErrorPropagator *prop)
{
    error_propagate(prop->errp, prop->local_err);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ErrorPropagator, error_propagator_cleanup)

#define ERRP_GUARD()                                            \
    g_auto(ErrorPropagator) _auto_errp_prop = {.errp = errp};   \
    do {                                                        \
        if (!errp || errp == &error_fatal) {                    \
            errp = &_auto_errp_prop.local_err;                  \
        }                                                       \
    } while (0)

/* Older name. */
#define ERRP_AUTO_PROPAGATE() ERRP_GUARD()

#endif /* AIOCTX_COMPAT_QAPI_ERROR_H */
