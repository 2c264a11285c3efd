//! A handler set built at run time from a list of names (as a configuration file gives it):
//! boxed `Handler`s, `EventHandler`s and `SpanHandler`s in one `Vec<BoxHandler>`, added with
//! `add_handler`. Each sees exactly what its generic twin sees — the same records in the same
//! order, then flush and close, and a lossy one the same skipped count — and reports under its
//! own type's name.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::recorder::{Recorder, Seen, Seq};
use spanbus::handler::{BoxHandler, boxed, boxed_events, boxed_spans};
use spanbus::record::{SpanDrop, SpanEnter, SpanExit};
use spanbus::{Dispatcher, EventHandler, HandlerOptions, Record, SpanHandler};

/// Event classes in arrival order.
#[derive(Clone, Default)]
struct EventNames(Arc<Mutex<Vec<&'static str>>>);

impl EventHandler for EventNames {
    async fn handle(&mut self, record: &Record) {
        self.0.lock().unwrap().push(record.class_name());
    }
}

/// "name:exit" or "name:drop" per span end.
#[derive(Clone, Default)]
struct SpanEnds(Arc<Mutex<Vec<String>>>);

impl SpanHandler for SpanEnds {
    type Span = String;

    fn new_span(&mut self, enter: &SpanEnter, _: &Record) -> Option<String> {
        Some(enter.name.to_string())
    }

    fn prepare_to_exit_span(&mut self, name: String, _: &SpanExit, _: &Record) {
        self.0.lock().unwrap().push(format!("{name}:exit"));
    }

    fn prepare_to_drop_span(&mut self, name: String, _: &SpanDrop, _: &Record) {
        self.0.lock().unwrap().push(format!("{name}:drop"));
    }
}

/// The handlers a configuration names, and what each one saw.
struct Configured {
    handlers: Vec<(String, BoxHandler)>,
    recorder: Recorder,
    events: EventNames,
    spans: SpanEnds,
}

fn from_names(names: &[&str]) -> Result<Configured, String> {
    let recorder = Recorder::new();
    let events = EventNames::default();
    let spans = SpanEnds::default();
    let handlers = names
        .iter()
        .map(|&name| {
            let handler = match name {
                "recorder" => boxed(recorder.clone()),
                "events" => boxed_events(events.clone()),
                "spans" => boxed_spans(spans.clone()),
                other => return Err(format!("no handler named {other:?}")),
            };
            Ok((name.to_owned(), handler))
        })
        .collect::<Result<_, _>>()?;
    Ok(Configured {
        handlers,
        recorder,
        events,
        spans,
    })
}

/// The same workload on each dispatcher: events inside and outside spans, an exit and a drop.
async fn workload(d: &Dispatcher) {
    for n in 0..50 {
        d.event(Seq { emitter: 0, n }).await.unwrap();
    }
    d.span("ok")
        .in_scope(|| d.event(Seq { emitter: 1, n: 0 }).now().unwrap());
    let failed: Result<(), &str> = d.span("failed").in_scope_result(|| Err("no"));
    assert!(failed.is_err());
    d.flush().await;
}

#[tokio::test]
async fn a_handler_set_built_from_names_sees_what_generic_handlers_see() {
    let generic = Dispatcher::new("generic").unwrap();
    let g_recorder = Recorder::new();
    let g_events = EventNames::default();
    let g_spans = SpanEnds::default();
    generic.add_handler(g_recorder.clone()).unwrap();
    generic.add_event_handler(g_events.clone()).unwrap();
    generic.add_span_handler(g_spans.clone()).unwrap();

    let boxed_bus = Dispatcher::new("generic").unwrap(); // same name: records compare equal
    let config = from_names(&["recorder", "events", "spans"]).unwrap();
    assert!(from_names(&["recorder", "sql"]).is_err());
    let mut names = Vec::new();
    for (name, handler) in config.handlers {
        let id = boxed_bus.add_handler(handler).unwrap();
        names.push((name, boxed_bus.handler_stats(id).unwrap().name));
    }
    println!("names: {names:?}");
    assert!(names[0].1.ends_with("::Recorder"), "{names:?}");
    assert!(names[1].1.ends_with("::EventNames"), "{names:?}");
    assert!(names[2].1.ends_with("::SpanEnds"), "{names:?}");

    workload(&generic).await;
    workload(&boxed_bus).await;
    let generic_report = generic.shutdown(Duration::from_secs(5)).await;
    let boxed_report = boxed_bus.shutdown(Duration::from_secs(5)).await;
    assert!(boxed_report.is_clean() && generic_report.is_clean());

    // Same shape of records (ids, spans and times differ between the two runs).
    let shape = |seen: Vec<Seen>| -> Vec<String> {
        seen.into_iter()
            .map(|s| match s {
                Seen::Record(r) => format!("{}:{:?}:{:?}:{:?}", r.class, r.seq, r.name, r.reason),
                other => format!("{other:?}"),
            })
            .collect()
    };
    let g = shape(g_recorder.seen());
    let b = shape(config.recorder.seen());
    println!(
        "generic handler saw {} entries, boxed {}; events {} / {}; span ends {:?}",
        g.len(),
        b.len(),
        g_events.0.lock().unwrap().len(),
        config.events.0.lock().unwrap().len(),
        config.spans.0.lock().unwrap()
    );
    assert_eq!(b, g);
    assert_eq!(b.last().map(String::as_str), Some("Close"));
    assert!(b.iter().filter(|s| *s == "Flush").count() >= 2);
    assert_eq!(
        *config.events.0.lock().unwrap(),
        *g_events.0.lock().unwrap()
    );
    assert_eq!(*config.spans.0.lock().unwrap(), ["ok:exit", "failed:drop"]);
    assert_eq!(*config.spans.0.lock().unwrap(), *g_spans.0.lock().unwrap());
}

#[tokio::test(flavor = "current_thread")]
async fn a_boxed_lossy_handler_is_told_what_it_missed() {
    // On one thread the handler task cannot run while this test emits synchronously, so the
    // lossy channel overruns by an exact count.
    let d = Dispatcher::new("boxed.lossy").unwrap();
    let recorder = Recorder::new();
    let id = d
        .add_handler_with(
            boxed(recorder.clone()),
            HandlerOptions::new().name("configured").lossy(8),
        )
        .unwrap();
    for n in 0..100 {
        d.event(Seq { emitter: 0, n }).now().unwrap();
    }
    d.flush().await;
    let stats = d.handler_stats(id).unwrap();
    let missed: u64 = recorder
        .seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Missed(n) => Some(*n),
            _ => None,
        })
        .sum();
    println!(
        "boxed lossy handler: {} delivered, {} dropped, told of {missed} missed",
        stats.delivered, stats.dropped
    );
    assert_eq!(stats.name, "configured");
    assert_eq!(stats.dropped, 92);
    assert_eq!(missed, 92);
    assert_eq!(recorder.seqs(), (92..100).collect::<Vec<_>>());
    d.shutdown(Duration::from_secs(5)).await;
}
