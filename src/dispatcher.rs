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

use crate::context::{self, SpanContext};
use crate::delivery::{Channel, Push, ReaderId, Receiver, topology, topology_changed};
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

static NEXT_HANDLER: AtomicU64 = AtomicU64::new(1);

/// `route` bits: the low three bits of the cached tag. `LIVE`: some handler on the chain
/// listens. `SHUT`: this dispatcher is shut down. `GONE`: every handler on the chain lost its
/// task (its runtime was dropped), so records reach nobody.
const LIVE: u64 = 1;
const SHUT: u64 = 2;
const GONE: u64 = 4;
const ROUTE_BITS: u32 = 3;

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
    overflow: usize,
    /// `(topology generation << ROUTE_BITS) | GONE | SHUT | LIVE`, as of the last refresh of
    /// `targets`.
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

impl Attached {
    fn stats(&self, channel: Option<&Channel>) -> HandlerStats {
        let mut stats = self.counters.snapshot(&self.name);
        stats.lost = channel.map_or(0, |c| c.lost(self.reader));
        stats
    }
}

impl Drop for Inner {
    /// The last handle is gone, so nothing can emit here any more: close the channel, so that
    /// the handler tasks drain it, run their handlers' `flush` and `close`, and end.
    fn drop(&mut self) {
        let hub = self.hub.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = hub.channel.take() {
            channel.close();
        }
    }
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
    overflow: Option<usize>,
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

