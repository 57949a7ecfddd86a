/*
 * QEMU 10.2's error-report / Error binary interface (docs/spec/qemu-abi.md §3,
 * §5): Location's layout and the loc_* stack as error_report prints it,
 * message_with_timestamp / error_with_guestname, error classes,
 * warn_report_err_once.
 *
 * Output is checked in subprocesses (g_test_trap_subprocess) against the
 * exact stderr text.
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qapi/error.h"

#include "test-util.h"

#include <stddef.h>

/* ------------------------------------------------------------ layout */

static void test_location_layout(void)
{
    g_assert_cmpuint(sizeof(Location), ==, 24);
    g_assert_cmpuint(_Alignof(Location), ==, 8);
    g_assert_cmpuint(offsetof(Location, kind), ==, 0);
    g_assert_cmpuint(sizeof(((Location *)0)->kind), ==, 4);
    g_assert_cmpuint(offsetof(Location, num), ==, 4);
    g_assert_cmpuint(offsetof(Location, ptr), ==, 8);
    g_assert_cmpuint(offsetof(Location, prev), ==, 16);
    g_assert_cmpint(LOC_NONE, ==, 0);
    g_assert_cmpint(LOC_CMDLINE, ==, 1);
    g_assert_cmpint(LOC_FILE, ==, 2);

    /* 1-byte bools, zero-initialised. */
    g_assert_cmpuint(sizeof(message_with_timestamp), ==, 1);
    g_assert_cmpuint(sizeof(error_with_guestname), ==, 1);
    g_assert_false(message_with_timestamp);
    g_assert_false(error_with_guestname);
    g_assert_null(error_guest_name);
}

/* ------------------------------------------------------- loc_* stack */

static char *cmdline[] = { "prog", "-drive", "file=x", "-m", NULL };

static void location_reports(void)
{
    Location outer, inner, saved;

    error_init("/usr/bin/locprog");
    error_report("plain");

    g_assert_true(loc_push_none(&outer) == &outer);
    g_assert_cmpint(outer.kind, ==, LOC_NONE);
    g_assert_nonnull(outer.prev);
    error_report("pushed none");
    loc_set_file("cfg.ini", 12);
    error_report("bad key");
    warn_report("w");
    loc_set_file(NULL, 13); /* same file, new line */
    info_report("i");
    loc_set_file("f2", 0); /* no line */
    error_report("noline");

    g_assert_true(loc_save(&saved) == &saved);
    g_assert_null(saved.prev);
    g_assert_cmpint(saved.kind, ==, LOC_FILE);
    g_assert_cmpstr(saved.ptr, ==, "f2");

    loc_set_cmdline(cmdline, 1, 2);
    error_report("bad opt");

    loc_push_none(&inner);
    error_report("inner");
    g_assert_true(loc_pop(&inner) == &inner);
    g_assert_null(inner.prev);
    error_report("back");

    loc_restore(&saved);
    error_report("restored");

    /* A saved location can be pushed as it is. */
    g_assert_true(loc_push_restore(&saved) == &saved);
    loc_set_file(NULL, 7);
    Error *err = NULL;
    error_setg(&err, "from err");
    error_report_err(err);
    loc_pop(&saved);
    error_report("saved popped");

    loc_set_none();
    error_report("none");
    g_assert_true(loc_pop(&outer) == &outer);
    g_assert_null(outer.prev);
    error_report("bottom");
}

