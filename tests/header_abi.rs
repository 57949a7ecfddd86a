//! The generated C header (`include/aioctx.h`) must describe exactly what the
//! library exports.
//!
//! bindgen (libclang) reads the header as a C compiler does and turns it into
//! Rust declarations; `syn` parses those and the crate's own sources. Then:
//!
//! - every `#[unsafe(no_mangle)] extern "C" fn` (in `src/ffi/`) and
//!   exported `static` (in the core module that owns the data object) is
//!   declared in the header with the same parameter count, parameter types,
//!   return type and mutability, and every function the header declares is
//!   defined (in `src/ffi/`, or in a C source under `src/`); no other module
//!   exports a function;
//! - types are compared by ABI shape: C `int` and Rust `c_int`/`i32` are
//!   both `i32`, `T *` / `const T *` must match `*mut T` / `*const T`, and
//!   QEMU's function-type typedefs (`typedef void QEMUBHFunc(void *);` used
//!   as `QEMUBHFunc *cb`, which bindgen renders as
//!   `Option<unsafe extern "C" fn(*mut c_void)>`) match the Rust marker
//!   pointer `*mut QEMUBHFunc`, provided the Rust side converts that marker
//!   (an entry `QEMUBHFunc => F` of `c_fn_types!` in `src/ffi/boundary.rs`,
//!   or `transmute::<*mut QEMUBHFunc, F>`) into a function type `F` with the
//!   same signature as the C typedef;
//! - every function written in C and exported by a Rust trampoline (an
//!   entry `NAME => aioctx_c_NAME;` of `c_exports!` in
//!   `src/ffi/c_exports.rs`) is declared in the compat headers of QEMU's
//!   error API (`qemu/error-report.h`, `qapi/error.h`) with the signature
//!   `src/c/internal.h` gives its C definition `aioctx_c_NAME`, and every
//!   function those compat headers declare is exported (by `src/ffi/` or a
//!   trampoline);
//! - every complete struct/union of the header has a `#[repr(C)]` Rust
//!   definition with the same fields (names, order, types), and the same
//!   size, alignment and field offsets as computed by clang; every enum has
//!   the same variants and values.
//!
//! Everything is discovered from the header and the sources, so new
//! functions, statics, structs and enums are covered without editing this
//! file — except that the runtime layout of a new struct needs one line in
//! [`rust_layouts`] (`offset_of!` needs the type and field names at compile
//! time); the test fails and says so when one is missing.
//!
//! The header is the one `cargo test` just regenerated through build.rs
//! (the library is built before this test). If `AIOCTX_HEADER_OUT` is set,
//! build.rs writes there instead, and so this test reads that file.
//! `AIOCTX_ABI_HEADER=path` checks another header (e.g. a hand-edited copy).
//!
//! `checker_detects_mismatches` mutates copies of the header to prove the
//! comparison can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use syn::visit::Visit;
use syn::{Expr, FnArg, Item, Lit, ReturnType, Type};

// ---------------------------------------------------------------------------
// Runtime layouts of the Rust types that C sees by value.

