//! Phoenix over gRPC: the main example (`examples/rag_pipeline.rs`, 100 concurrent queries),
//! configured only by the standard variables (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the endpoint
//! Phoenix's gRPC port), exports to a real Arize Phoenix, and its traces are read back through
//! Phoenix's REST API: every trace, every span the example recorded, no orphan, and the LLM
//! spans with the model and token counts as Phoenix reports them. Run by
//! `.ci/phoenix-tests.sh`, which builds the example first (ignored otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::example::run_example;
use crate::support::phoenix::{
    phoenix_grpc_url, require_phoenix, unique_project, wait_for_project_spans,
};

const TEST: &str = "the_main_examples_traces_read_back_from_phoenix_over_grpc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Phoenix and the built example: bash .ci/phoenix-tests.sh"]
async fn the_main_examples_traces_read_back_from_phoenix_over_grpc() {
    let Some(base) = require_phoenix(TEST).await else {
        return;
    };
    let project = unique_project("spanbus-rag-grpc");
    let grpc = phoenix_grpc_url();
    let Some(ran) = run_example(
        TEST,
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
            ("PHOENIX_PROJECT_NAME", project.as_str()),
        ],
    )
    .await
    else {
        return;
    };
    let (queries, recorded) = (ran.queries, ran.recorded);

    let spans = wait_for_project_spans(&base, &project, recorded, Duration::from_secs(90)).await;
    let ids: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s["context"]["span_id"].as_str())
        .collect();
    let orphans = spans
        .iter()
        .filter(|s| s["parent_id"].as_str().is_some_and(|p| !ids.contains(p)))
        .count();
    let mut by_trace: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &spans {
        *by_trace
            .entry(s["context"]["trace_id"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    let llm: Vec<&Value> = spans.iter().filter(|s| s["span_kind"] == "LLM").collect();
    let with_usage: Vec<&&Value> = llm
        .iter()
        .filter(|s| s["attributes"]["llm.token_count.prompt"].as_u64().is_some())
        .collect();
    let models: BTreeSet<&str> = llm
        .iter()
        .filter_map(|s| s["attributes"]["llm.model_name"].as_str())
        .collect();
    let prompt: u64 = with_usage
        .iter()
        .filter_map(|s| s["attributes"]["llm.token_count.prompt"].as_u64())
        .sum();
    let completion: u64 = with_usage
        .iter()
        .filter_map(|s| s["attributes"]["llm.token_count.completion"].as_u64())
        .sum();
    println!(
        "Phoenix (gRPC) read back: {} traces, {} spans, {orphans} orphans; {} LLM spans, models \
         {models:?}, {} with token counts ({prompt} prompt / {completion} completion tokens)",
        by_trace.len(),
        spans.len(),
        llm.len(),
        with_usage.len()
    );
    assert_eq!(by_trace.len(), queries);
    assert_eq!(spans.len(), recorded);
    assert_eq!(orphans, 0);
    assert!(!llm.is_empty());
    assert!(
        models.iter().all(|m| m.starts_with("gpt-4o-mini")),
        "{models:?}"
    );
    // The calls that timed out were cut short before their usage came: every other one has it.
    assert!(
        with_usage.len() * 10 >= llm.len() * 8,
        "{} of {}",
        with_usage.len(),
        llm.len()
    );
    assert!(prompt > 0 && completion > 0);
}
