#!/usr/bin/env bash
# Model-checks the broadcast channel's protocol with loom (tests/loom_channel.rs).
# A separate target dir keeps `--cfg loom` from invalidating the normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="--cfg loom" cargo test --release --target-dir target/loom --test loom_channel
