//! The IndexedDB store in headless Chromium, inside a dedicated worker (where
//! the engine runs): the core's store conformance suite, then what only a
//! persistent store has to prove.
//!
//! Every test opens its own database under a fresh name, so tests share no
//! state even though they run in one browser profile.

#![cfg(target_arch = "wasm32")]

use std::cell::Cell;

use civicbase_core::entry::Entry;
use civicbase_core::hlc::Timestamp;
use civicbase_core::identity::Keypair;
use civicbase_core::store::conformance::fixture;
use civicbase_core::store::{MemoryStore, Store};
use civicbase_worker::idb::{IdbError, IdbStore, SCHEMA_VERSION};
use indexed_db_futures::database::Database;
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

thread_local! {
    static DATABASES: Cell<u32> = const { Cell::new(0) };
}

/// A database name no other test (nor an earlier run) uses.
fn fresh_name() -> String {
    let n = DATABASES.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    let salt = (js_sys::Math::random() * 1e12) as u64;
    format!("civicbase-test-{n}-{salt}")
}

async fn fresh_store() -> IdbStore {
    IdbStore::open(&fresh_name())
        .await
        .expect("open a fresh database")
}

civicbase_core::store_conformance_tests!(wasm, async { fresh_store().await });

/// The fixture space's whole log.
fn fixture_log(tag: u8) -> (civicbase_core::Replica, Vec<Entry>) {
    let (replica, ..) = fixture(tag);
    let entries = replica.log().cloned().collect();
    (replica, entries)
}

#[wasm_bindgen_test]
async fn data_survives_closing_and_reopening() {
    let name = fresh_name();
    let (replica, entries) = fixture_log(20);
    let space = replica.space();
    let snapshot = replica.snapshot();
    {
        let store = IdbStore::open(&name).await.expect("open");
        store.append(&space, &entries[..4]).await.expect("append");
        store.append(&space, &entries[4..]).await.expect("append");
        store
            .put_snapshot(&space, &snapshot)
            .await
            .expect("snapshot");
        store.put_fork_proof(&space, b"proof").await.expect("fork");
        store.put_secret("device", &[7; 32]).await.expect("secret");
        // Dropping the store closes the connection.
    }
    let store = IdbStore::open(&name).await.expect("reopen");
    assert_eq!(store.spaces().await.expect("spaces"), vec![space]);
    assert_eq!(store.entries_from(&space, 0).await.expect("read"), entries);
    assert_eq!(
        store.log_len(&space).await.expect("len"),
        entries.len() as u64
    );
    assert_eq!(
        store.version_vector(&space).await.expect("vv"),
        replica.version_vector()
    );
    assert_eq!(
        store.entries_from(&space, 3).await.expect("read"),
        entries[3..].to_vec()
    );
    assert_eq!(
        store.snapshot(&space).await.expect("snapshot"),
        Some(snapshot)
    );
    assert_eq!(
        store.fork_proofs(&space).await.expect("forks"),
        vec![b"proof".to_vec()]
    );
    assert_eq!(
        store.secret("device").await.expect("secret"),
        Some(vec![7; 32])
    );
}

#[wasm_bindgen_test]
async fn a_batch_repeating_an_id_stores_it_once() {
    let (replica, entries) = fixture_log(21);
    let space = replica.space();
    let batch = vec![
        entries[0].clone(),
        entries[1].clone(),
        entries[1].clone(),
        entries[2].clone(),
        entries[0].clone(),
    ];
    let store = fresh_store().await;
    store.append(&space, &batch).await.expect("append");
    assert_eq!(
        store.entries_from(&space, 0).await.expect("read"),
        entries[..3].to_vec()
    );
    assert_eq!(store.log_len(&space).await.expect("len"), 3);
    // The version vector is the one the in-memory store computes.
    let memory = MemoryStore::new();
    memory.append(&space, &batch).await.expect("append");
    assert_eq!(
        store.version_vector(&space).await.expect("vv"),
        memory.version_vector(&space).await.expect("vv")
    );
    // A later batch continues at the next position.
    store.append(&space, &entries[..5]).await.expect("append");
    assert_eq!(
        store.entries_from(&space, 3).await.expect("read"),
        entries[3..5].to_vec()
    );
    assert_eq!(store.log_len(&space).await.expect("len"), 5);
}

