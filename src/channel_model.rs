//! A public face of the crate-private broadcast channel, compiled only under `--cfg loom` so
//! that `tests/loom_channel.rs` can drive the channel protocol directly. Not part of the API.

use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use crate::channel::{self, Mode};
use crate::event::Event;
use crate::record::{Record, RecordRef};

/// What a reader gets from [`Channel::poll_recv`] (mirrors the internal type).
#[derive(Debug, PartialEq, Eq)]
pub enum Recv {
    /// Records were appended to the batch; `dropped` were skipped before them (lossy readers).
    Records {
        /// Records skipped before this batch.
        dropped: u64,
    },
    /// Every record before barrier `id` has been handed out: acknowledge it.
    Barrier(u64),
    /// Closed and drained.
    Closed,
}

/// The outcome of [`Channel::push`] (mirrors the internal type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Appended.
    Done,
    /// A lossless reader is a full capacity behind; the waker was registered.
    Full,
    /// The channel is closed.
    Closed,
}

/// The broadcast channel.
pub struct Channel(channel::Channel);

/// A counted reference to a record (the crate's internal `RecordRef`).
#[derive(Clone, Debug)]
pub struct Rec(RecordRef);

impl std::ops::Deref for Rec {
    type Target = Record;

    fn deref(&self) -> &Record {
        &self.0
    }
}

/// An event record carrying `event`, attributed to no span.
pub fn record<E: Event>(event: E) -> Rec {
    Rec(Record::event_record(None, None, &"loom", event))
}

impl Channel {
    /// A channel with room for `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Channel(channel::Channel::new(capacity, capacity))
    }

    /// Adds a lossless reader (`lossy: None`) or a lossy one with that capacity.
    pub fn add_reader(&self, lossy: Option<usize>) -> Option<usize> {
        self.0.add_reader(match lossy {
            None => Mode::Lossless,
            Some(capacity) => Mode::Lossy { capacity },
        })
    }

    /// Removes a reader.
    pub fn remove_reader(&self, id: usize) {
        self.0.remove_reader(id);
    }

    /// Appends without waiting; `false` when closed.
    pub fn push_now(&self, record: Rec) -> bool {
        self.0.push_now(record.0).is_ok()
    }

    /// Appends if every lossless reader has room.
    pub fn push(&self, record: &Rec, waker: Option<&Waker>) -> Push {
        match self.0.push(&record.0, waker) {
            channel::Push::Done => Push::Done,
            channel::Push::Full => Push::Full,
            channel::Push::Closed => Push::Closed,
        }
    }

    /// Takes up to `max` records for reader `id`. What the previous call lent this reader
    /// counts as handled from now on (as in the handler task, which calls again only then).
    /// With `linger`, the reader may park lingering: woken only by the push that makes a batch
    /// (a quarter of the inbox), a flush or a close.
    pub fn poll_recv(
        &self,
        id: usize,
        batch: &mut Vec<Rec>,
        max: usize,
        linger: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Recv> {
        let mut lent = channel::Batch::with_capacity(max);
        let polled = self.0.poll_recv(id, &mut lent, max, linger, cx);
        batch.extend(lent.into_owned().into_iter().map(Rec));
        polled.map(|r| match r {
            channel::Recv::Records { dropped } => Recv::Records { dropped },
            channel::Recv::Barrier(id) => Recv::Barrier(id),
            channel::Recv::Closed => Recv::Closed,
        })
    }

    /// Acknowledges barrier `barrier` for reader `id`.
    pub fn ack(&self, id: usize, barrier: u64) {
        self.0.ack(id, barrier);
    }

    /// Places a flush barrier at the tail.
    pub fn barrier(&self) -> Option<oneshot::Receiver<()>> {
        self.0.barrier(false)
    }

    /// Closes the channel.
    pub fn close(&self) {
        self.0.close();
    }
}
