//! Phoenix over gRPC: the RAG-shaped trace of the HTTP Phoenix test, and then a hundred
//! pipeline traces in the main example's style (query → retrieve → LLM chat, some failing, some
//! cancelled), exported over OTLP/gRPC to Phoenix's gRPC port (feature `otlp-grpc`) and read
//! back through its REST API. Run by `.ci/phoenix-tests.sh` (ignored otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::future::pending;
use std::time::{Duration, Instant};

use crate::support::phoenix::{
    by_name, phoenix_grpc_url, require_phoenix, unique_project, wait_for_project_spans,
    wait_for_spans,
};
use crate::support::typed;
use serde_json::{Value, json};
use spanbus::events::{LLMChatEndEvent, LLMChatStartEvent, RetrievalEndEvent, RetrievalStartEvent};
use spanbus::integrations::otlp::{OtlpExporter, OtlpHandle, Protocol};
use spanbus::{Dispatcher, SpanFutureExt, current_span};

/// An exporter to Phoenix's gRPC port, into `project`, ignoring the process's OTLP variables.
fn grpc_exporter(project: &str) -> (OtlpExporter, OtlpHandle) {
    let exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(phoenix_grpc_url())
        .environment(Vec::<(String, String)>::new())
        .project_name(project)
        .service_name("spanbus-tests-grpc")
        .build()
        .unwrap();
    let handle = exporter.handle();
    (exporter, handle)
}

