//! Wire-format regression snapshots.
//!
//! Every value below is built from fixed seeds and fixed timestamps, so its
//! encoding is fully determined (Ed25519 signatures are deterministic). The
//! expected bytes are committed hex literals, split by field in the order the
//! module docs lay them out. If any format changes — a field moves, a tag is
//! renumbered, a varint becomes fixed-width — these tests fail, and the change
//! has to be made on purpose, with a format version bump, and the snapshots
//! regenerated.
//!
//! Each test also checks that decoding the snapshot gives back the value, so
//! the snapshots pin the decoders as well as the encoders.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use civicbase_core::bundle::{self, Bundle};
use civicbase_core::codec::{Reader, Writer};
use civicbase_core::op::{decode_payload, encode_payload, Choice, Op};
use civicbase_core::replica::{ForkProof, NewSpace, Replica, ReplicaConfig};
use civicbase_core::sync::{HeadInfo, Hello, Message, PROTOCOL_VERSION};
use civicbase_core::{AuthorId, Entry, Hash, Header, Keypair, Timestamp, VersionVector};

/// Wall time of the genesis entry (2023-11-14T22:13:20Z).
const T0: u64 = 1_700_000_000_000;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Compares bytes with a snapshot written as hex, one field per line, each
/// line optionally followed by `#` and a note; whitespace and notes are ignored.
#[track_caller]
fn assert_hex(actual: &[u8], expected: &str) {
    let expected: String = expected
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(
        hex(actual),
        expected,
        "encoding differs from the committed snapshot"
    );
}

fn key() -> Keypair {
    Keypair::from_seed([7; 32])
}

fn genesis_ops() -> Vec<Op> {
    vec![Op::Genesis {
        name: "Town hall".into(),
        founder_name: "Alice".into(),
        default_credit_limit: 10,
    }]
}

fn genesis() -> Entry {
    Entry::sign(
        &key(),
        Hash::ZERO,
        0,
        None,
        Vec::new(),
        Timestamp::from_millis(T0),
        encode_payload(&genesis_ops()),
    )
}

/// Two dependencies standing for other authors' heads.
fn deps() -> Vec<Hash> {
    vec![Hash([0x11; 32]), Hash([0x22; 32])]
}

fn ordinary_ops() -> Vec<Op> {
    vec![
        Op::PostNotice {
            title: "Water".into(),
            body: "At the school from 9:00".into(),
        },
        Op::Vote {
            proposal: Hash([0x33; 32]),
            choice: Choice::Yes,
        },
        Op::Transfer {
            to: AuthorId([0x44; 32]),
            amount: 3,
            memo: "Soup".into(),
        },
    ]
}

/// seq 1 on top of the genesis entry, with two dependencies and three ops.
fn ordinary(genesis: &Entry) -> Entry {
    Entry::sign(
        &key(),
        genesis.id(),
        1,
        Some(genesis.id()),
        deps(),
        Timestamp::from_millis(T0 + 1_000),
        encode_payload(&ordinary_ops()),
    )
}

/// A second, different entry at the same seq as [`ordinary`]: a fork.
fn forked(genesis: &Entry) -> Entry {
    Entry::sign(
        &key(),
        genesis.id(),
        1,
        Some(genesis.id()),
        Vec::new(),
        Timestamp::from_millis(T0 + 2_000),
        encode_payload(&[Op::SetProfile {
            name: "Alicia".into(),
        }]),
    )
}

fn hello() -> Message {
    let g = genesis();
    let o = ordinary(&g);
    let mut head_prefix = [0u8; 8];
    head_prefix.copy_from_slice(&o.id().as_bytes()[..8]);
    Message::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        space: g.id(),
        // Ascending by author, as the decoder requires.
        heads: vec![
            HeadInfo {
                author: AuthorId([0x55; 32]),
                count: 300,
                head_prefix: [0xab; 8],
            },
            HeadInfo {
                author: key().author(),
                count: 2,
                head_prefix,
            },
        ],
        forks: vec![(AuthorId([0x66; 32]), 7)],
    })
}

fn version_vector() -> VersionVector {
    let mut vv = VersionVector::new();
    vv.set(key().author(), 2);
    vv.set(AuthorId([0x55; 32]), 300);
    vv
}

