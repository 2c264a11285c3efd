//! Reading JSON Lines files written by [`JsonlHandler`](crate::handlers::JsonlHandler).
//!
//! Each line is one record's [`to_json`](crate::Record::to_json) form: llama-index's envelope
//! (`id_`, `timestamp`, `span_id`, `tags`, `class_name`) plus `trace_id`, `dispatcher` and the
//! event's own fields, or the fields of a span signal (`SpanEnter`, `SpanExit`, `SpanDrop`).
//! [`read`] and [`from_reader`] load such a file back into [`JsonRecord`]s.
//!
//! A malformed line does not stop the reading: it is reported as a [`LineError`] with its
//! 1-based line number, and every good line is still returned. Blank lines are skipped. Only
//! failing to open or read the file is an error ([`JsonlError`]).
//!
//! # Examples
//!
//! ```
//! use spanbus::jsonl::{self, JsonKind};
//!
//! let text = r#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00.000001Z","span_id":"00f067aa0ba902b7","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","tags":{},"class_name":"SpanExit","dispatcher":"app"}
//! not json
//! {"id_":"67e55044-10b1-426f-9247-bb680e5fe0c9","timestamp":"2026-01-01T00:00:00.000002Z","span_id":null,"tags":{"user":"ada"},"class_name":"QueryStartEvent","query":"hi"}
//! "#;
//! let read = jsonl::from_reader(text.as_bytes())?;
//! assert_eq!(read.records.len(), 2);
//! assert!(matches!(read.records[0].kind, JsonKind::SpanExit(_)));
//! assert_eq!(read.records[1].fields["query"], "hi");
//! assert_eq!(read.errors.len(), 1);
//! assert_eq!(read.errors[0].line, 2);
//! # Ok::<(), spanbus::error::JsonlError>(())
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{DeserializeOwned, Error as _};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::context::Tags;
use crate::error::{JsonlError, LineError};
use crate::id::{SpanId, TraceId};
use crate::record::{DropReason, SpanDrop, SpanEnter, SpanExit};

/// The `class_name` of the line [`JsonlHandler`](crate::handlers::JsonlHandler) writes in place
/// of an event whose payload failed to serialize. The line carries the envelope, the event's
/// own name under `event_class_name` and the serializer's message under `error`.
pub const UNSERIALIZABLE_CLASS_NAME: &str = "UnserializableEvent";

/// One record read back from a JSON Lines file.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRecord {
    /// The record's id (`id_`).
    pub id: Uuid,
    /// When it was emitted (`timestamp`). A timestamp without a zone, as llama-index writes
    /// them, is taken as UTC.
    pub timestamp: DateTime<Utc>,
    /// The span it belongs to (`span_id`).
    pub span_id: Option<SpanId>,
    /// The span's trace (`trace_id`).
    pub trace_id: Option<TraceId>,
    /// The tags (`tags`; empty when absent).
    pub tags: Tags,
    /// The event's name, or `SpanEnter`, `SpanExit`, `SpanDrop` (`class_name`).
    pub class_name: String,
    /// The dispatcher that emitted it (`dispatcher`), when the line names one.
    pub dispatcher: Option<String>,
    /// Whether it is an event or a span signal, with the signal parsed.
    pub kind: JsonKind,
    /// Every other field: the event's own fields, or the span signal's raw fields.
    pub fields: Map<String, Value>,
}

/// What a [`JsonRecord`] is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JsonKind {
    /// An event; its fields are in [`JsonRecord::fields`].
    Event,
    /// A span was entered.
    SpanEnter(SpanEnter),
    /// A span ended normally.
    SpanExit(SpanExit),
    /// A span ended abnormally.
    SpanDrop(SpanDrop),
}

