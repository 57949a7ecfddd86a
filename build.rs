//! Generates `include/aioctx.h` with cbindgen from the `extern "C"` functions
//! in `src/ffi/` and the `#[repr(C)]` types they use.
//!
//! The header is committed. It is rewritten only when its bytes change, so
//! builds do not touch its mtime needlessly. `make check-header` sets
//! `AIOCTX_HEADER_OUT` to write a fresh copy elsewhere and compares bytes.
//!
//! Then compiles the C-only pieces (`src/c/*.c`: the variadic functions and
//! the RCU implementation behind the compat headers) with `cc` into the same
//! library. They include the compat headers, hence GLib's cflags.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=AIOCTX_HEADER_OUT");

    let out = env::var_os("AIOCTX_HEADER_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("include").join("aioctx.h"));

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml must parse");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(&out);
        }
        Err(e) => panic!("cbindgen failed to generate {}: {e}", out.display()),
    }

    build_c_sources(&crate_dir);
}

/// The C files compiled into the library, relative to the crate root.
const C_SOURCES: &[&str] = &["src/c/variadic.c", "src/c/block_hooks.c"];

fn build_c_sources(crate_dir: &std::path::Path) {
    println!("cargo:rerun-if-changed=include/compat");
    let glib = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("glib-2.0")
        .unwrap_or_else(|e| panic!("GLib's development files are needed (libglib2.0-dev): {e}"));

    let mut build = cc::Build::new();
    build
        .std("gnu11")
        .warnings(true)
        .extra_warnings(true)
        .include(crate_dir.join("include").join("compat"))
        .include(crate_dir.join("include"))
        .includes(&glib.include_paths);
    for src in C_SOURCES {
        build.file(crate_dir.join(src));
    }
    build.compile("aioctx_c");
}
