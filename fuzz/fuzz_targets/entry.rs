#![no_main]
//! Fuzzes `Entry::decode`: must not panic, and an accepted entry re-encodes to the
//! input byte for byte (entries are hashed and signed by their encoding).
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/entry/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::entry(data));
