//! The catalog's typed objects (`ChatMessage`, `ChatResponse`, `CompletionResponse`,
//! `TokenUsage`, `ToolCall`, `NodeWithScore`) give exactly the JSON an emitter wrote by hand
//! before they existed, in llama-index's shapes; a JSON Lines file of them reads back into equal
//! events; the other shapes llama-index and providers write (message blocks, a provider's raw
//! response) read with the right content, usage, model and finish reason; and what the types do
//! not model is kept and written back.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use spanbus::events::{
    ChatMessage, ChatResponse, CompletionResponse, Document, LLMChatEndEvent,
    LLMChatInProgressEvent, LLMChatStartEvent, LLMCompletionEndEvent, LLMCompletionInProgressEvent,
    MessageRole, NodeWithScore, ReRankEndEvent, ReRankStartEvent, RetrievalEndEvent, TokenUsage,
    ToolCall,
};
use spanbus::handlers::JsonlHandler;
use spanbus::jsonl::{self, JsonRecord};
use spanbus::{Dispatcher, Event, SpanFutureExt};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("spanbus-test-{}", std::process::id()))
        .join(name)
}

// --- The events, typed and as JSON written by hand ----------------------------------------

fn question() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("Answer from the documents."),
        ChatMessage::user("What is a span?"),
    ]
}

fn question_json() -> Value {
    json!([
        {"role": "system", "content": "Answer from the documents.", "additional_kwargs": {}},
        {"role": "user", "content": "What is a span?", "additional_kwargs": {}},
    ])
}

fn chat_start() -> LLMChatStartEvent {
    LLMChatStartEvent {
        messages: question(),
        additional_kwargs: object(json!({"temperature": 0.1})),
        model_dict: object(json!({"model": "gpt-4o-mini"})),
    }
}

fn chat_start_json() -> Value {
    json!({
        "messages": question_json(),
        "additional_kwargs": {"temperature": 0.1},
        "model_dict": {"model": "gpt-4o-mini"},
    })
}

fn chat_chunk() -> LLMChatInProgressEvent {
    LLMChatInProgressEvent {
        messages: question(),
        response: ChatResponse::new(ChatMessage::assistant("A span")).with_delta(" span"),
    }
}

fn chat_chunk_json() -> Value {
    json!({
        "messages": question_json(),
        "response": {
            "message": {"role": "assistant", "content": "A span", "additional_kwargs": {}},
            "raw": null,
            "delta": " span",
            "additional_kwargs": {},
        },
    })
}

fn chat_end() -> LLMChatEndEvent {
    LLMChatEndEvent {
        messages: question(),
        response: Some(
            ChatResponse::new(ChatMessage::assistant("A span is a stretch of work."))
                .with_usage(
                    TokenUsage::new(312, 85)
                        .with_cache_read(256)
                        .with_reasoning(64),
                )
                .with_model("gpt-4o-mini")
                .with_finish_reason("stop"),
        ),
    }
}

fn chat_end_json() -> Value {
    json!({
        "messages": question_json(),
        "response": {
            "message": {"role": "assistant", "content": "A span is a stretch of work.", "additional_kwargs": {}},
            "raw": null,
            "delta": null,
            "additional_kwargs": {
                "prompt_tokens": 312,
                "completion_tokens": 85,
                "total_tokens": 397,
                "cached_tokens": 256,
                "reasoning_tokens": 64,
                "model": "gpt-4o-mini",
                "finish_reason": "stop",
            },
        },
    })
}

fn chat_tool_call() -> LLMChatEndEvent {
    LLMChatEndEvent {
        messages: vec![ChatMessage::user("Find spans.")],
        response: Some(
            ChatResponse::new(
                ChatMessage::new(MessageRole::Assistant).with_tool_call(ToolCall::new(
                    "call_1",
                    "search",
                    r#"{"q":"spans"}"#,
                )),
            )
            .with_usage(TokenUsage::new(40, 12))
            .with_finish_reason("tool_calls"),
        ),
    }
}

