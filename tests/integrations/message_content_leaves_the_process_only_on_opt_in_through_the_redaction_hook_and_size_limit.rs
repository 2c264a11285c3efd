//! The content policy, checked on every byte the exporter sends to a loopback endpoint: with
//! capture off no prompt, response, query, document, tool argument, argument or return value
//! is in any request body, while counts, models and names are; with capture on and a
//! redaction hook only the hook's output is; a value over the size limit is cut and marked;
//! an argument is exported once.

use std::time::Duration;

use serde_json::{Map, Value, json};
use spanbus::Dispatcher;
use spanbus::events::{
    AgentRunStepStartEvent, AgentToolCallEvent, EmbeddingEndEvent, EmbeddingStartEvent,
    LLMChatEndEvent, LLMChatInProgressEvent, LLMChatStartEvent, LLMCompletionStartEvent,
    ReRankStartEvent, RetrievalEndEvent, RetrievalStartEvent,
};
use spanbus::integrations::otlp::{OtlpExporter, OtlpExporterBuilder};

use crate::support::otlp_endpoint::{Answer, Endpoint, attributes};
use crate::support::typed;

/// Text that must not leave the process unless content is captured; each appears in one
/// place of the pipeline below.
const SECRETS: [&str; 13] = [
    "SYSTEM-INSTRUCTION-k2",
    "USER-PROMPT-x91",
    "MODEL-ANSWER-q7",
    "STREAMED-DELTA-v3",
    "COMPLETION-PROMPT-m5",
    "RETRIEVAL-QUERY-z8",
    "DOCUMENT-TEXT-b4",
    "DOCUMENT-META-j6",
    "EMBEDDED-CHUNK-c1",
    "TOOL-ARGUMENT-w2",
    "AGENT-INPUT-h9",
    "ARGUMENT-VALUE-p3",
    "RETURN-VALUE-r8",
];

#[spanbus::span(dispatcher = bus, skip(bus), name = "answer", ret)]
fn answer(bus: &Dispatcher, question: &str) -> String {
    let _ = question;
    "RETURN-VALUE-r8".to_owned()
}

