//! Signed, hash-chained entries: the unit of authorship and replication.
//!
//! # Byte layout (format version 1)
//!
//! ```text
//! header    = version:u8 (=1)
//!             space:[32]          (all zero in a genesis entry)
//!             author:[32]         (Ed25519 public key)
//!             seq:varint          (per author per space, from 0)
//!             has_backlink:u8     (0 at seq 0, else 1)
//!             backlink:[32]       (only when has_backlink = 1)
//!             dep_count:varint    (at most 64)
//!             deps:[32]*          (strictly ascending)
//!             timestamp:u64 BE    (hybrid logical clock)
//!             payload_hash:[32]   (BLAKE3 of the payload)
//!             payload_len:varint  (at most 8 MiB)
//! entry     = header signature:[64] payload:[payload_len]
//! entry id  = BLAKE3(header)
//! ```
//!
//! The signature covers the header bytes, and the header commits to the
//! payload through its hash, so the signature covers the whole entry. An
//! entry's identity is its header hash, never its signature bytes.

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::hlc::Timestamp;
use crate::id::{AuthorId, EntryId, Hash, SpaceId};
use crate::identity::{self, Keypair, SignatureError, SIGNATURE_LEN};

/// The entry format version this build writes and reads.
pub const ENTRY_VERSION: u8 = 1;
/// Most causal dependencies one entry may name.
pub const MAX_DEPS: usize = 64;
/// Largest payload one entry may carry (a bulk import is one large entry).
pub const MAX_PAYLOAD_LEN: usize = 8 * 1024 * 1024;
/// Largest encoded header.
pub const MAX_HEADER_LEN: usize = 1 + 32 + 32 + 10 + 1 + 32 + 2 + MAX_DEPS * 32 + 8 + 32 + 4;
/// Highest sequence number accepted (keeps per-entry clocks in 32 bits).
pub const MAX_SEQ: u64 = u32::MAX as u64 - 1;

/// The signed header of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The space this entry belongs to ([`Hash::ZERO`] in a genesis entry).
    pub space: SpaceId,
    /// The signing author.
    pub author: AuthorId,
    /// Position in the author's chain in this space, from 0.
    pub seq: u64,
    /// Id of the author's previous entry; `None` exactly at seq 0.
    pub backlink: Option<EntryId>,
    /// Heads of other authors the author had seen, strictly ascending.
    pub deps: Vec<EntryId>,
    /// Hybrid logical clock time of authorship.
    pub timestamp: Timestamp,
    /// BLAKE3 of the payload.
    pub payload_hash: Hash,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl Header {
    /// The canonical bytes that are hashed and signed.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160 + self.deps.len() * 32);
        w.u8(ENTRY_VERSION);
        w.raw(self.space.as_bytes());
        w.raw(self.author.as_bytes());
        w.varint(self.seq);
        match &self.backlink {
            Some(b) => {
                w.u8(1);
                w.raw(b.as_bytes());
            }
            None => w.u8(0),
        }
        w.varint(self.deps.len() as u64);
        for d in &self.deps {
            w.raw(d.as_bytes());
        }
        w.u64_be(self.timestamp.0);
        w.raw(self.payload_hash.as_bytes());
        w.varint(self.payload_len);
        w.finish()
    }

    /// Decodes a header from the front of `r`, enforcing every canonical-form
    /// rule so that decode-then-encode reproduces the input bytes.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "entry",
                found: version,
                supported: ENTRY_VERSION,
            });
        }
        let space = Hash(r.array()?);
        let author = AuthorId(r.array()?);
        let seq = r.varint_max("seq", MAX_SEQ)?;
        let backlink = match r.u8()? {
            0 => None,
            1 => Some(Hash(r.array()?)),
            _ => {
                return Err(DecodeError::NonCanonical {
                    what: "backlink flag",
                })
            }
        };
        let n = r.count("dep count", MAX_DEPS, 32)?;
        let mut deps = Vec::with_capacity(n);
        for _ in 0..n {
            let d = Hash(r.array()?);
            if deps.last().is_some_and(|last: &Hash| *last >= d) {
                return Err(DecodeError::NonCanonical {
                    what: "dependency order",
                });
            }
            deps.push(d);
        }
        let timestamp = Timestamp(r.u64_be()?);
        let payload_hash = Hash(r.array()?);
        let payload_len = r.varint_max("payload length", MAX_PAYLOAD_LEN as u64)?;
        Ok(Header {
            space,
            author,
            seq,
            backlink,
            deps,
            timestamp,
            payload_hash,
            payload_len,
        })
    }

    /// Whether this is a genesis header (seq 0 with no space and no deps).
    pub fn is_genesis(&self) -> bool {
        self.space == Hash::ZERO && self.seq == 0 && self.deps.is_empty()
    }
}

