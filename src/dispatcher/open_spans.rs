//! The life of a span on its dispatcher: enter, exit or drop, each signal pushed once, and
//! the spans still open when shutdown drops them.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::{Mutex, MutexGuard};

use serde_json::Value;

use super::Dispatcher;
use super::route::{LIVE, SHUT, push_past_cap_to};
use crate::context::SpanContext;
use crate::context::Tags;
use crate::delivery::{Channel, Push};
use crate::events::SpanDropEvent;
use crate::record::{DropReason, Payload, Record, RecordRef, SpanDrop, SpanEnter, SpanExit};

impl Dispatcher {
    fn new_record<P: Payload>(
        &self,
        span: Option<SpanContext>,
        tags: Option<Arc<Tags>>,
        payload: P,
    ) -> RecordRef {
        Record::alloc(span, tags, self.0.name, payload)
    }

    // ---- spans (used by `span.rs`) ------------------------------------------------------

    /// Emits a span enter and tracks the span as open; returns where it is tracked, or `None`
    /// when it is not (nobody listens, or the dispatcher is shut down). The enter record is
    /// built only for a tracked span.
    #[inline]
    pub(crate) fn enter_span(
        &self,
        ctx: SpanContext,
        tags: &Option<Arc<Tags>>,
        parent: Option<SpanContext>,
        name: Cow<'static, str>,
        args: Option<Value>,
    ) -> Option<Tracked> {
        if self.route() & (LIVE | SHUT) != LIVE {
            return None;
        }
        self.track_and_enter(ctx, tags, parent, name, args)
    }

    /// The body of [`enter_span`](Self::enter_span), kept out of it so that the no-listener
    /// check alone inlines into every span (the path the W0 idle-span workload measures).
    fn track_and_enter(
        &self,
        ctx: SpanContext,
        tags: &Option<Arc<Tags>>,
        parent: Option<SpanContext>,
        name: Cow<'static, str>,
        args: Option<Value>,
    ) -> Option<Tracked> {
        // Track and announce under the shard lock, re-checking shutdown there: shutdown sets
        // its flag before it drains the shards, so a span is either drained (and dropped) by
        // shutdown or never tracked — never tracked after the drain and left open forever.
        let shard = OpenSpans::shard_of_this_thread();
        let mut open = self.0.open.lock(shard);
        if self.is_shut_down() {
            return None;
        }
        let enter = SpanEnter {
            id: ctx.span_id(),
            parent: parent.map(|p| p.span_id()),
            name,
            args,
        };
        // An enter no channel took (each at its hard cap, or nobody listens any more) is not
        // tracked: the span then emits no end either.
        let record = self.new_record(Some(ctx), tags.clone(), enter);
        if !self.push_span_record(record, Signal::Enter) {
            return None;
        }
        let slot = open.insert((ctx, tags.clone()));
        Some(Tracked { shard, slot })
    }

    /// Emits the exit of a tracked span, unless shutdown already dropped it.
    pub(crate) fn exit_span(
        &self,
        at: Tracked,
        ctx: SpanContext,
        tags: Option<Arc<Tags>>,
        result: Option<Box<Value>>,
    ) {
        // The shard lock is held until the record is pushed, so shutdown (which drains the
        // shards before closing any channel) cannot close the channels in between.
        let mut open = self.0.open.lock(at.shard);
        if remove(&mut open, at.slot, ctx) {
            let exit = SpanExit {
                id: ctx.span_id(),
                result,
            };
            self.push_span_record(self.new_record(Some(ctx), tags, exit), Signal::End);
        }
    }

    /// Emits the drop of a tracked span and its `SpanDropEvent`, unless already dropped.
    pub(crate) fn drop_span(
        &self,
        at: Tracked,
        ctx: SpanContext,
        tags: Option<Arc<Tags>>,
        reason: DropReason,
        message: String,
        error: Option<Box<Value>>,
    ) {
        let mut open = self.0.open.lock(at.shard);
        if remove(&mut open, at.slot, ctx) {
            self.push_drop(ctx, tags, reason, message, error, None);
        }
    }

    /// Pushes a signal of a tracked span; called with the span's shard lock held, so never
    /// blocks. An enter respects the hard cap (past it, it is dropped and counted); an end is
    /// pushed past it, so that every span a handler saw entered is ended for it: the ends
    /// past the cap are bounded by the spans open (which their owners hold in memory anyway).
    /// Returns whether some channel took the record.
    ///
    /// Shutdown sets its flag, then drains the shards (waiting for that lock), and closes
    /// channels only after that; so while the lock is held the chain's channels are open. But
    /// once the flag is set, any thread may refresh this dispatcher's targets to empty: then
    /// the record goes to the chain's open channels directly, so that a span tracked before
    /// the drain is entered and closed exactly once for its handlers.
    ///
    /// The record is moved into the last channel rather than cloned, so a span signal to one
    /// channel costs no reference-count traffic on the emitter's side.
    fn push_span_record(&self, record: RecordRef, signal: Signal) -> bool {
        self.route();
        {
            let targets = self.0.targets.load();
            let push = |ch: &Channel, record| match signal {
                Signal::Enter => push_or_count(ch, record),
                Signal::End => ch.push_past_cap(record).is_ok(),
            };
            if let Some((last, rest)) = targets.split_last() {
                let mut took = false;
                for ch in rest {
                    took |= push(ch, record.clone());
                }
                return push(last, record) | took;
            }
            if !self.is_shut_down() {
                return false;
            }
        }
        push_past_cap_to(&self.chain_channels(), &record);
        true
    }