fn chat_tool_call_json() -> Value {
    json!({
        "messages": [{"role": "user", "content": "Find spans.", "additional_kwargs": {}}],
        "response": {
            "message": {
                "role": "assistant",
                "content": null,
                "additional_kwargs": {"tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"spans\"}"}},
                ]},
            },
            "raw": null,
            "delta": null,
            "additional_kwargs": {
                "prompt_tokens": 40,
                "completion_tokens": 12,
                "total_tokens": 52,
                "finish_reason": "tool_calls",
            },
        },
    })
}

fn chat_end_without_response() -> LLMChatEndEvent {
    LLMChatEndEvent {
        messages: vec![],
        response: None,
    }
}

fn chat_end_without_response_json() -> Value {
    json!({"messages": [], "response": null})
}

fn completion_chunk() -> LLMCompletionInProgressEvent {
    LLMCompletionInProgressEvent {
        prompt: "Once upon".into(),
        response: CompletionResponse::new("Once upon a").with_delta(" a"),
    }
}

fn completion_chunk_json() -> Value {
    json!({
        "prompt": "Once upon",
        "response": {"text": "Once upon a", "additional_kwargs": {}, "raw": null, "delta": " a"},
    })
}

fn completion_end() -> LLMCompletionEndEvent {
    LLMCompletionEndEvent {
        prompt: "Once upon".into(),
        response: CompletionResponse::new("Once upon a time")
            .with_usage(TokenUsage::new(2, 3))
            .with_model("gpt-3.5-turbo-instruct")
            .with_finish_reason("length"),
    }
}

fn completion_end_json() -> Value {
    json!({
        "prompt": "Once upon",
        "response": {
            "text": "Once upon a time",
            "additional_kwargs": {
                "prompt_tokens": 2,
                "completion_tokens": 3,
                "total_tokens": 5,
                "model": "gpt-3.5-turbo-instruct",
                "finish_reason": "length",
            },
            "raw": null,
            "delta": null,
        },
    })
}

fn nodes() -> Vec<NodeWithScore> {
    vec![
        NodeWithScore::new(
            Document::new("doc-1", "A span is a stretch of work.")
                .with_metadata("file", "spans.md"),
            0.91,
        ),
        NodeWithScore::new(Document::new("doc-2", "Spans nest."), None),
    ]
}

fn nodes_json() -> Value {
    json!([
        {"node": {"id_": "doc-1", "text": "A span is a stretch of work.", "metadata": {"file": "spans.md"}}, "score": 0.91},
        {"node": {"id_": "doc-2", "text": "Spans nest.", "metadata": {}}, "score": null},
    ])
}

fn retrieval_end() -> RetrievalEndEvent {
    RetrievalEndEvent {
        str_or_query_bundle: "What is a span?".into(),
        nodes: nodes(),
    }
}

fn retrieval_end_json() -> Value {
    json!({"str_or_query_bundle": "What is a span?", "nodes": nodes_json()})
}

fn rerank_start() -> ReRankStartEvent {
    ReRankStartEvent {
        query: Some("What is a span?".into()),
        nodes: nodes(),
        top_n: 1,
        model_name: "cross-encoder".into(),
    }
}

fn rerank_start_json() -> Value {
    json!({
        "query": "What is a span?",
        "nodes": nodes_json(),
        "top_n": 1,
        "model_name": "cross-encoder",
    })
}

fn rerank_end() -> ReRankEndEvent {
    ReRankEndEvent {
        nodes: nodes().into_iter().take(1).collect(),
    }
}

fn rerank_end_json() -> Value {
    json!({"nodes": [nodes_json()[0].clone()]})
}

/// Every typed event with the JSON written by hand for it, as `(class name, typed as JSON,
/// by hand)`.
fn catalog() -> Vec<(&'static str, Value, Value)> {
    fn row<E: Event>(event: E, by_hand: Value) -> (&'static str, Value, Value) {
        (E::NAME, serde_json::to_value(&event).unwrap(), by_hand)
    }
    vec![
        row(chat_start(), chat_start_json()),
        row(chat_chunk(), chat_chunk_json()),
        row(chat_end(), chat_end_json()),
        row(chat_tool_call(), chat_tool_call_json()),
        row(
            chat_end_without_response(),
            chat_end_without_response_json(),
        ),
        row(completion_chunk(), completion_chunk_json()),
        row(completion_end(), completion_end_json()),
        row(retrieval_end(), retrieval_end_json()),
        row(rerank_start(), rerank_start_json()),
        row(rerank_end(), rerank_end_json()),
    ]
}

