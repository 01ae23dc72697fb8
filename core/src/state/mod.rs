//! Materialised space state and the module trait.
//!
//! State is a pure function of the set of applied entries: every structure is
//! keyed by global ids in ordered maps, registers are last-writer-wins by
//! [`Stamp`] (HLC timestamp, then author, then seq, then operation index), and
//! validation only looks at facts in an entry's causal past (through [`Past`]).
//! So any delivery order gives byte-identical state, which
//! [`SpaceState::state_hash`] makes checkable.

pub mod decisions;
pub mod hearts;
pub mod members;
pub mod needs;
pub mod notices;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hlc::Timestamp;
use crate::id::{AuthorId, EntryId, Hash, RecordId, SpaceId};
use crate::op::{Op, Role};

pub use decisions::{DecisionsState, Proposal, ProposalStatus, Tally};
pub use hearts::{HeartsState, TransferRecord};
pub use members::{MemberView, MembersState};
pub use needs::{NeedRecord, NeedStatus, NeedsState};
pub use notices::{Notice, NoticesState};

/// Where an operation sits: its entry (ordered by timestamp, author, seq)
/// and its index in that entry's payload. Unique and totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// The entry's HLC timestamp.
    pub ts: Timestamp,
    /// The signing device.
    pub author: AuthorId,
    /// The entry's seq.
    pub seq: u64,
    /// Index of the operation in the payload.
    pub op: u32,
}

/// A last-writer-wins register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lww<T> {
    /// Current value.
    pub value: T,
    /// Stamp of the write that set it.
    pub at: Stamp,
}

impl<T> Lww<T> {
    /// A register holding `value` written at `at`.
    pub fn new(value: T, at: Stamp) -> Self {
        Self { value, at }
    }

    /// Writes `value` if `at` is later than the current write.
    pub fn set(&mut self, value: T, at: Stamp) {
        if at > self.at {
            self.value = value;
            self.at = at;
        }
    }
}

/// The causal order between stored entries, named by their stamps.
pub trait CausalOrder {
    /// Whether the entry of `a` is in the causal past of the entry of `b`
    /// (strictly: an entry does not precede itself).
    fn precedes(&self, a: &Stamp, b: &Stamp) -> bool;
}

/// Answers "is this operation in the causal past of the entry being checked?".
///
/// Built by the replica from the entry's version-vector clock. Operations of
/// the entry itself are *not* in its past: all operations of one entry are
/// validated against the state before the entry. It also orders two facts
/// of that past against each other ([`Past::precedes`]), which is how
/// concurrent role changes are resolved without looking at timestamps.
pub struct Past<'a> {
    clock: &'a [u32],
    index: &'a HashMap<AuthorId, u32>,
    author: AuthorId,
    seq: u64,
    order: &'a dyn CausalOrder,
}

impl<'a> Past<'a> {
    /// A past oracle over a dense clock indexed by local author index.
    pub fn new(
        clock: &'a [u32],
        index: &'a HashMap<AuthorId, u32>,
        author: AuthorId,
        seq: u64,
        order: &'a dyn CausalOrder,
    ) -> Self {
        Self {
            clock,
            index,
            author,
            seq,
            order,
        }
    }

    /// The device that signed the entry being checked.
    pub fn author(&self) -> AuthorId {
        self.author
    }

    /// Whether the fact at `a` is in the causal past of the fact at `b`.
    pub fn precedes(&self, a: &Stamp, b: &Stamp) -> bool {
        self.order.precedes(a, b)
    }

    /// The facts of `stamps` in this past that no other fact of `stamps`
    /// in this past follows: the latest ones, several when concurrent.
    pub fn frontier<'s>(&self, stamps: impl Iterator<Item = &'s Stamp>) -> Vec<Stamp> {
        let inside: Vec<Stamp> = stamps.filter(|s| self.contains(s)).copied().collect();
        inside
            .iter()
            .filter(|a| !inside.iter().any(|b| self.precedes(a, b)))
            .copied()
            .collect()
    }

    /// Whether the entry at (`author`, `seq`) is in the causal past.
    pub fn contains_entry(&self, author: &AuthorId, seq: u64) -> bool {
        if *author == self.author && seq >= self.seq {
            return false;
        }
        match self.index.get(author) {
            Some(&i) => self
                .clock
                .get(i as usize)
                .is_some_and(|&c| u64::from(c) > seq),
            None => false,
        }
    }

    /// Whether the operation at `stamp` is in the causal past.
    pub fn contains(&self, stamp: &Stamp) -> bool {
        self.contains_entry(&stamp.author, stamp.seq)
    }
}

