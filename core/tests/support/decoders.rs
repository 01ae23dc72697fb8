//! What "decoding untrusted bytes" must guarantee, one function per decoder.
//!
//! Shared by the property tests (`wire_props.rs`), the replay of committed
//! fuzz crashers (`fuzz_crashers.rs`) and the cargo-fuzz targets in `fuzz/`
//! (which include this file by path), so a crasher replays exactly the check
//! the fuzzer ran.
//!
//! Every function takes arbitrary bytes and panics only if the decoder
//! breaks its contract:
//!
//! * it must never panic, whatever the input;
//! * where the format is canonical (everything built on `codec`: entries,
//!   headers, payloads, version vectors, sync messages, fork proofs and
//!   bundles), a successful decode must re-encode to exactly the bytes it
//!   consumed, so that every value has one encoding and hashes of encodings
//!   are stable;
//! * the postcard-encoded local formats (state and replica snapshots) are not
//!   canonical — postcard accepts overlong varints, ignores trailing bytes and
//!   takes map entries in any order — so for them a decoded value must be a
//!   fixed point instead: its canonical encoding decodes back to it.

#![allow(dead_code)]

use civicbase_core::bundle::{self, BUNDLE_VERSION, MAGIC};
use civicbase_core::codec::{Reader, Writer};
use civicbase_core::op::{decode_payload, encode_payload};
use civicbase_core::replica::{ForkProof, Replica, ReplicaConfig, Snapshot};
use civicbase_core::sync::Message;
use civicbase_core::{Entry, Hash, Header, SpaceState, VersionVector};

/// A decoder check by the name of its fuzz target (and crashers directory).
pub type Check = fn(&[u8]);

/// Every fuzz target, by name.
pub const TARGETS: &[(&str, Check)] = &[
    ("entry", entry),
    ("payload", payload),
    ("message", message),
    ("message_inner", message_inner),
    ("version_vector", version_vector),
    ("bundle", bundle),
    ("fork_proof", fork_proof),
    ("state", state),
    ("snapshot", snapshot),
];

/// The check of the fuzz target called `name`.
pub fn by_name(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// `Reader::varint` on the front of `data`.
pub fn varint(data: &[u8]) {
    let mut r = Reader::new(data);
    if let Ok(v) = r.varint() {
        let mut w = Writer::default();
        w.varint(v);
        assert_eq!(
            w.finish(),
            data[..r.position()],
            "non-canonical varint accepted"
        );
    }
}

/// `Header::decode` on the front of `data`.
pub fn header(data: &[u8]) {
    let mut r = Reader::new(data);
    if let Ok(h) = Header::decode(&mut r) {
        assert_eq!(
            h.encode(),
            data[..r.position()],
            "non-canonical header accepted"
        );
    }
}

/// `Entry::decode` (whole input).
pub fn entry(data: &[u8]) {
    if let Ok(e) = Entry::decode(data) {
        assert_eq!(e.encode(), data, "non-canonical entry accepted");
        assert_eq!(
            e.id(),
            Hash::of(e.header_bytes()),
            "entry id is not the header hash"
        );
        // Validation of a decoded entry runs on untrusted input too.
        let _ = e.validate();
    }
}

/// `op::decode_payload` (whole input).
pub fn payload(data: &[u8]) {
    if let Ok(ops) = decode_payload(data) {
        assert_eq!(encode_payload(&ops), data, "non-canonical payload accepted");
    }
}

/// `Message::decode` (a frame).
pub fn message(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(m.encode(), data, "non-canonical frame accepted");
    }
}

/// `Message::decode_inner` (a message reassembled from chunks).
pub fn message_inner(data: &[u8]) {
    if let Ok(m) = Message::decode_inner(data) {
        assert_eq!(m.encode_inner(), data, "non-canonical message accepted");
    }
}

/// `VersionVector::decode` on the front of `data`.
pub fn version_vector(data: &[u8]) {
    let mut r = Reader::new(data);
    if let Ok(vv) = VersionVector::decode(&mut r) {
        let mut w = Writer::default();
        vv.encode(&mut w);
        assert_eq!(
            w.finish(),
            data[..r.position()],
            "non-canonical version vector accepted"
        );
    }
}

/// `ForkProof::decode_parts` on the front of `data`, then verification of
/// the parts (which decodes the two headers).
pub fn fork_proof(data: &[u8]) {
    let mut r = Reader::new(data);
    if let Ok((a, b)) = ForkProof::decode_parts(&mut r) {
        let mut w = Writer::default();
        w.bytes(&a.0);
        w.raw(&a.1);
        w.bytes(&b.0);
        w.raw(&b.1);
        assert_eq!(
            w.finish(),
            data[..r.position()],
            "non-canonical fork proof accepted"
        );
        // Any space will do: the headers are decoded before it is compared.
        let _ = ForkProof::verify(&Hash::ZERO, a, b);
    }
}

/// `bundle::decode` (whole input, signature checked).
pub fn bundle(data: &[u8]) {
    if let Ok(b) = bundle::decode(data) {
        let mut w = Writer::default();
        w.raw(MAGIC);
        w.u8(BUNDLE_VERSION);
        w.raw(b.space.as_bytes());
        w.raw(b.exporter.as_bytes());
        w.varint(b.created_ms);
        b.base.encode(&mut w);
        w.varint(b.entries.len() as u64);
        for e in &b.entries {
            w.bytes(e);
        }
        let body = w.finish();
        assert_eq!(
            body,
            data[..data.len() - 64],
            "non-canonical bundle accepted"
        );
        for e in &b.entries {
            entry(e);
        }
    }
}

/// `SpaceState::from_bytes`.
pub fn state(data: &[u8]) {
    if let Some(s) = SpaceState::from_bytes(data) {
        let canonical = s.to_bytes();
        assert_eq!(
            SpaceState::from_bytes(&canonical),
            Some(s),
            "state does not survive re-encoding"
        );
    }
}

/// `Replica::restore` of snapshot bytes with no stored entries.
pub fn snapshot(data: &[u8]) {
    snapshot_with(data, &[]);
}

/// `Replica::restore` of snapshot bytes with the given stored entries.
pub fn snapshot_with(data: &[u8], entries: &[Entry]) {
    let restore = |bytes: Vec<u8>| {
        let snapshot = Snapshot {
            entries: entries.len() as u64,
            bytes,
        };
        Replica::restore(&snapshot, entries.iter().cloned(), ReplicaConfig::default())
    };
    if let Ok(r) = restore(data.to_vec()) {
        let canonical = r.snapshot().bytes;
        let again = restore(canonical.clone()).expect("a re-encoded snapshot restores");
        assert_eq!(
            again.snapshot().bytes,
            canonical,
            "snapshot does not survive re-encoding"
        );
        assert_eq!(again.state_hash(), r.state_hash());
    }
}
