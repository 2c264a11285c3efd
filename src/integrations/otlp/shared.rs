//! What the exporter's handler, its export task and its clients share: the counters, and what
//! became of the request being sent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;
use parking_lot::Mutex;

/// Why the endpoint's answer made the exporter drop a batch instead of retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// `400 Bad Request`.
    BadRequest,
    /// A single span still answered `413`, or over the OTLP client's request size limit.
    TooLarge,
    /// Any other 4xx but 408 and 429, or a gRPC status the OTLP spec says not to retry.
    ClientError,
}

/// The exporter's counters, shared by the handler (which reads them for its stats), the export
/// task (which updates them) and the HTTP client (which notes each exchange).
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) enqueued: AtomicU64,
    pub(super) exported: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) abandoned: AtomicU64,
    pub(super) bad_request: AtomicU64,
    pub(super) too_large: AtomicU64,
    pub(super) client_error: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
    /// Set when the exporter is closed or dropped: the client sends nothing more.
    pub(super) stopped: AtomicBool,
    /// The exchange of the request being sent (see [`Sent`]); `None` until the client sends.
    pub(super) sent: Mutex<Option<Sent>>,
    /// Why the request being sent got no answer (a connection, TLS or timeout error), which
    /// opentelemetry-otlp's HTTP exporter reports only as "network error".
    pub(super) unanswered_because: Mutex<Option<String>>,
    /// Whether the spans not exported yet were counted as abandoned; after that, outcomes that
    /// still come in are not counted again. Taken to count an outcome.
    pub(super) settled: Mutex<bool>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Shared {}
impl std::panic::RefUnwindSafe for Shared {}

impl Shared {
    /// Spans rejected for good, all reasons.
    pub(super) fn rejected(&self) -> u64 {
        self.bad_request.load(Ordering::Acquire)
            + self.too_large.load(Ordering::Acquire)
            + self.client_error.load(Ordering::Acquire)
    }

    /// Counts `n` spans as exported (`None`) or rejected, unless they were already counted as
    /// abandoned.
    pub(super) fn settle(&self, n: u64, rejected: Option<Rejection>) {
        let settled = self.settled.lock();
        if *settled {
            return;
        }
        let counter = match rejected {
            None => &self.exported,
            Some(Rejection::BadRequest) => &self.bad_request,
            Some(Rejection::TooLarge) => &self.too_large,
            Some(Rejection::ClientError) => &self.client_error,
        };
        counter.fetch_add(n, Ordering::AcqRel);
    }

    /// Counts every span queued and not yet exported, rejected or abandoned as abandoned, and
    /// stops counting outcomes. Called when the export task ends and again when the exporter
    /// is closed or dropped (which adds what was queued since, if anything).
    pub(super) fn abandon_the_rest(&self) {
        let mut settled = self.settled.lock();
        *settled = true;
        let accounted = self.exported.load(Ordering::Acquire)
            + self.rejected()
            + self.abandoned.load(Ordering::Acquire);
        let left = self
            .enqueued
            .load(Ordering::Acquire)
            .saturating_sub(accounted);
        self.abandoned.fetch_add(left, Ordering::AcqRel);
    }

    pub(super) fn note_error(&self, error: String) {
        *self.last_error.lock() = Some(error);
    }
}

/// What became of the last request the client was asked to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// It went out and got no answer (the connection failed, or the request timed out).
    Unanswered,
    /// The endpoint answered.
    Answered {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    /// A gRPC server answered a status other than `OK` (`code`, as numbered by gRPC), with the
    /// wait its `RetryInfo` asks for, and whether its message says the request was too large.
    #[cfg_attr(not(feature = "otlp-grpc"), allow(dead_code))]
    Grpc {
        code: i32,
        retry_after: Option<Duration>,
        too_large: bool,
    },
}
