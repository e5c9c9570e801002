//! `cargo +nightly fuzz run json_decode`: see `switchyard_core::testing::targets::json_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_core::testing::targets::json_decode(data));
