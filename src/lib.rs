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
//!     Ok::<_, spanbus::EmitError>(())
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
//! | spans on futures, closures, by hand | [`span`] | `@dispatcher.span`, `span_enter/exit/drop` |
//! | a dispatcher and its hierarchy | [`dispatcher`], [`registry`] | `Dispatcher`, `Manager`, `get_dispatcher` |
//! | delivery from emitters to handler tasks | `channel` (internal) | — (llama-index calls handlers inline) |
//! | handlers | [`handler`], [`handlers`] | `BaseEventHandler`, `BaseSpanHandler` |
//! | shutdown reports | [`shutdown`] | — |
//! | errors | [`error`] | — |
//!
//! # Delivery
//!
//! Each dispatcher that has handlers owns one bounded broadcast channel (capacity
//! [`DEFAULT_CAPACITY`] unless built otherwise). One push reaches all of its handlers; each
//! handler reads at its own pace and sees the records of one emitter in emit order — a span's
//! enter before its events before its exit. Per handler, a [`Delivery`] mode:
//!
//! - **Lossless** (default): nothing is lost. When the slowest lossless handler is a full
//!   capacity behind, `dispatcher.event(e).await` waits for room.
//! - **Lossy**: the handler never slows anyone. If it falls more than its capacity behind, it
//!   skips ahead; the exact count is added to its stats and passed to
//!   [`Handler::missed`] before the next record it sees.
//!
//! Code that cannot await — sync functions, `Drop`, and span enter/exit inside `poll` — emits
//! with [`Emit::now`]. It never waits and never blocks a runtime worker: in a full lossless
//! channel the record is appended past the bound instead (so it is not lost), and async
//! emitters then wait until the backlog drains below the bound. The bound therefore limits
//! memory as long as some emitters await; a program that only emits synchronously trades the
//! bound for never blocking.
//!
//! # Flush and shutdown
//!
//! [`flush`] (or [`Dispatcher::flush`], [`Registry::flush`]) is a barrier: when it returns,
//! every record emitted before the call has been handled by every handler and each handler's
//! [`Handler::flush`] has run. [`shutdown`] refuses new records, drops open spans with
//! [`DropReason::Shutdown`], drains, flushes and closes every handler, and aborts any still
//! running at the deadline — returning a [`ShutdownReport`] that names them.
//!
//! # Isolation
//!
//! A handler that panics is caught in its own task: the panic is counted
//! ([`HandlerStats::panicked`], with the first message) and the handler goes on with the next
//! record. A handler that hangs delays only itself (and, in lossless mode, async emitters once
//! its channel is full); shutdown aborts it at the deadline.

pub mod context;
pub mod dispatcher;
pub mod docs;
pub mod error;
pub mod event;
pub mod events;
pub mod handler;
pub mod handlers;
pub mod record;
pub mod registry;
pub mod shutdown;
pub mod span;

mod channel;
#[cfg(loom)]
#[doc(hidden)]
pub mod channel_model;
mod id;
mod sync;

use std::time::Duration;

pub use context::{Context, SpanContext, WithContext, current_span, tags_in_scope, with_tags};
pub use dispatcher::{DEFAULT_CAPACITY, Dispatcher, DispatcherBuilder, Emit, EmitFuture};
pub use error::{EmitError, HandlerError, IdError, NameError, SerializeError};
pub use event::{AnyEvent, Event};
pub use handler::{
    Delivery, EventHandler, Handler, HandlerId, HandlerOptions, HandlerStats, SpanHandler,
};
pub use id::{SpanId, TraceId};
pub use record::{DropReason, Record, RecordKind, SpanDrop, SpanEnter, SpanExit, Tags};
pub use registry::Registry;
pub use shutdown::{HandlerReport, ShutdownReport};
pub use span::{Instrumented, OpenSpan, Span, SpanFutureExt};

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
/// # Ok::<(), spanbus::NameError>(())
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
/// # Panics
///
/// If the tokio runtime was built without the time driver.
pub async fn shutdown(timeout: Duration) -> ShutdownReport {
    Registry::global().shutdown(timeout).await
}
