//! [`IdbStore`]: the [`Store`] of a browser device, on IndexedDB.
//!
//! # Layout
//!
//! One database holds every space of the device. Ids appear in keys as
//! lowercase hex, so key order is byte order, and every value is raw bytes
//! (a `Uint8Array`) in core's canonical encodings, except log positions:
//!
//! | object store | key                          | value                                          |
//! |--------------|------------------------------|------------------------------------------------|
//! | `log`        | `[space, first position]`    | a segment: consecutive entries' wire bytes     |
//! | `meta`       | `space`                      | varint log length, the [`VersionVector`], then the first position of the last segment |
//! | `snapshots`  | `space`                      | varint entries covered, then the snapshot bytes|
//! | `forks`      | `[space, hash of the proof]` | the encoded fork proof                         |
//! | `secrets`    | name                         | the secret's bytes                             |
//!
//! Array keys compare element by element, so the segments of one space are
//! contiguous and in log order.
//!
//! # Segments
//!
//! The log is stored in segments of up to [`SEGMENT_ENTRIES`] consecutive
//! entries (and about [`SEGMENT_BYTES`]), each the concatenation of its
//! entries' self-delimiting encodings ([`Entry::encode`]), keyed by the log
//! position of its first entry. A batch of a thousand entries from a sync
//! or a bundle is a handful of records rather than a thousand, which is
//! what makes ingest and start-up fast: IndexedDB's cost is mostly per
//! record. A small batch (one entry a user just wrote) is merged into the
//! last segment while that holds fewer than [`MERGE_BELOW`] entries, so a
//! log written one entry at a time is not one record per entry either.
//!
//! [`Store::entries_from`] reads every segment that can hold the position
//! (none starts more than `SEGMENT_ENTRIES - 1` before it) with one
//! `getAll` and one `getAllKeys` over the same range. No index by entry id
//! is kept: the version vector says what is stored (see [`Store`]).
//!
//! Schema version 1 stored one entry per record, with a `by_id` index. A
//! one-entry record is a valid segment, so the upgrade to version 2 only
//! deletes `by_id`; the entries stay where they are.
//!
//! # Atomic appends
//!
//! [`Store::append`] runs in one readwrite transaction over `log` and
//! `meta`. Inside it, it reads the space's `meta` record (and the last
//! segment, when the batch is merged into it), drops entries at or below
//! their author's stored bound, then writes the segments and the new `meta`
//! record, and waits for the commit. An IndexedDB transaction is all or
//! nothing, so a tab killed mid-write leaves the log as it was before the
//! batch: a valid prefix, with a length and version vector that match it.
//! Writes ask for `strict` durability (flushed to disk before the commit is
//! reported), so that a device never forgets an entry it may already have
//! sent to a peer: re-authoring that sequence number after a power cut would
//! fork its own log. Snapshots are the exception (see
//! [`Store::put_snapshot`]).
//!
//! # Connection life cycle
//!
//! [`IdbStore::open`] opens the database at [`SCHEMA_VERSION`], creating or
//! upgrading the schema when needed. An open connection closes itself when
//! another tab asks for a newer version (`versionchange`), so this build
//! never blocks a newer one; after that, its requests fail. If an older
//! build in another tab keeps the database open, opening fails with
//! [`IdbError::Blocked`] instead of waiting. Dropping the store closes the
//! connection.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

use civicbase_core::codec::{DecodeError, Reader, Writer};
use civicbase_core::entry::Entry;
use civicbase_core::id::{Hash, SpaceId};
use civicbase_core::replica::Snapshot;
use civicbase_core::store::Store;
use civicbase_core::vv::VersionVector;
use indexed_db_futures::database::{Database, VersionChangeEvent};
use indexed_db_futures::error::{Error as JsError, OpenDbError, UnexpectedDataError};
use indexed_db_futures::internals::SystemRepr;
use indexed_db_futures::object_store::ObjectStore;
use indexed_db_futures::prelude::*;
use indexed_db_futures::transaction::{
    Transaction, TransactionDurability, TransactionMode, TransactionOptions,
};
use indexed_db_futures::KeyRange;
use js_sys::{Array, Uint8Array};
use thiserror::Error;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

