//! Fuzz target: the model-based check of tests/support/model/ with the
//! fuzzer's input as the generator's choices (one byte per choice, the case
//! ends when the bytes run out). A trace that differs from the model's
//! prints the case and aborts, which libFuzzer reports as a crash and saves
//! the input; so does any abort of the library (a misuse line) and any
//! sanitizer report. Replay a saved input with
//! `build/fuzz/api_sequence <file>`.
#![no_main]

use std::io::Write as _;

// The seeded test's entry points (`Rng::new`, `splitmix`) are unused here.
#[allow(dead_code)]
#[path = "../../tests/support/model/mod.rs"]
mod model;

/// Operations per input at most (libFuzzer's default -max_len of 4096 bytes
/// bounds it too).
const MAX_STEPS: usize = 1000;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut rng = model::Rng::from_bytes(data);
    if let Err(msg) = model::run_case_with(&mut rng, MAX_STEPS, false) {
        // Not a panic: the library's panic hook would replace the message
        // with "aioctx: internal error".
        let _ = writeln!(std::io::stderr(), "fuzz: api_sequence FAILED\n{msg}");
        std::process::abort();
    }
});
