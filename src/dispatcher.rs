//! Dispatchers: named nodes that emit records to their handlers and their ancestors' handlers.
//!
//! # The hierarchy
//!
//! Dispatchers form a tree by dotted names, like Python's `logging`: `app.retriever`'s parent is
//! the nearest registered ancestor (`app` if it exists), else the registry's root. A record
//! emitted on a dispatcher goes to that dispatcher's handlers, then its parent's, and so on,
//! stopping after a dispatcher whose `propagate` is false (the root's is). See
//! [`Registry`](crate::Registry) for how names are resolved and re-linked.
//!
//! # The flow of a record
//!
//! 1. An emitter calls [`Dispatcher::event`] (or enters a span). If no handler on the chain
//!    listens, nothing is built: the check is two atomic loads.
//! 2. The record is built once — id, timestamp, current span and tags from the task-local
//!    [`Context`](crate::Context), the dispatcher's name — and shared behind an `Arc`.
//! 3. It is pushed onto the bounded broadcast channel of each dispatcher on the chain that has
//!    handlers (see [`channel`](crate#delivery)).
//! 4. Each handler's task takes it, in emit order, and calls the handler.
//!
//! The set of channels a dispatcher reaches is cached and recomputed only after the topology
//! changed (a handler added or removed, a dispatcher created, a `propagate` flag flipped).
//!
//! # Examples
//!
//! ```
//! use serde::Serialize;
//! use spanbus::{Dispatcher, Event, EventHandler, Record};
//!
//! #[derive(Serialize)]
//! struct Hello;
//! impl Event for Hello {
//!     const NAME: &'static str = "Hello";
//! }
//!
//! struct Print;
//! impl EventHandler for Print {
//!     async fn handle(&mut self, record: &Record) {
//!         println!("{} from {}", record.class_name(), record.dispatcher());
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Dispatcher::new("app")?;
//! app.add_event_handler(Print)?;
//! app.event(Hello).await?;
//! app.flush().await; // Print has handled Hello
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::channel::{Channel, Push, ReaderId};
use crate::context::{self, SpanContext};
use crate::error::{EmitError, HandlerError, NameError};
use crate::event::Event;
use crate::events::SpanDropEvent;
use crate::handler::{
    self, Counters, EventHandler, Events, Handler, HandlerId, HandlerOptions, HandlerStats,
    SpanHandler, Spans,
};
use crate::record::{DropReason, Payload, Record, RecordRef, SpanDrop, Tags};
use crate::shutdown::{HandlerReport, ShutdownReport};
use crate::span::Span;

type SharedReport = Shared<BoxFuture<'static, ShutdownReport>>;

/// The default capacity of a dispatcher's channel, in records.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Bumped on every change that can alter which channels a dispatcher reaches.
static TOPOLOGY: AtomicU64 = AtomicU64::new(1);

pub(crate) fn topology_changed() {
    TOPOLOGY.fetch_add(1, Ordering::AcqRel);
}

static NEXT_HANDLER: AtomicU64 = AtomicU64::new(1);

/// `route` bits: the low two bits of the cached tag.
const LIVE: u64 = 1;
const SHUT: u64 = 2;

/// A named node of the hierarchy that emits events and span signals.
///
/// Cloning is cheap and gives another handle to the same dispatcher.
#[derive(Clone)]
pub struct Dispatcher(Arc<Inner>);

struct Inner {
    /// Interned (see [`intern`]): `&'static &'static str` so that a record carries one word.
    name: &'static &'static str,
    parent: RwLock<Option<Dispatcher>>,
    propagate: AtomicBool,
    capacity: usize,
    /// `(topology generation << 2) | SHUT | LIVE`, as of the last refresh of `targets`.
    route: AtomicU64,
    /// The channels records go to, replaced whole by `refresh` (under `refreshing`) and read
    /// without locking by every emit.
    targets: ArcSwap<Vec<Arc<Channel>>>,
    refreshing: Mutex<()>,
    hub: Mutex<Hub>,
    open: OpenSpans,
    shut_down: AtomicBool,
    spans_dropped_at_shutdown: AtomicU64,
    /// The shutdown in progress or done, shared by every caller of `shutdown`.
    report: Mutex<Option<SharedReport>>,
}

/// The dispatcher's own handlers and the channel they read.
#[derive(Default)]
struct Hub {
    channel: Option<Arc<Channel>>,
    handlers: Vec<Attached>,
}

