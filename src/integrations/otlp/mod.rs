//! OTLP export: spanbus spans into any OpenTelemetry backend, with the OpenTelemetry GenAI
//! attributes (`gen_ai.*`: Langfuse, MLflow, Datadog, Grafana, …) and the OpenInference ones (so
//! LLM spans render properly in Arize Phoenix) (cargo feature `otlp`).
//!
//! # Exporting spans
//!
//! Build an [`OtlpExporter`] and add it to a dispatcher like any handler. It turns every span
//! that closes into an OTLP span and sends batches from its own task, over OTLP/HTTP (protobuf
//! or JSON) or OTLP/gRPC, plain or over TLS (see [Transports](#transports)):
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
//! gRPC answers get the same verdicts, by status code (see [Failure modes by
//! transport](#failure-modes-by-transport)).
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
//! # Transports
//!
//! Each protocol but the default, TLS and gzip come with a cargo feature of spanbus, so that a
//! build with `otlp` alone holds neither TLS nor gRPC crates. Asking for one whose feature is
//! off makes [`build`](OtlpExporterBuilder::build) return [`OtlpError::FeatureDisabled`],
//! naming the feature.
//!
//! | what | builder | variable | cargo feature | brings in |
//! |---|---|---|---|---|
//! | OTLP/HTTP, protobuf (default) | [`Protocol::HttpProtobuf`] | `http/protobuf` | `otlp` | opentelemetry-otlp, hyper |
//! | OTLP/HTTP, JSON | [`Protocol::HttpJson`] | `http/json` | `otlp-json` | opentelemetry-otlp's JSON encoding (serde) |
//! | OTLP/gRPC | [`Protocol::Grpc`] | `grpc` | `otlp-grpc` | tonic, h2, tower, tonic-types |
//! | TLS (`https://`), any protocol | an `https://` endpoint, [`tls_ca_pem`](OtlpExporterBuilder::tls_ca_pem) | `OTEL_EXPORTER_OTLP_CERTIFICATE` | `otlp-tls` | rustls (ring), rustls-native-certs, hyper-rustls |
//! | gzip, any protocol | [`Compression::Gzip`] | `gzip` | `otlp-gzip` | flate2 (pure Rust) |
//!
//! ## OTLP/HTTP with protobuf
//!
//! The default: a `POST` of the protobuf `ExportTraceServiceRequest` to the full traces URL,
//! `…/v1/traces` (Phoenix: `http://127.0.0.1:6006/v1/traces`).
//!
//! ```no_run
//! use spanbus::integrations::otlp::OtlpExporter;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .endpoint("http://127.0.0.1:6006/v1/traces")
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## OTLP/HTTP with JSON
//!
//! The same request as JSON (OTLP's JSON mapping: ids in hex), for endpoints or proxies that
//! take only JSON. Feature `otlp-json`.
//!
//! ```no_run
//! use spanbus::integrations::otlp::{OtlpExporter, Protocol};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .protocol(Protocol::HttpJson)
//!     .endpoint("http://collector:4318/v1/traces")
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## OTLP/gRPC
//!
//! The `opentelemetry.proto.collector.trace.v1.TraceService/Export` call over HTTP/2, to the
//! server's base URL (no path; default `http://localhost:4317`, Phoenix's gRPC port). Headers
//! go as gRPC metadata. The channel connects on the first export and reconnects by itself.
//! Feature `otlp-grpc`.
//!
//! ```no_run
//! use spanbus::integrations::otlp::{OtlpExporter, Protocol};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .protocol(Protocol::Grpc)
//!     .endpoint("http://127.0.0.1:4317")
//!     .project_name("my-rag-app")
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## TLS
//!
//! An `https://` endpoint, with any protocol, is reached over TLS with rustls (the ring crypto
//! provider; no OpenSSL). The server's certificate must chain to a root the system trusts (as
//! rustls-native-certs finds them: the platform's store, or the files `SSL_CERT_FILE` and
//! `SSL_CERT_DIR` name) or to a CA given with [`tls_ca_pem`](OtlpExporterBuilder::tls_ca_pem),
//! [`tls_ca_file`](OtlpExporterBuilder::tls_ca_file) or `OTEL_EXPORTER_OTLP_CERTIFICATE` (for a
//! collector with a private CA). The system's roots are read when the exporter is built; an
//! `http://` endpoint ignores the CA. Feature `otlp-tls`.
//!
//! ```no_run
//! use spanbus::integrations::otlp::{OtlpExporter, Protocol};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .protocol(Protocol::Grpc)
//!     .endpoint("https://collector.internal:4317")
//!     .tls_ca_file("/etc/collector/ca.pem")
//!     .header("authorization", "Bearer my-token")
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## gzip
//!
//! [`Compression::Gzip`] compresses request bodies (`Content-Encoding: gzip` over HTTP,
//! `grpc-encoding: gzip` over gRPC): LLM spans with prompts shrink several times. Feature
//! `otlp-gzip`.
//!
//! ```no_run
//! use spanbus::integrations::otlp::{Compression, OtlpExporter};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = OtlpExporter::builder()
//!     .compression(Compression::Gzip)
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Langfuse
//!
//! [`OtlpExporterBuilder::langfuse`] and [`OtlpExporter::langfuse_from_env`] send to
//! Langfuse's OTLP endpoint (`{host}/api/public/otel/v1/traces`, OTLP/HTTP protobuf) with
//! Basic auth from the project's keys and `x-langfuse-ingestion-version: 4` (see [`Langfuse`]).
//! Langfuse Cloud is `https://`: it needs `otlp-tls`.
//!
//! ```no_run
//! use spanbus::integrations::otlp::{Langfuse, OtlpExporter};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // From LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_HOST:
//! let exporter = OtlpExporter::langfuse_from_env()?.build()?;
//! // Or explicitly, to a self-hosted Langfuse:
//! let exporter = OtlpExporter::builder()
//!     .langfuse(Langfuse::new("pk-lf-…", "sk-lf-…").host("http://localhost:3000"))
//!     .build()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration from the environment
//!
//! Each transport setting is the builder's when it was set, else the traces variable's, else
//! the generic variable's, else the default (the OpenTelemetry specification's precedence:
//! code over environment, signal-specific over generic). A variable set to an empty value is
//! unset. [`OtlpExporterBuilder::resolve`] tells what was chosen;
//! [`OtlpExporterBuilder::environment`] reads the variables from a given set instead of the
//! process environment.
//!
//! | setting | builder | variables (traces one first) | value | default |
//! |---|---|---|---|---|
//! | endpoint | [`endpoint`](OtlpExporterBuilder::endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT` | a URL; the traces one is used as is, the generic one gets `/v1/traces` for HTTP (not for gRPC) | `http://localhost:4318/v1/traces`, gRPC `http://localhost:4317` |
//! | protocol | [`protocol`](OtlpExporterBuilder::protocol) | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf`, `http/json`, `grpc` | `http/protobuf` |
//! | headers | [`header`](OtlpExporterBuilder::header) | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,key2=value2`, percent-encoded (`Authorization=Basic%20…`); the traces variable replaces the generic one; a builder header replaces one of the same name | none |
//! | timeout | [`export_timeout`](OtlpExporterBuilder::export_timeout) | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | milliseconds, at least 1 | 10 s |
//! | compression | [`compression`](OtlpExporterBuilder::compression) | `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, `OTEL_EXPORTER_OTLP_COMPRESSION` | `gzip`, `none` | none |
//! | extra CA | [`tls_ca_pem`](OtlpExporterBuilder::tls_ca_pem), [`tls_ca_file`](OtlpExporterBuilder::tls_ca_file) | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CERTIFICATE` | a PEM file's path | none |
//!
//! A value that cannot be used (an unknown protocol, a timeout that is not a number, a header
//! entry without `=`, a CA file that cannot be read…) is an [`OtlpError::Env`] from
//! [`build`](OtlpExporterBuilder::build) naming the variable; it never repeats a header's
//! value. `OTEL_EXPORTER_OTLP_INSECURE` and client certificates are not read.
//!
//! # Failure modes by transport
//!
//! Whatever the transport, a failed attempt ends in one of the verdicts of [Never blocking
//! the application](#never-blocking-the-application): retried, split, or dropped and counted
//! by reason in [`OtlpStats::rejections`]; [`OtlpHandle::last_error`] has the status and the
//! cause.
//!
//! | transport | retried (backoff, and the server's delay if it gives one) | split in halves | dropped for good |
//! |---|---|---|---|
//! | OTLP/HTTP (protobuf or JSON) | no answer (connection refused, reset, DNS, request timeout), `408`, `429`, 5xx; `Retry-After` honoured | `413`; a request over 64 MiB is not sent | `400` (`bad_request`), other 4xx (`client_error`) |
//! | OTLP/gRPC | no answer (tonic's transport errors), `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `DATA_LOSS`, `RESOURCE_EXHAUSTED` with `RetryInfo`; the `RetryInfo` delay honoured | `RESOURCE_EXHAUSTED` (or `OUT_OF_RANGE`) saying the message is larger than the server's limit; a request over 64 MiB is not sent | `INVALID_ARGUMENT` (`bad_request`); `RESOURCE_EXHAUSTED` without `RetryInfo`, `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`, `UNIMPLEMENTED`, `INTERNAL`, `UNKNOWN` and the rest (`client_error`) |
//!
//! - **TLS**: a certificate the exporter does not trust (unknown CA, expired, another host
//!   name) fails the handshake: no answer, so the batch is retried until the close deadline
//!   and then counted `abandoned`; `last_error` names the certificate problem (for example
//!   `invalid peer certificate: UnknownIssuer`). An extra CA that cannot be read or is not a
//!   PEM certificate is an error from `build`, and so is a system without any root
//!   certificate when no extra CA is given ([`OtlpError::Tls`]). Over gRPC the server must
//!   offer HTTP/2 through ALPN (every gRPC server with TLS does).
//! - **gzip**: an endpoint that does not take gzip answers `415` or `400` over HTTP, or
//!   `UNIMPLEMENTED` over gRPC: dropped, with the status in `last_error`. Leave compression off
//!   for such an endpoint.
//! - **gRPC to an HTTP/1 port** (or OTLP/HTTP to a gRPC port) gets no OTLP answer: the
//!   connection closes or answers in the other protocol, which counts as no answer, so the
//!   batch is retried until the close (`last_error`: `connection closed`, `received unexpected
//!   message from connection`); check the protocol and the port. A gRPC server that is down
//!   gives `UNAVAILABLE` with `Connection refused`, retried the same way.
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
use opentelemetry_sdk::Resource;
use tokio::sync::mpsc;

