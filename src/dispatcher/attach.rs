//! Handlers on a dispatcher: attached with their task, removed, and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::task::JoinHandle;

use super::Dispatcher;
use crate::delivery::{Channel, ReaderId, Receiver, topology_changed};
use crate::error::HandlerError;
use crate::handler::{
    self, Counters, EventHandler, Events, Handler, HandlerId, HandlerOptions, HandlerStats,
    SpanHandler, Spans,
};

static NEXT_HANDLER: AtomicU64 = AtomicU64::new(1);

pub(super) struct Attached {
    pub(super) id: HandlerId,
    name: String,
    reader: ReaderId,
    counters: Arc<Counters>,
    pub(super) task: JoinHandle<()>,
}

impl Attached {
    pub(super) fn stats(&self, channel: Option<&Channel>) -> HandlerStats {
        let mut stats = self.counters.snapshot(&self.name);
        stats.lost = channel.map_or(0, |c| c.lost(self.reader));
        stats
    }
}

impl Dispatcher {
    // ---- handlers -----------------------------------------------------------------------

    /// Adds a [`Handler`] with default options (lossless, named by [`Handler::name`]: its type
    /// by default). A [`BoxHandler`](crate::handler::BoxHandler) is a handler too: handler
    /// sets chosen at run time are added the same way.
    ///
    /// # Errors
    ///
    /// See [`add_handler_with`](Self::add_handler_with).
    pub fn add_handler<H: Handler>(&self, handler: H) -> Result<HandlerId, HandlerError> {
        self.add_handler_with(handler, HandlerOptions::new())
    }

    /// Adds a [`Handler`], spawning its task on the current tokio runtime. It receives records
    /// emitted from now on.
    ///
    /// # Errors
    ///
    /// [`HandlerError::NoRuntime`] outside a tokio runtime, [`HandlerError::ShutDown`] after
    /// shutdown, [`HandlerError::InvalidOptions`] for a lossy capacity of zero.
    pub fn add_handler_with<H: Handler>(
        &self,
        handler: H,
        options: HandlerOptions,
    ) -> Result<HandlerId, HandlerError> {
        let name = options.resolved_name(&handler);
        self.attach(handler, name, options)
    }

    /// Adds an [`EventHandler`] with default options.
    ///
    /// # Errors
    ///
    /// See [`add_handler_with`](Self::add_handler_with).
    pub fn add_event_handler<H: EventHandler>(
        &self,
        handler: H,
    ) -> Result<HandlerId, HandlerError> {
        self.add_event_handler_with(handler, HandlerOptions::new())
    }

    /// Adds an [`EventHandler`].
    ///
    /// # Errors
    ///
    /// See [`add_handler_with`](Self::add_handler_with).
    pub fn add_event_handler_with<H: EventHandler>(
        &self,
        handler: H,
        options: HandlerOptions,
    ) -> Result<HandlerId, HandlerError> {
        let handler = Events(handler);
        let name = options.resolved_name(&handler);
        self.attach(handler, name, options)
    }

    /// Adds a [`SpanHandler`] with default options.
    ///
    /// # Errors
    ///
    /// See [`add_handler_with`](Self::add_handler_with).
    pub fn add_span_handler<H: SpanHandler>(&self, handler: H) -> Result<HandlerId, HandlerError> {
        self.add_span_handler_with(handler, HandlerOptions::new())
    }

    /// Adds a [`SpanHandler`].
    ///
    /// # Errors
    ///
    /// See [`add_handler_with`](Self::add_handler_with).
    pub fn add_span_handler_with<H: SpanHandler>(
        &self,
        handler: H,
        options: HandlerOptions,
    ) -> Result<HandlerId, HandlerError> {
        let handler = Spans::new(handler);
        let name = options.resolved_name(&handler);
        self.attach(handler, name, options)
    }

    fn attach<H: Handler>(
        &self,
        handler: H,
        name: String,
        options: HandlerOptions,
    ) -> Result<HandlerId, HandlerError> {
        if options.delivery() == (crate::Delivery::Lossy { capacity: 0 }) {
            return Err(HandlerError::InvalidOptions(
                "a lossy capacity must be at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HandlerError::NoRuntime)?;
        // Records are made only once a handler listens: calibrate the record clock now (about
        // a millisecond, once per process), at setup, rather than in the first emit.
        crate::clock::calibrate();
        let shut_down = || HandlerError::ShutDown {
            dispatcher: self.name().to_owned(),
        };
        let mut hub = self.0.hub.lock();
        if self.is_shut_down() {
            return Err(shut_down());
        }
        let channel = Arc::clone(
            hub.channel
                .get_or_insert_with(|| Arc::new(Channel::new(self.0.capacity, self.0.overflow))),
        );
        let rx = Receiver::new(Arc::clone(&channel), options.mode()).ok_or_else(shut_down)?;
        let reader = rx.id();
        let counters = Arc::new(Counters::default());
        let id = HandlerId(NEXT_HANDLER.fetch_add(1, Ordering::Relaxed));
        let task = runtime.spawn(handler::InHandler::new(
            &channel,
            reader,
            handler::run(handler, rx, Arc::clone(&counters)),
        ));
        hub.handlers.push(Attached {
            id,
            name,
            reader,
            counters,
            task,
        });
        drop(hub);
        topology_changed();
        Ok(id)
    }

    /// Removes a handler: it stops receiving records, is flushed and closed in its task.
    /// Records queued for it but not yet taken are discarded (not counted as dropped); call
    /// [`flush`](Self::flush) first to have them handled. Returns `false` if no handler with
    /// that id is attached here.
    pub fn remove_handler(&self, id: HandlerId) -> bool {
        let mut hub = self.0.hub.lock();
        let Some(pos) = hub.handlers.iter().position(|h| h.id == id) else {
            return false;
        };
        let attached = hub.handlers.remove(pos);
        if let Some(ch) = &hub.channel {
            ch.remove_reader(attached.reader);
        }
        drop(hub);
        topology_changed();
        true
    }

    /// The counters of each handler attached here. After shutdown the handlers are detached:
    /// their final counters are in the [`ShutdownReport`](super::ShutdownReport).
    pub fn all_handler_stats(&self) -> Vec<(HandlerId, HandlerStats)> {
        let hub = self.0.hub.lock();
        hub.handlers
            .iter()
            .map(|h| (h.id, h.stats(hub.channel.as_deref())))
            .collect()
    }

    /// The counters of the handler `id`, if it is attached here (not removed, not detached by
    /// shutdown, and not attached to another dispatcher).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let d = spanbus::Dispatcher::new("app")?;
    /// let id = d.add_span_handler(spanbus::handlers::NullSpanHandler)?;
    /// d.span("step").in_scope(|| ());
    /// d.flush().await;
    /// assert_eq!(d.handler_stats(id).map(|s| s.delivered), Some(2)); // enter and exit
    /// d.remove_handler(id);
    /// assert!(d.handler_stats(id).is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn handler_stats(&self, id: HandlerId) -> Option<HandlerStats> {
        let hub = self.0.hub.lock();
        let attached = hub.handlers.iter().find(|h| h.id == id)?;
        Some(attached.stats(hub.channel.as_deref()))
    }
}
