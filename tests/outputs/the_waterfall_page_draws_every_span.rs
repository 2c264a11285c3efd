//! The HTML report, opened in headless Chromium: after its script has run, the DOM has one bar
//! per span (carrying the span's id), error / panic / cancelled / shutdown bars marked with
//! their classes, one tick per event, orphans under a placeholder row, and a hostile span name
//! shown as text without running anything.
//!
//! Needs `/usr/bin/chromium` (`.ci/chromium.sh` installs it). Without it the test fails when
//! `CI` is set, and is skipped with a message otherwise.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::chromium::{chromium_available, dump_dom};

use serde_json::json;
use spanbus::events::{
    ChatMessage, ChatResponse, EmbeddingEndEvent, EmbeddingStartEvent, LLMChatInProgressEvent,
};
use spanbus::handlers::HtmlReport;
use spanbus::{Dispatcher, Handler, Record, RecordKind, SpanContext, SpanFutureExt, SpanId};

const EVIL_NAME: &str =
    "</script><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">";

/// Counts span enters and the events that belong to a span.
#[derive(Clone, Default)]
struct Census(Arc<Mutex<(Vec<SpanId>, usize)>>);

impl Handler for Census {
    async fn handle(&mut self, record: &Record) {
        let mut c = self.0.lock().unwrap();
        match record.kind() {
            RecordKind::SpanEnter(e) => c.0.push(e.id),
            _ if record.is_event() && record.span_id().is_some() => c.1 += 1,
            _ => {}
        }
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spanbus-waterfall-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_is_drawn_with_its_outcome() {
    if !chromium_available() {
        return;
    }
    let dir = temp_dir();
    let page = dir.join("trace.html");
    let d = Dispatcher::new("waterfall").unwrap();
    d.add_handler(HtmlReport::create(&page).unwrap()).unwrap();
    let census = Census::default();
    d.add_handler(census.clone()).unwrap();

    // Trace 1: ok, error, cancelled and panicking children, events on two spans.
    let _ = async {
        async {
            d.event(EmbeddingStartEvent::default()).await.unwrap();
            tokio::task::yield_now().await;
            d.event(EmbeddingEndEvent {
                chunks: vec!["hello".into()],
                embeddings: vec![vec![0.1, 0.2]],
                token_count: Some(1),
            })
            .await
            .unwrap();
        }
        .in_span(d.span("embed"))
        .await;
        let _ = async { Err::<(), _>("index unavailable") }
            .in_span_result(d.span("retrieve").args(json!({"top_k": 5})))
            .await;
        let chat = async {
            for i in 0..3 {
                d.event(LLMChatInProgressEvent {
                    messages: vec![],
                    response: ChatResponse::new(ChatMessage::assistant(""))
                        .with_delta(format!("tok{i}")),
                })
                .await
                .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        .in_span(d.span("llm.chat"));
        assert!(
            tokio::time::timeout(Duration::from_millis(5), chat)
                .await
                .is_err()
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            d.span("parse").in_scope(|| panic!("bad json"))
        }));
        assert!(panicked.is_err());
        Ok::<(), String>(())
    }
    .in_span_result(d.span("query").tag("query_id", 1))
    .await;

    // Trace 2: a span with a hostile name, an orphan (its parent was never seen) and a span
    // still open at shutdown.
    d.span(EVIL_NAME).in_scope(|| ());
    let ghost = SpanContext::new(spanbus::TraceId::random(), SpanId::random());
    d.span("orphan").parent(Some(ghost)).in_scope(|| ());
    let open = d.span("still-open").enter();

    let report = d.shutdown(Duration::from_secs(10)).await;
    assert!(report.is_clean(), "{report:?}");
    drop(open);

    let (span_ids, events_in_spans) = census.0.lock().unwrap().clone();
    assert_eq!(span_ids.len(), 8);

    let dom = dump_dom(&page, "", &dir.join("profile"));
    let bars: Vec<&str> = dom.split("data-span-id=\"").skip(1).collect();
    println!(
        "{} spans emitted, {} bars drawn, {} events in spans, DOM {} bytes",
        span_ids.len(),
        bars.len(),
        events_in_spans,
        dom.len()
    );
    assert_eq!(bars.len(), span_ids.len(), "one bar per span");
    let drawn: HashSet<&str> = bars.iter().map(|b| &b[..16]).collect();
    for id in &span_ids {
        assert!(
            drawn.contains(id.to_string().as_str()),
            "span {id} has no bar"
        );
    }
    for class in [
        "class=\"bar ok\"",
        "class=\"bar error\"",
        "class=\"bar cancelled\"",
        "class=\"bar panic\"",
        "class=\"bar shutdown\"",
    ] {
        assert!(
            dom.contains(&format!("<div {class} data-span-id=")),
            "no {class} bar"
        );
    }
    assert_eq!(
        dom.matches("data-event-of=\"").count(),
        events_in_spans,
        "one tick per event"
    );
    assert!(dom.contains(&format!("data-missing-parent=\"{}\"", ghost.span_id())));
    // The hostile name is text: nothing ran, no element was made from it.
    let body = dom.find("<body").unwrap();
    let body_tag = &dom[body..body + dom[body..].find('>').unwrap()];
    assert!(
        !body_tag.contains("data-pwned"),
        "the span name's script ran: {body_tag}"
    );
    assert!(
        !dom.contains("data-pwned=\"1\""),
        "the span name's script ran"
    );
    assert!(!dom.contains("<img"), "the span name became an element");
    assert!(dom.contains("&lt;/script&gt;&lt;img src=x onerror="));

    std::fs::remove_dir_all(&dir).ok();
}
