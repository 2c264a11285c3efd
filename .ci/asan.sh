#!/usr/bin/env bash
# Runs the tests that exercise spanbus's `unsafe` code under AddressSanitizer: the
# single-block record and its reference count (src/record.rs, `RecordRef`), the record pool
# (src/pool.rs; `--cfg spanbus_asan` poisons pooled blocks, so a record used after its last
# reference is gone is reported although its memory stays in the pool), the lock-free ring
# records enter a channel through (src/delivery/inbox.rs), the records a channel lends to its readers
# (src/delivery/batch.rs, `Batch`) and the current-context pointer
# (src/context.rs, `Swap`). Miri needs a nightly toolchain, which this machine cannot fetch;
# ASan works on the stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
asan_test() {
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address --cfg spanbus_asan" \
    cargo test --target x86_64-unknown-linux-gnu --target-dir target/asan "$@"
}
asan_test --test hierarchy_and_delivery --test spans_and_context -- \
  events_of_any_size_and_alignment_read_back_intact_and_drop_once:: \
  a_handler_removed_mid_batch_still_reads_whole_records:: \
  the_current_span_and_tags_follow_each_task::
asan_test --lib -- context:: delivery:: pool:: record::