/// Everything a module needs to know about the operation being checked.
pub struct OpContext<'a> {
    /// The space.
    pub space: SpaceId,
    /// The entry's id.
    pub entry_id: EntryId,
    /// The operation's stamp.
    pub stamp: Stamp,
    /// All operations of the entry (for rules spanning one entry).
    pub ops: &'a [Op],
    /// The member the signing device belongs to, in the entry's causal past.
    pub member: Option<AuthorId>,
    /// That member's role in the causal past (`None`: not a member).
    pub role: Option<Role>,
    /// The causal-past oracle.
    pub past: &'a Past<'a>,
    /// The highest role this entry may act with (strong demotion: a role
    /// change in force that does not know of this entry caps it).
    pub cap: Role,
    /// Whether the entry is the space's genesis entry.
    pub is_genesis: bool,
}

impl OpContext<'_> {
    /// The id of the record this operation creates, if it creates one.
    pub fn new_record_id(&self) -> RecordId {
        crate::id::record_id(&self.entry_id, self.stamp.op as usize)
    }

    /// The acting member, requiring at least `min` role.
    pub fn require(&self, min: Role) -> Result<AuthorId, OpError> {
        match (self.member, self.role.map(|r| r.min(self.cap))) {
            (Some(m), Some(r)) if r >= min => Ok(m),
            (Some(_), Some(r)) => Err(OpError::Forbidden {
                needed: min,
                had: r,
            }),
            _ => Err(OpError::NotAMember {
                author: self.stamp.author,
            }),
        }
    }
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OpError {
    /// The author is not a member (never joined, or removed) in the entry's causal past.
    #[error("author {author:?} is not a member of the space")]
    NotAMember {
        /// The signing device.
        author: AuthorId,
    },
    /// The author's role is too low for this operation.
    #[error("needs the {} role, the author is {}", needed.as_str(), had.as_str())]
    Forbidden {
        /// Role needed.
        needed: Role,
        /// Role held.
        had: Role,
    },
    /// Genesis appears outside a genesis entry, or a genesis entry is malformed.
    #[error("a genesis operation must be the only operation of a space's first entry")]
    MisplacedGenesis,
    /// A referenced record does not exist in the entry's causal past.
    #[error("no {kind} {id:?} in this author's view of the space")]
    UnknownRecord {
        /// What kind of record.
        kind: &'static str,
        /// Its id.
        id: Hash,
    },
    /// The record was deleted.
    #[error("the {kind} was deleted")]
    Deleted {
        /// What kind of record.
        kind: &'static str,
    },
    /// A text field is empty or too long.
    #[error("{field} {problem}")]
    InvalidField {
        /// Which field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A vote or comment arrived after the proposal's deadline.
    #[error("the vote is after the proposal's deadline")]
    VoteAfterDeadline,
    /// The proposal was closed in the entry's causal past.
    #[error("the proposal is closed")]
    ProposalClosed,
    /// A proposal may be closed only after its deadline.
    #[error("the proposal's deadline has not passed")]
    DeadlineNotPassed,
    /// The invite is unknown, revoked, expired or the proof is wrong.
    #[error("invalid invite: {0}")]
    Invite(&'static str),
    /// The device already belongs to a member.
    #[error("device {device:?} already belongs to a member")]
    AlreadyMember {
        /// The device.
        device: AuthorId,
    },
    /// An amount is zero or absurdly large.
    #[error("amount must be between 1 and {max}")]
    InvalidAmount {
        /// Largest amount.
        max: u64,
    },
    /// The transfer would take the sender below their credit limit.
    #[error(
        "transfer of {amount} would take the balance {balance} below the credit limit of -{limit}"
    )]
    InsufficientCredit {
        /// Balance before, in the entry's causal past.
        balance: i64,
        /// Amount asked for.
        amount: u64,
        /// Credit limit.
        limit: u64,
    },
    /// An operation refers to something it cannot (a transfer to oneself).
    #[error("{0}")]
    Invalid(&'static str),
}

/// The module trait: the five built-in modules implement it, and it is the
/// surface for new record types.
///
/// `validate` must depend only on the operation, the context and facts of the
/// state that are in the entry's causal past (checked with
/// [`OpContext::past`]); `apply` must be commutative with every other
/// operation's `apply` (last-writer-wins by [`Stamp`], sums, set inserts).
/// Those two rules are what make state a pure function of the entry set.
pub trait Module {
    /// The module's name.
    const NAME: &'static str;
    /// Whether this module handles `op`.
    fn handles(op: &Op) -> bool;
    /// Checks `op` against the state as seen in the entry's causal past.
    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError>;
    /// Applies a validated `op`.
    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState);
}

