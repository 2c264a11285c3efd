//! What shutdown reports.

use crate::handler::{HandlerId, HandlerStats};

/// The outcome of a [`shutdown`](crate::Dispatcher::shutdown), per handler.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let d = spanbus::Dispatcher::new("svc")?;
/// d.add_event_handler(spanbus::handlers::NullEventHandler)?;
/// let report = d.shutdown(std::time::Duration::from_secs(1)).await;
/// for h in &report.handlers {
///     println!("{}: delivered {} dropped {}", h.stats.name, h.stats.delivered, h.stats.dropped);
/// }
/// assert!(report.is_clean());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// One entry per handler that was attached when shutdown began.
    pub handlers: Vec<HandlerReport>,
    /// Spans that were still open and were dropped with reason `Shutdown`.
    pub spans_dropped: u64,
}

/// One handler's line in a [`ShutdownReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerReport {
    /// The dispatcher the handler was attached to.
    pub dispatcher: String,
    /// The handler's id.
    pub id: HandlerId,
    /// Its counters at the end.
    pub stats: HandlerStats,
    /// Whether it was still running at the deadline (and was aborted).
    pub timed_out: bool,
    /// Whether its task was gone before shutdown: the tokio runtime it ran on was dropped or
    /// shut down first, so its handler's `flush` and `close` never ran, and what reached it
    /// since is counted in [`HandlerStats::lost`].
    pub runtime_gone: bool,
}

impl ShutdownReport {
    /// The handlers that did not finish by the deadline.
    pub fn timed_out(&self) -> impl Iterator<Item = &HandlerReport> {
        self.handlers.iter().filter(|h| h.timed_out)
    }

    /// Whether every handler finished in time, closed, with nothing dropped or lost and no
    /// panic.
    pub fn is_clean(&self) -> bool {
        self.handlers.iter().all(|h| {
            !h.timed_out
                && !h.runtime_gone
                && h.stats.dropped == 0
                && h.stats.lost == 0
                && h.stats.panicked == 0
        })
    }

    pub(crate) fn merge(&mut self, other: ShutdownReport) {
        self.handlers.extend(other.handlers);
        self.spans_dropped += other.spans_dropped;
    }
}
