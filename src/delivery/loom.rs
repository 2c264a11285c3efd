//! Model checks of the broadcast channel's protocol with loom: every interleaving (up to a
//! preemption bound) of a few threads driving the channel directly, the way emitters, handler
//! tasks, `flush` and `shutdown` drive it.
//!
//! Run with `.ci/loom.sh` (`RUSTFLAGS="--cfg loom" cargo test --release --lib delivery::loom`).
//! Waiting is done with `loom::future::block_on`, whose waker loom understands: a lost wake-up
//! shows up as a deadlock that fails the model.

use std::future::poll_fn;
use std::task::Poll;

use crate::record::Record;
use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use loom::thread;
use model::{Channel, Push, Rec, Recv, record};
use serde::Serialize;

/// The channel as the models drive it: batches come back as owned records, so that a model
/// may keep them past the next receive.
mod model {
    use std::task::{Context, Poll, Waker};

    use tokio::sync::oneshot;

    use crate::delivery::batch::Batch;
    use crate::delivery::{Mode, channel};
    use crate::event::Event;
    use crate::record::{Record, RecordRef};

    /// What a reader gets from [`Channel::poll_recv`] (mirrors the internal type).
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Recv {
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
    pub(super) enum Push {
        /// Appended.
        Done,
        /// A lossless reader is a full capacity behind; the waker was registered.
        Full,
        /// The channel is closed.
        Closed,
    }

    /// The broadcast channel.
    pub(super) struct Channel(channel::Channel);

    /// A counted reference to a record (the crate's internal `RecordRef`).
    #[derive(Clone, Debug)]
    pub(super) struct Rec(RecordRef);

    impl std::ops::Deref for Rec {
        type Target = Record;

        fn deref(&self) -> &Record {
            &self.0
        }
    }

    /// An event record carrying `event`, attributed to no span.
    pub(super) fn record<E: Event>(event: E) -> Rec {
        Rec(Record::event_record(None, None, &"loom", event))
    }

    impl Channel {
        /// A channel with room for `capacity` records.
        pub(super) fn new(capacity: usize) -> Self {
            Channel(channel::Channel::new(capacity, capacity))
        }

        /// A channel whose pushes that cannot wait may exceed `capacity` by `overflow`.
        pub(super) fn with_overflow(capacity: usize, overflow: usize) -> Self {
            Channel(channel::Channel::new(capacity, overflow))
        }

        /// Whether a push that waits would find room now; if not, `waker` is woken when it
        /// may (what a spanned future does before entering and ending its span).
        pub(super) fn poll_room(&self, waker: &Waker) -> bool {
            self.0.poll_room(waker)
        }

        /// Counts a record refused at the hard cap and dropped.
        pub(super) fn overflowed(&self) {
            self.0.overflowed();
        }

        /// Abandons reader `id` (its task was dropped), which handled `handled` records of its
        /// last batch.
        pub(super) fn abandon_reader(&self, id: usize, handled: u64, taken_unhandled: u64) {
            self.0.abandon_reader(id, handled, taken_unhandled);
        }

        /// What an abandoned reader lost.
        pub(super) fn lost(&self, id: usize) -> u64 {
            self.0.lost(id)
        }

        /// Adds a lossless reader (`lossy: None`) or a lossy one with that capacity.
        pub(super) fn add_reader(&self, lossy: Option<usize>) -> Option<usize> {
            self.0.add_reader(match lossy {
                None => Mode::Lossless,
                Some(capacity) => Mode::Lossy { capacity },
            })
        }

        /// Removes a reader.
        pub(super) fn remove_reader(&self, id: usize) {
            self.0.remove_reader(id);
        }

        /// Appends without waiting (up to the hard cap); `false` when closed or at the cap.
        pub(super) fn push_now(&self, record: Rec) -> bool {
            self.0.push_now(record.0).is_ok()
        }

        /// Appends if every lossless reader has room.
        pub(super) fn push(&self, record: &Rec, waker: Option<&Waker>) -> Push {
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
        pub(super) fn poll_recv(
            &self,
            id: usize,
            batch: &mut Vec<Rec>,
            max: usize,
            linger: bool,
            cx: &mut Context<'_>,
        ) -> Poll<Recv> {
            let mut lent = Batch::with_capacity(max);
            let polled = self.0.poll_recv(id, &mut lent, max, linger, cx);
            batch.extend(lent.into_owned().into_iter().map(Rec));
            polled.map(|r| match r {
                channel::Recv::Records { dropped } => Recv::Records { dropped },
                channel::Recv::Barrier(id) => Recv::Barrier(id),
                channel::Recv::Closed => Recv::Closed,
            })
        }

        /// Acknowledges barrier `barrier` for reader `id`.
        pub(super) fn ack(&self, id: usize, barrier: u64) {
            self.0.ack(id, barrier);
        }

        /// Places a flush barrier at the tail.
        pub(super) fn barrier(&self) -> Option<oneshot::Receiver<()>> {
            self.0.barrier(false)
        }

        /// Closes the channel.
        pub(super) fn close(&self) {
            self.0.close();
        }
    }
}

#[derive(Serialize)]
struct Seq(u64);

impl crate::event::Event for Seq {
    const NAME: &'static str = "Seq";
}

fn seq(r: &Record) -> u64 {
    r.event::<Seq>().expect("a Seq record").0
}

/// Runs `f` under loom with a preemption bound that keeps each model to minutes.
///
/// Two preemptions: since pushes became lock-free (a claim, a write and a publication, each a
/// step for loom to interleave, instead of one lock), three took over ten minutes per model.
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(2, f);
}

fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

/// A handler task's receive: waits until the channel has something for `reader`.
fn recv(ch: &Channel, reader: usize, batch: &mut Vec<Rec>) -> Recv {
    block_on(poll_fn(|cx| ch.poll_recv(reader, batch, 16, false, cx)))
}

/// A lingering handler task's receive (its timer aside: the model has none).
fn recv_lingering(ch: &Channel, reader: usize, batch: &mut Vec<Rec>) -> Recv {
    block_on(poll_fn(|cx| ch.poll_recv(reader, batch, 16, true, cx)))
}

/// Receives from a lossless reader until `done(&seqs)` holds: every batch comes without drops,
/// and no barrier or close is expected meanwhile. Returns the sequence numbers seen, in order.
fn recv_lossless_until(ch: &Channel, reader: usize, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let mut batch = Vec::new();
    let mut seen = Vec::new();
    while !done(&seen) {
        match recv(ch, reader, &mut batch) {
            Recv::Records { dropped } => {
                assert_eq!(dropped, 0);
                seen.extend(batch.drain(..).map(|r| seq(&r)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

/// An `.await`ed emit: waits for room in lossless readers.
fn push_wait(ch: &Channel, r: &Rec) -> Push {
    block_on(poll_fn(|cx| match ch.push(r, Some(cx.waker())) {
        Push::Full => Poll::Pending,
        done_or_closed => Poll::Ready(done_or_closed),
    }))
}

/// `flush` racing an emit: a barrier placed after a push has completed resolves only once the
/// reader has handled that record, and the barrier always resolves.
///
/// The counters are loom mutexes, not atomics: the barrier resolves through a tokio oneshot,
/// which loom does not see, so a loom atomic read after it could legally be stale.
#[test]
fn a_flush_racing_a_push_waits_for_everything_pushed_before_it() {
    // Three threads and two counters: a bound of 2 keeps this one to seconds.
    model_bounded(2, || {
        let ch = Arc::new(Channel::new(1));
        let reader = ch.add_reader(None).unwrap();
        let pushed = Arc::new(Mutex::new(0));
        let handled = Arc::new(Mutex::new(0));

        let pusher = {
            let (ch, pushed) = (ch.clone(), pushed.clone());
            thread::spawn(move || {
                assert!(ch.push_now(record(Seq(0))));
                *pushed.lock().unwrap() += 1;
                // The queue may be full now: this push waits for the reader.
                assert_eq!(push_wait(&ch, &record(Seq(1))), Push::Done);
                *pushed.lock().unwrap() += 1;
            })
        };
        let flusher = {
            let (ch, pushed, handled) = (ch.clone(), pushed.clone(), handled.clone());
            thread::spawn(move || {
                let before = *pushed.lock().unwrap();
                let barrier = ch.barrier().expect("a reader is attached");
                block_on(barrier).expect("the barrier resolves");
                let handled = *handled.lock().unwrap();
                assert!(
                    handled >= before,
                    "flush returned after {handled} records handled, {before} pushed before it"
                );
            })
        };

        let mut batch = Vec::new();
        let (mut seen, mut acked) = (Vec::new(), false);
        while seen.len() < 2 || !acked {
            match recv(&ch, reader, &mut batch) {
                Recv::Records { dropped } => {
                    assert_eq!(dropped, 0);
                    seen.extend(batch.drain(..).map(|r| seq(&r)));
                    *handled.lock().unwrap() = seen.len();
                }
                Recv::Barrier(id) => {
                    ch.ack(reader, id);
                    acked = true;
                }
                Recv::Closed => panic!("nobody closed the channel"),
            }
        }
        pusher.join().unwrap();
        flusher.join().unwrap();
        assert_eq!(seen, [0, 1], "in order, each once");
    });
}

/// `shutdown` racing an emit and a reader: every push that succeeded is delivered, each once,
/// in order; a push blocked on a full queue is released by the close; the reader ends.
#[test]
fn a_close_racing_a_push_and_a_reader_loses_no_accepted_record() {
    model(|| {
        let ch = Arc::new(Channel::new(1));
        let reader = ch.add_reader(None).unwrap();

        let pusher = {
            let ch = ch.clone();
            thread::spawn(move || {
                let first = ch.push_now(record(Seq(0)));
                // Full after the first push until the reader takes it or the channel closes.
                let second = push_wait(&ch, &record(Seq(1)));
                assert!(first || second == Push::Closed, "closed is closed");
                usize::from(first) + usize::from(second == Push::Done)
            })
        };
        let closer = {
            let ch = ch.clone();
            thread::spawn(move || ch.close())
        };

        let mut batch = Vec::new();
        let mut seen = Vec::new();
        loop {
            match recv(&ch, reader, &mut batch) {
                Recv::Records { dropped } => {
                    assert_eq!(dropped, 0);
                    seen.extend(batch.drain(..).map(|r| seq(&r)));
                }
                Recv::Barrier(_) => panic!("nobody flushed"),
                Recv::Closed => break,
            }
        }
        let accepted = pusher.join().unwrap();
        closer.join().unwrap();
        assert_eq!(
            seen.len(),
            accepted,
            "accepted {accepted}, delivered {seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order: {seen:?}");
        assert!(!ch.push_now(record(Seq(9))), "pushes fail after close");
    });
}

/// A reader that goes away (its handler task aborted at a shutdown deadline) racing an emitter
/// blocked on it and a flush waiting for it: both are released.
#[test]
fn a_reader_going_away_releases_a_blocked_push_and_a_pending_flush() {
    model(|| {
        let ch = Arc::new(Channel::new(1));
        let reader = ch.add_reader(None).unwrap();
        assert!(ch.push_now(record(Seq(0)))); // full: the next awaited push waits

        let pusher = {
            let ch = ch.clone();
            thread::spawn(move || assert_eq!(push_wait(&ch, &record(Seq(1))), Push::Done))
        };
        let flusher = {
            let ch = ch.clone();
            thread::spawn(move || {
                if let Some(barrier) = ch.barrier() {
                    block_on(barrier).expect("the barrier resolves");
                }
            })
        };
        ch.remove_reader(reader);
        pusher.join().unwrap();
        flusher.join().unwrap();
    });
}

/// Lossy drop counting under contention: two emitters race a lossy reader that keeps at most
/// one record; whatever the interleaving, `delivered + dropped == pushed`, and each emitter's
/// records arrive in its order.
#[test]
fn lossy_drops_are_counted_exactly_under_contention() {
    // Four threads pushing into a two-slot inbox, so pushes find it full and retry under the
    // lock: with two preemptions this model ran for over ten minutes; one keeps it to seconds.
    model_bounded(1, || {
        let ch = Arc::new(Channel::new(2));
        let reader = ch.add_reader(Some(1)).unwrap();
        let pushers: Vec<_> = [0u64, 10]
            .into_iter()
            .map(|base| {
                let ch = ch.clone();
                thread::spawn(move || {
                    assert!(ch.push_now(record(Seq(base))));
                    // An awaited emit never waits for a lossy reader.
                    assert_eq!(ch.push(&record(Seq(base + 1)), None), Push::Done);
                })
            })
            .collect();
        let consumer = {
            let ch = ch.clone();
            thread::spawn(move || {
                let mut batch = Vec::new();
                let (mut seen, mut dropped_total) = (Vec::new(), 0);
                loop {
                    match recv(&ch, reader, &mut batch) {
                        Recv::Records { dropped } => {
                            dropped_total += dropped;
                            seen.extend(batch.drain(..).map(|r| seq(&r)));
                        }
                        Recv::Barrier(_) => panic!("nobody flushed"),
                        Recv::Closed => return (seen, dropped_total),
                    }
                }
            })
        };
        for p in pushers {
            p.join().unwrap();
        }
        ch.close();
        let (seen, dropped) = consumer.join().unwrap();
        assert_eq!(
            seen.len() as u64 + dropped,
            4,
            "seen {seen:?}, dropped {dropped}"
        );
        for base in [0, 10] {
            let mine: Vec<_> = seen.iter().filter(|&&s| s / 10 == base / 10).collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "order: {seen:?}");
        }
    });
}

/// A sync emit (`push_now`, as from `Drop`) racing an awaited emit on a full lossless channel:
/// the sync one returns at once, the awaited one completes once there is room, and the reader
/// gets all three records, each once.
#[test]
fn a_sync_push_on_a_full_lossless_channel_neither_blocks_nor_loses() {
    model(|| {
        // Room past the bound for the sync push whatever the order: below the hard cap.
        let ch = Arc::new(Channel::with_overflow(1, 2));
        let reader = ch.add_reader(None).unwrap();
        assert!(ch.push_now(record(Seq(0)))); // the channel is full
        let sync_done = Arc::new(AtomicBool::new(false));

        let awaited = {
            let ch = ch.clone();
            thread::spawn(move || assert_eq!(push_wait(&ch, &record(Seq(1))), Push::Done))
        };
        let sync = {
            let (ch, sync_done) = (ch.clone(), sync_done.clone());
            thread::spawn(move || {
                assert!(
                    ch.push_now(record(Seq(2))),
                    "below the hard cap, never refused"
                );
                sync_done.store(true, SeqCst);
            })
        };

        let mut seen = recv_lossless_until(&ch, reader, |seen| seen.len() >= 3);
        awaited.join().unwrap();
        sync.join().unwrap();
        assert!(sync_done.load(SeqCst));
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    });
}

/// A reader that parks lingering is woken by the push that completes its batch, whichever
/// thread publishes it and however the parking handshake interleaves with the claims (a lost
/// wake-up is a deadlock, which fails the model). An inbox of 8 slots makes a batch of 2.
#[test]
fn a_lingering_reader_is_woken_by_the_push_that_completes_its_batch() {
    model(|| {
        let ch = Arc::new(Channel::new(8));
        let reader = ch.add_reader(None).unwrap();
        let pushers: Vec<_> = (0..2)
            .map(|n| {
                let ch = ch.clone();
                thread::spawn(move || assert!(ch.push_now(record(Seq(n)))))
            })
            .collect();
        let mut batch = Vec::new();
        let mut seen = Vec::new();
        // Lingers only while the whole batch is still to come: fewer records never wake it
        // (the handler's timer does, which the model leaves out).
        while seen.len() < 2 {
            let got = if seen.is_empty() {
                recv_lingering(&ch, reader, &mut batch)
            } else {
                recv(&ch, reader, &mut batch)
            };
            match got {
                Recv::Records { dropped } => {
                    assert_eq!(dropped, 0);
                    seen.extend(batch.drain(..).map(|r| seq(&r)));
                }
                other => panic!("only records were sent, got {other:?}"),
            }
        }
        for p in pushers {
            p.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1]);
    });
}

/// Backpressure in a spanned future: it waits for room (`poll_room`) before pushing its span's
/// record, and is woken once the reader frees it, whatever the interleaving (a lost wake-up is
/// a deadlock, which fails the model); its push then fits below the bound.
#[test]
fn a_spanned_future_waiting_for_room_is_woken_when_the_reader_frees_it() {
    model(|| {
        let ch = Arc::new(Channel::new(1));
        let reader = ch.add_reader(None).unwrap();
        assert!(ch.push_now(record(Seq(0)))); // full
        let waiter = {
            let ch = ch.clone();
            thread::spawn(move || {
                block_on(poll_fn(|cx| match ch.poll_room(cx.waker()) {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                }));
                assert_eq!(ch.push(&record(Seq(1)), None), Push::Done, "room was made");
            })
        };
        let seen = recv_lossless_until(&ch, reader, |seen| seen.len() >= 2);
        waiter.join().unwrap();
        assert_eq!(seen, [0, 1]);
    });
}

/// Sync pushes racing a reader on a channel with a hard cap of 2 (capacity 1, overflow 1):
/// each record either gets in or is refused and counted, and the reader is told in-band of
/// exactly the refused ones (at the latest when the channel closes), so
/// `handled + missed == pushed`.
#[test]
fn sync_pushes_at_the_hard_cap_are_counted_exactly_and_told_in_band() {
    model(|| {
        let ch = Arc::new(Channel::with_overflow(1, 1));
        let reader = ch.add_reader(None).unwrap();
        let pusher = {
            let ch = ch.clone();
            thread::spawn(move || {
                for n in 0..4 {
                    if !ch.push_now(record(Seq(n))) {
                        ch.overflowed();
                    }
                }
                ch.close();
            })
        };
        let mut batch = Vec::new();
        let (mut handled, mut missed) = (0, 0);
        loop {
            match recv(&ch, reader, &mut batch) {
                Recv::Records { dropped } => {
                    missed += dropped;
                    handled += batch.drain(..).count() as u64;
                }
                Recv::Closed => break,
                Recv::Barrier(_) => panic!("nobody flushed"),
            }
        }
        pusher.join().unwrap();
        assert_eq!(handled + missed, 4, "handled + missed == pushed");
    });
}

/// A reader whose task is dropped (its runtime went away) after handling a batch: it holds no
/// awaited push back, and everything it did not handle is counted as lost, exactly.
#[test]
fn an_abandoned_reader_holds_nobody_back_and_counts_what_it_never_handled() {
    model(|| {
        let ch = Arc::new(Channel::new(1));
        let gone = ch.add_reader(None).unwrap();
        let pusher = {
            let ch = ch.clone();
            thread::spawn(move || {
                for n in 0..3 {
                    assert_eq!(push_wait(&ch, &record(Seq(n))), Push::Done);
                }
            })
        };
        let mut batch = Vec::new();
        let handled = match recv(&ch, gone, &mut batch) {
            Recv::Records { .. } => batch.drain(..).count() as u64,
            other => panic!("unexpected {other:?}"),
        };
        ch.abandon_reader(gone, handled, 0);
        pusher.join().unwrap();
        assert_eq!(handled + ch.lost(gone), 3);
    });
}

/// An awaited push cancelled while it waits for room (its future dropped after one poll)
/// pushes nothing, and the waker it left behind does not stop a later push from waiting and
/// completing.
#[test]
fn an_awaited_push_cancelled_while_waiting_pushes_nothing() {
    model(|| {
        let ch = Arc::new(Channel::new(1));
        let reader = ch.add_reader(None).unwrap();
        assert!(ch.push_now(record(Seq(0)))); // full
        let pusher = {
            let ch = ch.clone();
            thread::spawn(move || {
                // One poll, then dropped: what `now_or_never` or a lost `select!` does.
                let first = ch.push(&record(Seq(1)), Some(futures::task::noop_waker_ref()));
                assert_eq!(push_wait(&ch, &record(Seq(2))), Push::Done);
                first == Push::Done
            })
        };
        // Records 0 and 2 always arrive; 1, the cancelled push's, only if its one poll got it in.
        let seen = recv_lossless_until(&ch, reader, |seen| {
            seen.len() >= if seen.contains(&1) { 3 } else { 2 }
        });
        let first_got_in = pusher.join().unwrap();
        assert_eq!(
            seen.contains(&1),
            first_got_in,
            "in only if its push said so"
        );
        assert_eq!(seen.last(), Some(&2));
    });
}
