//! The export task: batches queued spans, sends them, retries what may succeed later, drops
//! what the endpoint rejects for good, and answers flush and close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry_sdk::trace::SpanData;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::OtlpExporterBuilder;
use super::shared::{Rejection, Sent, Shared};
use super::transport::Transport;

pub(super) enum Control {
    /// Ack once the first `upto` spans ever queued have left the pipeline.
    Flush { upto: u64, ack: oneshot::Sender<()> },
    /// Export what is left, retrying until `deadline`, then count the rest as abandoned and
    /// stop.
    Close { deadline: Instant },
}

/// What to do with a batch after an attempt to send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Exported,
    /// Send it again later, not before `not_before` from now if the endpoint said so.
    Retry {
        not_before: Option<Duration>,
    },
    /// Too large: split it, or drop it if it is a single span.
    TooLarge,
    /// Drop it.
    Rejected(Rejection),
}

/// The verdict on a failed attempt, from what the HTTP client noted of it.
fn classify(sent: Option<Sent>) -> Verdict {
    match sent {
        // The OTLP client refused to send it: the request is over its size limit.
        None => Verdict::TooLarge,
        Some(Sent::Unanswered) => Verdict::Retry { not_before: None },
        Some(Sent::Answered {
            status,
            retry_after,
        }) => match status.as_u16() {
            413 => Verdict::TooLarge,
            408 | 429 => Verdict::Retry {
                not_before: retry_after,
            },
            400 => Verdict::Rejected(Rejection::BadRequest),
            401..=499 => Verdict::Rejected(Rejection::ClientError),
            // 5xx, or a status the exporter does not expect (a redirect): maybe later.
            _ => Verdict::Retry {
                not_before: retry_after,
            },
        },
        Some(Sent::Grpc {
            code,
            retry_after,
            too_large,
        }) => classify_grpc(code, retry_after, too_large),
    }
}

/// The verdict on a gRPC status, as the OTLP specification's "Failures" section sorts them.
fn classify_grpc(code: i32, retry_after: Option<Duration>, too_large: bool) -> Verdict {
    if too_large {
        return Verdict::TooLarge;
    }
    let retry = Verdict::Retry {
        not_before: retry_after,
    };
    match code {
        // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
        1 | 4 | 10 | 11 | 14 | 15 => retry,
        // RESOURCE_EXHAUSTED: retried only when the server says when (`RetryInfo`).
        8 if retry_after.is_some() => retry,
        // INVALID_ARGUMENT: the request itself, as a 400 over HTTP.
        3 => Verdict::Rejected(Rejection::BadRequest),
        // UNKNOWN, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED without
        // RetryInfo, FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL, UNAUTHENTICATED, and codes
        // gRPC does not define.
        _ => Verdict::Rejected(Rejection::ClientError),
    }
}

/// The export task's state.
struct Task {
    cfg: OtlpExporterBuilder,
    shared: Arc<Shared>,
    /// The batch being sent: filled from the queue, or a piece of a split batch.
    batch: Vec<SpanData>,
    /// The pieces of a split batch still to send, the next one last.
    pieces: Vec<Vec<SpanData>>,
    /// `batch` is a piece of a split batch: it is sent as it is, at once.
    split: bool,
    /// Spans taken from the queue, and spans that left the pipeline (exported or rejected),
    /// since the start, both in queue order, for flush acknowledgements.
    taken: u64,
    done: u64,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    closing: Option<Instant>,
    backoff: Duration,
    /// No attempt before this.
    retry_at: Option<Instant>,
    /// The endpoint's `Retry-After`: not even the attempt at close goes before it.
    throttled_until: Option<Instant>,
    batch_since: Option<Instant>,
    failed_before: bool,
    data_open: bool,
    control_open: bool,
}

impl Task {
    fn control(&mut self, c: Option<Control>) {
        match c {
            Some(Control::Flush { upto, ack }) => self.flushes.push((upto, ack)),
            Some(Control::Close { deadline }) => {
                // One immediate attempt at close, whatever the backoff (but not before the
                // endpoint said it would take one).
                self.retry_at = self.throttled_until;
                self.closing = Some(deadline);
            }
            None => self.control_open = false,
        }
    }

    fn push(&mut self, span: SpanData) {
        self.batch.push(span);
        self.taken += 1;
        self.batch_since.get_or_insert_with(Instant::now);
    }

    /// Whether `batch` takes spans from the queue.
    fn has_room(&self) -> bool {
        self.data_open && !self.split && self.batch.len() < self.cfg.batch_size
    }

