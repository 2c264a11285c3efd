//! Where a dispatcher's records go: the cached channels of its propagation chain, and the
//! sync push to them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use super::{Dispatcher, MAX_DEPTH};
use crate::delivery::{Channel, Push, topology};
use crate::error::EmitError;
use crate::handler;
use crate::record::RecordRef;

/// `route` bits: the low three bits of the cached tag. `LIVE`: some handler on the chain
/// listens. `SHUT`: this dispatcher is shut down. `GONE`: every handler on the chain lost its
/// task (its runtime was dropped), so records reach nobody.
pub(crate) const LIVE: u64 = 1;
pub(crate) const SHUT: u64 = 2;
const GONE: u64 = 4;
const ROUTE_BITS: u32 = 3;

impl Dispatcher {
    // ---- routing ------------------------------------------------------------------------

    /// The route bits (`LIVE`, `SHUT`, `GONE`), refreshing the cached targets if the topology
    /// changed.
    #[inline]
    pub(crate) fn route(&self) -> u64 {
        let generation = topology();
        let route = self.0.route.load(Ordering::Acquire);
        if route >> ROUTE_BITS == generation {
            route & ((1 << ROUTE_BITS) - 1)
        } else {
            self.refresh(generation)
        }
    }

    #[cold]
    fn refresh(&self, generation: u64) -> u64 {
        let _refreshing = self.0.refreshing.lock();
        let shut = self.is_shut_down();
        let channels = if shut {
            Vec::new()
        } else {
            self.chain_channels()
        };
        let gone = !channels.is_empty() && channels.iter().all(|c| c.all_gone());
        let bits = if shut { SHUT } else { 0 }
            | if channels.is_empty() { 0 } else { LIVE }
            | if gone { GONE } else { 0 };
        self.0.targets.store(Arc::new(channels));
        self.0
            .route
            .store((generation << ROUTE_BITS) | bits, Ordering::Release);
        bits
    }

    /// The open channels with readers on the propagation chain from here up.
    pub(super) fn chain_channels(&self) -> Vec<Arc<Channel>> {
        let mut channels = Vec::new();
        let mut node = Some(self.clone());
        let mut hops = 0;
        while let Some(d) = node {
            if let Some(ch) = &d.0.hub.lock().channel
                && ch.has_readers()
            {
                channels.push(Arc::clone(ch));
            }
            hops += 1;
            if !d.propagate() || hops > MAX_DEPTH {
                break;
            }
            node = d.parent();
        }
        channels
    }

    /// Pushes to every target without waiting for room, for sync emission (see
    /// [the bound](crate#the-bound)): past a channel's hard cap, a plain thread blocks until
    /// there is room; any other drops the record there and counts it.
    pub(super) fn push_now(&self, record: &RecordRef) -> Pushed {
        let targets = self.0.targets.load();
        // Empty although the route said someone listens: a shutdown has emptied them.
        let mut pushed = if targets.is_empty() {
            Pushed::Refused
        } else {
            Pushed::All
        };
        for ch in targets.iter() {
            let outcome = match ch.push_now(record.clone()) {
                Ok(()) => Pushed::All,
                Err((Push::Full, _)) if crate::delivery::park::may_block() => {
                    match ch.push_blocking(record) {
                        Push::Closed => Pushed::Refused,
                        _ => Pushed::All,
                    }
                }
                Err((Push::Full, _)) => {
                    ch.overflowed();
                    Pushed::Overflowed
                }
                Err(_) => Pushed::Refused,
            };
            pushed = pushed.max(outcome);
        }
        pushed
    }

    /// Whether every channel on the chain has room below its bound for records that wait; if
    /// not, `cx` is woken when there is. Always true when nobody listens and inside a handler
    /// (which must never wait on handlers).
    #[inline]
    pub(crate) fn poll_room(&self, cx: &mut std::task::Context<'_>) -> bool {
        if self.route() & (LIVE | SHUT) != LIVE {
            return true;
        }
        let targets = self.0.targets.load();
        targets.iter().all(|ch| ch.poll_room(cx.waker())) || handler::in_handler()
    }

    /// For sync spans: on a plain thread, waits until every channel on the chain is below its
    /// hard cap, so that the span's records are not dropped there. Never waits elsewhere.
    #[inline]
    pub(crate) fn wait_below_hard_cap(&self) {
        if self.route() & (LIVE | SHUT) != LIVE {
            return;
        }
        let targets = self.0.targets.load();
        if targets.iter().all(|ch| ch.below_hard_cap()) || !crate::delivery::park::may_block() {
            return;
        }
        for ch in targets.iter() {
            crate::delivery::park::block_on(|cx| match ch.poll_room(cx.waker()) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            });
        }
    }

    pub(super) fn shut_down_error(&self) -> EmitError {
        EmitError::ShutDown {
            dispatcher: self.name().to_owned(),
        }
    }

    /// The outcome of an emit whose record went to the chain's channels, given the route it
    /// was made on.
    pub(super) fn emitted(&self, pushed: Pushed, route: u64) -> Result<(), EmitError> {
        if pushed == Pushed::Refused && self.is_shut_down() {
            // A shutdown that began after the route was read closed a channel first.
            return Err(self.shut_down_error());
        }
        if pushed == Pushed::Overflowed {
            return Err(EmitError::Overflow {
                dispatcher: self.name().to_owned(),
            });
        }
        if route & GONE != 0 {
            return Err(EmitError::HandlersGone {
                dispatcher: self.name().to_owned(),
            });
        }
        Ok(())
    }
}

/// Pushes `record` to each of `channels` past their hard cap: for records that complete what
/// handlers already saw part of (a span's end, the rest of a cancelled emit's chain), which
/// are bounded by what their emitters hold.
pub(super) fn push_past_cap_to(channels: &[Arc<Channel>], record: &RecordRef) {
    for ch in channels {
        let _ = ch.push_past_cap(record.clone());
    }
}

/// How a push to the chain went, worst last (so that `max` combines channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Pushed {
    /// Into every channel.
    All,
    /// A channel was closed (or there was none).
    Refused,
    /// A channel was at its hard cap: dropped and counted there.
    Overflowed,
}
