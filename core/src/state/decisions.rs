//! Decisions: proposals with a deadline and quorum, one changeable vote per
//! member, comments, and a tally every peer computes identically.
//!
//! A proposal becomes final when it is closed: after its deadline its
//! proposer or a coordinator writes `CloseProposal`, and from then on its
//! result is the tally of the votes in the causal past of the closes (of
//! any of them, when several were written without knowing of each other).
//! A vote that knows of a close is refused; one that arrives later without
//! knowing of it is kept but changes nothing. Until then the tally is
//! provisional.

use std::collections::{BTreeMap, BTreeSet};

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
    /// One register per voting member: the provisional tally.
    pub votes: BTreeMap<AuthorId, Lww<Choice>>,
    /// Every vote cast, by stamp.
    pub ballots: BTreeMap<Stamp, (AuthorId, Choice)>,
    /// Where it was closed.
    pub closes: BTreeSet<Stamp>,
    /// The votes in the causal past of a close: the final tally.
    pub final_votes: BTreeMap<AuthorId, Lww<Choice>>,
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
    /// Whether it was closed: its tally is final.
    pub fn is_final(&self) -> bool {
        !self.closes.is_empty()
    }

    /// The tally: final once closed, provisional before.
    pub fn tally(&self) -> Tally {
        let votes = if self.is_final() {
            &self.final_votes
        } else {
            &self.votes
        };
        let mut t = Tally::default();
        for v in votes.values() {
            match v.value {
                Choice::Yes => t.yes += 1,
                Choice::No => t.no += 1,
                Choice::Abstain => t.abstain += 1,
            }
        }
        t
    }

    /// The status at wall time `now_ms` (after the deadline and before a
    /// close, the result the provisional tally would give).
    pub fn status(&self, now_ms: u64) -> ProposalStatus {
        if now_ms <= self.deadline_ms && !self.is_final() {
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
            Op::Propose { .. } | Op::Vote { .. } | Op::Comment { .. } | Op::CloseProposal { .. }
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
                if p.closes.iter().any(|c| cx.past.contains(c)) {
                    return Err(OpError::ProposalClosed);
                }
                if cx.stamp.ts.wall_ms() > p.deadline_ms {
                    return Err(OpError::VoteAfterDeadline);
                }
                Ok(())
            }
            Op::CloseProposal { proposal } => {
                let me = cx.require(Role::Member)?;
                let p = existing(state, cx, proposal)?;
                if p.author != me {
                    cx.require(Role::Coordinator)?;
                }
                if cx.stamp.ts.wall_ms() <= p.deadline_ms {
                    return Err(OpError::DeadlineNotPassed);
                }
                if p.closes.iter().any(|c| cx.past.contains(c)) {
                    return Err(OpError::ProposalClosed);
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
                        ballots: BTreeMap::new(),
                        closes: BTreeSet::new(),
                        final_votes: BTreeMap::new(),
                        comments: BTreeMap::new(),
                    },
                );
            }
            Op::Vote { proposal, choice } => {
                if let Some(p) = proposals.get_mut(proposal) {
                    p.ballots.insert(at, (member, *choice));
                    match p.votes.get_mut(&member) {
                        Some(reg) => reg.set(*choice, at),
                        None => {
                            p.votes.insert(member, Lww::new(*choice, at));
                        }
                    }
                }
            }
            Op::CloseProposal { proposal } => {
                if let Some(p) = proposals.get_mut(proposal) {
                    // Entries are applied in a causal order, so every vote
                    // in this close's past is already among the ballots.
                    for (stamp, (voter, choice)) in &p.ballots {
                        if cx.past.contains(stamp) {
                            match p.final_votes.get_mut(voter) {
                                Some(reg) => reg.set(*choice, *stamp),
                                None => {
                                    p.final_votes.insert(*voter, Lww::new(*choice, *stamp));
                                }
                            }
                        }
                    }
                    p.closes.insert(at);
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
