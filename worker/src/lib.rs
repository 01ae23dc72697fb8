//! The CivicBase engine that runs in a Web Worker.
//!
//! The UI thread stays free while this crate does the slow work: for now,
//! persisting replicas in IndexedDB ([`idb::IdbStore`], an implementation of
//! [`civicbase_core::store::Store`]). The sync driver and the message
//! protocol to the UI will live here too.
//!
//! Everything in this crate needs a browser, so it is only compiled for
//! `wasm32`; natively the crate is empty, which keeps `cargo build
//! --workspace` and `cargo clippy --workspace` working on a developer
//! machine. Its tests run in headless Chromium, inside a dedicated worker:
//!
//! ```text
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test -p civicbase-worker --target wasm32-unknown-unknown
//! ```
//!
//! # Example
//!
//! Opening the device's store and loading a space from it (this only runs
//! in a browser, so it is not compiled as a doctest):
//!
//! ```ignore
//! use civicbase_core::store::{load_replica, LoadError, Store};
//! use civicbase_core::{Replica, ReplicaConfig};
//! use civicbase_worker::idb::{IdbError, IdbStore};
//!
//! async fn start(now_ms: u64) -> Result<Vec<Replica>, IdbError> {
//!     // `IdbError::Blocked` and `IdbError::QuotaExceeded` are worth their
//!     // own message to the user ("close the other CivicBase tab",
//!     // "storage is full"); here they are just passed on.
//!     let store = IdbStore::open("civicbase").await?;
//!     let mut replicas = Vec::new();
//!     for space in store.spaces().await? {
//!         match load_replica(&store, &space, now_ms, ReplicaConfig::default()).await {
//!             Ok((replica, _report)) => replicas.push(replica),
//!             // Only a snapshot or a fork proof is stored: nothing to load.
//!             Err(LoadError::Empty) => {}
//!             Err(LoadError::Store(e)) => return Err(e),
//!         }
//!     }
//!     Ok(replicas)
//! }
//! ```

#[cfg(target_arch = "wasm32")]
pub mod glue;
#[cfg(target_arch = "wasm32")]
pub mod idb;
