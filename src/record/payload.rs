//! What a record carries: an event or a span signal, and the [`Payload`] trait that stores
//! either inline in a record.

use std::any::TypeId;
use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::{AnyEvent, Event};
use crate::id::SpanId;

/// What a record can carry: an event (wrapped in [`EventPayload`]) or a span signal.
///
/// # Safety
///
/// [`event_type`](Self::event_type) must answer `Some(TypeId::of::<E>())` only for a payload
/// that is an `EventPayload<E>` (`#[repr(transparent)]` over `E`): [`Record::event`] casts the
/// payload to `E` on that answer alone.
pub(crate) unsafe trait Payload: Send + Sync + 'static {
    fn kind(&self) -> RecordKind<'_>;
    /// The event's type, for an event; `None` for a span signal. Answered in one call, without
    /// building a [`RecordKind`]: handlers ask it of every record they get (the
    /// `EventHandler` adapter, and [`Record::event`]).
    fn event_type(&self) -> Option<TypeId> {
        None
    }
}

/// An event stored inline in a record.
#[repr(transparent)]
pub(crate) struct EventPayload<E>(pub(crate) E);

// SAFETY: answers its own event type, and is `#[repr(transparent)]` over `E`.
unsafe impl<E: Event> Payload for EventPayload<E> {
    #[inline]
    fn kind(&self) -> RecordKind<'_> {
        RecordKind::Event(&self.0)
    }

    #[inline]
    fn event_type(&self) -> Option<TypeId> {
        Some(TypeId::of::<E>())
    }
}

// SAFETY: a span signal answers no event type (the default `None`).
unsafe impl Payload for SpanEnter {
    fn kind(&self) -> RecordKind<'_> {
        RecordKind::SpanEnter(self)
    }
}

// SAFETY: a span signal answers no event type (the default `None`).
unsafe impl Payload for SpanExit {
    fn kind(&self) -> RecordKind<'_> {
        RecordKind::SpanExit(self)
    }
}

// SAFETY: a span signal answers no event type (the default `None`).
unsafe impl Payload for SpanDrop {
    fn kind(&self) -> RecordKind<'_> {
        RecordKind::SpanDrop(self)
    }
}

/// What a [`Record`](super::Record) carries, borrowed from it ([`Record::kind`](super::Record::kind)).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RecordKind<'a> {
    /// A user or catalog event.
    Event(&'a dyn AnyEvent),
    /// A span was entered.
    SpanEnter(&'a SpanEnter),
    /// A span ended normally.
    SpanExit(&'a SpanExit),
    /// A span ended abnormally: an error, a panic, a cancellation, or shutdown.
    SpanDrop(&'a SpanDrop),
}

/// A span was entered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEnter {
    /// The span's id.
    pub id: SpanId,
    /// The enclosing span, if any.
    pub parent: Option<SpanId>,
    /// The span's name, such as `Retriever::retrieve`.
    pub name: Cow<'static, str>,
    /// Captured arguments, if any.
    pub args: Option<Value>,
}

/// A span ended normally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanExit {
    /// The span's id.
    pub id: SpanId,
    /// The spanned code's return value (llama-index's `result`), recorded by
    /// `#[span(ret)]` or [`OpenSpan::exit_with`](crate::span::OpenSpan::exit_with); `None`
    /// otherwise. Boxed, so that the exit of a span that records nothing stays small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<Value>>,
}

/// A span ended abnormally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanDrop {
    /// The span's id.
    pub id: SpanId,
    /// Why it ended.
    pub reason: DropReason,
    /// The error or panic text; empty for cancellations.
    pub message: String,
    /// The error value (llama-index's `err`), recorded by `#[span(err)]` or
    /// [`OpenSpan::fail_with`](crate::span::OpenSpan::fail_with); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<Value>>,
}

/// Why a span was dropped instead of exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DropReason {
    /// The instrumented code returned an `Err`, or the span was dropped by hand with an error.
    Error,
    /// The instrumented code panicked.
    Panic,
    /// The instrumented future was dropped before it completed.
    Cancelled,
    /// The dispatcher shut down while the span was open.
    Shutdown,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Error => "error",
            DropReason::Panic => "panic",
            DropReason::Cancelled => "cancelled",
            DropReason::Shutdown => "shutdown",
        })
    }
}
