//! The real `genai` crate (feature `otel`, which emits `tracing` spans in the OpenTelemetry
//! GenAI conventions) calls an OpenAI-compatible endpoint written here, on loopback, from
//! inside a spanbus span. With the tracing bridge installed and no other code, spanbus sees the
//! call as an LLM call: a span named `chat gpt-4o-mini` under the caller's span, carrying the
//! catalog's chat events, so its `LlmSummary` — and the tree line — has the model, the provider,
//! the tokens and the finish reason the endpoint answered. A failed call drops its span.
//!
//! genai rather than rig-core: genai builds here without TLS (`default-features = false`, the
//! endpoint is loopback) on the crate's toolchain; rig-core 0.44 declares Rust 1.95 and pulls a
//! TLS stack by default.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genai::adapter::AdapterKind;
use genai::chat::{ChatMessage, ChatRequest};
use genai::resolver::{AuthData, Endpoint, ServiceTargetResolver};
use genai::{Client, ModelIden, ServiceTarget};
use serde_json::{Value, json};
use spanbus::handlers::{SimpleSpanHandler, TraceTrees};
use spanbus::integrations::tracing::SpanbusLayer;
use spanbus::llm::Prices;
use spanbus::{Dispatcher, DropReason, SpanFutureExt, current_span};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt;

/// A loopback OpenAI-compatible `/v1/chat/completions`: answers each request with `answer`
/// (status, body) and keeps the request bodies.
async fn openai_endpoint(answer: (u16, Value)) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head, then the body its Content-Length announces.
                let (head_end, len) = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (at + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                if let Ok(body) = serde_json::from_slice(&buf[head_end..head_end + len]) {
                    seen.lock().unwrap().push(body);
                }
                let body = answer.1.to_string();
                let response = format!(
                    "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    answer.0,
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn client(url: String) -> Client {
    let resolver = ServiceTargetResolver::from_resolver_fn(
        move |target: ServiceTarget| -> Result<ServiceTarget, genai::resolver::Error> {
            Ok(ServiceTarget {
                endpoint: Endpoint::from_owned(url.clone()),
                auth: AuthData::from_single("test-key"),
                model: ModelIden::new(AdapterKind::OpenAI, target.model.model_name),
            })
        },
    );
    Client::builder()
        .with_service_target_resolver(resolver)
        .build()
        .expect("a genai client")
}

#[tokio::test(flavor = "current_thread")]
async fn a_genai_chat_under_a_spanbus_span_shows_model_tokens_and_parent() {
    let (url, requests) = openai_endpoint((
        200,
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "A stretch of work."}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }),
    ))
    .await;
    let d = Dispatcher::new("genai.bridge").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();
    let subscriber = tracing_subscriber::registry().with(SpanbusLayer::new(d.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let llm = client(url);
    let (answer, caller) = async {
        let request = ChatRequest::new(vec![ChatMessage::user("What is a span?")]);
        let response = llm.exec_chat("gpt-4o-mini", request, None).await.unwrap();
        (
            response.first_text().unwrap_or_default().to_owned(),
            current_span().unwrap(),
        )
    }
    .in_span(d.span("answer"))
    .await;
    assert_eq!(answer, "A stretch of work.");
    assert_eq!(
        requests.lock().unwrap().len(),
        1,
        "one request reached the endpoint"
    );
    d.flush().await;

    let closed = spans.spans();
    let names: Vec<&str> = closed.iter().map(|s| s.name.as_ref()).collect();
    println!("spans: {names:?}");
    let call = closed
        .iter()
        .find(|s| s.name == "chat gpt-4o-mini")
        .unwrap_or_else(|| panic!("no `chat gpt-4o-mini` span in {names:?}"));
    assert_eq!(call.parent, Some(caller.span_id()), "the call's parent");
    assert_eq!(call.trace_id, Some(caller.trace_id()));
    assert!(call.outcome.is_ok());
    let llm = call.llm.as_deref().expect("an LLM summary");
    println!("{llm:?}");
    assert_eq!(llm.operation.as_deref(), Some("chat"));
    assert_eq!(llm.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(llm.provider.as_deref(), Some("openai"));
    assert_eq!((llm.input_tokens, llm.output_tokens), (Some(12), Some(5)));
    assert_eq!(llm.finish_reason.as_deref(), Some("stop"));
    let tree = TraceTrees::new(closed.clone())
        .with_prices(Prices::new().model("gpt-4o-mini", 0.15, 0.60))
        .to_string();
    print!("{tree}");
    assert!(tree.contains("chat gpt-4o-mini  "), "{tree}");
    assert!(tree.contains("gpt-4o-mini-2024-07-18  12→5 tok"), "{tree}");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_genai_call_drops_its_span_with_the_error() {
    let (url, _) = openai_endpoint((
        400,
        json!({"error": {"message": "bad request", "type": "invalid_request_error"}}),
    ))
    .await;
    let d = Dispatcher::new("genai.bridge.failed").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();
    let subscriber = tracing_subscriber::registry().with(SpanbusLayer::new(d.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let llm = client(url);
    let result = async {
        llm.exec_chat(
            "gpt-4o-mini",
            ChatRequest::new(vec![ChatMessage::user("?")]),
            None,
        )
        .await
    }
    .in_span(d.span("answer"))
    .await;
    assert!(result.is_err());
    d.flush().await;
    let closed = spans.spans();
    let call = closed
        .iter()
        .find(|s| s.name == "chat gpt-4o-mini")
        .expect("the call's span");
    println!("failed call: {:?}", call.outcome);
    assert_eq!(call.outcome.drop_reason(), Some(DropReason::Error));
    assert_eq!(
        call.llm.as_deref().and_then(|l| l.model.as_deref()),
        Some("gpt-4o-mini")
    );
    d.shutdown(Duration::from_secs(5)).await;
}
