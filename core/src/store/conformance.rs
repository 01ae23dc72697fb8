//! The store conformance suite: every [`Store`] implementation runs these.
//!
//! Each check takes a fresh, empty store and panics with a message on
//! failure. Run them all with [`crate::store_conformance_tests!`]:
//!
//! ```ignore
//! // native, for a store whose futures complete without a runtime
//! civicbase_core::store_conformance_tests!(native, async { MyStore::open_temp() });
//! // in a browser, under wasm-bindgen-test
//! civicbase_core::store_conformance_tests!(wasm, async { IdbStore::open("test").await.unwrap() });
//! ```

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::{encode_fork_proof, load_replica, persist_applied, Store};
use crate::entry::Entry;
use crate::hlc::Timestamp;
use crate::identity::Keypair;
use crate::op::{Op, Role};
use crate::replica::{ForkProof, NewSpace, Replica, ReplicaConfig};

/// The names of every check, for the test macro.
#[macro_export]
macro_rules! store_conformance_tests {
    (native, $make:expr) => {
        $crate::store_conformance_tests!(@each native, $make, [
            append_and_read_back, long_logs_read_from_any_position,
            append_keeps_one_entry_per_author_and_seq, append_is_idempotent,
            version_vector_tracks_appends,
            spaces_are_isolated, snapshot_round_trip, load_uses_snapshot_and_tail,
            load_without_snapshot_rebuilds, fork_proofs_persist, secrets_round_trip
        ]);
    };
    (wasm, $make:expr) => {
        $crate::store_conformance_tests!(@each wasm, $make, [
            append_and_read_back, long_logs_read_from_any_position,
            append_keeps_one_entry_per_author_and_seq, append_is_idempotent,
            version_vector_tracks_appends,
            spaces_are_isolated, snapshot_round_trip, load_uses_snapshot_and_tail,
            load_without_snapshot_rebuilds, fork_proofs_persist, secrets_round_trip
        ]);
    };
    (@each native, $make:expr, [$($name:ident),*]) => {
        $(
            #[test]
            fn $name() {
                $crate::store::conformance::block_on(async {
                    let store = $make.await;
                    $crate::store::conformance::$name(&store).await;
                });
            }
        )*
    };
    (@each wasm, $make:expr, [$($name:ident),*]) => {
        $(
            #[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                let store = $make.await;
                $crate::store::conformance::$name(&store).await;
            }
        )*
    };
}

/// Runs a future whose awaits complete without an external event source
/// (in-memory or synchronous-on-the-inside stores) to completion.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

const NOW: u64 = 1_750_000_000_000;

/// A small space with two members and some activity, built deterministically.
pub fn fixture(tag: u8) -> (Replica, Keypair, Keypair) {
    let alice = Keypair::from_seed([tag; 32]);
    let bob = Keypair::from_seed([tag.wrapping_add(100); 32]);
    let (mut r, _) = Replica::create(
        &alice,
        NewSpace {
            name: format!("space {tag}"),
            founder_name: "Alice".into(),
            default_credit_limit: 5,
        },
        NOW,
        ReplicaConfig::default(),
    )
    .expect("genesis");
    let invite = Keypair::from_seed([tag.wrapping_add(200); 32]);
    r.author(
        &alice,
        vec![Op::Invite {
            key: invite.author(),
            role: Role::Member,
            expires_ms: NOW + 1_000_000,
            uses: 1,
        }],
        NOW + 1,
    )
    .expect("invite");
    let statement = crate::state::members::join_statement(&r.space(), &bob.author());
    r.author(
        &bob,
        vec![Op::Join {
            invite: invite.author(),
            proof: invite.sign(statement.as_bytes()),
            name: "Bob".into(),
        }],
        NOW + 2,
    )
    .expect("join");
    for i in 0..6u64 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        r.author(
            who,
            vec![Op::PostNotice {
                title: format!("notice {i}"),
                body: "body".into(),
            }],
            NOW + 10 + i,
        )
        .expect("post");
    }
    (r, alice, bob)
}

fn all_entries(r: &Replica) -> Vec<Entry> {
    r.log().cloned().collect()
}

/// Appended entries come back in order, by id, and counted.
pub async fn append_and_read_back<S: Store>(store: &S) {
    let (r, ..) = fixture(1);
    let entries = all_entries(&r);
    store
        .append(&r.space(), &entries[..3])
        .await
        .expect("append");
    store
        .append(&r.space(), &entries[3..])
        .await
        .expect("append");
    let back = store.entries_from(&r.space(), 0).await.expect("read");
    assert_eq!(back, entries, "log must come back in append order");
    let tail = store.entries_from(&r.space(), 5).await.expect("read");
    assert_eq!(tail, entries[5..].to_vec(), "reading from a position");
    assert_eq!(
        store.log_len(&r.space()).await.expect("len"),
        entries.len() as u64
    );
    assert!(
        store
            .entries_from(&r.space(), entries.len() as u64)
            .await
            .expect("read")
            .is_empty(),
        "nothing after the end"
    );
}

