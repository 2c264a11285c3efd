//! The records a reader got from one [`Channel::poll_recv`](super::channel::Channel::poll_recv): owned, or lent by the channel's
//! queue until the reader's next call (see the channel's module docs).

use std::collections::VecDeque;

use crate::record::{Lent, Record, RecordRef};

/// The records a reader gets from [`Channel::poll_recv`](super::channel::Channel::poll_recv); read them with [`Batch::next`].
///
/// A batch either owns its records (`taken`) or borrows them from the queue; either way
/// `records` lists them in order, so that reading one is an index and a pointer.
pub(super) struct Batch {
    /// Records this batch owns: taken out of the queue by its only reader (often the queue's
    /// own buffer, swapped with this one), or cloned from it for a lossy reader. When not
    /// empty, it holds every record of `records`.
    pub(super) taken: VecDeque<RecordRef>,
    /// The batch's records, in order: pointing into `taken`, or lent by the queue (module
    /// docs) when `taken` is empty.
    pub(super) records: Vec<Lent>,
    /// How many records have been read.
    pub(super) read: usize,
    /// Records the channel trimmed during the last `poll_recv`, dropped once its lock is
    /// released (kept here so the buffer is not allocated anew at every call).
    pub(super) freed: Vec<RecordRef>,
    /// Set when the last `poll_recv` parked the reader lingering: the caller is to wake it
    /// once its delay is over.
    pub(super) lingering: bool,
}

// SAFETY: `records` stands for `&Record`s (only ever dereferenced as shared references, see
// `Batch::next`) into `taken` or the queue of the channel that filled the batch, and `Record`
// is `Send + Sync` (its payloads are); the rest is `RecordRef`s, which are `Send + Sync`. So
// the batch is safe to send to and share with another thread.
unsafe impl Send for Batch {}
// SAFETY: as above.
unsafe impl Sync for Batch {}

impl Batch {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Batch {
            taken: VecDeque::with_capacity(capacity),
            records: Vec::with_capacity(capacity),
            read: 0,
            freed: Vec::with_capacity(capacity),
            lingering: false,
        }
    }

    /// Whether the last [`Channel::poll_recv`](super::channel::Channel::poll_recv) left the reader lingering (see the module
    /// docs): the caller is to wake it once its delay is over.
    pub(super) fn is_lingering(&self) -> bool {
        self.lingering
    }

    /// The next record of the batch, borrowed from the batch (so it cannot be held across
    /// the next `poll_recv`, which ends the loan of lent records).
    #[inline]
    pub(super) fn next(&mut self) -> Option<&Record> {
        let record = *self.records.get(self.read)?;
        self.read += 1;
        // SAFETY: the record is in `taken`, which this batch keeps until its next `clear`
        // (and `clear` needs the batch mutably, so not while the result is borrowed); or it
        // was lent by a `RecordRef` in the queue of the channel that filled this batch, to the
        // batch's reader. The queue keeps that reference until the reader's cursor moves past
        // the record, which happens only in the reader's next `poll_recv`; that call needs the
        // batch mutably, and clears it before anything else, so no borrow of a record outlives
        // the loan. If the reader is removed meanwhile, the channel pins a clone of the record
        // until the reader's task polls again or drops its place (both after this batch is
        // done). The channel outlives the batch (the reader's task holds both, the channel
        // longer). So the record is alive while `self` is borrowed, and it is only read
        // through shared references.
        Some(unsafe { record.get() })
    }

    /// How many records the batch owns (taken out of the queue), 0 for a lent batch.
    pub(super) fn taken_len(&self) -> u64 {
        self.taken.len() as u64
    }

    /// Forgets the records of the last batch (an owned record is freed here, on the reader's
    /// side of the lock).
    pub(super) fn clear(&mut self) {
        self.records.clear();
        self.taken.clear();
        self.read = 0;
        self.lingering = false;
    }

    /// Takes every record as an owned reference (for the loom model's wrapper, whose tests
    /// keep records past the next `poll_recv`).
    #[cfg(all(loom, test))]
    pub(super) fn into_owned(&mut self) -> Vec<RecordRef> {
        let owned = if self.taken.is_empty() {
            self.records
                .drain(..)
                // SAFETY: lent by a `RecordRef` in the queue, alive until the reader's next
                // `poll_recv` (see `Batch::next`).
                .map(|lent| unsafe { lent.to_counted() })
                .collect()
        } else {
            self.records.clear();
            self.taken.drain(..).collect()
        };
        self.read = 0;
        owned
    }
}
