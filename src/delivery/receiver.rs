//! A handler task's end of a channel: its place among the readers and the batch it reads.

use std::sync::Arc;
use std::task::{Context, Poll};

use super::batch::Batch;
use super::channel::{Channel, Recv};
use super::queue::{Mode, ReaderId};
use crate::record::Record;

/// One reader of a [`Channel`], owning its place there and the records it holds.
///
/// Like tokio's `broadcast::Receiver`, it owns its channel (an `Arc`), so the records a batch
/// borrows from the channel's queue cannot outlive the queue; a batch is read through the
/// receiver only, and the next [`poll_recv`](Self::poll_recv) (which needs the receiver
/// mutably, so no record is borrowed then) ends the loan. Dropping the receiver gives its
/// place back:
///
/// - after [`Recv::Closed`], or after the reader was removed from outside, it just leaves;
/// - before (its task was dropped unfinished, because its runtime went away), it is
///   **abandoned**: what it had not handled, and every record pushed after, is counted as
///   lost to it ([`Channel::lost`]) and holds nobody back.
pub(crate) struct Receiver {
    /// Declared before `channel`, so the records it holds go before the channel can.
    batch: Batch,
    channel: Arc<Channel>,
    id: ReaderId,
    /// Records of the current batch whose handling completed (see [`done`](Self::done)).
    handled: u64,
    /// The channel said `Closed`: the reader left in order.
    closed: bool,
}

/// How many records a reader takes per call at most (an only reader that takes the whole
/// queue swaps buffers with it, so a larger batch costs it nothing).
pub(crate) const BATCH: usize = 1024;

impl Receiver {
    /// Joins `channel` as a reader that starts at its tail; `None` once it is closed.
    pub(crate) fn new(channel: Arc<Channel>, mode: Mode) -> Option<Receiver> {
        let id = channel.add_reader(mode)?;
        Some(Receiver {
            batch: Batch::with_capacity(BATCH),
            channel,
            id,
            handled: 0,
            closed: false,
        })
    }

    /// Its place in the channel.
    pub(crate) fn id(&self) -> ReaderId {
        self.id
    }

    /// Takes the next batch (up to [`BATCH`] records), or a barrier, a close, or nothing yet
    /// (then the task is woken when there is something; with `linger` it may be woken a batch
    /// later, see [`is_lingering`](Self::is_lingering)). The previous batch counts as handled.
    pub(crate) fn poll_recv(&mut self, linger: bool, cx: &mut Context<'_>) -> Poll<Recv> {
        self.handled = 0;
        let polled = self
            .channel
            .poll_recv(self.id, &mut self.batch, BATCH, linger, cx);
        if let Poll::Ready(Recv::Closed) = polled {
            self.closed = true;
        }
        polled
    }

    /// Whether the last [`poll_recv`](Self::poll_recv) parked the reader lingering: the caller
    /// is to wake it once its delay is over.
    pub(crate) fn is_lingering(&self) -> bool {
        self.batch.is_lingering()
    }

    /// The next record of the current batch.
    #[inline]
    pub(crate) fn next(&mut self) -> Option<&Record> {
        self.batch.next()
    }

    /// The record last returned by [`next`](Self::next) has been handled.
    #[inline]
    pub(crate) fn done(&mut self) {
        self.handled += 1;
    }

    /// The deadline of the shutdown that closed the channel, if one did (see
    /// [`Channel::close_by`]).
    pub(crate) fn close_deadline(&self) -> Option<std::time::Instant> {
        self.channel.close_deadline()
    }

    /// Acknowledges barrier `id` (after flushing the handler).
    pub(crate) fn ack(&self, id: u64) {
        self.channel.ack(self.id, id);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.closed {
            self.batch.clear();
            self.channel.remove_reader(self.id);
            return;
        }
        let taken_unhandled = self.batch.taken_len().saturating_sub(self.handled);
        // Lent records are given back (by cursor) after the batch lets go of them.
        self.batch.clear();
        self.channel
            .abandon_reader(self.id, self.handled, taken_unhandled);
        // Emitters learn at their next emit that this reader reads no more.
        super::topology_changed();
    }
}
