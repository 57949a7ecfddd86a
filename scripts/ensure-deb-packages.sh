#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not
# installed yet. Cheap when everything is present: one `dpkg -s` per package,
# no apt-get call at all.
#
#   scripts/ensure-deb-packages.sh pkg-config libglib2.0-dev ...
#
# Environment:
#   AIOCTX_DEPS_DRY_RUN=1  print the apt-get commands instead of running them
#                          (exit 0), e.g. to see what a fresh machine would get.
#   AIOCTX_DEPS_SKIP=1     do nothing (for machines managed some other way).
#
# Runs `apt-get update` first (only when something is missing), installs
# non-interactively, and uses sudo only when not root.
set -euo pipefail

if [ "${AIOCTX_DEPS_SKIP:-0}" = 1 ]; then
    exit 0
fi

if ! command -v dpkg >/dev/null 2>&1; then
    echo "deps: not a Debian system (no dpkg); make sure these are installed: $*" >&2
    exit 0
fi

missing=()
for pkg in "$@"; do
    # `dpkg -s` also succeeds for removed-but-configured packages; require
    # the "install ok installed" state.
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

echo "deps: missing Debian packages: ${missing[*]}"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 || [ "${AIOCTX_DEPS_DRY_RUN:-0}" = 1 ]; then
        sudo=(sudo -n)
    else
        echo "deps: not root and no sudo; install them by hand:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

# Wait for another apt/dpkg (e.g. unattended-upgrades) instead of failing.
apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
update=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -q update)
install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" -q -y
         --no-install-recommends install "${missing[@]}")

if [ "${AIOCTX_DEPS_DRY_RUN:-0}" = 1 ]; then
    echo "deps: dry run, would run:"
    echo "  ${update[*]}"
    echo "  ${install[*]}"
    exit 0
fi

echo "+ ${update[*]}"
"${update[@]}" </dev/null
echo "+ ${install[*]}"
"${install[@]}" </dev/null

for pkg in "${missing[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed$'; then
        echo "deps: $pkg is still not installed after apt-get install" >&2
        exit 1
    fi
done
echo "deps: installed ${missing[*]}"
