//! With `JsonlHandler::with_trace_summaries`, the JSON Lines file gets one `TraceSummary` line
//! per trace right after its last span ends: the first span's name, duration, span count,
//! errors, cancellations, and the LLM calls' tokens, cost and models — the same `LlmSummary`
//! reading as every other output. Record lines are unchanged, and `jsonl::read` reads the file.

use std::time::Duration;

use futures::FutureExt;
use spanbus::events::{ChatMessage, ChatResponse, LLMChatEndEvent, LLMChatStartEvent, TokenUsage};
use spanbus::handlers::{JsonlHandler, TRACE_SUMMARY_CLASS_NAME};
use spanbus::llm::Prices;
use spanbus::{Dispatcher, SpanFutureExt};

async fn chat(d: &Dispatcher, input: u64, output: u64) {
    let mut model_dict = serde_json::Map::new();
    model_dict.insert("model".into(), "gpt-4o-mini".into());
    d.event(LLMChatStartEvent {
        messages: vec![ChatMessage::user("hi")],
        additional_kwargs: Default::default(),
        model_dict,
    })
    .await
    .unwrap();
    d.event(LLMChatEndEvent {
        messages: vec![],
        response: Some(
            ChatResponse::new(ChatMessage::assistant("hello"))
                .with_usage(TokenUsage::new(input, output))
                .with_model("gpt-4o-mini"),
        ),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn each_trace_ends_with_its_summary_line() {
    let dir = std::env::temp_dir().join(format!("spanbus-summary-{}", std::process::id()));
    let path = dir.join("trace.jsonl");
    let d = Dispatcher::new("summaries").unwrap();
    let prices = Prices::new().model("gpt-4o-mini", 0.15, 0.60);
    let jsonl = JsonlHandler::create(&path)
        .unwrap()
        .with_trace_summaries(prices);
    let status = jsonl.status();
    d.add_handler(jsonl).unwrap();

    // An answered query with two LLM calls.
    async {
        chat(&d, 1000, 100).in_span(d.span("llm.chat")).await;
        chat(&d, 2000, 200).in_span(d.span("llm.chat")).await;
    }
    .in_span(d.span("query"))
    .await;
    // A failed query, with a cancelled child.
    let failed: Result<(), &str> = async {
        assert!(
            std::future::pending::<()>()
                .in_span(d.span("stalled"))
                .now_or_never()
                .is_none()
        );
        Err("no documents")
    }
    .in_span_result(d.span("query"))
    .await;
    assert!(failed.is_err());
    // A trace whose child outlives the root: summarized when the child ends.
    let root = d.span("handoff").enter();
    let child = root.in_scope(|| d.span("background").enter());
    root.exit();
    d.flush().await;
    let before = spanbus::jsonl::read(&path).unwrap();
    let early = before
        .records
        .iter()
        .filter(|r| r.class_name == TRACE_SUMMARY_CLASS_NAME)
        .count();
    child.exit();
    d.shutdown(Duration::from_secs(5)).await;

    let read = spanbus::jsonl::read(&path).unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let summaries: Vec<_> = read
        .records
        .iter()
        .filter(|r| r.class_name == TRACE_SUMMARY_CLASS_NAME)
        .collect();
    for s in &summaries {
        println!("{}", serde_json::Value::Object(s.fields.clone()));
    }
    println!(
        "{} lines, {} summaries ({} before the last child ended), {} written",
        read.records.len(),
        summaries.len(),
        early,
        status.written()
    );
    assert_eq!(
        early, 2,
        "the handoff trace is summarized only when its child ends"
    );
    assert_eq!(summaries.len(), 3);
    let answered = &summaries[0].fields;
    assert_eq!(answered["name"], "query");
    assert_eq!(answered["spans"], 3);
    assert_eq!(answered["errors"], 0);
    assert_eq!(answered["llm"]["calls"], 2);
    assert_eq!(answered["llm"]["input_tokens"], 3000);
    assert_eq!(answered["llm"]["output_tokens"], 300);
    assert_eq!(
        answered["llm"]["models"],
        serde_json::json!(["gpt-4o-mini"])
    );
    let cost = answered["llm"]["cost"].as_f64().unwrap();
    assert!((cost - (3000.0 * 0.15 + 300.0 * 0.60) / 1e6).abs() < 1e-12);
    let failed = &summaries[1].fields;
    assert_eq!(
        (
            failed["spans"].as_u64(),
            failed["errors"].as_u64(),
            failed["cancelled"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(failed["llm"]["cost"], serde_json::Value::Null);
    let handoff = &summaries[2].fields;
    assert_eq!(
        (handoff["name"].as_str(), handoff["spans"].as_u64()),
        (Some("handoff"), Some(2))
    );
    // Each summary line comes right after the end of its trace's last span, and the record
    // lines are all there (one per record).
    for (i, r) in read.records.iter().enumerate() {
        if r.class_name == TRACE_SUMMARY_CLASS_NAME {
            let before = &read.records[i - 1];
            assert!(["SpanExit", "SpanDrop"].contains(&before.class_name.as_str()));
            assert_eq!(before.trace_id, r.trace_id);
        }
    }
    let records = read.records.len() - summaries.len();
    assert_eq!(status.written() as usize, records + summaries.len());
    std::fs::remove_dir_all(&dir).ok();
}
