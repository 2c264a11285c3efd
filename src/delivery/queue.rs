//! The channel's queue and its bookkeeping, all under the channel's lock: the records not yet
//! taken by every reader, each reader's cursor, the barriers, and what was lost.

use std::collections::VecDeque;
use std::task::Waker;

use tokio::sync::oneshot;

use super::inbox::{Head, NOBODY};
use super::wake::Wakers;
use crate::record::RecordRef;

/// A reader's delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lossless,
    Lossy { capacity: usize },
}

/// A reader's index in [`State::readers`].
pub(crate) type ReaderId = usize;

pub(super) struct Reader {
    /// Every record before this seq has been handled (or skipped, for a lossy reader).
    pub(super) cursor: u64,
    /// How many records from `cursor` on are lent to the reader's current batch (see the
    /// module docs); committed at its next `poll_recv`.
    pub(super) lent: u64,
    pub(super) mode: Mode,
    /// Set while the reader is parked.
    pub(super) waker: Option<Waker>,
    /// While parked: the first seq whose arrival wakes it (see the module docs).
    pub(super) wake_at: u64,
    /// Barriers with an id above this one are still to be acknowledged by this reader.
    pub(super) acked_barrier: u64,
    /// The channel's `overflowed` count when the reader last heard of it.
    pub(super) overflow_seen: u64,
    /// Its handler is waiting in a flush of its own, called from inside the handler: a flush
    /// placed from inside another handler does not wait for it (see [`Channel::barrier`]).
    pub(super) flushing: bool,
}

pub(super) struct Barrier {
    pub(super) id: u64,
    pub(super) seq: u64,
    /// The readers it still waits for.
    pub(super) waiting: Vec<ReaderId>,
    /// Placed by a flush called from inside a handler.
    pub(super) nested: bool,
    pub(super) done: Option<oneshot::Sender<()>>,
}

/// A reader whose task was dropped before the channel closed (its runtime went away): every
/// record from `from` on, plus `in_hand` records it held unhandled, is lost to it.
pub(super) struct Gone {
    pub(super) id: ReaderId,
    pub(super) from: u64,
    pub(super) in_hand: u64,
}

pub(super) struct State {
    pub(super) queue: VecDeque<RecordRef>,
    /// The seq of `queue[0]`.
    pub(super) head: u64,
    pub(super) readers: Vec<Option<Reader>>,
    /// How many entries of `readers` are `Some`.
    pub(super) live_readers: usize,
    pub(super) lossless_readers: usize,
    /// The smallest cursor of a lossless reader (meaningless when there is none). Kept up to
    /// date by whoever moves a lossless cursor or adds or removes a reader, so that a push
    /// checks the backlog without scanning the readers.
    pub(super) min_lossless_cursor: u64,
    /// How many readers have a waker registered: a push scans the readers for wakers only when
    /// some reader is parked.
    pub(super) parked: usize,
    /// At most the smallest `wake_at` of a parked reader (`NOBODY` when none is parked): a
    /// record below it wakes nobody. Published to the inbox.
    pub(super) min_wake_at: u64,
    pub(super) push_waiters: Vec<Waker>,
    /// Records lent to readers removed mid-batch, kept alive until that reader's task polls
    /// again or drops its place (see the module docs).
    pub(super) pinned: Vec<(ReaderId, Vec<RecordRef>)>,
    pub(super) barriers: VecDeque<Barrier>,
    pub(super) next_barrier: u64,
    pub(super) closed: bool,
    /// Readers whose tasks are gone (see [`Channel::abandon_reader`]).
    pub(super) gone: Vec<Gone>,
    /// Records refused past the hard cap, so far (see [`Channel::overflowed`]).
    pub(super) overflowed: u64,
    /// The inbox's consumer side: draining it takes the lock (always `Some`; taken out only
    /// for the length of a drain).
    pub(super) inbox_head: Option<Head>,
}

impl State {
    pub(super) fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    pub(super) fn readers(&self) -> impl Iterator<Item = &Reader> {
        self.readers.iter().flatten()
    }

    /// The oldest seq any reader still needs.
    pub(super) fn needed_from(&self) -> u64 {
        let tail = self.tail();
        self.readers()
            .map(|r| match r.mode {
                Mode::Lossless => r.cursor,
                Mode::Lossy { capacity } => r.cursor.max(tail.saturating_sub(capacity as u64)),
            })
            .min()
            .unwrap_or(tail)
    }

