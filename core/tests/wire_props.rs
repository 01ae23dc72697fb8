//! Property tests of every wire and storage format.
//!
//! * Round trips: for arbitrary values, `decode(encode(x)) == x` and the
//!   decoder consumes exactly the encoding.
//! * Decoding never panics: every truncation of a valid encoding is an
//!   error, and bit-flipped, overwritten or arbitrary bytes either decode to
//!   a value that re-encodes to the same bytes, or are an error (the exact
//!   contract per decoder is in `support/decoders.rs`).
//! * Forged counts and lengths are refused before anything is reserved.
//!
//! proptest is native-only (see `Cargo.toml`); failures are recorded under
//! `core/proptest-regressions/` and replayed first on every later run.
#![cfg(not(target_arch = "wasm32"))]

#[path = "support/decoders.rs"]
mod decoders;

use std::time::{Duration, Instant};

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

use civicbase_core::bundle::{self, BundleError, MAGIC};
use civicbase_core::codec::{DecodeError, Reader, Writer};
use civicbase_core::entry::{MAX_DEPS, MAX_HEADER_LEN, MAX_PAYLOAD_LEN, MAX_SEQ};
use civicbase_core::op::{
    decode_payload, encode_payload, Choice, NeedKind, Role, Urgency, MAX_BODY, MAX_NAME, MAX_SHORT,
    MAX_TITLE, PAYLOAD_VERSION,
};
use civicbase_core::replica::{
    ForkProof, NewSpace, Replica, ReplicaConfig, Snapshot, SnapshotError, SNAPSHOT_VERSION,
};
use civicbase_core::sync::{HeadInfo, Hello, Message, MAX_FRAME, MAX_MESSAGE};
use civicbase_core::{
    AuthorId, Entry, Hash, Header, Keypair, Op, SpaceState, Timestamp, VersionVector,
};

/// Cases per property: enough to cover every variant many times, few enough
/// that the whole file runs in seconds.
const CASES: u32 = 256;

/// Where failing cases are recorded (and replayed from, before new cases).
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/wire_props.txt"
);

/// The seed every property runs from: `CIVICBASE_SEED` when set (to replay
/// or explore), otherwise a fixed one, so CI runs the same cases every time.
/// It is printed once, so any failure names the seed that replays it.
fn seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var("CIVICBASE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x00c1_71cb_a5e0);
        eprintln!("wire_props: proptest seed {seed} (replay with CIVICBASE_SEED={seed})");
        seed
    })
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        rng_seed: RngSeed::Fixed(seed()),
        ..ProptestConfig::with_cases(cases)
    }
}

/// Largest chunk count a Chunk header may claim (mirrors the private chunk
/// payload size of `sync`: a frame less 32 bytes of headroom).
const MAX_CHUNKS: u32 = MAX_MESSAGE.div_ceil(MAX_FRAME - 32) as u32;

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash> {
    prop_oneof![
        1 => Just(Hash::ZERO),
        1 => Just(Hash([0xff; 32])),
        8 => any::<[u8; 32]>().prop_map(Hash),
    ]
}

fn author() -> impl Strategy<Value = AuthorId> {
    any::<[u8; 32]>().prop_map(AuthorId)
}

/// A u64 that is often at a varint length boundary.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => (0u32..64).prop_map(|bits| 1u64 << bits),
        1 => (1u32..64).prop_map(|bits| (1u64 << bits) - 1),
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

/// Takes characters while they fit in `max` bytes.
fn fit(chars: Vec<char>, max: usize) -> String {
    let mut s = String::new();
    for c in chars {
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    s
}

/// UTF-8 text of at most `max` bytes: usually short, sometimes long, and
/// sometimes exactly at the limit.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..24).prop_map(move |c| fit(c, max)),
        2 => vec(any::<char>(), 0..=max.min(600)).prop_map(move |c| fit(c, max)),
        1 => Just("é".repeat(max / 2) + &"x".repeat(max % 2)),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Viewer),
        Just(Role::Member),
        Just(Role::Coordinator),
        Just(Role::Admin)
    ]
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![Just(Choice::Yes), Just(Choice::No), Just(Choice::Abstain)]
}

