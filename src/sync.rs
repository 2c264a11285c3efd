//! The lock of the broadcast channel: std's, or loom's when the channel protocol is being
//! model-checked (`RUSTFLAGS="--cfg loom"`, see `.ci/loom.sh` and `tests/loom_channel.rs`).
//!
//! Only `channel.rs` uses this shim: its queue bookkeeping is the one place where emitters,
//! handler tasks, flushes and shutdown meet, and loom can only explore interleavings at
//! operations on its own primitives.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
