//! Hybrid logical clock. Wall time is passed in by the caller.
//!
//! A [`Timestamp`] packs milliseconds since the Unix epoch in its upper 48
//! bits and a logical counter in its lower 16 bits, so that timestamps order
//! as plain integers. Every entry's timestamp is strictly greater than the
//! timestamps of the entries it depends on; the replica checks this.
//!
//! Clock skew: an entry whose wall time is more than the receiver's
//! `max_skew_ms` ahead of the receiver's own wall clock is refused (not stored,
//! not forwarded) with [`crate::replica::IngestError::FutureTimestamp`]; it
//! is offered again by later syncs and accepted once the receiver's clock has
//! caught up. Every peer applies the same rule, so no peer ever lets an entry
//! from the far future win a last-writer-wins register early.

use core::fmt;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock timestamp: `(wall_ms << 16) | counter`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The zero timestamp.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A timestamp at `wall_ms` with counter 0.
    pub fn from_millis(wall_ms: u64) -> Self {
        Timestamp(wall_ms.min(MAX_WALL_MS) << 16)
    }

    /// Milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> 16
    }

    /// The logical counter.
    pub fn counter(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// The next timestamp after this one.
    pub fn next(self) -> Timestamp {
        Timestamp(self.0.saturating_add(1))
    }
}

/// The largest wall time a timestamp can carry (about year 10889).
pub const MAX_WALL_MS: u64 = (1 << 48) - 1;

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.counter())
    }
}

/// The local clock of one replica.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    last: Timestamp,
}

impl Clock {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> Timestamp {
        self.last
    }

    /// A new timestamp greater than everything seen and than `floor`, at or
    /// after `wall_ms`.
    pub fn tick(&mut self, wall_ms: u64, floor: Timestamp) -> Timestamp {
        let candidate = Timestamp::from_millis(wall_ms);
        let ts = candidate.max(self.last.next()).max(floor.next());
        self.last = ts;
        ts
    }

    /// Takes note of a timestamp received from another peer.
    pub fn observe(&mut self, ts: Timestamp) {
        self.last = self.last.max(ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_even_when_wall_time_goes_back() {
        let mut c = Clock::new();
        let a = c.tick(1_000, Timestamp::ZERO);
        let b = c.tick(900, Timestamp::ZERO);
        let d = c.tick(1_000, Timestamp::ZERO);
        assert!(a < b && b < d);
        assert_eq!(a.wall_ms(), 1_000);
        assert_eq!(b.counter(), 1);
    }

    #[test]
    fn tick_exceeds_floor() {
        let mut c = Clock::new();
        let floor = Timestamp::from_millis(5_000);
        assert!(c.tick(10, floor) > floor);
    }
}