fn urgency() -> impl Strategy<Value = Urgency> {
    prop_oneof![
        Just(Urgency::Low),
        Just(Urgency::Normal),
        Just(Urgency::High),
        Just(Urgency::Critical)
    ]
}

/// Every operation variant with arbitrary fields within the decoder's limits.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (text(MAX_NAME), text(MAX_NAME), number()).prop_map(
            |(name, founder_name, default_credit_limit)| {
                Op::Genesis {
                    name,
                    founder_name,
                    default_credit_limit,
                }
            }
        ),
        text(MAX_NAME).prop_map(|name| Op::RenameSpace { name }),
        (author(), role(), number(), any::<u32>()).prop_map(|(key, role, expires_ms, uses)| {
            Op::Invite {
                key,
                role,
                expires_ms,
                uses,
            }
        }),
        author().prop_map(|key| Op::RevokeInvite { key }),
        (author(), any::<[u8; 64]>(), text(MAX_NAME)).prop_map(|(invite, proof, name)| Op::Join {
            invite,
            proof,
            name
        }),
        (author(), any::<[u8; 64]>())
            .prop_map(|(device, consent)| Op::LinkDevice { device, consent }),
        (author(), role()).prop_map(|(member, role)| Op::SetRole { member, role }),
        author().prop_map(|member| Op::Remove { member }),
        text(MAX_NAME).prop_map(|name| Op::SetProfile { name }),
        (text(MAX_TITLE), text(MAX_BODY)).prop_map(|(title, body)| Op::PostNotice { title, body }),
        (
            hash(),
            proptest::option::of(text(MAX_TITLE)),
            proptest::option::of(text(MAX_BODY))
        )
            .prop_map(|(notice, title, body)| Op::EditNotice {
                notice,
                title,
                body
            }),
        (hash(), any::<bool>()).prop_map(|(notice, pinned)| Op::PinNotice { notice, pinned }),
        hash().prop_map(|notice| Op::DeleteNotice { notice }),
        (text(MAX_TITLE), text(MAX_BODY), number(), any::<u32>()).prop_map(
            |(title, body, deadline_ms, quorum)| {
                Op::Propose {
                    title,
                    body,
                    deadline_ms,
                    quorum,
                }
            }
        ),
        (hash(), choice()).prop_map(|(proposal, choice)| Op::Vote { proposal, choice }),
        (hash(), text(MAX_BODY)).prop_map(|(proposal, body)| Op::Comment { proposal, body }),
        hash().prop_map(|proposal| Op::CloseProposal { proposal }),
        (
            prop_oneof![Just(NeedKind::Need), Just(NeedKind::Offer)],
            text(MAX_SHORT),
            urgency(),
            text(MAX_SHORT),
            text(MAX_TITLE),
            text(MAX_BODY),
        )
            .prop_map(|(kind, category, urgency, location, title, details)| {
                Op::CreateNeed {
                    kind,
                    category,
                    urgency,
                    location,
                    title,
                    details,
                }
            }),
        hash().prop_map(|need| Op::ClaimNeed { need }),
        hash().prop_map(|need| Op::CompleteNeed { need }),
        hash().prop_map(|need| Op::ReopenNeed { need }),
        (author(), number(), text(MAX_SHORT)).prop_map(|(to, amount, memo)| Op::Transfer {
            to,
            amount,
            memo
        }),
        (author(), number()).prop_map(|(member, limit)| Op::SetCreditLimit { member, limit }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(op(), 1..6)
}

/// Arbitrary headers: any seq, dependencies sorted and unique, any backlink,
/// timestamp and payload length the format admits (shape rules such as
/// "backlink exactly when seq > 0" are validation, not encoding).
fn header() -> impl Strategy<Value = Header> {
    (
        hash(),
        author(),
        prop_oneof![Just(0), Just(MAX_SEQ), 0..=MAX_SEQ],
        proptest::option::of(hash()),
        prop_oneof![
            4 => btree_set(any::<[u8; 32]>(), 0..4),
            1 => btree_set(any::<[u8; 32]>(), 0..=MAX_DEPS),
        ],
        number(),
        hash(),
        prop_oneof![
            Just(0),
            Just(MAX_PAYLOAD_LEN as u64),
            0..=MAX_PAYLOAD_LEN as u64
        ],
    )
        .prop_map(
            |(space, author, seq, backlink, deps, timestamp, payload_hash, payload_len)| Header {
                space,
                author,
                seq,
                backlink,
                deps: deps.into_iter().map(Hash).collect(),
                timestamp: Timestamp(timestamp),
                payload_hash,
                payload_len,
            },
        )
}

