//! Notices: announcements and posts, pinned by coordinators.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{check_text, Lww, Module, OpContext, OpError, SpaceState, Stamp};
use crate::id::{AuthorId, RecordId};
use crate::op::{Op, Role, MAX_BODY, MAX_TITLE};

/// One notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The posting member.
    pub author: AuthorId,
    /// Where it was posted.
    pub created: Stamp,
    /// Title register.
    pub title: Lww<String>,
    /// Body register.
    pub body: Lww<String>,
    /// Pinned register.
    pub pinned: Lww<bool>,
    /// Tombstones: every deletion. Deletion is final.
    pub deletions: BTreeSet<Stamp>,
}

impl Notice {
    /// Whether the notice was deleted.
    pub fn is_deleted(&self) -> bool {
        !self.deletions.is_empty()
    }
}

/// State of the Notices module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticesState {
    /// Notices by id, including deleted ones (tombstones).
    pub notices: BTreeMap<RecordId, Notice>,
}

impl NoticesState {
    /// Live notices: pinned first, then newest first.
    pub fn list(&self) -> Vec<(RecordId, &Notice)> {
        let mut v: Vec<_> = self
            .notices
            .iter()
            .filter(|(_, n)| !n.is_deleted())
            .map(|(id, n)| (*id, n))
            .collect();
        v.sort_by(|a, b| {
            b.1.pinned
                .value
                .cmp(&a.1.pinned.value)
                .then(b.1.created.cmp(&a.1.created))
        });
        v
    }
}

/// The Notices module.
pub struct Notices;

fn existing<'a>(
    state: &'a SpaceState,
    cx: &OpContext<'_>,
    id: &RecordId,
) -> Result<&'a Notice, OpError> {
    match state.notices.notices.get(id) {
        Some(n) if cx.past.contains(&n.created) => {
            if n.deletions.iter().any(|d| cx.past.contains(d)) {
                return Err(OpError::Deleted { kind: "notice" });
            }
            Ok(n)
        }
        _ => Err(OpError::UnknownRecord {
            kind: "notice",
            id: *id,
        }),
    }
}

fn author_or_coordinator(cx: &OpContext<'_>, n: &Notice) -> Result<(), OpError> {
    let me = cx.require(Role::Member)?;
    if me != n.author {
        cx.require(Role::Coordinator)?;
    }
    Ok(())
}

impl Module for Notices {
    const NAME: &'static str = "notices";

    fn handles(op: &Op) -> bool {
        matches!(
            op,
            Op::PostNotice { .. }
                | Op::EditNotice { .. }
                | Op::PinNotice { .. }
                | Op::DeleteNotice { .. }
        )
    }

    fn validate(op: &Op, cx: &OpContext<'_>, state: &SpaceState) -> Result<(), OpError> {
        match op {
            Op::PostNotice { title, body } => {
                cx.require(Role::Member)?;
                check_text("title", title, MAX_TITLE, true)?;
                check_text("body", body, MAX_BODY, false)
            }
            Op::EditNotice {
                notice,
                title,
                body,
            } => {
                let n = existing(state, cx, notice)?;
                author_or_coordinator(cx, n)?;
                if let Some(t) = title {
                    check_text("title", t, MAX_TITLE, true)?;
                }
                if let Some(b) = body {
                    check_text("body", b, MAX_BODY, false)?;
                }
                Ok(())
            }
            Op::PinNotice { notice, .. } => {
                existing(state, cx, notice)?;
                cx.require(Role::Coordinator).map(|_| ())
            }
            Op::DeleteNotice { notice } => {
                let n = existing(state, cx, notice)?;
                author_or_coordinator(cx, n)
            }
            _ => Err(OpError::Invalid("not a notices operation")),
        }
    }

    fn apply(op: &Op, cx: &OpContext<'_>, state: &mut SpaceState) {
        let at = cx.stamp;
        let notices = &mut state.notices.notices;
        match op {
            Op::PostNotice { title, body } => {
                notices.insert(
                    cx.new_record_id(),
                    Notice {
                        author: cx.member.unwrap_or(at.author),
                        created: at,
                        title: Lww::new(title.clone(), at),
                        body: Lww::new(body.clone(), at),
                        pinned: Lww::new(false, at),
                        deletions: BTreeSet::new(),
                    },
                );
            }
            Op::EditNotice {
                notice,
                title,
                body,
            } => {
                if let Some(n) = notices.get_mut(notice) {
                    if let Some(t) = title {
                        n.title.set(t.clone(), at);
                    }
                    if let Some(b) = body {
                        n.body.set(b.clone(), at);
                    }
                }
            }
            Op::PinNotice { notice, pinned } => {
                if let Some(n) = notices.get_mut(notice) {
                    n.pinned.set(*pinned, at);
                }
            }
            Op::DeleteNotice { notice } => {
                if let Some(n) = notices.get_mut(notice) {
                    n.deletions.insert(at);
                }
            }
            _ => {}
        }
    }
}
