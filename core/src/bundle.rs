//! Bundles: self-describing signed files carrying a space's entries, for
//! export and import when there is no network (the sneakernet path).
//!
//! # Byte layout (bundle version 1)
//!
//! ```text
//! magic      "CIVICBASE BUNDLE" (16 bytes, readable in a hex dump)
//! version    u8 (=1)
//! space      [32]
//! exporter   [32]        (the signing device)
//! created_ms varint      (wall time of export, Unix ms)
//! base       version vector (what the recipient was known to have; empty = everything)
//! count      varint
//! entries    (len:varint entry)*, in causal order
//! signature  [64]        Ed25519 by the exporter over BLAKE3-derive-key
//!                        ("civicbase 2026 bundle", all preceding bytes)
//! ```
//!
//! The bundle signature says who exported the file and that it was not
//! altered; every entry inside is still verified on its own when imported,
//! so a bundle can never smuggle in anything its authors did not sign.

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::entry::{Entry, MAX_PAYLOAD_LEN};
use crate::id::{AuthorId, EntryId, Hash, SpaceId};
use crate::identity::{self, Keypair, SignatureError, SIGNATURE_LEN};
use crate::replica::{IngestError, Ingested, Replica};
use crate::vv::VersionVector;

/// The first bytes of every bundle file.
pub const MAGIC: &[u8; 16] = b"CIVICBASE BUNDLE";
/// Bundle format version.
pub const BUNDLE_VERSION: u8 = 1;
/// The smallest possible encoded entry (with its length prefix): version,
/// space, author, seq, backlink flag, dep count, timestamp, payload hash,
/// payload length and signature.
const MIN_ENTRY_LEN: usize = 1 + 1 + 32 + 32 + 1 + 1 + 1 + 8 + 32 + 1 + 64;

/// Most entries one bundle may carry.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000_000;

/// A decoded, signature-checked bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The space.
    pub space: SpaceId,
    /// The exporting device.
    pub exporter: AuthorId,
    /// When it was exported (Unix ms).
    pub created_ms: u64,
    /// What the recipient was known to have.
    pub base: VersionVector,
    /// Entry wire bytes, in causal order.
    pub entries: Vec<Vec<u8>>,
}

/// Why a bundle file was refused as a whole. Nothing is imported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    /// Not a CivicBase bundle.
    #[error("This file is not a CivicBase bundle.")]
    NotABundle,
    /// Written by a newer version.
    #[error(
        "This bundle was made by a newer CivicBase (format {0}); update CivicBase to import it."
    )]
    Version(u8),
    /// Truncated or malformed.
    #[error("The bundle file is damaged ({0}); ask for a new copy.")]
    Decode(#[from] DecodeError),
    /// The signature does not match: altered or forged.
    #[error("The bundle's signature does not match: the file was altered or forged ({0}). Nothing was imported.")]
    Signature(#[source] SignatureError),
    /// The bundle is for another space.
    #[error("This bundle belongs to another space.")]
    WrongSpace {
        /// The space being imported into.
        expected: SpaceId,
        /// The bundle's space.
        found: SpaceId,
    },
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries newly stored, in the order applied.
    pub added: Vec<EntryId>,
    /// Entries already present.
    pub duplicates: usize,
    /// Entries waiting for dependencies the bundle did not carry.
    pub pending: usize,
    /// Entries refused, with their id when it could be read, and why.
    pub rejected: Vec<(Option<EntryId>, String)>,
}

fn signed_digest(bytes: &[u8]) -> Hash {
    Hash::derive("civicbase 2026 bundle", &[bytes])
}

/// Exports the entries a recipient with version vector `base` lacks (pass an
/// empty vector for everything), signed by `exporter`.
pub fn export(replica: &Replica, exporter: &Keypair, base: &VersionVector, now_ms: u64) -> Vec<u8> {
    let entries = replica.missing_for(base);
    let mut w =
        Writer::with_capacity(256 + entries.iter().map(|e| e.encoded_len() + 4).sum::<usize>());
    w.raw(MAGIC);
    w.u8(BUNDLE_VERSION);
    w.raw(replica.space().as_bytes());
    w.raw(exporter.author().as_bytes());
    w.varint(now_ms);
    base.encode(&mut w);
    w.varint(entries.len() as u64);
    for e in entries {
        w.bytes(&e.encode());
    }
    let mut bytes = w.finish();
    let sig = exporter.sign(signed_digest(&bytes).as_bytes());
    bytes.extend_from_slice(&sig);
    bytes
}

/// Decodes a bundle file and checks its signature.
pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
    if bytes.len() < MAGIC.len() + 1 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    if bytes[MAGIC.len()] != BUNDLE_VERSION {
        return Err(BundleError::Version(bytes[MAGIC.len()]));
    }
    if bytes.len() < MAGIC.len() + 1 + SIGNATURE_LEN {
        return Err(BundleError::Decode(DecodeError::UnexpectedEnd {
            needed: MAGIC.len() + 1 + SIGNATURE_LEN,
            remaining: bytes.len(),
        }));
    }
    let (body, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
    let mut r = Reader::new(&body[MAGIC.len() + 1..]);
    let space = Hash(r.array()?);
    let exporter = AuthorId(r.array()?);
    let created_ms = r.varint()?;
    let base = VersionVector::decode(&mut r)?;
    // Every entry is at least a minimal header, a signature and a length.
    let n = r.count("bundle entries", MAX_BUNDLE_ENTRIES, MIN_ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        entries.push(r.bytes("entry", MAX_PAYLOAD_LEN + 4096)?.to_vec());
    }
    r.finish()?;
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(sig);
    identity::verify(&exporter, signed_digest(body).as_bytes(), &signature)
        .map_err(BundleError::Signature)?;
    Ok(Bundle {
        space,
        exporter,
        created_ms,
        base,
        entries,
    })
}

/// Imports a decoded bundle into `replica`: every entry is validated as if it
/// had arrived over the network. Nothing invalid is stored.
pub fn import(
    replica: &mut Replica,
    bundle: &Bundle,
    now_ms: u64,
) -> Result<ImportReport, BundleError> {
    if bundle.space != replica.space() {
        return Err(BundleError::WrongSpace {
            expected: replica.space(),
            found: bundle.space,
        });
    }
    let mut report = ImportReport::default();
    let mut entries = Vec::with_capacity(bundle.entries.len());
    for raw in &bundle.entries {
        match Entry::decode(raw) {
            Ok(e) => entries.push(e),
            Err(e) => report.rejected.push((None, e.to_string())),
        }
    }
    let ids: Vec<(EntryId, u64)> = entries.iter().map(|e| (e.id(), e.header().seq)).collect();
    let pending_before = replica.pending_len();
    for ((id, seq), res) in ids.into_iter().zip(replica.ingest_batch(entries, now_ms)) {
        match res {
            Ok(Ingested::Applied(added)) => report.added.extend(added),
            Ok(Ingested::Duplicate) => report.duplicates += 1,
            Ok(Ingested::Pending) => {}
            Ok(Ingested::ForkDetected(a)) => report
                .rejected
                .push((Some(id), IngestError::Forked { author: a, seq }.to_string())),
            Err(e) => report.rejected.push((Some(id), e.to_string())),
        }
    }
    for (id, e) in replica.take_rejections() {
        report.rejected.push((Some(id), e.to_string()));
    }
    report.pending = replica.pending_len().saturating_sub(pending_before);
    Ok(report)
}