static void test_location_report(void)
{
    if (g_test_subprocess()) {
        location_reports();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("locprog: plain\n"
                              "locprog: pushed none\n"
                              "locprog:cfg.ini:12: bad key\n"
                              "locprog:cfg.ini:12: warning: w\n"
                              "locprog:cfg.ini:13: info: i\n"
                              "locprog:f2: noline\n"
                              "locprog: -drive file=x: bad opt\n"
                              "locprog: inner\n"
                              "locprog: -drive file=x: back\n"
                              "locprog:f2: restored\n"
                              "locprog:f2:7: from err\n"
                              "locprog:f2: saved popped\n"
                              "locprog: none\n"
                              "locprog: bottom\n");
}

/* The bottom location belongs to the library: set_* on it is allowed. */
static void test_location_bottom(void)
{
    if (g_test_subprocess()) {
        error_init("botprog");
        loc_set_file("top.cfg", 3);
        error_report("at bottom");
        loc_set_none();
        error_report("cleared");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("botprog:top.cfg:3: at bottom\n"
                              "botprog: cleared\n");
}

/* QEMU asserts on these; the library aborts with one line. */
static void test_location_misuse(void)
{
    if (g_test_subprocess()) {
        Location a, b;
        loc_push_none(&a);
        loc_push_none(&b);
        loc_pop(&a); /* not the top */
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr(
        "*aioctx: loc_pop: Location is not the current location\n*");
}

static void test_location_misuse_file(void)
{
    if (g_test_subprocess()) {
        loc_set_file(NULL, 1); /* no file to keep */
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: loc_set_file: fname is NULL and the "
                              "current location is not a file\n*");
}

static void test_location_misuse_push(void)
{
    if (g_test_subprocess()) {
        Location a;
        loc_push_none(&a);
        loc_push_restore(&a); /* already on the stack */
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: loc_push_restore: Location is already "
                              "on the stack (prev is set)\n*");
}

/* ------------------------------------------------ timestamp, guest name */

static void test_timestamp(void)
{
    if (g_test_subprocess()) {
        error_init("tsprog");
        error_report("before");
        message_with_timestamp = true;
        error_report("stamped");
        warn_report("stamped warning");
        error_guest_name = "guest1";
        error_report("no guest flag");
        error_with_guestname = true;
        loc_set_file("g.cfg", 2);
        error_report("with guest");
        message_with_timestamp = false;
        loc_set_none();
        error_report("guest only");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
#define TS "20\?\?-\?\?-\?\?T\?\?:\?\?:\?\?.\?\?\?\?\?\?Z "
    g_test_trap_assert_stderr("tsprog: before\n"
                              TS "tsprog: stamped\n"
                              TS "tsprog: warning: stamped warning\n"
                              TS "tsprog: no guest flag\n"
                              TS "guest1 tsprog:g.cfg:2: with guest\n"
                              "guest1 tsprog: guest only\n");
#undef TS
}

/* The timestamp is the current UTC time, to the minute (not checked when
 * the minute changes during the run). */
static void test_timestamp_now(void)
{
    if (g_test_subprocess()) {
        error_init("nowprog");
        message_with_timestamp = true;
        error_report("x");
        return;
    }
    g_autoptr(GDateTime) before = g_date_time_new_now_utc();
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_autoptr(GDateTime) after = g_date_time_new_now_utc();
    g_test_trap_assert_passed();
    g_autofree char *b = g_date_time_format(before, "%Y-%m-%dT%H:%M");
    g_autofree char *a = g_date_time_format(after, "%Y-%m-%dT%H:%M");
    g_autofree char *pb = g_strdup_printf("%s:\?\?.\?\?\?\?\?\?Z nowprog: x\n", b);
    if (strcmp(a, b) == 0) {
        g_test_trap_assert_stderr(pb);
    }
}

/* ------------------------------------------------------------- classes */

static void test_error_class(void)
{
    Error *err = NULL, *copy, *dst = NULL;

    g_assert_cmpint(ERROR_CLASS_GENERIC_ERROR, ==, 0);
    g_assert_cmpint(ERROR_CLASS_DEVICE_NOT_FOUND, ==, 3);
    g_assert_cmpint(ERROR_CLASS_KVM_MISSING_CAP, ==, 4);
    g_assert_cmpuint(sizeof(ErrorClass), ==, 4);

    error_set(&err, ERROR_CLASS_DEVICE_NOT_FOUND, "no device %s", "d0");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    g_assert_cmpstr(error_get_pretty(err), ==, "no device d0");

    /* Prepending, copying and propagating keep the class. */
    error_prepend(&err, "pre: ");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    g_assert_cmpstr(error_get_pretty(err), ==, "pre: no device d0");
    copy = error_copy(err);
    g_assert_cmpint(error_get_class(copy), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    error_free(copy);
    error_propagate_prepend(&dst, err, "outer: ");
    g_assert_cmpint(error_get_class(dst), ==, ERROR_CLASS_DEVICE_NOT_FOUND);
    g_assert_cmpstr(error_get_pretty(dst), ==, "outer: pre: no device d0");
    error_free(dst);

    for (int c = ERROR_CLASS_GENERIC_ERROR; c < ERROR_CLASS__MAX; c++) {
        err = NULL;
        error_set(&err, (ErrorClass)c, "class %d", c);
        g_assert_cmpint(error_get_class(err), ==, c);
        error_free(err);
    }

    err = NULL;
    error_setg(&err, "generic");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
    err = NULL;
    error_setg_errno(&err, ENOENT, "gone");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    error_free(err);
}

static void test_error_class_misuse(void)
{
    if (g_test_subprocess()) {
        Error *err = NULL;
        error_set(&err, ERROR_CLASS__MAX, "bad class");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: aioctx_error_new_class: error class 5 "
                              "is not an ErrorClass (0..5)\n*");
}

/* ------------------------------------------------ warn_report_err_once */

static bool warn_site(int i)
{
    Error *err = NULL;

    error_setg(&err, "site A %d", i);
    error_append_hint(&err, "hint %d\n", i);
    return warn_report_err_once(err);
}

static void test_warn_report_err_once(void)
{
    if (g_test_subprocess()) {
        error_init("onceprog");
        for (int i = 0; i < 3; i++) {
            bool printed = warn_site(i);
            g_assert_true(printed == (i == 0));
        }
        /* Another call site has its own flag. */
        Error *err = NULL;
        error_setg(&err, "site B");
        g_assert_true(warn_report_err_once(err));

        bool flag = false;
        err = NULL;
        error_setg(&err, "cond 1");
        g_assert_true(warn_report_err_once_cond(&flag, err));
        g_assert_true(flag);
        err = NULL;
        error_setg(&err, "cond 2");
        g_assert_false(warn_report_err_once_cond(&flag, err));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("onceprog: warning: site A 0\n"
                              "hint 0\n"
                              "onceprog: warning: site B\n"
                              "onceprog: warning: cond 1\n");
}

/* ------------------------------------------------------------- hints */

/* Hints live in the Error: they survive propagation, prefixing and
 * copying, are printed after the message, and go when the Error is freed. */
static void hint_reports(void)
{
    Error *local = NULL, *dst = NULL;

    error_init("hintprog");
    error_setg(&local, "lost %d", 1);
    error_append_hint(&local, "first ");
    error_append_hint(&local, "hint %s\n", "text");
    error_propagate(&dst, local);
    local = NULL;
    error_prepend(&dst, "pre: ");
    Error *copy = error_copy(dst);
    error_report_err(dst);
    warn_report_err(copy);

    /* A freed Error's hint does not leak into a new one, even one that
     * reuses its address and message. */
    for (int i = 0; i < 64; i++) {
        Error *a = NULL;
        error_setg(&a, "same");
        error_append_hint(&a, "stale hint\n");
        error_free(a);
    }
    Error *b = NULL;
    error_setg(&b, "same");
    error_report_err(b);

    /* The first error wins in error_propagate; its hint stays. */
    Error *first = NULL, *second = NULL;
    error_setg(&first, "first");
    error_append_hint(&first, "first's hint\n");
    error_setg(&second, "second");
    error_append_hint(&second, "second's hint\n");
    error_propagate(&first, second);
    error_free_or_abort(&first);
    g_assert_null(first);

    /* A hint to a NULL errp is dropped. */
    error_append_hint(NULL, "nowhere\n");
    error_report("end");
}

static void test_hint(void)
{
    if (g_test_subprocess()) {
        hint_reports();
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_passed();
    g_test_trap_assert_stderr("hintprog: pre: lost 1\n"
                              "first hint text\n"
                              "hintprog: warning: pre: lost 1\n"
                              "first hint text\n"
                              "hintprog: same\n"
                              "hintprog: end\n");
}

/* error_propagate into &error_fatal prints the hint, then exit(1). */
static void test_hint_fatal(void)
{
    if (g_test_subprocess()) {
        Error *local = NULL;
        error_init("fatalhint");
        error_setg(&local, "bad");
        error_append_hint(&local, "because\n");
        error_propagate(&error_fatal, local);
        fprintf(stderr, "not reached\n");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("fatalhint: bad\nbecause\n");
}

/* error_propagate into &error_abort names where the error was created
 * (QEMU records __func__/__FILE__/__LINE__ in the Error), then the hint. */
static void test_hint_abort(void)
{
    if (g_test_subprocess()) {
        Error *local = NULL;
        error_init("aborthint");
        error_setg(&local, "bad");
        error_append_hint(&local, "because\n");
        error_propagate(&error_abort, local);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("Unexpected error in test_hint_abort() at "
                              "*test-error.c:*:\naborthint: bad\nbecause\n");
}

/* QEMU asserts: a hint into &error_fatal would be lost (ERRP_GUARD). */
static void test_hint_misuse(void)
{
    if (g_test_subprocess()) {
        error_append_hint(&error_fatal, "lost\n");
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: error_append_hint: errp is "
                              "&error_fatal; use ERRP_GUARD() to keep hints\n*");
}

static void test_free_or_abort_misuse(void)
{
    if (g_test_subprocess()) {
        Error *none = NULL;
        error_free_or_abort(&none);
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*aioctx: error_free_or_abort: no error\n*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/error/location/layout", test_location_layout);
    g_test_add_func("/error/location/report", test_location_report);
    g_test_add_func("/error/location/bottom", test_location_bottom);
    g_test_add_func("/error/location/misuse-pop", test_location_misuse);
    g_test_add_func("/error/location/misuse-file", test_location_misuse_file);
    g_test_add_func("/error/location/misuse-push", test_location_misuse_push);
    g_test_add_func("/error/timestamp", test_timestamp);
    g_test_add_func("/error/timestamp-now", test_timestamp_now);
    g_test_add_func("/error/class", test_error_class);
    g_test_add_func("/error/class-misuse", test_error_class_misuse);
    g_test_add_func("/error/warn-report-err-once", test_warn_report_err_once);
    g_test_add_func("/error/hint/propagate-report-free", test_hint);
    g_test_add_func("/error/hint/fatal", test_hint_fatal);
    g_test_add_func("/error/hint/abort", test_hint_abort);
    g_test_add_func("/error/hint/misuse-fatal", test_hint_misuse);
    g_test_add_func("/error/free-or-abort/misuse", test_free_or_abort_misuse);
    return g_test_run();
}
