//! Spans: stretches of execution that contain events and child spans.
//!
//! A [`Span`] is made by [`Dispatcher::span`] and then used in one of three ways:
//!
//! - **around a future** ([`Span::instrument`], or [`SpanFutureExt::in_span`]): the span is
//!   entered at the first poll, is current during every poll, and ends with the future;
//! - **around a closure** ([`Span::in_scope`]): for sync code;
//! - **by hand** ([`Span::enter`]): an [`OpenSpan`] you end yourself, and can make current.
//!
//! A span starts from the context current when it is entered — a future's first poll, a
//! closure's call, [`Span::enter`]: its parent is the span current then (unless set with
//! [`Span::parent`]) and its tags are the active tags then, with its own merged over them. So a
//! future runs in the context of whoever awaits it; one handed to a raw `tokio::spawn` starts
//! from an empty context unless wrapped with [`SpanFutureExt::in_current_span`].
//!
//! # How a span ends
//!
//! | the code…                              | the span is…                                     |
//! |----------------------------------------|--------------------------------------------------|
//! | completes (any output)                 | exited                                           |
//! | returns `Err(e)` (the `_result` forms) | dropped, [`DropReason::Error`], `e.to_string()`  |
//! | panics                                 | dropped, [`DropReason::Panic`], the panic text; the panic continues |
//! | is dropped before completing           | dropped, [`DropReason::Cancelled`]               |
//! | is still open at shutdown              | dropped, [`DropReason::Shutdown`]                |
//!
//! Every drop also emits a [`SpanDropEvent`](crate::events::SpanDropEvent) to event handlers,
//! as llama-index does. The output, the error, and the panic pass through unchanged.
//!
//! An end record can also carry a value, as llama-index passes `result` and `err` to its span
//! handlers: the return value on the exit ([`SpanExit::result`](crate::record::SpanExit::result))
//! and the error value on the drop ([`SpanDrop::error`](crate::record::SpanDrop::error)).
//! `#[span(ret, err)]` records them; by hand, [`OpenSpan::exit_with`] and
//! [`OpenSpan::fail_with`].
//!
//! # Examples
//!
//! ```
//! use spanbus::{Dispatcher, SpanFutureExt, current_span};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let d = Dispatcher::new("rag")?;
//! d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live
//! let answer = async {
//!     let outer = current_span().unwrap();
//!     let inner = async { current_span().unwrap() }.in_span(d.span("retrieve")).await;
//!     assert_ne!(outer, inner);
//!     assert_eq!(outer.trace_id(), inner.trace_id());
//!     42
//! }
//! .in_span(d.span("query"))
//! .await;
//! assert_eq!(answer, 42);
//!
//! let parsed: Result<u32, std::num::ParseIntError> =
//!     d.span("parse").in_scope_result(|| "x".parse());
//! assert!(parsed.is_err()); // and the span was dropped with the error's text
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::Poll;

use serde::Serialize;
use serde_json::Value;

use crate::context::{Context, SpanContext, WithContext, scoped};
use crate::dispatcher::{Dispatcher, LIVE, SHUT, Tracked};
use crate::handler::panic_message;
use crate::id::{SpanId, TraceId};
use crate::record::DropReason;

impl Dispatcher {
    /// A span named `name` on this dispatcher, to wrap a future, a closure, or enter by hand.
    ///
    /// If no handler listens on the chain now, the span is idle and costs next to nothing
    /// (see [`Span::is_idle`]).
    #[inline]
    pub fn span(&self, name: impl Into<Cow<'static, str>>) -> Span {
        let live = self.route() & (LIVE | SHUT) == LIVE;
        Span::new(live.then(|| self.clone()), name.into())
    }
}

/// A span that has not started yet: a name on a dispatcher, with optional arguments, tags and
/// parent.
#[must_use = "a span does nothing until it wraps code or is entered"]
#[derive(Debug)]
pub struct Span {
    /// `None` for an idle span: nobody listened when it was made.
    dispatcher: Option<Dispatcher>,
    name: Cow<'static, str>,
    args: Option<Value>,
    tags: Vec<(String, Value)>,
    parent: Option<Option<SpanContext>>,
}