/// The materialised state of one space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceState {
    /// Members, roles, invites, devices, the space's name.
    pub members: MembersState,
    /// Notices.
    pub notices: NoticesState,
    /// Proposals, votes and comments.
    pub decisions: DecisionsState,
    /// Needs and offers.
    pub needs: NeedsState,
    /// The time-bank ledger.
    pub hearts: HeartsState,
}

/// Encoding version of [`SpaceState`] snapshots and hashes.
pub const STATE_VERSION: u8 = 2;

impl SpaceState {
    /// Validates one operation, dispatching to its module.
    pub fn validate(&self, op: &Op, cx: &OpContext<'_>) -> Result<(), OpError> {
        if matches!(op, Op::Genesis { .. }) != cx.is_genesis {
            return Err(OpError::MisplacedGenesis);
        }
        if members::Members::handles(op) {
            members::Members::validate(op, cx, self)
        } else if notices::Notices::handles(op) {
            notices::Notices::validate(op, cx, self)
        } else if decisions::Decisions::handles(op) {
            decisions::Decisions::validate(op, cx, self)
        } else if needs::Needs::handles(op) {
            needs::Needs::validate(op, cx, self)
        } else {
            hearts::Hearts::validate(op, cx, self)
        }
    }

    /// Applies one validated operation.
    pub fn apply(&mut self, op: &Op, cx: &OpContext<'_>) {
        if members::Members::handles(op) {
            members::Members::apply(op, cx, self)
        } else if notices::Notices::handles(op) {
            notices::Notices::apply(op, cx, self)
        } else if decisions::Decisions::handles(op) {
            decisions::Decisions::apply(op, cx, self)
        } else if needs::Needs::handles(op) {
            needs::Needs::apply(op, cx, self)
        } else {
            hearts::Hearts::apply(op, cx, self)
        }
    }

    /// Canonical bytes of the whole state (ordered maps only, so identical
    /// states encode identically).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        // Serialising ordered maps of plain data into a Vec cannot fail.
        out.extend(postcard::to_allocvec(self).unwrap_or_default());
        out
    }

    /// Decodes [`SpaceState::to_bytes`]'s output.
    pub fn from_bytes(bytes: &[u8]) -> Option<SpaceState> {
        match bytes.split_first() {
            Some((&STATE_VERSION, rest)) => postcard::from_bytes(rest).ok(),
            _ => None,
        }
    }

    /// BLAKE3 of [`SpaceState::to_bytes`]: equal on every peer that applied
    /// the same set of entries.
    pub fn state_hash(&self) -> Hash {
        Hash::of(&self.to_bytes())
    }
}

pub(crate) fn check_text(
    field: &'static str,
    s: &str,
    max: usize,
    required: bool,
) -> Result<(), OpError> {
    if required && s.trim().is_empty() {
        return Err(OpError::InvalidField {
            field,
            problem: "must not be empty",
        });
    }
    if s.len() > max {
        return Err(OpError::InvalidField {
            field,
            problem: "is too long",
        });
    }
    Ok(())
}
