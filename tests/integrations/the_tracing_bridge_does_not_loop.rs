//! `SpanbusLayer` and `TracingHandler` on the same dispatcher and subscriber: every record
//! crosses the bridge at most once in each direction, and nothing keeps circulating.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use spanbus::integrations::tracing::{SpanbusLayer, TracingHandler};
use spanbus::{Dispatcher, Handler, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Serialize)]
struct Ping;
impl spanbus::Event for Ping {
    const NAME: &'static str = "Ping";
}

/// The class names of the spanbus records a handler saw.
#[derive(Clone, Default)]
struct Count(Arc<Mutex<Vec<&'static str>>>);

impl Handler for Count {
    async fn handle(&mut self, record: &Record) {
        self.0.lock().unwrap().push(record.class_name());
    }
}

/// The targets of the `tracing` events a layer saw.
#[derive(Clone, Default)]
struct Targets(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Targets {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        self.0
            .lock()
            .unwrap()
            .push(event.metadata().target().to_owned());
    }
}

fn snapshot(count: &Count, targets: &Targets) -> (Vec<&'static str>, Vec<String>) {
    (
        count.0.lock().unwrap().clone(),
        targets.0.lock().unwrap().clone(),
    )
}

/// Installs both directions on one dispatcher and the thread's default subscriber.
fn both_ways(
    name: &str,
    handler: TracingHandler,
) -> (
    Dispatcher,
    Count,
    Targets,
    tracing::subscriber::DefaultGuard,
) {
    let d = Dispatcher::new(name).unwrap();
    let count = Count::default();
    let targets = Targets::default();
    d.add_handler(count.clone()).unwrap();
    d.add_handler(handler).unwrap();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(SpanbusLayer::new(d.clone()))
            .with(targets.clone()),
    );
    (d, count, targets, guard)
}

/// Flushes a few more times, letting every task run, and checks that nothing changed.
async fn assert_settled(d: &Dispatcher, count: &Count, targets: &Targets) {
    let before = snapshot(count, targets);
    for _ in 0..5 {
        tokio::task::yield_now().await;
        d.flush().await;
    }
    assert_eq!(snapshot(count, targets), before, "records kept circulating");
}

#[tokio::test(flavor = "current_thread")]
async fn a_spanbus_event_reaches_tracing_once_and_does_not_come_back() {
    let (d, count, targets, _guard) = both_ways(
        "loop.spanbus",
        TracingHandler::new().include_bridged_events(true),
    );

    d.event(Ping).await.unwrap();
    d.flush().await;

    let (records, seen) = snapshot(&count, &targets);
    assert_eq!(records, ["Ping"], "spanbus saw its own event only");
    assert_eq!(seen, ["spanbus"], "tracing saw it once");
    assert_settled(&d, &count, &targets).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_tracing_event_reaches_spanbus_once_and_is_echoed_at_most_once() {
    let (d, count, targets, _guard) = both_ways(
        "loop.tracing",
        TracingHandler::new().include_bridged_events(true),
    );

    tracing::info!(target: "app", "hello");
    d.flush().await;

    let (records, seen) = snapshot(&count, &targets);
    assert_eq!(records, ["TracingEvent"]);
    assert_eq!(seen, ["app", "spanbus"], "the original, then its one echo");
    assert_settled(&d, &count, &targets).await;
}

#[tokio::test(flavor = "current_thread")]
async fn by_default_bridged_tracing_events_are_not_echoed() {
    let (d, count, targets, _guard) = both_ways("loop.default", TracingHandler::new());

    tracing::info!(target: "app", "hello");
    d.flush().await;

    let (records, seen) = snapshot(&count, &targets);
    assert_eq!(records, ["TracingEvent"]);
    assert_eq!(seen, ["app"]);
    assert_settled(&d, &count, &targets).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_tracing_span_crosses_once_each_way() {
    let (d, count, targets, _guard) = both_ways("loop.span", TracingHandler::new());

    tracing::info_span!("work").in_scope(|| {});
    d.flush().await;

    let (records, seen) = snapshot(&count, &targets);
    assert_eq!(records, ["SpanEnter", "SpanExit"]);
    assert_eq!(seen, ["spanbus", "spanbus"]);
    assert_settled(&d, &count, &targets).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_loop_when_the_handler_emits_from_another_thread() {
    let d = Dispatcher::new("loop.threads").unwrap();
    let count = Count::default();
    let targets = Targets::default();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(SpanbusLayer::new(d.clone()))
            .with(targets.clone()),
    );
    d.add_handler(count.clone()).unwrap();
    d.add_handler(
        TracingHandler::new()
            .include_bridged_events(true)
            .dispatch(dispatch.clone()),
    )
    .unwrap();

    tracing::dispatcher::with_default(&dispatch, || tracing::info!(target: "app", "hi"));
    d.event(Ping).await.unwrap();
    d.flush().await;

    let (records, mut seen) = snapshot(&count, &targets);
    assert_eq!(records, ["TracingEvent", "Ping"]);
    seen.sort();
    assert_eq!(seen, ["app", "spanbus", "spanbus"]);
    assert_settled(&d, &count, &targets).await;
}