impl Span {
    /// A span on `dispatcher`, or an idle one (`None`, see [`is_idle`](Self::is_idle)).
    #[inline]
    pub(crate) fn new(dispatcher: Option<Dispatcher>, name: Cow<'static, str>) -> Span {
        Span {
            dispatcher,
            name,
            args: None,
            tags: Vec::new(),
            parent: None,
        }
    }

    /// Whether the span is idle: no handler listened on its dispatcher's chain when it was
    /// made (or the dispatcher was shut down). An idle span costs about as much as an emit
    /// nobody listens to: wrapping a future, a stream or a closure in it runs the code as it
    /// is, with no ids, no context switch and no records, so [`current_span`](crate::current_span)
    /// inside it is the enclosing span (as with a disabled span in `tracing`). Entered by hand
    /// ([`enter`](Self::enter)) it gets ids and can be made current, but emits nothing.
    ///
    /// A span made before a handler was added stays idle.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), spanbus::error::NameError> {
    /// let d = spanbus::Dispatcher::new("quiet")?;
    /// let span = d.span("nobody listens");
    /// assert!(span.is_idle());
    /// assert_eq!(span.in_scope(spanbus::current_span), None);
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.dispatcher.is_none()
    }

    /// Captured arguments, shown by handlers and exported as attributes.
    pub fn args(mut self, args: Value) -> Self {
        if !self.is_idle() {
            self.args = Some(args);
        }
        self
    }

    /// Captured arguments, built only if the span is not idle (so an idle span serializes
    /// nothing). `#[spanbus::span]` captures arguments this way.
    #[inline]
    pub fn args_with(mut self, args: impl FnOnce() -> Value) -> Self {
        if !self.is_idle() {
            self.args = Some(args());
        }
        self
    }

    /// A tag of this span, merged over the active tags; records inside the span carry it.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        if !self.is_idle() {
            self.tags.push((key.into(), value.into()));
        }
        self
    }

    /// An explicit parent instead of the current span; `None` makes this span a root.
    pub fn parent(mut self, parent: Option<SpanContext>) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Whether the span's records may be pushed now (see [`Dispatcher::poll_room`]).
    pub(crate) fn poll_room(&self, cx: &mut std::task::Context<'_>) -> bool {
        self.dispatcher.as_ref().is_none_or(|d| d.poll_room(cx))
    }

    /// Enters the span now: resolves its parent and tags from the current context, emits the
    /// enter record.
    pub(crate) fn open(self) -> Opened {
        let Span {
            dispatcher,
            name,
            args,
            tags,
            parent,
        } = self;
        let mut current = Context::current();
        if !tags.is_empty() {
            current = current.with_tags(tags);
        }
        let parent = parent.unwrap_or(current.span);
        let span = SpanContext::new(
            parent.map_or_else(TraceId::random, |p| p.trace_id()),
            SpanId::random(),
        );
        let tracked = dispatcher.and_then(|dispatcher| {
            let at = dispatcher.enter_span(span, &current.tags, parent, name, args)?;
            Some((dispatcher, at))
        });
        Opened {
            ctx: Context {
                span: Some(span),
                tags: current.tags,
                extras: current.extras,
            },
            span,
            tracked,
        }
    }

    /// For sync code: on a plain thread, waits for room below the hard cap first (see
    /// [the bound](crate#the-bound)), then enters.
    pub(crate) fn open_sync(self) -> Opened {
        if let Some(d) = &self.dispatcher {
            d.wait_below_hard_cap();
        }
        self.open()
    }

    /// Wraps a future: entered at its first poll, exited when it completes.
    pub fn instrument<F: Future>(self, future: F) -> Instrumented<F, AnyOutput> {
        Instrumented::new(self, future)
    }

    /// Wraps a future returning `Result`: an `Err` drops the span with the error's text.
    pub fn instrument_result<F, T, E>(self, future: F) -> Instrumented<F, ResultOutput>
    where
        F: Future<Output = Result<T, E>>,
        E: Display,
    {
        Instrumented::new(self, future)
    }

    /// Runs `f` inside the span.
    #[inline]
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        if self.is_idle() {
            return f();
        }
        run_in::<R, AnyOutput>(self.open_sync(), f)
    }

    /// Runs `f` inside the span; an `Err` drops the span with the error's text.
    #[inline]
    pub fn in_scope_result<T, E: Display>(self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if self.is_idle() {
            return f();
        }
        run_in::<_, ResultOutput>(self.open_sync(), f)
    }

    /// Enters the span now and returns it, to end by hand.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), spanbus::error::NameError> {
    /// let d = spanbus::Dispatcher::new("batch")?;
    /// let span = d.span("nightly").enter();
    /// let id = span.context();
    /// span.in_scope(|| assert_eq!(spanbus::current_span(), Some(id)));
    /// span.exit();
    /// # Ok(())
    /// # }
    /// ```
    pub fn enter(self) -> OpenSpan {
        OpenSpan {
            open: Some(self.open_sync()),
        }
    }
}