struct Attached {
    id: HandlerId,
    name: String,
    reader: ReaderId,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("name", &self.name())
            .field("parent", &self.parent().map(|p| *p.0.name))
            .field("propagate", &self.propagate())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Dispatcher {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Dispatcher {}

/// Builds a dispatcher outside the registry, with an explicit parent and settings.
///
/// # Examples
///
/// ```
/// use spanbus::Dispatcher;
///
/// let parent = Dispatcher::new("pipeline")?;
/// let child = Dispatcher::builder("pipeline.llm").parent(&parent).build()?;
/// assert_eq!(child.parent(), Some(parent));
/// # Ok::<(), spanbus::NameError>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct DispatcherBuilder {
    name: String,
    parent: Option<Dispatcher>,
    propagate: bool,
    capacity: usize,
}

impl DispatcherBuilder {
    /// The parent that records propagate to.
    pub fn parent(mut self, parent: &Dispatcher) -> Self {
        self.parent = Some(parent.clone());
        self
    }

    /// Whether records go on to the parent's handlers (default `true`).
    pub fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// The capacity of the dispatcher's channel (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, capacity: NonZeroUsize) -> Self {
        self.capacity = capacity.get();
        self
    }

    /// Builds the dispatcher.
    ///
    /// # Errors
    ///
    /// [`NameError`] when the name is not a valid dotted name.
    pub fn build(self) -> Result<Dispatcher, NameError> {
        crate::registry::validate_name(&self.name)?;
        Ok(Dispatcher::from_parts(
            &self.name,
            self.parent,
            self.propagate,
            self.capacity,
        ))
    }
}

impl Dispatcher {
    /// A standalone dispatcher with no parent, outside any registry.
    ///
    /// # Errors
    ///
    /// [`NameError`] when the name is not a valid dotted name.
    pub fn new(name: &str) -> Result<Dispatcher, NameError> {
        Dispatcher::builder(name).build()
    }

    /// A builder for a standalone dispatcher.
    pub fn builder(name: &str) -> DispatcherBuilder {
        DispatcherBuilder {
            name: name.to_owned(),
            parent: None,
            propagate: true,
            capacity: DEFAULT_CAPACITY,
        }
    }

    pub(crate) fn from_parts(
        name: &str,
        parent: Option<Dispatcher>,
        propagate: bool,
        capacity: usize,
    ) -> Dispatcher {
        topology_changed();
        Dispatcher(Arc::new(Inner {
            name: intern(name),
            parent: RwLock::new(parent),
            propagate: AtomicBool::new(propagate),
            capacity,
            route: AtomicU64::new(0),
            targets: ArcSwap::from_pointee(Vec::new()),
            refreshing: Mutex::new(()),
            hub: Mutex::new(Hub::default()),
            open: OpenSpans::default(),
            shut_down: AtomicBool::new(false),
            spans_dropped_at_shutdown: AtomicU64::new(0),
            report: Mutex::new(None),
        }))
    }

    /// The dispatcher's dotted name.
    pub fn name(&self) -> &str {
        self.0.name
    }

    /// The dispatcher records propagate to, if any.
    pub fn parent(&self) -> Option<Dispatcher> {
        read(&self.0.parent).clone()
    }

    pub(crate) fn set_parent(&self, parent: Option<Dispatcher>) {
        *write(&self.0.parent) = parent;
        topology_changed();
    }

    /// Whether records go on to the parent's handlers.
    pub fn propagate(&self) -> bool {
        self.0.propagate.load(Ordering::Acquire)
    }

    /// Sets whether records go on to the parent's handlers.
    pub fn set_propagate(&self, propagate: bool) {
        self.0.propagate.store(propagate, Ordering::Release);
        topology_changed();
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    pub fn is_shut_down(&self) -> bool {
        self.0.shut_down.load(Ordering::Acquire)
    }

    /// Starts emitting `event`: `.await` it to wait for room in lossless channels, or call
    /// [`Emit::now`] from sync code. Nothing is built when no handler listens.
    ///
    /// # Examples
    ///
    /// ```
    /// # use serde::Serialize;
    /// # #[derive(Serialize)] struct Ping;
    /// # impl spanbus::Event for Ping { const NAME: &'static str = "Ping"; }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let d = spanbus::Dispatcher::new("net")?;
    /// d.event(Ping).await?; // async code
    /// d.event(Ping).tag("attempt", 2).now()?; // sync code: never waits
    /// # Ok(())
    /// # }
    /// ```
    pub fn event<E: Event>(&self, event: E) -> Emit<'_, E> {
        Emit {
            dispatcher: self,
            event,
            span: None,
            tags: None,
        }
    }

