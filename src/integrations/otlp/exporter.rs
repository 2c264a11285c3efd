//! The exporter: a [`Handler`] that turns span records into OTLP spans and queues them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::{Duration, SystemTime};

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::Event as OtelEvent;
use opentelemetry_sdk::trace::SpanData;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::export_task::Control;
use super::policy::Policy;
use super::shared::Shared;
use super::span_data::{OpenSpan, to_span_data};
use super::{Langfuse, OtlpExporterBuilder};
use crate::error::OtlpError;
use crate::handler::{Handler, close_deadline};
use crate::id::SpanId;
use crate::integrations::openinference::OpenInference;
use crate::llm::LlmSummary;
use crate::record::{DropReason, Record, RecordKind};

/// Counters of an [`OtlpExporter`], read through an [`OtlpHandle`].
///
/// Every span that closes is counted once, in exactly one of `exported`, `dropped`,
/// `rejected`, `abandoned` and `pending`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpStats {
    /// Spans the endpoint accepted.
    pub exported: u64,
    /// Spans dropped because the queue was full (the endpoint slow or down).
    pub dropped: u64,
    /// Spans the endpoint rejected for good, dropped without a retry; by reason in
    /// [`rejections`](Self::rejections).
    pub rejected: u64,
    /// [`rejected`](Self::rejected) by reason.
    pub rejections: OtlpRejections,
    /// Spans not exported when the exporter closed: its close deadline (or the shutdown's)
    /// passed first, or it was dropped without being closed.
    pub abandoned: u64,
    /// Spans queued or in a batch being (re)tried.
    pub pending: u64,
    /// Export requests that failed (each failed attempt counts once, rejected ones too).
    pub failed_batches: u64,
    /// Export requests that retried a batch after a failure (or sent part of a batch split
    /// after a `413`).
    pub retries: u64,
}

/// Spans the endpoint rejected for good, by reason (see [`OtlpStats::rejected`]).
///
/// A batch is rejected for good when the endpoint answers a 4xx status other than
/// `408 Request Timeout` and `429 Too Many Requests` (those two, 5xx statuses and connection
/// failures are retried). A batch answered `413 Content Too Large` is first split in halves,
/// each sent on its own, down to single spans; only a span still too large alone is dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpRejections {
    /// Spans in batches answered `400 Bad Request` (the endpoint could not take their
    /// content).
    pub bad_request: u64,
    /// Spans too large to export: answered `413 Content Too Large` when sent alone, or whose
    /// request alone is over the OTLP client's size limit (64 MiB), so it was never sent.
    pub too_large: u64,
    /// Spans in batches answered another 4xx status that is not retried (such as
    /// `401 Unauthorized`, `403 Forbidden` or `404 Not Found`): the endpoint or its
    /// credentials are likely misconfigured; [`OtlpHandle::last_error`] has the status.
    pub client_error: u64,
}

impl OtlpRejections {
    /// Spans rejected, all reasons (equal to [`OtlpStats::rejected`]).
    pub fn total(&self) -> u64 {
        self.bad_request + self.too_large + self.client_error
    }
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
        let rejections = OtlpRejections {
            bad_request: s.bad_request.load(Ordering::Acquire),
            too_large: s.too_large.load(Ordering::Acquire),
            client_error: s.client_error.load(Ordering::Acquire),
        };
        let rejected = rejections.total();
        OtlpStats {
            exported,
            dropped: s.dropped.load(Ordering::Acquire),
            rejected,
            rejections,
            abandoned,
            pending: s
                .enqueued
                .load(Ordering::Acquire)
                .saturating_sub(exported + rejected + abandoned),
            failed_batches: s.failed.load(Ordering::Acquire),
            retries: s.retries.load(Ordering::Acquire),
        }
    }

    /// The message of the most recent failed or rejected export, if any (with the HTTP status
    /// when the endpoint answered one).
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error.lock().clone()
    }

    /// The URL the exporter sends to: the traces URL over HTTP, the server's URL over gRPC.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// A [`Handler`] that exports closed spans over OTLP (HTTP or gRPC). See
/// [the module docs](super).
pub struct OtlpExporter {
    pub(super) open: HashMap<SpanId, OpenSpan>,
    pub(super) tx: mpsc::Sender<SpanData>,
    pub(super) control: mpsc::UnboundedSender<Control>,
    pub(super) shared: Arc<Shared>,
    pub(super) enqueued: u64,
    pub(super) endpoint: String,
    pub(super) scope: InstrumentationScope,
    pub(super) config: OtlpExporterBuilder,
    /// The conventions and content policy, resolved at build.
    pub(super) policy: Policy,
    /// The export task, until the exporter is closed or dropped.
    pub(super) task: Option<JoinHandle<()>>,
    /// The deadlines of the final flush and the close, fixed by whichever comes first.
    pub(super) closing: Option<Closing>,
}

/// When the exporter's closing ends (see [`OtlpExporter::closing`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    /// The export task sends nothing after this, and counts what is left as abandoned.
    export_by: Instant,
    /// How long the close waits for the export task to end; then it stops it.
    join_by: Instant,
}