fn error_text<T, E: Display>(out: &Result<T, E>) -> Option<String> {
    out.as_ref().err().map(ToString::to_string)
}

/// Runs `f` inside `open` and ends the span as `K` says of its output.
pub(crate) fn run_in<R, K: Outcome<R>>(mut open: Opened, f: impl FnOnce() -> R) -> R {
    let result = scoped(&mut open.ctx, || catch_unwind(AssertUnwindSafe(f)));
    match result {
        Ok(out) => {
            if let Some((d, _)) = &open.tracked {
                d.wait_below_hard_cap();
            }
            let recorded = open.record::<R, K>(&out);
            open.finish(K::failure(&out), recorded);
            out
        }
        Err(payload) => {
            open.end(DropReason::Panic, panic_message(&*payload));
            resume_unwind(payload)
        }
    }
}

/// An entered span: its context, and its dispatcher with where it tracks the span (if it
/// does).
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) ctx: Context,
    span: SpanContext,
    tracked: Option<(Dispatcher, Tracked)>,
}

impl Opened {
    pub(crate) fn exit(self) {
        self.finish(None, None);
    }

    pub(crate) fn end(self, reason: DropReason, message: String) {
        self.end_recording(reason, message, None);
    }

    fn end_recording(self, reason: DropReason, message: String, error: Option<Box<Value>>) {
        if let Some((dispatcher, at)) = self.tracked {
            dispatcher.drop_span(at, self.span, self.ctx.tags, reason, message, error);
        }
    }

    /// Exits the span (`failure` is `None`) or drops it with the failure's text, with the
    /// value its end record carries.
    fn finish(self, failure: Option<String>, recorded: Option<Box<Value>>) {
        match failure {
            None => {
                if let Some((dispatcher, at)) = self.tracked {
                    dispatcher.exit_span(at, self.span, self.ctx.tags, recorded);
                }
            }
            Some(message) => self.end_recording(DropReason::Error, message, recorded),
        }
    }

    /// The value `K` records of `output` on the end record, computed only if some handler
    /// will see that record. A serializer that panics records its panic text instead.
    fn record<T: ?Sized, K: Outcome<T>>(&self, output: &T) -> Option<Box<Value>> {
        self.tracked.as_ref()?;
        match catch_unwind(AssertUnwindSafe(|| K::recorded(output))) {
            Ok(value) => value.map(Box::new),
            Err(payload) => Some(Box::new(Value::String(format!(
                "<not serializable: panicked: {}>",
                panic_message(&*payload)
            )))),
        }
    }

    /// Whether the span's end may be pushed now (see [`Dispatcher::poll_room`]).
    pub(crate) fn poll_room(&self, cx: &mut std::task::Context<'_>) -> bool {
        self.tracked.as_ref().is_none_or(|(d, _)| d.poll_room(cx))
    }

    /// Ends the span as cancelled after dropping `inner` (the spanned future or stream)
    /// inside it, so that spans `inner` holds end (cancelled) before this one.
    pub(crate) fn cancel_after_dropping<T>(mut self, mut inner: Pin<&mut Option<T>>) {
        scoped(&mut self.ctx, || inner.set(None));
        self.end(DropReason::Cancelled, String::new());
    }
}

