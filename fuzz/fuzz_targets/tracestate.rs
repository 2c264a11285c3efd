//! Arbitrary bytes as a `tracestate` value: parsing never panics and a parsed value round-trips through `Display`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spanbus_fuzz::checks::tracestate(data));
