//! Arbitrary bytes as request headers (`name:value` lines): `spanbus::propagation::extract` never panics and what it extracts injects and extracts back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| spanbus_fuzz::checks::extract(data));
