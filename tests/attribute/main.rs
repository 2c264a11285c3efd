//! The `#[spanbus::span]` attribute: it captures arguments and ends spans by the outcome of the
//! fn, names spans after methods, impl blocks and fn paths, and turns each misuse into a compile
//! error with a clear message (trybuild, with the cases in `tests/ui/`).
//!
//! One module per behaviour, each a test binary of its own before the tests were grouped by
//! area: `cargo test --test attribute <module>` runs one.

#[path = "../support/mod.rs"]
mod support;

mod a_span_goes_to_the_dispatcher_an_expression_gives;
mod misuses_of_the_span_attribute_fail_to_compile_with_clear_messages;
mod ret_and_err_record_values_on_the_end_record;
mod spans_are_named_by_the_type_that_calls;
mod the_span_attribute_captures_arguments_and_ends_spans_by_outcome;
mod the_span_attribute_names_methods_and_impl_blocks_by_their_type;