fn dict(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A pipeline that puts each secret somewhere, with counts and models beside them.
async fn pipeline(d: &Dispatcher) {
    d.span("Llm.chat")
        .args(json!({"user": "ARGUMENT-VALUE-p3"}))
        .in_scope(|| {
            d.event(LLMChatStartEvent {
                messages: vec![
                    typed(json!({"role": "system", "content": "SYSTEM-INSTRUCTION-k2"})),
                    typed(json!({"role": "user", "content": "USER-PROMPT-x91"})),
                ],
                additional_kwargs: Map::new(),
                model_dict: dict(json!({"model": "gpt-4o-mini", "class_name": "openai_llm"})),
            })
            .now()
            .unwrap();
            d.event(LLMChatInProgressEvent {
                messages: vec![typed(json!({"role": "user", "content": "USER-PROMPT-x91"}))],
                response: typed(
                    json!({"message": {"role": "assistant"}, "delta": "STREAMED-DELTA-v3"}),
                ),
            })
            .now()
            .unwrap();
            d.event(LLMChatEndEvent {
                messages: vec![typed(json!({"role": "user", "content": "USER-PROMPT-x91"}))],
                response: Some(typed(json!({
                    "message": {"role": "assistant", "content": "MODEL-ANSWER-q7"},
                    "raw": {"usage": {"prompt_tokens": 21, "completion_tokens": 4}},
                }))),
            })
            .now()
            .unwrap();
        });
    d.span("Llm.complete").in_scope(|| {
        d.event(LLMCompletionStartEvent {
            prompt: "COMPLETION-PROMPT-m5".into(),
            additional_kwargs: Map::new(),
            model_dict: dict(json!({"model": "gpt-3.5-turbo-instruct"})),
        })
        .now()
        .unwrap();
    });
    d.span("Store.retrieve").in_scope(|| {
        d.event(RetrievalStartEvent {
            str_or_query_bundle: json!({"query_str": "RETRIEVAL-QUERY-z8"}),
        })
        .now()
        .unwrap();
        d.event(RetrievalEndEvent {
            str_or_query_bundle: json!({"query_str": "RETRIEVAL-QUERY-z8"}),
            nodes: vec![typed(
                json!({"node": {"id_": "doc-1", "text": "DOCUMENT-TEXT-b4",
                "metadata": {"source": "DOCUMENT-META-j6"}}, "score": 0.8}),
            )],
        })
        .now()
        .unwrap();
    });
    d.span("Reranker.rerank").in_scope(|| {
        d.event(ReRankStartEvent {
            query: Some(json!("RETRIEVAL-QUERY-z8")),
            nodes: vec![typed(
                json!({"node": {"id_": "doc-1", "text": "DOCUMENT-TEXT-b4"}, "score": 0.8}),
            )],
            top_n: 1,
            model_name: "rerank-v3".into(),
        })
        .now()
        .unwrap();
    });
    d.span("Embed.texts").in_scope(|| {
        d.event(EmbeddingStartEvent {
            model_dict: dict(json!({"model_name": "text-embedding-3-small"})),
        })
        .now()
        .unwrap();
        d.event(EmbeddingEndEvent {
            chunks: vec!["EMBEDDED-CHUNK-c1".into()],
            embeddings: vec![vec![0.5]],
            token_count: Some(6),
        })
        .now()
        .unwrap();
    });
    d.span("Tool.call").in_scope(|| {
        d.event(AgentToolCallEvent {
            arguments: r#"{"q":"TOOL-ARGUMENT-w2"}"#.into(),
            tool: json!({"name": "search"}),
        })
        .now()
        .unwrap();
    });
    d.span("Agent.step").in_scope(|| {
        d.event(AgentRunStepStartEvent {
            task_id: "task-1".into(),
            step: None,
            input: Some("AGENT-INPUT-h9".into()),
        })
        .now()
        .unwrap();
    });
    answer(d, "ARGUMENT-VALUE-p3");
    d.flush().await;
}

async fn run(builder: OtlpExporterBuilder) -> Endpoint {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let exporter = builder
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let d = Dispatcher::new("content.policy").unwrap();
    d.add_handler(exporter).unwrap();
    pipeline(&d).await;
    d.shutdown(Duration::from_secs(5)).await;
    endpoint
}

fn occurrences(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_content_capture_off_no_prompt_text_is_in_any_exported_byte() {
    // Explicitly off: the variable may be set where the tests run.
    let endpoint = run(OtlpExporter::builder().capture_content(false)).await;
    let bytes = endpoint.all_bytes();
    let spans = endpoint.spans();
    let found: Vec<(&str, usize)> = SECRETS
        .iter()
        .map(|s| (*s, occurrences(&bytes, s)))
        .filter(|(_, n)| *n > 0)
        .collect();
    println!(
        "capture off: {} spans in {} requests, {} bytes; secrets found: {found:?}",
        spans.len(),
        endpoint.request_count(),
        bytes.len()
    );
    assert_eq!(spans.len(), 8);
    assert!(found.is_empty(), "content left the process: {found:?}");

    // What always goes: counts, models, names, ids, scores.
    let by = |name: &str| {
        spans
            .iter()
            .find(|s| attributes(s).get("spanbus.span.name") == Some(&json!(name)))
            .map(attributes)
            .unwrap_or_else(|| panic!("no span {name}"))
    };
    let chat = by("Llm.chat");
    assert_eq!(chat["gen_ai.request.model"], "gpt-4o-mini");
    assert_eq!(chat["gen_ai.usage.input_tokens"], 21);
    assert_eq!(chat["gen_ai.usage.output_tokens"], 4);
    assert_eq!(chat["llm.token_count.total"], 25);
    assert_eq!(chat["llm.model_name"], "gpt-4o-mini");
    let retrieval = by("Store.retrieve");
    assert_eq!(retrieval["retrieval.documents.0.document.id"], "doc-1");
    assert_eq!(retrieval["retrieval.documents.0.document.score"], 0.8);
    assert_eq!(by("Embed.texts")["gen_ai.usage.input_tokens"], 6);
    assert_eq!(by("Tool.call")["gen_ai.tool.name"], "search");
    let kept: Vec<&str> = ["llm.token_count.prompt", "gen_ai.usage.input_tokens"]
        .into_iter()
        .filter(|k| chat.contains_key(*k))
        .collect();
    println!("capture off, still exported on the chat span: {kept:?} and the model");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_capture_on_and_a_redaction_hook_only_the_hooks_output_is_exported() {
    let endpoint = run(OtlpExporter::builder()
        .capture_content(true)
        .redact(|key, value| {
            // Drop the arguments; mask everything else, saying how long it was.
            if key.starts_with("spanbus.args") {
                return None;
            }
            let len = match &value {
                Value::String(s) => s.len(),
                other => other.to_string().len(),
            };
            Some(Value::String(format!("[redacted {len} bytes]")))
        }))
    .await;
    let bytes = endpoint.all_bytes();
    let spans = endpoint.spans();
    let found: Vec<&str> = SECRETS
        .iter()
        .copied()
        .filter(|s| occurrences(&bytes, s) > 0)
        .collect();
    let redacted = occurrences(&bytes, "[redacted ");
    println!(
        "capture on with a hook: {} spans, {} bytes; secrets found: {found:?}; {redacted} values redacted",
        spans.len(),
        bytes.len()
    );
    assert!(found.is_empty(), "unredacted content: {found:?}");
    assert!(redacted > 20, "{redacted}");
    let chat = spans
        .iter()
        .map(attributes)
        .find(|a| a.get("spanbus.span.name") == Some(&json!("Llm.chat")))
        .unwrap();
    assert_eq!(
        chat["llm.input_messages.1.message.content"],
        "[redacted 15 bytes]"
    );
    assert!(
        chat["gen_ai.input.messages"]
            .as_str()
            .unwrap()
            .starts_with("[redacted ")
    );
    // The hook removed the arguments.
    assert!(!chat.contains_key("spanbus.args.user"), "{chat:?}");
    // Counts are not content: the hook never sees them.
    assert_eq!(chat["gen_ai.usage.input_tokens"], 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_size_limit_is_cut_and_marked() {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .capture_content(true)
        .max_attribute_bytes(1024)
        .build()
        .unwrap();
    let d = Dispatcher::new("content.limit").unwrap();
    d.add_handler(exporter).unwrap();
    let long = "é".repeat(5000); // 10,000 bytes, 2-byte characters
    d.span("Big.args")
        .args(json!({"document": long}))
        .in_scope(|| ());
    d.span("Big.prompt").in_scope(|| {
        d.event(LLMCompletionStartEvent {
            prompt: "p".repeat(200_000),
            additional_kwargs: Map::new(),
            model_dict: Map::new(),
        })
        .now()
        .unwrap();
    });
    d.shutdown(Duration::from_secs(5)).await;
    let spans = endpoint.spans();
    let args = spans.iter().find(|s| s.name == "Big.args").unwrap();
    let input = attributes(args)["input.value"].as_str().unwrap().to_owned();
    let prompt = spans
        .iter()
        .map(attributes)
        .find(|a| a.get("spanbus.span.name") == Some(&json!("Big.prompt")))
        .unwrap()["llm.input_messages.0.message.content"]
        .as_str()
        .unwrap()
        .to_owned();
    let event_prompt = spans
        .iter()
        .flat_map(|s| s.events.clone())
        .flat_map(|e| e.attributes)
        .find(|kv| kv.key == "prompt")
        .map(|kv| crate::support::otlp_endpoint::json_value(kv.value.as_ref().unwrap()))
        .unwrap();
    let tail = |s: &str| {
        s.chars()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
    };
    println!(
        "limit 1024 bytes: a 10,015-byte argument exported as {} bytes (…{}); a 200,000-byte prompt as {} bytes (…{}); \
         the prompt event field as {} bytes; largest request {} bytes",
        input.len(),
        tail(&input),
        prompt.len(),
        tail(&prompt),
        event_prompt.as_str().unwrap().len(),
        endpoint.requests().iter().map(|r| r.len).max().unwrap()
    );
    // The argument's JSON text is `{"document":"éé…"}`: 13 bytes, 2 per character, 2 more;
    // 1,024 bytes would cut a character, so 1,023 are kept.
    assert!(input.starts_with("{\"document\":\"éé"));
    assert!(
        input.ends_with("…[truncated 8992 bytes]"),
        "{}",
        tail(&input)
    );
    assert_eq!(input.split('…').next().unwrap().len(), 1023);
    assert!(
        prompt.ends_with("…[truncated 198976 bytes]"),
        "{}",
        tail(&prompt)
    );
    assert_eq!(prompt.split('…').next().unwrap(), "p".repeat(1024));
    assert!(
        event_prompt
            .as_str()
            .unwrap()
            .ends_with("…[truncated 198976 bytes]")
    );
    assert!(endpoint.requests().iter().all(|r| r.len < 16 * 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_argument_is_exported_once() {
    let endpoint = run(OtlpExporter::builder().capture_content(true)).await;
    let bytes = endpoint.all_bytes();
    let spans = endpoint.spans();
    let chat = spans
        .iter()
        .map(attributes)
        .find(|a| a.get("spanbus.span.name") == Some(&json!("Llm.chat")))
        .unwrap();
    let answer = spans
        .iter()
        .find(|s| s.name == "answer")
        .map(attributes)
        .unwrap();
    // The chat span's events gave its input (the messages): its argument goes beside it.
    assert_eq!(chat["input.value"], "USER-PROMPT-x91");
    assert_eq!(chat["spanbus.args.user"], "ARGUMENT-VALUE-p3");
    // `answer` has no events: its arguments are its input.
    assert_eq!(answer["input.value"], r#"{"question":"ARGUMENT-VALUE-p3"}"#);
    assert!(!answer.keys().any(|k| k.starts_with("spanbus.args")));
    assert_eq!(answer["output.value"], "RETURN-VALUE-r8");
    let n = occurrences(&bytes, "ARGUMENT-VALUE-p3");
    println!(
        "capture on: the argument value appears {n} times in {} bytes (once per span that got it: Llm.chat as spanbus.args.user, answer as input.value)",
        bytes.len()
    );
    assert_eq!(n, 2, "once for each of the two spans that take it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redaction_hook_that_panics_removes_the_value_and_the_span_is_still_exported() {
    let endpoint = run(OtlpExporter::builder()
        .capture_content(true)
        .redact(|key, value| {
            if key.contains("input_messages") {
                panic!("the hook failed on {key}");
            }
            Some(value)
        }))
    .await;
    let spans = endpoint.spans();
    let chat = spans
        .iter()
        .map(attributes)
        .find(|a| a.get("spanbus.span.name") == Some(&json!("Llm.chat")))
        .unwrap();
    let removed = !chat.keys().any(|k| k.starts_with("llm.input_messages."));
    println!(
        "a panicking hook: {} spans exported; the chat span's input messages removed: {removed}; its output kept: {}",
        spans.len(),
        chat["llm.output_messages.0.message.content"]
    );
    assert_eq!(spans.len(), 8);
    assert!(removed, "{chat:?}");
    assert_eq!(
        chat["llm.output_messages.0.message.content"],
        "MODEL-ANSWER-q7"
    );
}