/// A database written by schema version 1 (one record per entry and an id
/// index) opens: its entries read back from any position, the id index is
/// gone, and new appends continue the log.
#[wasm_bindgen_test]
async fn a_version_1_database_is_upgraded_in_place() {
    use civicbase_core::codec::Writer;
    use indexed_db_futures::prelude::*;
    use indexed_db_futures::transaction::TransactionMode;
    use js_sys::{Array, Uint8Array};

    let name = fresh_name();
    let (replica, entries) = fixture_log(24);
    let space = replica.space();
    let hex = JsValue::from_str(&space.to_hex());
    let stored = 6;
    {
        let v1 = Database::open(name.as_str())
            .with_version(1u32)
            .with_on_upgrade_needed(|_, db: Database| {
                for store in ["log", "by_id", "meta", "snapshots", "forks", "secrets"] {
                    db.create_object_store(store).build()?;
                }
                Ok(())
            })
            .await
            .expect("create a version 1 database");
        let tx = v1
            .transaction(["log", "by_id", "meta"])
            .with_mode(TransactionMode::Readwrite)
            .build()
            .expect("transaction");
        let log = tx.object_store("log").expect("log");
        let by_id = tx.object_store("by_id").expect("by_id");
        let meta = tx.object_store("meta").expect("meta");
        let mut vv = civicbase_core::VersionVector::default();
        for (position, entry) in entries[..stored].iter().enumerate() {
            let key: JsValue = Array::of2(&hex, &JsValue::from_f64(position as f64)).into();
            let value: JsValue = Uint8Array::from(entry.encode().as_slice()).into();
            log.put(value)
                .with_key(key)
                .without_key_type()
                .primitive()
                .expect("put entry");
            let id_key: JsValue = Array::of2(&hex, &JsValue::from_str(&entry.id().to_hex())).into();
            by_id
                .put(JsValue::from_f64(position as f64))
                .with_key(id_key)
                .without_key_type()
                .primitive()
                .expect("put id");
            vv.raise(entry.header().author, entry.header().seq + 1);
        }
        let mut w = Writer::default();
        w.varint(stored as u64);
        vv.encode(&mut w);
        let value: JsValue = Uint8Array::from(w.finish().as_slice()).into();
        meta.put(value)
            .with_key(hex.clone())
            .without_key_type()
            .primitive()
            .expect("put meta");
        tx.commit().await.expect("commit");
        v1.close();
    }
    let store = IdbStore::open(&name).await.expect("upgrade");
    for from in 0..=stored {
        assert_eq!(
            store.entries_from(&space, from as u64).await.expect("read"),
            entries[from..stored].to_vec(),
            "reading from {from}"
        );
    }
    assert_eq!(store.version_vector(&space).await.expect("vv"), {
        let memory = MemoryStore::new();
        memory
            .append(&space, &entries[..stored])
            .await
            .expect("append");
        memory.version_vector(&space).await.expect("vv")
    });
    store
        .append(&space, &entries)
        .await
        .expect("append the rest");
    assert_eq!(store.entries_from(&space, 0).await.expect("read"), entries);
    assert_eq!(
        store.entries_from(&space, 4).await.expect("read"),
        entries[4..].to_vec()
    );
    drop(store);
    let raw = Database::open(name.as_str()).await.expect("open raw");
    let names: Vec<String> = raw.object_store_names().collect();
    assert!(!names.iter().any(|n| n == "by_id"), "{names:?}");
    assert_eq!(raw.version(), f64::from(SCHEMA_VERSION));
    raw.close();
}

#[wasm_bindgen_test]
async fn a_database_from_a_newer_build_is_refused() {
    let name = fresh_name();
    let newer = Database::open(name.as_str())
        .with_version(SCHEMA_VERSION + 1)
        .await
        .expect("create a newer database");
    newer.close();
    let err = IdbStore::open(&name).await.expect_err("must refuse");
    assert!(matches!(err, IdbError::Open { .. }), "{err:?}");
}

#[wasm_bindgen_test]
async fn a_foreign_database_of_the_same_name_is_refused() {
    let name = fresh_name();
    let foreign = Database::open(name.as_str())
        .with_version(SCHEMA_VERSION)
        .await
        .expect("create an empty database");
    foreign.close();
    let err = IdbStore::open(&name).await.expect_err("must refuse");
    assert!(matches!(err, IdbError::Corrupt { .. }), "{err:?}");
}

