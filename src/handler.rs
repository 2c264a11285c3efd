//! Handlers: the code that reacts to records, each running in its own tokio task.
//!
//! There is one core trait, [`Handler`]: it sees every record that reaches it (events and span
//! signals) in emit order. Two convenience traits sit on top, matching llama-index:
//!
//! - [`EventHandler`] sees only events (llama-index's `BaseEventHandler`);
//! - [`SpanHandler`] sees spans being entered, exited and dropped, with the open-span bookkeeping
//!   done for it (llama-index's `BaseSpanHandler`).
//!
//! A handler is moved into its own task when it is added to a dispatcher, so it owns its state
//! and needs no locks. Its methods are `async`; the futures must be `Send`. A handler that panics
//! is isolated: the panic is caught, counted in its [`HandlerStats`], and the handler goes on
//! with the next record. Neither emitters nor other handlers notice.
//!
//! # Delivery
//!
//! Each handler chooses a [`Delivery`] mode in its [`HandlerOptions`]: lossless (the default)
//! or lossy. See the [`channel`](crate#delivery) section of the crate docs.
//!
//! # Closing by a deadline
//!
//! A shutdown waits for each handler's last `flush` and its `close` until its deadline, then
//! aborts the handler's task. Both hooks can read that deadline with [`close_deadline`] (it is
//! `None` outside a shutdown) and bound their own work by it, so that they finish, and are
//! reported as closed, instead of being cut off.
//!
//! The traits use `async fn` in traits (stable since Rust 1.75) rather than `async-trait`: the
//! handler task is generic over the handler type, so no boxing is needed and a call costs no
//! allocation — which matters at tens of nanoseconds per record. A handler set chosen at run
//! time boxes its handlers instead: see [`DynHandler`] and [`BoxHandler`].

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use futures::FutureExt;

use crate::delivery::{Channel, Linger, Mode, ReaderId, Receiver, Recv};
use crate::id::SpanIdMap;
use crate::record::{DropReason, Record, RecordKind, SpanDrop, SpanEnter, SpanExit};

mod boxed;

pub use boxed::{BoxHandler, DynHandler, boxed, boxed_events, boxed_spans};

/// Code that reacts to every record it receives: events and span signals.
///
/// This is the core trait; [`EventHandler`] and [`SpanHandler`] are built on it.
///
/// # Examples
///
/// A handler that counts records per class name and prints the counts when closed:
///
/// ```
/// use std::collections::BTreeMap;
/// use spanbus::{Handler, Record};
///
/// #[derive(Default)]
/// struct Census(BTreeMap<&'static str, u64>);
///
/// impl Handler for Census {
///     async fn handle(&mut self, record: &Record) {
///         *self.0.entry(record.class_name()).or_default() += 1;
///     }
///
///     async fn close(&mut self) {
///         println!("{:?}", self.0);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dispatcher = spanbus::Dispatcher::new("census")?;
/// dispatcher.add_handler(Census::default())?;
/// dispatcher.span("work").in_scope(|| ());
/// dispatcher.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
pub trait Handler: Send + 'static {
    /// Handles one record.
    fn handle(&mut self, record: &Record) -> impl Future<Output = ()> + Send;

    /// Called in-band, in a lossy handler, when `count` records were skipped because the
    /// handler fell more than its capacity behind. Called before the records that follow the
    /// gap.
    fn missed(&mut self, count: u64) -> impl Future<Output = ()> + Send {
        let _ = count;
        async {}
    }

    /// Called at a [`flush`](crate::Dispatcher::flush) barrier, after every record emitted
    /// before the flush has been handled: write out buffers here.
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called once at shutdown or removal, after the last record and a final
    /// [`flush`](Self::flush). During a shutdown, [`close_deadline`] gives the deadline both
    /// must meet.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The name shown in stats and shutdown reports when [`HandlerOptions::name`] gives none
    /// (llama-index's `class_name()`): the handler's type name by default.
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