use crate::error::OtlpError;

mod client;
mod config;
mod export_task;
mod exporter;
#[cfg(feature = "otlp-grpc")]
mod grpc;
mod policy;
mod shared;
mod span_data;
#[cfg(feature = "otlp-tls")]
mod tls;
mod transport;

pub use config::{
    CERTIFICATE_ENV, COMPRESSION_ENV, Compression, DEFAULT_GRPC_ENDPOINT, HEADERS_ENV,
    LANGFUSE_BASE_URL_ENV, LANGFUSE_DEFAULT_HOST, LANGFUSE_HOST_ENV, LANGFUSE_INGESTION_VERSION,
    LANGFUSE_INGESTION_VERSION_HEADER, LANGFUSE_PUBLIC_KEY_ENV, LANGFUSE_SECRET_KEY_ENV,
    LANGFUSE_TRACES_PATH, Langfuse, OtlpConfig, PROTOCOL_ENV, Protocol, TIMEOUT_ENV,
    TRACES_CERTIFICATE_ENV, TRACES_COMPRESSION_ENV, TRACES_HEADERS_ENV, TRACES_PROTOCOL_ENV,
    TRACES_TIMEOUT_ENV,
};
use config::{CaSource, EnvSource};
use export_task::export_task;
pub use exporter::{OtlpExporter, OtlpHandle, OtlpRejections, OtlpStats};
pub use policy::attribute_value;
pub use policy::{
    CAPTURE_CONTENT_ENV, Conventions, DEFAULT_MAX_ATTRIBUTE_BYTES, Redact, capture_content_from,
    truncate_marked,
};
use shared::Shared;
pub use span_data::SPAN_NAME;
use transport::Transport;