struct RustLayout {
    name: &'static str,
    size: usize,
    align: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! layouts {
    ($($name:ident => $ty:ty { $($field:ident),* $(,)? }),* $(,)?) => {
        vec![$(RustLayout {
            name: stringify!($name),
            size: std::mem::size_of::<$ty>(),
            align: std::mem::align_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }),*]
    };
}

/// One line per complete struct of the header. The test fails, naming the
/// struct, if the header gains one that is not listed here, or if the field
/// list differs from the header's.
fn rust_layouts() -> Vec<RustLayout> {
    layouts! {
        MemReentrancyGuard => aioctx::ffi::types::MemReentrancyGuard { engaged_in_io },
        EventNotifier => aioctx::ffi::types::EventNotifier { rfd, wfd, initialized },
        AioWait => aioctx::ffi::wait::AioWait { num_waiters },
        QEMUTimer => aioctx::ffi::timer::QEMUTimer {
            expire_time, timer_list, cb, opaque, heap_index, magic, attributes, scale,
        },
        QEMUTimerListGroup => aioctx::ffi::timer::QEMUTimerListGroup { tl },
        QemuMutex => aioctx::ffi::sync::QemuMutex { lock, initialized, owner },
        QemuRecMutex => aioctx::ffi::sync::QemuRecMutex { m },
        QemuCond => aioctx::ffi::sync::QemuCond { cond, initialized },
        QemuSemaphore => aioctx::ffi::sync::QemuSemaphore { mutex, cond, count },
        QemuEvent => aioctx::ffi::sync::QemuEvent { value, initialized },
        QemuThread => aioctx::ffi::sync::QemuThread { thread },
        QemuLockCnt => aioctx::ffi::lockcnt::QemuLockCnt { count },
        CoMutex => aioctx::ffi::coroutine::CoMutex {
            locked, wait_lock, ctx, waiters_head, waiters_tail, handoff, reserved, holder,
        },
        CoQueue => aioctx::ffi::coroutine::CoQueue { first, last },
        CoRwlock => aioctx::ffi::coroutine::CoRwlock { mutex, owners, tickets_first, tickets_last },
        QemuCoSleep => aioctx::ffi::coroutine::QemuCoSleep { to_wake },
        AIOCBInfo => aioctx::ffi::thread_pool::AIOCBInfo { cancel_async, aiocb_size },
        BlockAIOCB => aioctx::ffi::thread_pool::BlockAIOCB { aiocb_info, bs, cb, opaque, refcnt },
        FDMonOps => aioctx::ffi::types::FDMonOps { internal, add_sqe },
        CqeHandler => aioctx::ffi::types::CqeHandler { cb, next, cqe },
        CqeHandlerEntry => aioctx::ffi::types::CqeHandlerEntry { sqe_next },
        AioctxCqe => aioctx::ffi::types::AioctxCqe { user_data, res, flags },
        AioctxStats => aioctx::ffi::types::AioctxStats {
            size, iterations, bhs_run, fd_callbacks, notifier_callbacks, timers_fired,
            notify_writes, notify_elided, blocked_ns, poll_hits, poll_misses, poll_window_ns,
        },
    }
}

// ---------------------------------------------------------------------------
// Models of both sides.

#[derive(Clone)]
struct Sig {
    params: Vec<(String, Type)>,
    ret: Option<Type>,
    variadic: bool,
}

#[derive(Clone)]
struct Static {
    mutable: bool,
    ty: Type,
}

#[derive(Default)]
struct Layout {
    size: Option<usize>,
    align: Option<usize>,
    offsets: BTreeMap<String, usize>,
}

/// What the header says, as bindgen understood it.
#[derive(Default)]
struct HeaderModel {
    fns: BTreeMap<String, Sig>,
    statics: BTreeMap<String, Static>,
    aliases: BTreeMap<String, Type>,
    /// Complete and opaque structs/unions with their fields (opaque ones
    /// have bindgen's single `_unused` field).
    structs: BTreeMap<String, Vec<(String, Type)>>,
    enums: BTreeMap<String, Vec<(String, i128)>>,
    /// From bindgen's layout assertions: only complete types have them.
    layouts: BTreeMap<String, Layout>,
}

type RustEnum = (Vec<String>, Vec<(String, i128)>);

/// What the Rust sources say.
#[derive(Default)]
struct RustModel {
    /// Exported functions: C name -> (file, signature).
    fns: BTreeMap<String, (PathBuf, Sig)>,
    statics: BTreeMap<String, (PathBuf, Static)>,
    aliases: BTreeMap<String, Type>,
    /// Every struct name defined anywhere in src/ (markers included).
    struct_names: BTreeSet<String>,
    /// `#[repr(C)]` structs/unions: name -> fields.
    repr_c_structs: BTreeMap<String, Vec<(String, Type)>>,
    /// `#[repr(transparent)]` structs: name -> the wrapped type.
    transparent: BTreeMap<String, Type>,
    /// name -> (`#[repr(..)]` words, variants with values).
    enums: BTreeMap<String, RustEnum>,
    /// `transmute::<A, B>` turbofish pairs in src/ffi/.
    transmutes: Vec<(Type, Type)>,
    /// The trampolines of `c_exports!`: (exported name, C definition, file).
    c_exports: Vec<(String, String, PathBuf)>,
    /// Problems found while collecting (bad ABI, export outside src/ffi, ...).
    problems: Vec<String>,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn header_path() -> PathBuf {
    // A header to check instead (for experiments: a hand-edited copy).
    if let Some(p) = std::env::var_os("AIOCTX_ABI_HEADER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("AIOCTX_HEADER_OUT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => manifest_dir().join("include").join("aioctx.h"),
    }
}

// ---------------------------------------------------------------------------
// Header side: bindgen -> syn.

fn run_bindgen(header: &Path) -> String {
    run_bindgen_with(header, &[])
}

/// bindgen over `header` (only what that file declares), with extra clang
/// arguments (include paths of a compat header).
fn run_bindgen_with(header: &Path, clang_args: &[String]) -> String {
    assert!(header.exists(), "{} does not exist", header.display());
    let file_name = header
        .file_name()
        .expect("header has a file name")
        .to_string_lossy()
        .into_owned();
    bindgen::Builder::default()
        .header(header.to_string_lossy())
        // Only what this header declares; system typedefs it uses are
        // still resolved (int64_t -> i64, ...).
        .allowlist_file(format!(".*/{}", regex_escape(&file_name)))
        // ... and not the system types those items use (pthread_mutex_t,
        // GLib's structs): they are compared by name, and their sizes are
        // part of the layouts of the structs that embed them.
        .allowlist_recursively(false)
        .rustified_enum(".*")
        .layout_tests(true)
        .generate_comments(false)
        .derive_debug(false)
        .derive_copy(false)
        .clang_arg("-std=gnu11")
        .clang_args(clang_args)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen failed on {}: {e}", header.display()))
        .to_string()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

fn header_model(bindgen_out: &str) -> HeaderModel {
    let file = syn::parse_file(bindgen_out).expect("bindgen output parses");
    let mut m = HeaderModel::default();
    for item in file.items {
        match item {
            Item::Type(t) => {
                m.aliases.insert(t.ident.to_string(), *t.ty);
            }
            Item::Struct(s) => {
                m.structs
                    .insert(s.ident.to_string(), named_fields(&s.fields));
            }
            Item::Union(u) => {
                let fields = u
                    .fields
                    .named
                    .iter()
                    .map(|f| (f.ident.as_ref().unwrap().to_string(), f.ty.clone()))
                    .collect();
                m.structs.insert(u.ident.to_string(), fields);
            }
            Item::Enum(e) => {
                m.enums.insert(e.ident.to_string(), enum_values(&e));
            }
            Item::Const(c) if c.ident == "_" => parse_layout_asserts(&c.expr, &mut m.layouts),
            Item::ForeignMod(fm) => {
                for fi in fm.items {
                    match fi {
                        syn::ForeignItem::Fn(f) => {
                            m.fns.insert(f.sig.ident.to_string(), sig_of(&f.sig));
                        }
                        syn::ForeignItem::Static(s) => {
                            m.statics.insert(
                                s.ident.to_string(),
                                Static {
                                    mutable: matches!(s.mutability, syn::StaticMutability::Mut(_)),
                                    ty: *s.ty,
                                },
                            );
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    m
}

fn named_fields(fields: &syn::Fields) -> Vec<(String, Type)> {
    match fields {
        syn::Fields::Named(n) => n
            .named
            .iter()
            .map(|f| (f.ident.as_ref().unwrap().to_string(), f.ty.clone()))
            .collect(),
        syn::Fields::Unnamed(u) => u
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (i.to_string(), f.ty.clone()))
            .collect(),
        syn::Fields::Unit => Vec::new(),
    }
}

fn int_expr(e: &Expr) -> Option<i128> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<i128>().ok(),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => int_expr(&u.expr).map(|v| -v),
        Expr::Paren(p) => int_expr(&p.expr),
        Expr::Group(g) => int_expr(&g.expr),
        Expr::Cast(c) => int_expr(&c.expr),
        _ => None,
    }
}

fn enum_values(e: &syn::ItemEnum) -> Vec<(String, i128)> {
    let mut next = 0i128;
    e.variants
        .iter()
        .map(|v| {
            let value = match &v.discriminant {
                Some((_, expr)) => int_expr(expr).unwrap_or(i128::MIN),
                None => next,
            };
            next = value.wrapping_add(1);
            (v.ident.to_string(), value)
        })
        .collect()
}

/// bindgen emits, per complete type,
/// `const _: () = { ["Size of X"][size_of::<X>() - 12usize]; ... };`.
fn parse_layout_asserts(expr: &Expr, layouts: &mut BTreeMap<String, Layout>) {
    let Expr::Block(block) = expr else { return };
    for stmt in &block.block.stmts {
        let syn::Stmt::Expr(Expr::Index(idx), _) = stmt else {
            continue;
        };
        let Expr::Array(label) = &*idx.expr else {
            continue;
        };
        let Some(Expr::Lit(syn::ExprLit {
            lit: Lit::Str(label),
            ..
        })) = label.elems.first()
        else {
            continue;
        };
        let Expr::Binary(bin) = &*idx.index else {
            continue;
        };
        let Some(value) = int_expr(&bin.right) else {
            continue;
        };
        let value = usize::try_from(value).expect("layout values are non-negative");
        let label = label.value();
        if let Some(name) = label.strip_prefix("Size of ") {
            layouts.entry(name.to_string()).or_default().size = Some(value);
        } else if let Some(name) = label.strip_prefix("Alignment of ") {
            layouts.entry(name.to_string()).or_default().align = Some(value);
        } else if let Some(rest) = label.strip_prefix("Offset of field: ") {
            let (name, field) = rest.split_once("::").expect("X::field");
            layouts
                .entry(name.to_string())
                .or_default()
                .offsets
                .insert(field.to_string(), value);
        }
    }
}

fn sig_of(sig: &syn::Signature) -> Sig {
    let params = sig
        .inputs
        .iter()
        .map(|a| match a {
            FnArg::Typed(pt) => {
                let name = match &*pt.pat {
                    syn::Pat::Ident(i) => i.ident.to_string(),
                    _ => "_".to_string(),
                };
                (name, (*pt.ty).clone())
            }
            FnArg::Receiver(_) => ("self".to_string(), syn::parse_quote!(Self)),
        })
        .collect();
    let ret = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, t) => Some((**t).clone()),
    };
    Sig {
        params,
        ret,
        variadic: sig.variadic.is_some(),
    }
}

// ---------------------------------------------------------------------------
// Rust side: the crate's sources.

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn c_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            c_sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "c") {
            out.push(p);
        }
    }
}

/// `#[unsafe(no_mangle)]`, `#[no_mangle]`, `#[unsafe(export_name = "x")]`:
/// the exported symbol name, if any.
fn export_name(attrs: &[syn::Attribute], ident: &syn::Ident) -> Option<String> {
    for a in attrs {
        let text = match &a.meta {
            syn::Meta::Path(p) => p.get_ident().map(|i| i.to_string()).unwrap_or_default(),
            syn::Meta::List(l) if l.path.is_ident("unsafe") => l.tokens.to_string(),
            syn::Meta::NameValue(nv) if nv.path.is_ident("export_name") => {
                if let Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) = &nv.value
                {
                    return Some(s.value());
                }
                String::new()
            }
            _ => String::new(),
        };
        let text = text.trim();
        if text == "no_mangle" {
            return Some(ident.to_string());
        }
        if let Some(rest) = text.strip_prefix("export_name") {
            let name = rest.trim().trim_start_matches('=').trim().trim_matches('"');
            return Some(name.to_string());
        }
    }
    None
}

