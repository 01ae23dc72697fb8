//! [`RedbStore`]: the anchor's [`Store`] on [redb](https://www.redb.org), an
//! embedded, crash-safe key-value database in one file.
//!
//! # Layout
//!
//! One database file holds every space. Keys are raw bytes whose order is the
//! order of their parts (ids as 32 bytes, positions as 8 big-endian bytes), so
//! the entries of one space are contiguous and in log order. Values are in
//! core's canonical encodings.
//!
//! | table       | key                        | value                                          |
//! |-------------|----------------------------|------------------------------------------------|
//! | `log`       | space ‖ position           | the entry's wire bytes ([`Entry::encode`])     |
//! | `meta`      | space                      | varint log length, then the [`VersionVector`]  |
//! | `snapshots` | space                      | varint entries covered, then the snapshot bytes|
//! | `forks`     | space ‖ hash of the proof  | the encoded fork proof                         |
//! | `secrets`   | name                       | the secret's bytes                             |
//! | `schema`    | `"version"`                | [`SCHEMA_VERSION`]                             |
//!
//! # Atomic appends
//!
//! [`Store::append`] runs in one write transaction: it reads the space's
//! length and version vector, skips entries at or below their author's
//! stored bound (already stored, or the other branch of a fork: see
//! [`Store`]), writes the new entries and the new `meta` row, and commits with immediate durability (flushed to disk before
//! it returns). redb commits are all or nothing: a process killed mid-write,
//! or a write that fails because the disk is full, leaves the log as it was
//! before the batch — a valid prefix whose length and version vector match.
//!
//! # Failing writes
//!
//! A write that fails returns [`RedbStoreError`]; one caused by a full disk
//! says so ([`RedbStoreError::is_disk_full`], which the engine reports as a
//! full quota and answers by keeping the entries in memory and retrying).
//! After an I/O error redb refuses further use of the open database, so the
//! store closes it and opens the file again before its next operation;
//! everything committed before is still there.
//!
//! # Sharing the file
//!
//! The database is opened in redb's single-writer mode: while the anchor
//! writes, other processes may open it read-only ([`RedbStore::open_read_only`])
//! and read consistent snapshots, which is how [`RedbStore::backup`] copies a
//! running anchor's data.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use civicbase_core::codec::{DecodeError, Reader, Writer};
use civicbase_core::entry::Entry;
use civicbase_core::id::{Hash, SpaceId};
use civicbase_core::replica::Snapshot;
use civicbase_core::store::Store;
use civicbase_core::vv::VersionVector;
use civicbase_engine::StorageError;
use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadOnlyDatabase, ReadTransaction,
    ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use thiserror::Error;

/// The layout version this build creates and reads.
pub const SCHEMA_VERSION: u64 = 1;

const LOG: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("log");
/// The id index of early files: deleted on open.
const BY_ID: TableDefinition<'_, &[u8], u64> = TableDefinition::new("by_id");
const META: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("meta");
const SNAPSHOTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("snapshots");
const FORKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("forks");
const SECRETS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("secrets");
const SCHEMA: TableDefinition<'_, &str, u64> = TableDefinition::new("schema");
const SCHEMA_KEY: &str = "version";

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum RedbStoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: DatabaseError,
    },
    /// Another process has the database open for writing (another anchor on
    /// the same data directory).
    #[error(
        "the database {path} is in use by another process (is another anchor running on this \
         data directory?)"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The disk is full: nothing of the failed operation was stored, and
    /// everything committed before is intact.
    #[error(
        "the disk is full: {op} was not stored (everything stored before is intact); free space \
         on the disk that holds the data directory"
    )]
    DiskFull {
        /// The store operation that failed.
        op: &'static str,
        /// What redb reported.
        #[source]
        source: redb::Error,
    },
    /// Reading or writing failed; nothing of a failed write was stored.
    #[error("storage failed during {op}")]
    Storage {
        /// The store operation that failed.
        op: &'static str,
        /// What redb reported.
        #[source]
        source: redb::Error,
    },
    /// A stored record is not what this build wrote.
    #[error("corrupt record in table `{table}`: {what}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        what: &'static str,
        /// The decoder's error, when bytes did not decode.
        #[source]
        source: Option<DecodeError>,
    },
    /// The database was written by a newer build with another layout.
    #[error(
        "the database has layout version {found}, this build reads version {SCHEMA_VERSION}: \
         run the newer build, or restore a backup"
    )]
    Schema {
        /// The version found in the file.
        found: u64,
    },
    /// [`RedbStore::backup`] refuses to overwrite a file.
    #[error("{path} already exists; choose a new file for the backup")]
    BackupExists {
        /// The file.
        path: PathBuf,
    },
    /// A write on a store opened with [`RedbStore::open_read_only`].
    #[error("the store is open read-only")]
    ReadOnly,
}

