#!/usr/bin/env bash
# Instructions per API operation (bench/ops/ops.c) for two libraries,
# counted by callgrind: deterministic, so a regression of a few
# instructions on one call is visible on a loaded machine where wall-clock
# runs are not. Normally run by `make bench-ops REV=...`.
#
#   scripts/bench-ops.sh --a-lib LIB --a-include DIR --a-name NAME
#                        --b-lib LIB --b-include DIR --b-name NAME
#                        [--libs FLAGS] [--build-dir DIR] [OP...]
#
# Prints one line per operation: instructions per call for A and B and
# their ratio (B/A: above 1 means B executes more instructions).
set -uo pipefail

a_lib= a_inc= a_name=A b_lib= b_inc= b_name=B libs= build_dir=build/bench-ops
ops=()
# shellcheck source=scripts/bench-ab-options.sh
. "$(dirname "$0")/bench-ab-options.sh"
while [ $# -gt 0 ]; do
    if ab_option "$1" "${2-}"; then
        shift 2
        continue
    fi
    case "$1" in
        -*) echo "bench-ops: unknown option $1" >&2; exit 2 ;;
        *) ops+=("$1"); shift ;;
    esac
done
if [ "${#ops[@]}" -eq 0 ]; then
    ops=(bh_schedule_pending bh_schedule_cancel aio_notify aio_poll_empty aio_poll_bh
        bh_resched bh_resched_blocking bh_resched_notimer bh_resched_blocking_notimer fd_ready_epoll oneshot timer_mod_del timer_rearm timer_pending
        clock_get co_switch co_create co_mutex qemu_mutex in_coroutine get_ctx)
fi
CC=${CC:-cc}
mkdir -p "$build_dir"
glib_cflags=$(pkg-config --cflags glib-2.0)
for side in a b; do
    lib_var=${side}_lib inc_var=${side}_inc
    # shellcheck disable=SC2086
    "$CC" -std=gnu11 -O2 -g -Wall -Wextra -Werror -I"${!inc_var}/compat" -I"${!inc_var}" \
        $glib_cflags -o "$build_dir/ops.$side" bench/ops/ops.c "${!lib_var}" $libs || exit 1
done

echo "# instructions per call (callgrind); A = $a_name, B = $b_name"
printf '%-22s %10s %10s %7s\n' op A B ratio
status=0
for op in "${ops[@]}"; do
    declare -A ir=()
    for side in a b; do
        out="$build_dir/$op.$side.cg"
        if ! valgrind --tool=callgrind --toggle-collect=run_op --callgrind-out-file="$out" \
            "$build_dir/ops.$side" "$op" >/dev/null 2>"$build_dir/$op.$side.err"; then
            echo "bench-ops: $op failed on side $side (see $build_dir/$op.$side.err)" >&2
            status=1
            continue 2
        fi
        ir[$side]=$(awk '/^summary:/ { print $2; exit }' "$out")
    done
    awk -v op="$op" -v a="${ir[a]}" -v b="${ir[b]}" \
        'BEGIN { printf "%-22s %10.1f %10.1f %7.2f\n", op, a / 10000, b / 10000, b / a }'
done
echo "# profiles: $build_dir/<op>.<a|b>.cg (callgrind_annotate --inclusive=yes FILE)"
exit $status
