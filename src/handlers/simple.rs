use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::context::Tags;
use crate::handler::SpanHandler;
use crate::handlers::closed::{ClosedSpan, SpanOutcome};
use crate::handlers::tree::TraceTrees;
use crate::id::{SpanId, SpanIdMap, TraceId};
use crate::llm::LlmSummary;
use crate::record::{Record, SpanDrop, SpanEnter, SpanExit};

/// How many closed spans a [`SimpleSpanHandler`] keeps unless told otherwise.
///
/// A [`ClosedSpan`] takes about 150 bytes inline; its name is borrowed when it is a
/// `&'static str` and its dispatcher name is shared with the dispatcher, so 100,000 spans hold
/// roughly 15–20 MiB (span names built at run time add their own length).
pub const DEFAULT_RETENTION: usize = 100_000;

/// Records every span that ends: name, parent, start, end, duration and outcome
/// (llama-index's `SimpleSpanHandler`), and draws them as trace trees.
///
/// The handler is moved into its task when added; keep a clone to read the spans.
///
/// # Retention
///
/// llama-index keeps every span forever. This handler keeps at most
/// [`capacity`](Self::capacity) closed spans ([`DEFAULT_RETENTION`] unless built with
/// [`with_capacity`](Self::with_capacity)); when a new span ends with the store full, the span
/// that ended first is evicted and counted ([`evicted`](Self::evicted)). A child whose parent
/// was evicted shows up in [`trace_trees`](Self::trace_trees) under a placeholder.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::{SimpleSpanHandler, SpanOutcome};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("app")?;
/// let spans = SimpleSpanHandler::with_capacity(1_000);
/// d.add_span_handler(spans.clone())?;
///
/// d.span("step").in_scope(|| ());
/// d.flush().await;
///
/// let closed = spans.spans();
/// assert_eq!(closed.len(), 1);
/// assert_eq!(closed[0].name, "step");
/// assert_eq!(closed[0].outcome, SpanOutcome::Exited);
/// assert_eq!(spans.evicted(), 0);
/// spans.print_trace_trees(); // step  12 µs  ok
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SimpleSpanHandler {
    store: Arc<Mutex<Store>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for SimpleSpanHandler {}
impl std::panic::RefUnwindSafe for SimpleSpanHandler {}

#[derive(Debug)]
struct Store {
    /// Spans entered and not yet ended, by id.
    running: SpanIdMap<RunningSpan>,
    closed: VecDeque<ClosedSpan>,
    capacity: usize,
    evicted: u64,
}

impl Default for SimpleSpanHandler {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_RETENTION)
    }
}

/// A span entered and not yet ended, as [`SimpleSpanHandler::running`] lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RunningSpan {
    /// The span's id.
    pub id: SpanId,
    /// Its parent, if any.
    pub parent: Option<SpanId>,
    /// Its trace.
    pub trace_id: Option<TraceId>,
    /// Its name.
    pub name: Cow<'static, str>,
    /// The dispatcher it was entered on.
    pub dispatcher: &'static str,
    /// When it was entered.
    pub start: DateTime<Utc>,
}

/// What [`SimpleSpanHandler`] keeps while a span is open.
#[derive(Debug)]
pub struct OpenSimpleSpan {
    enter: SpanEnter,
    trace_id: Option<TraceId>,
    dispatcher: &'static str,
    start: DateTime<Utc>,
    tags: Option<Arc<Tags>>,
    llm: Option<Box<LlmSummary>>,
}

