//! Every LLM, embedding, retrieval, rerank, tool and agent span reaches an OTLP endpoint with
//! the GenAI attributes (pinned v1.41.1 names) beside the OpenInference ones, named
//! `{operation} {model}` with kind CLIENT for calls out of the process; a chain span keeps its
//! name and gets none. Read back from the decoded request on a loopback endpoint.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Map, Value, json};
use spanbus::Dispatcher;
use spanbus::events::{
    AgentRunStepEndEvent, AgentRunStepStartEvent, AgentToolCallEvent, EmbeddingEndEvent,
    EmbeddingStartEvent, LLMChatEndEvent, LLMChatInProgressEvent, LLMChatStartEvent,
    LLMCompletionEndEvent, LLMCompletionStartEvent, QueryStartEvent, ReRankEndEvent,
    ReRankStartEvent, RetrievalEndEvent, RetrievalStartEvent,
};
use spanbus::integrations::genai::SemconvVersion;
use spanbus::integrations::otlp::OtlpExporter;

use crate::support::otlp_endpoint::{Answer, Endpoint, attributes};
use crate::support::typed;

fn dict(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// One span of each kind, with the catalog's events.
async fn emit_one_of_each(d: &Dispatcher) {
    d.span("Llm.chat").tag("session.id", "sess-7").in_scope(|| {
        d.event(LLMChatStartEvent {
            messages: vec![typed(json!({"role": "user", "content": "Who wrote it?"}))],
            additional_kwargs: Map::new(),
            model_dict: dict(json!({"model": "gpt-4o-mini", "class_name": "openai_llm"})),
        })
        .now()
        .unwrap();
        d.event(LLMChatInProgressEvent {
            messages: vec![],
            response: typed(json!({"message": {"role": "assistant"}, "delta": "Ada"})),
        })
        .now()
        .unwrap();
        d.event(LLMChatEndEvent {
            messages: vec![],
            response: Some(typed(json!({
                "message": {"role": "assistant", "content": "Ada Lovelace."},
                "raw": {
                    "model": "gpt-4o-mini-2024-07-18",
                    "usage": {
                        "prompt_tokens": 312, "completion_tokens": 85,
                        "prompt_tokens_details": {"cached_tokens": 256},
                        "completion_tokens_details": {"reasoning_tokens": 40},
                    },
                    "choices": [{"finish_reason": "stop"}],
                },
            }))),
        })
        .now()
        .unwrap();
    });
    d.span("Llm.complete").in_scope(|| {
        d.event(LLMCompletionStartEvent {
            prompt: "Once upon".into(),
            additional_kwargs: Map::new(),
            model_dict: dict(json!({"model": "claude-3-5-haiku", "provider": "Anthropic"})),
        })
        .now()
        .unwrap();
        d.event(LLMCompletionEndEvent {
            prompt: "Once upon".into(),
            response: typed(json!({"text": " a time", "usage": {"input_tokens": 2, "output_tokens": 3}, "finish_reason": "end_turn"})),
        })
        .now()
        .unwrap();
    });
    d.span("Embed.texts").in_scope(|| {
        d.event(EmbeddingStartEvent {
            model_dict: dict(
                json!({"model_name": "text-embedding-3-small", "class_name": "OpenAIEmbedding"}),
            ),
        })
        .now()
        .unwrap();
        d.event(EmbeddingEndEvent {
            chunks: vec!["a chunk".into()],
            embeddings: vec![vec![0.1, 0.2]],
            token_count: Some(3),
        })
        .now()
        .unwrap();
    });
    d.span("Store.retrieve")
        .tag("gen_ai.data_source.id", "docs-v2")
        .in_scope(|| {
            d.event(RetrievalStartEvent {
                str_or_query_bundle: json!("who wrote it"),
            })
            .now()
            .unwrap();
            d.event(RetrievalEndEvent {
                str_or_query_bundle: json!("who wrote it"),
                nodes: vec![
                    typed(json!({"node": {"id_": "d1", "text": "Ada wrote notes"}, "score": 0.9})),
                    typed(json!({"node": {"id_": "d2", "text": "on the engine"}, "score": 0.5})),
                ],
            })
            .now()
            .unwrap();
        });
    d.span("Reranker.rerank").in_scope(|| {
        d.event(ReRankStartEvent {
            query: Some(json!("who wrote it")),
            nodes: vec![typed(
                json!({"node": {"id_": "d1", "text": "Ada wrote notes"}, "score": 0.9}),
            )],
            top_n: 1,
            model_name: "rerank-english-v3.0".into(),
        })
        .now()
        .unwrap();
        d.event(ReRankEndEvent {
            nodes: vec![typed(
                json!({"node": {"id_": "d1", "text": "Ada wrote notes"}, "score": 0.97}),
            )],
        })
        .now()
        .unwrap();
    });
    d.span("Tool.call")
        .tag("gen_ai.tool.call.id", "call_42")
        .in_scope(|| {
            d.event(AgentToolCallEvent {
                arguments: r#"{"q":"Ada"}"#.into(),
                tool: json!({"name": "search", "description": "Searches the docs"}),
            })
            .now()
            .unwrap();
        });
    d.span("Agent.step")
        .tag("gen_ai.agent.name", "librarian")
        .in_scope(|| {
            d.event(AgentRunStepStartEvent {
                task_id: "t1".into(),
                step: None,
                input: Some("find the author".into()),
            })
            .now()
            .unwrap();
            d.event(AgentRunStepEndEvent {
                step_output: json!({"output": "Ada"}),
            })
            .now()
            .unwrap();
        });
    d.span("Query.run").in_scope(|| {
        d.event(QueryStartEvent { query: json!("q") })
            .now()
            .unwrap();
    });
    d.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_span_kind_carries_its_genai_operation_name_kind_model_and_usage() {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        // The pinned names whatever OTEL_SEMCONV_STABILITY_OPT_IN says where the test runs.
        .semconv_version(SemconvVersion::PINNED)
        .capture_content(true)
        .build()
        .unwrap();
    let d = Dispatcher::new("genai.kinds").unwrap();
    d.add_handler(exporter).unwrap();
    emit_one_of_each(&d).await;
    d.shutdown(Duration::from_secs(5)).await;

    let spans = endpoint.spans();
    assert_eq!(spans.len(), 8, "{spans:#?}");
    println!("span (spanbus name) → exported name, kind, gen_ai.operation.name");
    let by = |spanbus_name: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == spanbus_name
                    || attributes(s).get("spanbus.span.name") == Some(&json!(spanbus_name))
            })
            .unwrap_or_else(|| panic!("no span {spanbus_name}"))
    };
    for (spanbus_name, name, kind, op) in [
        (
            "Llm.chat",
            "chat gpt-4o-mini",
            SpanKind::Client,
            Some("chat"),
        ),
        (
            "Llm.complete",
            "text_completion claude-3-5-haiku",
            SpanKind::Client,
            Some("text_completion"),
        ),
        (
            "Embed.texts",
            "embeddings text-embedding-3-small",
            SpanKind::Client,
            Some("embeddings"),
        ),
        (
            "Store.retrieve",
            "retrieval docs-v2",
            SpanKind::Client,
            Some("retrieval"),
        ),
        (
            "Reranker.rerank",
            "rerank rerank-english-v3.0",
            SpanKind::Client,
            Some("rerank"),
        ),
        (
            "Tool.call",
            "execute_tool search",
            SpanKind::Internal,
            Some("execute_tool"),
        ),
        (
            "Agent.step",
            "invoke_agent librarian",
            SpanKind::Internal,
            Some("invoke_agent"),
        ),
        ("Query.run", "Query.run", SpanKind::Internal, None),
    ] {
        let span = by(spanbus_name);
        let a = attributes(span);
        println!(
            "  {spanbus_name:<16} → {:<34} {:<9} {}",
            span.name,
            format!("{:?}", span.kind()),
            a.get("gen_ai.operation.name")
                .map_or("—".to_owned(), |v| v.to_string())
        );
        assert_eq!(span.name, name);
        assert_eq!(span.kind(), kind, "{spanbus_name}");
        assert_eq!(
            a.get("gen_ai.operation.name").and_then(Value::as_str),
            op,
            "{spanbus_name}"
        );
        if op.is_some() && name != spanbus_name {
            assert_eq!(a["spanbus.span.name"], spanbus_name);
        }
        // OpenInference's kind is there too (Conventions::Both).
        assert!(a.contains_key("openinference.span.kind"), "{spanbus_name}");
    }

    let chat = attributes(by("Llm.chat"));
    println!("chat attributes: {}", Value::Object(chat.clone()));
    assert_eq!(chat["gen_ai.provider.name"], "openai");
    assert_eq!(chat["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(chat["gen_ai.response.model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(chat["gen_ai.usage.input_tokens"], 312);
    assert_eq!(chat["gen_ai.usage.output_tokens"], 85);
    assert_eq!(chat["gen_ai.usage.cache_read.input_tokens"], 256);
    assert_eq!(chat["gen_ai.usage.reasoning.output_tokens"], 40);
    assert_eq!(chat["gen_ai.response.finish_reasons"], json!(["stop"]));
    assert_eq!(chat["gen_ai.request.stream"], true);
    assert!(
        chat["gen_ai.response.time_to_first_chunk"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert_eq!(chat["gen_ai.conversation.id"], "sess-7");
    let parsed = |k: &str| serde_json::from_str::<Value>(chat[k].as_str().unwrap()).unwrap();
    assert_eq!(
        parsed("gen_ai.input.messages"),
        json!([{"role": "user", "parts": [{"type": "text", "content": "Who wrote it?"}]}])
    );
    assert_eq!(
        parsed("gen_ai.output.messages"),
        json!([{"role": "assistant", "parts": [{"type": "text", "content": "Ada Lovelace."}],
                "finish_reason": "stop"}])
    );
    assert_eq!(chat["llm.model_name"], "gpt-4o-mini");
    assert_eq!(chat["llm.token_count.prompt"], 312);

    let completion = attributes(by("Llm.complete"));
    assert_eq!(completion["gen_ai.provider.name"], "anthropic");
    assert_eq!(completion["gen_ai.usage.input_tokens"], 2);
    assert_eq!(completion["gen_ai.usage.output_tokens"], 3);
    assert_eq!(
        completion["gen_ai.response.finish_reasons"],
        json!(["end_turn"])
    );

    let embed = attributes(by("Embed.texts"));
    assert_eq!(embed["gen_ai.provider.name"], "openai");
    assert_eq!(embed["gen_ai.request.model"], "text-embedding-3-small");
    assert_eq!(embed["gen_ai.usage.input_tokens"], 3);

    let retrieval = attributes(by("Store.retrieve"));
    assert_eq!(retrieval["gen_ai.retrieval.query.text"], "who wrote it");
    assert_eq!(
        retrieval["gen_ai.retrieval.documents"],
        r#"[{"id":"d1","score":0.9},{"id":"d2","score":0.5}]"#
    );

    let rerank = attributes(by("Reranker.rerank"));
    assert_eq!(rerank["gen_ai.request.model"], "rerank-english-v3.0");
    assert_eq!(
        rerank["gen_ai.retrieval.documents"],
        r#"[{"id":"d1","score":0.97}]"#
    );

    let tool = attributes(by("Tool.call"));
    assert_eq!(tool["gen_ai.tool.name"], "search");
    assert_eq!(tool["gen_ai.tool.description"], "Searches the docs");
    assert_eq!(tool["gen_ai.tool.call.id"], "call_42");
    assert_eq!(tool["gen_ai.tool.call.arguments"], r#"{"q":"Ada"}"#);

    let agent = attributes(by("Agent.step"));
    assert_eq!(agent["gen_ai.agent.name"], "librarian");

    let chain = attributes(by("Query.run"));
    assert!(!chain.keys().any(|k| k.starts_with("gen_ai.")), "{chain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_convention_alone_writes_only_its_own_attributes() {
    use spanbus::integrations::otlp::Conventions;
    for conventions in [Conventions::GenAi, Conventions::OpenInference] {
        let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
        let exporter = OtlpExporter::builder()
            .endpoint(endpoint.url())
            .scheduled_delay(Duration::from_millis(5))
            .conventions(conventions)
            .build()
            .unwrap();
        let d = Dispatcher::new("genai.alone").unwrap();
        d.add_handler(exporter).unwrap();
        emit_one_of_each(&d).await;
        d.shutdown(Duration::from_secs(5)).await;
        let spans = endpoint.spans();
        let keys: std::collections::BTreeSet<String> = spans
            .iter()
            .flat_map(|s| attributes(s).keys().cloned().collect::<Vec<_>>())
            .collect();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        println!("{conventions:?}: names {names:?}");
        // The tags are exported under their own keys whatever the conventions.
        let tags = [
            "gen_ai.agent.name",
            "gen_ai.data_source.id",
            "gen_ai.tool.call.id",
        ];
        let genai = keys
            .iter()
            .any(|k| k.starts_with("gen_ai.") && !tags.contains(&k.as_str()));
        let oi = keys
            .iter()
            .any(|k| k.starts_with("llm.") || k == "openinference.span.kind");
        assert_eq!(spans.len(), 8);
        match conventions {
            Conventions::GenAi => {
                assert!(genai && !oi, "{keys:?}");
                assert!(names.contains(&"chat gpt-4o-mini"));
            }
            _ => {
                assert!(oi && !genai, "{keys:?}");
                assert!(names.contains(&"Llm.chat"));
                assert!(spans.iter().all(|s| s.kind() == SpanKind::Internal));
            }
        }
    }
}