    /// A span named `name` on this dispatcher, to wrap a future, a closure, or enter by hand.
    pub fn span(&self, name: impl Into<std::borrow::Cow<'static, str>>) -> Span {
        Span::new(self.clone(), name.into())
    }

    // ---- routing ------------------------------------------------------------------------

    /// The route bits (`LIVE`, `SHUT`), refreshing the cached targets if the topology changed.
    #[inline]
    fn route(&self) -> u64 {
        let generation = TOPOLOGY.load(Ordering::Acquire);
        let route = self.0.route.load(Ordering::Acquire);
        if route >> 2 == generation {
            route & 3
        } else {
            self.refresh(generation)
        }
    }

    #[cold]
    fn refresh(&self, generation: u64) -> u64 {
        let _refreshing = lock(&self.0.refreshing);
        let shut = self.is_shut_down();
        let channels = if shut {
            Vec::new()
        } else {
            self.chain_channels()
        };
        let bits = if shut { SHUT } else { 0 } | if channels.is_empty() { 0 } else { LIVE };
        self.0.targets.store(Arc::new(channels));
        self.0
            .route
            .store((generation << 2) | bits, Ordering::Release);
        bits
    }

    /// The open channels with readers on the propagation chain from here up.
    fn chain_channels(&self) -> Vec<Arc<Channel>> {
        let mut channels = Vec::new();
        let mut node = Some(self.clone());
        let mut hops = 0;
        while let Some(d) = node {
            if let Some(ch) = &lock(&d.0.hub).channel
                && ch.has_readers()
            {
                channels.push(Arc::clone(ch));
            }
            hops += 1;
            if !d.propagate() || hops > MAX_DEPTH {
                break;
            }
            node = d.parent();
        }
        channels
    }

    /// Pushes without waiting to every target; used for span signals and sync emission.
    /// Returns whether the record got into every channel, and there was at least one (a
    /// channel refuses once closed; shutdown empties the targets).
    fn push_now(&self, record: &RecordRef) -> bool {
        let targets = self.0.targets.load();
        let mut all = !targets.is_empty();
        for ch in targets.iter() {
            all &= ch.push_now(record.clone()).is_ok();
        }
        all
    }

    fn shut_down_error(&self) -> EmitError {
        EmitError::ShutDown {
            dispatcher: self.name().to_owned(),
        }
    }

    fn new_record<P: Payload>(
        &self,
        span: Option<SpanContext>,
        tags: Option<Arc<Tags>>,
        payload: P,
    ) -> RecordRef {
        Record::alloc(span, tags, self.0.name, payload)
    }

    // ---- spans (used by `span.rs`) ------------------------------------------------------

    /// Emits a span enter and tracks the span as open; returns where it is tracked, or `None`
    /// when it is not (nobody listens, or the dispatcher is shut down). The enter record is
    /// built only for a tracked span.
    #[inline]
    pub(crate) fn enter_span(
        &self,
        ctx: SpanContext,
        tags: &Option<Arc<Tags>>,
        parent: Option<SpanContext>,
        name: std::borrow::Cow<'static, str>,
        args: Option<Value>,
    ) -> Option<Tracked> {
        if self.route() != LIVE {
            return None;
        }
        self.track_and_enter(ctx, tags, parent, name, args)
    }

    /// The body of [`enter_span`](Self::enter_span), kept out of it so that the no-listener
    /// check alone inlines into every span (the path the W0 idle-span workload measures).
    fn track_and_enter(
        &self,
        ctx: SpanContext,
        tags: &Option<Arc<Tags>>,
        parent: Option<SpanContext>,
        name: std::borrow::Cow<'static, str>,
        args: Option<Value>,
    ) -> Option<Tracked> {
        // Track and announce under the shard lock, re-checking shutdown there: shutdown sets
        // its flag before it drains the shards, so a span is either drained (and dropped) by
        // shutdown or never tracked — never tracked after the drain and left open forever.
        let shard = OpenSpans::shard_of_this_thread();
        let mut open = self.0.open.lock(shard);
        if self.is_shut_down() {
            return None;
        }
        let slot = open.insert(ctx, tags.clone());
        let enter = crate::record::SpanEnter {
            id: ctx.span_id(),
            parent: parent.map(|p| p.span_id()),
            name,
            args,
        };
        self.push_span_record(self.new_record(Some(ctx), tags.clone(), enter));
        Some(Tracked { shard, slot })
    }

