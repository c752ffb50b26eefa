#!/usr/bin/env bash
# The project's test command: builds every target of the workspace, then runs
# every test (unit, crate integration and the end-to-end suite in tests/) with
# cargo-nextest's `ci` profile (.config/nextest.toml). Extra arguments go to
# nextest, e.g. `scripts/test.sh --test e2e rf_cli::` or `-E 'test(mount)'`.
#
# The end-to-end tests start real rfserve/rf/rfmount processes; the FUSE mount
# tests need /dev/fuse and fusermount3 (installed here when missing) and, with
# CI=true, fail instead of skipping when those are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The mount tests need fusermount3 (Debian package fuse3) and /dev/fuse.
if ! command -v fusermount3 >/dev/null 2>&1; then
    echo "==> installing fuse3 (fusermount3 is missing)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q </dev/null
    as_root apt-get install -y -q --no-install-recommends fuse3 </dev/null
fi
if [ ! -e /dev/fuse ]; then
    as_root modprobe fuse >/dev/null 2>&1 || true
fi

cargo build --workspace --all-targets
exec cargo nextest run --workspace --profile ci "$@"
