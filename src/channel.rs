//! The bounded broadcast channel between a dispatcher and its handler tasks.
//!
//! # Semantics
//!
//! A channel is a queue of records numbered by a sequence (`seq`). Every reader — one per handler
//! task — has its own cursor; one write is read by all readers, so fan-out costs one push, not
//! one send per handler. Records stay in the queue until no reader needs them.
//!
//! - A **lossless** reader holds records until it has taken them. When the slowest lossless
//!   reader is `capacity` records behind, asynchronous emitters wait for room
//!   ([`Channel::poll_push`] returns `Pending`).
//! - A **lossy** reader never holds anyone up. When it falls more than its own capacity behind,
//!   it skips forward to the newest `capacity` records; the number skipped is counted exactly and
//!   returned in-band with its next batch ([`Recv::Records::dropped`]).
//! - Synchronous emitters (in `Drop`, in sync code, a span's enter and exit inside `poll`) never
//!   wait: [`Channel::push_now`] appends even when the queue is full, so a lossless reader still
//!   loses nothing. The queue then holds more than `capacity` records until readers catch up,
//!   and asynchronous emitters wait until it has drained below the bound again.
//! - A **barrier** ([`Channel::barrier`]) is a flush request at the current tail: each reader
//!   present at that moment stops there, handles everything before it, flushes its handler and
//!   acknowledges; the barrier resolves when all have (or have gone).
//! - After [`Channel::close`], readers drain what is queued and then see [`Recv::Closed`];
//!   pushes fail.
//!
//! The lock is held only for queue bookkeeping, never across an `.await` or a handler call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use crate::record::Record;
use crate::sync::{Mutex, MutexGuard};

/// A reader's delivery mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Lossless,
    Lossy { capacity: usize },
}

/// What a reader gets from [`Channel::poll_recv`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recv {
    /// Records were appended to the caller's batch (possibly none, when only `dropped > 0`).
    Records { dropped: u64 },
    /// Every record before barrier `id` has been handed out; flush, then [`Channel::ack`].
    Barrier(u64),
    /// The channel is closed and drained.
    Closed,
}

pub(crate) type ReaderId = usize;

/// The outcome of [`Channel::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Done,
    Full,
    Closed,
}

struct Reader {
    cursor: u64,
    mode: Mode,
    waker: Option<Waker>,
    /// Barriers with an id above this one are still to be acknowledged by this reader.
    acked_barrier: u64,
}

struct Barrier {
    id: u64,
    seq: u64,
    pending: usize,
    done: Option<oneshot::Sender<()>>,
}

struct State {
    queue: VecDeque<Arc<Record>>,
    /// The seq of `queue[0]`.
    head: u64,
    readers: Vec<Option<Reader>>,
    lossless_readers: usize,
    /// The smallest cursor of a lossless reader (meaningless when there is none). Kept up to
    /// date by whoever moves a lossless cursor or adds or removes a reader, so that a push
    /// checks the backlog without scanning the readers.
    min_lossless_cursor: u64,
    /// How many readers have a waker registered: a push scans the readers for wakers only when
    /// some reader is parked.
    parked: usize,
    push_waiters: Vec<Waker>,
    barriers: VecDeque<Barrier>,
    next_barrier: u64,
    closed: bool,
}

pub(crate) struct Channel {
    state: Mutex<State>,
    capacity: usize,
}

impl State {
    fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    fn readers(&self) -> impl Iterator<Item = &Reader> {
        self.readers.iter().flatten()
    }

    /// The oldest seq any reader still needs.
    fn needed_from(&self) -> u64 {
        let tail = self.tail();
        self.readers()
            .map(|r| match r.mode {
                Mode::Lossless => r.cursor,
                Mode::Lossy { capacity } => r.cursor.max(tail.saturating_sub(capacity as u64)),
            })
            .min()
            .unwrap_or(tail)
    }

    fn trim(&mut self) {
        let from = self.needed_from();
        while self.head < from && self.queue.pop_front().is_some() {
            self.head += 1;
        }
    }

    /// How far the slowest lossless reader is behind the tail.
    fn lossless_backlog(&self) -> u64 {
        if self.lossless_readers == 0 {
            return 0;
        }
        self.tail() - self.min_lossless_cursor
    }

