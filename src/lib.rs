//! spanbus: events, spans and handlers for async LLM pipelines, on tokio.
//!
//! spanbus carries the design of llama-index's instrumentation module into async Rust.
//! Pipelines emit **events** (one moment: an LLM call started, a chunk streamed) and run inside
//! **spans** (a stretch of work: a query, a retrieval) on named **dispatchers**. Dispatchers
//! publish onto bounded broadcast channels read by **handlers**, each in its own tokio task; the
//! current span rides in task-local storage across `.await`; records propagate up the
//! dispatcher hierarchy; and `shutdown().await` flushes everything.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use serde::Serialize;
//! use spanbus::handlers::SimpleSpanHandler;
//! use spanbus::{Event, EventHandler, Record, SpanFutureExt};
//!
//! #[derive(Serialize)]
//! struct Retrieved {
//!     documents: usize,
//! }
//! impl Event for Retrieved {
//!     const NAME: &'static str = "Retrieved";
//! }
//!
//! struct Log;
//! impl EventHandler for Log {
//!     async fn handle(&mut self, record: &Record) {
//!         println!("{} in span {:?}", record.class_name(), record.span_id());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = spanbus::Registry::new(); // or the process-wide `spanbus::get_dispatcher`
//! let app = registry.get_dispatcher("app")?;
//! let retriever = registry.get_dispatcher("app.retriever")?;
//!
//! let spans = SimpleSpanHandler::new();
//! app.add_span_handler(spans.clone())?;
//! app.add_event_handler(Log)?; // sees app.retriever's events too
//!
//! async {
//!     retriever.event(Retrieved { documents: 3 }).await?;
//!     Ok::<_, spanbus::error::EmitError>(())
//! }
//! .in_span(retriever.span("retrieve"))
//! .await?;
//!
//! let report = registry.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_clean());
//! assert_eq!(spans.spans()[0].name, "retrieve");
//! # Ok(())
//! # }
//! ```
//!
//! # Concepts, one module each
//!
//! | concept | module | llama-index |
//! |---|---|---|
//! | an event type | [`event`] | `BaseEvent` |
//! | a record (event or span signal with its envelope) | [`record`] | the event's base fields |
//! | the current span and tags | [`context`] | `active_span_id`, `instrument_tags` |
//! | spans on futures, closures, by hand | [`span`](mod@span) | `@dispatcher.span`, `span_enter/exit/drop` |
//! | the `#[span]` attribute on fns, methods, impl blocks | [`span`](macro@span) | `@dispatcher.span`, `DispatcherSpanMixin` |
//! | spans around streams | [`stream`] | — (llama-index closes a generator's span at creation) |
//! | W3C `traceparent`/`tracestate` in and out | [`propagation`] | — |
//! | crossing tasks, threads and processes | [`spawn`](mod@spawn) | `capture/restore_propagation_context`, context-copying `Thread` |
//! | a dispatcher and its hierarchy | [`dispatcher`], [`registry`] | `Dispatcher`, `Manager`, `get_dispatcher` |
//! | delivery from emitters to handler tasks: inbox, channel, batch, receiver | `delivery` (internal) | — (llama-index calls handlers inline) |
//! | handlers | [`handler`], [`handlers`] | `BaseEventHandler`, `BaseSpanHandler` |
//! | trace trees, JSON Lines, the waterfall page | [`handlers::tree`], [`handlers`], [`jsonl`] | `SimpleSpanHandler.print_trace_trees()` |
//! | an LLM call's model, tokens, time to first token and cost; rollups per trace, session, model | [`llm`] | — (read from the events by Phoenix and others) |
//! | bridges to other crates (`tracing`), behind cargo features | [`integrations`] | — |
//! | shutdown reports | [`ShutdownReport`], [`dispatcher::HandlerReport`] | — |
//! | errors | [`error`] | — |
//!
//! # Delivery
//!
//! Each dispatcher that has handlers owns one bounded broadcast channel (capacity
//! [`DEFAULT_CAPACITY`](dispatcher::DEFAULT_CAPACITY) unless built otherwise). One push reaches all of its handlers; each
//! handler reads at its own pace and sees the records of one emitter in emit order — a span's
//! enter before its events before its exit. Per handler, a [`Delivery`] mode:
//!
//! - **Lossless** (default): nothing is lost. When the slowest lossless handler is a full
//!   capacity behind, `dispatcher.event(e).await` waits for room.
//! - **Lossy**: the handler never slows anyone. If it falls more than its capacity behind, it
//!   skips ahead; the exact count is added to its stats and passed to
//!   [`Handler::missed`] before the next record it sees.
//!
//! # The bound
//!
//! One rule holds on every path, so memory stays within **(capacity + overflow) records per
//! channel** whatever the code does (overflow defaults to the capacity; set both with
//! [`DispatcherBuilder`](dispatcher::DispatcherBuilder)). The bound is measured against the slowest lossless handler:
//!
//! | the emitter… | at the bound (capacity) | at the hard cap (capacity + overflow) |
//! |---|---|---|
//! | awaits: `d.event(e).await`, a spanned future ([`Instrumented`](span::Instrumented)) before it enters and before it ends its span, a spanned stream before it enters | waits for room (never blocks a thread) | — |
//! | cannot wait, on a plain thread (no tokio runtime on it): [`Emit::now`](dispatcher::Emit::now), sync spans ([`Span::in_scope`], [`Span::enter`], `#[span]` on a sync fn) | appends past the bound | blocks the thread until there is room |
//! | cannot wait, on a runtime thread or in a handler: [`Emit::now`](dispatcher::Emit::now), a sync span's enter | appends past the bound | drops the record, counts it exactly, and tells each of that channel's handlers in-band ([`Handler::missed`], [`HandlerStats::dropped`]); `now()` returns [`EmitError::Overflow`](error::EmitError::Overflow); a span whose enter no channel took emits no end either |
//! | ends what a handler saw begin: a span's exit or drop (in `Drop`, at cancellation, at shutdown), the rest of a cancelled awaited emit's chain | appends past the bound | appends past the cap too: these records are at most two per span the program holds open, so they are bounded by its own live state, and no handler sees a span entered but never ended |
//!
//! Lossy handlers never count towards the bound. Async emitters waiting for room are woken
//! once the slowest lossless handler is at most half a capacity behind. Inside a handler's
//! task nothing waits (it could wait on itself): records are pushed as by `now()`.
//!
//! A busy handler is woken once per batch, not once per record: after it has handled records
//! it **lingers** until a batch of them (up to 256) has arrived or about a millisecond has
//! passed (tokio's timer, so plus its millisecond resolution). A handler that was quiet is
//! woken by the first record at once; [`flush`](Dispatcher::flush) and shutdown never wait for
//! a lingering handler. On a runtime built without tokio's time driver, handlers do not
//! linger.
//!
//! A handler may emit and flush on the dispatchers it listens to. Inside a handler's task an
//! awaited emit never waits (it behaves like [`Emit::now`](dispatcher::Emit::now)), and a flush skips the handler's
//! own channel: waiting there would wait on the handler itself.
//!
//! # Flush and shutdown
//!
//! [`flush`] (or [`Dispatcher::flush`], [`Registry::flush`]) is a barrier: when it returns,
//! every record emitted before the call has been handled by every handler and each handler's
//! [`Handler::flush`] has run. [`shutdown()`](fn@shutdown) refuses new records, drops open spans with
//! [`DropReason::Shutdown`], drains, flushes and closes every handler, and aborts any still
//! running at the deadline — returning a [`ShutdownReport`] that names them.
//!
//! # Isolation
//!
//! A handler that panics is caught in its own task: the panic is counted
//! ([`HandlerStats::panicked`], with the first message) and the handler goes on with the next
//! record. A handler that hangs delays only itself (and, in lossless mode, async emitters once
//! its channel is full); shutdown aborts it at the deadline.

