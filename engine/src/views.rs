//! Views of a space for the UI, built from a replica's state.

use civicbase_core::op::{Choice, NeedKind, Role, Urgency};
use civicbase_core::state::needs::{NeedFilter as CoreFilter, NeedStatus};
use civicbase_core::state::{ProposalStatus, SpaceState, Stamp};
use civicbase_core::{AuthorId, Replica, SpaceId};
use civicbase_proto::{
    HeartsView, MemberRow, MembersView, NeedFilter, NeedView, NoticeView, Overview, Page,
    ProposalView, SpaceSummary, TransferView, ViewData, ViewQuery,
};

/// The space's name, or a placeholder while its data has not arrived.
pub fn space_name(r: &Replica) -> String {
    r.state().members.space_name.as_ref().map_or_else(
        || "(waiting for the space's data)".to_owned(),
        |n| n.value.clone(),
    )
}

fn me(state: &SpaceState, device: Option<AuthorId>) -> Option<AuthorId> {
    device.and_then(|d| state.members.member_of(&d))
}

fn role_of(state: &SpaceState, device: Option<AuthorId>) -> Option<Role> {
    me(state, device).and_then(|m| state.members.current_role(&m))
}

/// A space in the list.
pub fn summary(id: &SpaceId, r: &Replica, device: Option<AuthorId>) -> SpaceSummary {
    SpaceSummary {
        id: id.0,
        name: space_name(r),
        role: role_of(r.state(), device).map(|r| r as u8),
        entries: r.len() as u64,
    }
}

fn name(state: &SpaceState, id: &AuthorId) -> String {
    state
        .members
        .name_of(id)
        .map_or_else(|| id.fingerprint(), str::to_owned)
}

fn page<T>(items: Vec<T>, offset: u32, limit: u32) -> Page<T> {
    let total = items.len() as u32;
    Page {
        items: items
            .into_iter()
            .skip(offset as usize)
            .take(limit.clamp(1, 1000) as usize)
            .collect(),
        total,
    }
}

fn ms(s: &Stamp) -> u64 {
    s.ts.wall_ms()
}

