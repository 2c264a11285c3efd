//! OTLP export: spanbus spans into any OpenTelemetry backend, with the OpenTelemetry GenAI
//! attributes (`gen_ai.*`: Langfuse, MLflow, Datadog, Grafana, …) and the OpenInference ones (so
//! LLM spans render properly in Arize Phoenix) (cargo feature `otlp`).
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
//! - name, start and end: the span's name (or the GenAI conventions' name, below) and the
//!   timestamps of its enter and exit records;
//! - status: `Ok` for an exit; `Error` for a drop, with the drop message (or the reason when
//!   the message is empty) and the attribute `spanbus.drop_reason` (`error`, `panic`,
//!   `cancelled`, `shutdown`), plus an `exception` event;
//! - attributes: the conventions' (below); the captured arguments, **once**: as `input.value`
//!   (their JSON object, `input.mime_type` `application/json`) when the span's events give no
//!   input of their own, else as `spanbus.args.<name>` beside the events' input; the value
//!   `#[span(ret)]` recorded as `output.value` unless the events give an output; the span's
//!   tags under their own keys (so a tag `session.id` or `user.id` is the OpenInference
//!   attribute); the dispatcher as `spanbus.dispatcher`. Non-scalar values are JSON-encoded;
//! - events: every event emitted in the span, named by its class name, with its fields as
//!   attributes (at most [`max_events_per_span`](OtlpExporterBuilder::max_events_per_span);
//!   more are counted as dropped events).
//!
//! # Conventions
//!
//! [`conventions`](OtlpExporterBuilder::conventions) chooses what the spans say; the default,
//! [`Conventions::Both`], writes both:
//!
//! - **GenAI** ([`genai`](crate::integrations::genai)): an LLM, embedding, retrieval, rerank,
//!   tool or agent span gets `gen_ai.operation.name`, `gen_ai.provider.name`, request and
//!   response model, token counts (cache-read and reasoning ones when the provider gives
//!   them), finish reasons, tool name and call id, …; it is named `{operation} {model}`
//!   (`chat gpt-4o-mini`, `execute_tool search`) with its spanbus name kept in
//!   [`spanbus.span.name`](SPAN_NAME), and its span kind is CLIENT for calls out of the
//!   process (model calls, embeddings, retrievals, rerankings), INTERNAL otherwise. The names
//!   follow `OTEL_SEMCONV_STABILITY_OPT_IN` (the pinned v1.41.1, or the latest experimental
//!   names with `gen_ai_latest_experimental`), or
//!   [`semconv_version`](OtlpExporterBuilder::semconv_version);
//! - **OpenInference** ([`openinference`](crate::integrations::openinference)):
//!   `openinference.span.kind` (a tag `openinference.span.kind` overrides the kind, for both
//!   conventions), `llm.*`, `retrieval.documents.*`, `input.value`, ….
//!
//! # Content
//!
//! Message content leaves the process **only when it is captured**:
//! [`capture_content(true)`](OtlpExporterBuilder::capture_content), or
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` ([`CAPTURE_CONTENT_ENV`]) when the
//! builder does not say. Content is every attribute [`is_content`](crate::integrations::genai::is_content)
//! names — prompts and responses (`llm.input_messages.*`, `gen_ai.input.messages`,
//! `input.value`, `output.value`, …), tool arguments and results, retrieved, reranked and
//! embedded text and document metadata, the retrieval query, the captured arguments
//! (`spanbus.args.*`) and return value — and every field of a span event that is not a number
//! or a boolean. Counts, models, timings, names, ids, scores, tags, statuses and error
//! messages are always exported.
//!
//! Captured content passes the [redaction hook](OtlpExporterBuilder::redact) when there is
//! one (it rewrites a value or removes it). Then every attribute value, content or not, is held
//! to [`max_attribute_bytes`](OtlpExporterBuilder::max_attribute_bytes) (64 KiB by default):
//! a longer one is cut and marked `…[truncated N bytes]`.
//!
//! # Never blocking the application
//!
//! The handler only converts the span and pushes it into a bounded queue; when the queue is
//! full the span is dropped and counted ([`OtlpStats::dropped`]). The export task sends one
//! batch at a time and acts on the endpoint's answer:
//!
//! - **accepted** (2xx): counted in [`OtlpStats::exported`];
//! - **maybe later** (no answer, a request timeout, `408`, `429`, 5xx): the batch is retried
//!   with exponential backoff (from [`initial_backoff`] to [`max_backoff`]) for as long as the
//!   endpoint is down, and export resumes when it is back. A `Retry-After` on the answer
//!   (seconds or an HTTP date, at most 10 minutes) holds the next attempt back at least that
//!   long, even at close (where the close deadline still ends the wait);
//! - **too large** (`413`): the batch is split in halves, each sent on its own, down to single
//!   spans; a span still too large alone is dropped. So one huge span costs only itself;
//! - **rejected for good** (`400` and every other 4xx): the batch is dropped, never retried,
//!   and the next batch goes out.
//!
//! What is dropped is counted by reason in [`OtlpStats::rejections`], and
//! [`OtlpHandle::last_error`] tells the latest failure with its HTTP status. Every span that
//! closes is accounted for exactly once:
//! `exported + dropped + rejected + abandoned + pending`.
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
//! spanbus's [`flush`](crate::flush) reaches the exporter's [`Handler::flush`](crate::Handler::flush), which waits
//! (at most [`flush_timeout`](OtlpExporterBuilder::flush_timeout)) until every span queued so
//! far has been exported or rejected. [`shutdown`](crate::shutdown()) runs a last flush and
//! then [`Handler::close`](crate::Handler::close): a final export, retried until the close
//! deadline; what is still not exported then is counted as
//! [`abandoned`](OtlpStats::abandoned), so [`pending`](OtlpStats::pending) is 0 once the
//! exporter is closed.
//!
//! The last flush and the close share **one** deadline, fixed when the first of them starts:
//! [`close_timeout`](OtlpExporterBuilder::close_timeout) from then and, during a shutdown, a
//! little before the shutdown's own deadline (read with
//! [`close_deadline`](crate::handler::close_deadline); the margin is a tenth of the time left,
//! at most 100 ms). So `shutdown(Duration::from_secs(3))` with the endpoint down returns in
//! about 2.9 s with the exporter reported closed, not timed out. A request in flight at the
//! deadline is cut off. When the close returns, the export task has ended: no request goes out
//! after it. An exporter dropped without being closed stops its export task the same way.
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
//!     .capture_content(true)                        // prompts and responses too
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

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use std::time::Duration;

use futures::FutureExt;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanExporter as _;
use tokio::sync::mpsc;

use crate::error::OtlpError;

mod client;
mod export_task;
mod exporter;
mod policy;
mod span_data;

use client::RecordingClient;
use export_task::Shared;
use export_task::export_task;
pub use exporter::{OtlpExporter, OtlpHandle, OtlpRejections, OtlpStats};
pub use policy::{
    CAPTURE_CONTENT_ENV, Conventions, DEFAULT_MAX_ATTRIBUTE_BYTES, Redact, capture_content_from,
    truncate_marked,
};
pub use span_data::{SPAN_NAME, attribute_value};

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
    conventions: Conventions,
    semconv: Option<crate::integrations::genai::SemconvVersion>,
    capture_content: Option<bool>,
    redact: Option<policy::Redactor>,
    max_attribute_bytes: usize,
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
            conventions: Conventions::Both,
            semconv: None,
            capture_content: None,
            redact: None,
            max_attribute_bytes: DEFAULT_MAX_ATTRIBUTE_BYTES,
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

    /// The timeout of one export request (it is retried after). Default 10 s.
    pub fn export_timeout(mut self, d: Duration) -> Self {
        self.export_timeout = d;
        self
    }

    /// How long a flush waits for the queued spans to be exported. Default 5 s. The last flush
    /// of a shutdown also ends at the close deadline (see
    /// [`close_timeout`](Self::close_timeout)).
    pub fn flush_timeout(mut self, d: Duration) -> Self {
        self.flush_timeout = d;
        self
    }

    /// How long the last flush and the final export at close may take together, retries
    /// included, from the moment the first of them starts; during a shutdown, also no later
    /// than a little before the shutdown's deadline. Default 5 s.
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// The wait before the first retry of a failed batch; it doubles on each failure. Default
    /// 100 ms. A `Retry-After` from the endpoint makes the wait at least that long.
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

    /// Which semantic conventions the spans carry: GenAI, OpenInference, or both (the
    /// default). See [the module docs](self#conventions).
    pub fn conventions(mut self, c: Conventions) -> Self {
        self.conventions = c;
        self
    }

    /// The release of the GenAI conventions whose names are written. Default: what
    /// `OTEL_SEMCONV_STABILITY_OPT_IN` says when the exporter is built
    /// ([`SemconvVersion::from_env`](crate::integrations::genai::SemconvVersion::from_env):
    /// the pinned v1.41.1, or the latest experimental names with `gen_ai_latest_experimental`).
    pub fn semconv_version(mut self, v: crate::integrations::genai::SemconvVersion) -> Self {
        self.semconv = Some(v);
        self
    }

    /// Whether message content leaves the process: prompts, responses, tool arguments and
    /// results, retrieved and embedded text, captured arguments and return values, span event
    /// fields other than numbers and booleans (see [the module docs](self#content)). Default:
    /// what [`CAPTURE_CONTENT_ENV`] says when the exporter is built ([`capture_content_from`]),
    /// else off. This setting wins over the variable.
    pub fn capture_content(mut self, on: bool) -> Self {
        self.capture_content = Some(on);
        self
    }

    /// A redaction hook for captured content: called with each content attribute's key (a
    /// span event's field as `<EventClass>.<field>`) and its value as it would be exported
    /// (text as a string, numbers and booleans as themselves); what it returns is exported
    /// instead (a non-string JSON-encoded), `None` removes the attribute. It runs on the
    /// exporter's handler task, before the [size limit](Self::max_attribute_bytes), and only
    /// when content is captured. A hook that panics removes that value (the span is exported
    /// without it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use serde_json::Value;
    /// use spanbus::integrations::otlp::OtlpExporter;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let exporter = OtlpExporter::builder()
    ///     .capture_content(true)
    ///     .redact(|key, value| match value {
    ///         // Keep retrieved text; mask e-mail addresses everywhere else.
    ///         _ if key.ends_with(".document.content") => Some(value),
    ///         Value::String(s) => Some(Value::String(s.replace('@', "[at]"))),
    ///         other => Some(other),
    ///     })
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn redact(
        mut self,
        hook: impl Fn(&str, serde_json::Value) -> Option<serde_json::Value> + Send + Sync + 'static,
    ) -> Self {
        self.redact = Some(policy::Redactor(Arc::new(hook)));
        self
    }

    /// The most bytes of one attribute value (text) that are exported; a longer value keeps
    /// its first `n` bytes (cut back to a character boundary) followed by the marker
    /// `…[truncated N bytes]`, N the bytes cut (see [`truncate_marked`]). Applies to every
    /// attribute of a span and of its events. Default [`DEFAULT_MAX_ATTRIBUTE_BYTES`] (64 KiB);
    /// `usize::MAX` for no limit.
    pub fn max_attribute_bytes(mut self, n: usize) -> Self {
        self.max_attribute_bytes = n;
        self
    }

    /// Builds the exporter and starts its export task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`OtlpError::NoRuntime`] outside a tokio runtime, [`OtlpError::NoTimeDriver`] on a
    /// runtime built without its time driver (tokio prints its own "timers are disabled"
    /// message then), [`OtlpError::InvalidConfig`] for a zero batch size or queue capacity,
    /// [`OtlpError::Build`] when the OTLP client cannot be built (for example a malformed
    /// endpoint).
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
        if !crate::delivery::linger::has_time_driver() {
            return Err(OtlpError::NoTimeDriver);
        }
        let shared = Arc::new(Shared::default());
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
            // The client it would make by itself, noting each answer's status and
            // `Retry-After` for the export task.
            .with_http_client(RecordingClient::new(self.export_timeout, shared.clone()))
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
        let task = export_task(exporter, rx, control_rx, shared.clone(), self.clone());
        let on_panic = shared.clone();
        let task = runtime.spawn(async move {
            // The task holds nothing a panic could leave half-changed for anyone else.
            let ended = AssertUnwindSafe(task).catch_unwind().await;
            if let Err(panic) = ended {
                *on_panic.last_error.lock() = Some(format!(
                    "the export task panicked: {}",
                    crate::handler::panic_message(&*panic)
                ));
                on_panic
                    .stopped
                    .store(true, std::sync::atomic::Ordering::Release);
                on_panic.abandon_the_rest();
            }
        });
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
            policy: policy::Policy::resolve(&self),
            config: self,
            task: Some(task),
            closing: None,
        })
    }
}
