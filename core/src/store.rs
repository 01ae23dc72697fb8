//! Persistence: the store trait, an in-memory store, loading a replica from
//! a snapshot plus the tail of its log, and the conformance suite that every
//! store implementation runs.
//!
//! A store keeps, per space, an append-only log of entries in the order the
//! replica applied them (a causal order), the version vector of that log, the
//! latest snapshot, and fork proofs. [`Store::append`] commits a batch of
//! entries together with the version-vector bump atomically: after a crash
//! the log is a valid prefix, never half an entry.
//!
//! The log holds at most one entry per author and sequence number. Because
//! entries arrive in causal order, each author's entries in the log are
//! contiguous from seq 0, so the version vector alone says what is stored:
//! an entry below its author's bound is already there (or is the other
//! branch of a fork, which is recorded as a fork proof, never in the log).
//! Stores therefore need no index by entry id. State is not written per
//! entry: it is a pure function of the log, restored from the latest snapshot
//! and the entries after it ([`load_replica`]).
//!
//! The trait's futures are not `Send`, so that browser stores (IndexedDB in a
//! Web Worker) can implement it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::codec::{Reader, Writer};
use crate::entry::Entry;
use crate::id::{EntryId, SpaceId};
use crate::replica::{ForkProof, IngestError, Replica, ReplicaConfig, Snapshot};
use crate::vv::VersionVector;

/// A persistent home for replicas.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The backend's error.
    type Error: std::error::Error + 'static;

    /// Spaces with anything stored.
    async fn spaces(&self) -> Result<Vec<SpaceId>, Self::Error>;

    /// Appends entries to the space's log in the given order, skipping every
    /// entry whose author already has one at that seq in the log (the same
    /// entry, or a fork of it), and bumps the version vector, all in one
    /// atomic write. Entries must come in causal order, as a replica applies
    /// them.
    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), Self::Error>;

    /// Entries from log position `from` on, in log order.
    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, Self::Error>;

    /// Number of entries in the space's log.
    async fn log_len(&self, space: &SpaceId) -> Result<u64, Self::Error>;

    /// Version vector of the stored log.
    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, Self::Error>;

    /// Replaces the space's snapshot.
    async fn put_snapshot(&self, space: &SpaceId, snapshot: &Snapshot) -> Result<(), Self::Error>;

    /// The latest snapshot.
    async fn snapshot(&self, space: &SpaceId) -> Result<Option<Snapshot>, Self::Error>;

    /// Stores an encoded fork proof (idempotent).
    async fn put_fork_proof(&self, space: &SpaceId, proof: &[u8]) -> Result<(), Self::Error>;

    /// All stored fork proofs.
    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// Stores a small named secret (a device key) outside any space.
    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), Self::Error>;

    /// A named secret.
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// A shared store is a store: several engines (tabs) of one device can
/// work on one database.
impl<S: Store> Store for std::rc::Rc<S> {
    type Error = S::Error;

    async fn spaces(&self) -> Result<Vec<SpaceId>, Self::Error> {
        (**self).spaces().await
    }
    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), Self::Error> {
        (**self).append(space, entries).await
    }
    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, Self::Error> {
        (**self).entries_from(space, from).await
    }
    async fn log_len(&self, space: &SpaceId) -> Result<u64, Self::Error> {
        (**self).log_len(space).await
    }
    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, Self::Error> {
        (**self).version_vector(space).await
    }
    async fn put_snapshot(&self, space: &SpaceId, snapshot: &Snapshot) -> Result<(), Self::Error> {
        (**self).put_snapshot(space, snapshot).await
    }
    async fn snapshot(&self, space: &SpaceId) -> Result<Option<Snapshot>, Self::Error> {
        (**self).snapshot(space).await
    }
    async fn put_fork_proof(&self, space: &SpaceId, proof: &[u8]) -> Result<(), Self::Error> {
        (**self).put_fork_proof(space, proof).await
    }
    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, Self::Error> {
        (**self).fork_proofs(space).await
    }
    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        (**self).put_secret(name, value).await
    }
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        (**self).secret(name).await
    }
}

/// Encodes a fork proof for [`Store::put_fork_proof`].
pub fn encode_fork_proof(p: &ForkProof) -> Vec<u8> {
    let mut w = Writer::default();
    p.encode(&mut w);
    w.finish()
}

/// What [`load_replica`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Entries restored from the snapshot without re-validation.
    pub from_snapshot: u64,
    /// Entries after the snapshot, validated and applied.
    pub replayed: u64,
    /// Stored entries that were refused on replay (should be zero).
    pub refused: u64,
}

/// Why a replica could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError<E: std::error::Error + 'static> {
    /// The store failed.
    #[error("store error: {0}")]
    Store(#[source] E),
    /// Nothing is stored for the space.
    #[error("no entries are stored for this space")]
    Empty,
}

