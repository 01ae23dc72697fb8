//! Decisions: proposals with a deadline and quorum, one changeable vote per
//! member, comments, and a tally every peer computes identically.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_text, Lww, Module, OpContext, OpError, SpaceState, Stamp};
use crate::hlc::Timestamp;
use crate::id::{AuthorId, RecordId};
use crate::op::{Choice, Op, Role, MAX_BODY, MAX_TITLE};

/// A comment on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    /// The commenting member.
    pub author: AuthorId,
    /// Text.
    pub body: String,
}

/// One proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing member.
    pub author: AuthorId,
    /// Where it was proposed.
    pub created: Stamp,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Votes count while their timestamp is at or before this (Unix ms).
    pub deadline_ms: u64,
    /// Votes needed, abstentions included.
    pub quorum: u32,
    /// One register per voting member.
    pub votes: BTreeMap<AuthorId, Lww<Choice>>,
    /// Comments in stamp order.
    pub comments: BTreeMap<Stamp, Comment>,
}

/// Counted votes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Yes votes.
    pub yes: u32,
    /// No votes.
    pub no: u32,
    /// Abstentions.
    pub abstain: u32,
}

impl Tally {
    /// All votes cast.
    pub fn total(&self) -> u32 {
        self.yes + self.no + self.abstain
    }
}

/// Where a proposal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalStatus {
    /// Voting is open.
    Open,
    /// Closed with quorum and more yes than no.
    Passed,
    /// Closed with quorum and not more yes than no.
    Rejected,
    /// Closed without enough votes.
    NoQuorum,
}

impl Proposal {
    /// The tally of current votes.
    pub fn tally(&self) -> Tally {
        let mut t = Tally::default();
        for v in self.votes.values() {
            match v.value {
                Choice::Yes => t.yes += 1,
                Choice::No => t.no += 1,
                Choice::Abstain => t.abstain += 1,
            }
        }
        t
    }

    /// The status at wall time `now_ms`.
    pub fn status(&self, now_ms: u64) -> ProposalStatus {
        if now_ms <= self.deadline_ms {
            return ProposalStatus::Open;
        }
        let t = self.tally();
        if t.total() < self.quorum {
            ProposalStatus::NoQuorum
        } else if t.yes > t.no {
            ProposalStatus::Passed
        } else {
            ProposalStatus::Rejected
        }
    }
}

/// State of the Decisions module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionsState {
    /// Proposals by id.
    pub proposals: BTreeMap<RecordId, Proposal>,
}

/// The Decisions module.
pub struct Decisions;

fn existing<'a>(
    state: &'a SpaceState,
    cx: &OpContext<'_>,
    id: &RecordId,
) -> Result<&'a Proposal, OpError> {
    match state.decisions.proposals.get(id) {
        Some(p) if cx.past.contains(&p.created) => Ok(p),
        _ => Err(OpError::UnknownRecord {
            kind: "proposal",
            id: *id,
        }),
    }
}

impl Module for Decisions {
    const NAME: &'static str = "decisions";

    fn handles(op: &Op) -> bool {
        matches!(
            op,
            Op::Propose { .. } | Op::Vote { .. } | Op::Comment { .. }
        )
    }

    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError> {
        match op {
            Op::Propose {
                title,
                body,
                deadline_ms,
                ..
            } => {
                cx.require(Role::Member)?;
                check_text("title", title, MAX_TITLE, true)?;
                check_text("body", body, MAX_BODY, false)?;
                if Timestamp::from_millis(*deadline_ms) <= cx.stamp.ts {
                    return Err(OpError::InvalidField {
                        field: "deadline",
                        problem: "must be in the future",
                    });
                }
                Ok(())
            }
            Op::Vote { proposal, .. } => {
                cx.require(Role::Member)?;
                let p = existing(state, cx, proposal)?;
                if cx.stamp.ts.wall_ms() > p.deadline_ms {
                    return Err(OpError::VoteAfterDeadline);
                }
                Ok(())
            }
            Op::Comment { proposal, body } => {
                cx.require(Role::Member)?;
                existing(state, cx, proposal)?;
                check_text("comment", body, MAX_BODY, true)
            }
            _ => Err(OpError::Invalid("not a decisions operation")),
        }
    }

    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState) {
        let at = cx.stamp;
        let member = cx.member.unwrap_or(at.author);
        let proposals = &mut state.decisions.proposals;
        match op {
            Op::Propose {
                title,
                body,
                deadline_ms,
                quorum,
            } => {
                proposals.insert(
                    cx.new_record_id(),
                    Proposal {
                        author: member,
                        created: at,
                        title: title.clone(),
                        body: body.clone(),
                        deadline_ms: *deadline_ms,
                        quorum: *quorum,
                        votes: BTreeMap::new(),
                        comments: BTreeMap::new(),
                    },
                );
            }
            Op::Vote { proposal, choice } => {
                if let Some(p) = proposals.get_mut(proposal) {
                    match p.votes.get_mut(&member) {
                        Some(reg) => reg.set(*choice, at),
                        None => {
                            p.votes.insert(member, Lww::new(*choice, at));
                        }
                    }
                }
            }
            Op::Comment { proposal, body } => {
                if let Some(p) = proposals.get_mut(proposal) {
                    p.comments.insert(
                        at,
                        Comment {
                            author: member,
                            body: body.clone(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
}
