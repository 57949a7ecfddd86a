/*
 * The variadic and report-printing parts of QEMU's error API, which stable
 * Rust cannot define: qemu/error-report.h (error_report, warn_report,
 * info_report, error_printf, ...) and the C side of qapi/error.h
 * (error_setg, error_prepend, error_propagate, error_report_err, ...).
 *
 * Error objects themselves are Rust's (src/error.rs): created here with
 * aioctx_error_new(), freed with error_free(), read with error_get_pretty().
 * Compiled into the library by build.rs.
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qapi/error.h"
#include "internal.h"

/* ---------------------------------------------------------------- reports */

/* aioctx_c_fatal() with a printf-style problem. */
static void G_GNUC_PRINTF(2, 3) __attribute__((noreturn))
c_fatal(const char *func, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    char *problem = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    aioctx_c_fatal(func, problem);
}

/* The report prefix: g_get_prgname() if set, else the executable's name. */
static const char *report_progname(void)
{
    const char *name = g_get_prgname();

    return name ? name : program_invocation_short_name;
}

int error_vprintf(const char *fmt, va_list ap)
{
    return vfprintf(stderr, fmt, ap);
}

int error_printf(const char *fmt, ...)
{
    va_list ap;
    int ret;

    va_start(ap, fmt);
    ret = error_vprintf(fmt, ap);
    va_end(ap);
    return ret;
}

/* The time now, UTC, ISO 8601 with microseconds ("...T12:34:56.123456Z"). */
static char *real_time_iso8601(void)
{
    g_autoptr(GDateTime) dt = g_date_time_new_now_utc();

    return g_date_time_format_iso8601(dt);
}

/* QEMU's location prefix: "PROGNAME:" then the current location, ": ". */
static void append_location(GString *out)
{
    Location loc;
    const char *sep = " ";

    loc_save(&loc);
    g_string_append_printf(out, "%s:", report_progname());
    switch (loc.kind) {
    case LOC_CMDLINE: {
        char *const *argv = loc.ptr;
        for (int i = 0; i < loc.num; i++) {
            g_string_append_printf(out, "%s%s", sep, argv[i]);
        }
        g_string_append(out, ": ");
        break;
    }
    case LOC_FILE:
        g_string_append_printf(out, "%s:", (const char *)loc.ptr);
        if (loc.num) {
            g_string_append_printf(out, "%d:", loc.num);
        }
        g_string_append(out, " ");
        break;
    default:
        g_string_append(out, sep);
        break;
    }
}

/*
 * Formats [TIMESTAMP ][GUEST ]PROGNAME:LOCATION KIND + message + "\n" and
 * writes it with one stdio call, so that lines from several threads do not
 * interleave.
 */
static void vreport(const char *kind, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    GString *line = g_string_new(NULL);

    if (qatomic_read(&message_with_timestamp)) {
        g_autofree char *now = real_time_iso8601();
        g_string_append_printf(line, "%s ", now);
    }
    if (qatomic_read(&error_with_guestname)) {
        const char *guest = qatomic_read(&error_guest_name);
        if (guest) {
            g_string_append_printf(line, "%s ", guest);
        }
    }
    append_location(line);
    g_string_append_printf(line, "%s%s\n", kind, msg);
    fputs(line->str, stderr);
    fflush(stderr);
    g_string_free(line, true);
    errno = saved_errno;
}

void error_vreport(const char *fmt, va_list ap)
{
    vreport("", fmt, ap);
}

void warn_vreport(const char *fmt, va_list ap)
{
    vreport("warning: ", fmt, ap);
}

void info_vreport(const char *fmt, va_list ap)
{
    vreport("info: ", fmt, ap);
}

void error_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vreport(fmt, ap);
    va_end(ap);
}

void warn_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    warn_vreport(fmt, ap);
    va_end(ap);
}

void info_report(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    info_vreport(fmt, ap);
    va_end(ap);
}

bool error_report_once_cond(bool *printed, const char *fmt, ...)
{
    va_list ap;

    assert(printed);
    if (qatomic_xchg(printed, true)) {
        return false;
    }
    va_start(ap, fmt);
    error_vreport(fmt, ap);
    va_end(ap);
    return true;
}

bool warn_report_once_cond(bool *printed, const char *fmt, ...)
{
    va_list ap;

    assert(printed);
    if (qatomic_xchg(printed, true)) {
        return false;
    }
    va_start(ap, fmt);
    warn_vreport(fmt, ap);
    va_end(ap);
    return true;
}

void error_init(const char *argv0)
{
    const char *p = argv0 ? strrchr(argv0, '/') : NULL;

    if (argv0) {
        g_set_prgname(p ? p + 1 : argv0);
    }
}

