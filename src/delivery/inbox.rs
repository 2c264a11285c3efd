//! The lock-free front of a channel: where emitters put records without taking its lock.
//!
//! # Semantics
//!
//! An inbox is a bounded ring of slots (D. Vyukov's bounded queue, used here with many
//! producers and one consumer at a time). Every record a channel receives goes through it:
//!
//! - An emitter **claims** the next position with one compare-and-swap on `tail`, writes the
//!   record into that position's slot and **publishes** it by advancing the slot's sequence.
//! - The channel **drains** published records into its locked queue, in position order, under
//!   its lock (so there is one consumer at a time), up to the first position claimed but not
//!   yet published. A record's position is its sequence number in the channel. Nothing waits
//!   for a push in progress: a flush places its barrier at the claimed tail, and a reader
//!   reaches it once those pushes are published (each wakes a parked reader when it is).
//! - A push that must respect the lossless bound (an `.await`ed emit) claims a position only
//!   below `limit`, which the channel keeps at the slowest lossless reader's cursor plus the
//!   capacity ([`Bound::Soft`]); a push that cannot wait claims one only below `hard_limit`,
//!   the same plus the channel's overflow allowance ([`Bound::Hard`]). A push is refused with [`Refused::Full`] at the bound, [`Refused::RingFull`] when
//!   the ring has no free slot (the channel then drains and retries under its lock), and
//!   [`Refused::Closed`] once [`close`](Inbox::close) set the `CLOSED` bit of `tail`: a push
//!   linearizes at its compare-and-swap, so it either got in before the close (and readers
//!   see `Closed` only once it is drained) or is refused.
//! - **Parking.** A reader about to sleep publishes `wake_at`, the first position whose push
//!   must wake it (the next position, or a batch later for a reader that lingers), and then
//!   looks at `tail`; an emitter sets `tail` and then looks at `wake_at` (all sequentially
//!   consistent). One of the two sees the other: either the emitter of a position at or past
//!   `wake_at` wakes the reader, or the reader sees that claim and does not sleep.

use std::mem::MaybeUninit;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::sync::{AtomicU64, UnsafeCell, handshake_fence};
use crate::record::RecordRef;

/// Set in `tail` once the inbox is closed.
const CLOSED: u64 = 1 << 63;
/// `limit` when no lossless reader bounds the channel.
pub(crate) const UNBOUNDED: u64 = CLOSED - 1;
/// `wake_at` when no reader is parked.
pub(crate) const NOBODY: u64 = u64::MAX;

/// Why a push did not get in; the record is handed back with it.
/// Which limit a push respects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// The lossless bound: pushes that can wait for room.
    Soft,
    /// The bound plus the overflow allowance: pushes that cannot wait.
    Hard,
    /// No limit: the bound was checked under the channel's lock.
    Checked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The slowest lossless reader is a full capacity behind.
    Full,
    /// Every slot holds a record not yet drained.
    RingFull,
    /// The inbox is closed.
    Closed,
}

struct Slot {
    /// `position` when free for the push at `position`; `position + 1` once that push
    /// published its record; `position + size` once drained (free for the next lap).
    seq: AtomicU64,
    record: UnsafeCell<MaybeUninit<RecordRef>>,
}

pub(crate) struct Inbox {
    slots: Box<[Slot]>,
    mask: u64,
    /// Positions claimed so far, with `CLOSED` once closed.
    tail: Padded<AtomicU64>,
    /// Async pushes claim positions only below this (see the module docs).
    limit: AtomicU64,
    /// Pushes that cannot wait claim positions only below this.
    hard_limit: AtomicU64,
    /// The first position whose push must wake a parked reader, or `NOBODY` (see the module
    /// docs).
    wake_at: AtomicU64,
    /// Which inbox this is, so that only its own [`Head`] drains it.
    id: u64,
}

/// The consumer side of an [`Inbox`]: the next position to drain.
///
/// Exactly one is made with each inbox, and draining takes it mutably: so two drains of one
/// inbox cannot run at once (they would read, and later free, the same records). The channel
/// keeps it in its locked state.
#[derive(Debug)]
pub(crate) struct Head {
    next: u64,
    inbox: u64,
}