    /// Recomputes [`min_lossless_cursor`](State::min_lossless_cursor) after a lossless cursor
    /// moved or the readers changed.
    fn update_min_lossless_cursor(&mut self) {
        let tail = self.tail();
        self.min_lossless_cursor = self
            .readers()
            .filter(|r| r.mode == Mode::Lossless)
            .map(|r| r.cursor)
            .min()
            .unwrap_or(tail);
    }

    /// Moves every parked reader's waker into `wake`.
    fn take_reader_wakers(&mut self, wake: &mut Vec<Waker>) {
        if self.parked == 0 {
            return;
        }
        self.parked = 0;
        wake.extend(
            self.readers
                .iter_mut()
                .flatten()
                .filter_map(|r| r.waker.take()),
        );
    }

    fn append(&mut self, record: Arc<Record>, capacity: usize, wake: &mut Vec<Waker>) {
        self.queue.push_back(record);
        if self.queue.len() > capacity {
            self.trim();
        }
        self.take_reader_wakers(wake);
    }

    fn ack_barriers_up_to(&mut self, reader: &mut Reader, id: u64) {
        for b in self.barriers.iter_mut() {
            if b.id > reader.acked_barrier && b.id <= id {
                b.pending -= 1;
            }
        }
        reader.acked_barrier = reader.acked_barrier.max(id);
        while self.barriers.front().is_some_and(|b| b.pending == 0) {
            if let Some(mut b) = self.barriers.pop_front()
                && let Some(done) = b.done.take()
            {
                let _ = done.send(());
            }
        }
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

impl Channel {
    pub(crate) fn new(capacity: usize) -> Self {
        Channel {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(1 << 16)),
                head: 0,
                readers: Vec::new(),
                lossless_readers: 0,
                min_lossless_cursor: 0,
                parked: 0,
                push_waiters: Vec::new(),
                barriers: VecDeque::new(),
                next_barrier: 1,
                closed: false,
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no user code runs under it), but if one
        // did, the bookkeeping is still consistent at every statement boundary: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a reader that starts at the current tail.
    pub(crate) fn add_reader(&self, mode: Mode) -> Option<ReaderId> {
        let mut st = self.lock();
        if st.closed {
            return None;
        }
        let reader = Reader {
            cursor: st.tail(),
            mode,
            waker: None,
            acked_barrier: st.next_barrier - 1,
        };
        if mode == Mode::Lossless {
            st.lossless_readers += 1;
        }
        // Slots are never reused: a removed reader's task may still poll with its old id and
        // must then see `Closed`, not another reader's records.
        st.readers.push(Some(reader));
        st.update_min_lossless_cursor();
        let id = st.readers.len() - 1;
        Some(id)
    }

    /// Removes a reader: it stops holding records and barriers back. Idempotent.
    pub(crate) fn remove_reader(&self, id: ReaderId) {
        let mut st = self.lock();
        let Some(mut reader) = st.readers.get_mut(id).and_then(Option::take) else {
            return;
        };
        if reader.mode == Mode::Lossless {
            st.lossless_readers -= 1;
        }
        if reader.waker.is_some() {
            st.parked -= 1;
        }
        st.update_min_lossless_cursor();
        let last = st.next_barrier - 1;
        st.ack_barriers_up_to(&mut reader, last);
        st.trim();
        let mut waiters = std::mem::take(&mut st.push_waiters);
        drop(st);
        // The reader's own task may be parked in `poll_recv`: wake it so that it sees `Closed`
        // and runs its handler's flush and close hooks instead of sleeping forever.
        waiters.extend(reader.waker.take());
        wake_all(waiters);
    }

    /// Whether any reader is attached.
    pub(crate) fn has_readers(&self) -> bool {
        let st = self.lock();
        !st.closed && st.readers().next().is_some()
    }

    /// Appends without waiting; fails only when the channel is closed.
    pub(crate) fn push_now(&self, record: Arc<Record>) -> Result<(), Arc<Record>> {
        let mut wake = Vec::new();
        {
            let mut st = self.lock();
            if st.closed {
                return Err(record);
            }
            st.append(record, self.capacity, &mut wake);
        }
        wake_all(wake);
        Ok(())
    }

    /// Appends when every lossless reader has room. When one is a full capacity behind, returns
    /// [`Push::Full`] and, given a waker, registers it to be woken when room frees up.
    pub(crate) fn push(&self, record: &Arc<Record>, waker: Option<&Waker>) -> Push {
        let mut wake = Vec::new();
        {
            let mut st = self.lock();
            if st.closed {
                return Push::Closed;
            }
            if st.lossless_backlog() >= self.capacity as u64 {
                if let Some(waker) = waker
                    && !st.push_waiters.iter().any(|w| w.will_wake(waker))
                {
                    st.push_waiters.push(waker.clone());
                }
                return Push::Full;
            }
            st.append(Arc::clone(record), self.capacity, &mut wake);
        }
        wake_all(wake);
        Push::Done
    }

    /// Moves up to `max` records into `batch`, or reports a barrier, a close, or nothing yet.
    pub(crate) fn poll_recv(
        &self,
        id: ReaderId,
        batch: &mut Vec<Arc<Record>>,
        max: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Recv> {
        let mut st = self.lock();
        let tail = st.tail();
        let head = st.head;
        let closed = st.closed;
        let next_barrier = {
            let acked = match st.readers.get(id) {
                Some(Some(r)) => r.acked_barrier,
                _ => return Poll::Ready(Recv::Closed),
            };
            st.barriers
                .iter()
                .find(|b| b.id > acked)
                .map(|b| (b.id, b.seq))
        };
        let Some(Some(reader)) = st.readers.get_mut(id) else {
            return Poll::Ready(Recv::Closed);
        };
        let mut dropped = 0;
        if let Mode::Lossy { capacity } = reader.mode {
            let oldest_kept = tail.saturating_sub(capacity as u64);
            if reader.cursor < oldest_kept {
                dropped = oldest_kept - reader.cursor;
                reader.cursor = oldest_kept;
            }
        }
        let limit = next_barrier.map_or(tail, |(_, seq)| seq.min(tail));
        if reader.cursor < limit {
            let from = (reader.cursor - head) as usize;
            let n = ((limit - reader.cursor) as usize).min(max);
            reader.cursor += n as u64;
            let lossless = reader.mode == Mode::Lossless;
            batch.extend(st.queue.range(from..from + n).cloned());
            if lossless {
                st.update_min_lossless_cursor();
                st.trim();
                let waiters = std::mem::take(&mut st.push_waiters);
                drop(st);
                wake_all(waiters);
            }
            return Poll::Ready(Recv::Records { dropped });
        }
        if dropped > 0 {
            return Poll::Ready(Recv::Records { dropped });
        }
        if let Some((barrier, _)) = next_barrier {
            return Poll::Ready(Recv::Barrier(barrier));
        }
        if closed {
            return Poll::Ready(Recv::Closed);
        }
        if reader.waker.replace(cx.waker().clone()).is_none() {
            st.parked += 1;
        }
        Poll::Pending
    }

    /// Acknowledges barrier `id` for reader `reader`.
    pub(crate) fn ack(&self, reader: ReaderId, id: u64) {
        let mut st = self.lock();
        if let Some(mut r) = st.readers.get_mut(reader).and_then(Option::take) {
            st.ack_barriers_up_to(&mut r, id);
            st.readers[reader] = Some(r);
        }
    }

    /// Places a flush barrier at the current tail. The receiver resolves once every reader
    /// present now has handled everything before it and flushed (or has been removed).
    pub(crate) fn barrier(&self) -> Option<oneshot::Receiver<()>> {
        let mut wake = Vec::new();
        let rx = {
            let mut st = self.lock();
            let pending = st.readers().count();
            if pending == 0 {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            let id = st.next_barrier;
            st.next_barrier += 1;
            let seq = st.tail();
            st.barriers.push_back(Barrier {
                id,
                seq,
                pending,
                done: Some(tx),
            });
            st.take_reader_wakers(&mut wake);
            rx
        };
        wake_all(wake);
        Some(rx)
    }

    /// Closes the channel: pushes fail from now on; readers drain, then see `Closed`.
    pub(crate) fn close(&self) {
        let (readers, pushers) = {
            let mut st = self.lock();
            st.closed = true;
            let mut readers = Vec::new();
            st.take_reader_wakers(&mut readers);
            (readers, std::mem::take(&mut st.push_waiters))
        };
        wake_all(readers);
        wake_all(pushers);
    }
}
