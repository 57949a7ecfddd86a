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

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml must parse");
    add_c_fn_types(&crate_dir, &mut config);
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

/// The file holding the `c_fn_types!` table (see there).
const C_FN_TYPES: &str = "src/ffi/boundary.rs";

/// QEMU's callback types are *function types*, used as `QEMUBHFunc *cb`,
/// which cbindgen cannot express: the Rust side uses unexported marker
/// structs, listed with their C typedefs in the one `c_fn_types!` table.
/// This writes each typedef (with its doc comment) after cbindgen.toml's
/// `after_includes` and keeps cbindgen from emitting the markers.
fn add_c_fn_types(crate_dir: &std::path::Path, config: &mut cbindgen::Config) {
    let path = crate_dir.join(C_FN_TYPES);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body = text
        .split_once("\nc_fn_types! {\n")
        .and_then(|(_, rest)| rest.split_once("\n}\n"))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("{C_FN_TYPES}: no `c_fn_types! {{ ... }}` table"));
    let mut typedefs = String::new();
    let mut doc = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_owned());
        } else if line.starts_with("//") || line.is_empty() {
            continue;
        } else {
            let marker = line.split("=>").next().unwrap_or_default().trim();
            // The C typedef is the entry's last string literal.
            let c = line
                .rsplit('"')
                .nth(1)
                .filter(|c| c.contains(&format!(" {marker}(")))
                .unwrap_or_else(|| {
                    panic!("{C_FN_TYPES}: entry without a C typedef of `{marker}`: {line}")
                });
            if doc.is_empty() {
                panic!("{C_FN_TYPES}: `{marker}` has no doc comment");
            }
            typedefs.push_str(&format!("/** {} */\ntypedef {c};\n", doc.join(" ")));
            doc.clear();
            config.export.exclude.push(marker.to_owned());
        }
    }
    let after = config.after_includes.get_or_insert_with(String::new);
    after.push_str(&typedefs);
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
