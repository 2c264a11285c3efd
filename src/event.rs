//! Events: one moment in a pipeline, as a user-defined struct.
//!
//! An event is any `Serialize + Send + Sync + 'static` type that implements [`Event`], which
//! only asks for a stable name (llama-index's `class_name()`). The dispatcher wraps each emitted
//! event in a [`Record`](crate::Record) that adds an id, a timestamp, the current span, the
//! active tags and the dispatcher's name.
//!
//! # Examples
//!
//! ```
//! use serde::Serialize;
//! use spanbus::Event;
//!
//! #[derive(Serialize)]
//! struct ChunkReceived {
//!     index: u64,
//!     text: String,
//! }
//!
//! impl Event for ChunkReceived {
//!     const NAME: &'static str = "ChunkReceived";
//! }
//!
//! assert_eq!(<ChunkReceived as Event>::NAME, "ChunkReceived");
//! ```

use std::any::Any;
use std::fmt;

use serde::Serialize;

/// A user-defined event.
///
/// `NAME` is the event's stable name: it is the `class_name` field of the event's JSON form and
/// what handlers match on. It should not change when the type moves between modules.
///
/// # Examples
///
/// ```
/// use serde::Serialize;
/// use spanbus::Event;
///
/// #[derive(Serialize)]
/// struct RetrievalStart {
///     query: String,
/// }
///
/// impl Event for RetrievalStart {
///     const NAME: &'static str = "RetrievalStartEvent";
/// }
/// ```
pub trait Event: Serialize + Send + Sync + 'static {
    /// The stable name of this event type (llama-index's `class_name()`).
    const NAME: &'static str;
}

/// An event whose type has been erased, as it travels inside a [`Record`](crate::Record).
///
/// Implemented for every [`Event`]; handlers use [`Record::event`](crate::Record::event) to get
/// the typed value back.
pub trait AnyEvent: Send + Sync + 'static {
    /// The event's stable name ([`Event::NAME`]).
    fn name(&self) -> &'static str;
    /// The event as [`Any`], for downcasting.
    fn as_any(&self) -> &dyn Any;
    /// The event's own fields as JSON.
    ///
    /// # Errors
    ///
    /// Fails when the event's `Serialize` implementation fails (a map with non-string keys, a
    /// custom implementation that returns an error, ...).
    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error>;
}

impl<E: Event> AnyEvent for E {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

impl fmt::Debug for dyn AnyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnyEvent")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}
