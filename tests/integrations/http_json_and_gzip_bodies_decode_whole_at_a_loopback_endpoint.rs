//! The body encodings: OTLP/HTTP with JSON (feature `otlp-json`) and gzip-compressed requests
//! (feature `otlp-gzip`, over HTTP and, with `otlp-grpc`, over gRPC). A loopback endpoint
//! decodes each request as its headers say, and finds every span with its attributes.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use spanbus::Dispatcher;
use spanbus::integrations::otlp::{OtlpExporterBuilder, OtlpHandle};

const SPANS: usize = 50;

fn names() -> BTreeSet<String> {
    (0..SPANS).map(|i| format!("question-{i}")).collect()
}

/// The string attribute `key` of `span`.
fn string_attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

/// Builds the exporter, closes `SPANS` spans with two tags (one a long, repetitive text, so
/// compression shows), flushes and shuts down.
async fn run(name: &str, builder: OtlpExporterBuilder) -> OtlpHandle {
    let exporter = builder
        .environment(Vec::<(String, String)>::new())
        .scheduled_delay(Duration::from_millis(5))
        .flush_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new(name).unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..SPANS {
        d.span(format!("question-{i}"))
            .tag("session.id", "sess-7")
            .tag("note", format!("span {i}: {}", "tell me more. ".repeat(40)))
            .in_scope(|| ());
    }
    d.flush().await;
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    handle
}

fn check_spans(spans: &[Span]) {
    let got: BTreeSet<String> = spans.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, names());
    assert_eq!(spans.len(), SPANS, "each span once");
    for s in spans {
        assert_eq!(string_attribute(s, "session.id").as_deref(), Some("sess-7"));
        let i = s.name.strip_prefix("question-").unwrap();
        let note = string_attribute(s, "note").unwrap();
        assert!(
            note.starts_with(&format!("span {i}: tell me more.")),
            "{note}"
        );
        assert_eq!(s.trace_id.len(), 16, "{}: trace id bytes", s.name);
        assert_eq!(s.span_id.len(), 8, "{}: span id bytes", s.name);
    }
}

#[cfg(feature = "otlp-json")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_json_body_decodes_with_every_span_and_its_attributes() {
    use crate::support::otlp_endpoint::{Answer, Endpoint};
    use spanbus::integrations::otlp::{OtlpExporter, Protocol};

    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let handle = run(
        "json",
        OtlpExporter::builder()
            .protocol(Protocol::HttpJson)
            .endpoint(endpoint.url()),
    )
    .await;
    let requests = endpoint.requests();
    let s = handle.stats();
    println!(
        "OTLP/HTTP JSON: {} requests, {} bytes, content-type {:?}; {} spans decoded; {s:?}",
        requests.len(),
        requests.iter().map(|r| r.len).sum::<usize>(),
        requests[0].header("content-type"),
        endpoint.accepted_spans().len()
    );
    for r in &requests {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.decoded, "the body is OTLP JSON");
        assert_eq!(r.header("content-encoding"), None);
    }
    check_spans(&endpoint.accepted_spans());
    assert_eq!(s.exported, SPANS as u64, "{s:?}");
}

#[cfg(feature = "otlp-gzip")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_protobuf_body_is_smaller_and_decodes_with_every_span() {
    use crate::support::otlp_endpoint::{Answer, Endpoint};
    use spanbus::integrations::otlp::{Compression, OtlpExporter};

    let plain = Endpoint::start(|_, _| Answer::ok()).await;
    run("plain", OtlpExporter::builder().endpoint(plain.url())).await;
    let zipped = Endpoint::start(|_, _| Answer::ok()).await;
    let handle = run(
        "gzip",
        OtlpExporter::builder()
            .endpoint(zipped.url())
            .compression(Compression::Gzip),
    )
    .await;
    let bytes = |e: &Endpoint| e.requests().iter().map(|r| r.len).sum::<usize>();
    let s = handle.stats();
    println!(
        "the same {SPANS} spans: {} bytes plain, {} bytes gzip; {s:?}",
        bytes(&plain),
        bytes(&zipped)
    );
    for r in zipped.requests() {
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
        assert!(r.decoded);
    }
    for r in plain.requests() {
        assert_eq!(r.header("content-encoding"), None);
    }
    assert!(
        bytes(&zipped) * 4 < bytes(&plain),
        "gzip shrinks repeated text"
    );
    check_spans(&zipped.accepted_spans());
    assert_eq!(s.exported, SPANS as u64, "{s:?}");
}

#[cfg(all(feature = "otlp-gzip", feature = "otlp-json"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_json_body_decodes_with_every_span() {
    use crate::support::otlp_endpoint::{Answer, Endpoint};
    use spanbus::integrations::otlp::{Compression, OtlpExporter, Protocol};

    let endpoint = Endpoint::start(|_, _| Answer::ok()).await;
    let handle = run(
        "gzip-json",
        OtlpExporter::builder()
            .endpoint(endpoint.url())
            .protocol(Protocol::HttpJson)
            .compression(Compression::Gzip),
    )
    .await;
    let requests = endpoint.requests();
    println!(
        "OTLP/HTTP JSON, gzip: {} requests, {} bytes; {:?}",
        requests.len(),
        requests.iter().map(|r| r.len).sum::<usize>(),
        handle.stats()
    );
    for r in &requests {
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.decoded);
    }
    check_spans(&endpoint.accepted_spans());
}

#[cfg(all(feature = "otlp-gzip", feature = "otlp-grpc"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_grpc_request_decodes_with_every_span() {
    use crate::support::grpc_endpoint::{GrpcAnswer, GrpcEndpoint};
    use spanbus::integrations::otlp::{Compression, OtlpExporter, Protocol};

    let endpoint = GrpcEndpoint::start(|_, _| GrpcAnswer::Ok).await;
    let handle = run(
        "gzip-grpc",
        OtlpExporter::builder()
            .protocol(Protocol::Grpc)
            .endpoint(endpoint.url())
            .compression(Compression::Gzip),
    )
    .await;
    let requests = endpoint.requests();
    println!(
        "OTLP/gRPC, gzip: {} requests, grpc-encoding {:?}; {:?}",
        requests.len(),
        requests[0].metadata("grpc-encoding"),
        handle.stats()
    );
    for r in &requests {
        assert_eq!(r.metadata("grpc-encoding"), Some("gzip"));
    }
    check_spans(&endpoint.accepted_spans());
}
