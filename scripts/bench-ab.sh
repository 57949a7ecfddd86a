#!/usr/bin/env bash
# A/B benchmark: the same bench programs against two builds of the library,
# run alternately in one session so that a drift of the machine hits both
# sides alike. Answers "is this change slower?" (`make bench-ab REV=...`)
# and "what do the loop metrics cost?" (`make bench-stats`).
#
#   scripts/bench-ab.sh --a-lib LIB --a-include DIR --a-name NAME
#                       --b-lib LIB --b-include DIR --b-name NAME
#                       [--libs FLAGS] [--rounds N] [--build-dir DIR]
#                       [--out FILE] BENCH.c...
#
# Each program is compiled against each side's library and headers (from
# the current tree's source; a side whose headers the current source does
# not compile against uses DIR/../bench/NAME.c, its own tree's copy, and
# the report says so). Every round runs each program once per side, the
# side that goes first alternating between rounds.
#
# Output, one line per metric (the aioctx value of each result line; a
# metric printed once per peer counts once):
#   metric  A_median  B_median  ratio  [min..max of the per-round ratio]  unit  verdict
# ratio is B/A for time units (ns, us, ms, ...), so above 1 means B is slower; for rates
# (.../s) the ratio is inverted (A/B), so above 1 always means "B slower".
# The verdict says "B slower" only when every round agrees and the median
# ratio exceeds 1 + NOISE (default 0.05, --noise).
set -uo pipefail

a_lib= a_inc= a_name=A
b_lib= b_inc= b_name=B
libs=
rounds=3
noise=0.05
build_dir=build/bench-ab
out=
benches=()
# shellcheck source=scripts/bench-ab-options.sh
. "$(dirname "$0")/bench-ab-options.sh"
while [ $# -gt 0 ]; do
    if ab_option "$1" "${2-}"; then
        shift 2
        continue
    fi
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --noise) noise=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -*) echo "bench-ab: unknown option $1" >&2; exit 2 ;;
        *) benches+=("$1"); shift ;;
    esac
done
for f in "$a_lib" "$b_lib"; do
    if [ -z "$f" ] || [ ! -f "$f" ]; then
        echo "bench-ab: library '$f' missing (build it first)" >&2
        exit 2
    fi
done
if [ "${#benches[@]}" -eq 0 ]; then
    echo "bench-ab: no benchmark programs given" >&2
    exit 2
fi
CC=${CC:-cc}
mkdir -p "$build_dir"

# shellcheck source=scripts/bench-peers.sh
. "$(dirname "$0")/bench-peers.sh"

# build SIDE LIB INCLUDE SRC: compiles SRC (or the side's own copy) to
# $build_dir/PROG.SIDE; prints a note when it fell back.
build() {
    local side=$1 lib=$2 inc=$3 src=$4 prog
    prog=$(basename "$src" .c)
    local flags="-std=gnu11 -g -O2 -I$(dirname "$src") -I$inc/compat -I$inc $peer_cflags"
    # shellcheck disable=SC2086
    if "$CC" $flags -o "$build_dir/$prog.$side" "$src" "$lib" $libs $peer_libs 2>/dev/null; then
        return 0
    fi
    local own
    own="$(dirname "$inc")/bench/$prog.c"
    flags="-std=gnu11 -g -O2 -I$(dirname "$own") -I$inc/compat -I$inc $peer_cflags"
    # shellcheck disable=SC2086
    if [ -f "$own" ] && "$CC" $flags -o "$build_dir/$prog.$side" "$own" "$lib" $libs $peer_libs; then
        echo "# $prog: side $side built from its own tree's copy ($own)"
        return 0
    fi
    echo "bench-ab: $src does not build for side $side" >&2
    return 1
}

progs=()
notes=$(mktemp)
results=$(mktemp)
trap 'rm -f "$notes" "$results"' EXIT
for src in "${benches[@]}"; do
    if build a "$a_lib" "$a_inc" "$src" >>"$notes" && build b "$b_lib" "$b_inc" "$src" >>"$notes"; then
        progs+=("$(basename "$src" .c)")
    fi
done

# results: round side metric value unit
for ((r = 1; r <= rounds; r++)); do
    if ((r % 2)); then order="a b"; else order="b a"; fi
    for prog in "${progs[@]}"; do
        for side in $order; do
            echo "bench-ab: round $r/$rounds $prog ($side)" >&2
            "$build_dir/$prog.$side" </dev/null 2>/dev/null |
                awk -v r="$r" -v s="$side" 'NF == 6 && $1 !~ /^#/ && !seen[$1]++ {
                        print r, s, $1, $2, $6 }' >>"$results"
        done
    done
done

report=$(
    echo "# A = $a_name, B = $b_name; $rounds rounds, run alternately; noise threshold $noise"
    cat "$notes"
    printf '%-40s %12s %12s %7s %-16s %-14s %s\n' metric "A" "B" "ratio" "rounds" unit verdict
    awk -v noise="$noise" '
        function median(arr, n,   i, j, t) {
            for (i = 2; i <= n; i++) {
                t = arr[i]
                for (j = i - 1; j >= 1 && arr[j] > t; j--) arr[j + 1] = arr[j]
                arr[j + 1] = t
            }
            return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
        }
        {
            key = $3; unit[key] = $5
            if (!(key in order)) { order[key] = ++nkeys; names[nkeys] = key }
            val[key, $2, $1] = $4; rounds[key, $1] = 1
            if ($1 > maxr) maxr = $1
        }
        END {
            for (k = 1; k <= nkeys; k++) {
                key = names[k]; na = nb = nr = 0
                rate = (unit[key] ~ /\/s$/)
                lo = 1e18; hi = -1; all_slower = 1
                for (r = 1; r <= maxr; r++) {
                    if (!((key, "a", r) in val) || !((key, "b", r) in val)) continue
                    a = val[key, "a", r]; b = val[key, "b", r]
                    A[++na] = a; B[++nb] = b
                    if (a <= 0 || b <= 0) continue
                    q = rate ? a / b : b / a
                    if (q < lo) lo = q
                    if (q > hi) hi = q
                    if (q <= 1) all_slower = 0
                    nr++
                }
                if (na == 0 || nr == 0) continue
                ma = median(A, na); mb = median(B, nb)
                q = rate ? ma / mb : mb / ma
                verdict = (all_slower && q > 1 + noise) ? "B slower" : \
                          (q < 1 - noise ? "B faster" : "same within noise")
                printf "%-40s %12.4g %12.4g %7.3f %-16s %-14s %s\n", key, ma, mb, q,
                       sprintf("[%.2f..%.2f]", lo, hi), unit[key], verdict
            }
        }' "$results"
)
echo "$report"
if [ -n "$out" ]; then
    echo "$report" >"$out"
    echo "bench-ab: wrote $out" >&2
fi
