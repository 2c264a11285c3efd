//! Records: what travels from an emitter to the handlers.
//!
//! Every emitted event and every span signal (enter, exit, drop) becomes one [`Record`]: the
//! payload plus its envelope — a UUID, a UTC timestamp, the span it happened in, the tags active
//! at the time and the name of the dispatcher that emitted it. One record is shared (behind a
//! reference count, in a block from the record pool) by every handler that receives it.
//!
//! The JSON form ([`Record::to_json`]) uses llama-index's field names (`id_`, `timestamp`,
//! `span_id`, `tags`, `class_name`, then the event's own fields), so Python tooling reads it
//! unchanged.
//!
//! `mod.rs` has [`Record`] and its envelope; `payload.rs` what it carries (an event or a span
//! signal); `shared.rs` the reference-counted block it lives in.

use std::any::TypeId;

use std::collections::BTreeMap;
use std::fmt;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::context::{SpanContext, Tags};
use crate::error::SerializeError;
use crate::event::Event;
use crate::id::{SpanId, TraceId};

mod payload;
mod shared;

pub use payload::{DropReason, RecordKind, SpanDrop, SpanEnter, SpanExit};
pub(crate) use payload::{EventPayload, Payload};
pub(crate) use shared::{Lent, RecordRef};

static NO_TAGS: Tags = BTreeMap::new();

/// One event or span signal with its envelope.
///
/// A record lives in one shared block with its payload: emitting an event takes one block
/// (usually recycled, see `RecordRef`), which every handler receiving the record shares, and
/// the event is stored inline, not boxed. Handlers see it as `&Record`.
#[repr(transparent)]
pub struct Record(RecordBox<dyn Payload>);

/// The layout behind a [`Record`]: the envelope, then the payload inline. Built as
/// `RecordBox<P>` for a concrete payload, then unsized to `RecordBox<dyn Payload>`.
///
/// The envelope is kept to 64 bytes (72 with the reference count), all 8-byte aligned, so that
/// a record with an event of up to 56 bytes fits the record pool's smaller, 128-byte blocks.
pub(crate) struct RecordBox<P: ?Sized> {
    id: Uuid,
    /// Nanoseconds since the Unix epoch, from the record clock (`crate::clock`: the CPU's
    /// counter, mapped to the system clock by one mapping every thread shares). Turned into a
    /// calendar date only when asked for.
    timestamp: u64,
    span: PackedSpan,
    tags: Option<Arc<Tags>>,
    /// Interned (see `dispatcher::intern`): no shared reference count to bump per record, and
    /// one word instead of two.
    dispatcher: &'static &'static str,
    payload: P,
}

/// An `Option<SpanContext>` in 24 bytes with 8-byte alignment (a `SpanContext` holds a `u128`,
/// which would give the whole record 16-byte alignment and 32 bytes here).
#[derive(Clone, Copy)]
struct PackedSpan {
    span_id: Option<SpanId>,
    trace: [u64; 2],
}

impl PackedSpan {
    #[inline]
    fn pack(span: Option<SpanContext>) -> Self {
        match span {
            None => PackedSpan {
                span_id: None,
                trace: [0; 2],
            },
            Some(ctx) => {
                let t = ctx.trace_id().to_u128();
                PackedSpan {
                    span_id: Some(ctx.span_id()),
                    trace: [(t >> 64) as u64, t as u64],
                }
            }
        }
    }

    #[inline]
    fn unpack(self) -> Option<SpanContext> {
        let trace = (u128::from(self.trace[0]) << 64) | u128::from(self.trace[1]);
        Some(SpanContext::new(TraceId::from_u128(trace)?, self.span_id?))
    }
}

impl Record {
    /// Builds a record directly in its shared block: one allocation per record (from the
    /// record pool), the payload inline after the envelope.
    #[inline]
    pub(crate) fn alloc<P: Payload>(
        span: Option<SpanContext>,
        tags: Option<Arc<Tags>>,
        dispatcher: &'static &'static str,
        payload: P,
    ) -> RecordRef {
        let timestamp = crate::clock::now_nanos();
        RecordRef::new(RecordBox {
            id: crate::id::record_uuid(timestamp),
            timestamp,
            span: PackedSpan::pack(span),
            tags,
            dispatcher,
            payload,
        })
    }

