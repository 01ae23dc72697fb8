//! Ed25519 identities with strict verification.
//!
//! A key pair is made from a 32-byte seed the caller supplies (core never
//! draws randomness of its own). Verification is strict: weak (small-order)
//! public keys, non-canonical scalars and small-order `R` points are refused,
//! both for single and for batch verification, so that no malleated signature
//! is ever accepted.

use std::collections::HashMap;

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::id::AuthorId;

/// Length of a signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The public key is not a valid curve point.
    #[error("the public key is not a valid Ed25519 point")]
    InvalidKey,
    /// The public key has small order and could validate forged signatures.
    #[error("the public key is a weak (small-order) key")]
    WeakKey,
    /// The signature's `R` has small order or its scalar is not canonical.
    #[error("the signature is malleable or malformed")]
    Malleable,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    Invalid,
}

/// A signing identity: one per user per device.
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// The key pair derived from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The secret seed, for backup. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public author id.
    pub fn author(&self) -> AuthorId {
        AuthorId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }
}

impl core::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Keypair({:?})", self.author())
    }
}

/// Parses an author id into a verifying key, refusing weak keys.
pub fn verifying_key(author: &AuthorId) -> Result<VerifyingKey, SignatureError> {
    let key =
        VerifyingKey::from_bytes(author.as_bytes()).map_err(|_| SignatureError::InvalidKey)?;
    if key.is_weak() {
        return Err(SignatureError::WeakKey);
    }
    Ok(key)
}

/// The encodings of the eight small-order points with the sign bit cleared,
/// plus the two non-canonical ones (y = p and y = p + 1).
fn small_order_encodings() -> &'static [[u8; 32]] {
    static TABLE: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut v: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut b = p.compress().to_bytes();
                b[31] &= 0x7f;
                b
            })
            .collect();
        for low in [0xed, 0xee] {
            let mut b = [0xff; 32];
            b[0] = low;
            b[31] = 0x7f;
            v.push(b);
        }
        v.sort_unstable();
        v.dedup();
        v
    })
}

/// Whether `r` encodes a small-order point, by comparing bytes instead of
/// decompressing (a batch then decompresses each `R` only once, inside the
/// batch equation; an `R` that is no point at all fails the batch and is
/// caught by the single verification that follows).
fn r_has_small_order(r: &[u8]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(&r[..32]);
    y[31] &= 0x7f;
    small_order_encodings().contains(&y)
}

fn check_r(sig: &[u8; SIGNATURE_LEN]) -> Result<(), SignatureError> {
    let mut r = [0u8; 32];
    r.copy_from_slice(&sig[..32]);
    match CompressedEdwardsY(r).decompress() {
        Some(point) if !point.is_small_order() => Ok(()),
        _ => Err(SignatureError::Malleable),
    }
}

/// Verifies one signature strictly.
pub fn verify(
    author: &AuthorId,
    message: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    let key = verifying_key(author)?;
    // The same pre-check as in a batch, so that one signature is refused with
    // the same error whichever way it is verified.
    check_r(sig)?;
    let signature = Signature::from_bytes(sig);
    key.verify_strict(message, &signature)
        .map_err(|_| SignatureError::Invalid)
}

/// One item of a batch verification.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    /// The signer.
    pub author: &'a AuthorId,
    /// The signed message.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Verifies many signatures at once, about twice as fast as one by one.
///
/// Returns one result per item, in order. When the batch equation fails, each
/// item is verified alone so that the caller learns exactly which ones are bad.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut results: Vec<Result<(), SignatureError>> = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut msgs: Vec<&[u8]> = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    // A batch usually holds many entries by few authors: parse (decompress)
    // each distinct key once.
    let mut parsed: HashMap<&AuthorId, Result<VerifyingKey, SignatureError>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let key = parsed
            .entry(item.author)
            .or_insert_with(|| verifying_key(item.author))
            .clone();
        let pre = key.and_then(|k| {
            if r_has_small_order(item.signature) {
                Err(SignatureError::Malleable)
            } else {
                Ok(k)
            }
        });
        match pre {
            Ok(key) => {
                keys.push(key);
                sigs.push(Signature::from_bytes(item.signature));
                msgs.push(item.message);
                positions.push(i);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if positions.is_empty() {
        return results;
    }
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_err() {
        for &i in &positions {
            let it = &items[i];
            results[i] = verify(it.author, it.message, it.signature);
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let kp = Keypair::from_seed([1; 32]);
        let sig = kp.sign(b"hello");
        assert_eq!(verify(&kp.author(), b"hello", &sig), Ok(()));
        assert_eq!(
            verify(&kp.author(), b"hullo", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn weak_key_is_refused() {
        // The identity point (small order) encoded as a public key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let author = AuthorId(weak);
        assert_eq!(
            verify(&author, b"x", &[0; 64]),
            Err(SignatureError::WeakKey)
        );
    }

    #[test]
    fn every_small_order_r_is_recognised_without_decompressing() {
        for p in curve25519_dalek::constants::EIGHT_TORSION {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(p.compress().as_bytes());
            assert!(r_has_small_order(&sig), "{p:?}");
            assert_eq!(check_r(&sig), Err(SignatureError::Malleable));
            sig[31] |= 0x80;
            assert!(r_has_small_order(&sig), "with the sign bit set");
        }
        let kp = Keypair::from_seed([9; 32]);
        let good = kp.sign(b"m");
        assert!(!r_has_small_order(&good));
        // Batch and single verification agree on a small-order R.
        let mut bad = good;
        bad[..32].copy_from_slice(
            curve25519_dalek::constants::EIGHT_TORSION[1]
                .compress()
                .as_bytes(),
        );
        let author = kp.author();
        let items = [BatchItem {
            author: &author,
            message: b"m",
            signature: &bad,
        }];
        assert_eq!(verify_batch(&items)[0], verify(&author, b"m", &bad));
    }

    #[test]
    fn batch_pinpoints_the_bad_signature() {
        let a = Keypair::from_seed([2; 32]);
        let b = Keypair::from_seed([3; 32]);
        let (ia, ib) = (a.author(), b.author());
        let sa = a.sign(b"one");
        let sb = b.sign(b"two");
        let items = [
            BatchItem {
                author: &ia,
                message: b"one",
                signature: &sa,
            },
            BatchItem {
                author: &ib,
                message: b"not two",
                signature: &sb,
            },
        ];
        let r = verify_batch(&items);
        assert_eq!(r[0], Ok(()));
        assert_eq!(r[1], Err(SignatureError::Invalid));
    }
}
