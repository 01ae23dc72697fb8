//! Operations: what a payload says. One user action is one entry whose
//! payload is a list of operations, each belonging to one module.
//!
//! # Byte layout (payload version 2)
//!
//! ```text
//! payload = version:u8 (=2) op_count:varint (1..=10000) op*
//! op      = tag:u8 fields…
//! ```
//! Strings are a varint length and UTF-8 bytes, ids are 32 raw bytes, numbers
//! varints. Each op's fields are listed on its variant below, in order.

use crate::codec::{DecodeError, Reader, Writer};
use crate::id::{AuthorId, RecordId};
use crate::identity::SIGNATURE_LEN;

/// Payload format version. Version 2 is the space format with the
/// authorization rules of docs/PROTOCOL.md ("Authorization"): single-use
/// invites, device links with the device's consent, proposals that close.
/// Version 1 entries (whose invites, links and removals meant something
/// else) are refused with [`DecodeError::UnsupportedVersion`].
pub const PAYLOAD_VERSION: u8 = 2;
/// Largest credit limit (default or per member) and largest transfer, so
/// that no balance arithmetic on these values can overflow.
pub const MAX_CREDIT: u64 = 1_000_000_000;
/// Most people one invite may admit.
pub const MAX_INVITE_USES: u32 = 1_000;
/// Most operations one entry may carry.
pub const MAX_OPS: usize = 10_000;
/// Longest name (space, person).
pub const MAX_NAME: usize = 120;
/// Longest title.
pub const MAX_TITLE: usize = 300;
/// Longest body or details text.
pub const MAX_BODY: usize = 32 * 1024;
/// Longest short text (category, location, memo).
pub const MAX_SHORT: usize = 500;

/// A member's role in a space, in increasing order of rights.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Role {
    /// Reads everything, writes nothing but their own profile.
    Viewer = 0,
    /// Posts, proposes, votes, coordinates needs, transfers hearts.
    Member = 1,
    /// Also pins notices, edits others' posts, invites members and viewers.
    Coordinator = 2,
    /// Everything: roles, removals, credit limits, any invite.
    Admin = 3,
}

impl Role {
    fn from_u8(v: u8) -> Result<Role, DecodeError> {
        Ok(match v {
            0 => Role::Viewer,
            1 => Role::Member,
            2 => Role::Coordinator,
            3 => Role::Admin,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "role",
                    tag: u64::from(tag),
                })
            }
        })
    }

    /// A stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Coordinator => "coordinator",
            Role::Admin => "admin",
        }
    }
}

/// A vote's choice.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Choice {
    /// In favour.
    Yes = 0,
    /// Against.
    No = 1,
    /// Counted for quorum, not for the result.
    Abstain = 2,
}

/// Whether a needs-and-offers record asks for or offers something.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum NeedKind {
    /// Something is needed.
    Need = 0,
    /// Something is offered.
    Offer = 1,
}

/// How urgent a need or offer is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Urgency {
    /// Whenever convenient.
    Low = 0,
    /// Within days.
    Normal = 1,
    /// Within hours.
    High = 2,
    /// Life or safety depends on it.
    Critical = 3,
}

