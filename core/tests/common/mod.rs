//! Helpers shared by the adversarial and module tests: a small town built
//! through real invites and joins, entries signed without being applied,
//! a sync pump over two `SyncSession`s, and `refuse`, which offers a bad
//! entry by every route and checks that it leaves no trace and is never
//! forwarded.

// Each test crate that includes this module uses a different subset of it.
#![allow(dead_code)]

use civicbase_core::hlc::Timestamp;
use civicbase_core::op::encode_payload;
use civicbase_core::replica::IngestError;
use civicbase_core::state::members::{join_statement, link_statement};
use civicbase_core::sync::{EntryRejection, Message};
use civicbase_core::{
    Entry, EntryId, Header, Keypair, NewSpace, Op, Replica, ReplicaConfig, Role, SyncSession,
};

/// Wall time at which every test space is founded (Unix ms).
pub const T: u64 = 1_760_000_000_000;

/// Credit limit of members without their own.
pub const DEFAULT_LIMIT: u64 = 10;

/// The key pair with seed `[n; 32]`.
pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

/// A space founded by `admin`, with a coordinator, two members and a viewer
/// who all joined through invites. Everything is in `r`.
pub struct Town {
    pub r: Replica,
    pub admin: Keypair,
    pub coord: Keypair,
    pub alice: Keypair,
    pub bob: Keypair,
    pub viewer: Keypair,
}

/// Founds a space named `name` at time `T` with `founder` as admin.
pub fn found(founder: &Keypair, name: &str) -> Replica {
    let (r, _genesis) = Replica::create(
        founder,
        NewSpace {
            name: name.into(),
            founder_name: "Founder".into(),
            default_credit_limit: DEFAULT_LIMIT,
        },
        T,
        ReplicaConfig::default(),
    )
    .expect("genesis");
    r
}

/// The town: admin (seed 1), coordinator (2), Alice and Bob (members, 3
/// and 4), a viewer (5).
pub fn town() -> Town {
    let admin = key(1);
    let mut r = found(&admin, "Town");
    let (coord, alice, bob, viewer) = (key(2), key(3), key(4), key(5));
    invite_and_join(&mut r, &admin, &coord, Role::Coordinator, "Coordinator");
    invite_and_join(&mut r, &admin, &alice, Role::Member, "Alice");
    invite_and_join(&mut r, &coord, &bob, Role::Member, "Bob");
    invite_and_join(&mut r, &coord, &viewer, Role::Viewer, "Viewer");
    Town {
        r,
        admin,
        coord,
        alice,
        bob,
        viewer,
    }
}

/// The invite secret used for `joiner` (derived from the joiner's seed so
/// every joiner has their own).
pub fn invite_key_for(joiner: &Keypair) -> Keypair {
    let mut seed = joiner.seed();
    seed[31] ^= 0xA5;
    Keypair::from_seed(seed)
}

/// An invite operation for `invite`, valid for an hour after `T`.
pub fn invite_op(invite: &Keypair, role: Role) -> Op {
    Op::Invite {
        key: invite.author(),
        role,
        expires_ms: T + 3_600_000,
        uses: 1,
    }
}

/// The join operation `joiner` writes with the invite secret `invite`.
pub fn join_op(r: &Replica, invite: &Keypair, joiner: &Keypair, name: &str) -> Op {
    let statement = join_statement(&r.space(), &joiner.author());
    Op::Join {
        invite: invite.author(),
        proof: invite.sign(statement.as_bytes()),
        name: name.into(),
    }
}

/// The operation by which `member` links `device`, with the device's
/// consent for this space.
pub fn link_op(r: &Replica, member: &Keypair, device: &Keypair) -> Op {
    let statement = link_statement(&r.space(), &member.author(), &device.author());
    Op::LinkDevice {
        device: device.author(),
        consent: device.sign(statement.as_bytes()),
    }
}

/// `inviter` invites `joiner` as `role`, and `joiner` joins, both in `r`.
pub fn invite_and_join(
    r: &mut Replica,
    inviter: &Keypair,
    joiner: &Keypair,
    role: Role,
    name: &str,
) {
    let invite = invite_key_for(joiner);
    r.author(inviter, vec![invite_op(&invite, role)], T)
        .expect("invite");
    let join = join_op(r, &invite, joiner, name);
    r.author(joiner, vec![join], T).expect("join");
}

