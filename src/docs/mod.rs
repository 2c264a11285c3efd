//! Guides that span several modules.

#[doc = include_str!("failure_modes.md")]
pub mod failure_modes {}
