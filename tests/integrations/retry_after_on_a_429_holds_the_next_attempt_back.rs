//! The endpoint answers the first request `429 Too Many Requests` with `Retry-After: 1`: the
//! exporter sends its next request no earlier than a second later (its own backoff would have
//! retried after 20 ms), and then exports everything.

use std::time::Duration;

use spanbus::Dispatcher;
use spanbus::integrations::otlp::OtlpExporter;

use crate::support::otlp_endpoint::{Answer, Endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_request_waits_for_the_retry_after_of_a_429() {
    let endpoint = Endpoint::start(|i, _| {
        if i == 0 {
            Answer::Status(429, vec![("retry-after", "1".to_owned())])
        } else {
            Answer::ok()
        }
    })
    .await;
    let exporter = OtlpExporter::builder()
        .endpoint(endpoint.url())
        .scheduled_delay(Duration::from_millis(5))
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .flush_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let handle = exporter.handle();
    let d = Dispatcher::new("throttled").unwrap();
    d.add_handler(exporter).unwrap();

    for i in 0..10 {
        d.span(format!("work-{i}")).in_scope(|| ());
    }
    d.flush().await;

    let requests = endpoint.requests();
    let s = handle.stats();
    assert!(requests.len() >= 2, "{requests:?}");
    let gap = requests[1].at - requests[0].at;
    println!(
        "429 with Retry-After: 1, then the next request {gap:?} later; {} requests; {s:?}",
        requests.len()
    );
    assert_eq!(requests[0].status, Some(429));
    assert!(
        gap >= Duration::from_millis(900),
        "the next request came {gap:?} after the 429"
    );
    assert_eq!(s.exported, 10, "{s:?}");
    assert_eq!(
        (s.failed_batches, s.retries, s.rejected),
        (1, 1, 0),
        "{s:?}"
    );
    assert_eq!(endpoint.accepted_names().len(), 10);

    let report = d.shutdown(Duration::from_secs(5)).await;
    assert!(report.is_clean(), "{report:?}");
}
