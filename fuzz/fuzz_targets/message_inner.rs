#![no_main]
//! Fuzzes `sync::Message::decode_inner` (a message reassembled from chunks): must
//! not panic, and an accepted message re-encodes to the input byte for byte.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/message_inner/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::message_inner(data));
