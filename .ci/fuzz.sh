#!/usr/bin/env bash
# Fuzzes one target of fuzz/ (cargo-fuzz + libFuzzer) for a number of seconds.
#
#   bash .ci/fuzz.sh TARGET SECONDS [LIBFUZZER_ARGS...]
#
# TARGET: jsonl_reader | traceparent | tracestate | extract. The committed seeds are in
# fuzz/seeds/TARGET; what the fuzzer finds goes into fuzz/corpus/TARGET (kept between runs,
# not committed) and crashes into fuzz/artifacts/TARGET. Exits non-zero on a crash.
#
# With AddressSanitizer (the default) cargo-fuzz passes the nightly-only `-Zsanitizer=address`;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept it. FUZZ_SANITIZER=none builds without
# the sanitizer (about 7x faster on the JSON Lines target; plain stable would do, no
# RUSTC_BOOTSTRAP needed). Switching sanitizers rebuilds fuzz/target.
#
# Not part of .ci/run (too slow for every push): the properties run in CI without the fuzzer
# through tests/fuzz_seeds/ (`cargo test --test fuzz_seeds`).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

target="${1:?usage: .ci/fuzz.sh TARGET SECONDS [LIBFUZZER_ARGS...]}"
seconds="${2:?usage: .ci/fuzz.sh TARGET SECONDS [LIBFUZZER_ARGS...]}"
shift 2

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

mkdir -p "corpus/$target"
RUSTC_BOOTSTRAP=1 cargo fuzz run --release --sanitizer "${FUZZ_SANITIZER:-address}" \
  "$target" "corpus/$target" "seeds/$target" -- \
  -max_total_time="$seconds" -print_final_stats=1 "$@"
