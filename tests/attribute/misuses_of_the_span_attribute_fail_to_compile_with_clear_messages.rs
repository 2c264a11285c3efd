//! Each misuse of `#[spanbus::span]` is a compile error that says what is wrong and how to fix
//! it: the expected messages are the `.stderr` files beside the cases in `tests/ui/`.
//! Regenerate them with
//! `TRYBUILD=overwrite cargo test --test attribute misuses_of_the_span_attribute` and review
//! the diff.

#[test]
fn misuses_fail_to_compile_with_clear_messages() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