/// Entries as they travel: a header whose payload length matches the payload
/// (which is usually, but not always, a real encoded payload).
fn entry() -> impl Strategy<Value = Entry> {
    (
        header(),
        any::<[u8; 64]>(),
        prop_oneof![
            ops().prop_map(|o| encode_payload(&o)),
            vec(any::<u8>(), 0..64)
        ],
    )
        .prop_map(|(mut h, sig, payload)| {
            h.payload_len = payload.len() as u64;
            h.payload_hash = Hash::of(&payload);
            Entry::from_parts(h, sig, payload)
        })
}

fn version_vector() -> impl Strategy<Value = VersionVector> {
    btree_map(author(), 1..=u64::MAX, 0..12).prop_map(|m| m.into_iter().collect())
}

fn hello() -> impl Strategy<Value = Message> {
    (
        number(),
        hash(),
        btree_map(author(), (number(), any::<[u8; 8]>()), 0..6),
        vec((author(), number()), 0..4),
    )
        .prop_map(|(protocol, space, heads, forks)| {
            Message::Hello(Hello {
                protocol,
                space,
                heads: heads
                    .into_iter()
                    .map(|(author, (count, head_prefix))| HeadInfo {
                        author,
                        count,
                        head_prefix,
                    })
                    .collect(),
                forks,
            })
        })
}

fn chunk() -> impl Strategy<Value = Message> {
    (any::<u32>(), 1..=MAX_CHUNKS)
        .prop_flat_map(|(id, total)| (Just(id), 0..total, Just(total), vec(any::<u8>(), 0..300)))
        .prop_map(|(id, index, total, data)| Message::Chunk {
            id,
            index,
            total,
            data,
        })
}

/// Every message kind. Entry and header bytes are arbitrary: the message
/// layer carries them opaquely.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello(),
        vec(vec(any::<u8>(), 0..300), 0..6).prop_map(Message::Entries),
        entry().prop_map(|e| Message::Entries(vec![e.encode()])),
        version_vector().prop_map(Message::Have),
        (
            vec(any::<u8>(), 0..=MAX_HEADER_LEN),
            any::<[u8; 64]>(),
            vec(any::<u8>(), 0..300),
            any::<[u8; 64]>()
        )
            .prop_map(|(ha, sa, hb, sb)| Message::Fork {
                a: (ha, sa),
                b: (hb, sb)
            }),
        chunk(),
        text(1024).prop_map(Message::Close),
    ]
}

/// Operations the founder of a fresh space may author.
fn founder_op() -> impl Strategy<Value = Op> {
    let line = "[a-zA-Z0-9 ]{0,12}[a-z]";
    prop_oneof![
        (line, line).prop_map(|(title, body)| Op::PostNotice { title, body }),
        (line, line, 0..5u32).prop_map(|(title, body, quorum)| Op::Propose {
            title,
            body,
            deadline_ms: 1_800_000_000_000,
            quorum,
        }),
        (line, line).prop_map(|(category, title)| Op::CreateNeed {
            kind: NeedKind::Need,
            category,
            urgency: Urgency::High,
            location: String::new(),
            title,
            details: String::new(),
        }),
        line.prop_map(|name| Op::SetProfile { name }),
    ]
}

/// A small space built through a replica, for the formats that need signed
/// entries (bundles) or a replica (state, snapshots).
fn space() -> impl Strategy<Value = (Keypair, Replica)> {
    (any::<[u8; 32]>(), vec(vec(founder_op(), 1..3), 0..4)).prop_map(|(seed, entries)| {
        let key = Keypair::from_seed(seed);
        let now = 1_700_000_000_000;
        let space = NewSpace {
            name: "Space".into(),
            founder_name: "Founder".into(),
            default_credit_limit: 5,
        };
        let (mut replica, _) =
            Replica::create(&key, space, now, ReplicaConfig::default()).expect("fresh space");
        for (i, ops) in entries.into_iter().enumerate() {
            replica
                .author(&key, ops, now + 1 + i as u64)
                .expect("the founder may do this");
        }
        (key, replica)
    })
}

