/*
 * aioctx compat: QEMU's qemu/error-report.h — human-readable reports on
 * stderr, one line each: "PROGNAME: message", "PROGNAME: warning: message",
 * "PROGNAME: info: message". PROGNAME is g_get_prgname() if the program set
 * one (QEMU's error_init(argv[0]) does), else the executable's short name.
 *
 * The functions are variadic, so they are written in C (src/c/variadic.c)
 * and compiled into the library.
 */
#ifndef AIOCTX_COMPAT_QEMU_ERROR_REPORT_H
#define AIOCTX_COMPAT_QEMU_ERROR_REPORT_H

#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

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