impl RedbStoreError {
    /// Whether the error is a full disk (or a full disk quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, RedbStoreError::DiskFull { .. })
    }

    fn corrupt(table: &'static str, what: &'static str) -> Self {
        RedbStoreError::Corrupt {
            table,
            what,
            source: None,
        }
    }

    fn undecodable(table: &'static str, what: &'static str, e: DecodeError) -> Self {
        RedbStoreError::Corrupt {
            table,
            what,
            source: Some(e),
        }
    }
}

impl StorageError for RedbStoreError {
    fn is_quota_exceeded(&self) -> bool {
        self.is_disk_full()
    }
}

/// Whether an I/O error means "no space left".
fn io_is_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
        // ENOSPC and EDQUOT on Linux, in case the kind was not mapped.
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}

fn storage_is_full(e: &redb::StorageError) -> bool {
    matches!(e, redb::StorageError::Io(io) if io_is_full(io))
}

/// Whether the error leaves the open database unusable (redb refuses further
/// operations after an I/O error until it is opened again).
fn needs_reopen(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::DatabaseClosed
            | redb::Error::Backend(_)
    )
}

fn is_full(e: &redb::Error) -> bool {
    match e {
        redb::Error::Io(io) => io_is_full(io),
        _ => false,
    }
}

/// Turns any redb error into a store error for `op`.
fn fail(op: &'static str, e: impl Into<redb::Error>) -> RedbStoreError {
    let source: redb::Error = e.into();
    if is_full(&source) {
        RedbStoreError::DiskFull { op, source }
    } else {
        RedbStoreError::Storage { op, source }
    }
}

/// How to open the database again after an I/O error.
type Opener = Box<dyn Fn() -> Result<Database, DatabaseError>>;

enum Handle {
    Writable {
        /// `None` while closed after an I/O error, until reopened.
        db: RefCell<Option<Database>>,
        open: Opener,
        /// Set after an I/O error: close and reopen before the next use.
        broken: Cell<bool>,
    },
    ReadOnly(ReadOnlyDatabase),
}

/// The anchor's store: a redb database file. See the module docs.
pub struct RedbStore {
    handle: Handle,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.handle {
            Handle::Writable { .. } => "writable",
            Handle::ReadOnly(_) => "read-only",
        };
        f.debug_struct("RedbStore").field("mode", &kind).finish()
    }
}

/// redb's page cache. Its default is 1 GiB, which an anchor reading many
/// spaces in turn would fill; the B-tree's inner pages of even a large
/// database fit easily in this.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_concurrency_mode(ConcurrencyMode::SingleWriter);
    b.set_cache_size(CACHE_BYTES);
    b
}

