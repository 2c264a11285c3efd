//! The export task: batches queued spans, sends them, retries, and answers flush and close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::OtlpExporterBuilder;

/// The exporter's counters, shared by the handler (which reads them for its stats) and the
/// export task (which updates them).
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) enqueued: AtomicU64,
    pub(super) exported: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Shared {}
impl std::panic::RefUnwindSafe for Shared {}

pub(super) enum Control {
    /// Ack once the first `upto` spans ever queued have left the pipeline.
    Flush { upto: u64, ack: oneshot::Sender<()> },
    /// Export what is left, retrying until `deadline`, then stop.
    Close {
        deadline: Instant,
        ack: oneshot::Sender<()>,
    },
}

/// The export task: batches from the queue, exports, retries with backoff.
pub(super) async fn export_task(
    exporter: opentelemetry_otlp::SpanExporter,
    mut rx: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    shared: Arc<Shared>,
    cfg: OtlpExporterBuilder,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(cfg.batch_size);
    // Spans taken from the queue, and spans that left the pipeline, since the start (both in
    // queue order), for flush acknowledgements.
    let mut taken: u64 = 0;
    let mut done: u64 = 0;
    let mut flushes: Vec<(u64, oneshot::Sender<()>)> = Vec::new();
    let mut closing: Option<(Instant, oneshot::Sender<()>)> = None;
    let mut backoff = cfg.initial_backoff;
    let mut retry_at: Option<Instant> = None;
    let mut batch_since: Option<Instant> = None;
    let mut failed_before = false;
    let mut data_open = true;
    let mut control_open = true;
    loop {
        while data_open && batch.len() < cfg.batch_size {
            match rx.try_recv() {
                Ok(span) => {
                    batch.push(span);
                    taken += 1;
                    batch_since.get_or_insert_with(Instant::now);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => data_open = false,
            }
        }
        let mut i = 0;
        while i < flushes.len() {
            if flushes[i].0 <= done {
                let _ = flushes.swap_remove(i).1.send(());
            } else {
                i += 1;
            }
        }
        let now = Instant::now();
        if let Some((deadline, _)) = &closing
            && now >= *deadline
        {
            let mut left = batch.len() as u64;
            batch.clear();
            while rx.try_recv().is_ok() {
                left += 1;
            }
            shared.abandoned.fetch_add(left, Ordering::AcqRel);
            break;
        }
        let urgent = batch.len() >= cfg.batch_size
            || !flushes.is_empty()
            || closing.is_some()
            || !data_open
            || !control_open;
        let due = batch_since.map(|t| t + cfg.scheduled_delay);
        let may_try = retry_at.is_none_or(|t| now >= t);
        if !batch.is_empty() && may_try && (urgent || due.is_some_and(|d| now >= d)) {
            let mut until = now + cfg.export_timeout;
            if let Some((deadline, _)) = &closing {
                until = until.min(*deadline);
            }
            if failed_before {
                shared.retries.fetch_add(1, Ordering::AcqRel);
            }
            let n = batch.len() as u64;
            let result = tokio::time::timeout_at(until, exporter.export(batch.clone())).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("export timed out".to_owned()),
            };
            match error {
                None => {
                    shared.exported.fetch_add(n, Ordering::AcqRel);
                    done += n;
                    batch.clear();
                    batch_since = None;
                    retry_at = None;
                    failed_before = false;
                    backoff = cfg.initial_backoff;
                }
                Some(e) => {
                    shared.failed.fetch_add(1, Ordering::AcqRel);
                    *shared.last_error.lock() = Some(e);
                    failed_before = true;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(cfg.max_backoff);
                }
            }
            continue;
        }
        if batch.is_empty() && done == taken && (closing.is_some() || (!data_open && !control_open))
        {
            break;
        }
        let mut wake: Option<Instant> = None;
        let mut at = |t: Instant| wake = Some(wake.map_or(t, |w: Instant| w.min(t)));
        if !batch.is_empty() {
            match retry_at {
                Some(t) => at(t),
                None => {
                    if let Some(d) = due {
                        at(d);
                    }
                }
            }
        }
        if let Some((deadline, _)) = &closing {
            at(*deadline);
        }
        let room = data_open && batch.len() < cfg.batch_size;
        tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(Control::Flush { upto, ack }) => flushes.push((upto, ack)),
                Some(Control::Close { deadline, ack }) => {
                    // One immediate attempt at close, whatever the backoff.
                    retry_at = None;
                    closing = Some((deadline, ack));
                }
                None => control_open = false,
            },
            span = rx.recv(), if room => match span {
                Some(span) => {
                    batch.push(span);
                    taken += 1;
                    batch_since.get_or_insert_with(Instant::now);
                }
                None => data_open = false,
            },
            () = sleep_until_opt(wake) => {}
        }
    }
    for (_, ack) in flushes.drain(..) {
        let _ = ack.send(());
    }
    let _ = exporter.shutdown();
    if let Some((_, ack)) = closing {
        let _ = ack.send(());
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
