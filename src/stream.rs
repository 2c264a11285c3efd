//! Spans around streams: open for the stream's whole life.
//!
//! llama-index closes a generator's span as soon as the generator object is created, so the
//! chunks it streams belong to a span that has already ended. spanbus keeps an instrumented
//! [`Stream`]'s span open from its first poll until it ends:
//!
//! | the stream…                               | the span is…                                        |
//! |-------------------------------------------|-----------------------------------------------------|
//! | yields `None` (ends)                      | exited                                              |
//! | panics in `poll_next`                     | dropped, [`DropReason::Panic`], the panic continues |
//! | is dropped before it ends                 | dropped, [`DropReason::Cancelled`]                  |
//! | is dropped before its first poll          | never entered: nothing is emitted                   |
//!
//! The span is current during every `poll_next`, so events emitted while producing an item —
//! and spans entered there — belong to it. Items pass through unchanged, and the stream keeps
//! returning `None` once it has ended.
//!
//! # Examples
//!
//! ```
//! use futures::{StreamExt, stream};
//! use spanbus::{SpanStreamExt, current_span};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let d = spanbus::Dispatcher::new("llm")?;
//! d.add_span_handler(spanbus::handlers::NullSpanHandler)?; // a listener makes spans live (`Span::is_idle`)
//! let chunks: Vec<_> = stream::iter(["Hel", "lo"])
//!     .map(|chunk| (chunk, current_span())) // runs inside the stream's span
//!     .in_span(d.span("stream_chat"))
//!     .collect()
//!     .await;
//! assert!(chunks.iter().all(|(_, span)| span.is_some() && *span == chunks[0].1));
//! assert_eq!(current_span(), None); // the span is current only inside the stream
//! # Ok(())
//! # }
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::Poll;

use futures::Stream;

use crate::context::scoped;
use crate::handler::panic_message;
use crate::record::DropReason;
use crate::span::{Opened, Span};

pin_project_lite::pin_project! {
    /// A stream running inside a span; made by [`SpanStreamExt::in_span`].
    #[must_use = "streams do nothing unless polled"]
    pub struct InstrumentedStream<S> {
        #[pin]
        inner: Option<S>,
        pending: Option<Span>,
        open: Option<Opened>,
    }

    impl<S> PinnedDrop for InstrumentedStream<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(open) = this.open.take() {
                open.cancel_after_dropping(this.inner);
            }
        }
    }
}

impl<S: Stream> Stream for InstrumentedStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<S::Item>> {
        let mut this = self.project();
        if let Some(pending) = this.pending.take()
            && !pending.is_idle()
        {
            // Wait for room before entering, as a spanned future does.
            if !pending.poll_room(cx) {
                *this.pending = Some(pending);
                return Poll::Pending;
            }
            *this.open = Some(pending.open());
        }
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Ended (or panicked) before: stay ended.
            return Poll::Ready(None);
        };
        let Some(open) = this.open.as_mut() else {
            // Idle: the stream runs as it is.
            let item = std::task::ready!(inner.poll_next(cx));
            if item.is_none() {
                this.inner.set(None);
            }
            return Poll::Ready(item);
        };
        let polled = scoped(&mut open.ctx, || {
            catch_unwind(AssertUnwindSafe(|| inner.poll_next(cx)))
        });
        match polled {
            Ok(Poll::Ready(None)) => {
                if let Some(mut open) = this.open.take() {
                    let mut inner = this.inner.as_mut();
                    scoped(&mut open.ctx, || inner.set(None));
                    open.exit();
                }
                Poll::Ready(None)
            }
            Ok(other) => other,
            Err(payload) => {
                if let Some(open) = this.open.take() {
                    open.end(DropReason::Panic, panic_message(&*payload));
                }
                this.inner.set(None);
                resume_unwind(payload)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => (0, Some(0)),
        }
    }
}

impl<S: Stream> futures::stream::FusedStream for InstrumentedStream<S> {
    fn is_terminated(&self) -> bool {
        self.inner.is_none()
    }
}

/// Span methods for every stream.
pub trait SpanStreamExt: Stream + Sized {
    /// Runs this stream inside `span`: entered at the first poll, current during every
    /// `poll_next`, exited when the stream ends, dropped as cancelled if the stream is dropped
    /// before it ends.
    ///
    /// # Examples
    ///
    /// See [the module documentation](crate::stream).
    fn in_span(self, span: Span) -> InstrumentedStream<Self> {
        InstrumentedStream {
            inner: Some(self),
            pending: Some(span),
            open: None,
        }
    }
}

impl<S: Stream> SpanStreamExt for S {}
