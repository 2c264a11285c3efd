#!/usr/bin/env bash
# Runs the unit tests of spanbus's `unsafe` code under Miri: the record envelope and its
# reference count (src/record.rs), the record pool (src/pool.rs), the lock-free inbox, the
# lent batches and the receiver (src/delivery/), and the current-context pointer
# (src/context.rs). Miri checks what AddressSanitizer cannot: aliasing (Stacked Borrows), data
# races and uninitialized reads, on every interleaving it happens to run.
#
# Needs a nightly toolchain with the miri and rust-src components; installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# Miri ships only with nightly toolchains, from the Rust project's own server rather than a
# package registry. If that cannot be had, say so loudly and let the rest of CI stand: the same
# code still runs under AddressSanitizer (.ci/asan.sh) and loom (.ci/loom.sh).
if ! { rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal; } ||
   ! rustup component add miri rust-src --toolchain nightly; then
  echo "!! MIRI NOT RUN: no nightly toolchain with the miri component could be installed"
  exit 0
fi
cargo +nightly miri setup
# Isolation off: the record clock reads the system time. Many seeds: more interleavings.
MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
  cargo +nightly miri test --target-dir target/miri --lib -- \
  -Z unstable-options --report-time context:: delivery:: pool:: record::
