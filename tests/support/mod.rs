//! What the test binaries share. Each binary's `main.rs` includes it with
//! `#[path = "../support/mod.rs"] mod support;`, and its modules use what they need.
//!
//! - [`recorder`]: a handler that records everything it sees, a numbered event, `wait_until`;
//! - [`spans`]: handlers that record closed spans and events, and per-span end counts;
//! - [`phoenix`]: a real Arize Phoenix: whether it is up, and its spans read back.
#![allow(dead_code)] // each test binary uses a different subset

pub mod phoenix;
pub mod recorder;
pub mod spans;