    /// Emits the exit of a tracked span, unless shutdown already dropped it.
    pub(crate) fn exit_span(&self, at: Tracked, ctx: SpanContext, tags: Option<Arc<Tags>>) {
        // The shard lock is held until the record is pushed, so shutdown (which drains the
        // shards before closing any channel) cannot close the channels in between.
        let mut open = self.0.open.lock(at.shard);
        if open.remove(at.slot, ctx) {
            let exit = crate::record::SpanExit { id: ctx.span_id() };
            self.push_span_record(self.new_record(Some(ctx), tags, exit));
        }
    }

    /// Emits the drop of a tracked span and its `SpanDropEvent`, unless already dropped.
    pub(crate) fn drop_span(
        &self,
        at: Tracked,
        ctx: SpanContext,
        tags: Option<Arc<Tags>>,
        reason: DropReason,
        message: String,
    ) {
        let mut open = self.0.open.lock(at.shard);
        if open.remove(at.slot, ctx) {
            self.push_drop(ctx, tags, reason, message, None);
        }
    }

    /// Pushes a signal of a tracked span; called with the span's shard lock held.
    ///
    /// Shutdown sets its flag, then drains the shards (waiting for that lock), and closes
    /// channels only after that; so while the lock is held the chain's channels are open. But
    /// once the flag is set, any thread may refresh this dispatcher's targets to empty: then
    /// the record goes to the chain's open channels directly, so that a span tracked before
    /// the drain is entered and closed exactly once for its handlers.
    ///
    /// The record is moved into the last channel rather than cloned, so a span signal to one
    /// channel costs no reference-count traffic on the emitter's side.
    fn push_span_record(&self, record: RecordRef) {
        self.route();
        {
            let targets = self.0.targets.load();
            if let Some((last, rest)) = targets.split_last() {
                for ch in rest {
                    let _ = ch.push_now(record.clone());
                }
                let _ = last.push_now(record);
                return;
            }
            if !self.is_shut_down() {
                return;
            }
        }
        push_to(&self.chain_channels(), &record);
    }

    fn push_drop(
        &self,
        ctx: SpanContext,
        tags: Option<Arc<Tags>>,
        reason: DropReason,
        message: String,
        to: Option<&[Arc<Channel>]>,
    ) {
        let event = SpanDropEvent {
            err_str: message.clone(),
        };
        let drop = SpanDrop {
            id: ctx.span_id(),
            reason,
            message,
        };
        let records = [
            self.new_record(Some(ctx), tags.clone(), drop),
            Record::event_record(Some(ctx), tags, self.0.name, event),
        ];
        match to {
            None => records.into_iter().for_each(|r| self.push_span_record(r)),
            Some(channels) => records.iter().for_each(|r| push_to(channels, r)),
        }
    }

    // ---- handlers -----------------------------------------------------------------------

