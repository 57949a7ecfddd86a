/*
 * Functions the library exports for its own C code (src/c/) only: not
 * part of aioctx.h (cbindgen.toml excludes them), declared here by hand and
 * checked against the Rust definitions by tests/header_abi.rs.
 */
#ifndef AIOCTX_C_INTERNAL_H
#define AIOCTX_C_INTERNAL_H

/*
 * The library's fatal report (src/ffi/error_c.rs): "aioctx: FUNC: PROBLEM"
 * through the Rust path, so that only the first fatal report of the
 * process prints, then abort().
 */
__attribute__((noreturn)) void aioctx_c_fatal(const char *func, const char *problem);

#endif
