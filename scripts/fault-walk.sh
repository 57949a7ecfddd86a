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
# Usage: scripts/fault-walk.sh LIB BUILD_DIR "CFLAGS" "LIBS"
set -uo pipefail
lib=$1 dir=$2 cflags=$3 libs=$4
backends=${FAULT_WALK_BACKENDS:-default epoll io_uring}
mkdir -p "$dir"
cc=${CC:-cc}
$cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$dir/fault-inject.so" c-tests/fault/fault-inject.c -ldl || exit 1
# shellcheck disable=SC2086
$cc $cflags -o "$dir/workload" c-tests/fault/workload.c "$lib" $libs || exit 1

ulimit -c 0 # the expected aborts must not write cores

run() { # run FAULT: runs the workload, sets rc and err
    err=$(RUST_BACKTRACE=1 AIOCTX_FDMON=$fdmon AIOCTX_FAULT=$1 AIOCTX_FAULT_REPORT=${report:-} timeout 20 \
        env LD_PRELOAD="$dir/fault-inject.so" "$dir/workload" 2>&1 >/dev/null)
    rc=$?
}

# judge FUNC: sets verdict from rc and err ("" when the run fails the walk).
judge() {
    local fn=$1 lines warnings injected
    lines=$(grep -c '^aioctx:' <<<"$err")
    warnings=$(grep -c '^aioctx: [^:]*: warning: ' <<<"$err")
    injected=$(grep -c "^fault-inject: $fn:[0-9]* failed" <<<"$err")
    verdict=
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

pass=0 fail=0
for backend in $backends; do
    fdmon=$backend
    [ "$backend" = default ] && fdmon=
    counts="$dir/counts.$backend"
    report=$counts
    rm -f "$counts"
    run ""
    report=
    if [ "$rc" -ne 0 ] || [ ! -s "$counts" ] || grep -q '^aioctx:' <<<"$err"; then
        echo "not ok - fault-walk [$backend]: the workload fails without faults (rc $rc): $err"
        fail=$((fail + 1))
        continue
    fi
    if [ "$backend" = io_uring ] && ! grep -qE '^io_uring_enter [1-9]' "$counts"; then
        echo "# fault-walk [$backend]: no io_uring_enter call (io_uring unavailable here?): nothing to fail"
    fi
    echo "# fault-walk [$backend]: calls per function: $(tr '\n' ' ' <"$counts")"
    while read -r fn count; do
        for ((n = 1; n <= count; n++)); do
            run "$fn:$n"
            judge "$fn"
            if [ -n "$verdict" ]; then
                echo "ok - [$backend] $fn:$n: $verdict"
                pass=$((pass + 1))
            else
                echo "not ok - [$backend] $fn:$n: exit $rc, $(grep -c '^aioctx:' <<<"$err") aioctx line(s)"
                sed 's/^/#   /' <<<"$err" | head -5
                fail=$((fail + 1))
            fi
        done
    done <"$counts"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