/// Code that reacts to events (not span signals): llama-index's `BaseEventHandler`.
///
/// # Examples
///
/// ```
/// use serde::Serialize;
/// use spanbus::{Event, EventHandler, Record};
///
/// #[derive(Serialize)]
/// struct TokensUsed(u64);
/// impl Event for TokensUsed {
///     const NAME: &'static str = "TokensUsed";
/// }
///
/// struct Budget {
///     used: u64,
/// }
///
/// impl EventHandler for Budget {
///     async fn handle(&mut self, record: &Record) {
///         if let Some(TokensUsed(n)) = record.event() {
///             self.used += n;
///         }
///     }
/// }
/// ```
pub trait EventHandler: Send + 'static {
    /// Handles one event record.
    fn handle(&mut self, record: &Record) -> impl Future<Output = ()> + Send;

    /// See [`Handler::missed`]. The count includes skipped span signals.
    fn missed(&mut self, count: u64) -> impl Future<Output = ()> + Send {
        let _ = count;
        async {}
    }

    /// See [`Handler::flush`].
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// See [`Handler::close`].
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// See [`Handler::name`].
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

/// Code that reacts to spans: llama-index's `BaseSpanHandler`.
///
/// The handler's task keeps the open spans: [`new_span`](Self::new_span) turns an enter into
/// the handler's own span value (or `None` to ignore that span), and exactly one of
/// [`prepare_to_exit_span`](Self::prepare_to_exit_span) or
/// [`prepare_to_drop_span`](Self::prepare_to_drop_span) later receives it back. A duplicate
/// enter of an open span is ignored; an exit or drop of a span that is not open is ignored.
/// Spans still open when the handler is closed are dropped with [`DropReason::Shutdown`].
///
/// # Order
///
/// A dropped span sends two records, in this order: the drop signal (which reaches
/// [`prepare_to_drop_span`](Self::prepare_to_drop_span)), then a
/// [`SpanDropEvent`](crate::events::SpanDropEvent) in that span, for event handlers.
/// llama-index emits the event first; a [`Handler`] that sees both and matches on the event
/// must not expect the span to be still open. Each emitter's records reach a handler in emit
/// order, so a span's events come after its enter and before its end.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use spanbus::{Record, SpanHandler};
/// use spanbus::record::{SpanDrop, SpanEnter, SpanExit};
///
/// struct SlowSpans;
///
/// impl SpanHandler for SlowSpans {
///     type Span = (String, Instant);
///
///     fn new_span(&mut self, enter: &SpanEnter, _: &Record) -> Option<Self::Span> {
///         Some((enter.name.to_string(), Instant::now()))
///     }
///
///     fn prepare_to_exit_span(&mut self, (name, start): Self::Span, _: &SpanExit, _: &Record) {
///         if start.elapsed().as_millis() > 100 {
///             println!("slow: {name}");
///         }
///     }
///
///     fn prepare_to_drop_span(&mut self, (name, _): Self::Span, drop: &SpanDrop, _: &Record) {
///         println!("{name} ended by {}: {}", drop.reason, drop.message);
///     }
/// }
/// ```
pub trait SpanHandler: Send + 'static {
    /// The handler's record of one open span.
    type Span: Send + 'static;

    /// A span was entered; return the value to keep while it is open, or `None` to ignore it.
    fn new_span(&mut self, enter: &SpanEnter, record: &Record) -> Option<Self::Span>;

    /// The span ended normally; `exit` carries the value recorded by `#[span(ret)]` or
    /// [`OpenSpan::exit_with`](crate::span::OpenSpan::exit_with), if any.
    fn prepare_to_exit_span(&mut self, span: Self::Span, exit: &SpanExit, record: &Record);

    /// An event was emitted in one of this handler's open spans (its `span_id` is that span).
    /// Does nothing by default: llama-index's span handlers do not see events, but a handler
    /// that summarizes a span from its events (as
    /// [`SimpleSpanHandler`](crate::handlers::SimpleSpanHandler) does with
    /// [`LlmSummary`](crate::llm::LlmSummary)) reads them here.
    fn span_event(&mut self, span: &mut Self::Span, record: &Record) {
        let _ = (span, record);
    }

    /// The span ended abnormally (error, panic, cancellation, shutdown); `drop` carries the
    /// reason, the text, and the error value recorded by `#[span(err)]` or
    /// [`OpenSpan::fail_with`](crate::span::OpenSpan::fail_with), if any.
    fn prepare_to_drop_span(&mut self, span: Self::Span, drop: &SpanDrop, record: &Record);

    /// See [`Handler::flush`].
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// See [`Handler::close`].
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// See [`Handler::name`].
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

