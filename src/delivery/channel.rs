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
//!   ([`Channel::push`] returns [`Push::Full`]) until it is at most half a capacity behind
//!   (so that a waiting emitter, once woken, has room for a run of records, not one).
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
//!
//! # How a record gets in
//!
//! Emitters do not take the lock. A push puts the record into the channel's **inbox**
//! (`super::inbox`), a lock-free ring, at the next position, which is the record's `seq`; the
//! lossless bound is checked there against a limit the channel publishes. Whoever next holds
//! the lock drains the inbox's published records into the queue in `seq` order before doing
//! anything else: a reader polling, a flush, a close, or an emitter the inbox refused (at the
//! bound, or with every slot taken), which then retries under the lock. Nothing under the lock
//! waits for a push in progress: a flush places its barrier at the inbox's claimed tail (so it
//! comes after every push that began before it), and a closed channel reports `Closed` only
//! once every push that got in is drained. A reader about to sleep and an emitter that just
//! pushed perform the inbox's parking handshake, so a record never waits for a reader that is
//! asleep longer than the reader asked to.
//!
//! # Lingering: waking a busy reader once per batch
//!
//! A reader may park **lingering**: instead of being woken by the next push, it is woken by
//! the push that makes a batch (a quarter of the inbox, at most 256 records), or by its own
//! timer once a delay is over (the handler task keeps one, see `super::linger`), whichever
//! comes first. A reader with a flush barrier ahead never lingers (the flush would wait for
//! it), and a flush, a close, or an emitter held at the lossless bound wakes every parked
//! reader, lingering or not.
//!
//! # How a reader gets its records
//!
//! A [`Batch`] is filled in one of three ways, cheapest first:
//!
//! - the **only reader**, at the head of the queue, takes the records out (moves them);
//! - a **lossless** reader among several **borrows** them: the batch holds pointers into the
//!   records the queue owns, and the reader's cursor moves past them only at its next
//!   `poll_recv`, after it has handled them. Until then the queue cannot trim them (it trims
//!   only below every lossless cursor), so fan-out to N handlers touches no reference count:
//!   N readers sharing one reference count would bounce it between cores twice per reader;
//! - a **lossy** reader among several gets its own references (counted clones), because a lossy
//!   reader never holds the queue back: what it has in hand must stay alive without it.
//!
//! A borrowing reader removed from outside (`remove_reader` from `Dispatcher::remove_handler`)
//! may be in the middle of its batch: the records it has in hand are then **pinned** (cloned
//! into the channel) until its task next polls or goes away.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use tokio::sync::oneshot;

use super::batch::Batch;
use super::inbox::{Bound, Inbox, NOBODY, Refused, UNBOUNDED};
use super::queue::{Barrier, Gone, Mode, Reader, ReaderId, State};
use super::sync::{Mutex, MutexGuard, spin_wait, yield_for_models};
use super::wake::{Deferred, Wakers, wake_each};
use crate::record::RecordRef;

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

/// The outcome of [`Channel::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    Done,
    Full,
    Closed,
}

pub(crate) struct Channel {
    state: Mutex<State>,
    /// Where emitters put records without the lock (`super::inbox`).
    inbox: Inbox,
    capacity: usize,
    /// How far past `capacity` pushes that cannot wait may go (the hard cap is the sum).
    overflow: usize,
    /// How many records wake a lingering reader (see the module docs).
    linger_records: u64,
    /// When whoever closed the channel stops waiting for its readers (a shutdown's deadline);
    /// unset when nobody waits (the dispatcher was dropped) or not closed yet.
    close_deadline: std::sync::OnceLock<std::time::Instant>,
}

/// Inbox slots per channel at most (a channel with a smaller capacity gets fewer).
const INBOX_SLOTS: usize = 1024;

/// How many records wake a lingering reader at most (a quarter of the inbox when smaller, so
/// that emitters rarely find the inbox full while a reader lingers).
const LINGER_RECORDS: usize = 256;