#![warn(missing_docs)]
// Every `unsafe` block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod context;
pub mod dispatcher;
pub mod docs;
pub mod error;
pub mod event;
pub mod events;
pub mod handler;
pub mod handlers;
pub mod integrations;
pub mod jsonl;
pub mod llm;
pub mod propagation;
pub mod record;
pub mod registry;

pub mod span;
pub mod spawn;
pub mod stream;

mod clock;
mod delivery;
mod id;
mod pool;

#[doc(hidden)]
pub mod __private;

use std::time::Duration;

use crate::error::NameError;

// The crate root holds what a pipeline writes every day; the rest is reached through its
// module (`spanbus::dispatcher::DispatcherBuilder`, `spanbus::error::JsonlError`, ...).
pub use context::{SpanContext, Tags, current_span, tags_guard, tags_in_scope, with_tags};
pub use dispatcher::{Dispatcher, ShutdownReport};
pub use event::Event;
pub use handler::{
    Delivery, EventHandler, Handler, HandlerId, HandlerOptions, HandlerStats, SpanHandler,
};
pub use id::{SpanId, TraceId};
pub use record::{DropReason, Record, RecordKind};
pub use registry::Registry;
pub use span::{Span, SpanFutureExt};
/// The `#[spanbus::span]` attribute.
///
/// # Examples
///
/// ```
/// use spanbus::handlers::SimpleSpanHandler;
///
/// #[derive(Debug)]
/// struct NotFound(String);
/// impl std::fmt::Display for NotFound {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "no document for {:?}", self.0)
///     }
/// }
///
/// struct Index {
///     docs: Vec<String>,
/// }
///
/// // Every method of the block gets a span named `Index::<method>`.
/// #[spanbus::span(dispatcher = "rag.index", tags(component = "index"))]
/// impl Index {
///     async fn search(&self, query: &str) -> Result<String, NotFound> {
///         let hit = self.docs.iter().find(|d| d.contains(query));
///         hit.cloned().ok_or_else(|| NotFound(query.to_owned()))
///     }
///
///     #[span(skip(doc))]
///     fn add(&mut self, doc: String) {
///         self.docs.push(doc);
///     }
/// }
///
/// // A free function, named by its path; `index` (not `Serialize`) and `api_key` are not captured.
/// #[spanbus::span(dispatcher = "rag", skip(index, api_key))]
/// async fn answer(index: &Index, question: String, api_key: &str) -> Result<String, NotFound> {
///     let _ = api_key;
///     index.search(&question).await
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spans = SimpleSpanHandler::new();
/// spanbus::get_dispatcher("rag")?.add_span_handler(spans.clone())?;
///
/// let mut index = Index { docs: vec![] };
/// index.add("rust is fast".into());
/// assert!(answer(&index, "rust".into(), "sk-…").await.is_ok());
/// assert!(answer(&index, "python".into(), "sk-…").await.is_err()); // both spans dropped
/// spanbus::flush().await;
///
/// let names: Vec<_> = spans.spans().iter().map(|s| s.name.to_string()).collect();
/// assert_eq!(names[0], "Index::add");
/// assert_eq!(names[1], "Index::search");
/// assert!(names[2].ends_with("::answer"));
/// # Ok(())
/// # }
/// ```
pub use spanbus_macros::span;
pub use spawn::{JoinSetExt, spawn, spawn_blocking, thread};
pub use stream::SpanStreamExt;