/// The environment variable with the base URL of an OTLP endpoint (`/v1/traces` is appended
/// over HTTP; over gRPC it is used as is).
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The environment variable with the full URL of an OTLP traces endpoint (used as is).
pub const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The endpoint used over HTTP when nothing is configured (the OTLP/HTTP default).
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

/// The OTLP/HTTP endpoint from the process environment: [`TRACES_ENDPOINT_ENV`] as is, else
/// [`ENDPOINT_ENV`] with `/v1/traces` appended, else `None`. (The exporter resolves its
/// endpoint by protocol itself: see [`OtlpExporterBuilder::resolve`].)
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

/// The builder's headers: their `Debug` shows the names only, as [`OtlpConfig`]'s does (values
/// carry credentials, such as the Langfuse preset's Basic auth).
#[derive(Clone, Default)]
struct HeaderSettings(HashMap<String, String>);

impl std::ops::Deref for HeaderSettings {
    type Target = HashMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for HeaderSettings {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl std::fmt::Debug for HeaderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_list().entries(names).finish()
    }
}

/// Settings of an [`OtlpExporter`]; start with [`OtlpExporter::builder`].
#[derive(Debug, Clone)]
#[must_use = "call .build() to make the exporter"]
pub struct OtlpExporterBuilder {
    endpoint: Option<String>,
    project_name: Option<String>,
    service_name: String,
    headers: HeaderSettings,
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
    protocol: Option<Protocol>,
    compression: Option<Compression>,
    tls_ca: Vec<CaSource>,
    env: EnvSource,
    /// Whether `export_timeout` was set on the builder (then it wins over the environment).
    export_timeout_set: bool,
}

impl Default for OtlpExporterBuilder {
    fn default() -> Self {
        OtlpExporterBuilder {
            endpoint: None,
            project_name: None,
            service_name: "spanbus".into(),
            headers: HeaderSettings::default(),
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
            protocol: None,
            compression: None,
            tls_ca: Vec::new(),
            env: EnvSource::default(),
            export_timeout_set: false,
        }
    }
}

