//! Dispatchers and delivery: records travel up the dispatcher hierarchy, in emit order;
//! `flush` is a barrier; a busy handler still gets every record without one; handlers may emit
//! and flush on their own dispatcher, or be removed mid-batch; a handler closed by a shutdown
//! reads its deadline; records hold events of any
//! shape; and delivery keeps its promises at every lifecycle edge (dropped dispatchers, gone
//! runtimes, cancelled emits).
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --test hierarchy_and_delivery <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

mod a_handler_closed_by_shutdown_reads_the_shutdown_deadline;
mod a_handler_removed_mid_batch_still_reads_whole_records;
mod a_handler_that_emits_or_flushes_on_its_own_dispatcher_does_not_deadlock;
mod delivery_holds_its_promises_at_every_lifecycle_edge;
mod each_handler_sees_an_emitters_records_in_emit_order;
mod events_of_any_size_and_alignment_read_back_intact_and_drop_once;
mod flush_is_a_barrier;
mod handlers_chosen_at_run_time_receive_records_like_generic_ones;
mod records_propagate_up_the_dispatcher_hierarchy;
mod records_reach_a_busy_handler_without_a_flush;
