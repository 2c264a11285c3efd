//! An instrumented stream's span is open from the first poll until the stream ends (exit), is
//! dropped as cancelled when the stream is dropped early and as a panic when `poll_next`
//! panics; events emitted while producing items belong to the stream's span.

use crate::support::spans::{Outcome, recorded};
use futures::{StreamExt, stream};
use serde::Serialize;
use spanbus::{DropReason, Event, SpanStreamExt, current_span};

#[derive(Serialize)]
struct Chunk {
    text: String,
}

impl Event for Chunk {
    const NAME: &'static str = "Chunk";
}

/// A stream of chunks that emits an event for each one it produces.
fn chunks(d: spanbus::Dispatcher, n: usize) -> impl futures::Stream<Item = String> {
    stream::iter(0..n).then(move |i| {
        let d = d.clone();
        async move {
            tokio::task::yield_now().await;
            let text = format!("chunk-{i}");
            d.event(Chunk { text: text.clone() }).await.unwrap();
            text
        }
    })
}

#[tokio::test]
async fn a_stream_exits_its_span_when_it_ends_and_items_belong_to_it() {
    let (d, spans, events) = recorded("streams.full");
    let mut s = std::pin::pin!(chunks(d.clone(), 3).in_span(d.span("stream_chat")));
    let mut items = Vec::new();
    while let Some(item) = s.next().await {
        // Between items, the consumer is not inside the stream's span.
        assert_eq!(current_span(), None);
        items.push(item);
    }
    assert_eq!(items, ["chunk-0", "chunk-1", "chunk-2"]);
    // Ended streams stay ended.
    assert_eq!(s.next().await, None);
    d.flush().await;

    let span = spans.one("stream_chat");
    assert_eq!(span.outcome, Outcome::Exited);
    let seen = events.all();
    let chunk_events: Vec<_> = seen.iter().filter(|e| e.name == "Chunk").collect();
    assert_eq!(chunk_events.len(), 3);
    assert!(chunk_events.iter().all(|e| e.span == Some(span.id)));
}

#[tokio::test]
async fn a_stream_dropped_early_drops_its_span_as_cancelled() {
    let (d, spans, events) = recorded("streams.early");
    let first: Vec<String> = chunks(d.clone(), 10)
        .in_span(d.span("partial"))
        .take(2)
        .collect()
        .await;
    assert_eq!(first.len(), 2);
    d.flush().await;

    let span = spans.one("partial");
    assert_eq!(
        span.outcome,
        Outcome::Dropped(DropReason::Cancelled, String::new())
    );
    let chunk_events: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.name == "Chunk")
        .collect();
    assert_eq!(chunk_events.len(), 2);
    assert!(chunk_events.iter().all(|e| e.span == Some(span.id)));
}

#[tokio::test]
async fn a_stream_never_polled_emits_nothing_and_spans_inside_it_are_children() {
    let (d, spans, _) = recorded("streams.nested");
    let never = stream::iter([1]).in_span(d.span("never_polled"));
    drop(never);

    let dd = d.clone();
    let total: u32 = stream::iter([1u32, 2])
        .map(move |n| dd.span("per_item").in_scope(|| n * 10))
        .in_span(d.span("outer_stream"))
        .fold(0, |acc, n| async move { acc + n })
        .await;
    assert_eq!(total, 30);
    d.flush().await;

    assert!(spans.all().iter().all(|s| s.name != "never_polled"));
    let outer = spans.one("outer_stream");
    let items: Vec<_> = spans
        .all()
        .into_iter()
        .filter(|s| s.name == "per_item")
        .collect();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|s| s.parent == Some(outer.id)));
}

#[tokio::test]
async fn a_panic_in_poll_next_drops_the_span_and_keeps_unwinding() {
    let (d, spans, _) = recorded("streams.panic");
    let s = stream::iter([1, 2, 3])
        .map(|n| {
            if n == 2 {
                panic!("bad item {n}");
            }
            n
        })
        .in_span(d.span("panicky"));
    let joined = tokio::spawn(s.collect::<Vec<_>>()).await.unwrap_err();
    assert_eq!(
        joined.into_panic().downcast_ref::<String>().unwrap(),
        "bad item 2"
    );
    d.flush().await;
    assert_eq!(
        spans.one("panicky").outcome,
        Outcome::Dropped(DropReason::Panic, "bad item 2".into())
    );
}

/// With the attribute, a fn returning `impl Stream` spans the stream's whole life.
#[spanbus::span(dispatcher = "streams.attr", skip(d))]
fn numbered(d: &spanbus::Dispatcher, n: usize) -> impl futures::Stream<Item = String> + use<> {
    chunks(d.clone(), n)
}

#[tokio::test]
async fn the_attribute_on_a_fn_returning_a_stream_spans_the_whole_stream() {
    let (d, spans, events) = recorded("streams.attr");
    let s = numbered(&d, 2);
    d.flush().await;
    // Created but not polled: no span yet.
    assert!(spans.all().is_empty());

    let items: Vec<String> = s.collect().await;
    assert_eq!(items, ["chunk-0", "chunk-1"]);
    let dropped_early: Vec<String> = numbered(&d, 5).take(1).collect().await;
    assert_eq!(dropped_early.len(), 1);
    d.flush().await;

    let all = spans.all();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|s| s.name.ends_with("::numbered")));
    assert_eq!(all[0].outcome, Outcome::Exited);
    assert_eq!(all[0].args, Some(serde_json::json!({ "n": 2 })));
    assert_eq!(
        all[1].outcome,
        Outcome::Dropped(DropReason::Cancelled, String::new())
    );
    let chunk_spans: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.name == "Chunk")
        .map(|e| e.span)
        .collect();
    assert_eq!(
        chunk_spans,
        [Some(all[0].id), Some(all[0].id), Some(all[1].id)]
    );
}
