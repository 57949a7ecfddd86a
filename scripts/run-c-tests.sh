#!/usr/bin/env bash
# Build and run the C test programs (GTest, TAP output) against a static
# build of the library, and print one summary line `N passed, N failed`.
# Normally run by `make test` / `make sanitize`, which pass the flags.
#
#   scripts/run-c-tests.sh [options] TEST.c|TEST.cc...
#
# Options:
#   --name LABEL        label for headers and the summary (default c-tests)
#   --build-dir DIR     where the programs are written (default build/c-tests)
#   --lib FILE          the static library to link (required)
#   --cflags FLAGS      C compiler flags (word-split)
#   --cxxflags FLAGS    C++ compiler flags, for .cc/.cpp tests (word-split)
#   --libs FLAGS        libraries linked after the library (word-split)
#   --extra-src FILE    another C file linked into every program (repeatable;
#                       compiled once with CC and --cflags)
#   --fdmon-tests LIST  tests (by name, e.g. "test-fd test-timer") that run once
#                       per backend, with AIOCTX_FDMON set to each of
#   --fdmon-backends L  (default "poll epoll io_uring")
#   --timeout SECS      per program run (default 300)
#   --run-args ARGS     arguments for every program (default "--tap -k")
#
# Environment: CC (default cc), CXX (default c++). Sanitizer options
# (ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS) are passed to the programs with
# log_path added: each process's report lands in
# BUILD_DIR/sanitizer-logs/PROGRAM/ and is printed after the program's output.
#
# Counting: every TAP line `ok N` is a pass (`ok N ... # SKIP` a skip), every
# `not ok N` a failure (`not ok N ... # TODO` a skip). A program that fails to
# build, times out, crashes or exits non-zero without reporting a failed test
# counts as one failure more; so does one that exits 0 having run fewer tests
# than its plan (`1..N`), and one with an ASan/UBSan/TSan error report from
# any of its processes (death-test children included). Exit status: 0 only if
# nothing failed.
set -uo pipefail

name=c-tests
build_dir=build/c-tests
lib=
cflags=
cxxflags=
libs=
extra_srcs=()
fdmon_tests=
fdmon_backends="poll epoll io_uring"
timeout_secs=300
run_args="--tap -k"
tests=()

while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --build-dir) build_dir=$2; shift 2 ;;
        --lib) lib=$2; shift 2 ;;
        --cflags) cflags=$2; shift 2 ;;
        --cxxflags) cxxflags=$2; shift 2 ;;
        --libs) libs=$2; shift 2 ;;
        --extra-src) extra_srcs+=("$2"); shift 2 ;;
        --fdmon-tests) fdmon_tests=$2; shift 2 ;;
        --fdmon-backends) fdmon_backends=$2; shift 2 ;;
        --timeout) timeout_secs=$2; shift 2 ;;
        --run-args) run_args=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; tests+=("$@"); break ;;
        -*) echo "run-c-tests: unknown option $1" >&2; exit 2 ;;
        *) tests+=("$1"); shift ;;
    esac
done

CC=${CC:-cc}
CXX=${CXX:-c++}
# Crashing programs are reported below; no core files in the work tree.
ulimit -c 0

if [ -z "$lib" ]; then
    echo "run-c-tests: --lib is required" >&2
    exit 2
fi
if [ ! -f "$lib" ]; then
    echo "run-c-tests: library $lib does not exist (build it first)" >&2
    exit 2
fi
if [ "${#tests[@]}" -eq 0 ]; then
    echo "run-c-tests: no test programs given (c-tests/test-*.c is empty?)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$build_dir"
abs_build_dir=$(cd "$build_dir" && pwd)

total_pass=0
total_fail=0
total_skip=0
failures=()

# note_failure LABEL MESSAGE: a failure not reported by the program's TAP.
note_failure() {
    echo "not ok - $1: $2"
    total_fail=$((total_fail + 1))
    failures+=("$1 ($2)")
}

echo "# ==== $name: building ${#tests[@]} program(s) in $build_dir"
extra_objs=()
for src in "${extra_srcs[@]}"; do
    obj="$build_dir/$(basename "${src%.*}").o"
    # shellcheck disable=SC2086  # flags are word lists on purpose
    if "$CC" $cflags -c -o "$obj" "$src"; then
        extra_objs+=("$obj")
    else
        note_failure "$(basename "$src")" "does not build (linked into every test)"
    fi
done

built=()
for src in "${tests[@]}"; do
    prog=$(basename "${src%.*}")
    bin="$build_dir/$prog"
    case "$src" in
        *.cc|*.cpp|*.cxx) compiler=$CXX; flags=$cxxflags ;;
        *) compiler=$CC; flags=$cflags ;;
    esac
    # shellcheck disable=SC2086
    if out=$("$compiler" $flags -o "$bin" "$src" "${extra_objs[@]}" "$lib" $libs 2>&1); then
        built+=("$prog")
        [ -n "$out" ] && printf '%s\n' "$out"
    else
        printf '%s\n' "$out"
        note_failure "$prog" "does not build"
    fi
