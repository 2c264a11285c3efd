//! Emitting an event: [`Emit`], and the [`EmitFuture`] that waits for room.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use serde_json::Value;

use super::Dispatcher;
use super::route::{Pushed, SHUT, push_past_cap_to};
use crate::context::Tags;
use crate::context::{self, SpanContext};
use crate::delivery::{Channel, Push};
use crate::error::EmitError;
use crate::event::Event;
use crate::handler;
use crate::record::{Record, RecordRef};

impl Dispatcher {
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
}

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
