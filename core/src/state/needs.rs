//! Needs & offers: resource coordination with status open → claimed → done.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_text, Lww, Module, OpContext, OpError, SpaceState, Stamp};
use crate::id::{AuthorId, RecordId};
use crate::op::{NeedKind, Op, Role, Urgency, MAX_BODY, MAX_SHORT, MAX_TITLE};

/// Status of a need or offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NeedStatus {
    /// Nobody has taken it on.
    Open,
    /// Someone has taken it on.
    Claimed,
    /// Resolved.
    Done,
}

/// One need or offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedRecord {
    /// The creating member.
    pub author: AuthorId,
    /// Where it was created.
    pub created: Stamp,
    /// Need or offer.
    pub kind: NeedKind,
    /// Category.
    pub category: String,
    /// Urgency.
    pub urgency: Urgency,
    /// Location in words.
    pub location: String,
    /// Title.
    pub title: String,
    /// Details.
    pub details: String,
    /// Status register.
    pub status: Lww<NeedStatus>,
    /// Claimer register (who has taken it on; cleared on reopening).
    pub claimer: Lww<Option<AuthorId>>,
    /// Every claim ever made (member, where), for the record.
    pub claims: BTreeSet<(AuthorId, Stamp)>,
    /// Every reopening.
    pub reopens: BTreeSet<Stamp>,
}

impl NeedRecord {
    /// Current status.
    pub fn status(&self) -> NeedStatus {
        self.status.value
    }

    /// Current claimer.
    pub fn claimer(&self) -> Option<AuthorId> {
        self.claimer.value
    }
}

/// State of the Needs & offers module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeedsState {
    /// Records by id.
    pub records: BTreeMap<RecordId, NeedRecord>,
}

/// A filter over needs and offers; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct NeedFilter {
    /// Need or offer.
    pub kind: Option<NeedKind>,
    /// Exact category.
    pub category: Option<String>,
    /// Minimum urgency.
    pub min_urgency: Option<Urgency>,
    /// Status.
    pub status: Option<NeedStatus>,
}

impl NeedsState {
    /// Records matching `filter`, most urgent first, then newest.
    pub fn list(&self, filter: &NeedFilter) -> Vec<(RecordId, &NeedRecord)> {
        let mut v: Vec<_> = self
            .records
            .iter()
            .filter(|(_, r)| {
                filter.kind.is_none_or(|k| r.kind == k)
                    && filter.category.as_ref().is_none_or(|c| &r.category == c)
                    && filter.min_urgency.is_none_or(|u| r.urgency >= u)
                    && filter.status.is_none_or(|s| r.status() == s)
            })
            .map(|(id, r)| (*id, r))
            .collect();
        v.sort_by(|a, b| {
            b.1.urgency
                .cmp(&a.1.urgency)
                .then(b.1.created.cmp(&a.1.created))
        });
        v
    }
}

/// The Needs & offers module.
pub struct Needs;

fn existing<'a>(
    state: &'a SpaceState,
    cx: &OpContext<'_>,
    id: &RecordId,
) -> Result<&'a NeedRecord, OpError> {
    match state.needs.records.get(id) {
        Some(r) if cx.past.contains(&r.created) => Ok(r),
        _ => Err(OpError::UnknownRecord {
            kind: "need or offer",
            id: *id,
        }),
    }
}

impl Module for Needs {
    const NAME: &'static str = "needs";

    fn handles(op: &Op) -> bool {
        matches!(
            op,
            Op::CreateNeed { .. }
                | Op::ClaimNeed { .. }
                | Op::CompleteNeed { .. }
                | Op::ReopenNeed { .. }
        )
    }

    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError> {
        match op {
            Op::CreateNeed {
                category,
                location,
                title,
                details,
                ..
            } => {
                cx.require(Role::Member)?;
                check_text("category", category, MAX_SHORT, true)?;
                check_text("location", location, MAX_SHORT, false)?;
                check_text("title", title, MAX_TITLE, true)?;
                check_text("details", details, MAX_BODY, false)
            }
            Op::ClaimNeed { need } => {
                cx.require(Role::Member)?;
                existing(state, cx, need).map(|_| ())
            }
            Op::CompleteNeed { need } => {
                let me = cx.require(Role::Member)?;
                let r = existing(state, cx, need)?;
                // A claim counts if no reopening in the past came after it.
                let last_reopen = r.reopens.iter().rev().find(|s| cx.past.contains(s));
                let claimed_by_me = r.claims.iter().any(|(m, at)| {
                    *m == me && cx.past.contains(at) && last_reopen.is_none_or(|ro| at > ro)
                });
                if r.author != me && !claimed_by_me {
                    cx.require(Role::Coordinator)?;
                }
                Ok(())
            }
            Op::ReopenNeed { need } => {
                let me = cx.require(Role::Member)?;
                let r = existing(state, cx, need)?;
                if r.author != me {
                    cx.require(Role::Coordinator)?;
                }
                Ok(())
            }
            _ => Err(OpError::Invalid("not a needs operation")),
        }
    }

    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState) {
        let at = cx.stamp;
        let member = cx.member.unwrap_or(at.author);
        let records = &mut state.needs.records;
        match op {
            Op::CreateNeed {
                kind,
                category,
                urgency,
                location,
                title,
                details,
            } => {
                records.insert(
                    cx.new_record_id(),
                    NeedRecord {
                        author: member,
                        created: at,
                        kind: *kind,
                        category: category.clone(),
                        urgency: *urgency,
                        location: location.clone(),
                        title: title.clone(),
                        details: details.clone(),
                        status: Lww::new(NeedStatus::Open, at),
                        claimer: Lww::new(None, at),
                        claims: BTreeSet::new(),
                        reopens: BTreeSet::new(),
                    },
                );
            }
            Op::ClaimNeed { need } => {
                if let Some(r) = records.get_mut(need) {
                    r.claims.insert((member, at));
                    r.status.set(NeedStatus::Claimed, at);
                    r.claimer.set(Some(member), at);
                }
            }
            Op::CompleteNeed { need } => {
                if let Some(r) = records.get_mut(need) {
                    r.status.set(NeedStatus::Done, at);
                }
            }
            Op::ReopenNeed { need } => {
                if let Some(r) = records.get_mut(need) {
                    r.reopens.insert(at);
                    r.status.set(NeedStatus::Open, at);
                    r.claimer.set(None, at);
                }
            }
            _ => {}
        }
    }
}
