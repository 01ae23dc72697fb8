//! The sync session: one round trip, resumption, live push, chunking of
//! large entries, and fatal protocol errors that lose nothing.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use civicbase_core::op::{NeedKind, Op, Urgency};
use civicbase_core::replica::{NewSpace, Replica, ReplicaConfig};
use civicbase_core::sync::{Message, SyncError, SyncSession, MAX_FRAME};
use civicbase_core::{Hash, Keypair, VersionVector};

const T: u64 = 1_760_000_000_000;

fn space(seed: u8) -> (Replica, Keypair, civicbase_core::Entry) {
    let key = Keypair::from_seed([seed; 32]);
    let (r, genesis) = Replica::create(
        &key,
        NewSpace {
            name: "Sync".into(),
            founder_name: "Founder".into(),
            default_credit_limit: 0,
        },
        T,
        ReplicaConfig::default(),
    )
    .expect("genesis");
    (r, key, genesis)
}

fn post(r: &mut Replica, key: &Keypair, i: u64) {
    r.author(
        key,
        vec![Op::CreateNeed {
            kind: NeedKind::Offer,
            category: "food".into(),
            urgency: Urgency::Normal,
            location: format!("Depot {i}"),
            title: format!("Bread batch {i}"),
            details: "Fresh every morning".into(),
        }],
        T + 1 + i,
    )
    .expect("post");
}

/// Exchanges frames in alternating half-rounds until neither side has
/// anything to send. Returns the number of half-rounds that carried frames.
fn pump(a: &mut Replica, sa: &mut SyncSession, b: &mut Replica, sb: &mut SyncSession) -> usize {
    for halves in 0..50 {
        let to_b: Vec<_> = std::iter::from_fn(|| sa.poll_transmit()).collect();
        let to_a: Vec<_> = std::iter::from_fn(|| sb.poll_transmit()).collect();
        if to_b.is_empty() && to_a.is_empty() {
            return halves;
        }
        for f in to_b {
            assert!(f.len() <= MAX_FRAME, "frame of {} bytes", f.len());
            sb.handle_frame(&f, b, T + 100_000).expect("frame to b");
        }
        for f in to_a {
            assert!(f.len() <= MAX_FRAME, "frame of {} bytes", f.len());
            sa.handle_frame(&f, a, T + 100_000).expect("frame to a");
        }
    }
    panic!("sync did not settle");
}

fn sessions(a: &Replica, b: &Replica) -> (SyncSession, SyncSession) {
    let (mut sa, mut sb) = (SyncSession::new(a.space()), SyncSession::new(b.space()));
    sa.start(a);
    sb.start(b);
    (sa, sb)
}