    /// How many records past its capacity the channel takes from emitters that cannot wait
    /// (default: the capacity, so the hard cap is twice the capacity). See
    /// [the bound](crate#the-bound) for what happens past it.
    pub fn overflow(mut self, overflow: usize) -> Self {
        self.overflow = Some(overflow);
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
            self.overflow.unwrap_or(self.capacity),
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
            overflow: None,
        }
    }

    pub(crate) fn from_parts(
        name: &str,
        parent: Option<Dispatcher>,
        propagate: bool,
        capacity: usize,
        overflow: usize,
    ) -> Dispatcher {
        topology_changed();
        Dispatcher(Arc::new(Inner {
            name: intern(name),
            parent: RwLock::new(parent),
            propagate: AtomicBool::new(propagate),
            capacity,
            overflow,
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
    ///
    /// If no handler listens on the chain now, the span is idle and costs next to nothing
    /// (see [`Span::is_idle`]).
    #[inline]
    pub fn span(&self, name: impl Into<std::borrow::Cow<'static, str>>) -> Span {
        let live = self.route() & (LIVE | SHUT) == LIVE;
        Span::new(live.then(|| self.clone()), name.into())
    }

    // ---- routing ------------------------------------------------------------------------

    /// The route bits (`LIVE`, `SHUT`, `GONE`), refreshing the cached targets if the topology
    /// changed.
    #[inline]
    fn route(&self) -> u64 {
        let generation = topology();
        let route = self.0.route.load(Ordering::Acquire);
        if route >> ROUTE_BITS == generation {
            route & ((1 << ROUTE_BITS) - 1)
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
        let gone = !channels.is_empty() && channels.iter().all(|c| c.all_gone());
        let bits = if shut { SHUT } else { 0 }
            | if channels.is_empty() { 0 } else { LIVE }
            | if gone { GONE } else { 0 };
        self.0.targets.store(Arc::new(channels));
        self.0
            .route
            .store((generation << ROUTE_BITS) | bits, Ordering::Release);
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

    /// Pushes to every target without waiting for room, for sync emission (see
    /// [the bound](crate#the-bound)): past a channel's hard cap, a plain thread blocks until
    /// there is room; any other drops the record there and counts it.
    fn push_now(&self, record: &RecordRef) -> Pushed {
        let targets = self.0.targets.load();
        // Empty although the route said someone listens: a shutdown has emptied them.
        let mut pushed = if targets.is_empty() {
            Pushed::Refused
        } else {
            Pushed::All
        };
        for ch in targets.iter() {
            let outcome = match ch.push_now(record.clone()) {
                Ok(()) => Pushed::All,
                Err((Push::Full, _)) if crate::delivery::park::may_block() => {
                    match ch.push_blocking(record) {
                        Push::Closed => Pushed::Refused,
                        _ => Pushed::All,
                    }
                }
                Err((Push::Full, _)) => {
                    ch.overflowed();
                    Pushed::Overflowed
                }
                Err(_) => Pushed::Refused,
            };
            pushed = pushed.max(outcome);
        }
        pushed
    }

    /// Whether every channel on the chain has room below its bound for records that wait; if
    /// not, `cx` is woken when there is. Always true when nobody listens and inside a handler
    /// (which must never wait on handlers).
    #[inline]
    pub(crate) fn poll_room(&self, cx: &mut std::task::Context<'_>) -> bool {
        if self.route() & (LIVE | SHUT) != LIVE {
            return true;
        }
        let targets = self.0.targets.load();
        targets.iter().all(|ch| ch.poll_room(cx.waker())) || handler::in_handler()
    }

    /// For sync spans: on a plain thread, waits until every channel on the chain is below its
    /// hard cap, so that the span's records are not dropped there. Never waits elsewhere.
    #[inline]
    pub(crate) fn wait_below_hard_cap(&self) {
        if self.route() & (LIVE | SHUT) != LIVE {
            return;
        }
        let targets = self.0.targets.load();
        if targets.iter().all(|ch| ch.below_hard_cap()) || !crate::delivery::park::may_block() {
            return;
        }
        for ch in targets.iter() {
            crate::delivery::park::block_on(|cx| match ch.poll_room(cx.waker()) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            });
        }
    }

    fn shut_down_error(&self) -> EmitError {
        EmitError::ShutDown {
            dispatcher: self.name().to_owned(),
        }
    }

    /// The outcome of an emit whose record went to the chain's channels, given the route it
    /// was made on.
    fn emitted(&self, pushed: Pushed, route: u64) -> Result<(), EmitError> {
        if pushed == Pushed::Refused && self.is_shut_down() {
            // A shutdown that began after the route was read closed a channel first.
            return Err(self.shut_down_error());
        }
        if pushed == Pushed::Overflowed {
            return Err(EmitError::Overflow {
                dispatcher: self.name().to_owned(),
            });
        }
        if route & GONE != 0 {
            return Err(EmitError::HandlersGone {
                dispatcher: self.name().to_owned(),
            });
        }
        Ok(())
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
        if self.route() & (LIVE | SHUT) != LIVE {
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
        let enter = crate::record::SpanEnter {
            id: ctx.span_id(),
            parent: parent.map(|p| p.span_id()),
            name,
            args,
        };
        // An enter no channel took (each at its hard cap, or nobody listens any more) is not
        // tracked: the span then emits no end either.
        let record = self.new_record(Some(ctx), tags.clone(), enter);
        if !self.push_span_record(record, Signal::Enter) {
            return None;
        }
        let slot = open.insert(ctx, tags.clone());
        Some(Tracked { shard, slot })
    }

    /// Emits the exit of a tracked span, unless shutdown already dropped it.
    pub(crate) fn exit_span(&self, at: Tracked, ctx: SpanContext, tags: Option<Arc<Tags>>) {
        // The shard lock is held until the record is pushed, so shutdown (which drains the
        // shards before closing any channel) cannot close the channels in between.
        let mut open = self.0.open.lock(at.shard);
        if open.remove(at.slot, ctx) {
            let exit = crate::record::SpanExit { id: ctx.span_id() };
            self.push_span_record(self.new_record(Some(ctx), tags, exit), Signal::End);
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

    /// Pushes a signal of a tracked span; called with the span's shard lock held, so never
    /// blocks. An enter respects the hard cap (past it, it is dropped and counted); an end is
    /// pushed past it, so that every span a handler saw entered is ended for it: the ends
    /// past the cap are bounded by the spans open (which their owners hold in memory anyway).
    /// Returns whether some channel took the record.
    ///
    /// Shutdown sets its flag, then drains the shards (waiting for that lock), and closes
    /// channels only after that; so while the lock is held the chain's channels are open. But
    /// once the flag is set, any thread may refresh this dispatcher's targets to empty: then
    /// the record goes to the chain's open channels directly, so that a span tracked before
    /// the drain is entered and closed exactly once for its handlers.
    ///
    /// The record is moved into the last channel rather than cloned, so a span signal to one
    /// channel costs no reference-count traffic on the emitter's side.
    fn push_span_record(&self, record: RecordRef, signal: Signal) -> bool {
        self.route();
        {
            let targets = self.0.targets.load();
            let push = |ch: &Channel, record| match signal {
                Signal::Enter => push_or_count(ch, record),
                Signal::End => ch.push_past_cap(record).is_ok(),
            };
            if let Some((last, rest)) = targets.split_last() {
                let mut took = false;
                for ch in rest {
                    took |= push(ch, record.clone());
                }
                return push(last, record) | took;
            }
            if !self.is_shut_down() {
                return false;
            }
        }
        push_past_cap_to(&self.chain_channels(), &record);
        true
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
            None => records.into_iter().for_each(|r| {
                self.push_span_record(r, Signal::End);
            }),
            Some(channels) => records.iter().for_each(|r| push_past_cap_to(channels, r)),
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
        let hub = lock(&self.0.hub);
        hub.handlers
            .iter()
            .map(|h| (h.id, h.stats(hub.channel.as_deref())))
            .collect()
    }

    // ---- flush and shutdown -------------------------------------------------------------

    /// Waits until every record emitted on this dispatcher before the call has been handled
    /// by every handler it reaches (here and up the chain), and those handlers have been
    /// flushed.
    ///
    /// A handler that never returns makes `flush` wait forever; bound it with
    /// `tokio::time::timeout` if a handler may hang.
    ///
    /// Called from inside a handler, `flush` skips that handler's own channel (it would wait
    /// for itself) and does not wait for handlers that are themselves waiting in a flush
    /// called from inside them (they would wait for each other).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future stops the waiting only; handlers still reach the
    /// barrier and flush.
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
    ///
    /// Records this dispatcher's descendants emit no longer reach its handlers.
    ///
    /// Works from anywhere: inside or outside a tokio runtime, from `Drop`, or blocked on
    /// with `futures::executor::block_on` (even on the thread of a current-thread runtime).
    /// The waiting for the handlers is done by a short-lived thread of its own, which needs no
    /// runtime and is never scheduled on one the caller may be blocking; so the report comes
    /// by the deadline whatever the caller's thread is doing. A handler whose runtime cannot
    /// run it meanwhile (the caller is blocking that runtime's only thread) cannot finish: it
    /// is reported as timed out.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: if the caller stops waiting (a timeout, a lost `select!`), the shutdown
    /// still completes by its deadline, and the next call returns its report.
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
        self.shutdown_report(timeout).await
    }

    fn shutdown_report(&self, timeout: Duration) -> SharedReport {
        let now = std::time::Instant::now();
        // A timeout too large to add means no deadline to speak of: a century will do.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let mut slot = lock(&self.0.report);
        if let Some(shared) = &*slot {
            return shared.clone();
        }
        self.begin_shutdown();
        let shared = self.finish_shutdown(deadline).shared();
        *slot = Some(shared.clone());
        shared
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

    /// Closes the channel and waits, on a thread of its own, for the handler tasks to end by
    /// `deadline` (see [`shutdown`](Self::shutdown)).
    fn finish_shutdown(&self, deadline: std::time::Instant) -> BoxFuture<'static, ShutdownReport> {
        let (channel, handlers) = {
            let mut hub = lock(&self.0.hub);
            (hub.channel.clone(), std::mem::take(&mut hub.handlers))
        };
        if let Some(ch) = &channel {
            ch.close();
        }
        topology_changed();
        let closing = Closing {
            dispatcher: self.name().to_owned(),
            channel,
            handlers,
            spans_dropped: self.0.spans_dropped_at_shutdown.load(Ordering::Acquire),
        };
        if closing.handlers.is_empty() {
            return Box::pin(std::future::ready(closing.wait_until(deadline)));
        }
        let (tx, rx) = futures::channel::oneshot::channel();
        let handed = Arc::new(Mutex::new(Some(closing)));
        let taken = Arc::clone(&handed);
        let spawned = std::thread::Builder::new()
            .name("spanbus-shutdown".to_owned())
            .spawn(move || {
                if let Some(closing) = lock(&taken).take() {
                    let _ = tx.send(closing.wait_until(deadline));
                }
            });
        if spawned.is_err() {
            // No thread to wait on (the process is out of them): do not wait at all.
            if let Some(closing) = lock(&handed).take() {
                return Box::pin(std::future::ready(
                    closing.wait_until(std::time::Instant::now()),
                ));
            }
        }
        Box::pin(async move { rx.await.unwrap_or_default() })
    }
}

/// The handlers of a dispatcher being shut down, with its closed channel.
struct Closing {
    dispatcher: String,
    channel: Option<Arc<Channel>>,
    handlers: Vec<Attached>,
    spans_dropped: u64,
}

impl Closing {
    /// Blocks the calling thread until every handler task has ended or `deadline` has passed,
    /// aborts those still running, and reports. Needs no runtime: a task's `JoinHandle` is
    /// polled with a waker that unparks this thread.
    fn wait_until(mut self, deadline: std::time::Instant) -> ShutdownReport {
        // `None` while running; `Some(true)` if the task ended by itself, `Some(false)` if it
        // was dropped unfinished (its runtime went away first).
        let mut ended: Vec<Option<bool>> = vec![None; self.handlers.len()];
        crate::delivery::park::block_until(Some(deadline), |cx| {
            for (h, ended) in self.handlers.iter_mut().zip(ended.iter_mut()) {
                if ended.is_none()
                    && let Poll::Ready(joined) = Pin::new(&mut h.task).poll(cx)
                {
                    *ended = Some(joined.is_ok());
                }
            }
            if ended.iter().all(Option::is_some) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let channel = self.channel.as_deref();
        let handlers = self
            .handlers
            .iter()
            .zip(ended)
            .map(|(h, ended)| {
                if ended.is_none() {
                    h.task.abort();
                }
                HandlerReport {
                    dispatcher: self.dispatcher.clone(),
                    id: h.id,
                    stats: h.stats(channel),
                    timed_out: ended.is_none(),
                    runtime_gone: ended == Some(false),
                }
            })
            .collect();
        ShutdownReport {
            handlers,
            spans_dropped: self.spans_dropped,
        }
    }
}

/// Pushes `record` to each of `channels` past their hard cap: for records that complete what
/// handlers already saw part of (a span's end, the rest of a cancelled emit's chain), which
/// are bounded by what their emitters hold.
fn push_past_cap_to(channels: &[Arc<Channel>], record: &RecordRef) {
    for ch in channels {
        let _ = ch.push_past_cap(record.clone());
    }
}

/// Pushes without waiting and without blocking: for span enters, pushed under the open-span
/// lock (blocking there could hold up shutdown). Past the hard cap the record is dropped and
/// counted for the channel's handlers. Returns whether it got in.
#[inline]
fn push_or_count(ch: &Channel, record: RecordRef) -> bool {
    match ch.push_now(record) {
        Ok(()) => true,
        Err((Push::Full, _)) => {
            ch.overflowed();
            false
        }
        Err(_) => false,
    }
}

/// Which signal of a span is pushed (see [`Dispatcher::push_span_record`]).
#[derive(Clone, Copy)]
enum Signal {
    Enter,
    End,
}

/// How a push to the chain went, worst last (so that `max` combines channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pushed {
    /// Into every channel.
    All,
    /// A channel was closed (or there was none).
    Refused,
    /// A channel was at its hard cap: dropped and counted there.
    Overflowed,
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
/// Called from inside a handler, the handler's own channel is skipped (its barrier could only
/// be reached after the handler returns), and the handler is marked as flushing on its own
/// channel while it waits: barriers placed from inside other handlers do not wait for it, so
/// handlers flushing each other's channels all finish.
pub(crate) async fn flush_channels(channels: impl IntoIterator<Item = Arc<Channel>>) {
    let own = handler::handling();
    let _flushing = own.as_ref().map(Flushing::new);
    let barriers: Vec<_> = channels
        .into_iter()
        .filter(|c| own.as_ref().is_none_or(|h| !Arc::ptr_eq(&h.channel, c)))
        .filter_map(|c| c.barrier(own.is_some()))
        .collect();
    for barrier in barriers {
        let _ = barrier.await;
    }
}

/// Marks a handler as waiting in a flush of its own until dropped (see [`flush_channels`]).
struct Flushing<'a>(&'a handler::Handling);

impl<'a> Flushing<'a> {
    fn new(h: &'a handler::Handling) -> Self {
        h.channel.set_flushing(h.reader, true);
        Flushing(h)
    }
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        self.0.channel.set_flushing(self.0.reader, false);
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
        if route & SHUT != 0 {
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

    /// Emits without waiting for room, from sync code or a `Drop`.
    ///
    /// In a full lossless channel the record is appended past the bound, up to the hard cap
    /// (capacity + overflow); past that, a plain thread blocks until there is room and a
    /// runtime thread drops the record and counts it (see [the bound](crate#the-bound)). A
    /// runtime worker is never blocked.
    ///
    /// # Errors
    ///
    /// [`EmitError::ShutDown`] after the dispatcher was shut down, or when a shutdown that
    /// began during the call closed a channel before the record got in;
    /// [`EmitError::Overflow`] when a channel was at its hard cap on a thread that may not
    /// block; [`EmitError::HandlersGone`] when every handler it reaches lost its task. `Ok`
    /// means the record is queued for every handler it reaches.
    #[inline]
    pub fn now(self) -> Result<(), EmitError> {
        let dispatcher = self.dispatcher;
        // Nobody listens: the common case in production code paths, kept to two loads.
        let route = dispatcher.route();
        if route == 0 {
            return Ok(());
        }
        let record = self.into_record(route)?;
        dispatcher.emitted(dispatcher.push_now(&record), route)
    }
}

impl<'a, E: Event> IntoFuture for Emit<'a, E> {
    type Output = Result<(), EmitError>;
    type IntoFuture = EmitFuture<'a, E>;

    /// Nothing happens until the future is first polled.
    #[inline]
    fn into_future(self) -> EmitFuture<'a, E> {
        EmitFuture {
            state: EmitState::Start(self),
        }
    }
}

/// The future of an [`Emit`]: resolves once the record is in every channel it reaches.
///
/// Lazy: the record is made (with the context current then) and pushed at the first poll;
/// a future never polled emits nothing.
///
/// # Cancel safety
///
/// All or nothing: every handler the record reaches gets it, or none does. Dropped while it
/// waits for room in the first full channel, the record goes nowhere; dropped after some
/// channels took it, it is pushed into the rest without waiting (past their bound and even
/// their hard cap: one record per cancelled emit), so no handler up the chain misses what one
/// below saw.
#[must_use = "futures do nothing unless polled"]
pub struct EmitFuture<'a, E> {
    state: EmitState<'a, E>,
}

enum EmitState<'a, E> {
    Start(Emit<'a, E>),
    Room {
        dispatcher: &'a Dispatcher,
        record: RecordRef,
        targets: Arc<Vec<Arc<Channel>>>,
        /// The first channel that has not taken the record.
        next: usize,
        route: u64,
    },
    Done,
}

// The event is only ever moved, never pinned: the future may move freely.
impl<E> Unpin for EmitFuture<'_, E> {}

impl<E: Event> Future for EmitFuture<'_, E> {
    type Output = Result<(), EmitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match std::mem::replace(&mut this.state, EmitState::Done) {
                EmitState::Start(emit) => {
                    let dispatcher = emit.dispatcher;
                    let route = dispatcher.route();
                    if route == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let record = emit.into_record(route)?;
                    // Inside a handler, waiting for room could wait on this very handler (or
                    // on one that waits on it): emit as `now()` does, which never waits.
                    if handler::in_handler() {
                        return Poll::Ready(
                            dispatcher.emitted(dispatcher.push_now(&record), route),
                        );
                    }
                    let targets = dispatcher.0.targets.load_full();
                    if targets.is_empty() {
                        // Emptied by a shutdown since the route was read.
                        return Poll::Ready(dispatcher.emitted(Pushed::Refused, route));
                    }
                    this.state = EmitState::Room {
                        dispatcher,
                        record,
                        targets,
                        next: 0,
                        route,
                    };
                }
                EmitState::Room {
                    dispatcher,
                    record,
                    targets,
                    mut next,
                    route,
                } => {
                    while let Some(ch) = targets.get(next) {
                        match ch.push(&record, Some(cx.waker())) {
                            Push::Full => {
                                this.state = EmitState::Room {
                                    dispatcher,
                                    record,
                                    targets,
                                    next,
                                    route,
                                };
                                return Poll::Pending;
                            }
                            // Our own dispatcher shut down while we waited: the record was
                            // refused, so say so. (A channel closed because an ancestor alone
                            // shut down is skipped, as a fresh emit would skip it.)
                            Push::Closed if dispatcher.is_shut_down() => {
                                return Poll::Ready(Err(dispatcher.shut_down_error()));
                            }
                            Push::Closed | Push::Done => {}
                        }
                        next += 1;
                    }
                    return Poll::Ready(dispatcher.emitted(Pushed::All, route));
                }
                EmitState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<E> Drop for EmitFuture<'_, E> {
    fn drop(&mut self) {
        // Cancelled after some channels took the record: the rest take it too (see
        // "Cancel safety" above).
        if let EmitState::Room {
            record,
            targets,
            next,
            ..
        } = &self.state
            && *next > 0
        {
            push_past_cap_to(&targets[*next..], record);
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
