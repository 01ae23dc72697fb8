#![no_main]
//! Fuzzes `replica::ForkProof::decode_parts` and `ForkProof::verify` of what it
//! decoded: must not panic.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/fork_proof/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::fork_proof(data));
