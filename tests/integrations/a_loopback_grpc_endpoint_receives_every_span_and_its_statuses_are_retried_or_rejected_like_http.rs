//! OTLP/gRPC (feature `otlp-grpc`) against a loopback tonic `TraceService` server: every span
//! arrives once, with the builder's headers as metadata; and the server's statuses get the
//! verdicts their HTTP counterparts get: `UNAVAILABLE` is retried (as a 503),
//! `INVALID_ARGUMENT` drops the batch as a bad request (as a 400), `RESOURCE_EXHAUSTED` with
//! `RetryInfo` holds the next attempt back (as a 429 with `Retry-After`), and
//! `RESOURCE_EXHAUSTED` for a message over the server's limit splits the batch (as a 413).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use spanbus::Dispatcher;
use spanbus::integrations::otlp::{OtlpExporter, OtlpHandle, Protocol};
use tonic::Code;

use crate::support::grpc_endpoint::{GrpcAnswer, GrpcEndpoint, GrpcReceived};

fn exporter(endpoint: &GrpcEndpoint) -> (OtlpExporter, OtlpHandle) {
    let exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(endpoint.url())
        .environment(Vec::<(String, String)>::new())
        .header("x-team", "llm-platform")
        .batch_size(100)
        .scheduled_delay(Duration::from_millis(5))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .flush_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let handle = exporter.handle();
    (exporter, handle)
}