fn open_error(path: &Path, source: DatabaseError) -> RedbStoreError {
    match source {
        DatabaseError::DatabaseAlreadyOpen => RedbStoreError::InUse {
            path: path.to_owned(),
        },
        DatabaseError::Storage(ref s) if storage_is_full(s) => RedbStoreError::DiskFull {
            op: "open",
            source: source.into(),
        },
        source => RedbStoreError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

impl RedbStore {
    /// Opens the database file at `path`, creating it (but not its
    /// directory) if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, RedbStoreError> {
        let path = path.as_ref().to_owned();
        let reopen_path = path.clone();
        let open: Opener = Box::new(move || builder().create(&reopen_path));
        Self::with_opener(open).map_err(|e| match e {
            OpenFailure::Database(source) => open_error(&path, source),
            OpenFailure::Store(e) => e,
        })
    }

    /// Opens a database through `open`, which is called again to reopen it
    /// after an I/O error (tests give a failing storage backend this way).
    fn with_opener(open: Opener) -> Result<Self, OpenFailure> {
        let db = open().map_err(OpenFailure::Database)?;
        init_schema(&db).map_err(OpenFailure::Store)?;
        Ok(RedbStore {
            handle: Handle::Writable {
                db: RefCell::new(Some(db)),
                open,
                broken: Cell::new(false),
            },
        })
    }

    /// Opens an existing database for reading only. Works while an anchor has
    /// it open for writing; every read sees a consistent committed state.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, RedbStoreError> {
        let path = path.as_ref();
        let db = builder()
            .open_read_only(path)
            .map_err(|e| open_error(path, e))?;
        let store = RedbStore {
            handle: Handle::ReadOnly(db),
        };
        let txn = store.read_txn("open")?;
        match txn.open_table(SCHEMA) {
            Ok(t) => check_schema(
                t.get(SCHEMA_KEY)
                    .map_err(|e| fail("open", e))?
                    .map(|v| v.value()),
            )?,
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(fail("open", e)),
        }
        drop(txn);
        Ok(store)
    }

    /// Writes a consistent copy of the database to a new file at `dest`
    /// (which must not exist): every table as of one committed state.
    /// Safe while the anchor runs.
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<BackupReport, RedbStoreError> {
        const OP: &str = "backup";
        let dest = dest.as_ref();
        if dest.exists() {
            return Err(RedbStoreError::BackupExists {
                path: dest.to_owned(),
            });
        }
        let txn = self.read_txn(OP)?;
        let out = Database::create(dest).map_err(|e| open_error(dest, e))?;
        let w = out.begin_write().map_err(|e| fail(OP, e))?;
        let mut report = BackupReport::default();
        {
            for (i, def) in [LOG, META, SNAPSHOTS, FORKS].into_iter().enumerate() {
                let src = txn.open_table(def).map_err(|e| fail(OP, e))?;
                let mut dst = w.open_table(def).map_err(|e| fail(OP, e))?;
                for row in src.iter().map_err(|e| fail(OP, e))? {
                    let (k, v) = row.map_err(|e| fail(OP, e))?;
                    dst.insert(k.value(), v.value()).map_err(|e| fail(OP, e))?;
                    if i == 0 {
                        report.entries += 1;
                    }
                }
            }
            let src = txn.open_table(SECRETS).map_err(|e| fail(OP, e))?;
            let mut dst = w.open_table(SECRETS).map_err(|e| fail(OP, e))?;
            for row in src.iter().map_err(|e| fail(OP, e))? {
                let (k, v) = row.map_err(|e| fail(OP, e))?;
                dst.insert(k.value(), v.value()).map_err(|e| fail(OP, e))?;
            }
            let mut schema = w.open_table(SCHEMA).map_err(|e| fail(OP, e))?;
            schema
                .insert(SCHEMA_KEY, SCHEMA_VERSION)
                .map_err(|e| fail(OP, e))?;
        }
        w.commit().map_err(|e| fail(OP, e))?;
        report.spaces = spaces_in(&txn)?.len() as u64;
        Ok(report)
    }

    fn read_txn(&self, op: &'static str) -> Result<ReadTransaction, RedbStoreError> {
        match &self.handle {
            Handle::ReadOnly(db) => db.begin_read().map_err(|e| fail(op, e)),
            Handle::Writable { db, .. } => {
                self.reopen_if_broken(op)?;
                let guard = db.borrow();
                let db = guard.as_ref().ok_or_else(|| closed(op))?;
                db.begin_read().map_err(|e| self.note(op, e.into()))
            }
        }
    }

    /// Runs `f` in a write transaction and commits it durably.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&WriteTransaction) -> Result<T, RedbStoreError>,
    ) -> Result<T, RedbStoreError> {
        let Handle::Writable { db, .. } = &self.handle else {
            return Err(RedbStoreError::ReadOnly);
        };
        self.reopen_if_broken(op)?;
        let guard = db.borrow();
        let db = guard.as_ref().ok_or_else(|| closed(op))?;
        let mut txn = db.begin_write().map_err(|e| self.note(op, e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| fail(op, e))?;
        let value = match f(&txn) {
            Ok(v) => v,
            Err(e) => {
                if let RedbStoreError::Storage { source, .. }
                | RedbStoreError::DiskFull { source, .. } = &e
                {
                    if needs_reopen(source) {
                        self.mark_broken();
                    }
                }
                return Err(e);
            }
        };
        txn.commit().map_err(|e| self.note(op, e.into()))?;
        Ok(value)
    }

    /// Classifies an error and remembers whether the database must be
    /// reopened.
    fn note(&self, op: &'static str, e: redb::Error) -> RedbStoreError {
        if needs_reopen(&e) {
            self.mark_broken();
        }
        fail(op, e)
    }

    fn mark_broken(&self) {
        if let Handle::Writable { broken, .. } = &self.handle {
            broken.set(true);
        }
    }

    /// After an I/O error, closes the database and opens it again (redb
    /// refuses to go on with a handle that saw one).
    fn reopen_if_broken(&self, op: &'static str) -> Result<(), RedbStoreError> {
        let Handle::Writable { db, open, broken } = &self.handle else {
            return Ok(());
        };
        if !broken.get() {
            return Ok(());
        }
        // Close first: the file lock must be released before it is opened again.
        drop(db.borrow_mut().take());
        let fresh = open().map_err(|e| fail(op, e))?;
        *db.borrow_mut() = Some(fresh);
        broken.set(false);
        Ok(())
    }
}

