#!/usr/bin/env bash
# check-qemu-symbols.sh LIB: every name of tests/data/qemu-abi-symbols.txt
# (copied from ../shared/spec/qemu-abi-symbols.txt: what code compiled
# against QEMU 10.2's headers links from the event loop) must be defined in
# the static library LIB with the right kind: T a function, D/B a data
# object (initialised or not), U a hook the library calls and provides as a
# weak default (W/V in nm). Names listed in tests/data/qemu-abi-missing.txt
# are known gaps: reported, not failed; one that appears fails the check
# until it is taken off that list (so the list only shrinks).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
lib=${1:-target/release/libaioctx.a}
list=tests/data/qemu-abi-symbols.txt
known_missing=tests/data/qemu-abi-missing.txt

defined=$(nm --defined-only "$lib" 2>/dev/null | awk 'NF == 3 { print $3, $2 }' | sort -u)
pass=0 fail=0 gap=0
while read -r name kind _; do
    case $name in '' | '#'*) continue ;; esac
    kinds=$(awk -v n="$name" '$1 == n { print $2 }' <<<"$defined" | sort -u | tr -d '\n')
    case $kind in
        T) want='[TW]' ;;
        D | B) want='[DBRVdbr]' ;;
        U) want='[WV]' ;;
        *) echo "check-qemu-symbols: bad kind '$kind' for $name" >&2; exit 2 ;;
    esac
    listed_missing=0
    if grep -qx "$name" "$known_missing"; then listed_missing=1; fi
    if [[ $kinds =~ $want ]]; then
        if [ "$listed_missing" = 1 ]; then
            echo "not ok - $name is defined now: take it off $known_missing"
            fail=$((fail + 1))
        else
            pass=$((pass + 1))
        fi
    elif [ "$listed_missing" = 1 ]; then
        echo "# known gap: $name ($kind)"
        gap=$((gap + 1))
    else
        echo "not ok - $name: want kind $kind, nm shows '${kinds:-nothing}'"
        fail=$((fail + 1))
    fi
done <"$list"
echo "# $gap known gaps (tests/data/qemu-abi-missing.txt)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
