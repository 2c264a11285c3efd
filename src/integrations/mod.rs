//! Bridges to other crates, each behind a cargo feature.
//!
//! | feature | module | what it does |
//! |---|---|---|
//! | `tracing` | `tracing` | `tracing` spans and events into spanbus, and spanbus records into `tracing` |

#[cfg(feature = "tracing")]
pub mod tracing;
