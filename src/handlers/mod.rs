//! Built-in handlers.

mod null;
mod simple;

pub use null::{NullEventHandler, NullSpanHandler};
pub use simple::{ClosedSpan, SimpleSpanHandler, SpanOutcome};
