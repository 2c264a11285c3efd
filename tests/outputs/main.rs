//! What handlers write and show: the JSON form of records and catalog events (llama-index's
//! keys and class names, and the typed objects the LLM events carry), JSON Lines files written
//! and read back (bad lines included), the HTML waterfall page (drawn in headless Chromium, and
//! safe against hostile text), trace trees in the terminal, and the simple span handler's
//! bounded store.
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --test outputs <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

mod a_jsonl_file_reads_back_as_the_records_that_were_written;
mod a_records_json_has_llama_index_keys;
mod a_summary_line_follows_each_trace_in_json_lines;
mod catalog_events_serialize_with_llama_index_names;
mod llm_calls_show_model_tokens_time_to_first_token_and_cost;
mod malformed_jsonl_lines_are_reported_by_number_without_losing_the_good_ones;
mod orphans_appear_under_a_missing_parent_placeholder_without_changing_the_data;
mod the_simple_span_handler_keeps_at_most_its_capacity_and_counts_evictions;
mod the_simple_span_handler_lists_the_spans_still_running;
mod the_typed_llm_events_serialize_to_llama_index_json;
mod the_waterfall_page_draws_every_span;
mod the_waterfall_page_shows_user_text_as_text_not_markup;
mod the_waterfall_page_sorts_and_filters_ten_thousand_traces;
mod trace_trees_render_nested_spans_with_durations_and_outcomes;
