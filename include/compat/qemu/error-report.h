/*
 * aioctx compat: QEMU's qemu/error-report.h — human-readable reports on
 * stderr, one line each: "PROGNAME: message", "PROGNAME: warning: message",
 * "PROGNAME: info: message". PROGNAME is g_get_prgname() if the program set
 * one (QEMU's error_init(argv[0]) does), else the executable's short name.
 *
 * With a current location (loc_set_file, loc_set_cmdline; see below), the
 * prefix names it as QEMU does: "PROGNAME:FILE:LINE: message",
 * "PROGNAME: ARG ARG: message". With message_with_timestamp set, each line
 * starts with the UTC time in ISO 8601 and a space; with
 * error_with_guestname set and error_guest_name non-NULL, the guest name
 * and a space follow.
 *
 * The variadic report functions are C shims (src/c/variadic.c) that format
 * the message and call the library's report (src/ffi/report.rs); the
 * location stack and the flags are Rust's (src/ffi/location.rs), declared
 * in aioctx.h.
 */
#ifndef AIOCTX_COMPAT_QEMU_ERROR_REPORT_H
#define AIOCTX_COMPAT_QEMU_ERROR_REPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include "aioctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * QEMU's error location, on a process-wide stack linked through prev (its
 * bottom is a static LOC_NONE location). Members are private to the loc_*
 * functions; the layout is QEMU's (24 bytes: kind 0, num 4, ptr 8, prev 16).
 *   loc_push_none(&loc) ... loc_set_file(name, line) ... loc_pop(&loc);
 *   loc_save(&saved) ... loc_restore(&saved);
 * Location, loc_* and the flags below are declared in aioctx.h.
 */
typedef struct Location {
    enum { LOC_NONE, LOC_CMDLINE, LOC_FILE } kind;
    int num;
    const void *ptr;
    struct Location *prev;
} Location;

/* Prints to stderr without a prefix or newline; returns the byte count. */
int error_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
int error_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void error_vreport(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void warn_vreport(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void info_vreport(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

void error_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void info_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports only if *printed is false, then sets it; returns true if printed. */
bool error_report_once_cond(bool *printed, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
bool warn_report_once_cond(bool *printed, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets the program name used as the prefix to basename(argv0). */
void error_init(const char *argv0);

#ifdef __cplusplus
}
#endif

/* Report an error (a warning) only the first time this call site runs. */
#define error_report_once(fmt, ...)                     \
    ({                                                  \
        static bool print_once_;                        \
        error_report_once_cond(&print_once_,            \
                               fmt, ##__VA_ARGS__);     \
    })

#define warn_report_once(fmt, ...)                      \
    ({                                                  \
        static bool print_once_;                        \
        warn_report_once_cond(&print_once_,             \
                              fmt, ##__VA_ARGS__);      \
    })

#endif /* AIOCTX_COMPAT_QEMU_ERROR_REPORT_H */