    /// Wraps an event as a record's payload.
    #[inline]
    pub(crate) fn event_record<E: Event>(
        span: Option<SpanContext>,
        tags: Option<Arc<Tags>>,
        dispatcher: &'static &'static str,
        event: E,
    ) -> RecordRef {
        Record::alloc(span, tags, dispatcher, EventPayload(event))
    }

    /// The interned dispatcher name, for handlers in this crate that keep it.
    pub(crate) fn dispatcher_static(&self) -> &'static str {
        self.0.dispatcher
    }

    /// The record's unique id (`id_` in JSON).
    pub fn id(&self) -> Uuid {
        self.0.id
    }

    /// When the record was emitted (UTC, nanosecond resolution).
    ///
    /// Read from the CPU's cycle counter anchored to the system clock, which each thread
    /// re-reads about every 0.2 s: it agrees with `SystemTime::now()` at emit to well within a
    /// millisecond, and costs a few nanoseconds instead of a system-clock read per record.
    pub fn timestamp(&self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_nanos(i64::try_from(self.0.timestamp).unwrap_or(i64::MAX))
    }

    /// When the record was emitted, in nanoseconds since the Unix epoch (UTC): the instant of
    /// [`timestamp`](Self::timestamp) without building a calendar date, for handlers that
    /// compute durations or export raw times.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::{Dispatcher, Handler, Record};
    ///
    /// /// Keeps the time between consecutive records.
    /// #[derive(Default)]
    /// struct Gaps { last: Option<u64>, gaps: Vec<u64> }
    ///
    /// impl Handler for Gaps {
    ///     async fn handle(&mut self, record: &Record) {
    ///         let t = record.timestamp_nanos();
    ///         if let Some(last) = self.last.replace(t) {
    ///             self.gaps.push(t.saturating_sub(last));
    ///         }
    ///     }
    /// }
    /// # let _ = Gaps::default();
    /// ```
    #[inline]
    pub fn timestamp_nanos(&self) -> u64 {
        self.0.timestamp
    }

    /// The span the record belongs to: for events, the span current at emit (or the one given
    /// explicitly); for span signals, the span itself.
    #[inline]
    pub fn span(&self) -> Option<SpanContext> {
        self.0.span.unpack()
    }

    /// The id of [`span`](Self::span), if any (`span_id` in JSON).
    pub fn span_id(&self) -> Option<SpanId> {
        self.0.span.span_id
    }

    /// The tags active when the record was emitted.
    pub fn tags(&self) -> &Tags {
        self.0.tags.as_deref().unwrap_or(&NO_TAGS)
    }

    /// The tags, shared: no copy for a handler that keeps them.
    pub(crate) fn shared_tags(&self) -> Option<Arc<Tags>> {
        self.0.tags.clone()
    }

    /// The name of the dispatcher that emitted the record.
    pub fn dispatcher(&self) -> &str {
        self.0.dispatcher
    }

    /// The payload, borrowed.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::{Record, RecordKind};
    ///
    /// fn describe(record: &Record) -> String {
    ///     match record.kind() {
    ///         RecordKind::SpanEnter(enter) => format!("enter {}", enter.name),
    ///         RecordKind::SpanExit(exit) => format!("exit {}", exit.id),
    ///         RecordKind::SpanDrop(drop) => format!("drop {} ({})", drop.id, drop.reason),
    ///         RecordKind::Event(event) => format!("event {}", event.name()),
    ///         _ => "unknown".to_owned(),
    ///     }
    /// }
    /// ```
    #[inline]
    pub fn kind(&self) -> RecordKind<'_> {
        self.0.payload.kind()
    }

    /// The event, if this record carries one of type `E`.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::Serialize;
    /// # use spanbus::{Event, Record};
    /// # #[derive(Serialize)] struct Tick(u64);
    /// # impl Event for Tick { const NAME: &'static str = "Tick"; }
    /// fn count_ticks(record: &Record, total: &mut u64) {
    ///     if let Some(Tick(n)) = record.event::<Tick>() {
    ///         *total += n;
    ///     }
    /// }
    /// ```
    #[inline]
    pub fn event<E: Event>(&self) -> Option<&E> {
        if self.0.payload.event_type() != Some(TypeId::of::<E>()) {
            return None;
        }
        let payload: *const dyn Payload = &self.0.payload;
        // SAFETY: only `EventPayload<E>` answers `TypeId::of::<E>()` (span signals answer
        // `None`, and `EventPayload<F>` gives `F`'s id), so the payload is an `EventPayload<E>`,
        // a `#[repr(transparent)]` wrapper of `E`: its address is that of an `E`, borrowed for
        // as long as `self` is.
        Some(unsafe { &*payload.cast::<E>() })
    }

    /// The record's class name: the event's [`Event::NAME`], or `SpanEnter`, `SpanExit`,
    /// `SpanDrop` for span signals.
    pub fn class_name(&self) -> &'static str {
        match self.kind() {
            RecordKind::Event(e) => e.name(),
            RecordKind::SpanEnter(_) => "SpanEnter",
            RecordKind::SpanExit(_) => "SpanExit",
            RecordKind::SpanDrop(_) => "SpanDrop",
        }
    }

    /// Whether this record is an event (not a span signal).
    #[inline]
    pub fn is_event(&self) -> bool {
        self.0.payload.event_type().is_some()
    }

    /// The record as a JSON object with llama-index's field names.
    ///
    /// Events give `id_`, `timestamp`, `span_id`, `tags`, `class_name`, the event's own fields,
    /// and `dispatcher` and `trace_id`. Span signals give the same envelope with `class_name`
    /// `SpanEnter`/`SpanExit`/`SpanDrop` and their fields (`parent_span_id`, `name`, `args`;
    /// `result` when recorded; `reason`, `err_str`, and `error` when recorded). Envelope fields win over event fields of the same name.
    ///
    /// # Errors
    ///
    /// [`SerializeError`] when the event's `Serialize` implementation fails. An event that
    /// serializes to something other than a JSON object is kept under the key `value`.
    pub fn to_json(&self) -> Result<Map<String, Value>, SerializeError> {
        let mut map = match self.kind() {
            RecordKind::Event(e) => match e.to_json() {
                Ok(Value::Object(map)) => map,
                Ok(Value::Null) => Map::new(),
                Ok(other) => Map::from_iter([("value".to_owned(), other)]),
                Err(source) => {
                    return Err(SerializeError {
                        event: e.name(),
                        source,
                    });
                }
            },
            RecordKind::SpanEnter(s) => {
                let mut m = Map::new();
                m.insert("parent_span_id".into(), json_opt(s.parent));
                m.insert("name".into(), Value::String(s.name.clone().into_owned()));
                m.insert("args".into(), s.args.clone().unwrap_or(Value::Null));
                m
            }
            RecordKind::SpanExit(s) => {
                let mut m = Map::new();
                if let Some(result) = &s.result {
                    m.insert("result".into(), (**result).clone());
                }
                m
            }
            RecordKind::SpanDrop(s) => {
                let mut m = Map::new();
                m.insert("reason".into(), Value::String(format!("{:?}", s.reason)));
                m.insert("err_str".into(), Value::String(s.message.clone()));
                if let Some(error) = &s.error {
                    m.insert("error".into(), (**error).clone());
                }
                m
            }
        };
        map.insert("id_".into(), Value::String(self.0.id.to_string()));
        map.insert(
            "timestamp".into(),
            Value::String(
                self.timestamp()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        );
        map.insert("span_id".into(), json_opt(self.span_id()));
        map.insert(
            "trace_id".into(),
            json_opt(self.span().map(|s| s.trace_id())),
        );
        map.insert(
            "tags".into(),
            Value::Object(
                self.tags()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        );
        map.insert("class_name".into(), Value::String(self.class_name().into()));
        map.insert(
            "dispatcher".into(),
            Value::String(self.0.dispatcher.to_string()),
        );
        Ok(map)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("id", &self.0.id)
            .field("timestamp", &self.timestamp())
            .field("span", &self.span())
            .field("tags", &self.0.tags)
            .field("dispatcher", &self.0.dispatcher)
            .field("kind", &self.kind())
            .finish()
    }
}

fn json_opt<T: fmt::Display>(v: Option<T>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.to_string()))
}