/// A list of (bit index, per mille position) pairs used to flip bits.
fn flips() -> impl Strategy<Value = Vec<(usize, u8)>> {
    vec((0usize..1000, 0u8..8), 1..4)
}

fn flip(bytes: &[u8], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        for &(at, bit) in flips {
            let i = at * out.len() / 1000;
            out[i] ^= 1 << bit;
        }
    }
    out
}

/// Overwrites one byte with an edge value (count and length fields are where
/// decoders are most easily fooled).
fn overwrite(bytes: &[u8], at: usize, value: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let i = at * out.len() / 1000;
        out[i] = value;
    }
    out
}

fn edge_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0x00),
        Just(0x01),
        Just(0x7f),
        Just(0x80),
        Just(0xff),
        any::<u8>()
    ]
}

fn encode_vv(vv: &VersionVector) -> Vec<u8> {
    let mut w = Writer::default();
    vv.encode(&mut w);
    w.finish()
}

fn encode_fork(a: &(Vec<u8>, [u8; 64]), b: &(Vec<u8>, [u8; 64])) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(&a.0);
    w.raw(&a.1);
    w.bytes(&b.0);
    w.raw(&b.1);
    w.finish()
}

/// Where to cut an encoding: everywhere when it is short; otherwise the
/// first and last 256 bytes and 256 points spread between (decoding every
/// prefix of a 100 KiB payload would be quadratic).
fn cut_points(len: usize) -> Vec<usize> {
    if len <= 1024 {
        return (0..len).collect();
    }
    let mut points: Vec<usize> = (0..256).chain(len - 256..len).collect();
    points.extend((0..256).map(|i| 256 + i * (len - 512) / 256));
    points
}

/// Asserts that strict prefixes of `bytes` are refused by `decode`.
#[track_caller]
fn every_truncation_fails<T: std::fmt::Debug>(bytes: &[u8], decode: impl Fn(&[u8]) -> Option<T>) {
    for n in cut_points(bytes.len()) {
        if let Some(v) = decode(&bytes[..n]) {
            panic!(
                "a {n}-byte prefix of a {}-byte encoding decoded to {v:?}",
                bytes.len()
            );
        }
    }
}