/// A notice with this title.
pub fn post(title: &str) -> Op {
    Op::PostNotice {
        title: title.into(),
        body: String::new(),
    }
}

/// Titles of the live notices in a replica's state, sorted.
pub fn titles(r: &Replica) -> Vec<String> {
    let mut v: Vec<String> = r
        .state()
        .notices
        .list()
        .into_iter()
        .map(|(_, n)| n.title.value.clone())
        .collect();
    v.sort();
    v
}

/// The record id of the notice titled `title` (including ones without effect
/// elsewhere: looks in this replica's state only).
pub fn notice_id(r: &Replica, title: &str) -> civicbase_core::RecordId {
    r.state()
        .notices
        .notices
        .iter()
        .find(|(_, n)| n.title.value == title)
        .map(|(id, _)| *id)
        .unwrap_or_else(|| panic!("no notice titled {title:?}"))
}

/// Signs, without validating or applying it, the entry `kp` would write next
/// on `r` at wall time `wall_ms`: the right seq and backlink, every other
/// author's head as a dependency, a timestamp after everything `r` has seen.
pub fn sign_next(r: &Replica, kp: &Keypair, ops: &[Op], wall_ms: u64) -> Entry {
    sign_next_payload(r, kp, encode_payload(ops), wall_ms)
}

/// Like [`sign_next`] with raw payload bytes.
pub fn sign_next_payload(r: &Replica, kp: &Keypair, payload: Vec<u8>, wall_ms: u64) -> Entry {
    let author = kp.author();
    let seq = r.version_vector().get(&author);
    let backlink = seq.checked_sub(1).and_then(|s| r.entry_at(&author, s));
    let deps = r
        .heads()
        .into_iter()
        .filter(|(a, ..)| *a != author)
        .map(|(.., head)| head)
        .collect();
    let ts = Timestamp::from_millis(wall_ms).max(r.last_timestamp().next());
    Entry::sign(kp, r.space(), seq, backlink, deps, ts, payload)
}

/// `e` with its header changed by `f`, keeping the original signature and
/// payload.
pub fn with_header(e: &Entry, f: impl FnOnce(&mut Header)) -> Entry {
    let mut h = e.header().clone();
    f(&mut h);
    Entry::from_parts(h, *e.signature(), e.payload().to_vec())
}

/// The space's genesis entry (the first entry of every log).
pub fn genesis_of(r: &Replica) -> Entry {
    r.log()
        .next()
        .expect("a replica holds its genesis entry")
        .clone()
}

/// A new replica that knows only the genesis entry of `r`'s space.
pub fn fresh(r: &Replica) -> Replica {
    Replica::from_genesis(genesis_of(r), T, ReplicaConfig::default()).expect("genesis")
}

/// A new peer holding everything `r` holds, obtained by syncing.
pub fn peer_of(r: &mut Replica, now: u64) -> Replica {
    let mut p = fresh(r);
    pump(r, &mut p, now);
    assert_eq!(
        p.version_vector(),
        r.version_vector(),
        "a full sync copies everything"
    );
    p
}

/// Syncs two replicas over a pair of fresh sessions, moving frames both ways
/// until neither side has anything left to send. Returns every entry or
/// proof either side refused.
pub fn pump(a: &mut Replica, b: &mut Replica, now: u64) -> Vec<EntryRejection> {
    let mut sa = SyncSession::new(a.space());
    let mut sb = SyncSession::new(b.space());
    sa.start(a);
    sb.start(b);
    let mut rejected = Vec::new();
    for _ in 0..100 {
        let mut moved = false;
        while let Some(f) = sa.poll_transmit() {
            moved = true;
            rejected.extend(sb.handle_frame(&f, b, now).expect("sync frame").rejected);
        }
        while let Some(f) = sb.poll_transmit() {
            moved = true;
            rejected.extend(sa.handle_frame(&f, a, now).expect("sync frame").rejected);
        }
        if !moved {
            return rejected;
        }
    }
    panic!("sync did not settle");
}

/// Syncs every pair of `replicas` twice over, so that everything anyone
/// holds reaches everyone.
pub fn sync_all(replicas: &mut [&mut Replica], now: u64) {
    for _round in 0..2 {
        for i in 0..replicas.len() {
            for j in i + 1..replicas.len() {
                let (left, right) = replicas.split_at_mut(j);
                pump(left[i], right[0], now);
            }
        }
    }
}

