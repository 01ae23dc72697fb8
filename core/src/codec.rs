//! Canonical binary encoding primitives shared by every wire format.
//!
//! All integers are unsigned LEB128 varints in their shortest form, except
//! where a format names a fixed width. A decoder rejects non-minimal varints
//! so that every value has exactly one encoding: re-encoding what was decoded
//! gives back the same bytes, which is what makes hashes of encodings stable.
//!
//! Every read is bounded by the bytes actually present: a length field larger
//! than the remaining input is an error before anything is allocated.

use thiserror::Error;

/// Why bytes could not be decoded. Decoders return this and never panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("input ended early: needed {needed} more bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A varint had more than ten bytes or overflowed 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A varint was not in its shortest form.
    #[error("varint is not in its shortest form")]
    NonCanonicalVarint,
    /// A count or length exceeded its limit.
    #[error("{what} is {len}, above the limit of {max}")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// The value found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An enum tag had no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which enum.
        what: &'static str,
        /// The tag found.
        tag: u64,
    },
    /// A format version this build does not understand.
    #[error("unsupported {what} version {found} (this build reads {supported})")]
    UnsupportedVersion {
        /// Which format.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Bytes were left over after a complete value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// A text field was not valid UTF-8.
    #[error("text field is not valid UTF-8")]
    InvalidUtf8,
    /// A field violated a canonical-form rule (ordering, flags, ranges).
    #[error("non-canonical {what}")]
    NonCanonical {
        /// What rule was broken.
        what: &'static str,
    },
}

/// Appends canonical encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer with room for `cap` bytes.
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: Vec::with_capacity(cap),
        }
    }

    /// Writes one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Writes a fixed-width big-endian u64.
    pub fn u64_be(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes a shortest-form LEB128 varint.
    pub fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }

    /// Writes raw bytes with no length prefix.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Writes a varint length followed by the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u64);
        self.raw(bytes);
    }

    /// Writes a UTF-8 string with a varint length prefix.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Writes a boolean as one byte, 0 or 1.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The finished bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a byte slice, bounded by its length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed: n,
                remaining: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Reads a fixed-width big-endian u64.
    pub fn u64_be(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    /// Reads a shortest-form LEB128 varint.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = self.u8()?;
            let low = u64::from(byte & 0x7f);
            if i == 9 && low > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(DecodeError::NonCanonicalVarint);
                }
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    /// Reads a varint that must not exceed `max`.
    pub fn varint_max(&mut self, what: &'static str, max: u64) -> Result<u64, DecodeError> {
        let v = self.varint()?;
        if v > max {
            return Err(DecodeError::TooLarge { what, len: v, max });
        }
        Ok(v)
    }

    /// Reads a count of items, each at least `min_item` bytes long, so that a
    /// forged count cannot make the caller reserve memory the input cannot fill.
    pub fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let n = self.varint_max(what, max as u64)? as usize;
        let needed = n.saturating_mul(min_item.max(1));
        if needed > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(n)
    }

    /// Reads a varint length (at most `max`) and that many bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let n = self.varint_max(what, max as u64)? as usize;
        self.take(n)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        core::str::from_utf8(self.bytes(what, max)?).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Reads a boolean byte, which must be 0 or 1.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::NonCanonical { what: "boolean" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_edges() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut w = Writer::default();
            w.varint(v);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn varint_rejects_padding_and_overflow() {
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(DecodeError::NonCanonicalVarint)
        );
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(DecodeError::VarintOverflow)
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            Err(DecodeError::VarintOverflow)
        );
    }

    #[test]
    fn count_refuses_counts_the_input_cannot_hold() {
        let mut w = Writer::default();
        w.varint(1000);
        let bytes = w.finish();
        assert!(matches!(
            Reader::new(&bytes).count("items", 10_000, 32),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }
}
