#![no_main]
//! Fuzzes `bundle::decode`: must not panic (the signature is checked after the
//! whole body parsed, so the parser sees every input).
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/bundle/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::bundle(data));
