//! Version vectors: author → number of that author's entries applied.
//!
//! Because every author's entries form a chain and entries are applied only in
//! causal order, the set of applied entries is summarised exactly by how many
//! entries of each author were applied (the highest seq plus one).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::{DecodeError, Reader, Writer};
use crate::id::AuthorId;

/// Most authors a version vector on the wire may list.
pub const MAX_AUTHORS: usize = 100_000;

/// Author → count of that author's applied entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<AuthorId, u64>);

impl VersionVector {
    /// An empty vector.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries of `author` are included.
    pub fn get(&self, author: &AuthorId) -> u64 {
        self.0.get(author).copied().unwrap_or(0)
    }

    /// Sets the count for `author` (zero removes it).
    pub fn set(&mut self, author: AuthorId, count: u64) {
        if count == 0 {
            self.0.remove(&author);
        } else {
            self.0.insert(author, count);
        }
    }

    /// Raises `author`'s count to at least `count`.
    pub fn raise(&mut self, author: AuthorId, count: u64) {
        if count > self.get(&author) {
            self.0.insert(author, count);
        }
    }

    /// Pointwise maximum with `other`.
    pub fn merge(&mut self, other: &VersionVector) {
        for (a, &n) in &other.0 {
            self.raise(*a, n);
        }
    }

    /// Whether every entry in `other` is also in `self`.
    pub fn dominates(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(a, &n)| self.get(a) >= n)
    }

    /// Iterates `(author, count)` in author order.
    pub fn iter(&self) -> impl Iterator<Item = (&AuthorId, u64)> + '_ {
        self.0.iter().map(|(a, n)| (a, *n))
    }

    /// Number of authors listed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no author is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total number of entries summarised.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Canonical encoding: count, then `(author, count)` pairs in author order.
    pub fn encode(&self, w: &mut Writer) {
        w.varint(self.0.len() as u64);
        for (a, n) in &self.0 {
            w.raw(a.as_bytes());
            w.varint(*n);
        }
    }

    /// Decodes [`VersionVector::encode`]'s output, requiring ascending authors
    /// and non-zero counts.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count("version vector length", MAX_AUTHORS, 33)?;
        let mut map = BTreeMap::new();
        let mut last: Option<AuthorId> = None;
        for _ in 0..n {
            let a = AuthorId(r.array()?);
            if last.is_some_and(|l| l >= a) {
                return Err(DecodeError::NonCanonical {
                    what: "version vector order",
                });
            }
            let count = r.varint()?;
            if count == 0 {
                return Err(DecodeError::NonCanonical {
                    what: "zero count in version vector",
                });
            }
            map.insert(a, count);
            last = Some(a);
        }
        Ok(VersionVector(map))
    }
}

impl FromIterator<(AuthorId, u64)> for VersionVector {
    fn from_iter<T: IntoIterator<Item = (AuthorId, u64)>>(iter: T) -> Self {
        let mut vv = VersionVector::new();
        for (a, n) in iter {
            vv.raise(a, n);
        }
        vv
    }
}
