/*
 * The variadic functions of QEMU's error API, which stable Rust cannot
 * define: qemu/error-report.h (error_report, warn_report, info_report,
 * error_printf, ...) and qapi/error.h (error_setg, error_prepend,
 * error_append_hint, ...).
 *
 * Each is defined here as aioctx_c_NAME (declared in internal.h) and
 * exported as NAME by a Rust trampoline (src/ffi/c_exports.rs) that jumps
 * here with every argument register intact: rustc exports only Rust items
 * from the cdylib, so a C definition of NAME would be missing from
 * target/release/libaioctx.so.
 *
 * Each is a shim: it formats its va_list into a string and hands it to Rust
 * (src/ffi/report.rs, src/ffi/error_c.rs, declared in internal.h), where
 * the report format, the Error object (with its hint) and the errp rules
 * live. Shims keep errno, as QEMU's functions do. Compiled into the library
 * by build.rs.
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "internal.h"

enum { REPORT_ERROR, REPORT_WARNING, REPORT_INFO };

/* ---------------------------------------------------------------- reports */

int aioctx_c_error_vprintf(const char *fmt, va_list ap)
{
    return vfprintf(stderr, fmt, ap);
}

int aioctx_c_error_printf(const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = aioctx_c_error_vprintf(fmt, ap);
    va_end(ap);
    return ret;
}

static void vreport(int kind, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);

    aioctx_report(kind, msg);
    errno = saved_errno;
}

void aioctx_c_error_vreport(const char *fmt, va_list ap)
{
    vreport(REPORT_ERROR, fmt, ap);
}

void aioctx_c_warn_vreport(const char *fmt, va_list ap)
{
    vreport(REPORT_WARNING, fmt, ap);
}

void aioctx_c_info_vreport(const char *fmt, va_list ap)
{
    vreport(REPORT_INFO, fmt, ap);
}

void aioctx_c_error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_error_vreport(fmt, ap);
    va_end(ap);
}

void aioctx_c_warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_warn_vreport(fmt, ap);
    va_end(ap);
}

void aioctx_c_info_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_info_vreport(fmt, ap);
    va_end(ap);
}

static bool vreport_once(bool *printed, int kind, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    bool ret = aioctx_report_once(printed, kind, msg);

    errno = saved_errno;
    return ret;
}

bool aioctx_c_error_report_once_cond(bool *printed, const char *fmt, ...)
{
    va_list ap;
    bool ret;

    va_start(ap, fmt);
    ret = vreport_once(printed, REPORT_ERROR, fmt, ap);
    va_end(ap);
    return ret;
}

bool aioctx_c_warn_report_once_cond(bool *printed, const char *fmt, ...)
{
    va_list ap;
    bool ret;

    va_start(ap, fmt);
    ret = vreport_once(printed, REPORT_WARNING, fmt, ap);
    va_end(ap);
    return ret;
}

/* ------------------------------------------------------------ qapi/error.h */

void aioctx_c_error_vprepend(Error *const *errp, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    g_autofree char *prefix = g_strdup_vprintf(fmt, ap);

    aioctx_error_prepend(errp, prefix);
    errno = saved_errno;
}

void aioctx_c_error_prepend(Error *const *errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_error_vprepend(errp, fmt, ap);
    va_end(ap);
}

void aioctx_c_error_reportf_err(Error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_error_vprepend(&err, fmt, ap);
    va_end(ap);
    error_report_err(err);
}

void aioctx_c_warn_reportf_err(Error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    aioctx_c_error_vprepend(&err, fmt, ap);
    va_end(ap);
    warn_report_err(err);
}

void aioctx_c_error_append_hint(Error *const *errp, const char *fmt, ...)
{
    va_list ap;
    int saved_errno = errno;

    va_start(ap, fmt);
    g_autofree char *hint = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    aioctx_error_append_hint(errp, hint);
    errno = saved_errno;
}

void aioctx_c_error_propagate_prepend(Error **dst_errp, Error *local_err,
                                      const char *fmt, ...)
{
    va_list ap;
    int saved_errno = errno;

    va_start(ap, fmt);
    g_autofree char *prefix = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    aioctx_error_propagate_prepend(dst_errp, local_err, prefix);
    errno = saved_errno;
}

/* The message (with ": suffix" if suffix is set) into a new Error. */
static void error_setv(Error **errp, const char *src, int line,
                       const char *func, ErrorClass err_class,
                       const char *fmt, va_list ap, const char *suffix)
{
    int saved_errno = errno;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);

    if (suffix) {
        char *with = g_strconcat(msg, ": ", suffix, NULL);
        g_free(msg);
        msg = with;
    }
    aioctx_error_set(errp, aioctx_error_new_class(err_class, msg), src, line,
                     func);
    errno = saved_errno;
}

void aioctx_c_error_setg_internal(Error **errp, const char *src, int line,
                                  const char *func, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, src, line, func, ERROR_CLASS_GENERIC_ERROR, fmt, ap,
               NULL);
    va_end(ap);
}

void aioctx_c_error_set_internal(Error **errp, const char *src, int line,
                                 const char *func, ErrorClass err_class,
                                 const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, src, line, func, err_class, fmt, ap, NULL);
    va_end(ap);
}

void aioctx_c_error_setg_errno_internal(Error **errp, const char *src, int line,
                                        const char *func, int os_errno,
                                        const char *fmt, ...)
{
    va_list ap;
    int saved_errno = errno;

    va_start(ap, fmt);
    error_setv(errp, src, line, func, ERROR_CLASS_GENERIC_ERROR, fmt, ap,
               os_errno != 0 ? strerror(os_errno) : NULL);
    va_end(ap);
    errno = saved_errno;
}

/* Not variadic, but a shim all the same: it only supplies the format. */
void aioctx_c_error_setg_file_open_internal(Error **errp, const char *src,
                                            int line, const char *func,
                                            int os_errno, const char *filename)
{
    aioctx_c_error_setg_errno_internal(errp, src, line, func, os_errno,
                                       "Could not open '%s'", filename);
}

/* Not variadic: gives Rust's int class QEMU's enum return type. */
ErrorClass aioctx_c_error_get_class(const Error *err)
{
    return (ErrorClass)aioctx_error_class(err);
}
