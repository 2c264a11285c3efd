use crate::handler::{EventHandler, SpanHandler};
use crate::record::{Record, SpanDrop, SpanEnter, SpanExit};

/// An event handler that does nothing (llama-index's `NullEventHandler`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullEventHandler;

impl EventHandler for NullEventHandler {
    async fn handle(&mut self, _: &Record) {}
}

/// A span handler that keeps nothing (llama-index's `NullSpanHandler`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSpanHandler;

impl SpanHandler for NullSpanHandler {
    type Span = ();

    fn new_span(&mut self, _: &SpanEnter, _: &Record) -> Option<()> {
        None
    }

    fn prepare_to_exit_span(&mut self, _: (), _: &SpanExit, _: &Record) {}

    fn prepare_to_drop_span(&mut self, _: (), _: &SpanDrop, _: &Record) {}
}