/// Reads `value` as a `T` and writes it again: the JSON must not change, and a second read
/// must give an equal value.
fn rewritten<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap();
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(&again, value, "written back as it came");
    assert_eq!(serde_json::from_value::<T>(again).unwrap(), typed);
    typed
}

// --- Tests --------------------------------------------------------------------------------

#[test]
fn each_typed_event_serializes_to_exactly_the_json_written_by_hand() {
    let rows = catalog();
    for (class_name, typed, by_hand) in &rows {
        assert_eq!(typed, by_hand, "{class_name}");
    }
    println!(
        "{} typed events serialize to the JSON written by hand",
        rows.len()
    );
}

#[tokio::test]
async fn typed_events_written_as_json_lines_read_back_equal_with_the_same_json() {
    let path = temp_path("typed-catalog.jsonl");
    let d = Dispatcher::new("typed.catalog").unwrap();
    let handler = JsonlHandler::create(&path).unwrap();
    let status = handler.status();
    d.add_handler(handler).unwrap();
    async {
        d.event(chat_start()).await.unwrap();
        d.event(chat_chunk()).await.unwrap();
        d.event(chat_end()).await.unwrap();
        d.event(chat_tool_call()).await.unwrap();
        d.event(chat_end_without_response()).await.unwrap();
        d.event(completion_chunk()).await.unwrap();
        d.event(completion_end()).await.unwrap();
        d.event(retrieval_end()).await.unwrap();
        d.event(rerank_start()).await.unwrap();
        d.event(rerank_end()).await.unwrap();
    }
    .in_span(d.span("rag.query"))
    .await;
    d.flush().await;

    let read = jsonl::read(&path).unwrap();
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    let events: Vec<&JsonRecord> = read.records.iter().filter(|r| r.is_event()).collect();
    let rows = catalog();
    assert_eq!(events.len(), rows.len());
    for (record, (class_name, _, by_hand)) in events.iter().zip(&rows) {
        assert_eq!(record.class_name, *class_name);
        assert_eq!(
            &Value::Object(record.fields.clone()),
            by_hand,
            "the line's fields of {class_name}"
        );
    }
    assert_eq!(
        events[0].event::<LLMChatStartEvent>().unwrap(),
        chat_start()
    );
    assert_eq!(
        events[1].event::<LLMChatInProgressEvent>().unwrap(),
        chat_chunk()
    );
    assert_eq!(events[2].event::<LLMChatEndEvent>().unwrap(), chat_end());
    assert_eq!(
        events[3].event::<LLMChatEndEvent>().unwrap(),
        chat_tool_call()
    );
    assert_eq!(
        events[4].event::<LLMChatEndEvent>().unwrap(),
        chat_end_without_response()
    );
    assert_eq!(
        events[5].event::<LLMCompletionInProgressEvent>().unwrap(),
        completion_chunk()
    );
    assert_eq!(
        events[6].event::<LLMCompletionEndEvent>().unwrap(),
        completion_end()
    );
    assert_eq!(
        events[7].event::<RetrievalEndEvent>().unwrap(),
        retrieval_end()
    );
    assert_eq!(
        events[8].event::<ReRankStartEvent>().unwrap(),
        rerank_start()
    );
    assert_eq!(events[9].event::<ReRankEndEvent>().unwrap(), rerank_end());
    let usage = events[2]
        .event::<LLMChatEndEvent>()
        .unwrap()
        .response
        .and_then(|r| r.usage)
        .unwrap();
    println!(
        "{} lines written, {} records read back, {} events equal to what was emitted \
         (chat end: {}→{} tokens, {} cached, {} reasoning)",
        status.written(),
        read.records.len(),
        events.len(),
        usage.input,
        usage.output,
        usage.cache_read.unwrap_or(0),
        usage.reasoning.unwrap_or(0),
    );
}

