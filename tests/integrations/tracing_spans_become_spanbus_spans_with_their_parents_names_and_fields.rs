//! `SpanbusLayer`: `tracing` spans become spanbus spans on the chosen dispatcher, with the
//! right names, parents, and fields as `args`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use spanbus::handlers::SimpleSpanHandler;
use spanbus::integrations::tracing::SpanbusLayer;
use spanbus::{Dispatcher, Handler, Record, RecordKind, SpanFutureExt, SpanId};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// A span enter: (id, parent, name, args).
type Enter = (SpanId, Option<SpanId>, String, Option<Value>);

/// Every span enter seen.
#[derive(Clone, Default)]
struct Enters(Arc<Mutex<Vec<Enter>>>);

impl Handler for Enters {
    async fn handle(&mut self, record: &Record) {
        if let RecordKind::SpanEnter(e) = record.kind() {
            self.0
                .lock()
                .unwrap()
                .push((e.id, e.parent, e.name.to_string(), e.args.clone()));
        }
    }
}

impl Enters {
    fn named(&self, name: &str) -> Enter {
        let all = self.0.lock().unwrap();
        let found: Vec<_> = all.iter().filter(|e| e.2 == name).cloned().collect();
        assert_eq!(found.len(), 1, "exactly one span named {name}: {all:?}");
        found.into_iter().next().unwrap()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn bus(name: &str) -> (Dispatcher, SimpleSpanHandler, Enters) {
    let d = Dispatcher::new(name).unwrap();
    let spans = SimpleSpanHandler::new();
    let enters = Enters::default();
    d.add_span_handler(spans.clone()).unwrap();
    d.add_handler(enters.clone()).unwrap();
    (d, spans, enters)
}

#[tokio::test(flavor = "current_thread")]
async fn nested_tracing_spans_become_nested_spanbus_spans_with_names_and_fields() {
    let (d, spans, enters) = bus("nested");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    tracing::info_span!("query", user = "alice", top_k = 3_u64).in_scope(|| {
        tracing::debug_span!("retrieve", score = 0.5, hit = true, err = ?Some(1)).in_scope(|| {});
    });
    d.flush().await;

    let closed = spans.spans();
    assert_eq!(closed.len(), 2);
    let query = closed.iter().find(|s| s.name == "query").unwrap();
    let retrieve = closed.iter().find(|s| s.name == "retrieve").unwrap();
    assert_eq!(query.parent, None);
    assert_eq!(retrieve.parent, Some(query.id));
    assert_eq!(retrieve.trace_id, query.trace_id);
    assert_eq!(query.dispatcher, "nested");
    assert!(retrieve.end <= query.end);

    assert_eq!(
        enters.named("query").3,
        Some(json!({"user": "alice", "top_k": 3}))
    );
    assert_eq!(
        enters.named("retrieve").3,
        Some(json!({"score": 0.5, "hit": true, "err": "Some(1)"}))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_span_opens_at_first_enter_keeps_early_fields_and_exits_once_at_close() {
    let (d, spans, enters) = bus("lifecycle");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    let span = tracing::info_span!("call", model = tracing::field::Empty);
    span.record("model", "gpt");
    for _ in 0..3 {
        span.in_scope(|| {});
    }
    span.record("model", "ignored once open");
    d.flush().await;
    assert_eq!(enters.len(), 1, "entered three times, opened once");
    assert!(spans.spans().is_empty(), "still open until closed");

    drop(span);
    // Never entered: no work, no spanbus span.
    drop(tracing::info_span!("idle"));
    d.flush().await;

    let closed = spans.spans();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].name, "call");
    assert_eq!(closed[0].outcome, spanbus::handlers::SpanOutcome::Exited);
    assert_eq!(enters.named("call").3, Some(json!({"model": "gpt"})));
    assert_eq!(enters.len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn tracing_and_spanbus_spans_nest_under_each_other() {
    let (d, spans, _) = bus("mixed");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    async {
        // A tracing span inside a spanbus span...
        async {
            // ...with a spanbus span inside it...
            async {
                // ...with a tracing span inside that.
                tracing::info_span!("t2").in_scope(|| {});
            }
            .in_span(d.span("s2"))
            .await;
        }
        .instrument(tracing::info_span!("t1"))
        .await;
    }
    .in_span(d.span("s1"))
    .await;
    d.flush().await;

    let closed = spans.spans();
    let id = |name: &str| closed.iter().find(|s| s.name == name).unwrap();
    assert_eq!(closed.len(), 4);
    assert_eq!(id("s1").parent, None);
    assert_eq!(id("t1").parent, Some(id("s1").id));
    assert_eq!(id("s2").parent, Some(id("t1").id));
    assert_eq!(id("t2").parent, Some(id("s2").id));
    assert!(closed.iter().all(|s| s.trace_id == id("s1").trace_id));
    assert_eq!(
        spanbus::current_span(),
        None,
        "nothing leaks onto the thread"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_instrumented_future_is_one_span_across_awaits() {
    let (d, spans, enters) = bus("future");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    let inner = async {
        let first = spanbus::current_span();
        for _ in 0..5 {
            tokio::task::yield_now().await;
            assert_eq!(spanbus::current_span(), first, "current across polls");
        }
        first
    }
    .instrument(tracing::info_span!("stream"))
    .await;
    assert_eq!(spanbus::current_span(), None);
    d.flush().await;

    assert_eq!(enters.len(), 1);
    let closed = spans.spans();
    assert_eq!(closed.len(), 1);
    assert_eq!(inner.map(|c| c.span_id()), Some(closed[0].id));
}

#[tokio::test(flavor = "current_thread")]
async fn explicit_parents_and_explicit_roots_are_honoured() {
    let (d, spans, _) = bus("explicit");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    let request = tracing::info_span!("request"); // never entered itself
    tracing::info_span!("other").in_scope(|| {
        tracing::info_span!(parent: &request, "handler").in_scope(|| {});
        tracing::info_span!(parent: None, "background").in_scope(|| {});
    });
    drop(request);
    d.flush().await;

    let closed = spans.spans();
    let id = |name: &str| closed.iter().find(|s| s.name == name).unwrap();
    assert_eq!(closed.len(), 4);
    assert_eq!(id("handler").parent, Some(id("request").id));
    assert_eq!(id("request").parent, None);
    assert_eq!(id("background").parent, None);
    assert_ne!(id("background").trace_id, id("other").trace_id);
}

#[tokio::test(flavor = "current_thread")]
async fn qualified_names_prefix_the_target_and_spanbus_targets_are_ignored() {
    let (d, spans, _) = bus("qualified");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone()).qualified_names(true)),
    );

    tracing::info_span!(target: "hyper::client", "connect").in_scope(|| {});
    tracing::info_span!(target: "spanbus", "echo").in_scope(|| {});
    tracing::info_span!(target: "spanbus::internal", "echo").in_scope(|| {});
    tracing::info_span!(target: "spanbusy", "kept").in_scope(|| {});
    d.flush().await;

    let mut names: Vec<_> = spans
        .spans()
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["hyper::client::connect", "spanbusy::kept"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_tracing_guard_held_across_an_await_does_not_leak_out_of_a_spanbus_future() {
    let (d, spans, _) = bus("held");
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );

    let outer = async {
        let held = tracing::info_span!("held");
        let entered = held.enter(); // the misuse tracing warns about
        tokio::task::yield_now().await;
        let inside = spanbus::current_span();
        drop(entered);
        (inside, spanbus::current_span())
    }
    .in_span(d.span("outer"));
    let other = tokio::spawn(async { spanbus::current_span() });
    let ((inside, after_exit), other) = tokio::join!(outer, other);
    assert_eq!(
        other.unwrap(),
        None,
        "another task never sees the held span"
    );
    assert_eq!(spanbus::current_span(), None);
    d.flush().await;

    let closed = spans.spans();
    let id = |name: &str| closed.iter().find(|s| s.name == name).unwrap();
    assert_eq!(inside.map(|c| c.span_id()), Some(id("held").id));
    assert_eq!(after_exit.map(|c| c.span_id()), Some(id("outer").id));
    assert_eq!(id("held").parent, Some(id("outer").id));
}
