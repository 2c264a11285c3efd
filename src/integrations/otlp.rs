//! OTLP export: spanbus spans into any OpenTelemetry backend, with OpenInference attributes so
//! LLM spans render properly in Arize Phoenix (cargo feature `otlp`).
//!
//! # Exporting spans
//!
//! Build an [`OtlpExporter`] and add it to a dispatcher like any handler. It turns every span
//! that closes into an OTLP span and sends batches over OTLP/HTTP (protobuf) from its own
//! task:
//!
//! - ids: the spanbus trace and span ids are the OTel ids (a root spanbus span starts a
//!   trace; a span started under a context [extracted](crate::propagation::extract) from a
//!   `traceparent` keeps the remote caller as its parent);
//! - name, start and end: the span's name and the timestamps of its enter and exit records;
//! - status: `Ok` for an exit; `Error` for a drop, with the drop message (or the reason when
//!   the message is empty) and the attribute `spanbus.drop_reason` (`error`, `panic`,
//!   `cancelled`, `shutdown`), plus an `exception` event;
//! - attributes: captured arguments as `spanbus.args.<name>`, the span's tags under their own
//!   keys (so a tag `session.id` or `user.id` is the OpenInference attribute), the dispatcher as
//!   `spanbus.dispatcher`, and the OpenInference attributes of
//!   [`openinference`](super::openinference) (a tag `openinference.span.kind` overrides the
//!   kind). Non-scalar values are JSON-encoded;
//! - events: every event emitted in the span, named by its class name, with its fields as
//!   attributes (at most [`max_events_per_span`](OtlpExporterBuilder::max_events_per_span);
//!   more are counted as dropped events).
//!
//! # Never blocking the application
//!
//! The handler only converts the span and pushes it into a bounded queue; when the queue is
//! full the span is dropped and counted ([`OtlpStats::dropped`]). The export task retries a
//! failed batch with exponential backoff (from [`initial_backoff`] to [`max_backoff`]) for as
//! long as the endpoint is down, and resumes when it is back. Every span that closes is
//! accounted for exactly once: `exported + dropped + abandoned + pending`.
//!
//! [`initial_backoff`]: OtlpExporterBuilder::initial_backoff
//! [`max_backoff`]: OtlpExporterBuilder::max_backoff
//!
//! Add the exporter with lossless delivery (the default): it needs every enter and exit. A
//! lossy exporter that misses a span's exit keeps that span open until it is closed, and then
//! exports it as dropped by shutdown.
//!
//! # Flush and shutdown
//!
//! spanbus's [`flush`](crate::flush) reaches the exporter's [`Handler::flush`], which waits
//! (at most [`flush_timeout`](OtlpExporterBuilder::flush_timeout)) until every span queued so
//! far has been exported. [`shutdown`](crate::shutdown()) reaches [`Handler::close`]: a final
//! export, retried until [`close_timeout`](OtlpExporterBuilder::close_timeout); what is still
//! not exported then is counted as [`abandoned`](OtlpStats::abandoned).
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use spanbus::integrations::otlp::OtlpExporter;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .endpoint("http://127.0.0.1:6006/v1/traces") // default: $OTEL_EXPORTER_OTLP_ENDPOINT
//!     .project_name("my-rag-app")                  // Phoenix project
//!     .build()?;
//! let stats = exporter.handle();
//! spanbus::get_dispatcher("rag")?.add_handler(exporter)?;
//!
//! // ... run the pipeline ...
//!
//! spanbus::shutdown(Duration::from_secs(10)).await;
//! println!("{:?}", stats.stats());
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event as OtelEvent, SpanContext as OtelSpanContext, SpanId as OtelSpanId, SpanKind, Status,
    TraceFlags, TraceId as OtelTraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value as OtelValue};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::openinference::{OpenInference, SPAN_KIND};
use crate::context::SpanContext;
use crate::context::Tags;
use crate::error::OtlpError;
use crate::handler::Handler;
use crate::id::SpanId;
use crate::record::{DropReason, Record, RecordKind};

