//! `SpanbusLayer`: `tracing` events become `TracingEvent`s attributed to the right span, and
//! spanbus events emitted inside `tracing` spans are attributed to those spans.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::json;
use spanbus::integrations::tracing::{SpanbusLayer, TracingEvent};
use spanbus::{Dispatcher, Handler, Record, RecordKind, SpanContext, SpanFutureExt};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Serialize)]
struct Chunk {
    n: u32,
}
impl spanbus::Event for Chunk {
    const NAME: &'static str = "Chunk";
}

/// An event seen: the bridged `tracing` event if it is one, its class name, its span.
type SeenEvent = (Option<TracingEvent>, &'static str, Option<SpanContext>);

/// Events seen, with their span; and each span enter's name with its context.
#[derive(Clone, Default)]
struct Seen {
    events: Arc<Mutex<Vec<SeenEvent>>>,
    spans: Arc<Mutex<Vec<(String, SpanContext)>>>,
}

impl Handler for Seen {
    async fn handle(&mut self, record: &Record) {
        match record.kind() {
            RecordKind::Event(_) => self.events.lock().unwrap().push((
                record.event::<TracingEvent>().cloned(),
                record.class_name(),
                record.span(),
            )),
            RecordKind::SpanEnter(e) => self
                .spans
                .lock()
                .unwrap()
                .push((e.name.to_string(), record.span().unwrap())),
            _ => {}
        }
    }
}

impl Seen {
    fn span(&self, name: &str) -> SpanContext {
        let spans = self.spans.lock().unwrap();
        spans.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn tracing_events(&self) -> Vec<(TracingEvent, Option<SpanContext>)> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter_map(|(e, _, span)| e.clone().map(|e| (e, *span)))
            .collect()
    }
}

fn setup(name: &str) -> (Dispatcher, Seen, tracing::subscriber::DefaultGuard) {
    let d = Dispatcher::new(name).unwrap();
    let seen = Seen::default();
    d.add_handler(seen.clone()).unwrap();
    let guard = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(SpanbusLayer::new(d.clone())),
    );
    (d, seen, guard)
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_carries_target_level_message_and_fields_and_its_span() {
    let (d, seen, _guard) = setup("events");

    tracing::warn!(target: "reqwest::retry", attempt = 2_u64, status = 503, "retrying {}", "GET /");
    tracing::info_span!("request").in_scope(|| {
        tracing::error!(code = -1, ok = false, "failed");
        tracing::info_span!("inner").in_scope(|| tracing::debug!(detail = ?vec![1, 2]));
    });
    d.flush().await;

    let events = seen.tracing_events();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0].0,
        TracingEvent {
            target: "reqwest::retry".into(),
            level: "WARN".into(),
            message: Some("retrying GET /".into()),
            fields: json!({"attempt": 2, "status": 503})
                .as_object()
                .unwrap()
                .clone(),
        }
    );
    assert_eq!(events[0].1, None, "outside any span");

    assert_eq!(events[1].0.level, "ERROR");
    assert_eq!(events[1].0.message.as_deref(), Some("failed"));
    assert_eq!(
        events[1].0.fields,
        *json!({"code": -1, "ok": false}).as_object().unwrap()
    );
    assert_eq!(events[1].1, Some(seen.span("request")));

    assert_eq!(events[2].0.message, None);
    assert_eq!(events[2].0.fields["detail"], "[1, 2]");
    assert_eq!(events[2].1, Some(seen.span("inner")));
    assert_eq!(
        seen.span("inner").trace_id(),
        seen.span("request").trace_id()
    );

    let record_json = {
        let events = seen.events.lock().unwrap();
        events.iter().map(|e| e.1).collect::<Vec<_>>()
    };
    assert_eq!(record_json, ["TracingEvent"; 3]);
}

#[tokio::test(flavor = "current_thread")]
async fn an_event_outside_tracing_spans_belongs_to_the_current_spanbus_span() {
    let (d, seen, _guard) = setup("outer");

    let outer = async {
        tracing::info!("inside a spanbus span");
        spanbus::current_span()
    }
    .in_span(d.span("pipeline"))
    .await;
    d.flush().await;

    let events = seen.tracing_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1, outer);
    assert!(outer.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn explicit_event_parents_and_roots_are_honoured() {
    let (d, seen, _guard) = setup("explicit");

    let background = tracing::info_span!("background"); // not entered
    tracing::info_span!("request").in_scope(|| {
        tracing::info!(parent: &background, "for the background span");
        tracing::info!(parent: None, "for no span");
    });
    drop(background);
    d.flush().await;

    let events = seen.tracing_events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].1, Some(seen.span("background")));
    assert_eq!(events[1].1, None);
}

#[tokio::test(flavor = "current_thread")]
async fn spanbus_events_inside_a_tracing_span_are_attributed_to_it() {
    let (d, seen, _guard) = setup("native");

    async {
        d.event(Chunk { n: 1 }).await.unwrap();
        tokio::task::yield_now().await;
        d.event(Chunk { n: 2 }).now().unwrap();
    }
    .instrument(tracing::info_span!("llm.stream"))
    .await;
    d.event(Chunk { n: 3 }).await.unwrap();
    d.flush().await;

    let events = seen.events.lock().unwrap().clone();
    let chunks: Vec<_> = events
        .iter()
        .filter(|e| e.1 == "Chunk")
        .map(|e| e.2)
        .collect();
    let stream = seen.span("llm.stream");
    assert_eq!(chunks, [Some(stream), Some(stream), None]);
}

#[tokio::test(flavor = "current_thread")]
async fn events_with_spanbus_targets_are_not_bridged() {
    let (d, seen, _guard) = setup("ignored");

    tracing::info!(target: "spanbus", "echo");
    tracing::info!(target: "spanbus::dispatcher", "echo");
    tracing::info!(target: "app", "kept");
    d.flush().await;

    let events = seen.tracing_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.target, "app");
}