/// One LLM call's events: a user question, then an answer with token usage.
async fn chat(llm: &Dispatcher, question: &str, prompt_tokens: u64, completion_tokens: u64) {
    llm.event(LLMChatStartEvent {
        messages: vec![
            typed(
                json!({"role": "system", "blocks": [{"block_type": "text", "text": "Be brief."}]}),
            ),
            typed(json!({"role": "user", "content": question})),
        ],
        additional_kwargs: Default::default(),
        model_dict: json!({"model": "gpt-4o-mini", "temperature": 0.1})
            .as_object()
            .unwrap()
            .clone(),
    })
    .await
    .unwrap();
    llm.event(LLMChatEndEvent {
        messages: vec![],
        response: Some(typed(json!({
            "message": {"role": "assistant", "content": "An async instrumentation bus."},
            "raw": {"usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }},
        }))),
    })
    .await
    .unwrap();
}

async fn retrieve(app: &Dispatcher, question: &str) {
    app.event(RetrievalStartEvent {
        str_or_query_bundle: json!({"query_str": question}),
    })
    .await
    .unwrap();
    app.event(RetrievalEndEvent {
        str_or_query_bundle: json!({"query_str": question}),
        nodes: vec![
            typed(json!({"node": {"id_": "doc-1", "text": "spanbus ports llama-index", "metadata": {"file": "a.md"}}, "score": 0.91})),
            typed(json!({"node": {"id_": "doc-2", "text": "it exports to Phoenix"}, "score": 0.5})),
        ],
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Phoenix: bash .ci/phoenix-tests.sh"]
async fn a_pipeline_trace_exported_over_grpc_reads_back_from_phoenix() {
    let Some(base) =
        require_phoenix("a_pipeline_trace_exported_over_grpc_reads_back_from_phoenix").await
    else {
        return;
    };
    let project = unique_project("spanbus-grpc-pipeline");
    let (exporter, stats) = grpc_exporter(&project);
    let app = Dispatcher::new("rag").unwrap();
    app.add_handler(exporter).unwrap();
    let llm = Dispatcher::builder("rag.llm").parent(&app).build().unwrap();

    let root = async {
        let root = current_span().unwrap();
        retrieve(&app, "what is spanbus?")
            .in_span(app.span("Retriever.retrieve"))
            .await;
        chat(&llm, "what is spanbus?", 12, 6)
            .in_span(llm.span("OpenAI.chat").args(json!({"temperature": 0.1})))
            .await;
        let failed = async { Err::<(), _>("tool exploded") }
            .in_span_result(app.span("Tool.call").tag("openinference.span.kind", "TOOL"))
            .await;
        assert!(failed.is_err());
        // Cancelled: the future is dropped by the timeout before it completes.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            pending::<()>().in_span(app.span("Slow.step")),
        )
        .await;
        assert!(cancelled.is_err());
        root
    }
    .in_span(
        app.span("RAG.query")
            .args(json!({"question": "what is spanbus?"}))
            .tag("session.id", "sess-42"),
    )
    .await;

    let report = app.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    let s = stats.stats();
    println!("exporter stats (gRPC to {}): {s:?}", stats.endpoint());
    assert_eq!(s.exported, 5, "last error: {:?}", stats.last_error());
    assert_eq!((s.dropped, s.abandoned, s.pending), (0, 0, 0));

    let trace_id = root.trace_id().to_string();
    let spans = wait_for_spans(&base, &project, &trace_id, 5, Duration::from_secs(60)).await;
    println!(
        "Phoenix returned {} spans for trace {trace_id}",
        spans.len()
    );
    assert_eq!(spans.len(), 5, "{spans:#?}");
    for s in &spans {
        assert_eq!(s["context"]["trace_id"], trace_id.as_str());
    }

    let query = by_name(&spans, "RAG.query");
    assert_eq!(query["parent_id"], Value::Null);
    assert_eq!(query["context"]["span_id"], root.span_id().to_string());
    assert_eq!(query["span_kind"], "CHAIN");
    assert_eq!(query["status_code"], "OK");
    assert_eq!(query["attributes"]["session.id"], "sess-42");
    let root_id = root.span_id().to_string();
    for s in spans.iter().filter(|s| s["name"] != "RAG.query") {
        assert_eq!(s["parent_id"], root_id.as_str(), "{}", s["name"]);
    }

    let retriever = by_name(&spans, "Retriever.retrieve");
    assert_eq!(retriever["span_kind"], "RETRIEVER");
    let a = &retriever["attributes"];
    assert_eq!(a["retrieval.documents.0.document.id"], "doc-1");
    assert_eq!(a["retrieval.documents.0.document.score"], 0.91);
    assert_eq!(a["retrieval.documents.1.document.id"], "doc-2");

    // The LLM span, found by its kind (its name may follow a naming convention).
    let llm_spans: Vec<&Value> = spans.iter().filter(|s| s["span_kind"] == "LLM").collect();
    assert_eq!(llm_spans.len(), 1, "{spans:#?}");
    let chat = llm_spans[0];
    assert_eq!(chat["status_code"], "OK");
    let a = &chat["attributes"];
    assert_eq!(a["llm.model_name"], "gpt-4o-mini");
    assert_eq!(a["llm.token_count.prompt"], 12);
    assert_eq!(a["llm.token_count.completion"], 6);
    assert_eq!(a["llm.token_count.total"], 18);
    assert_eq!(a["spanbus.dispatcher"], "rag.llm");
    let events: Vec<&str> = chat["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["LLMChatStartEvent", "LLMChatEndEvent"]);

    let tool = by_name(&spans, "Tool.call");
    assert_eq!(tool["span_kind"], "TOOL");
    assert_eq!(tool["status_code"], "ERROR");
    assert_eq!(tool["status_message"], "tool exploded");
    assert_eq!(tool["attributes"]["spanbus.drop_reason"], "error");

    let slow = by_name(&spans, "Slow.step");
    assert_eq!(slow["status_code"], "ERROR");
    assert_eq!(slow["status_message"], "span cancelled");
    assert_eq!(slow["attributes"]["spanbus.drop_reason"], "cancelled");
    println!(
        "Phoenix read-back over gRPC OK: project {project}, 5 spans, kinds CHAIN/RETRIEVER/LLM/TOOL/CHAIN, 2 ERROR"
    );
}

const QUERIES: usize = 100;

/// What happens to query `i`, as in the main example: some fail, some time out.
fn fate(i: usize) -> &'static str {
    if i % 10 == 3 {
        "tool fails"
    } else if i % 12 == 7 {
        "times out"
    } else {
        "fine"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Phoenix: bash .ci/phoenix-tests.sh"]
async fn a_hundred_pipeline_traces_exported_over_grpc_read_back_whole_from_phoenix() {
    let Some(base) = require_phoenix(
        "a_hundred_pipeline_traces_exported_over_grpc_read_back_whole_from_phoenix",
    )
    .await
    else {
        return;
    };
    let project = unique_project("spanbus-grpc-load");
    let (exporter, stats) = grpc_exporter(&project);
    let app = Dispatcher::new("rag").unwrap();
    app.add_handler(exporter).unwrap();
    let llm = Dispatcher::builder("rag.llm").parent(&app).build().unwrap();

    let started = Instant::now();
    let queries = (0..QUERIES).map(|i| {
        let (app, llm) = (&app, &llm);
        async move {
            let question = format!("question {i}");
            let query = async {
                retrieve(app, &question)
                    .in_span(app.span("Retriever.retrieve"))
                    .await;
                chat(llm, &question, 100 + i as u64, 20 + (i % 7) as u64)
                    .in_span(llm.span("OpenAI.chat"))
                    .await;
                match fate(i) {
                    "tool fails" => {
                        let _ = async { Err::<(), _>("tool exploded") }
                            .in_span_result(
                                app.span("Tool.call").tag("openinference.span.kind", "TOOL"),
                            )
                            .await;
                    }
                    "times out" => {
                        let _ = tokio::time::timeout(
                            Duration::from_millis(5),
                            pending::<()>().in_span(app.span("Slow.step")),
                        )
                        .await;
                    }
                    _ => {}
                }
            };
            query
                .in_span(app.span("RAG.query").tag("session.id", format!("sess-{i}")))
                .await;
        }
    });
    futures::future::join_all(queries).await;
    let report = app.shutdown(Duration::from_secs(20)).await;
    assert!(report.is_clean(), "{report:?}");
    let s = stats.stats();
    let failing = (0..QUERIES).filter(|&i| fate(i) != "fine").count();
    let expected = 3 * QUERIES + failing;
    println!(
        "{QUERIES} traces, {expected} spans exported over gRPC in {:?}: {s:?}",
        started.elapsed()
    );
    assert_eq!(
        s.exported,
        expected as u64,
        "last error: {:?}",
        stats.last_error()
    );
    assert_eq!(
        (s.dropped, s.rejected, s.abandoned, s.pending),
        (0, 0, 0, 0)
    );

    let spans = wait_for_project_spans(&base, &project, expected, Duration::from_secs(90)).await;
    let ids: BTreeSet<&str> = spans
        .iter()
        .filter_map(|s| s["context"]["span_id"].as_str())
        .collect();
    let orphans = spans
        .iter()
        .filter(|s| s["parent_id"].as_str().is_some_and(|p| !ids.contains(p)))
        .count();
    let mut by_trace: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for s in &spans {
        by_trace
            .entry(s["context"]["trace_id"].as_str().unwrap_or_default())
            .or_default()
            .push(s);
    }
    let llm_spans: Vec<&Value> = spans.iter().filter(|s| s["span_kind"] == "LLM").collect();
    let with_model_and_tokens = llm_spans
        .iter()
        .filter(|s| {
            let a = &s["attributes"];
            a["llm.model_name"] == "gpt-4o-mini"
                && a["llm.token_count.prompt"].as_u64().is_some()
                && a["llm.token_count.completion"].as_u64().is_some()
        })
        .count();
    let prompt_tokens: u64 = llm_spans
        .iter()
        .filter_map(|s| s["attributes"]["llm.token_count.prompt"].as_u64())
        .sum();
    let errors = spans.iter().filter(|s| s["status_code"] == "ERROR").count();
    println!(
        "Phoenix (gRPC) read back: {} traces, {} spans, {orphans} orphans, {} LLM spans \
         ({with_model_and_tokens} with model and token counts, {prompt_tokens} prompt tokens), \
         {errors} ERROR spans",
        by_trace.len(),
        spans.len(),
        llm_spans.len()
    );
    assert_eq!(by_trace.len(), QUERIES);
    assert_eq!(spans.len(), expected);
    assert_eq!(orphans, 0);
    assert_eq!(llm_spans.len(), QUERIES);
    assert_eq!(with_model_and_tokens, QUERIES);
    assert_eq!(
        prompt_tokens,
        (0..QUERIES as u64).map(|i| 100 + i).sum::<u64>()
    );
    assert_eq!(errors, failing);
    for (trace, spans) in &by_trace {
        let roots: Vec<_> = spans.iter().filter(|s| s["parent_id"].is_null()).collect();
        assert_eq!(roots.len(), 1, "trace {trace}");
        assert_eq!(roots[0]["name"], "RAG.query");
        assert_eq!(roots[0]["span_kind"], "CHAIN");
    }
}