fn closed(op: &'static str) -> RedbStoreError {
    fail(op, redb::Error::DatabaseClosed)
}

/// What [`RedbStore::backup`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Spaces in the copy.
    pub spaces: u64,
    /// Log entries in the copy, over all spaces.
    pub entries: u64,
}

enum OpenFailure {
    Database(DatabaseError),
    Store(RedbStoreError),
}

fn check_schema(found: Option<u64>) -> Result<(), RedbStoreError> {
    match found {
        None | Some(SCHEMA_VERSION) => Ok(()),
        Some(found) => Err(RedbStoreError::Schema { found }),
    }
}

/// Creates every table and records the layout version, or checks it.
fn init_schema(db: &Database) -> Result<(), RedbStoreError> {
    const OP: &str = "open";
    let txn = db.begin_write().map_err(|e| fail(OP, e))?;
    {
        let mut schema = txn.open_table(SCHEMA).map_err(|e| fail(OP, e))?;
        let found = schema
            .get(SCHEMA_KEY)
            .map_err(|e| fail(OP, e))?
            .map(|v| v.value());
        check_schema(found)?;
        if found.is_none() {
            schema
                .insert(SCHEMA_KEY, SCHEMA_VERSION)
                .map_err(|e| fail(OP, e))?;
        }
        txn.open_table(LOG).map_err(|e| fail(OP, e))?;
        // Early files kept an index by entry id, which nothing reads.
        txn.delete_table(BY_ID).map_err(|e| fail(OP, e))?;
        txn.open_table(META).map_err(|e| fail(OP, e))?;
        txn.open_table(SNAPSHOTS).map_err(|e| fail(OP, e))?;
        txn.open_table(FORKS).map_err(|e| fail(OP, e))?;
        txn.open_table(SECRETS).map_err(|e| fail(OP, e))?;
    }
    txn.commit().map_err(|e| fail(OP, e))
}

