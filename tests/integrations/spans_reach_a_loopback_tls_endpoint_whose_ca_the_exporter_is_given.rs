//! TLS (feature `otlp-tls`): a loopback endpoint serves a certificate signed by a CA made in
//! the test. Given that CA (`tls_ca_pem`), the exporter sends every span to it over
//! `https://`, with OTLP/HTTP and (feature `otlp-grpc`) OTLP/gRPC. Given another CA instead,
//! the handshake fails on the certificate, nothing reaches the endpoint, the spans are retried
//! until the close and counted abandoned, and the error says why.

use std::collections::BTreeSet;
use std::time::Duration;

use spanbus::Dispatcher;
use spanbus::integrations::otlp::{OtlpExporter, OtlpHandle};

use crate::support::otlp_endpoint::{Answer, Endpoint};
use crate::support::test_pki::TestPki;

const SPANS: usize = 300;

fn names() -> BTreeSet<String> {
    (0..SPANS).map(|i| format!("secure-{i}")).collect()
}

/// Closes `SPANS` spans on a dispatcher with `exporter`, flushes, and shuts the dispatcher
/// down.
async fn run(name: &str, exporter: OtlpExporter) -> OtlpHandle {
    let handle = exporter.handle();
    let d = Dispatcher::new(name).unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..SPANS {
        d.span(format!("secure-{i}")).in_scope(|| ());
    }
    d.flush().await;
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_reaches_an_https_endpoint_signed_by_the_ca_given_to_the_builder() {
    let pki = TestPki::new();
    let endpoint =
        Endpoint::start_tls(pki.server_config(&[b"http/1.1"]), |_, _| Answer::ok()).await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .tls_ca_pem(pki.ca_pem.as_bytes())
        .environment(Vec::<(String, String)>::new())
        .batch_size(64)
        .scheduled_delay(Duration::from_millis(5))
        .flush_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let handle = run("tls-http", exporter).await;

    let s = handle.stats();
    let requests = endpoint.requests();
    let (opened, closed) = endpoint.connections();
    println!(
        "OTLP/HTTP over TLS to {}: {} spans in {} requests over {opened} connection(s) \
         ({closed} closed); {s:?}",
        handle.endpoint(),
        endpoint.accepted_spans().len(),
        requests.len(),
    );
    assert!(handle.endpoint().starts_with("https://"));
    assert_eq!(endpoint.accepted_names(), names());
    assert_eq!(endpoint.accepted_spans().len(), SPANS, "each span once");
    assert_eq!(s.exported, SPANS as u64, "{s:?}");
    assert_eq!(
        (s.failed_batches, s.rejected, s.abandoned),
        (0, 0, 0),
        "{s:?}"
    );
    assert!(requests.iter().all(|r| r.decoded && r.path == "/v1/traces"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_another_ca_the_certificate_is_refused_and_no_request_gets_through() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let endpoint =
        Endpoint::start_tls(pki.server_config(&[b"http/1.1"]), |_, _| Answer::ok()).await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        // A CA that did not sign the server's certificate (nor did any of the system's).
        .tls_ca_pem(other.ca_pem.as_bytes())
        .environment(Vec::<(String, String)>::new())
        .scheduled_delay(Duration::from_millis(5))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(50))
        // The flush gives up after this, the close a little later: time for several failed
        // handshakes, not for an export.
        .flush_timeout(Duration::from_millis(500))
        .close_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new("tls-untrusted").unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..10 {
        d.span(format!("secure-{i}")).in_scope(|| ());
    }
    d.flush().await;
    let before_close = handle.stats();
    let error = handle.last_error().unwrap_or_default();
    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");

    let s = handle.stats();
    let (opened, _) = endpoint.connections();
    println!(
        "untrusted certificate: {opened} handshakes refused, {} requests received; \
         before close {before_close:?}; after {s:?}; last error: {error}",
        endpoint.request_count()
    );
    assert_eq!(endpoint.request_count(), 0, "no request got through");
    assert!(opened >= 1, "the exporter tried to connect");
    assert!(before_close.failed_batches >= 1, "{before_close:?}");
    assert_eq!(s.exported, 0, "{s:?}");
    assert_eq!(
        s.abandoned, 10,
        "retried until the close, then abandoned: {s:?}"
    );
    assert!(
        error.to_ascii_lowercase().contains("certificate"),
        "the error names the certificate problem: {error}"
    );
}

#[cfg(feature = "otlp-grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_reaches_a_grpc_endpoint_over_tls() {
    use crate::support::grpc_endpoint::{GrpcAnswer, GrpcEndpoint};
    use spanbus::integrations::otlp::Protocol;

    let pki = TestPki::new();
    let endpoint = GrpcEndpoint::start_tls(&pki.server_cert_pem, &pki.server_key_pem, |_, _| {
        GrpcAnswer::Ok
    })
    .await;
    let exporter = OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(endpoint.url())
        .tls_ca_pem(pki.ca_pem.as_bytes())
        .environment(Vec::<(String, String)>::new())
        .batch_size(64)
        .scheduled_delay(Duration::from_millis(5))
        .flush_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let handle = run("tls-grpc", exporter).await;

    let s = handle.stats();
    let spans = endpoint.accepted_spans();
    println!(
        "OTLP/gRPC over TLS to {}: {} spans in {} requests; {s:?}",
        handle.endpoint(),
        spans.len(),
        endpoint.requests().len()
    );
    let got: BTreeSet<String> = spans.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, names());
    assert_eq!(spans.len(), SPANS, "each span once");
    assert_eq!(s.exported, SPANS as u64, "{s:?}");
    assert_eq!(
        (s.failed_batches, s.rejected, s.abandoned),
        (0, 0, 0),
        "{s:?}"
    );
}
