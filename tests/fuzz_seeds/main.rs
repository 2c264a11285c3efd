//! The fuzz targets' properties (fuzz/src/checks.rs) on the committed seeds, the JSON Lines
//! writer's output and nasty inputs, without libFuzzer: `.ci/fuzz.sh` runs the fuzzer itself.

#[path = "../support/mod.rs"]
mod support;

mod fuzz_seeds_and_findings_keep_their_properties;