/// Keeps the contended `tail` on a cache line of its own.
#[repr(align(128))]
struct Padded<T>(T);

impl Inbox {
    /// An inbox of `size` slots (rounded up to a power of two, at least 2), with its [`Head`].
    pub(crate) fn new(size: usize) -> (Self, Head) {
        static INBOXES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = INBOXES.fetch_add(1, Relaxed);
        let size = size.clamp(2, 1 << 20).next_power_of_two();
        let inbox = Inbox {
            slots: (0..size as u64)
                .map(|i| Slot {
                    seq: AtomicU64::new(i),
                    record: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            mask: size as u64 - 1,
            tail: Padded(AtomicU64::new(0)),
            limit: AtomicU64::new(UNBOUNDED),
            hard_limit: AtomicU64::new(UNBOUNDED),
            wake_at: AtomicU64::new(NOBODY),
            id,
        };
        (inbox, Head { next: 0, inbox: id })
    }

    /// Puts `record` at the next position, below the limit of `bound`; returns the position.
    #[inline]
    pub(crate) fn push(
        &self,
        record: RecordRef,
        bound: Bound,
    ) -> Result<u64, (Refused, RecordRef)> {
        let mut pos = self.tail.0.load(Relaxed);
        loop {
            if pos & CLOSED != 0 {
                return Err((Refused::Closed, record));
            }
            if pos >= self.limit_of(bound) {
                return Err((Refused::Full, record));
            }
            let slot = &self.slots[(pos & self.mask) as usize];
            let seq = slot.seq.load(Acquire);
            if seq == pos {
                match self
                    .tail
                    .0
                    .compare_exchange_weak(pos, pos + 1, SeqCst, Relaxed)
                {
                    Ok(_) => {
                        // SAFETY: the compare-and-swap made this push the only one at `pos`,
                        // and `seq == pos` says the slot's previous record was drained: nothing
                        // else reads or writes the slot until `seq` is advanced below.
                        slot.record
                            .with_mut(|cell| unsafe { (*cell).write(record) });
                        slot.seq.store(pos + 1, Release);
                        return Ok(pos);
                    }
                    Err(now) => pos = now,
                }
            } else if seq < pos {
                // The slot still holds the record of the previous lap.
                return Err((Refused::RingFull, record));
            } else {
                // Another push claimed `pos` meanwhile.
                pos = self.tail.0.load(Relaxed);
            }
        }
    }

    /// Whether the push that claimed `pos` must wake a parked reader.
    #[inline]
    pub(crate) fn wake_due(&self, pos: u64) -> bool {
        handshake_fence();
        pos >= self.wake_at.load(SeqCst)
    }

    /// Publishes the first position whose push must wake a parked reader (`NOBODY`: none).
    /// Setting it is half of the parking handshake: the caller then checks
    /// [`claimed`](Self::claimed) before sleeping.
    pub(crate) fn set_wake_at(&self, pos: u64) {
        if self.wake_at.load(Relaxed) != pos {
            self.wake_at.store(pos, SeqCst);
        }
    }

    /// Whether some position was claimed but not drained yet.
    pub(crate) fn has_claims(&self, head: &Head) -> bool {
        handshake_fence();
        self.tail.0.load(SeqCst) & !CLOSED > head.next
    }

    /// Sets the bounds for pushes that wait and for those that cannot (see the module docs).
    pub(crate) fn set_limits(&self, soft: u64, hard: u64) {
        self.limit.store(soft.min(UNBOUNDED), Release);
        self.hard_limit.store(hard.min(UNBOUNDED), Release);
    }

    /// Whether a push of `bound` would find room below its limit now (pushes in progress
    /// count).
    #[inline]
    pub(crate) fn has_room(&self, bound: Bound) -> bool {
        self.tail.0.load(Relaxed) & !CLOSED < self.limit_of(bound)
    }

    #[inline]
    fn limit_of(&self, bound: Bound) -> u64 {
        match bound {
            Bound::Soft => self.limit.load(Acquire),
            Bound::Hard => self.hard_limit.load(Acquire),
            Bound::Checked => UNBOUNDED,
        }
    }

    /// Refuses every push from now on; returns whether this call closed it.
    pub(crate) fn close(&self) -> bool {
        self.tail.0.fetch_or(CLOSED, SeqCst) & CLOSED == 0
    }

    /// Positions claimed so far: the sequence number the next record will get. Call under the
    /// channel's lock.
    pub(crate) fn claimed(&self) -> u64 {
        handshake_fence();
        self.tail.0.load(SeqCst) & !CLOSED
    }

    /// Moves published records, in position order, to `sink`, up to the first position that
    /// is claimed but not yet published (its push is a few instructions from done, and wakes a
    /// parked reader once it is).
    ///
    /// # Panics
    ///
    /// If `head` is another inbox's (a bug in this crate: a channel drains its own inbox).
    pub(crate) fn drain(&self, head: &mut Head, mut sink: impl FnMut(RecordRef)) {
        assert_eq!(head.inbox, self.id, "an inbox is drained with its own head");
        let mut head_pos = head.next;
        let head = &mut head.next;
        loop {
            let at = head_pos;
            let slot = &self.slots[(at & self.mask) as usize];
            if slot.seq.load(Acquire) != at + 1 {
                break;
            }
            // SAFETY: `seq == at + 1`: the push at `at` wrote the record and published it (the
            // Acquire load pairs with its Release store), and only the holder of this inbox's
            // one `Head` drains it (mutably borrowed here), so this is the only read of it;
            // advancing `seq` below hands the slot, now logically empty, to the push one lap
            // later.
            let record = slot
                .record
                .with_mut(|cell| unsafe { (*cell).assume_init_read() });
            slot.seq.store(at + self.mask + 1, Release);
            head_pos += 1;
            sink(record);
        }
        *head = head_pos;
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Records published but never drained (the channel was dropped with them). Nothing
        // pushes any more, so a slot holds a record exactly when its sequence says "published
        // at a position of this slot": `seq - 1` falls on the slot (an empty slot's `seq` is
        // its next position, which does not).
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let seq = slot.seq.load(Acquire);
            if seq.wrapping_sub(1) & self.mask == i as u64 {
                // SAFETY: published and not drained (see above), and `&mut self` excludes
                // every other access: this is the record's last read.
                drop(
                    slot.record
                        .with_mut(|cell| unsafe { (*cell).assume_init_read() }),
                );
            }
        }
    }
}

// SAFETY: an inbox owns the records in its slots (`RecordRef`, which is `Send + Sync`), and
// every access to a slot's record is ordered by the slot's sequence (module docs).
unsafe impl Send for Inbox {}
// SAFETY: as above: pushes write a slot only after claiming it, the drain reads it only after
// its publication, under the channel's lock.
unsafe impl Sync for Inbox {}

// No user code runs while a slot is being written or read, so a panic elsewhere cannot leave
// a slot half-done: an inbox observed after a caught panic is as consistent as before it (as
// with `std::sync::Mutex`, which is unwind-safe too).
impl std::panic::UnwindSafe for Inbox {}
impl std::panic::RefUnwindSafe for Inbox {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::record::numbered::{n, rec};