/// Loads a space's replica: restores the snapshot, then validates and applies
/// only the entries after it. Falls back to a full rebuild if the snapshot is
/// unreadable.
pub async fn load_replica<S: Store>(
    store: &S,
    space: &SpaceId,
    now_ms: u64,
    config: ReplicaConfig,
) -> Result<(Replica, LoadReport), LoadError<S::Error>> {
    let entries = store
        .entries_from(space, 0)
        .await
        .map_err(LoadError::Store)?;
    if entries.is_empty() {
        return Err(LoadError::Empty);
    }
    let total = entries.len() as u64;
    let mut report = LoadReport::default();
    let snapshot = store.snapshot(space).await.map_err(LoadError::Store)?;
    // The snapshot names the entries it covers; the rest of the log, in
    // stored (causal) order, is the tail. A snapshot that cannot be used is
    // ignored and everything is replayed.
    let (mut replica, tail) = match snapshot {
        Some(s) => match Replica::restore_partial(&s, entries.iter().cloned(), config) {
            Ok(x) => x,
            Err(_) => (Replica::empty(*space, config), entries),
        },
        None => (Replica::empty(*space, config), entries),
    };
    report.from_snapshot = total - tail.len() as u64;
    report.replayed = tail.len() as u64;
    // These entries were verified when they were first received.
    for r in tail.into_iter().map(|e| replica.ingest_trusted(e, now_ms)) {
        if matches!(r, Err(_) | Ok(crate::replica::Ingested::ForkDetected(_))) {
            report.refused += 1;
        }
    }
    for bytes in store.fork_proofs(space).await.map_err(LoadError::Store)? {
        if let Ok((a, b)) = ForkProof::decode_parts(&mut Reader::new(&bytes)) {
            if let Ok(p) = ForkProof::verify(space, a, b) {
                // A proof this device stored had standing when it came.
                let _ = replica.add_fork(p);
            }
        }
    }
    Ok((replica, report))
}

/// Appends the entries a replica just applied to the store.
pub async fn persist_applied<S: Store>(
    store: &S,
    replica: &Replica,
    applied: &[EntryId],
) -> Result<(), S::Error> {
    let entries: Vec<Entry> = applied
        .iter()
        .filter_map(|id| replica.get(id).cloned())
        .collect();
    store.append(&replica.space(), &entries).await
}

/// Ingests entries into a replica and persists what was applied.
pub async fn ingest_and_persist<S: Store>(
    store: &S,
    replica: &mut Replica,
    entries: Vec<Entry>,
    now_ms: u64,
) -> Result<Vec<Result<crate::replica::Ingested, IngestError>>, S::Error> {
    let results = replica.ingest_batch(entries, now_ms);
    let applied: Vec<EntryId> = results
        .iter()
        .filter_map(|r| match r {
            Ok(crate::replica::Ingested::Applied(ids)) => Some(ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    persist_applied(store, replica, &applied).await?;
    Ok(results)
}

/// The in-memory store's error (it has none, but the trait wants a type).
#[derive(Debug, Error)]
#[error("memory store error")]
pub struct MemoryStoreError;

#[derive(Default)]
struct MemSpace {
    log: Vec<Entry>,
    vv: VersionVector,
    snapshot: Option<Snapshot>,
    forks: Vec<Vec<u8>>,
}

/// A store in memory, for tests and for peers that persist elsewhere.
#[derive(Default)]
pub struct MemoryStore {
    spaces: RefCell<BTreeMap<SpaceId, MemSpace>>,
    secrets: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    type Error = MemoryStoreError;

    async fn spaces(&self) -> Result<Vec<SpaceId>, Self::Error> {
        Ok(self.spaces.borrow().keys().copied().collect())
    }

    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), Self::Error> {
        let mut spaces = self.spaces.borrow_mut();
        let s = spaces.entry(*space).or_default();
        for e in entries {
            let h = e.header();
            if h.seq < s.vv.get(&h.author) {
                continue;
            }
            s.vv.raise(h.author, h.seq + 1);
            s.log.push(e.clone());
        }
        Ok(())
    }

    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, Self::Error> {
        Ok(self
            .spaces
            .borrow()
            .get(space)
            .map(|s| s.log.iter().skip(from as usize).cloned().collect())
            .unwrap_or_default())
    }

    async fn log_len(&self, space: &SpaceId) -> Result<u64, Self::Error> {
        Ok(self
            .spaces
            .borrow()
            .get(space)
            .map_or(0, |s| s.log.len() as u64))
    }

    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, Self::Error> {
        Ok(self
            .spaces
            .borrow()
            .get(space)
            .map(|s| s.vv.clone())
            .unwrap_or_default())
    }

    async fn put_snapshot(&self, space: &SpaceId, snapshot: &Snapshot) -> Result<(), Self::Error> {
        self.spaces.borrow_mut().entry(*space).or_default().snapshot = Some(snapshot.clone());
        Ok(())
    }

    async fn snapshot(&self, space: &SpaceId) -> Result<Option<Snapshot>, Self::Error> {
        Ok(self
            .spaces
            .borrow()
            .get(space)
            .and_then(|s| s.snapshot.clone()))
    }

    async fn put_fork_proof(&self, space: &SpaceId, proof: &[u8]) -> Result<(), Self::Error> {
        let mut spaces = self.spaces.borrow_mut();
        let s = spaces.entry(*space).or_default();
        if !s.forks.iter().any(|p| p == proof) {
            s.forks.push(proof.to_vec());
        }
        Ok(())
    }

    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(self
            .spaces
            .borrow()
            .get(space)
            .map(|s| s.forks.clone())
            .unwrap_or_default())
    }

    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.secrets
            .borrow_mut()
            .insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self.secrets.borrow().get(name).cloned())
    }
}

pub mod conformance;