    /// Adds a [`Handler`] with default options (lossless, named after its type).
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
        let name = options.resolved_name::<H>();
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
        let name = options.resolved_name::<H>();
        self.attach(Events(handler), name, options)
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
        let name = options.resolved_name::<H>();
        self.attach(Spans::new(handler), name, options)
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
        let mut hub = lock(&self.0.hub);
        if self.is_shut_down() {
            return Err(shut_down());
        }
        let channel = Arc::clone(
            hub.channel
                .get_or_insert_with(|| Arc::new(Channel::new(self.0.capacity))),
        );
        let reader = channel.add_reader(options.mode()).ok_or_else(shut_down)?;
        let counters = Arc::new(Counters::default());
        let id = HandlerId(NEXT_HANDLER.fetch_add(1, Ordering::Relaxed));
        let task = runtime.spawn(handler::InHandler::new(
            &channel,
            handler::run(handler, Arc::clone(&channel), reader, Arc::clone(&counters)),
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
        let mut hub = lock(&self.0.hub);
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
    /// their final counters are in the [`ShutdownReport`].
    pub fn handler_stats(&self) -> Vec<(HandlerId, HandlerStats)> {
        lock(&self.0.hub)
            .handlers
            .iter()
            .map(|h| (h.id, h.counters.snapshot(&h.name)))
            .collect()
    }

    // ---- flush and shutdown -------------------------------------------------------------

    /// Waits until every record emitted on this dispatcher before the call has been handled
    /// by every handler it reaches (here and up the chain), and those handlers have been
    /// flushed.
    ///
    /// A handler that never returns makes `flush` wait forever; bound it with
    /// `tokio::time::timeout` if a handler may hang.
    pub async fn flush(&self) {
        flush_channels(self.chain_channels()).await;
    }

    /// The channel of this dispatcher's own handlers, if it has any.
    pub(crate) fn own_channel(&self) -> Option<Arc<Channel>> {
        lock(&self.0.hub).channel.clone()
    }

    /// Shuts the dispatcher down within `timeout` and reports on each of its handlers.
    ///
    /// In order: emitting is refused from now on ([`EmitError::ShutDown`]); spans still open
    /// on this dispatcher are dropped with [`DropReason::Shutdown`] (their records reach the
    /// handlers); each handler handles what is queued, is flushed and closed, and its task
    /// ends. A handler still running at the deadline is aborted and reported as timed out.
    /// Idempotent: later calls return the first call's report (waiting for it if needed).
    /// Cancel-safe: if the caller stops waiting (a timeout, a lost `select!`), the shutdown
    /// still completes by its deadline, and the next call returns its report.
    ///
    /// Records this dispatcher's descendants emit no longer reach its handlers.
    ///
    /// # Panics
    ///
    /// If the tokio runtime was built without the time driver.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let d = spanbus::Dispatcher::new("job")?;
    /// d.add_span_handler(spanbus::handlers::NullSpanHandler)?;
    /// let report = d.shutdown(Duration::from_secs(5)).await;
    /// assert!(report.timed_out().next().is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = tokio::time::Instant::now() + timeout;
        let shared = {
            let mut slot = lock(&self.0.report);
            match &*slot {
                Some(shared) => shared.clone(),
                None => {
                    self.begin_shutdown();
                    let this = self.clone();
                    let work = async move { this.finish_shutdown(deadline).await };
                    // The work runs in its own task, so a caller that stops waiting (a timeout,
                    // a lost `select!`) does not abandon the handlers half shut down: the
                    // deadline is still enforced and the report is there for the next call.
                    let work: BoxFuture<'static, ShutdownReport> =
                        match tokio::runtime::Handle::try_current() {
                            Ok(runtime) => {
                                let task = runtime.spawn(work);
                                Box::pin(async move { task.await.unwrap_or_default() })
                            }
                            Err(_) => Box::pin(work),
                        };
                    let shared = work.shared();
                    *slot = Some(shared.clone());
                    shared
                }
            }
        };
        shared.await
    }

    /// Refuses new records and drops open spans. Idempotent.
    pub(crate) fn begin_shutdown(&self) {
        if self.0.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        topology_changed();
        let channels = self.chain_channels();
        let open = self.0.open.drain();
        self.0
            .spans_dropped_at_shutdown
            .store(open.len() as u64, Ordering::Release);
        for (ctx, tags) in open {
            self.push_drop(
                ctx,
                tags,
                DropReason::Shutdown,
                "dispatcher shutdown".to_owned(),
                Some(&channels),
            );
        }
    }

    async fn finish_shutdown(&self, deadline: tokio::time::Instant) -> ShutdownReport {
        let (channel, handlers) = {
            let mut hub = lock(&self.0.hub);
            (hub.channel.clone(), std::mem::take(&mut hub.handlers))
        };
        if let Some(ch) = channel {
            ch.close();
        }
        topology_changed();
        let mut reports = Vec::with_capacity(handlers.len());
        for mut h in handlers {
            let timed_out = match tokio::time::timeout_at(deadline, &mut h.task).await {
                Ok(_) => false,
                Err(_) => {
                    h.task.abort();
                    true
                }
            };
            reports.push(HandlerReport {
                dispatcher: self.name().to_owned(),
                id: h.id,
                stats: h.counters.snapshot(&h.name),
                timed_out,
            });
        }
        ShutdownReport {
            handlers: reports,
            spans_dropped: self.0.spans_dropped_at_shutdown.load(Ordering::Acquire),
        }
    }
}

/// Pushes `record` without waiting to each of `channels`.
fn push_to(channels: &[Arc<Channel>], record: &RecordRef) {
    for ch in channels {
        let _ = ch.push_now(record.clone());
    }
}

/// The process-wide copy of a dispatcher name.
///
/// Every record carries its dispatcher's name. As an `Arc<str>` that meant one shared reference
/// count bumped by the emitting thread and dropped by each handler's thread for every record —
/// a cache line bouncing between cores. Names are few and long-lived, so each distinct name is
/// stored once for the life of the process and records carry a plain `&'static str`. (A program
/// that invents unboundedly many dispatcher names keeps each of them; dispatchers are meant to
/// be named after components, like loggers.)
///
/// The name is returned behind a second reference (`&'static &'static str`, one word) so the
/// record envelope stays small: a record that fits glibc's fast bins (≤ 120 bytes) is freed by
/// a handler's thread and reused by the emitter's far more cheaply than a larger one.
fn intern(name: &str) -> &'static &'static str {
    static NAMES: Mutex<BTreeMap<&'static str, &'static &'static str>> =
        Mutex::new(BTreeMap::new());
    let mut names = lock(&NAMES);
    if let Some(&known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let thin: &'static &'static str = Box::leak(Box::new(leaked));
    names.insert(leaked, thin);
    thin
}

/// Parent chains longer than this are treated as cut (a guard against a cycle).
const MAX_DEPTH: usize = 1024;

/// Places a barrier on each channel and waits for all of them.
///
/// Called from inside a handler, the handler's own channel is skipped: its barrier could only
/// be reached after the handler returns.
pub(crate) async fn flush_channels(channels: impl IntoIterator<Item = Arc<Channel>>) {
    let own = handler::handling();
    let barriers: Vec<_> = channels
        .into_iter()
        .filter(|c| Some(Arc::as_ptr(c) as usize) != own)
        .filter_map(|c| c.barrier())
        .collect();
    for barrier in barriers {
        let _ = barrier.await;
    }
}

// ---- emitting -----------------------------------------------------------------------------

/// An event about to be emitted; made by [`Dispatcher::event`].
///
/// `.await` it (waits for room in lossless channels) or call [`now`](Self::now) (never waits).
#[must_use = "an event is emitted only by `.await` or `.now()`"]
pub struct Emit<'a, E> {
    dispatcher: &'a Dispatcher,
    event: E,
    span: Option<Option<SpanContext>>,
    tags: Option<Tags>,
}

impl<E: Event> Emit<'_, E> {
    /// Attributes the event to `span` instead of the current span (`None`: to no span).
    pub fn span(mut self, span: Option<SpanContext>) -> Self {
        self.span = Some(span);
        self
    }

