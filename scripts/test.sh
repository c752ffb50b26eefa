#!/usr/bin/env bash
# The project's test command: builds every target of the workspace, then runs
# every test (unit, crate integration and the end-to-end suite in tests/) with
# cargo-nextest's `ci` profile (.config/nextest.toml). Extra arguments go to
# nextest, e.g. `scripts/test.sh --test e2e rf_cli::` or `-E 'test(mount)'`.
#
# The end-to-end tests start real rfserve/rf/rfmount processes; the FUSE mount
# tests need /dev/fuse and fusermount3 (package fuse3) and, with CI=true, fail
# instead of skipping when those are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
exec cargo nextest run --workspace --profile ci "$@"
