#![no_main]
//! Fuzzes `VersionVector::decode`: must not panic, and an accepted vector
//! re-encodes to the bytes it consumed.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/version_vector/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::version_vector(data));