/// The schema version this build creates and expects. Raise it together
/// with a new step in the upgrade function.
pub const SCHEMA_VERSION: u32 = 2;

/// Most entries in one log segment.
pub const SEGMENT_ENTRIES: u64 = 256;
/// A segment is closed once it holds this many bytes (one entry may make
/// it larger).
pub const SEGMENT_BYTES: usize = 256 * 1024;
/// A batch is merged into the last segment while that holds fewer entries
/// than this.
pub const MERGE_BELOW: u64 = 32;

const LOG: &str = "log";
/// The id index of schema version 1.
const BY_ID: &str = "by_id";
const META: &str = "meta";
const SNAPSHOTS: &str = "snapshots";
const FORKS: &str = "forks";
const SECRETS: &str = "secrets";

/// Every object store of [`SCHEMA_VERSION`].
const STORES: [&str; 5] = [LOG, META, SNAPSHOTS, FORKS, SECRETS];

/// The `DOMException` name browsers use when a site's storage is full.
const QUOTA_EXCEEDED: &str = "QuotaExceededError";

/// Log positions are stored as JavaScript numbers, exact up to 2^53.
const MAX_POSITION: f64 = 9_007_199_254_740_992.0;

/// Why an IndexedDB operation failed.
#[derive(Debug, Error)]
pub enum IdbError {
    /// The database could not be opened: IndexedDB is unavailable in this
    /// context, the browser refused, or the database was written by a newer
    /// build (its version is above [`SCHEMA_VERSION`]).
    #[error("cannot open IndexedDB database `{name}`")]
    Open {
        /// The database's name.
        name: String,
        /// What IndexedDB reported.
        #[source]
        source: OpenDbError,
    },
    /// The schema needs an upgrade, but a connection in another tab (an older
    /// build) keeps the database open. Closing that tab and retrying helps.
    #[error("opening IndexedDB database `{name}` is blocked by a connection in another tab")]
    Blocked {
        /// The database's name.
        name: String,
    },
    /// The browser's storage quota for this site is used up; nothing of the
    /// failed write was stored. The user should be told that storage is full.
    #[error("storage is full: the browser refused to store more ({op}): {message}")]
    QuotaExceeded {
        /// The store operation that failed.
        op: &'static str,
        /// The browser's message.
        message: String,
    },
    /// A transaction was aborted (by the browser, or because one of its
    /// requests failed); none of its writes were stored.
    #[error("IndexedDB transaction of {op} was aborted: {reason}")]
    Aborted {
        /// The store operation that failed.
        op: &'static str,
        /// The `DOMException` name and message the transaction recorded.
        reason: String,
    },
    /// A stored record, or the schema, is not what this build wrote.
    #[error("corrupt record in object store `{store}`: {what}")]
    Corrupt {
        /// The object store.
        store: &'static str,
        /// What is wrong.
        what: &'static str,
        /// The decoder's error, when bytes did not decode.
        #[source]
        source: Option<DecodeError>,
    },
    /// Any other error from IndexedDB or JavaScript.
    #[error("IndexedDB {op} failed: {message}")]
    Js {
        /// The store operation that failed.
        op: &'static str,
        /// The JavaScript error's name and message.
        message: String,
        /// The error.
        #[source]
        source: JsError,
    },
}

impl IdbError {
    /// Whether the error is a full storage quota ([`IdbError::QuotaExceeded`]),
    /// which the user can do something about.
    pub fn is_quota_exceeded(&self) -> bool {
        matches!(self, IdbError::QuotaExceeded { .. })
    }