/// A complete entry: header, signature and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    header: Header,
    header_bytes: Vec<u8>,
    id: EntryId,
    signature: [u8; SIGNATURE_LEN],
    payload: Vec<u8>,
}

/// Why an entry is invalid on its own (before looking at any other entry).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// The bytes are not an entry.
    #[error("malformed entry: {0}")]
    Decode(#[from] DecodeError),
    /// The payload does not hash to the header's payload hash.
    #[error("the payload was altered: its hash does not match the signed header")]
    PayloadHashMismatch,
    /// seq 0 must have no backlink; every later seq must have one.
    #[error("seq {seq} {}", if *.has_backlink { "must not have a backlink" } else { "needs a backlink" })]
    BacklinkShape {
        /// The entry's seq.
        seq: u64,
        /// Whether it had a backlink.
        has_backlink: bool,
    },
    /// A genesis-shaped entry must carry a zero space; others a non-zero one.
    #[error("space field is inconsistent with seq and deps")]
    SpaceShape,
    /// The signature does not verify against the author.
    #[error("bad signature: {0}")]
    Signature(#[source] SignatureError),
    /// The entry belongs to another space.
    #[error("entry belongs to space {found:?}, not {expected:?}")]
    WrongSpace {
        /// The space being synced.
        expected: SpaceId,
        /// The space in the entry.
        found: SpaceId,
    },
    /// The previous entry given is by another author.
    #[error("the backlinked entry is by another author")]
    BacklinkAuthor,
    /// The previous entry is not at seq − 1.
    #[error("seq gap: expected seq {expected}, found {found}")]
    SeqGap {
        /// seq of the previous entry + 1.
        expected: u64,
        /// seq of this entry.
        found: u64,
    },
    /// The backlink hash is not the previous entry's id.
    #[error("wrong backlink: it does not name the author's previous entry")]
    BacklinkMismatch,
    /// The timestamp is not after a causal predecessor's.
    #[error("timestamp {found:?} is not after its predecessor's {predecessor:?}")]
    TimestampNotIncreasing {
        /// This entry's timestamp.
        found: Timestamp,
        /// The predecessor's timestamp.
        predecessor: Timestamp,
    },
}

impl Entry {
    /// Creates and signs a new entry.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        keypair: &Keypair,
        space: SpaceId,
        seq: u64,
        backlink: Option<EntryId>,
        mut deps: Vec<EntryId>,
        timestamp: Timestamp,
        payload: Vec<u8>,
    ) -> Entry {
        deps.sort_unstable();
        deps.dedup();
        let header = Header {
            space,
            author: keypair.author(),
            seq,
            backlink,
            deps,
            timestamp,
            payload_hash: Hash::of(&payload),
            payload_len: payload.len() as u64,
        };
        let header_bytes = header.encode();
        let signature = keypair.sign(&header_bytes);
        let id = Hash::of(&header_bytes);
        Entry {
            header,
            header_bytes,
            id,
            signature,
            payload,
        }
    }

    /// Assembles an entry from parts without checking the signature.
    pub fn from_parts(header: Header, signature: [u8; SIGNATURE_LEN], payload: Vec<u8>) -> Entry {
        let header_bytes = header.encode();
        Entry {
            id: Hash::of(&header_bytes),
            header,
            header_bytes,
            signature,
            payload,
        }
    }

    /// The entry id (BLAKE3 of the header).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The canonical header bytes.
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }

    /// The signature over the header bytes.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Length of [`Entry::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        self.header_bytes.len() + SIGNATURE_LEN + self.payload.len()
    }

    /// The entry's wire bytes: header, signature, payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header_bytes);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.payload);
    }

    /// Decodes exactly one entry from `bytes` (no trailing bytes allowed).
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        let mut r = Reader::new(bytes);
        let e = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(e)
    }

    /// Decodes one entry from the front of `r`.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
        let start = r.position();
        let header = Header::decode(r)?;
        let header_len = r.position() - start;
        let signature: [u8; SIGNATURE_LEN] = r.array()?;
        let payload = r.take(header.payload_len as usize)?.to_vec();
        let header_bytes = header.encode();
        debug_assert_eq!(header_bytes.len(), header_len);
        Ok(Entry {
            id: Hash::of(&header_bytes),
            header,
            header_bytes,
            signature,
            payload,
        })
    }

    /// Stateless checks except the signature: shape of seq/backlink/space and
    /// the payload hash. Cheap; run before signature verification.
    pub fn validate_shape(&self) -> Result<(), EntryError> {
        validate_header(&self.header)?;
        if self.payload.len() as u64 != self.header.payload_len
            || Hash::of(&self.payload) != self.header.payload_hash
        {
            return Err(EntryError::PayloadHashMismatch);
        }
        Ok(())
    }

    /// All stateless checks including a strict signature verification.
    pub fn validate(&self) -> Result<(), EntryError> {
        self.validate_shape()?;
        identity::verify(&self.header.author, &self.header_bytes, &self.signature)
            .map_err(EntryError::Signature)
    }

    /// Checks that the entry belongs to `space` (a genesis entry must *be* it).
    pub fn validate_space(&self, space: &SpaceId) -> Result<(), EntryError> {
        let found = if self.header.is_genesis() {
            self.id
        } else {
            self.header.space
        };
        if found != *space {
            return Err(EntryError::WrongSpace {
                expected: *space,
                found,
            });
        }
        Ok(())
    }

    /// Whether this is a space's genesis entry.
    pub fn is_genesis(&self) -> bool {
        self.header.is_genesis()
    }
}