/// What a refused entry must leave unchanged.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    vv: civicbase_core::VersionVector,
    state_hash: civicbase_core::Hash,
    len: usize,
    pending: usize,
}

fn footprint(r: &Replica) -> Footprint {
    Footprint {
        vv: r.version_vector(),
        state_hash: r.state_hash(),
        len: r.len(),
        pending: r.pending_len(),
    }
}

/// Offers `bad` to `victim` by every route an entry can arrive by (one at a
/// time, in a batch, and in a sync frame from a peer), checks that each route
/// refuses it with the same error and that the victim is unchanged (the entry
/// is not stored, nothing pending, version vector and state hash as before),
/// then syncs the victim with a third replica and checks the entry is not
/// forwarded. Returns the error.
pub fn refuse(victim: &mut Replica, bad: &Entry, now: u64) -> IngestError {
    let id = bad.id();
    let before = footprint(victim);

    let err = victim
        .ingest(bad.clone(), now)
        .expect_err("the entry must be refused");
    assert_eq!(footprint(victim), before, "a refused entry leaves no trace");

    let batch = victim.ingest_batch(vec![bad.clone()], now);
    assert_eq!(
        batch,
        vec![Err(err.clone())],
        "batch ingest refuses it alike"
    );
    assert_eq!(
        footprint(victim),
        before,
        "a refused entry leaves no trace (batch)"
    );

    // An entry whose payload length disagrees with its header cannot even be
    // framed: the receiver reads it as malformed bytes.
    let expected = match Entry::decode(&bad.encode()) {
        Ok(_) => EntryRejection::Refused {
            id,
            source: err.clone(),
        },
        Err(e) => EntryRejection::Malformed(e),
    };
    assert_eq!(
        deliver_in_frame(victim, bad, now),
        vec![expected],
        "sync refuses it alike"
    );
    assert_eq!(
        footprint(victim),
        before,
        "a refused entry leaves no trace (sync)"
    );
    assert!(!victim.contains(&id));

    assert_not_forwarded(victim, &id, now);
    err
}

/// Delivers `e` to `victim` in an Entries frame from a peer, after that
/// peer's Hello, and returns what the victim's session refused.
pub fn deliver_in_frame(victim: &mut Replica, e: &Entry, now: u64) -> Vec<EntryRejection> {
    let mut peer = SyncSession::new(victim.space());
    peer.start(victim);
    let hello = peer.poll_transmit().expect("hello");
    let mut session = SyncSession::new(victim.space());
    session.start(victim);
    session
        .handle_frame(&hello, victim, now)
        .expect("hello accepted");
    let frame = Message::Entries(vec![e.encode()]).encode();
    let events = session
        .handle_frame(&frame, victim, now)
        .expect("frame accepted");
    assert!(events.applied.is_empty(), "nothing was applied");
    events.rejected
}

/// Syncs `victim` with a third replica and checks that the third replica got
/// everything the victim holds but not the entry `id`.
pub fn assert_not_forwarded(victim: &mut Replica, id: &EntryId, now: u64) {
    let mut third = fresh(victim);
    pump(victim, &mut third, now);
    assert!(!third.contains(id), "a refused entry is never forwarded");
    assert_eq!(third.version_vector(), victim.version_vector());
    assert_eq!(third.state_hash(), victim.state_hash());
}

/// Checks that a copy of `r` accepts `e`: the control showing that what made
/// a twin of `e` refused was the one thing changed in it.
pub fn accepted_by_copy(r: &mut Replica, e: &Entry, now: u64) {
    let mut copy = peer_of(r, now);
    let res = copy.ingest(e.clone(), now);
    assert!(
        matches!(&res, Ok(civicbase_core::Ingested::Applied(ids)) if ids.contains(&e.id())),
        "the honest entry is accepted: {res:?}"
    );
}

/// Asserts that all replicas have the same entries, state hash and forked
/// authors, and nothing pending.
pub fn assert_converged(replicas: &[&Replica]) {
    let first = replicas[0];
    let forks = |r: &Replica| r.forks().map(|p| p.author).collect::<Vec<_>>();
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.pending_len(), 0, "replica {i} has entries stuck pending");
        assert_eq!(
            r.version_vector(),
            first.version_vector(),
            "replica {i} holds other entries"
        );
        assert_eq!(forks(r), forks(first), "replica {i} flags other authors");
        assert_eq!(
            r.state_hash(),
            first.state_hash(),
            "replica {i} has another state"
        );
    }
}
