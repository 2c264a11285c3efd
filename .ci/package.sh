#!/usr/bin/env bash
# Packages both crates as crates.io would receive them and builds each package on its own,
# with every feature as docs.rs does. `cargo package --workspace` puts spanbus-macros into a
# temporary local registry, so spanbus's package resolves it before crates.io has it.
#
# Fails on any cargo warning except those naming the test and bench targets the packages
# leave out on purpose (`include` in Cargo.toml); a "manifest has no description, license,
# ..." warning means crates.io would refuse the crate. The .crate files and the verification
# build go into target/package, away from the main build.
#
# Cargo refuses to package files with uncommitted changes; pass --allow-dirty to try anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

cargo package --workspace --all-features --locked --target-dir target/package "$@" 2>&1 | tee "$log"

if grep -q '^warning: manifest has no' "$log"; then
    echo "package: a crate lacks the metadata crates.io requires (warning above)" >&2
    exit 1
fi
unexpected="$(grep '^warning:' "$log" | grep -v 'is not included in the published package$' || true)"
if [ -n "$unexpected" ]; then
    echo "package: unexpected warnings:" >&2
    echo "$unexpected" >&2
    exit 1
fi
ls -l target/package/package/*.crate
