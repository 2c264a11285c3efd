//! The endpoint accepts connections and reads each request but never answers. Shutdown with
//! a deadline shorter than the exporter's own timeouts returns by that deadline with the
//! exporter closed (not timed out), every span it could not send counted as abandoned, and
//! no request after it returned. With a long deadline, the exporter's flush and close share
//! one deadline (`close_timeout`) instead of taking their two timeouts one after the other.

use std::time::{Duration, Instant};

use spanbus::Registry;
use spanbus::integrations::otlp::OtlpExporter;

use crate::support::otlp_endpoint::{Answer, Endpoint};

const SPANS: u64 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_returns_by_its_deadline_with_every_unsent_span_abandoned_and_no_request_after() {
    let endpoint = Endpoint::start(|_, _| Answer::Never).await;
    // The defaults: 5 s flush and close timeouts, 10 s per request; all beyond the deadline.
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let registry = Registry::new();
    let d = registry.get_dispatcher("hanging_endpoint").unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..SPANS {
        d.span(format!("work-{i}")).in_scope(|| ());
    }
    assert!(
        endpoint
            .wait_for(Duration::from_secs(5), |e| e.request_count() >= 1)
            .await,
        "the first request arrived"
    );

    let deadline = Duration::from_secs(3);
    let started = Instant::now();
    let report = registry.shutdown(deadline).await;
    let took = started.elapsed();
    let at_return = endpoint.request_count();
    let s = handle.stats();

    // Once the exporter's HTTP client is gone, its connections close: then no request can
    // follow any more, so the count can be compared.
    let all_closed = endpoint
        .wait_for(Duration::from_secs(5), |e| {
            let (opened, closed) = e.connections();
            opened == closed
        })
        .await;
    let after = endpoint.request_count() - at_return;
    println!(
        "shutdown({deadline:?}) with the endpoint hanging returned after {took:?}: {s:?}; \
         {at_return} requests before it returned, {after} after; connections {:?}, all closed: \
         {all_closed}",
        endpoint.connections()
    );
    assert!(
        took <= deadline + Duration::from_millis(300),
        "shutdown took {took:?}"
    );
    assert_eq!(report.handlers.len(), 1, "{report:?}");
    assert!(
        report.timed_out().next().is_none(),
        "the exporter closed by the deadline: {report:?}"
    );
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(s.pending, 0, "{s:?}");
    assert_eq!((s.exported, s.dropped, s.rejected), (0, 0, 0), "{s:?}");
    assert_eq!(s.abandoned, SPANS, "what was queued is abandoned: {s:?}");
    assert!(all_closed, "the exporter's connections were closed");
    assert_eq!(after, 0, "no request after shutdown returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_close_at_shutdown_share_one_close_timeout() {
    let endpoint = Endpoint::start(|_, _| Answer::Never).await;
    let flush_timeout = Duration::from_millis(1000);
    let close_timeout = Duration::from_millis(1500);
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .flush_timeout(flush_timeout)
        .close_timeout(close_timeout)
        .build()
        .unwrap();
    let handle = exporter.handle();
    let registry = Registry::new();
    let d = registry
        .get_dispatcher("hanging_endpoint_long_deadline")
        .unwrap();
    d.add_handler(exporter).unwrap();
    for i in 0..SPANS {
        d.span(format!("work-{i}")).in_scope(|| ());
    }

    let started = Instant::now();
    let report = registry.shutdown(Duration::from_secs(10)).await;
    let took = started.elapsed();
    let s = handle.stats();
    println!(
        "shutdown(10s), flush_timeout {flush_timeout:?}, close_timeout {close_timeout:?}, \
         endpoint hanging: returned after {took:?}: {s:?}"
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(
        took >= flush_timeout,
        "the final flush waited for the export: {took:?}"
    );
    assert!(
        took <= close_timeout + Duration::from_millis(300),
        "flush and close together took {took:?}"
    );
    assert_eq!((s.pending, s.abandoned), (0, SPANS), "{s:?}");
}
