#![no_main]
//! Fuzzes `Replica::restore` of snapshot bytes: must not panic, and a restored
//! replica survives re-snapshotting.
//!
//! The check lives in `core/tests/support/decoders.rs`, shared with the
//! replay of `fuzz/crashers/snapshot/` in `core/tests/fuzz_crashers.rs`.

#[path = "../../core/tests/support/decoders.rs"]
mod decoders;

libfuzzer_sys::fuzz_target!(|data: &[u8]| decoders::snapshot(data));
