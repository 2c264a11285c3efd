//! `#[span(ret)]` records the return value on the exit record; the OTLP exporter sends it as
//! the span's OpenInference `output.value` (a string as text, anything else as JSON with its
//! mime type), so Phoenix shows what the call returned, when content is captured. A span
//! without `ret` has no output.

use std::time::Duration;

use serde::Serialize;
use spanbus::Dispatcher;
use spanbus::integrations::otlp::OtlpExporter;

use crate::support::otlp_endpoint::{Answer, Endpoint};

#[derive(Serialize)]
struct Answered {
    text: String,
    sources: usize,
}

#[spanbus::span(dispatcher = bus, skip(bus), name = "answer", ret)]
fn answer(bus: &Dispatcher, q: &str) -> Answered {
    Answered {
        text: format!("{q}: a stretch of work"),
        sources: 2,
    }
}

#[spanbus::span(dispatcher = bus, skip(bus), name = "rewrite", ret)]
async fn rewrite(bus: &Dispatcher, q: String) -> String {
    q.to_uppercase()
}

#[spanbus::span(dispatcher = bus, skip(bus), name = "plain")]
fn plain(bus: &Dispatcher) -> u32 {
    7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_return_value_is_exported_as_output_value() {
    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .capture_content(true)
        .build()
        .unwrap();
    let d = Dispatcher::new("ret.otlp").unwrap();
    d.add_handler(exporter).unwrap();
    answer(&d, "span");
    rewrite(&d, "why".into()).await;
    plain(&d);
    d.flush().await;

    let output = |name: &str| endpoint.string_attributes(name, "output.value");
    let mime = |name: &str| endpoint.string_attributes(name, "output.mime_type");
    println!(
        "answer: {:?} ({:?}); rewrite: {:?} ({:?}); plain: {:?}",
        output("answer"),
        mime("answer"),
        output("rewrite"),
        mime("rewrite"),
        output("plain")
    );
    // Compared as JSON: the key order is serde_json's (sorted, or insertion order when its
    // `preserve_order` feature is on, as a dev-dependency turns it on here).
    let answer: Vec<serde_json::Value> = output("answer")
        .iter()
        .map(|v| serde_json::from_str(v.as_deref().expect("an output.value")).unwrap())
        .collect();
    assert_eq!(
        answer,
        [serde_json::json!({"sources": 2, "text": "span: a stretch of work"})]
    );
    assert_eq!(mime("answer"), [Some("application/json".to_owned())]);
    assert_eq!(output("rewrite"), [Some("WHY".to_owned())]);
    assert_eq!(mime("rewrite"), [Some("text/plain".to_owned())]);
    assert_eq!(output("plain"), [None]);
    d.shutdown(Duration::from_secs(5)).await;
}