    /// Adds a tag to this event. The active tags are merged over it (the active scope wins,
    /// as in llama-index).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.tags
            .get_or_insert_with(Tags::new)
            .insert(key.into(), value.into());
        self
    }

    /// Builds the record, given the dispatcher's `route` (checked once by the caller, which
    /// returns early when nobody listens): an error after shutdown.
    fn into_record(self, route: u64) -> Result<RecordRef, EmitError> {
        if route != LIVE {
            return Err(self.dispatcher.shut_down_error());
        }
        let (current_span, active) = context::current_parts();
        let tags = match self.tags {
            None => active,
            Some(mut own) => {
                if let Some(active) = active {
                    own.extend(active.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                Some(Arc::new(own))
            }
        };
        let span = self.span.unwrap_or(current_span);
        Ok(Record::event_record(
            span,
            tags,
            self.dispatcher.0.name,
            self.event,
        ))
    }

    /// Emits without waiting, from sync code or a `Drop`.
    ///
    /// Never blocks: in a full lossless channel the record is appended beyond the bound (so
    /// nothing is lost) and async emitters wait until the backlog drains.
    ///
    /// # Errors
    ///
    /// [`EmitError::ShutDown`] after the dispatcher was shut down, or when a shutdown that
    /// began during the call closed a channel before the record got in. `Ok` means the record
    /// is queued for every handler it reaches.
    #[inline]
    pub fn now(self) -> Result<(), EmitError> {
        let dispatcher = self.dispatcher;
        // Nobody listens: the common case in production code paths, kept to two loads.
        let route = dispatcher.route();
        if route == 0 {
            return Ok(());
        }
        let record = self.into_record(route)?;
        if !dispatcher.push_now(&record) && dispatcher.is_shut_down() {
            return Err(dispatcher.shut_down_error());
        }
        Ok(())
    }
}

impl<'a, E: Event> IntoFuture for Emit<'a, E> {
    type Output = Result<(), EmitError>;
    type IntoFuture = EmitFuture;

    #[inline]
    fn into_future(self) -> EmitFuture {
        let dispatcher = self.dispatcher;
        let route = dispatcher.route();
        if route == 0 {
            return EmitFuture { state: None };
        }
        let record = match self.into_record(route) {
            Ok(record) => record,
            Err(e) => {
                return EmitFuture {
                    state: Some(Waiting::Failed(e)),
                };
            }
        };
        // Inside a handler, waiting for room could wait on this very handler (or on one that
        // waits on it): emit as `now()` does instead, which never waits and loses nothing.
        if handler::handling().is_some() {
            let state = match dispatcher.push_now(&record) {
                false if dispatcher.is_shut_down() => {
                    Some(Waiting::Failed(dispatcher.shut_down_error()))
                }
                _ => None,
            };
            return EmitFuture { state };
        }
        // Fast path: every channel has room.
        let targets = dispatcher.0.targets.load();
        let wait = |record, next| EmitFuture {
            state: Some(Waiting::Room {
                record,
                targets: Arc::clone(&targets),
                next,
                dispatcher: dispatcher.clone(),
            }),
        };
        // Empty although `into_record` saw listeners: a shutdown has emptied them meanwhile.
        let mut refused = true;
        if let Some((last, rest)) = targets.split_last() {
            refused = false;
            for (i, ch) in rest.iter().enumerate() {
                match ch.push(&record, None) {
                    Push::Done => {}
                    Push::Closed => refused = true,
                    Push::Full => return wait(record, i),
                }
            }
            // The last channel takes the emitter's own reference.
            match last.push_owned(record, None) {
                Ok(()) => {}
                Err((Push::Full, record)) => return wait(record, rest.len()),
                Err(_) => refused = true,
            }
        }
        // A shutdown that began after the check in `into_record` closed a channel (or emptied
        // the targets) first: the record did not get in, so do not report success.
        if refused && dispatcher.is_shut_down() {
            return EmitFuture {
                state: Some(Waiting::Failed(dispatcher.shut_down_error())),
            };
        }
        EmitFuture { state: None }
    }
}

/// The future of an [`Emit`]: resolves once the record is in every channel.
#[must_use = "futures do nothing unless polled"]
pub struct EmitFuture {
    state: Option<Waiting>,
}

enum Waiting {
    Failed(EmitError),
    Room {
        record: RecordRef,
        targets: Arc<Vec<Arc<Channel>>>,
        next: usize,
        dispatcher: Dispatcher,
    },
}

impl Future for EmitFuture {
    type Output = Result<(), EmitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            None => Poll::Ready(Ok(())),
            Some(Waiting::Failed(_)) => match self.state.take() {
                Some(Waiting::Failed(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(())),
            },
            Some(Waiting::Room {
                record,
                targets,
                next,
                dispatcher,
            }) => {
                while let Some(ch) = targets.get(*next) {
                    match ch.push(record, Some(cx.waker())) {
                        Push::Full => return Poll::Pending,
                        // Our own dispatcher shut down while we waited: the record was refused,
                        // so say so instead of reporting success. (A channel closed because an
                        // ancestor alone shut down is skipped, as a fresh emit would skip it.)
                        Push::Closed if dispatcher.is_shut_down() => {
                            let error = dispatcher.shut_down_error();
                            self.state = None;
                            return Poll::Ready(Err(error));
                        }
                        Push::Closed | Push::Done => {}
                    }
                    *next += 1;
                }
                self.state = None;
                Poll::Ready(Ok(()))
            }
        }
    }
}

