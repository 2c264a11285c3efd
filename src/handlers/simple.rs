use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

use crate::handler::SpanHandler;
use crate::id::{SpanId, TraceId};
use crate::record::{DropReason, Record, SpanDrop, SpanEnter};

/// Records every span that ends: name, parent, start, end, duration and outcome
/// (llama-index's `SimpleSpanHandler`).
///
/// The handler is moved into its task when added; keep a clone to read the spans.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::{SimpleSpanHandler, SpanOutcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("app")?;
/// let spans = SimpleSpanHandler::new();
/// d.add_span_handler(spans.clone())?;
///
/// d.span("step").in_scope(|| ());
/// d.flush().await;
///
/// let closed = spans.spans();
/// assert_eq!(closed.len(), 1);
/// assert_eq!(closed[0].name, "step");
/// assert_eq!(closed[0].outcome, SpanOutcome::Exited);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimpleSpanHandler {
    closed: Arc<Mutex<Vec<ClosedSpan>>>,
}

/// A span that has ended, as recorded by [`SimpleSpanHandler`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedSpan {
    /// The span's id.
    pub id: SpanId,
    /// Its parent, if any.
    pub parent: Option<SpanId>,
    /// Its trace.
    pub trace_id: Option<TraceId>,
    /// Its name.
    pub name: Cow<'static, str>,
    /// The dispatcher it was entered on.
    pub dispatcher: String,
    /// When it was entered.
    pub start: DateTime<Utc>,
    /// When it ended.
    pub end: DateTime<Utc>,
    /// How it ended.
    pub outcome: SpanOutcome,
}

impl ClosedSpan {
    /// `end - start`.
    pub fn duration(&self) -> TimeDelta {
        self.end - self.start
    }
}

/// How a span ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpanOutcome {
    /// It exited normally.
    Exited,
    /// It was dropped.
    Dropped {
        /// Why.
        reason: DropReason,
        /// The error or panic text.
        message: String,
    },
}

/// What [`SimpleSpanHandler`] keeps while a span is open.
#[derive(Debug)]
pub struct OpenSimpleSpan {
    enter: SpanEnter,
    trace_id: Option<TraceId>,
    dispatcher: String,
    start: DateTime<Utc>,
}

impl SimpleSpanHandler {
    /// An empty handler.
    pub fn new() -> Self {
        Self::default()
    }

    /// The spans that have ended so far, in the order they ended.
    pub fn spans(&self) -> Vec<ClosedSpan> {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_closed(&self, open: OpenSimpleSpan, record: &Record, outcome: SpanOutcome) {
        let span = ClosedSpan {
            id: open.enter.id,
            parent: open.enter.parent,
            trace_id: open.trace_id,
            name: open.enter.name,
            dispatcher: open.dispatcher,
            start: open.start,
            end: record.timestamp(),
            outcome,
        };
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(span);
    }
}

impl SpanHandler for SimpleSpanHandler {
    type Span = OpenSimpleSpan;

    fn new_span(&mut self, enter: &SpanEnter, record: &Record) -> Option<OpenSimpleSpan> {
        Some(OpenSimpleSpan {
            enter: enter.clone(),
            trace_id: record.span().map(|s| s.trace_id()),
            dispatcher: record.dispatcher().to_owned(),
            start: record.timestamp(),
        })
    }

    fn prepare_to_exit_span(&mut self, span: OpenSimpleSpan, record: &Record) {
        self.record_closed(span, record, SpanOutcome::Exited);
    }

    fn prepare_to_drop_span(&mut self, span: OpenSimpleSpan, drop: &SpanDrop, record: &Record) {
        let outcome = SpanOutcome::Dropped {
            reason: drop.reason,
            message: drop.message.clone(),
        };
        self.record_closed(span, record, outcome);
    }
}