fn log_key(space: &SpaceId, position: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(space.as_bytes());
    k[32..].copy_from_slice(&position.to_be_bytes());
    k
}

fn pair_key(space: &SpaceId, id: &Hash) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(space.as_bytes());
    k[32..].copy_from_slice(id.as_bytes());
    k
}

fn space_of(table: &'static str, key: &[u8]) -> Result<SpaceId, RedbStoreError> {
    key.get(..32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(Hash)
        .ok_or_else(|| RedbStoreError::corrupt(table, "the key does not start with a space id"))
}

/// A space's `meta` row.
#[derive(Default)]
struct Meta {
    len: u64,
    vv: VersionVector,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(self.len);
        self.vv.encode(&mut w);
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Meta, RedbStoreError> {
        let undecodable = |e| {
            RedbStoreError::undecodable(
                "meta",
                "the log length and version vector do not decode",
                e,
            )
        };
        let mut r = Reader::new(bytes);
        let len = r.varint().map_err(undecodable)?;
        let vv = VersionVector::decode(&mut r).map_err(undecodable)?;
        r.finish().map_err(undecodable)?;
        Ok(Meta { len, vv })
    }
}

fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let mut w = Writer::with_capacity(snapshot.bytes.len() + 10);
    w.varint(snapshot.entries);
    w.raw(&snapshot.bytes);
    w.finish()
}

fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, RedbStoreError> {
    let mut r = Reader::new(bytes);
    let entries = r
        .varint()
        .map_err(|e| RedbStoreError::undecodable("snapshots", "the snapshot does not decode", e))?;
    Ok(Snapshot {
        entries,
        bytes: bytes[r.position()..].to_vec(),
    })
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, RedbStoreError> {
    Entry::decode(bytes)
        .map_err(|e| RedbStoreError::undecodable("log", "the entry does not decode", e))
}

fn read_meta(
    txn: &ReadTransaction,
    space: &SpaceId,
    op: &'static str,
) -> Result<Meta, RedbStoreError> {
    let table = txn.open_table(META).map_err(|e| fail(op, e))?;
    let row = table
        .get(space.as_bytes().as_slice())
        .map_err(|e| fail(op, e))?;
    row.map_or(Ok(Meta::default()), |v| Meta::decode(v.value()))
}

fn spaces_in(txn: &ReadTransaction) -> Result<Vec<SpaceId>, RedbStoreError> {
    const OP: &str = "spaces";
    let mut spaces = std::collections::BTreeSet::new();
    for (name, def) in [("meta", META), ("snapshots", SNAPSHOTS), ("forks", FORKS)] {
        let table = txn.open_table(def).map_err(|e| fail(OP, e))?;
        let mut last: Option<SpaceId> = None;
        for row in table.iter().map_err(|e| fail(OP, e))? {
            let (k, _) = row.map_err(|e| fail(OP, e))?;
            let space = space_of(name, k.value())?;
            if last != Some(space) {
                spaces.insert(space);
                last = Some(space);
            }
        }
    }
    Ok(spaces.into_iter().collect())
}

impl Store for RedbStore {
    type Error = RedbStoreError;

    async fn spaces(&self) -> Result<Vec<SpaceId>, RedbStoreError> {
        spaces_in(&self.read_txn("spaces")?)
    }

    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), RedbStoreError> {
        const OP: &str = "append";
        self.write(OP, |txn| {
            let mut meta_table = txn.open_table(META).map_err(|e| fail(OP, e))?;
            let stored = meta_table
                .get(space.as_bytes().as_slice())
                .map_err(|e| fail(OP, e))?
                .map(|v| v.value().to_vec());
            let created = stored.is_none();
            let mut meta = stored.map_or(Ok(Meta::default()), |b| Meta::decode(&b))?;
            let mut log = txn.open_table(LOG).map_err(|e| fail(OP, e))?;
            let mut added = 0usize;
            for entry in entries {
                let header = entry.header();
                if header.seq < meta.vv.get(&header.author) {
                    continue;
                }
                let position = meta.len;
                log.insert(
                    log_key(space, position).as_slice(),
                    entry.encode().as_slice(),
                )
                .map_err(|e| fail(OP, e))?;
                meta.vv.raise(header.author, header.seq.saturating_add(1));
                meta.len += 1;
                added += 1;
            }
            if added > 0 || created {
                meta_table
                    .insert(space.as_bytes().as_slice(), meta.encode().as_slice())
                    .map_err(|e| fail(OP, e))?;
            }
            Ok(())
        })
    }

    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, RedbStoreError> {
        const OP: &str = "entries_from";
        let txn = self.read_txn(OP)?;
        let log = txn.open_table(LOG).map_err(|e| fail(OP, e))?;
        let start = log_key(space, from);
        let end = log_key(space, u64::MAX);
        let mut out = Vec::new();
        for row in log
            .range(start.as_slice()..=end.as_slice())
            .map_err(|e| fail(OP, e))?
        {
            let (_, v) = row.map_err(|e| fail(OP, e))?;
            out.push(decode_entry(v.value())?);
        }
        Ok(out)
    }

    async fn log_len(&self, space: &SpaceId) -> Result<u64, RedbStoreError> {
        Ok(read_meta(&self.read_txn("log_len")?, space, "log_len")?.len)
    }

    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, RedbStoreError> {
        Ok(read_meta(&self.read_txn("version_vector")?, space, "version_vector")?.vv)
    }

    async fn put_snapshot(
        &self,
        space: &SpaceId,
        snapshot: &Snapshot,
    ) -> Result<(), RedbStoreError> {
        const OP: &str = "put_snapshot";
        self.write(OP, |txn| {
            let mut t = txn.open_table(SNAPSHOTS).map_err(|e| fail(OP, e))?;
            t.insert(
                space.as_bytes().as_slice(),
                encode_snapshot(snapshot).as_slice(),
            )
            .map_err(|e| fail(OP, e))?;
            Ok(())
        })
    }

    async fn snapshot(&self, space: &SpaceId) -> Result<Option<Snapshot>, RedbStoreError> {
        const OP: &str = "snapshot";
        let txn = self.read_txn(OP)?;
        let t = txn.open_table(SNAPSHOTS).map_err(|e| fail(OP, e))?;
        let row = t
            .get(space.as_bytes().as_slice())
            .map_err(|e| fail(OP, e))?;
        row.map(|v| decode_snapshot(v.value())).transpose()
    }

    async fn put_fork_proof(&self, space: &SpaceId, proof: &[u8]) -> Result<(), RedbStoreError> {
        const OP: &str = "put_fork_proof";
        self.write(OP, |txn| {
            let mut t = txn.open_table(FORKS).map_err(|e| fail(OP, e))?;
            t.insert(pair_key(space, &Hash::of(proof)).as_slice(), proof)
                .map_err(|e| fail(OP, e))?;
            Ok(())
        })
    }

    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, RedbStoreError> {
        const OP: &str = "fork_proofs";
        let txn = self.read_txn(OP)?;
        let t = txn.open_table(FORKS).map_err(|e| fail(OP, e))?;
        let start = pair_key(space, &Hash([0; 32]));
        let end = pair_key(space, &Hash([0xff; 32]));
        let mut out = Vec::new();
        for row in t
            .range(start.as_slice()..=end.as_slice())
            .map_err(|e| fail(OP, e))?
        {
            let (_, v) = row.map_err(|e| fail(OP, e))?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), RedbStoreError> {
        const OP: &str = "put_secret";
        self.write(OP, |txn| {
            let mut t = txn.open_table(SECRETS).map_err(|e| fail(OP, e))?;
            t.insert(name, value).map_err(|e| fail(OP, e))?;
            Ok(())
        })
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, RedbStoreError> {
        const OP: &str = "secret";
        let txn = self.read_txn(OP)?;
        let t = txn.open_table(SECRETS).map_err(|e| fail(OP, e))?;
        let row = t.get(name).map_err(|e| fail(OP, e))?;
        Ok(row.map(|v| v.value().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    //! Failing writes, with a storage backend that runs out of space on
    //! command.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use civicbase_core::store::conformance::{block_on, fixture};
    use redb::backends::InMemoryBackend;
    use redb::StorageBackend;

    use super::*;

    /// An in-memory "disk" that can be made full.
    #[derive(Debug, Clone)]
    struct Disk {
        inner: Arc<InMemoryBackend>,
        full: Arc<AtomicBool>,
    }

    impl Disk {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.full.load(Ordering::SeqCst) {
                Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for Disk {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            if len > self.inner.len()? {
                self.check()?;
            }
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    fn store_on(disk: &Disk) -> RedbStore {
        let d = disk.clone();
        let open: Opener = Box::new(move || Database::builder().create_with_backend(d.clone()));
        match RedbStore::with_opener(open) {
            Ok(s) => s,
            Err(_) => panic!("open on the in-memory disk"),
        }
    }

    #[test]
    fn a_full_disk_is_reported_and_loses_nothing_committed() {
        let disk = Disk {
            inner: Arc::new(InMemoryBackend::new()),
            full: Arc::new(AtomicBool::new(false)),
        };
        let store = store_on(&disk);
        let (r, ..) = fixture(21);
        let entries: Vec<Entry> = r.log().cloned().collect();
        let space = r.space();
        block_on(store.append(&space, &entries[..4])).expect("first batch");

        disk.full.store(true, Ordering::SeqCst);
        let err = block_on(store.append(&space, &entries[4..])).expect_err("disk is full");
        assert!(err.is_disk_full(), "{err:?}");
        assert!(err.is_quota_exceeded());
        assert!(err.to_string().contains("disk is full"), "{err}");
        // Every later write fails the same way while the disk stays full.
        let again = block_on(store.put_secret("k", b"v")).expect_err("still full");
        assert!(again.is_disk_full(), "{again:?}");

        // Space comes back: the store reopens the database by itself, the
        // first batch is intact and the second one can be written.
        disk.full.store(false, Ordering::SeqCst);
        assert_eq!(block_on(store.log_len(&space)).expect("len"), 4);
        assert_eq!(
            block_on(store.entries_from(&space, 0)).expect("read"),
            entries[..4].to_vec()
        );
        block_on(store.append(&space, &entries[4..])).expect("retry");
        assert_eq!(
            block_on(store.entries_from(&space, 0)).expect("read"),
            entries
        );
        assert_eq!(
            block_on(store.version_vector(&space)).expect("vv"),
            r.version_vector()
        );
        drop(store);

        // And a fresh open of the same "disk" sees the same.
        let store = store_on(&disk);
        assert_eq!(
            block_on(store.entries_from(&space, 0)).expect("read"),
            entries
        );
    }

    #[test]
    fn a_store_of_a_newer_layout_is_refused() {
        let disk = Disk {
            inner: Arc::new(InMemoryBackend::new()),
            full: Arc::new(AtomicBool::new(false)),
        };
        drop(store_on(&disk));
        {
            let db = Database::builder()
                .create_with_backend(disk.clone())
                .expect("open");
            let txn = db.begin_write().expect("txn");
            txn.open_table(SCHEMA)
                .expect("table")
                .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let d = disk.clone();
        let open: Opener = Box::new(move || Database::builder().create_with_backend(d.clone()));
        match RedbStore::with_opener(open) {
            Err(OpenFailure::Store(RedbStoreError::Schema { found })) => {
                assert_eq!(found, SCHEMA_VERSION + 1)
            }
            Err(_) => panic!("wrong error"),
            Ok(_) => panic!("a newer layout must be refused"),
        }
    }
}