fn fork() -> Message {
    let g = genesis();
    let (o, f) = (ordinary(&g), forked(&g));
    Message::Fork {
        a: (o.header_bytes().to_vec(), *o.signature()),
        b: (f.header_bytes().to_vec(), *f.signature()),
    }
}

/// The space as exported in the bundle snapshot: the genesis entry and one
/// notice, authored through a replica.
fn bundle_replica() -> Replica {
    let k = key();
    let (mut replica, genesis) = Replica::create(
        &k,
        NewSpace {
            name: "Town hall".into(),
            founder_name: "Alice".into(),
            default_credit_limit: 10,
        },
        T0,
        ReplicaConfig::default(),
    )
    .expect("a fresh space");
    assert_eq!(
        genesis,
        self::genesis(),
        "Replica::create signs the same genesis entry"
    );
    replica
        .author(
            &k,
            vec![Op::PostNotice {
                title: "Water".into(),
                body: "At the school".into(),
            }],
            T0 + 1_000,
        )
        .expect("the founder may post");
    replica
}

/// Checks everything an encoded entry must satisfy besides its snapshot.
fn check_entry(entry: &Entry, expected_id: &str, ops: &[Op]) {
    let bytes = entry.encode();
    assert_eq!(bytes.len(), entry.encoded_len());
    // The id is BLAKE3 of the header bytes, which open the encoding.
    assert!(bytes.starts_with(entry.header_bytes()));
    assert_eq!(entry.header_bytes(), entry.header().encode().as_slice());
    assert_eq!(
        entry.id().as_bytes(),
        blake3::hash(entry.header_bytes()).as_bytes()
    );
    assert_hex(entry.id().as_bytes(), expected_id);
    // Header, signature, payload: nothing else.
    assert_eq!(
        &bytes[entry.header_bytes().len()..][..64],
        entry.signature()
    );
    assert_eq!(&bytes[entry.header_bytes().len() + 64..], entry.payload());
    // decode(encode(x)) == x, for the entry, its header and its payload.
    assert_eq!(Entry::decode(&bytes).as_ref(), Ok(entry));
    let mut r = Reader::new(entry.header_bytes());
    assert_eq!(Header::decode(&mut r).as_ref(), Ok(entry.header()));
    assert_eq!(r.finish(), Ok(()));
    assert_eq!(decode_payload(entry.payload()).as_deref(), Ok(ops));
    // The snapshot is a real, valid entry.
    assert_eq!(entry.validate(), Ok(()));
}

/// Checks a message against its snapshot, as a frame and as a chunk body.
fn check_message(msg: &Message, expected: &str) {
    let frame = msg.encode();
    assert_hex(&frame, expected);
    assert_eq!(Message::decode(&frame).as_ref(), Ok(msg));
    // Inside chunks a message travels without the version byte.
    assert_eq!(msg.encode_inner(), frame[1..]);
    if matches!(msg, Message::Chunk { .. }) {
        assert!(
            Message::decode_inner(&frame[1..]).is_err(),
            "a chunk never nests"
        );
    } else {
        assert_eq!(Message::decode_inner(&frame[1..]).as_ref(), Ok(msg));
    }
}

#[test]
fn genesis_entry_matches_snapshot() {
    let g = genesis();
    assert!(g.is_genesis());
    assert_hex(&g.encode(), GENESIS);
    check_entry(&g, GENESIS_ID, &genesis_ops());
}

#[test]
fn ordinary_entry_matches_snapshot() {
    let g = genesis();
    let o = ordinary(&g);
    assert_eq!(o.header().backlink, Some(g.id()));
    assert_eq!(o.header().deps, deps());
    assert_hex(&o.encode(), ORDINARY);
    check_entry(&o, ORDINARY_ID, &ordinary_ops());
}

#[test]
fn hello_matches_snapshot() {
    check_message(&hello(), HELLO);
}

#[test]
fn entries_message_matches_snapshot() {
    let g = genesis();
    let o = ordinary(&g);
    // The two entries are byte for byte the entry snapshots above.
    let expected = format!(
        "01   # frame version
         02   # kind 2 Entries
         02   # entry count (varint 2)
         c101 # entry 0 len (varint 193)
         {GENESIS}
         f702 # entry 1 len (varint 375)
         {ORDINARY}"
    );
    check_message(&Message::Entries(vec![g.encode(), o.encode()]), &expected);
}

