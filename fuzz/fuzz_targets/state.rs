#![no_main]
//! Fuzzes `SpaceState::from_bytes` (postcard): must not panic, and a decoded state
//! survives re-encoding.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/state/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::state(data));