/// A newer build in another tab can upgrade the schema: this connection
/// closes when asked instead of blocking it.
#[wasm_bindgen_test]
async fn an_open_store_does_not_block_an_upgrade() {
    let name = fresh_name();
    let (replica, entries) = fixture_log(22);
    let store = IdbStore::open(&name).await.expect("open");
    store
        .append(&replica.space(), &entries)
        .await
        .expect("append");
    let newer = Database::open(name.as_str())
        .with_version(SCHEMA_VERSION + 1)
        .await
        .expect("the upgrade must not be blocked");
    newer.close();
    assert!(
        store.log_len(&replica.space()).await.is_err(),
        "the closed connection must report errors, not stale data"
    );
}

#[wasm_bindgen_test]
fn the_tests_run_in_a_dedicated_worker() {
    let global: Object = js_sys::global();
    assert_eq!(
        String::from(global.constructor().name()),
        "DedicatedWorkerGlobalScope"
    );
}

/// Reads a property of a JavaScript object, failing the test if it is missing.
fn property(target: &JsValue, name: &str) -> JsValue {
    let value = Reflect::get(target, &name.into()).expect("readable property");
    assert!(!value.is_undefined(), "`{name}` is missing");
    value
}

/// Opens a store in a Chromium storage bucket whose quota is `quota` bytes,
/// so that a test can fill it up (the default quota is gigabytes).
async fn store_with_quota(quota: u32) -> IdbStore {
    let global: Object = js_sys::global();
    let buckets = property(&property(&global, "navigator"), "storageBuckets");
    let open: Function = property(&buckets, "open").unchecked_into();
    let options = Object::new();
    Reflect::set(&options, &"quota".into(), &quota.into()).expect("set quota");
    let name = fresh_name();
    let bucket = open
        .call2(&buckets, &JsValue::from_str(&name), &options)
        .expect("storageBuckets.open");
    let bucket = JsFuture::from(bucket.unchecked_into::<Promise>())
        .await
        .expect("open the bucket");
    // `IdbStore::open` uses the global `indexedDB`: shadow it with the
    // bucket's factory while the store opens.
    let descriptor = Object::new();
    Reflect::set(
        &descriptor,
        &"value".into(),
        &property(&bucket, "indexedDB"),
    )
    .expect("set");
    Reflect::set(&descriptor, &"configurable".into(), &true.into()).expect("set");
    Object::define_property(&global, &"indexedDB".into(), &descriptor);
    let store = IdbStore::open(&name).await;
    Reflect::delete_property(&global, &"indexedDB".into()).expect("restore indexedDB");
    store.expect("open a store in the bucket")
}

/// Bytes that do not compress (IndexedDB compresses values), from a seeded
/// xorshift generator.
fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[wasm_bindgen_test]
async fn a_full_disk_is_reported_and_the_failed_batch_leaves_nothing() {
    const QUOTA: u32 = 1024 * 1024;
    let store = store_with_quota(QUOTA).await;
    let (replica, entries) = fixture_log(23);
    let space = replica.space();
    store.append(&space, &entries).await.expect("small append");
    // Three entries of 400 KiB each by a new author: together above the
    // quota.
    let author = Keypair::from_seed([7; 32]);
    let big: Vec<Entry> = (0..3u64)
        .map(|seq| {
            Entry::sign(
                &author,
                space,
                seq,
                None,
                Vec::new(),
                Timestamp::from_millis(seq),
                incompressible(400 * 1024, seq + 1),
            )
        })
        .collect();
    let err = store.append(&space, &big).await.expect_err("over quota");
    assert!(matches!(err, IdbError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(
        store.log_len(&space).await.expect("len"),
        entries.len() as u64,
        "the failed batch must leave the log as it was"
    );
    assert_eq!(store.entries_from(&space, 0).await.expect("read"), entries);
    assert_eq!(
        store.version_vector(&space).await.expect("vv"),
        replica.version_vector()
    );
    // Other writes report it too, and the store stays usable.
    let err = store
        .put_secret("big", &incompressible(2 * QUOTA as usize, 99))
        .await
        .expect_err("over quota");
    assert!(matches!(err, IdbError::QuotaExceeded { .. }), "{err:?}");
    store
        .append(&space, &big[..1])
        .await
        .expect("one big entry fits");
    assert_eq!(
        store.log_len(&space).await.expect("len"),
        entries.len() as u64 + 1
    );
}