#[test]
fn diverged_replicas_catch_up_in_one_round_trip() {
    let (mut a, key, genesis) = space(1);
    for i in 0..200 {
        post(&mut a, &key, i);
    }
    let mut b = Replica::from_genesis(genesis, T, ReplicaConfig::default()).expect("b");
    let (mut sa, mut sb) = sessions(&a, &b);
    pump(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(a.state_hash(), b.state_hash());
    // Diverge: each side writes, the other lacks it.
    for i in 200..210 {
        post(&mut a, &key, i);
    }
    let lacked = a
        .missing_for(&b.version_vector())
        .iter()
        .map(|e| e.encoded_len())
        .sum::<usize>();
    let (mut sa, mut sb) = sessions(&a, &b);
    let halves = pump(&mut a, &mut sa, &mut b, &mut sb);
    // Half-round 1 carries both Hellos, half-round 2 the entries.
    assert_eq!(halves, 2, "one round trip");
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(sa.stats().entries_sent, 10);
    assert_eq!(sb.stats().entries_sent, 0);
    let wire = sa.stats().bytes_sent + sb.stats().bytes_sent;
    assert!(
        (wire as f64) < 1.2 * lacked as f64 + 400.0,
        "wire {wire} bytes for {lacked} bytes of entries"
    );
}

#[test]
fn an_interrupted_sync_resumes_without_resending() {
    let (mut a, key, genesis) = space(2);
    for i in 0..3000 {
        post(&mut a, &key, i);
    }
    let mut b = Replica::from_genesis(genesis, T, ReplicaConfig::default()).expect("b");
    let (mut sa, mut sb) = sessions(&a, &b);
    // Deliver the Hellos, then only the first two entry frames; the
    // connection drops.
    let hello_a = sa.poll_transmit().expect("hello");
    let hello_b = sb.poll_transmit().expect("hello");
    sb.handle_frame(&hello_a, &mut b, T + 100_000)
        .expect("hello");
    sa.handle_frame(&hello_b, &mut a, T + 100_000)
        .expect("hello");
    let frames: Vec<_> = std::iter::from_fn(|| sa.poll_transmit()).collect();
    assert!(frames.len() > 3, "the full sync spans several frames");
    for f in &frames[..2] {
        sb.handle_frame(f, &mut b, T + 100_000).expect("entries");
    }
    let had = b.len();
    assert!(had > 1 && had < a.len());
    // Reconnect: a new session resumes from the version vectors.
    let (mut sa, mut sb) = sessions(&a, &b);
    pump(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(a.state_hash(), b.state_hash());
    assert_eq!(
        sa.stats().entries_sent as usize,
        a.len() - had,
        "only what b lacked is sent again"
    );
}

#[test]
fn live_entries_are_pushed_and_acknowledged() {
    let (mut a, key, genesis) = space(3);
    let mut b = Replica::from_genesis(genesis, T, ReplicaConfig::default()).expect("b");
    let (mut sa, mut sb) = sessions(&a, &b);
    pump(&mut a, &mut sa, &mut b, &mut sb);
    assert!(sa.is_live() && sb.is_live());
    post(&mut a, &key, 1);
    sa.push_local(&a);
    sb.send_have(&b);
    pump(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(b.version_vector(), a.version_vector());
    assert_eq!(b.state().needs.records.len(), 1);
    // The Have told a what b holds.
    assert_eq!(sa.peer_version_vector(), &b.version_vector());
    // Pushing again sends nothing new.
    sa.push_local(&a);
    assert!(!sa.has_transmit());
}

#[test]
fn an_entry_larger_than_a_frame_travels_in_chunks() {
    let (mut a, key, genesis) = space(4);
    // A bulk import: many operations in one entry, ~500 KiB.
    let ops: Vec<Op> = (0..2000)
        .map(|i| Op::CreateNeed {
            kind: NeedKind::Need,
            category: "shelter".into(),
            urgency: Urgency::High,
            location: format!("Street {i}"),
            title: format!("Bed {i}"),
            details: "x".repeat(200),
        })
        .collect();
    let big = a.author(&key, ops, T + 5).expect("bulk");
    assert!(big.encoded_len() > 4 * MAX_FRAME);
    let mut b = Replica::from_genesis(genesis, T, ReplicaConfig::default()).expect("b");
    let (mut sa, mut sb) = sessions(&a, &b);
    pump(&mut a, &mut sa, &mut b, &mut sb);
    assert!(b.contains(&big.id()));
    assert_eq!(b.state().needs.records.len(), 2000);
    assert_eq!(a.state_hash(), b.state_hash());
    assert!(sa.stats().frames_sent > 5, "sent as chunks");
}

#[test]
fn protocol_errors_close_the_session_and_lose_nothing() {
    let (mut a, key, _genesis) = space(5);
    post(&mut a, &key, 1);
    let before = a.state_hash();
    let vv = a.version_vector();

    // A frame above the limit.
    let mut s = SyncSession::new(a.space());
    let huge = vec![1u8; MAX_FRAME + 1];
    assert!(matches!(
        s.handle_frame(&huge, &mut a, T),
        Err(SyncError::Decode(_))
    ));

    // Garbage bytes and an unknown version.
    let mut s = SyncSession::new(a.space());
    assert!(matches!(
        s.handle_frame(&[9, 9, 9], &mut a, T),
        Err(SyncError::Decode(_))
    ));
    assert!(matches!(
        s.handle_frame(&[], &mut a, T),
        Err(SyncError::Decode(_))
    ));

    // Entries before the Hello.
    let mut s = SyncSession::new(a.space());
    let early = Message::Entries(vec![]).encode();
    assert!(matches!(
        s.handle_frame(&early, &mut a, T),
        Err(SyncError::BeforeHello(_))
    ));

    // A Hello for another space.
    let (other, ..) = space(6);
    let mut s_other = SyncSession::new(other.space());
    s_other.start(&other);
    let hello = s_other.poll_transmit().expect("hello");
    let mut s = SyncSession::new(a.space());
    assert!(matches!(
        s.handle_frame(&hello, &mut a, T),
        Err(SyncError::WrongSpace { .. })
    ));

    // A chunk sequence that starts in the middle.
    let mut s = SyncSession::new(a.space());
    let chunk = Message::Chunk {
        id: 1,
        index: 1,
        total: 3,
        data: vec![0; 10],
    }
    .encode();
    assert!(matches!(
        s.handle_frame(&chunk, &mut a, T),
        Err(SyncError::Chunk(_))
    ));

    assert_eq!(a.state_hash(), before);
    assert_eq!(a.version_vector(), vv);
}

#[test]
fn malformed_entries_in_a_good_frame_are_reported_and_the_rest_applied() {
    let (mut a, key, genesis) = space(7);
    post(&mut a, &key, 1);
    post(&mut a, &key, 2);
    let mut b = Replica::from_genesis(genesis, T, ReplicaConfig::default()).expect("b");
    let mut sb = SyncSession::new(b.space());
    sb.start(&b);
    let mut sa = SyncSession::new(a.space());
    sa.start(&a);
    let hello = sa.poll_transmit().expect("hello");
    sb.handle_frame(&hello, &mut b, T + 100_000).expect("hello");
    let entries: Vec<Vec<u8>> = a
        .missing_for(&VersionVector::new())
        .iter()
        .skip(1)
        .map(|e| e.encode())
        .collect();
    let mut tampered = entries[1].clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let frame = Message::Entries(vec![entries[0].clone(), vec![1, 2, 3], tampered]).encode();
    let ev = sb
        .handle_frame(&frame, &mut b, T + 100_000)
        .expect("good frame");
    assert_eq!(ev.applied.len(), 1, "the valid entry is applied");
    assert_eq!(
        ev.rejected.len(),
        2,
        "malformed and altered are reported: {:?}",
        ev.rejected
    );
    assert_eq!(b.len(), 2);
    assert_ne!(Hash::ZERO, b.state_hash());
}

#[test]
fn closing_with_a_long_non_ascii_reason_truncates_on_a_character_boundary() {
    let (a, ..) = space(8);
    let mut s = SyncSession::new(a.space());
    let reason = format!("{}é and more", "x".repeat(1023));
    s.close(&reason);
    let frame = s.poll_transmit().expect("close frame");
    match Message::decode(&frame) {
        Ok(Message::Close(r)) => assert_eq!(r, "x".repeat(1023)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deferred_entries_are_taken_together_and_nothing_held_is_lost() {
    let (mut a, key, genesis) = space(8);
    for i in 0..900 {
        post(&mut a, &key, i);
    }
    // The same stream, fed once frame by frame and once deferred.
    let mut stream = |defer: bool, stop_with: Option<Vec<u8>>| {
        let mut b = Replica::empty(a.space(), ReplicaConfig::default());
        let (mut sa, mut sb) = sessions(&a, &b);
        sb.defer_entries(defer);
        let hello_b = sb.poll_transmit().expect("hello");
        sa.handle_frame(&hello_b, &mut a, T + 100_000)
            .expect("hello to a");
        let frames: Vec<Vec<u8>> = std::iter::from_fn(|| sa.poll_transmit()).collect();
        assert!(frames.len() > 3, "several frames: {}", frames.len());
        let mut applied = Vec::new();
        let mut failed = false;
        for f in frames.iter().chain(stop_with.iter()) {
            match sb.handle_frame(f, &mut b, T + 100_000) {
                Ok(ev) => applied.extend(ev.applied),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let held_before_flush = sb.has_held();
        applied.extend(sb.flush(&mut b, T + 100_000).applied);
        (b, applied, held_before_flush, failed, sb)
    };
    let (direct, direct_applied, held, _, _) = stream(false, None);
    assert!(!held, "nothing is held unless deferred");
    let (deferred, deferred_applied, held, _, sb) = stream(true, None);
    assert!(held, "deferred entries wait for the flush");
    // A broken frame after deferred entries: the session fails, and the
    // flush still takes everything received before it.
    let (broken, broken_applied, _, failed, _) = stream(true, Some(vec![9, 9, 9]));
    assert_eq!(direct.state_hash(), a.state_hash());
    assert_eq!(deferred.state_hash(), a.state_hash());
    assert_eq!(
        deferred_applied, direct_applied,
        "the same entries, in the same order"
    );
    assert_eq!(deferred_applied.len(), 901);
    assert_eq!(deferred_applied[0], genesis.id());
    // The session knows the peer has what it took, so sends nothing back.
    assert_eq!(sb.peer_version_vector(), &a.version_vector());
    assert!(failed);
    assert_eq!(broken_applied.len(), 901);
    assert_eq!(broken.state_hash(), a.state_hash());
}

#[test]
fn a_message_of_another_kind_takes_deferred_entries_first() {
    let (mut a, key, _) = space(9);
    for i in 0..3 {
        post(&mut a, &key, i);
    }
    let mut b = Replica::empty(a.space(), ReplicaConfig::default());
    let (mut sa, mut sb) = sessions(&a, &b);
    sb.defer_entries(true);
    let hello_b = sb.poll_transmit().expect("hello");
    sa.handle_frame(&hello_b, &mut a, T + 100_000)
        .expect("hello");
    let hello_a = sa.poll_transmit().expect("hello from a");
    sb.handle_frame(&hello_a, &mut b, T + 100_000)
        .expect("hello to b");
    let entries = sa.poll_transmit().expect("entries");
    let ev = sb
        .handle_frame(&entries, &mut b, T + 100_000)
        .expect("entries");
    assert!(ev.applied.is_empty() && sb.has_held());
    // A Have (any message that is not entries) is handled after them.
    let have = Message::Have(VersionVector::new()).encode();
    let ev = sb.handle_frame(&have, &mut b, T + 100_000).expect("have");
    assert_eq!(ev.applied.len(), 4);
    assert!(!sb.has_held());
    assert_eq!(b.state_hash(), a.state_hash());
}