/// How long a close waits past its export deadline for the export task to end.
const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// How much of a shutdown's deadline the exporter leaves for the rest of its handler task
/// (at most a tenth of the time left).
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(100);

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

    /// Settings that send to Langfuse, with the credentials and host from the environment
    /// ([`Langfuse::from_env`]): see [`OtlpExporterBuilder::langfuse`].
    ///
    /// ```no_run
    /// use spanbus::integrations::otlp::OtlpExporter;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and (optionally) LANGFUSE_HOST are set.
    /// let exporter = OtlpExporter::langfuse_from_env()?.service_name("my-rag-app").build()?;
    /// spanbus::get_dispatcher("rag")?.add_handler(exporter)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`OtlpError::MissingEnv`] when `LANGFUSE_PUBLIC_KEY` or `LANGFUSE_SECRET_KEY` is unset
    /// or empty.
    pub fn langfuse_from_env() -> Result<OtlpExporterBuilder, OtlpError> {
        Ok(OtlpExporterBuilder::default().langfuse(Langfuse::from_env()?))
    }

    /// A handle to read the counters once the exporter has been added to a dispatcher.
    pub fn handle(&self) -> OtlpHandle {
        OtlpHandle {
            shared: self.shared.clone(),
            endpoint: self.endpoint.as_str().into(),
        }
    }

    /// The deadlines of closing, fixed at the first call: the export ends by `close_timeout`
    /// from now and, during a shutdown, a margin before the shutdown's deadline
    /// ([`close_deadline`]), so that the final flush and the close share one deadline.
    fn closing(&mut self) -> Closing {
        if let Some(closing) = self.closing {
            return closing;
        }
        let now = Instant::now();
        let own = now + self.config.close_timeout;
        let closing = match close_deadline() {
            Some(shutdown) => {
                let left = shutdown.saturating_duration_since(std::time::Instant::now());
                let margin = (left / 10).min(SHUTDOWN_MARGIN);
                Closing {
                    export_by: own.min(now + (left - margin)),
                    join_by: (own + CLOSE_GRACE).min(now + (left - margin / 2)),
                }
            }
            None => Closing {
                export_by: own,
                join_by: own + CLOSE_GRACE,
            },
        };
        self.closing = Some(closing);
        closing
    }

    /// Stops the export task (it sends nothing more) and counts what it did not export as
    /// abandoned.
    fn stop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.shared.abandon_the_rest();
    }

    fn finish(
        &mut self,
        id: SpanId,
        end: &Record,
        outcome: Result<(), (DropReason, &str)>,
        result: Option<&Value>,
    ) {
        let Some(open) = self.open.remove(&id) else {
            return;
        };
        let span = to_span_data(
            open,
            end.timestamp().into(),
            outcome,
            result,
            &self.scope,
            &self.policy,
        );
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
                    llm: LlmSummary::default(),
                });
            }
            RecordKind::SpanExit(exit) => {
                self.finish(exit.id, record, Ok(()), exit.result.as_deref())
            }
            RecordKind::SpanDrop(drop) => {
                self.finish(drop.id, record, Err((drop.reason, &drop.message)), None)
            }
            RecordKind::Event(event) => {
                let policy = &self.policy;
                let Some(open) = record.span_id().and_then(|id| self.open.get_mut(&id)) else {
                    return;
                };
                let fields = match event.to_json() {
                    Ok(Value::Object(map)) => map,
                    Ok(Value::Null) | Err(_) => Map::new(),
                    Ok(other) => Map::from_iter([("value".to_owned(), other)]),
                };
                open.semantics.observe(record.class_name(), &fields);
                open.llm
                    .observe(record.class_name(), record.timestamp(), &fields);
                if open.events.len() < open.max_events {
                    let attributes = policy.event_attributes(record.class_name(), &fields);
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
        let mut until = Instant::now() + self.config.flush_timeout;
        if close_deadline().is_some() {
            // The final flush of a shutdown: it shares the close's deadline.
            until = until.min(self.closing().export_by);
        }
        let (ack, done) = oneshot::channel();
        if self
            .control
            .send(Control::Flush {
                upto: self.enqueued,
                ack,
            })
            .is_ok()
        {
            let _ = tokio::time::timeout_at(until, done).await;
        }
    }

    async fn close(&mut self) {
        // Spans still open here never got a drop record (they were entered before the
        // exporter was added to a dispatcher that then shut down, or the dispatcher skipped
        // them): export them as dropped by shutdown so they are not lost.
        let now = SystemTime::now();
        for (_, open) in std::mem::take(&mut self.open) {
            let span = to_span_data(
                open,
                now,
                Err((DropReason::Shutdown, "")),
                None,
                &self.scope,
                &self.policy,
            );
            self.enqueue(span);
        }
        let closing = self.closing();
        let _ = self.control.send(Control::Close {
            deadline: closing.export_by,
        });
        if let Some(task) = &mut self.task {
            // The task ends by itself by `export_by`; the wait only guards against a task
            // that cannot run.
            let _ = tokio::time::timeout_at(closing.join_by, task).await;
        }
        self.stop();
    }
}

impl Drop for OtlpExporter {
    /// An exporter dropped without being closed (its handler task was aborted, or it was
    /// never added to a dispatcher) stops its export task too.
    fn drop(&mut self) {
        self.stop();
    }
}