#[test]
fn the_blocks_form_of_newer_llama_index_reads_into_content_tool_calls_and_other_blocks() {
    // `ChatMessage(...).model_dump()` in llama-index 0.14: text blocks, no `content` key.
    let plain: ChatMessage = serde_json::from_value(json!({
        "role": "user",
        "additional_kwargs": {},
        "blocks": [{"block_type": "text", "text": "What is a span?"}],
    }))
    .unwrap();
    assert_eq!(plain, ChatMessage::user("What is a span?"));

    let rich: ChatMessage = serde_json::from_value(json!({
        "role": "assistant",
        "additional_kwargs": {},
        "blocks": [
            {"block_type": "text", "text": "Looking it up."},
            {"block_type": "thinking", "content": "The user wants spans.", "num_tokens": 5, "additional_information": {}},
            {"block_type": "text", "text": "One moment."},
            {"block_type": "tool_call", "tool_call_id": "call_7", "tool_name": "search", "tool_kwargs": {"q": "spans"}},
        ],
    }))
    .unwrap();
    // llama-index's `ChatMessage.content` joins the text blocks with a newline.
    assert_eq!(rich.content.as_deref(), Some("Looking it up.\nOne moment."));
    assert_eq!(
        rich.tool_calls,
        [ToolCall::new("call_7", "search", r#"{"q":"spans"}"#)]
    );
    assert_eq!(
        rich.tool_calls[0].arguments_json().unwrap(),
        json!({"q": "spans"})
    );
    assert_eq!(rich.other_blocks.len(), 1, "{:?}", rich.other_blocks);
    assert_eq!(rich.other_blocks[0]["block_type"], "thinking");

    // Written back in the blocks form, so the thinking block is not lost, and read again equal.
    let written = serde_json::to_value(&rich).unwrap();
    assert_eq!(
        written,
        json!({
            "role": "assistant",
            "blocks": [
                {"block_type": "text", "text": "Looking it up.\nOne moment."},
                {"block_type": "thinking", "content": "The user wants spans.", "num_tokens": 5, "additional_information": {}},
            ],
            "additional_kwargs": {"tool_calls": [
                {"id": "call_7", "type": "function", "function": {"name": "search", "arguments": "{\"q\":\"spans\"}"}},
            ]},
        })
    );
    assert_eq!(
        serde_json::from_value::<ChatMessage>(written).unwrap(),
        rich
    );

    // Roles: llama-index's eight lowercase values, anything else kept as it is.
    let roles = [
        "system",
        "developer",
        "user",
        "assistant",
        "function",
        "tool",
        "chatbot",
        "model",
    ];
    for role in roles {
        let message: ChatMessage =
            serde_json::from_value(json!({"role": role, "content": "x"})).unwrap();
        assert!(!matches!(message.role, MessageRole::Other(_)), "{role}");
        assert_eq!(serde_json::to_value(&message).unwrap()["role"], role);
    }
    let critic: ChatMessage =
        serde_json::from_value(json!({"role": "critic", "content": "x"})).unwrap();
    assert_eq!(critic.role, MessageRole::Other("critic".into()));
    assert_eq!(serde_json::to_value(&critic).unwrap()["role"], "critic");
    let no_role: ChatMessage = serde_json::from_value(json!({"content": "x"})).unwrap();
    assert_eq!(no_role.role, MessageRole::User, "llama-index's default");
    println!(
        "blocks form: content {:?}, {} tool call, {} other block; {} known roles",
        rich.content.as_deref().unwrap_or_default(),
        rich.tool_calls.len(),
        rich.other_blocks.len(),
        roles.len()
    );
}

#[test]
fn a_response_built_from_a_providers_raw_json_reads_usage_model_and_finish_reason() {
    // An OpenAI chat completion, as llama-index's OpenAI integration keeps it in `raw`.
    let raw = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "A span is a stretch of work."}}],
        "usage": {
            "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 192},
        },
    });
    let read: ChatResponse = serde_json::from_value(json!({
        "message": {"role": "assistant", "content": "A span is a stretch of work."},
        "raw": raw,
    }))
    .unwrap();
    let usage = TokenUsage::new(1200, 300)
        .with_cache_read(1024)
        .with_reasoning(192);
    assert_eq!(read.usage, Some(usage));
    assert_eq!(read.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(read.finish_reason.as_deref(), Some("stop"));
    assert!(read.additional_kwargs.is_empty());
    // The same response built in code, and its JSON: the typed values in `additional_kwargs`.
    let built = ChatResponse::new(ChatMessage::assistant("A span is a stretch of work."))
        .with_raw(raw.clone());
    assert_eq!(built, read);
    let written = serde_json::to_value(&built).unwrap();
    assert_eq!(
        written["additional_kwargs"],
        json!({
            "prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
            "cached_tokens": 1024, "reasoning_tokens": 192,
            "model": "gpt-4o-mini-2024-07-18", "finish_reason": "stop",
        })
    );
    assert_eq!(
        written["raw"], raw,
        "the raw response is written as it came"
    );
    assert_eq!(
        serde_json::from_value::<ChatResponse>(written).unwrap(),
        built
    );

    // OpenAI's responses API names the counts input/output.
    let responses_api: CompletionResponse = serde_json::from_value(json!({
        "text": "Once upon a time",
        "raw": {"model": "gpt-4.1", "usage": {
            "input_tokens": 9, "output_tokens": 4, "total_tokens": 13,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 2},
        }},
    }))
    .unwrap();
    assert_eq!(
        responses_api.usage,
        Some(TokenUsage::new(9, 4).with_cache_read(0).with_reasoning(2))
    );
    assert_eq!(responses_api.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(responses_api.finish_reason, None, "no choices, no reason");

    // What `additional_kwargs` says wins over `raw`: it is where the typed values are written.
    let both: ChatResponse = serde_json::from_value(json!({
        "message": {"role": "assistant", "content": "ok"},
        "raw": {"model": "from-raw", "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
        "additional_kwargs": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9, "model": "from-kwargs"},
    }))
    .unwrap();
    assert_eq!(both.usage, Some(TokenUsage::new(7, 2)));
    assert_eq!(both.model.as_deref(), Some("from-kwargs"));
    assert!(both.additional_kwargs.is_empty());
    println!(
        "raw OpenAI response: {}→{} tokens ({} cached, {} reasoning), model {}, finish {}; \
         responses API: {}→{} tokens",
        usage.input,
        usage.output,
        usage.cache_read.unwrap_or(0),
        usage.reasoning.unwrap_or(0),
        read.model.as_deref().unwrap_or("?"),
        read.finish_reason.as_deref().unwrap_or("?"),
        responses_api.usage.map_or(0, |u| u.input),
        responses_api.usage.map_or(0, |u| u.output),
    );
}

