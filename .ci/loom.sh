#!/usr/bin/env bash
# Model-checks the delivery protocol with loom (src/delivery/loom.rs, a test module compiled
# only under `--cfg loom`). A separate target dir keeps `--cfg loom` from invalidating the
# normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom" cargo test --release --target-dir target/loom --lib delivery::loom