fn has_repr(attrs: &[syn::Attribute], what: &str) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("repr")
            && a.meta
                .require_list()
                .map(|l| l.tokens.to_string().split(',').any(|t| t.trim() == what))
                .unwrap_or(false)
    })
}

fn reprs(attrs: &[syn::Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("repr"))
        .filter_map(|a| a.meta.require_list().ok())
        .flat_map(|l| {
            l.tokens
                .to_string()
                .split(',')
                .map(|t| t.trim().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn cfg_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .map(|l| {
                    let t = l.tokens.to_string();
                    t == "test" || t.starts_with("all (test") || t.starts_with("all(test")
                })
                .unwrap_or(false)
    })
}

struct TransmuteFinder<'a>(&'a mut Vec<(Type, Type)>);

impl<'ast> Visit<'ast> for TransmuteFinder<'_> {
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if let Some(last) = e.path.segments.last()
            && last.ident == "transmute"
            && let syn::PathArguments::AngleBracketed(args) = &last.arguments
        {
            let tys: Vec<_> = args
                .args
                .iter()
                .filter_map(|a| match a {
                    syn::GenericArgument::Type(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            if let [from, to] = &tys[..] {
                self.0.push((from.clone(), to.clone()));
            }
        }
        syn::visit::visit_expr_path(self, e);
    }

    /// The table of `src/ffi/boundary.rs`: `c_fn_types! { /// doc
    /// Marker => F, "NULL message", "C typedef"; ... }` converts `*mut Marker` into `F` as a
    /// `transmute::<*mut Marker, F>` would.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "c_fn_types")
        {
            let entries = mac
                .parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let mut v = Vec::new();
                    while !input.is_empty() {
                        input.call(syn::Attribute::parse_outer)?;
                        let marker: Type = input.parse()?;
                        input.parse::<syn::Token![=>]>()?;
                        let to: Type = input.parse()?;
                        input.parse::<syn::Token![,]>()?;
                        input.parse::<syn::LitStr>()?;
                        input.parse::<syn::Token![,]>()?;
                        input.parse::<syn::LitStr>()?;
                        input.parse::<syn::Token![;]>()?;
                        v.push((marker, to));
                    }
                    Ok(v)
                })
                .unwrap_or_else(|e| panic!("c_fn_types! does not parse: {e}"));
            for (marker, to) in entries {
                let from = Type::Ptr(syn::TypePtr {
                    star_token: Default::default(),
                    const_token: None,
                    mutability: Some(Default::default()),
                    elem: Box::new(marker),
                });
                self.0.push((from, to));
            }
        }
        syn::visit::visit_macro(self, mac);
    }
}

/// The table of `src/ffi/c_exports.rs`: `c_exports! { NAME => C_NAME; ... }`.
#[derive(Default)]
struct CExportsFinder(Vec<(String, String)>);

impl<'ast> Visit<'ast> for CExportsFinder {
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "c_exports")
        {
            let entries = mac
                .parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let mut v = Vec::new();
                    while !input.is_empty() {
                        let name: syn::Ident = input.parse()?;
                        input.parse::<syn::Token![=>]>()?;
                        let c_name: syn::Ident = input.parse()?;
                        input.parse::<syn::Token![;]>()?;
                        v.push((name.to_string(), c_name.to_string()));
                    }
                    Ok(v)
                })
                .unwrap_or_else(|e| panic!("c_exports! does not parse: {e}"));
            self.0.extend(entries);
        }
        syn::visit::visit_macro(self, mac);
    }
}

fn rust_model(src: &Path) -> RustModel {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let ffi_dir = src.join("ffi");
    let mut m = RustModel::default();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        let in_ffi = path.starts_with(&ffi_dir);
        if in_ffi {
            TransmuteFinder(&mut m.transmutes).visit_file(&file);
            let mut exports = CExportsFinder::default();
            exports.visit_file(&file);
            let rel = path.strip_prefix(manifest_dir()).unwrap_or(&path);
            m.c_exports.extend(
                exports
                    .0
                    .into_iter()
                    .map(|(name, c_name)| (name, c_name, rel.to_path_buf())),
            );
        }
        collect_items(&file.items, &path, in_ffi, &mut m);
    }
    m
}

