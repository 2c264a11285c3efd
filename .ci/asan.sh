#!/usr/bin/env bash
# Runs the tests that exercise spanbus's `unsafe` code under AddressSanitizer: the
# single-allocation record (src/record.rs) and the records a channel lends to its readers
# (src/channel.rs, `Batch`). Miri needs a nightly toolchain, which this machine
# cannot fetch; ASan works on the stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
  cargo test --target x86_64-unknown-linux-gnu --target-dir target/asan \
  --test events_of_any_size_and_alignment_read_back_intact_and_drop_once \
  --test a_handler_removed_mid_batch_still_reads_whole_records
