//! Every catalog event carries llama-index's `class_name` as its `NAME` and serializes to
//! exactly the keys of the llama-index class's own pydantic fields (`BaseEvent`'s fields and
//! the `class_name` key are the record's business, so they must not appear).
//!
//! The expected key lists are copied by hand from the llama-index sources
//! (`llama-index-core/llama_index/core/instrumentation/events/*.py` and
//! `llama-index-instrumentation/src/llama_index_instrumentation/events/span.py`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use spanbus::Event;
use spanbus::event::AnyEvent;
use spanbus::events::*;

/// Checks the event's name and that its JSON form is an object with exactly `keys`.
fn assert_catalog_event<E: Event>(event: &E, class_name: &str, keys: &[&str]) {
    assert_eq!(E::NAME, class_name, "NAME must be llama-index's class_name");
    let value = serde_json::to_value(event).expect("catalog events serialize");
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{class_name} must serialize to a JSON object, got {value}"));
    let actual: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(actual, expected, "keys of {class_name}");
}

/// Serializes and deserializes `event`, and checks the copy is equal to it.
fn assert_round_trip<E: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(event: &E) {
    let text = serde_json::to_string(event).expect("serializes");
    let back: E = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(&back, event, "round trip through {text}");
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn chat_message(content: &str) -> ChatMessage {
    ChatMessage::user(content)
}

fn node_with_score(id: &str, score: f64) -> NodeWithScore {
    NodeWithScore::new(Document::new(id, "some text"), score)
}

// --- LLM ----------------------------------------------------------------------------------

#[test]
fn llm_predict_start_event() {
    let event = LLMPredictStartEvent {
        template: json!({"template": "Answer {question}", "template_vars": ["question"]}),
        template_args: Some(object(json!({"question": "why?"}))),
    };
    assert_catalog_event(
        &event,
        "LLMPredictStartEvent",
        &["template", "template_args"],
    );
}

#[test]
fn llm_predict_end_event() {
    let event = LLMPredictEndEvent {
        output: "because".into(),
    };
    assert_catalog_event(&event, "LLMPredictEndEvent", &["output"]);
}

#[test]
fn llm_structured_predict_start_event() {
    let event = LLMStructuredPredictStartEvent {
        output_cls: json!("Invoice"),
        template: json!({"template": "Extract {text}"}),
        template_args: None,
    };
    assert_catalog_event(
        &event,
        "LLMStructuredPredictStartEvent",
        &["output_cls", "template", "template_args"],
    );
}

#[test]
fn llm_structured_predict_in_progress_event() {
    let event = LLMStructuredPredictInProgressEvent {
        output: json!({"total": null}),
    };
    assert_catalog_event(&event, "LLMStructuredPredictInProgressEvent", &["output"]);
}

#[test]
fn llm_structured_predict_end_event() {
    let event = LLMStructuredPredictEndEvent {
        output: json!({"total": 42}),
    };
    assert_catalog_event(&event, "LLMStructuredPredictEndEvent", &["output"]);
}

#[test]
fn llm_completion_start_event() {
    let event = LLMCompletionStartEvent {
        prompt: "Once upon a time".into(),
        additional_kwargs: object(json!({"temperature": 0.1})),
        model_dict: object(json!({"model": "m", "class_name": "MockLLM"})),
    };
    assert_catalog_event(
        &event,
        "LLMCompletionStartEvent",
        &["prompt", "additional_kwargs", "model_dict"],
    );
}

#[test]
fn llm_completion_in_progress_event() {
    let event = LLMCompletionInProgressEvent {
        prompt: "Once upon a time".into(),
        response: CompletionResponse::new("there").with_delta("there"),
    };
    assert_catalog_event(
        &event,
        "LLMCompletionInProgressEvent",
        &["prompt", "response"],
    );
}

#[test]
fn llm_completion_end_event() {
    let event = LLMCompletionEndEvent {
        prompt: "Once upon a time".into(),
        response: CompletionResponse::new("there was a span").with_raw(json!({"id": "cmpl-1"})),
    };
    assert_catalog_event(&event, "LLMCompletionEndEvent", &["prompt", "response"]);
}

#[test]
fn llm_chat_start_event() {
    let event = LLMChatStartEvent {
        messages: vec![chat_message("hi")],
        ..LLMChatStartEvent::default()
    };
    assert_catalog_event(
        &event,
        "LLMChatStartEvent",
        &["messages", "additional_kwargs", "model_dict"],
    );
}

#[test]
fn llm_chat_in_progress_event() {
    let event = LLMChatInProgressEvent {
        messages: vec![chat_message("hi")],
        response: ChatResponse::new(ChatMessage::new(MessageRole::Assistant)).with_delta("he"),
    };
    assert_catalog_event(&event, "LLMChatInProgressEvent", &["messages", "response"]);
}

#[test]
fn llm_chat_end_event() {
    let event = LLMChatEndEvent {
        messages: vec![chat_message("hi")],
        response: None,
    };
    // An `Optional` field is dumped as null by pydantic, never left out.
    assert_catalog_event(&event, "LLMChatEndEvent", &["messages", "response"]);
    assert_eq!(
        serde_json::to_value(&event).unwrap()["response"],
        Value::Null
    );
}

// --- Embedding ----------------------------------------------------------------------------

#[test]
fn embedding_start_event() {
    let event = EmbeddingStartEvent {
        model_dict: object(json!({"model_name": "e", "embed_batch_size": 10})),
    };
    assert_catalog_event(&event, "EmbeddingStartEvent", &["model_dict"]);
}

#[test]
fn embedding_end_event() {
    let event = EmbeddingEndEvent {
        chunks: vec!["a".into()],
        embeddings: vec![vec![0.25, -1.0]],
        token_count: None,
    };
    assert_catalog_event(
        &event,
        "EmbeddingEndEvent",
        &["chunks", "embeddings", "token_count"],
    );
}

#[test]
fn sparse_embedding_start_event() {
    let event = SparseEmbeddingStartEvent::default();
    assert_catalog_event(&event, "SparseEmbeddingStartEvent", &["model_dict"]);
}

#[test]
fn sparse_embedding_end_event() {
    let event = SparseEmbeddingEndEvent {
        chunks: vec!["a".into()],
        embeddings: vec![BTreeMap::from([(17, 0.5)])],
    };
    assert_catalog_event(&event, "SparseEmbeddingEndEvent", &["chunks", "embeddings"]);
}

// --- Retrieval and rerank -----------------------------------------------------------------

#[test]
fn retrieval_start_event() {
    let event = RetrievalStartEvent {
        str_or_query_bundle: json!("what is a span?"),
    };
    assert_catalog_event(&event, "RetrievalStartEvent", &["str_or_query_bundle"]);
}

#[test]
fn retrieval_end_event() {
    let event = RetrievalEndEvent {
        str_or_query_bundle: json!({"query_str": "what is a span?", "custom_embedding_strs": null}),
        nodes: vec![node_with_score("n1", 0.9)],
    };
    assert_catalog_event(
        &event,
        "RetrievalEndEvent",
        &["str_or_query_bundle", "nodes"],
    );
}

#[test]
fn rerank_start_event() {
    let event = ReRankStartEvent {
        query: Some(json!("what is a span?")),
        nodes: vec![node_with_score("n1", 0.2), node_with_score("n2", 0.1)],
        top_n: 1,
        model_name: "cross-encoder".into(),
    };
    assert_catalog_event(
        &event,
        "ReRankStartEvent",
        &["query", "nodes", "top_n", "model_name"],
    );
}

#[test]
fn rerank_end_event() {
    let event = ReRankEndEvent {
        nodes: vec![node_with_score("n2", 0.8)],
    };
    assert_catalog_event(&event, "ReRankEndEvent", &["nodes"]);
}

// --- Query and synthesis ------------------------------------------------------------------

#[test]
fn query_start_event() {
    let event = QueryStartEvent {
        query: json!("what is a span?"),
    };
    assert_catalog_event(&event, "QueryStartEvent", &["query"]);
}

#[test]
fn query_end_event() {
    let event = QueryEndEvent {
        query: json!("what is a span?"),
        response: json!({"response": "A unit of work.", "source_nodes": [], "metadata": null}),
    };
    assert_catalog_event(&event, "QueryEndEvent", &["query", "response"]);
}

#[test]
fn synthesize_start_event() {
    let event = SynthesizeStartEvent {
        query: json!("what is a span?"),
    };
    assert_catalog_event(&event, "SynthesizeStartEvent", &["query"]);
}

#[test]
fn synthesize_end_event() {
    let event = SynthesizeEndEvent {
        query: json!("what is a span?"),
        response: json!({"response": "A unit of work."}),
    };
    assert_catalog_event(&event, "SynthesizeEndEvent", &["query", "response"]);
}

#[test]
fn get_response_start_event() {
    let event = GetResponseStartEvent {
        query_str: "what is a span?".into(),
        text_chunks: vec!["A span is".into(), "a unit of work.".into()],
    };
    assert_catalog_event(
        &event,
        "GetResponseStartEvent",
        &["query_str", "text_chunks"],
    );
}

#[test]
fn get_response_end_event() {
    let event = GetResponseEndEvent {};
    assert_catalog_event(&event, "GetResponseEndEvent", &[]);
}

// --- Agent --------------------------------------------------------------------------------

#[test]
fn agent_run_step_start_event() {
    let event = AgentRunStepStartEvent {
        task_id: "task-1".into(),
        step: Some(json!({"task_id": "task-1", "step_id": "step-1", "input": "hi"})),
        input: None,
    };
    assert_catalog_event(
        &event,
        "AgentRunStepStartEvent",
        &["task_id", "step", "input"],
    );
}

#[test]
fn agent_run_step_end_event() {
    let event = AgentRunStepEndEvent {
        step_output: json!({"output": {"response": "done"}, "is_last": true}),
    };
    assert_catalog_event(&event, "AgentRunStepEndEvent", &["step_output"]);
}

#[test]
fn agent_chat_with_step_start_event() {
    let event = AgentChatWithStepStartEvent {
        user_msg: "hi".into(),
    };
    assert_catalog_event(&event, "AgentChatWithStepStartEvent", &["user_msg"]);
}

#[test]
fn agent_chat_with_step_end_event() {
    let event = AgentChatWithStepEndEvent {
        response: Some(json!({"response": "hello", "sources": []})),
    };
    assert_catalog_event(&event, "AgentChatWithStepEndEvent", &["response"]);
}

#[test]
fn agent_tool_call_event() {
    let event = AgentToolCallEvent {
        arguments: r#"{"a": 1}"#.into(),
        tool: json!({"name": "add", "description": "Adds numbers."}),
    };
    assert_catalog_event(&event, "AgentToolCallEvent", &["arguments", "tool"]);
}

// --- Chat engine streaming ----------------------------------------------------------------

#[test]
fn stream_chat_start_event() {
    assert_catalog_event(&StreamChatStartEvent {}, "StreamChatStartEvent", &[]);
}

#[test]
fn stream_chat_delta_received_event() {
    let event = StreamChatDeltaReceivedEvent { delta: "he".into() };
    assert_catalog_event(&event, "StreamChatDeltaReceivedEvent", &["delta"]);
}

#[test]
fn stream_chat_error_event() {
    let event = StreamChatErrorEvent {
        exception: "connection reset".into(),
    };
    assert_catalog_event(&event, "StreamChatErrorEvent", &["exception"]);
}

#[test]
fn stream_chat_end_event() {
    assert_catalog_event(&StreamChatEndEvent {}, "StreamChatEndEvent", &[]);
}

// --- Exceptions and spans -----------------------------------------------------------------

#[test]
fn exception_event() {
    let event = ExceptionEvent {
        exception: "boom".into(),
    };
    assert_catalog_event(&event, "ExceptionEvent", &["exception"]);
}

#[test]
fn span_drop_event() {
    let event = SpanDropEvent {
        err_str: "division by zero".into(),
    };
    assert_catalog_event(&event, "SpanDropEvent", &["err_str"]);
}

// --- Catalog-wide -------------------------------------------------------------------------

#[test]
fn catalog_names_are_unique_and_complete() {
    let names = [
        LLMPredictStartEvent::NAME,
        LLMPredictEndEvent::NAME,
        LLMStructuredPredictStartEvent::NAME,
        LLMStructuredPredictInProgressEvent::NAME,
        LLMStructuredPredictEndEvent::NAME,
        LLMCompletionStartEvent::NAME,
        LLMCompletionInProgressEvent::NAME,
        LLMCompletionEndEvent::NAME,
        LLMChatStartEvent::NAME,
        LLMChatInProgressEvent::NAME,
        LLMChatEndEvent::NAME,
        EmbeddingStartEvent::NAME,
        EmbeddingEndEvent::NAME,
        SparseEmbeddingStartEvent::NAME,
        SparseEmbeddingEndEvent::NAME,
        RetrievalStartEvent::NAME,
        RetrievalEndEvent::NAME,
        ReRankStartEvent::NAME,
        ReRankEndEvent::NAME,
        QueryStartEvent::NAME,
        QueryEndEvent::NAME,
        SynthesizeStartEvent::NAME,
        SynthesizeEndEvent::NAME,
        GetResponseStartEvent::NAME,
        GetResponseEndEvent::NAME,
        AgentRunStepStartEvent::NAME,
        AgentRunStepEndEvent::NAME,
        AgentChatWithStepStartEvent::NAME,
        AgentChatWithStepEndEvent::NAME,
        AgentToolCallEvent::NAME,
        StreamChatStartEvent::NAME,
        StreamChatDeltaReceivedEvent::NAME,
        StreamChatErrorEvent::NAME,
        StreamChatEndEvent::NAME,
        ExceptionEvent::NAME,
        SpanDropEvent::NAME,
    ];
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate NAME in {names:?}");
    assert_eq!(names.len(), 36);
}

#[test]
fn catalog_events_are_any_events() {
    let event = SpanDropEvent {
        err_str: "boom".into(),
    };
    let erased: &dyn AnyEvent = &event;
    assert_eq!(erased.name(), "SpanDropEvent");
    assert_eq!(erased.to_json().unwrap(), json!({"err_str": "boom"}));
    assert_eq!(
        erased.as_any().downcast_ref::<SpanDropEvent>(),
        Some(&event)
    );
}

// --- Round trips --------------------------------------------------------------------------

#[test]
fn llm_chat_end_event_round_trips_with_and_without_a_response() {
    assert_round_trip(&LLMChatEndEvent {
        messages: vec![chat_message("hi")],
        response: Some(
            ChatResponse::new(ChatMessage::new(MessageRole::Assistant))
                .with_raw(json!({"id": "x"})),
        ),
    });
    assert_round_trip(&LLMChatEndEvent {
        messages: vec![],
        response: None,
    });
}

#[test]
fn sparse_embedding_end_event_round_trips_with_integer_token_ids_as_string_keys() {
    let event = SparseEmbeddingEndEvent {
        chunks: vec!["a".into(), "b".into()],
        embeddings: vec![BTreeMap::from([(3, 0.25), (17, 1.5)]), BTreeMap::new()],
    };
    assert_eq!(
        serde_json::to_value(&event).unwrap()["embeddings"],
        json!([{"3": 0.25, "17": 1.5}, {}])
    );
    assert_round_trip(&event);
}

#[test]
fn rerank_start_and_agent_run_step_start_events_round_trip() {
    assert_round_trip(&ReRankStartEvent {
        query: None,
        nodes: vec![node_with_score("n1", 0.5)],
        top_n: 3,
        model_name: "m".into(),
    });
    assert_round_trip(&AgentRunStepStartEvent {
        task_id: "t".into(),
        step: None,
        input: Some("go".into()),
    });
}

#[test]
fn embedding_end_event_reads_a_dump_without_token_count() {
    let event: EmbeddingEndEvent =
        serde_json::from_value(json!({"chunks": ["a"], "embeddings": [[1.0]]})).unwrap();
    assert_eq!(event.token_count, None);
    assert_round_trip(&EmbeddingEndEvent {
        token_count: Some(12),
        ..event
    });
}

#[test]
fn a_whole_llama_index_dump_reads_back_ignoring_base_event_keys() {
    // The shape of `RetrievalEndEvent(...).model_dump(mode="json")` in llama-index.
    let dump = json!({
        "timestamp": "2025-07-19T18:39:12.068600",
        "id_": "db8384cb-5be4-4751-87a1-d98fa4b26e8a",
        "span_id": "BaseRetriever.retrieve-1",
        "tags": {},
        "str_or_query_bundle": "what is a span?",
        "nodes": [{"node": {"id_": "n1", "text": "some text"}, "score": 0.9}],
        "class_name": "RetrievalEndEvent",
    });
    let event: RetrievalEndEvent = serde_json::from_value(dump).unwrap();
    assert_eq!(
        event,
        RetrievalEndEvent {
            str_or_query_bundle: json!("what is a span?"),
            nodes: vec![node_with_score("n1", 0.9)],
        }
    );
}
