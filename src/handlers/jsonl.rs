use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::OutputError;
use crate::handler::Handler;
use crate::handlers::output::OutputStatus;
use crate::handlers::trace_summary::TraceSummaries;
use crate::jsonl::UNSERIALIZABLE_CLASS_NAME;
use crate::llm::Prices;
use crate::record::Record;

/// Writes every record it receives — events and span enter, exit and drop — as one JSON
/// object per line ([`Record::to_json`], llama-index's field names).
///
/// Lines go through a [`BufWriter`]; the buffer is written out at every
/// [`flush`](crate::Dispatcher::flush) barrier and at shutdown, so after `flush().await`
/// returns the file holds every record emitted before it. Read the file back with
/// [`spanbus::jsonl::read`](crate::jsonl::read).
///
/// # Events that cannot be serialized
///
/// An event whose `Serialize` implementation fails is not skipped silently: a line is written
/// in its place with the record's envelope, `class_name` [`UNSERIALIZABLE_CLASS_NAME`],
/// `event_class_name` (the event's own name) and `error` (the serializer's message), and it is
/// counted in [`OutputStatus::unserializable`]. The file thus keeps one line per record, and
/// the gap is visible where it happened.
///
/// # Write failures
///
/// A handler cannot return errors to emitters; failed writes are counted in the
/// [`OutputStatus`] (from [`status`](Self::status)) with the last message. Writing goes on with
/// the next record.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::JsonlHandler;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let path = std::env::temp_dir().join(format!("spanbus-doc-{}.jsonl", std::process::id()));
/// let d = spanbus::Dispatcher::new("app")?;
/// let jsonl = JsonlHandler::create(&path)?;
/// let status = jsonl.status();
/// d.add_handler(jsonl)?;
///
/// d.span("work").in_scope(|| ());
/// d.flush().await;
/// assert_eq!(status.written(), 2); // SpanEnter, SpanExit
///
/// let read = spanbus::jsonl::read(&path)?;
/// assert_eq!(read.records[0].class_name, "SpanEnter");
/// assert!(read.errors.is_empty());
/// # std::fs::remove_file(&path)?;
/// # Ok(())
/// # }
/// ```
pub struct JsonlHandler {
    out: BufWriter<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
    line: Vec<u8>,
    status: OutputStatus,
    summaries: Option<TraceSummaries>,
}

impl std::fmt::Debug for JsonlHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlHandler")
            .field("path", &self.path)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl JsonlHandler {
    /// Creates (or truncates) the file at `path`, creating missing parent directories.
    ///
    /// # Errors
    ///
    /// [`OutputError`] when a directory or the file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<JsonlHandler, OutputError> {
        let path = path.as_ref();
        let error = |source| OutputError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        let file = File::create(path).map_err(error)?;
        let mut handler = JsonlHandler::from_writer(file);
        handler.path = Some(path.to_owned());
        Ok(handler)
    }

    /// Writes to `writer` (a socket, a pipe, an in-memory buffer), buffered.
    pub fn from_writer(writer: impl Write + Send + 'static) -> JsonlHandler {
        JsonlHandler {
            out: BufWriter::with_capacity(64 * 1024, Box::new(writer)),
            path: None,
            line: Vec::with_capacity(512),
            status: OutputStatus::default(),
            summaries: None,
        }
    }

    /// Also writes one summary line per trace, right after the end of its last open span:
    /// `class_name` [`TRACE_SUMMARY_CLASS_NAME`](super::TRACE_SUMMARY_CLASS_NAME), the trace's first span as `span_id` and
    /// `name`, and `duration_ms`, `spans`, `errors`, `cancelled` and `llm` (`calls`,
    /// `input_tokens`, `output_tokens`, `cost` priced with `prices` or `null`, `models`). A span
    /// of the trace entered after that starts a new summary. The record lines are unchanged;
    /// [`jsonl::read`](crate::jsonl::read) reads a summary line as an event record.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::handlers::{JsonlHandler, TRACE_SUMMARY_CLASS_NAME};
    /// use spanbus::llm::Prices;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::env::temp_dir().join(format!("spanbus-sum-{}.jsonl", std::process::id()));
    /// let d = spanbus::Dispatcher::new("app")?;
    /// d.add_handler(JsonlHandler::create(&path)?.with_trace_summaries(Prices::new()))?;
    /// d.span("query").in_scope(|| d.span("step").in_scope(|| ()));
    /// d.flush().await;
    ///
    /// let read = spanbus::jsonl::read(&path)?;
    /// let summary = read.records.last().unwrap();
    /// assert_eq!(summary.class_name, TRACE_SUMMARY_CLASS_NAME);
    /// assert_eq!(summary.fields["name"], "query");
    /// assert_eq!(summary.fields["spans"], 2);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_trace_summaries(mut self, prices: Prices) -> JsonlHandler {
        self.summaries = Some(TraceSummaries::new(prices));
        self
    }

    fn write_line(&mut self, map: &Map<String, Value>) {
        self.line.clear();
        // Serializing a map of JSON values into a Vec cannot fail.
        if serde_json::to_writer(&mut self.line, map).is_err() {
            return;
        }
        self.line.push(b'\n');
        match self.out.write_all(&self.line) {
            Ok(()) => self.status.add_written(1),
            Err(e) => self.fail("could not write to", e),
        }
    }

    /// A handle on what the handler has written and how writing failed; take it before adding
    /// the handler.
    pub fn status(&self) -> OutputStatus {
        self.status.clone()
    }

    fn fail(&self, what: &str, e: std::io::Error) {
        let target = match &self.path {
            Some(p) => p.display().to_string(),
            None => "the JSON Lines writer".to_owned(),
        };
        self.status.add_failure(format!("{what} {target}: {e}"));
    }
}

/// The line written in place of an event that failed to serialize.
fn unserializable_line(
    record: &Record,
    error: &crate::error::SerializeError,
) -> Map<String, Value> {
    let id = |v: Option<String>| v.map_or(Value::Null, Value::String);
    let mut map = Map::new();
    map.insert("id_".into(), Value::String(record.id().to_string()));
    map.insert(
        "timestamp".into(),
        Value::String(
            record
                .timestamp()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    );
    map.insert(
        "span_id".into(),
        id(record.span_id().map(|s| s.to_string())),
    );
    map.insert(
        "trace_id".into(),
        id(record.span().map(|s| s.trace_id().to_string())),
    );
    map.insert(
        "tags".into(),
        Value::Object(
            record
                .tags()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    map.insert(
        "class_name".into(),
        Value::String(UNSERIALIZABLE_CLASS_NAME.into()),
    );
    map.insert(
        "dispatcher".into(),
        Value::String(record.dispatcher().to_owned()),
    );
    map.insert("event_class_name".into(), Value::String(error.event.into()));
    map.insert("error".into(), Value::String(error.source.to_string()));
    map
}

impl Handler for JsonlHandler {
    async fn handle(&mut self, record: &Record) {
        let map = match record.to_json() {
            Ok(map) => map,
            // Only an event's payload can fail to serialize.
            Err(e) => {
                self.status.add_unserializable();
                unserializable_line(record, &e)
            }
        };
        self.write_line(&map);
        if let Some(summary) = self
            .summaries
            .as_mut()
            .and_then(|s| s.observe(record, &map))
        {
            self.write_line(&summary);
        }
    }

    async fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            self.fail("could not flush", e);
        }
    }

    async fn close(&mut self) {
        if let Err(e) = self.out.flush() {
            self.fail("could not flush", e);
        }
    }
}