/// Runs a decoder contract on a valid encoding mutated three ways.
fn mutations(check: decoders::Check, bytes: &[u8], flips_: &[(usize, u8)], at: usize, value: u8) {
    check(bytes);
    check(&flip(bytes, flips_));
    check(&overwrite(bytes, at, value));
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn varints_round_trip_in_shortest_form(v in number()) {
        let mut w = Writer::default();
        w.varint(v);
        let bytes = w.finish();
        let bits = 64 - v.leading_zeros() as usize;
        prop_assert_eq!(bytes.len(), bits.div_ceil(7).max(1));
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(r.varint(), Ok(v));
        prop_assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn headers_round_trip(h in header()) {
        let bytes = h.encode();
        prop_assert!(bytes.len() <= MAX_HEADER_LEN);
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(Header::decode(&mut r), Ok(h));
        prop_assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn entries_round_trip(e in entry()) {
        let bytes = e.encode();
        prop_assert_eq!(bytes.len(), e.encoded_len());
        prop_assert_eq!(*e.id().as_bytes(), *blake3::hash(e.header_bytes()).as_bytes());
        prop_assert_eq!(Entry::decode(&bytes), Ok(e));
    }

    #[test]
    fn every_op_round_trips(op in op()) {
        let mut w = Writer::default();
        op.encode(&mut w);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(Op::decode(&mut r), Ok(op));
        prop_assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn payloads_round_trip(ops in ops()) {
        prop_assert_eq!(decode_payload(&encode_payload(&ops)), Ok(ops));
    }

    #[test]
    fn version_vectors_round_trip(vv in version_vector()) {
        let bytes = encode_vv(&vv);
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(VersionVector::decode(&mut r), Ok(vv));
        prop_assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn messages_round_trip(m in message()) {
        let frame = m.encode();
        if frame.len() > MAX_FRAME {
            // An entry with a large payload does not fit one frame: a
            // receiver refuses such a frame, and a session sends the
            // message as Chunk frames instead (`an_entry_larger_than_a_frame_travels_in_chunks`
            // in tests/sync.rs checks that path).
            prop_assert!(
                matches!(m, Message::Entries(_)),
                "only an Entries message can outgrow a frame"
            );
            prop_assert!(Message::decode(&frame).is_err());
            let inner = m.encode_inner();
            prop_assert_eq!(&inner[..], &frame[1..]);
            prop_assert_eq!(Message::decode_inner(&inner), Ok(m));
            return Ok(());
        }
        prop_assert_eq!(Message::decode(&frame), Ok(m.clone()));
        let inner = m.encode_inner();
        prop_assert_eq!(&inner[..], &frame[1..]);
        if matches!(m, Message::Chunk { .. }) {
            prop_assert!(Message::decode_inner(&inner).is_err());
        } else {
            prop_assert_eq!(Message::decode_inner(&inner), Ok(m));
        }
    }

    #[test]
    fn fork_proof_parts_round_trip(
        a in (vec(any::<u8>(), 0..=MAX_HEADER_LEN), any::<[u8; 64]>()),
        b in (vec(any::<u8>(), 0..=MAX_HEADER_LEN), any::<[u8; 64]>()),
    ) {
        let bytes = encode_fork(&a, &b);
        let mut r = Reader::new(&bytes);
        prop_assert_eq!(ForkProof::decode_parts(&mut r), Ok((a, b)));
        prop_assert_eq!(r.finish(), Ok(()));
    }
}

proptest! {
    // Each case signs a handful of entries; fewer cases keep this quick.
    #![proptest_config(config(CASES / 4))]

    #[test]
    fn bundles_state_and_snapshots_round_trip((key, replica) in space()) {
        let bytes = bundle::export(&replica, &key, &VersionVector::new(), 1_700_000_100_000);
        let b = bundle::decode(&bytes).expect("an exported bundle decodes");
        let entries: Vec<Vec<u8>> = replica.log().map(Entry::encode).collect();
        prop_assert_eq!(&b.entries, &entries);
        prop_assert_eq!((b.space, b.exporter), (replica.space(), key.author()));

        let state = replica.state().to_bytes();
        prop_assert_eq!(SpaceState::from_bytes(&state), Some(replica.state().clone()));

        let snapshot = replica.snapshot();
        let log: Vec<Entry> = replica.log().cloned().collect();
        let restored = Replica::restore(&snapshot, log, ReplicaConfig::default()).expect("restores");
        prop_assert_eq!(restored.snapshot(), snapshot);
        prop_assert_eq!(restored.state_hash(), replica.state_hash());
    }
}

// ---------------------------------------------------------------------------
// Decoding never panics
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn truncated_encodings_are_refused(e in entry(), ops in ops(), vv in version_vector(), m in message()) {
        let header = e.header_bytes().to_vec();
        every_truncation_fails(&header, |b| Header::decode(&mut Reader::new(b)).ok());
        every_truncation_fails(&e.encode(), |b| Entry::decode(b).ok());
        every_truncation_fails(&encode_payload(&ops), |b| decode_payload(b).ok());
        every_truncation_fails(&encode_vv(&vv), |b| VersionVector::decode(&mut Reader::new(b)).ok());
        every_truncation_fails(&m.encode(), |b| Message::decode(b).ok());
        every_truncation_fails(&m.encode_inner(), |b| Message::decode_inner(b).ok());
        if let Message::Fork { a, b } = &m {
            every_truncation_fails(&encode_fork(a, b), |b| ForkProof::decode_parts(&mut Reader::new(b)).ok());
        }
    }

    #[test]
    fn mutated_encodings_decode_canonically_or_not_at_all(
        e in entry(),
        ops in ops(),
        vv in version_vector(),
        m in message(),
        v in number(),
        flips_ in flips(),
        at in 0usize..1000,
        value in edge_byte(),
    ) {
        let mut w = Writer::default();
        w.varint(v);
        mutations(decoders::varint, &w.finish(), &flips_, at, value);
        mutations(decoders::header, e.header_bytes(), &flips_, at, value);
        mutations(decoders::entry, &e.encode(), &flips_, at, value);
        mutations(decoders::payload, &encode_payload(&ops), &flips_, at, value);
        mutations(decoders::version_vector, &encode_vv(&vv), &flips_, at, value);
        mutations(decoders::message, &m.encode(), &flips_, at, value);
        mutations(decoders::message_inner, &m.encode_inner(), &flips_, at, value);
        if let Message::Fork { a, b } = &m {
            mutations(decoders::fork_proof, &encode_fork(a, b), &flips_, at, value);
        }
    }

    #[test]
    fn arbitrary_bytes_decode_canonically_or_not_at_all(
        bytes in vec(any::<u8>(), 0..512),
        first in prop_oneof![Just(None), any::<u8>().prop_map(Some)],
    ) {
        // A chosen first byte gets past version and kind checks more often.
        let mut bytes = bytes;
        if let Some(b) = first {
            bytes.insert(0, b);
        }
        for (_, check) in decoders::TARGETS {
            check(&bytes);
        }
        decoders::varint(&bytes);
        decoders::header(&bytes);
        // Past the magic, so the bundle decoder parses the body.
        let mut framed = MAGIC.to_vec();
        framed.push(1);
        framed.extend_from_slice(&bytes);
        decoders::bundle(&framed);
    }
}

proptest! {
    #![proptest_config(config(CASES / 4))]

    #[test]
    fn mutated_bundles_state_and_snapshots_never_panic(
        (key, replica) in space(),
        flips_ in flips(),
        at in 0usize..1000,
        value in edge_byte(),
    ) {
        let bundle = bundle::export(&replica, &key, &VersionVector::new(), 1_700_000_100_000);
        every_truncation_fails(&bundle, |b| bundle::decode(b).ok());
        mutations(decoders::bundle, &bundle, &flips_, at, value);

        let state = replica.state().to_bytes();
        every_truncation_fails(&state, SpaceState::from_bytes);
        mutations(decoders::state, &state, &flips_, at, value);

        let log: Vec<Entry> = replica.log().cloned().collect();
        let snapshot = replica.snapshot().bytes;
        every_truncation_fails(&snapshot, |b| {
            let s = Snapshot { entries: log.len() as u64, bytes: b.to_vec() };
            Replica::restore(&s, log.iter().cloned(), ReplicaConfig::default()).ok().map(|r| r.len())
        });
        let with_log = |b: &[u8]| decoders::snapshot_with(b, &log);
        with_log(&snapshot);
        with_log(&flip(&snapshot, &flips_));
        with_log(&overwrite(&snapshot, at, value));
        decoders::snapshot(&snapshot);
    }
}

// ---------------------------------------------------------------------------
// Forged counts and lengths
// ---------------------------------------------------------------------------

fn varint(v: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.varint(v);
    w.finish()
}

/// `prefix`, then a varint `count`, padded with zeros to `len` bytes.
fn claim(prefix: &[u8], count: u64, len: usize) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend(varint(count));
    out.resize(len.max(out.len()), 0);
    out
}

/// The error a count the input cannot hold must produce: refused by
/// `Reader::count` before any `Vec::with_capacity`, which needs at least one
/// minimal item per counted element to be present.
#[track_caller]
fn assert_count_refused(
    result: Result<impl std::fmt::Debug, DecodeError>,
    count: usize,
    min_item: usize,
) {
    match result {
        Err(DecodeError::UnexpectedEnd { needed, remaining }) => {
            assert_eq!(
                needed,
                count * min_item,
                "refused by the count check, not later"
            );
            assert!(remaining < needed);
        }
        Err(DecodeError::TooLarge { len, max, .. }) => assert!(len > max),
        other => panic!("a forged count of {count} was not refused up front: {other:?}"),
    }
}

/// A length field above its limit is refused as such.
#[track_caller]
fn assert_too_large(result: Result<impl std::fmt::Debug, DecodeError>) {
    assert!(
        matches!(result, Err(DecodeError::TooLarge { len, max, .. }) if len > max),
        "a forged length was not refused up front: {result:?}"
    );
}

#[test]
fn forged_counts_are_refused_before_allocating() {
    let started = Instant::now();
    let million = 1_000_000;

    // The literal case: ten bytes claiming a million items, for every count
    // that starts an input.
    let ten = |prefix: &[u8]| claim(prefix, million, 10);
    assert_count_refused(
        decode_payload(&ten(&[PAYLOAD_VERSION])),
        million as usize,
        1,
    );
    assert_count_refused(
        VersionVector::decode(&mut Reader::new(&ten(&[]))),
        million as usize,
        33,
    );
    assert_count_refused(Message::decode(&ten(&[1, 2])), million as usize, 1);
    assert_count_refused(Message::decode(&ten(&[1, 3])), million as usize, 33);
    assert_count_refused(Message::decode_inner(&ten(&[2])), million as usize, 1);

    // Counts at their maxima, so the limit alone does not refuse them.
    assert_count_refused(
        decode_payload(&claim(&[PAYLOAD_VERSION], 10_000, 10)),
        10_000,
        1,
    );
    assert_count_refused(
        VersionVector::decode(&mut Reader::new(&claim(&[], 100_000, 10))),
        100_000,
        33,
    );
    assert_count_refused(Message::decode(&claim(&[1, 2], 4096, 10)), 4096, 1);

    // Counts deeper in a value: dependencies of a header, Hello heads and
    // forks, entries of a bundle.
    let mut header = vec![1];
    header.extend([0u8; 64]); // space, author
    header.extend([0, 0]); // seq 0, no backlink
    assert_count_refused(
        Header::decode(&mut Reader::new(&claim(&header, million, 0))),
        million as usize,
        32,
    );
    assert_count_refused(
        Header::decode(&mut Reader::new(&claim(&header, 64, 0))),
        64,
        32,
    );
    // An entry claiming the largest payload, with none behind its signature:
    // `Reader::take` refuses it before the payload is copied.
    let mut entry = header.clone();
    entry.push(0); // no dependencies
    entry.extend([0u8; 40]); // timestamp, payload hash
    let mut entry = claim(&entry, MAX_PAYLOAD_LEN as u64, 0);
    entry.extend([0u8; 64]); // signature
    assert_count_refused(Entry::decode(&entry), MAX_PAYLOAD_LEN, 1);

    let mut hello = vec![1, 1, 1];
    hello.extend([0u8; 32]);
    assert_count_refused(Message::decode(&claim(&hello, 100_000, 0)), 100_000, 41);
    hello.push(0); // no heads
    assert_count_refused(Message::decode(&claim(&hello, 100_000, 0)), 100_000, 33);

    let mut bundle = MAGIC.to_vec();
    bundle.push(1);
    bundle.extend([0u8; 64]); // space, exporter
    bundle.extend([0, 0]); // created_ms, empty base
    let mut forged = claim(&bundle, million, 0);
    forged.extend([0u8; 64]); // signature
    match bundle::decode(&forged) {
        // Each bundle entry is at least 174 bytes (see `bundle.rs`).
        Err(BundleError::Decode(e)) => assert_count_refused(Err::<(), _>(e), million as usize, 174),
        other => panic!("a forged bundle entry count was not refused: {other:?}"),
    }

    // Length fields: a fork header, a chunk and a close reason claiming more
    // than their limits, with nothing behind them.
    assert_too_large(ForkProof::decode_parts(&mut Reader::new(&claim(
        &[],
        u64::MAX,
        10,
    ))));
    assert_too_large(Message::decode(&claim(&[1, 5, 0, 0, 1], million, 10)));
    assert_too_large(Message::decode(&claim(&[1, 6], million, 10)));

    // postcard (state and snapshots) bounds what it reserves by itself: a
    // snapshot whose first list claims a million chains is refused at once.
    let mut snapshot = vec![SNAPSHOT_VERSION];
    snapshot.extend([0u8; 32]);
    let s = Snapshot {
        entries: 0,
        bytes: claim(&snapshot, million, 0),
    };
    assert!(matches!(
        Replica::restore(&s, Vec::new(), ReplicaConfig::default()),
        Err(SnapshotError::Corrupt)
    ));
    assert_eq!(SpaceState::from_bytes(&claim(&[1], million, 10)), None);
    assert_eq!(SpaceState::from_bytes(&claim(&[1], u64::MAX, 16)), None);

    // Refusing all of these is a handful of comparisons; reserving and
    // filling millions of items would not be.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}
