#!/usr/bin/env bash
# Fault-injection walk (issue 15): builds c-tests/fault/fault-inject.c as an
# LD_PRELOAD object and c-tests/fault/workload.c against the library, counts
# the workload's calls of each faultable function, then reruns it once per
# call site with that call failing (AIOCTX_FAULT=FUNC:N).
#
# The whole walk is done once per fd monitor (FAULT_WALK_BACKENDS, default
# "default epoll io_uring": AIOCTX_FDMON unset, which is poll for this
# workload, then forced epoll and io_uring), since each backend makes its
# own calls: epoll_create1 only with epoll, io_uring_setup/io_uring_enter
# only with io_uring. Where io_uring is unavailable its walk has no
# io_uring calls to fail (noted in the output).
#
# Every run must end in one of these, anything else (a hang: the 20 s
# timeout; another signal or exit status; more lines) fails the walk:
#   - success (exit 0) or a reported Error (exit 2), no "aioctx:" line;
#   - exactly one "aioctx:" line and SIGABRT (exit 134);
#   - io_uring_setup: only success (the monitor falls back to epoll, the
#     fallback is silent) or an Error: never an abort;
#   - io_uring_enter: only success, with no "aioctx:" line or exactly one
#     "aioctx: aio_poll: warning: io_uring_enter failed (...); falling back
#     to epoll" (the demotion of issue 15 item 5); a warning line is accepted
#     for no other function;
#   - malloc: only exactly one "aioctx: FUNC: out of memory..." line and
#     SIGABRT: the global allocator's "aioctx: alloc: out of memory (N
#     bytes)", or the report of a call that allocates with calloc itself
#     (timer_new_*, an AIOCB).
#
# malloc is bounded to the library's own allocations: the shim counts and
# fails only malloc/calloc/realloc/posix_memalign calls made from the
# executable's text, where the library is statically linked (the Rust
# global allocator, src/fatal.rs `Alloc`, and its few direct calloc calls);
# GLib's and libc's allocations, from their shared objects, are left alone
# (GLib aborts with its own message when g_malloc fails; not ours to fix).
# That is about 50 calls per backend, so every one of them is walked, no
# sampling.
#
# Rust's std allocates each std thread's handle (std::thread::Thread::new)
# with the System allocator, bypassing the global allocator, so a failure
# there would print std's "memory allocation of N bytes failed" and a
# backtrace: the library therefore starts its threads with pthread
# (src/qemu_thread.rs spawn_lib_thread) and never asks for
# std::thread::current(); such a run fails the walk like any other.
# The shim announces each injected failure ("fault-inject: FUNC:N failed"
# on stderr); a run without it did not reach its Nth call (call counts of
# the threads vary a little between runs) and passes only as a plain
# success, reported as "not reached".
#
# A second pass (when ASAN_CFLAGS, the fifth argument, is given) repeats
# the walk with the workload built with ASan+UBSan (the Rust library stays
# uninstrumented; LeakSanitizer still sees its allocations through ASan's
# malloc interceptors) and ASAN_OPTIONS=detect_leaks=1: every run that ends
# in success or a reported Error must also be leak-free and sanitizer-clean.
# A sanitizer report exits 23 (exitcode=23) and fails the run, its report
# shown; aborted runs (the one "aioctx:" line + SIGABRT) end before LSan's
# atexit check, so they are judged as in the first pass. ASan must come
# first in the load order, so the shim is preloaded with
# verify_asan_link_order=0, and it is built with -DFAULT_INJECT_NO_MALLOC:
# its malloc interposition would bypass ASan's allocator, so this pass walks
# every function but malloc. GLib's one-time allocations are reachable from
# its globals at exit, so no LSan suppressions are needed (nor used by
# `make sanitize`); G_SLICE=always-malloc as there.
#
# Usage: scripts/fault-walk.sh LIB BUILD_DIR "CFLAGS" "LIBS" ["ASAN_CFLAGS"]
set -uo pipefail
lib=$1 dir=$2 cflags=$3 libs=$4 asan_cflags=${5:-}
backends=${FAULT_WALK_BACKENDS:-default epoll io_uring}
mkdir -p "$dir"
cc=${CC:-cc}
$cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$dir/fault-inject.so" c-tests/fault/fault-inject.c -ldl || exit 1
# shellcheck disable=SC2086
$cc $cflags -o "$dir/workload" c-tests/fault/workload.c "$lib" $libs || exit 1
if [ -n "$asan_cflags" ]; then
    $cc -shared -fPIC -O1 -Wall -Wextra -Werror -DFAULT_INJECT_NO_MALLOC \
        -o "$dir/fault-inject-nomalloc.so" c-tests/fault/fault-inject.c -ldl || exit 1
    # shellcheck disable=SC2086
    $cc $cflags $asan_cflags -o "$dir/workload-asan" c-tests/fault/workload.c "$lib" $libs || exit 1