    /// The batch has left the pipeline: on to the next piece of a split batch, if any.
    fn next_batch(&mut self) {
        self.done += self.batch.len() as u64;
        self.batch.clear();
        match self.pieces.pop() {
            Some(piece) => self.batch = piece,
            None => {
                self.split = false;
                self.batch_since = None;
            }
        }
        self.retry_at = None;
        self.throttled_until = None;
        self.failed_before = false;
        self.backoff = self.cfg.initial_backoff;
    }

    /// Acts on the outcome of one attempt (`error` is `None` for a success).
    fn judge(&mut self, verdict: Verdict, error: Option<String>) {
        let n = self.batch.len() as u64;
        if verdict != Verdict::Exported {
            self.shared.failed.fetch_add(1, Ordering::AcqRel);
        }
        let error = error.unwrap_or_default();
        match verdict {
            Verdict::Exported => {
                self.shared.settle(n, None);
                self.next_batch();
            }
            Verdict::TooLarge if n > 1 => {
                self.shared.note_error(format!(
                    "{error} (a batch of {n} spans was too large: it is sent again in halves)"
                ));
                let second = self.batch.split_off(self.batch.len() / 2);
                self.pieces.push(second);
                self.split = true;
                self.failed_before = true;
                self.retry_at = None;
            }
            Verdict::TooLarge => self.reject(
                Rejection::TooLarge,
                format!("{error} (a single span too large to export: dropped)"),
            ),
            Verdict::Rejected(why) => self.reject(
                why,
                format!("{error} (the endpoint rejected a batch of {n} spans for good: dropped)"),
            ),
            Verdict::Retry { not_before } => {
                self.shared.note_error(error);
                self.failed_before = true;
                let now = Instant::now();
                self.throttled_until = not_before.map(|wait| now + wait);
                self.retry_at = Some(now + self.backoff.max(not_before.unwrap_or_default()));
                self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
            }
        }
    }

    fn reject(&mut self, why: Rejection, error: String) {
        self.shared.settle(self.batch.len() as u64, Some(why));
        self.shared.note_error(error);
        self.next_batch();
    }
}

