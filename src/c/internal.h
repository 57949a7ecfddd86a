/*
 * Functions the library exports for its own C code (src/c/) only: not
 * part of aioctx.h (cbindgen.toml excludes them), declared here by hand and
 * checked against the Rust definitions by tests/header_abi.rs.
 *
 * They are the Rust ends of the va_list shims in variadic.c: each takes the
 * text the shim formatted (a NUL-terminated string the callee copies).
 */
#ifndef AIOCTX_C_INTERNAL_H
#define AIOCTX_C_INTERNAL_H

#include <stdbool.h>
#include "aioctx.h"

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

#endif