/// One operation. Variants are grouped by module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    // ---- Members ----
    /// Only in a genesis entry: names the space; the author becomes admin.
    /// Fields: name, founder display name, default credit limit.
    Genesis {
        /// Space name.
        name: String,
        /// The founder's display name.
        founder_name: String,
        /// Credit limit of members with no limit of their own.
        default_credit_limit: u64,
    },
    /// Renames the space (admin). Fields: name.
    RenameSpace {
        /// The new name.
        name: String,
    },
    /// Creates an invite (admin; coordinators for member and viewer).
    /// Fields: invite public key, role, expiry in Unix ms, uses.
    Invite {
        /// Public key derived from the invite secret.
        key: AuthorId,
        /// Role the invitee gets.
        role: Role,
        /// Wall-clock expiry in Unix milliseconds.
        expires_ms: u64,
        /// How many people it may admit: 1 for a personal invite; more
        /// (up to [`MAX_INVITE_USES`]) only for a group link whose role is
        /// at most member.
        uses: u32,
    },
    /// Revokes an invite (its creator or an admin). Fields: invite key.
    RevokeInvite {
        /// The invite's public key.
        key: AuthorId,
    },
    /// Joins with an invite (authored by the new member's device).
    /// Fields: invite key, proof signature, display name.
    Join {
        /// The invite's public key.
        invite: AuthorId,
        /// Signature by the invite key over the join statement.
        proof: [u8; SIGNATURE_LEN],
        /// The joiner's display name.
        name: String,
    },
    /// Links another device key to the author's member, with the device's
    /// consent. Fields: device, consent.
    LinkDevice {
        /// The new device's public key.
        device: AuthorId,
        /// The device key's signature over
        /// [`crate::state::members::link_statement`] (space, member, device).
        consent: [u8; SIGNATURE_LEN],
    },
    /// Changes a member's role (admin). Fields: member, role.
    SetRole {
        /// The member.
        member: AuthorId,
        /// The new role.
        role: Role,
    },
    /// Removes a member (admin; coordinators may remove members and viewers).
    /// Fields: member.
    Remove {
        /// The member.
        member: AuthorId,
    },
    /// Sets the author's display name. Fields: name.
    SetProfile {
        /// The display name.
        name: String,
    },
    // ---- Notices ----
    /// Posts a notice. Fields: title, body.
    PostNotice {
        /// Title.
        title: String,
        /// Body text.
        body: String,
    },
    /// Edits a notice (its author, or a coordinator). Fields: notice,
    /// optional title, optional body.
    EditNotice {
        /// The notice.
        notice: RecordId,
        /// New title, if changed.
        title: Option<String>,
        /// New body, if changed.
        body: Option<String>,
    },
    /// Pins or unpins a notice (coordinator). Fields: notice, pinned.
    PinNotice {
        /// The notice.
        notice: RecordId,
        /// Pinned or not.
        pinned: bool,
    },
    /// Deletes a notice (its author, or a coordinator). Fields: notice.
    DeleteNotice {
        /// The notice.
        notice: RecordId,
    },
    // ---- Decisions ----
    /// Proposes a decision. Fields: title, body, deadline (Unix ms), quorum.
    Propose {
        /// Title.
        title: String,
        /// Body text.
        body: String,
        /// Votes are accepted while the vote's timestamp is at or before this.
        deadline_ms: u64,
        /// Votes (including abstentions) needed for the result to count.
        quorum: u32,
    },
    /// Votes, or changes one's vote. Fields: proposal, choice.
    Vote {
        /// The proposal.
        proposal: RecordId,
        /// The choice.
        choice: Choice,
    },
    /// Comments on a proposal. Fields: proposal, body.
    Comment {
        /// The proposal.
        proposal: RecordId,
        /// Comment text.
        body: String,
    },
    /// Closes a proposal after its deadline (its proposer or a
    /// coordinator): its final tally is the votes in this entry's causal
    /// past. Fields: proposal.
    CloseProposal {
        /// The proposal.
        proposal: RecordId,
    },
    // ---- Needs & offers ----
    /// Creates a need or an offer.
    /// Fields: kind, category, urgency, location, title, details.
    CreateNeed {
        /// Need or offer.
        kind: NeedKind,
        /// Category (water, transport, medicine …).
        category: String,
        /// Urgency.
        urgency: Urgency,
        /// Where, in words.
        location: String,
        /// Short title.
        title: String,
        /// Details.
        details: String,
    },
    /// Claims an open need or offer. Fields: need.
    ClaimNeed {
        /// The record.
        need: RecordId,
    },
    /// Marks a need or offer done (creator, a claimer, or a coordinator). Fields: need.
    CompleteNeed {
        /// The record.
        need: RecordId,
    },
    /// Reopens a need or offer (creator or coordinator). Fields: need.
    ReopenNeed {
        /// The record.
        need: RecordId,
    },
    // ---- Hearts ----
    /// Transfers hearts from the author's member to another member.
    /// Fields: to, amount, memo.
    Transfer {
        /// The receiving member.
        to: AuthorId,
        /// Amount, greater than zero.
        amount: u64,
        /// What it is for.
        memo: String,
    },
    /// Sets a member's credit limit (admin). Fields: member, limit.
    SetCreditLimit {
        /// The member.
        member: AuthorId,
        /// How far below zero their balance may go.
        limit: u64,
    },
}

