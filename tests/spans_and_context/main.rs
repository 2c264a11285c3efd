//! Spans and their context: the current span and tags live with each task; spans end with the
//! outcome of their code; a stream keeps its span open until it ends; the context crosses
//! spawns, threads, join sets and the wire; random span trees hold their invariants; W3C trace
//! context headers continue a trace.
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --test spans_and_context <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

mod a_stream_keeps_its_span_open_until_it_ends;
mod a_tag_guard_restores_the_tags_on_drop_and_on_panic;
mod span_trees_hold_their_invariants;
mod spans_cross_spawn_spawn_blocking_threads_join_sets_and_processes;
mod spans_end_with_the_outcome_of_their_code;
mod the_current_span_and_tags_follow_each_task;
mod traceparent_headers_continue_a_trace_and_malformed_ones_give_typed_errors;