/// A long log written in batches of very different sizes reads back whole
/// from any position, across however the store groups its records.
pub async fn long_logs_read_from_any_position<S: Store>(store: &S) {
    let (mut r, alice, bob) = fixture(10);
    for i in 0..700u64 {
        let who = if i % 3 == 0 { &bob } else { &alice };
        r.author(
            who,
            vec![Op::PostNotice {
                title: format!("notice {i}"),
                body: "x".repeat((i % 50) as usize),
            }],
            NOW + 100 + i,
        )
        .expect("post");
    }
    let entries = all_entries(&r);
    let mut at = 0;
    for size in [1, 1, 300, 5, 1, 1, 1, 392] {
        let end = (at + size).min(entries.len());
        store
            .append(&r.space(), &entries[at..end])
            .await
            .expect("append");
        at = end;
    }
    store
        .append(&r.space(), &entries[at..])
        .await
        .expect("append the rest");
    assert_eq!(
        store.log_len(&r.space()).await.expect("len"),
        entries.len() as u64
    );
    let mut positions: Vec<usize> = (0..entries.len()).step_by(37).collect();
    positions.extend([1, 2, 255, 256, 257, 301, 302, 306, 310, 511, 512, 700]);
    positions.push(entries.len() - 1);
    for from in positions {
        let back = store
            .entries_from(&r.space(), from as u64)
            .await
            .expect("read");
        assert!(
            back == entries[from..],
            "reading from position {from} of {}",
            entries.len()
        );
    }
}

/// The log keeps one entry per author and seq: a second entry at a stored
/// seq (the other branch of a fork) is not appended.
pub async fn append_keeps_one_entry_per_author_and_seq<S: Store>(store: &S) {
    let (r, _, bob) = fixture(11);
    let entries = all_entries(&r);
    store.append(&r.space(), &entries).await.expect("append");
    let last = r.version_vector().get(&bob.author()) - 1;
    let fork = Entry::sign(
        &bob,
        r.space(),
        last,
        r.entry_at(&bob.author(), last - 1),
        Vec::new(),
        Timestamp::from_millis(NOW + 500),
        crate::op::encode_payload(&[Op::PostNotice {
            title: "the other branch".into(),
            body: String::new(),
        }]),
    );
    assert_ne!(Some(fork.id()), r.entry_at(&bob.author(), last));
    store
        .append(&r.space(), std::slice::from_ref(&fork))
        .await
        .expect("append the fork");
    assert_eq!(
        store.entries_from(&r.space(), 0).await.expect("read"),
        entries,
        "the fork must not enter the log"
    );
    assert_eq!(
        store.version_vector(&r.space()).await.expect("vv"),
        r.version_vector()
    );
}

/// Appending an entry twice stores it once.
pub async fn append_is_idempotent<S: Store>(store: &S) {
    let (r, ..) = fixture(2);
    let entries = all_entries(&r);
    store.append(&r.space(), &entries).await.expect("append");
    store
        .append(&r.space(), &entries[2..5])
        .await
        .expect("append again");
    assert_eq!(
        store.log_len(&r.space()).await.expect("len"),
        entries.len() as u64
    );
    assert_eq!(
        store.entries_from(&r.space(), 0).await.expect("read"),
        entries
    );
}

/// The stored version vector equals the replica's.
pub async fn version_vector_tracks_appends<S: Store>(store: &S) {
    let (r, ..) = fixture(3);
    store
        .append(&r.space(), &all_entries(&r))
        .await
        .expect("append");
    assert_eq!(
        store.version_vector(&r.space()).await.expect("vv"),
        r.version_vector()
    );
}

/// Two spaces never see each other's entries.
pub async fn spaces_are_isolated<S: Store>(store: &S) {
    let (a, ..) = fixture(4);
    let (b, ..) = fixture(5);
    store
        .append(&a.space(), &all_entries(&a))
        .await
        .expect("append a");
    store
        .append(&b.space(), &all_entries(&b)[..2])
        .await
        .expect("append b");
    let mut spaces = store.spaces().await.expect("spaces");
    spaces.sort();
    let mut expected = vec![a.space(), b.space()];
    expected.sort();
    assert_eq!(spaces, expected);
    assert_eq!(store.log_len(&b.space()).await.expect("len"), 2);
    assert_eq!(
        store.entries_from(&a.space(), 0).await.expect("read"),
        all_entries(&a)
    );
}

