//! Adversarial ingest. Every way a peer can hand a replica a bad entry is
//! refused with its specific error, and the refused entry leaves no trace:
//! it is not stored, the version vector and state hash do not move, and a
//! third replica synced from the victim never receives it (see
//! `common::refuse`). Then forks, strong removal and concurrent removals,
//! which must resolve identically whatever order entries arrive in, and
//! bundles, which are refused whole when altered and entry by entry when an
//! attacker re-signs them.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod common;

use civicbase_core::bundle::{self, BundleError, BUNDLE_VERSION, MAGIC};
use civicbase_core::codec::{DecodeError, Writer};
use civicbase_core::entry::validate_backlink;
use civicbase_core::identity::SignatureError;
use civicbase_core::op::PAYLOAD_VERSION;
use civicbase_core::replica::IngestError;
use civicbase_core::state::OpError;
use civicbase_core::sync::EntryRejection;
use civicbase_core::{
    AuthorId, Choice, Entry, EntryError, Hash, Ingested, Keypair, Op, Replica, ReplicaConfig, Role,
    VersionVector,
};

use common::*;

// ----------------------------------------------------------------------
// 1–13: refused entries
// ----------------------------------------------------------------------

#[test]
fn entry_with_a_flipped_signature_byte_is_refused_and_not_forwarded() {
    let mut t = town();
    let honest = sign_next(&t.r, &t.alice, &[post("hello")], T);
    // A byte of the signature's R point (with these fixed keys the result
    // is not a curve point: malformed), and one of its scalar S.
    for (byte, why) in [
        (1, SignatureError::Malleable),
        (40, SignatureError::Invalid),
    ] {
        let mut sig = *honest.signature();
        sig[byte] ^= 0x01;
        let bad = Entry::from_parts(honest.header().clone(), sig, honest.payload().to_vec());
        assert_eq!(bad.id(), honest.id(), "the signature is not part of the id");
        let err = refuse(&mut t.r, &bad, T);
        assert_eq!(
            err,
            IngestError::Entry(EntryError::Signature(why)),
            "byte {byte}"
        );
    }
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn copies_of_an_entry_in_one_batch_get_the_verdict_their_bytes_deserve() {
    let mut t = town();
    let honest = sign_next(&t.r, &t.alice, &[post("twice")], T);
    let mut sig = *honest.signature();
    sig[40] ^= 0x01;
    let forged = Entry::from_parts(honest.header().clone(), sig, honest.payload().to_vec());
    let before = t.r.state_hash();
    // A forged entry twice: both copies refused, nothing taken.
    let r = t.r.ingest_batch(vec![forged.clone(), forged.clone()], T);
    let bad = Err(IngestError::Entry(EntryError::Signature(
        SignatureError::Invalid,
    )));
    assert_eq!(r, vec![bad.clone(), bad.clone()]);
    assert_eq!(t.r.state_hash(), before);
    // The forgery first and the real entry (same header, same id) after it:
    // the real one is checked on its own and taken.
    let r =
        t.r.ingest_batch(vec![forged.clone(), honest.clone(), honest.clone()], T);
    assert_eq!(r[0], bad);
    assert_eq!(r[1], Ok(Ingested::Applied(vec![honest.id()])));
    assert_eq!(r[2], Ok(Ingested::Duplicate));
    assert!(t.r.get(&honest.id()).is_some());
}

#[test]
fn entry_naming_one_author_but_signed_by_another_is_refused() {
    let mut t = town();
    // Bob's next entry, exactly as Bob would write it, but signed by Alice.
    let honest = sign_next(&t.r, &t.bob, &[post("from Bob")], T);
    let forged = Entry::from_parts(
        honest.header().clone(),
        t.alice.sign(honest.header_bytes()),
        honest.payload().to_vec(),
    );
    let err = refuse(&mut t.r, &forged, T);
    assert!(
        matches!(
            err,
            IngestError::Entry(EntryError::Signature(SignatureError::Invalid))
        ),
        "{err:?}"
    );
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn entry_with_altered_payload_is_refused_as_payload_hash_mismatch() {
    let mut t = town();
    let honest = sign_next(&t.r, &t.alice, &[post("hello")], T);
    let mut same_len = honest.payload().to_vec();
    let last = same_len.len() - 1;
    same_len[last] ^= 0x20;
    let other_op = civicbase_core::op::encode_payload(&[Op::SetRole {
        member: t.alice.author(),
        role: Role::Admin,
    }]);
    for payload in [same_len, other_op] {
        let bad = Entry::from_parts(honest.header().clone(), *honest.signature(), payload);
        let err = refuse(&mut t.r, &bad, T);
        assert_eq!(err, IngestError::Entry(EntryError::PayloadHashMismatch));
    }
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn entry_with_header_altered_after_signing_is_refused_as_bad_signature() {
    let mut t = town();
    let honest = sign_next(&t.r, &t.alice, &[post("hello")], T);
    let evil = civicbase_core::op::encode_payload(&[post("evil")]);
    let alterations: Vec<Entry> = vec![
        with_header(&honest, |h| h.timestamp = h.timestamp.next()),
        with_header(&honest, |h| h.deps.truncate(1)),
        // The attacker swaps the payload and fixes up the hash and length.
        Entry::from_parts(
            {
                let mut h = honest.header().clone();
                h.payload_hash = Hash::of(&evil);
                h.payload_len = evil.len() as u64;
                h
            },
            *honest.signature(),
            evil.clone(),
        ),
    ];
    for bad in &alterations {
        assert_ne!(bad.id(), honest.id());
        let err = refuse(&mut t.r, bad, T);
        assert!(
            matches!(
                err,
                IngestError::Entry(EntryError::Signature(SignatureError::Invalid))
            ),
            "{err:?}"
        );
    }
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn entry_by_a_weak_small_order_key_is_refused() {
    let mut t = town();
    let template = sign_next(&t.r, &key(9), &[post("weak")], T);
    let mut small_order = [0u8; 32];
    small_order[0] = 1; // the identity point
    let bad = with_header(&template, |h| h.author = AuthorId(small_order));
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(
        err,
        IngestError::Entry(EntryError::Signature(SignatureError::WeakKey))
    );
}

/// Alice's chain in the town after four posts: seqs 0 (join) to 4.
fn alice_with_five_entries() -> Town {
    let mut t = town();
    for i in 1..=4 {
        t.r.author(&t.alice, vec![post(&format!("alice {i}"))], T)
            .expect("post");
    }
    assert_eq!(t.r.version_vector().get(&t.alice.author()), 5);
    t
}

/// Alice's entry at `seq` with the given backlink, signed by Alice.
fn alice_at(t: &Town, seq: u64, backlink: Hash) -> Entry {
    let next = sign_next(&t.r, &t.alice, &[post("out of line")], T);
    let h = next.header();
    Entry::sign(
        &t.alice,
        h.space,
        seq,
        Some(backlink),
        h.deps.clone(),
        h.timestamp,
        next.payload().to_vec(),
    )
}

#[test]
fn entry_skipping_a_seq_is_refused_as_seq_gap() {
    let mut t = alice_with_five_entries();
    let alice = t.alice.author();
    let seq3 = t.r.entry_at(&alice, 3).expect("seq 3");
    let head = t.r.entry_at(&alice, 4).expect("seq 4");
    // seq 5 whose backlink is the seq-3 entry.
    let bad = alice_at(&t, 5, seq3);
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(
        err,
        IngestError::Entry(EntryError::SeqGap {
            expected: 4,
            found: 5
        })
    );
    // seq 9 backlinked to the real head.
    let bad = alice_at(&t, 9, head);
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(
        err,
        IngestError::Entry(EntryError::SeqGap {
            expected: 5,
            found: 9
        })
    );
    // The control: seq 5 backlinked to seq 4.
    let honest = alice_at(&t, 5, head);
    accepted_by_copy(&mut t.r, &honest, T);
}

#[test]
fn entry_backlinked_to_another_authors_entry_is_refused() {
    let mut t = alice_with_five_entries();
    // Bob gets exactly as many entries as Alice, so his head is at the seq
    // Alice's backlink should point at: the right seq, a different entry.
    for i in 1..=4 {
        t.r.author(&t.bob, vec![post(&format!("bob {i}"))], T)
            .expect("post");
    }
    let bob_head = t.r.entry_at(&t.bob.author(), 4).expect("bob seq 4");
    let bad = alice_at(&t, 5, bob_head);
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(err, IngestError::Entry(EntryError::BacklinkAuthor));
    // A backlink to an older entry of another author is refused the same way.
    let bob_join = t.r.entry_at(&t.bob.author(), 0).expect("bob seq 0");
    let bad = alice_at(&t, 5, bob_join);
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(err, IngestError::Entry(EntryError::BacklinkAuthor));
}

#[test]
fn entry_backlinked_to_an_unknown_entry_waits_and_is_never_stored_or_forwarded() {
    let mut t = alice_with_five_entries();
    let vv = t.r.version_vector();
    let hash = t.r.state_hash();
    let bad = alice_at(&t, 5, Hash::of(b"no such entry"));
    assert_eq!(t.r.ingest(bad.clone(), T), Ok(Ingested::Pending));
    assert!(!t.r.contains(&bad.id()));
    assert_eq!((t.r.version_vector(), t.r.state_hash()), (vv, hash));
    assert_not_forwarded(&mut t.r, &bad.id(), T);
    // Alice's honest seq 5 is not blocked by it.
    let honest = alice_at(&t, 5, t.r.entry_at(&t.alice.author(), 4).expect("head"));
    assert!(matches!(t.r.ingest(honest, T), Ok(Ingested::Applied(_))));
}

#[test]
fn backlink_check_refuses_a_backlink_that_is_not_the_previous_entry() {
    // Through a replica the previous entry is looked up by the backlink
    // itself, so a mismatch surfaces as BacklinkAuthor or SeqGap above; the
    // check on its own refuses a previous entry the backlink does not name.
    let t = alice_with_five_entries();
    let alice = t.alice.author();
    let head = t.r.entry_at(&alice, 4).expect("seq 4");
    let seq3 = t.r.entry_at(&alice, 3).expect("seq 3");
    let next = alice_at(&t, 5, seq3);
    let prev = t.r.get(&head).expect("head").header();
    assert_eq!(
        validate_backlink(next.header(), &head, prev),
        Err(EntryError::BacklinkMismatch)
    );
}

#[test]
fn valid_entry_replayed_into_another_space_is_refused_as_wrong_space() {
    // One founder key, two spaces.
    let founder = key(1);
    let mut x = found(&founder, "X");
    let mut y = found(&founder, "Y");
    assert_ne!(x.space(), y.space());
    let from_x = x
        .author(&founder, vec![post("only for X")], T)
        .expect("post");
    let expected = IngestError::Entry(EntryError::WrongSpace {
        expected: y.space(),
        found: x.space(),
    });
    assert_eq!(refuse(&mut y, &from_x, T), expected);
    // X's genesis entry is not Y's.
    assert_eq!(refuse(&mut y, &genesis_of(&x), T), expected);
    // Re-targeting the header at Y breaks the signature.
    let retargeted = with_header(&from_x, |h| h.space = y.space());
    let err = refuse(&mut y, &retargeted, T);
    assert!(
        matches!(
            err,
            IngestError::Entry(EntryError::Signature(SignatureError::Invalid))
        ),
        "{err:?}"
    );
}

#[test]
fn entry_by_a_removed_member_that_saw_the_removal_is_refused_as_author_removed() {
    let mut t = town();
    // Alice also has a second device, linked before her removal.
    let phone = key(13);
    t.r.author(&t.alice, vec![link_op(&t.r, &t.alice, &phone)], T)
        .expect("link");
    t.r.author(&t.alice, vec![post("before removal")], T)
        .expect("post");
    t.r.author(
        &t.admin,
        vec![Op::Remove {
            member: t.alice.author(),
        }],
        T,
    )
    .expect("remove");
    for device in [&t.alice, &phone] {
        let after = sign_next(&t.r, device, &[post("after removal")], T);
        let removal =
            t.r.heads()
                .into_iter()
                .find(|(a, ..)| *a == t.admin.author())
                .expect("admin head")
                .2;
        assert!(
            after.header().deps.contains(&removal),
            "the removal is in its causal past"
        );
        let err = refuse(&mut t.r, &after, T);
        assert_eq!(
            err,
            IngestError::AuthorRemoved {
                author: device.author()
            }
        );
    }
    assert_eq!(titles(&t.r), vec!["before removal"]);
}

#[test]
fn vote_timestamped_after_the_deadline_is_refused() {
    let mut t = town();
    let deadline = T + 10_000;
    t.r.author(
        &t.alice,
        vec![Op::Propose {
            title: "Paint the hall".into(),
            body: String::new(),
            deadline_ms: deadline,
            quorum: 1,
        }],
        T,
    )
    .expect("propose");
    let proposal =
        *t.r.state()
            .decisions
            .proposals
            .keys()
            .next()
            .expect("proposal");
    let vote = Op::Vote {
        proposal,
        choice: Choice::Yes,
    };
    // The vote is the second operation of its entry.
    let late = sign_next(&t.r, &t.bob, &[post("my vote"), vote.clone()], deadline + 1);
    let err = refuse(&mut t.r, &late, deadline + 1);
    assert_eq!(
        err,
        IngestError::Op {
            index: 1,
            source: OpError::VoteAfterDeadline
        }
    );
    // A vote stamped at the deadline itself still counts.
    let on_time = sign_next(&t.r, &t.bob, &[post("my vote"), vote], deadline);
    assert_eq!(on_time.header().timestamp.wall_ms(), deadline);
    accepted_by_copy(&mut t.r, &on_time, deadline + 1);
}

#[test]
fn transfer_by_a_key_that_never_joined_is_refused_as_not_a_member() {
    let mut t = town();
    let stranger = key(9);
    let bad = sign_next(
        &t.r,
        &stranger,
        &[Op::Transfer {
            to: t.alice.author(),
            amount: 1,
            memo: "free hearts".into(),
        }],
        T,
    );
    assert_eq!(bad.header().seq, 0);
    let err = refuse(&mut t.r, &bad, T);
    assert_eq!(
        err,
        IngestError::Op {
            index: 0,
            source: OpError::NotAMember {
                author: stranger.author()
            }
        }
    );
}

#[test]
fn far_future_entry_is_refused_until_the_clock_catches_up() {
    let mut t = town();
    let skew = ReplicaConfig::default().max_skew_ms;
    let future = T + skew + 60_000;
    let mut fast = peer_of(&mut t.r, T);
    let entry = fast
        .author(&t.alice, vec![post("from the future")], future)
        .expect("post");
    let err = refuse(&mut t.r, &entry, T);
    assert_eq!(
        err,
        IngestError::FutureTimestamp {
            ts: entry.header().timestamp,
            now_ms: T,
            max_skew_ms: skew
        }
    );
    // Sync offers it again; it is refused while the clock lags ...
    let rejected = pump(&mut fast, &mut t.r, T + 59_999);
    assert!(
        matches!(rejected.as_slice(), [EntryRejection::Refused { id, source: IngestError::FutureTimestamp { .. } }] if *id == entry.id()),
        "{rejected:?}"
    );
    assert!(!t.r.contains(&entry.id()));
    // ... and accepted once the entry is within the allowed skew.
    assert_eq!(pump(&mut fast, &mut t.r, T + 60_000), vec![]);
    assert!(t.r.contains(&entry.id()));
    assert_eq!(t.r.state_hash(), fast.state_hash());
}

#[test]
fn validly_signed_garbage_payload_is_refused_as_malformed() {
    let mut t = town();
    let cases: [(&[u8], DecodeError); 4] = [
        (
            b"not a payload",
            DecodeError::UnsupportedVersion {
                what: "payload",
                found: b'n',
                supported: PAYLOAD_VERSION,
            },
        ),
        (
            // An entry of the space format before the current rules: its
            // invites, device links and removals meant something else.
            &[1, 1, 9, 0],
            DecodeError::UnsupportedVersion {
                what: "payload",
                found: 1,
                supported: PAYLOAD_VERSION,
            },
        ),
        (
            &[PAYLOAD_VERSION, 1, 0xEE],
            DecodeError::UnknownTag {
                what: "operation",
                tag: 0xEE,
            },
        ),
        (
            &[PAYLOAD_VERSION, 0],
            DecodeError::NonCanonical {
                what: "empty payload",
            },
        ),
    ];
    for (payload, why) in cases {
        let bad = sign_next_payload(&t.r, &t.alice, payload.to_vec(), T);
        assert_eq!(
            bad.validate(),
            Ok(()),
            "the signature and payload hash are fine"
        );
        assert_eq!(refuse(&mut t.r, &bad, T), IngestError::Payload(why));
    }
}

// ----------------------------------------------------------------------
// Forks
// ----------------------------------------------------------------------

/// The entries of a fork by Alice and of honest members around it.
struct Fork {
    town: Town,
    /// Alice's two entries at one seq.
    left: Entry,
    right: Entry,
    /// Alice continuing the left branch.
    left_next: Entry,
    /// Bob and the coordinator, writing without having seen either branch.
    bob: Entry,
    coord: Entry,
    fork_seq: u64,
}

fn fork() -> Fork {
    let mut town = town();
    town.r
        .author(&town.alice, vec![post("alice before the fork")], T)
        .expect("post");
    let left = sign_next(&town.r, &town.alice, &[post("left")], T + 1_000);
    let right = sign_next(&town.r, &town.alice, &[post("right")], T + 1_001);
    assert_eq!(left.header().seq, right.header().seq);
    let mut scratch = peer_of(&mut town.r, T);
    scratch.ingest(left.clone(), T + 1_000).expect("left");
    let left_next = scratch
        .author(&town.alice, vec![post("left again")], T + 1_100)
        .expect("post");
    let bob = sign_next(&town.r, &town.bob, &[post("bob meanwhile")], T + 1_050);
    let coord = sign_next(&town.r, &town.coord, &[post("coord meanwhile")], T + 1_060);
    let fork_seq = left.header().seq;
    Fork {
        town,
        left,
        right,
        left_next,
        bob,
        coord,
        fork_seq,
    }
}

/// Feeds `entries` to `r` one by one, in order.
fn deliver(r: &mut Replica, entries: &[&Entry], now: u64) {
    for e in entries {
        let _ = r.ingest((*e).clone(), now);
    }
}

/// Asserts that replicas agree on state and on who forked, and on the chains
/// of every author but the forker (whose chain each keeps from the branch it
/// saw first).
fn assert_fork_agreed(replicas: &[&Replica], forker: &AuthorId, fork_seq: u64) {
    let first = replicas[0];
    let honest = |r: &Replica| {
        let mut vv = r.version_vector();
        vv.set(*forker, 0);
        vv
    };
    for (i, r) in replicas.iter().enumerate() {
        let forks: Vec<(AuthorId, u64)> = r.forks().map(|p| (p.author, p.seq)).collect();
        assert_eq!(
            forks,
            vec![(*forker, fork_seq)],
            "replica {i} flags the forker at the fork seq"
        );
        assert_eq!(
            honest(r),
            honest(first),
            "replica {i} holds other honest entries"
        );
        assert_eq!(
            r.state_hash(),
            first.state_hash(),
            "replica {i} has another state"
        );
    }
}

#[test]
fn fork_is_flagged_and_ignored_identically_whatever_the_arrival_order() {
    let now = T + 2_000;
    let mut f = fork();
    let (l, r, ln, b, c) = (&f.left, &f.right, &f.left_next, &f.bob, &f.coord);
    let mut p1 = peer_of(&mut f.town.r, now);
    let mut p2 = peer_of(&mut f.town.r, now);
    let mut p3 = peer_of(&mut f.town.r, now);
    deliver(&mut p1, &[l, ln, r, b, c], now);
    deliver(&mut p2, &[r, c, l, ln, b], now);
    deliver(&mut p3, &[b, ln, c, l, r], now);
    // Each replica detected the fork on its own.
    for p in [&p1, &p2, &p3] {
        assert_eq!(p.forks().count(), 1);
    }
    sync_all(&mut [&mut p1, &mut p2, &mut p3, &mut f.town.r], now);
    let alice = f.town.alice.author();
    assert_fork_agreed(&[&p1, &p2, &p3, &f.town.r], &alice, f.fork_seq);
    assert_eq!(
        titles(&p1),
        vec!["alice before the fork", "bob meanwhile", "coord meanwhile"],
        "nothing Alice wrote at or after the fork has effect"
    );
    // A forker can write nothing more on a replica that knows of the fork.
    assert_eq!(
        p1.author(&f.town.alice, vec![post("more")], now),
        Err(IngestError::Forked {
            author: alice,
            seq: f.fork_seq
        })
    );
}

#[test]
#[ignore = "known gap: an honest entry that depends on one fork branch waits forever on replicas that stored the other branch (see report)"]
fn honest_entry_built_on_one_fork_branch_converges_everywhere() {
    let now = T + 2_000;
    let mut f = fork();
    let (l, r) = (&f.left, &f.right);
    // Bob saw the left branch before anyone knew of the fork.
    let mut saw_left = peer_of(&mut f.town.r, now);
    saw_left.ingest(l.clone(), now).expect("left");
    let bob_on_left = saw_left
        .author(&f.town.bob, vec![post("bob saw left")], now)
        .expect("post");
    let mut p1 = peer_of(&mut f.town.r, now);
    let mut p2 = peer_of(&mut f.town.r, now);
    deliver(&mut p1, &[l, &bob_on_left, r], now);
    deliver(&mut p2, &[r, l, &bob_on_left], now);
    sync_all(&mut [&mut p1, &mut p2, &mut saw_left], now);
    let alice = f.town.alice.author();
    assert_fork_agreed(&[&p1, &p2, &saw_left], &alice, f.fork_seq);
    assert_eq!(p2.pending_len(), 0, "Bob's entry is not stuck");
    assert_eq!(titles(&p2), vec!["alice before the fork", "bob saw left"]);
}

// ----------------------------------------------------------------------
// Strong removal
// ----------------------------------------------------------------------

#[test]
fn removal_strongly_excludes_concurrent_entries_in_either_arrival_order() {
    let now = T + 10_000;
    let mut t = town();
    t.r.author(&t.alice, vec![post("alice before")], T)
        .expect("post");
    let mut a_first = peer_of(&mut t.r, now);
    let mut x_first = peer_of(&mut t.r, now);
    // Partition: the admin's side and Alice's side.
    let mut admin_side = peer_of(&mut t.r, now);
    let mut alice_side = peer_of(&mut t.r, now);
    admin_side
        .author(
            &t.admin,
            vec![Op::Remove {
                member: t.alice.author(),
            }],
            T + 2_000,
        )
        .expect("remove");
    let during: Vec<Entry> = ["alice during 1", "alice during 2"]
        .iter()
        .map(|title| {
            alice_side
                .author(&t.alice, vec![post(title)], T + 2_100)
                .expect("post")
        })
        .collect();
    // Honest members on Alice's side build on her concurrent entries.
    let bob_after = alice_side
        .author(&t.bob, vec![post("bob after alice")], T + 2_200)
        .expect("post");
    assert!(bob_after.header().deps.contains(&during[1].id()));
    let pin = alice_side
        .author(
            &t.coord,
            vec![Op::PinNotice {
                notice: notice_id(&alice_side, "alice during 1"),
                pinned: true,
            }],
            T + 2_300,
        )
        .expect("pin");

    pump(&mut a_first, &mut admin_side, now);
    pump(&mut a_first, &mut alice_side, now);
    pump(&mut x_first, &mut alice_side, now);
    pump(&mut x_first, &mut admin_side, now);
    pump(&mut admin_side, &mut alice_side, now);

    let all = [&a_first, &x_first, &admin_side, &alice_side];
    assert_converged(&all);
    for r in all {
        assert_eq!(titles(r), vec!["alice before", "bob after alice"]);
        let ineffective: Vec<Hash> = r.ineffective().copied().collect();
        for e in &during {
            assert!(r.contains(&e.id()), "concurrent entries stay stored");
            assert!(
                ineffective.contains(&e.id()),
                "concurrent entries have no effect"
            );
        }
        assert!(
            r.contains(&pin.id()) && ineffective.contains(&pin.id()),
            "pinning a notice that never took effect has none"
        );
        assert!(
            !ineffective.contains(&bob_after.id()),
            "Bob's own notice counts"
        );
        let alice = r
            .state()
            .members
            .list()
            .into_iter()
            .find(|m| m.id == t.alice.author())
            .expect("alice");
        assert!(alice.removed);
    }
}

/// Promotes the coordinator to admin, partitions the two admins, lets each
/// remove the other at the given wall times and write a notice, delivers
/// both sides in either order and syncs everyone. Returns the replicas (all
/// converged) and the two removal entries.
fn mutual_removal(t: &mut Town, admin_ms: u64, coord_ms: u64) -> (Vec<Replica>, Entry, Entry) {
    let now = T + 60_000;
    t.r.author(
        &t.admin,
        vec![Op::SetRole {
            member: t.coord.author(),
            role: Role::Admin,
        }],
        T,
    )
    .expect("promote");
    let mut a_first = peer_of(&mut t.r, now);
    let mut c_first = peer_of(&mut t.r, now);
    let mut admin_side = peer_of(&mut t.r, now);
    let mut coord_side = peer_of(&mut t.r, now);
    let by_admin = admin_side
        .author(
            &t.admin,
            vec![Op::Remove {
                member: t.coord.author(),
            }],
            admin_ms,
        )
        .expect("remove");
    admin_side
        .author(&t.admin, vec![post("admin after")], admin_ms)
        .expect("post");
    let by_coord = coord_side
        .author(
            &t.coord,
            vec![Op::Remove {
                member: t.admin.author(),
            }],
            coord_ms,
        )
        .expect("remove");
    coord_side
        .author(&t.coord, vec![post("coord after")], coord_ms)
        .expect("post");
    pump(&mut a_first, &mut admin_side, now);
    pump(&mut a_first, &mut coord_side, now);
    pump(&mut c_first, &mut coord_side, now);
    pump(&mut c_first, &mut admin_side, now);
    pump(&mut admin_side, &mut coord_side, now);
    let replicas = vec![a_first, c_first, admin_side, coord_side];
    assert_converged(&replicas.iter().collect::<Vec<_>>());
    (replicas, by_admin, by_coord)
}

/// Asserts on every replica that `winner`'s removal of `loser` is in force
/// and the loser's removal of the winner has no effect.
fn assert_removal_won(replicas: &[Replica], winner: (&Keypair, &Entry), loser: (&Keypair, &Entry)) {
    for r in replicas {
        let members = r.state().members.list();
        let removed = |k: &Keypair| {
            members
                .iter()
                .find(|m| m.id == k.author())
                .expect("member")
                .removed
        };
        assert!(!removed(winner.0), "the senior removal's author stays");
        assert!(removed(loser.0), "the senior removal is in force");
        let ineffective: Vec<Hash> = r.ineffective().copied().collect();
        assert!(
            ineffective.contains(&loser.1.id()),
            "the junior's removal has no effect"
        );
        assert!(!ineffective.contains(&winner.1.id()));
    }
}

#[test]
fn concurrent_mutual_removals_are_won_by_the_senior_admin_whatever_the_timestamps() {
    // The founder promoted the coordinator, so the founder is senior: the
    // founder's removal wins whether it is dated before, after or at the
    // same millisecond as the coordinator's.
    for (admin_ms, coord_ms) in [
        (T + 2_000, T + 3_000),
        (T + 3_000, T + 2_000),
        (T + 2_000, T + 2_000),
    ] {
        let mut t = town();
        let (replicas, by_admin, by_coord) = mutual_removal(&mut t, admin_ms, coord_ms);
        assert_removal_won(&replicas, (&t.admin, &by_admin), (&t.coord, &by_coord));
        assert_eq!(titles(&replicas[0]), vec!["admin after"]);
    }
}

// ----------------------------------------------------------------------
// Bundles
// ----------------------------------------------------------------------

/// Encodes a bundle by hand (the layout in `bundle.rs`), signed by `exporter`.
fn encode_bundle(space: Hash, exporter: &Keypair, created_ms: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(MAGIC);
    w.u8(BUNDLE_VERSION);
    w.raw(space.as_bytes());
    w.raw(exporter.author().as_bytes());
    w.varint(created_ms);
    VersionVector::new().encode(&mut w);
    w.varint(entries.len() as u64);
    for e in entries {
        w.bytes(e);
    }
    let mut bytes = w.finish();
    let sig = exporter.sign(Hash::derive("civicbase 2026 bundle", &[&bytes]).as_bytes());
    bytes.extend_from_slice(&sig);
    bytes
}

fn busy_town() -> Town {
    let mut t = town();
    t.r.author(&t.alice, vec![post("water at the school")], T)
        .expect("post");
    t.r.author(
        &t.bob,
        vec![Op::Transfer {
            to: t.alice.author(),
            amount: 2,
            memo: "thanks".into(),
        }],
        T,
    )
    .expect("transfer");
    t
}

#[test]
fn bundle_round_trip_into_an_empty_replica_gives_the_same_state() {
    let t = busy_town();
    let bytes = bundle::export(&t.r, &t.bob, &VersionVector::new(), T);
    let decoded = bundle::decode(&bytes).expect("decode");
    assert_eq!(decoded.exporter, t.bob.author());
    let mut target = Replica::empty(t.r.space(), ReplicaConfig::default());
    let report = bundle::import(&mut target, &decoded, T).expect("import");
    assert_eq!(report.added.len(), t.r.len());
    assert_eq!(
        (report.duplicates, report.pending, report.rejected.len()),
        (0, 0, 0)
    );
    assert_eq!(target.version_vector(), t.r.version_vector());
    assert_eq!(target.state_hash(), t.r.state_hash());
    // The hand encoder used below writes exactly this layout.
    assert_eq!(
        encode_bundle(t.r.space(), &t.bob, T, &decoded.entries),
        bytes
    );
}

#[test]
fn bundle_with_any_flipped_byte_is_refused_whole() {
    let t = busy_town();
    let bytes = bundle::export(&t.r, &t.bob, &VersionVector::new(), T);
    for i in 0..bytes.len() {
        let mut altered = bytes.clone();
        altered[i] ^= 0x01;
        assert!(
            bundle::decode(&altered).is_err(),
            "byte {i} flipped was accepted"
        );
    }
    // A byte inside an entry's payload: the file's signature catches it.
    let last_entry = t.r.log().last().expect("entry").encode();
    let at = bytes
        .windows(last_entry.len())
        .position(|w| w == last_entry)
        .expect("entry in bundle")
        + last_entry.len()
        - 1;
    let mut altered = bytes.clone();
    altered[at] ^= 0x01;
    let err = bundle::decode(&altered).expect_err("altered");
    assert!(
        matches!(err, BundleError::Signature(SignatureError::Invalid)),
        "{err:?}"
    );
    // And the magic.
    let mut altered = bytes;
    altered[0] ^= 0x01;
    assert_eq!(bundle::decode(&altered), Err(BundleError::NotABundle));
}

#[test]
fn bundle_re_signed_by_an_attacker_imports_good_entries_and_rejects_the_forged_one() {
    let t = busy_town();
    let attacker = key(66);
    // The admin's next entry, forged: the attacker cannot sign as the admin.
    let honest = sign_next(
        &t.r,
        &t.admin,
        &[Op::SetCreditLimit {
            member: attacker.author(),
            limit: 1_000_000,
        }],
        T,
    );
    let forged = Entry::from_parts(
        honest.header().clone(),
        attacker.sign(honest.header_bytes()),
        honest.payload().to_vec(),
    );
    let mut entries: Vec<Vec<u8>> = t.r.log().map(Entry::encode).collect();
    entries.push(forged.encode());
    let bytes = encode_bundle(t.r.space(), &attacker, T, &entries);
    let decoded = bundle::decode(&bytes).expect("the attacker's own signature is valid");

    let mut target = fresh(&t.r);
    let report = bundle::import(&mut target, &decoded, T).expect("import");
    assert_eq!(
        report.added.len(),
        t.r.len() - 1,
        "everything but the genesis entry it had"
    );
    assert_eq!((report.duplicates, report.pending), (1, 0));
    assert_eq!(report.rejected.len(), 1);
    let (id, reason) = &report.rejected[0];
    assert_eq!(*id, Some(forged.id()));
    assert_eq!(
        *reason,
        IngestError::Entry(EntryError::Signature(SignatureError::Invalid)).to_string()
    );
    assert!(!target.contains(&forged.id()));
    assert_eq!(target.state_hash(), t.r.state_hash());
    assert_not_forwarded(&mut target, &forged.id(), T);
}

// ----------------------------------------------------------------------
// Bounded waiting
// ----------------------------------------------------------------------

#[test]
fn a_flood_of_entries_waiting_forever_cannot_push_out_an_honest_waiting_entry() {
    let mut t = town();
    let config = ReplicaConfig {
        max_pending: 256,
        ..ReplicaConfig::default()
    };
    let mut victim = Replica::from_genesis(genesis_of(&t.r), T, config).expect("genesis");
    // Alice's entry waits for her join and the invite, which the victim lacks.
    let mut alice_copy = peer_of(&mut t.r, T + 1);
    let honest = alice_copy
        .author(&t.alice, vec![post("Water at noon")], T + 2_000)
        .expect("alice posts");
    assert_eq!(
        victim.ingest(honest.clone(), T + 3_000),
        Ok(Ingested::Pending)
    );
    // A stranger floods entries whose backlinks will never exist.
    let stranger = key(99);
    for i in 0..2_000u64 {
        let e = Entry::sign(
            &stranger,
            victim.space(),
            i + 1,
            Some(Hash::of(&i.to_le_bytes())),
            Vec::new(),
            civicbase_core::Timestamp::from_millis(T + 10 + i),
            civicbase_core::op::encode_payload(&[post("spam")]),
        );
        assert_eq!(victim.ingest(e, T + 3_000), Ok(Ingested::Pending));
    }
    assert!(victim.pending_len() <= 256, "the pending set is bounded");
    // When what Alice's entry waits for arrives, it is applied.
    pump(&mut alice_copy, &mut victim, T + 3_000);
    assert!(
        victim.contains(&honest.id()),
        "the honest entry survived the flood"
    );
}