/// Stateless header checks: backlink present exactly when seq > 0, and the
/// space field zero exactly in a genesis entry.
pub fn validate_header(h: &Header) -> Result<(), EntryError> {
    if (h.seq == 0) == h.backlink.is_some() {
        return Err(EntryError::BacklinkShape {
            seq: h.seq,
            has_backlink: h.backlink.is_some(),
        });
    }
    let zero_space = h.space == Hash::ZERO;
    if zero_space && !h.is_genesis() {
        return Err(EntryError::SpaceShape);
    }
    Ok(())
}

/// Checks an entry against the author's previous entry, which the caller
/// fetched by the entry's backlink.
pub fn validate_backlink(
    entry: &Header,
    prev_id: &EntryId,
    prev: &Header,
) -> Result<(), EntryError> {
    if prev.author != entry.author {
        return Err(EntryError::BacklinkAuthor);
    }
    if prev.seq + 1 != entry.seq {
        return Err(EntryError::SeqGap {
            expected: prev.seq + 1,
            found: entry.seq,
        });
    }
    if entry.backlink.as_ref() != Some(prev_id) {
        return Err(EntryError::BacklinkMismatch);
    }
    if entry.timestamp <= prev.timestamp {
        return Err(EntryError::TimestampNotIncreasing {
            found: entry.timestamp,
            predecessor: prev.timestamp,
        });
    }
    Ok(())
}