    #[test]
    fn records_come_out_in_push_order_across_laps_and_a_full_ring_refuses() {
        let (inbox, mut head) = Inbox::new(4);
        let mut out = Vec::new();
        for lap in 0..3 {
            for i in 0..4 {
                assert!(inbox.push(rec(lap * 4 + i), Bound::Checked).is_ok());
            }
            let (why, back) = inbox.push(rec(99), Bound::Checked).unwrap_err();
            assert_eq!((why, n(&back)), (Refused::RingFull, 99));
            inbox.drain(&mut head, |r| out.push(n(&r)));
        }
        assert_eq!(out, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_push_stops_at_its_bounds_limit_and_a_checked_one_does_not() {
        let (inbox, _head) = Inbox::new(8);
        inbox.set_limits(2, 3);
        assert!(inbox.push(rec(0), Bound::Soft).is_ok());
        assert!(inbox.push(rec(1), Bound::Soft).is_ok());
        assert_eq!(
            inbox.push(rec(2), Bound::Soft).unwrap_err().0,
            Refused::Full
        );
        assert!(!inbox.has_room(Bound::Soft));
        assert!(inbox.has_room(Bound::Hard));
        assert!(inbox.push(rec(2), Bound::Hard).is_ok());
        assert_eq!(
            inbox.push(rec(3), Bound::Hard).unwrap_err().0,
            Refused::Full
        );
        assert!(inbox.push(rec(3), Bound::Checked).is_ok());
        inbox.set_limits(UNBOUNDED, UNBOUNDED);
        assert!(inbox.push(rec(4), Bound::Soft).is_ok());
    }

    #[test]
    fn a_closed_inbox_refuses_but_keeps_what_got_in() {
        let (inbox, mut head) = Inbox::new(4);
        assert!(inbox.push(rec(7), Bound::Checked).is_ok());
        assert!(inbox.close());
        assert!(!inbox.close());
        assert_eq!(
            inbox.push(rec(8), Bound::Checked).unwrap_err().0,
            Refused::Closed
        );
        assert!(inbox.has_claims(&head));
        let mut got = Vec::new();
        inbox.drain(&mut head, |r| got.push(n(&r)));
        assert_eq!(got, [7]);
        assert!(!inbox.has_claims(&head));
    }

    #[test]
    fn a_push_is_due_to_wake_a_reader_only_at_or_past_its_wake_position() {
        let (inbox, _head) = Inbox::new(8);
        // Nobody parked: no push wakes anyone.
        assert_eq!(inbox.push(rec(0), Bound::Checked).ok(), Some(0));
        assert!(!inbox.wake_due(0));
        // A reader lingering until the third record from position 1 on.
        inbox.set_wake_at(3);
        assert_eq!(inbox.push(rec(1), Bound::Checked).ok(), Some(1));
        assert!(!inbox.wake_due(1));
        assert_eq!(inbox.push(rec(2), Bound::Checked).ok(), Some(2));
        assert!(!inbox.wake_due(2));
        assert_eq!(inbox.push(rec(3), Bound::Checked).ok(), Some(3));
        assert!(inbox.wake_due(3));
        assert_eq!(inbox.claimed(), 4);
        inbox.set_wake_at(NOBODY);
        assert!(!inbox.wake_due(u64::MAX - 1));
    }

    #[test]
    fn records_left_in_a_dropped_inbox_are_freed_once() {
        let kept = rec(5);
        let (inbox, _head) = Inbox::new(4);
        assert!(inbox.push(kept.clone(), Bound::Checked).is_ok());
        drop(inbox);
        // The inbox's reference is gone; ours is the last (ASan would flag a double free).
        assert_eq!(n(&kept), 5);
    }

    #[test]
    fn concurrent_pushers_lose_nothing_and_keep_each_ones_order() {
        let (inbox, mut head) = Inbox::new(64);
        let inbox = std::sync::Arc::new(inbox);
        let threads = 4;
        // Miri runs about a million times slower: fewer records, the same interleaving risk.
        let per: u64 = if cfg!(miri) { 300 } else { 20_000 };
        let pushers: Vec<_> = (0..threads)
            .map(|t| {
                let inbox = std::sync::Arc::clone(&inbox);
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut r = rec(t * per + i);
                        loop {
                            match inbox.push(r, Bound::Checked) {
                                Ok(_) => break,
                                Err((_, back)) => {
                                    r = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < (threads * per) as usize {
            inbox.drain(&mut head, |r| seen.push(n(&r)));
        }
        for p in pushers {
            p.join().unwrap();
        }
        for t in 0..threads {
            let mine: Vec<u64> = seen.iter().copied().filter(|v| v / per == t).collect();
            assert_eq!(mine, (t * per..(t + 1) * per).collect::<Vec<_>>());
        }
    }
}
