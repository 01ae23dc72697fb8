//! Ed25519 identities with strict, deterministic verification.
//!
//! A key pair is made from a 32-byte seed the caller supplies (core never
//! draws randomness of its own). Verification refuses weak (small-order)
//! public keys, non-canonical scalars and non-canonical or small-order `R`
//! points, and checks the cofactored equation, both for single
//! ([`verify`]) and for batch verification ([`verify_batch`]): a signature
//! is accepted or refused the same way however it is verified, so every
//! replica accepts exactly the same entries.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};
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

/// Whether `y` (a point encoding with the sign bit cleared) is at least the
/// field prime 2^255 - 19, i.e. a non-canonical encoding of `y mod p`.
fn y_is_non_canonical(y: &[u8; 32]) -> bool {
    // p = 2^255 - 19 in little-endian: ed ff .. ff 7f.
    y[1..31].iter().all(|&b| b == 0xff) && y[31] == 0x7f && y[0] >= 0xed
}

/// One signature's parts, checked and ready for the verification equation.
struct Prepared {
    /// The signer's public point `A`.
    a: EdwardsPoint,
    /// The signature's commitment `R`.
    r: EdwardsPoint,
    /// The signature's scalar `s`.
    s: Scalar,
    /// The challenge `h = SHA-512(R || A || M) mod l`.
    h: Scalar,
}

/// Everything but the equation: a valid key, a canonical, non-small-order
/// `R` that is a curve point, a canonical `s`, and the challenge.
fn prepare(
    key: &VerifyingKey,
    message: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<Prepared, SignatureError> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let mut y = r_bytes;
    y[31] &= 0x7f;
    if y_is_non_canonical(&y) || small_order_encodings().contains(&y) {
        return Err(SignatureError::Malleable);
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(SignatureError::Malleable)?;
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SignatureError::Malleable)?;
    let mut hasher = Sha512::new();
    hasher.update(r_bytes);
    hasher.update(key.as_bytes());
    hasher.update(message);
    let h = Scalar::from_hash(hasher);
    Ok(Prepared {
        a: key.to_edwards(),
        r,
        s,
        h,
    })
}

/// The verification equation for one signature: `[8]([s]B - R - [h]A) = 0`.
fn equation_holds(p: &Prepared) -> bool {
    let sb_minus_ha = EdwardsPoint::vartime_double_scalar_mul_basepoint(&-p.h, &p.a, &p.s);
    (sb_minus_ha - p.r).mul_by_cofactor().is_identity()
}