impl Channel {
    /// A channel of `capacity` records that pushes which cannot wait may exceed by `overflow`.
    pub(crate) fn new(capacity: usize, overflow: usize) -> Self {
        let (inbox, inbox_head) = Inbox::new(capacity.min(INBOX_SLOTS));
        Channel {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(1 << 16)),
                head: 0,
                readers: Vec::new(),
                live_readers: 0,
                lossless_readers: 0,
                min_lossless_cursor: 0,
                parked: 0,
                min_wake_at: NOBODY,
                push_waiters: Vec::new(),
                pinned: Vec::new(),
                barriers: VecDeque::new(),
                next_barrier: 1,
                closed: false,
                gone: Vec::new(),
                overflowed: 0,
                inbox_head: Some(inbox_head),
            }),
            inbox,
            capacity,
            overflow,
            linger_records: (capacity.min(INBOX_SLOTS) / 4).clamp(1, LINGER_RECORDS) as u64,
            close_deadline: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no user code runs under it), but if one
        // did, the bookkeeping is still consistent at every statement boundary: keep going.
        // loom's lock can be poisoned; no user code runs under it, so the state is whole.
        #[cfg(loom)]
        return self.state.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(not(loom))]
        self.state.lock()
    }

    /// Moves what emitters published in the inbox into the queue (see the module docs).
    /// Parked readers the new records are for go to `wake`.
    fn drain(&self, st: &mut State, wake: &mut Wakers) {
        if let Some(mut head) = st.inbox_head.take() {
            self.inbox
                .drain(&mut head, |record| st.append(record, self.capacity, wake));
            st.inbox_head = Some(head);
        }
    }

    /// Tells the inbox what emitters need to know without the lock: the lossless bound and
    /// which push must wake a parked reader. Called at the end of every locked section that may
    /// change either.
    fn publish(&self, st: &State) {
        if st.lossless_readers == 0 {
            self.inbox.set_limits(UNBOUNDED, UNBOUNDED);
        } else {
            let soft = st.min_lossless_cursor + self.capacity as u64;
            self.inbox
                .set_limits(soft, soft.saturating_add(self.overflow as u64));
        }
        self.inbox.set_wake_at(if st.parked == 0 {
            NOBODY
        } else {
            st.min_wake_at
        });
    }

    /// Adds a reader that starts at the current tail: after every record drained so far (a
    /// push still in progress, or published behind one, reaches the new reader too).
    pub(super) fn add_reader(&self, mode: Mode) -> Option<ReaderId> {
        let mut wake = Wakers::default();
        let id = {
            let mut st = self.lock();
            if st.closed {
                return None;
            }
            self.drain(&mut st, &mut wake);
            let reader = Reader {
                cursor: st.tail(),
                lent: 0,
                mode,
                waker: None,
                wake_at: NOBODY,
                acked_barrier: st.next_barrier - 1,
                overflow_seen: st.overflowed,
                flushing: false,
            };
            if mode == Mode::Lossless {
                st.lossless_readers += 1;
            }
            // Slots are never reused: a removed reader's task may still poll with its old id and
            // must then see `Closed`, not another reader's records.
            st.readers.push(Some(reader));
            st.live_readers += 1;
            st.update_min_lossless_cursor();
            self.publish(&st);
            st.readers.len() - 1
        };
        wake.wake_all();
        Some(id)
    }

    /// Removes a reader: it stops holding records and barriers back. Idempotent.
    pub(crate) fn remove_reader(&self, id: ReaderId) {
        let mut freed = Vec::new();
        let mut deferred = Deferred::new(&mut freed);
        let mut st = self.lock();
        self.remove_locked(&mut st, id, &mut deferred);
    }

    /// Removes reader `id`, whose task is being dropped unfinished (its runtime went away)
    /// with a batch in hand of which it handled `handled` records: it stops holding anything
    /// back, and every record it did not handle, or that arrives from now on, is counted as
    /// lost to it ([`lost`](Self::lost)). `taken_unhandled` is how many records of a batch it
    /// owned (taken out of the queue) it did not handle.
    pub(super) fn abandon_reader(&self, id: ReaderId, handled: u64, taken_unhandled: u64) {
        let mut freed = Vec::new();
        let mut deferred = Deferred::new(&mut freed);
        let mut st = self.lock();
        self.drain(&mut st, &mut deferred.wake);
        let Some(Some(reader)) = st.readers.get_mut(id) else {
            return;
        };
        // What it handled of a lent batch is committed; the rest stays after its cursor.
        reader.cursor += handled.min(reader.lent);
        reader.lent = 0;
        let from = reader.cursor;
        st.gone.push(Gone {
            id,
            from,
            in_hand: taken_unhandled,
        });
        self.remove_locked(&mut st, id, &mut deferred);
        // No task will read what a removed reader would have had pinned.
        st.unpin(id, deferred.freed);
    }

    /// The records reader `id` lost because its task is gone (0 for a reader that is not).
    pub(crate) fn lost(&self, id: ReaderId) -> u64 {
        let st = self.lock();
        let tail = self.inbox.claimed();
        st.gone
            .iter()
            .find(|g| g.id == id)
            .map_or(0, |g| tail.saturating_sub(g.from) + g.in_hand)
    }

    /// Whether readers were attached and every one of them is gone (see
    /// [`abandon_reader`](Self::abandon_reader)): nobody will read what is pushed.
    pub(crate) fn all_gone(&self) -> bool {
        let st = self.lock();
        st.live_readers == 0 && !st.gone.is_empty()
    }

    fn remove_locked(&self, st: &mut State, id: ReaderId, deferred: &mut Deferred<'_>) {
        let Some(mut reader) = st.readers.get_mut(id).and_then(Option::take) else {
            // Already removed: its task is done with whatever was pinned for it.
            st.unpin(id, deferred.freed);
            return;
        };
        if reader.lent > 0 {
            // Its task may be handling these right now: keep them alive for it.
            let from = (reader.cursor - st.head) as usize;
            let lent: Vec<_> = st
                .queue
                .range(from..from + reader.lent as usize)
                .cloned()
                .collect();
            st.pinned.push((id, lent));
        }
        st.live_readers -= 1;
        if reader.mode == Mode::Lossless {
            st.lossless_readers -= 1;
        }
        if reader.waker.is_some() {
            st.parked -= 1;
        }
        st.update_min_lossless_cursor();
        let last = st.next_barrier - 1;
        st.ack_barriers_up_to(id, &mut reader, last);
        st.trim(deferred.freed);
        // Waiting emitters may have been held back by this reader alone.
        deferred.wake.append(&mut st.push_waiters);
        // The reader's own task may be parked in `poll_recv`: wake it so that it sees `Closed`
        // and runs its handler's flush and close hooks instead of sleeping forever.
        deferred.wake.extend(reader.waker.take());
        self.publish(st);
    }

    /// Whether any reader is attached, or was until its task went away (records pushed then
    /// are counted as lost to it, see [`abandon_reader`](Self::abandon_reader)).
    pub(crate) fn has_readers(&self) -> bool {
        let st = self.lock();
        !st.closed && (st.live_readers > 0 || !st.gone.is_empty())
    }

    /// Appends without waiting, past the lossless bound up to the hard cap (`capacity +
    /// overflow`). Refused with [`Push::Closed`] once closed, and with [`Push::Full`] at the hard
    /// cap: the caller then either waits on a plain thread ([`push_blocking`](Self::push_blocking))
    /// or drops the record and counts it ([`overflowed`](Self::overflowed)).
    #[inline]
    pub(crate) fn push_now(&self, record: RecordRef) -> Result<(), (Push, RecordRef)> {
        match self.inbox.push(record, Bound::Hard) {
            Ok(seq) => {
                self.wake_parked(seq);
                Ok(())
            }
            Err((Refused::Closed, record)) => Err((Push::Closed, record)),
            Err((_, record)) => self.push_locked(record, Bound::Hard, None),
        }
    }

    /// Appends without waiting and past the hard cap: for records that end what readers already
    /// saw begin (see `Dispatcher::push_span_record`). Refused only when closed.
    pub(crate) fn push_past_cap(&self, record: RecordRef) -> Result<(), RecordRef> {
        let pushed = match self.inbox.push(record, Bound::Checked) {
            Ok(seq) => {
                self.wake_parked(seq);
                Ok(())
            }
            Err((Refused::Closed, record)) => Err((Push::Closed, record)),
            Err((_, record)) => self.push_locked(record, Bound::Checked, None),
        };
        pushed.map_err(|(_, record)| record)
    }

    /// Counts a record refused at the hard cap and dropped: every reader is told how many it
    /// missed so, in-band, before its next record ([`Recv::Records::dropped`]).
    #[cold]
    pub(crate) fn overflowed(&self) {
        self.lock().overflowed += 1;
    }

    /// Pushes once every lossless reader has room, blocking the calling thread meanwhile. For
    /// plain threads only (no runtime to block): a record refused at the hard cap waits here.
    #[cold]
    pub(crate) fn push_blocking(&self, record: &RecordRef) -> Push {
        super::park::block_on(|cx| match self.push(record, Some(cx.waker())) {
            Push::Full => Poll::Pending,
            done => Poll::Ready(done),
        })
    }

    /// Whether every lossless reader has room for a push that waits (below the bound). If
    /// not, `waker` is woken once there is.
    #[inline]
    pub(crate) fn poll_room(&self, waker: &Waker) -> bool {
        self.inbox.has_room(Bound::Soft) || self.poll_room_locked(waker)
    }

    #[cold]
    fn poll_room_locked(&self, waker: &Waker) -> bool {
        let mut wake = Wakers::default();
        let room = {
            let mut st = self.lock();
            self.drain(&mut st, &mut wake);
            let room = st.closed || self.backlog(&st) < self.capacity as u64;
            if !room && !st.push_waiters.iter().any(|w| w.will_wake(waker)) {
                st.push_waiters.push(waker.clone());
            }
            self.publish(&st);
            room
        };
        wake.wake_all();
        room
    }

    /// Whether a push that cannot wait would find room below the hard cap now.
    #[inline]
    pub(crate) fn below_hard_cap(&self) -> bool {
        self.inbox.has_room(Bound::Hard)
    }

    /// How far the slowest lossless reader is behind the claimed tail (pushes in progress
    /// count, as in the inbox's own check). The one place the bound is measured.
    fn backlog(&self, st: &State) -> u64 {
        if st.lossless_readers == 0 {
            0
        } else {
            self.inbox.claimed().saturating_sub(st.min_lossless_cursor)
        }
    }

    /// Appends when every lossless reader has room. When one is a full capacity behind, returns
    /// [`Push::Full`] and, given a waker, registers it to be woken when room frees up.
    pub(crate) fn push(&self, record: &RecordRef, waker: Option<&Waker>) -> Push {
        match self.push_owned(record.clone(), waker) {
            Ok(()) => Push::Done,
            Err((refused, _)) => refused,
        }
    }

    /// [`push`](Self::push), taking the caller's reference instead of a new one (one reference
    /// count fewer to bump and drop per record); a refused record is handed back.
    #[inline]
    pub(crate) fn push_owned(
        &self,
        record: RecordRef,
        waker: Option<&Waker>,
    ) -> Result<(), (Push, RecordRef)> {
        match self.inbox.push(record, Bound::Soft) {
            Ok(seq) => {
                self.wake_parked(seq);
                Ok(())
            }
            Err((Refused::Closed, record)) => Err((Push::Closed, record)),
            Err((_, record)) => self.push_locked(record, Bound::Soft, waker),
        }
    }

    /// After the push of record `seq`: wakes the parked readers it is due to wake, if any (see
    /// the inbox's parking handshake).
    #[inline]
    fn wake_parked(&self, seq: u64) {
        if self.inbox.wake_due(seq) {
            self.wake_readers(seq);
        }
    }

    #[cold]
    fn wake_readers(&self, seq: u64) {
        let mut wake = Wakers::default();
        {
            let mut st = self.lock();
            st.take_due_wakers(seq, &mut wake);
            self.publish(&st);
        }
        wake.wake_all();
    }

    /// The push the inbox refused at its bound or for want of a free slot, retried under the
    /// lock: drain, check the bound (`capacity` for a push that waits, `capacity + overflow`
    /// for one that cannot), and push again.
    #[cold]
    fn push_locked(
        &self,
        mut record: RecordRef,
        bound: Bound,
        waker: Option<&Waker>,
    ) -> Result<(), (Push, RecordRef)> {
        let limit = match bound {
            Bound::Soft => self.capacity as u64,
            Bound::Hard => (self.capacity as u64).saturating_add(self.overflow as u64),
            Bound::Checked => u64::MAX,
        };
        let mut spins = 0;
        loop {
            let mut freed = Vec::new();
            let mut deferred = Deferred::new(&mut freed);
            let mut st = self.lock();
            self.drain(&mut st, &mut deferred.wake);
            if self.backlog(&st) >= limit {
                if let Some(waker) = waker
                    && !st.push_waiters.iter().any(|w| w.will_wake(waker))
                {
                    st.push_waiters.push(waker.clone());
                }
                self.publish(&st);
                return Err((Push::Full, record));
            }
            match self.inbox.push(record, Bound::Checked) {
                Ok(_) => {
                    st.take_reader_wakers(&mut deferred.wake);
                    self.publish(&st);
                    return Ok(());
                }
                Err((Refused::Closed, back)) => return Err((Push::Closed, back)),
                // Every slot is taken although the queue just drained: the oldest is claimed
                // by a push a few instructions from publishing it. Let it finish.
                Err((_, back)) => record = back,
            }
            self.publish(&st);
            drop(st);
            drop(deferred);
            spin_wait(&mut spins);
        }
    }

    /// Fills `batch` with up to `max` records (see the module docs for how), or reports a
    /// barrier, a close, or nothing yet. Whatever the previous call lent to `batch` is
    /// committed first: the caller has handled it.
    ///
    /// With nothing to report, the reader parks; with `linger`, it may park lingering (see the
    /// module docs), which [`Batch::is_lingering`] then says.
    pub(super) fn poll_recv(
        &self,
        id: ReaderId,
        batch: &mut Batch,
        max: usize,
        linger: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Recv> {
        batch.clear();
        let mut deferred = Deferred::new(&mut batch.freed);
        let mut guard = self.lock();
        let st = &mut *guard;
        let polled = 'poll: {
            self.drain(st, &mut deferred.wake);
            let Some(Some(reader)) = st.readers.get_mut(id) else {
                st.unpin(id, deferred.freed);
                break 'poll Poll::Ready(Recv::Closed);
            };
            if reader.lent > 0 {
                reader.cursor += std::mem::take(&mut reader.lent);
                st.update_min_lossless_cursor();
                st.trim(deferred.freed);
                st.release_push_waiters(self.capacity, &mut deferred.wake);
            }
            let tail = st.tail();
            let head = st.head;
            let live_readers = st.live_readers;
            let Some(Some(reader)) = st.readers.get_mut(id) else {
                break 'poll Poll::Ready(Recv::Closed);
            };
            let next_barrier = st
                .barriers
                .iter()
                .find(|b| b.id > reader.acked_barrier)
                .map(|b| (b.id, b.seq));
            // Records refused at the hard cap since it last heard: missed, like a lossy skip.
            let mut dropped = st.overflowed - reader.overflow_seen;
            reader.overflow_seen = st.overflowed;
            if let Mode::Lossy { capacity } = reader.mode {
                let oldest_kept = tail.saturating_sub(capacity as u64);
                if reader.cursor < oldest_kept {
                    dropped += oldest_kept - reader.cursor;
                    reader.cursor = oldest_kept;
                }
            }
            let limit = next_barrier.map_or(tail, |(_, seq)| seq.min(tail));
            if reader.cursor < limit {
                let from = (reader.cursor - head) as usize;
                let n = ((limit - reader.cursor) as usize).min(max);
                let lossless = reader.mode == Mode::Lossless;
                if from == 0 && live_readers == 1 {
                    // The only reader, at the head: take the records out; all of them (the
                    // common case for a reader keeping up) by swapping buffers with the queue.
                    reader.cursor += n as u64;
                    if n == st.queue.len() {
                        std::mem::swap(&mut st.queue, &mut batch.taken);
                    } else {
                        batch.taken.extend(st.queue.drain(..n));
                    }
                    st.head += n as u64;
                    if lossless {
                        st.min_lossless_cursor = st.head;
                        st.release_push_waiters(self.capacity, &mut deferred.wake);
                    }
                } else if lossless {
                    // Lent: committed (and the cursor moved) at the next call.
                    reader.lent = n as u64;
                    batch
                        .records
                        .extend(st.queue.range(from..from + n).map(RecordRef::lend));
                } else {
                    reader.cursor += n as u64;
                    batch.taken.extend(st.queue.range(from..from + n).cloned());
                }
                break 'poll Poll::Ready(Recv::Records { dropped });
            }
            if dropped > 0 {
                break 'poll Poll::Ready(Recv::Records { dropped });
            }
            // A barrier placed at the claimed tail is reached once the pushes before it are
            // published and handled.
            if let Some((barrier, seq)) = next_barrier
                && reader.cursor >= seq
            {
                break 'poll Poll::Ready(Recv::Barrier(barrier));
            }
            // Closed, with every push that got in drained and handed out.
            if st.closed
                && !st
                    .inbox_head
                    .as_ref()
                    .is_some_and(|h| self.inbox.has_claims(h))
            {
                break 'poll Poll::Ready(Recv::Closed);
            }
            let linger = linger && next_barrier.is_none();
            let wake_at = if linger {
                tail + self.linger_records - 1
            } else {
                tail
            };
            reader.wake_at = wake_at;
            if reader.waker.replace(cx.waker().clone()).is_none() {
                st.parked += 1;
            }
            // The bound stays tight when this is the only parked reader.
            st.min_wake_at = if st.parked == 1 {
                wake_at
            } else {
                st.min_wake_at.min(wake_at)
            };
            // The parking handshake (see the inbox): an emitter that claimed a position before
            // this may not see the reader parked, so do not sleep while a claim this park
            // waits for is pending: it is a few instructions from published, so poll again
            // (the task yields meanwhile).
            self.inbox.set_wake_at(st.min_wake_at);
            if self.inbox.claimed() > wake_at {
                yield_for_models();
                cx.waker().wake_by_ref();
            }
            batch.lingering = linger;
            Poll::Pending
        };
        self.publish(st);
        drop(guard);
        // The records this batch owns are listed once the lock is released.
        batch
            .records
            .extend(batch.taken.iter().map(RecordRef::lend));
        polled
    }

    /// How many records wake a lingering reader.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn linger_records(&self) -> u64 {
        self.linger_records
    }

    /// Acknowledges barrier `id` for reader `reader`.
    pub(super) fn ack(&self, reader: ReaderId, id: u64) {
        let mut st = self.lock();
        if let Some(mut r) = st.readers.get_mut(reader).and_then(Option::take) {
            st.ack_barriers_up_to(reader, &mut r, id);
            st.readers[reader] = Some(r);
        }
    }

    /// Places a flush barrier after every record pushed so far (at the inbox's claimed tail:
    /// pushes still in progress are before it too). The receiver resolves once every reader
    /// present now has handled everything before it and flushed (or has been removed).
    ///
    /// A `nested` barrier (a flush called from inside a handler) does not wait for readers
    /// whose handlers are themselves waiting in such a flush ([`set_flushing`](Self::set_flushing)):
    /// two handlers flushing each other's channels would otherwise wait for each other forever.
    pub(crate) fn barrier(&self, nested: bool) -> Option<oneshot::Receiver<()>> {
        let mut wake = Wakers::default();
        let rx = {
            let mut st = self.lock();
            let waiting: Vec<ReaderId> = st
                .readers
                .iter()
                .enumerate()
                .filter_map(|(id, r)| r.as_ref().map(|r| (id, r)))
                .filter(|(_, r)| !(nested && r.flushing))
                .map(|(id, _)| id)
                .collect();
            if waiting.is_empty() {
                return None;
            }
            self.drain(&mut st, &mut wake);
            let (tx, rx) = oneshot::channel();
            let id = st.next_barrier;
            st.next_barrier += 1;
            let seq = self.inbox.claimed();
            st.barriers.push_back(Barrier {
                id,
                seq,
                waiting,
                nested,
                done: Some(tx),
            });
            st.take_reader_wakers(&mut wake);
            self.publish(&st);
            rx
        };
        wake.wake_all();
        Some(rx)
    }

    /// Marks whether reader `id`'s handler is waiting in a flush called from inside it. While
    /// it is, nested barriers (see [`barrier`](Self::barrier)) do not wait for it, including
    /// those already placed.
    pub(crate) fn set_flushing(&self, id: ReaderId, flushing: bool) {
        let mut st = self.lock();
        let Some(Some(reader)) = st.readers.get_mut(id) else {
            return;
        };
        reader.flushing = flushing;
        if flushing {
            st.release_barriers(id, |b| b.nested);
        }
    }

    /// [`close`](Self::close), telling readers that whoever closes waits for them until
    /// `deadline` (a shutdown's); the first deadline set stays.
    pub(crate) fn close_by(&self, deadline: std::time::Instant) {
        let _ = self.close_deadline.set(deadline);
        self.close();
    }

    /// The deadline given to [`close_by`](Self::close_by), if any.
    pub(crate) fn close_deadline(&self) -> Option<std::time::Instant> {
        self.close_deadline.get().copied()
    }

    /// Closes the channel: pushes fail from now on; readers drain, then see `Closed`.
    pub(crate) fn close(&self) {
        let (readers, pushers) = {
            let mut st = self.lock();
            st.closed = true;
            let mut readers = Wakers::default();
            // Every push either got in before this (readers see `Closed` only once it is
            // drained) or is refused.
            self.inbox.close();
            self.drain(&mut st, &mut readers);
            st.take_reader_wakers(&mut readers);
            self.publish(&st);
            (readers, std::mem::take(&mut st.push_waiters))
        };
        readers.wake_all();
        wake_each(pushers);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{Batch, Channel, Mode, Recv};
    use crate::record::numbered::rec;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Reader {
        id: usize,
        wakes: Arc<Count>,
        batch: Batch,
    }

    impl Reader {
        fn new(ch: &Channel) -> Self {
            Reader {
                id: ch.add_reader(Mode::Lossless).expect("open"),
                wakes: Arc::default(),
                batch: Batch::with_capacity(64),
            }
        }

        fn poll(&mut self, ch: &Channel, linger: bool) -> Poll<Recv> {
            let waker = Waker::from(Arc::clone(&self.wakes));
            let polled = ch.poll_recv(
                self.id,
                &mut self.batch,
                64,
                linger,
                &mut Context::from_waker(&waker),
            );
            // Handle the batch now: its records are lent until the next poll.
            while self.batch.next().is_some() {}
            polled
        }

        fn wakes(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_lingering_reader_is_woken_by_the_push_that_completes_its_batch_and_not_before() {
        let ch = Channel::new(16, 16);
        let batch = ch.linger_records();
        assert_eq!(batch, 4, "a quarter of a 16-slot inbox");
        let mut r = Reader::new(&ch);
        assert!(r.poll(&ch, true).is_pending());
        assert!(r.batch.is_lingering());
        for n in 0..batch - 1 {
            assert!(ch.push_now(rec(n)).is_ok());
        }
        assert_eq!(r.wakes(), 0, "fewer records than a batch wake nobody");
        assert!(ch.push_now(rec(batch)).is_ok());
        assert_eq!(r.wakes(), 1);
        assert_eq!(r.poll(&ch, true), Poll::Ready(Recv::Records { dropped: 0 }));
    }

    #[test]
    fn a_reader_that_does_not_linger_is_woken_by_the_next_push() {
        let ch = Channel::new(16, 16);
        let mut r = Reader::new(&ch);
        assert!(r.poll(&ch, false).is_pending());
        assert!(!r.batch.is_lingering());
        assert!(ch.push_now(rec(0)).is_ok());
        assert_eq!(r.wakes(), 1);
    }

    #[test]
    fn a_flush_wakes_a_lingering_reader_at_once_and_it_takes_everything_before_the_barrier() {
        let ch = Channel::new(16, 16);
        let mut r = Reader::new(&ch);
        assert!(r.poll(&ch, true).is_pending());
        assert!(ch.push_now(rec(0)).is_ok());
        assert_eq!(r.wakes(), 0);
        let _flushed = ch.barrier(false).expect("a reader is attached");
        assert_eq!(r.wakes(), 1);
        assert_eq!(r.poll(&ch, true), Poll::Ready(Recv::Records { dropped: 0 }));
        assert!(matches!(r.poll(&ch, true), Poll::Ready(Recv::Barrier(_))));
    }

    #[test]
    fn a_push_wakes_only_the_readers_it_is_due_to_wake() {
        let ch = Channel::new(16, 16);
        let mut lingering = Reader::new(&ch);
        let mut eager = Reader::new(&ch);
        assert!(lingering.poll(&ch, true).is_pending());
        assert!(eager.poll(&ch, false).is_pending());
        assert!(ch.push_now(rec(0)).is_ok());
        assert_eq!((lingering.wakes(), eager.wakes()), (0, 1));
        // The eager reader's poll drains the inbox under the lock: still not the lingerer's
        // batch, so it stays asleep.
        assert_eq!(
            eager.poll(&ch, false),
            Poll::Ready(Recv::Records { dropped: 0 })
        );
        assert_eq!(lingering.wakes(), 0);
        for n in 1..ch.linger_records() {
            assert!(ch.push_now(rec(n)).is_ok());
        }
        assert_eq!(lingering.wakes(), 1);
    }
}
