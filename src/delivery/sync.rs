//! The synchronization primitives of the broadcast channel: std's, or loom's when the channel
//! protocol is being model-checked (`RUSTFLAGS="--cfg loom"`, see `.ci/loom.sh` and
//! `loom.rs`).
//!
//! Only the channel (`channel.rs` and its lock-free front, `inbox.rs`) uses this shim: its
//! bookkeeping is the one place where emitters, handler tasks, flushes and shutdown meet, and
//! loom can only explore interleavings at operations on its own primitives.

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::AtomicU64;
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::AtomicU64;

/// `std::cell::UnsafeCell` with loom's access API (`with_mut`), so that loom can check the
/// accesses in its models.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Waits a moment for another thread to finish a few instructions (spinning first, then
/// yielding in case it was preempted).
#[inline]
pub(crate) fn spin_wait(spins: &mut u32) {
    #[cfg(loom)]
    {
        let _ = spins;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *spins += 1;
        if *spins < 64 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Orders the parking handshake's store before its load in loom's models only.
///
/// The handshake (see `inbox.rs`) relies on sequentially consistent accesses: a store then a
/// load on each side, all `SeqCst`, of which at least one load sees the other side's store.
/// Loom models `SeqCst` accesses as acquire/release, which allows both loads to miss (a false
/// alarm, loom's README says so), but models `fence(SeqCst)` exactly. So the models get the
/// fence, and the real code keeps its `SeqCst` accesses without paying for one.
#[inline]
pub(crate) fn handshake_fence() {
    #[cfg(loom)]
    loom::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Lets loom schedule another thread (a no-op outside loom's models): for a task that polls
/// again instead of sleeping while another thread finishes a push.
#[inline]
pub(crate) fn yield_for_models() {
    #[cfg(loom)]
    loom::thread::yield_now();
}
