#!/usr/bin/env bash
# Fault-injection walk (issue 15): builds c-tests/fault/fault-inject.c as an
# LD_PRELOAD object and c-tests/fault/workload.c against the library, counts
# the workload's calls of each faultable function, then reruns it once per
# call site with that call failing (AIOCTX_FAULT=FUNC:N). Each run must end
# in success (exit 0), a reported Error (exit 2), or exactly one "aioctx:"
# line and SIGABRT; a hang (timeout), another signal or exit status, or a
# second line fails the walk.
#
# Usage: scripts/fault-walk.sh LIB BUILD_DIR "CFLAGS" "LIBS"
set -uo pipefail
lib=$1 dir=$2 cflags=$3 libs=$4
mkdir -p "$dir"
cc=${CC:-cc}
$cc -shared -fPIC -O1 -Wall -Wextra -Werror -o "$dir/fault-inject.so" c-tests/fault/fault-inject.c -ldl || exit 1
# shellcheck disable=SC2086
$cc $cflags -o "$dir/workload" c-tests/fault/workload.c "$lib" $libs || exit 1

run() { # run FAULT: runs the workload, sets rc and err
    err=$(AIOCTX_FAULT=$1 AIOCTX_FAULT_REPORT=${report:-} timeout 20 \
        env LD_PRELOAD="$dir/fault-inject.so" "$dir/workload" 2>&1 >/dev/null)
    rc=$?
}

report="$dir/counts"
rm -f "$report"
run ""
report=
if [ "$rc" -ne 0 ] || [ ! -s "$dir/counts" ]; then
    echo "not ok - fault-walk: the workload fails without faults (rc $rc): $err"
    echo "0 passed, 1 failed"
    exit 1
fi
pass=0 fail=0
while read -r fn count; do
    for ((n = 1; n <= count; n++)); do
        run "$fn:$n"
        lines=$(grep -c '^aioctx:' <<<"$err")
        verdict=
        case $rc in
            0) verdict="success" ;;
            2) verdict="Error" ;;
            134) [ "$lines" -eq 1 ] && verdict="one aioctx line + abort" ;;
        esac
        if [ -n "$verdict" ] && { [ "$rc" -eq 134 ] || [ "$lines" -eq 0 ]; }; then
            echo "ok - $fn:$n: $verdict"
            pass=$((pass + 1))
        else
            echo "not ok - $fn:$n: exit $rc, $lines aioctx line(s)"
            sed 's/^/#   /' <<<"$err" | head -5
            fail=$((fail + 1))
        fi
    done
done <"$dir/counts"
echo "# fault-walk: $pass passed, $fail failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