/// Verifies one signature.
///
/// The rules, the same whether a signature is verified alone or in a batch
/// ([`verify_batch`]), so that every replica accepts exactly the same
/// entries whatever batches they arrive in:
///
/// - the public key is a curve point of large order (no weak keys);
/// - `R` is canonically encoded, a curve point, and not of small order;
/// - `s` is canonical (less than the group order `l`);
/// - `[8]([s]B - R - [h]A)` is the identity, where
///   `h = SHA-512(R || A || message) mod l` (the cofactored equation).
///
/// Every signature made by a standard Ed25519 signer satisfies them.
pub fn verify(
    author: &AuthorId,
    message: &[u8],
    sig: &[u8; SIGNATURE_LEN],
) -> Result<(), SignatureError> {
    let key = verifying_key(author)?;
    let prepared = prepare(&key, message, sig)?;
    if equation_holds(&prepared) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
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

/// Verifies many signatures at once, with the rules of [`verify`].
///
/// All equations are checked as one random linear combination,
/// `[8]([sum z_i s_i]B - sum [z_i]R_i - sum_A [sum_{i by A} z_i h_i]A) = 0`,
/// with 128-bit weights `z_i` derived from a hash of the whole batch. The
/// signer's terms are gathered per key, so a batch by few authors costs
/// little more than one point per signature. When the combined equation
/// fails, each signature is checked alone so that the caller learns exactly
/// which ones are bad. Because the cofactor clears every small-order part,
/// the combination holds exactly when every single equation holds (but for
/// a chance of 2^-128): a signature is accepted or refused the same way in
/// any batch.
///
/// Returns one result per item, in order.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignatureError>> {
    let mut results: Vec<Result<(), SignatureError>> = Vec::with_capacity(items.len());
    let mut prepared: Vec<(usize, Prepared)> = Vec::with_capacity(items.len());
    // A batch usually holds many entries by few authors: parse (decompress)
    // each distinct key once, and give each one slot in the equation.
    let mut keys: HashMap<&AuthorId, Result<(VerifyingKey, usize), SignatureError>> =
        HashMap::new();
    let mut key_points: Vec<EdwardsPoint> = Vec::new();
    let mut key_slot = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = keys
            .entry(item.author)
            .or_insert_with(|| {
                verifying_key(item.author).map(|k| {
                    key_points.push(k.to_edwards());
                    (k, key_points.len() - 1)
                })
            })
            .clone();
        match key.and_then(|(k, slot)| Ok((prepare(&k, item.message, item.signature)?, slot))) {
            Ok((p, slot)) => {
                prepared.push((i, p));
                key_slot.push(slot);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    match prepared.len() {
        0 => return results,
        1 => {
            if !equation_holds(&prepared[0].1) {
                results[prepared[0].0] = Err(SignatureError::Invalid);
            }
            return results;
        }
        _ => {}
    }
    // Weights bound to everything in the batch, so that no signer can pick
    // values that cancel out.
    let mut transcript = blake3::Hasher::new_derive_key("civicbase 2026 ed25519 batch weights");
    transcript.update(&(prepared.len() as u64).to_le_bytes());
    for (i, p) in &prepared {
        transcript.update(items[*i].author.as_bytes());
        transcript.update(items[*i].signature);
        transcript.update(p.h.as_bytes());
    }
    let mut weights = transcript.finalize_xof();
    let mut b_scalar = Scalar::ZERO;
    let mut key_scalars = vec![Scalar::ZERO; key_points.len()];
    let mut scalars = Vec::with_capacity(1 + prepared.len() + key_points.len());
    let mut points = Vec::with_capacity(scalars.capacity());
    scalars.push(Scalar::ZERO); // the base point's, filled in below
    points.push(ED25519_BASEPOINT_POINT);
    for ((_, p), &slot) in prepared.iter().zip(&key_slot) {
        let mut z = [0u8; 32];
        weights.fill(&mut z[..16]);
        // Odd, so never zero.
        z[0] |= 1;
        let z = Scalar::from_bytes_mod_order(z);
        b_scalar += z * p.s;
        key_scalars[slot] -= z * p.h;
        scalars.push(-z);
        points.push(p.r);
    }
    scalars[0] = b_scalar;
    scalars.extend(key_scalars);
    points.extend(key_points);
    let sum = EdwardsPoint::vartime_multiscalar_mul(&scalars, &points);
    if !sum.mul_by_cofactor().is_identity() {
        for (i, p) in &prepared {
            if !equation_holds(p) {
                results[*i] = Err(SignatureError::Invalid);
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;

    /// A signer whose secret scalar the test knows, so it can craft
    /// signatures no standard signer makes.
    struct RawSigner {
        a: Scalar,
        public: EdwardsPoint,
    }

    impl RawSigner {
        fn new(seed: u8, torsion: usize) -> Self {
            let a = Scalar::from_bytes_mod_order([seed; 32]);
            Self {
                a,
                public: EdwardsPoint::mul_base(&a) + EIGHT_TORSION[torsion],
            }
        }

        fn author(&self) -> AuthorId {
            AuthorId(self.public.compress().to_bytes())
        }

        /// Signs with `R = [r]B + T`, `T` the `torsion`-th small-order point.
        fn sign(&self, message: &[u8], nonce: u8, torsion: usize) -> [u8; SIGNATURE_LEN] {
            let r = Scalar::from_bytes_mod_order([nonce; 32]);
            let big_r = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[torsion]).compress();
            let mut hasher = Sha512::new();
            hasher.update(big_r.as_bytes());
            hasher.update(self.public.compress().as_bytes());
            hasher.update(message);
            let s = r + Scalar::from_hash(hasher) * self.a;
            let mut sig = [0u8; SIGNATURE_LEN];
            sig[..32].copy_from_slice(big_r.as_bytes());
            sig[32..].copy_from_slice(s.as_bytes());
            sig
        }
    }

    fn item<'a>(author: &'a AuthorId, message: &'a [u8], signature: &'a [u8; 64]) -> BatchItem<'a> {
        BatchItem {
            author,
            message,
            signature,
        }
    }

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
    fn agrees_with_the_reference_strict_verifier_on_standard_signatures() {
        for seed in 0..40u8 {
            let kp = Keypair::from_seed([seed; 32]);
            let key = verifying_key(&kp.author()).expect("a valid key");
            let msg = [seed; 40];
            let mut sig = kp.sign(&msg);
            if seed % 2 == 1 {
                // A flipped bit anywhere: in R, in s or (below) in the message.
                sig[usize::from(seed) % 64] ^= 1 << (seed % 8);
            }
            let mut other = msg;
            if seed % 4 == 2 {
                other[0] ^= 1;
            }
            let reference = key
                .verify_strict(&other, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok();
            assert_eq!(
                verify(&kp.author(), &other, &sig).is_ok(),
                reference,
                "seed {seed}"
            );
            let author = kp.author();
            assert_eq!(
                verify_batch(&[item(&author, &other, &sig)])[0].is_ok(),
                reference
            );
        }
    }

    #[test]
    fn small_order_and_non_canonical_r_are_refused_alone_and_in_a_batch() {
        let kp = Keypair::from_seed([9; 32]);
        let author = kp.author();
        let good = kp.sign(b"m");
        let other = kp.sign(b"n");
        let mut bad_rs: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .flat_map(|p| {
                let b = p.compress().to_bytes();
                let mut signed = b;
                signed[31] |= 0x80;
                [b, signed]
            })
            .collect();
        // y = p + k for k < 19: encodings of y = k that are not canonical.
        for k in 0..19u8 {
            let mut y = [0xff; 32];
            y[0] = 0xed + k;
            y[31] = 0x7f;
            assert!(y_is_non_canonical(&y));
            bad_rs.push(y);
        }
        let mut below_p = [0xff; 32];
        below_p[0] = 0xec;
        below_p[31] = 0x7f;
        assert!(!y_is_non_canonical(&below_p));
        for r in bad_rs {
            let mut bad = good;
            bad[..32].copy_from_slice(&r);
            assert_eq!(verify(&author, b"m", &bad), Err(SignatureError::Malleable));
            let got = verify_batch(&[item(&author, b"m", &bad), item(&author, b"n", &other)]);
            assert_eq!(got, vec![Err(SignatureError::Malleable), Ok(())]);
        }
    }

    #[test]
    fn a_non_canonical_s_is_refused() {
        let kp = Keypair::from_seed([4; 32]);
        let author = kp.author();
        let mut sig = kp.sign(b"m");
        // s + l: the same scalar, not canonically encoded.
        // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        l[31] = 0x10;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(l[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "s + l fits in 32 bytes");
        assert_eq!(verify(&author, b"m", &sig), Err(SignatureError::Malleable));
        assert_eq!(
            verify_batch(&[item(&author, b"m", &sig)]),
            vec![Err(SignatureError::Malleable)]
        );
    }

    #[test]
    fn torsion_is_judged_the_same_alone_and_in_any_batch() {
        // A key with a small-order component, and signatures whose R has one:
        // the cofactored equation accepts them, alone and in every batch they
        // can be part of, so replicas never disagree about them.
        let honest = Keypair::from_seed([5; 32]);
        let honest_author = honest.author();
        let honest_sigs: Vec<[u8; 64]> = (0..6u8).map(|i| honest.sign(&[i])).collect();
        for key_torsion in [0usize, 1, 4] {
            let signer = RawSigner::new(7 + key_torsion as u8, key_torsion);
            let author = signer.author();
            for r_torsion in 0..8 {
                let msg = [r_torsion as u8; 3];
                let sig = signer.sign(&msg, 11 + r_torsion as u8, r_torsion);
                assert_eq!(
                    verify(&author, &msg, &sig),
                    Ok(()),
                    "{key_torsion}/{r_torsion}"
                );
                for n in 0..honest_sigs.len() {
                    let msgs: Vec<[u8; 1]> = (0..n as u8).map(|i| [i]).collect();
                    let mut items: Vec<BatchItem<'_>> = msgs
                        .iter()
                        .zip(&honest_sigs)
                        .map(|(m, s)| item(&honest_author, m, s))
                        .collect();
                    items.insert(n / 2, item(&author, &msg, &sig));
                    assert!(verify_batch(&items).iter().all(Result::is_ok));
                }
                // A wrong message is refused alone and in a batch.
                let wrong = [9u8; 3];
                assert_eq!(verify(&author, &wrong, &sig), Err(SignatureError::Invalid));
                let got = verify_batch(&[
                    item(&honest_author, &[0], &honest_sigs[0]),
                    item(&author, &wrong, &sig),
                ]);
                assert_eq!(got, vec![Ok(()), Err(SignatureError::Invalid)]);
            }
        }
    }

    #[test]
    fn batch_pinpoints_each_bad_signature() {
        let signers: Vec<Keypair> = (10..15u8).map(|s| Keypair::from_seed([s; 32])).collect();
        let authors: Vec<AuthorId> = signers.iter().map(Keypair::author).collect();
        let msgs: Vec<Vec<u8>> = (0..120u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % 5].sign(m))
            .collect();
        let items: Vec<BatchItem<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| item(&authors[i % 5], m, &sigs[i]))
            .collect();
        assert!(verify_batch(&items).iter().all(Result::is_ok));
        for bad in [0usize, 37, 119] {
            // The signature of another author's entry, and a wrong message.
            let mut tampered = items.clone();
            tampered[bad].author = &authors[(bad + 1) % 5];
            let wrong = b"tampered".to_vec();
            let next = (bad + 50) % 120;
            tampered[next].message = &wrong;
            let got = verify_batch(&tampered);
            for (i, r) in got.iter().enumerate() {
                let expected = if i == bad || i == next {
                    Err(SignatureError::Invalid)
                } else {
                    Ok(())
                };
                assert_eq!(*r, expected, "item {i}");
            }
        }
    }
}