fn collect_items(items: &[Item], path: &Path, in_ffi: bool, m: &mut RustModel) {
    let rel = path
        .strip_prefix(manifest_dir())
        .unwrap_or(path)
        .to_path_buf();
    for item in items {
        match item {
            Item::Mod(md) => {
                if cfg_test_only(&md.attrs) {
                    continue;
                }
                if let Some((_, inner)) = &md.content {
                    collect_items(inner, path, in_ffi, m);
                }
            }
            Item::Fn(f) => {
                let Some(name) = export_name(&f.attrs, &f.sig.ident) else {
                    continue;
                };
                let abi = f
                    .sig
                    .abi
                    .as_ref()
                    .map(|a| a.name.as_ref().map(|n| n.value()).unwrap_or("C".into()));
                if abi.as_deref() != Some("C") {
                    m.problems.push(format!(
                        "{}: exported fn {name} is not `extern \"C\"` (abi {abi:?})",
                        rel.display()
                    ));
                }
                if !in_ffi {
                    m.problems.push(format!(
                        "{}: exports fn {name}; exported functions belong in src/ffi/",
                        rel.display()
                    ));
                }
                if !matches!(f.vis, syn::Visibility::Public(_)) {
                    m.problems.push(format!(
                        "{}: exported fn {name} is not `pub` (cbindgen skips it)",
                        rel.display()
                    ));
                }
                if let Some((first, _)) = m.fns.get(&name) {
                    m.problems.push(format!(
                        "fn {name} is exported twice ({} and {})",
                        first.display(),
                        rel.display()
                    ));
                }
                m.fns.insert(name, (rel.clone(), sig_of(&f.sig)));
            }
            Item::Static(s) => {
                let Some(name) = export_name(&s.attrs, &s.ident) else {
                    continue;
                };
                // Exported data objects may live in the core module that
                // owns them (the core reads them; it never imports `ffi`).
                if !matches!(s.vis, syn::Visibility::Public(_)) {
                    m.problems.push(format!(
                        "{}: exported static {name} is not `pub` (cbindgen skips it)",
                        rel.display()
                    ));
                }
                m.statics.insert(
                    name,
                    (
                        rel.clone(),
                        Static {
                            mutable: matches!(s.mutability, syn::StaticMutability::Mut(_)),
                            ty: (*s.ty).clone(),
                        },
                    ),
                );
            }
            Item::Type(t) => {
                m.aliases
                    .entry(t.ident.to_string())
                    .or_insert_with(|| (*t.ty).clone());
            }
            Item::Struct(s) => {
                m.struct_names.insert(s.ident.to_string());
                if has_repr(&s.attrs, "C") {
                    m.repr_c_structs
                        .insert(s.ident.to_string(), named_fields(&s.fields));
                }
                if has_repr(&s.attrs, "transparent") {
                    // The one non-zero-sized field; PhantomData and `()`
                    // fields do not count.
                    let inner = named_fields(&s.fields).into_iter().find(|(_, t)| match t {
                        Type::Path(p) => last_ident(&p.path) != "PhantomData",
                        Type::Tuple(t) => !t.elems.is_empty(),
                        _ => true,
                    });
                    if let Some((_, t)) = inner {
                        m.transparent.insert(s.ident.to_string(), t);
                    }
                }
            }
            Item::Union(u) => {
                m.struct_names.insert(u.ident.to_string());
                if has_repr(&u.attrs, "C") {
                    let fields = u
                        .fields
                        .named
                        .iter()
                        .map(|f| (f.ident.as_ref().unwrap().to_string(), f.ty.clone()))
                        .collect();
                    m.repr_c_structs.insert(u.ident.to_string(), fields);
                }
            }
            Item::Enum(e) => {
                m.enums
                    .insert(e.ident.to_string(), (reprs(&e.attrs), enum_values(e)));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// ABI shapes.

#[derive(Clone, Copy)]
enum Side<'a> {
    Header(&'a HeaderModel),
    /// Rust sources, with the header for the function-type typedefs that
    /// Rust spells as marker structs.
    Rust(&'a RustModel, &'a HeaderModel),
}

fn last_ident(p: &syn::Path) -> String {
    p.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

fn single_generic(seg: &syn::PathSegment) -> Option<&Type> {
    match &seg.arguments {
        syn::PathArguments::AngleBracketed(a) => a.args.iter().find_map(|g| match g {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn primitive(name: &str) -> Option<&'static str> {
    let long = if std::mem::size_of::<std::ffi::c_long>() == 8 {
        ("i64", "u64")
    } else {
        ("i32", "u32")
    };
    Some(match name {
        "bool" => "bool",
        "i8" | "c_schar" | "int8_t" => "i8",
        "u8" | "c_uchar" | "uint8_t" => "u8",
        "i16" | "c_short" | "int16_t" => "i16",
        "u16" | "c_ushort" | "uint16_t" => "u16",
        "i32" | "c_int" | "int32_t" | "pid_t" => "i32",
        "u32" | "c_uint" | "uint32_t" | "socklen_t" => "u32",
        "i64" | "c_longlong" | "int64_t" | "off_t" => "i64",
        "u64" | "c_ulonglong" | "uint64_t" => "u64",
        "c_long" => long.0,
        "c_ulong" => long.1,
        "isize" | "ssize_t" | "intptr_t" | "ptrdiff_t" => "isize",
        "usize" | "size_t" | "uintptr_t" => "usize",
        "f32" | "c_float" => "f32",
        "f64" | "c_double" => "f64",
        // Signedness of `char` is the platform's; keep it distinct from i8/u8.
        "c_char" => "c_char",
        "c_void" => "void",
        _ => return None,
    })
}

/// Layout-transparent wrappers a Rust field may use for a C scalar.
fn field_wrapper(name: &str) -> Option<&'static str> {
    Some(match name {
        "AtomicBool" => "bool",
        "AtomicI8" => "i8",
        "AtomicU8" => "u8",
        "AtomicI16" => "i16",
        "AtomicU16" => "u16",
        "AtomicI32" => "i32",
        "AtomicU32" => "u32",
        "AtomicI64" => "i64",
        "AtomicU64" => "u64",
        "AtomicIsize" => "isize",
        "AtomicUsize" => "usize",
        _ => return None,
    })
}

/// Function-type typedef of the header (`typedef R F(args);`), which
/// bindgen renders as `type F = Option<extern "C" fn(args) -> R>`.
fn header_fn_typedef<'h>(h: &'h HeaderModel, name: &str) -> Option<&'h Type> {
    let ty = h.aliases.get(name)?;
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Option" {
        return None;
    }
    match single_generic(seg)? {
        Type::BareFn(_) => Some(ty),
        _ => None,
    }
}

fn canon(ty: &Type, side: Side, depth: usize) -> Result<String, String> {
    if depth > 32 {
        return Err("type alias recursion".into());
    }
    let d = depth + 1;
    match ty {
        Type::Paren(p) => canon(&p.elem, side, d),
        Type::Group(g) => canon(&g.elem, side, d),
        Type::Tuple(t) if t.elems.is_empty() => Ok("void".into()),
        Type::Never(_) => Ok("!".into()),
        Type::Ptr(p) => {
            let q = if p.mutability.is_some() {
                "*mut"
            } else {
                "*const"
            };
            // `*mut Marker` on the Rust side is C's `F *` for a function
            // type `F`: a (nullable) function pointer.
            if let (Side::Rust(r, h), Type::Path(inner)) = (side, &*p.elem) {
                let name = last_ident(&inner.path);
                if inner.qself.is_none()
                    && !r.aliases.contains_key(&name)
                    && r.struct_names.contains(&name)
                    && let Some(f) = header_fn_typedef(h, &name)
                {
                    if p.mutability.is_none() {
                        return Err(format!("`*const {name}`: use `*mut {name}`"));
                    }
                    return canon(f, Side::Header(h), d);
                }
            }
            Ok(format!("{q} {}", canon(&p.elem, side, d)?))
        }
        Type::Array(a) => {
            let n = int_expr(&a.len).ok_or("array length is not a literal")?;
            Ok(format!("[{}; {n}]", canon(&a.elem, side, d)?))
        }
        Type::BareFn(f) => {
            let abi = f
                .abi
                .as_ref()
                .map(|a| a.name.as_ref().map(|n| n.value()).unwrap_or("C".into()))
                .unwrap_or_else(|| "Rust".into());
            if abi != "C" {
                return Err(format!("function pointer with ABI \"{abi}\""));
            }
            let mut s = String::from("fn(");
            for (i, a) in f.inputs.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(&canon(&a.ty, side, d)?);
            }
            if f.variadic.is_some() {
                s.push_str(", ...");
            }
            s.push(')');
            if let ReturnType::Type(_, r) = &f.output {
                let r = canon(r, side, d)?;
                if r != "void" {
                    write!(s, " -> {r}").unwrap();
                }
            }
            Ok(s)
        }
        Type::Path(p) if p.qself.is_none() => {
            let seg = p.path.segments.last().ok_or("empty path")?;
            let name = seg.ident.to_string();
            if name == "Option" {
                let inner = single_generic(seg).ok_or("Option without a type")?;
                return Ok(format!("Option<{}>", canon(inner, side, d)?));
            }
            if let Some(prim) = primitive(&name) {
                return Ok(prim.into());
            }
            match side {
                Side::Header(h) => {
                    if let Some(t) = h.aliases.get(&name) {
                        return canon(t, side, d);
                    }
                    if h.enums.contains_key(&name) {
                        return Ok(format!("enum:{name}"));
                    }
                    Ok(format!("struct:{name}"))
                }
                Side::Rust(r, h) => {
                    if let Some(w) = field_wrapper(&name) {
                        return Ok(w.into());
                    }
                    if matches!(name.as_str(), "Cell" | "UnsafeCell" | "ManuallyDrop") {
                        let inner = single_generic(seg).ok_or("wrapper without a type")?;
                        return canon(inner, side, d);
                    }
                    if name == "AtomicPtr" {
                        let inner = single_generic(seg).ok_or("AtomicPtr without a type")?;
                        return Ok(format!("*mut {}", canon(inner, side, d)?));
                    }
                    if let Some(t) = r.aliases.get(&name) {
                        return canon(t, side, d);
                    }
                    if let Some(t) = r.transparent.get(&name) {
                        return canon(t, side, d);
                    }
                    if r.struct_names.contains(&name) && header_fn_typedef(h, &name).is_some() {
                        return Err(format!(
                            "marker `{name}` used by value; C's `{name}` is a function type, \
                             use `*mut {name}`"
                        ));
                    }
                    if r.enums.contains_key(&name) {
                        return Ok(format!("enum:{name}"));
                    }
                    if let Some((_, tag)) = RENAMED.iter().find(|(rust, _)| *rust == name) {
                        return Ok(format!("struct:{tag}"));
                    }
                    // `typedef struct _GSource GSource;`: the Rust type is
                    // named after the typedef, the header resolves to the tag.
                    if let Some(t) = h.aliases.get(&name) {
                        let c = canon(t, Side::Header(h), d)?;
                        if c.starts_with("struct:") || c.starts_with("enum:") {
                            return Ok(c);
                        }
                    }
                    Ok(format!("struct:{name}"))
                }
            }
        }
        _ => Err("unsupported type syntax".into()),
    }
}

fn canon_ret(ret: &Option<Type>, side: Side) -> Result<String, String> {
    match ret {
        None => Ok("void".into()),
        Some(t) => canon(t, side, 0),
    }
}

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// ABI equality of a Rust shape and a header shape. Beyond identity: a C
/// enum is passed as a 32-bit integer, so Rust may take it as `i32`/`u32`
/// (or an enum of the same name); with `erase_pointee`, a Rust `void *` may
/// stand for any object pointer of the header (a callback that Rust calls
/// through a type-erased signature, e.g. `EventNotifierHandler` called as
/// an `IOHandler`).
fn same(
    rust: &Result<String, String>,
    header: &Result<String, String>,
    erase_pointee: bool,
) -> bool {
    let (Ok(r), Ok(h)) = (rust, header) else {
        return false;
    };
    let (rt, ht) = (tokens(r), tokens(h));
    rt.len() == ht.len()
        && rt.iter().zip(&ht).enumerate().all(|(i, (a, b))| {
            a == b
                || (b.starts_with("enum:") && matches!(a.as_str(), "i32" | "u32"))
                || (erase_pointee
                    && a == "void"
                    && b.starts_with("struct:")
                    && i > 0
                    && matches!(rt[i - 1].as_str(), "mut" | "const"))
        })
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(s) => format!("`{s}`"),
        Err(e) => format!("<{e}>"),
    }
}

// ---------------------------------------------------------------------------
// The comparisons. Each returns a list of human-readable problems.

fn compare_functions(h: &HeaderModel, r: &RustModel, src: &Path) -> Vec<String> {
    let mut problems = r.problems.clone();
    let hs = Side::Header(h);
    let rs = Side::Rust(r, h);

    for (name, (file, rsig)) in &r.fns {
        let Some(hsig) = h.fns.get(name) else {
            problems.push(format!(
                "{name} ({}) is exported but not declared in the header",
                file.display()
            ));
            continue;
        };
        if rsig.variadic != hsig.variadic {
            problems.push(format!("{name}: variadic in one side only"));
        }
        if rsig.params.len() != hsig.params.len() {
            problems.push(format!(
                "{name}: {} parameters in Rust ({}), {} in the header",
                rsig.params.len(),
                file.display(),
                hsig.params.len()
            ));
            continue;
        }
        for (i, ((rn, rt), (hn, ht))) in rsig.params.iter().zip(&hsig.params).enumerate() {
            let (rc, hc) = (canon(rt, rs, 0), canon(ht, hs, 0));
            if !same(&rc, &hc, false) {
                problems.push(format!(
                    "{name}: parameter {} (`{rn}` / `{hn}`): Rust {} vs header {}",
                    i + 1,
                    show(&rc),
                    show(&hc)
                ));
            }
        }
        let (rc, hc) = (canon_ret(&rsig.ret, rs), canon_ret(&hsig.ret, hs));
        if !same(&rc, &hc, false) {
            problems.push(format!(
                "{name}: return type: Rust {} vs header {}",
                show(&rc),
                show(&hc)
            ));
        }
    }

    // Header declarations without a definition would be link errors.
    let mut c_files = Vec::new();
    c_sources(src, &mut c_files);
    let c_text: String = c_files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for name in h.fns.keys() {
        if !r.fns.contains_key(name) && !defined_in_c(&c_text, name) {
            problems.push(format!(
                "{name} is declared in the header but defined neither in src/ffi/ nor in a C \
                 source under src/"
            ));
        }
    }

    for (name, (file, rst)) in &r.statics {
        let Some(hst) = h.statics.get(name) else {
            problems.push(format!(
                "static {name} ({}) is exported but not declared in the header",
                file.display()
            ));
            continue;
        };
        if rst.mutable != hst.mutable && !(hst.mutable && interior_mutable(&rst.ty)) {
            problems.push(format!("static {name}: mutability differs"));
        }
        let (rc, hc) = (canon(&rst.ty, rs, 0), canon(&hst.ty, hs, 0));
        if !same(&rc, &hc, false) {
            problems.push(format!(
                "static {name}: Rust {} vs header {}",
                show(&rc),
                show(&hc)
            ));
        }
    }
    for name in h.statics.keys() {
        if !r.statics.contains_key(name) && !defined_in_c(&c_text, name) {
            problems.push(format!(
                "extern {name} is declared in the header but not defined"
            ));
        }
    }

    problems.extend(check_markers(h, r));
    problems
}

/// Crude, but enough for the few C-only pieces: `name(` or `name =` / `name;`
/// at file scope.
fn defined_in_c(c_text: &str, name: &str) -> bool {
    c_text.match_indices(name).any(|(i, _)| {
        let before = c_text[..i].chars().next_back();
        let after = c_text[i + name.len()..].trim_start().chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && matches!(after, Some('(') | Some('=') | Some(';'))
    })
}

/// The Rust side spells `QEMUBHFunc *` as `*mut QEMUBHFunc` (a marker
/// struct). What Rust actually calls through it is the type it transmutes
/// the marker pointer into; that must be the C typedef's signature.
fn check_markers(h: &HeaderModel, r: &RustModel) -> Vec<String> {
    let mut used = BTreeSet::new();
    let mut find = |ty: &Type| collect_marker_uses(ty, h, r, &mut used);
    for (_, sig) in r.fns.values() {
        sig.params.iter().for_each(|(_, t)| find(t));
        if let Some(t) = &sig.ret {
            find(t);
        }
    }
    let mut problems = Vec::new();
    for marker in used {
        let c_fn = header_fn_typedef(h, &marker).expect("only typedefs are collected");
        let want = canon(c_fn, Side::Header(h), 0);
        let targets: Vec<_> = r
            .transmutes
            .iter()
            .filter(|(from, _)| match from {
                Type::Ptr(p) => {
                    matches!(&*p.elem, Type::Path(tp) if last_ident(&tp.path) == marker)
                }
                _ => false,
            })
            .map(|(_, to)| canon(to, Side::Rust(r, h), 0).map(|s| format!("Option<{s}>")))
            .collect::<Vec<_>>();
        if targets.is_empty() {
            problems.push(format!(
                "`*mut {marker}` is used but src/ffi/ never converts it (an entry \
                 `{marker} => F` of `c_fn_types!`, or `transmute::<*mut {marker}, F>`), \
                 so its call signature cannot be checked"
            ));
        }
        for t in targets {
            if !same(&t, &want, true) {
                problems.push(format!(
                    "`*mut {marker}` is called as {} but the header's typedef is {}",
                    show(&t),
                    show(&want)
                ));
            }
        }
    }
    problems
}

fn collect_marker_uses(ty: &Type, h: &HeaderModel, r: &RustModel, out: &mut BTreeSet<String>) {
    match ty {
        Type::Ptr(p) => {
            if let Type::Path(tp) = &*p.elem {
                let name = last_ident(&tp.path);
                if r.struct_names.contains(&name) && header_fn_typedef(h, &name).is_some() {
                    out.insert(name);
                }
            }
            collect_marker_uses(&p.elem, h, r, out);
        }
        Type::Paren(p) => collect_marker_uses(&p.elem, h, r, out),
        _ => {}
    }
}

fn compare_types(h: &HeaderModel, r: &RustModel, rt: &[RustLayout]) -> Vec<String> {
    let mut problems = Vec::new();
    let hs = Side::Header(h);
    let rs = Side::Rust(r, h);
    let runtime: BTreeMap<_, _> = rt.iter().map(|l| (l.name, l)).collect();

    for (name, layout) in &h.layouts {
        let Some(size) = layout.size else { continue };
        if h.enums.contains_key(name) {
            continue;
        }
        // Field definitions, as written.
        let hfields = h.structs.get(name).cloned().unwrap_or_default();
        match r.repr_c_structs.get(name) {
            None => problems.push(format!(
                "struct {name} is complete in the header but no `#[repr(C)]` Rust type of that \
                 name exists in src/"
            )),
            Some(rfields) => {
                let hn: Vec<_> = hfields.iter().map(|(n, _)| n.as_str()).collect();
                let rn: Vec<_> = rfields.iter().map(|(n, _)| n.as_str()).collect();
                if hn != rn {
                    problems.push(format!(
                        "struct {name}: fields {rn:?} in Rust vs {hn:?} in the header"
                    ));
                } else {
                    for ((f, rt), (_, ht)) in rfields.iter().zip(&hfields) {
                        let (rc, hc) = (canon(rt, rs, 0), canon(ht, hs, 0));
                        if !same(&rc, &hc, false) {
                            problems.push(format!(
                                "struct {name}.{f}: Rust {} vs header {}",
                                show(&rc),
                                show(&hc)
                            ));
                        }
                    }
                }
            }
        }
        // Layout, as compiled.
        let Some(rl) = runtime.get(name.as_str()) else {
            problems.push(format!(
                "struct {name} is complete in the header: add it to rust_layouts() in \
                 tests/header_abi.rs"
            ));
            continue;
        };
        if rl.size != size {
            problems.push(format!(
                "struct {name}: size {} in Rust, {size} in C",
                rl.size
            ));
        }
        if Some(rl.align) != layout.align {
            problems.push(format!(
                "struct {name}: alignment {} in Rust, {:?} in C",
                rl.align, layout.align
            ));
        }
        let rfields: BTreeMap<_, _> = rl.fields.iter().map(|(f, o)| (f.to_string(), *o)).collect();
        let cfields: BTreeMap<_, _> = layout
            .offsets
            .iter()
            .filter(|(f, _)| !f.starts_with("__bindgen") && !f.starts_with("_bitfield"))
            .map(|(f, o)| (f.clone(), *o))
            .collect();
        if rfields.keys().collect::<Vec<_>>() != cfields.keys().collect::<Vec<_>>() {
            problems.push(format!(
                "struct {name}: rust_layouts() lists fields {:?}, the header has {:?}",
                rfields.keys().collect::<Vec<_>>(),
                cfields.keys().collect::<Vec<_>>()
            ));
        }
        for (f, co) in &cfields {
            if let Some(ro) = rfields.get(f)
                && ro != co
            {
                problems.push(format!("struct {name}.{f}: offset {ro} in Rust, {co} in C"));
            }
        }
        if layout.offsets.keys().any(|f| f.starts_with("_bitfield")) {
            problems.push(format!(
                "struct {name}: C bitfields cannot be matched from Rust"
            ));
        }
    }
    for l in rt {
        if h.layouts.get(l.name).is_none_or(|x| x.size.is_none()) {
            problems.push(format!(
                "rust_layouts() lists {} but the header has no complete type of that name",
                l.name
            ));
        }
    }

    for (name, hvals) in &h.enums {
        match r.enums.get(name) {
            // Declared by hand in cbindgen.toml and received as an integer
            // newtype or alias: the values live in the header only.
            None if r.transparent.contains_key(name) || r.aliases.contains_key(name) => {}
            None => problems.push(format!(
                "enum {name} of the header has no Rust enum (or integer newtype/alias)"
            )),
            Some((reprs, rvals)) => {
                if !reprs
                    .iter()
                    .any(|x| matches!(x.as_str(), "C" | "i32" | "u32"))
                {
                    problems.push(format!(
                        "enum {name}: Rust repr {reprs:?} is not the size of a C enum"
                    ));
                }
                if rvals != hvals {
                    problems.push(format!(
                        "enum {name}: variants {rvals:?} in Rust vs {hvals:?} in the header"
                    ));
                }
            }
        }
    }
    problems
}

/// Rust types of [`HAND_DECLARED`] headers named in Rust style; C knows
/// them by QEMU's struct tag.
const RENAMED: &[(&str, &str)] = &[
    ("RcuHead", "rcu_head"),
    ("RcuReaderData", "rcu_reader_data"),
];

/// A non-`mut` Rust static of one of these types lives in writable memory
/// (interior mutability, `Sync`), so C may declare it without `const`.
fn interior_mutable(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    let Some(seg) = p.path.segments.last() else {
        return false;
    };
    let name = seg.ident.to_string();
    name.starts_with("Atomic") || INTERIOR_MUTABLE.contains(&name.as_str())
}

/// Exported statics' wrapper types made of `UnsafeCell`/atomics.
const INTERIOR_MUTABLE: &[&str] = &["GpEvent"];

/// Compat headers that declare exported functions and data objects by hand
/// instead of cbindgen (cbindgen.toml excludes them): RCU, whose inline read
/// side needs QEMU's exact `struct rcu_reader_data`; and the library's
/// internal entry points for its own C code.
const HAND_DECLARED: &[&str] = &["include/compat/qemu/rcu.h", "src/c/internal.h"];

fn glib_cflags() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags", "glib-2.0"])
        .output()
        .expect("pkg-config runs (make test installs it)");
    assert!(out.status.success(), "pkg-config --cflags glib-2.0 failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The functions and data objects of [`HAND_DECLARED`], checked like the
/// generated header's.
fn add_hand_declared(h: &mut HeaderModel) {
    let root = manifest_dir();
    let mut args = glib_cflags();
    args.push(format!("-I{}", root.join("include").display()));
    args.push(format!("-I{}", root.join("include/compat").display()));
    for rel in HAND_DECLARED {
        let m = header_model(&run_bindgen_with(&root.join(rel), &args));
        assert!(!m.fns.is_empty(), "bindgen found no function in {rel}");
        h.fns.extend(m.fns);
        h.statics.extend(m.statics);
        for (name, ty) in m.aliases {
            h.aliases.entry(name).or_insert(ty);
        }
    }
}

/// The compat headers of QEMU's error API: they declare the functions of
/// the `c_exports!` table (and Rust-defined ones).
const C_EXPORT_HEADERS: &[&str] = &[
    "include/compat/qemu/error-report.h",
    "include/compat/qapi/error.h",
];

/// Parsed once per test thread (syn's types are not `Sync`): every `check`
/// (one per mutant) needs it.
fn compat_error_model() -> &'static HeaderModel {
    thread_local! {
        static MODEL: &'static HeaderModel = Box::leak(Box::new(parse_compat_error_headers()));
    }
    MODEL.with(|m| *m)
}

fn parse_compat_error_headers() -> HeaderModel {
    let root = manifest_dir();
    let mut args = glib_cflags();
    args.push(format!("-I{}", root.join("include").display()));
    args.push(format!("-I{}", root.join("include/compat").display()));
    let mut h = HeaderModel::default();
    for rel in C_EXPORT_HEADERS {
        let m = header_model(&run_bindgen_with(&root.join(rel), &args));
        assert!(!m.fns.is_empty(), "bindgen found no function in {rel}");
        h.fns.extend(m.fns);
        for (name, ty) in m.aliases {
            h.aliases.entry(name).or_insert(ty);
        }
    }
    h
}

/// Each trampoline `NAME => C_NAME` must export a function the compat
/// headers declare as NAME with C_NAME's signature (`internal.h`, in `h`);
/// and every function of the compat headers must be exported.
fn check_c_exports(h: &HeaderModel, compat: &HeaderModel, r: &RustModel) -> Vec<String> {
    let mut problems = Vec::new();
    let (cs, hs) = (Side::Header(compat), Side::Header(h));
    let mut exported: BTreeSet<&str> = r.fns.keys().map(String::as_str).collect();
    for (name, c_name, file) in &r.c_exports {
        let at = file.display();
        if !exported.insert(name) {
            problems.push(format!(
                "{name} ({at}): exported twice (c_exports! and a Rust fn)"
            ));
        }
        let Some(public) = compat.fns.get(name) else {
            problems.push(format!(
                "{name} ({at}): exported by c_exports! but declared in none of {C_EXPORT_HEADERS:?}"
            ));
            continue;
        };
        let Some(def) = h.fns.get(c_name) else {
            problems.push(format!(
                "{name} ({at}): its C definition {c_name} is not declared in src/c/internal.h"
            ));
            continue;
        };
        if public.variadic != def.variadic {
            problems.push(format!(
                "{name}: variadic in the compat header or in {c_name} only"
            ));
        }
        if public.params.len() != def.params.len() {
            problems.push(format!(
                "{name}: {} parameters in the compat header, {} in {c_name}",
                public.params.len(),
                def.params.len()
            ));
            continue;
        }
        for (i, ((pn, pt), (dn, dt))) in public.params.iter().zip(&def.params).enumerate() {
            let (pc, dc) = (canon(pt, cs, 0), canon(dt, hs, 0));
            if !same(&pc, &dc, false) {
                problems.push(format!(
                    "{name}: parameter {} (`{pn}` / `{dn}`): compat header {} vs {c_name} {}",
                    i + 1,
                    show(&pc),
                    show(&dc)
                ));
            }
        }
        let (pc, dc) = (canon_ret(&public.ret, cs), canon_ret(&def.ret, hs));
        if !same(&pc, &dc, false) {
            problems.push(format!(
                "{name}: return type: compat header {} vs {c_name} {}",
                show(&pc),
                show(&dc)
            ));
        }
    }
    for name in compat.fns.keys() {
        if !exported.contains(name.as_str()) {
            problems.push(format!(
                "{name} is declared in {C_EXPORT_HEADERS:?} but exported neither by src/ffi/ nor \
                 by c_exports!"
            ));
        }
    }
    problems
}

fn check(header: &Path) -> (Vec<String>, Vec<String>, usize, usize) {
    let mut h = header_model(&run_bindgen(header));
    add_hand_declared(&mut h);
    let src = manifest_dir().join("src");
    let r = rust_model(&src);
    let mut fns = compare_functions(&h, &r, &src);
    fns.extend(check_c_exports(&h, compat_error_model(), &r));
    let types = compare_types(&h, &r, &rust_layouts());
    (fns, types, h.fns.len(), h.layouts.len())
}

fn report(what: &str, problems: &[String]) -> String {
    let mut s = format!("{} {what} problem(s):\n", problems.len());
    for p in problems {
        writeln!(s, "  - {p}").unwrap();
    }
    s
}

// ---------------------------------------------------------------------------

#[test]
fn exported_functions_match_header() {
    let (fns, _, n_fns, _) = check(&header_path());
    assert!(n_fns > 0, "bindgen found no function in the header");
    assert!(fns.is_empty(), "{}", report("signature", &fns));
}

#[test]
fn struct_layouts_match_header() {
    let (_, types, _, n_types) = check(&header_path());
    assert!(
        n_types > 0,
        "bindgen found no complete struct in the header"
    );
    assert!(types.is_empty(), "{}", report("type", &types));
}

/// Both sides are actually discovered (guards against a checker that
/// silently compares two empty sets).
#[test]
fn discovery_finds_every_export() {
    let src = manifest_dir().join("src");
    let r = rust_model(&src);
    let mut files = Vec::new();
    rust_files(&src.join("ffi"), &mut files);
    let text: String = files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let textual = text.matches("no_mangle)]\npub extern \"C\" fn").count();
    assert!(textual > 0);
    assert!(
        r.fns.len() >= textual,
        "syn found {} exported fns, a text search {textual}",
        r.fns.len()
    );
    for must in [
        "aio_bh_new",
        "aio_poll",
        "qemu_bh_schedule",
        "aio_wait_bh_oneshot",
    ] {
        assert!(r.fns.contains_key(must), "{must} not discovered");
    }
    for must in ["error_report", "error_setg_internal", "error_get_class"] {
        assert!(
            r.c_exports.iter().any(|(name, _, _)| name == must),
            "{must} not discovered in c_exports!"
        );
    }
}

/// A `c_exports!` entry whose C definition has another signature, and a
/// compat-header function nobody exports, must be rejected.
#[test]
fn c_exports_checker_detects_mismatches() {
    let mut h = header_model(&run_bindgen(&header_path()));
    add_hand_declared(&mut h);
    let mut r = rust_model(&manifest_dir().join("src"));
    let compat = compat_error_model();
    let entry = r
        .c_exports
        .iter_mut()
        .find(|(name, _, _)| name == "error_report")
        .expect("error_report is in c_exports!");
    // error_printf returns int; error_report, void.
    entry.1 = "aioctx_c_error_printf".into();
    let problems = check_c_exports(&h, compat, &r);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("error_report: return type")),
        "{problems:#?}"
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");

    r.c_exports.retain(|(name, _, _)| name != "warn_report");
    let problems = check_c_exports(&h, compat, &r);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("warn_report is declared in")),
        "{problems:#?}"
    );
}