mod tag {
    pub const GENESIS: u8 = 1;
    pub const RENAME_SPACE: u8 = 2;
    pub const INVITE: u8 = 3;
    pub const REVOKE_INVITE: u8 = 4;
    pub const JOIN: u8 = 5;
    pub const LINK_DEVICE: u8 = 6;
    pub const SET_ROLE: u8 = 7;
    pub const REMOVE: u8 = 8;
    pub const SET_PROFILE: u8 = 9;
    pub const POST_NOTICE: u8 = 20;
    pub const EDIT_NOTICE: u8 = 21;
    pub const PIN_NOTICE: u8 = 22;
    pub const DELETE_NOTICE: u8 = 23;
    pub const PROPOSE: u8 = 30;
    pub const VOTE: u8 = 31;
    pub const COMMENT: u8 = 32;
    pub const CLOSE_PROPOSAL: u8 = 33;
    pub const CREATE_NEED: u8 = 40;
    pub const CLAIM_NEED: u8 = 41;
    pub const COMPLETE_NEED: u8 = 42;
    pub const REOPEN_NEED: u8 = 43;
    pub const TRANSFER: u8 = 50;
    pub const SET_CREDIT_LIMIT: u8 = 51;
}

fn opt_str(w: &mut Writer, s: &Option<String>) {
    match s {
        Some(s) => {
            w.u8(1);
            w.str(s);
        }
        None => w.u8(0),
    }
}

fn read_opt_str(
    r: &mut Reader<'_>,
    what: &'static str,
    max: usize,
) -> Result<Option<String>, DecodeError> {
    Ok(if r.bool()? {
        Some(r.str(what, max)?.to_owned())
    } else {
        None
    })
}

