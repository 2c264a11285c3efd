//! Shutdown of one dispatcher, and what it reports.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::Dispatcher;
use super::attach::Attached;
use crate::delivery::{Channel, topology_changed};
use crate::handler::{HandlerId, HandlerStats};
use crate::record::DropReason;

pub(super) type SharedReport = Shared<BoxFuture<'static, ShutdownReport>>;

impl Dispatcher {
    /// Shuts the dispatcher down within `timeout` and reports on each of its handlers.
    ///
    /// In order: emitting is refused from now on ([`EmitError::ShutDown`](crate::error::EmitError::ShutDown)); spans still open
    /// on this dispatcher are dropped with [`DropReason::Shutdown`] (their records reach the
    /// handlers); each handler handles what is queued, is flushed and closed, and its task
    /// ends. A handler still running at the deadline is aborted and reported as timed out.
    /// Idempotent: later calls return the first call's report (waiting for it if needed).
    ///
    /// Records this dispatcher's descendants emit no longer reach its handlers.
    ///
    /// Scoped to this dispatcher: its parent's handlers stay up (they may serve siblings), and
    /// its children keep emitting to their own handlers. llama-index's shutdown walks up the
    /// parent chain instead; to shut a whole tree down, use
    /// [`Registry::shutdown`](crate::Registry::shutdown) (or [`crate::shutdown`] for the
    /// process-wide registry).
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
        let mut slot = self.0.report.lock();
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
                None,
                Some(&channels),
            );
        }
    }

    /// Closes the channel and waits, on a thread of its own, for the handler tasks to end by
    /// `deadline` (see [`shutdown`](Self::shutdown)).
    fn finish_shutdown(&self, deadline: std::time::Instant) -> BoxFuture<'static, ShutdownReport> {
        let (channel, handlers) = {
            let mut hub = self.0.hub.lock();
            (hub.channel.clone(), std::mem::take(&mut hub.handlers))
        };
        if let Some(ch) = &channel {
            // The handlers' `flush` and `close` learn the deadline
            // (`crate::handler::close_deadline`), so they can finish by it.
            ch.close_by(deadline);
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
                if let Some(closing) = taken.lock().take() {
                    let _ = tx.send(closing.wait_until(deadline));
                }
            });
        if spawned.is_err() {
            // No thread to wait on (the process is out of them): do not wait at all.
            if let Some(closing) = handed.lock().take() {
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