// ---- open spans ---------------------------------------------------------------------------

/// Shards of the open-span registry. Each thread uses one shard (assigned round-robin at its
/// first span), so spans entered on different threads do not contend and a span's slot is
/// usually in the cache of the core that entered it.
const SHARDS: usize = 16;

/// Where a tracked span sits in its dispatcher's registry; kept by the span's owner so that
/// its exit finds the entry by index, without hashing, even from another thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    shard: usize,
    slot: u32,
}

/// Spans entered on a dispatcher and not yet ended, so shutdown can drop them.
///
/// A span is inserted at enter and removed at its exit or drop, both under its shard's lock,
/// which is held while the span's record is pushed. Shutdown sets the dispatcher's flag, then
/// drains every shard under its lock: so each tracked span is ended exactly once, either by
/// its owner or by shutdown, and a span entered after the drain is never tracked (enter checks
/// the flag under the lock).
#[derive(Default)]
struct OpenSpans {
    shards: [Shard; SHARDS],
}

/// One shard, on its own cache line so that threads using neighbouring shards do not share it.
#[derive(Default)]
#[repr(align(64))]
struct Shard(Mutex<Slab>);

/// A slab of open spans: entries are reused through a free list, so a span's slot index stays
/// valid until the span ends.
#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    /// The first free entry, or `NO_SLOT`.
    free: u32,
}

const NO_SLOT: u32 = u32::MAX;

enum Entry {
    Open(SpanContext, Option<Arc<Tags>>),
    /// Free; the next free entry, or `NO_SLOT`.
    Free(u32),
}