/// Moved: [`error::EmitError`].
#[deprecated(since = "0.1.0", note = "use `spanbus::error::EmitError`")]
#[doc(hidden)]
pub type EmitError = error::EmitError;

/// Moved: [`context::Context`].
#[deprecated(since = "0.1.0", note = "use `spanbus::context::Context`")]
#[doc(hidden)]
pub type Context = context::Context;

/// The process-wide dispatcher named `name` (llama-index's `get_dispatcher(__name__)`).
///
/// # Errors
///
/// [`NameError`] for an empty name, an empty segment, or whitespace.
///
/// # Examples
///
/// ```
/// let d = spanbus::get_dispatcher("my_app.llm")?;
/// assert_eq!(d.name(), "my_app.llm");
/// assert!(spanbus::get_dispatcher("my app").is_err());
/// # Ok::<(), spanbus::error::NameError>(())
/// ```
pub fn get_dispatcher(name: &str) -> Result<Dispatcher, NameError> {
    Registry::global().get_dispatcher(name)
}

/// The process-wide root dispatcher.
pub fn root_dispatcher() -> Dispatcher {
    Registry::global().root()
}

/// Flushes every dispatcher of the process-wide registry ([`Registry::flush`]).
pub async fn flush() {
    Registry::global().flush().await;
}

/// Shuts down every dispatcher of the process-wide registry within `timeout`
/// ([`Registry::shutdown`]).
///
/// Like [`Dispatcher::shutdown`](crate::Dispatcher::shutdown), it works from anywhere, even on a
/// runtime built without tokio's time driver or with no runtime at all.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A runtime without the time driver: shutdown needs no tokio timer.
/// let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// rt.block_on(async {
///     let d = spanbus::get_dispatcher("job")?;
///     d.add_span_handler(spanbus::handlers::NullSpanHandler)?;
///     d.span("work").in_scope(|| ());
///     let report = spanbus::shutdown(std::time::Duration::from_secs(5)).await;
///     assert!(report.is_clean());
///     assert_eq!(report.handlers[0].stats.delivered, 2); // the span's enter and exit
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(())
/// # }
/// ```
pub async fn shutdown(timeout: Duration) -> ShutdownReport {
    Registry::global().shutdown(timeout).await
}