    /// Classifies an error from a request or a transaction.
    fn js(op: &'static str, source: JsError) -> IdbError {
        match &source {
            JsError::DomException(e) => {
                match AsRef::<JsValue>::as_ref(e).dyn_ref::<web_sys::DomException>() {
                    Some(dom) if dom.name() == QUOTA_EXCEEDED => IdbError::QuotaExceeded {
                        op,
                        message: dom.message(),
                    },
                    Some(dom) => IdbError::Js {
                        op,
                        message: format!("{}: {}", dom.name(), dom.message()),
                        source,
                    },
                    None => IdbError::Js {
                        op,
                        message: source.to_string(),
                        source,
                    },
                }
            }
            _ => IdbError::Js {
                op,
                message: source.to_string(),
                source,
            },
        }
    }

    /// Classifies the error a transaction recorded when it aborted.
    fn aborted(op: &'static str, error: &web_sys::DomException) -> IdbError {
        if error.name() == QUOTA_EXCEEDED {
            IdbError::QuotaExceeded {
                op,
                message: error.message(),
            }
        } else {
            IdbError::Aborted {
                op,
                reason: format!("{}: {}", error.name(), error.message()),
            }
        }
    }

    fn corrupt(store: &'static str, what: &'static str) -> IdbError {
        IdbError::Corrupt {
            store,
            what,
            source: None,
        }
    }

    fn undecodable(store: &'static str, what: &'static str, source: DecodeError) -> IdbError {
        IdbError::Corrupt {
            store,
            what,
            source: Some(source),
        }
    }
}

/// Attaches the store operation to an IndexedDB error.
trait During<T> {
    fn during(self, op: &'static str) -> Result<T, IdbError>;
}

impl<T> During<T> for Result<T, JsError> {
    fn during(self, op: &'static str) -> Result<T, IdbError> {
        self.map_err(|e| IdbError::js(op, e))
    }
}

/// A [`Store`] on IndexedDB, for a browser device.
///
/// It holds one connection, closed when the store is dropped; every call
/// runs in its own transaction. Share it between engines of one worker with
/// an `Rc`. See the [module docs](self) for the layout.
pub struct IdbStore {
    db: Database,
    name: String,
    /// Closes the connection when another tab needs a newer schema; kept
    /// alive as long as the connection.
    _on_version_change: Closure<dyn FnMut()>,
}

impl fmt::Debug for IdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdbStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Set by the open request's `blocked` event.
#[derive(Default)]
struct BlockedSignal {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl IdbStore {
    /// Opens the database `db_name`, creating it, or upgrading its schema to
    /// [`SCHEMA_VERSION`], when needed.
    ///
    /// Fails with [`IdbError::Blocked`] rather than waiting when another tab
    /// holds the database open at an older version, with [`IdbError::Open`]
    /// when IndexedDB refuses (for instance a database from a newer build),
    /// and with [`IdbError::Corrupt`] when a database of that name exists
    /// without this schema's object stores.
    pub async fn open(db_name: &str) -> Result<IdbStore, IdbError> {
        Self::open_version(db_name, SCHEMA_VERSION).await
    }

