//! Peak RSS stays within the documented bound on every emission path. RSS is the whole
//! process's, so this binary holds these tests and nothing else, and they take turns
//! (`SERIAL`); each prints its figures.

#[path = "../support/mod.rs"]
mod support;

mod memory_stays_bounded_on_every_emission_path;