/// A span entered by hand with [`Span::enter`].
///
/// End it with [`exit`](Self::exit) or [`fail`](Self::fail); dropping it without either drops
/// the span with [`DropReason::Cancelled`].
#[must_use = "dropping an OpenSpan ends the span as cancelled"]
#[derive(Debug)]
pub struct OpenSpan {
    open: Option<Opened>,
}

impl OpenSpan {
    /// The span's context.
    pub fn context(&self) -> SpanContext {
        self.opened().span
    }

    fn opened(&self) -> &Opened {
        match &self.open {
            Some(open) => open,
            None => unreachable!("an OpenSpan is consumed when it ends"),
        }
    }

    /// Runs `f` with this span current.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.opened().ctx.in_scope(f)
    }

    /// Wraps `future` so that this span is current while it runs (the span stays open
    /// when the future ends).
    pub fn attach<F: Future>(&self, future: F) -> WithContext<F> {
        self.opened().ctx.clone().attach(future)
    }

    /// Ends the span normally.
    pub fn exit(mut self) {
        if let Some(open) = self.open.take() {
            open.exit();
        }
    }

    /// Ends the span as failed, with `error`'s text ([`DropReason::Error`]).
    pub fn fail(mut self, error: impl Display) {
        if let Some(open) = self.open.take() {
            open.end(DropReason::Error, error.to_string());
        }
    }

    /// Ends the span normally, recording `result` on its exit record
    /// ([`SpanExit::result`](crate::record::SpanExit::result)), as `#[span(ret)]` does. The
    /// value is serialized only if some handler will see the record.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), spanbus::error::NameError> {
    /// let d = spanbus::Dispatcher::new("batch")?;
    /// let span = d.span("count").enter();
    /// span.exit_with(&42);
    /// # Ok(())
    /// # }
    /// ```
    pub fn exit_with<T: Serialize + ?Sized>(mut self, result: &T) {
        if let Some(open) = self.open.take() {
            let recorded = open.record::<_, RecordOutput>(result);
            open.finish(None, recorded);
        }
    }

    /// Ends the span as failed with `error`'s text ([`DropReason::Error`]), recording the
    /// error value on its drop record ([`SpanDrop::error`](crate::record::SpanDrop::error)), as
    /// `#[span(err)]` does. The value is serialized only if some handler will see the record.
    pub fn fail_with<E: Display + Serialize + ?Sized>(mut self, error: &E) {
        if let Some(open) = self.open.take() {
            let recorded = open.record::<_, RecordOutput>(error);
            open.finish(Some(error.to_string()), recorded);
        }
    }
}

impl Drop for OpenSpan {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            open.end(DropReason::Cancelled, String::new());
        }
    }
}

/// How a future's output decides between exiting and dropping its span, and what its end
/// record carries.
pub trait Outcome<T: ?Sized> {
    /// `Some(text)` if the output is a failure.
    fn failure(output: &T) -> Option<String>;

    /// The value the end record carries: the result on an exit
    /// ([`SpanExit::result`](crate::record::SpanExit::result)), the error on a drop
    /// ([`SpanDrop::error`](crate::record::SpanDrop::error)). Asked only when some handler
    /// will see that record. None by default.
    fn recorded(output: &T) -> Option<Value> {
        let _ = output;
        None
    }
}

/// Any output exits the span, recording the output serialized (`OpenSpan::exit_with`).
enum RecordOutput {}

impl<T: Serialize + ?Sized> Outcome<T> for RecordOutput {
    fn failure(_: &T) -> Option<String> {
        None
    }

    fn recorded(output: &T) -> Option<Value> {
        Some(to_recorded_value(output))
    }
}

/// `value` as JSON, or a string saying why it cannot be (as for captured arguments).
pub(crate) fn to_recorded_value<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value)
        .unwrap_or_else(|e| Value::String(format!("<not serializable: {e}>")))
}

/// Any output exits the span ([`Span::instrument`]).
#[derive(Debug)]
pub enum AnyOutput {}

/// An `Err` output drops the span ([`Span::instrument_result`]).
#[derive(Debug)]
pub enum ResultOutput {}

impl<T> Outcome<T> for AnyOutput {
    fn failure(_: &T) -> Option<String> {
        None
    }
}