    pub(super) fn push_drop(
        &self,
        ctx: SpanContext,
        tags: Option<Arc<Tags>>,
        reason: DropReason,
        message: String,
        error: Option<Box<Value>>,
        to: Option<&[Arc<Channel>]>,
    ) {
        let event = SpanDropEvent {
            err_str: message.clone(),
        };
        let drop = SpanDrop {
            id: ctx.span_id(),
            reason,
            message,
            error,
        };
        let records = [
            self.new_record(Some(ctx), tags.clone(), drop),
            Record::event_record(Some(ctx), tags, self.0.name, event),
        ];
        match to {
            None => records.into_iter().for_each(|r| {
                self.push_span_record(r, Signal::End);
            }),
            Some(channels) => records.iter().for_each(|r| push_past_cap_to(channels, r)),
        }
    }
}

/// Pushes without waiting and without blocking: for span enters, pushed under the open-span
/// lock (blocking there could hold up shutdown). Past the hard cap the record is dropped and
/// counted for the channel's handlers. Returns whether it got in.
#[inline]
fn push_or_count(ch: &Channel, record: RecordRef) -> bool {
    match ch.push_now(record) {
        Ok(()) => true,
        Err((Push::Full, _)) => {
            ch.overflowed();
            false
        }
        Err(_) => false,
    }
}

/// Which signal of a span is pushed (see [`Dispatcher::push_span_record`]).
#[derive(Clone, Copy)]
enum Signal {
    Enter,
    End,
}

/// Shards of the open-span registry. Each thread uses one shard (assigned round-robin at its
/// first span), so spans entered on different threads do not contend and a span's slot is
/// usually in the cache of the core that entered it.
const SHARDS: usize = 16;

/// Where a tracked span sits in its dispatcher's registry; kept by the span's owner so that
/// its exit finds the entry by index, without hashing, even from another thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    shard: usize,
    slot: usize,
}

/// Spans entered on a dispatcher and not yet ended, so shutdown can drop them.
///
/// A span is inserted at enter and removed at its exit or drop, both under its shard's lock,
/// which is held while the span's record is pushed. Shutdown sets the dispatcher's flag, then
/// drains every shard under its lock: so each tracked span is ended exactly once, either by
/// its owner or by shutdown, and a span entered after the drain is never tracked (enter checks
/// the flag under the lock).
#[derive(Default)]
pub(super) struct OpenSpans {
    shards: [Shard; SHARDS],
}

/// One shard, on its own cache line so that threads using neighbouring shards do not share it.
#[derive(Default)]
#[repr(align(64))]
struct Shard(Mutex<Slab>);

/// The open spans of one shard, by slot: a slot stays valid until its span ends, and is
/// reused after.
type Slab = slab::Slab<(SpanContext, Option<Arc<Tags>>)>;

/// Removes the span at `slot` if it is still there; false if shutdown drained it. (The slot
/// may hold another span by then: drained slots are reused.)
fn remove(slab: &mut Slab, slot: usize, ctx: SpanContext) -> bool {
    if slab.get(slot).is_some_and(|(c, _)| *c == ctx) {
        slab.remove(slot);
        true
    } else {
        false
    }
}

impl OpenSpans {
    /// The shard this thread uses.
    #[inline]
    fn shard_of_this_thread() -> usize {
        use std::cell::Cell;
        use std::sync::atomic::AtomicUsize;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        SHARD
            .try_with(|s| {
                let mut shard = s.get();
                if shard == usize::MAX {
                    shard = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                    s.set(shard);
                }
                shard
            })
            .unwrap_or(0)
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Slab> {
        self.shards[shard].0.lock()
    }

    /// Takes every open span out. Called once shutdown has set its flag, so none is added
    /// after; the slots of spans still held by their owners are gone, so their exits find
    /// nothing and emit nothing.
    pub(super) fn drain(&self) -> Vec<(SpanContext, Option<Arc<Tags>>)> {
        let mut open = Vec::new();
        for shard in &self.shards {
            open.extend(
                std::mem::take(&mut *shard.0.lock())
                    .into_iter()
                    .map(|(_, span)| span),
            );
        }
        open
    }
}

#[cfg(test)]
mod open_span_tests {
    use super::*;
    use crate::id::{SpanId, TraceId};

    fn ctx() -> SpanContext {
        SpanContext::new(TraceId::random(), SpanId::random())
    }

    #[test]
    fn a_span_is_removed_once_and_not_by_a_later_span_in_its_reused_slot() {
        let mut slab = Slab::default();
        let (a, b) = (ctx(), ctx());
        let sa = slab.insert((a, None));
        assert!(remove(&mut slab, sa, a));
        assert!(!remove(&mut slab, sa, a), "a span is removed once");
        assert_eq!(slab.insert((b, None)), sa, "the freed slot is reused");
        assert!(
            !remove(&mut slab, sa, a),
            "the old span's exit leaves the new span be"
        );
        assert!(remove(&mut slab, sa, b));
    }

    #[test]
    fn a_drain_takes_every_open_span_and_later_exits_find_nothing() {
        let open = OpenSpans::default();
        let mut tracked = Vec::new();
        for shard in [0, 3, 3, SHARDS - 1] {
            let c = ctx();
            tracked.push((shard, open.lock(shard).insert((c, None)), c));
        }
        let (shard, slot, c) = tracked.pop().unwrap_or_else(|| unreachable!());
        assert!(remove(&mut open.lock(shard), slot, c));
        let mut drained: Vec<SpanId> = open.drain().into_iter().map(|(c, _)| c.span_id()).collect();
        let mut expected: Vec<SpanId> = tracked.iter().map(|t| t.2.span_id()).collect();
        drained.sort();
        expected.sort();
        assert_eq!(drained, expected);
        for (shard, slot, c) in tracked {
            assert!(!remove(&mut open.lock(shard), slot, c));
        }
        assert!(open.drain().is_empty());
    }
}
