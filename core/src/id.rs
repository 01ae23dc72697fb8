//! Identifiers: entry and space hashes, author ids, and their text forms.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The all-zero hash, used where a field has no value (a genesis entry's space).
    pub const ZERO: Hash = Hash([0; 32]);

    /// BLAKE3 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// BLAKE3 of several byte strings with a domain-separation context.
    pub fn derive(context: &str, parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(context);
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        Hash(*h.finalize().as_bytes())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, IdParseError> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(IdParseError::Length {
                expected: 64,
                found: bytes.len(),
            });
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(IdParseError::Character)?;
            let lo = hex_val(pair[1]).ok_or(IdParseError::Character)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Hash(out))
    }

    /// The first eight hex digits, for logs and the UI.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.short())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The id of an entry: BLAKE3 of its canonical header bytes.
pub type EntryId = Hash;

/// The id of a space: the id of its genesis entry.
pub type SpaceId = Hash;

/// The id of a record (a notice, a proposal, a need …): derived from the id
/// of the entry that created it and the operation's index in that entry, so
/// nobody can choose an id that collides with another author's record.
pub type RecordId = Hash;

/// Derives the record id created by operation `index` of entry `entry`.
pub fn record_id(entry: &EntryId, index: usize) -> RecordId {
    Hash::derive(
        "civicbase 2026 record id",
        &[entry.as_bytes(), &(index as u64).to_le_bytes()],
    )
}

/// An author: an Ed25519 public key (one per user per device).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AuthorId(pub [u8; 32]);

/// Prefix of the text form of an author id.
pub const AUTHOR_PREFIX: &str = "cb";

impl AuthorId {
    /// The raw public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short, human-friendly fingerprint: `abcd-efgh` (40 bits of the key).
    pub fn fingerprint(&self) -> String {
        let s = base32_encode(&self.0[..5]);
        format!("{}-{}", &s[..4], &s[4..8])
    }

    fn checksum(key: &[u8; 32]) -> [u8; 3] {
        let h = Hash::derive("civicbase 2026 author id checksum", &[key]);
        [h.0[0], h.0[1], h.0[2]]
    }
}

/// The text form is `cb` followed by lower-case base32 of the key and a
/// three-byte checksum (61 characters); typing mistakes are caught by the
/// checksum, and the alphabet avoids case confusion.
impl fmt::Display for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(&self.0);
        raw[32..].copy_from_slice(&Self::checksum(&self.0));
        write!(f, "{AUTHOR_PREFIX}{}", base32_encode(&raw))
    }
}

impl fmt::Debug for AuthorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Author({})", self.fingerprint())
    }
}

impl FromStr for AuthorId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let body = s.strip_prefix(AUTHOR_PREFIX).ok_or(IdParseError::Prefix)?;
        let raw = base32_decode(body).ok_or(IdParseError::Character)?;
        if raw.len() != 35 {
            return Err(IdParseError::Length {
                expected: 35,
                found: raw.len(),
            });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        if raw[32..] != Self::checksum(&key) {
            return Err(IdParseError::Checksum);
        }
        Ok(AuthorId(key))
    }
}

/// Why an id's text form could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdParseError {
    /// The text does not start with the expected prefix.
    #[error("author ids start with \"{AUTHOR_PREFIX}\"")]
    Prefix,
    /// A character outside the alphabet.
    #[error("the id contains a character that is not allowed")]
    Character,
    /// The wrong number of bytes.
    #[error("the id has {found} bytes, expected {expected}")]
    Length {
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// The checksum did not match: the id was mistyped.
    #[error("the id's checksum does not match; it was probably mistyped")]
    Checksum,
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding.
pub fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes [`base32_encode`]'s output; `None` on a bad character or padding bits.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B32.iter().position(|&x| x == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    if acc != 0 {
        return None;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_text_form_round_trips_and_catches_typos() {
        let a = AuthorId([7; 32]);
        let text = a.to_string();
        assert!(text.starts_with("cb"));
        assert_eq!(text.len(), 2 + 56);
        assert_eq!(text.parse::<AuthorId>(), Ok(a));
        let mut typo = text.into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(typo.parse::<AuthorId>().is_err());
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = Hash::of(b"civicbase");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
    }
}
