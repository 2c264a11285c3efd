//! The OpenInference mapping, without Phoenix: span kinds from catalog events, and the LLM,
//! retrieval and I/O attributes from llama-index-shaped and simple-shaped values.
//!
//! The typed catalog writes one shape of each object; the shapes it does not write (newer
//! llama-index's message blocks, simple `{id, content}` nodes, a response that is a bare
//! message) reach the mapping as JSON, as a record from elsewhere would.

use serde::Serialize;
use serde_json::{Map, Value, json};
use spanbus::Event;
use spanbus::events::{
    AgentToolCallEvent, ChatMessage, ChatResponse, CompletionResponse, Document, EmbeddingEndEvent,
    EmbeddingStartEvent, LLMChatEndEvent, LLMCompletionEndEvent, LLMCompletionStartEvent,
    NodeWithScore, QueryEndEvent, QueryStartEvent, ReRankEndEvent, ReRankStartEvent, TokenUsage,
};
use spanbus::integrations::openinference::{OpenInference, kind_of_event};

fn fields<E: Event>(e: &E) -> Map<String, Value> {
    match serde_json::to_value(e).unwrap() {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

fn observe<E: Event + Serialize>(oi: &mut OpenInference, e: E) {
    oi.observe(E::NAME, &fields(&e));
}

/// An event given as the JSON of its fields, in a shape the typed catalog does not write.
fn observe_json(oi: &mut OpenInference, class_name: &str, fields: Value) {
    oi.observe(class_name, fields.as_object().unwrap());
}

fn attrs(oi: &OpenInference) -> Map<String, Value> {
    oi.attributes().into_iter().collect()
}

#[test]
fn span_kinds_follow_the_event_families() {
    for (name, kind) in [
        ("LLMChatStartEvent", Some("LLM")),
        ("LLMCompletionEndEvent", Some("LLM")),
        ("LLMPredictStartEvent", Some("LLM")),
        ("LLMStructuredPredictEndEvent", Some("LLM")),
        ("RetrievalStartEvent", Some("RETRIEVER")),
        ("EmbeddingEndEvent", Some("EMBEDDING")),
        ("ReRankStartEvent", Some("RERANKER")),
        ("AgentToolCallEvent", Some("TOOL")),
        ("AgentRunStepStartEvent", Some("AGENT")),
        ("AgentChatWithStepEndEvent", Some("AGENT")),
        ("QueryStartEvent", Some("CHAIN")),
        ("SynthesizeEndEvent", Some("CHAIN")),
        ("ExceptionEvent", None),
        ("MyOwnEvent", None),
    ] {
        assert_eq!(kind_of_event(name), kind, "{name}");
    }
    let mut oi = OpenInference::default();
    assert_eq!(oi.kind(), "CHAIN", "no events: CHAIN");
    oi.observe("QueryStartEvent", &Map::new());
    oi.observe("RetrievalStartEvent", &Map::new());
    oi.observe("SynthesizeStartEvent", &Map::new());
    oi.observe("LLMChatStartEvent", &Map::new());
    assert_eq!(
        oi.kind(),
        "RETRIEVER",
        "the first specific kind wins over CHAIN and later ones"
    );
}

#[test]
fn a_llama_index_chat_fills_messages_model_tokens_and_io() {
    let mut oi = OpenInference::default();
    observe_json(
        &mut oi,
        "LLMChatStartEvent",
        json!({
            "messages": [
                {"role": "system", "blocks": [{"block_type": "text", "text": "Be "}, {"block_type": "text", "text": "brief."}], "additional_kwargs": {}},
                {"role": "user", "content": "Hi?"},
            ],
            "additional_kwargs": {"temperature": 0.2},
            "model_dict": {"model_name": "llama3"},
        }),
    );
    observe(
        &mut oi,
        LLMChatEndEvent {
            messages: vec![],
            response: Some(
                ChatResponse::new(ChatMessage::assistant("Hello.")).with_raw(json!({
                    "model": "ignored-when-known", "usage": {"input_tokens": 7, "output_tokens": 2},
                })),
            ),
        },
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "LLM");
    assert_eq!(a["llm.model_name"], "llama3");
    assert_eq!(a["llm.invocation_parameters"], r#"{"temperature":0.2}"#);
    assert_eq!(a["llm.input_messages.0.message.role"], "system");
    assert_eq!(a["llm.input_messages.0.message.content"], "Be brief.");
    assert_eq!(a["llm.input_messages.1.message.content"], "Hi?");
    assert_eq!(a["llm.output_messages.0.message.role"], "assistant");
    assert_eq!(a["llm.output_messages.0.message.content"], "Hello.");
    assert_eq!(a["llm.token_count.prompt"], 7);
    assert_eq!(a["llm.token_count.completion"], 2);
    assert_eq!(a["llm.token_count.total"], 9, "total computed when absent");
    assert_eq!(a["input.value"], "Hi?");
    assert_eq!(a["output.value"], "Hello.");
}

#[test]
fn a_simple_chat_response_and_a_completion_work_too() {
    let mut oi = OpenInference::default();
    observe_json(
        &mut oi,
        "LLMChatEndEvent",
        json!({
            "messages": [ChatMessage::user("2+2?")],
            "response": {"role": "assistant", "content": "4", "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }),
    );
    let a = attrs(&oi);
    assert_eq!(a["llm.input_messages.0.message.content"], "2+2?");
    assert_eq!(a["llm.output_messages.0.message.content"], "4");
    assert_eq!(a["llm.token_count.total"], 4);

    let mut oi = OpenInference::default();
    observe(
        &mut oi,
        LLMCompletionStartEvent {
            prompt: "Once upon".into(),
            additional_kwargs: Map::new(),
            model_dict: json!({"model": "gpt-3.5-turbo-instruct"})
                .as_object()
                .unwrap()
                .clone(),
        },
    );
    observe(
        &mut oi,
        LLMCompletionEndEvent {
            prompt: "Once upon".into(),
            response: CompletionResponse::new(" a time").with_usage(TokenUsage::new(2, 3)),
        },
    );
    let a = attrs(&oi);
    assert_eq!(a["llm.model_name"], "gpt-3.5-turbo-instruct");
    assert_eq!(a["input.value"], "Once upon");
    assert_eq!(a["output.value"], " a time");
    assert_eq!(a["llm.token_count.total"], 5);
    assert!(!a.contains_key("llm.invocation_parameters"));
}

#[test]
fn retrieved_nodes_become_documents_in_either_shape_and_odd_ones_are_skipped() {
    let mut oi = OpenInference::default();
    observe_json(
        &mut oi,
        "RetrievalEndEvent",
        json!({
            "str_or_query_bundle": {"query_str": "q", "embedding": null},
            "nodes": [
                NodeWithScore::new(Document::new("n1", "alpha").with_metadata("page", 3), 0.9),
                42,
                {"id": "n2", "content": "beta"},
                {"unrelated": true},
            ],
        }),
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "RETRIEVER");
    assert_eq!(a["input.value"], "q");
    assert_eq!(a["retrieval.documents.0.document.id"], "n1");
    assert_eq!(a["retrieval.documents.0.document.content"], "alpha");
    assert_eq!(a["retrieval.documents.0.document.score"], 0.9);
    assert_eq!(
        a["retrieval.documents.0.document.metadata"],
        r#"{"page":3}"#
    );
    assert_eq!(a["retrieval.documents.1.document.id"], "n2");
    assert_eq!(a["retrieval.documents.1.document.content"], "beta");
    assert!(!a.contains_key("retrieval.documents.1.document.score"));
    assert!(!a.contains_key("retrieval.documents.2.document.id"));
}

#[test]
fn rerank_embedding_tool_and_query_spans() {
    let mut oi = OpenInference::default();
    observe(
        &mut oi,
        ReRankStartEvent {
            query: Some(json!("q")),
            nodes: vec![
                NodeWithScore::new(Document::new("a", "A"), None),
                NodeWithScore::new(Document::new("b", "B"), None),
            ],
            top_n: 1,
            model_name: "bge-reranker".into(),
        },
    );
    observe(
        &mut oi,
        ReRankEndEvent {
            nodes: vec![NodeWithScore::new(Document::new("b", "B"), 0.7)],
        },
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "RERANKER");
    assert_eq!(a["reranker.model_name"], "bge-reranker");
    assert_eq!(a["reranker.top_k"], 1);
    assert_eq!(a["reranker.input_documents.1.document.id"], "b");
    assert_eq!(a["reranker.output_documents.0.document.id"], "b");
    assert_eq!(a["reranker.output_documents.0.document.score"], 0.7);

    let mut oi = OpenInference::default();
    observe(
        &mut oi,
        EmbeddingStartEvent {
            model_dict: json!({"model_name": "text-embedding-3-small"})
                .as_object()
                .unwrap()
                .clone(),
        },
    );
    observe(
        &mut oi,
        EmbeddingEndEvent {
            chunks: vec!["hello".into()],
            embeddings: vec![vec![0.1, 0.2]],
            token_count: Some(1),
        },
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "EMBEDDING");
    assert_eq!(a["embedding.model_name"], "text-embedding-3-small");
    assert_eq!(a["embedding.embeddings.0.embedding.text"], "hello");

    let mut oi = OpenInference::default();
    observe(
        &mut oi,
        AgentToolCallEvent {
            arguments: r#"{"q":"rust"}"#.into(),
            tool: json!({"name": "search", "description": "web search"}),
        },
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "TOOL");
    assert_eq!(a["tool.name"], "search");
    assert_eq!(a["tool.description"], "web search");
    assert_eq!(a["input.value"], r#"{"q":"rust"}"#);

    let mut oi = OpenInference::default();
    observe(
        &mut oi,
        QueryStartEvent {
            query: json!("why?"),
        },
    );
    observe(
        &mut oi,
        QueryEndEvent {
            query: json!("why?"),
            response: json!({"response": "because", "source_nodes": []}),
        },
    );
    let a = attrs(&oi);
    assert_eq!(oi.kind(), "CHAIN");
    assert_eq!(a["input.value"], "why?");
    assert_eq!(a["output.value"], "because");
}

#[test]
fn values_of_unexpected_shapes_are_skipped_not_errors() {
    let mut oi = OpenInference::default();
    let odd = json!({
        "messages": "not a list",
        "model_dict": [1, 2],
        "response": {"message": 5, "raw": {"usage": "lots"}},
        "nodes": {"no": "list"},
    });
    for name in [
        "LLMChatStartEvent",
        "LLMChatEndEvent",
        "RetrievalEndEvent",
        "ReRankEndEvent",
        "LLMCompletionEndEvent",
    ] {
        oi.observe(name, odd.as_object().unwrap());
    }
    assert_eq!(oi.kind(), "LLM");
    assert!(oi.attributes().is_empty(), "{:?}", oi.attributes());
}
