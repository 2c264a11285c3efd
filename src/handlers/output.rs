use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// What a file-writing handler ([`JsonlHandler`](super::JsonlHandler),
/// [`HtmlReport`](super::HtmlReport)) has done, readable while it runs in its task.
///
/// Handlers cannot return errors to emitters, so write failures are counted here instead, with
/// the last one's message. Take the status before adding the handler; it is a cheap shared
/// handle.
#[derive(Debug, Clone, Default)]
pub struct OutputStatus(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    written: AtomicU64,
    unserializable: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

// No user code runs while its locks are held, so a panic cannot leave their data half-changed:
// as unwind-safe as with `std::sync::Mutex` (which poisons instead).
impl std::panic::UnwindSafe for Inner {}
impl std::panic::RefUnwindSafe for Inner {}

impl OutputStatus {
    /// Lines written (JSON Lines) or pages written (HTML report).
    pub fn written(&self) -> u64 {
        self.0.written.load(Ordering::Acquire)
    }

    /// Events whose payload failed to serialize.
    pub fn unserializable(&self) -> u64 {
        self.0.unserializable.load(Ordering::Acquire)
    }

    /// Writes (or flushes) that failed.
    pub fn failed_writes(&self) -> u64 {
        self.0.failed.load(Ordering::Acquire)
    }

    /// The message of the last failed write, if any.
    pub fn last_error(&self) -> Option<String> {
        self.0.last_error.lock().clone()
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.0.written.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn add_unserializable(&self) {
        self.0.unserializable.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn add_failure(&self, message: String) {
        self.0.failed.fetch_add(1, Ordering::AcqRel);
        *self.0.last_error.lock() = Some(message);
    }
}