/// A numbered event and its record, for the crate's unit tests.
#[cfg(all(test, not(loom)))]
pub(crate) mod numbered {
    use super::{Record, RecordRef};

    #[derive(serde::Serialize)]
    pub(crate) struct N(pub(crate) u64);

    impl crate::event::Event for N {
        const NAME: &'static str = "N";
    }

    /// A record of event `N(n)`.
    pub(crate) fn rec(n: u64) -> RecordRef {
        Record::event_record(None, None, &"test", N(n))
    }

    /// The number of a record of `N` (`u64::MAX` for any other record).
    pub(crate) fn n(record: &Record) -> u64 {
        record.event::<N>().map_or(u64::MAX, |e| e.0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_leaves_56_bytes_of_event_in_the_smaller_pool_blocks() {
        // 8 bytes of count + 64 of envelope + a 56-byte event = 128 bytes.
        assert_eq!(std::mem::size_of::<RecordBox<()>>(), 64);
        assert_eq!(std::mem::align_of::<RecordBox<()>>(), 8);
        assert_eq!(std::mem::size_of::<shared::Shared<[u64; 7]>>(), 128);
    }

    #[test]
    fn timestamps_and_spans_read_back_as_given() {
        let ctx = SpanContext::new(
            TraceId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677).unwrap(),
            SpanId::from_u64(0xfeed).unwrap(),
        );
        let before = Utc::now();
        let record = Record::alloc(
            Some(ctx),
            None,
            &"t",
            SpanExit {
                id: ctx.span_id(),
                result: None,
            },
        );
        let after = Utc::now();
        assert_eq!(record.span(), Some(ctx));
        assert_eq!(record.span_id(), Some(ctx.span_id()));
        // The record clock agrees with the system clock to within 1 ms (`crate::clock`).
        let slack = chrono::TimeDelta::milliseconds(1);
        assert!(before - slack <= record.timestamp() && record.timestamp() <= after + slack);
        assert_eq!(
            record.timestamp().timestamp_nanos_opt(),
            Some(record.timestamp_nanos() as i64)
        );
        let none = Record::alloc(
            None,
            None,
            &"t",
            SpanExit {
                id: ctx.span_id(),
                result: None,
            },
        );
        assert_eq!(none.span(), None);
        assert_eq!(none.span_id(), None);
        assert_eq!(none.dispatcher(), "t");
    }

    #[test]
    fn an_event_is_read_back_only_as_its_own_type() {
        #[derive(serde::Serialize)]
        struct Other(u64);
        impl Event for Other {
            const NAME: &'static str = "Other";
        }
        // Same layout as `N`, so only the type check tells them apart.
        let record = numbered::rec(7);
        assert!(record.is_event());
        assert_eq!(record.event::<numbered::N>().map(|e| e.0), Some(7));
        assert!(record.event::<Other>().is_none());
        let other = Record::event_record(None, None, &"t", Other(8));
        assert_eq!(other.event::<Other>().map(|e| e.0), Some(8));
        assert!(other.event::<numbered::N>().is_none());
        let id = SpanId::from_u64(1).unwrap();
        let signal = Record::alloc(None, None, &"t", SpanExit { id, result: None });
        assert!(!signal.is_event());
        assert!(signal.event::<numbered::N>().is_none());
    }
}