impl<T, E: Display> Outcome<Result<T, E>> for ResultOutput {
    fn failure(output: &Result<T, E>) -> Option<String> {
        error_text(output)
    }
}

pin_project_lite::pin_project! {
    /// A future running inside a span; made by [`Span::instrument`] and friends.
    ///
    /// # Backpressure
    ///
    /// A spanned future waits for room in its dispatchers' lossless channels before it enters
    /// its span and again before it ends it (with its output in hand), as an awaited emit
    /// does: code that only runs spans stays within the channels' bound, and never blocks a
    /// thread. An idle span (see [`Span::is_idle`]) never waits; nor does a span inside a
    /// handler.
    #[must_use = "futures do nothing unless polled"]
    pub struct Instrumented<F: Future, K> {
        #[pin]
        inner: Option<F>,
        pending: Option<Span>,
        open: Option<Opened>,
        // The output, how the span ends and the value its end records, while waiting for
        // room to end it.
        done: Option<(F::Output, Option<String>, Option<Box<Value>>)>,
        kind: PhantomData<fn() -> K>,
    }

    impl<F: Future, K> PinnedDrop for Instrumented<F, K> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let Some(open) = this.open.take() else { return };
            match this.done.take() {
                // The code completed; only the end waited for room: end it as it completed.
                Some((_, failure, recorded)) => open.finish(failure, recorded),
                None => open.cancel_after_dropping(this.inner),
            }
        }
    }
}

impl<F: Future, K> Instrumented<F, K> {
    pub(crate) fn new(span: Span, future: F) -> Self {
        Instrumented {
            inner: Some(future),
            pending: Some(span),
            open: None,
            done: None,
            kind: PhantomData,
        }
    }
}

impl<F: Future, K: Outcome<F::Output>> Future for Instrumented<F, K> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        if let Some(pending) = this.pending.take()
            && !pending.is_idle()
        {
            // Wait for room before entering (see "Backpressure" above).
            if !pending.poll_room(cx) {
                *this.pending = Some(pending);
                return Poll::Pending;
            }
            *this.open = Some(pending.open());
        }
        let Some(open) = this.open.as_mut() else {
            // Idle: the future runs as it is.
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                panic!("`Instrumented` polled after completion");
            };
            let output = std::task::ready!(inner.poll(cx));
            this.inner.set(None);
            return Poll::Ready(output);
        };
        if this.done.is_none() {
            let Some(inner) = this.inner.as_mut().as_pin_mut() else {
                panic!("`Instrumented` polled after completion");
            };
            let polled = scoped(&mut open.ctx, || {
                catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
            });
            match polled {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(output)) => {
                    this.inner.set(None);
                    let failure = K::failure(&output);
                    let recorded = open.record::<_, K>(&output);
                    *this.done = Some((output, failure, recorded));
                }
                Err(payload) => {
                    if let Some(open) = this.open.take() {
                        open.end(DropReason::Panic, panic_message(&*payload));
                    }
                    resume_unwind(payload)
                }
            }
        }
        // Completed: end the span once there is room for its last record.
        if !open.poll_room(cx) {
            return Poll::Pending;
        }
        let (Some(open), Some((output, failure, recorded))) = (this.open.take(), this.done.take())
        else {
            panic!("`Instrumented` polled after completion");
        };
        open.finish(failure, recorded);
        Poll::Ready(output)
    }
}

/// Span methods for every future.
pub trait SpanFutureExt: Future + Sized {
    /// Runs this future inside `span` ([`Span::instrument`]).
    fn in_span(self, span: Span) -> Instrumented<Self, AnyOutput> {
        span.instrument(self)
    }

    /// Runs this `Result` future inside `span`; an `Err` drops the span
    /// ([`Span::instrument_result`]).
    fn in_span_result<T, E>(self, span: Span) -> Instrumented<Self, ResultOutput>
    where
        Self: Future<Output = Result<T, E>>,
        E: Display,
    {
        span.instrument_result(self)
    }

    /// Carries the caller's current span and tags into this future, wherever it is polled
    /// (for example after `tokio::spawn`).
    fn in_current_span(self) -> WithContext<Self> {
        Context::current().attach(self)
    }
}

impl<F: Future> SpanFutureExt for F {}