    /// [`IdbStore::open`] at any version, so that tests can play a newer
    /// build.
    async fn open_version(db_name: &str, version: u32) -> Result<IdbStore, IdbError> {
        let open_failed = |source: OpenDbError| IdbError::Open {
            name: db_name.to_owned(),
            source,
        };
        let blocked = Rc::new(BlockedSignal::default());
        let request = Database::open(db_name)
            .with_version(version)
            .with_on_blocked({
                let blocked = Rc::clone(&blocked);
                move |_event| {
                    blocked.fired.set(true);
                    if let Some(waker) = blocked.waker.take() {
                        waker.wake();
                    }
                    Ok(())
                }
            })
            .with_on_upgrade_needed(upgrade)
            .build()
            .map_err(open_failed)?;
        let raw_request: web_sys::IdbOpenDbRequest = request.as_sys().clone();
        let opened = {
            let mut request = pin!(request);
            poll_fn(|cx| match request.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(Some(result)),
                Poll::Pending if blocked.fired.get() => Poll::Ready(None),
                Poll::Pending => {
                    blocked.waker.replace(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await
            // The request future is dropped here, which detaches its
            // handlers from the request.
        };
        let db = match opened {
            Some(result) => result.map_err(open_failed)?,
            None => {
                abandon(&raw_request);
                return Err(IdbError::Blocked {
                    name: db_name.to_owned(),
                });
            }
        };
        let present: BTreeSet<String> = db.object_store_names().collect();
        if let Some(missing) = STORES.into_iter().find(|s| !present.contains(*s)) {
            db.close();
            return Err(IdbError::corrupt(
                missing,
                "the object store is missing: the database was not created by CivicBase",
            ));
        }
        let raw_db: web_sys::IdbDatabase =
            db.as_sys().unchecked_ref::<web_sys::IdbDatabase>().clone();
        let on_version_change = Closure::<dyn FnMut()>::new({
            let raw_db = raw_db.clone();
            move || raw_db.close()
        });
        raw_db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(IdbStore {
            db,
            name: db_name.to_owned(),
            _on_version_change: on_version_change,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn raw_db(&self) -> &web_sys::IdbDatabase {
        self.db.as_sys().unchecked_ref()
    }

    /// A readonly transaction over `stores`. Read transactions are dropped
    /// once their requests are answered, which aborts them: there is nothing
    /// to commit.
    fn read(&self, stores: &[&str], op: &'static str) -> Result<Transaction<'_>, IdbError> {
        self.db
            .transaction(stores)
            .with_mode(TransactionMode::Readonly)
            .build()
            .during(op)
    }

    /// A readwrite transaction over `stores`; commit it with [`commit`].
    fn write(
        &self,
        stores: &[&str],
        durability: TransactionDurability,
        op: &'static str,
    ) -> Result<Transaction<'_>, IdbError> {
        self.db
            .transaction(stores)
            .with_mode(TransactionMode::Readwrite)
            .with_options(TransactionOptions::new().with_durability(durability))
            .build()
            .during(op)
    }

    /// Decoded `meta` record of a space: log length and version vector.
    async fn meta(&self, space: &SpaceId, op: &'static str) -> Result<Meta, IdbError> {
        let tx = self.read(&[META], op)?;
        let meta = tx.object_store(META).during(op)?;
        let value = get(&meta, space_key(space)).during(op)?.await.during(op)?;
        value.map_or(Ok(Meta::default()), Meta::decode)
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        let raw = self.raw_db();
        raw.set_onversionchange(None);
        raw.close();
    }
}

/// Brings a database from `event.old_version()` to [`SCHEMA_VERSION`]. Each
/// version's step runs if the database is older than it.
fn upgrade(event: VersionChangeEvent, db: Database) -> indexed_db_futures::Result<()> {
    let old = event.old_version();
    if old < 1.0 {
        for store in STORES {
            db.create_object_store(store).build()?;
        }
    }
    if (1.0..2.0).contains(&old) {
        // Version 1's one-entry records are valid segments; its id index
        // is no longer kept.
        db.delete_object_store(BY_ID)?;
    }
    Ok(())
}

/// Makes sure an open request that nobody waits for any more has no effect.
///
/// A blocked request stays queued until the other connection closes. If it
/// then runs, its upgrade is aborted (the database keeps its version and its
/// data; a retry upgrades it), and a connection it opens without upgrading is
/// closed.
fn abandon(request: &web_sys::IdbOpenDbRequest) {
    let on_upgrade = Closure::once_into_js({
        let request = request.clone();
        move || {
            if let Some(tx) = request.transaction() {
                // Fails only if the transaction is already finished.
                let _ = tx.abort();
            }
        }
    });
    request.set_onupgradeneeded(Some(on_upgrade.unchecked_ref()));
    let on_success = Closure::once_into_js({
        let request = request.clone();
        move || {
            if let Ok(db) = request
                .result()
                .and_then(|r| r.dyn_into::<web_sys::IdbDatabase>())
            {
                db.close();
            }
        }
    });
    request.set_onsuccess(Some(on_success.unchecked_ref()));
}

/// Commits `tx` and waits until IndexedDB reports it complete.
async fn commit(tx: Transaction<'_>, op: &'static str) -> Result<(), IdbError> {
    // When a transaction aborts, the library reports only that it aborted;
    // why (a full disk, for one) is on the transaction's `error`.
    let raw: web_sys::IdbTransaction = tx
        .as_sys()
        .unchecked_ref::<web_sys::IdbTransaction>()
        .clone();
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) => Err(match raw.error() {
            Some(error) => IdbError::aborted(op, &error),
            None if matches!(
                e,
                JsError::MissingData(UnexpectedDataError::TransactionAborted)
            ) =>
            {
                IdbError::Aborted {
                    op,
                    reason: "no error was recorded".to_owned(),
                }
            }
            None => IdbError::js(op, e),
        }),
    }
}

/// Sends a `get` (requests go out when built) and returns its answer.
fn get(
    store: &ObjectStore<'_>,
    key: JsValue,
) -> indexed_db_futures::Result<impl Future<Output = indexed_db_futures::Result<Option<JsValue>>>> {
    store.get::<JsValue, JsValue, JsValue>(key).primitive()
}

/// Sends a `put`. Its outcome is the transaction's: a failed request aborts
/// the transaction, and [`commit`] reports why.
fn put(store: &ObjectStore<'_>, key: JsValue, value: JsValue) -> Result<(), JsError> {
    store
        .put(value)
        .with_key(key)
        .without_key_type()
        .primitive()
        .map(drop)
}

/// Every value whose key is in `range`, in key order.
async fn get_range(
    store: &ObjectStore<'_>,
    range: KeyRange<JsValue>,
) -> indexed_db_futures::Result<Vec<JsValue>> {
    store
        .get_all::<JsValue>()
        .with_query::<JsValue, _>(range)
        .primitive()?
        .await?
        .collect()
}

/// Every key in `range`, in key order.
async fn get_range_keys(
    store: &ObjectStore<'_>,
    range: KeyRange<JsValue>,
) -> indexed_db_futures::Result<Vec<JsValue>> {
    store
        .get_all_keys::<JsValue>()
        .with_query::<JsValue, _>(range)
        .primitive()?
        .await?
        .collect()
}

/// Every key of `store`, in key order.
async fn all_keys(store: &ObjectStore<'_>) -> indexed_db_futures::Result<Vec<JsValue>> {
    store
        .get_all_keys::<JsValue>()
        .primitive()?
        .await?
        .collect()
}

fn space_key(space: &SpaceId) -> JsValue {
    JsValue::from_str(&space.to_hex())
}

/// `[space, second]`.
fn pair(space: &SpaceId, second: &JsValue) -> JsValue {
    Array::of2(&space_key(space), second).into()
}

fn log_key(space: &SpaceId, position: u64) -> JsValue {
    // Positions stay far below 2^53, where f64 is exact.
    pair(space, &JsValue::from_f64(position as f64))
}

/// Every `[space, …]` key: `[space]` sorts before them (a prefix is
/// smaller) and `[space, []]` after them (arrays sort above numbers and
/// strings).
fn space_range(space: &SpaceId) -> KeyRange<JsValue> {
    KeyRange::Bound(
        Array::of1(&space_key(space)).into(),
        false,
        pair(space, &Array::new().into()),
        false,
    )
}

fn bytes_value(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).into()
}

fn value_bytes(store: &'static str, value: JsValue) -> Result<Vec<u8>, IdbError> {
    value
        .dyn_into::<Uint8Array>()
        .map(|a| a.to_vec())
        .map_err(|_| IdbError::corrupt(store, "the value is not a Uint8Array"))
}

/// The entries of a segment, in order.
fn decode_segment(value: JsValue) -> Result<Vec<Entry>, IdbError> {
    let bytes = value_bytes(LOG, value)?;
    let mut r = Reader::new(&bytes);
    let mut entries = Vec::new();
    while r.remaining() > 0 {
        entries.push(
            Entry::decode_from(&mut r)
                .map_err(|e| IdbError::undecodable(LOG, "an entry does not decode", e))?,
        );
    }
    if entries.is_empty() {
        return Err(IdbError::corrupt(LOG, "a segment is empty"));
    }
    Ok(entries)
}

/// The log position in a `log` key.
fn decode_position(key: &JsValue) -> Result<u64, IdbError> {
    let position = key.dyn_ref::<Array>().map(|a| a.get(1)).unwrap_or_default();
    match position.as_f64() {
        Some(p) if p >= 0.0 && p.fract() == 0.0 && p < MAX_POSITION => Ok(p as u64),
        _ => Err(IdbError::corrupt(LOG, "the key is not a log position")),
    }
}

fn decode_space(store: &'static str, key: &JsValue) -> Result<SpaceId, IdbError> {
    key.as_string()
        .and_then(|hex| SpaceId::from_hex(&hex).ok())
        .ok_or_else(|| IdbError::corrupt(store, "the key is not a space id"))
}

/// A space's `meta` record.
#[derive(Default)]
struct Meta {
    len: u64,
    vv: VersionVector,
    /// First position of the last segment (absent in version 1 records).
    tail: Option<u64>,
}

impl Meta {
    fn encode(&self) -> JsValue {
        let mut w = Writer::default();
        w.varint(self.len);
        self.vv.encode(&mut w);
        if let Some(tail) = self.tail {
            w.varint(tail);
        }
        bytes_value(&w.finish())
    }

    fn decode(value: JsValue) -> Result<Meta, IdbError> {
        let bytes = value_bytes(META, value)?;
        let mut r = Reader::new(&bytes);
        let undecodable =
            |e| IdbError::undecodable(META, "the log length and version vector do not decode", e);
        let len = r.varint().map_err(undecodable)?;
        let vv = VersionVector::decode(&mut r).map_err(undecodable)?;
        let tail = if r.remaining() == 0 {
            None
        } else {
            Some(r.varint().map_err(undecodable)?)
        };
        r.finish().map_err(undecodable)?;
        if tail.is_some_and(|t| t >= len) {
            return Err(IdbError::corrupt(
                META,
                "the last segment starts past the end of the log",
            ));
        }
        Ok(Meta { len, vv, tail })
    }
}

fn encode_snapshot(snapshot: &Snapshot) -> JsValue {
    let mut w = Writer::with_capacity(snapshot.bytes.len() + 10);
    w.varint(snapshot.entries);
    w.raw(&snapshot.bytes);
    bytes_value(&w.finish())
}

fn decode_snapshot(value: JsValue) -> Result<Snapshot, IdbError> {
    let bytes = value_bytes(SNAPSHOTS, value)?;
    let mut r = Reader::new(&bytes);
    let entries = r
        .varint()
        .map_err(|e| IdbError::undecodable(SNAPSHOTS, "the snapshot does not decode", e))?;
    Ok(Snapshot {
        entries,
        bytes: bytes[r.position()..].to_vec(),
    })
}

impl Store for IdbStore {
    type Error = IdbError;

    async fn spaces(&self) -> Result<Vec<SpaceId>, IdbError> {
        const OP: &str = "spaces";
        let tx = self.read(&[META, SNAPSHOTS, FORKS], OP)?;
        let meta = tx.object_store(META).during(OP)?;
        let snapshots = tx.object_store(SNAPSHOTS).during(OP)?;
        let forks = tx.object_store(FORKS).during(OP)?;
        let mut spaces = BTreeSet::new();
        for key in all_keys(&meta).await.during(OP)? {
            spaces.insert(decode_space(META, &key)?);
        }
        for key in all_keys(&snapshots).await.during(OP)? {
            spaces.insert(decode_space(SNAPSHOTS, &key)?);
        }
        for key in all_keys(&forks).await.during(OP)? {
            let space = key.dyn_ref::<Array>().map(|a| a.get(0)).unwrap_or_default();
            spaces.insert(decode_space(FORKS, &space)?);
        }
        Ok(spaces.into_iter().collect())
    }

    async fn append(&self, space: &SpaceId, entries: &[Entry]) -> Result<(), IdbError> {
        const OP: &str = "append";
        let tx = self.write(&[LOG, META], TransactionDurability::Strict, OP)?;
        let log = tx.object_store(LOG).during(OP)?;
        let meta = tx.object_store(META).during(OP)?;
        // The transaction stays active while requests are pending.
        let stored = get(&meta, space_key(space)).during(OP)?.await.during(OP)?;
        let created = stored.is_none();
        let mut state = stored.map_or(Ok(Meta::default()), Meta::decode)?;
        // An entry below its author's bound is stored already, or is the
        // other branch of a fork; the log keeps one entry per seq.
        let mut fresh = Vec::new();
        for entry in entries {
            let h = entry.header();
            if h.seq >= state.vv.get(&h.author) {
                state.vv.raise(h.author, h.seq.saturating_add(1));
                fresh.push(entry);
            }
        }
        if fresh.is_empty() && !created {
            return Ok(());
        }
        // Start in the last segment if it is small, else a new one.
        let mut start = state.len;
        let mut segment = Vec::new();
        if let Some(tail) = state.tail.filter(|t| state.len - t < MERGE_BELOW) {
            if !fresh.is_empty() {
                let key = log_key(space, tail);
                if let Some(value) = get(&log, key).during(OP)?.await.during(OP)? {
                    segment = value_bytes(LOG, value)?;
                    start = tail;
                }
            }
        }
        let mut count = state.len - start;
        for entry in fresh {
            if count > 0
                && (count >= SEGMENT_ENTRIES || segment.len() + entry.encoded_len() > SEGMENT_BYTES)
            {
                put(&log, log_key(space, start), bytes_value(&segment)).during(OP)?;
                start += count;
                count = 0;
                segment.clear();
            }
            entry.encode_into(&mut segment);
            count += 1;
        }
        if count > 0 {
            put(&log, log_key(space, start), bytes_value(&segment)).during(OP)?;
            state.tail = Some(start);
            state.len = start + count;
        }
        put(&meta, space_key(space), state.encode()).during(OP)?;
        commit(tx, OP).await
    }

    async fn entries_from(&self, space: &SpaceId, from: u64) -> Result<Vec<Entry>, IdbError> {
        const OP: &str = "entries_from";
        let tx = self.read(&[LOG], OP)?;
        let log = tx.object_store(LOG).during(OP)?;
        // The segment holding `from` starts at most SEGMENT_ENTRIES - 1
        // before it.
        let first = from.saturating_sub(SEGMENT_ENTRIES - 1);
        let range = || {
            let end = pair(space, &JsValue::from_f64(f64::INFINITY));
            KeyRange::Bound(log_key(space, first), false, end, false)
        };
        // Both requests run in the one transaction, so they see the same
        // segments in the same order.
        let keys = get_range_keys(&log, range());
        let values = get_range(&log, range());
        let (keys, values) = futures_util::future::join(keys, values).await;
        let (keys, values) = (keys.during(OP)?, values.during(OP)?);
        if keys.len() != values.len() {
            return Err(IdbError::corrupt(LOG, "keys and segments do not pair up"));
        }
        let mut out = Vec::new();
        let mut expected = None;
        for (key, value) in keys.iter().zip(values) {
            let start = decode_position(key)?;
            if expected.is_some_and(|e| e != start) {
                return Err(IdbError::corrupt(LOG, "the segments leave a gap"));
            }
            let entries = decode_segment(value)?;
            let end = start + entries.len() as u64;
            expected = Some(end);
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(start) as usize;
            out.extend(entries.into_iter().skip(skip));
        }
        Ok(out)
    }

    async fn log_len(&self, space: &SpaceId) -> Result<u64, IdbError> {
        Ok(self.meta(space, "log_len").await?.len)
    }

    async fn version_vector(&self, space: &SpaceId) -> Result<VersionVector, IdbError> {
        Ok(self.meta(space, "version_vector").await?.vv)
    }

    /// Replaces the snapshot with `relaxed` durability: a snapshot lost to a
    /// power cut costs a longer replay on the next load, never data.
    async fn put_snapshot(&self, space: &SpaceId, snapshot: &Snapshot) -> Result<(), IdbError> {
        const OP: &str = "put_snapshot";
        let tx = self.write(&[SNAPSHOTS], TransactionDurability::Relaxed, OP)?;
        let snapshots = tx.object_store(SNAPSHOTS).during(OP)?;
        put(&snapshots, space_key(space), encode_snapshot(snapshot)).during(OP)?;
        commit(tx, OP).await
    }

    async fn snapshot(&self, space: &SpaceId) -> Result<Option<Snapshot>, IdbError> {
        const OP: &str = "snapshot";
        let tx = self.read(&[SNAPSHOTS], OP)?;
        let snapshots = tx.object_store(SNAPSHOTS).during(OP)?;
        get(&snapshots, space_key(space))
            .during(OP)?
            .await
            .during(OP)?
            .map(decode_snapshot)
            .transpose()
    }

    /// Keyed by the proof's hash, so storing it again changes nothing.
    async fn put_fork_proof(&self, space: &SpaceId, proof: &[u8]) -> Result<(), IdbError> {
        const OP: &str = "put_fork_proof";
        let tx = self.write(&[FORKS], TransactionDurability::Strict, OP)?;
        let forks = tx.object_store(FORKS).during(OP)?;
        let key = pair(space, &JsValue::from_str(&Hash::of(proof).to_hex()));
        put(&forks, key, bytes_value(proof)).during(OP)?;
        commit(tx, OP).await
    }

    /// In the order of their hashes.
    async fn fork_proofs(&self, space: &SpaceId) -> Result<Vec<Vec<u8>>, IdbError> {
        const OP: &str = "fork_proofs";
        let tx = self.read(&[FORKS], OP)?;
        let forks = tx.object_store(FORKS).during(OP)?;
        get_range(&forks, space_range(space))
            .await
            .during(OP)?
            .into_iter()
            .map(|v| value_bytes(FORKS, v))
            .collect()
    }

    async fn put_secret(&self, name: &str, value: &[u8]) -> Result<(), IdbError> {
        const OP: &str = "put_secret";
        let tx = self.write(&[SECRETS], TransactionDurability::Strict, OP)?;
        let secrets = tx.object_store(SECRETS).during(OP)?;
        put(&secrets, JsValue::from_str(name), bytes_value(value)).during(OP)?;
        commit(tx, OP).await
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, IdbError> {
        const OP: &str = "secret";
        let tx = self.read(&[SECRETS], OP)?;
        let secrets = tx.object_store(SECRETS).during(OP)?;
        get(&secrets, JsValue::from_str(name))
            .during(OP)?
            .await
            .during(OP)?
            .map(|v| value_bytes(SECRETS, v))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

    use super::*;

    wasm_bindgen_test_configure!(run_in_dedicated_worker);

    /// A newer build whose upgrade is blocked by a connection that stays open
    /// gets `Blocked`, and its abandoned request changes nothing when the
    /// connection finally closes.
    #[wasm_bindgen_test]
    async fn a_blocked_upgrade_fails_and_leaves_the_database_alone() {
        let name = format!(
            "civicbase-unit-blocked-{}",
            (js_sys::Math::random() * 1e12) as u64
        );
        // An older build's connection, which ignores `versionchange`.
        let old = Database::open(name.as_str())
            .with_version(SCHEMA_VERSION)
            .with_on_upgrade_needed(upgrade)
            .await
            .expect("open the old connection");
        let err = IdbStore::open_version(&name, SCHEMA_VERSION + 1)
            .await
            .expect_err("the upgrade is blocked");
        assert!(matches!(err, IdbError::Blocked { .. }), "{err:?}");
        old.close();
        // Open requests for one database run in order, so this one runs after
        // the abandoned upgrade, which must have been aborted.
        let after = Database::open(name.as_str())
            .await
            .expect("open after the old connection closed");
        assert_eq!(after.version(), f64::from(SCHEMA_VERSION));
        after.close();
        IdbStore::open(&name)
            .await
            .expect("this build still opens the database");
    }
}