fi

ulimit -c 0 # the expected aborts must not write cores

# The ASan pass's environment: sanitizer reports exit 23, distinct from
# the workload's own statuses.
asan_env=(ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=23:verify_asan_link_order=0
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 G_SLICE=always-malloc G_DEBUG=gc-friendly)

run() { # run FAULT: runs the workload ($shim, $workload, $env), sets rc and err
    err=$(RUST_BACKTRACE=1 AIOCTX_FDMON=$fdmon AIOCTX_FAULT=$1 AIOCTX_FAULT_REPORT=${report:-} timeout 20 \
        env ${env[@]+"${env[@]}"} LD_PRELOAD="$shim" "$workload" 2>&1 >/dev/null)
    rc=$?
}

# judge FUNC: sets verdict from rc and err ("" when the run fails the walk).
judge() {
    local fn=$1 lines warnings injected
    lines=$(grep -c '^aioctx:' <<<"$err")
    warnings=$(grep -c '^aioctx: [^:]*: warning: ' <<<"$err")
    injected=$(grep -c "^fault-inject: $fn:[0-9]* failed" <<<"$err")
    verdict=
    [ "$rc" -eq 23 ] && return # a sanitizer report (the ASan pass)
    if [ "$injected" -eq 0 ]; then
        [ "$rc" -eq 0 ] && [ "$lines" -eq 0 ] && verdict="not reached (success)"
        return
    fi
    case $fn:$rc:$lines:$warnings in
        io_uring_enter:0:0:0) verdict="success" ;;
        io_uring_enter:0:1:1)
            grep -q '^aioctx: aio_poll: warning: io_uring_enter failed (.*); falling back to epoll$' <<<"$err" &&
                verdict="success after one fallback warning" ;;
        io_uring_enter:*) ;;
        io_uring_setup:0:0:0) verdict="success" ;;
        io_uring_setup:2:0:0) verdict="Error" ;;
        io_uring_setup:*) ;;
        malloc:134:1:0)
            grep -q '^aioctx: [^:]*: out of memory' <<<"$err" && verdict="one out-of-memory line + abort" ;;
        malloc:*) ;;
        *:0:0:0) verdict="success" ;;
        *:2:0:0) verdict="Error" ;;
        *:134:1:0) verdict="one aioctx line + abort" ;;
    esac
}

# walk PASS SKIP: the walk over every backend with $shim, $workload and
# $env; PASS labels the output, function SKIP is not walked.
walk() {
    local pass_name=$1 skip=$2 backend counts fn count n label
    for backend in $backends; do
        fdmon=$backend
        [ "$backend" = default ] && fdmon=
        label=$pass_name$backend
        counts="$dir/counts.$pass_name$backend"
        report=$counts
        rm -f "$counts"
        run ""
        report=
        if [ "$rc" -ne 0 ] || [ ! -s "$counts" ] || grep -q '^aioctx:' <<<"$err"; then
            echo "not ok - fault-walk [$label]: the workload fails without faults (rc $rc): $err"
            fail=$((fail + 1))
            continue
        fi
        if [ "$backend" = io_uring ] && ! grep -qE '^io_uring_enter [1-9]' "$counts"; then
            echo "# fault-walk [$label]: no io_uring_enter call (io_uring unavailable here?): nothing to fail"
        fi
        echo "# fault-walk [$label]: calls per function: $(tr '\n' ' ' <"$counts")"
        while read -r fn count; do
            [ "$fn" = "$skip" ] && continue
            for ((n = 1; n <= count; n++)); do
                run "$fn:$n"
                judge "$fn"
                if [ -n "$verdict" ]; then
                    echo "ok - [$label] $fn:$n: $verdict"
                    pass=$((pass + 1))
                elif [ "$rc" -eq 23 ]; then
                    echo "not ok - [$label] $fn:$n: sanitizer report (exit 23):"
                    sed -n '/^==[0-9]*==ERROR: /,$p' <<<"$err" | sed 's/^/#   /' | head -30
                    fail=$((fail + 1))
                else
                    echo "not ok - [$label] $fn:$n: exit $rc, $(grep -c '^aioctx:' <<<"$err") aioctx line(s)"
                    sed 's/^/#   /' <<<"$err" | head -5
                    fail=$((fail + 1))
                fi
            done
        done <"$counts"
    done
}

pass=0 fail=0
shim=$dir/fault-inject.so workload=$dir/workload env=()
walk "" ""
if [ -n "$asan_cflags" ]; then
    shim=$dir/fault-inject-nomalloc.so workload=$dir/workload-asan env=("${asan_env[@]}")
    walk "asan " malloc
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
