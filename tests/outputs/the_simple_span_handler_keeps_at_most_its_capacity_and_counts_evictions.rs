//! `SimpleSpanHandler` keeps at most its capacity of closed spans, evicts the oldest first and
//! counts every eviction.

use spanbus::Dispatcher;
use spanbus::handlers::{ClosedSpan, DEFAULT_RETENTION, SimpleSpanHandler};

#[tokio::test]
async fn the_oldest_spans_are_evicted_and_counted() {
    let d = Dispatcher::new("retention").unwrap();
    let spans = SimpleSpanHandler::with_capacity(5);
    d.add_span_handler(spans.clone()).unwrap();

    for i in 0..12 {
        d.span(format!("span-{i}")).in_scope(|| ());
    }
    d.flush().await;

    let kept: Vec<String> = spans.spans().iter().map(|s| s.name.to_string()).collect();
    println!("kept {kept:?}, evicted {}", spans.evicted());
    assert_eq!(kept, ["span-7", "span-8", "span-9", "span-10", "span-11"]);
    assert_eq!(spans.len(), 5);
    assert_eq!(spans.evicted(), 7);
    assert_eq!(spans.capacity(), 5);

    // Taking the spans empties the store but keeps the evicted count.
    assert_eq!(spans.take().len(), 5);
    assert!(spans.is_empty());
    assert_eq!(spans.evicted(), 7);
    d.span("after-take").in_scope(|| ());
    d.flush().await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans.evicted(), 7);
}

#[tokio::test]
async fn a_capacity_of_zero_keeps_nothing_and_counts_everything() {
    let d = Dispatcher::new("retention.zero").unwrap();
    let spans = SimpleSpanHandler::with_capacity(0);
    d.add_span_handler(spans.clone()).unwrap();
    for _ in 0..3 {
        d.span("gone").in_scope(|| ());
    }
    d.flush().await;
    assert!(spans.is_empty());
    assert_eq!(spans.evicted(), 3);
}

#[tokio::test]
async fn the_default_capacity_is_bounded_and_small_enough() {
    let spans = SimpleSpanHandler::new();
    assert_eq!(spans.capacity(), DEFAULT_RETENTION);
    assert_eq!(DEFAULT_RETENTION, 100_000);
    // The documented memory bound (about 150 bytes inline per span) must hold.
    let inline = std::mem::size_of::<ClosedSpan>();
    println!("ClosedSpan: {inline} bytes inline");
    assert!(inline <= 160, "ClosedSpan grew to {inline} bytes");
}

#[tokio::test]
async fn dropped_spans_are_kept_with_their_reason_within_the_cap() {
    let d = Dispatcher::new("retention.drops").unwrap();
    let spans = SimpleSpanHandler::with_capacity(2);
    d.add_span_handler(spans.clone()).unwrap();
    let _ = d.span("fails").in_scope_result(|| Err::<(), _>("boom"));
    d.span("ok-1").in_scope(|| ());
    d.span("ok-2").in_scope(|| ());
    d.flush().await;
    assert_eq!(spans.evicted(), 1);
    assert!(spans.spans().iter().all(|s| s.outcome.is_ok()));

    let _ = d
        .span("fails-again")
        .in_scope_result(|| Err::<(), _>("boom again"));
    d.flush().await;
    let last = spans.spans().pop().unwrap();
    assert_eq!(last.name, "fails-again");
    assert_eq!(
        last.outcome,
        spanbus::handlers::SpanOutcome::Dropped {
            reason: spanbus::DropReason::Error,
            message: "boom again".into()
        }
    );
    assert_eq!(spans.evicted(), 2);
}