/// The export task: batches from the queue, exports, retries with backoff.
pub(super) async fn export_task(
    exporter: Transport,
    mut rx: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    shared: Arc<Shared>,
    cfg: OtlpExporterBuilder,
) {
    let mut t = Task {
        batch: Vec::with_capacity(cfg.batch_size),
        pieces: Vec::new(),
        split: false,
        taken: 0,
        done: 0,
        flushes: Vec::new(),
        closing: None,
        backoff: cfg.initial_backoff,
        retry_at: None,
        throttled_until: None,
        batch_since: None,
        failed_before: false,
        data_open: true,
        control_open: true,
        shared,
        cfg,
    };
    loop {
        while t.has_room() {
            match rx.try_recv() {
                Ok(span) => t.push(span),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => t.data_open = false,
            }
        }
        let mut i = 0;
        while i < t.flushes.len() {
            if t.flushes[i].0 <= t.done {
                let _ = t.flushes.swap_remove(i).1.send(());
            } else {
                i += 1;
            }
        }
        let now = Instant::now();
        if t.closing.is_some_and(|deadline| now >= deadline) {
            break;
        }
        let urgent = t.split
            || t.batch.len() >= t.cfg.batch_size
            || !t.flushes.is_empty()
            || t.closing.is_some()
            || !t.data_open
            || !t.control_open;
        let due = t.batch_since.map(|since| since + t.cfg.scheduled_delay);
        let may_try = t.retry_at.is_none_or(|at| now >= at);
        if !t.batch.is_empty() && may_try && (urgent || due.is_some_and(|d| now >= d)) {
            if t.failed_before {
                t.shared.retries.fetch_add(1, Ordering::AcqRel);
            }
            *t.shared.sent.lock() = None;
            *t.shared.unanswered_because.lock() = None;
            let request_until = now + t.cfg.export_timeout;
            // The request, raced against control messages: a close cuts it at its deadline.
            let outcome = {
                let export = exporter.export(t.batch.clone());
                tokio::pin!(export);
                loop {
                    let until = t
                        .closing
                        .map_or(request_until, |deadline| deadline.min(request_until));
                    tokio::select! {
                        biased;
                        result = &mut export => break Some(result),
                        c = control.recv(), if t.control_open => t.control(c),
                        () = tokio::time::sleep_until(until) => break None,
                    }
                }
            };
            let sent = t.shared.sent.lock().take();
            match outcome {
                Some(Ok(())) => t.judge(Verdict::Exported, None),
                Some(Err(e)) => {
                    let e = match t.shared.unanswered_because.lock().take() {
                        Some(why) => format!("{e}: {why}"),
                        None => e,
                    };
                    t.judge(classify(sent), Some(e))
                }
                None => t.judge(
                    Verdict::Retry { not_before: None },
                    Some("export timed out".to_owned()),
                ),
            }
            continue;
        }
        if t.batch.is_empty()
            && t.done == t.taken
            && (t.closing.is_some() || (!t.data_open && !t.control_open))
        {
            break;
        }
        let mut wake: Option<Instant> = None;
        let mut at = |i: Instant| wake = Some(wake.map_or(i, |w: Instant| w.min(i)));
        if !t.batch.is_empty() {
            match t.retry_at {
                Some(r) => at(r),
                None => {
                    if let Some(d) = due {
                        at(d);
                    }
                }
            }
        }
        if let Some(deadline) = t.closing {
            at(deadline);
        }
        let room = t.has_room();
        tokio::select! {
            biased;
            c = control.recv(), if t.control_open => t.control(c),
            span = rx.recv(), if room => match span {
                Some(span) => t.push(span),
                None => t.data_open = false,
            },
            () = sleep_until_opt(wake) => {}
        }
    }
    for (_, ack) in t.flushes.drain(..) {
        let _ = ack.send(());
    }
    // What is still in the batch, its pieces or the queue is abandoned.
    drop(rx);
    t.shared.abandon_the_rest();
    t.shared.stopped.store(true, Ordering::Release);
    exporter.shutdown();
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn answered(code: u16, retry_after: Option<u64>) -> Option<Sent> {
        Some(Sent::Answered {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
        })
    }

    #[test]
    fn statuses_are_retried_split_or_rejected() {
        let retry = |s| Verdict::Retry { not_before: s };
        assert_eq!(classify(answered(413, None)), Verdict::TooLarge);
        assert_eq!(classify(None), Verdict::TooLarge, "refused before sending");
        assert_eq!(
            classify(answered(400, None)),
            Verdict::Rejected(Rejection::BadRequest)
        );
        for code in [401, 403, 404, 405, 415, 422] {
            assert_eq!(
                classify(answered(code, None)),
                Verdict::Rejected(Rejection::ClientError),
                "{code}"
            );
        }
        assert_eq!(classify(answered(408, None)), retry(None));
        assert_eq!(
            classify(answered(429, Some(3))),
            retry(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            classify(answered(503, Some(2))),
            retry(Some(Duration::from_secs(2)))
        );
        for code in [500, 502, 504, 302] {
            assert_eq!(classify(answered(code, None)), retry(None), "{code}");
        }
        assert_eq!(classify(Some(Sent::Unanswered)), retry(None));
    }

    fn grpc(code: i32, retry_after: Option<u64>, too_large: bool) -> Option<Sent> {
        Some(Sent::Grpc {
            code,
            retry_after: retry_after.map(Duration::from_secs),
            too_large,
        })
    }

    #[test]
    fn grpc_codes_are_retried_split_or_rejected_as_the_otlp_spec_says() {
        let retry = |s| Verdict::Retry { not_before: s };
        // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
        for code in [1, 4, 10, 11, 14, 15] {
            assert_eq!(classify(grpc(code, None, false)), retry(None), "{code}");
        }
        assert_eq!(
            classify(grpc(14, Some(2), false)),
            retry(Some(Duration::from_secs(2)))
        );
        // RESOURCE_EXHAUSTED: with RetryInfo, throttled; too large, split; else rejected.
        assert_eq!(
            classify(grpc(8, Some(3), false)),
            retry(Some(Duration::from_secs(3)))
        );
        assert_eq!(classify(grpc(8, None, true)), Verdict::TooLarge);
        assert_eq!(
            classify(grpc(8, None, false)),
            Verdict::Rejected(Rejection::ClientError)
        );
        assert_eq!(
            classify(grpc(3, None, false)),
            Verdict::Rejected(Rejection::BadRequest)
        );
        for code in [2, 5, 6, 7, 9, 12, 13, 16, 17, -1] {
            assert_eq!(
                classify(grpc(code, None, false)),
                Verdict::Rejected(Rejection::ClientError),
                "{code}"
            );
        }
    }
}