#[test]
fn unknown_keys_are_kept_in_the_escape_hatch_maps_and_written_back() {
    // A chat response with provider extras everywhere: the whole JSON survives a read and a
    // write unchanged.
    let response_json = json!({
        "message": {
            "role": "tool",
            "content": "42",
            "additional_kwargs": {"tool_call_id": "call_1", "name": "calculator"},
            "refusal": null,
        },
        "raw": {"id": "chatcmpl-9", "system_fingerprint": "fp_1", "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
        "delta": null,
        "additional_kwargs": {
            "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
            "system_fingerprint": "fp_1", "service_tier": "default",
        },
        "logprobs": null,
    });
    let response: ChatResponse = rewritten(&response_json);
    assert_eq!(
        response.message.additional_kwargs["tool_call_id"], "call_1",
        "message extras stay in its additional_kwargs"
    );
    assert_eq!(response.message.extra["refusal"], Value::Null);
    assert_eq!(
        response.additional_kwargs,
        object(json!({"system_fingerprint": "fp_1", "service_tier": "default"})),
        "the typed keys are taken out, the others stay"
    );
    assert_eq!(response.extra, object(json!({"logprobs": null})));

    // Keys of the wrong type and tool calls of another shape are left where they are.
    let odd_json = json!({
        "message": {
            "role": "assistant",
            "content": null,
            "additional_kwargs": {"tool_calls": [{"index": 0, "id": "call_2", "type": "function",
                                                  "function": {"name": "f", "arguments": "{}"}}]},
        },
        "raw": null,
        "delta": null,
        "additional_kwargs": {"model": {"family": "gpt"}, "prompt_tokens": 5},
    });
    let odd: ChatResponse = rewritten(&odd_json);
    assert_eq!(odd.model, None);
    assert_eq!(odd.usage, None, "an input count alone is not a usage");
    assert!(odd.message.tool_calls.is_empty());
    assert_eq!(odd.additional_kwargs.len(), 2);

    // A llama-index TextNode dump keeps every key it came with.
    let node_json = json!({
        "node": {
            "id_": "doc-1",
            "embedding": null,
            "metadata": {"file": "spans.md", "page": 3},
            "excluded_embed_metadata_keys": [],
            "excluded_llm_metadata_keys": [],
            "relationships": {"1": {"node_id": "src-1", "node_type": "4", "metadata": {}, "hash": "ab", "class_name": "RelatedNodeInfo"}},
            "text": "A span is a stretch of work.",
            "mimetype": "text/plain",
            "start_char_idx": 0,
            "end_char_idx": 28,
            "metadata_seperator": "\n",
            "text_template": "{metadata_str}\n\n{content}",
            "class_name": "TextNode",
        },
        "score": 0.91,
        "class_name": "NodeWithScore",
    });
    let node: NodeWithScore = rewritten(&node_json);
    assert_eq!(node.node.id, "doc-1");
    assert_eq!(node.node.metadata["page"], 3);
    assert_eq!(node.node.extra.len(), 10);
    assert_eq!(node.extra["class_name"], "NodeWithScore");

    // A completion with provider extras and llama-index's logprobs.
    let completion_json = json!({
        "text": "there",
        "additional_kwargs": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3, "seed": 7},
        "raw": {"id": "cmpl-1"},
        "delta": null,
        "logprobs": [[{"token": "there", "logprob": -0.1, "bytes": []}]],
    });
    let completion: CompletionResponse = rewritten(&completion_json);
    assert_eq!(completion.usage, Some(TokenUsage::new(2, 1)));
    assert_eq!(completion.additional_kwargs, object(json!({"seed": 7})));
    println!(
        "kept: {} response extras, {} message extras, {} node keys, {} completion extras",
        response.additional_kwargs.len() + response.extra.len(),
        response.message.additional_kwargs.len() + response.message.extra.len(),
        node.node.extra.len() + node.extra.len(),
        completion.additional_kwargs.len() + completion.extra.len(),
    );
}