#[test]
fn have_and_version_vector_match_snapshot() {
    let vv = version_vector();
    check_message(&Message::Have(vv.clone()), HAVE);
    // A Have body is exactly a version vector.
    let mut w = Writer::default();
    vv.encode(&mut w);
    let bytes = w.finish();
    assert_eq!(bytes, Message::Have(vv.clone()).encode()[2..]);
    let mut r = Reader::new(&bytes);
    assert_eq!(VersionVector::decode(&mut r), Ok(vv));
    assert_eq!(r.finish(), Ok(()));
}

#[test]
fn fork_matches_snapshot_and_proves_a_fork() {
    let msg = fork();
    check_message(&msg, FORK);
    let Message::Fork { a, b } = msg else {
        unreachable!("fork() builds a Fork")
    };
    // The body is exactly the two signed headers of a fork proof.
    let frame = fork().encode();
    let mut r = Reader::new(&frame[2..]);
    assert_eq!(ForkProof::decode_parts(&mut r), Ok((a.clone(), b.clone())));
    assert_eq!(r.finish(), Ok(()));
    // They do prove a fork, and a proof encodes as the same two parts
    // (ordered by header id).
    let proof = ForkProof::verify(&genesis().id(), a.clone(), b.clone()).expect("a genuine fork");
    assert_eq!((proof.author, proof.seq), (key().author(), 1));
    let ordered = if Hash::of(&a.0) <= Hash::of(&b.0) {
        (a, b)
    } else {
        (b, a)
    };
    let mut w = Writer::default();
    proof.encode(&mut w);
    assert_eq!(
        ForkProof::decode_parts(&mut Reader::new(&w.finish())),
        Ok(ordered)
    );
}

#[test]
fn chunk_matches_snapshot() {
    let msg = Message::Chunk {
        id: 3,
        index: 1,
        total: 2,
        data: b"chunk".to_vec(),
    };
    check_message(&msg, CHUNK);
}

#[test]
fn close_matches_snapshot() {
    check_message(&Message::Close("bye".into()), CLOSE);
}

#[test]
fn bundle_matches_snapshot() {
    let replica = bundle_replica();
    let bytes = bundle::export(&replica, &key(), &VersionVector::new(), T0 + 2_000);
    assert_hex(&bytes, BUNDLE);
    let entries: Vec<Vec<u8>> = replica.log().map(Entry::encode).collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0], genesis().encode());
    let expected = Bundle {
        space: genesis().id(),
        exporter: key().author(),
        created_ms: T0 + 2_000,
        base: VersionVector::new(),
        entries,
    };
    assert_eq!(bundle::decode(&bytes), Ok(expected.clone()));
    // What the snapshot carries imports into a device that has only the genesis entry.
    let mut fresh =
        Replica::from_genesis(genesis(), T0 + 3_000, ReplicaConfig::default()).expect("genesis");
    let report = bundle::import(&mut fresh, &expected, T0 + 3_000).expect("same space");
    assert_eq!(
        (report.added.len(), report.duplicates, report.rejected.len()),
        (1, 1, 0)
    );
    assert_eq!(fresh.state_hash(), replica.state_hash());
}

// ---------------------------------------------------------------------------
// Committed snapshots. Each line is one field: hex bytes, then `#` and what
// the field is, in the order of the byte layouts in the module docs.
// ---------------------------------------------------------------------------

const GENESIS: &str = "
    01                                                               # version
    0000000000000000000000000000000000000000000000000000000000000000 # space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # author
    00                                                               # seq (varint 0)
    00                                                               # has_backlink
    00                                                               # dep_count (varint 0)
    018bcfe568000000                                                 # timestamp (u64 BE)
    96d741b37574402f4f906dfa039e8e8538859652e8415ea0e034cf8f9142423b # payload_hash
    14                                                               # payload_len (varint 20)
    61d50efa0ce40f1fc8c0f1158dbbf76ddc9963539bb9f73ecb097bcd84cf493a # signature
    ba4f05e49ab1148ba399d9d899e788233d0beae23b9ed14c9f303b07607ccd0e
    02                                                               # payload: version
    01                                                               # payload: op count (varint 1)
    01                                                               # op tag 1 Genesis
    09                                                               # name len (varint 9)
    546f776e2068616c6c                                               # name
    05                                                               # founder_name len (varint 5)
    416c696365                                                       # founder_name
    0a                                                               # default_credit_limit (varint 10)
