//! Delivery: how a record gets from an emitter to each handler task, and what bounds it.
//!
//! A record takes one path, in one direction, through these files:
//!
//! 1. the emitter builds it (`crate::dispatcher`, the envelope in `crate::record`) and pushes
//!    it into the **inbox** of each channel on its dispatcher's chain ([`inbox`]: a lock-free
//!    ring, one compare-and-swap per push), checked against the channel's bound there;
//! 2. the **channel** ([`channel`]) moves published records into its queue under its lock
//!    (the queue and its bookkeeping — readers' cursors, barriers, what was lost — in
//!    `queue.rs`), wakes parked readers once the lock is released (`wake.rs`), and keeps the
//!    bound and closing;
//! 3. a handler task's **receiver** ([`receiver`]) takes them as a **batch** ([`batch`]) and
//!    hands them to the handler (`crate::handler`).
//!
//! Beside the path: [`linger`] (a busy handler is woken once per batch), [`park`] (waiting on
//! a plain thread, with no runtime), [`sync`] (the lock and cells, or loom's in the model checks
//! of `loom.rs`, run by `.ci/loom.sh`).
//!
//! The bound is measured in one place, [`Channel`]'s backlog: how far the slowest lossless
//! reader is behind the claimed tail. See the crate docs' "The bound" for the rule every
//! emission path follows.

pub(crate) mod batch;
pub(crate) mod channel;
pub(crate) mod inbox;
pub(crate) mod linger;
#[cfg(all(test, loom))]
mod loom;
pub(crate) mod park;
mod queue;
pub(crate) mod receiver;
pub(crate) mod sync;
mod wake;

pub(crate) use channel::{Channel, Push, Recv};
pub(crate) use linger::Linger;
pub(crate) use queue::{Mode, ReaderId};
pub(crate) use receiver::Receiver;

use std::sync::atomic::{AtomicU64, Ordering};

/// The routing generation: bumped on every change that can alter which channels a dispatcher
/// reaches (a dispatcher created, a parent or `propagate` flag changed, a handler added or
/// removed, a reader abandoned). Dispatchers cache their targets per generation.
static TOPOLOGY: AtomicU64 = AtomicU64::new(1);

/// The current routing generation (see [`topology_changed`]).
#[inline]
pub(crate) fn topology() -> u64 {
    TOPOLOGY.load(Ordering::Acquire)
}

/// Makes every dispatcher recompute its targets at its next emit.
pub(crate) fn topology_changed() {
    TOPOLOGY.fetch_add(1, Ordering::AcqRel);
}
