//! A handler that records everything it sees, in order, and a numbered event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use spanbus::{DropReason, Handler, Record, RecordKind, SpanId, Tags};

/// A numbered event: `n` is the emitter's sequence number, `emitter` tells emitters apart.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Seq {
    pub emitter: u64,
    pub n: u64,
}

impl spanbus::Event for Seq {
    const NAME: &'static str = "Seq";
}

/// What a [`Recorder`] saw, in the order it saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Record(Rec),
    Missed(u64),
    Flush,
    Close,
}

/// The parts of a record the tests look at.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub id: uuid::Uuid,
    pub class: &'static str,
    pub dispatcher: String,
    pub span: Option<SpanId>,
    pub tags: Tags,
    /// `Seq` events: (emitter, n).
    pub seq: Option<(u64, u64)>,
    /// Span enters: the parent and the name.
    pub parent: Option<SpanId>,
    pub name: Option<String>,
    /// Span drops: the reason and the message; `SpanDropEvent`: its `err_str` as `message`.
    pub reason: Option<DropReason>,
    pub message: Option<String>,
}

impl Rec {
    pub fn of(record: &Record) -> Rec {
        let mut rec = Rec {
            id: record.id(),
            class: record.class_name(),
            dispatcher: record.dispatcher().to_owned(),
            span: record.span_id(),
            tags: record.tags().clone(),
            seq: record.event::<Seq>().map(|s| (s.emitter, s.n)),
            parent: None,
            name: None,
            reason: None,
            message: None,
        };
        match record.kind() {
            RecordKind::SpanEnter(e) => {
                rec.parent = e.parent;
                rec.name = Some(e.name.to_string());
            }
            RecordKind::SpanDrop(d) => {
                rec.reason = Some(d.reason);
                rec.message = Some(d.message.clone());
            }
            _ => {}
        }
        if let Some(e) = record.event::<spanbus::events::SpanDropEvent>() {
            rec.message = Some(e.err_str.clone());
        }
        rec
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

/// A lossless-by-default handler that appends everything it sees to a shared log.
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Log,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// The records only, without flush/close/missed markers.
    pub fn records(&self) -> Vec<Rec> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The `n` of every `Seq` event, in arrival order.
    pub fn seqs(&self) -> Vec<u64> {
        self.records()
            .iter()
            .filter_map(|r| r.seq.map(|(_, n)| n))
            .collect()
    }
}

impl Handler for Recorder {
    async fn handle(&mut self, record: &Record) {
        self.log.lock().unwrap().push(Seen::Record(Rec::of(record)));
    }

    async fn missed(&mut self, count: u64) {
        self.log.lock().unwrap().push(Seen::Missed(count));
    }

    async fn flush(&mut self) {
        self.log.lock().unwrap().push(Seen::Flush);
    }

    async fn close(&mut self) {
        self.log.lock().unwrap().push(Seen::Close);
    }
}

/// Waits until `cond` holds, checking every millisecond, for at most `timeout`.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
