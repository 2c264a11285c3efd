//! Handlers chosen at run time: [`DynHandler`], the object-safe form of [`Handler`].

use std::borrow::Cow;
use std::future::Future;

use super::{EventHandler, Events, Handler, SpanHandler, Spans};
use crate::record::Record;

/// The object-safe form of [`Handler`], for handler sets chosen at run time.
///
/// [`Handler`], [`EventHandler`] and [`SpanHandler`] use `async fn` in traits, so a handler
/// task is compiled for each handler type and calls it without boxing. Those traits cannot be
/// trait objects. A program that builds its handler set from configuration boxes its handlers
/// instead: every [`Handler`] is a [`DynHandler`] (a blanket implementation), and a
/// [`BoxHandler`] (`Box<dyn DynHandler>`) is itself a [`Handler`], so
/// [`Dispatcher::add_handler`](crate::Dispatcher::add_handler) takes it like any other.
/// [`boxed_events`] and [`boxed_spans`] box an event or span handler the same way.
///
/// Only this path boxes: each call into a boxed handler allocates its future. That costs the
/// handler's task about 20 ns more per record (42 against 21 ns to handle a record, in the
/// `hot_paths` benchmark's `handler_task` group); emitters pay nothing for it.
///
/// # Examples
///
/// A handler set built from a list of names, as a configuration file would give it:
///
/// ```
/// use spanbus::handler::{BoxHandler, boxed, boxed_events, boxed_spans};
/// use spanbus::handlers::{NullEventHandler, SimpleSpanHandler};
/// use spanbus::{Handler, Record};
///
/// struct Count(u64);
///
/// impl Handler for Count {
///     async fn handle(&mut self, _: &Record) {
///         self.0 += 1;
///     }
/// }
///
/// fn from_config(name: &str) -> Option<BoxHandler> {
///     match name {
///         "count" => Some(boxed(Count(0))),
///         "spans" => Some(boxed_spans(SimpleSpanHandler::new())),
///         "null" => Some(boxed_events(NullEventHandler)),
///         _ => None,
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("configured")?;
/// for name in ["count", "spans", "null"] {
///     let handler = from_config(name).expect("a known name");
///     d.add_handler(handler)?;
/// }
/// d.span("work").in_scope(|| ());
/// let report = d.shutdown(std::time::Duration::from_secs(1)).await;
/// assert_eq!(report.handlers.len(), 3);
/// # Ok(())
/// # }
/// ```
///
/// Every [`Handler`] implements this trait; implement [`Handler`] rather than this trait. Its
/// methods are those of [`Handler`], returning boxed futures.
#[async_trait::async_trait]
pub trait DynHandler: Send + 'static {
    /// See [`Handler::handle`].
    async fn handle(&mut self, record: &Record);

    /// See [`Handler::missed`].
    async fn missed(&mut self, count: u64);

    /// See [`Handler::flush`].
    async fn flush(&mut self);

    /// See [`Handler::close`].
    async fn close(&mut self);

    /// See [`Handler::name`].
    fn name(&self) -> Cow<'static, str>;
}

#[async_trait::async_trait]
impl<H: Handler> DynHandler for H {
    async fn handle(&mut self, record: &Record) {
        Handler::handle(self, record).await;
    }

    async fn missed(&mut self, count: u64) {
        Handler::missed(self, count).await;
    }

    async fn flush(&mut self) {
        Handler::flush(self).await;
    }

    async fn close(&mut self) {
        Handler::close(self).await;
    }

    fn name(&self) -> Cow<'static, str> {
        Handler::name(self)
    }
}

/// A boxed handler of any kind: what [`boxed`], [`boxed_events`] and [`boxed_spans`] make,
/// and what [`Dispatcher::add_handler`](crate::Dispatcher::add_handler) takes.
pub type BoxHandler = Box<dyn DynHandler>;

impl Handler for BoxHandler {
    // An `async fn` rather than the boxed future itself: that borrows `self` and `record` for
    // one lifetime both outlive, which the trait's `impl Future` cannot name.
    async fn handle(&mut self, record: &Record) {
        DynHandler::handle(&mut **self, record).await;
    }

    fn missed(&mut self, count: u64) -> impl Future<Output = ()> + Send {
        DynHandler::missed(&mut **self, count)
    }

    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        DynHandler::flush(&mut **self)
    }

    fn close(&mut self) -> impl Future<Output = ()> + Send {
        DynHandler::close(&mut **self)
    }

    fn name(&self) -> Cow<'static, str> {
        DynHandler::name(&**self)
    }
}

/// Boxes a [`Handler`].
pub fn boxed(handler: impl Handler) -> BoxHandler {
    Box::new(handler)
}

/// Boxes an [`EventHandler`]: it sees only events, as when added with
/// [`Dispatcher::add_event_handler`](crate::Dispatcher::add_event_handler).
pub fn boxed_events(handler: impl EventHandler) -> BoxHandler {
    Box::new(Events(handler))
}

/// Boxes a [`SpanHandler`]: it sees spans entered, exited and dropped, as when added with
/// [`Dispatcher::add_span_handler`](crate::Dispatcher::add_span_handler).
pub fn boxed_spans(handler: impl SpanHandler) -> BoxHandler {
    Box::new(Spans::new(handler))
}
