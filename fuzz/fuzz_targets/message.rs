#![no_main]
//! Fuzzes `sync::Message::decode` (a frame): must not panic, and an accepted frame
//! re-encodes to the input byte for byte.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/message/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::message(data));
