//! `TracingHandler`: spanbus events and span signals are re-emitted as `tracing` events with
//! target `spanbus` and the record's fields.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use spanbus::handlers::SimpleSpanHandler;
use spanbus::integrations::tracing::TracingHandler;
use spanbus::{Dispatcher, SpanFutureExt};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Serialize)]
struct Chunk {
    n: u32,
}
impl spanbus::Event for Chunk {
    const NAME: &'static str = "Chunk";
}

#[derive(Debug, Clone)]
struct Captured {
    target: String,
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Captured {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("<absent>", String::as_str)
    }

    fn record(&self) -> Value {
        serde_json::from_str(self.field("record")).unwrap()
    }
}

/// A layer collecting every `tracing` event it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Strings<'a>(&'a mut BTreeMap<String, String>);
impl Visit for Strings<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Strings(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: event.metadata().target().into(),
            level: *event.metadata().level(),
            fields,
        });
    }
}

impl Capture {
    fn all(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn events_and_span_signals_become_tracing_events_with_the_record_fields() {
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let d = Dispatcher::new("app.llm").unwrap();
    let spans = SimpleSpanHandler::new();
    d.add_span_handler(spans.clone()).unwrap();
    d.add_handler(TracingHandler::new()).unwrap();

    async { d.event(Chunk { n: 7 }).await.unwrap() }
        .in_span(d.span("stream"))
        .await;
    d.flush().await;

    let span = &spans.spans()[0];
    let got = capture.all();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got.iter()
            .all(|c| c.target == "spanbus" && c.level == Level::INFO)
    );
    for c in &got {
        assert_eq!(c.field("span_id"), span.id.to_string());
        assert_eq!(c.field("trace_id"), span.trace_id.unwrap().to_string());
        assert_eq!(c.field("dispatcher"), "app.llm");
        assert_eq!(c.record()["span_id"], span.id.to_string());
    }

    assert_eq!(got[0].field("message"), "span enter: stream");
    assert_eq!(got[0].field("class_name"), "SpanEnter");
    assert_eq!(got[0].record()["name"], "stream");

    assert_eq!(got[1].field("message"), "Chunk");
    assert_eq!(got[1].field("class_name"), "Chunk");
    assert_eq!(got[1].record()["n"], 7);
    assert_eq!(got[1].record()["class_name"], "Chunk");

    assert_eq!(got[2].field("message"), "span exit");
    assert_eq!(got[2].field("class_name"), "SpanExit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_level_and_dispatch_are_used_and_drops_say_why() {
    let capture = Capture::default();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(capture.clone()));
    let d = Dispatcher::new("jobs").unwrap();
    d.add_handler(TracingHandler::new().level(Level::WARN).dispatch(dispatch))
        .unwrap();

    let failed: Result<(), &str> = d.span("parse").in_scope_result(|| Err("bad input"));
    assert!(failed.is_err());
    d.event(Chunk { n: 1 }).span(None).await.unwrap();
    d.flush().await;

    let got = capture.all();
    let messages: Vec<_> = got.iter().map(|c| c.field("message").to_owned()).collect();
    assert_eq!(
        messages,
        [
            "span enter: parse",
            "span drop (error): bad input",
            "SpanDropEvent",
            "Chunk"
        ]
    );
    assert!(
        got.iter()
            .all(|c| c.level == Level::WARN && c.target == "spanbus")
    );
    assert_eq!(got[1].record()["err_str"], "bad input");
    assert_eq!(
        got[3].field("span_id"),
        "<absent>",
        "no span: the field is absent"
    );
    assert_eq!(got[3].field("trace_id"), "<absent>");
}
