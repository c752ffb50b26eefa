#!/usr/bin/env bash
# Builds the Debian package target/debian/rfmount_VERSION_ARCH.deb with
# cargo-deb: the binaries rfserve, rfmount and rf (/usr/bin: mount.fuse3
# from the fuse3 dependency runs rfmount for `mount -t fuse.rfmount` and
# fstab lines), the man pages rfserve(8), rfmount(8) and rf(1), bash, zsh
# and fish completions, the systemd unit rfserve.service with
# /etc/default/rfserve, and mount-at-boot examples (fstab, .mount,
# .automount) in /usr/share/doc/rfmount/examples.
#
# Usage: scripts/package.sh [--dev]
#   --dev   package the dev-profile binaries (the `cargo build --workspace
#           --all-targets` of scripts/test.sh; stripped, fast compression) instead of a
#           release build; fast, for tests of the packaging itself.
# Installs cargo-deb (3.8.0, about 7 minutes to compile) when missing.
# Prints the path of the .deb on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
    --dev) profile=dev ;;
    "") ;;
    *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> installing cargo-deb" >&2
    cargo install --locked cargo-deb --version 3.8.0 >&2
fi

target=${CARGO_TARGET_DIR:-target}
echo "==> building ($profile)" >&2
if [ "$profile" = dev ]; then
    # The same build as scripts/test.sh, so that after it nothing is rebuilt.
    cargo build --workspace --all-targets >&2
else
    cargo build --profile release --bin rfserve --bin rfmount --bin rf -p rfmount >&2
    cargo build --profile release -p rfmount-dist >&2
fi

dir=$([ "$profile" = dev ] && echo debug || echo release)
dist=$target/dist
rm -rf "$dist"
"$target/$dir/rfmount-dist" man "$dist/man" >/dev/null
"$target/$dir/rfmount-dist" completions "$dist/completions" >/dev/null
gzip -9n "$dist"/man/man*/*

echo "==> cargo deb" >&2
fast=()
[ "$profile" = dev ] && fast=(--fast)
# cargo-deb reads the asset list in Cargo.toml ([package.metadata.deb]);
# its target/release paths are taken from the profile given here. It prints
# the path of the package it wrote.
deb=$(cargo deb -p rfmount --no-build --profile "$profile" "${fast[@]}" | tail -n 1)
[ -f "$deb" ] || { echo "$0: error: cargo deb wrote no package" >&2; exit 1; }
echo "$deb"
