//! Handlers that record closed spans (with their arguments and tags) and events, `recorded` to
//! attach both to a dispatcher of the process-wide registry, and a count of each span's enters
//! and ends.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use spanbus::record::{SpanDrop, SpanEnter, SpanExit};
use spanbus::{Dispatcher, DropReason, EventHandler, Record, SpanHandler, SpanId, Tags, TraceId};

/// How a recorded span ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Exited,
    Dropped(DropReason, String),
}

/// A span that ended, with everything its enter record carried.
#[derive(Debug, Clone)]
pub struct Closed {
    pub id: SpanId,
    pub parent: Option<SpanId>,
    pub trace_id: Option<TraceId>,
    pub name: String,
    pub args: Option<Value>,
    pub tags: Tags,
    pub outcome: Outcome,
}

/// Records every span that ends, with its arguments and tags.
#[derive(Debug, Clone, Default)]
pub struct Spans(Arc<Mutex<Vec<Closed>>>);

impl Spans {
    pub fn all(&self) -> Vec<Closed> {
        self.0.lock().unwrap().clone()
    }

    /// The one span named `name`.
    pub fn one(&self, name: &str) -> Closed {
        let all = self.all();
        let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one span named {name:?}, got {:?}",
            all.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        found[0].clone()
    }

    fn record(&self, open: (SpanEnter, Option<TraceId>, Tags), outcome: Outcome) {
        let (enter, trace_id, tags) = open;
        self.0.lock().unwrap().push(Closed {
            id: enter.id,
            parent: enter.parent,
            trace_id,
            name: enter.name.into_owned(),
            args: enter.args,
            tags,
            outcome,
        });
    }
}

impl SpanHandler for Spans {
    type Span = (SpanEnter, Option<TraceId>, Tags);

    fn new_span(&mut self, enter: &SpanEnter, record: &Record) -> Option<Self::Span> {
        Some((
            enter.clone(),
            record.span().map(|s| s.trace_id()),
            record.tags().clone(),
        ))
    }

    fn prepare_to_exit_span(&mut self, span: Self::Span, _: &SpanExit, _: &Record) {
        self.record(span, Outcome::Exited);
    }

    fn prepare_to_drop_span(&mut self, span: Self::Span, drop: &SpanDrop, _: &Record) {
        self.record(span, Outcome::Dropped(drop.reason, drop.message.clone()));
    }
}

/// An event as seen by a handler: its name, span and tags.
#[derive(Debug, Clone)]
pub struct Seen {
    pub name: &'static str,
    pub span: Option<SpanId>,
    pub tags: Tags,
}

/// Records every event.
#[derive(Debug, Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Seen>>>);

impl Events {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl EventHandler for Events {
    async fn handle(&mut self, record: &Record) {
        self.0.lock().unwrap().push(Seen {
            name: record.class_name(),
            span: record.span_id(),
            tags: record.tags().clone(),
        });
    }
}

/// The process-wide dispatcher `name` with a span recorder and an event recorder.
pub fn recorded(name: &str) -> (Dispatcher, Spans, Events) {
    let d = spanbus::get_dispatcher(name).unwrap();
    let spans = Spans::default();
    let events = Events::default();
    d.add_span_handler(spans.clone()).unwrap();
    d.add_event_handler(events.clone()).unwrap();
    (d, spans, events)
}

/// Per span id: (enters, ends, ends seen before the enter).
pub type EndCounts = std::collections::HashMap<SpanId, (u32, u32, u32)>;

/// Counts, per span id, its enters, its ends (exit or drop) and the ends seen before its enter:
/// each span must come out as `(1, 1, 0)`.
pub struct SpanEnds(pub Arc<Mutex<EndCounts>>);

impl spanbus::Handler for SpanEnds {
    async fn handle(&mut self, record: &Record) {
        let (id, enter) = match record.kind() {
            spanbus::RecordKind::SpanEnter(e) => (e.id, true),
            spanbus::RecordKind::SpanExit(e) => (e.id, false),
            spanbus::RecordKind::SpanDrop(e) => (e.id, false),
            _ => return,
        };
        let mut map = self.0.lock().unwrap();
        let entry = map.entry(id).or_default();
        if enter {
            entry.0 += 1;
        } else {
            entry.1 += 1;
            entry.2 += u32::from(entry.0 == 0);
        }
    }
}

/// `(spans seen, spans entered but never ended, spans entered or ended other than exactly once
/// in that order)` of a [`SpanEnds`] count.
pub fn tally_span_ends(seen: &EndCounts) -> (usize, usize, usize) {
    let unclosed = seen.values().filter(|(e, c, _)| *e == 1 && *c == 0).count();
    let broken = seen
        .values()
        .filter(|(e, c, early)| *e != 1 || *c > 1 || *early > 0)
        .count();
    (seen.len(), unclosed, broken)
}