/// The latest snapshot is returned.
pub async fn snapshot_round_trip<S: Store>(store: &S) {
    let (r, ..) = fixture(6);
    assert!(store
        .snapshot(&r.space())
        .await
        .expect("snapshot")
        .is_none());
    let s1 = r.snapshot();
    store.put_snapshot(&r.space(), &s1).await.expect("put");
    let mut s2 = s1.clone();
    s2.entries -= 1;
    store.put_snapshot(&r.space(), &s2).await.expect("put");
    assert_eq!(store.snapshot(&r.space()).await.expect("get"), Some(s2));
}

/// Loading restores the snapshot and replays only the tail, giving the same
/// state as the original replica.
pub async fn load_uses_snapshot_and_tail<S: Store>(store: &S) {
    let (mut r, alice, _) = fixture(7);
    store
        .append(&r.space(), &all_entries(&r))
        .await
        .expect("append");
    store
        .put_snapshot(&r.space(), &r.snapshot())
        .await
        .expect("snapshot");
    let covered = r.len() as u64;
    let mut applied = Vec::new();
    for i in 0..3u64 {
        let e = r
            .author(
                &alice,
                vec![Op::PostNotice {
                    title: format!("after snapshot {i}"),
                    body: String::new(),
                }],
                NOW + 100 + i,
            )
            .expect("post");
        applied.push(e.id());
    }
    persist_applied(store, &r, &applied).await.expect("persist");
    let (loaded, report) = load_replica(store, &r.space(), NOW + 200, ReplicaConfig::default())
        .await
        .expect("load");
    assert_eq!(report.from_snapshot, covered, "snapshot must be used");
    assert_eq!(report.replayed, 3, "only the tail is replayed");
    assert_eq!(report.refused, 0);
    assert_eq!(loaded.state_hash(), r.state_hash());
    assert_eq!(loaded.version_vector(), r.version_vector());
}

/// With no snapshot, loading replays everything to the same state.
pub async fn load_without_snapshot_rebuilds<S: Store>(store: &S) {
    let (r, ..) = fixture(8);
    store
        .append(&r.space(), &all_entries(&r))
        .await
        .expect("append");
    let (loaded, report) = load_replica(store, &r.space(), NOW + 200, ReplicaConfig::default())
        .await
        .expect("load");
    assert_eq!(report.from_snapshot, 0);
    assert_eq!(report.replayed, r.len() as u64);
    assert_eq!(loaded.state_hash(), r.state_hash());
}

/// Fork proofs survive and are restored on load.
pub async fn fork_proofs_persist<S: Store>(store: &S) {
    let (r, _, bob) = fixture(9);
    // Bob signs two different entries at the same seq.
    let seq = r.version_vector().get(&bob.author());
    let prev = r.entry_at(&bob.author(), seq - 1);
    let mk = |title: &str| {
        Entry::sign(
            &bob,
            r.space(),
            seq,
            prev,
            Vec::new(),
            Timestamp::from_millis(NOW + 500),
            crate::op::encode_payload(&[Op::PostNotice {
                title: title.into(),
                body: String::new(),
            }]),
        )
    };
    let (x, y) = (mk("one"), mk("two"));
    let proof = ForkProof::verify(
        &r.space(),
        (x.header_bytes().to_vec(), *x.signature()),
        (y.header_bytes().to_vec(), *y.signature()),
    )
    .expect("valid proof");
    let bytes = encode_fork_proof(&proof);
    store
        .append(&r.space(), &all_entries(&r))
        .await
        .expect("append");
    store.put_fork_proof(&r.space(), &bytes).await.expect("put");
    store
        .put_fork_proof(&r.space(), &bytes)
        .await
        .expect("put twice");
    assert_eq!(
        store.fork_proofs(&r.space()).await.expect("get"),
        vec![bytes]
    );
    let (loaded, _) = load_replica(store, &r.space(), NOW + 600, ReplicaConfig::default())
        .await
        .expect("load");
    assert_eq!(
        loaded.forks().count(),
        1,
        "the fork flag must survive a reload"
    );
}

/// Named secrets round-trip and overwrite.
pub async fn secrets_round_trip<S: Store>(store: &S) {
    assert!(store.secret("device").await.expect("get").is_none());
    store.put_secret("device", &[1, 2, 3]).await.expect("put");
    store.put_secret("device", &[4, 5]).await.expect("put");
    assert_eq!(store.secret("device").await.expect("get"), Some(vec![4, 5]));
}
