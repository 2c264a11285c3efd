//! The main example's binary (`examples/rag_pipeline.rs`), for the tests that run it against a
//! real backend: where it is built, and the figures of its output.

use std::path::PathBuf;
use std::time::Instant;

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

/// What a run of the example printed: its query and span counts, its OTLP line, all of it.
pub struct Ran {
    pub stdout: String,
    pub queries: usize,
    pub recorded: usize,
}

/// Runs the example with `env` (the `OTEL_EXPORTER_OTLP_TRACES_*` endpoint and protocol
/// removed, so the generic variables given here apply) and checks that it exported every span
/// it recorded. `None` (skipped) when the example is not built, outside CI; a failure in CI.
pub async fn run_example(test: &str, env: &[(&str, &str)]) -> Option<Ran> {
    let Some(example) = example_binary() else {
        let why = "the example is not built (cargo build --all-features --example rag_pipeline)";
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {why}; CI is set, so this is a failure, not a skip");
        }
        eprintln!("SKIPPED {test}: {why}");
        return None;
    };
    let started = Instant::now();
    let output = tokio::process::Command::new(&example)
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let otlp_line = stdout
        .lines()
        .find(|l| l.starts_with("OTLP:"))
        .unwrap_or("")
        .to_owned();
    println!(
        "example ran in {:?}; {}",
        started.elapsed(),
        stdout
            .lines()
            .filter(|l| l.starts_with("  queries ") || l.starts_with("  spans "))
            .chain([otlp_line.as_str()])
            .collect::<Vec<_>>()
            .join("; ")
    );
    let queries = figure(&stdout, "queries").expect("the example's queries line") as usize;
    let recorded = figure(&stdout, "spans").expect("the example's spans line") as usize;
    let exported = figure(&stdout, "OTLP:").expect("the example's OTLP line") as usize;
    assert_eq!(exported, recorded, "{otlp_line}");
    Some(Ran {
        stdout,
        queries,
        recorded,
    })
}
