//! The main example's binary (`examples/rag_pipeline.rs`), for the tests that run it against a
//! real backend: where it is built, and the figures of its output.

use std::path::PathBuf;

/// The example's binary, built beside this test binary (`target/<profile>/examples/`).
pub fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe
        .parent()?
        .parent()?
        .join("examples")
        .join(format!("rag_pipeline{}", std::env::consts::EXE_SUFFIX));
    path.exists().then_some(path)
}

/// The number in the example's output line that starts with `prefix` (`spans      476 ...`).
pub fn figure(output: &str, prefix: &str) -> Option<u64> {
    output
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.strip_prefix(prefix))
        .find_map(|rest| {
            rest.split_whitespace()
                .next()?
                .trim_end_matches(':')
                .parse()
                .ok()
        })
}
