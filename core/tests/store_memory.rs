//! The store conformance suite against the in-memory store.

use civicbase_core::store::MemoryStore;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

civicbase_core::store_conformance_tests!(native, async { MemoryStore::new() });
