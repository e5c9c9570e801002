//! `cargo +nightly fuzz run hub_ops`: see `switchyard_core::testing::targets::hub_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_core::testing::targets::hub_ops(data));