/// Whether emitters wait for a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// The handler sees every record. When it is a full channel's capacity behind, emitters
    /// using `.await` wait for room, until it is at most half a capacity behind; synchronous
    /// emitters never wait (the channel overruns its bound instead, so nothing is lost). Besides
    /// what is queued, a handler holds the batch it is working through (up to 1,024 records).
    #[default]
    Lossless,
    /// The handler never slows emitters. When it falls more than `capacity` records behind, it
    /// skips to the newest `capacity` records; the exact number skipped is counted in its
    /// stats and passed to [`Handler::missed`] before the next record it sees.
    Lossy {
        /// How far behind the handler may fall before records are skipped.
        capacity: usize,
    },
}

/// How a handler is attached: its name and delivery mode.
///
/// # Examples
///
/// ```
/// use spanbus::{Delivery, HandlerOptions};
///
/// let opts = HandlerOptions::new().name("metrics").lossy(1024);
/// assert_eq!(opts.delivery(), Delivery::Lossy { capacity: 1024 });
/// ```
#[derive(Debug, Clone, Default)]
pub struct HandlerOptions {
    name: Option<Cow<'static, str>>,
    delivery: Delivery,
}

impl HandlerOptions {
    /// Lossless delivery, named after the handler's type.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name shown in stats and shutdown reports.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Lossy delivery with this capacity.
    pub fn lossy(mut self, capacity: usize) -> Self {
        self.delivery = Delivery::Lossy { capacity };
        self
    }

    /// The delivery mode.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The name set here, or else the handler's own ([`Handler::name`]).
    pub(crate) fn resolved_name(&self, handler: &impl Handler) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => handler.name().into_owned(),
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match self.delivery {
            Delivery::Lossless => Mode::Lossless,
            Delivery::Lossy { capacity } => Mode::Lossy { capacity },
        }
    }
}

/// Identifies a handler attached to a dispatcher, for removal and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandlerId(pub(crate) u64);

/// Counters of one handler, readable at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerStats {
    /// The handler's name.
    pub name: String,
    /// Records handed to the handler whose handling completed. For an [`EventHandler`] or a
    /// [`SpanHandler`] this counts every record its task received, including those of the
    /// other kind that the adapter skips.
    pub delivered: u64,
    /// Records a lossy handler skipped.
    pub dropped: u64,
    /// Calls into the handler that panicked (the record is not counted as delivered).
    pub panicked: u64,
    /// Records the handler never handled because its task was dropped before the dispatcher
    /// closed it: the tokio runtime it ran on was dropped or shut down. Counts what it held
    /// unhandled then and every record that reached it after. Emits that reach only such
    /// handlers fail with [`EmitError::HandlersGone`](crate::error::EmitError::HandlersGone).
    pub lost: u64,
    /// The first panic's message, if any.
    pub first_panic: Option<String>,
}

#[derive(Default)]
pub(crate) struct Counters {
    delivered: AtomicU64,
    dropped: AtomicU64,
    panicked: AtomicU64,
    first_panic: Mutex<Option<String>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Counters {}
impl std::panic::RefUnwindSafe for Counters {}

impl Counters {
    pub(crate) fn snapshot(&self, name: &str) -> HandlerStats {
        HandlerStats {
            name: name.to_owned(),
            delivered: self.delivered.load(Ordering::Acquire),
            dropped: self.dropped.load(Ordering::Acquire),
            panicked: self.panicked.load(Ordering::Acquire),
            lost: 0,
            first_panic: self.first_panic.lock().clone(),
        }
    }

