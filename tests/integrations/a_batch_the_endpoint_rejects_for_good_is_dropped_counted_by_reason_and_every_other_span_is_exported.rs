//! The endpoint rejects a batch for good: `413 Content Too Large` for a body over its limit
//! (a span with a 2 MB argument), `400 Bad Request` for a span it cannot take. The exporter
//! splits the oversize batch until the span too large goes alone, drops what is rejected,
//! counts it by reason, and exports every other span, instead of retrying the batch forever.

use std::time::{Duration, Instant};

use serde_json::json;
use spanbus::Dispatcher;
use spanbus::integrations::otlp::{OtlpExporter, OtlpHandle, OtlpStats};

use crate::support::otlp_endpoint::{Answer, Endpoint};

/// The largest body the endpoint takes.
const LIMIT: usize = 1024 * 1024;

fn healthy(d: &Dispatcher, from: usize, n: usize) {
    for i in from..from + n {
        d.span(format!("healthy-{i}")).in_scope(|| ());
    }
}

/// An exporter to `endpoint` that gives up a flush only long after these tests should be done.
fn exporter(endpoint: &Endpoint) -> (OtlpExporter, OtlpHandle) {
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .flush_timeout(Duration::from_secs(20))
        // The poison span's 2 MB argument goes out whole.
        .capture_content(true)
        .max_attribute_bytes(usize::MAX)
        .build()
        .unwrap();
    let handle = exporter.handle();
    (exporter, handle)
}

fn healthy_names() -> std::collections::BTreeSet<String> {
    (0..999).map(|i| format!("healthy-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_batch_is_split_until_the_span_too_large_goes_alone_and_is_dropped() {
    let endpoint = Endpoint::start(|_, r| {
        if r.len > LIMIT {
            Answer::status(413)
        } else {
            Answer::ok()
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("oversize").unwrap();
    d.add_handler(exporter).unwrap();

    let started = Instant::now();
    healthy(&d, 0, 500);
    d.span("poison-413")
        .args(json!({ "document": "x".repeat(2 * 1024 * 1024) }))
        .in_scope(|| ());
    healthy(&d, 500, 499);
    d.flush().await;
    let took = started.elapsed();

    let s = handle.stats();
    let requests = endpoint.requests();
    let sizes: Vec<(usize, Option<u16>)> =
        requests.iter().map(|r| (r.names.len(), r.status)).collect();
    println!(
        "1,000 spans, one with a 2 MB argument: flushed in {took:?}; {s:?}; \
         {} requests (spans, status): {sizes:?}",
        requests.len()
    );
    assert_eq!(
        endpoint.accepted_names(),
        healthy_names(),
        "every healthy span was exported"
    );
    assert_eq!(s.exported, 999, "{s:?}");
    assert_eq!(s.rejected, 1, "{s:?}");
    assert_eq!(s.rejections.too_large, 1, "{s:?}");
    assert_eq!(s.rejections.bad_request + s.rejections.client_error, 0);
    assert_eq!((s.pending, s.dropped, s.abandoned), (0, 0, 0), "{s:?}");
    assert!(
        requests
            .iter()
            .filter(|r| r.names.iter().any(|n| n == "poison-413"))
            .all(|r| r.status == Some(413)),
        "the poison span was never accepted"
    );
    assert!(
        requests.iter().any(|r| r.names == ["poison-413"]),
        "the poison span was tried alone before it was dropped"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_stats_add_up(&s, 1000);

    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_400_is_dropped_without_a_retry_and_export_goes_on() {
    let endpoint = Endpoint::start(|_, r| {
        if r.names.iter().any(|n| n.starts_with("poison")) {
            Answer::status(400)
        } else {
            Answer::ok()
        }
    })
    .await;
    let (exporter, handle) = exporter(&endpoint);
    let d = Dispatcher::new("bad_request").unwrap();
    d.add_handler(exporter).unwrap();

    let started = Instant::now();
    healthy(&d, 0, 500);
    d.flush().await;
    // The poison span in a batch of its own, so that only it is rejected with its batch.
    d.span("poison-400").in_scope(|| ());
    d.flush().await;
    healthy(&d, 500, 499);
    d.flush().await;
    let took = started.elapsed();

    let s = handle.stats();
    let poisoned = endpoint
        .requests()
        .iter()
        .filter(|r| r.names.iter().any(|n| n == "poison-400"))
        .count();
    println!(
        "500 spans, a span the endpoint answers 400, 499 spans: flushed in {took:?}; {s:?}; \
         {} requests, {poisoned} with the poison span",
        endpoint.request_count()
    );
    assert_eq!(poisoned, 1, "a batch answered 400 is not retried");
    assert_eq!(endpoint.accepted_names(), healthy_names());
    assert_eq!(s.exported, 999, "{s:?}");
    assert_eq!(s.rejected, 1, "{s:?}");
    assert_eq!(s.rejections.bad_request, 1, "{s:?}");
    assert_eq!(s.rejections.too_large + s.rejections.client_error, 0);
    assert_eq!((s.pending, s.dropped, s.abandoned), (0, 0, 0), "{s:?}");
    assert!(
        handle.last_error().is_some_and(|e| e.contains("400")),
        "{:?}",
        handle.last_error()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_stats_add_up(&s, 1000);

    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}

fn assert_stats_add_up(s: &OtlpStats, closed: u64) {
    assert_eq!(
        s.exported + s.dropped + s.rejected + s.abandoned + s.pending,
        closed,
        "every span counted once: {s:?}"
    );
}
