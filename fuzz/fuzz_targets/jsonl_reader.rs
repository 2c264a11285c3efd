//! Arbitrary bytes as a JSON Lines file: `spanbus::jsonl::from_reader` never panics, counts every non-blank line as a record or an error, and agrees with parsing each line alone.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spanbus_fuzz::checks::jsonl_reader(data));