impl SimpleSpanHandler {
    /// An empty handler keeping up to [`DEFAULT_RETENTION`] closed spans.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty handler keeping up to `capacity` closed spans, evicting the oldest beyond.
    ///
    /// A capacity of zero keeps nothing and counts every span as evicted. Memory is reserved
    /// as spans arrive, not up front.
    ///
    /// # Examples
    ///
    /// ```
    /// use spanbus::handlers::SimpleSpanHandler;
    ///
    /// let spans = SimpleSpanHandler::with_capacity(10_000);
    /// assert_eq!(spans.capacity(), 10_000);
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        SimpleSpanHandler {
            store: Arc::new(Mutex::new(Store {
                running: SpanIdMap::default(),
                closed: VecDeque::new(),
                capacity,
                evicted: 0,
            })),
        }
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock()
    }

    /// The most closed spans kept at once.
    pub fn capacity(&self) -> usize {
        self.store().capacity
    }

    /// How many closed spans were evicted to stay within [`capacity`](Self::capacity).
    pub fn evicted(&self) -> u64 {
        self.store().evicted
    }

    /// How many closed spans are kept now.
    pub fn len(&self) -> usize {
        self.store().closed.len()
    }

    /// Whether no closed span is kept.
    pub fn is_empty(&self) -> bool {
        self.store().closed.is_empty()
    }

    /// The spans entered and not yet ended (exited or dropped), oldest first: what a pipeline
    /// is doing now, or what it left open.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let d = spanbus::Dispatcher::new("app")?;
    /// let spans = spanbus::handlers::SimpleSpanHandler::new();
    /// d.add_span_handler(spans.clone())?;
    ///
    /// let outer = d.span("query").enter();
    /// d.flush().await;
    /// assert_eq!(spans.running()[0].name, "query");
    /// drop(outer);
    /// d.flush().await;
    /// assert!(spans.running().is_empty());
    /// assert_eq!(spans.spans()[0].name, "query");
    /// # Ok(())
    /// # }
    /// ```
    pub fn running(&self) -> Vec<RunningSpan> {
        let mut running: Vec<RunningSpan> = self.store().running.values().cloned().collect();
        running.sort_by_key(|s| s.start);
        running
    }

    /// The kept spans, in the order they ended (oldest first).
    pub fn spans(&self) -> Vec<ClosedSpan> {
        self.store().closed.iter().cloned().collect()
    }

    /// Removes and returns the kept spans (the evicted count stays).
    pub fn take(&self) -> Vec<ClosedSpan> {
        self.store().closed.drain(..).collect()
    }

    /// The kept spans as trees, one per trace (see [`TraceTrees`]); `Display` draws them.
    pub fn trace_trees(&self) -> TraceTrees {
        TraceTrees::new(self.spans())
    }

    /// Prints [`trace_trees`](Self::trace_trees) to standard output, followed by the evicted
    /// count if any span was evicted (llama-index's `print_trace_trees`).
    pub fn print_trace_trees(&self) {
        print!("{}", self.trace_trees());
        let evicted = self.evicted();
        if evicted > 0 {
            println!("({evicted} older spans evicted)");
        }
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
            llm: open.llm,
            tags: open.tags,
        };
        let mut store = self.store();
        store.running.remove(&span.id);
        if store.capacity == 0 {
            store.evicted += 1;
            return;
        }
        if store.closed.len() >= store.capacity {
            store.closed.pop_front();
            store.evicted += 1;
        }
        store.closed.push_back(span);
    }
}

impl SpanHandler for SimpleSpanHandler {
    type Span = OpenSimpleSpan;

    fn new_span(&mut self, enter: &SpanEnter, record: &Record) -> Option<OpenSimpleSpan> {
        let open = OpenSimpleSpan {
            enter: enter.clone(),
            trace_id: record.span().map(|s| s.trace_id()),
            dispatcher: record.dispatcher_static(),
            start: record.timestamp(),
            tags: record.shared_tags(),
            llm: None,
        };
        let running = RunningSpan {
            id: enter.id,
            parent: enter.parent,
            trace_id: open.trace_id,
            name: enter.name.clone(),
            dispatcher: open.dispatcher,
            start: open.start,
        };
        self.store().running.insert(enter.id, running);
        Some(open)
    }

    fn span_event(&mut self, span: &mut OpenSimpleSpan, record: &Record) {
        if LlmSummary::reads(record.class_name()) {
            span.llm
                .get_or_insert_with(Box::default)
                .observe_record(record);
        }
    }

    fn prepare_to_exit_span(&mut self, span: OpenSimpleSpan, _: &SpanExit, record: &Record) {
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