#[test]
fn malformed_objects_are_errors_that_name_the_field_not_panics() {
    let cases: [(&str, Result<(), serde_json::Error>); 7] = [
        (
            "role",
            serde_json::from_value::<ChatMessage>(json!({"role": 5})).map(drop),
        ),
        (
            "content",
            serde_json::from_value::<ChatMessage>(json!({"content": {"a": 1}})).map(drop),
        ),
        (
            "message",
            serde_json::from_value::<ChatResponse>(json!({"delta": "x"})).map(drop),
        ),
        (
            "additional_kwargs",
            serde_json::from_value::<ChatResponse>(json!({"message": {}, "additional_kwargs": []}))
                .map(drop),
        ),
        (
            "text",
            serde_json::from_value::<CompletionResponse>(json!({"raw": null})).map(drop),
        ),
        (
            "id_",
            serde_json::from_value::<NodeWithScore>(json!({"node": {"text": "x"}})).map(drop),
        ),
        (
            "prompt_tokens",
            serde_json::from_value::<TokenUsage>(
                json!({"prompt_tokens": -1, "completion_tokens": 2}),
            )
            .map(drop),
        ),
    ];
    for (field, result) in &cases {
        let err = result.as_ref().expect_err(field).to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    println!(
        "{} malformed objects gave errors naming the field",
        cases.len()
    );
}