fn spans(d: &Dispatcher, prefix: &str, range: std::ops::Range<usize>) {
    for i in range {
        d.span(format!("{prefix}-{i}")).in_scope(|| ());
    }
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn accepted_names(endpoint: &GrpcEndpoint) -> BTreeSet<String> {
    endpoint
        .accepted_spans()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn codes(endpoint: &GrpcEndpoint) -> Vec<(usize, Code)> {
    endpoint
        .requests()
        .iter()
        .map(|r| (r.names.len(), r.code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_arrives_once_with_the_builders_headers_as_metadata() {
    let endpoint = GrpcEndpoint::start(|_, _| GrpcAnswer::Ok).await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("grpc").unwrap();
    d.add_handler(exporter).unwrap();
    let started = Instant::now();
    spans(&d, "call", 0..1000);
    d.flush().await;
    let took = started.elapsed();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");

    let s = handle.stats();
    let requests = endpoint.requests();
    println!(
        "OTLP/gRPC: 1,000 spans in {} requests, flushed in {took:?}; metadata x-team = {:?}; {s:?}",
        requests.len(),
        requests[0].metadata("x-team")
    );
    assert_eq!(accepted_names(&endpoint), names("call", 0..1000));
    assert_eq!(endpoint.accepted_spans().len(), 1000, "each span once");
    assert!(
        requests
            .iter()
            .all(|r| r.metadata("x-team") == Some("llm-platform"))
    );
    assert!(requests.iter().all(|r| r.names.len() <= 100), "batch size");
    assert_eq!(s.exported, 1000, "{s:?}");
    assert_eq!(
        (s.failed_batches, s.rejected, s.abandoned),
        (0, 0, 0),
        "{s:?}"
    );
    let span = &endpoint.accepted_spans()[0];
    assert_eq!(span.trace_id.len(), 16);
    assert!(
        span.attributes
            .iter()
            .any(|kv| kv.key == "spanbus.dispatcher"),
        "{span:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_is_retried_until_the_server_takes_the_batch() {
    let endpoint = GrpcEndpoint::start(|i, _| {
        if i < 3 {
            GrpcAnswer::Status(Code::Unavailable, "warming up", None)
        } else {
            GrpcAnswer::Ok
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("grpc-unavailable").unwrap();
    d.add_handler(exporter).unwrap();
    spans(&d, "retried", 0..50);
    d.flush().await;

    let s = handle.stats();
    println!(
        "UNAVAILABLE three times, then OK: (spans, code) per request {:?}; {s:?}; last error {:?}",
        codes(&endpoint),
        handle.last_error()
    );
    assert_eq!(accepted_names(&endpoint), names("retried", 0..50));
    assert_eq!(s.exported, 50, "{s:?}");
    assert_eq!(
        (s.failed_batches, s.retries, s.rejected),
        (3, 3, 0),
        "{s:?}"
    );
    assert!(
        handle
            .last_error()
            .is_some_and(|e| e.contains("UNAVAILABLE"))
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_argument_drops_the_batch_as_a_bad_request_and_export_goes_on() {
    let endpoint = GrpcEndpoint::start(|_, r: &GrpcReceived| {
        if r.names.iter().any(|n| n == "poison") {
            GrpcAnswer::Status(Code::InvalidArgument, "span name not allowed", None)
        } else {
            GrpcAnswer::Ok
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("grpc-invalid").unwrap();
    d.add_handler(exporter).unwrap();
    spans(&d, "healthy", 0..100);
    d.flush().await;
    d.span("poison").in_scope(|| ());
    d.flush().await;
    spans(&d, "healthy", 100..200);
    d.flush().await;

    let s = handle.stats();
    println!(
        "INVALID_ARGUMENT for the batch with the poison span: (spans, code) per request {:?}; \
         {s:?}; last error {:?}",
        codes(&endpoint),
        handle.last_error()
    );
    assert_eq!(accepted_names(&endpoint), names("healthy", 0..200));
    assert_eq!(s.exported, 200, "{s:?}");
    assert_eq!(s.rejected, 1, "{s:?}");
    assert_eq!(s.rejections.bad_request, 1, "{s:?}");
    let poison_requests = endpoint
        .requests()
        .iter()
        .filter(|r| r.names.iter().any(|n| n == "poison"))
        .count();
    assert_eq!(poison_requests, 1, "a rejected batch is not retried");
    assert!(
        handle
            .last_error()
            .is_some_and(|e| e.contains("INVALID_ARGUMENT") && e.contains("span name not allowed"))
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_with_retry_info_holds_the_next_attempt_back() {
    let endpoint = GrpcEndpoint::start(|i, _| {
        if i == 0 {
            GrpcAnswer::Status(
                Code::ResourceExhausted,
                "rate limited",
                Some(Duration::from_secs(1)),
            )
        } else {
            GrpcAnswer::Ok
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("grpc-throttled").unwrap();
    d.add_handler(exporter).unwrap();
    spans(&d, "throttled", 0..10);
    d.flush().await;

    let requests = endpoint.requests();
    let s = handle.stats();
    assert!(requests.len() >= 2, "{requests:?}");
    let gap = requests[1].at - requests[0].at;
    println!(
        "RESOURCE_EXHAUSTED with RetryInfo 1 s, then the next request {gap:?} later \
         (backoff alone: 20 ms); {s:?}"
    );
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
    assert_eq!(accepted_names(&endpoint), names("throttled", 0..10));
    assert_eq!(
        (s.exported, s.failed_batches, s.rejected),
        (10, 1, 0),
        "{s:?}"
    );
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_servers_limit_is_split_until_the_large_span_goes_alone() {
    // The server takes batches without the large span, and the large span on its own only
    // when it comes with nothing else: as a server whose size limit only a batch exceeds.
    let endpoint = GrpcEndpoint::start(|_, r: &GrpcReceived| {
        if r.names.iter().any(|n| n == "large") && r.names.len() > 1 {
            GrpcAnswer::Status(
                Code::ResourceExhausted,
                "grpc: received message larger than max (4300000 vs. 4194304)",
                None,
            )
        } else {
            GrpcAnswer::Ok
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("grpc-too-large").unwrap();
    d.add_handler(exporter).unwrap();
    spans(&d, "small", 0..40);
    d.span("large")
        .args(json!({ "document": "x".repeat(64 * 1024) }))
        .in_scope(|| ());
    spans(&d, "small", 40..80);
    d.flush().await;

    let s = handle.stats();
    println!(
        "RESOURCE_EXHAUSTED (larger than max) for any batch with the large span: \
         (spans, code) per request {:?}; {s:?}",
        codes(&endpoint)
    );
    let mut expected = names("small", 0..80);
    expected.insert("large".to_owned());
    assert_eq!(
        accepted_names(&endpoint),
        expected,
        "split down to what the server takes"
    );
    assert_eq!(s.exported, 81, "{s:?}");
    assert_eq!(s.rejected, 0, "{s:?}");
    let refused = endpoint.requests().iter().filter(|r| !r.accepted()).count() as u64;
    assert_eq!(s.failed_batches, refused, "each refusal counted: {s:?}");
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}
