//! Phoenix test 1: a RAG-shaped trace exported over OTLP and read back from a real Arize
//! Phoenix through its REST API. Run by `.ci/phoenix-tests.sh` (ignored otherwise).

use std::future::pending;
use std::time::Duration;

use crate::support::phoenix::{by_name, require_phoenix, unique_project, wait_for_spans};
use serde_json::{Value, json};
use spanbus::events::{
    ChatMessage, ChatResponse, Document, LLMChatEndEvent, LLMChatStartEvent, NodeWithScore,
    RetrievalEndEvent, RetrievalStartEvent, TokenUsage,
};
use spanbus::integrations::otlp::OtlpExporter;
use spanbus::{Dispatcher, SpanFutureExt, current_span};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running Phoenix: bash .ci/phoenix-tests.sh"]
async fn a_pipeline_trace_reads_back_from_phoenix() {
    let Some(base) = require_phoenix("a_pipeline_trace_reads_back_from_phoenix").await else {
        return;
    };
    let project = unique_project("spanbus-pipeline");
    let exporter = OtlpExporter::builder()
        .endpoint(format!("{base}/v1/traces"))
        .project_name(&project)
        .service_name("spanbus-tests")
        // Phoenix shows prompts, responses and retrieved text only when they are captured.
        .capture_content(true)
        .build()
        .unwrap();
    let stats = exporter.handle();
    let app = Dispatcher::new("rag").unwrap();
    app.add_handler(exporter).unwrap();
    let llm = Dispatcher::builder("rag.llm").parent(&app).build().unwrap();

    let root = async {
        let root = current_span().unwrap();

        async {
            app.event(RetrievalStartEvent {
                str_or_query_bundle: json!({"query_str": "what is spanbus?"}),
            })
            .await
            .unwrap();
            app.event(RetrievalEndEvent {
                str_or_query_bundle: json!({"query_str": "what is spanbus?"}),
                nodes: vec![
                    NodeWithScore::new(
                        Document::new("doc-1", "spanbus ports llama-index")
                            .with_metadata("file", "a.md"),
                        0.91,
                    ),
                    NodeWithScore::new(Document::new("doc-2", "it exports to Phoenix"), 0.5),
                ],
            })
            .await
            .unwrap();
        }
        .in_span(app.span("Retriever.retrieve"))
        .await;

        async {
            llm.event(LLMChatStartEvent {
                messages: vec![
                    ChatMessage::system("Be brief."),
                    ChatMessage::user("what is spanbus?"),
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
                response: Some(
                    ChatResponse::new(ChatMessage::assistant("An async instrumentation bus."))
                        .with_usage(TokenUsage::new(12, 6)),
                ),
            })
            .await
            .unwrap();
        }
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
    println!("exporter stats: {s:?}");
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
    // The query's arguments are its input (no event gave one), exported once.
    assert_eq!(
        query["attributes"]["input.value"],
        r#"{"question":"what is spanbus?"}"#
    );
    assert_eq!(query["attributes"]["spanbus.args.question"], Value::Null);
    let root_id = root.span_id().to_string();
    for name in [
        "Retriever.retrieve",
        "OpenAI.chat",
        "Tool.call",
        "Slow.step",
    ] {
        assert_eq!(
            by_name(&spans, name)["parent_id"],
            root_id.as_str(),
            "{name}"
        );
    }

    let retriever = by_name(&spans, "Retriever.retrieve");
    assert_eq!(retriever["span_kind"], "RETRIEVER");
    let a = &retriever["attributes"];
    assert_eq!(a["input.value"], "what is spanbus?");
    assert_eq!(a["retrieval.documents.0.document.id"], "doc-1");
    assert_eq!(
        a["retrieval.documents.0.document.content"],
        "spanbus ports llama-index"
    );
    assert_eq!(a["retrieval.documents.0.document.score"], 0.91);
    assert_eq!(a["retrieval.documents.0.document.metadata.file"], "a.md");
    assert_eq!(a["retrieval.documents.1.document.id"], "doc-2");
    assert_eq!(a["retrieval.documents.1.document.score"], 0.5);

    let chat = by_name(&spans, "OpenAI.chat");
    assert_eq!(chat["name"], "chat gpt-4o-mini");
    assert_eq!(chat["span_kind"], "LLM");
    assert_eq!(chat["status_code"], "OK");
    let a = &chat["attributes"];
    assert_eq!(a["llm.model_name"], "gpt-4o-mini");
    assert_eq!(a["llm.input_messages.0.message.role"], "system");
    assert_eq!(a["llm.input_messages.0.message.content"], "Be brief.");
    assert_eq!(a["llm.input_messages.1.message.role"], "user");
    assert_eq!(
        a["llm.input_messages.1.message.content"],
        "what is spanbus?"
    );
    assert_eq!(a["llm.output_messages.0.message.role"], "assistant");
    assert_eq!(
        a["llm.output_messages.0.message.content"],
        "An async instrumentation bus."
    );
    assert_eq!(a["llm.token_count.prompt"], 12);
    assert_eq!(a["llm.token_count.completion"], 6);
    assert_eq!(a["llm.token_count.total"], 18);
    assert_eq!(a["output.value"], "An async instrumentation bus.");
    // The events gave the input (the messages): the argument goes beside it, once.
    assert_eq!(a["spanbus.args.temperature"], 0.1);
    assert_eq!(a["gen_ai.operation.name"], "chat");
    assert_eq!(a["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(a["gen_ai.usage.input_tokens"], 12);
    assert_eq!(a["gen_ai.usage.output_tokens"], 6);
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
        "Phoenix read-back OK: project {project}, 5 spans, kinds CHAIN/RETRIEVER/LLM/TOOL/CHAIN, 2 ERROR"
    );
}