done
if [ "${#built[@]}" -gt 0 ]; then
    echo "# $CC $cflags -o $build_dir/PROG PROG.c ${extra_objs[*]} $lib $libs"
fi

# run_one LABEL BIN [VAR=VALUE...]
run_one() {
    local label=$1 bin=$2
    shift 2
    local safe_label=${label//[^A-Za-z0-9_.-]/_}
    local log="$build_dir/$safe_label.log"
    local san_dir="$abs_build_dir/sanitizer-logs/$safe_label"
    local start end rc
    echo "# ---- $name: $label"
    rm -rf "$san_dir"
    mkdir -p "$san_dir"
    start=$(date +%s)
    # Sanitizer reports go to files (one per process), not to stderr: death
    # tests compare a child's stderr exactly, and sanitizer notes in forked
    # children (LSan's "Running thread ... was not suspended", TSan's fork
    # warnings) would break that. They are printed below.
    # The braces' 2>/dev/null keeps bash's "Aborted ..." job report out of
    # the output (the program's own stderr goes to the log); the verdict
    # below says the same.
    # shellcheck disable=SC2086
    { env "$@" \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$san_dir/asan" \
        UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$san_dir/ubsan" \
        TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$san_dir/tsan" \
        timeout -k 10 "$timeout_secs" "$bin" $run_args </dev/null >"$log" 2>&1; } 2>/dev/null
    rc=$?
    end=$(date +%s)
    cat "$log"

    # Memory errors, UB and races fail the run even when they happened in a
    # child process the test tolerated. Not counted (the main process's exit
    # status already says so): leak reports (LSan in a forked child of a
    # threaded process sees phantom threads and reports false leaks) and
    # deadly signals (death tests crash children on purpose, e.g. a
    # coroutine stack overflow, which ASan reports as such).
    local report san_errors=0
    for report in "$san_dir"/*; do
        [ -f "$report" ] || continue
        echo "# sanitizer report ${report##*/} (pid ${report##*.}):"
        sed 's/^/#   /' "$report"
        if grep -E 'ERROR: AddressSanitizer: |runtime error:|WARNING: ThreadSanitizer:' "$report" |
            grep -qvE 'AddressSanitizer: (SEGV|BUS|FPE|ILL|ABRT|stack-overflow|deadly signal)'; then
            san_errors=$((san_errors + 1))
        fi
    done

    local pass skip fail todo plan ran
    pass=$(grep -cE '^ok [0-9]+' "$log")
    skip=$(grep -cE '^ok [0-9]+.*# *SKIP' "$log")
    fail=$(grep -cE '^not ok [0-9]+' "$log")
    todo=$(grep -cE '^not ok [0-9]+.*# *TODO' "$log")
    pass=$((pass - skip))
    fail=$((fail - todo))
    skip=$((skip + todo))
    ran=$((pass + fail + skip))
    plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$log" | head -n1)

    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
    total_skip=$((total_skip + skip))
    [ "$fail" -gt 0 ] && failures+=("$label ($fail failed test(s))")

    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        note_failure "$label" "timed out after ${timeout_secs}s"
    elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
        if [ "$rc" -gt 128 ]; then
            note_failure "$label" "killed by signal $((rc - 128)) after $ran test(s)"
        else
            note_failure "$label" "exited with status $rc"
        fi
    elif [ "$san_errors" -gt 0 ] && [ "$fail" -eq 0 ]; then
        note_failure "$label" "sanitizer errors in $san_errors process(es), see the reports above"
    elif [ "$rc" -eq 0 ] && [ -z "$plan" ] && [ "$ran" -eq 0 ]; then
        note_failure "$label" "printed no TAP output"
    elif [ "$rc" -eq 0 ] && [ -n "$plan" ] && [ "$ran" -lt "$plan" ]; then
        note_failure "$label" "ran $ran of $plan planned tests"
    fi
    echo "# $label: $pass passed, $fail failed, $skip skipped, exit $rc, $((end - start))s"
}

for prog in "${built[@]}"; do
    if [[ " $fdmon_tests " == *" $prog "* ]]; then
        for backend in $fdmon_backends; do
            run_one "${prog}[fdmon=${backend}]" "$build_dir/$prog" "AIOCTX_FDMON=$backend"
        done
    else
        run_one "$prog" "$build_dir/$prog"
    fi
done

echo "# ==== $name summary"
if [ "${#failures[@]}" -gt 0 ]; then
    for f in "${failures[@]}"; do
        echo "# FAILED: $f"
    done
fi
if [ "$total_skip" -gt 0 ]; then
    echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
    echo "$total_pass passed, $total_fail failed"
fi
[ "$total_fail" -eq 0 ]