/* ------------------------------------------------------------------ hints */

/*
 * Rust's Error has no room for a hint, so hints live in this side table,
 * keyed by the Error and the address of its message (both change whenever
 * an Error is replaced). Entries are dropped when C code frees or replaces
 * the error; an Error freed directly with error_free() leaves a stale entry,
 * which is recognized and discarded because its message no longer matches.
 */
typedef struct Hint {
    const Error *err;
    const char *msg_ptr;    /* error_get_pretty(err) when the hint was set */
    char *msg_copy;         /* its text then */
    GString *hint;
} Hint;

static pthread_mutex_t hint_lock = PTHREAD_MUTEX_INITIALIZER;
static GPtrArray *hints; /* of Hint *, under hint_lock */

static void hint_free(Hint *h)
{
    g_free(h->msg_copy);
    g_string_free(h->hint, true);
    g_free(h);
}

/* Index of err's entry (stale ones for the address are removed), or -1. */
static int hint_find_locked(const Error *err)
{
    for (guint i = 0; hints && i < hints->len; i++) {
        Hint *h = g_ptr_array_index(hints, i);
        if (h->err != err) {
            continue;
        }
        const char *msg = error_get_pretty(err);
        if (h->msg_ptr == msg && strcmp(h->msg_copy, msg) == 0) {
            return (int)i;
        }
        hint_free(g_ptr_array_steal_index_fast(hints, i));
        return -1;
    }
    return -1;
}

/* Removes and returns err's hint (caller frees), or NULL. */
static GString *hint_take(const Error *err)
{
    GString *ret = NULL;

    pthread_mutex_lock(&hint_lock);
    int i = hint_find_locked(err);
    if (i >= 0) {
        Hint *h = g_ptr_array_steal_index_fast(hints, (guint)i);
        ret = h->hint;
        h->hint = NULL;
        g_free(h->msg_copy);
        g_free(h);
    }
    pthread_mutex_unlock(&hint_lock);
    return ret;
}

static void hint_append(const Error *err, const char *text)
{
    pthread_mutex_lock(&hint_lock);
    int i = hint_find_locked(err);
    if (i >= 0) {
        Hint *h = g_ptr_array_index(hints, (guint)i);
        g_string_append(h->hint, text);
    } else {
        Hint *h = g_new0(Hint, 1);
        h->err = err;
        h->msg_ptr = error_get_pretty(err);
        h->msg_copy = g_strdup(h->msg_ptr);
        h->hint = g_string_new(text);
        if (!hints) {
            hints = g_ptr_array_new();
        }
        g_ptr_array_add(hints, h);
    }
    pthread_mutex_unlock(&hint_lock);
}

/* Frees err and its hint. */
static void error_free_with_hint(Error *err)
{
    if (err) {
        GString *hint = hint_take(err);
        if (hint) {
            g_string_free(hint, true);
        }
        error_free(err);
    }
}

/* ------------------------------------------------------------- reporting */

static void report_err(Error *err, bool warning)
{
    GString *hint = hint_take(err);

    if (warning) {
        warn_report("%s", error_get_pretty(err));
    } else {
        error_report("%s", error_get_pretty(err));
    }
    if (hint) {
        error_printf("%s", hint->str);
        g_string_free(hint, true);
    }
    error_free(err);
}

void error_report_err(Error *err)
{
    report_err(err, false);
}

void warn_report_err(Error *err)
{
    report_err(err, true);
}

bool warn_report_err_once_cond(bool *printed, Error *err)
{
    assert(printed);
    if (qatomic_xchg(printed, true)) {
        error_free_with_hint(err);
        return false;
    }
    warn_report_err(err);
    return true;
}

/* Replaces *errp with an error whose message is PREFIX + old message. */
static void error_replace_prefixed(Error **errp, const char *prefix)
{
    Error *old = *errp;
    GString *hint = hint_take(old);
    g_autofree char *msg = g_strconcat(prefix, error_get_pretty(old), NULL);

    *errp = aioctx_error_new_class(aioctx_error_class(old), msg);
    error_free(old);
    if (hint) {
        hint_append(*errp, hint->str);
        g_string_free(hint, true);
    }
}

void error_vprepend(Error *const *errp, const char *fmt, va_list ap)
{
    if (!errp || !*errp) {
        return;
    }
    g_autofree char *prefix = g_strdup_vprintf(fmt, ap);
    /* The Error ** itself is not const: errp points at the caller's slot. */
    error_replace_prefixed((Error **)errp, prefix);
}

void error_prepend(Error *const *errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vprepend(errp, fmt, ap);
    va_end(ap);
}

