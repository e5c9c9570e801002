//! `cargo +nightly fuzz run signaller_decode`: see `switchyard_core::testing::targets::signaller_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_core::testing::targets::signaller_decode(data));
