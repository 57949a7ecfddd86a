#!/usr/bin/env bash
# Coverage-guided fuzzing of the API sequence (issue 15), `make fuzz`:
# builds fuzz/ (libFuzzer through the libfuzzer-sys crate, with ASan) and
# runs its target for SECONDS. The inputs are the choices of the model
# test's generator (tests/support/model/); a trace that differs from the
# model's, an abort of the library, a sanitizer report, a leak or an input
# that runs longer than 10 s is a crash: the input is saved under BUILD_DIR
# and the script fails.
#
# The seeds are fuzz/corpus/TARGET/ (committed, never written); the inputs
# libFuzzer finds go to BUILD_DIR/corpus/, which later runs reuse.
#
# Usage: scripts/fuzz.sh SECONDS BUILD_DIR [TARGET]
# Environment: CARGO (cargo), NIGHTLY (+nightly: the toolchain's rustup name).
set -euo pipefail
secs=$1 dir=$2 target=${3:-api_sequence}
cargo=${CARGO:-cargo}
nightly=${NIGHTLY:-+nightly}

if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ] || [ "$secs" -gt 120 ]; then
    echo "fuzz: FUZZ_SECONDS=$secs: want 1..120 (for longer runs, run $dir/$target directly)" >&2
    exit 2
fi

# -Zsanitizer needs a nightly toolchain (CI's toolchain stage installs it too).
toolchain=${nightly#+}
if [ -n "$toolchain" ] && ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    echo "fuzz: no $toolchain toolchain; installing it"
    rustup toolchain install "$toolchain" --profile minimal
fi
host=$(rustc $nightly -vV | sed -n 's/^host: //p')

# The flags cargo-fuzz passes (`cargo fuzz build`, release, debug assertions,
# ASan); passed directly to avoid building cargo-fuzz (see fuzz/Cargo.toml).
# --target keeps them off build scripts and proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
 --cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks"
start=$SECONDS
# shellcheck disable=SC2086
$cargo $nightly build --release --locked --manifest-path fuzz/Cargo.toml \
    --target "$host" --target-dir target/fuzz --bin "$target"
echo "fuzz: built $target in $((SECONDS - start))s"

mkdir -p "$dir/corpus/$target"
cp "target/fuzz/$host/release/$target" "$dir/$target"
start=$SECONDS
rc=0
"$dir/$target" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$dir/corpus/$target" "fuzz/corpus/$target" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $rc) after $((SECONDS - start))s;" \
        "the input is the crash-/leak-/timeout- file named above; replay: $dir/$target FILE" >&2
    exit 1
fi
echo "fuzz: $target: no failure in $((SECONDS - start))s ($(ls "$dir/corpus/$target" | wc -l) inputs in $dir/corpus/$target)"
