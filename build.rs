//! Generates `include/aioctx.h` with cbindgen from the `extern "C"` functions
//! in `src/ffi/` and the `#[repr(C)]` types they use.
//!
//! The header is committed. It is rewritten only when its bytes change, so
//! builds do not touch its mtime needlessly. `make check-header` sets
//! `AIOCTX_HEADER_OUT` to write a fresh copy elsewhere and compares bytes.

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
}