";

const ORDINARY: &str = "
    01                                                               # version
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # author
    01                                                               # seq (varint 1)
    01                                                               # has_backlink
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # backlink
    02                                                               # dep_count (varint 2)
    1111111111111111111111111111111111111111111111111111111111111111 # dep 0
    2222222222222222222222222222222222222222222222222222222222222222 # dep 1
    018bcfe56be80000                                                 # timestamp (u64 BE)
    9fd4446fd52c8114e9022e36ff7a5f34551ef1901285ee799edbb09ed12d4958 # payload_hash
    6a                                                               # payload_len (varint 106)
    f6ee54881b9da91d8957b0e6a0f99a3d38b2594dddca336a82e85464e445308f # signature
    25a727773f40be0f2eee8107ba176434afb56ee056dc37ca8b14031605e15f00
    02                                                               # payload: version
    03                                                               # payload: op count (varint 3)
    14                                                               # op tag 20 PostNotice
    05                                                               # title len (varint 5)
    5761746572                                                       # title
    17                                                               # body len (varint 23)
    417420746865207363686f6f6c2066726f6d20393a3030                   # body
    1f                                                               # op tag 31 Vote
    3333333333333333333333333333333333333333333333333333333333333333 # proposal
    00                                                               # choice Yes
    32                                                               # op tag 50 Transfer
    4444444444444444444444444444444444444444444444444444444444444444 # to
    03                                                               # amount (varint 3)
    04                                                               # memo len (varint 4)
    536f7570                                                         # memo
";

const HELLO: &str = "
    01                                                               # frame version
    01                                                               # kind 1 Hello
    02                                                               # protocol (varint 2)
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # space
    02                                                               # head count (varint 2)
    5555555555555555555555555555555555555555555555555555555555555555 # head 0 author
    ac02                                                             # head 0 count (varint 300)
    abababababababab                                                 # head 0 id prefix
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # head 1 author
    02                                                               # head 1 count (varint 2)
    f59080f6febea195                                                 # head 1 id prefix
    01                                                               # fork count (varint 1)
    6666666666666666666666666666666666666666666666666666666666666666 # fork 0 author
    07                                                               # fork 0 seq (varint 7)
";

const HAVE: &str = "
    01                                                               # frame version
    03                                                               # kind 3 Have
    02                                                               # author count (varint 2)
    5555555555555555555555555555555555555555555555555555555555555555 # author 0
    ac02                                                             # author 0 count (varint 300)
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # author 1
    02                                                               # author 1 count (varint 2)
";

const FORK: &str = "
    01                                                               # frame version
    04                                                               # kind 4 Fork
    cd01                                                             # header a len (varint 205)
    01                                                               # a: version
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # a: space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # a: author
    01                                                               # a: seq (varint 1)
    01                                                               # a: has_backlink
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # a: backlink
    02                                                               # a: dep_count (varint 2)
    1111111111111111111111111111111111111111111111111111111111111111 # a: dep 0
    2222222222222222222222222222222222222222222222222222222222222222 # a: dep 1
    018bcfe56be80000                                                 # a: timestamp (u64 BE)
    9fd4446fd52c8114e9022e36ff7a5f34551ef1901285ee799edbb09ed12d4958 # a: payload_hash
    6a                                                               # a: payload_len (varint 106)
    f6ee54881b9da91d8957b0e6a0f99a3d38b2594dddca336a82e85464e445308f # a: signature
    25a727773f40be0f2eee8107ba176434afb56ee056dc37ca8b14031605e15f00
    8d01                                                             # header b len (varint 141)
    01                                                               # b: version
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # b: space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # b: author
    01                                                               # b: seq (varint 1)
    01                                                               # b: has_backlink
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # b: backlink
    00                                                               # b: dep_count (varint 0)
    018bcfe56fd00000                                                 # b: timestamp (u64 BE)
    03b107ee13bf75d2105e7457031b54a7a56fa5f3c3c56cdda1b85da746d16819 # b: payload_hash
    0a                                                               # b: payload_len (varint 10)
    f5efa2d0cde5cfa2927d6c3de143e3cc81bb565e22427927c98e039bccf0336b # b: signature
    77fbb7a51cffb231e4047099c2a4c7592f013707c7485cca1996da7a4697eb0f