    /// Removes the records no reader needs any more, moving them into `freed` so that the
    /// caller can drop them (and free their memory) after releasing the lock.
    pub(super) fn trim(&mut self, freed: &mut Vec<RecordRef>) {
        let from = self.needed_from();
        let n = from.saturating_sub(self.head).min(self.queue.len() as u64) as usize;
        freed.extend(self.queue.drain(..n));
        self.head += n as u64;
    }

    /// How far the slowest lossless reader is behind the tail.
    pub(super) fn lossless_backlog(&self) -> u64 {
        if self.lossless_readers == 0 {
            return 0;
        }
        self.tail() - self.min_lossless_cursor
    }

    /// Recomputes [`min_lossless_cursor`](State::min_lossless_cursor) after a lossless cursor
    /// moved or the readers changed.
    pub(super) fn update_min_lossless_cursor(&mut self) {
        let tail = self.tail();
        self.min_lossless_cursor = self
            .readers()
            .filter(|r| r.mode == Mode::Lossless)
            .map(|r| r.cursor)
            .min()
            .unwrap_or(tail);
    }

    /// Moves every parked reader's waker into `wake`, lingering or not.
    pub(super) fn take_reader_wakers(&mut self, wake: &mut Wakers) {
        self.take_due_wakers(u64::MAX, wake);
    }

    /// Moves into `wake` the wakers of the parked readers that the arrival of record `seq`
    /// wakes (see the module docs).
    #[inline]
    pub(super) fn take_due_wakers(&mut self, seq: u64, wake: &mut Wakers) {
        if self.parked == 0 || seq < self.min_wake_at {
            return;
        }
        let mut rest = NOBODY;
        for reader in self.readers.iter_mut().flatten() {
            if reader.waker.is_none() {
                continue;
            }
            if reader.wake_at <= seq {
                wake.extend(reader.waker.take());
                self.parked -= 1;
            } else {
                rest = rest.min(reader.wake_at);
            }
        }
        self.min_wake_at = rest;
    }

    pub(super) fn append(&mut self, record: RecordRef, capacity: usize, wake: &mut Wakers) {
        self.queue.push_back(record);
        if self.queue.len() > capacity {
            // Only lossy readers (or none) let the queue grow past the bound without waiting:
            // rare enough to free under the lock.
            let mut freed = Vec::new();
            self.trim(&mut freed);
        }
        self.take_due_wakers(self.tail() - 1, wake);
    }

    /// Moves the waiting emitters into `wake` once the slowest lossless reader is at most half
    /// a capacity behind. Waking them at the first free slot instead would have them take one
    /// slot each and wait again: with several readers, every reader's batch woke them,
    /// mostly to find the slowest reader had not moved.
    pub(super) fn release_push_waiters(&mut self, capacity: usize, wake: &mut Wakers) {
        if !self.push_waiters.is_empty() && self.lossless_backlog() <= (capacity / 2) as u64 {
            wake.append(&mut self.push_waiters);
        }
    }

    /// Releases what was pinned for removed reader `id` into `freed`.
    pub(super) fn unpin(&mut self, id: ReaderId, freed: &mut Vec<RecordRef>) {
        if self.pinned.is_empty() {
            return;
        }
        self.pinned.retain_mut(|(reader, records)| {
            if *reader == id {
                freed.append(records);
            }
            *reader != id
        });
    }

    pub(super) fn ack_barriers_up_to(&mut self, reader_id: ReaderId, reader: &mut Reader, id: u64) {
        self.release_barriers(reader_id, |b| b.id > reader.acked_barrier && b.id <= id);
        reader.acked_barrier = reader.acked_barrier.max(id);
    }

    /// Stops the barriers that `which` selects from waiting for `reader`, and resolves those
    /// that then wait for nobody.
    pub(super) fn release_barriers(&mut self, reader: ReaderId, which: impl Fn(&Barrier) -> bool) {
        for b in self.barriers.iter_mut().filter(|b| which(b)) {
            b.waiting.retain(|&r| r != reader);
        }
        self.barriers.retain_mut(|b| {
            if !b.waiting.is_empty() {
                return true;
            }
            if let Some(done) = b.done.take() {
                let _ = done.send(());
            }
            false
        });
    }
}
