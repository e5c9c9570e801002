//! `cargo +nightly fuzz run broadcaster_decode`: see `switchyard_core::testing::targets::broadcaster_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchyard_core::testing::targets::broadcaster_decode(data)
});
