//! The store conformance suite against the in-memory store.

use civicbase_core::store::MemoryStore;

civicbase_core::store_conformance_tests!(native, async { MemoryStore::new() });