/// The environment variable with the base URL of an OTLP endpoint (`/v1/traces` is appended).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The environment variable with the full URL of an OTLP traces endpoint (used as is).
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The endpoint used when nothing is configured (the OTLP/HTTP default).
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// The resource attribute Phoenix reads the project name from.
pub const PROJECT_NAME_ATTRIBUTE: &str = "openinference.project.name";

/// The traces URL for an OTLP base URL, as the OpenTelemetry spec says for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: `/v1/traces` appended to the path (without doubling a slash).
///
/// # Examples
///
/// ```
/// use spanbus::integrations::otlp::traces_endpoint;
///
/// assert_eq!(traces_endpoint("http://127.0.0.1:6006"), "http://127.0.0.1:6006/v1/traces");
/// assert_eq!(traces_endpoint("http://collector:4318/"), "http://collector:4318/v1/traces");
/// assert_eq!(traces_endpoint("http://gw/otlp"), "http://gw/otlp/v1/traces");
/// ```
pub fn traces_endpoint(base: &str) -> String {
    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
}

/// The endpoint from the environment: [`TRACES_ENDPOINT_ENV`] as is, else
/// [`ENDPOINT_ENV`] with `/v1/traces` appended, else `None`.
pub fn endpoint_from_env() -> Option<String> {
    let var = |k| {
        std::env::var(k)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    var(TRACES_ENDPOINT_ENV)
        .map(|v| v.trim().to_owned())
        .or_else(|| var(ENDPOINT_ENV).map(|v| traces_endpoint(&v)))
}

/// Settings of an [`OtlpExporter`]; start with [`OtlpExporter::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build() to make the exporter"]
pub struct OtlpExporterBuilder {
    endpoint: Option<String>,
    project_name: Option<String>,
    service_name: String,
    headers: HashMap<String, String>,
    batch_size: usize,
    queue_capacity: usize,
    scheduled_delay: Duration,
    export_timeout: Duration,
    flush_timeout: Duration,
    close_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_events_per_span: usize,
}

impl Default for OtlpExporterBuilder {
    fn default() -> Self {
        OtlpExporterBuilder {
            endpoint: None,
            project_name: None,
            service_name: "spanbus".into(),
            headers: HashMap::new(),
            batch_size: 512,
            queue_capacity: 4096,
            scheduled_delay: Duration::from_millis(500),
            export_timeout: Duration::from_secs(10),
            flush_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_events_per_span: 128,
        }
    }
}

impl OtlpExporterBuilder {
    /// The full traces URL, used as is (for example `http://127.0.0.1:6006/v1/traces`).
    /// Default: [`endpoint_from_env`], else [`DEFAULT_ENDPOINT`].
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The Phoenix project, sent as the resource attribute `openinference.project.name`.
    /// Default: none (Phoenix puts the spans in its `default` project).
    pub fn project_name(mut self, name: impl Into<String>) -> Self {
        self.project_name = Some(name.into());
        self
    }

    /// The resource's `service.name`. Default `spanbus`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// An HTTP header sent with every export request (for example an API key).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The most spans in one export request. Default 512.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// How many closed spans may wait for export; more are dropped and counted. Default 4096.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// How long a partial batch waits for more spans before it is sent. Default 500 ms.
    pub fn scheduled_delay(mut self, d: Duration) -> Self {
        self.scheduled_delay = d;
        self
    }

    /// The timeout of one export request. Default 10 s.
    pub fn export_timeout(mut self, d: Duration) -> Self {
        self.export_timeout = d;
        self
    }

    /// How long a flush waits for the queued spans to be exported. Default 5 s.
    pub fn flush_timeout(mut self, d: Duration) -> Self {
        self.flush_timeout = d;
        self
    }

    /// How long the final export at shutdown may take, retries included. Default 5 s.
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// The wait before the first retry of a failed batch; it doubles on each failure. Default
    /// 100 ms.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self
    }

    /// The longest wait between retries. Default 5 s.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// The most span events exported per span (the rest are counted as dropped events).
    /// Default 128.
    pub fn max_events_per_span(mut self, n: usize) -> Self {
        self.max_events_per_span = n;
        self
    }

    /// Builds the exporter and starts its export task.
    ///
    /// # Errors
    ///
    /// [`OtlpError::NoRuntime`] outside a tokio runtime, [`OtlpError::InvalidConfig`] for a
    /// zero batch size or queue capacity, [`OtlpError::Build`] when the OTLP client cannot be
    /// built (for example a malformed endpoint).
    pub fn build(self) -> Result<OtlpExporter, OtlpError> {
        if self.batch_size == 0 {
            return Err(OtlpError::InvalidConfig("batch_size must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(OtlpError::InvalidConfig(
                "queue_capacity must be at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
        let endpoint = self
            .endpoint
            .clone()
            .or_else(endpoint_from_env)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .with_timeout(self.export_timeout)
            .with_headers(self.headers.clone())
            // spanbus retries itself, with its own backoff and counters.
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .map_err(|e| OtlpError::Build(e.to_string()))?;
        let mut resource = Resource::builder_empty().with_service_name(self.service_name.clone());
        if let Some(p) = &self.project_name {
            resource = resource.with_attribute(KeyValue::new(PROJECT_NAME_ATTRIBUTE, p.clone()));
        }
        exporter.set_resource(&resource.build());

        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let (control, control_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        runtime.spawn(export_task(
            exporter,
            rx,
            control_rx,
            shared.clone(),
            self.clone(),
        ));
        Ok(OtlpExporter {
            open: HashMap::new(),
            tx,
            control,
            shared,
            enqueued: 0,
            endpoint,
            scope: InstrumentationScope::builder("spanbus")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            config: self,
        })
    }
}

/// Counters of an [`OtlpExporter`], read through an [`OtlpHandle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpStats {
    /// Spans the endpoint accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the endpoint slow or down).
    pub dropped: u64,
    /// Spans still not exported when the close deadline passed.
    pub abandoned: u64,
    /// Spans queued or in a batch being (re)tried.
    pub pending: u64,
    /// Export requests that failed (each failed attempt counts once).
    pub failed_batches: u64,
    /// Export requests that retried a batch after a failure.
    pub retries: u64,
}

/// Reads an exporter's counters after the exporter was moved into its handler task.
#[derive(Debug, Clone)]
pub struct OtlpHandle {
    shared: Arc<Shared>,
    endpoint: Arc<str>,
}

impl OtlpHandle {
    /// The counters now.
    pub fn stats(&self) -> OtlpStats {
        let s = &self.shared;
        let exported = s.exported.load(Ordering::Acquire);
        let abandoned = s.abandoned.load(Ordering::Acquire);
        OtlpStats {
            exported,
            dropped: s.dropped.load(Ordering::Acquire),
            abandoned,
            pending: s
                .enqueued
                .load(Ordering::Acquire)
                .saturating_sub(exported + abandoned),
            failed_batches: s.failed.load(Ordering::Acquire),
            retries: s.retries.load(Ordering::Acquire),
        }
    }

    /// The message of the most recent failed export, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }

    /// The traces URL the exporter sends to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

#[derive(Debug, Default)]
struct Shared {
    enqueued: AtomicU64,
    exported: AtomicU64,
    dropped: AtomicU64,
    abandoned: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    last_error: Mutex<Option<String>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Shared {}
impl std::panic::RefUnwindSafe for Shared {}

/// A [`Handler`] that exports closed spans over OTLP/HTTP. See [the module docs](self).
pub struct OtlpExporter {
    open: HashMap<SpanId, OpenSpan>,
    tx: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
    enqueued: u64,
    endpoint: String,
    scope: InstrumentationScope,
    config: OtlpExporterBuilder,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field("open_spans", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Settings with their defaults.
    pub fn builder() -> OtlpExporterBuilder {
        OtlpExporterBuilder::default()
    }

    /// A handle to read the counters once the exporter has been added to a dispatcher.
    pub fn handle(&self) -> OtlpHandle {
        OtlpHandle {
            shared: self.shared.clone(),
            endpoint: self.endpoint.as_str().into(),
        }
    }

    fn finish(&mut self, id: SpanId, end: &Record, outcome: Result<(), (DropReason, &str)>) {
        let Some(open) = self.open.remove(&id) else {
            return;
        };
        let span = to_span_data(open, end.timestamp().into(), outcome, &self.scope);
        self.enqueue(span);
    }

    fn enqueue(&mut self, span: SpanData) {
        match self.tx.try_send(span) {
            Ok(()) => {
                self.enqueued += 1;
                self.shared.enqueued.fetch_add(1, Ordering::AcqRel);
            }
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// One span the exporter has seen enter and not yet end.
struct OpenSpan {
    span: SpanContext,
    parent: Option<SpanId>,
    name: Cow<'static, str>,
    start: SystemTime,
    args: Option<Value>,
    tags: Tags,
    dispatcher: String,
    events: Vec<OtelEvent>,
    dropped_events: u32,
    max_events: usize,
    semantics: OpenInference,
}

impl Handler for OtlpExporter {
    async fn handle(&mut self, record: &Record) {
        match record.kind() {
            RecordKind::SpanEnter(enter) => {
                let Some(span) = record.span() else { return };
                self.open.entry(enter.id).or_insert_with(|| OpenSpan {
                    span,
                    parent: enter.parent,
                    name: enter.name.clone(),
                    start: record.timestamp().into(),
                    args: enter.args.clone(),
                    tags: record.tags().clone(),
                    dispatcher: record.dispatcher().to_owned(),
                    events: Vec::new(),
                    dropped_events: 0,
                    max_events: self.config.max_events_per_span,
                    semantics: OpenInference::default(),
                });
            }
            RecordKind::SpanExit(exit) => self.finish(exit.id, record, Ok(())),
            RecordKind::SpanDrop(drop) => {
                self.finish(drop.id, record, Err((drop.reason, &drop.message)))
            }
            RecordKind::Event(event) => {
                let Some(open) = record.span_id().and_then(|id| self.open.get_mut(&id)) else {
                    return;
                };
                let fields = match event.to_json() {
                    Ok(Value::Object(map)) => map,
                    Ok(Value::Null) | Err(_) => Map::new(),
                    Ok(other) => Map::from_iter([("value".to_owned(), other)]),
                };
                open.semantics.observe(record.class_name(), &fields);
                if open.events.len() < open.max_events {
                    let attributes = fields.iter().map(|(k, v)| attribute(k, v)).collect();
                    open.events.push(OtelEvent::new(
                        record.class_name(),
                        record.timestamp().into(),
                        attributes,
                        0,
                    ));
                } else {
                    open.dropped_events += 1;
                }
            }
        }
    }

    async fn flush(&mut self) {
        let (ack, done) = oneshot::channel();
        if self
            .control
            .send(Control::Flush {
                upto: self.enqueued,
                ack,
            })
            .is_ok()
        {
            let _ = tokio::time::timeout(self.config.flush_timeout, done).await;
        }
    }

    async fn close(&mut self) {
        // Spans still open here never got a drop record (they were entered before the
        // exporter was added to a dispatcher that then shut down, or the dispatcher skipped
        // them): export them as dropped by shutdown so they are not lost.
        let now = SystemTime::now();
        for (_, open) in std::mem::take(&mut self.open) {
            let span = to_span_data(open, now, Err((DropReason::Shutdown, "")), &self.scope);
            self.enqueue(span);
        }
        let (ack, done) = oneshot::channel();
        let deadline = Instant::now() + self.config.close_timeout;
        if self.control.send(Control::Close { deadline, ack }).is_ok() {
            let _ = tokio::time::timeout_at(deadline + Duration::from_millis(100), done).await;
        }
    }
}

/// A JSON value as an OTel attribute value: scalars as themselves, the rest JSON-encoded.
/// NUL characters are replaced (some backends cannot store them).
pub fn attribute_value(v: &Value) -> OtelValue {
    let clean = |s: &str| {
        if s.contains('\0') {
            s.replace('\0', "\u{fffd}")
        } else {
            s.to_owned()
        }
    };
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            (None, None) => n.to_string().into(),
        },
        Value::String(s) => clean(s).into(),
        Value::Null => "null".into(),
        other => clean(&other.to_string()).into(),
    }
}

fn attribute(key: &str, v: &Value) -> KeyValue {
    KeyValue::new(key.to_owned(), attribute_value(v))
}

/// Builds the OTel span of a closed spanbus span.
fn to_span_data(
    open: OpenSpan,
    end: SystemTime,
    outcome: Result<(), (DropReason, &str)>,
    scope: &InstrumentationScope,
) -> SpanData {
    let mut attributes: Vec<KeyValue> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |attrs: &mut Vec<KeyValue>, key: String, value: OtelValue| {
        if seen.insert(key.clone()) {
            attrs.push(KeyValue::new(key, value));
        }
    };
    let kind = open
        .tags
        .get(SPAN_KIND)
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| open.semantics.kind().to_owned());
    push(&mut attributes, SPAN_KIND.into(), kind.into());
    for (k, v) in open.semantics.attributes() {
        push(&mut attributes, k, attribute_value(&v));
    }
    match &open.args {
        Some(Value::Object(args)) => {
            for (k, v) in args {
                push(
                    &mut attributes,
                    format!("spanbus.args.{k}"),
                    attribute_value(v),
                );
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => push(
            &mut attributes,
            "spanbus.args".into(),
            attribute_value(other),
        ),
    }
    if !open.semantics.has_input()
        && let Some(args) = open.args.as_ref().filter(|a| !a.is_null())
    {
        push(
            &mut attributes,
            "input.value".into(),
            args.to_string().into(),
        );
        push(
            &mut attributes,
            "input.mime_type".into(),
            "application/json".into(),
        );
    }
    for (k, v) in &open.tags {
        push(&mut attributes, k.clone(), attribute_value(v));
    }
    push(
        &mut attributes,
        "spanbus.dispatcher".into(),
        open.dispatcher.into(),
    );
    let mut events = open.events;
    let status = match outcome {
        Ok(()) => Status::Ok,
        Err((reason, message)) => {
            push(
                &mut attributes,
                "spanbus.drop_reason".into(),
                reason.to_string().into(),
            );
            let text = if message.is_empty() {
                format!("span {reason}")
            } else {
                message.to_owned()
            };
            events.push(OtelEvent::new(
                "exception",
                end,
                vec![
                    KeyValue::new("exception.type", reason.to_string()),
                    KeyValue::new("exception.message", text.clone()),
                ],
                0,
            ));
            Status::error(text)
        }
    };
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    span_events.dropped_count = open.dropped_events;
    SpanData {
        span_context: OtelSpanContext::new(
            OtelTraceId::from(open.span.trace_id().to_u128()),
            OtelSpanId::from(open.span.span_id().to_u64()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: open
            .parent
            .map_or(OtelSpanId::INVALID, |p| OtelSpanId::from(p.to_u64())),
        parent_span_is_remote: false,
        span_kind: SpanKind::Internal,
        name: open.name,
        start_time: open.start,
        end_time: end.max(open.start),
        attributes,
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

enum Control {
    /// Ack once the first `upto` spans ever queued have left the pipeline.
    Flush { upto: u64, ack: oneshot::Sender<()> },
    /// Export what is left, retrying until `deadline`, then stop.
    Close {
        deadline: Instant,
        ack: oneshot::Sender<()>,
    },
}

/// The export task: batches from the queue, exports, retries with backoff.
async fn export_task(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    shared: Arc<Shared>,
    cfg: OtlpExporterBuilder,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(cfg.batch_size);
    // Spans taken from the queue, and spans that left the pipeline, since the start (both in
    // queue order), for flush acknowledgements.
    let mut taken: u64 = 0;
    let mut done: u64 = 0;
    let mut flushes: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
    let mut closing: Option<(Instant, oneshot::Sender<()>)> = None;
    let mut backoff = cfg.initial_backoff;
    let mut retry_at: Option<Instant> = None;
    let mut batch_since: Option<Instant> = None;
    let mut failed_before = false;
    let mut data_open = true;
    let mut control_open = true;
    loop {
        while data_open && batch.len() < cfg.batch_size {
            match rx.try_recv() {
                Ok(span) => {
                    batch.push(span);
                    taken += 1;
                    batch_since.get_or_insert_with(Instant::now);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => data_open = false,
            }
        }
        let mut i = 0;
        while i < flushes.len() {
            if flushes[i].0 <= done {
                let _ = flushes.swap_remove(i).1.send(());
            } else {
                i += 1;
            }
        }
        let now = Instant::now();
        if let Some((deadline, _)) = &closing
            && now >= *deadline
        {
            let mut left = batch.len() as u64;
            batch.clear();
            while rx.try_recv().is_ok() {
                left += 1;
            }
            shared.abandoned.fetch_add(left, Ordering::AcqRel);
            break;
        }
        let urgent = batch.len() >= cfg.batch_size
            || !flushes.is_empty()
            || closing.is_some()
            || !data_open
            || !control_open;
        let due = batch_since.map(|t| t + cfg.scheduled_delay);
        let may_try = retry_at.is_none_or(|t| now >= t);
        if !batch.is_empty() && may_try && (urgent || due.is_some_and(|d| now >= d)) {
            let mut until = now + cfg.export_timeout;
            if let Some((deadline, _)) = &closing {
                until = until.min(*deadline);
            }
            if failed_before {
                shared.retries.fetch_add(1, Ordering::AcqRel);
            }
            let n = batch.len() as u64;
            let result = tokio::time::timeout_at(until, exporter.export(batch.clone())).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("export timed out".to_owned()),
            };
            match error {
                None => {
                    shared.exported.fetch_add(n, Ordering::AcqRel);
                    done += n;
                    batch.clear();
                    batch_since = None;
                    retry_at = None;
                    failed_before = false;
                    backoff = cfg.initial_backoff;
                }
                Some(e) => {
                    shared.failed.fetch_add(1, Ordering::AcqRel);
                    *shared.last_error.lock() = Some(e);
                    failed_before = true;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
            continue;
        }
        if batch.is_empty() && done == taken && (closing.is_some() || (!data_open && !control_open))
        {
            break;
        }
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        if !batch.is_empty() {
            match retry_at {
                Some(t) => at(t),
                None => {
                    if let Some(d) = due {
                        at(d);
                    }
                }
            }
        }
        if let Some((deadline, _)) = &closing {
            at(*deadline);
        }
        let room = data_open && batch.len() < cfg.batch_size;
        tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(Control::Flush { upto, ack }) => flushes.push((upto, ack)),
                Some(Control::Close { deadline, ack }) => {
                    // One immediate attempt at close, whatever the backoff.
                    retry_at = None;
                    closing = Some((deadline, ack));
                }
                None => control_open = false,
            },
            span = rx.recv(), if room => match span {
                Some(span) => {
                    batch.push(span);
                    taken += 1;
                    batch_since.get_or_insert_with(Instant::now);
                }
                None => data_open = false,
            },
            () = sleep_until_opt(wake) => {}
        }
    }
    for (_, ack) in flushes.drain(..) {
        let _ = ack.send(());
    }
    let _ = exporter.shutdown();
    if let Some((_, ack)) = closing {
        let _ = ack.send(());
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_become_scalar_or_json_text_attributes() {
        assert_eq!(attribute_value(&serde_json::json!(3)), OtelValue::I64(3));
        assert_eq!(
            attribute_value(&serde_json::json!(0.5)),
            OtelValue::F64(0.5)
        );
        assert_eq!(
            attribute_value(&serde_json::json!(true)),
            OtelValue::Bool(true)
        );
        assert_eq!(
            attribute_value(&serde_json::json!("a\0b")),
            "a\u{fffd}b".into()
        );
        assert_eq!(
            attribute_value(&serde_json::json!({"k": [1, 2]})),
            r#"{"k":[1,2]}"#.into()
        );
    }
}
