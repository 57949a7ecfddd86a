#!/usr/bin/env bash
# Runs some already built benchmark programs several more times and appends
# to the report, for each of their result rows, the range over the
# invocations of the aioctx value and of the same-run ratio to each peer.
# Normally run by `make bench`, after scripts/run-bench.sh.
#
#   scripts/bench-ranges.sh --build-dir DIR --runs N --out FILE PROG...
#
# DIR holds the programs built by run-bench.sh and their first run's output
# (DIR/PROG.out), which counts as the first invocation; N-1 more are run
# here, one program after the other in each round. Each program already
# reports the median of several runs with its peers measured in the same
# process: a range here says how much that median moves between
# invocations (load, placement, frequency), which one run cannot show.
set -uo pipefail

build_dir=build/bench
runs=3
out=bench/RESULTS.md
timeout_secs=600
progs=()

while [ $# -gt 0 ]; do
    case "$1" in
        --build-dir) build_dir=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --timeout) timeout_secs=$2; shift 2 ;;
        -*) echo "bench-ranges: unknown option $1" >&2; exit 2 ;;
        *) progs+=("$(basename "$1" .c)"); shift ;;
    esac
done

case $runs in
    '' | *[!0-9]* | 0) echo "bench-ranges: --runs wants a positive integer, not '$runs'" >&2; exit 2 ;;
esac
if [ "${#progs[@]}" -eq 0 ]; then
    echo "bench-ranges: no programs given" >&2
    exit 2
fi

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
status=0

# Result rows have six fields (see run-bench.sh); keep them with the
# invocation number.
collect() { # PROG INVOCATION LOG
    awk -v prog="$1" -v inv="$2" 'NF == 6 && $1 !~ /^#/ { print prog, inv, $0 }' "$3" >>"$rows"
}

for prog in "${progs[@]}"; do
    if [ ! -x "$build_dir/$prog" ] || [ ! -f "$build_dir/$prog.out" ]; then
        echo "bench-ranges: $build_dir/$prog or its first run's output is missing (run run-bench.sh first)" >&2
        exit 2
    fi
    collect "$prog" 1 "$build_dir/$prog.out"
done

for ((inv = 2; inv <= runs; inv++)); do
    for prog in "${progs[@]}"; do
        log="$build_dir/$prog.range$inv.out"
        echo "==== bench-ranges: $prog, invocation $inv of $runs"
        if ! timeout "$timeout_secs" "$build_dir/$prog" </dev/null >"$log"; then
            echo "bench-ranges: $prog failed in invocation $inv" >&2
            status=1
        fi
        collect "$prog" "$inv" "$log"
    done
done

{
    echo
    echo "## Ranges over $runs invocations"
    echo
    echo "Each program below was run $runs times in a row (the first is the run"
    echo "reported above). For each row: the lowest and highest of its median, and"
    echo "of its ratio to the peer measured in the same process (ratio ="
    echo "aioctx / peer; for ns-per-operation rows lower is better, for Mops/s rows"
    echo "higher is better)."
    echo
    echo "| program | benchmark | peer | aioctx (min-max) | ratio (min-max) | unit | invocations |"
    echo "|---|---|---|---:|---:|---|---:|"
    awk '
        function num(x) { return x ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ }
        {
            key = $1 SUBSEP $3 SUBSEP $5
            if (!(key in n)) { order[++keys] = key; unit[key] = $8 }
            n[key]++
            if (num($4)) {
                if (!(key in vmin) || $4 + 0 < vmin[key]) vmin[key] = $4 + 0
                if (!(key in vmax) || $4 + 0 > vmax[key]) vmax[key] = $4 + 0
            }
            if (num($7)) {
                if (!(key in rmin) || $7 + 0 < rmin[key]) rmin[key] = $7 + 0
                if (!(key in rmax) || $7 + 0 > rmax[key]) rmax[key] = $7 + 0
            }
        }
        # 4 significant digits, without an exponent for large values.
        function fmt(x) { return (x >= 10000 || x <= -10000) ? sprintf("%.0f", x) : sprintf("%.4g", x) }
        function range(lo, hi, k) {
            if (!(k in lo)) return "-"
            return fmt(lo[k]) "-" fmt(hi[k])
        }
        END {
            for (i = 1; i <= keys; i++) {
                k = order[i]
                split(k, f, SUBSEP)
                printf "| %s | %s | %s | %s | %s | %s | %d |\n", f[1], f[2], f[3],
                    range(vmin, vmax, k), range(rmin, rmax, k), unit[k], n[k]
            }
        }' "$rows"
} >>"$out"
echo "bench-ranges: appended the ranges of ${progs[*]} to $out"
exit $status