impl Op {
    /// Whether this operation belongs to the Members module.
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Op::Genesis { .. }
                | Op::RenameSpace { .. }
                | Op::Invite { .. }
                | Op::RevokeInvite { .. }
                | Op::Join { .. }
                | Op::LinkDevice { .. }
                | Op::SetRole { .. }
                | Op::Remove { .. }
                | Op::SetProfile { .. }
        )
    }

    /// Whether authority flows through this operation: it grants, links,
    /// changes or takes away who may act (every membership operation but
    /// renaming the space and setting one's own name).
    pub fn moves_authority(&self) -> bool {
        self.is_membership() && !matches!(self, Op::RenameSpace { .. } | Op::SetProfile { .. })
    }

    /// Appends the canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Op::Genesis {
                name,
                founder_name,
                default_credit_limit,
            } => {
                w.u8(tag::GENESIS);
                w.str(name);
                w.str(founder_name);
                w.varint(*default_credit_limit);
            }
            Op::RenameSpace { name } => {
                w.u8(tag::RENAME_SPACE);
                w.str(name);
            }
            Op::Invite {
                key,
                role,
                expires_ms,
                uses,
            } => {
                w.u8(tag::INVITE);
                w.raw(key.as_bytes());
                w.u8(*role as u8);
                w.varint(*expires_ms);
                w.varint(u64::from(*uses));
            }
            Op::RevokeInvite { key } => {
                w.u8(tag::REVOKE_INVITE);
                w.raw(key.as_bytes());
            }
            Op::Join {
                invite,
                proof,
                name,
            } => {
                w.u8(tag::JOIN);
                w.raw(invite.as_bytes());
                w.raw(proof);
                w.str(name);
            }
            Op::LinkDevice { device, consent } => {
                w.u8(tag::LINK_DEVICE);
                w.raw(device.as_bytes());
                w.raw(consent);
            }
            Op::SetRole { member, role } => {
                w.u8(tag::SET_ROLE);
                w.raw(member.as_bytes());
                w.u8(*role as u8);
            }
            Op::Remove { member } => {
                w.u8(tag::REMOVE);
                w.raw(member.as_bytes());
            }
            Op::SetProfile { name } => {
                w.u8(tag::SET_PROFILE);
                w.str(name);
            }
            Op::PostNotice { title, body } => {
                w.u8(tag::POST_NOTICE);
                w.str(title);
                w.str(body);
            }
            Op::EditNotice {
                notice,
                title,
                body,
            } => {
                w.u8(tag::EDIT_NOTICE);
                w.raw(notice.as_bytes());
                opt_str(w, title);
                opt_str(w, body);
            }
            Op::PinNotice { notice, pinned } => {
                w.u8(tag::PIN_NOTICE);
                w.raw(notice.as_bytes());
                w.bool(*pinned);
            }
            Op::DeleteNotice { notice } => {
                w.u8(tag::DELETE_NOTICE);
                w.raw(notice.as_bytes());
            }
            Op::Propose {
                title,
                body,
                deadline_ms,
                quorum,
            } => {
                w.u8(tag::PROPOSE);
                w.str(title);
                w.str(body);
                w.varint(*deadline_ms);
                w.varint(u64::from(*quorum));
            }
            Op::Vote { proposal, choice } => {
                w.u8(tag::VOTE);
                w.raw(proposal.as_bytes());
                w.u8(*choice as u8);
            }
            Op::Comment { proposal, body } => {
                w.u8(tag::COMMENT);
                w.raw(proposal.as_bytes());
                w.str(body);
            }
            Op::CloseProposal { proposal } => {
                w.u8(tag::CLOSE_PROPOSAL);
                w.raw(proposal.as_bytes());
            }
            Op::CreateNeed {
                kind,
                category,
                urgency,
                location,
                title,
                details,
            } => {
                w.u8(tag::CREATE_NEED);
                w.u8(*kind as u8);
                w.str(category);
                w.u8(*urgency as u8);
                w.str(location);
                w.str(title);
                w.str(details);
            }
            Op::ClaimNeed { need } => {
                w.u8(tag::CLAIM_NEED);
                w.raw(need.as_bytes());
            }
            Op::CompleteNeed { need } => {
                w.u8(tag::COMPLETE_NEED);
                w.raw(need.as_bytes());
            }
            Op::ReopenNeed { need } => {
                w.u8(tag::REOPEN_NEED);
                w.raw(need.as_bytes());
            }
            Op::Transfer { to, amount, memo } => {
                w.u8(tag::TRANSFER);
                w.raw(to.as_bytes());
                w.varint(*amount);
                w.str(memo);
            }
            Op::SetCreditLimit { member, limit } => {
                w.u8(tag::SET_CREDIT_LIMIT);
                w.raw(member.as_bytes());
                w.varint(*limit);
            }
        }
    }

    /// Decodes one operation.
    pub fn decode(r: &mut Reader<'_>) -> Result<Op, DecodeError> {
        let t = r.u8()?;
        let id = |r: &mut Reader<'_>| -> Result<crate::id::Hash, DecodeError> {
            Ok(crate::id::Hash(r.array()?))
        };
        let author =
            |r: &mut Reader<'_>| -> Result<AuthorId, DecodeError> { Ok(AuthorId(r.array()?)) };
        Ok(match t {
            tag::GENESIS => Op::Genesis {
                name: r.str("space name", MAX_NAME)?.to_owned(),
                founder_name: r.str("founder name", MAX_NAME)?.to_owned(),
                default_credit_limit: r.varint()?,
            },
            tag::RENAME_SPACE => Op::RenameSpace {
                name: r.str("space name", MAX_NAME)?.to_owned(),
            },
            tag::INVITE => Op::Invite {
                key: author(r)?,
                role: Role::from_u8(r.u8()?)?,
                expires_ms: r.varint()?,
                uses: r.varint_max("invite uses", u64::from(u32::MAX))? as u32,
            },
            tag::REVOKE_INVITE => Op::RevokeInvite { key: author(r)? },
            tag::JOIN => Op::Join {
                invite: author(r)?,
                proof: r.array()?,
                name: r.str("display name", MAX_NAME)?.to_owned(),
            },
            tag::LINK_DEVICE => Op::LinkDevice {
                device: author(r)?,
                consent: r.array()?,
            },
            tag::SET_ROLE => Op::SetRole {
                member: author(r)?,
                role: Role::from_u8(r.u8()?)?,
            },
            tag::REMOVE => Op::Remove { member: author(r)? },
            tag::SET_PROFILE => Op::SetProfile {
                name: r.str("display name", MAX_NAME)?.to_owned(),
            },
            tag::POST_NOTICE => Op::PostNotice {
                title: r.str("title", MAX_TITLE)?.to_owned(),
                body: r.str("body", MAX_BODY)?.to_owned(),
            },
            tag::EDIT_NOTICE => Op::EditNotice {
                notice: id(r)?,
                title: read_opt_str(r, "title", MAX_TITLE)?,
                body: read_opt_str(r, "body", MAX_BODY)?,
            },
            tag::PIN_NOTICE => Op::PinNotice {
                notice: id(r)?,
                pinned: r.bool()?,
            },
            tag::DELETE_NOTICE => Op::DeleteNotice { notice: id(r)? },
            tag::PROPOSE => Op::Propose {
                title: r.str("title", MAX_TITLE)?.to_owned(),
                body: r.str("body", MAX_BODY)?.to_owned(),
                deadline_ms: r.varint()?,
                quorum: r.varint_max("quorum", u64::from(u32::MAX))? as u32,
            },
            tag::VOTE => Op::Vote {
                proposal: id(r)?,
                choice: match r.u8()? {
                    0 => Choice::Yes,
                    1 => Choice::No,
                    2 => Choice::Abstain,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "choice",
                            tag: u64::from(tag),
                        })
                    }
                },
            },
            tag::COMMENT => Op::Comment {
                proposal: id(r)?,
                body: r.str("comment", MAX_BODY)?.to_owned(),
            },
            tag::CLOSE_PROPOSAL => Op::CloseProposal { proposal: id(r)? },
            tag::CREATE_NEED => Op::CreateNeed {
                kind: match r.u8()? {
                    0 => NeedKind::Need,
                    1 => NeedKind::Offer,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "need kind",
                            tag: u64::from(tag),
                        })
                    }
                },
                category: r.str("category", MAX_SHORT)?.to_owned(),
                urgency: match r.u8()? {
                    0 => Urgency::Low,
                    1 => Urgency::Normal,
                    2 => Urgency::High,
                    3 => Urgency::Critical,
                    tag => {
                        return Err(DecodeError::UnknownTag {
                            what: "urgency",
                            tag: u64::from(tag),
                        })
                    }
                },
                location: r.str("location", MAX_SHORT)?.to_owned(),
                title: r.str("title", MAX_TITLE)?.to_owned(),
                details: r.str("details", MAX_BODY)?.to_owned(),
            },
            tag::CLAIM_NEED => Op::ClaimNeed { need: id(r)? },
            tag::COMPLETE_NEED => Op::CompleteNeed { need: id(r)? },
            tag::REOPEN_NEED => Op::ReopenNeed { need: id(r)? },
            tag::TRANSFER => Op::Transfer {
                to: author(r)?,
                amount: r.varint()?,
                memo: r.str("memo", MAX_SHORT)?.to_owned(),
            },
            tag::SET_CREDIT_LIMIT => Op::SetCreditLimit {
                member: author(r)?,
                limit: r.varint()?,
            },
            other => {
                return Err(DecodeError::UnknownTag {
                    what: "operation",
                    tag: u64::from(other),
                })
            }
        })
    }
}

/// Encodes a list of operations as a payload.
pub fn encode_payload(ops: &[Op]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 * ops.len());
    w.u8(PAYLOAD_VERSION);
    w.varint(ops.len() as u64);
    for op in ops {
        op.encode(&mut w);
    }
    w.finish()
}

/// Decodes a payload into its operations.
pub fn decode_payload(bytes: &[u8]) -> Result<Vec<Op>, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = r.u8()?;
    if v != PAYLOAD_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what: "payload",
            found: v,
            supported: PAYLOAD_VERSION,
        });
    }
    let n = r.count("operation count", MAX_OPS, 1)?;
    if n == 0 {
        return Err(DecodeError::NonCanonical {
            what: "empty payload",
        });
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(Op::decode(&mut r)?);
    }
    r.finish()?;
    Ok(ops)
}
