#!/usr/bin/env bash
# Fail unless the committed C header is exactly what build.rs generates.
#
#   scripts/check-header.sh [include/aioctx.h]
#   scripts/check-header.sh --update [include/aioctx.h]   (`make header`)
#
# 1. Generate a fresh header into a temp dir (build.rs honours
#    AIOCTX_HEADER_OUT) and compare it byte for byte with the working copy.
# 2. Inside a git work tree, also compare the working copy with the committed
#    one: any build rewrites include/aioctx.h, so a stale committed header
#    would otherwise pass once a build has run in the checkout.
# With --update, write the fresh header over the working copy instead
# (a plain `cargo build` does not rerun build.rs for a hand-edited header).
set -euo pipefail

update=0
if [ "${1:-}" = --update ]; then
    update=1
    shift
fi
header=${1:-include/aioctx.h}
CARGO=${CARGO:-cargo}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "check-header: generating a fresh header (AIOCTX_HEADER_OUT=$tmp/aioctx.h $CARGO build)"
AIOCTX_HEADER_OUT="$tmp/aioctx.h" "$CARGO" build --quiet

if [ ! -f "$tmp/aioctx.h" ]; then
    echo "check-header: FAILED: build.rs did not write \$AIOCTX_HEADER_OUT ($tmp/aioctx.h)" >&2
    exit 1
fi
if [ "$update" = 1 ]; then
    if cmp -s "$tmp/aioctx.h" "$header"; then
        echo "header: $header is up to date"
    else
        cp "$tmp/aioctx.h" "$header"
        echo "header: rewrote $header"
    fi
    exit 0
fi
if [ ! -f "$header" ]; then
    echo "check-header: FAILED: $header does not exist; run \`make header\` and commit it" >&2
    exit 1
fi
if ! cmp -s "$tmp/aioctx.h" "$header"; then
    echo "check-header: FAILED: $header differs from what build.rs generates now" >&2
    echo "  (run \`make header\` to regenerate it, then commit it; never edit it by hand)" >&2
    diff -u "$header" "$tmp/aioctx.h" | head -n 60 >&2 || true
    exit 1
fi

if git rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
    git rev-parse --verify --quiet HEAD >/dev/null; then
    if ! git ls-files --error-unmatch "$header" >/dev/null 2>&1; then
        echo "check-header: FAILED: $header is not tracked by git; commit it" >&2
        exit 1
    fi
    if ! git diff --quiet HEAD -- "$header"; then
        echo "check-header: FAILED: the committed $header is stale: the generated one" >&2
        echo "  (now in the working copy) differs from HEAD; commit it" >&2
        git --no-pager diff --stat HEAD -- "$header" >&2
        exit 1
    fi
fi

echo "check-header: $header is up to date"