void error_reportf_err(Error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vprepend(&err, fmt, ap);
    va_end(ap);
    error_report_err(err);
}

void warn_reportf_err(Error *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vprepend(&err, fmt, ap);
    va_end(ap);
    warn_report_err(err);
}

void error_append_hint(Error *const *errp, const char *fmt, ...)
{
    va_list ap;
    int saved_errno = errno;

    if (!errp) {
        return;
    }
    if (errp == &error_fatal) {
        /* QEMU asserts: the hint would be lost; use ERRP_GUARD(). */
        c_fatal("error_append_hint", "errp is &error_fatal; "
                "use ERRP_GUARD() to keep hints");
    }
    if (!*errp) {
        c_fatal("error_append_hint", "errp holds no error");
    }
    va_start(ap, fmt);
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    hint_append(*errp, text);
    errno = saved_errno;
}

/* ------------------------------------------------------------ creating */

/*
 * Stores err into errp with QEMU's rules (see qapi/error.h). `func`, `src`
 * and `line` say where the error was created, for &error_abort's report.
 */
static void error_handle(Error **errp, Error *err, const char *src, int line,
                         const char *func)
{
    if (errp == &error_abort) {
        if (src) {
            fprintf(stderr, "Unexpected error in %s() at %s:%d:\n",
                    func, src, line);
        }
        GString *hint = hint_take(err);
        error_report("%s", error_get_pretty(err));
        if (hint) {
            error_printf("%s", hint->str);
        }
        abort();
    }
    if (errp == &error_fatal) {
        error_report_err(err);
        exit(1);
    }
    if (!errp) {
        error_free_with_hint(err);
    } else if (*errp) {
        error_free_with_hint(err);
    } else {
        *errp = err;
    }
}

static void error_setv(Error **errp, const char *src, int line,
                       const char *func, ErrorClass err_class,
                       const char *fmt, va_list ap, const char *suffix)
{
    int saved_errno = errno;

    if (!errp) {
        return;
    }
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    if (*errp && errp != &error_abort && errp != &error_fatal) {
        /* QEMU: assert(*errp == NULL). */
        c_fatal("error_setg", "errp already holds an error "
                "(\"%s\"); cannot also report \"%s\" (from %s() at %s:%d)",
                error_get_pretty(*errp), msg, func, src, line);
    }
    if (suffix) {
        char *with = g_strconcat(msg, ": ", suffix, NULL);
        g_free(msg);
        msg = with;
    }
    error_handle(errp, aioctx_error_new_class(err_class, msg), src, line,
                 func);
    errno = saved_errno;
}

void error_setg_internal(Error **errp, const char *src, int line,
                         const char *func, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, src, line, func, ERROR_CLASS_GENERIC_ERROR, fmt, ap,
               NULL);
    va_end(ap);
}

void error_set_internal(Error **errp, const char *src, int line,
                        const char *func, ErrorClass err_class,
                        const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_setv(errp, src, line, func, err_class, fmt, ap, NULL);
    va_end(ap);
}

void error_setg_errno_internal(Error **errp, const char *src, int line,
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

void error_setg_file_open_internal(Error **errp, const char *src, int line,
                                   const char *func, int os_errno,
                                   const char *filename)
{
    error_setg_errno_internal(errp, src, line, func, os_errno,
                              "Could not open '%s'", filename);
}

ErrorClass error_get_class(const Error *err)
{
    return (ErrorClass)aioctx_error_class(err);
}

Error *error_copy(const Error *err)
{
    Error *copy = aioctx_error_new_class(aioctx_error_class(err),
                                         error_get_pretty(err));

    pthread_mutex_lock(&hint_lock);
    int i = hint_find_locked(err);
    g_autofree char *hint = i >= 0 ?
        g_strdup(((Hint *)g_ptr_array_index(hints, (guint)i))->hint->str) :
        NULL;
    pthread_mutex_unlock(&hint_lock);
    if (hint) {
        hint_append(copy, hint);
    }
    return copy;
}

void error_propagate(Error **dst_errp, Error *local_err)
{
    if (!local_err) {
        return;
    }
    error_handle(dst_errp, local_err, NULL, 0, NULL);
}

void error_propagate_prepend(Error **dst_errp, Error *local_err,
                             const char *fmt, ...)
{
    va_list ap;

    if (dst_errp && !*dst_errp) {
        va_start(ap, fmt);
        error_vprepend(&local_err, fmt, ap);
        va_end(ap);
    }
    error_propagate(dst_errp, local_err);
}

void error_free_or_abort(Error **errp)
{
    if (!errp || !*errp) {
        c_fatal("error_free_or_abort", "no error");
    }
    error_free_with_hint(*errp);
    *errp = NULL;
}