impl JsonRecord {
    /// Parses one line.
    ///
    /// # Errors
    ///
    /// When the line is not a JSON object, lacks `id_`, `timestamp` or `class_name`, has a
    /// malformed id or timestamp, or is a span signal without its fields.
    pub fn parse(line: &[u8]) -> Result<JsonRecord, serde_json::Error> {
        let mut map: Map<String, Value> = serde_json::from_slice(line)?;
        let id = take_str(&mut map, "id_")?;
        let id = Uuid::parse_str(&id)
            .map_err(|e| serde_json::Error::custom(format!("invalid id_ {id:?}: {e}")))?;
        let timestamp = parse_timestamp(&take_str(&mut map, "timestamp")?)?;
        let span_id = take_id::<SpanId>(&mut map, "span_id")?;
        let trace_id = take_id::<TraceId>(&mut map, "trace_id")?;
        let tags = match map.remove("tags") {
            None | Some(Value::Null) => Tags::new(),
            Some(Value::Object(tags)) => tags.into_iter().collect(),
            Some(other) => {
                return Err(serde_json::Error::custom(format!(
                    "tags must be an object, found {other}"
                )));
            }
        };
        let class_name = take_str(&mut map, "class_name")?;
        let dispatcher = match map.remove("dispatcher") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                return Err(serde_json::Error::custom(format!(
                    "dispatcher must be a string, found {other}"
                )));
            }
        };
        let signal_id = || {
            span_id.ok_or_else(|| {
                serde_json::Error::custom(format!("a {class_name} record needs a span_id"))
            })
        };
        let kind = match class_name.as_str() {
            "SpanEnter" => JsonKind::SpanEnter(SpanEnter {
                id: signal_id()?,
                parent: match map.get("parent_span_id") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(SpanId::deserialize_value(v)?),
                },
                name: match map.get("name") {
                    Some(Value::String(s)) => s.clone().into(),
                    _ => return Err(serde_json::Error::missing_field("name")),
                },
                args: map.get("args").filter(|v| !v.is_null()).cloned(),
            }),
            "SpanExit" => JsonKind::SpanExit(SpanExit {
                id: signal_id()?,
                result: recorded(&map, "result"),
            }),
            "SpanDrop" => JsonKind::SpanDrop(SpanDrop {
                id: signal_id()?,
                reason: DropReason::deserialize_value(
                    map.get("reason")
                        .ok_or_else(|| serde_json::Error::missing_field("reason"))?,
                )?,
                message: match map.get("err_str") {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => {
                        return Err(serde_json::Error::custom(format!(
                            "err_str must be a string, found {other}"
                        )));
                    }
                },
                error: recorded(&map, "error"),
            }),
            _ => JsonKind::Event,
        };
        Ok(JsonRecord {
            id,
            timestamp,
            span_id,
            trace_id,
            tags,
            class_name,
            dispatcher,
            kind,
            fields: map,
        })
    }

    /// Whether the record is an event (not a span signal).
    pub fn is_event(&self) -> bool {
        matches!(self.kind, JsonKind::Event)
    }

    /// The event's fields as a typed event, such as a catalog event of
    /// [`spanbus::events`](crate::events).
    ///
    /// # Errors
    ///
    /// When the fields do not match `E`.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::events::QueryStartEvent;
    /// use spanbus::jsonl::JsonRecord;
    ///
    /// let line = br#"{"id_":"67e55044-10b1-426f-9247-bb680e5fe0c8","timestamp":"2026-01-01T00:00:00Z","class_name":"QueryStartEvent","query":"hi"}"#;
    /// let event: QueryStartEvent = JsonRecord::parse(line)?.event()?;
    /// assert_eq!(event.query, "hi");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn event<E: DeserializeOwned>(&self) -> Result<E, serde_json::Error> {
        E::deserialize(&Value::Object(self.fields.clone()))
    }
}

/// The records of a JSON Lines file and its malformed lines.
#[derive(Debug, Default)]
pub struct JsonlContents {
    /// The records of the good lines, in file order.
    pub records: Vec<JsonRecord>,
    /// One error per malformed line, in file order.
    pub errors: Vec<LineError>,
}

/// Reads the JSON Lines file at `path`.
///
/// # Errors
///
/// [`JsonlError::Open`] when the file cannot be opened, [`JsonlError::Read`] when reading
/// fails part-way. Malformed lines are not errors: they are in [`JsonlContents::errors`].
pub fn read(path: impl AsRef<Path>) -> Result<JsonlContents, JsonlError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| JsonlError::Open {
        path: path.to_owned(),
        source,
    })?;
    from_reader(BufReader::new(file))
}

/// Reads JSON Lines from `reader`.
///
/// # Errors
///
/// [`JsonlError::Read`] when reading fails part-way. Malformed lines (including lines that are
/// not UTF-8) are in [`JsonlContents::errors`].
pub fn from_reader(mut reader: impl BufRead) -> Result<JsonlContents, JsonlError> {
    let mut out = JsonlContents::default();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        line += 1;
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| JsonlError::Read { line, source })?;
        if n == 0 {
            return Ok(out);
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match JsonRecord::parse(&buf) {
            Ok(record) => out.records.push(record),
            Err(source) => out.errors.push(LineError { line, source }),
        }
    }
}

/// A recorded value (`result`, `error`) of a span signal; `null` or absent is none.
fn recorded(map: &Map<String, Value>, key: &str) -> Option<Box<Value>> {
    map.get(key).filter(|v| !v.is_null()).cloned().map(Box::new)
}

fn take_str(map: &mut Map<String, Value>, key: &'static str) -> Result<String, serde_json::Error> {
    match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(serde_json::Error::missing_field(key)),
        Some(other) => Err(serde_json::Error::custom(format!(
            "{key} must be a string, found {other}"
        ))),
    }
}

fn take_id<T: std::str::FromStr>(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<T>, serde_json::Error>
where
    T::Err: std::fmt::Display,
{
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|e| serde_json::Error::custom(format!("{key}: {e}"))),
        Some(other) => Err(serde_json::Error::custom(format!(
            "{key} must be a string, found {other}"
        ))),
    }
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, serde_json::Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| serde_json::Error::custom(format!("invalid timestamp {s:?}: {e}")))
}

/// `T::deserialize(&Value)` with serde_json's error type.
trait FromValue: Sized {
    fn deserialize_value(v: &Value) -> Result<Self, serde_json::Error>;
}

impl<T: DeserializeOwned> FromValue for T {
    fn deserialize_value(v: &Value) -> Result<Self, serde_json::Error> {
        T::deserialize(v)
    }
}
