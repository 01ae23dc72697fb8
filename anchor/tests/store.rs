//! The anchor's store: the core's conformance suite, and what a restart of
//! the process must keep.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use civicbase_anchor::store::RedbStore;
use civicbase_core::entry::Entry;
use civicbase_core::store::conformance::{block_on, fixture};
use civicbase_core::store::Store;

/// A fresh directory under the system's temporary directory, removed when
/// dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "civicbase-anchor-store-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("anchor.redb")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store in its own directory, which lives as long as the store (the
/// directory handle is leaked into the test's lifetime by the macro's
/// closure, so keep it simple: one directory per test, removed at exit).
async fn fresh() -> RedbStore {
    let dir = TempDir::new();
    let store = RedbStore::open(dir.db()).expect("open");
    // Keep the directory for the rest of the test process.
    std::mem::forget(dir);
    store
}

civicbase_core::store_conformance_tests!(native, async { fresh().await });

#[test]
fn reopening_after_appends_loses_and_duplicates_nothing() {
    let dir = TempDir::new();
    let (r, ..) = fixture(40);
    let entries: Vec<Entry> = r.log().cloned().collect();
    let space = r.space();
    {
        let store = RedbStore::open(dir.db()).expect("open");
        block_on(store.append(&space, &entries[..5])).expect("append");
        block_on(store.put_secret("replicated-spaces", space.as_bytes())).expect("secret");
    }
    {
        // The same entries again after a restart, plus the rest: the
        // already-stored ones are skipped.
        let store = RedbStore::open(dir.db()).expect("reopen");
        assert_eq!(block_on(store.log_len(&space)).expect("len"), 5);
        block_on(store.append(&space, &entries)).expect("append all");
        block_on(store.append(&space, &entries[2..7])).expect("append some again");
    }
    let store = RedbStore::open(dir.db()).expect("reopen again");
    let back = block_on(store.entries_from(&space, 0)).expect("read");
    assert_eq!(back, entries, "every entry once, in append order");
    assert_eq!(
        block_on(store.log_len(&space)).expect("len"),
        entries.len() as u64
    );
    assert_eq!(
        block_on(store.version_vector(&space)).expect("vv"),
        r.version_vector()
    );
    assert_eq!(block_on(store.spaces()).expect("spaces"), vec![space]);
    assert_eq!(
        block_on(store.secret("replicated-spaces")).expect("secret"),
        Some(space.as_bytes().to_vec())
    );
    for from in 0..=entries.len() {
        assert_eq!(
            block_on(store.entries_from(&space, from as u64)).expect("read"),
            entries[from..].to_vec()
        );
    }
}

#[test]
fn a_second_writer_on_the_same_file_is_refused_with_a_clear_error() {
    let dir = TempDir::new();
    let _first = RedbStore::open(dir.db()).expect("open");
    let err = RedbStore::open(dir.db()).expect_err("second writer");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
}

#[test]
fn readers_and_backups_see_a_consistent_copy_while_the_writer_runs() {
    let dir = TempDir::new();
    let (r, ..) = fixture(41);
    let entries: Vec<Entry> = r.log().cloned().collect();
    let space = r.space();
    let writer = RedbStore::open(dir.db()).expect("open");
    block_on(writer.append(&space, &entries[..6])).expect("append");

    let reader = RedbStore::open_read_only(dir.db()).expect("read-only");
    assert_eq!(block_on(reader.log_len(&space)).expect("len"), 6);
    // The reader follows the writer's commits.
    block_on(writer.append(&space, &entries[6..])).expect("append");
    assert_eq!(
        block_on(reader.entries_from(&space, 0)).expect("read"),
        entries
    );
    let refused = block_on(reader.put_secret("x", b"y")).expect_err("read-only");
    assert!(refused.to_string().contains("read-only"), "{refused}");

    let copy = dir.0.join("backup.redb");
    let report = reader.backup(&copy).expect("backup");
    assert_eq!(report.entries, entries.len() as u64);
    assert_eq!(report.spaces, 1);
    assert!(reader.backup(&copy).is_err(), "a backup never overwrites");
    drop(writer);
    let restored = RedbStore::open(&copy).expect("open the copy");
    assert_eq!(
        block_on(restored.entries_from(&space, 0)).expect("read"),
        entries
    );
    assert_eq!(
        block_on(restored.version_vector(&space)).expect("vv"),
        r.version_vector()
    );
}

#[test]
fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let dir = TempDir::new();
    std::fs::write(dir.db(), b"this is not a database, it is a text file").expect("write");
    let err = RedbStore::open(dir.db()).expect_err("not a database");
    assert!(
        err.to_string().contains("cannot open the database"),
        "{err}"
    );
    // The file was not touched.
    assert_eq!(
        std::fs::read(dir.db()).expect("read"),
        b"this is not a database, it is a text file"
    );
}