";

const CHUNK: &str = "
    01                                                               # frame version
    05                                                               # kind 5 Chunk
    03                                                               # id (varint 3)
    01                                                               # index (varint 1)
    02                                                               # total (varint 2)
    05                                                               # data len (varint 5)
    6368756e6b                                                       # data `chunk`
";

const CLOSE: &str = "
    01                                                               # frame version
    06                                                               # kind 6 Close
    03                                                               # reason len (varint 3)
    627965                                                           # reason `bye`
";

const BUNDLE: &str = "
    4349564943424153452042554e444c45                                 # magic `CIVICBASE BUNDLE`
    01                                                               # version
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # exporter
    d0df95ffbc31                                                     # created_ms (varint 1700000002000)
    00                                                               # base: author count (varint 0)
    02                                                               # entry count (varint 2)
    c101                                                             # entry 0 len (varint 193)
    01                                                               # entry 0: version
    0000000000000000000000000000000000000000000000000000000000000000 # entry 0: space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # entry 0: author
    00                                                               # entry 0: seq (varint 0)
    00                                                               # entry 0: has_backlink
    00                                                               # entry 0: dep_count (varint 0)
    018bcfe568000000                                                 # entry 0: timestamp (u64 BE)
    96d741b37574402f4f906dfa039e8e8538859652e8415ea0e034cf8f9142423b # entry 0: payload_hash
    14                                                               # entry 0: payload_len (varint 20)
    61d50efa0ce40f1fc8c0f1158dbbf76ddc9963539bb9f73ecb097bcd84cf493a # entry 0: signature
    ba4f05e49ab1148ba399d9d899e788233d0beae23b9ed14c9f303b07607ccd0e
    02                                                               # entry 0: payload: version
    01                                                               # entry 0: payload: op count (varint 1)
    01                                                               # entry 0: op tag 1 Genesis
    09                                                               # entry 0: name len (varint 9)
    546f776e2068616c6c                                               # entry 0: name
    05                                                               # entry 0: founder_name len (varint 5)
    416c696365                                                       # entry 0: founder_name
    0a                                                               # entry 0: default_credit_limit (varint 10)
    e401                                                             # entry 1 len (varint 228)
    01                                                               # entry 1: version
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # entry 1: space
    ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c # entry 1: author
    01                                                               # entry 1: seq (varint 1)
    01                                                               # entry 1: has_backlink
    dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da # entry 1: backlink
    00                                                               # entry 1: dep_count (varint 0)
    018bcfe56be80000                                                 # entry 1: timestamp (u64 BE)
    f96361258d3b9526f853a4a8244cd08253785588032bca3a37db6135e41c9ec2 # entry 1: payload_hash
    17                                                               # entry 1: payload_len (varint 23)
    2648ee60f45a03fe7768adc32dad824b94b5af3c752d70ce03c48b66d61a6487 # entry 1: signature
    a719d520f371b987e4daf9d2f8cd9f2fca492989db132df7eaba301d6b71980d
    02                                                               # entry 1: payload: version
    01                                                               # entry 1: payload: op count (varint 1)
    14                                                               # entry 1: op tag 20 PostNotice
    05                                                               # entry 1: title len (varint 5)
    5761746572                                                       # entry 1: title
    0d                                                               # entry 1: body len (varint 13)
    417420746865207363686f6f6c                                       # entry 1: body
    3cb1f78345a8d1a354f39ac3af8df71f8aa671f77940549ca98bd5c708f83010 # bundle signature
    a70686310d1cc30c4ff1ff0780f7293983f9d4053a89f13c378f4ce80641520a
";

/// BLAKE3 of the genesis header: the space id.
const GENESIS_ID: &str = "dd2486871d6c8969a99b031e4338876b2073f36bc633110882d9d11b929e69da";

/// BLAKE3 of the ordinary entry's header.
const ORDINARY_ID: &str = "f59080f6febea195ceef2ef8efbc56c64ebe1b6639f1305970e05f5613ca1a4a";