/// Mutated copies of the header must be rejected.
#[test]
fn checker_detects_mismatches() {
    let original = std::fs::read_to_string(header_path()).unwrap();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("header_abi_mutants");
    std::fs::create_dir_all(&dir).unwrap();

    type Mutant = (&'static str, &'static str, &'static str, &'static str);
    let mutants: &[Mutant] = &[
        // (what, from, to, expected fragment of a problem)
        (
            "parameter type",
            "void event_notifier_init_fd(struct EventNotifier *e, int fd);",
            "void event_notifier_init_fd(struct EventNotifier *e, long fd);",
            "event_notifier_init_fd: parameter 2",
        ),
        (
            "const-ness",
            "int event_notifier_get_fd(const struct EventNotifier *e);",
            "int event_notifier_get_fd(struct EventNotifier *e);",
            "event_notifier_get_fd: parameter 1",
        ),
        (
            "parameter count",
            "void aio_bh_schedule_oneshot(struct AioContext *ctx, QEMUBHFunc *cb, void *opaque);",
            "void aio_bh_schedule_oneshot(struct AioContext *ctx, QEMUBHFunc *cb);",
            "aio_bh_schedule_oneshot: 3 parameters in Rust",
        ),
        (
            "return type",
            "bool aio_poll(struct AioContext *ctx, bool blocking);",
            "int aio_poll(struct AioContext *ctx, bool blocking);",
            "aio_poll: return type",
        ),
        (
            "function typedef",
            "typedef void QEMUBHFunc(void *opaque);",
            "typedef void QEMUBHFunc(void *opaque, int extra);",
            "`*mut QEMUBHFunc` is called as `Option<fn(*mut void)>`",
        ),
        (
            "missing function",
            "void qemu_bh_cancel(struct QEMUBH *bh);",
            "",
            "qemu_bh_cancel (src/ffi/bh.rs) is exported but not declared",
        ),
        (
            "struct field type",
            "  int wfd;\n",
            "  long wfd;\n",
            "struct EventNotifier.wfd",
        ),
        (
            "struct layout",
            "  bool initialized;\n} EventNotifier;",
            "  bool initialized;\n  int spare;\n} EventNotifier;",
            "struct EventNotifier: size 12 in Rust, 16 in C",
        ),
        (
            "new struct",
            "} AioWait;\n",
            "} AioWait;\ntypedef struct NewThing { int x; } NewThing;\n",
            "struct NewThing is complete in the header: add it to rust_layouts()",
        ),
        (
            "new enum",
            "} AioWait;\n",
            "} AioWait;\ntypedef enum NewKind { NEW_A, NEW_B } NewKind;\n",
            "enum NewKind of the header has no Rust enum",
        ),
    ];

    for (i, (what, from, to, expect)) in mutants.iter().enumerate() {
        assert!(
            original.contains(from),
            "mutant '{what}': the header no longer contains {from:?}; update the mutant"
        );
        let mutant_dir = dir.join(format!("m{i}"));
        std::fs::create_dir_all(&mutant_dir).unwrap();
        let path = mutant_dir.join("aioctx.h");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let (fns, types, _, _) = check(&path);
        let all: Vec<_> = fns.iter().chain(&types).collect();
        assert!(
            all.iter().any(|p| p.contains(expect)),
            "mutant '{what}' was not detected as expected ({expect:?}); problems: {all:#?}"
        );
    }
}
