#![no_main]
//! Fuzzes `op::decode_payload`: must not panic, and an accepted payload re-encodes
//! to the input byte for byte.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/payload/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::payload(data));
