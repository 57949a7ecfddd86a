//! Randomised model-based test of the public C API, driven through the rlib:
//! seeded cases of the operation sequences of `support/model/` (see its
//! documentation for what is checked and the environment variables). The
//! same model is driven by the fuzzer in fuzz/ (`make fuzz`).

use std::ffi::c_int;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

// The fuzz target uses the byte source (`Rng::from_bytes`); this test does not.
#[allow(dead_code)]
#[path = "support/model/mod.rs"]
mod model;

use model::{Rng, splitmix};

// ---------------------------------------------------------------------------
// Running cases

/// The seed of the case in progress, for the SIGABRT handler.
static CURRENT_SEED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_abort(sig: c_int) {
    let seed = CURRENT_SEED.load(Ordering::Relaxed);
    let mut buf = [0u8; 128];
    let msg = format_seed_line(&mut buf, seed);
    // SAFETY: write(2) and signal(2)/raise(3) are async-signal-safe; `msg`
    // points into a live stack buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// "model: the library aborted in case AIOCTX_MODEL_SEED=0x...\n", without
/// allocating (signal handler).
fn format_seed_line(buf: &mut [u8; 128], seed: u64) -> &[u8] {
    let prefix = b"\nmodel: aborted during the case with AIOCTX_MODEL_SEED=0x";
    let mut n = prefix.len();
    buf[..n].copy_from_slice(prefix);
    for i in (0..16).rev() {
        let nib = ((seed >> (i * 4)) & 0xf) as u8;
        buf[n] = if nib < 10 {
            b'0' + nib
        } else {
            b'a' + nib - 10
        };
        n += 1;
    }
    buf[n] = b'\n';
    &buf[..=n]
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// Runs one seeded case; returns a description of the first mismatch.
fn run_case(seed: u64, steps: usize) -> Result<(usize, usize), String> {
    CURRENT_SEED.store(seed, Ordering::Relaxed);
    let trace_ops = std::env::var_os("AIOCTX_MODEL_TRACE_OPS").is_some();
    model::run_case_with(&mut Rng::new(seed), steps, trace_ops)
}

#[test]
fn model_random_api_sequences() {
    // SAFETY: installs a handler that only uses async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t);
    }
    let steps = env_u64("AIOCTX_MODEL_STEPS").unwrap_or(200) as usize;
    let (seeds, what): (Vec<u64>, String) = if let Some(seed) = env_u64("AIOCTX_MODEL_SEED") {
        (vec![seed], format!("replaying AIOCTX_MODEL_SEED={seed:#x}"))
    } else {
        let cases = env_u64("AIOCTX_MODEL_CASES").unwrap_or(5000);
        let base = env_u64("AIOCTX_MODEL_BASE_SEED").unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            splitmix(t.as_nanos() as u64 ^ u64::from(std::process::id()))
        });
        (
            (0..cases).map(|i| splitmix(base.wrapping_add(i))).collect(),
            format!("{cases} cases from AIOCTX_MODEL_BASE_SEED={base:#x}"),
        )
    };
    let _ = writeln!(
        std::io::stderr(),
        "model: {what}, {steps} steps each (fd monitor: AIOCTX_FDMON={})",
        std::env::var("AIOCTX_FDMON").unwrap_or_else(|_| "default".into())
    );
    let start = std::time::Instant::now();
    let mut total_events = 0;
    let verbose = std::env::var_os("AIOCTX_MODEL_VERBOSE").is_some();
    for (i, &seed) in seeds.iter().enumerate() {
        if verbose {
            let _ = writeln!(
                std::io::stderr(),
                "model: case {i}: AIOCTX_MODEL_SEED={seed:#x}"
            );
        }
        match run_case(seed, steps) {
            Ok((_, events)) => total_events += events,
            Err(msg) => {
                // Not a panic: the library's panic hook would abort with
                // "aioctx: internal error". Written past the test harness's
                // output capture, then the process fails.
                let _ = writeln!(
                    std::io::stderr(),
                    "model: case {i} FAILED; replay with AIOCTX_MODEL_SEED={seed:#x} \
                     AIOCTX_MODEL_STEPS={steps}\n{msg}"
                );
                std::process::exit(1);
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "model: {} cases, {} operations, {} callback/return events checked in {:.2?}",
        seeds.len(),
        seeds.len() * steps,
        total_events,
        start.elapsed()
    );
}
