//! `cargo +nightly fuzz run token_verify`: see `switchyard_core::testing::targets::token_verify`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_core::testing::targets::token_verify(data));