impl OtlpExporterBuilder {
    /// The URL requests go to, used as is: the full traces URL over HTTP (for example
    /// `http://127.0.0.1:6006/v1/traces`), the server's URL over gRPC
    /// (`http://127.0.0.1:4317`). Default: the `OTEL_EXPORTER_OTLP_{TRACES_,}ENDPOINT`
    /// variables (see [the table](self#configuration-from-the-environment)), else
    /// [`DEFAULT_ENDPOINT`] ([`DEFAULT_GRPC_ENDPOINT`] over gRPC).
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

    /// The timeout of one export request (it is retried after). Default:
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else
    /// 10 s.
    pub fn export_timeout(mut self, d: Duration) -> Self {
        self.export_timeout = d;
        self.export_timeout_set = true;
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

    /// The protocol: [`Protocol::HttpProtobuf`], [`Protocol::HttpJson`] (feature
    /// `otlp-json`) or [`Protocol::Grpc`] (feature `otlp-grpc`). Default:
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`, else
    /// `http/protobuf`.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The compression of request bodies: [`Compression::Gzip`] needs the feature
    /// `otlp-gzip`. Default: `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` or
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`, else none.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// A CA certificate (or several), PEM-encoded, trusted besides the system's roots for an
    /// `https://` endpoint (feature `otlp-tls`): for a collector with a private CA or a
    /// self-signed certificate. Each call adds one; any replaces
    /// `OTEL_EXPORTER_OTLP_{TRACES_,}CERTIFICATE`.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca.push(CaSource::Pem(pem.into()));
        self
    }

    /// As [`tls_ca_pem`](Self::tls_ca_pem), read from a file when the exporter is built.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca.push(CaSource::File(path.into()));
        self
    }

    /// Reads the `OTEL_EXPORTER_OTLP_*` settings from these variables instead of the process
    /// environment (for settings kept in a configuration file, or to ignore the environment:
    /// give no variable). See [the table](self#configuration-from-the-environment).
    pub fn environment<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env = EnvSource::given(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// The transport settings [`build`](Self::build) will use: each builder setting, else its
    /// variable (the traces one, else the generic one), else its default.
    ///
    /// # Errors
    ///
    /// What [`build`](Self::build) would return for them: [`OtlpError::Env`] for a variable
    /// with a bad value, [`OtlpError::Endpoint`], [`OtlpError::Header`] and
    /// [`OtlpError::Tls`] (an extra CA that cannot be read) for bad builder settings,
    /// [`OtlpError::FeatureDisabled`] for a protocol, compression or `https://` endpoint whose
    /// cargo feature is off.
    pub fn resolve(&self) -> Result<OtlpConfig, OtlpError> {
        config::resolve(self)
    }

    /// Builds the exporter and starts its export task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`OtlpError::NoRuntime`] outside a tokio runtime, [`OtlpError::NoTimeDriver`] on a
    /// runtime built without its time driver (tokio prints its own "timers are disabled"
    /// message then), [`OtlpError::InvalidConfig`] for a zero batch size or queue capacity,
    /// [`OtlpError::Build`] when the OTLP client cannot be built, and the errors of
    /// [`resolve`](Self::resolve) for the transport settings (TLS setup errors, such as no
    /// trusted root certificate on the system, come only from `build`).
    pub fn build(self) -> Result<OtlpExporter, OtlpError> {
        if self.batch_size == 0 {
            return Err(OtlpError::InvalidConfig("batch_size must be at least 1"));
        }
        if self.queue_capacity == 0 {
            return Err(OtlpError::InvalidConfig(
                "queue_capacity must be at least 1",
            ));
        }
        let transport_config = self.resolve()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| OtlpError::NoRuntime)?;
        if !crate::delivery::linger::has_time_driver() {
            return Err(OtlpError::NoTimeDriver);
        }
        let shared = Arc::new(Shared::default());
        let endpoint = transport_config.endpoint.clone();
        let mut resource = Resource::builder_empty().with_service_name(self.service_name.clone());
        if let Some(p) = &self.project_name {
            resource = resource.with_attribute(KeyValue::new(PROJECT_NAME_ATTRIBUTE, p.clone()));
        }
        let exporter = Transport::new(&transport_config, &resource.build(), shared.clone())?;
        // The timeout may come from the environment.
        let mut this = self;
        this.export_timeout = transport_config.timeout;
        let this = this;

        let (tx, rx) = mpsc::channel(this.queue_capacity);
        let (control, control_rx) = mpsc::unbounded_channel();
        let task = export_task(exporter, rx, control_rx, shared.clone(), this.clone());
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
            policy: policy::Policy::resolve(&this),
            config: this,
            task: Some(task),
            closing: None,
        })
    }
}
