/*
 * Linked against cargo's cdylib (target/release/libaioctx.so) by
 * scripts/check-cdylib-exports.sh: calls functions written in C
 * (src/c/variadic.c, exported by the Rust trampolines of
 * src/ffi/c_exports.rs), with integer, string and floating-point varargs
 * (a double travels in %xmm0, counted by %al on x86_64), and one written in
 * Rust. The script compares stderr with the expected lines.
 */
#include <stdio.h>
#include <stdlib.h>
#include "qemu/error-report.h"
#include "qapi/error.h"

int main(void)
{
    Error *err = NULL;

    error_setg(&err, "setg %d", 7);
    error_prepend(&err, "prefix %s: ", "p");
    error_append_hint(&err, "hint %.2f\n", 0.25);
    if (error_get_class(err) != ERROR_CLASS_GENERIC_ERROR) {
        fprintf(stderr, "error_get_class: not ERROR_CLASS_GENERIC_ERROR\n");
        return EXIT_FAILURE;
    }
    error_report_err(err);
    error_report("report %s %d %.1f", "s", 42, 1.5);
    warn_report("warn %lld", 1LL << 40);
    error_printf("printf %c\n", 'x');
    return EXIT_SUCCESS;
}