/// Builds the view asked for.
pub fn view(r: &Replica, device: Option<AuthorId>, q: &ViewQuery, now_ms: u64) -> ViewData {
    let state = r.state();
    let me = me(state, device);
    let role = role_of(state, device);
    match q {
        ViewQuery::Overview => ViewData::Overview(Overview {
            id: r.space().0,
            name: space_name(r),
            role: role.map(|r| r as u8),
            me: me.map(|m| m.0),
            members: state
                .members
                .members
                .values()
                .filter(|m| m.removals.is_empty())
                .count() as u32,
            notices: state.notices.list().len() as u32,
            open_proposals: state
                .decisions
                .proposals
                .values()
                .filter(|p| p.status(now_ms) == ProposalStatus::Open)
                .count() as u32,
            open_needs: state
                .needs
                .records
                .values()
                .filter(|n| n.status() != NeedStatus::Done)
                .count() as u32,
            entries: r.len() as u64,
            ineffective: r.ineffective().count() as u32,
            flagged: r.forks().map(|p| name(state, &p.author)).collect(),
        }),
        ViewQuery::Notices { offset, limit } => {
            let items = state
                .notices
                .list()
                .into_iter()
                .map(|(id, n)| NoticeView {
                    id: id.0,
                    title: n.title.value.clone(),
                    body: n.body.value.clone(),
                    author: name(state, &n.author),
                    posted_ms: ms(&n.created),
                    pinned: n.pinned.value,
                    can_edit: me == Some(n.author) || role >= Some(Role::Coordinator),
                })
                .collect();
            ViewData::Notices(page(items, *offset, *limit))
        }
        ViewQuery::Decisions { offset, limit } => {
            let mut props: Vec<_> = state.decisions.proposals.iter().collect();
            // Open ones first, then by deadline, newest first.
            props.sort_by_key(|(_, p)| {
                (
                    p.status(now_ms) != ProposalStatus::Open,
                    std::cmp::Reverse(p.deadline_ms),
                )
            });
            let items = props
                .into_iter()
                .map(|(id, p)| {
                    let t = p.tally();
                    ProposalView {
                        id: id.0,
                        title: p.title.clone(),
                        body: p.body.clone(),
                        author: name(state, &p.author),
                        deadline_ms: p.deadline_ms,
                        quorum: p.quorum,
                        yes: t.yes,
                        no: t.no,
                        abstain: t.abstain,
                        my_vote: me.and_then(|m| p.votes.get(&m)).map(|v| match v.value {
                            Choice::Yes => 0,
                            Choice::No => 1,
                            Choice::Abstain => 2,
                        }),
                        status: match p.status(now_ms) {
                            ProposalStatus::Open => 0,
                            ProposalStatus::Passed => 1,
                            ProposalStatus::Rejected => 2,
                            ProposalStatus::NoQuorum => 3,
                        },
                        is_final: p.is_final(),
                        comments: p
                            .comments
                            .values()
                            .map(|c| (name(state, &c.author), c.body.clone()))
                            .collect(),
                    }
                })
                .collect();
            ViewData::Decisions(page(items, *offset, *limit))
        }
        ViewQuery::Needs {
            filter,
            offset,
            limit,
        } => {
            let items = state
                .needs
                .list(&core_filter(filter))
                .into_iter()
                .map(|(id, n)| NeedView {
                    id: id.0,
                    kind: n.kind as u8,
                    category: n.category.clone(),
                    urgency: n.urgency as u8,
                    location: n.location.clone(),
                    title: n.title.clone(),
                    details: n.details.clone(),
                    status: n.status() as u8,
                    author: name(state, &n.author),
                    claimer: n.claimer().map(|c| name(state, &c)),
                    mine: me == Some(n.author),
                })
                .collect();
            ViewData::Needs(page(items, *offset, *limit))
        }
        ViewQuery::Hearts { offset, limit } => {
            let hs = &state.hearts;
            let default = state.members.default_credit_limit;
            let conflicts = r.heart_conflicts();
            let transfer = |s: &Stamp| {
                hs.transfers.get(s).map(|t| TransferView {
                    from: name(state, &t.from),
                    to: name(state, &t.to),
                    amount: t.amount,
                    memo: t.memo.clone(),
                    at_ms: ms(s),
                    conflicting: conflicts.conflicting.contains(s),
                })
            };
            let balances = state
                .members
                .members
                .iter()
                .filter(|(_, m)| m.removals.is_empty())
                .map(|(id, _)| (id.0, name(state, id), hs.balance(id), hs.limit(id, default)))
                .collect();
            let history = me
                .map(|m| {
                    hs.history(&m)
                        .iter()
                        .filter_map(|(s, _)| transfer(s))
                        .collect()
                })
                .unwrap_or_default();
            ViewData::Hearts(HeartsView {
                balances,
                history: page(history, *offset, *limit),
                overdrawn: conflicts
                    .overdrawn
                    .iter()
                    .map(|(m, b, l)| (name(state, m), *b, *l))
                    .collect(),
                conflicts: conflicts.conflicting.iter().filter_map(transfer).collect(),
            })
        }
        ViewQuery::Members => ViewData::Members(MembersView {
            members: state
                .members
                .list()
                .into_iter()
                .map(|m| MemberRow {
                    id: m.id.0,
                    name: m.name,
                    role: m.role as u8,
                    removed: m.removed,
                    fingerprint: m.id.fingerprint(),
                    devices: m.devices.len() as u32,
                })
                .collect(),
            invites: state
                .members
                .invites
                .iter()
                .filter_map(|(k, i)| {
                    i.grant()
                        .map(|g| (k.0, g.role as u8, g.expires_ms, i.is_revoked()))
                })
                .collect(),
        }),
    }
}

fn core_filter(f: &NeedFilter) -> CoreFilter {
    CoreFilter {
        kind: f.kind.map(|k| {
            if k == 0 {
                NeedKind::Need
            } else {
                NeedKind::Offer
            }
        }),
        category: f.category.clone().filter(|c| !c.is_empty()),
        min_urgency: f.min_urgency.map(|u| match u {
            0 => Urgency::Low,
            1 => Urgency::Normal,
            2 => Urgency::High,
            _ => Urgency::Critical,
        }),
        status: f.status.map(|s| match s {
            0 => NeedStatus::Open,
            1 => NeedStatus::Claimed,
            _ => NeedStatus::Done,
        }),
    }
}
