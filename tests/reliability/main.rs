//! The reliability matrix (SPEC §4) and its edges: lossless load, a panicking handler, a
//! stalled lossy handler, bad input, a handler hung at shutdown, cancelled futures, and emits
//! and spans racing shutdown. The matrix rows run reduced sizes by default; the full sizes run
//! with `cargo test --release --test reliability -- --ignored`.
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --test reliability <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

mod reliability_a_panicking_handler_is_isolated;
mod reliability_a_stalled_lossy_handler_counts_every_drop;
mod reliability_an_emit_racing_shutdown_is_delivered_or_refused;
mod reliability_bad_input_gets_typed_errors;
mod reliability_cancelled_futures_close_every_span;
mod reliability_lossless_load_loses_nothing;
mod reliability_shutdown_returns_by_its_deadline;
mod reliability_spans_racing_shutdown_close_exactly_once;
mod spans_ended_on_other_threads_close_exactly_once_even_racing_shutdown;