    fn record_panic(&self, payload: &(dyn std::any::Any + Send)) {
        self.panicked.fetch_add(1, Ordering::AcqRel);
        let mut first = self.first_panic.lock();
        if first.is_none() {
            *first = Some(panic_message(payload));
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Runs one handler call, catching a panic; returns whether it completed.
async fn guarded(counters: &Counters, call: impl Future<Output = ()>) -> bool {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(()) => true,
        Err(payload) => {
            counters.record_panic(&*payload);
            false
        }
    }
}

/// The handler task being polled on this thread: its channel and its place there.
#[derive(Clone)]
pub(crate) struct Handling {
    pub(crate) channel: Arc<Channel>,
    pub(crate) reader: ReaderId,
}

thread_local! {
    static HANDLING: std::cell::RefCell<Option<Handling>> = const { std::cell::RefCell::new(None) };
}

/// The handler task running on this thread, if any: emits and flushes made by a handler must
/// never wait on the handler's own progress.
pub(crate) fn handling() -> Option<Handling> {
    HANDLING
        .try_with(|h| h.try_borrow().ok().and_then(|h| h.clone()))
        .ok()
        .flatten()
}

/// Whether this thread is polling a handler task.
pub(crate) fn in_handler() -> bool {
    HANDLING
        .try_with(|h| h.try_borrow().is_ok_and(|h| h.is_some()))
        .unwrap_or(false)
}

pin_project_lite::pin_project! {
    /// Marks the thread as running a handler of `channel` during each poll, so that emits and
    /// flushes made by the handler itself never wait on the handler's own progress.
    pub(crate) struct InHandler<F> {
        #[pin]
        inner: F,
        handling: Handling,
    }
}

impl<F> InHandler<F> {
    pub(crate) fn new(channel: &Arc<Channel>, reader: ReaderId, inner: F) -> Self {
        InHandler {
            inner,
            handling: Handling {
                channel: Arc::clone(channel),
                reader,
            },
        }
    }
}

impl<F: Future> Future for InHandler<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        struct Restore(Option<Handling>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = HANDLING.try_with(|h| {
                    if let Ok(mut h) = h.try_borrow_mut() {
                        *h = previous;
                    }
                });
            }
        }
        let this = self.project();
        let previous = HANDLING
            .try_with(|h| {
                h.try_borrow_mut()
                    .ok()
                    .and_then(|mut h| h.replace(this.handling.clone()))
            })
            .ok()
            .flatten();
        let _restore = Restore(previous);
        this.inner.poll(cx)
    }
}

tokio::task_local! {
    /// The deadline of the shutdown that closes the handler running in this task, set while
    /// its last `flush` and its `close` run.
    static CLOSE_DEADLINE: Option<std::time::Instant>;
}

/// When the shutdown closing this handler stops waiting for it, if it is being closed by
/// one; call it from [`Handler::flush`] or [`Handler::close`] (or the same hooks of
/// [`EventHandler`] and [`SpanHandler`]).
///
/// - During a [`Dispatcher::shutdown`](crate::Dispatcher::shutdown) (or a
///   [`Registry::shutdown`](crate::Registry::shutdown), [`crate::shutdown`]): `Some` of that
///   shutdown's deadline, in the final `flush` and in `close`. A handler whose `flush` and
///   `close` together end before it is reported as closed; one still running then is aborted
///   and reported as timed out. Leave some room: the task still has to end after `close`
///   returns.
/// - Everywhere else, `None`: a flush barrier, a handler removed with
///   [`remove_handler`](crate::Dispatcher::remove_handler) or whose dispatcher was dropped
///   (nobody waits for those), code outside a handler's task, and tasks the handler spawns.
///
/// # Examples
///
/// A handler that bounds its final write by the shutdown's deadline:
///
/// ```
/// use std::time::{Duration, Instant};
/// use spanbus::{Handler, Record};
///
/// struct Upload;
///
/// impl Handler for Upload {
///     async fn handle(&mut self, _: &Record) {}
///
///     async fn close(&mut self) {
///         let deadline = spanbus::handler::close_deadline()
///             .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
///         let budget = deadline.saturating_duration_since(Instant::now());
///         let _ = tokio::time::timeout(budget, async { /* upload */ }).await;
///     }
/// }
/// ```
pub fn close_deadline() -> Option<std::time::Instant> {
    CLOSE_DEADLINE.try_with(|d| *d).ok().flatten()
}