impl Slab {
    fn insert(&mut self, ctx: SpanContext, tags: Option<Arc<Tags>>) -> u32 {
        let entry = Entry::Open(ctx, tags);
        // `entries` starts empty with `free` zero: treat an index past the end as the end. (The
        // free list only links free entries; an open one there would be appended past, too.)
        match self.entries.get_mut(self.free as usize) {
            Some(slot) if matches!(slot, Entry::Free(_)) => {
                let at = self.free;
                if let Entry::Free(next) = std::mem::replace(slot, entry) {
                    self.free = next;
                }
                at
            }
            _ => {
                let at = self.entries.len() as u32;
                self.entries.push(entry);
                self.free = NO_SLOT;
                at
            }
        }
    }

    /// Removes the span at `slot` if it is still there; false if shutdown drained it.
    fn remove(&mut self, slot: u32, ctx: SpanContext) -> bool {
        // The entry must hold this very span: a slot is reused only after its span ended.
        match self.entries.get_mut(slot as usize) {
            Some(entry) if matches!(&*entry, Entry::Open(c, _) if *c == ctx) => {
                *entry = Entry::Free(self.free);
                self.free = slot;
                true
            }
            _ => false,
        }
    }
}

impl OpenSpans {
    /// The shard this thread uses.
    #[inline]
    fn shard_of_this_thread() -> usize {
        use std::cell::Cell;
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        SHARD
            .try_with(|s| {
                let mut shard = s.get();
                if shard == usize::MAX {
                    shard = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                    s.set(shard);
                }
                shard
            })
            .unwrap_or(0)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Slab> {
        lock(&self.shards[shard].0)
    }

    /// Takes every open span out. Called once shutdown has set its flag, so none is added
    /// after; the slots of spans still held by their owners are gone, so their exits find
    /// nothing and emit nothing.
    fn drain(&self) -> Vec<(SpanContext, Option<Arc<Tags>>)> {
        let mut open = Vec::new();
        for shard in &self.shards {
            let entries = std::mem::take(&mut *lock(&shard.0)).entries;
            open.extend(entries.into_iter().filter_map(|e| match e {
                Entry::Open(ctx, tags) => Some((ctx, tags)),
                Entry::Free(_) => None,
            }));
        }
        open
    }
}

// ---- poison-tolerant locks ----------------------------------------------------------------
// No user code runs while these locks are held, so a poisoned lock still guards consistent
// data; recovering keeps one panic from cascading into every emitter.

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod open_span_tests {
    use super::*;
    use crate::id::{SpanId, TraceId};

    fn ctx() -> SpanContext {
        SpanContext::new(TraceId::random(), SpanId::random())
    }

    #[test]
    fn a_slab_reuses_freed_slots_and_removes_each_span_once() {
        let mut slab = Slab::default();
        let (a, b, c) = (ctx(), ctx(), ctx());
        let (sa, sb, sc) = (
            slab.insert(a, None),
            slab.insert(b, None),
            slab.insert(c, None),
        );
        assert_eq!((sa, sb, sc), (0, 1, 2));
        assert!(slab.remove(sb, b));
        assert!(!slab.remove(sb, b), "a span is removed once");
        let d = ctx();
        assert_eq!(slab.insert(d, None), sb, "the freed slot is reused");
        assert_eq!(slab.insert(ctx(), None), 3);
        assert!(slab.remove(sa, a));
        assert!(slab.remove(sc, c));
        assert!(slab.remove(sb, d));
        assert_eq!(
            slab.insert(ctx(), None),
            sb,
            "the last freed slot comes first"
        );
    }

    #[test]
    fn a_drain_takes_every_open_span_and_later_exits_find_nothing() {
        let open = OpenSpans::default();
        let mut tracked = Vec::new();
        for shard in [0, 3, 3, SHARDS - 1] {
            let c = ctx();
            tracked.push((shard, open.lock(shard).insert(c, None), c));
        }
        let (shard, slot, c) = tracked.pop().unwrap_or_else(|| unreachable!());
        assert!(open.lock(shard).remove(slot, c));
        let mut drained: Vec<SpanId> = open.drain().into_iter().map(|(c, _)| c.span_id()).collect();
        let mut expected: Vec<SpanId> = tracked.iter().map(|t| t.2.span_id()).collect();
        drained.sort();
        expected.sort();
        assert_eq!(drained, expected);
        for (shard, slot, c) in tracked {
            assert!(!open.lock(shard).remove(slot, c));
        }
        assert!(open.drain().is_empty());
    }
}
