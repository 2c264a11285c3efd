#!/usr/bin/env bash
# Builds the library, every feature on, with the oldest Rust the manifests promise
# (`rust-version` in Cargo.toml), so that the promise is checked rather than assumed.
# The tests and benchmarks need newer Rust (their dev-dependencies do); only the library and
# the macros crate are held to the minimum.
set -euo pipefail
cd "$(dirname "$0")/.."

msrv="$(sed -n 's/^rust-version = "\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)"
if [ -z "$msrv" ]; then
    echo "msrv: no rust-version in Cargo.toml" >&2
    exit 1
fi
echo "minimum supported Rust: $msrv"
rustup toolchain install "$msrv" --profile minimal --no-self-update
cargo "+$msrv" check --workspace --lib --all-features --locked --target-dir target/msrv
