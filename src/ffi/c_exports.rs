//! The functions written in C (`src/c/variadic.c`: QEMU's variadic error
//! API, which stable Rust cannot define), exported under their QEMU names
//! by Rust trampolines.
//!
//! Why trampolines: rustc links the cdylib (`target/release/libaioctx.so`)
//! with its own version script, which exports the crate's `#[no_mangle]`
//! items and makes every other symbol local — the C objects' included
//! (GNU ld takes no second anonymous version script, and
//! `--export-dynamic-symbol` does not override `local: *`). So each C
//! function is defined as `aioctx_c_NAME` (declared in `src/c/internal.h`),
//! and `NAME` here is a naked function whose only instruction jumps there: a
//! tail jump leaves every argument register (and `%al`, the vector-register
//! count of a variadic call on x86_64) and the stack as the caller set them,
//! so C sees the caller's call. Being Rust items, the trampolines are in
//! rustc's export list for the cdylib and in the staticlib's Rust object,
//! and `scripts/build-shared-lib.sh` exports them as it does every
//! `#[no_mangle]` function.
//!
//! Their Rust signature, `unsafe extern "C" fn()`, is not the C one: Rust
//! never calls them. C code sees the compat headers' prototypes
//! (`qemu/error-report.h`, `qapi/error.h`), which `tests/header_abi.rs`
//! compares with the `aioctx_c_NAME` declarations of `internal.h`; cbindgen
//! does not expand macros, so `aioctx.h` does not declare them.
//!
//! Not here: the weak defaults of `src/c/block_hooks.c`
//! (`register_aiocontext`, `bdrv_aio_cancel`, ...). A trampoline is a
//! strong definition, and a program's own block layer must be able to
//! replace them when it links the static library; neither shared library
//! exports them (see `block_hooks.c`).

/// `NAME => aioctx_c_NAME;` for each function of `src/c/variadic.c`: an
/// exported `NAME` that tail-jumps to the C definition.
macro_rules! c_exports {
    ($($name:ident => $c_name:ident;)*) => {
        unsafe extern "C" {
            $(fn $c_name();)*
        }
        $(
            #[doc = concat!(
                "`", stringify!($name), "` of QEMU's error API: jumps to its C definition `",
                stringify!($c_name), "` (`src/c/variadic.c`)."
            )]
            ///
            /// # Safety
            ///
            /// Called from C only, with the compat header's prototype; this
            /// Rust signature is a placeholder.
            #[unsafe(naked)]
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name() {
                core::arch::naked_asm!(tail_jump!(), sym $c_name)
            }
        )*
    };
}

/// The one-instruction tail jump of a trampoline, per architecture. The
/// target is always linked into the same executable or library (the
/// shared libraries keep it local), so a direct branch reaches it.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
macro_rules! tail_jump {
    () => {
        "jmp {}"
    };
}
#[cfg(any(
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "loongarch64"
))]
macro_rules! tail_jump {
    () => {
        "b {}"
    };
}
#[cfg(any(target_arch = "riscv64", target_arch = "riscv32"))]
macro_rules! tail_jump {
    () => {
        "tail {}"
    };
}
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "loongarch64",
    target_arch = "riscv64",
    target_arch = "riscv32"
)))]
compile_error!(
    "src/ffi/c_exports.rs: no tail-jump instruction for this architecture; add one to `tail_jump!`"
);

c_exports! {
    error_vprintf => aioctx_c_error_vprintf;
    error_printf => aioctx_c_error_printf;
    error_vreport => aioctx_c_error_vreport;
    warn_vreport => aioctx_c_warn_vreport;
    info_vreport => aioctx_c_info_vreport;
    error_report => aioctx_c_error_report;
    warn_report => aioctx_c_warn_report;
    info_report => aioctx_c_info_report;
    error_report_once_cond => aioctx_c_error_report_once_cond;
    warn_report_once_cond => aioctx_c_warn_report_once_cond;
    error_vprepend => aioctx_c_error_vprepend;
    error_prepend => aioctx_c_error_prepend;
    error_reportf_err => aioctx_c_error_reportf_err;
    warn_reportf_err => aioctx_c_warn_reportf_err;
    error_append_hint => aioctx_c_error_append_hint;
    error_propagate_prepend => aioctx_c_error_propagate_prepend;
    error_setg_internal => aioctx_c_error_setg_internal;
    error_set_internal => aioctx_c_error_set_internal;
    error_setg_errno_internal => aioctx_c_error_setg_errno_internal;
    error_setg_file_open_internal => aioctx_c_error_setg_file_open_internal;
    error_get_class => aioctx_c_error_get_class;
}
