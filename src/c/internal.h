/*
 * The library's internal C interface, declared by hand and checked by
 * tests/header_abi.rs; none of it is part of aioctx.h.
 *
 * First, functions the library exports for its own C code (src/c/) only
 * (cbindgen.toml excludes them): the Rust ends of the va_list shims in
 * variadic.c, each taking the text the shim formatted (a NUL-terminated
 * string the callee copies). Then the shims themselves (see below).
 */
#ifndef AIOCTX_C_INTERNAL_H
#define AIOCTX_C_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include "aioctx.h"
#include "qapi/error.h"

/* src/ffi/report.rs: one report line; kind 0 error, 1 warning, 2 info. */
void aioctx_report(int kind, const char *msg);
/* aioctx_report if *printed is false, which it then sets; true if printed. */
bool aioctx_report_once(bool *printed, int kind, const char *msg);

/*
 * src/ffi/error_c.rs. error_setg & co.: err (from aioctx_error_new_class)
 * records the call site and goes through errp with QEMU's rules.
 */
void aioctx_error_set(Error **errp, Error *err, const char *src, int line,
                      const char *func);
/* error_prepend: prefix the message of *errp (if errp and *errp are set). */
void aioctx_error_prepend(Error *const *errp, const char *prefix);
/* error_append_hint: append to the hint of *errp. */
void aioctx_error_append_hint(Error *const *errp, const char *hint);
/* error_propagate_prepend: prefix err if *dst_errp can take it, propagate. */
void aioctx_error_propagate_prepend(Error **dst_errp, Error *err,
                                    const char *prefix);

/*
 * variadic.c: the C definitions of QEMU's error functions. Each
 * aioctx_c_NAME is exported as NAME by a Rust trampoline (the table in
 * src/ffi/c_exports.rs), so its prototype is NAME's in the compat headers
 * (qemu/error-report.h, qapi/error.h; tests/header_abi.rs compares them).
 * Not hidden, so that tests/header_abi.rs (bindgen skips hidden functions)
 * sees them; both shared libraries keep them local all the same.
 */
int aioctx_c_error_vprintf(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
int aioctx_c_error_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void aioctx_c_error_vreport(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
void aioctx_c_warn_vreport(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
void aioctx_c_info_vreport(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
void aioctx_c_error_report(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void aioctx_c_warn_report(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void aioctx_c_info_report(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
bool aioctx_c_error_report_once_cond(bool *printed, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool aioctx_c_warn_report_once_cond(bool *printed, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void aioctx_c_error_vprepend(Error *const *errp, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void aioctx_c_error_prepend(Error *const *errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aioctx_c_error_reportf_err(Error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aioctx_c_warn_reportf_err(Error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aioctx_c_error_append_hint(Error *const *errp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aioctx_c_error_propagate_prepend(Error **dst_errp, Error *local_err,
                                      const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void aioctx_c_error_setg_internal(Error **errp, const char *src, int line,
                                  const char *func, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void aioctx_c_error_set_internal(Error **errp, const char *src, int line,
                                 const char *func, ErrorClass err_class,
                                 const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void aioctx_c_error_setg_errno_internal(Error **errp, const char *src,
                                        int line, const char *func,
                                        int os_errno, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void aioctx_c_error_setg_file_open_internal(Error **errp, const char *src,
                                            int line, const char *func,
                                            int os_errno,
                                            const char *filename);
ErrorClass aioctx_c_error_get_class(const Error *err);

#endif