/// A handler's task: takes batches from its [`Receiver`] and calls the handler, until the
/// channel is closed (then flushes and closes the handler).
///
/// If the task is dropped before it ends (its runtime was dropped or shut down), the receiver
/// is abandoned and what the handler did not handle is counted as lost (see [`Receiver`]);
/// the records it did handle of its last batch still count as delivered.
pub(crate) async fn run<H: Handler>(mut handler: H, mut rx: Receiver, counters: Arc<Counters>) {
    // Woken once per batch while records keep coming (see `crate::delivery::linger`).
    let mut linger = Linger::new();
    loop {
        let next = futures::future::poll_fn(|cx| {
            let polled = rx.poll_recv(linger.may_linger(cx), cx);
            linger.parked(rx.is_lingering(), cx);
            polled
        })
        .await;
        match next {
            Recv::Records { dropped } => {
                linger.got_records();
                if dropped > 0 {
                    counters.dropped.fetch_add(dropped, Ordering::AcqRel);
                    guarded(&counters, handler.missed(dropped)).await;
                }
                let mut delivered = Delivered(&counters, 0);
                // One panic guard per batch rather than per record: after a panic the guard is
                // set up again and the batch goes on with the next record, so a panicking
                // record costs only itself.
                loop {
                    let rest = async {
                        while let Some(record) = rx.next() {
                            handler.handle(record).await;
                            rx.done();
                            delivered.1 += 1;
                        }
                    };
                    match AssertUnwindSafe(rest).catch_unwind().await {
                        Ok(()) => break,
                        Err(payload) => counters.record_panic(&*payload),
                    }
                }
            }
            Recv::Barrier(id) => {
                guarded(&counters, handler.flush()).await;
                rx.ack(id);
            }
            Recv::Closed => {
                // A shutdown's deadline, for `close_deadline` while the last flush and the
                // close run.
                let deadline = rx.close_deadline();
                CLOSE_DEADLINE
                    .scope(deadline, async {
                        guarded(&counters, handler.flush()).await;
                        guarded(&counters, handler.close()).await;
                    })
                    .await;
                return;
            }
        }
    }
}

/// Records of a batch handled so far, added to the counters once per batch (or when the task
/// is dropped mid-batch).
struct Delivered<'a>(&'a Counters, u64);

impl Drop for Delivered<'_> {
    fn drop(&mut self) {
        self.0.delivered.fetch_add(self.1, Ordering::AcqRel);
    }
}

pub(crate) struct Events<H>(pub(crate) H);

impl<H: EventHandler> Handler for Events<H> {
    async fn handle(&mut self, record: &Record) {
        if record.is_event() {
            self.0.handle(record).await;
        }
    }

    fn missed(&mut self, count: u64) -> impl Future<Output = ()> + Send {
        self.0.missed(count)
    }

    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        self.0.flush()
    }

    fn close(&mut self) -> impl Future<Output = ()> + Send {
        self.0.close()
    }

    fn name(&self) -> Cow<'static, str> {
        self.0.name()
    }
}

/// Adapts a [`SpanHandler`] to [`Handler`], keeping its open spans.
pub(crate) struct Spans<H: SpanHandler> {
    handler: H,
    open: SpanIdMap<H::Span>,
}

impl<H: SpanHandler> Spans<H> {
    pub(crate) fn new(handler: H) -> Self {
        Spans {
            handler,
            open: SpanIdMap::default(),
        }
    }
}

impl<H: SpanHandler> Handler for Spans<H> {
    async fn handle(&mut self, record: &Record) {
        match record.kind() {
            RecordKind::SpanEnter(enter) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = self.open.entry(enter.id)
                    && let Some(span) = self.handler.new_span(enter, record)
                {
                    slot.insert(span);
                }
            }
            RecordKind::SpanExit(exit) => {
                if let Some(span) = self.open.remove(&exit.id) {
                    self.handler.prepare_to_exit_span(span, exit, record);
                }
            }
            RecordKind::SpanDrop(drop) => {
                if let Some(span) = self.open.remove(&drop.id) {
                    self.handler.prepare_to_drop_span(span, drop, record);
                }
            }
            RecordKind::Event(_) => {
                if let Some(span) = record.span_id().and_then(|id| self.open.get_mut(&id)) {
                    self.handler.span_event(span, record);
                }
            }
        }
    }

    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        self.handler.flush()
    }

    fn name(&self) -> Cow<'static, str> {
        self.handler.name()
    }

    async fn close(&mut self) {
        let open: Vec<_> = self.open.drain().collect();
        for (id, span) in open {
            let drop = SpanDrop {
                id,
                reason: DropReason::Shutdown,
                message: "handler closed with the span still open".to_owned(),
                error: None,
            };
            let record = Record::alloc(None, None, &"", drop.clone());
            self.handler.prepare_to_drop_span(span, &drop, &record);
        }
        self.handler.close().await;
    }
}
